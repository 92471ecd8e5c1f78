//! The `store` contract (to be written).

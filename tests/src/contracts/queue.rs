//! The `queue` contract (to be written).

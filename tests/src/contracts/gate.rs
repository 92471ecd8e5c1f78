//! The `gate` contract (to be written).

//! edge (in progress)

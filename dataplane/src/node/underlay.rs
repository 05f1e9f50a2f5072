//! underlay (in progress)

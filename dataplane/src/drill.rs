//! drill (in progress)

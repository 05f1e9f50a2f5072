//! eni (in progress)

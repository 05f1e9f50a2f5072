//! endpoint (in progress)

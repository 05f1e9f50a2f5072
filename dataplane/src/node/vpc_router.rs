//! vpc_router (in progress)

//! arp_cache (in progress)

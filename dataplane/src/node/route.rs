//! A longest-prefix-match IPv4 route table, generic over what a route points at. Tier-0 uses it
//! with next hops, the VPC router with AWS route targets: one type, one lookup.

use std::cell::Cell;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One route: a destination prefix and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<T> {
    pub dest: Ipv4Net,
    pub target: T,
}

/// Routes kept sorted from the longest prefix to the shortest, so the first match is the longest.
/// A lookup scans the table: route tables here hold tens of routes (the VPC quota is 50 by
/// default), where a scan beats a trie.
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    routes: Vec<Entry<T>>,
    /// The last address looked up and the index of its route ([`NO_ROUTE`] for none): a
    /// flow's packets skip the scan. Changing the table forgets it.
    last: Cell<Option<(u32, u32)>>,
}

/// In [`RouteTable::last`]: the address matched no route.
const NO_ROUTE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Entry<T> {
    net: u32,
    mask: u32,
    route: Route<T>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            routes: Vec::new(),
            last: Cell::new(None),
        }
    }
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a route, or replace the target of the route with the same destination (the old
    /// target is returned). Host bits of `dest` are ignored.
    pub fn insert(&mut self, dest: Ipv4Net, target: T) -> Option<T> {
        self.last.set(None);
        let dest = dest.trunc();
        if let Some(e) = self.routes.iter_mut().find(|e| e.route.dest == dest) {
            return Some(std::mem::replace(&mut e.route.target, target));
        }
        let entry = Entry {
            net: u32::from(dest.network()),
            mask: u32::from(dest.netmask()),
            route: Route { dest, target },
        };
        let at = self
            .routes
            .iter()
            .position(|e| {
                let len = e.route.dest.prefix_len();
                len < dest.prefix_len() || (len == dest.prefix_len() && e.net > entry.net)
            })
            .unwrap_or(self.routes.len());
        self.routes.insert(at, entry);
        None
    }

    /// Remove the route for exactly `dest`.
    pub fn remove(&mut self, dest: Ipv4Net) -> Option<T> {
        self.last.set(None);
        let dest = dest.trunc();
        let i = self.routes.iter().position(|e| e.route.dest == dest)?;
        Some(self.routes.remove(i).route.target)
    }

    /// The route for exactly `dest`.
    pub fn get(&self, dest: Ipv4Net) -> Option<&Route<T>> {
        let dest = dest.trunc();
        self.iter().find(|r| r.dest == dest)
    }

    /// The longest-prefix match for `addr`.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<&Route<T>> {
        let a = u32::from(addr);
        let i = match self.last.get() {
            Some((last, i)) if last == a => i,
            _ => self.scan(a),
        };
        self.routes.get(i as usize).map(|e| &e.route)
    }

    /// The index of the longest-prefix match for `a` ([`NO_ROUTE`] for none), remembered.
    #[inline(never)]
    fn scan(&self, a: u32) -> u32 {
        let i = self
            .routes
            .iter()
            .position(|e| a & e.mask == e.net)
            .map_or(NO_ROUTE, |i| i as u32);
        self.last.set(Some((a, i)));
        i
    }

    /// Every route, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &Route<T>> {
        self.routes.iter().map(|e| &e.route)
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_whatever_the_insert_order() {
        let mut t = RouteTable::new();
        t.insert(net("0.0.0.0/0"), "default");
        t.insert(net("172.31.0.0/16"), "local");
        t.insert(net("172.31.16.0/20"), "subnet");
        t.insert(net("172.31.16.10/32"), "host");
        let hit = |a: &str| t.lookup(a.parse().unwrap()).map(|r| r.target);
        assert_eq!(hit("172.31.16.10"), Some("host"));
        assert_eq!(hit("172.31.16.11"), Some("subnet"));
        assert_eq!(hit("172.31.0.5"), Some("local"));
        assert_eq!(hit("8.8.8.8"), Some("default"));
        let lens: Vec<u8> = t.iter().map(|r| r.dest.prefix_len()).collect();
        assert_eq!(lens, vec![32, 20, 16, 0]);
    }

    #[test]
    fn a_change_to_the_table_is_seen_by_the_next_lookup_of_the_same_address() {
        let mut t = RouteTable::new();
        let a: Ipv4Addr = "10.1.2.3".parse().unwrap();
        assert_eq!(t.lookup(a).map(|r| r.target), None);
        t.insert(net("10.0.0.0/8"), "wide");
        assert_eq!(t.lookup(a).map(|r| r.target), Some("wide"));
        t.insert(net("10.1.0.0/16"), "narrow");
        assert_eq!(t.lookup(a).map(|r| r.target), Some("narrow"));
        t.remove(net("10.1.0.0/16"));
        assert_eq!(t.lookup(a).map(|r| r.target), Some("wide"));
        t.remove(net("10.0.0.0/8"));
        assert_eq!(t.lookup(a).map(|r| r.target), None);
    }

    #[test]
    fn replace_remove_and_miss() {
        let mut t = RouteTable::new();
        assert_eq!(t.insert(net("192.168.1.0/24"), 1), None);
        assert_eq!(t.insert(net("192.168.1.7/24"), 2), Some(1)); // host bits ignored
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup("192.168.2.1".parse().unwrap()), None);
        assert_eq!(t.remove(net("192.168.1.0/24")), Some(2));
        assert!(t.is_empty());
        assert_eq!(t.lookup("192.168.1.1".parse().unwrap()), None);
    }
}

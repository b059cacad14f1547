//! Open connections per client address, so one address cannot take every
//! slot of the server. An IPv4 address counts as itself; an IPv6 address
//! counts as its /64, the smallest block an ISP hands out (RFC 6177), so a
//! client cannot dodge the cap by cycling its interface identifier.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The per-address counters. One entry per address with a connection open,
/// so the map is bounded by `[server] max_connections`.
#[derive(Debug)]
pub(super) struct ClientSlots {
    /// Most connections per address; 0 means no cap.
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ClientSlots {
    /// Counters allowing `limit` connections per address (0: no cap).
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `peer`, or `None` when that
    /// address already holds `limit` connections.
    pub(super) fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Option<ClientSlot> {
        if self.limit == 0 {
            return Some(ClientSlot(None));
        }
        let key = client_key(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        // Invariant: no address ever holds more than `limit` slots.
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot(Some((Arc::clone(self), key))))
    }

    fn release(&self, key: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One connection's share of its address's slots, given back on drop.
#[derive(Debug)]
pub(super) struct ClientSlot(Option<(Arc<ClientSlots>, IpAddr)>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some((slots, key)) = self.0.take() {
            slots.release(key);
        }
    }
}

/// The address a connection counts against: IPv4 (also when mapped into
/// IPv6) as is, IPv6 by its /64.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & IPV6_CLIENT_MASK)),
    }
}

/// Keeps the routing prefix of an IPv6 address: the upper 64 bits.
const IPV6_CLIENT_MASK: u128 = !0 << 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_limit_slots_and_gets_them_back() {
        let slots = ClientSlots::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = slots.try_acquire(ip).unwrap();
        let _b = slots.try_acquire(ip).unwrap();
        assert!(slots.try_acquire(ip).is_none());
        assert!(slots.try_acquire("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(slots.try_acquire(ip).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let slots = ClientSlots::new(1);
        let _a = slots
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(
            slots
                .try_acquire("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_none()
        );
        assert!(
            slots
                .try_acquire("2001:db8:1:3::1".parse().unwrap())
                .is_some()
        );
        let _v4 = slots.try_acquire("192.0.2.7".parse().unwrap()).unwrap();
        assert!(
            slots
                .try_acquire("::ffff:192.0.2.7".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn no_cap_tracks_nothing_and_released_addresses_are_forgotten() {
        let off = ClientSlots::new(0);
        let held: Vec<_> = (0..10)
            .map(|_| off.try_acquire("192.0.2.1".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(off.tracked(), 0);
        drop(held);
        let on = ClientSlots::new(3);
        let slot = on.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(on.tracked(), 1);
        drop(slot);
        assert_eq!(on.tracked(), 0, "a map entry outlived its last connection");
    }
}

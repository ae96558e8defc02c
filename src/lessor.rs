//! Lease expiry timers, kept by the leader only, in memory.
//!
//! Apply never looks at a clock: the store only knows a lease's granted TTL. The leader keeps a
//! deadline per lease here, pushes it out on every keep-alive, and proposes a `LeaseRevoke`
//! command when a deadline passes; the revoke then goes through raft like any write. After a
//! restart (or, later, a leader change) every lease gets a fresh full TTL, as etcd does, instead
//! of expiring all at once because time passed while no one was counting.
//!
//! Time is tokio's clock, so tests drive it with `tokio::time::pause()` and `advance()`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

struct Lease {
    ttl_s: i64,
    /// When the lease expires.
    deadline: Instant,
    /// When it is next offered for revocation: the deadline, then every retry period after.
    offer_at: Instant,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    by_offer: BTreeSet<(Instant, i64)>,
}

#[derive(Default)]
pub struct Lessor {
    state: Mutex<State>,
}

/// How long a proposed revoke may take before the lease is offered for expiry again.
pub const REVOKE_RETRY: Duration = Duration::from_secs(3);

impl Lessor {
    pub fn new() -> Lessor {
        Lessor::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A lease exists (granted now, or found in the store at start): its deadline is now + TTL.
    pub fn granted(&self, id: i64, ttl_s: i64) {
        let mut s = self.lock();
        let deadline = Instant::now() + Duration::from_secs(ttl_s.max(0) as u64);
        if let Some(old) = s.leases.insert(id, Lease { ttl_s, deadline, offer_at: deadline }) {
            s.by_offer.remove(&(old.offer_at, id));
        }
        s.by_offer.insert((deadline, id));
    }

    pub fn revoked(&self, id: i64) {
        let mut s = self.lock();
        if let Some(old) = s.leases.remove(&id) {
            s.by_offer.remove(&(old.offer_at, id));
        }
    }

    /// Keep-alive: pushes the deadline to now + TTL. Returns the TTL, or None for an unknown
    /// lease (etcd then answers TTL 0).
    pub fn renew(&self, id: i64) -> Option<i64> {
        let (ttl, deadline) = self.lock().leases.get(&id).map(|l| (l.ttl_s, l.deadline))?;
        // Like etcd: a lease past its deadline is as good as gone, even if its revoke has not
        // been applied yet; it cannot be revived.
        if deadline <= Instant::now() {
            return None;
        }
        self.granted(id, ttl);
        Some(ttl)
    }

    /// (granted TTL, remaining time) of a live lease.
    pub fn remaining(&self, id: i64) -> Option<(i64, Duration)> {
        let s = self.lock();
        let l = s.leases.get(&id)?;
        Some((l.ttl_s, l.deadline.saturating_duration_since(Instant::now())))
    }

    /// Every lease gets a fresh deadline of now + TTL (after a restart or on becoming leader).
    pub fn reset_all(&self, leases: &[(i64, i64)]) {
        for (id, ttl) in leases {
            self.granted(*id, *ttl);
        }
    }

    /// Leases whose deadline has passed. Each is pushed back by [`REVOKE_RETRY`] so it is
    /// offered once per retry period while its revoke is in flight.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let now = Instant::now();
        let mut s = self.lock();
        let due: Vec<(Instant, i64)> = s.by_offer.iter().take_while(|(t, _)| *t <= now).take(max).copied().collect();
        let retry = now + REVOKE_RETRY;
        for (t, id) in &due {
            s.by_offer.remove(&(*t, *id));
            if let Some(l) = s.leases.get_mut(id) {
                l.offer_at = retry;
            }
            s.by_offer.insert((retry, *id));
        }
        due.into_iter().map(|(_, id)| id).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_after_ttl_and_keepalive_extends() {
        let l = Lessor::new();
        l.granted(1, 5);
        l.granted(2, 10);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(l.take_expired(10).is_empty());
        assert_eq!(l.renew(1), Some(5));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(l.take_expired(10).is_empty(), "keep-alive pushed lease 1 out to t=9");
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(l.take_expired(10), vec![1]);
        assert_eq!(l.renew(1), None, "an expired lease cannot be kept alive");
        // Offered again only after the retry period.
        assert!(l.take_expired(10).is_empty());
        tokio::time::advance(REVOKE_RETRY).await;
        assert_eq!(l.take_expired(10), vec![2, 1]);
        l.revoked(1);
        l.revoked(2);
        assert!(l.is_empty());
        assert_eq!(l.renew(1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down() {
        let l = Lessor::new();
        l.granted(7, 60);
        tokio::time::advance(Duration::from_secs(15)).await;
        let (ttl, rem) = l.remaining(7).unwrap();
        assert_eq!(ttl, 60);
        assert_eq!(rem, Duration::from_secs(45));
    }
}

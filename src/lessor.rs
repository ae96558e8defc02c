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
    /// Its place in the expiry queue: never after the deadline while the lease is alive (a
    /// keep-alive moves only the deadline; the queue entry catches up when it comes due), then
    /// every retry period once the deadline has passed.
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
        let mut ttl_s = 0;
        let alive = self.extend(id, |l| {
            ttl_s = l.ttl_s;
            Duration::from_secs(l.ttl_s.max(0) as u64)
        });
        alive.then_some(ttl_s)
    }

    /// Keep-alive of a ZooKeeper session: pushes the deadline to now + `period`, the timeout of
    /// the connection that holds the session. Returns false for an unknown or expired lease.
    ///
    /// Why not the granted TTL: ZooKeeper touches a session with its current connection's
    /// negotiated timeout, which differs from the one the session was created with when the
    /// client reattaches asking for another one, or the server's bounds changed between a
    /// restart and the reattach. The granted TTL (the store's) stays as it was.
    pub fn renew_for(&self, id: i64, period: Duration) -> bool {
        self.extend(id, |_| period)
    }

    /// Both keep-alives: pushes a live lease's deadline to now + `period(lease)`.
    ///
    /// Every ZooKeeper request renews its session, so this is on every request's path: it
    /// moves the deadline only, and leaves the lease's entry in the expiry queue where it is
    /// (earlier than the deadline); [`Lessor::take_expired`] moves it when it comes due. Moving
    /// it here cost a B-tree removal and insertion per request.
    fn extend(&self, id: i64, period: impl FnOnce(&Lease) -> Duration) -> bool {
        let now = Instant::now();
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(l) = s.leases.get_mut(&id) else { return false };
        // Like etcd: a lease past its deadline is as good as gone, even if its revoke has not
        // been applied yet; it cannot be revived.
        if l.deadline <= now {
            return false;
        }
        l.deadline = now + period(l);
        // The queue entry must not come after the deadline: a shorter period than before
        // moves it (rare: only after a reattach with a shorter timeout).
        if l.deadline < l.offer_at {
            let old = std::mem::replace(&mut l.offer_at, l.deadline);
            let new = l.offer_at;
            s.by_offer.remove(&(old, id));
            s.by_offer.insert((new, id));
        }
        true
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
    /// A due entry of a lease that was kept alive since it was queued is moved to the
    /// lease's deadline instead.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let now = Instant::now();
        let retry = now + REVOKE_RETRY;
        let mut s = self.lock();
        let State { leases, by_offer } = &mut *s;
        let mut expired = Vec::new();
        while expired.len() < max {
            let Some(&(t, id)) = by_offer.first() else { break };
            if t > now {
                break;
            }
            by_offer.remove(&(t, id));
            let Some(l) = leases.get_mut(&id) else { continue };
            if l.deadline > now {
                l.offer_at = l.deadline;
            } else {
                l.offer_at = retry;
                expired.push(id);
            }
            by_offer.insert((l.offer_at, id));
        }
        expired
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
    async fn leases_kept_alive_are_requeued_not_expired_and_do_not_count_against_max() {
        let l = Lessor::new();
        for id in 1..=5 {
            l.granted(id, 2);
        }
        // Leases 1-4 are kept alive every second; lease 5 is not.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(1)).await;
            for id in 1..=4 {
                assert_eq!(l.renew(id), Some(2));
            }
            let expired = l.take_expired(1);
            assert!(expired.iter().all(|id| *id == 5), "a kept-alive lease expired: {expired:?}");
        }
        assert_eq!(l.remaining(1), Some((2, Duration::from_secs(2))));
        assert_eq!(l.renew(5), None);
        // Silence: all four expire two seconds after their last keep-alive, not before.
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(l.take_expired(10).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(l.take_expired(10), vec![1, 2, 3, 4]);
    }

    /// Goal: a session kept alive by a connection whose timeout differs from the granted TTL
    /// expires by the connection's timeout, longer or shorter. Method: paused time.
    #[tokio::test(start_paused = true)]
    async fn a_session_lives_by_its_connections_timeout() {
        let l = Lessor::new();
        l.granted(1, 4);
        l.granted(2, 30);
        assert!(l.renew_for(1, Duration::from_secs(20)));
        assert!(l.renew_for(2, Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(l.take_expired(10), vec![2], "the shorter period is kept, not the queued 30 s");
        l.revoked(2);
        tokio::time::advance(Duration::from_secs(17)).await;
        assert!(l.take_expired(10).is_empty(), "the longer period outlives the 4 s TTL");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(l.take_expired(10), vec![1]);
        assert!(!l.renew_for(1, Duration::from_secs(20)), "an expired session is not revived");
        assert!(!l.renew_for(9, Duration::from_secs(20)), "nor an unknown one");
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

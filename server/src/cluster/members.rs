//! The node table, sans IO: announcements in (with the time they were heard), expiry by time,
//! [`Event`]s out. The driver feeds it what the `easel_nodes` bucket says; it never reads a
//! clock or a socket, so its tests run under virtual time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::NodeInfo;

/// A change in who is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node was heard from for the first time, or again after it left, or it restarted
    /// (its `started_at_ms` changed).
    Joined(NodeInfo),
    /// A node is gone.
    Left {
        /// Its id.
        id: String,
        /// Why it is counted out.
        why: Departure,
    },
}

/// Why a node left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It withdrew its entry (a graceful shutdown).
    Withdrew,
    /// It was not heard from for the time-to-live.
    Expired,
}

/// Who is in the cluster, as this node sees it. This node is always in it.
#[derive(Debug)]
pub struct Membership {
    me: NodeInfo,
    ttl: Duration,
    others: BTreeMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    info: NodeInfo,
    last: Instant,
}

impl Membership {
    /// A table holding only `me`; another node counts as gone `ttl` after it was last heard.
    pub fn new(me: NodeInfo, ttl: Duration) -> Self {
        Self { me, ttl, others: BTreeMap::new() }
    }

    /// A node's announcement, heard at `now`, made `age` before (the bucket keeps the last
    /// announcement of each node, so a node that starts reads some that are old). One older
    /// than the time-to-live changes nothing: its node may be long dead.
    pub fn heard(&mut self, now: Instant, info: NodeInfo, age: Duration) -> Option<Event> {
        if info.id == self.me.id || age >= self.ttl {
            return None;
        }
        let at = now.checked_sub(age).unwrap_or(now);
        match self.others.get_mut(&info.id) {
            Some(seen) if seen.info.started_at_ms == info.started_at_ms => {
                seen.last = seen.last.max(at);
                seen.info = info;
                None
            }
            _ => {
                self.others.insert(info.id.clone(), Seen { info: info.clone(), last: at });
                Some(Event::Joined(info))
            }
        }
    }

    /// A node withdrew its entry.
    pub fn withdrew(&mut self, id: &str) -> Option<Event> {
        self.others.remove(id).map(|_| Event::Left { id: id.to_owned(), why: Departure::Withdrew })
    }

    /// Counts out every node not heard from for the time-to-live, as of `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let ttl = self.ttl;
        let gone: Vec<String> = self
            .others
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(seen.last) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .map(|id| {
                self.others.remove(&id);
                Event::Left { id, why: Departure::Expired }
            })
            .collect()
    }

    /// This node.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// Every node, this one included, by id.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut all: Vec<NodeInfo> = self.others.values().map(|s| s.info.clone()).collect();
        all.push(self.me.clone());
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);

    fn node(id: &str, started_at_ms: u64) -> NodeInfo {
        NodeInfo {
            id: id.to_owned(),
            quic: "127.0.0.1:4434".into(),
            wt: "127.0.0.1:4433".into(),
            http: "127.0.0.1:8080".into(),
            started_at_ms,
            version: "0.1.0".into(),
        }
    }

    fn ids(m: &Membership) -> Vec<String> {
        m.nodes().into_iter().map(|n| n.id).collect()
    }

    #[test]
    fn a_node_joins_once_and_stays_while_it_heartbeats() {
        let t0 = Instant::now();
        let mut m = Membership::new(node("a", 1), TTL);
        assert_eq!(ids(&m), ["a"]);
        assert_eq!(m.heard(t0, node("b", 1), Duration::ZERO), Some(Event::Joined(node("b", 1))));
        for s in 1..10 {
            let now = t0 + Duration::from_secs(s);
            assert_eq!(m.heard(now, node("b", 1), Duration::ZERO), None, "a heartbeat is no news");
            assert_eq!(m.expire(now), [], "heard a second ago");
        }
        assert_eq!(ids(&m), ["a", "b"]);
        assert_eq!(m.nodes().len(), 2);
    }

    #[test]
    fn a_silent_node_expires_after_the_ttl_and_rejoins_when_heard_again() {
        let t0 = Instant::now();
        let mut m = Membership::new(node("a", 1), TTL);
        m.heard(t0, node("b", 1), Duration::ZERO);
        assert_eq!(m.expire(t0 + TTL - Duration::from_millis(1)), []);
        assert_eq!(
            m.expire(t0 + TTL),
            [Event::Left { id: "b".into(), why: Departure::Expired }],
            "gone exactly one ttl after it was last heard"
        );
        assert_eq!(ids(&m), ["a"]);
        let later = t0 + TTL * 2;
        assert_eq!(m.heard(later, node("b", 1), Duration::ZERO), Some(Event::Joined(node("b", 1))));
    }

    #[test]
    fn a_withdrawn_node_leaves_at_once_and_an_unknown_one_changes_nothing() {
        let t0 = Instant::now();
        let mut m = Membership::new(node("a", 1), TTL);
        m.heard(t0, node("b", 1), Duration::ZERO);
        assert_eq!(m.withdrew("b"), Some(Event::Left { id: "b".into(), why: Departure::Withdrew }));
        assert_eq!(m.withdrew("b"), None);
        assert_eq!(m.withdrew("zzz"), None);
        assert_eq!(ids(&m), ["a"]);
    }

    #[test]
    fn an_old_announcement_counts_from_when_it_was_made() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut m = Membership::new(node("a", 1), TTL);
        assert_eq!(m.heard(t0, node("dead", 1), TTL), None, "a ttl old: its node may be long gone");
        assert_eq!(ids(&m), ["a"]);
        let aged = TTL - Duration::from_secs(1);
        assert!(matches!(m.heard(t0, node("b", 1), aged), Some(Event::Joined(_))));
        assert_eq!(
            m.expire(t0 + Duration::from_secs(1)),
            [Event::Left { id: "b".into(), why: Departure::Expired }],
            "two seconds old when read, so gone one second later"
        );
    }

    #[test]
    fn a_restarted_node_joins_again_and_this_node_never_lists_itself_twice() {
        let t0 = Instant::now();
        let mut m = Membership::new(node("a", 1), TTL);
        m.heard(t0, node("b", 1), Duration::ZERO);
        assert_eq!(m.heard(t0, node("b", 2), Duration::ZERO), Some(Event::Joined(node("b", 2))));
        assert_eq!(m.heard(t0, node("a", 9), Duration::ZERO), None, "its own entry, read back");
        assert_eq!(ids(&m), ["a", "b"]);
        assert_eq!(m.me().started_at_ms, 1);
        assert_eq!(m.expire(t0 + TTL * 10).len(), 1, "this node does not expire itself");
        assert_eq!(ids(&m), ["a"]);
    }
}

//! Silence: any sign of life keeps a member alive; a member silent past the presence TTL is
//! shown away, pointer hidden, and keeps its place for the resume grace window, as a lost
//! connection does (SPEC §6.3); then it is evicted, as are detached members whose window
//! has passed and remote members whose node stopped speaking for them.

use std::time::Instant;

use easel_proto::ErrorCode;
use easel_proto::datagram::{Status, Tool};

use super::members::Reach;
use super::{Act, ClassEvent, Room};

impl Room {
    /// Marks a member alive (any frame or datagram from it).
    pub fn handle_touch(&mut self, now: Instant, member: u16) {
        self.heard(now, member);
    }

    /// A sign of life from a member: alive from `now`; one shown away for its silence shows
    /// what it showed before again (its next heartbeat, if any, takes over from there).
    pub(super) fn heard(&mut self, now: Instant, index: u16) {
        let Some(m) = self.members.get_mut(&index) else { return };
        m.last_seen = now;
        if let Some(Some((status, tool))) = m.hushed.take() {
            self.publish_presence(now, index, status, tool);
        }
    }

    /// Shows members silent for longer than the presence TTL away, pointer hidden, and evicts
    /// them once the resume grace window since they were last heard has passed too; evicts
    /// detached members whose window has passed. Silence is how a connection cut off without
    /// a word looks until its transport gives up (QUIC's idle timeout is longer than the TTL),
    /// so it is treated like a lost connection: the member keeps its place for a resume, and
    /// others see no leave and no frozen cursor (SPEC §6.3).
    pub(super) fn expire(&mut self, now: Instant) {
        let (ttl, evict_after) =
            (self.config.presence_ttl, self.config.presence_ttl.max(self.config.resume_grace));
        let mut hush = Vec::new();
        let mut gone = Vec::new();
        let mut ended = Vec::new();
        for (&index, m) in &self.members {
            match m.reach {
                Reach::Linked { .. } => {
                    let silent = now.duration_since(m.last_seen);
                    if silent > evict_after {
                        gone.push(index);
                    } else if silent > ttl && m.hushed.is_none() {
                        hush.push(index);
                    }
                }
                Reach::Remote { until, lost: Some(_), .. } if now >= until => {
                    // Its node was counted out and it came back nowhere: every replica
                    // proposes its departure, at when it was lost (counted once).
                    let at_ms = self.wall_ms(self.lost_at(until));
                    ended.push(ClassEvent { by: self.actor(index, m), act: Act::Depart { at_ms } });
                    gone.push(index);
                }
                Reach::Detached { until, .. } | Reach::Remote { until, .. } if now >= until => {
                    gone.push(index)
                }
                Reach::Detached { .. } | Reach::Remote { .. } => {}
            }
        }
        for index in hush {
            let Some(m) = self.members.get_mut(&index) else { continue };
            m.hushed = Some(m.presence.map(|p| (p.status, p.tool)));
            tracing::debug!(room = %self.id, index, "silent: shown away");
            self.publish_presence(now, index, Status::Away, Tool::Hidden);
        }
        for departure in ended {
            self.submit(now, departure);
        }
        for index in gone {
            tracing::info!(room = %self.id, index, "presence timeout");
            self.remove(now, index, ErrorCode::PresenceTimeout, Some(String::new()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use easel_proto::datagram::{Heartbeat, PresenceEntry, Status, Tool};

    use super::super::Config;
    use super::super::members::tests::{ada_shown_to_bob, newer_entry};
    use super::super::testing::{Sim, room};
    use super::*;

    #[test]
    fn silence_past_the_ttl_shows_away_and_the_grace_window_then_evicts() {
        let t0 = Instant::now();
        let config = Config {
            presence_ttl: Duration::from_secs(10),
            resume_grace: Duration::from_secs(30),
            ..Config::default()
        };
        let tick = config.tick;
        let mut sim = Sim::new(room(config, t0));
        let (a, b, _) = ada_shown_to_bob(&mut sim, t0);
        // Ada stays alive; bob, cut off without a word, is silent from t0.
        let beat = |seq| Heartbeat { slot: 0, seq, status: Status::Active, tool: Tool::Pen };
        for (secs, seq) in [(8, 8), (16, 9), (24, 10)] {
            sim.room.handle_heartbeat(t0 + Duration::from_secs(secs), a, &beat(seq));
        }
        sim.presence(a);
        sim.membership(a);
        let silent = t0 + Duration::from_millis(10_001);
        sim.expire(silent);
        sim.advance(silent + tick);
        let bobs: Vec<_> = sim.presence(a).into_iter().filter(|e| e.participant == b).collect();
        assert_eq!(bobs.len(), 1, "{bobs:?}");
        assert_eq!((bobs[0].status, bobs[0].tool), (Status::Away, Tool::Hidden), "silent past the TTL");
        assert_eq!(sim.membership(a), [], "away is presence, not a leave");
        assert_eq!(sim.room.len(), 2, "its place is kept for a resume");
        let adas = sim.presence(b);
        assert!(
            adas.iter().all(|e| e.participant != a || e.status != Status::Away),
            "ada is heard from: {adas:?}"
        );

        sim.expire(t0 + Duration::from_secs(30));
        assert_eq!(sim.room.len(), 2, "held for the grace window since it was last heard");
        sim.expire(t0 + Duration::from_millis(30_001));
        assert_eq!(sim.room.len(), 1, "bob was silent for the whole window");
        assert_eq!(sim.membership(a), [("left", b, ErrorCode::PresenceTimeout.to_u16())]);
        assert_eq!(sim.left(b), Some((ErrorCode::PresenceTimeout, String::new())), "bob is told why");
    }

    #[test]
    fn without_a_grace_window_silence_past_the_ttl_evicts() {
        let t0 = Instant::now();
        let config = Config {
            presence_ttl: Duration::from_secs(10),
            resume_grace: Duration::ZERO,
            ..Config::default()
        };
        let mut sim = Sim::new(room(config, t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        let beat = Heartbeat { slot: 0, seq: 1, status: Status::Active, tool: Tool::Pen };
        sim.room.handle_heartbeat(t0 + Duration::from_secs(8), a, &beat);
        sim.expire(t0 + Duration::from_secs(11));
        assert_eq!(sim.room.len(), 1, "bob was silent for 11 s");
        assert_eq!(sim.membership(a), [("left", b, ErrorCode::PresenceTimeout.to_u16())]);
    }

    /// Ada, shown to bob, then silent past the 10 s TTL while bob is not: the room, ada, bob,
    /// the away entry bob was sent for her, and when she fell silent.
    fn ada_silent() -> (Sim, u16, u16, PresenceEntry, Instant) {
        let t0 = Instant::now();
        let config = Config { presence_ttl: Duration::from_secs(10), ..Config::default() };
        let tick = config.tick;
        let mut sim = Sim::new(room(config, t0));
        let (a, b, shown) = ada_shown_to_bob(&mut sim, t0);
        let silent = t0 + Duration::from_secs(11);
        sim.room.handle_touch(silent, b);
        sim.expire(silent);
        sim.advance(silent + tick);
        let away = newer_entry(&sim.presence(b), a, &shown);
        (sim, a, b, away, silent)
    }

    #[test]
    fn a_silent_member_heard_again_shows_what_it_showed_before() {
        let (mut sim, a, b, away, silent) = ada_silent();
        let tick = sim.room.config.tick;
        assert_eq!((away.status, away.tool), (Status::Away, Tool::Hidden));
        // A cursor of hers, not a heartbeat: she is back as she was, pointer and all.
        let back_at = silent + Duration::from_secs(1);
        sim.room.handle_cursor(back_at, a, &easel_proto::datagram::Cursor { slot: 0, seq: 1, x: 5, y: 5 });
        assert_eq!(sim.cursors(b).len(), 1, "her pointer moves again");
        sim.advance(back_at + tick);
        let back = newer_entry(&sim.presence(b), a, &away);
        assert_eq!((back.status, back.tool), (Status::Active, Tool::Pen));
        assert_eq!(sim.membership(b), [], "no leave, no join");
    }

    #[test]
    fn a_silent_member_resumed_elsewhere_gets_its_place_and_presence_back() {
        let (mut sim, a, b, away, silent) = ada_silent();
        let tick = sim.room.config.tick;
        // Her old connection still looks live here; the resume comes on a new one.
        let back_at = silent + Duration::from_secs(5);
        assert!(sim.join_with(back_at, "ada", 3, Some(a), 64).resumed, "same place");
        sim.advance(back_at + tick);
        let back = newer_entry(&sim.presence(b), a, &away);
        assert_eq!((back.status, back.tool), (Status::Active, Tool::Pen));
        assert_eq!(sim.membership_frames(b), [], "no leave, no join");
    }
}

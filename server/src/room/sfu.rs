//! SFU signalling as the room sees it (SPEC §13): requests checked against the member's role
//! and SFU membership before they leave as [`Output::Sfu`], and what the SFU driver reports
//! turned into replies, `SfuEvent`s and the camera flag, and the SFU's outages into
//! `SfuStatus` for everyone (with the fallback link while it is out).

use std::time::Instant;

use easel_proto::ErrorCode;
use easel_proto::Message;
use easel_proto::message::{Kind, ParticipantUpdated, SfuEvent, SfuEventKind, SfuStatus};
use easel_sfu_bridge::{Access, PeerEvent};

use super::{Output, Room};
use crate::sfu::{SfuNews, SfuOp};

impl Room {
    /// SFU signalling on a member's room stream. `SfuJoin` is checked against the role here
    /// (a viewer asking to publish is refused with `Forbidden`); the rest needs an `SfuJoin`
    /// first.
    pub fn handle_sfu(&mut self, now: Instant, member: u16, message: Message) {
        self.handle_touch(now, member);
        let students_publish = self.config.students_publish;
        let Some(m) = self.members.get_mut(&member) else { return };
        let op = match message {
            Message::SfuJoin(j) => {
                let access = Access::for_role(m.info.role, students_publish);
                if j.publish && !access.can_publish() {
                    let why = format!("a {:?} may not publish video here", m.info.role).to_lowercase();
                    return self.refuse(member, Kind::SfuJoin, 0, ErrorCode::Forbidden, &why);
                }
                m.in_sfu = true;
                SfuOp::Join { participant: member, display: m.info.name.clone(), access, publish: j.publish }
            }
            other if !m.in_sfu => {
                let why = "not in the SFU room: send SfuJoin first";
                return self.refuse(member, other.kind(), 0, ErrorCode::UnexpectedMessage, why);
            }
            message => SfuOp::Signal { participant: member, message },
        };
        self.push(Output::Sfu(op));
    }

    /// What the SFU driver reports for participant `member`: a reply for it alone, or an
    /// SFU-side event everyone hears (`SfuEvent`), with the camera flag following publishing;
    /// in cluster mode the other nodes hear of it in the next relay batch.
    pub fn handle_sfu_news(&mut self, now: Instant, member: u16, news: SfuNews) {
        let event = match news {
            SfuNews::Reply(message) => return self.send(member, message),
            SfuNews::Event(PeerEvent::Candidate { feed, candidate }) => {
                return self.send(member, crate::sfu::candidate_message(feed, candidate));
            }
            SfuNews::Event(event) => event,
            SfuNews::Reachable(reachable) => return self.sfu_reachable(reachable),
        };
        let (kind, feed) = match event {
            PeerEvent::Joined => (SfuEventKind::Joined, 0),
            PeerEvent::Publishing { feed } => (SfuEventKind::Publishing, feed),
            PeerEvent::Unpublished { feed } => (SfuEventKind::Unpublished, feed),
            PeerEvent::Left => (SfuEventKind::Left, 0),
            PeerEvent::Candidate { .. } => return,
        };
        match self.members.get(&member) {
            // Gone from the room already: others still learn its feed is gone.
            None => {
                if matches!(kind, SfuEventKind::Unpublished | SfuEventKind::Left) {
                    let event = SfuEvent { participant: member, feed, event: kind };
                    self.broadcast(None, &Message::from(event));
                }
            }
            // It resumed on another node, whose batches tell its SFU state now (this node
            // told everyone its session here ended when it went there).
            Some(m) if m.is_remote() => {}
            Some(m) => {
                let (in_sfu, now_feed) = match kind {
                    SfuEventKind::Publishing => (m.in_sfu, Some(feed)),
                    SfuEventKind::Unpublished => (m.in_sfu, None),
                    SfuEventKind::Left => (false, None),
                    SfuEventKind::Joined => (m.in_sfu, m.feed),
                };
                self.sfu_state(member, in_sfu, now_feed, &[(kind, feed)]);
                self.relay_changed(now, member);
            }
        }
    }

    /// Another node's member's SFU state, as its node's batch tells it: what changed goes to
    /// everyone here as the SFU's own events would on one node (under this node's number),
    /// and the camera flag follows its feed.
    pub(super) fn remote_sfu(&mut self, member: u16, in_sfu: bool, feed: Option<u64>) {
        let Some(m) = self.members.get(&member) else { return };
        let (was_in, was_feed) = (m.in_sfu, m.feed);
        let mut events = Vec::new();
        if in_sfu && !was_in {
            events.push((SfuEventKind::Joined, 0));
        }
        if let Some(old) = was_feed.filter(|old| feed != Some(*old)) {
            events.push((SfuEventKind::Unpublished, old));
        }
        if let Some(new) = feed.filter(|new| was_feed != Some(*new)) {
            events.push((SfuEventKind::Publishing, new));
        }
        if was_in && !in_sfu {
            events.push((SfuEventKind::Left, 0));
        }
        self.sfu_state(member, in_sfu, feed, &events);
    }

    /// A remote member that was in the SFU room left the room: its feed is gone for everyone
    /// here, as a local member's would be.
    pub(super) fn remote_sfu_gone(&mut self, member: u16, in_sfu: bool, feed: Option<u64>) {
        let unpublished = feed.map(|feed| (SfuEventKind::Unpublished, feed));
        let left = in_sfu.then_some((SfuEventKind::Left, 0));
        for (event, feed) in unpublished.into_iter().chain(left) {
            self.broadcast(None, &Message::from(SfuEvent { participant: member, feed, event }));
        }
    }

    /// Sets a member's SFU state, broadcasts `events` about it, then its camera flag if that
    /// changed (it is on while it publishes).
    fn sfu_state(&mut self, member: u16, in_sfu: bool, feed: Option<u64>, events: &[(SfuEventKind, u64)]) {
        let Some(m) = self.members.get_mut(&member) else { return };
        (m.in_sfu, m.feed) = (in_sfu, feed);
        let camera = feed.is_some();
        let updated = (m.info.camera != camera).then(|| {
            m.info.camera = camera;
            ParticipantUpdated { participant: m.info.clone() }
        });
        for &(event, feed) in events {
            self.broadcast(None, &Message::from(SfuEvent { participant: member, feed, event }));
        }
        if let Some(updated) = updated {
            self.broadcast(None, &Message::from(updated));
        }
    }

    /// The SFU stopped answering or answers again: everyone hears it once per change.
    fn sfu_reachable(&mut self, reachable: bool) {
        if self.sfu_out != reachable {
            return;
        }
        self.sfu_out = !reachable;
        self.broadcast(None, &Message::from(self.sfu_status()));
    }

    /// What a member joining while the SFU is out is told, after its membership.
    pub(super) fn sfu_outage(&self) -> Option<Message> {
        self.sfu_out.then(|| Message::from(self.sfu_status()))
    }

    fn sfu_status(&self) -> SfuStatus {
        let fallback_url = if self.sfu_out { self.config.sfu_fallback_url.clone() } else { String::new() };
        SfuStatus { reachable: !self.sfu_out, fallback_url }
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::message::{SfuJoin, SfuLeave};

    use std::time::Duration;

    use super::super::relay::tests::{from_b, zoe};
    use super::super::testing::{Sim, clustered, room};
    use super::super::{Config, RelayBatch, Relayed};
    use super::*;

    fn sfu_ops(sim: &mut Sim) -> Vec<SfuOp> {
        sim.take_other()
            .into_iter()
            .filter_map(|o| match o {
                Output::Sfu(op) => Some(op),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sfu_signalling_is_checked_by_role_and_sfu_events_drive_the_camera_flag() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config { students_publish: false, ..Config::default() }, t0));
        let a = sim.join(t0, "ada");
        let b = sim.join(t0, "bob");
        sim.messages(a);
        sim.messages(b);
        let faults = |sim: &mut Sim, m: u16| -> Vec<(u16, u8)> {
            sim.messages(m)
                .into_iter()
                .filter_map(|m| match m {
                    Message::Fault(f) => Some((f.code, f.kind)),
                    _ => None,
                })
                .collect()
        };

        sim.room.handle_sfu(t0, a, Message::from(SfuJoin { publish: true }));
        sim.drain();
        assert_eq!(
            faults(&mut sim, a),
            [(ErrorCode::Forbidden.to_u16(), Kind::SfuJoin.to_u8())],
            "students may not here"
        );
        sim.room.handle_sfu(t0, a, Message::from(SfuLeave { feed: 0 }));
        sim.drain();
        assert_eq!(faults(&mut sim, a), [(ErrorCode::UnexpectedMessage.to_u16(), Kind::SfuLeave.to_u8())]);
        assert!(sfu_ops(&mut sim).is_empty(), "nothing refused reaches the SFU");

        sim.room.handle_sfu(t0, a, Message::from(SfuJoin { publish: false }));
        sim.drain();
        let asked =
            SfuOp::Join { participant: a, display: "ada".into(), access: Access::Subscribe, publish: false };
        assert_eq!(sfu_ops(&mut sim), [asked]);

        sim.room.handle_sfu_news(t0, a, SfuNews::Event(PeerEvent::Publishing { feed: 7 }));
        assert_eq!(sfu_seen(&mut sim, b), [format!("Publishing {a} 7"), format!("camera {a} true")]);
        let c = sim.join(t0, "cyd");
        let told = sim.messages(c).into_iter().any(|m| {
            matches!(m, Message::SfuEvent(e) if e.participant == a && e.feed == 7 && e.event == SfuEventKind::Publishing)
        });
        assert!(told, "a newcomer learns who publishes which feed");

        sim.room.handle_leave(t0, a, 0, ErrorCode::Normal);
        sim.drain();
        assert_eq!(sfu_ops(&mut sim), [SfuOp::Leave { participant: a }], "leaving the room leaves the SFU");
    }

    /// The SFU events and camera flags `member` was sent, as text.
    fn sfu_seen(sim: &mut Sim, member: u16) -> Vec<String> {
        sim.drain();
        sim.messages(member)
            .into_iter()
            .filter_map(|m| match m {
                Message::SfuEvent(e) => Some(format!("{:?} {} {}", e.event, e.participant, e.feed)),
                Message::ParticipantUpdated(u) => {
                    Some(format!("camera {} {}", u.participant.index, u.participant.camera))
                }
                _ => None,
            })
            .collect()
    }

    /// Zoe on node b, in the SFU room, publishing `feed`; and her number here.
    fn zoe_sfu(feed: Option<u64>) -> Relayed {
        Relayed { in_sfu: true, feed, ..zoe(None) }
    }

    fn zoe_number(sim: &Sim) -> u16 {
        sim.room.members.iter().find(|(_, m)| m.info.user == "zoe").map(|(i, _)| *i).expect("zoe is here")
    }

    #[test]
    fn a_remote_members_feed_is_told_to_local_members_under_their_number() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join(t0, "ada");
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe(None)], vec![]));
        let z = zoe_number(&sim);
        assert_ne!(z, 7, "this node's number, not b's");
        // Announced: her changes are news from now on.
        sim.advance(t0 + sim.room.config.tick);
        assert_eq!(sfu_seen(&mut sim, ada), [] as [String; 0], "not in the SFU room: nothing");

        sim.room.handle_remote_presence(t0, from_b(false, vec![zoe_sfu(None)], vec![]));
        assert_eq!(sfu_seen(&mut sim, ada), [format!("Joined {z} 0")]);
        sim.room.handle_remote_presence(t0, from_b(false, vec![zoe_sfu(Some(70))], vec![]));
        assert_eq!(sfu_seen(&mut sim, ada), [format!("Publishing {z} 70"), format!("camera {z} true")]);
        // A refresh repeating it is no news.
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe_sfu(Some(70))], vec![]));
        assert_eq!(sfu_seen(&mut sim, ada), [] as [String; 0]);

        let cyd = sim.join(t0, "cyd");
        let told: Vec<String> =
            sfu_seen(&mut sim, cyd).into_iter().filter(|e| e.starts_with("Pub")).collect();
        assert_eq!(told, [format!("Publishing {z} 70")], "a newcomer is told the remote publisher");

        // Another feed (she published again), then none.
        sim.room.handle_remote_presence(t0, from_b(false, vec![zoe_sfu(Some(71))], vec![]));
        assert_eq!(sfu_seen(&mut sim, ada), [format!("Unpublished {z} 70"), format!("Publishing {z} 71")]);
        sim.room.handle_remote_presence(t0, from_b(false, vec![zoe_sfu(None)], vec![]));
        assert_eq!(sfu_seen(&mut sim, ada), [format!("Unpublished {z} 71"), format!("camera {z} false")]);
        assert!(!sim.room.members[&z].info.camera);

        // Publishing when she leaves the room: her feed goes with her.
        sim.room.handle_remote_presence(t0, from_b(false, vec![zoe_sfu(Some(72))], vec![]));
        sfu_seen(&mut sim, ada);
        sim.room.handle_remote_presence(t0, from_b(false, vec![], vec![(7, 0)]));
        assert_eq!(sfu_seen(&mut sim, ada), [format!("Unpublished {z} 72"), format!("Left {z} 0")]);
        assert!(!sim.room.members.contains_key(&z));
    }

    #[test]
    fn a_counted_out_nodes_publisher_loses_its_feed_and_a_resume_elsewhere_starts_afresh() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join(t0, "ada");
        sim.room.handle_remote_presence(t0, from_b(true, vec![zoe_sfu(Some(70))], vec![]));
        let z = zoe_number(&sim);
        let first: Vec<String> = sfu_seen(&mut sim, ada);
        assert_eq!(
            first,
            [format!("Joined {z} 0"), format!("Publishing {z} 70")],
            "her camera is in her listing"
        );
        sim.advance(t0 + sim.room.config.tick);
        assert!(sim.room.members[&z].info.camera);

        sim.room.handle_node_left(t0, "b");
        assert_eq!(
            sfu_seen(&mut sim, ada),
            [format!("Unpublished {z} 70"), format!("Left {z} 0"), format!("camera {z} false")]
        );
        assert_eq!(sim.room.len(), 2, "she is away, not gone");
        let dan = sim.join(t0, "dan");
        assert!(sfu_seen(&mut sim, dan).iter().all(|e| !e.starts_with("Pub")), "no dead feed for a newcomer");

        // She resumed on c and publishes anew there.
        let on_c = RelayBatch {
            origin: "c@5".into(),
            node: "c".into(),
            full: true,
            members: vec![Relayed { index: 2, ..zoe_sfu(Some(90)) }],
            left: vec![],
        };
        sim.room.handle_remote_presence(t0 + Duration::from_secs(1), on_c);
        assert_eq!(
            sfu_seen(&mut sim, ada),
            [format!("Joined {z} 0"), format!("Publishing {z} 90"), format!("camera {z} true")]
        );
    }

    #[test]
    fn a_local_members_sfu_state_goes_out_in_the_next_relay_batch() {
        let t0 = Instant::now();
        let mut sim = clustered(t0);
        let ada = sim.join(t0, "ada");
        sim.room.handle_sfu(t0, ada, Message::from(SfuJoin { publish: true }));
        // Her arrival's batch goes out first.
        sim.advance(t0 + sim.room.config.tick);
        sim.take_other();
        let t1 = t0 + Duration::from_millis(500);
        sim.room.handle_sfu_news(t1, ada, SfuNews::Event(PeerEvent::Publishing { feed: 70 }));
        sim.advance(t1 + sim.room.config.tick);
        let relayed: Vec<(bool, bool, Option<u64>)> = sim
            .take_other()
            .into_iter()
            .filter_map(|o| match o {
                Output::Relay(b) => {
                    let full = b.full;
                    b.members.into_iter().find(|m| m.index == ada).map(|m| (full, m.in_sfu, m.feed))
                }
                _ => None,
            })
            .collect();
        assert_eq!(relayed, [(false, true, Some(70))], "a batch of what changed, with her feed");
    }
}

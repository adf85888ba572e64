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
    /// SFU-side event everyone hears (`SfuEvent`), with the camera flag following publishing.
    pub fn handle_sfu_news(&mut self, member: u16, news: SfuNews) {
        let event = match news {
            SfuNews::Reply(message) => return self.send(member, message),
            SfuNews::Event(PeerEvent::Candidate { feed, candidate }) => {
                return self.send(member, crate::sfu::candidate_message(feed, candidate));
            }
            SfuNews::Event(event) => event,
            SfuNews::Reachable(reachable) => return self.sfu_reachable(reachable),
        };
        let (kind, feed, camera) = match event {
            PeerEvent::Joined => (SfuEventKind::Joined, 0, None),
            PeerEvent::Publishing { feed } => (SfuEventKind::Publishing, feed, Some(true)),
            PeerEvent::Unpublished { feed } => (SfuEventKind::Unpublished, feed, Some(false)),
            PeerEvent::Left => (SfuEventKind::Left, 0, Some(false)),
            PeerEvent::Candidate { .. } => return,
        };
        let Some(m) = self.members.get_mut(&member) else {
            // Gone from the room already: others still learn its feed is gone.
            if matches!(kind, SfuEventKind::Unpublished | SfuEventKind::Left) {
                let event = SfuEvent { participant: member, feed, event: kind };
                self.broadcast(None, &Message::from(event));
            }
            return;
        };
        match kind {
            SfuEventKind::Publishing => m.feed = Some(feed),
            SfuEventKind::Unpublished => m.feed = None,
            SfuEventKind::Left => {
                m.feed = None;
                m.in_sfu = false;
            }
            SfuEventKind::Joined => {}
        }
        let updated = match camera {
            Some(on) if m.info.camera != on => {
                m.info.camera = on;
                Some(ParticipantUpdated { participant: m.info.clone() })
            }
            _ => None,
        };
        self.broadcast(None, &Message::from(SfuEvent { participant: member, feed, event: kind }));
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

    use super::super::Config;
    use super::super::testing::{Sim, room};
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

        sim.room.handle_sfu_news(a, SfuNews::Event(PeerEvent::Publishing { feed: 7 }));
        sim.drain();
        let seen: Vec<String> = sim
            .messages(b)
            .into_iter()
            .filter_map(|m| match m {
                Message::SfuEvent(e) => Some(format!("{:?} {} {}", e.event, e.participant, e.feed)),
                Message::ParticipantUpdated(u) => {
                    Some(format!("camera {} {}", u.participant.index, u.participant.camera))
                }
                _ => None,
            })
            .collect();
        assert_eq!(seen, [format!("Publishing {a} 7"), format!("camera {a} true")]);
        let c = sim.join(t0, "cyd");
        let told = sim.messages(c).into_iter().any(|m| {
            matches!(m, Message::SfuEvent(e) if e.participant == a && e.feed == 7 && e.event == SfuEventKind::Publishing)
        });
        assert!(told, "a newcomer learns who publishes which feed");

        sim.room.handle_leave(t0, a, 0, ErrorCode::Normal);
        sim.drain();
        assert_eq!(sfu_ops(&mut sim), [SfuOp::Leave { participant: a }], "leaving the room leaves the SFU");
    }
}

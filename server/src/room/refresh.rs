//! A member's token refreshed (SPEC §5.3), or a resume through a connection with another
//! token (§5.4): a changed role holds at once. Every permission
//! check reads `Member.info.role` when the request comes, so changing it there is the whole
//! change, but for what was decided earlier: the lecture's teacher count (the cursor cap) and
//! a video feed the new role may not publish.

use std::time::Instant;

use easel_proto::Message;
use easel_proto::message::{ParticipantUpdated, Role};
use easel_sfu_bridge::Access;

use super::{Output, Room};
use crate::sfu::SfuOp;

impl Room {
    /// Connection `conn` refreshed member `member`'s token, which still grants the room: it
    /// now has `role` and expires at `expires_ms` (a removal it makes holds until then).
    /// Everyone hears of a changed role (`ParticipantUpdated`). Ignored if the member has since
    /// been re-attached through another connection (that one has its own token).
    pub fn handle_refreshed(&mut self, now: Instant, member: u16, conn: u64, role: Role, expires_ms: u64) {
        let Some(m) = self.members.get_mut(&member).filter(|m| m.conn == conn) else { return };
        m.expires_ms = expires_ms;
        let was = m.info.role;
        if was == role {
            return;
        }
        m.info.role = role;
        let info = m.info.clone();
        let unpublish =
            m.feed.is_some() && !Access::for_role(role, self.config.students_publish).can_publish();
        // The cap counts teachers: a demoted one no longer holds it up, a promoted one does.
        self.spotlight_left(now, member, was);
        self.spotlight_joined(now, role);
        if unpublish {
            self.push(Output::Sfu(SfuOp::Unpublish { participant: member }));
        }
        self.broadcast(None, &Message::from(ParticipantUpdated { participant: info }));
    }
}

#[cfg(test)]
mod tests {
    use easel_proto::ErrorCode;
    use easel_proto::message::{ModAction, Moderate};

    use super::super::Config;
    use super::super::testing::{Sim, room};
    use super::*;

    fn updated_roles(sim: &mut Sim, member: u16) -> Vec<(u16, Role)> {
        sim.messages(member)
            .into_iter()
            .filter_map(|m| match m {
                Message::ParticipantUpdated(p) => Some((p.participant.index, p.participant.role)),
                _ => None,
            })
            .collect()
    }

    fn forbidden(sim: &mut Sim, member: u16) -> bool {
        sim.messages(member)
            .iter()
            .any(|m| matches!(m, Message::Fault(f) if f.code == ErrorCode::Forbidden.to_u16()))
    }

    #[test]
    fn a_demoted_teacher_loses_moderation_at_once_and_everyone_hears_the_new_role() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        sim.messages(t);
        sim.messages(a);

        sim.room.handle_refreshed(t0, t, 0, Role::Student, 1_000);
        sim.drain();
        assert_eq!(updated_roles(&mut sim, a), [(t, Role::Student)], "others see the new role");
        assert_eq!(updated_roles(&mut sim, t), [(t, Role::Student)], "and so does the member");
        let mute = Moderate { target: a, action: ModAction::MuteChat, reason: String::new() };
        sim.room.handle_class(t0, t, Message::from(mute.clone()));
        sim.drain();
        assert!(forbidden(&mut sim, t), "a student does not moderate");

        // Promoted, the other way round: it moderates at once.
        sim.room.handle_refreshed(t0, a, 0, Role::Teacher, 1_000);
        sim.room.handle_class(t0, a, Message::from(Moderate { target: t, ..mute }));
        sim.drain();
        assert!(!forbidden(&mut sim, a));
        assert!(
            sim.take_other().iter().any(|o| matches!(o, Output::Side { .. })),
            "the moderation is stored"
        );
    }

    #[test]
    fn a_feed_the_new_role_may_not_publish_is_stopped() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let publishing = crate::sfu::SfuNews::Event(easel_sfu_bridge::PeerEvent::Publishing { feed: 5 });
        sim.room.handle_sfu_news(t0, t, publishing);
        sim.drain();
        sim.take_other();
        sim.room.handle_refreshed(t0, t, 0, Role::Student, 1_000);
        sim.drain();
        assert!(sim.take_other().is_empty(), "students publish here");
        sim.room.handle_refreshed(t0, t, 0, Role::Viewer, 1_000);
        sim.drain();
        let other = sim.take_other();
        assert!(
            matches!(other[..], [Output::Sfu(SfuOp::Unpublish { participant })] if participant == t),
            "{other:?}"
        );
    }

    #[test]
    fn a_resume_with_another_role_applies_it() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        sim.room.handle_detach(t0, t, 0);
        sim.drain();
        sim.messages(a);
        // The helper's arrivals are students'.
        let back = sim.join_with(t0, "tess", 1, Some(t), 64);
        assert!(back.resumed && back.participant == t);
        assert_eq!(updated_roles(&mut sim, a), [(t, Role::Student)]);
        let mute = Moderate { target: a, action: ModAction::MuteChat, reason: String::new() };
        sim.room.handle_class(t0, t, Message::from(mute));
        sim.drain();
        assert!(forbidden(&mut sim, t), "resumed as a student");
    }

    #[test]
    fn the_same_role_is_quiet_and_another_connections_refresh_is_ignored() {
        let t0 = Instant::now();
        let mut sim = Sim::new(room(Config::default(), t0));
        let t = sim.join_as(t0, "tess", Role::Teacher);
        let a = sim.join(t0, "ada");
        sim.messages(a);
        sim.room.handle_refreshed(t0, t, 0, Role::Teacher, 1_000);
        sim.room.handle_refreshed(t0, t, 7, Role::Viewer, 1_000);
        sim.drain();
        assert!(updated_roles(&mut sim, a).is_empty());
        let mute = Moderate { target: a, action: ModAction::MuteChat, reason: String::new() };
        sim.room.handle_class(t0, t, Message::from(mute));
        sim.drain();
        assert!(!forbidden(&mut sim, t), "still a teacher");
    }
}

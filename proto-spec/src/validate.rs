//! Semantic checks of every message against the limits in [`crate::limits`], run on encode and
//! after every structural decode.

use crate::Error;
use crate::datagram::{Cursor, CursorBatch, Heartbeat, PresenceBatch};
use crate::limits::*;
use crate::message::*;

/// A message whose fields can be checked against the protocol limits.
pub(crate) trait Validate {
    /// Ok, or the first field that breaks a limit.
    fn validate(&self) -> Result<(), Error>;
}

/// Field checker for one message kind.
struct Check(&'static str);

impl Check {
    fn fail(&self, field: &'static str, problem: String) -> Error {
        Error::InvalidField { kind: self.0, field, problem }
    }

    fn len(
        &self,
        field: &'static str,
        len: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<(), Error> {
        if range.contains(&len) {
            Ok(())
        } else {
            Err(self.fail(field, format!("length {len} outside {}..={}", range.start(), range.end())))
        }
    }

    fn max(&self, field: &'static str, len: usize, max: usize) -> Result<(), Error> {
        self.len(field, len, 0..=max)
    }

    fn room(&self, field: &'static str, id: &str) -> Result<(), Error> {
        crate::room::validate_id(id).map_err(|p| self.fail(field, p))
    }
}

macro_rules! nothing_to_check {
    ($($t:ty),* $(,)?) => {$(
        impl Validate for $t {
            fn validate(&self) -> Result<(), Error> {
                Ok(())
            }
        }
    )*};
}

nothing_to_check!(
    Ping,
    Pong,
    TokenRefreshed,
    Leave,
    ChatDelete,
    ChatDeleted,
    PollAnswered,
    PollClose,
    HandRaise,
    HandLower,
    SetCursorCap,
    CursorCap,
    SfuJoin,
    SfuLeave,
    SfuEvent,
    Cursor,
    Heartbeat,
);

impl Validate for Hello {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("Hello");
        c.len("versions", self.versions.len(), 1..=MAX_VERSIONS)?;
        c.max("client_id", self.client_id.len(), MAX_NAME_LEN)?;
        c.max("client", self.client.len(), MAX_NAME_LEN)?;
        c.max("token", self.token.len(), MAX_TOKEN_LEN)?;
        if let Some(resume) = &self.resume {
            c.len("resume", resume.len(), 1..=MAX_RESUME_TOKEN_LEN)?;
        }
        Ok(())
    }
}

impl Validate for Welcome {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("Welcome");
        c.max("user", self.user.len(), MAX_NAME_LEN)?;
        c.len("resume_token", self.resume_token.len(), 1..=MAX_RESUME_TOKEN_LEN)?;
        let l = &self.limits;
        if l.max_frame_len as usize > MAX_FRAME_LEN || (l.max_frame_len as usize) < MAX_PREAUTH_FRAME_LEN {
            return Err(c.fail(
                "limits.max_frame_len",
                format!("{} outside {MAX_PREAUTH_FRAME_LEN}..={MAX_FRAME_LEN}", l.max_frame_len),
            ));
        }
        if l.max_datagram_len as usize > MAX_DATAGRAM_LEN {
            return Err(c.fail(
                "limits.max_datagram_len",
                format!("{} above {MAX_DATAGRAM_LEN}", l.max_datagram_len),
            ));
        }
        if l.max_rooms == 0 || l.max_rooms > MAX_ROOMS_PER_CONNECTION {
            return Err(c.fail(
                "limits.max_rooms",
                format!("{} outside 1..={MAX_ROOMS_PER_CONNECTION}", l.max_rooms),
            ));
        }
        if l.tick_hz == 0 {
            return Err(c.fail("limits.tick_hz", "must be at least 1".into()));
        }
        Ok(())
    }
}

impl Validate for RefreshToken {
    fn validate(&self) -> Result<(), Error> {
        Check("RefreshToken").len("token", self.token.len(), 1..=MAX_TOKEN_LEN)
    }
}

impl Validate for GoAway {
    fn validate(&self) -> Result<(), Error> {
        Check("GoAway").max("message", self.message.len(), MAX_REASON_LEN)
    }
}

impl Validate for Fault {
    fn validate(&self) -> Result<(), Error> {
        Check("Fault").max("message", self.message.len(), MAX_REASON_LEN)
    }
}

impl Validate for Join {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("Join");
        c.room("room", &self.room)?;
        c.max("name", self.name.len(), MAX_NAME_LEN)?;
        if let Some(since) = &self.since {
            c.len("since", since.len(), 1..=MAX_VERSION_VECTOR_LEN)?;
        }
        Ok(())
    }
}

impl Validate for Participant {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("Participant");
        c.max("user", self.user.len(), MAX_NAME_LEN)?;
        c.max("name", self.name.len(), MAX_NAME_LEN)
    }
}

impl Validate for Joined {
    fn validate(&self) -> Result<(), Error> {
        Check("Joined").room("room", &self.room)
    }
}

impl Validate for Left {
    fn validate(&self) -> Result<(), Error> {
        Check("Left").max("message", self.message.len(), MAX_REASON_LEN)
    }
}

impl Validate for Participants {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("Participants");
        c.max("joined", self.joined.len(), MAX_PARTICIPANTS)?;
        c.max("left", self.left.len(), MAX_PARTICIPANTS)?;
        if self.full && !self.left.is_empty() {
            return Err(c.fail("left", "a full list lists nobody leaving".into()));
        }
        self.joined.iter().try_for_each(Validate::validate)
    }
}

impl Validate for ParticipantUpdated {
    fn validate(&self) -> Result<(), Error> {
        self.participant.validate()
    }
}

impl Validate for Update {
    fn validate(&self) -> Result<(), Error> {
        Check("Update").len("data", self.data.len(), 1..=MAX_FRAME_LEN)
    }
}

impl Validate for Ack {
    fn validate(&self) -> Result<(), Error> {
        Check("Ack").len("op_ids", self.op_ids.len(), 1..=MAX_ACK_OPS)
    }
}

impl Validate for Reject {
    fn validate(&self) -> Result<(), Error> {
        Check("Reject").max("message", self.message.len(), MAX_REASON_LEN)
    }
}

impl Validate for RemoteUpdate {
    fn validate(&self) -> Result<(), Error> {
        Check("RemoteUpdate").len("data", self.data.len(), 1..=MAX_FRAME_LEN)
    }
}

impl Validate for Sync {
    fn validate(&self) -> Result<(), Error> {
        Check("Sync").len("since", self.since.len(), 1..=MAX_VERSION_VECTOR_LEN)
    }
}

impl Validate for SnapshotBegin {
    fn validate(&self) -> Result<(), Error> {
        Check("SnapshotBegin").max("version", self.version.len(), MAX_VERSION_VECTOR_LEN)
    }
}

impl Validate for SnapshotChunk {
    fn validate(&self) -> Result<(), Error> {
        Check("SnapshotChunk").len("data", self.data.len(), 1..=MAX_FRAME_LEN)
    }
}

impl Validate for ChatSend {
    fn validate(&self) -> Result<(), Error> {
        Check("ChatSend").len("text", self.text.len(), 1..=MAX_CHAT_LEN)
    }
}

impl Validate for ChatMessage {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("ChatMessage");
        c.max("user", self.user.len(), MAX_NAME_LEN)?;
        c.max("name", self.name.len(), MAX_NAME_LEN)?;
        c.len("text", self.text.len(), 1..=MAX_CHAT_LEN)
    }
}

impl Validate for ChatHistory {
    fn validate(&self) -> Result<(), Error> {
        Check("ChatHistory").len("limit", usize::from(self.limit), 1..=MAX_CHAT_PAGE)
    }
}

impl Validate for ChatPage {
    fn validate(&self) -> Result<(), Error> {
        Check("ChatPage").max("messages", self.messages.len(), MAX_CHAT_PAGE)?;
        self.messages.iter().try_for_each(Validate::validate)
    }
}

/// The checks [`PollStart`] and [`PollStarted`] share.
fn poll(c: &Check, question: &str, options: &[String]) -> Result<(), Error> {
    c.len("question", question.len(), 1..=MAX_POLL_QUESTION_LEN)?;
    c.len("options", options.len(), POLL_OPTIONS)?;
    options.iter().try_for_each(|o| c.len("options[]", o.len(), 1..=MAX_POLL_OPTION_LEN))
}

impl Validate for PollStart {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("PollStart");
        poll(&c, &self.question, &self.options)?;
        if self.duration_ms > MAX_POLL_DURATION_MS {
            return Err(c.fail("duration_ms", format!("{} above {MAX_POLL_DURATION_MS}", self.duration_ms)));
        }
        Ok(())
    }
}

impl Validate for PollStarted {
    fn validate(&self) -> Result<(), Error> {
        poll(&Check("PollStarted"), &self.question, &self.options)
    }
}

impl Validate for PollAnswer {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("PollAnswer");
        c.len("choices", self.choices.len(), 1..=*POLL_OPTIONS.end())?;
        let mut seen = 0u32;
        for &choice in &self.choices {
            if usize::from(choice) >= *POLL_OPTIONS.end() || seen & (1 << choice) != 0 {
                return Err(c.fail("choices", format!("option {choice} is out of range or repeated")));
            }
            seen |= 1 << choice;
        }
        Ok(())
    }
}

impl Validate for PollResults {
    fn validate(&self) -> Result<(), Error> {
        Check("PollResults").len("counts", self.counts.len(), POLL_OPTIONS)
    }
}

impl Validate for HandQueue {
    fn validate(&self) -> Result<(), Error> {
        Check("HandQueue").max("queue", self.queue.len(), MAX_HAND_QUEUE)
    }
}

impl Validate for Moderate {
    fn validate(&self) -> Result<(), Error> {
        Check("Moderate").max("reason", self.reason.len(), MAX_REASON_LEN)
    }
}

impl Validate for Moderated {
    fn validate(&self) -> Result<(), Error> {
        Check("Moderated").max("reason", self.reason.len(), MAX_REASON_LEN)
    }
}

impl Validate for SfuGrant {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("SfuGrant");
        c.max("ice_servers", self.ice_servers.len(), MAX_ICE_SERVERS)?;
        self.ice_servers.iter().try_for_each(|s| c.len("ice_servers[]", s.len(), 1..=MAX_CANDIDATE_LEN))
    }
}

impl Validate for SfuStatus {
    fn validate(&self) -> Result<(), Error> {
        Check("SfuStatus").max("fallback_url", self.fallback_url.len(), MAX_CANDIDATE_LEN)
    }
}

impl Validate for SfuSubscribe {
    fn validate(&self) -> Result<(), Error> {
        Check("SfuSubscribe").len("feeds", self.feeds.len(), 1..=MAX_FEEDS)
    }
}

impl Validate for SfuSdp {
    fn validate(&self) -> Result<(), Error> {
        Check("SfuSdp").len("sdp", self.sdp.len(), 1..=MAX_SDP_LEN)
    }
}

impl Validate for SfuCandidate {
    fn validate(&self) -> Result<(), Error> {
        let c = Check("SfuCandidate");
        c.max("candidate", self.candidate.len(), MAX_CANDIDATE_LEN)?;
        c.max("mid", self.mid.len(), MAX_CANDIDATE_LEN)
    }
}

impl Validate for CursorBatch {
    fn validate(&self) -> Result<(), Error> {
        Check("CursorBatch").max("cursors", self.cursors.len(), CursorBatch::MAX_ENTRIES)
    }
}

impl Validate for PresenceBatch {
    fn validate(&self) -> Result<(), Error> {
        Check("PresenceBatch").max("entries", self.entries.len(), PresenceBatch::MAX_ENTRIES)
    }
}

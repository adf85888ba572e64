//! # easel-sfu-bridge — hands classroom video to an external SFU
//!
//! Layer: above `easel-proto`, below `easel-server`. It knows Easel roles and wire codes,
//! never Easel rooms or transports.
//!
//! ```text
//! easel-proto ← easel-transport ← {easel-server, easel-client} ← {easel-benches, easel-netsim}
//! easel-proto ← easel-sfu-bridge (the SFU relay) ← easel-server
//! ```
//!
//! Contract: an [`Sfu`] maps an Easel room to an SFU room ([`Sfu::ensure_room`]) and lets a
//! participant in with what its Easel role allows ([`Sfu::join`], [`Access::for_role`]); the
//! returned [`SfuPeer`] relays that participant's signalling (SDP offer/answer, trickle ICE)
//! for its own publisher (wire feed 0) and its subscriptions (the subscribed feed's id), and
//! reports what happens on the SFU side as [`PeerEvent`]s (joined, publishing, unpublished,
//! left) on the channel given at join. Every failure is an [`SfuError`] with a wire code
//! ([`SfuError::code`]); nothing from the network panics.
//!
//! The first adapter is Janus VideoRoom over Janus's WebSocket API ([`janus::Janus`]): one
//! Janus session with keep-alives, one handle per publisher and per subscription, rooms
//! created with the VideoRoom `admin_key`, and a new session (with every peer told it left)
//! when Janus restarts.

use easel_proto::ErrorCode;
use easel_proto::message::Role;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

pub mod janus;

/// What a participant may do in the SFU room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Publish its own feed, and subscribe.
    Publish,
    /// Subscribe only.
    Subscribe,
}

impl Access {
    /// SPEC §6.4: a teacher may publish; a student when the room allows it; a viewer never.
    pub fn for_role(role: Role, students_publish: bool) -> Self {
        match role {
            Role::Teacher => Self::Publish,
            Role::Student if students_publish => Self::Publish,
            Role::Student | Role::Viewer => Self::Subscribe,
        }
    }

    /// Whether publishing is allowed.
    pub fn can_publish(self) -> bool {
        self == Self::Publish
    }
}

/// Who joins an SFU room, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    /// The Easel room id.
    pub room: String,
    /// The participant's number in the Easel room.
    pub participant: u16,
    /// Its display name (shown by the SFU's own tools).
    pub display: String,
    /// What its role allows.
    pub access: Access,
    /// Whether it asks to publish now (refused with [`SfuError::Forbidden`] without
    /// [`Access::Publish`]).
    pub publish: bool,
}

/// What a participant was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Whether it may publish.
    pub can_publish: bool,
    /// ICE server URLs (STUN/TURN) for its peer connections.
    pub ice_servers: Vec<String>,
}

/// A trickle ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The `candidate:` line.
    pub candidate: String,
    /// Its media id (`sdpMid`).
    pub mid: String,
    /// Its m-line index.
    pub mline_index: u16,
}

/// Something that happened to a participant on the SFU side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// It is in the SFU room (it may subscribe).
    Joined,
    /// Its publisher's media is up under this feed id (camera on).
    Publishing {
        /// The feed id others subscribe to.
        feed: u64,
    },
    /// Its publisher is gone (camera off).
    Unpublished {
        /// The feed id it had.
        feed: u64,
    },
    /// It is out of the SFU room: it left, or the SFU lost it (a restart).
    Left,
    /// The SFU trickled an ICE candidate for one of its peer connections.
    Candidate {
        /// Wire feed: 0 for its own publisher, else the subscribed feed.
        feed: u64,
        /// The candidate; `None` at the end of candidates.
        candidate: Option<Candidate>,
    },
}

/// An SFU adapter: rooms and who is in them.
pub trait Sfu: Send + Sync {
    /// Makes sure the SFU has a room for Easel room `room` (idempotent).
    fn ensure_room<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), SfuError>>;

    /// Lets a participant into the SFU room for `request.room` (ensuring the room) with what
    /// its access allows; as a publisher when `request.publish`. Its SFU-side events go to
    /// `events`, starting with [`PeerEvent::Joined`].
    fn join(
        &self,
        request: PeerRequest,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> BoxFuture<'_, Result<Joined, SfuError>>;
}

/// A participant let into an SFU room: its place there, and what it was granted.
pub type Joined = (Box<dyn SfuPeer>, Grant);

/// One participant's place in an SFU room. Calls are made one at a time, in the order the
/// client's signalling arrived.
pub trait SfuPeer: Send {
    /// Publishes: relays the client's SDP offer for its own feed and returns the SFU's answer.
    fn offer(&mut self, sdp: String) -> BoxFuture<'_, Result<String, SfuError>>;

    /// Subscribes to `feed`; returns the SFU's SDP offer for it.
    fn subscribe(&mut self, feed: u64) -> BoxFuture<'_, Result<String, SfuError>>;

    /// Relays the client's SDP answer to the SFU's offer for `feed`.
    fn answer(&mut self, feed: u64, sdp: String) -> BoxFuture<'_, Result<(), SfuError>>;

    /// Relays a client ICE candidate for wire feed `feed` (0: its publisher); `None` ends them.
    fn candidate(&mut self, feed: u64, candidate: Option<Candidate>) -> BoxFuture<'_, Result<(), SfuError>>;

    /// Tears its publisher down (it stays in the room and keeps its subscriptions).
    fn unpublish(&mut self) -> BoxFuture<'_, Result<(), SfuError>>;

    /// Drops its subscription to `feed`.
    fn unsubscribe(&mut self, feed: u64) -> BoxFuture<'_, Result<(), SfuError>>;

    /// Leaves the SFU room: publisher and subscriptions torn down, [`PeerEvent::Left`] sent.
    fn leave(&mut self) -> BoxFuture<'_, Result<(), SfuError>>;
}

/// Why an SFU request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The SFU cannot be reached (down, restarting, connection lost).
    #[error("SFU unavailable: {0}")]
    Unavailable(String),
    /// The SFU did not answer in time.
    #[error("SFU did not answer {request} in time")]
    Timeout {
        /// The request.
        request: String,
    },
    /// The SFU refused the request.
    #[error("SFU refused {request}: {reason} ({code})")]
    Rejected {
        /// The request.
        request: String,
        /// The SFU's own error code.
        code: i64,
        /// The SFU's reason.
        reason: String,
    },
    /// The participant's access does not allow this (a subscriber asking to publish).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The request does not fit the peer's state (an answer with no offer, an unknown feed).
    #[error("unexpected in this state: {0}")]
    State(String),
    /// The SFU answered with something this adapter does not understand.
    #[error("unexpected SFU reply to {request}: {detail}")]
    Protocol {
        /// The request.
        request: String,
        /// What was wrong.
        detail: String,
    },
}

impl SfuError {
    /// The wire code a client is refused with (SPEC §13, §14.1).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) | Self::Timeout { .. } => ErrorCode::SfuUnavailable,
            Self::Rejected { .. } | Self::Protocol { .. } => ErrorCode::SfuRejected,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::State(_) => ErrorCode::UnexpectedMessage,
        }
    }

    /// What failed on the SFU's side, as a metric label (`unavailable`, `timeout`,
    /// `rejected`, `protocol`); `None` for the client's own mistakes (forbidden, out of
    /// state), which say nothing about the SFU's health.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Self::Unavailable(_) => Some("unavailable"),
            Self::Timeout { .. } => Some("timeout"),
            Self::Rejected { .. } => Some("rejected"),
            Self::Protocol { .. } => Some("protocol"),
            Self::Forbidden(_) | Self::State(_) => None,
        }
    }

    /// Whether the SFU cannot be reached (down, restarting, not answering): the room is told
    /// its video is out until a probe gets through.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_access_as_the_spec_says() {
        assert_eq!(Access::for_role(Role::Teacher, false), Access::Publish);
        assert_eq!(Access::for_role(Role::Student, true), Access::Publish);
        assert_eq!(Access::for_role(Role::Student, false), Access::Subscribe);
        assert_eq!(Access::for_role(Role::Viewer, true), Access::Subscribe);
    }

    #[test]
    fn errors_carry_the_spec_codes() {
        let rejected = SfuError::Rejected { request: "join".into(), code: 426, reason: "no room".into() };
        assert_eq!(rejected.code(), ErrorCode::SfuRejected);
        assert_eq!(SfuError::Unavailable("down".into()).code(), ErrorCode::SfuUnavailable);
        assert_eq!(SfuError::Forbidden("viewer".into()).code(), ErrorCode::Forbidden);
    }

    #[test]
    fn only_the_sfus_own_failures_have_a_kind_and_only_unreachable_is_an_outage() {
        let timeout = SfuError::Timeout { request: "join".into() };
        assert_eq!(timeout.kind(), Some("timeout"));
        assert!(timeout.is_outage());
        let rejected = SfuError::Rejected { request: "join".into(), code: 426, reason: "no room".into() };
        assert_eq!(rejected.kind(), Some("rejected"));
        assert!(!rejected.is_outage());
        assert_eq!(SfuError::State("no offer".into()).kind(), None);
        assert_eq!(SfuError::Forbidden("viewer".into()).kind(), None);
    }
}

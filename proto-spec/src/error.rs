//! Wire error codes (stable numbers, SPEC.md §Errors) and the crate's typed decode/encode error.

/// Status codes carried on the wire in `Error`, `Reject`, `Left`, `Participants` and
/// `GoAway`. The numbers are part of the protocol and never change meaning; a test pins them.
/// Receivers must tolerate numbers they do not know ([`ErrorCode::from_u16`] returns `None`)
/// and treat them by their hundreds class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not an error: a normal leave or close.
    Normal = 0,

    /// Bytes that do not decode as the message their kind names.
    Malformed = 100,
    /// A kind byte this peer does not know.
    UnknownKind = 101,
    /// A stream frame longer than the frame limit.
    FrameTooLarge = 102,
    /// A datagram longer than the datagram limit.
    DatagramTooLarge = 103,
    /// A field outside its limit or format (string too long, bad room id, empty list…).
    InvalidField = 104,
    /// A valid message on the wrong channel or in the wrong state (e.g. Join before Welcome).
    UnexpectedMessage = 105,
    /// No protocol version in common.
    UnsupportedVersion = 106,

    /// Hello carried no token.
    Unauthenticated = 200,
    /// The token is malformed or its signature does not verify.
    InvalidToken = 201,
    /// The token has expired.
    TokenExpired = 202,
    /// The token does not grant this room.
    RoomNotAllowed = 203,
    /// The sender's role may not do this (a viewer's edit, a student's moderation).
    Forbidden = 204,
    /// A teacher removed this participant; its token is refused for the room until it expires.
    Removed = 205,
    /// A teacher made this participant read-only; board updates are refused.
    ReadOnly = 206,
    /// A teacher muted this participant's chat.
    ChatMuted = 207,
    /// The resume token is unknown or its grace window has passed; a fresh session was made.
    ResumeRejected = 208,
    /// The token was revoked (its user's tokens up to a time, or this token by id); a new
    /// token is needed.
    TokenRevoked = 209,

    /// A rate limit was exceeded; the message was dropped.
    RateLimited = 300,
    /// The connection already has the maximum number of rooms joined.
    TooManyRooms = 301,
    /// The room has its maximum number of participants.
    RoomFull = 302,
    /// The peer did not read fast enough and a reliable queue overflowed; the session closes.
    SlowConsumer = 303,
    /// The handshake did not complete in time.
    HandshakeTimeout = 304,
    /// The server is overloaded; retry after the delay given in `GoAway`.
    Overloaded = 305,
    /// No heartbeat or other traffic within the presence TTL; the participant was evicted.
    PresenceTimeout = 306,

    /// A room-stream message arrived before Join or after Leave.
    NotJoined = 400,
    /// Join for a room this connection already joined.
    AlreadyJoined = 401,
    /// A CRDT update the document refused to import; the document is unchanged.
    InvalidUpdate = 402,
    /// The poll, chat message or participant named does not exist.
    NotFound = 403,
    /// An answer to a poll that is closed.
    PollClosed = 404,

    /// A server fault; the request may be retried.
    Internal = 500,
    /// The server is shutting down; reconnect (to it or another node) after the hinted delay.
    ShuttingDown = 501,
    /// Durable storage is unavailable; nothing was acked.
    StorageUnavailable = 502,
    /// No SFU is configured or it cannot be reached.
    SfuUnavailable = 503,
    /// The SFU refused the request.
    SfuRejected = 504,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: &[Self] = &[
        Self::Normal,
        Self::Malformed,
        Self::UnknownKind,
        Self::FrameTooLarge,
        Self::DatagramTooLarge,
        Self::InvalidField,
        Self::UnexpectedMessage,
        Self::UnsupportedVersion,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::TokenExpired,
        Self::RoomNotAllowed,
        Self::Forbidden,
        Self::Removed,
        Self::ReadOnly,
        Self::ChatMuted,
        Self::ResumeRejected,
        Self::TokenRevoked,
        Self::RateLimited,
        Self::TooManyRooms,
        Self::RoomFull,
        Self::SlowConsumer,
        Self::HandshakeTimeout,
        Self::Overloaded,
        Self::PresenceTimeout,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::InvalidUpdate,
        Self::NotFound,
        Self::PollClosed,
        Self::Internal,
        Self::ShuttingDown,
        Self::StorageUnavailable,
        Self::SfuUnavailable,
        Self::SfuRejected,
    ];

    /// The number sent on the wire.
    pub const fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire number, or `None` for a number this version does not know.
    pub fn from_u16(n: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.to_u16() == n)
    }

    /// Whether a client should reconnect (after the hinted delay) rather than give up.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Overloaded
                | Self::ShuttingDown
                | Self::Internal
                | Self::StorageUnavailable
                | Self::SlowConsumer
                | Self::HandshakeTimeout
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?} ({})", self.to_u16())
    }
}

/// Why bytes could not be decoded or a message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame whose length prefix exceeds the limit. The stream cannot be resynchronised.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Length announced by the prefix.
        len: u64,
        /// Limit in force.
        max: usize,
    },
    /// A datagram longer than the datagram limit.
    #[error("datagram of {len} bytes exceeds the limit of {max}")]
    DatagramTooLarge {
        /// Datagram length.
        len: usize,
        /// Limit in force.
        max: usize,
    },
    /// A frame or datagram with no kind byte.
    #[error("empty frame: no kind byte")]
    Empty,
    /// A kind byte this version does not define.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A known kind on the wrong channel (a datagram kind in a stream frame or vice versa).
    #[error("message kind 0x{kind:02x} is not allowed on {channel}")]
    WrongChannel {
        /// The kind byte.
        kind: u8,
        /// The channel it arrived on.
        channel: &'static str,
    },
    /// The body failed structural validation (rkyv/bytecheck).
    #[error("malformed {kind}: {source}")]
    Malformed {
        /// Name of the message kind.
        kind: &'static str,
        /// What bytecheck found.
        source: rkyv::rancor::Error,
    },
    /// The body is well-formed but a field breaks a protocol limit or format.
    #[error("invalid {kind}.{field}: {problem}")]
    InvalidField {
        /// Name of the message kind.
        kind: &'static str,
        /// Name of the field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A WebSocket envelope that does not parse.
    #[error("malformed WebSocket envelope: {0}")]
    Envelope(&'static str),
}

impl Error {
    /// The wire code a peer should send back (or close with) for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::DatagramTooLarge { .. } => ErrorCode::DatagramTooLarge,
            Self::UnknownKind(_) => ErrorCode::UnknownKind,
            Self::WrongChannel { .. } => ErrorCode::UnexpectedMessage,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
            Self::Empty | Self::Malformed { .. } | Self::Envelope(_) => ErrorCode::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire numbers are the protocol: this table may only grow.
    #[test]
    fn wire_codes_are_pinned() {
        let pinned: &[(ErrorCode, u16)] = &[
            (ErrorCode::Normal, 0),
            (ErrorCode::Malformed, 100),
            (ErrorCode::UnknownKind, 101),
            (ErrorCode::FrameTooLarge, 102),
            (ErrorCode::DatagramTooLarge, 103),
            (ErrorCode::InvalidField, 104),
            (ErrorCode::UnexpectedMessage, 105),
            (ErrorCode::UnsupportedVersion, 106),
            (ErrorCode::Unauthenticated, 200),
            (ErrorCode::InvalidToken, 201),
            (ErrorCode::TokenExpired, 202),
            (ErrorCode::RoomNotAllowed, 203),
            (ErrorCode::Forbidden, 204),
            (ErrorCode::Removed, 205),
            (ErrorCode::ReadOnly, 206),
            (ErrorCode::ChatMuted, 207),
            (ErrorCode::ResumeRejected, 208),
            (ErrorCode::TokenRevoked, 209),
            (ErrorCode::RateLimited, 300),
            (ErrorCode::TooManyRooms, 301),
            (ErrorCode::RoomFull, 302),
            (ErrorCode::SlowConsumer, 303),
            (ErrorCode::HandshakeTimeout, 304),
            (ErrorCode::Overloaded, 305),
            (ErrorCode::PresenceTimeout, 306),
            (ErrorCode::NotJoined, 400),
            (ErrorCode::AlreadyJoined, 401),
            (ErrorCode::InvalidUpdate, 402),
            (ErrorCode::NotFound, 403),
            (ErrorCode::PollClosed, 404),
            (ErrorCode::Internal, 500),
            (ErrorCode::ShuttingDown, 501),
            (ErrorCode::StorageUnavailable, 502),
            (ErrorCode::SfuUnavailable, 503),
            (ErrorCode::SfuRejected, 504),
        ];
        assert_eq!(pinned.len(), ErrorCode::ALL.len(), "a code is missing from the pin table");
        for &(code, n) in pinned {
            assert_eq!(code.to_u16(), n, "{code:?} changed its wire number");
            assert_eq!(ErrorCode::from_u16(n), Some(code));
        }
        // Exhaustive match: adding a variant without pinning it fails to compile here.
        for code in ErrorCode::ALL {
            let listed = match code {
                ErrorCode::Normal
                | ErrorCode::Malformed
                | ErrorCode::UnknownKind
                | ErrorCode::FrameTooLarge
                | ErrorCode::DatagramTooLarge
                | ErrorCode::InvalidField
                | ErrorCode::UnexpectedMessage
                | ErrorCode::UnsupportedVersion
                | ErrorCode::Unauthenticated
                | ErrorCode::InvalidToken
                | ErrorCode::TokenExpired
                | ErrorCode::RoomNotAllowed
                | ErrorCode::Forbidden
                | ErrorCode::Removed
                | ErrorCode::ReadOnly
                | ErrorCode::ChatMuted
                | ErrorCode::ResumeRejected
                | ErrorCode::TokenRevoked
                | ErrorCode::RateLimited
                | ErrorCode::TooManyRooms
                | ErrorCode::RoomFull
                | ErrorCode::SlowConsumer
                | ErrorCode::HandshakeTimeout
                | ErrorCode::Overloaded
                | ErrorCode::PresenceTimeout
                | ErrorCode::NotJoined
                | ErrorCode::AlreadyJoined
                | ErrorCode::InvalidUpdate
                | ErrorCode::NotFound
                | ErrorCode::PollClosed
                | ErrorCode::Internal
                | ErrorCode::ShuttingDown
                | ErrorCode::StorageUnavailable
                | ErrorCode::SfuUnavailable
                | ErrorCode::SfuRejected => pinned.iter().any(|(c, _)| c == code),
            };
            assert!(listed, "{code:?} is not pinned");
        }
        assert_eq!(ErrorCode::from_u16(1), None);
    }
}

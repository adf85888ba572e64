//! Protocol limits (SPEC.md §Limits). Hard limits are fixed by protocol version 1 and enforced
//! by both sides on encode and decode; rates are server policy and are announced per session in
//! [`Welcome::limits`](crate::message::Welcome).

/// Largest stream frame (kind byte + body, not counting the length prefix).
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// Largest frame a server accepts before the handshake completes (Hello carries a JWT).
pub const MAX_PREAUTH_FRAME_LEN: usize = 16 * 1024;
/// Largest datagram (kind byte + body): the QUIC minimum path MTU leaves about this much.
pub const MAX_DATAGRAM_LEN: usize = 1200;

/// Most protocol versions a Hello may list.
pub const MAX_VERSIONS: usize = 16;
/// Longest JWT.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest opaque resume token.
pub const MAX_RESUME_TOKEN_LEN: usize = 256;
/// Longest user id, display name, client id or client software string, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest room id, in bytes (see [`crate::room`]).
pub const MAX_ROOM_ID_LEN: usize = 128;
/// Longest free-text reason or error message, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// Longest encoded Loro version vector.
pub const MAX_VERSION_VECTOR_LEN: usize = 64 * 1024;
/// Most participants one `Participants` frame lists as joined, and as left (the room cap is
/// server policy and lower).
pub const MAX_PARTICIPANTS: usize = 10_000;
/// Most op ids one Ack carries.
pub const MAX_ACK_OPS: usize = 4096;
/// Longest chat message, in bytes.
pub const MAX_CHAT_LEN: usize = 2000;
/// Most chat messages in one history page.
pub const MAX_CHAT_PAGE: usize = 200;
/// Longest poll question, in bytes.
pub const MAX_POLL_QUESTION_LEN: usize = 500;
/// Fewest and most options a poll has.
pub const POLL_OPTIONS: std::ops::RangeInclusive<usize> = 2..=16;
/// Longest poll option, in bytes.
pub const MAX_POLL_OPTION_LEN: usize = 200;
/// Longest poll timer, in milliseconds (one day).
pub const MAX_POLL_DURATION_MS: u32 = 24 * 60 * 60 * 1000;
/// Longest SDP blob, in bytes.
pub const MAX_SDP_LEN: usize = 64 * 1024;
/// Longest ICE candidate line or media id, in bytes.
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// Most ICE server URLs in an SFU grant.
pub const MAX_ICE_SERVERS: usize = 8;
/// Most SFU feeds one subscribe names.
pub const MAX_FEEDS: usize = 64;
/// Most hands in one queue.
pub const MAX_HAND_QUEUE: usize = MAX_PARTICIPANTS;
/// Most rooms one connection may join.
pub const MAX_ROOMS_PER_CONNECTION: u16 = 16;

/// Cursor coordinates are fixed-point board units with this many fractional bits
/// (1/16 of a board pixel).
pub const CURSOR_FRACTION_BITS: u32 = 4;

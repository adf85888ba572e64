//! Unreliable datagrams: cursors and presence (SPEC.md §Datagrams).
//!
//! A datagram is `kind · rkyv archive`, at most [`MAX_DATAGRAM_LEN`] bytes. Every entry carries
//! its sender's sequence number; receivers keep the newest per sender ([`is_newer`]) and drop
//! the rest, so loss and reordering only delay convergence.

use crate::Error;
use crate::limits::MAX_DATAGRAM_LEN;
use crate::message::wire;

kinds! {
    /// An unreliable datagram. Encode with [`Datagram::encode`], decode with [`Datagram::decode`].
    pub enum Datagram;
    /// The kind byte of a [`Datagram`].
    pub enum DatagramKind;

    /// The sender's cursor position.
    0x80 => Cursor(Datagram, ClientToServer),
    /// Cursors that changed since the receiver's last batch, one tick's worth.
    0x81 => CursorBatch(Datagram, ServerToClient),
    /// The sender's presence state; also keeps it alive.
    0x82 => Heartbeat(Datagram, ClientToServer),
    /// Presence states that changed since the receiver's last batch.
    0x83 => PresenceBatch(Datagram, ServerToClient),
}

impl Datagram {
    /// Encodes the datagram. Fails if a field breaks a limit or the result exceeds
    /// [`MAX_DATAGRAM_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let body = self.archive()?;
        let len = body.len() + 1;
        if len > MAX_DATAGRAM_LEN {
            return Err(Error::DatagramTooLarge { len, max: MAX_DATAGRAM_LEN });
        }
        let mut out = Vec::with_capacity(len);
        out.push(self.kind().to_u8());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes and validates one datagram. Never allocates for the alignment copy.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DATAGRAM_LEN {
            return Err(Error::DatagramTooLarge { len: bytes.len(), max: MAX_DATAGRAM_LEN });
        }
        let (&byte, body) = bytes.split_first().ok_or(Error::Empty)?;
        let kind = DatagramKind::from_u8(byte).ok_or_else(|| match crate::Kind::from_u8(byte) {
            Some(_) => Error::WrongChannel { kind: byte, channel: "a datagram" },
            None => Error::UnknownKind(byte),
        })?;
        let mut aligned = Aligned([0; MAX_DATAGRAM_LEN]);
        let aligned = &mut aligned.0[..body.len()];
        aligned.copy_from_slice(body);
        let datagram = Self::unarchive(kind, aligned)?;
        datagram.validate()?;
        Ok(datagram)
    }
}

/// Stack buffer with the alignment rkyv validation expects of an archive's start.
#[repr(C, align(16))]
struct Aligned([u8; MAX_DATAGRAM_LEN]);

/// Whether sequence number `candidate` is newer than `current`, with wrap-around (serial
/// number arithmetic, RFC 1982): newer means at most 32,767 steps ahead.
pub const fn is_newer(candidate: u16, current: u16) -> bool {
    (candidate.wrapping_sub(current) as i16) > 0
}

/// Converts a board coordinate to its wire fixed-point form (1/16 board pixel), saturating.
pub fn quantise(coordinate: f64) -> i32 {
    (coordinate * f64::from(1u32 << crate::limits::CURSOR_FRACTION_BITS)).round() as i32
}

/// Converts a wire coordinate back to board units.
pub fn dequantise(coordinate: i32) -> f64 {
    f64::from(coordinate) / f64::from(1u32 << crate::limits::CURSOR_FRACTION_BITS)
}

wire! {
    /// A presence status.
    #[derive(Copy, Hash)]
    pub enum Status {
        /// Interacting now.
        Active,
        /// Connected, not interacting for a while.
        Idle,
        /// The app is in the background.
        Away,
    }

    /// What the participant's pointer is.
    #[derive(Copy, Hash)]
    pub enum Tool {
        /// A plain cursor.
        Pointer,
        /// Drawing.
        Pen,
        /// Erasing.
        Eraser,
        /// A laser pointer others should render prominently.
        Laser,
        /// The cursor is off the board; do not draw it.
        Hidden,
    }

    /// Client → server: the sender's cursor. 12-byte body.
    #[derive(Copy, Hash)]
    pub struct Cursor {
        /// Which room (from `Joined::slot`).
        pub slot: u16,
        /// Sender's sequence number, +1 per cursor datagram.
        pub seq: u16,
        /// Board x in 1/16 px (see [`quantise`]).
        pub x: i32,
        /// Board y in 1/16 px.
        pub y: i32,
    }

    /// One participant's cursor in a [`CursorBatch`]: 12 bytes on the wire.
    #[derive(Copy, Hash)]
    pub struct CursorEntry {
        /// Room-local participant number.
        pub participant: u16,
        /// That participant's sequence number for this position.
        pub seq: u16,
        /// Board x in 1/16 px.
        pub x: i32,
        /// Board y in 1/16 px.
        pub y: i32,
    }

    /// Server → client: cursors changed since the receiver's previous batch.
    pub struct CursorBatch {
        /// Which room.
        pub slot: u16,
        /// At most [`CursorBatch::MAX_ENTRIES`].
        pub cursors: Vec<CursorEntry>,
    }

    /// Client → server: the sender's presence; sent every `heartbeat_ms` and on change.
    #[derive(Copy, Hash)]
    pub struct Heartbeat {
        /// Which room.
        pub slot: u16,
        /// Sender's sequence number, +1 per heartbeat.
        pub seq: u16,
        /// Status.
        pub status: Status,
        /// Pointer tool.
        pub tool: Tool,
    }

    /// One participant's presence in a [`PresenceBatch`]: 6 bytes on the wire.
    #[derive(Copy, Hash)]
    pub struct PresenceEntry {
        /// Room-local participant number.
        pub participant: u16,
        /// That participant's presence sequence number, numbered by the server (§8.4).
        pub seq: u16,
        /// Status.
        pub status: Status,
        /// Pointer tool.
        pub tool: Tool,
    }

    /// Server → client: presence states changed since the receiver's previous batch.
    pub struct PresenceBatch {
        /// Which room.
        pub slot: u16,
        /// At most [`PresenceBatch::MAX_ENTRIES`].
        pub entries: Vec<PresenceEntry>,
    }
}

/// Bytes a batch datagram spends besides its entries: kind byte + root (slot, padding,
/// relative pointer, length) + at most 3 bytes of padding before the root.
const BATCH_OVERHEAD: usize = 1 + 12 + 3;

impl CursorBatch {
    /// Most cursors one datagram carries (98 at 1,200 bytes).
    pub const MAX_ENTRIES: usize = (MAX_DATAGRAM_LEN - BATCH_OVERHEAD) / size_of::<ArchivedCursorEntry>();

    /// Splits `cursors` into as few batches as fit the datagram limit.
    pub fn split(slot: u16, cursors: &[CursorEntry]) -> impl Iterator<Item = Self> + '_ {
        cursors.chunks(Self::MAX_ENTRIES).map(move |c| Self { slot, cursors: c.to_vec() })
    }
}

impl PresenceBatch {
    /// Most presence entries one datagram carries (197 at 1,200 bytes).
    pub const MAX_ENTRIES: usize = (MAX_DATAGRAM_LEN - BATCH_OVERHEAD) / size_of::<ArchivedPresenceEntry>();

    /// Splits `entries` into as few batches as fit the datagram limit.
    pub fn split(slot: u16, entries: &[PresenceEntry]) -> impl Iterator<Item = Self> + '_ {
        entries.chunks(Self::MAX_ENTRIES).map(move |e| Self { slot, entries: e.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_wrap() {
        assert!(is_newer(1, 0));
        assert!(!is_newer(0, 0));
        assert!(!is_newer(0, 1));
        assert!(is_newer(0, u16::MAX));
        assert!(is_newer(100, 65_500));
        assert!(!is_newer(65_500, 100));
    }

    #[test]
    fn quantisation_is_sixteenth_pixels() {
        assert_eq!(quantise(1.0), 16);
        assert_eq!(quantise(-2.53), -40);
        assert_eq!(dequantise(quantise(123.4375)), 123.4375);
        assert_eq!(quantise(1e300), i32::MAX);
    }

    #[test]
    fn entry_sizes_are_as_specified() {
        assert_eq!(size_of::<ArchivedCursorEntry>(), 12);
        assert_eq!(size_of::<ArchivedCursor>(), 12);
        assert_eq!(size_of::<ArchivedPresenceEntry>(), 6);
        assert_eq!(CursorBatch::MAX_ENTRIES, 98);
        assert_eq!(PresenceBatch::MAX_ENTRIES, 197);
    }
}

//! How one WebSocket carries Easel's streams and datagrams (SPEC.md §WebSocket).
//!
//! Every binary WebSocket message is one [`Envelope`]: an op byte, then for stream ops a
//! varint stream id numbered as QUIC numbers streams (bit 0: 0 = client-initiated,
//! 1 = server-initiated; bit 1: 0 = bidirectional, 1 = unidirectional; the control stream is
//! id 0). Stream data is a piece of that stream's bytes, framed exactly as on QUIC, so the same
//! [`FrameDecoder`](crate::FrameDecoder) reads it; a datagram is one whole datagram.

use crate::Error;

/// Op byte: one datagram follows.
pub const OP_DATAGRAM: u8 = 0x00;
/// Op byte: stream bytes follow (opens the stream on first use).
pub const OP_STREAM: u8 = 0x01;
/// Op byte: the sender finished the stream (like a QUIC FIN).
pub const OP_FIN: u8 = 0x02;
/// Op byte: the sender abandons the stream with a code (like QUIC RESET_STREAM).
pub const OP_RESET: u8 = 0x03;

/// Highest stream id a WebSocket session may use.
pub const MAX_STREAM_ID: u64 = u32::MAX as u64;

/// One WebSocket binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A datagram (latest-wins: a sender that is backed up drops stale ones instead of queueing).
    Datagram(&'a [u8]),
    /// Bytes of stream `id`.
    Stream {
        /// Stream id.
        id: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The sender finished stream `id`.
    Fin {
        /// Stream id.
        id: u64,
    },
    /// The sender abandoned stream `id`.
    Reset {
        /// Stream id.
        id: u64,
        /// An [`ErrorCode`](crate::ErrorCode) number.
        code: u16,
    },
}

impl<'a> Envelope<'a> {
    /// Parses one WebSocket binary message.
    pub fn decode(message: &'a [u8]) -> Result<Self, Error> {
        let (&op, rest) = message.split_first().ok_or(Error::Envelope("empty message"))?;
        if op == OP_DATAGRAM {
            if rest.len() > crate::limits::MAX_DATAGRAM_LEN {
                return Err(Error::DatagramTooLarge {
                    len: rest.len(),
                    max: crate::limits::MAX_DATAGRAM_LEN,
                });
            }
            return Ok(Self::Datagram(rest));
        }
        let (id, used) = crate::varint::decode(rest).ok_or(Error::Envelope("truncated stream id"))?;
        if id > MAX_STREAM_ID {
            return Err(Error::Envelope("stream id out of range"));
        }
        let rest = &rest[used..];
        match op {
            OP_STREAM if rest.is_empty() => Err(Error::Envelope("stream op without data")),
            OP_STREAM => Ok(Self::Stream { id, data: rest }),
            OP_FIN if rest.is_empty() => Ok(Self::Fin { id }),
            OP_RESET => match rest {
                &[hi, lo] => Ok(Self::Reset { id, code: u16::from_be_bytes([hi, lo]) }),
                _ => Err(Error::Envelope("reset needs a 2-byte code")),
            },
            OP_FIN => Err(Error::Envelope("trailing bytes after fin")),
            _ => Err(Error::Envelope("unknown op")),
        }
    }

    /// Appends the envelope's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            Self::Datagram(d) => {
                out.push(OP_DATAGRAM);
                out.extend_from_slice(d);
            }
            Self::Stream { id, data } => {
                out.push(OP_STREAM);
                crate::varint::encode(id, out);
                out.extend_from_slice(data);
            }
            Self::Fin { id } => {
                out.push(OP_FIN);
                crate::varint::encode(id, out);
            }
            Self::Reset { id, code } => {
                out.push(OP_RESET);
                crate::varint::encode(id, out);
                out.extend_from_slice(&code.to_be_bytes());
            }
        }
    }

    /// The envelope as a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Whether a stream id was opened by the client.
pub const fn is_client_initiated(id: u64) -> bool {
    id & 1 == 0
}

/// Whether a stream id is unidirectional.
pub const fn is_unidirectional(id: u64) -> bool {
    id & 2 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let cases = [
            Envelope::Datagram(&[0x80, 1, 2]),
            Envelope::Stream { id: 0, data: b"frame" },
            Envelope::Stream { id: 4, data: b"x" },
            Envelope::Fin { id: 3 },
            Envelope::Reset { id: 8, code: 303 },
        ];
        for e in cases {
            assert_eq!(Envelope::decode(&e.encode()).expect("decode"), e);
        }
        assert_eq!(Envelope::Reset { id: 8, code: 303 }.encode(), [0x03, 0x08, 0x01, 0x2f]);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            &[][..],
            &[0x01],
            &[0x01, 0x04],
            &[0x02, 0x00, 0x01],
            &[0x03, 0x00, 0x01],
            &[0x09, 0x00],
            &[0x01, 0xc0],
        ] {
            assert!(Envelope::decode(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(Envelope::decode(&[0; 1202]), Err(Error::DatagramTooLarge { .. })));
    }

    #[test]
    fn stream_id_bits_follow_quic() {
        assert!(is_client_initiated(0) && !is_unidirectional(0));
        assert!(!is_client_initiated(3) && is_unidirectional(3));
    }
}

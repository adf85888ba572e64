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

/// Which end of the WebSocket an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Opened the socket; initiates stream ids with bit 0 = 0.
    Client,
    /// Accepted the socket; initiates stream ids with bit 0 = 1.
    Server,
}

/// What one received envelope means for the streams of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// The peer opened stream `id` (its first bytes follow as [`Event::Data`]).
    Opened {
        /// Stream id.
        id: u64,
    },
    /// Bytes for stream `id`.
    Data {
        /// Stream id.
        id: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// The peer finished sending on stream `id`.
    Fin {
        /// Stream id.
        id: u64,
    },
    /// The peer abandoned stream `id`.
    Reset {
        /// Stream id.
        id: u64,
        /// Its code.
        code: u16,
    },
    /// A datagram.
    Datagram(&'a [u8]),
}

/// Sans-IO stream bookkeeping for one WebSocket session: allocates local stream ids and turns
/// received envelopes into [`Event`]s, refusing what QUIC would refuse (sending on the other
/// side's unidirectional stream, data after FIN, reopening a stream, too many open streams).
#[derive(Debug, Clone)]
pub struct Demux {
    side: Side,
    /// Next id per (initiator, direction), indexed by the id's low two bits.
    next: [u64; 4],
    /// Streams on which we may still receive.
    receiving: std::collections::BTreeSet<u64>,
    max_peer_streams: usize,
}

impl Demux {
    /// Bookkeeping for `side`, allowing at most `max_peer_streams` peer streams open at once.
    pub fn new(side: Side, max_peer_streams: usize) -> Self {
        Self { side, next: [0, 1, 2, 3], receiving: std::collections::BTreeSet::new(), max_peer_streams }
    }

    fn is_local(&self, id: u64) -> bool {
        is_client_initiated(id) == (self.side == Side::Client)
    }

    fn allocate(&mut self, uni: bool) -> Result<u64, Error> {
        let kind = usize::from(self.side == Side::Server) | (usize::from(uni) << 1);
        let id = self.next[kind];
        if id > MAX_STREAM_ID {
            return Err(Error::Envelope("stream ids exhausted"));
        }
        self.next[kind] += 4;
        Ok(id)
    }

    /// Allocates a bidirectional stream id; we will receive on it too.
    pub fn open_bi(&mut self) -> Result<u64, Error> {
        let id = self.allocate(false)?;
        self.receiving.insert(id);
        Ok(id)
    }

    /// Allocates a unidirectional (send-only) stream id.
    pub fn open_uni(&mut self) -> Result<u64, Error> {
        self.allocate(true)
    }

    /// Interprets one received WebSocket binary message. An error is a protocol violation
    /// that ends the session.
    pub fn receive<'a>(&mut self, message: &'a [u8]) -> Result<[Option<Event<'a>>; 2], Error> {
        let envelope = Envelope::decode(message)?;
        let id = match envelope {
            Envelope::Datagram(d) => return Ok([Some(Event::Datagram(d)), None]),
            Envelope::Stream { id, .. } | Envelope::Fin { id } | Envelope::Reset { id, .. } => id,
        };
        let mut opened = None;
        if !self.receiving.contains(&id) {
            if self.is_local(id) || id < self.next[(id & 3) as usize] {
                return Err(Error::Envelope("envelope for a stream that is not open for receiving"));
            }
            if self.receiving.iter().filter(|s| !self.is_local(**s)).count() >= self.max_peer_streams {
                return Err(Error::Envelope("too many open streams"));
            }
            // Like QUIC, opening id n implicitly uses up the lower ids of its type.
            self.next[(id & 3) as usize] = id + 4;
            self.receiving.insert(id);
            opened = Some(Event::Opened { id });
        }
        let event = match envelope {
            Envelope::Stream { id, data } => Event::Data { id, data },
            Envelope::Fin { id } => {
                self.receiving.remove(&id);
                Event::Fin { id }
            }
            Envelope::Reset { id, code } => {
                self.receiving.remove(&id);
                Event::Reset { id, code }
            }
            Envelope::Datagram(_) => return Err(Error::Envelope("unreachable")),
        };
        Ok(match opened {
            Some(o) => [Some(o), Some(event)],
            None => [Some(event), None],
        })
    }
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

    #[test]
    fn demux_opens_routes_and_refuses() {
        let mut server = Demux::new(Side::Server, 2);
        let m = Envelope::Stream { id: 0, data: b"hello" }.encode();
        let events = server.receive(&m).expect("open 0");
        assert_eq!(events, [Some(Event::Opened { id: 0 }), Some(Event::Data { id: 0, data: b"hello" })]);
        let m = Envelope::Stream { id: 0, data: b"more" }.encode();
        let events = server.receive(&m).expect("data");
        assert_eq!(events, [Some(Event::Data { id: 0, data: b"more" }), None]);
        assert_eq!(server.open_uni().expect("uni"), 3);
        assert_eq!(server.open_uni().expect("uni"), 7);
        // The client may not send on the server's unidirectional stream.
        assert!(server.receive(&Envelope::Stream { id: 3, data: b"x" }.encode()).is_err());
        server.receive(&Envelope::Stream { id: 4, data: b"room" }.encode()).expect("open 4");
        assert!(server.receive(&Envelope::Stream { id: 8, data: b"x" }.encode()).is_err(), "limit of 2");
        assert_eq!(
            server.receive(&Envelope::Fin { id: 4 }.encode()).expect("fin"),
            [Some(Event::Fin { id: 4 }), None]
        );
        assert!(server.receive(&Envelope::Stream { id: 4, data: b"x" }.encode()).is_err(), "data after FIN");
        let m = Envelope::Datagram(&[0x82, 0]).encode();
        let d = server.receive(&m).expect("datagram");
        assert_eq!(d, [Some(Event::Datagram(&[0x82, 0])), None]);

        let mut client = Demux::new(Side::Client, 8);
        assert_eq!(client.open_bi().expect("bi"), 0);
        assert_eq!(client.open_bi().expect("bi"), 4);
        let m = Envelope::Stream { id: 4, data: b"joined" }.encode();
        let reply = client.receive(&m).expect("reply");
        assert_eq!(reply, [Some(Event::Data { id: 4, data: b"joined" }), None]);
        let m = Envelope::Stream { id: 3, data: b"s" }.encode();
        let snapshot = client.receive(&m).expect("server uni");
        assert_eq!(snapshot[0], Some(Event::Opened { id: 3 }));
    }
}

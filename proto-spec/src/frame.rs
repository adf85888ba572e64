//! Sans-IO stream framing: `varint(len) · kind · archive` (SPEC.md §Framing).

use bytes::{Buf, BytesMut};

use crate::{Error, Message};

/// Turns a stream's bytes, arriving in pieces of any size, into [`Message`]s.
///
/// Feed bytes with [`push`](Self::push), then call [`decode`](Self::decode) until it returns
/// `Ok(None)` (need more bytes). A frame whose body is invalid is consumed and reported, so the
/// caller may answer with a `Fault` and carry on; a length prefix over the limit cannot be
/// skipped safely, so the decoder then reports [`Error::FrameTooLarge`] forever and the stream
/// must be closed.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
    poisoned: Option<u64>,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max_frame` bytes (kind + body). Use
    /// [`MAX_FRAME_LEN`](crate::limits::MAX_FRAME_LEN), or
    /// [`MAX_PREAUTH_FRAME_LEN`](crate::limits::MAX_PREAUTH_FRAME_LEN) until the handshake is done.
    pub fn new(max_frame: usize) -> Self {
        Self { buf: BytesMut::new(), max_frame, poisoned: None }
    }

    /// Changes the frame limit, e.g. once the handshake completes.
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet decoded (a partial frame at most, after `decode` returns `None`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message, `Ok(None)` if the buffered bytes end mid-frame, or the error of a
    /// frame that does not decode.
    pub fn decode(&mut self) -> Result<Option<Message>, Error> {
        if let Some(len) = self.poisoned {
            return Err(Error::FrameTooLarge { len, max: self.max_frame });
        }
        let Some((len, prefix)) = crate::varint::decode(&self.buf) else {
            return Ok(None);
        };
        if len > self.max_frame as u64 {
            self.poisoned = Some(len);
            return Err(Error::FrameTooLarge { len, max: self.max_frame });
        }
        // `len` is at most `max_frame`, a usize.
        let len = len as usize;
        // No reserve ahead of the bytes: a peer announcing a large frame and stalling must
        // not make us allocate for it.
        if self.buf.len() < prefix + len {
            return Ok(None);
        }
        self.buf.advance(prefix);
        let payload = self.buf.split_to(len);
        Message::decode_payload(&payload).map(Some)
    }

    /// Whether the stream may end here: no partial frame is buffered.
    pub fn is_at_boundary(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_FRAME_LEN;
    use crate::message::{Ping, Update};

    #[test]
    fn byte_at_a_time_decodes_every_frame() {
        let msgs: Vec<Message> = vec![
            Ping { nonce: 1 }.into(),
            Update { op_id: 9, data: vec![7; 300] }.into(),
            Ping { nonce: u64::MAX }.into(),
        ];
        let wire: Vec<u8> = msgs.iter().flat_map(|m| m.encode().expect("encode")).collect();
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        let mut out = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(m) = d.decode().expect("decode") {
                out.push(m);
            }
        }
        assert_eq!(out, msgs);
        assert!(d.is_at_boundary());
    }

    #[test]
    fn oversized_prefix_poisons_the_stream() {
        let mut d = FrameDecoder::new(100);
        let mut wire = Vec::new();
        crate::varint::encode(101, &mut wire);
        d.push(&wire);
        assert!(matches!(d.decode(), Err(Error::FrameTooLarge { len: 101, max: 100 })));
        d.push(&Message::from(Ping { nonce: 1 }).encode().expect("encode"));
        assert!(matches!(d.decode(), Err(Error::FrameTooLarge { .. })));
    }

    #[test]
    fn bad_body_is_consumed_and_the_next_frame_decodes() {
        let mut d = FrameDecoder::new(MAX_FRAME_LEN);
        d.push(&[2, 0xfe, 0x00]); // unknown kind 0xfe
        d.push(&[0]); // empty frame
        d.push(&Message::from(Ping { nonce: 5 }).encode().expect("encode"));
        assert!(matches!(d.decode(), Err(Error::UnknownKind(0xfe))));
        assert!(matches!(d.decode(), Err(Error::Empty)));
        assert_eq!(d.decode().expect("decode"), Some(Ping { nonce: 5 }.into()));
    }
}

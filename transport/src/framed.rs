//! Messages on a reliable stream: varint-framed rkyv archives (SPEC §3.1), read with
//! [`easel_proto::FrameDecoder`] and written with [`Message::encode`], the same at both ends.

use std::io;

use bytes::BytesMut;
use easel_proto::{FrameDecoder, Message};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Bytes asked of the stream per read while a frame is arriving: a large update or snapshot
/// comes in chunks this big.
const READ_BUF: usize = 16 * 1024;
/// Bytes asked of the stream while waiting for the next frame to start. Why: most streams wait
/// most of the time (a control stream, the room stream of an idle student), and the buffer of
/// a pending read is held all that time; at 10,000 sessions of two streams each, 16 KiB per
/// stream was 320 MB. Small frames (acks, chat, most edits) fit in this; a bigger one costs one
/// more read, then [`READ_BUF`] at a time.
const IDLE_READ: usize = 512;

/// What reading a stream produced.
#[derive(Debug)]
pub enum Read {
    /// The next message.
    Message(Message),
    /// A frame that did not decode; the stream can go on unless the error says otherwise
    /// ([`easel_proto::ErrorCode::FrameTooLarge`] cannot be resynchronised).
    Bad(easel_proto::Error),
    /// The stream is over: the peer finished it, or it broke ([`Reader::broken`] tells).
    End,
}

/// Reads messages from one stream.
#[derive(Debug)]
pub struct Reader<R> {
    recv: R,
    decoder: FrameDecoder,
    /// Empty between reads; its capacity is what the next read may fill.
    buf: BytesMut,
    broken: Option<io::Error>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads `recv`, refusing frames longer than `max_frame` bytes.
    pub fn new(recv: R, max_frame: usize) -> Self {
        Self { recv, decoder: FrameDecoder::new(max_frame), buf: BytesMut::new(), broken: None }
    }

    /// Changes the frame limit (the server raises it once a session is authenticated).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.decoder.set_max_frame(max_frame);
    }

    /// The next message, bad frame or end.
    pub async fn next(&mut self) -> Read {
        loop {
            match self.decoder.decode() {
                Ok(Some(m)) => return Read::Message(m),
                Ok(None) => {}
                Err(e) => return Read::Bad(e),
            }
            let want = if self.decoder.is_at_boundary() { IDLE_READ } else { READ_BUF };
            if self.buf.capacity() > want {
                // Let a finished burst's chunk go rather than hold it while idle.
                self.buf = BytesMut::new();
            }
            self.buf.reserve(want);
            match self.recv.read_buf(&mut self.buf).await {
                Ok(0) if self.decoder.is_at_boundary() => return Read::End,
                Ok(0) => {
                    let cut = io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended mid-frame");
                    self.broken.get_or_insert(cut);
                    return Read::End;
                }
                Ok(_) => {
                    self.decoder.push(&self.buf);
                    self.buf.clear();
                }
                Err(e) => {
                    self.broken.get_or_insert(e);
                    return Read::End;
                }
            }
        }
    }

    /// After [`Read::End`], why the stream broke, if it did not simply end at a frame
    /// boundary: reset, its connection lost, or finished in the middle of a frame.
    pub fn broken(&self) -> Option<&io::Error> {
        self.broken.as_ref()
    }
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The message does not encode (it breaks a protocol limit): a bug on this side.
    #[error("encode: {0}")]
    Encode(#[from] easel_proto::Error),
    /// The stream is gone.
    #[error("write: {0}")]
    Io(#[from] io::Error),
}

/// Writes one message as a frame.
pub async fn write<W: AsyncWrite + Unpin>(send: &mut W, message: &Message) -> Result<(), WriteError> {
    let bytes = message.encode().inspect_err(|e| tracing::error!("encode {:?}: {e}", message.kind()))?;
    send.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use easel_proto::message::Ping;
    use easel_proto::{ErrorCode, limits, varint};

    use super::*;

    fn ping(nonce: u64) -> Vec<u8> {
        Message::from(Ping { nonce }).encode().expect("encode")
    }

    #[tokio::test]
    async fn a_frame_larger_than_a_read_arrives_whole_and_an_idle_reader_lets_its_chunk_go() {
        use futures::FutureExt as _;
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = Reader::new(rx, limits::MAX_FRAME_LEN);
        let data: Vec<u8> = (0..5 * READ_BUF).map(|i| (i % 251) as u8).collect();
        let bytes = Message::from(easel_proto::message::Update { op_id: 7, data: data.clone() })
            .encode()
            .expect("encode");
        tokio::spawn(async move {
            tx.write_all(&bytes).await.expect("write");
            // Held open: the reader then waits for a next frame that does not come.
            std::future::pending::<()>().await;
        });
        match reader.next().await {
            Read::Message(Message::Update(u)) => assert_eq!((u.op_id, u.data), (7, data)),
            other => panic!("got {other:?}"),
        }
        assert!(reader.next().now_or_never().is_none(), "nothing more to read yet");
        assert!(
            reader.buf.capacity() <= IDLE_READ,
            "a waiting reader holds {} bytes, not the {READ_BUF}-byte chunk of the last frame",
            reader.buf.capacity()
        );
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_a_bad_frame_in_between() {
        let (mut tx, rx) = tokio::io::duplex(8);
        let mut reader = Reader::new(rx, limits::MAX_FRAME_LEN);
        let mut bytes = ping(1);
        // A frame of a kind nobody knows: the boundary is intact, the stream goes on.
        bytes.extend_from_slice(&[2, 0xEE, 0]);
        bytes.extend_from_slice(&ping(2));
        tokio::spawn(async move {
            tx.write_all(&bytes).await.expect("write");
        });
        assert!(matches!(reader.next().await, Read::Message(Message::Ping(Ping { nonce: 1 }))));
        assert!(matches!(reader.next().await, Read::Bad(e) if e.code() == ErrorCode::UnknownKind));
        assert!(matches!(reader.next().await, Read::Message(Message::Ping(Ping { nonce: 2 }))));
        assert!(matches!(reader.next().await, Read::End));
        assert!(reader.broken().is_none(), "finished at a frame boundary");
    }

    #[tokio::test]
    async fn an_end_inside_a_frame_is_broken_and_an_oversized_frame_is_bad() {
        let whole = ping(3);
        let mut reader = Reader::new(&whole[..whole.len() - 1], limits::MAX_FRAME_LEN);
        assert!(matches!(reader.next().await, Read::End));
        assert_eq!(reader.broken().map(io::Error::kind), Some(io::ErrorKind::UnexpectedEof));

        let mut header = Vec::new();
        varint::encode(1_000_000, &mut header);
        let mut reader = Reader::new(&header[..], 1024);
        assert!(matches!(reader.next().await, Read::Bad(e) if e.code() == ErrorCode::FrameTooLarge));
    }

    #[tokio::test]
    async fn written_messages_read_back() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        write(&mut tx, &Message::from(Ping { nonce: 9 })).await.expect("write");
        drop(tx);
        let mut reader = Reader::new(rx, limits::MAX_FRAME_LEN);
        assert!(matches!(reader.next().await, Read::Message(Message::Ping(Ping { nonce: 9 }))));
        assert!(matches!(reader.next().await, Read::End));
    }
}

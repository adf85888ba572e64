//! Bytes of the wire, for the driver: [`FrameReader`] turns a stream's bytes, in whatever
//! pieces they arrive, into [`Frame`]s (easel-proto's [`FrameDecoder`], the code every Easel
//! endpoint reads streams with); a snapshot stream's content becomes its document bytes; and
//! [`WsMux`] speaks the WebSocket mapping (SPEC §16, easel-proto's sans-IO [`ws`] module).

use easel_proto::message::SnapshotBegin;
use easel_proto::ws::{self, Demux, Envelope, Side};
use easel_proto::{FrameDecoder, Message, limits};
use wasm_bindgen::prelude::*;

use crate::js::{self, Obj};

/// One decoded frame of a stream, handed to [`crate::EaselSession`] as it is (not decoded
/// twice).
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct Frame {
    pub(crate) message: Message,
}

#[wasm_bindgen]
impl Frame {
    /// The message kind, e.g. "welcome", "fault", "joined" (for logs and the driver's checks).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        js::name(self.message.kind())
    }
}

/// Reads frames from one reliable stream (control, room or snapshot stream).
#[wasm_bindgen]
#[derive(Debug)]
pub struct FrameReader {
    decoder: FrameDecoder,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(None)
    }
}

#[wasm_bindgen]
impl FrameReader {
    /// A reader refusing frames longer than `max_frame` bytes (default: the protocol's
    /// limit, 1 MiB).
    #[wasm_bindgen(constructor)]
    pub fn new(max_frame: Option<u32>) -> Self {
        let max = max_frame.map_or(limits::MAX_FRAME_LEN, |m| m as usize);
        Self { decoder: FrameDecoder::new(max) }
    }

    /// Bytes read from the stream, any amount.
    pub fn push(&mut self, chunk: &[u8]) {
        self.decoder.push(chunk);
    }

    /// The next complete frame, or `undefined` until more bytes come. Throws a
    /// `ProtocolError` (`code`: the wire code) for a frame that does not decode; the stream
    /// may go on after it unless the code is 102 (`frameTooLarge`: close the connection).
    #[wasm_bindgen(js_name = next)]
    pub fn next_frame(&mut self) -> Result<Option<Frame>, JsValue> {
        match self.decoder.decode() {
            Ok(message) => Ok(message.map(|message| Frame { message })),
            Err(e) => Err(js::protocol_error(&e)),
        }
    }

    /// Whether the bytes so far end on a frame boundary (a stream that ends otherwise was cut).
    #[wasm_bindgen(js_name = atBoundary)]
    pub fn at_boundary(&self) -> bool {
        self.decoder.is_at_boundary()
    }
}

/// Why a snapshot stream's content is not a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A frame did not decode.
    #[error(transparent)]
    Frame(#[from] easel_proto::Error),
    /// The stream did not hold `SnapshotBegin` then `SnapshotChunk`s of `total_len` bytes.
    #[error("not a snapshot stream: {0}")]
    Shape(String),
}

/// The slot and document bytes of a whole snapshot stream (SPEC: `SnapshotBegin`, then
/// `SnapshotChunk`s adding up to its `total_len`).
pub fn snapshot(stream: &[u8]) -> Result<(SnapshotBegin, Vec<u8>), SnapshotError> {
    let mut decoder = FrameDecoder::new(limits::MAX_FRAME_LEN);
    decoder.push(stream);
    let begin = match decoder.decode()? {
        Some(Message::SnapshotBegin(b)) => b,
        Some(other) => return Err(SnapshotError::Shape(format!("starts with {:?}", other.kind()))),
        None => return Err(SnapshotError::Shape("empty".into())),
    };
    let mut data = Vec::with_capacity(usize::try_from(begin.total_len).unwrap_or(0).min(stream.len()));
    while let Some(message) = decoder.decode()? {
        match message {
            Message::SnapshotChunk(c) => data.extend_from_slice(&c.data),
            other => return Err(SnapshotError::Shape(format!("holds {:?}", other.kind()))),
        }
    }
    if !decoder.is_at_boundary() || data.len() as u64 != begin.total_len {
        return Err(SnapshotError::Shape("ended early".into()));
    }
    Ok((begin, data))
}

/// The client end of the WebSocket mapping (SPEC §16): every binary WebSocket message is an
/// envelope — a datagram, bytes of a stream, its end or its reset.
#[wasm_bindgen]
#[derive(Debug)]
pub struct WsMux {
    demux: Demux,
}

impl Default for WsMux {
    fn default() -> Self {
        Self::new(None)
    }
}

#[wasm_bindgen]
impl WsMux {
    /// Bookkeeping for the client side, allowing the server `max_peer_streams` open streams
    /// at once (default 32, as the native client: control, rooms, snapshots and slack).
    #[wasm_bindgen(constructor)]
    pub fn new(max_peer_streams: Option<u32>) -> Self {
        Self { demux: Demux::new(Side::Client, max_peer_streams.map_or(32, |m| m as usize)) }
    }

    /// A new bidirectional stream's id (the control stream, a room stream).
    #[wasm_bindgen(js_name = openBi)]
    pub fn open_bi(&mut self) -> Result<u32, JsValue> {
        let id = self.demux.open_bi().map_err(|e| js::protocol_error(&e))?;
        Ok(stream_id(id))
    }

    /// The message carrying `data` on stream `id`.
    pub fn stream(id: u32, data: &[u8]) -> Vec<u8> {
        Envelope::Stream { id: id.into(), data }.encode()
    }

    /// The message finishing stream `id`.
    pub fn fin(id: u32) -> Vec<u8> {
        Envelope::Fin { id: id.into() }.encode()
    }

    /// The message abandoning stream `id` with wire code `code`.
    pub fn reset(id: u32, code: u16) -> Vec<u8> {
        Envelope::Reset { id: id.into(), code }.encode()
    }

    /// The message carrying a datagram.
    pub fn datagram(data: &[u8]) -> Vec<u8> {
        Envelope::Datagram(data).encode()
    }

    /// What a received message means: an array of `WsEvent`s (a stream's first bytes come as
    /// `opened` then `data`). Throws a `ProtocolError` for a violation, which ends the session.
    #[wasm_bindgen(unchecked_return_type = "WsEvent[]")]
    pub fn receive(&mut self, message: &[u8]) -> Result<js_sys::Array, JsValue> {
        let events = self.demux.receive(message).map_err(|e| js::protocol_error(&e))?;
        Ok(events
            .into_iter()
            .flatten()
            .map(|e| {
                match e {
                    ws::Event::Opened { id } => Obj::typed("opened").set("id", stream_id(id)),
                    ws::Event::Data { id, data } => {
                        Obj::typed("data").set("id", stream_id(id)).bytes("data", data)
                    }
                    ws::Event::Fin { id } => Obj::typed("fin").set("id", stream_id(id)),
                    ws::Event::Reset { id, code } => {
                        Obj::typed("reset").set("id", stream_id(id)).set("code", code)
                    }
                    ws::Event::Datagram(data) => Obj::typed("datagram").bytes("data", data),
                }
                .build()
            })
            .collect())
    }
}

/// Stream ids of the mapping stop at [`ws::MAX_STREAM_ID`] (`u32::MAX`), so they are
/// JavaScript numbers.
fn stream_id(id: u64) -> u32 {
    u32::try_from(id.min(ws::MAX_STREAM_ID)).unwrap_or(u32::MAX)
}

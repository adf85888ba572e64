//! [`EaselSession`]: the session core as a JavaScript class. Time comes in as milliseconds
//! (`performance.now()`), bytes as `Uint8Array`s; outputs are drained one at a time.

use std::collections::VecDeque;
use std::time::Duration;

use easel_client::Transport;
use easel_client::session::{Config, Session, SessionError};
use easel_proto::message::{
    ChatDelete, ChatHistory, ChatSend, HandLower, HandRaise, Moderate, PollAnswer, PollClose, PollStart,
    RefreshToken, SetCursorCap, SfuCandidate, SfuJoin, SfuLeave, SfuSdp, SfuSubscribe,
};
use easel_proto::{Datagram, ErrorCode, Message};
use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;
use web_time::Instant;

use crate::document::{JsDocument, LoroDocLike};
use crate::events;
use crate::frames::{self, Frame};
use crate::js::{self, Obj};

#[wasm_bindgen]
extern "C" {
    /// `SessionOptions` of the `.d.ts`.
    #[wasm_bindgen(typescript_type = "SessionOptions")]
    pub type SessionOptions;
    /// `StoredOp[]` of the `.d.ts`.
    #[wasm_bindgen(typescript_type = "StoredOp[]")]
    pub type StoredOps;
}

/// One client session: its connection state, rooms, pending ops and timers. See the crate
/// README for the driver's loop.
#[wasm_bindgen]
pub struct EaselSession {
    session: Session<JsDocument>,
    /// The instant `origin_ms` stands for: milliseconds in, instants inside.
    origin: Instant,
    origin_ms: f64,
    /// The transport of the connection being established.
    transport: Transport,
    /// Next chat, poll and attempt id (seeded at random by the driver, as the native SDK).
    next_id: u64,
    /// Outputs the wrapper adds (a transmit that did not encode), handed out before the core's.
    errors: VecDeque<JsValue>,
}

impl std::fmt::Debug for EaselSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EaselSession").field("session", &self.session).finish_non_exhaustive()
    }
}

/// A field of the options object, if set.
fn field(options: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn u64_field(options: &JsValue, key: &str) -> Result<Option<u64>, JsValue> {
    field(options, key)
        .map(|v| {
            u64::try_from(v.clone())
                .or_else(|_| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64).ok_or(v))
                .map_err(|_| {
                    js::error("TypeError", &format!("{key} must be a non-negative bigint or number"))
                })
        })
        .transpose()
}

fn ms_field(options: &JsValue, key: &str) -> Option<Duration> {
    field(options, key)
        .and_then(|v| v.as_f64())
        .filter(|f| *f >= 0.0)
        .map(|f| Duration::from_secs_f64(f / 1000.0))
}

#[wasm_bindgen]
impl EaselSession {
    /// A disconnected session that may connect at once (see `SessionOptions`).
    #[wasm_bindgen(constructor)]
    pub fn new(options: SessionOptions, now_ms: f64) -> Result<EaselSession, JsValue> {
        let options = JsValue::from(options);
        let client_id = field(&options, "clientId")
            .and_then(|v| v.as_string())
            .ok_or_else(|| js::error("TypeError", "options.clientId must be a string"))?;
        let defaults = Config::default();
        let seed = u64_field(&options, "seed")?.unwrap_or(0);
        let config = Config {
            client_id,
            name: field(&options, "name").and_then(|v| v.as_string()).unwrap_or_default(),
            cursor_hz: field(&options, "cursorHz")
                .and_then(|v| v.as_f64())
                .map_or(defaults.cursor_hz, |f| f as u32),
            backoff_min: ms_field(&options, "backoffMinMs").unwrap_or(defaults.backoff_min),
            backoff_max: ms_field(&options, "backoffMaxMs").unwrap_or(defaults.backoff_max),
            first_op_id: u64_field(&options, "firstOpId")?.unwrap_or(defaults.first_op_id),
            seed,
        };
        // Instants are opaque: one is taken now and the driver's milliseconds count from it.
        let origin = Instant::now();
        Ok(Self {
            session: Session::new(config, origin),
            origin,
            origin_ms: now_ms,
            transport: Transport::WebTransport,
            next_id: (seed >> 1).max(1),
            errors: VecDeque::new(),
        })
    }

    fn at(&self, now_ms: f64) -> Instant {
        let since = (now_ms - self.origin_ms).max(0.0);
        self.origin + Duration::from_secs_f64(since / 1000.0)
    }

    // --- the connection ---

    /// Whether a connection attempt should start now.
    #[wasm_bindgen(js_name = shouldConnect)]
    pub fn should_connect(&self, now_ms: f64) -> bool {
        self.session.should_connect(self.at(now_ms))
    }

    /// A connection attempt started: until it ends (`handshake` or `disconnected`) no timeout is
    /// due, so `pollTimeout` gives `undefined` instead of a time already past.
    pub fn connecting(&mut self) {
        self.session.connecting();
    }

    /// The `Hello` frame to write first on a new connection's control stream (the client's
    /// first bidirectional stream); it asks to resume the last session.
    pub fn hello(&self, token: &str) -> Result<Vec<u8>, JsValue> {
        Message::from(self.session.hello(token)).encode().map_err(|e| js::protocol_error(&e))
    }

    /// The first frame read on the control stream of a connection over `transport`
    /// ("webtransport" or "websocket"). A `Welcome` establishes the session (rooms are
    /// rejoined: see `pollTransmit`); a `Fault` (a refused token, …) or anything else ends
    /// the attempt: the session schedules the next and the driver closes the connection.
    #[wasm_bindgen(unchecked_return_type = "Handshake")]
    pub fn handshake(
        &mut self,
        now_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "Transport")] transport: &str,
        frame: Frame,
    ) -> Result<JsValue, JsValue> {
        let now = self.at(now_ms);
        self.transport = Transport::from_label(transport)
            .ok_or_else(|| js::error("TypeError", &format!("unknown transport {transport:?}")))?;
        match frame.message {
            Message::Welcome(w) => {
                self.session.connected(now, self.transport, &w);
                let l = &w.limits;
                Ok(Obj::new()
                    .set("ok", true)
                    .set("resumed", w.resumed)
                    .set("user", w.user.as_str())
                    .set("sessionId", w.session_id)
                    .set("serverTimeMs", w.server_time_ms)
                    .set("tokenExpiresMs", w.token_expires_ms)
                    .set("maxFrameLen", l.max_frame_len)
                    .set("maxDatagramLen", l.max_datagram_len)
                    .set("resumeGraceMs", l.resume_grace_ms)
                    .build())
            }
            Message::Fault(f) => {
                let code = ErrorCode::from_u16(f.code).unwrap_or(ErrorCode::Internal);
                let reason = format!("refused ({code}): {}", f.message);
                self.session.disconnected(now, Some(code), &reason, None);
                Ok(Obj::new().set("ok", false).build())
            }
            other => {
                let reason = format!("unexpected {:?} instead of Welcome", other.kind());
                self.session.disconnected(now, Some(ErrorCode::UnexpectedMessage), &reason, None);
                Ok(Obj::new().set("ok", false).build())
            }
        }
    }

    /// The connection was lost, closed, or an attempt failed before its `Welcome`. `code` is
    /// the server's wire code when the close carried one.
    pub fn disconnected(&mut self, now_ms: f64, code: Option<u16>, reason: &str) {
        let code = code.and_then(ErrorCode::from_u16);
        self.session.disconnected(self.at(now_ms), code, reason, None);
    }

    /// A frame on the control stream after the handshake (`GoAway`, `Fault`, token answers).
    #[wasm_bindgen(js_name = controlFrame)]
    pub fn control_frame(&mut self, frame: Frame) {
        self.session.handle_control(frame.message);
    }

    /// A frame on the room stream opened for `room` (its first is `Joined` or a `Fault`).
    #[wasm_bindgen(js_name = roomFrame)]
    pub fn room_frame(&mut self, now_ms: f64, room: &str, frame: Frame) {
        self.session.handle_room(self.at(now_ms), room, frame.message);
    }

    /// The whole content of a snapshot stream (a unidirectional stream the server opens),
    /// read to its end. Throws a `ProtocolError` if it is not a snapshot stream.
    pub fn snapshot(&mut self, stream: &[u8]) -> Result<(), JsValue> {
        let (begin, data) =
            frames::snapshot(stream).map_err(|e| js::error("ProtocolError", &e.to_string()))?;
        self.session.handle_snapshot(begin.slot, &data);
        Ok(())
    }

    /// A datagram received. One that does not decode is dropped (SPEC §3.2); returns whether
    /// it decoded.
    pub fn datagram(&mut self, bytes: &[u8]) -> bool {
        match Datagram::decode(bytes) {
            Ok(d) => {
                self.session.handle_datagram(d);
                true
            }
            Err(_) => false,
        }
    }

    /// Time passed: throttled cursors, heartbeats, rate-delayed ops.
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now_ms: f64) {
        self.session.handle_timeout(self.at(now_ms));
    }

    // --- outputs ---

    /// When `handleTimeout` (or a connection attempt) is next due, in the driver's
    /// milliseconds; `undefined`: nothing is scheduled.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        let at = self.session.poll_timeout()?;
        Some(self.origin_ms + events::millis(at.saturating_duration_since(self.origin)))
    }

    /// The next `Transmit`, or `undefined`.
    #[wasm_bindgen(js_name = pollTransmit, unchecked_return_type = "Transmit | undefined")]
    pub fn poll_transmit(&mut self) -> JsValue {
        while let Some(t) = self.session.poll_transmit() {
            match events::transmit(&t) {
                Ok(t) => return t,
                Err(e) => self.errors.push_back(
                    Obj::typed("error").code(e.code()).set("message", format!("not sent: {e}")).build(),
                ),
            }
        }
        JsValue::UNDEFINED
    }

    /// The next `EaselEvent`, or `undefined` (remote updates received so far are imported
    /// into the room documents first).
    #[wasm_bindgen(js_name = pollEvent, unchecked_return_type = "EaselEvent | undefined")]
    pub fn poll_event(&mut self) -> JsValue {
        if let Some(e) = self.errors.pop_front() {
            return e;
        }
        self.session.poll_event().map_or(JsValue::UNDEFINED, events::event)
    }

    /// The next `StoreOp` for the offline store, or `undefined`. Apply it before sending the
    /// transmits polled after it (an op is durable locally before it goes out).
    #[wasm_bindgen(js_name = pollStore, unchecked_return_type = "StoreOp | undefined")]
    pub fn poll_store(&mut self) -> JsValue {
        self.session.poll_store().map_or(JsValue::UNDEFINED, events::store)
    }

    /// The next op id that will be used (keep it with the stored ops).
    #[wasm_bindgen(js_name = nextOpId)]
    pub fn next_op_id(&self) -> u64 {
        self.session.next_op_id()
    }

    /// Unacked op ids of `room`, oldest first.
    pub fn pending(&self, room: &str) -> Vec<u64> {
        self.session.pending(room)
    }

    /// Whether a connection is established.
    #[wasm_bindgen(js_name = isConnected)]
    pub fn is_connected(&self) -> bool {
        self.session.is_connected()
    }

    // --- the app's calls ---

    /// Joins `room` (now, or when connected) with the app's `LoroDoc`; `restored` are the
    /// room's unacked ops from the offline store (imported into `doc` and resent).
    pub fn join(&mut self, room: &str, doc: LoroDocLike, restored: Option<StoredOps>) -> Result<(), JsValue> {
        let mut ops = Vec::new();
        if let Some(restored) = restored {
            for op in Array::from(&restored).iter() {
                let op_id = u64_field(&op, "opId")?.ok_or_else(|| js::error("TypeError", "opId missing"))?;
                let data = field(&op, "data").ok_or_else(|| js::error("TypeError", "data missing"))?;
                ops.push((op_id, js_sys::Uint8Array::new(&data).to_vec()));
            }
        }
        self.session.join(room, JsDocument::new(doc), ops).map_err(|e| js::session_error(&e))
    }

    /// Leaves `room`; its unacked ops are dropped from the store.
    pub fn leave(&mut self, room: &str) -> Result<(), JsValue> {
        self.session.leave(room).map_err(|e| js::session_error(&e))
    }

    /// A local commit of `room`'s document (the bytes of loro-crdt's
    /// `subscribeLocalUpdates`): it becomes an op, stored, sent and kept until acked. Returns
    /// its op id.
    #[wasm_bindgen(js_name = localUpdate)]
    pub fn local_update(&mut self, now_ms: f64, room: &str, bytes: Vec<u8>) -> Result<u64, JsValue> {
        self.session.local_update(self.at(now_ms), room, bytes).map_err(|e| js::session_error(&e))
    }

    /// Moves our cursor in `room` (board pixels); throttled, newest position wins.
    pub fn cursor(&mut self, now_ms: f64, room: &str, x: f64, y: f64) -> Result<(), JsValue> {
        self.session.cursor(self.at(now_ms), room, x, y).map_err(|e| js::session_error(&e))
    }

    /// Sets our presence in `room` (`Status`, `Tool` names); a heartbeat goes at once.
    pub fn presence(
        &mut self,
        now_ms: f64,
        room: &str,
        #[wasm_bindgen(unchecked_param_type = "Status")] status: &str,
        #[wasm_bindgen(unchecked_param_type = "Tool")] tool: &str,
    ) -> Result<(), JsValue> {
        let (status, tool) = (js::status(status)?, js::tool(tool)?);
        self.session.presence(self.at(now_ms), room, status, tool).map_err(|e| js::session_error(&e))
    }

    /// Asks the server to accept a fresh token (call before the current one expires).
    #[wasm_bindgen(js_name = refreshToken)]
    pub fn refresh_token(&mut self, token: &str) -> Result<(), JsValue> {
        encodable(Message::from(RefreshToken { token: token.to_owned() }))?;
        self.session.refresh_token(token);
        Ok(())
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A live request on `room`'s stream; refused (thrown) offline or if it cannot be encoded.
    fn request(&mut self, room: &str, message: Message) -> Result<(), JsValue> {
        let message = encodable(message)?;
        self.session.request(room, message).map_err(|e: SessionError| js::session_error(&e))
    }

    /// Sends a chat message; returns its `clientMsgId` (the `chat` event echoes it).
    pub fn chat(&mut self, room: &str, text: &str) -> Result<u64, JsValue> {
        let client_msg_id = self.id();
        self.request(room, Message::from(ChatSend { client_msg_id, text: text.to_owned() }))?;
        Ok(client_msg_id)
    }

    /// Deletes a chat message for everyone (teachers).
    #[wasm_bindgen(js_name = deleteChat)]
    pub fn delete_chat(&mut self, room: &str, id: u64) -> Result<(), JsValue> {
        self.request(room, Message::from(ChatDelete { id }))
    }

    /// Asks for up to `limit` messages older than `before` (0: the newest): a `chatPage`.
    #[wasm_bindgen(js_name = chatHistory)]
    pub fn chat_history(&mut self, room: &str, before: u64, limit: u16) -> Result<(), JsValue> {
        self.request(room, Message::from(ChatHistory { before, limit }))
    }

    /// Starts a poll (teachers); returns the request id its `pollStarted` carries.
    /// `duration_ms` 0: open until `closePoll`.
    #[wasm_bindgen(js_name = startPoll)]
    pub fn start_poll(
        &mut self,
        room: &str,
        question: &str,
        options: Vec<String>,
        multiple: bool,
        duration_ms: u32,
        live: bool,
    ) -> Result<u64, JsValue> {
        let request = self.id();
        let start =
            PollStart { request, question: question.to_owned(), options, multiple, duration_ms, live };
        self.request(room, Message::from(start))?;
        Ok(request)
    }

    /// Answers a poll with option indices; returns the attempt id (resend the same answer
    /// with `answerPollAs` and this id).
    #[wasm_bindgen(js_name = answerPoll)]
    pub fn answer_poll(&mut self, room: &str, poll_id: u64, choices: Vec<u8>) -> Result<u64, JsValue> {
        let attempt_id = self.id();
        self.answer_poll_as(room, poll_id, attempt_id, choices)?;
        Ok(attempt_id)
    }

    /// Answers with an explicit attempt id: the same id again counts once.
    #[wasm_bindgen(js_name = answerPollAs)]
    pub fn answer_poll_as(
        &mut self,
        room: &str,
        poll_id: u64,
        attempt_id: u64,
        choices: Vec<u8>,
    ) -> Result<(), JsValue> {
        self.request(room, Message::from(PollAnswer { poll_id, attempt_id, choices }))
    }

    /// Closes a poll (teachers).
    #[wasm_bindgen(js_name = closePoll)]
    pub fn close_poll(&mut self, room: &str, poll_id: u64) -> Result<(), JsValue> {
        self.request(room, Message::from(PollClose { poll_id }))
    }

    /// Raises our hand.
    #[wasm_bindgen(js_name = raiseHand)]
    pub fn raise_hand(&mut self, room: &str) -> Result<(), JsValue> {
        self.request(room, Message::from(HandRaise {}))
    }

    /// Lowers a hand: our own, or anyone's for a teacher.
    #[wasm_bindgen(js_name = lowerHand)]
    pub fn lower_hand(&mut self, room: &str, participant: u16) -> Result<(), JsValue> {
        self.request(room, Message::from(HandLower { participant }))
    }

    /// A teacher's moderation of `target` (`ModAction` name).
    pub fn moderate(
        &mut self,
        room: &str,
        target: u16,
        #[wasm_bindgen(unchecked_param_type = "ModAction")] action: &str,
        reason: &str,
    ) -> Result<(), JsValue> {
        let action = js::mod_action(action)?;
        self.request(room, Message::from(Moderate { target, action, reason: reason.to_owned() }))
    }

    /// A teacher sets the cursor cap: 0 shows all, `undefined` restores the lecture default.
    #[wasm_bindgen(js_name = setCursorCap)]
    pub fn set_cursor_cap(&mut self, room: &str, cap: Option<u16>) -> Result<(), JsValue> {
        self.request(room, Message::from(SetCursorCap { cap }))
    }

    /// Asks for SFU access, to publish or only to subscribe: an `sfuGrant` answers.
    #[wasm_bindgen(js_name = sfuJoin)]
    pub fn sfu_join(&mut self, room: &str, publish: bool) -> Result<(), JsValue> {
        self.request(room, Message::from(SfuJoin { publish }))
    }

    /// An SDP for a peer connection (`feed` 0: our publisher); `kind` "offer" or "answer".
    #[wasm_bindgen(js_name = sfuSdp)]
    pub fn sfu_sdp(
        &mut self,
        room: &str,
        feed: u64,
        #[wasm_bindgen(unchecked_param_type = "SdpKind")] kind: &str,
        sdp: &str,
    ) -> Result<(), JsValue> {
        let kind = js::sdp_kind(kind)?;
        self.request(room, Message::from(SfuSdp { feed, kind, sdp: sdp.to_owned() }))
    }

    /// Trickles one of our ICE candidates; an empty `candidate` ends them.
    #[wasm_bindgen(js_name = sfuCandidate)]
    pub fn sfu_candidate(
        &mut self,
        room: &str,
        feed: u64,
        candidate: &str,
        mid: &str,
        mline_index: u16,
    ) -> Result<(), JsValue> {
        let candidate =
            SfuCandidate { feed, candidate: candidate.to_owned(), mid: mid.to_owned(), mline_index };
        self.request(room, Message::from(candidate))
    }

    /// Subscribes to feeds (ids from `sfuEvent`s).
    #[wasm_bindgen(js_name = sfuSubscribe)]
    pub fn sfu_subscribe(&mut self, room: &str, feeds: Vec<u64>) -> Result<(), JsValue> {
        self.request(room, Message::from(SfuSubscribe { feeds }))
    }

    /// Stops publishing (`feed` 0) or drops a subscription.
    #[wasm_bindgen(js_name = sfuLeave)]
    pub fn sfu_leave(&mut self, room: &str, feed: u64) -> Result<(), JsValue> {
        self.request(room, Message::from(SfuLeave { feed }))
    }
}

/// `message` if it encodes (limits checked now, so the caller hears it), else a thrown
/// `ProtocolError`.
fn encodable(message: Message) -> Result<Message, JsValue> {
    message.encode().map_err(|e| js::protocol_error(&e))?;
    Ok(message)
}

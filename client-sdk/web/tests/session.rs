//! The wasm session in a JavaScript engine (Node, under `wasm-bindgen-test`): what a driver
//! feeds it, what comes out, and a real `loro-crdt` `LoroDoc` as the room document.
//! Run: `scripts/build-web.sh --test`.

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use easel_proto::message::{
    Ack, Joined, Participant, Participants, Role, SessionLimits, SnapshotBegin, SnapshotChunk, SyncKind,
    Welcome,
};
use easel_proto::{ErrorCode, FrameDecoder, Message, limits};
use easel_web::document::LoroDocLike;
use easel_web::{EaselSession, Frame, FrameReader, WsMux};
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen(module = "loro-crdt")]
extern "C" {
    #[derive(Clone)]
    type LoroDoc;
    #[wasm_bindgen(constructor)]
    fn new() -> LoroDoc;
    #[wasm_bindgen(method, js_name = getText)]
    fn get_text(this: &LoroDoc, name: &str) -> LoroText;
    #[wasm_bindgen(method)]
    fn commit(this: &LoroDoc);
    #[wasm_bindgen(method)]
    fn export(this: &LoroDoc, mode: &JsValue) -> Vec<u8>;

    type LoroText;
    #[wasm_bindgen(method)]
    fn insert(this: &LoroText, pos: u32, text: &str);
    #[wasm_bindgen(method, js_name = toString)]
    fn text(this: &LoroText) -> String;
}

const ROOM: &str = "school/math/monday";

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

fn string(v: &JsValue, key: &str) -> String {
    get(v, key).as_string().unwrap_or_else(|| panic!("{key} of {v:?} is not a string"))
}

fn bytes(v: &JsValue, key: &str) -> Vec<u8> {
    Uint8Array::new(&get(v, key)).to_vec()
}

/// The one message in a stream frame's bytes.
fn decode(frame: &[u8]) -> Message {
    let mut decoder = FrameDecoder::new(limits::MAX_FRAME_LEN);
    decoder.push(frame);
    let message = decoder.decode().unwrap().expect("a whole frame");
    assert!(decoder.is_at_boundary(), "one frame, nothing after it");
    message
}

/// `message` as the driver gets it: encoded, then read back by a `FrameReader`.
fn frame(message: impl Into<Message>) -> Frame {
    let mut reader = FrameReader::new(None);
    reader.push(&message.into().encode().unwrap());
    reader.next_frame().unwrap().expect("a frame")
}

fn options() -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"clientId".into(), &"browser-1".into()).unwrap();
    Reflect::set(&o, &"seed".into(), &JsValue::from(42u64)).unwrap();
    o.into()
}

fn welcome(resumed: bool) -> Welcome {
    Welcome {
        version: 1,
        session_id: 7,
        user: "ada".into(),
        server_time_ms: 0,
        token_expires_ms: 0,
        resume_token: vec![9; 32],
        resumed,
        limits: SessionLimits {
            max_frame_len: 1 << 20,
            max_datagram_len: 1200,
            max_rooms: 16,
            max_participants: 2000,
            ops_per_sec: 10,
            ops_burst: 3,
            datagrams_per_sec: 120,
            datagrams_burst: 240,
            chat_per_min: 30,
            tick_hz: 60,
            heartbeat_ms: 2000,
            presence_ttl_ms: 10_000,
            resume_grace_ms: 30_000,
        },
    }
}

fn participant(index: u16) -> Participant {
    Participant {
        index,
        user: format!("user{index}"),
        name: format!("User {index}"),
        role: Role::Student,
        read_only: false,
        chat_muted: false,
        camera: false,
        hand_raised: false,
    }
}

fn session() -> EaselSession {
    EaselSession::new(options().unchecked_into(), 1000.0).unwrap()
}

fn drain(mut poll: impl FnMut() -> JsValue) -> Vec<JsValue> {
    std::iter::from_fn(|| Some(poll()).filter(|v| !v.is_undefined())).collect()
}

/// Connected over WebTransport, in `ROOM` with `doc` as participant 3; outputs drained.
fn in_room(doc: &LoroDoc) -> EaselSession {
    let mut s = session();
    s.join(ROOM, doc.clone().unchecked_into::<LoroDocLike>(), None).unwrap();
    assert!(s.handshake(1000.0, "webtransport", frame(welcome(false))).is_ok());
    let joined = Joined {
        slot: 0,
        room: ROOM.into(),
        participant: 3,
        role: Role::Student,
        resumed: false,
        sync: SyncKind::None,
    };
    s.room_frame(1000.0, ROOM, frame(joined));
    s.room_frame(
        1000.0,
        ROOM,
        frame(Participants { full: true, joined: vec![participant(3)], left: vec![] }),
    );
    drain(|| s.poll_transmit());
    drain(|| s.poll_event());
    drain(|| s.poll_store());
    s
}

#[wasm_bindgen_test]
fn the_handshake_sends_hello_and_a_welcome_connects() {
    let mut s = session();
    assert!(s.should_connect(1000.0), "a new session connects at once");
    let Message::Hello(hello) = decode(&s.hello("jwt").unwrap()) else { panic!("not a Hello") };
    assert_eq!((hello.token.as_str(), hello.client_id.as_str(), hello.resume), ("jwt", "browser-1", None));
    let answer = s.handshake(1000.0, "webtransport", frame(welcome(false))).unwrap();
    assert_eq!(get(&answer, "ok"), JsValue::TRUE);
    assert_eq!(string(&answer, "user"), "ada");
    let events = drain(|| s.poll_event());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(string(&events[0], "type"), "connected");
    assert_eq!(string(&events[0], "transport"), "webtransport");
    let Message::Hello(again) = decode(&s.hello("jwt").unwrap()) else { panic!("not a Hello") };
    assert_eq!(again.resume, Some(vec![9; 32]), "the next Hello asks to resume");
}

#[wasm_bindgen_test]
fn a_refused_handshake_is_a_disconnect_with_its_code() {
    let mut s = session();
    let fault = easel_proto::message::Fault {
        code: ErrorCode::InvalidToken.to_u16(),
        kind: 0,
        reference: 0,
        message: "bad token".into(),
    };
    let answer = s.handshake(1000.0, "websocket", frame(fault)).unwrap();
    assert_eq!(get(&answer, "ok"), JsValue::FALSE);
    let events = drain(|| s.poll_event());
    assert_eq!(string(&events[0], "type"), "disconnected");
    assert_eq!(get(&events[0], "code").as_f64(), Some(f64::from(ErrorCode::InvalidToken.to_u16())));
    assert_eq!(string(&events[0], "codeName"), "invalidToken");
    assert!(!s.should_connect(1000.0), "the next attempt waits for the backoff");
    assert!(s.poll_timeout().is_some_and(|t| t > 1000.0));
}

#[wasm_bindgen_test]
fn a_join_opens_a_room_stream_and_joined_then_the_list_report_the_room() {
    let doc = LoroDoc::new();
    let mut s = session();
    s.join(ROOM, doc.clone().unchecked_into::<LoroDocLike>(), None).unwrap();
    assert!(drain(|| s.poll_transmit()).is_empty(), "nothing is sent while offline");
    s.handshake(1000.0, "websocket", frame(welcome(false))).unwrap();
    let sent = drain(|| s.poll_transmit());
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((string(&sent[0], "type").as_str(), string(&sent[0], "room").as_str()), ("join", ROOM));
    let Message::Join(join) = decode(&bytes(&sent[0], "bytes")) else { panic!("not a Join") };
    assert_eq!((join.room.as_str(), join.since), (ROOM, None), "an empty document asks for everything");
    drain(|| s.poll_event());
    let joined = Joined {
        slot: 0,
        room: ROOM.into(),
        participant: 3,
        role: Role::Student,
        resumed: false,
        sync: SyncKind::None,
    };
    s.room_frame(1000.0, ROOM, frame(joined));
    assert!(drain(|| s.poll_event()).is_empty(), "the join is reported with its list");
    let list = Participants { full: true, joined: vec![participant(1), participant(3)], left: vec![] };
    s.room_frame(1000.0, ROOM, frame(list));
    let events = drain(|| s.poll_event());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(string(&events[0], "type"), "joined");
    assert_eq!(get(&events[0], "participant").as_f64(), Some(3.0));
    let everyone = Array::from(&get(&events[0], "participants"));
    assert_eq!(everyone.length(), 2);
    assert_eq!(string(&everyone.get(0), "name"), "User 1");
    assert_eq!(string(&everyone.get(0), "role"), "student");
}

#[wasm_bindgen_test]
fn a_local_update_is_stored_sent_and_pending_until_its_ack() {
    let doc = LoroDoc::new();
    let mut s = in_room(&doc);
    doc.get_text("t").insert(0, "hello");
    doc.commit();
    let update = doc.export(&js_sys::JSON::parse(r#"{"mode":"update"}"#).unwrap());
    let op_id = s.local_update(1000.0, ROOM, update.clone()).unwrap();
    assert_eq!(op_id, 1);
    let stored = drain(|| s.poll_store());
    assert_eq!(string(&stored[0], "type"), "save");
    assert_eq!(bytes(&stored[0], "data"), update, "durable before it is sent");
    let sent = drain(|| s.poll_transmit());
    assert_eq!(sent.len(), 1);
    assert_eq!(string(&sent[0], "type"), "room");
    let Message::Update(u) = decode(&bytes(&sent[0], "bytes")) else { panic!("not an Update") };
    assert_eq!((u.op_id, u.data), (1, update));
    assert_eq!(s.pending(ROOM), vec![1], "pending until acked");
    s.room_frame(1000.0, ROOM, frame(Ack { op_ids: vec![1] }));
    let events = drain(|| s.poll_event());
    assert_eq!(string(&events[0], "type"), "acked");
    assert_eq!(Array::from(&get(&events[0], "opIds")).get(0), JsValue::from(1u64), "op ids are bigints");
    assert!(s.pending(ROOM).is_empty());
    assert_eq!(string(&drain(|| s.poll_store())[0], "type"), "remove");
}

#[wasm_bindgen_test]
fn a_snapshot_stream_imports_into_the_apps_loro_doc() {
    let source = LoroDoc::new();
    source.get_text("t").insert(0, "from the server");
    source.commit();
    let snapshot = source.export(&js_sys::JSON::parse(r#"{"mode":"snapshot"}"#).unwrap());
    let mut stream = Message::from(SnapshotBegin {
        slot: 0,
        sync: SyncKind::Snapshot,
        total_len: snapshot.len() as u64,
        version: vec![],
    })
    .encode()
    .unwrap();
    let (a, b) = snapshot.split_at(snapshot.len() / 2);
    for part in [a, b] {
        stream.extend(Message::from(SnapshotChunk { data: part.to_vec() }).encode().unwrap());
    }
    let doc = LoroDoc::new();
    let mut s = in_room(&doc);
    s.snapshot(&stream).unwrap();
    assert_eq!(doc.get_text("t").text(), "from the server");
    let events = drain(|| s.poll_event());
    assert_eq!(events.iter().map(|e| string(e, "type")).collect::<Vec<_>>(), ["synced"]);
    // The rejoin after a reconnect names what the document now holds.
    s.disconnected(1000.0, None, "wifi");
    s.handle_timeout(100_000.0);
    s.handshake(100_000.0, "webtransport", frame(welcome(true))).unwrap();
    let sent = drain(|| s.poll_transmit());
    let Message::Join(join) = decode(&bytes(&sent[0], "bytes")) else { panic!("not a Join") };
    assert!(join.since.is_some_and(|v| !v.is_empty()), "rejoin by version");
    assert!(s.snapshot(&stream[..stream.len() - 3]).is_err(), "a cut stream is refused");
}

#[wasm_bindgen_test]
fn a_bad_remote_update_is_an_error_event() {
    let doc = LoroDoc::new();
    let mut s = in_room(&doc);
    let bad = easel_proto::message::RemoteUpdate { from: 5, data: vec![0xff; 40] };
    s.room_frame(1000.0, ROOM, frame(bad));
    let events = drain(|| s.poll_event());
    assert_eq!(string(&events[0], "type"), "error");
    assert_eq!(string(&events[0], "codeName"), "invalidUpdate");
}

#[wasm_bindgen_test]
fn frames_come_out_whole_from_any_pieces() {
    let bytes = Message::from(Ack { op_ids: vec![1, 2, 3] }).encode().unwrap();
    let mut reader = FrameReader::new(None);
    for b in &bytes[..bytes.len() - 1] {
        reader.push(&[*b]);
        assert!(reader.next_frame().unwrap().is_none());
    }
    reader.push(&bytes[bytes.len() - 1..]);
    assert_eq!(reader.next_frame().unwrap().expect("whole").kind(), "ack");
    assert!(reader.at_boundary());
    let mut small = FrameReader::new(Some(4));
    small.push(&bytes);
    let e = small.next_frame().expect_err("over the limit");
    assert_eq!(get(&e, "code").as_f64(), Some(f64::from(ErrorCode::FrameTooLarge.to_u16())));
}

#[wasm_bindgen_test]
fn the_websocket_mux_wraps_and_unwraps_streams() {
    let mut mux = WsMux::new(None);
    let control = mux.open_bi().unwrap();
    assert_eq!(control, 0, "the client's first bidirectional stream");
    let out = WsMux::stream(control, b"hi");
    let mut server = easel_proto::ws::Demux::new(easel_proto::ws::Side::Server, 8);
    let [first, second] = server.receive(&out).unwrap();
    assert_eq!(first, Some(easel_proto::ws::Event::Opened { id: 0 }));
    assert_eq!(second, Some(easel_proto::ws::Event::Data { id: 0, data: b"hi" }));
    let reply = easel_proto::ws::Envelope::Stream { id: 0, data: b"ok" }.encode();
    let events = mux.receive(&reply).unwrap();
    assert_eq!(events.length(), 1);
    assert_eq!(string(&events.get(0), "type"), "data");
    assert_eq!(bytes(&events.get(0), "data"), b"ok");
    assert!(mux.receive(&[0x7f]).is_err(), "an unknown envelope ends the session");
}

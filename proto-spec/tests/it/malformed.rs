//! Hostile input: truncated, oversized, corrupted and random bytes give typed errors, never
//! panics.

use easel_proto::datagram::{CursorBatch, CursorEntry};
use easel_proto::limits::{MAX_DATAGRAM_LEN, MAX_FRAME_LEN};
use easel_proto::message::{ChatSend, Hello, Joined, Update};
use easel_proto::{Datagram, Error, ErrorCode, FrameDecoder, Message};
use proptest::prelude::*;

use crate::samples;

/// Frames a raw body under `kind`, bypassing encode-side validation.
fn raw_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    easel_proto::varint::encode(body.len() as u64 + 1, &mut out);
    out.push(kind);
    out.extend_from_slice(body);
    out
}

fn decode_one(bytes: &[u8]) -> Result<Option<Message>, Error> {
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    d.push(bytes);
    d.decode()
}

/// Drains a decoder fed with arbitrary bytes; returns how many frames decoded.
fn drain(bytes: &[u8]) -> usize {
    let mut d = FrameDecoder::new(MAX_FRAME_LEN);
    d.push(bytes);
    let mut ok = 0;
    loop {
        match d.decode() {
            Ok(Some(m)) => {
                // Anything accepted must itself be valid and re-encodable.
                m.encode().expect("accepted message re-encodes");
                ok += 1;
            }
            Ok(None) | Err(Error::FrameTooLarge { .. }) => return ok,
            Err(e) => assert_ne!(e.code(), ErrorCode::Normal),
        }
    }
}

#[test]
fn every_truncation_of_a_frame_is_incomplete_not_an_error() {
    for m in samples::messages() {
        let bytes = m.encode().expect("encode");
        for cut in 0..bytes.len() {
            assert!(matches!(decode_one(&bytes[..cut]), Ok(None)), "{:?} cut at {cut}", m.kind());
        }
    }
}

#[test]
fn truncated_frame_bodies_are_typed_errors() {
    // The length prefix is rewritten to match, so the body itself is short.
    for m in samples::messages() {
        let bytes = m.encode().expect("encode");
        let (len, prefix) = easel_proto::varint::decode(&bytes).expect("prefix");
        let payload = &bytes[prefix..];
        assert_eq!(payload.len() as u64, len);
        for cut in 1..payload.len() {
            let short = raw_frame(payload[0], &payload[1..cut]);
            match decode_one(&short) {
                Err(e) => assert!(
                    matches!(e.code(), ErrorCode::Malformed | ErrorCode::InvalidField),
                    "{:?} cut at {cut}: {e}",
                    m.kind()
                ),
                // A shorter body can be a valid archive by coincidence; it must then be valid.
                Ok(Some(other)) => other.validate().expect("accepted means valid"),
                Ok(None) => panic!("whole frame reported incomplete"),
            }
        }
    }
}

#[test]
fn truncated_datagrams_are_typed_errors() {
    for d in samples::datagrams() {
        let bytes = d.encode().expect("encode");
        for cut in 0..bytes.len() {
            let e = Datagram::decode(&bytes[..cut]).expect_err("truncated datagram decoded");
            assert!(matches!(e, Error::Empty | Error::Malformed { .. }), "{:?} cut at {cut}: {e}", d.kind());
        }
    }
}

#[test]
fn oversized_input_is_refused_on_both_sides() {
    let huge = Update { op_id: 1, data: vec![0; MAX_FRAME_LEN] };
    assert!(matches!(Message::from(huge).encode(), Err(Error::FrameTooLarge { .. })));

    let mut prefix = Vec::new();
    easel_proto::varint::encode(MAX_FRAME_LEN as u64 + 1, &mut prefix);
    let e = decode_one(&prefix).expect_err("oversized prefix");
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);

    let e = Datagram::decode(&[0x80; MAX_DATAGRAM_LEN + 1]).expect_err("oversized datagram");
    assert_eq!(e.code(), ErrorCode::DatagramTooLarge);

    let full = CursorBatch { slot: 0, cursors: samples::cursors(CursorBatch::MAX_ENTRIES as u16) };
    assert!(Datagram::from(full).encode().expect("98 cursors fit").len() <= MAX_DATAGRAM_LEN);
    let over = CursorBatch { slot: 0, cursors: samples::cursors(CursorBatch::MAX_ENTRIES as u16 + 1) };
    assert_eq!(Datagram::from(over).encode().expect_err("99 cursors").code(), ErrorCode::InvalidField);
}

#[test]
fn fifty_cursor_batch_fits_one_datagram_at_twelve_bytes_each() {
    let one = Datagram::from(CursorBatch { slot: 0, cursors: samples::cursors(1) }).encode().expect("encode");
    let fifty =
        Datagram::from(CursorBatch { slot: 0, cursors: samples::cursors(50) }).encode().expect("encode");
    assert_eq!((fifty.len() - one.len()) / 49, 12, "bytes per cursor");
    assert_eq!(fifty.len(), 613);
    assert!(fifty.len() <= 1200);
    let split: Vec<CursorBatch> = CursorBatch::split(0, &samples::cursors(300)).collect();
    assert_eq!(split.iter().map(|b| b.cursors.len()).collect::<Vec<_>>(), [98, 98, 98, 6]);
    for b in split {
        Datagram::from(b).encode().expect("each split batch fits");
    }
}

#[test]
fn limit_breaking_fields_are_refused_on_decode() {
    // Archived directly with rkyv, as a hostile peer would, skipping our encode-side checks.
    let long_chat = ChatSend { client_msg_id: 1, text: "x".repeat(3000) };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&long_chat).expect("archive");
    let e = decode_one(&raw_frame(0x30, &body)).expect_err("3000-byte chat");
    assert!(matches!(e, Error::InvalidField { kind: "ChatSend", field: "text", .. }), "{e}");
    assert_eq!(e.code(), ErrorCode::InvalidField);

    let bad_room = easel_proto::message::Join { room: "../etc".into(), name: "x".into(), since: None };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&bad_room).expect("archive");
    let e = decode_one(&raw_frame(0x10, &body)).expect_err("bad room id");
    assert_eq!(e.code(), ErrorCode::InvalidField);

    let no_versions = Hello {
        versions: vec![],
        client_id: String::new(),
        client: String::new(),
        token: "t".into(),
        resume: None,
    };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&no_versions).expect("archive");
    assert_eq!(decode_one(&raw_frame(0x01, &body)).expect_err("no versions").code(), ErrorCode::InvalidField);

    let gone = easel_proto::message::ParticipantGone { index: 1, code: 0 };
    let full_with_leaves =
        easel_proto::message::Participants { full: true, joined: vec![], left: vec![gone] };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&full_with_leaves).expect("archive");
    let e = decode_one(&raw_frame(0x17, &body)).expect_err("a full list with leaves");
    assert!(matches!(e, Error::InvalidField { kind: "Participants", field: "left", .. }), "{e}");

    let too_many = CursorEntry { participant: 0, seq: 0, x: 0, y: 0 };
    let batch = CursorBatch { slot: 0, cursors: vec![too_many; 99] };
    let mut dgram = vec![0x81];
    dgram.extend_from_slice(&rkyv::to_bytes::<rkyv::rancor::Error>(&batch).expect("archive"));
    assert_eq!(Datagram::decode(&dgram).expect_err("99 cursors").code(), ErrorCode::DatagramTooLarge);
}

#[test]
fn wrong_channel_and_unknown_kinds_have_their_codes() {
    let cursor = samples::datagrams().remove(0).encode().expect("encode");
    let e = decode_one(&raw_frame(cursor[0], &cursor[1..])).expect_err("datagram kind on a stream");
    assert_eq!(e.code(), ErrorCode::UnexpectedMessage);

    let ping = Message::from(easel_proto::message::Ping { nonce: 1 }).encode().expect("encode");
    let e = Datagram::decode(&ping[1..]).expect_err("stream kind as datagram");
    assert_eq!(e.code(), ErrorCode::UnexpectedMessage);

    for kind in [0x00, 0x09, 0x0f, 0x2a, 0x7f, 0x84, 0xff] {
        let e = decode_one(&raw_frame(kind, &[0; 8])).expect_err("unknown kind");
        assert!(matches!(e, Error::UnknownKind(k) if k == kind));
        assert_eq!(e.code(), ErrorCode::UnknownKind);
    }
}

#[test]
fn invalid_enum_tags_and_utf8_are_malformed() {
    let joined = samples::messages().into_iter().find(|m| matches!(m, Message::Joined(_))).expect("sample");
    let Message::Joined(j) = joined else { unreachable!() };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&j).expect("archive").to_vec();
    // The `role` tag of the root struct: find it by comparing with a re-archive under another role.
    let other = rkyv::to_bytes::<rkyv::rancor::Error>(&Joined {
        role: easel_proto::message::Role::Viewer,
        ..j.clone()
    })
    .expect("archive");
    let at = body.iter().zip(other.iter()).position(|(a, b)| a != b).expect("role byte differs");
    let mut bad = body.clone();
    bad[at] = 7;
    assert!(matches!(decode_one(&raw_frame(0x11, &bad)), Err(Error::Malformed { kind: "Joined", .. })));

    let chat = ChatSend { client_msg_id: 1, text: "caf\u{e9} au lait".into() };
    let mut body = rkyv::to_bytes::<rkyv::rancor::Error>(&chat).expect("archive").to_vec();
    let at = body.windows(2).position(|w| w == [0xc3, 0xa9]).expect("é bytes");
    body[at + 1] = 0x28; // invalid continuation byte
    assert!(matches!(decode_one(&raw_frame(0x30, &body)), Err(Error::Malformed { kind: "ChatSend", .. })));
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let mut outcomes = [0usize; 2];
    for m in samples::messages() {
        let bytes = m.encode().expect("encode");
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = bytes.clone();
                bad[i] ^= flip;
                outcomes[usize::from(drain(&bad) > 0)] += 1;
            }
        }
    }
    // Both outcomes occur: corruption is caught, and harmless changes (a string byte) pass.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_stream_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        drain(&bytes);
    }

    #[test]
    fn random_bytes_after_a_known_kind_never_panic(kind in prop::sample::select(easel_proto::Kind::ALL), body in prop::collection::vec(any::<u8>(), 0..256)) {
        drain(&raw_frame(kind.to_u8(), &body));
    }

    #[test]
    fn random_datagrams_never_panic(kind in prop::sample::select(easel_proto::DatagramKind::ALL), body in prop::collection::vec(any::<u8>(), 0..1300)) {
        let mut bytes = vec![kind.to_u8()];
        bytes.extend_from_slice(&body);
        if let Ok(d) = Datagram::decode(&bytes) {
            prop_assert_eq!(Datagram::decode(&d.encode().expect("accepted re-encodes")).expect("decode"), d);
        }
    }

    #[test]
    fn random_ws_envelopes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(e) = easel_proto::ws::Envelope::decode(&bytes) {
            let bytes = e.encode();
            prop_assert_eq!(easel_proto::ws::Envelope::decode(&bytes).expect("decode"), e);
        }
    }
}

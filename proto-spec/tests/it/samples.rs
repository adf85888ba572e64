//! One realistic sample of every message kind: the golden vectors are made from these.

use easel_proto::datagram::*;
use easel_proto::message::*;
use easel_proto::{Datagram, DatagramKind, Kind, Message, PROTOCOL_VERSION};

fn participant(index: u16, user: &str, role: Role) -> Participant {
    Participant {
        index,
        user: user.into(),
        name: format!("{user} (display)"),
        role,
        read_only: false,
        chat_muted: false,
        camera: index == 0,
        hand_raised: false,
    }
}

/// Every stream message kind, once, in kind order.
pub(crate) fn messages() -> Vec<Message> {
    vec![
        Hello {
            versions: vec![PROTOCOL_VERSION],
            client_id: "c3f1a9e0-desk-42".into(),
            client: "easel-client/0.1.0".into(),
            token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJl".into(),
            resume: None,
        }
        .into(),
        Welcome {
            version: PROTOCOL_VERSION,
            session_id: 0x0123_4567_89ab_cdef,
            user: "ada".into(),
            server_time_ms: 1_795_000_000_000,
            token_expires_ms: 1_795_003_600_000,
            resume_token: vec![0xa5; 32],
            resumed: false,
            limits: SessionLimits {
                max_frame_len: 1 << 20,
                max_datagram_len: 1200,
                max_rooms: 16,
                max_participants: 2000,
                ops_per_sec: 50,
                ops_burst: 200,
                datagrams_per_sec: 120,
                datagrams_burst: 240,
                chat_per_min: 30,
                tick_hz: 60,
                heartbeat_ms: 2000,
                presence_ttl_ms: 10_000,
                resume_grace_ms: 30_000,
            },
        }
        .into(),
        Ping { nonce: 42 }.into(),
        Pong { nonce: 42, time_ms: 1_795_000_000_123 }.into(),
        RefreshToken { token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEiLCJleHAiOjJ9.c2ln".into() }.into(),
        TokenRefreshed { expires_ms: 1_795_007_200_000 }.into(),
        GoAway { code: 501, retry_after_ms: 1500, message: "server restarting".into() }.into(),
        Fault {
            code: 203,
            kind: 0x10,
            reference: 0,
            message: "token does not grant uni-a/math-101/s2".into(),
        }
        .into(),
        Join {
            room: "uni-a/math-101/2026-11-23".into(),
            name: "Ada L.".into(),
            since: Some(vec![1, 2, 3, 4]),
        }
        .into(),
        Joined {
            slot: 0,
            room: "uni-a/math-101/2026-11-23".into(),
            participant: 1,
            role: Role::Student,
            resumed: false,
            sync: SyncKind::Updates,
        }
        .into(),
        Leave {}.into(),
        Left { code: 0, message: String::new() }.into(),
        ParticipantUpdated {
            participant: Participant { hand_raised: true, ..participant(1, "ada", Role::Student) },
        }
        .into(),
        Participants {
            full: false,
            joined: vec![participant(2, "alan", Role::Viewer)],
            left: vec![ParticipantGone { index: 3, code: 306 }],
        }
        .into(),
        Update { op_id: 17, data: vec![0x6c, 0x6f, 0x72, 0x6f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05] }.into(),
        Ack { op_ids: vec![15, 16, 17] }.into(),
        Reject { op_id: 18, code: 402, message: "update does not decode".into() }.into(),
        RemoteUpdate { from: 0, data: vec![0x6c, 0x6f, 0x72, 0x6f, 0x10, 0x11] }.into(),
        Sync { since: vec![1, 2, 3, 4] }.into(),
        SnapshotBegin { slot: 0, sync: SyncKind::Snapshot, total_len: 3, version: vec![9, 8, 7] }.into(),
        SnapshotChunk { data: vec![0xde, 0xad, 0xbe] }.into(),
        ChatSend { client_msg_id: 7, text: "Is question 3 about vectors?".into() }.into(),
        ChatMessage {
            id: 1001,
            from: 1,
            user: "ada".into(),
            name: "Ada L.".into(),
            text: "Is question 3 about vectors?".into(),
            sent_ms: 1_795_000_001_000,
            client_msg_id: 7,
        }
        .into(),
        ChatDelete { id: 1001 }.into(),
        ChatDeleted { id: 1001, by: 0 }.into(),
        ChatHistory { before: 0, limit: 50 }.into(),
        ChatPage {
            messages: vec![ChatMessage {
                id: 1000,
                from: 0,
                user: "grace".into(),
                name: "Grace H.".into(),
                text: "Welcome!".into(),
                sent_ms: 1_795_000_000_500,
                client_msg_id: 1,
            }],
            more: false,
        }
        .into(),
        PollStart {
            request: 3,
            question: "Which is a vector space?".into(),
            options: vec!["R^2".into(), "Z".into(), "both".into()],
            multiple: false,
            duration_ms: 60_000,
            live: true,
        }
        .into(),
        PollStarted {
            poll_id: 77,
            request: 3,
            by: 0,
            question: "Which is a vector space?".into(),
            options: vec!["R^2".into(), "Z".into(), "both".into()],
            multiple: false,
            closes_at_ms: 1_795_000_060_000,
            live: true,
        }
        .into(),
        PollAnswer { poll_id: 77, attempt_id: 0xfeed, choices: vec![0] }.into(),
        PollAnswered { poll_id: 77, attempt_id: 0xfeed }.into(),
        PollClose { poll_id: 77 }.into(),
        PollResults { poll_id: 77, counts: vec![21, 3, 4], respondents: 28, closed: true }.into(),
        HandRaise {}.into(),
        HandLower { participant: 1 }.into(),
        HandQueue { queue: vec![1, 5, 3] }.into(),
        Moderate { target: 5, action: ModAction::ReadOnly, reason: "drawing over the notes".into() }.into(),
        Moderated { target: 5, action: ModAction::ReadOnly, by: 0, reason: "drawing over the notes".into() }
            .into(),
        SetCursorCap { cap: Some(12) }.into(),
        CursorCap { cap: 12, by: 0 }.into(),
        SfuJoin { publish: true }.into(),
        SfuGrant { can_publish: true, ice_servers: vec!["stun:127.0.0.1:3478".into()] }.into(),
        SfuSubscribe { feeds: vec![4_829_112] }.into(),
        SfuSdp {
            feed: 0,
            kind: SdpKind::Offer,
            sdp: "v=0\r\no=- 0 0 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\n".into(),
        }
        .into(),
        SfuCandidate {
            feed: 0,
            candidate: "candidate:1 1 udp 2130706431 127.0.0.2 40000 typ host".into(),
            mid: "0".into(),
            mline_index: 0,
        }
        .into(),
        SfuLeave { feed: 0 }.into(),
        SfuEvent { participant: 0, feed: 4_829_112, event: SfuEventKind::Publishing }.into(),
        SfuStatus { reachable: false, fallback_url: "https://meet.example.org/physics-101".into() }.into(),
    ]
}

/// `n` cursors of a busy room.
pub(crate) fn cursors(n: u16) -> Vec<CursorEntry> {
    (0..n)
        .map(|i| CursorEntry {
            participant: i,
            seq: 1000 + i,
            x: quantise(f64::from(i) * 37.25),
            y: quantise(480.0 - f64::from(i) * 9.5),
        })
        .collect()
}

/// Every datagram kind, once, in kind order.
pub(crate) fn datagrams() -> Vec<Datagram> {
    vec![
        Cursor { slot: 0, seq: 513, x: quantise(640.5), y: quantise(-12.25) }.into(),
        CursorBatch { slot: 0, cursors: cursors(3) }.into(),
        Heartbeat { slot: 0, seq: 9, status: Status::Active, tool: Tool::Laser }.into(),
        PresenceBatch {
            slot: 0,
            entries: vec![
                PresenceEntry { participant: 0, seq: 12, status: Status::Active, tool: Tool::Pen },
                PresenceEntry { participant: 3, seq: 4, status: Status::Away, tool: Tool::Hidden },
            ],
        }
        .into(),
    ]
}

#[test]
fn every_kind_has_exactly_one_sample() {
    let kinds: Vec<Kind> = messages().iter().map(Message::kind).collect();
    assert_eq!(kinds, Kind::ALL);
    let kinds: Vec<DatagramKind> = datagrams().iter().map(Datagram::kind).collect();
    assert_eq!(kinds, DatagramKind::ALL);
}

#[test]
fn samples_are_valid() {
    for m in messages() {
        m.validate().unwrap_or_else(|e| panic!("{:?}: {e}", m.kind()));
    }
    for d in datagrams() {
        d.validate().unwrap_or_else(|e| panic!("{:?}: {e}", d.kind()));
    }
}

//! Fixtures of the session's unit tests: a session on virtual time, and the server's answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use easel_proto::message::{Joined, Participant, Participants, Role, SessionLimits, SyncKind, Welcome};
use easel_proto::{Datagram, Message};
use loro::LoroDoc;
use web_time::Instant;

use super::{Config, Event, LoroDocument, Session, SessionError, StoreOp, Transmit};
use crate::Transport;

pub(super) const ROOM: &str = "school/math/monday";

pub(super) fn welcome(resumed: bool, token: u8) -> Welcome {
    Welcome {
        version: 1,
        session_id: 7,
        user: "ada".into(),
        server_time_ms: 0,
        token_expires_ms: 0,
        resume_token: vec![token; 32],
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

pub(super) fn joined(participant: u16, resumed: bool) -> Message {
    Message::from(Joined {
        slot: 0,
        room: ROOM.into(),
        participant,
        role: Role::Student,
        resumed,
        sync: SyncKind::None,
    })
}

/// A participant numbered `index`, a student named after it.
pub(super) fn participant(index: u16) -> Participant {
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

/// The whole list of a room with `everyone` in it.
pub(super) fn list(everyone: &[u16]) -> Message {
    Message::from(Participants {
        full: true,
        joined: everyone.iter().map(|i| participant(*i)).collect(),
        left: Vec::new(),
    })
}

pub(super) struct Harness {
    pub(super) session: Session<LoroDocument>,
    pub(super) now: Instant,
}

impl Harness {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        let config = Config { client_id: "test".into(), seed: 42, ..Config::default() };
        Self { session: Session::new(config, now), now }
    }

    /// Joins `room` with a fresh document, as the native driver does.
    pub(super) fn join(
        &mut self,
        room: &str,
        restored: Vec<(u64, Vec<u8>)>,
    ) -> Result<LoroDoc, SessionError> {
        let doc = LoroDoc::new();
        self.session.join(room, LoroDocument::new(doc.clone(), Arc::new(|| {})), restored)?;
        Ok(doc)
    }

    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
    }

    pub(super) fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.session.poll_transmit()).collect()
    }

    pub(super) fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    pub(super) fn store(&mut self) -> Vec<StoreOp> {
        std::iter::from_fn(|| self.session.poll_store()).collect()
    }

    pub(super) fn updates(&mut self) -> Vec<u64> {
        self.transmits()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Room { message: Message::Update(u), .. } => Some(u.op_id),
                _ => None,
            })
            .collect()
    }

    pub(super) fn datagrams(&mut self) -> Vec<Datagram> {
        self.transmits()
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Datagram(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    /// Connected and joined as participant 3; outputs drained.
    pub(super) fn in_room() -> (Self, LoroDoc) {
        let mut h = Self::new();
        let doc = h.join(ROOM, Vec::new()).unwrap();
        h.session.connected(h.now, Transport::Quic, &welcome(false, 1));
        h.session.handle_room(h.now, ROOM, joined(3, false));
        h.session.handle_room(h.now, ROOM, list(&[3]));
        h.transmits();
        h.events();
        (h, doc)
    }

    pub(super) fn edit(&mut self, doc: &LoroDoc, text: &str) {
        doc.get_list("shapes").push(text).unwrap();
        doc.commit();
        self.session.flush_local(self.now);
    }
}

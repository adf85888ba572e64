//! Presence across nodes on core NATS (cluster mode): each node with a room loaded publishes
//! its members' changes as one [`RelayBatch`] per pace on the room's [`subject`], and
//! subscribes to it while the room is loaded. Core NATS is at-most-once, like datagrams; the
//! room core's periodic full batches repair what is lost, and nothing here is stored.
//!
//! A message is one [`Envelope`] (rkyv, like the room log's records), checked on receipt by
//! [`decode`], sans IO: what is not a valid batch is dropped with a log line and counted
//! (`easel_cluster_nats_errors_total{kind="malformed"}`) and never reaches a room.

use std::sync::Arc;

use easel_proto::datagram::{Status, Tool};
use easel_proto::message::Role;
use futures::StreamExt as _;
use tokio::sync::{broadcast, mpsc};

use super::error;
use crate::room::{RelayBatch, Relayed};

/// Batches read ahead of a room's actor (latest wins: a full queue drops, the next refresh
/// repairs).
const QUEUE: usize = 64;
/// Longest a room waits to hand a batch to the NATS client.
const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
/// Most members one batch may carry (a room's most participants, with room to spare).
const MAX_MEMBERS: usize = 4096;
/// Longest user id or name a batch may carry, in bytes.
const MAX_TEXT: usize = 1024;

/// A room's presence subject: the room log's token (see [`super::log::token`]) under `.cur`.
pub fn subject(room: &str) -> String {
    format!("easel.room.{}.cur", super::log::token(room))
}

/// A batch on the wire.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Envelope {
    /// `id@start_ms` of the node that sent it.
    pub origin: String,
    /// Its node id.
    pub node: String,
    /// Whether it lists every member of its node.
    pub full: bool,
    /// Members: number on the origin, user, session, name, role, presence (status, tool),
    /// cursor, whether it is in the SFU room and the feed it publishes.
    pub members: Vec<Member>,
    /// Left since the last batch: number on the origin, leave code.
    pub left: Vec<(u16, u16)>,
}

/// One member on the wire (the protocol's own enums: rkyv checks their bytes).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Member {
    index: u16,
    user: String,
    session: u64,
    name: String,
    role: Role,
    presence: Option<(Status, Tool)>,
    cursor: Option<(u16, i32, i32)>,
    in_sfu: bool,
    feed: Option<u64>,
}

/// Encodes a batch.
pub fn encode(batch: &RelayBatch) -> Result<Vec<u8>, rkyv::rancor::Error> {
    let envelope = Envelope {
        origin: batch.origin.clone(),
        node: batch.node.clone(),
        full: batch.full,
        members: batch
            .members
            .iter()
            .map(|m| Member {
                index: m.index,
                user: m.user.clone(),
                session: m.session,
                name: m.name.clone(),
                role: m.role,
                presence: m.presence,
                cursor: m.cursor,
                in_sfu: m.in_sfu,
                feed: m.feed,
            })
            .collect(),
        left: batch.left.clone(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&envelope).map(|b| b.to_vec())
}

/// Decodes and checks a batch: rkyv's validation, then every field the room relies on.
pub fn decode(bytes: &[u8]) -> Result<RelayBatch, &'static str> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let e =
        rkyv::from_bytes::<Envelope, rkyv::rancor::Error>(&aligned).map_err(|_| "not a presence batch")?;
    if e.origin.is_empty() || e.origin.len() > MAX_TEXT || !e.origin.starts_with(&format!("{}@", e.node)) {
        return Err("the origin is not its node's");
    }
    if e.members.len() > MAX_MEMBERS || e.left.len() > MAX_MEMBERS {
        return Err("too many members");
    }
    if e.members.iter().any(|m| m.user.is_empty() || m.user.len() > MAX_TEXT || m.name.len() > MAX_TEXT) {
        return Err("a user id or name out of bounds");
    }
    let members = e
        .members
        .into_iter()
        .map(|m| Relayed {
            index: m.index,
            user: m.user,
            session: m.session,
            name: m.name,
            role: m.role,
            presence: m.presence,
            cursor: m.cursor,
            in_sfu: m.in_sfu,
            feed: m.feed,
        })
        .collect();
    Ok(RelayBatch { origin: e.origin, node: e.node, full: e.full, members, left: e.left })
}

/// This node's side of the relay. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    client: async_nats::Client,
    origin: Arc<str>,
    /// Nodes the cluster counted out, by id (from the membership driver).
    gone: broadcast::Sender<Arc<str>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl Relay {
    pub(super) fn new(client: async_nats::Client, origin: String, gone: broadcast::Sender<Arc<str>>) -> Self {
        Self { client, origin: origin.into(), gone }
    }

    /// This node's `id@start_ms`, which its rooms put in their batches.
    pub fn origin(&self) -> Arc<str> {
        self.origin.clone()
    }

    /// Nodes counted out of the cluster from now on.
    pub fn gone(&self) -> broadcast::Receiver<Arc<str>> {
        self.gone.subscribe()
    }

    /// Publishes a room's batch; a failure (NATS away) loses it, as a lost datagram: the next
    /// full batch repairs it. Never holds up the room: while NATS is away the client's
    /// buffer would fill and a publish wait for it, so the batch is dropped instead.
    pub async fn publish(&self, room: &str, batch: &RelayBatch) {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
        let payload = match encode(batch) {
            Ok(payload) => payload,
            Err(e) => return tracing::error!(room, "cluster: encoding a presence batch: {e}"),
        };
        let publish = self.client.publish(subject(room), payload.into());
        match tokio::time::timeout(PUBLISH_WAIT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(room, "cluster: publishing a presence batch: {e}"),
            Err(_) => tracing::debug!(room, "cluster: publishing a presence batch: the client is full"),
        }
    }

    /// Follows a room's presence subject: every valid batch (this node's own included: the
    /// room ignores those), until the receiver is dropped (the room unloads).
    pub async fn follow(&self, room: &str) -> Result<mpsc::Receiver<RelayBatch>, async_nats::SubscribeError> {
        let mut subscription = self.client.subscribe(subject(room)).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let room = room.to_owned();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = tx.closed() => break,
                    message = subscription.next() => message,
                };
                let Some(message) = message else { break };
                match decode(&message.payload) {
                    // Full: the room is behind; this batch is lost like a datagram.
                    Ok(batch) => drop(tx.try_send(batch)),
                    Err(why) => {
                        tracing::warn!(room, "cluster: dropping a malformed presence batch: {why}");
                        error("malformed");
                    }
                }
            }
            let _ = subscription.unsubscribe().await;
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> RelayBatch {
        RelayBatch {
            origin: "b@17".into(),
            node: "b".into(),
            full: true,
            members: vec![Relayed {
                index: 3,
                user: "zoe".into(),
                session: 77,
                name: "Zoe".into(),
                role: Role::Teacher,
                presence: Some((Status::Idle, Tool::Laser)),
                cursor: Some((9, -4, 12)),
                in_sfu: true,
                feed: Some(1 << 40),
            }],
            left: vec![(2, 0)],
        }
    }

    #[test]
    fn a_batch_round_trips() {
        let bytes = encode(&batch()).expect("encode");
        assert_eq!(decode(&bytes), Ok(batch()));
    }

    #[test]
    fn what_is_not_a_valid_batch_is_refused() {
        assert!(decode(b"garbage").is_err());
        assert!(decode(&[]).is_err());
        let mut wrong = batch();
        wrong.origin = "c@17".into();
        assert_eq!(decode(&encode(&wrong).expect("encode")), Err("the origin is not its node's"));
        let mut unnamed = batch();
        unnamed.members[0].user.clear();
        assert!(decode(&encode(&unnamed).expect("encode")).is_err());
        // Every single-byte corruption of a valid batch is refused or decodes: never a panic.
        let bytes = encode(&batch()).expect("encode");
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0xa5;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn the_subject_shares_the_room_logs_token() {
        let room = "uni-a/math-101/2026.11.23";
        assert_eq!(subject(room), "easel.room.dW5pLWEvbWF0aC0xMDEvMjAyNi4xMS4yMw.cur");
        assert_eq!(super::super::log::subject(room).replace(".ops", ".cur"), subject(room));
    }
}

//! The Janus VideoRoom adapter, over Janus's WebSocket API.
//!
//! An Easel room maps to the VideoRoom room numbered [`room_number`] (created on first use
//! with the configured `admin_key`). A participant's publisher is one handle that joins as
//! `publisher` under a random feed id and `publish`es the client's offer; each subscription
//! is one handle that joins as `subscriber` to one feed, whose offer the client answers with
//! `start`. Janus's `webrtcup` and `hangup` on a publisher handle are its camera going on and
//! off; a lost session (Janus restarted) is every peer leaving.

mod conn;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use self::conn::{Conn, Handle, Tuning};
use crate::{Access, Candidate, Grant, Joined, PeerEvent, PeerRequest, Sfu, SfuError, SfuPeer};

/// VideoRoom: the room already exists (a concurrent create won).
const ROOM_EXISTS: i64 = 427;
/// VideoRoom: the publisher id is taken.
const ID_EXISTS: i64 = 436;
/// Most publishers in one room.
const MAX_PUBLISHERS: u32 = 100;

/// How to reach Janus.
#[derive(Debug, Clone)]
pub struct JanusConfig {
    /// WebSocket API URL, e.g. `ws://127.0.0.1:8188`.
    pub url: String,
    /// VideoRoom `admin_key`, needed to create rooms when Janus is configured with one.
    pub admin_key: Option<String>,
    /// ICE server URLs handed to clients in their grant.
    pub ice_servers: Vec<String>,
    /// Keep-alive period (Janus drops a session after 60 s without one, by default).
    pub keepalive: Duration,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long a request waits for a session while Janus is (re)connecting.
    pub connect_wait: Duration,
}

impl JanusConfig {
    /// Defaults for `url`: no admin key or ICE servers, a keep-alive every 25 s, 10 s per
    /// request, 2 s to wait for a session.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            admin_key: None,
            ice_servers: Vec::new(),
            keepalive: Duration::from_secs(25),
            request_timeout: Duration::from_secs(10),
            connect_wait: Duration::from_secs(2),
        }
    }
}

/// The VideoRoom room number for an Easel room: FNV-1a of its id, kept to 52 bits so it is
/// exact in JavaScript too (Janus's own tools and demos read these numbers).
pub fn room_number(room: &str) -> u64 {
    let hash =
        room.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash & ((1 << 52) - 1)).max(1)
}

/// A participant of a VideoRoom room as Janus lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its feed id.
    pub id: u64,
    /// Its display name.
    pub display: String,
    /// Whether it is publishing now.
    pub publisher: bool,
}

/// The Janus VideoRoom adapter. It keeps one Janus session (re-made when Janus restarts)
/// for as long as it lives; it needs a tokio runtime.
pub struct Janus {
    conn: Conn,
    config: Arc<JanusConfig>,
    /// The control handle for room requests, of the current session.
    control: tokio::sync::Mutex<Option<Handle>>,
    /// Rooms known to exist: (session generation, room number).
    rooms: Mutex<HashSet<(u64, u64)>>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Janus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Janus").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl Janus {
    /// Starts connecting to Janus in the background (it need not be up yet).
    pub fn start(config: JanusConfig) -> Self {
        let tuning = Tuning {
            url: config.url.clone(),
            keepalive: config.keepalive,
            request_timeout: config.request_timeout,
            connect_wait: config.connect_wait,
        };
        let (conn, stop) = Conn::start(tuning);
        Self {
            conn,
            config: Arc::new(config),
            control: tokio::sync::Mutex::new(None),
            rooms: Mutex::default(),
            _stop: stop,
        }
    }

    /// Waits up to `wait` for a Janus session.
    pub async fn connected(&self, wait: Duration) -> Result<(), SfuError> {
        self.conn.live(wait).await.map(drop)
    }

    /// Who Janus lists in the room of Easel room `room` (`listparticipants`).
    pub async fn participants(&self, room: &str) -> Result<Vec<Listed>, SfuError> {
        let body = json!({"request": "listparticipants", "room": room_number(room)});
        let reply = self.control_request("listparticipants", body).await?;
        let listed = reply.get("participants").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(listed
            .iter()
            .filter_map(|p| {
                Some(Listed {
                    id: p.get("id")?.as_u64()?,
                    display: p.get("display").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    publisher: p.get("publisher").and_then(Value::as_bool).unwrap_or(false),
                })
            })
            .collect())
    }

    /// A request on the control handle, made anew when the session was.
    async fn control_request(&self, request: &str, body: Value) -> Result<Value, SfuError> {
        let generation = self.conn.live(self.config.connect_wait).await?;
        let mut control = self.control.lock().await;
        if control.as_ref().is_none_or(|h| h.generation() != generation) {
            let (handle, _events) = Handle::attach(&self.conn).await?;
            *control = Some(handle);
        }
        let handle = control.as_ref().ok_or_else(|| SfuError::Unavailable("no control handle".into()))?;
        handle.message(request, body, None).await.map(|r| r.data)
    }

    async fn ensure(&self, room: &str) -> Result<u64, SfuError> {
        let number = room_number(room);
        let generation = self.conn.live(self.config.connect_wait).await?;
        if lock(&self.rooms).contains(&(generation, number)) {
            return Ok(number);
        }
        let exists = self.control_request("exists", json!({"request": "exists", "room": number})).await?;
        if exists.get("exists").and_then(Value::as_bool) != Some(true) {
            let mut create = json!({
                "request": "create",
                "room": number,
                "description": room,
                "publishers": MAX_PUBLISHERS,
                "is_private": true,
                "audiocodec": "opus",
                "videocodec": "vp8,h264,vp9",
            });
            if let Some(key) = &self.config.admin_key {
                create["admin_key"] = json!(key);
            }
            match self.control_request("create", create).await {
                Ok(_) => tracing::info!(room, number, "Janus room created"),
                Err(SfuError::Rejected { code: ROOM_EXISTS, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        lock(&self.rooms).insert((generation, number));
        Ok(number)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sfu for Janus {
    fn ensure_room<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<(), SfuError>> {
        self.ensure(room).map(|r| r.map(drop)).boxed()
    }

    fn join(
        &self,
        request: PeerRequest,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> BoxFuture<'_, Result<Joined, SfuError>> {
        async move {
            if request.publish && !request.access.can_publish() {
                return Err(SfuError::Forbidden("this role may not publish".into()));
            }
            let room = self.ensure(&request.room).await?;
            let generation = self.conn.live(self.config.connect_wait).await?;
            let shared = Arc::new(Shared { events, publishing: Mutex::new(None) });
            let watcher = {
                let (conn, shared) = (self.conn.clone(), shared.clone());
                tokio::spawn(async move {
                    conn.lost(generation).await;
                    shared.unpublished();
                    let _ = shared.events.send(PeerEvent::Left);
                })
            };
            let mut peer = JanusPeer {
                conn: self.conn.clone(),
                room,
                participant: request.participant,
                display: request.display,
                access: request.access,
                shared,
                publisher: None,
                subscriptions: HashMap::new(),
                watcher,
            };
            if request.publish {
                peer.ensure_publisher().await?;
            }
            let _ = peer.shared.events.send(PeerEvent::Joined);
            let grant = Grant {
                can_publish: request.access.can_publish(),
                ice_servers: self.config.ice_servers.clone(),
            };
            Ok((Box::new(peer) as Box<dyn SfuPeer>, grant))
        }
        .boxed()
    }
}

/// What a peer's tasks share.
struct Shared {
    events: mpsc::UnboundedSender<PeerEvent>,
    /// The feed whose media is up, if any.
    publishing: Mutex<Option<u64>>,
}

impl Shared {
    fn publishing(&self, feed: u64) {
        if lock(&self.publishing).replace(feed).is_none() {
            let _ = self.events.send(PeerEvent::Publishing { feed });
        }
    }

    fn unpublished(&self) {
        if let Some(feed) = lock(&self.publishing).take() {
            let _ = self.events.send(PeerEvent::Unpublished { feed });
        }
    }
}

/// A handle with the task that forwards its events.
struct Leg {
    handle: Handle,
    forward: JoinHandle<()>,
}

impl Leg {
    async fn close(self) -> Result<(), SfuError> {
        self.forward.abort();
        self.handle.detach().await
    }
}

struct Publisher {
    leg: Leg,
    feed: u64,
}

/// One participant in a VideoRoom room.
struct JanusPeer {
    conn: Conn,
    room: u64,
    /// Its Easel participant number (for the logs: Janus knows it by feed id).
    participant: u16,
    display: String,
    access: Access,
    shared: Arc<Shared>,
    publisher: Option<Publisher>,
    subscriptions: HashMap<u64, Leg>,
    /// Reports the peer gone when the session is lost.
    watcher: JoinHandle<()>,
}

impl Drop for JanusPeer {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(p) = &self.publisher {
            p.leg.forward.abort();
        }
        for leg in self.subscriptions.values() {
            leg.forward.abort();
        }
    }
}

impl JanusPeer {
    fn forbid_subscriber(&self) -> Result<(), SfuError> {
        match self.access {
            Access::Publish => Ok(()),
            Access::Subscribe => Err(SfuError::Forbidden("this role may not publish".into())),
        }
    }

    /// Joins the room as a publisher, unless it already has.
    async fn ensure_publisher(&mut self) -> Result<u64, SfuError> {
        self.forbid_subscriber()?;
        if let Some(p) = &self.publisher {
            return Ok(p.feed);
        }
        let (handle, events) = Handle::attach(&self.conn).await?;
        let mut tries = 0;
        let feed = loop {
            // Random ids: several Easel servers (or restarts) may share one Janus room.
            let feed = rand::random::<u64>() >> 12;
            let join = json!({
                "request": "join", "ptype": "publisher", "room": self.room, "id": feed, "display": self.display,
            });
            match handle.message("join", join, None).await {
                Ok(_) => break feed,
                Err(SfuError::Rejected { code: ID_EXISTS, .. }) if tries < 3 => tries += 1,
                Err(e) => return Err(e),
            }
        };
        tracing::debug!(room = self.room, participant = self.participant, feed, "Janus publisher joined");
        let forward = tokio::spawn(forward(events, self.shared.clone(), 0, Some(feed)));
        self.publisher = Some(Publisher { leg: Leg { handle, forward }, feed });
        Ok(feed)
    }

    fn leg(&self, feed: u64) -> Result<&Handle, SfuError> {
        let leg = match feed {
            0 => self.publisher.as_ref().map(|p| &p.leg),
            feed => self.subscriptions.get(&feed),
        };
        leg.map(|l| &l.handle).ok_or_else(|| SfuError::State(format!("no peer connection for feed {feed}")))
    }
}

fn sdp_of(reply: &conn::PluginReply, request: &str) -> Result<String, SfuError> {
    reply.jsep.as_ref().and_then(|j| j.get("sdp")).and_then(Value::as_str).map(str::to_owned).ok_or_else(
        || SfuError::Protocol { request: request.to_owned(), detail: "no SDP in the answer".into() },
    )
}

impl SfuPeer for JanusPeer {
    fn offer(&mut self, sdp: String) -> BoxFuture<'_, Result<String, SfuError>> {
        async move {
            self.ensure_publisher().await?;
            let handle = self.leg(0)?;
            let jsep = json!({"type": "offer", "sdp": sdp});
            let reply = handle.message("publish", json!({"request": "publish"}), Some(jsep)).await?;
            sdp_of(&reply, "publish")
        }
        .boxed()
    }

    fn subscribe(&mut self, feed: u64) -> BoxFuture<'_, Result<String, SfuError>> {
        async move {
            if feed == 0 || self.subscriptions.contains_key(&feed) {
                return Err(SfuError::State(format!("feed {feed} cannot be subscribed to again")));
            }
            let (handle, events) = Handle::attach(&self.conn).await?;
            let join = json!({
                "request": "join", "ptype": "subscriber", "room": self.room, "streams": [{"feed": feed}],
            });
            let reply = handle.message("join", join, None).await?;
            let offer = sdp_of(&reply, "join")?;
            let forward = tokio::spawn(forward(events, self.shared.clone(), feed, None));
            self.subscriptions.insert(feed, Leg { handle, forward });
            Ok(offer)
        }
        .boxed()
    }

    fn answer(&mut self, feed: u64, sdp: String) -> BoxFuture<'_, Result<(), SfuError>> {
        async move {
            let handle = match feed {
                0 => return Err(SfuError::State("the publisher sends offers, not answers".into())),
                feed => self.leg(feed)?,
            };
            let jsep = json!({"type": "answer", "sdp": sdp});
            handle.message("start", json!({"request": "start"}), Some(jsep)).await.map(drop)
        }
        .boxed()
    }

    fn candidate(&mut self, feed: u64, candidate: Option<Candidate>) -> BoxFuture<'_, Result<(), SfuError>> {
        async move {
            let body = match candidate {
                Some(c) => json!({"candidate": c.candidate, "sdpMid": c.mid, "sdpMLineIndex": c.mline_index}),
                None => json!({"completed": true}),
            };
            self.leg(feed)?.trickle(body).await
        }
        .boxed()
    }

    fn unpublish(&mut self) -> BoxFuture<'_, Result<(), SfuError>> {
        async move {
            let Some(publisher) = self.publisher.take() else { return Ok(()) };
            tracing::debug!(
                room = self.room,
                participant = self.participant,
                feed = publisher.feed,
                "Janus publisher leaving"
            );
            // Detaching leaves the room: Janus no longer lists it, and its subscribers are told.
            let closed = publisher.leg.close().await;
            self.shared.unpublished();
            closed
        }
        .boxed()
    }

    fn unsubscribe(&mut self, feed: u64) -> BoxFuture<'_, Result<(), SfuError>> {
        async move {
            match self.subscriptions.remove(&feed) {
                Some(leg) => leg.close().await,
                None => Err(SfuError::State(format!("not subscribed to feed {feed}"))),
            }
        }
        .boxed()
    }

    fn leave(&mut self) -> BoxFuture<'_, Result<(), SfuError>> {
        async move {
            self.watcher.abort();
            let mut result = self.unpublish().await;
            for (_, leg) in self.subscriptions.drain() {
                result = result.and(leg.close().await);
            }
            let _ = self.shared.events.send(PeerEvent::Left);
            result
        }
        .boxed()
    }
}

/// Turns a handle's Janus events into peer events: `webrtcup` on a publisher is its media up,
/// `hangup` its media gone; trickled candidates go to the client under wire feed `wire`.
async fn forward(
    mut events: mpsc::UnboundedReceiver<Value>,
    shared: Arc<Shared>,
    wire: u64,
    publisher: Option<u64>,
) {
    while let Some(event) = events.recv().await {
        match (event.get("janus").and_then(Value::as_str), publisher) {
            (Some("webrtcup"), Some(feed)) => shared.publishing(feed),
            (Some("hangup"), Some(_)) => shared.unpublished(),
            (Some("trickle"), _) => {
                let candidate = event.get("candidate").cloned().unwrap_or_default();
                let candidate = match candidate.get("completed").and_then(Value::as_bool) {
                    Some(true) => None,
                    _ => Some(Candidate {
                        candidate: candidate
                            .get("candidate")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .into(),
                        mid: candidate.get("sdpMid").and_then(Value::as_str).unwrap_or_default().into(),
                        mline_index: candidate
                            .get("sdpMLineIndex")
                            .and_then(Value::as_u64)
                            .and_then(|i| u16::try_from(i).ok())
                            .unwrap_or(0),
                    }),
                };
                let _ = shared.events.send(PeerEvent::Candidate { feed: wire, candidate });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_numbers_are_stable_nonzero_and_js_safe() {
        let a = room_number("uni-a/math-101/2026-11-23");
        assert_eq!(a, room_number("uni-a/math-101/2026-11-23"));
        assert_ne!(a, room_number("uni-a/math-101/2026-11-24"));
        assert!(a > 0 && a < (1 << 53));
    }
}

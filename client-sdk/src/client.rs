//! The app-facing client: a tokio task that drives one [`Session`] over real connections.
//!
//! [`Client::connect`] races the transports a URL names (QUIC first; WebSocket joins the race
//! after a head start), remembers the winner, and from then on keeps the session alive by
//! itself: when the connection drops it reconnects with backoff and full jitter, resumes the
//! session, rejoins rooms with their version vectors and resends unacked edits exactly once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_client::Error> {
//! use easel_client::{Client, Event};
//! let client = Client::builder("…jwt…")
//!     .cert_hash("…sha-256 hex from GET /cert-hash…")?
//!     .connect("easel://127.0.0.1")
//!     .await?;
//! let room = client.join("school/math/monday").await?;
//! room.edit(|doc| doc.get_list("shapes").push("circle"))?;
//! room.cursor(120.0, 80.5);
//! while let Some(event) = client.next_event().await {
//!     if let Event::Cursors { cursors, .. } = event {
//!         for c in cursors {
//!             println!("{} is at {},{}", c.participant, c.x, c.y);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use easel_proto::datagram::{Status, Tool};
use easel_proto::message::{
    ChatDelete, ChatHistory, ChatSend, HandLower, HandRaise, Join, Joined, ModAction, Moderate, PollAnswer,
    PollClose, PollStart, SdpKind, SfuCandidate, SfuJoin, SfuLeave, SfuSdp, SfuSubscribe,
};
use easel_proto::{ErrorCode, Message};
use easel_transport::client::{ClientError, Connection, Options, Transport};
use futures::future::{BoxFuture, FutureExt as _};
use futures::stream::{FuturesUnordered, StreamExt as _};
use loro::LoroDoc;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::endpoint::{self, Endpoint, UrlError};
use crate::session::{self, Event, Session, SessionError, Transmit};
use crate::store::{Store, StoreError};

/// Received datagrams kept for the driver; older ones are dropped first (latest wins).
const DATAGRAM_BACKLOG: usize = 64;

/// Most connection inputs handled in one turn of the driver before its outputs go out.
const INPUT_BATCH: usize = 256;

/// Events the app has not read yet beyond which cursor and presence events are dropped
/// (they are latest-wins state; the next one replaces them).
const EVENT_BACKLOG: usize = 4096;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL is not valid.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The certificate hash is not 32 bytes of hex.
    #[error("certificate hash: {0}")]
    CertHash(String),
    /// No transport could connect; the error of each attempt.
    #[error("could not connect: {}", .0.iter().map(|(e, err)| format!("{e}: {err}")).collect::<Vec<_>>().join("; "))]
    Connect(Vec<(Endpoint, ClientError)>),
    /// The server refused (a `Fault`), e.g. a bad token or a room the token does not grant.
    #[error("refused ({code}): {message}")]
    Refused {
        /// Wire code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A local precondition failed (bad room id, room already joined, …).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The offline store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An edit of the local document failed (converted so that `room.edit(..)?` composes).
    #[error("document: {0}")]
    Document(#[from] loro::LoroError),
    /// The client has been closed.
    #[error("the client is closed")]
    Closed,
}

/// Builds a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    token: String,
    cert_hash: Option<[u8; 32]>,
    config: session::Config,
    store: Option<PathBuf>,
    head_start: Duration,
    attempt_timeout: Duration,
}

impl ClientBuilder {
    /// Pins the server certificate by its SHA-256 in hex (a dev server's `GET /cert-hash`);
    /// without it the system's roots verify the server.
    pub fn cert_hash(mut self, hex_digest: &str) -> Result<Self, Error> {
        let bytes = hex::decode(hex_digest.trim()).map_err(|e| Error::CertHash(e.to_string()))?;
        self.cert_hash = Some(bytes.try_into().map_err(|_| Error::CertHash("must be 32 bytes".into()))?);
        Ok(self)
    }

    /// Display name shown to others (default: the token's `name` or subject).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Most cursor datagrams per second per room (default 30).
    pub fn cursor_hz(mut self, hz: u32) -> Self {
        self.config.cursor_hz = hz.max(1);
        self
    }

    /// Reconnect backoff: the first delay bound and the largest (default 250 ms and 10 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max.max(min);
        self
    }

    /// How long QUIC and WebTransport attempts run alone before WebSocket joins the race
    /// (default 200 ms).
    pub fn head_start(mut self, head_start: Duration) -> Self {
        self.head_start = head_start;
        self
    }

    /// Give up on one connection attempt after this long (default 10 s).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Stable installation id (default: kept in the offline store, else random per client).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }

    /// Keeps unacked edits in a `redb` file at `path`: they survive an app restart and are
    /// sent on the next connect.
    pub fn offline_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(path.into());
        self
    }

    /// Connects to `url` (see [`crate::endpoint`]) and returns once the session is established;
    /// fails if no transport connects or the server refuses the token.
    pub async fn connect(self, url: &str) -> Result<Client, Error> {
        let (client, first) = self.start(url)?;
        match first.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts the client without waiting: it connects in the background and keeps trying
    /// (an app that opens while offline still edits; the edits go out when the server is back).
    pub fn spawn(self, url: &str) -> Result<Client, Error> {
        Ok(self.start(url)?.0)
    }

    fn start(mut self, url: &str) -> Result<(Client, oneshot::Receiver<Result<(), Error>>), Error> {
        let endpoints = endpoint::parse(url)?;
        let store = match &self.store {
            Some(path) => {
                let store = Store::open(path)?;
                if self.config.client_id.is_empty() {
                    self.config.client_id = store.client_id()?;
                }
                self.config.first_op_id = store.next_op_id()?;
                Some(store)
            }
            None => None,
        };
        if self.config.client_id.is_empty() {
            self.config.client_id = format!("easel-{:016x}", rand::random::<u64>());
        }
        self.config.seed = rand::random();
        let wake = Arc::new(Notify::new());
        let waker = {
            let wake = wake.clone();
            Arc::new(move || wake.notify_one()) as Arc<dyn Fn() + Send + Sync>
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let driver = Driver {
            session: Session::new(self.config, Instant::now(), waker),
            token: self.token,
            endpoints,
            cert_hash: self.cert_hash,
            head_start: self.head_start,
            attempt_timeout: self.attempt_timeout,
            store,
            cmds: cmd_rx,
            events: event_tx,
            backlog: backlog.clone(),
            wake,
            live: None,
            connecting: None,
            first: Some(first_tx),
            join_waiters: HashMap::new(),
        };
        let task = tokio::spawn(driver.run());
        let client = Client {
            // Request ids (chat, polls, answers) must not repeat across app runs: a repeated
            // poll attempt id is a no-op on the server. A random start makes a clash unlikely.
            ids: Arc::new(AtomicU64::new(rand::random::<u64>() >> 1)),
            cmds: cmd_tx,
            events: tokio::sync::Mutex::new(event_rx),
            backlog,
            _task: Arc::new(AbortOnDrop(task)),
        };
        Ok((client, first_rx))
    }
}

/// A connected (or reconnecting) Easel client. Dropping it closes the session cleanly.
#[derive(Debug)]
pub struct Client {
    ids: Arc<AtomicU64>,
    cmds: mpsc::UnboundedSender<Command>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Event>>,
    backlog: Arc<AtomicUsize>,
    _task: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Client {
    /// A builder with the JWT to present (and to present again on every reconnect).
    pub fn builder(token: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            token: token.into(),
            cert_hash: None,
            config: session::Config::default(),
            store: None,
            head_start: Duration::from_millis(200),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    /// Connects to `url` with `token` and the defaults (see [`ClientBuilder`]).
    pub async fn connect(url: &str, token: &str) -> Result<Self, Error> {
        Self::builder(token).connect(url).await
    }

    /// Joins `room`. When connected this waits for the server's answer (an error says why it
    /// refused); when offline it returns at once and the join happens on reconnect.
    pub async fn join(&self, room: &str) -> Result<Room, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Join { room: room.to_owned(), reply })?;
        let doc = answer.await.map_err(|_| Error::Closed)??;
        Ok(Room { id: room.to_owned(), doc, cmds: self.cmds.clone(), ids: self.ids.clone() })
    }

    /// The next event (cursors, presence, edits, connection state, errors); `None` once the
    /// client is closed.
    pub async fn next_event(&self) -> Option<Event> {
        let event = self.events.lock().await.recv().await;
        if event.is_some() {
            self.backlog.fetch_sub(1, Ordering::Relaxed);
        }
        event
    }

    /// Presents a fresh JWT for the same user (before the current one expires); it is also
    /// the token used for later reconnects.
    pub fn refresh_token(&self, token: &str) -> Result<(), Error> {
        self.send(Command::RefreshToken(token.to_owned()))
    }

    /// Closes the session cleanly: others see us leave at once. Unacked edits stay in the
    /// offline store, if one is set.
    pub async fn close(self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Close(reply)).is_ok() {
            let _ = done.await;
        }
    }

    fn send(&self, cmd: Command) -> Result<(), Error> {
        self.cmds.send(cmd).map_err(|_| Error::Closed)
    }
}

/// A joined room: its local Loro document, and our cursor and presence in it.
#[derive(Debug, Clone)]
pub struct Room {
    id: String,
    doc: LoroDoc,
    cmds: mpsc::UnboundedSender<Command>,
    ids: Arc<AtomicU64>,
}

/// A poll to start (see [`Room::start_poll`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The question (1 to 500 bytes).
    pub question: String,
    /// The options (2 to 16, each 1 to 200 bytes).
    pub options: Vec<String>,
    /// Whether an answer may pick several options.
    pub multiple: bool,
    /// Close automatically after this long (at most 24 h); `None`: only by [`Room::close_poll`].
    pub duration: Option<Duration>,
    /// Broadcast counts while open.
    pub live: bool,
}

impl Room {
    /// The room id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The local document. Reads are always allowed; after writing, call `commit()` (or use
    /// [`Room::edit`]) — every commit becomes one op sent to the server.
    pub fn doc(&self) -> &LoroDoc {
        &self.doc
    }

    /// Runs `f` on the document and commits: the edit applies locally at once and is sent.
    pub fn edit<R>(&self, f: impl FnOnce(&LoroDoc) -> R) -> R {
        let out = f(&self.doc);
        self.doc.commit();
        out
    }

    /// Moves our cursor (board pixels); throttled, newest position wins.
    pub fn cursor(&self, x: f64, y: f64) {
        let _ = self.cmds.send(Command::Cursor { room: self.id.clone(), x, y });
    }

    /// Sets our presence status and pointer tool.
    pub fn presence(&self, status: Status, tool: Tool) {
        let _ = self.cmds.send(Command::Presence { room: self.id.clone(), status, tool });
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    async fn request(&self, message: Message) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.cmds
            .send(Command::Request { room: self.id.clone(), message, reply })
            .map_err(|_| Error::Closed)?;
        Ok(answer.await.map_err(|_| Error::Closed)??)
    }

    /// Sends a chat message; returns its `client_msg_id`. Everyone, us included, gets
    /// [`Event::Chat`] once it is stored; a refusal is [`Event::Refused`] with this id.
    pub async fn chat(&self, text: &str) -> Result<u64, Error> {
        let client_msg_id = self.next_id();
        self.request(Message::from(ChatSend { client_msg_id, text: text.to_owned() })).await?;
        Ok(client_msg_id)
    }

    /// Deletes a chat message for everyone (teachers).
    pub async fn delete_chat(&self, id: u64) -> Result<(), Error> {
        self.request(Message::from(ChatDelete { id })).await
    }

    /// Asks for up to `limit` messages older than `before` (0: the newest); the answer is
    /// [`Event::ChatPage`].
    pub async fn chat_history(&self, before: u64, limit: u16) -> Result<(), Error> {
        self.request(Message::from(ChatHistory { before, limit })).await
    }

    /// Starts a poll (teachers); returns the request id that [`Event::PollStarted`] carries.
    pub async fn start_poll(&self, poll: Poll) -> Result<u64, Error> {
        let request = self.next_id();
        let duration_ms = poll.duration.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        let start = PollStart {
            request,
            question: poll.question,
            options: poll.options,
            multiple: poll.multiple,
            duration_ms,
            live: poll.live,
        };
        self.request(Message::from(start)).await?;
        Ok(request)
    }

    /// Answers a poll with option indices; returns the attempt id. Sending the same answer
    /// again (after a reconnect) must reuse it: see [`Room::answer_poll_as`].
    pub async fn answer_poll(&self, poll_id: u64, choices: &[u8]) -> Result<u64, Error> {
        let attempt_id = self.next_id();
        self.answer_poll_as(poll_id, attempt_id, choices).await?;
        Ok(attempt_id)
    }

    /// Answers a poll with an explicit attempt id: the same id again is counted once, a new
    /// one replaces our previous answer.
    pub async fn answer_poll_as(&self, poll_id: u64, attempt_id: u64, choices: &[u8]) -> Result<(), Error> {
        self.request(Message::from(PollAnswer { poll_id, attempt_id, choices: choices.to_vec() })).await
    }

    /// Closes a poll (teachers); everyone gets the final [`Event::PollResults`].
    pub async fn close_poll(&self, poll_id: u64) -> Result<(), Error> {
        self.request(Message::from(PollClose { poll_id })).await
    }

    /// Raises our hand (joins the end of the queue).
    pub async fn raise_hand(&self) -> Result<(), Error> {
        self.request(Message::from(HandRaise {})).await
    }

    /// Lowers a hand: our own, or anyone's for a teacher.
    pub async fn lower_hand(&self, participant: u16) -> Result<(), Error> {
        self.request(Message::from(HandLower { participant })).await
    }

    /// A teacher's moderation of participant `target` (mute chat, read-only, remove, …).
    pub async fn moderate(&self, target: u16, action: ModAction, reason: &str) -> Result<(), Error> {
        self.request(Message::from(Moderate { target, action, reason: reason.to_owned() })).await
    }

    /// Asks for SFU access (SPEC §13), to publish our camera or only to subscribe. The answer
    /// is [`Event::SfuGrant`]; a viewer asking to publish is refused ([`Event::Refused`] with
    /// `Forbidden`), and a server without an SFU refuses with `SfuUnavailable`.
    ///
    /// [`Event::SfuGrant`]: crate::Event::SfuGrant
    /// [`Event::Refused`]: crate::Event::Refused
    pub async fn sfu_join(&self, publish: bool) -> Result<(), Error> {
        self.request(Message::from(SfuJoin { publish })).await
    }

    /// Sends an SDP for a peer connection: our publisher's offer (`feed` 0; the SFU's answer
    /// comes as [`Event::SfuSdp`]), or our answer to the SFU's offer for a subscribed feed.
    ///
    /// [`Event::SfuSdp`]: crate::Event::SfuSdp
    pub async fn sfu_sdp(&self, feed: u64, kind: SdpKind, sdp: &str) -> Result<(), Error> {
        self.request(Message::from(SfuSdp { feed, kind, sdp: sdp.to_owned() })).await
    }

    /// Trickles one of our ICE candidates for a peer connection (`feed` as in
    /// [`Room::sfu_sdp`]); an empty `candidate` ends them.
    pub async fn sfu_candidate(
        &self,
        feed: u64,
        candidate: &str,
        mid: &str,
        mline_index: u16,
    ) -> Result<(), Error> {
        let candidate =
            SfuCandidate { feed, candidate: candidate.to_owned(), mid: mid.to_owned(), mline_index };
        self.request(Message::from(candidate)).await
    }

    /// Subscribes to feeds (ids from [`Event::SfuEvent`]); the SFU's offer for each comes as
    /// [`Event::SfuSdp`].
    ///
    /// [`Event::SfuEvent`]: crate::Event::SfuEvent
    /// [`Event::SfuSdp`]: crate::Event::SfuSdp
    pub async fn sfu_subscribe(&self, feeds: &[u64]) -> Result<(), Error> {
        self.request(Message::from(SfuSubscribe { feeds: feeds.to_vec() })).await
    }

    /// Stops publishing (`feed` 0) or drops the subscription to `feed`.
    pub async fn sfu_leave(&self, feed: u64) -> Result<(), Error> {
        self.request(Message::from(SfuLeave { feed })).await
    }

    /// Leaves the room (unacked edits of the room are dropped).
    pub fn leave(self) -> Result<(), Error> {
        self.cmds.send(Command::Leave(self.id)).map_err(|_| Error::Closed)
    }
}

enum Command {
    Join { room: String, reply: oneshot::Sender<Result<LoroDoc, Error>> },
    Leave(String),
    Cursor { room: String, x: f64, y: f64 },
    Presence { room: String, status: Status, tool: Tool },
    RefreshToken(String),
    Request { room: String, message: Message, reply: oneshot::Sender<Result<(), SessionError>> },
    Close(oneshot::Sender<()>),
}

/// What a connection's reader tasks report.
enum Input {
    Joined {
        room: String,
        generation: u64,
        joined: Joined,
        writer: mpsc::UnboundedSender<Message>,
    },
    Room {
        room: String,
        message: Message,
    },
    RoomEnded {
        room: String,
        generation: u64,
    },
    Snapshot {
        slot: u16,
        data: Vec<u8>,
    },
    /// Datagrams are waiting in [`Live::datagrams`].
    Datagrams,
    Control(Message),
    Lost(ClientError),
}

struct Live {
    conn: Arc<Connection>,
    /// Received datagrams not handled yet, oldest first and at most [`DATAGRAM_BACKLOG`]: a
    /// busy app drops stale cursor batches instead of queueing them ahead of edits and acks.
    datagrams: Arc<std::sync::Mutex<VecDeque<easel_proto::Datagram>>>,
    inputs: mpsc::UnboundedReceiver<Input>,
    input_tx: mpsc::UnboundedSender<Input>,
    writers: HashMap<String, (u64, mpsc::UnboundedSender<Message>)>,
    generation: u64,
    /// Every task of this connection; dropping the set aborts them.
    tasks: JoinSet<()>,
}

type Connecting = BoxFuture<'static, Result<(Connection, Transport), Vec<(Endpoint, ClientError)>>>;

struct Driver {
    session: Session,
    token: String,
    endpoints: Vec<Endpoint>,
    cert_hash: Option<[u8; 32]>,
    head_start: Duration,
    attempt_timeout: Duration,
    store: Option<Store>,
    cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    backlog: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    live: Option<Live>,
    connecting: Option<Connecting>,
    /// Resolved with the first connection's outcome (for [`ClientBuilder::connect`]).
    first: Option<oneshot::Sender<Result<(), Error>>>,
    join_waiters: HashMap<String, (oneshot::Sender<Result<LoroDoc, Error>>, LoroDoc)>,
}

impl Driver {
    async fn run(mut self) {
        loop {
            self.drain();
            let now = Instant::now();
            if self.live.is_none() && self.connecting.is_none() && self.session.should_connect(now) {
                self.connecting = Some(self.attempt());
            }
            let deadline = self.session.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(Command::Close(done)) => {
                        self.close();
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => self.command(cmd),
                    None => {
                        self.close();
                        return;
                    }
                },
                () = self.wake.notified() => self.session.flush_local(Instant::now()),
                input = async { self.live.as_mut()?.inputs.recv().await }, if self.live.is_some() => {
                    if let Some(input) = input {
                        self.input(input);
                        // Take what else has arrived before handing results out: remote
                        // updates of one burst are then imported as one batch.
                        for _ in 0..INPUT_BATCH {
                            let Some(next) = self.live.as_mut().and_then(|l| l.inputs.try_recv().ok()) else { break };
                            self.input(next);
                        }
                    }
                }
                result = async { self.connecting.as_mut()?.await.into() }, if self.connecting.is_some() => {
                    self.connecting = None;
                    if let Some(result) = result {
                        self.connected(result);
                    }
                }
                () = async { if let Some(at) = deadline { tokio::time::sleep_until(at).await } }, if deadline.is_some() => {
                    self.session.handle_timeout(Instant::now());
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join { room, reply } => {
                let restored = match self.store.as_ref().map(|s| s.pending(&room)).transpose() {
                    Ok(ops) => ops.unwrap_or_default(),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                        return;
                    }
                };
                match self.session.join(&room, restored) {
                    Ok(doc) if self.session.is_connected() => {
                        // Answer when the server does (Joined or a refusal).
                        self.join_waiters.insert(room, (reply, doc));
                    }
                    Ok(doc) => {
                        let _ = reply.send(Ok(doc));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Command::Leave(room) => {
                let _ = self.session.leave(&room);
            }
            Command::Cursor { room, x, y } => {
                let _ = self.session.cursor(now, &room, x, y);
            }
            Command::Presence { room, status, tool } => {
                let _ = self.session.presence(now, &room, status, tool);
            }
            Command::Request { room, message, reply } => {
                let _ = reply.send(self.session.request(&room, message));
            }
            Command::RefreshToken(token) => {
                self.session.refresh_token(&token);
                self.token = token;
            }
            Command::Close(_) => {}
        }
    }

    /// Moves the session's outputs to the store, the network and the app, in that order (an
    /// op is durable locally before it is sent).
    fn drain(&mut self) {
        let mut ops = Vec::new();
        while let Some(op) = self.session.poll_store() {
            ops.push(op);
        }
        if let (Some(store), false) = (&self.store, ops.is_empty())
            && let Err(e) = store.apply(&ops, self.session.next_op_id())
        {
            self.emit(Event::Error { room: None, code: ErrorCode::Internal, message: e.to_string() });
        }
        while let Some(t) = self.session.poll_transmit() {
            self.transmit(t);
        }
        while let Some(event) = self.session.poll_event() {
            self.answer_waiters(&event);
            self.emit(event);
        }
    }

    fn answer_waiters(&mut self, event: &Event) {
        match event {
            Event::Joined { room, .. } => {
                if let Some((reply, doc)) = self.join_waiters.remove(room) {
                    let _ = reply.send(Ok(doc));
                }
            }
            Event::JoinFailed { room, code, message } => {
                if let Some((reply, _)) = self.join_waiters.remove(room) {
                    let _ = reply.send(Err(Error::Refused { code: *code, message: message.clone() }));
                }
            }
            // Offline now: the join completes on reconnect; the app may edit meanwhile.
            Event::Disconnected { .. } => {
                for (_, (reply, doc)) in self.join_waiters.drain() {
                    let _ = reply.send(Ok(doc));
                }
            }
            _ => {}
        }
    }

    fn emit(&self, event: Event) {
        let latest_wins = matches!(event, Event::Cursors { .. } | Event::Presence { .. });
        if latest_wins && self.backlog.load(Ordering::Relaxed) >= EVENT_BACKLOG {
            return;
        }
        if self.events.send(event).is_ok() {
            self.backlog.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let Some(live) = &mut self.live else { return };
        match t {
            Transmit::Datagram(d) => {
                // Latest-wins: a datagram that cannot go now is not worth keeping.
                let _ = live.conn.send_datagram(&d);
            }
            Transmit::Room { room, message } => {
                if let Some((_, writer)) = live.writers.get(&room) {
                    let _ = writer.send(message);
                }
            }
            Transmit::Control(message) => {
                let (conn, tx) = (live.conn.clone(), live.input_tx.clone());
                live.tasks.spawn(async move {
                    if let Err(e) = conn.send_control(&message).await {
                        let _ = tx.send(Input::Lost(e));
                    }
                });
            }
            Transmit::Join(join) => {
                live.generation += 1;
                let generation = live.generation;
                let (conn, tx) = (live.conn.clone(), live.input_tx.clone());
                live.tasks.spawn(room_stream(conn, join, generation, tx));
            }
        }
    }

    fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Joined { room, generation, joined, writer } => {
                if let Some(live) = &mut self.live {
                    live.writers.insert(room.clone(), (generation, writer));
                }
                self.session.handle_room(now, &room, Message::Joined(joined));
            }
            Input::Room { room, message } => self.session.handle_room(now, &room, message),
            Input::RoomEnded { room, generation } => {
                if let Some(live) = &mut self.live
                    && live.writers.get(&room).is_some_and(|(g, _)| *g == generation)
                {
                    live.writers.remove(&room);
                }
            }
            Input::Snapshot { slot, data } => self.session.handle_snapshot(slot, &data),
            Input::Datagrams => {
                let waiting = match &self.live {
                    Some(live) => {
                        std::mem::take(&mut *live.datagrams.lock().unwrap_or_else(PoisonError::into_inner))
                    }
                    None => VecDeque::new(),
                };
                for d in waiting {
                    self.session.handle_datagram(d);
                }
            }
            Input::Control(message) => self.session.handle_control(message),
            Input::Lost(e) => {
                // Only the current connection's loss counts (its tasks all report it).
                if self.live.take().is_some() {
                    let code = match &e {
                        ClientError::Closed { code, .. } => *code,
                        _ => None,
                    };
                    self.session.disconnected(now, code, &e.to_string(), None);
                }
            }
        }
    }

    fn attempt(&self) -> Connecting {
        let hello = self.session.hello(&self.token);
        race(self.endpoints.clone(), hello, self.cert_hash, self.head_start, self.attempt_timeout).boxed()
    }

    fn connected(&mut self, result: Result<(Connection, Transport), Vec<(Endpoint, ClientError)>>) {
        let now = Instant::now();
        let (conn, transport) = match result {
            Ok(ok) => ok,
            Err(errors) => {
                let refusal = errors.iter().find_map(|(_, e)| match e {
                    ClientError::Refused { code, message } => Some((*code, message.clone())),
                    _ => None,
                });
                let code = refusal.as_ref().map(|r| r.0);
                let error = match refusal {
                    Some((code, message)) => Error::Refused { code, message },
                    None => Error::Connect(errors),
                };
                self.session.disconnected(now, code, &error.to_string(), None);
                if let Some(first) = self.first.take() {
                    let _ = first.send(Err(error));
                }
                return;
            }
        };
        // Prefer the winner next time.
        if let Some(i) = self.endpoints.iter().position(|e| e.transport == transport) {
            let winner = self.endpoints.remove(i);
            self.endpoints.insert(0, winner);
        }
        let conn = Arc::new(conn);
        let (input_tx, inputs) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        tasks.spawn(control_reader(conn.clone(), input_tx.clone()));
        let datagrams = Arc::new(std::sync::Mutex::new(VecDeque::new()));
        tasks.spawn(datagram_reader(conn.clone(), datagrams.clone(), input_tx.clone()));
        tasks.spawn(snapshot_reader(conn.clone(), input_tx.clone()));
        self.session.connected(now, transport, conn.welcome());
        self.live =
            Some(Live { conn, datagrams, inputs, input_tx, writers: HashMap::new(), generation: 0, tasks });
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    /// Ends the session cleanly; edits committed before the close are stored first.
    fn close(&mut self) {
        self.session.flush_local(Instant::now());
        self.drain();
        if let Some(live) = self.live.take() {
            live.conn.close(ErrorCode::Normal);
        }
    }
}

type Attempt = BoxFuture<'static, (Endpoint, Result<Connection, ClientError>)>;

/// Tries `endpoints` in order, each starting `head_start` after the previous one (or at once
/// when every earlier attempt has failed); the first to finish the handshake wins.
async fn race(
    endpoints: Vec<Endpoint>,
    hello: easel_proto::message::Hello,
    cert_hash: Option<[u8; 32]>,
    head_start: Duration,
    timeout: Duration,
) -> Result<(Connection, Transport), Vec<(Endpoint, ClientError)>> {
    let mut waiting = endpoints.into_iter();
    let mut running: FuturesUnordered<Attempt> = FuturesUnordered::new();
    let mut errors = Vec::new();
    let start = |endpoint: Endpoint| {
        let hello = hello.clone();
        async move {
            let result = match tokio::time::timeout(timeout, attempt(&endpoint, hello, cert_hash)).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Connect(format!("no answer within {timeout:?}"))),
            };
            (endpoint, result)
        }
        .boxed()
    };
    if let Some(first) = waiting.next() {
        running.push(start(first));
    }
    loop {
        if running.is_empty() {
            match waiting.next() {
                Some(next) => running.push(start(next)),
                None => return Err(errors),
            }
        }
        tokio::select! {
            Some((endpoint, result)) = running.next() => match result {
                Ok(conn) => return Ok((conn, endpoint.transport)),
                // A refusal (bad token) will not change on another transport.
                Err(e @ ClientError::Refused { .. }) => {
                    errors.push((endpoint, e));
                    return Err(errors);
                }
                Err(e) => errors.push((endpoint, e)),
            },
            () = tokio::time::sleep(head_start), if waiting.len() > 0 => {
                if let Some(next) = waiting.next() {
                    running.push(start(next));
                }
            }
        }
    }
}

async fn attempt(
    endpoint: &Endpoint,
    hello: easel_proto::message::Hello,
    cert_hash: Option<[u8; 32]>,
) -> Result<Connection, ClientError> {
    let addr =
        endpoint.resolve().await.map_err(|e| ClientError::Connect(format!("{}: {e}", endpoint.host)))?;
    let mut options = Options::new(addr, endpoint.transport);
    options.server_name = endpoint.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    options.cert_hash = cert_hash;
    options.tls = endpoint.tls;
    Connection::handshake(&options, hello).await
}

async fn room_stream(conn: Arc<Connection>, join: Join, generation: u64, tx: mpsc::UnboundedSender<Input>) {
    let room = join.room.clone();
    let stream = match conn.join_with(join).await {
        Ok(s) => s,
        Err(ClientError::Refused { code, message }) => {
            let fault = easel_proto::message::Fault { code: code.to_u16(), kind: 0, reference: 0, message };
            let _ = tx.send(Input::Room { room, message: Message::from(fault) });
            return;
        }
        // The connection is going away; its loss is reported by the other readers.
        Err(_) => return,
    };
    let (mut sender, mut reader, joined) = stream.into_split();
    let (writer, mut queue) = mpsc::unbounded_channel::<Message>();
    if tx.send(Input::Joined { room: room.clone(), generation, joined, writer }).is_err() {
        return;
    }
    let write = async move {
        while let Some(message) = queue.recv().await {
            if sender.send(&message).await.is_err() {
                return;
            }
        }
        let _ = sender.finish().await;
    };
    let read = async {
        while let Ok(Some(message)) = reader.next().await {
            if tx.send(Input::Room { room: room.clone(), message }).is_err() {
                return;
            }
        }
    };
    // Reading ends with the stream (Left, or the connection dropping); writing with the room.
    tokio::join!(write, read);
    let _ = tx.send(Input::RoomEnded { room, generation });
}

async fn control_reader(conn: Arc<Connection>, tx: mpsc::UnboundedSender<Input>) {
    loop {
        match conn.control_next().await {
            Ok(Some(message)) => {
                if tx.send(Input::Control(message)).is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                let _ = tx.send(Input::Lost(conn.closed().await));
                return;
            }
        }
    }
}

async fn datagram_reader(
    conn: Arc<Connection>,
    waiting: Arc<std::sync::Mutex<VecDeque<easel_proto::Datagram>>>,
    tx: mpsc::UnboundedSender<Input>,
) {
    loop {
        match conn.recv_datagram().await {
            Ok(d) => {
                let first = {
                    let mut queue = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                    if queue.len() >= DATAGRAM_BACKLOG {
                        queue.pop_front();
                    }
                    queue.push_back(d);
                    queue.len() == 1
                };
                // One wake-up per batch of waiting datagrams, not one input each.
                if first && tx.send(Input::Datagrams).is_err() {
                    return;
                }
            }
            // A datagram that does not decode is dropped (SPEC §3.2).
            Err(ClientError::Protocol(_)) => {}
            Err(e) => {
                let _ = tx.send(Input::Lost(e));
                return;
            }
        }
    }
}

async fn snapshot_reader(conn: Arc<Connection>, tx: mpsc::UnboundedSender<Input>) {
    while let Ok(s) = conn.snapshot().await {
        if tx.send(Input::Snapshot { slot: s.slot, data: s.data }).is_err() {
            return;
        }
    }
}

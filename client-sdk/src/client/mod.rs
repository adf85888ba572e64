//! The app-facing client: a tokio task that drives one [`Session`] over real connections.
//!
//! [`Client::connect`] races the transports a URL names (QUIC first; WebSocket joins the race
//! after a head start), remembers the winner, and from then on keeps the session alive by
//! itself: when the connection drops it reconnects with backoff and full jitter, resumes the
//! session, rejoins rooms with their version vectors and resends unacked edits exactly once.
//!
//! **Cluster mode** (`easel serve --cluster`, several nodes): give every node's URL to
//! [`ClientBuilder::connect_nodes`] (or [`ClientBuilder::spawn_nodes`]). The client tries the
//! node that answered last first and the others in an order shuffled per client (so clients
//! spread), each a head start after the one before or at once when it fails. When its node
//! dies, the reconnect lands on another node and resumes there: the same session id, its
//! rooms rejoined with `resumed` (SPEC §5.4), unacked edits resent; the others see it away
//! meanwhile, not leaving. The browser SDK takes one URL per client for now (put the nodes
//! behind one name, or pick one per page load).
//!
//! ```no_run
//! # async fn demo() -> Result<(), easel_client::Error> {
//! use easel_client::Client;
//! let client = Client::builder("…jwt…")
//!     .connect_nodes(["easel://hall-1.example.org", "easel://hall-2.example.org"])
//!     .await?;
//! # Ok(()) }
//! ```
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
//!
//! [`Session`]: crate::session::Session

mod connect;
mod driver;
mod live;
mod room;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use easel_proto::datagram::{Status, Tool};
use easel_proto::{ErrorCode, Message};
use easel_transport::client::ClientError;
use loro::LoroDoc;
use tokio::sync::{mpsc, oneshot};

use self::connect::{Dialer, NodeOrder};
use self::driver::Driver;
pub use self::room::{Poll, Room};
use crate::endpoint::{self, Endpoint, UrlError};
use crate::session::{self, Event, SessionError};
use crate::store::{Store, StoreError};

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
    idle_timeout: Option<Duration>,
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

    /// QUIC and WebTransport: take a connection that has heard nothing for this long as lost
    /// and reconnect (default 12 s, keep-alives every 5 s). Shorter notices a dead network
    /// sooner, at the cost of more keep-alive traffic (a third of the timeout apart).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
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
    /// fails if no transport connects or the server refuses the token. A server that answers
    /// `Overloaded` is tried again after its hint plus jitter, and this keeps waiting.
    pub async fn connect(self, url: &str) -> Result<Client, Error> {
        self.connect_nodes([url]).await
    }

    /// Connects to a cluster, one URL per node (see the [module docs](self)); returns once a
    /// session is established on one of them. Fails if `urls` is empty or one is not valid,
    /// if no node connects (every attempt's error), or if the token is refused.
    pub async fn connect_nodes<I, S>(self, urls: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (client, first) = self.start(parse_nodes(urls)?)?;
        match first.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts the client without waiting: it connects in the background and keeps trying
    /// (an app that opens while offline still edits; the edits go out when the server is back).
    pub fn spawn(self, url: &str) -> Result<Client, Error> {
        self.spawn_nodes([url])
    }

    /// [`spawn`](Self::spawn) for a cluster, one URL per node.
    pub fn spawn_nodes<I, S>(self, urls: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Ok(self.start(parse_nodes(urls)?)?.0)
    }

    fn start(
        mut self,
        nodes: Vec<Vec<Endpoint>>,
    ) -> Result<(Client, oneshot::Receiver<Result<(), Error>>), Error> {
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
        let dialer = Dialer {
            order: NodeOrder::new(nodes.len(), self.config.seed),
            nodes,
            cert_hash: self.cert_hash,
            head_start: self.head_start,
            attempt_timeout: self.attempt_timeout,
            idle_timeout: self.idle_timeout,
        };
        let driver = Driver::spawn(self.config, self.token, dialer, store);
        let client = Client {
            // Request ids (chat, polls, answers) must not repeat across app runs: a repeated
            // poll attempt id is a no-op on the server. A random start makes a clash unlikely.
            ids: Arc::new(AtomicU64::new(rand::random::<u64>() >> 1)),
            cmds: driver.cmds,
            events: tokio::sync::Mutex::new(driver.events),
            backlog: driver.backlog,
            _task: Arc::new(AbortOnDrop(driver.task)),
        };
        Ok((client, driver.first))
    }
}

/// Each node's endpoints; at least one node.
fn parse_nodes<I, S>(urls: I) -> Result<Vec<Vec<Endpoint>>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let nodes = urls.into_iter().map(|u| endpoint::parse(u.as_ref())).collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err(Error::Url(UrlError { url: String::new(), reason: "no server URL given".into() }));
    }
    Ok(nodes)
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
            idle_timeout: None,
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
        Ok(Room::new(room.to_owned(), doc, self.cmds.clone(), self.ids.clone()))
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

/// What the handles ask of the driver.
enum Command {
    Join { room: String, reply: oneshot::Sender<Result<LoroDoc, Error>> },
    Leave(String),
    Cursor { room: String, x: f64, y: f64 },
    Presence { room: String, status: Status, tool: Tool },
    RefreshToken(String),
    Request { room: String, message: Message, reply: oneshot::Sender<Result<(), SessionError>> },
    Close(oneshot::Sender<()>),
}

//! One Janus session over the WebSocket API, kept alive and re-made when Janus restarts.
//!
//! A background task owns the socket: it connects (subprotocol `janus-protocol`), creates a
//! session, sends a keep-alive every `keepalive`, matches replies to requests by transaction
//! and routes the rest (`webrtcup`, `hangup`, `trickle`, plugin events) to the handle they
//! name. When the socket drops or Janus forgets the session, every waiting request fails with
//! `Unavailable`, every handle's event channel closes, the generation advances (handles of an
//! old generation are refused) and the task reconnects with a bounded backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::SfuError;

/// Janus's WebSocket subprotocol.
const SUBPROTOCOL: &str = "janus-protocol";
/// Janus's core error codes for a session or handle it no longer knows (it restarted, or
/// timed the session out).
const SESSION_NOT_FOUND: i64 = 458;
const HANDLE_NOT_FOUND: i64 = 459;
/// Reconnect delay bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// How the connection is tuned.
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub(crate) url: String,
    pub(crate) keepalive: Duration,
    pub(crate) request_timeout: Duration,
    /// How long a request waits for a session while Janus is (re)connecting.
    pub(crate) connect_wait: Duration,
}

#[derive(Clone)]
enum State {
    Down(String),
    Up(Live),
}

#[derive(Clone)]
struct Live {
    session: u64,
    generation: u64,
    out: mpsc::UnboundedSender<String>,
}

struct Pending {
    request: String,
    /// Whether an `ack` is the whole answer (keep-alive, trickle); otherwise an `ack` only
    /// says an asynchronous plugin request is being worked on, and its `event` follows.
    ack_is_final: bool,
    reply: oneshot::Sender<Result<Value, SfuError>>,
}

struct Inner {
    tuning: Tuning,
    state: watch::Sender<State>,
    pending: Mutex<HashMap<u64, Pending>>,
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    next_transaction: AtomicU64,
}

/// A shared connection to Janus.
#[derive(Clone)]
pub(crate) struct Conn {
    inner: Arc<Inner>,
}

impl Conn {
    /// Starts the connection task (in the current tokio runtime); it ends when the returned
    /// sender is dropped.
    pub(crate) fn start(tuning: Tuning) -> (Self, oneshot::Sender<()>) {
        let (state, _) = watch::channel(State::Down("not connected yet".into()));
        let inner = Arc::new(Inner {
            tuning,
            state,
            pending: Mutex::default(),
            handles: Mutex::default(),
            next_transaction: AtomicU64::new(1),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(run(inner.clone(), stop_rx));
        (Self { inner }, stop_tx)
    }

    /// Waits (bounded by `wait`) for a live session; returns its generation.
    pub(crate) async fn live(&self, wait: Duration) -> Result<u64, SfuError> {
        self.up(wait).await.map(|l| l.generation)
    }

    async fn up(&self, wait: Duration) -> Result<Live, SfuError> {
        let mut rx = self.inner.state.subscribe();
        let waited = tokio::time::timeout(wait, async {
            loop {
                if let State::Up(live) = &*rx.borrow_and_update() {
                    return Ok(live.clone());
                }
                if rx.changed().await.is_err() {
                    return Err(SfuError::Unavailable("the Janus connection task stopped".into()));
                }
            }
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err(SfuError::Unavailable(match &*rx.borrow() {
                State::Down(why) => format!("no Janus session: {why}"),
                State::Up(_) => "no Janus session".into(),
            })),
        }
    }

    /// Resolves once the session of `generation` is gone (Janus restarted or unreachable).
    pub(crate) async fn lost(&self, generation: u64) {
        let mut rx = self.inner.state.subscribe();
        loop {
            let gone = !matches!(&*rx.borrow_and_update(), State::Up(l) if l.generation == generation);
            if gone || rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sends a request on the session (and `handle`, if given, which must belong to
    /// `generation`) and waits for its answer: the reply's JSON, or the error Janus gave.
    async fn call(
        &self,
        request: &str,
        mut body: Map<String, Value>,
        handle: Option<(u64, u64)>,
        ack_is_final: bool,
    ) -> Result<(Value, u64), SfuError> {
        let live = self.up(self.inner.tuning.connect_wait).await?;
        if let Some((generation, id)) = handle {
            if generation != live.generation {
                return Err(SfuError::Unavailable("Janus restarted; the handle is gone".into()));
            }
            body.insert("handle_id".into(), json!(id));
        }
        let transaction = self.inner.next_transaction.fetch_add(1, Ordering::Relaxed);
        body.insert("transaction".into(), json!(transaction.to_string()));
        body.insert("session_id".into(), json!(live.session));
        let (reply, answer) = oneshot::channel();
        let pending = Pending { request: request.to_owned(), ack_is_final, reply };
        lock(&self.inner.pending).insert(transaction, pending);
        if live.out.send(Value::Object(body).to_string()).is_err() {
            lock(&self.inner.pending).remove(&transaction);
            return Err(SfuError::Unavailable("the Janus connection closed".into()));
        }
        match tokio::time::timeout(self.inner.tuning.request_timeout, answer).await {
            Ok(Ok(result)) => result.map(|v| (v, live.generation)),
            Ok(Err(_)) => Err(SfuError::Unavailable("the Janus connection closed".into())),
            Err(_) => {
                lock(&self.inner.pending).remove(&transaction);
                Err(SfuError::Timeout { request: request.to_owned() })
            }
        }
    }

    /// Sends a request without waiting for (or keeping) an answer: clean-up where nobody waits.
    fn fire(&self, mut body: Map<String, Value>, generation: u64, handle: u64) {
        if let State::Up(live) = &*self.inner.state.borrow()
            && live.generation == generation
        {
            body.insert("session_id".into(), json!(live.session));
            body.insert("handle_id".into(), json!(handle));
            body.insert("transaction".into(), json!("0"));
            let _ = live.out.send(Value::Object(body).to_string());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps cannot leave them inconsistent (single inserts and
    // removes), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A VideoRoom handle: one peer connection (a publisher or a subscription) or the control
/// handle for room requests. Dropping it detaches it from Janus without waiting.
pub(crate) struct Handle {
    conn: Conn,
    id: u64,
    generation: u64,
    detached: bool,
}

/// What a plugin answered: its `data`, and the JSEP it carried, if any.
pub(crate) struct PluginReply {
    pub(crate) data: Value,
    pub(crate) jsep: Option<Value>,
}

impl Handle {
    /// Attaches a new VideoRoom handle; its events (those that answer no request) arrive on
    /// the returned channel, which closes when the session is lost.
    pub(crate) async fn attach(conn: &Conn) -> Result<(Self, mpsc::UnboundedReceiver<Value>), SfuError> {
        let body = object(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}));
        let (reply, generation) = conn.call("attach", body, None, false).await?;
        let id = reply.pointer("/data/id").and_then(Value::as_u64).ok_or_else(|| SfuError::Protocol {
            request: "attach".into(),
            detail: format!("no handle id in {reply}"),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&conn.inner.handles).insert(id, tx);
        Ok((Self { conn: conn.clone(), id, generation, detached: false }, rx))
    }

    /// The session generation the handle belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Sends a VideoRoom request (with an SDP when `jsep` is given) and returns the plugin's
    /// answer; a plugin refusal (`error_code`) is [`SfuError::Rejected`].
    pub(crate) async fn message(
        &self,
        request: &str,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<PluginReply, SfuError> {
        let mut message = object(json!({"janus": "message", "body": body}));
        if let Some(jsep) = jsep {
            message.insert("jsep".into(), jsep);
        }
        let (reply, _) = self.conn.call(request, message, Some((self.generation, self.id)), false).await?;
        let data = reply.pointer("/plugindata/data").cloned().ok_or_else(|| SfuError::Protocol {
            request: request.to_owned(),
            detail: format!("no plugin data in {reply}"),
        })?;
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            let reason = data.get("error").and_then(Value::as_str).unwrap_or("refused").to_owned();
            return Err(SfuError::Rejected { request: request.to_owned(), code, reason });
        }
        Ok(PluginReply { data, jsep: reply.get("jsep").cloned() })
    }

    /// Trickles a candidate (`{"candidate", "sdpMid", "sdpMLineIndex"}` or `{"completed": true}`).
    pub(crate) async fn trickle(&self, candidate: Value) -> Result<(), SfuError> {
        let body = object(json!({"janus": "trickle", "candidate": candidate}));
        self.conn.call("trickle", body, Some((self.generation, self.id)), true).await.map(drop)
    }

    /// Detaches the handle, waiting for Janus to confirm. A handle of a lost session is
    /// already gone, which is not an error.
    pub(crate) async fn detach(mut self) -> Result<(), SfuError> {
        self.detached = true;
        lock(&self.conn.inner.handles).remove(&self.id);
        let body = object(json!({"janus": "detach"}));
        match self.conn.call("detach", body, Some((self.generation, self.id)), false).await {
            Ok(_) | Err(SfuError::Unavailable(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.detached {
            lock(&self.conn.inner.handles).remove(&self.id);
            self.conn.fire(object(json!({"janus": "detach"})), self.generation, self.id);
        }
    }
}

/// Connects, serves and reconnects until `stop` fires (or its sender is dropped).
async fn run(inner: Arc<Inner>, mut stop: oneshot::Receiver<()>) {
    let mut generation = 0u64;
    let mut backoff = BACKOFF_MIN;
    loop {
        generation += 1;
        let why = tokio::select! {
            why = session(&inner, generation) => why,
            _ = &mut stop => return,
        };
        let was_up = matches!(&*inner.state.borrow(), State::Up(_));
        inner.state.send_replace(State::Down(why.clone()));
        fail_all(&inner, &why);
        if was_up {
            tracing::warn!(url = %inner.tuning.url, "Janus session lost: {why}");
            backoff = BACKOFF_MIN;
        } else {
            tracing::debug!(url = %inner.tuning.url, "Janus not reachable: {why}");
        }
        // Pacing between reconnect attempts, so a Janus that is down is not hammered.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = &mut stop => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Everything waiting on the lost session learns it is gone.
fn fail_all(inner: &Inner, why: &str) {
    let pending: Vec<Pending> = lock(&inner.pending).drain().map(|(_, p)| p).collect();
    for p in pending {
        let _ = p.reply.send(Err(SfuError::Unavailable(format!("{}: {why}", p.request))));
    }
    // Dropping the senders closes every handle's event channel.
    lock(&inner.handles).clear();
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One session's life: connect, create, serve. Returns why it ended.
async fn session(inner: &Arc<Inner>, generation: u64) -> String {
    let timeout = inner.tuning.request_timeout;
    let (mut socket, session) = match tokio::time::timeout(timeout, open(&inner.tuning.url)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(why)) => return why,
        Err(_) => return "connecting timed out".into(),
    };
    tracing::info!(url = %inner.tuning.url, session, generation, "Janus session created");
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    inner.state.send_replace(State::Up(Live { session, generation, out }));
    let period = inner.tuning.keepalive;
    let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Err(why) = dispatch(inner, text.as_str()) {
                        return why;
                    }
                }
                Some(Ok(WsMessage::Close(_))) | None => return "Janus closed the connection".into(),
                Some(Err(e)) => return format!("connection failed: {e}"),
                Some(Ok(_)) => {}
            },
            Some(text) = outgoing.recv() => {
                if let Err(e) = socket.send(WsMessage::text(text)).await {
                    return format!("send failed: {e}");
                }
            }
            _ = keepalive.tick() => {
                let beat = json!({"janus": "keepalive", "session_id": session, "transaction": "0"});
                if let Err(e) = socket.send(WsMessage::text(beat.to_string())).await {
                    return format!("keep-alive failed: {e}");
                }
            }
        }
    }
}

/// Opens the socket and creates a session on it.
async fn open(url: &str) -> Result<(Socket, u64), String> {
    let mut request = url.into_client_request().map_err(|e| format!("{url}: {e}"))?;
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static(SUBPROTOCOL));
    let (mut socket, _) =
        tokio_tungstenite::connect_async(request).await.map_err(|e| format!("{url}: {e}"))?;
    let create = json!({"janus": "create", "transaction": "create"});
    socket.send(WsMessage::text(create.to_string())).await.map_err(|e| format!("create: {e}"))?;
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(WsMessage::Text(text)) => text,
            Ok(WsMessage::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => return Err(format!("create: {e}")),
        };
        let reply: Value = serde_json::from_str(text.as_str()).map_err(|e| format!("create: {e}"))?;
        if reply.get("transaction").and_then(Value::as_str) != Some("create") {
            continue;
        }
        return match reply.pointer("/data/id").and_then(Value::as_u64) {
            Some(id) => Ok((socket, id)),
            None => Err(format!("create refused: {reply}")),
        };
    }
    Err("closed before the session was created".into())
}

/// Routes one message from Janus. `Err` means the session is gone and must be re-made.
fn dispatch(inner: &Inner, text: &str) -> Result<(), String> {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("ignoring a message from Janus that is not JSON");
        return Ok(());
    };
    let kind = message.get("janus").and_then(Value::as_str).unwrap_or_default();
    let error_code = message.pointer("/error/code").and_then(Value::as_i64);
    let transaction = message.get("transaction").and_then(Value::as_str).and_then(|t| t.parse::<u64>().ok());
    let answered = transaction.and_then(|t| {
        let mut pending = lock(&inner.pending);
        let done = match (kind, pending.get(&t)) {
            ("ack", Some(p)) => p.ack_is_final,
            ("success" | "error" | "event", Some(_)) => true,
            _ => false,
        };
        if done { pending.remove(&t) } else { None }
    });
    if let Some(p) = answered {
        let result = match (kind, error_code) {
            ("error", Some(code)) if code == SESSION_NOT_FOUND || code == HANDLE_NOT_FOUND => {
                Err(SfuError::Unavailable(format!("{}: Janus no longer knows the session", p.request)))
            }
            ("error", code) => Err(SfuError::Rejected {
                request: p.request.clone(),
                code: code.unwrap_or(0),
                reason: message
                    .pointer("/error/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
            }),
            _ => Ok(message.clone()),
        };
        let _ = p.reply.send(result);
    } else if let Some(sender) = message.get("sender").and_then(Value::as_u64)
        && let Some(tx) = lock(&inner.handles).get(&sender)
    {
        let _ = tx.send(message.clone());
    }
    if error_code == Some(SESSION_NOT_FOUND) {
        return Err("Janus no longer knows the session".into());
    }
    Ok(())
}

//! The driver: the tokio task that owns the [`Session`] and feeds it commands from the
//! handles, inputs from the live connection, connection outcomes and time; its outputs go to
//! the offline store, the network and the app, in that order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use easel_proto::{ErrorCode, Message};
use easel_transport::client::ClientError;
use loro::LoroDoc;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::connect::{Connecting, Dialer, Outcome};
use super::live::{Input, Live};
use super::{Command, Error};
use crate::session::{self, Event, LoroDocument, Session};
use crate::store::Store;

/// Most connection inputs handled in one turn of the driver before its outputs go out.
const INPUT_BATCH: usize = 256;

/// Events the app has not read yet beyond which cursor and presence events are dropped
/// (they are latest-wins state; the next one replaces them).
const EVENT_BACKLOG: usize = 4096;

/// A spawned driver's ends, for the [`Client`](super::Client).
pub(super) struct Spawned {
    pub(super) cmds: mpsc::UnboundedSender<Command>,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
    /// Events sent and not read yet; the client counts its reads down.
    pub(super) backlog: Arc<AtomicUsize>,
    /// The first connection's outcome.
    pub(super) first: oneshot::Receiver<Result<(), Error>>,
    pub(super) task: JoinHandle<()>,
}

pub(super) struct Driver {
    session: Session<LoroDocument>,
    token: String,
    dialer: Dialer,
    store: Option<Store>,
    cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    backlog: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    /// Wakes the driver from a room document's commit (see [`LoroDocument::new`]).
    waker: Arc<dyn Fn() + Send + Sync>,
    live: Option<Live>,
    connecting: Option<Connecting>,
    /// Resolved with the first connection's outcome (for [`ClientBuilder::connect`]).
    ///
    /// [`ClientBuilder::connect`]: super::ClientBuilder::connect
    first: Option<oneshot::Sender<Result<(), Error>>>,
    join_waiters: HashMap<String, (oneshot::Sender<Result<LoroDoc, Error>>, LoroDoc)>,
}

impl Driver {
    /// Starts the driver of a session with `config`; it connects at once.
    pub(super) fn spawn(
        config: session::Config,
        token: String,
        dialer: Dialer,
        store: Option<Store>,
    ) -> Spawned {
        let wake = Arc::new(Notify::new());
        let waker = {
            let wake = wake.clone();
            Arc::new(move || wake.notify_one()) as Arc<dyn Fn() + Send + Sync>
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = oneshot::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let driver = Self {
            session: Session::new(config, Instant::now()),
            token,
            dialer,
            store,
            cmds: cmd_rx,
            events: event_tx,
            backlog: backlog.clone(),
            wake,
            waker,
            live: None,
            connecting: None,
            first: Some(first_tx),
            join_waiters: HashMap::new(),
        };
        let task = tokio::spawn(driver.run());
        Spawned { cmds: cmd_tx, events: event_rx, backlog, first: first_rx, task }
    }

    async fn run(mut self) {
        loop {
            self.drain();
            let now = Instant::now();
            if self.live.is_none() && self.connecting.is_none() && self.session.should_connect(now) {
                self.session.connecting();
                self.connecting = Some(self.dialer.dial(self.session.hello(&self.token)));
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
                let doc = LoroDoc::new();
                let document = LoroDocument::new(doc.clone(), self.waker.clone());
                match self.session.join(&room, document, restored) {
                    Ok(()) if self.session.is_connected() => {
                        // Answer when the server does (Joined or a refusal).
                        self.join_waiters.insert(room, (reply, doc));
                    }
                    Ok(()) => {
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
            if let Some(live) = &mut self.live {
                live.transmit(t);
            }
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

    fn input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Joined { room, generation, joined, writer } => {
                if let Some(live) = &mut self.live {
                    live.joined(room.clone(), generation, writer);
                }
                self.session.handle_room(now, &room, Message::Joined(joined));
            }
            Input::Room { room, message } => self.session.handle_room(now, &room, message),
            Input::RoomEnded { room, generation } => {
                if let Some(live) = &mut self.live {
                    live.room_ended(&room, generation);
                }
            }
            Input::Snapshot { slot, data } => self.session.handle_snapshot(slot, &data),
            Input::Datagrams => {
                let waiting = self.live.as_ref().map(Live::take_datagrams).unwrap_or_default();
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

    fn connected(&mut self, result: Outcome) {
        let now = Instant::now();
        let (conn, won) = match result {
            Ok(ok) => ok,
            Err(errors) => {
                // An overloaded server's hint times the next attempt; `connect` waits through
                // it (the server is there and asked us to come back).
                let go_away = errors.iter().find_map(|(_, e)| match e {
                    ClientError::GoAway { code, retry_after, .. } => Some((*code, *retry_after)),
                    _ => None,
                });
                if let Some((code, retry_after)) = go_away {
                    let why = errors.iter().map(|(_, e)| e.to_string()).collect::<Vec<_>>().join("; ");
                    self.session.disconnected(now, Some(code), &why, Some(retry_after));
                    return;
                }
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
        self.dialer.prefer(won);
        let live = Live::start(conn);
        self.session.connected(now, won.transport, live.welcome());
        self.live = Some(live);
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
    }

    /// Ends the session cleanly; edits committed before the close are stored first.
    fn close(&mut self) {
        self.session.flush_local(Instant::now());
        self.drain();
        if let Some(live) = self.live.take() {
            live.close(ErrorCode::Normal);
        }
    }
}

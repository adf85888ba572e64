//! A live connection: its reader tasks (control stream, datagrams, snapshots, one task per
//! room stream), what they report to the driver, and the way out for the session's transmits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use easel_proto::message::{Fault, Join, Joined, Welcome};
use easel_proto::{Datagram, ErrorCode, Message};
use easel_transport::client::{ClientError, Connection};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::session::Transmit;

/// Received datagrams kept for the driver; older ones are dropped first (latest wins).
const DATAGRAM_BACKLOG: usize = 64;

/// What a connection's reader tasks report.
pub(super) enum Input {
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

pub(super) struct Live {
    conn: Arc<Connection>,
    /// Received datagrams not handled yet, oldest first and at most [`DATAGRAM_BACKLOG`]: a
    /// busy app drops stale cursor batches instead of queueing them ahead of edits and acks.
    datagrams: Arc<Mutex<VecDeque<Datagram>>>,
    pub(super) inputs: mpsc::UnboundedReceiver<Input>,
    input_tx: mpsc::UnboundedSender<Input>,
    writers: HashMap<String, (u64, mpsc::UnboundedSender<Message>)>,
    generation: u64,
    /// Every task of this connection; dropping the set aborts them.
    tasks: JoinSet<()>,
}

impl Live {
    /// Starts the readers of a connection that has finished its handshake.
    pub(super) fn start(conn: Connection) -> Self {
        let conn = Arc::new(conn);
        let (input_tx, inputs) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        tasks.spawn(control_reader(conn.clone(), input_tx.clone()));
        let datagrams = Arc::new(Mutex::new(VecDeque::new()));
        tasks.spawn(datagram_reader(conn.clone(), datagrams.clone(), input_tx.clone()));
        tasks.spawn(snapshot_reader(conn.clone(), input_tx.clone()));
        Self { conn, datagrams, inputs, input_tx, writers: HashMap::new(), generation: 0, tasks }
    }

    /// The server's `Welcome` on this connection.
    pub(super) fn welcome(&self) -> &Welcome {
        self.conn.welcome()
    }

    pub(super) fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Datagram(d) => {
                // Latest-wins: a datagram that cannot go now is not worth keeping.
                let _ = self.conn.send_datagram(&d);
            }
            Transmit::Room { room, message } => {
                if let Some((_, writer)) = self.writers.get(&room) {
                    let _ = writer.send(message);
                }
            }
            Transmit::Control(message) => {
                let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
                self.tasks.spawn(async move {
                    if let Err(e) = conn.send_control(&message).await {
                        let _ = tx.send(Input::Lost(e));
                    }
                });
            }
            Transmit::Join(join) => {
                self.generation += 1;
                let generation = self.generation;
                let (conn, tx) = (self.conn.clone(), self.input_tx.clone());
                self.tasks.spawn(room_stream(conn, join, generation, tx));
            }
        }
    }

    /// The room stream of `generation` is joined; frames for `room` go to `writer`.
    pub(super) fn joined(&mut self, room: String, generation: u64, writer: mpsc::UnboundedSender<Message>) {
        self.writers.insert(room, (generation, writer));
    }

    /// The room stream of `generation` ended; a newer one of the same room stays.
    pub(super) fn room_ended(&mut self, room: &str, generation: u64) {
        if self.writers.get(room).is_some_and(|(g, _)| *g == generation) {
            self.writers.remove(room);
        }
    }

    /// The datagrams received since the last call, oldest first.
    pub(super) fn take_datagrams(&self) -> VecDeque<Datagram> {
        std::mem::take(&mut *self.datagrams.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn close(self, code: ErrorCode) {
        self.conn.close(code);
    }
}

async fn room_stream(conn: Arc<Connection>, join: Join, generation: u64, tx: mpsc::UnboundedSender<Input>) {
    let room = join.room.clone();
    let stream = match conn.join_with(join).await {
        Ok(s) => s,
        Err(ClientError::Refused { code, message }) => {
            let fault = Fault { code: code.to_u16(), kind: 0, reference: 0, message };
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
    waiting: Arc<Mutex<VecDeque<Datagram>>>,
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

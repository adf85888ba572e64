//! Shared test plumbing: an in-process server on ephemeral ports, tokens, clients, Loro docs,
//! a TCP relay to cut.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use easel_proto::Message;
use easel_proto::message::{Participant, Update};
use easel_server::auth::{Claims, Issuer};
use easel_server::{Server, ServerConfig};
use easel_transport::client::{Connection, Options, RoomStream, Transport};
use loro::{ExportMode, LoroDoc, VersionVector};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const TRANSPORTS: [Transport; 3] = [Transport::Quic, Transport::WebTransport, Transport::WebSocket];

/// Every wait in these tests is bounded: a hang is a failure with a message, not a stuck run.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A server configuration for tests: ephemeral loopback ports, the test secret, data in `dir`.
pub fn server_config(dir: &Path) -> ServerConfig {
    server_config_on(dir, (0, 0, 0))
}

/// The same on given loopback ports (WebTransport, QUIC, HTTP; 0: any).
pub fn server_config_on(dir: &Path, (wt, quic, http): (u16, u16, u16)) -> ServerConfig {
    let on = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    ServerConfig {
        jwt_secret: Some(SECRET.into()),
        wt_addr: on(wt),
        quic_addr: on(quic),
        http_addr: on(http),
        ..ServerConfig::ephemeral(dir)
    }
}

pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
    /// The other nodes when the room is spread over a cluster (`crate::spread`): connections
    /// go to `server` and these in turn.
    pub others: Vec<Server>,
    turn: AtomicUsize,
    /// What the other nodes need kept alive (their data dirs, the NATS they meet on).
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl TestServer {
    /// One server alone, on `dir`.
    pub fn new(server: Server, dir: tempfile::TempDir) -> Self {
        Self { server, dir, others: Vec::new(), turn: AtomicUsize::new(0), _keep: None }
    }

    /// `first` and the `others` nodes of one cluster as one test server: connections go to each
    /// in turn, `first` first; `keep` is held as long as they run.
    pub fn spread(first: Self, others: Vec<Server>, keep: Box<dyn std::any::Any + Send + Sync>) -> Self {
        Self { others, _keep: Some(keep), ..first }
    }

    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose test configuration `change` adjusts first.
    pub async fn start_with(change: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = server_config(dir.path());
        change(&mut config);
        let server = Server::start(config).await.expect("server starts");
        Self::new(server, dir)
    }

    /// Stops this server and starts a new one on the same data dir.
    pub async fn restart(self) -> Self {
        assert!(self.others.is_empty(), "restart is for one server alone");
        let Self { server, dir, .. } = self;
        server.shutdown().await;
        let server = Server::start(server_config(dir.path())).await.expect("server restarts");
        Self::new(server, dir)
    }

    /// Shuts every node down.
    pub async fn shutdown(self) {
        for node in self.others {
            node.shutdown().await;
        }
        self.server.shutdown().await;
    }

    /// The node the next connection goes to: `server` alone, or each node of a spread room in
    /// turn.
    pub fn next_node(&self) -> &Server {
        let n = self.turn.fetch_add(1, Ordering::Relaxed) % (1 + self.others.len());
        if n == 0 { &self.server } else { &self.others[n - 1] }
    }

    pub fn options(&self, transport: Transport) -> Options {
        options_at(&self.server, transport)
    }

    /// Connects to the next node ([`TestServer::next_node`]).
    pub async fn connect(&self, transport: Transport, user: &str, role: &str, room: &str) -> Connection {
        let token = token(room, user, role, 3600);
        let options = options_at(self.next_node(), transport);
        within("connect", Connection::connect(&options, &token, &format!("{user}-device")))
            .await
            .expect("connect")
    }

    /// Connects and joins `room` as `user`; the room's membership frames up to and including
    /// the member's whole list are read.
    pub async fn member(
        &self,
        transport: Transport,
        user: &str,
        role: &str,
        room: &str,
    ) -> (Connection, RoomStream) {
        let (conn, stream, _) = self.member_listed(transport, user, role, room).await;
        (conn, stream)
    }

    /// As [`TestServer::member`], also returning the whole list the member was sent.
    pub async fn member_listed(
        &self,
        transport: Transport,
        user: &str,
        role: &str,
        room: &str,
    ) -> (Connection, RoomStream, Vec<Participant>) {
        let conn = self.connect(transport, user, role, room).await;
        let mut stream = within("join", conn.join(room, None)).await.expect("join");
        let listed = everyone(&mut stream).await;
        (conn, stream, listed)
    }
}

/// Options to reach `server` over `transport`.
pub fn options_at(server: &Server, transport: Transport) -> Options {
    let addr = match transport {
        Transport::Quic => server.quic_addr(),
        Transport::WebTransport => server.wt_addr(),
        Transport::WebSocket => server.http_addr(),
    };
    Options::new(addr, transport).with_cert_hash(server.cert_hash()).expect("hash")
}

/// `user` as `stream`'s node numbers it: from `listed` (the whole list the member was sent),
/// else from the membership frames that follow (a member on another node of a cluster is
/// listed once its node's relay arrives).
pub async fn until_listed(stream: &mut RoomStream, listed: &[Participant], user: &str) -> Participant {
    if let Some(p) = listed.iter().find(|p| p.user == user) {
        return p.clone();
    }
    expect_message(stream, &format!("{user} listed"), |m| match m {
        Message::Participants(p) => p.joined.into_iter().find(|j| j.user == user),
        _ => None,
    })
    .await
}

/// Reads room messages until the whole list of participants a newcomer is sent after
/// `Joined` (SPEC §6.4), and returns it.
pub async fn everyone(stream: &mut RoomStream) -> Vec<Participant> {
    expect_message(stream, "the list of participants", |m| match m {
        Message::Participants(p) if p.full => Some(p.joined),
        _ => None,
    })
    .await
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// An HS256 token with the test secret, valid for `ttl_secs` (negative: already expired).
pub fn token(room: &str, user: &str, role: &str, ttl_secs: i64) -> String {
    let exp = now_secs().saturating_add_signed(ttl_secs);
    let claims = Claims::new(user, room, role, exp);
    Issuer::hs256(SECRET.as_bytes()).mint(&claims).expect("mint")
}

/// A local Loro document that exports each change as one update.
pub struct Board {
    pub doc: LoroDoc,
    sent: VersionVector,
}

impl Board {
    pub fn new(peer: u64) -> Self {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer).expect("peer id");
        Self { doc, sent: VersionVector::default() }
    }

    /// Sets `ops[key] = value` and returns the update to send.
    pub fn put(&mut self, op_id: u64, key: &str, value: i64) -> Message {
        self.doc.get_map("ops").insert(key, value).expect("insert");
        self.doc.commit();
        let data = self.doc.export(ExportMode::updates(&self.sent)).expect("export");
        self.sent = self.doc.oplog_vv();
        Message::from(Update { op_id, data })
    }

    pub fn import(&self, data: &[u8]) {
        self.doc.import(data).expect("import");
    }

    /// Imports what the server holds: later updates need not carry it again.
    pub fn adopt(&mut self, data: &[u8]) {
        self.import(data);
        self.sent = self.doc.oplog_vv();
    }

    pub fn value(&self) -> loro::LoroValue {
        self.doc.get_deep_value()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.doc.get_map("ops").keys().map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }
}

/// Reads room messages until one matches `want`; other messages (presence, etc.) are skipped.
pub async fn expect_message<T>(
    stream: &mut RoomStream,
    what: &str,
    mut want: impl FnMut(Message) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let message =
                stream.next().await.expect("room stream").unwrap_or_else(|| panic!("stream ended: {what}"));
            if let Some(t) = want(message) {
                return t;
            }
        }
    })
    .await
}

/// Sends `update` and waits for its ack.
pub async fn send_acked(stream: &mut RoomStream, update: Message) {
    let Message::Update(u) = &update else { panic!("not an update") };
    let op_id = u.op_id;
    stream.send(&update).await.expect("send update");
    expect_message(stream, "ack", |m| match m {
        Message::Ack(a) if a.op_ids.contains(&op_id) => Some(()),
        Message::Reject(r) => panic!("update {op_id} rejected: {r:?}"),
        _ => None,
    })
    .await;
}

/// A GET over plain HTTP/1.0; returns (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect http");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("write");
    let mut response = String::new();
    within("http response", tcp.read_to_string(&mut response)).await.expect("read");
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A TCP relay the test can cut: every relayed connection is dropped at once (no WebSocket
/// close frame, as when a network goes away), and new connections are refused while it is down.
pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<Notify>,
    down: Arc<AtomicBool>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let (cut, down) = (Arc::new(Notify::new()), Arc::new(AtomicBool::new(false)));
        let (c, d) = (cut.clone(), down.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue;
                }
                let c = c.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = c.notified() => {}
                    }
                    // Both sockets drop here without a WebSocket close frame, as when the
                    // app's process dies or a middlebox gives up on the connection.
                });
            }
        });
        Self { addr, cut, down }
    }

    /// Drops every relayed connection; `stay_down` also refuses new ones.
    pub fn cut(&self, stay_down: bool) {
        self.down.store(stay_down, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Takes new connections again after a [`Relay::cut`] that stayed down.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

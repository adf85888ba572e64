//! The client SDK (`easel_client::Client`) against the real server: the same end-to-end checks
//! over every transport, the transport race and its WebSocket fallback, reconnect across a
//! server restart, resume inside the grace window, and the offline store across an app restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use easel_client::{Client, Event, Room, Transport};
use easel_proto::ErrorCode;
use easel_proto::datagram::{Status, Tool};
use easel_server::Server;
use easel_server::config::{ServerConfig, TlsFiles};
use loro::LoroDoc;
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Relay, TRANSPORTS, TestServer, server_config_on, token, within};
use crate::spread::LAYOUTS;

const ROOM: &str = "school/math/monday";
/// What every test token grants: every session of the course.
const GRANT: &str = "school/math/*";

pub(crate) fn url(server: &Server, transport: Transport) -> String {
    match transport {
        Transport::Quic => format!("easel+quic://127.0.0.1:{}", server.quic_addr().port()),
        Transport::WebTransport => format!("https://127.0.0.1:{}/", server.wt_addr().port()),
        Transport::WebSocket => format!("ws://127.0.0.1:{}/ws", server.http_addr().port()),
    }
}

async fn client(server: &Server, url: &str, user: &str) -> Client {
    let builder = Client::builder(token(GRANT, user, "student", 3600))
        .cert_hash(server.cert_hash())
        .expect("hash")
        .backoff(Duration::from_millis(20), Duration::from_millis(200));
    within("sdk connect", builder.connect(url)).await.expect("sdk connects")
}

/// Waits for the first event `want` accepts, skipping others.
pub(crate) async fn wait_for<T>(client: &Client, what: &str, mut want: impl FnMut(&Event) -> Option<T>) -> T {
    within(what, async {
        loop {
            let event = client.next_event().await.unwrap_or_else(|| panic!("client closed: {what}"));
            if let Some(t) = want(&event) {
                return t;
            }
        }
    })
    .await
}

fn shapes(doc: &LoroDoc) -> Vec<String> {
    let list = doc.get_list("shapes");
    (0..list.len())
        .filter_map(|i| list.get(i).and_then(|v| v.into_value().ok()).and_then(|v| v.into_string().ok()))
        .map(|s| s.to_string())
        .collect()
}

pub(crate) fn draw(room: &Room, shape: &str) {
    room.edit(|doc| doc.get_list("shapes").push(shape)).expect("local edit");
}

/// Waits until `client`'s copy of `room` holds `shape` (remote updates or a catch-up snapshot).
pub(crate) async fn wait_for_shape(client: &Client, room: &Room, shape: &str) {
    within(&format!("shape {shape}"), async {
        while !shapes(room.doc()).iter().any(|s| s == shape) {
            let event = client.next_event().await.expect("client open");
            if let Event::Error { code, message, .. } = event {
                panic!("error while waiting for {shape}: {code} {message}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn edits_cursors_and_presence_flow_over_every_transport() {
    // On one server, and with ada and bob on two nodes of a cluster.
    for (layout, transport) in LAYOUTS.into_iter().flat_map(|l| TRANSPORTS.map(|t| (l, t))) {
        let server = layout.start().await;
        let (at_a, at_b) = (server.next_node(), server.next_node());
        let ada = client(at_a, &url(at_a, transport), "ada").await;
        let bob = client(at_b, &url(at_b, transport), "bob").await;
        let seen = wait_for(&ada, "connected", |e| match e {
            Event::Connected { transport, resumed } => Some((*transport, *resumed)),
            _ => None,
        })
        .await;
        assert_eq!(seen, (transport, false));
        let room = format!("{ROOM}-{}", transport_name(transport));
        let a = within("ada joins", ada.join(&room)).await.expect("ada joins");
        let b = within("bob joins", bob.join(&room)).await.expect("bob joins");
        let bob_index = wait_for(&ada, "bob joined", |e| match e {
            Event::ParticipantJoined { participant, .. } if participant.user == "bob" => {
                Some(participant.index)
            }
            _ => None,
        })
        .await;

        draw(&a, "circle");
        wait_for(&ada, "ack", |e| matches!(e, Event::Acked { .. }).then_some(())).await;
        wait_for_shape(&bob, &b, "circle").await;

        b.cursor(120.5, -30.25);
        let cursor = wait_for(&ada, "bob's cursor", |e| match e {
            Event::Cursors { cursors, .. } => {
                cursors.iter().find(|c| c.participant == bob_index).map(|c| (c.x, c.y))
            }
            _ => None,
        })
        .await;
        assert_eq!(cursor, (120.5, -30.25), "{layout:?} {transport:?}: 1/16 px precision survives");

        b.presence(Status::Away, Tool::Laser);
        wait_for(&ada, "bob's presence", |e| match e {
            Event::Presence { participant, status: Status::Away, tool: Tool::Laser, .. }
                if *participant == bob_index =>
            {
                Some(())
            }
            _ => None,
        })
        .await;

        bob.close().await;
        let code = wait_for(&ada, "bob left", |e| match e {
            Event::ParticipantLeft { index, code, .. } if *index == bob_index => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(code, ErrorCode::Normal, "{layout:?} {transport:?}: a clean close is a leave at once");
        ada.close().await;
        server.shutdown().await;
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Quic => "quic",
        Transport::WebTransport => "wt",
        Transport::WebSocket => "ws",
    }
}

#[tokio::test]
async fn a_refused_join_says_why() {
    let server = TestServer::start().await;
    let ada = client(&server.server, &url(&server.server, Transport::Quic), "ada").await;
    let err = within("join", ada.join("other/room")).await.expect_err("not granted");
    assert!(matches!(err, easel_client::Error::Refused { code: ErrorCode::RoomNotAllowed, .. }), "{err}");
    let bad = Client::builder("not-a-jwt")
        .cert_hash(server.server.cert_hash())
        .expect("hash")
        .connect(&url(&server.server, Transport::WebSocket))
        .await
        .expect_err("bad token");
    assert!(matches!(bad, easel_client::Error::Refused { code: ErrorCode::InvalidToken, .. }), "{bad}");
}

/// A UDP port with nothing listening on it.
fn dead_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

#[tokio::test]
async fn the_race_picks_quic_and_falls_back_to_websocket_when_udp_is_unreachable() {
    let server = TestServer::start().await;
    let (quic, http) = (server.server.quic_addr().port(), server.server.http_addr().port());
    let both = client(&server.server, &format!("easel://127.0.0.1?quic={quic}&ws={http}"), "ada").await;
    let picked = wait_for(&both, "connected", |e| match e {
        Event::Connected { transport, .. } => Some(*transport),
        _ => None,
    })
    .await;
    assert_eq!(picked, Transport::Quic, "with both up, QUIC wins its head start");

    let dead = dead_udp_port();
    let blocked = client(&server.server, &format!("easel://127.0.0.1?quic={dead}&ws={http}"), "bob").await;
    let picked = wait_for(&blocked, "connected", |e| match e {
        Event::Connected { transport, .. } => Some(*transport),
        _ => None,
    })
    .await;
    assert_eq!(picked, Transport::WebSocket, "UDP unreachable: WebSocket");
    let a = within("join", both.join(ROOM)).await.expect("join");
    let b = within("join", blocked.join(ROOM)).await.expect("join over the fallback");
    draw(&b, "from the fallback");
    wait_for_shape(&both, &a, "from the fallback").await;
}

/// `easel serve` flags on fixed ports, with a certificate kept in `dir` so that a restarted
/// server has the same identity (clients pin its hash).
fn fixed_config(dir: &Path, ports: (u16, u16, u16)) -> ServerConfig {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate");
        std::fs::write(&cert, generated.cert.pem()).expect("write cert");
        std::fs::write(&key, generated.key_pair.serialize_pem()).expect("write key");
    }
    ServerConfig { tls: Some(TlsFiles { cert, key }), ..server_config_on(&dir.join("data"), ports) }
}

async fn start_fixed(dir: &Path, ports: (u16, u16, u16)) -> Server {
    Server::start(fixed_config(dir, ports)).await.expect("server starts")
}

fn free_ports() -> (u16, u16, u16) {
    let udp = || std::net::UdpSocket::bind("127.0.0.1:0").expect("udp").local_addr().expect("addr").port();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp").local_addr().expect("addr").port();
    (udp(), udp(), tcp)
}

#[tokio::test]
async fn clients_reconnect_by_themselves_across_a_server_restart_and_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports();
    let server = start_fixed(dir.path(), ports).await;
    let hash = server.cert_hash().to_owned();
    let connect = |transport, user: &'static str| {
        let url = url(&server, transport);
        let hash = hash.clone();
        async move {
            let builder = Client::builder(token(GRANT, user, "student", 3600))
                .cert_hash(&hash)
                .expect("hash")
                .attempt_timeout(Duration::from_secs(2))
                .backoff(Duration::from_millis(20), Duration::from_millis(200));
            within("connect", builder.connect(&url)).await.expect("connect")
        }
    };
    let ada = connect(Transport::Quic, "ada").await;
    let bob = connect(Transport::WebSocket, "bob").await;
    let a = within("join", ada.join(ROOM)).await.expect("join");
    let b = within("join", bob.join(ROOM)).await.expect("join");
    draw(&a, "before");
    wait_for_shape(&bob, &b, "before").await;

    server.shutdown().await;
    for c in [&ada, &bob] {
        wait_for(c, "told to go away", |e| match e {
            Event::Disconnected { code: Some(ErrorCode::ShuttingDown), .. } => Some(()),
            _ => None,
        })
        .await;
    }
    // Edits made while the server is down are kept and sent once it is back.
    draw(&a, "while down");
    draw(&b, "bob while down");

    let server = start_fixed(dir.path(), ports).await;
    for c in [&ada, &bob] {
        wait_for(c, "reconnected", |e| matches!(e, Event::Joined { .. }).then_some(())).await;
    }
    wait_for_shape(&bob, &b, "while down").await;
    wait_for_shape(&ada, &a, "bob while down").await;
    draw(&a, "after");
    wait_for_shape(&bob, &b, "after").await;
    for shape in ["before", "while down", "bob while down", "after"] {
        let count = shapes(b.doc()).iter().filter(|s| *s == shape).count();
        assert_eq!(count, 1, "{shape} arrived exactly once: {:?}", shapes(b.doc()));
    }
    assert_eq!(a.doc().get_deep_value(), b.doc().get_deep_value(), "both boards converge");
    ada.close().await;
    bob.close().await;
    server.shutdown().await;
}

/// Ada behind a cuttable relay (WebSocket), Bob direct (QUIC), both in `ROOM`.
struct Relayed {
    _server: TestServer,
    relay: Relay,
    ada: Client,
    bob: Client,
    a: Room,
    b: Room,
    ada_index: u16,
}

async fn relayed(grace_ms: u64) -> Relayed {
    let server = TestServer::start_with(|c| c.resume_grace = Duration::from_millis(grace_ms)).await;
    let relay = Relay::start(server.server.http_addr()).await;
    let ada = client(&server.server, &format!("ws://{}/ws", relay.addr), "ada").await;
    let bob = client(&server.server, &url(&server.server, Transport::Quic), "bob").await;
    let a = within("join", ada.join(ROOM)).await.expect("join");
    let b = within("join", bob.join(ROOM)).await.expect("join");
    let ada_index = wait_for(&bob, "ada is there", |e| match e {
        Event::Joined { participants, .. } => participants.iter().find(|p| p.user == "ada").map(|p| p.index),
        _ => None,
    })
    .await;
    Relayed { _server: server, relay, ada, bob, a, b, ada_index }
}

#[tokio::test]
async fn a_drop_inside_the_grace_window_is_invisible_to_others() {
    let Relayed { _server, relay, ada, bob, a, b, ada_index } = relayed(30_000).await;

    relay.cut(false);
    wait_for(&ada, "ada notices", |e| matches!(e, Event::Disconnected { .. }).then_some(())).await;
    draw(&b, "while ada was away");
    let (resumed, participant) = wait_for(&ada, "ada rejoins", |e| match e {
        Event::Joined { resumed, participant, .. } => Some((*resumed, *participant)),
        _ => None,
    })
    .await;
    assert!(resumed, "inside the grace window the session is resumed");
    assert_eq!(participant, ada_index, "with the same participant number");
    wait_for_shape(&ada, &a, "while ada was away").await;
    draw(&a, "ada is back");
    // Bob's next membership news must be ada's edit, not a leave or join.
    within("bob sees the edit", async {
        loop {
            match bob.next_event().await.expect("open") {
                Event::ParticipantLeft { .. } | Event::ParticipantJoined { .. } => {
                    panic!("bob saw membership flicker for a resumed session")
                }
                Event::RemoteUpdate { from, .. } if from == ada_index => break,
                _ => {}
            }
        }
    })
    .await;
    wait_for_shape(&bob, &b, "ada is back").await;
}

#[tokio::test]
async fn a_client_gone_past_the_grace_window_is_evicted() {
    // Every field is bound, none `..`-dropped: Ada's client must stay alive (its connection
    // is lost, not closed) and the server must outlive the test body.
    let Relayed { _server, relay, ada: _ada, bob, a: _a, b: _b, ada_index } = relayed(300).await;
    relay.cut(true);
    let code = wait_for(&bob, "ada evicted", |e| match e {
        Event::ParticipantLeft { index, code, .. } if *index == ada_index => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::PresenceTimeout);
}

#[tokio::test]
async fn offline_edits_survive_an_app_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports();
    let store = dir.path().join("app").join("offline.redb");
    let url = format!("easel+quic://127.0.0.1:{}", ports.1);
    // The cert must exist before the app pins it: start once to make it, then stop.
    let server = start_fixed(dir.path(), ports).await;
    let hash = server.cert_hash().to_owned();
    server.shutdown().await;
    let builder = || {
        Client::builder(token(GRANT, "ada", "student", 3600))
            .cert_hash(&hash)
            .expect("hash")
            .offline_store(&store)
            .attempt_timeout(Duration::from_millis(500))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
    };
    {
        let app = builder().spawn(&url).expect("starts offline");
        let room = within("offline join", app.join(ROOM)).await.expect("join while offline");
        draw(&room, "drawn offline");
        draw(&room, "also offline");
        // The app quits before the server ever comes back.
        app.close().await;
    }
    let server = start_fixed(dir.path(), ports).await;
    let app = builder().spawn(&url).expect("restarts");
    let room = within("join", app.join(ROOM)).await.expect("join");
    assert_eq!(shapes(room.doc()), ["drawn offline", "also offline"], "stored edits show at once");
    let mut acked = Vec::new();
    within("both acked", async {
        while acked.len() < 2 {
            if let Some(Event::Acked { op_ids, .. }) = app.next_event().await {
                acked.extend(op_ids);
            }
        }
    })
    .await;
    assert_eq!(acked, [1, 2], "sent with their original op ids");
    let viewer = client(&server, &format!("ws://127.0.0.1:{}/ws", ports.2), "bob").await;
    let seen = within("viewer joins", viewer.join(ROOM)).await.expect("join");
    wait_for_shape(&viewer, &seen, "also offline").await;
    assert_eq!(shapes(seen.doc()), ["drawn offline", "also offline"]);
    app.close().await;
    viewer.close().await;
    server.shutdown().await;
}

/// A TLS-terminating proxy (as a load balancer would be) in front of the plain HTTP port, with
/// a certificate of its own; returns its address and the certificate's SHA-256 in hex.
async fn tls_proxy(upstream: SocketAddr) -> (SocketAddr, String) {
    use sha2::Digest as _;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let der = generated.cert.der().clone();
    let hash = hex::encode(sha2::Sha256::digest(&der));
    let key = rustls::pki_types::PrivateKeyDer::try_from(generated.key_pair.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) =
                    (acceptor.accept(tcp).await, TcpStream::connect(upstream).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, hash)
}

#[tokio::test]
async fn wss_through_a_tls_proxy_pins_the_proxy_certificate() {
    let server = TestServer::start().await;
    let (proxy, hash) = tls_proxy(server.server.http_addr()).await;
    let url = format!("wss://localhost:{}/ws", proxy.port());
    let builder = || Client::builder(token(GRANT, "ada", "student", 3600));
    let ada =
        within("wss connect", builder().cert_hash(&hash).expect("hash").connect(&url)).await.expect("wss");
    let room = within("join", ada.join(ROOM)).await.expect("join over wss");
    draw(&room, "over tls");
    wait_for(&ada, "ack", |e| matches!(e, Event::Acked { .. }).then_some(())).await;
    // Another certificate's hash: the TLS handshake must fail, not fall back to trust.
    let wrong = server.server.cert_hash();
    let err = within("wrong pin", builder().cert_hash(wrong).expect("hash").connect(&url))
        .await
        .expect_err("pinned");
    assert!(matches!(err, easel_client::Error::Connect(_)), "{err}");
}

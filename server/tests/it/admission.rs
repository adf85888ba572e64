//! Admission control (SPEC §5.1, `--max-sessions`, `--max-sessions-per-ip`,
//! `--handshakes-per-ip`): over a session cap the client reads `GoAway { Overloaded }` with the
//! configured hint on every transport, before its token is looked at; over its address's
//! handshake rate an attempt is dropped before TLS (QUIC, WebTransport) or answered 503 with
//! `Retry-After` (WebSocket); a session that ends frees its slot.

use std::time::Duration;

use easel_proto::ErrorCode;
use easel_server::ServerConfig;
use easel_server::config::Rate;
use easel_transport::client::{ClientError, Connection, Transport};

use crate::harness::{TRANSPORTS, TestServer, http_get, token, within};

const ROOM: &str = "school/admission/today";
const HINT: Duration = Duration::from_millis(300);

fn capped(max_sessions: u32) -> impl FnOnce(&mut ServerConfig) {
    move |c| {
        c.max_sessions = max_sessions;
        c.overload_retry_after = HINT;
    }
}

async fn attempt(server: &TestServer, transport: Transport, token: &str) -> Result<Connection, ClientError> {
    within("connection attempt", Connection::connect(&server.options(transport), token, "admission-device"))
        .await
}

/// Connects as a client honouring `Overloaded` would: after each refusal it waits the hint.
async fn connect_honouring_hints(server: &TestServer, transport: Transport) -> Connection {
    let token = token(ROOM, "patient", "student", 3600);
    within("a slot frees", async {
        loop {
            match attempt(server, transport, &token).await {
                Ok(conn) => return conn,
                Err(ClientError::GoAway { code: ErrorCode::Overloaded, retry_after, .. }) => {
                    tokio::time::sleep(retry_after).await;
                }
                Err(e) => panic!("{transport:?}: {e}"),
            }
        }
    })
    .await
}

fn overloaded(result: Result<Connection, ClientError>, what: &str) {
    match result {
        Err(ClientError::GoAway { code: ErrorCode::Overloaded, retry_after, .. }) => {
            assert_eq!(retry_after, HINT, "{what}: the configured hint");
        }
        Err(e) => panic!("{what}: expected GoAway(Overloaded), got {e}"),
        Ok(_) => panic!("{what}: admitted over the limit"),
    }
}

#[tokio::test]
async fn over_max_sessions_every_transport_reads_overloaded_with_the_hint_before_its_token_is_checked() {
    let server = TestServer::start_with(capped(1)).await;
    let first = server.connect(Transport::Quic, "first", "student", ROOM).await;
    for transport in TRANSPORTS {
        let valid = token(ROOM, "second", "student", 3600);
        overloaded(attempt(&server, transport, &valid).await, &format!("{transport:?}"));
        // Were the token verified first, this would be InvalidToken.
        let forged = "not.a.jwt";
        overloaded(attempt(&server, transport, forged).await, &format!("{transport:?}, forged token"));
    }
    first.close(ErrorCode::Normal);
}

#[tokio::test]
async fn a_session_that_ends_frees_its_slot_on_every_transport() {
    let server = TestServer::start_with(capped(1)).await;
    let mut holder = server.connect(Transport::Quic, "holder", "student", ROOM).await;
    for transport in TRANSPORTS {
        overloaded(attempt(&server, transport, &token(ROOM, "next", "student", 3600)).await, "while held");
        holder.close(ErrorCode::Normal);
        holder = connect_honouring_hints(&server, transport).await;
    }
    holder.close(ErrorCode::Normal);
}

#[tokio::test]
async fn one_address_over_max_sessions_per_ip_is_refused_and_gets_in_when_one_ends() {
    let server = TestServer::start_with(|c| {
        c.max_sessions_per_ip = 2;
        c.limit_loopback = true;
        c.overload_retry_after = HINT;
    })
    .await;
    let a = server.connect(Transport::Quic, "a", "student", ROOM).await;
    let b = server.connect(Transport::WebSocket, "b", "student", ROOM).await;
    for transport in TRANSPORTS {
        let third = attempt(&server, transport, &token(ROOM, "c", "student", 3600)).await;
        overloaded(third, &format!("third from 127.0.0.1 over {transport:?}"));
    }
    a.close(ErrorCode::Normal);
    let c = connect_honouring_hints(&server, Transport::WebTransport).await;
    c.close(ErrorCode::Normal);
    b.close(ErrorCode::Normal);
}

#[tokio::test]
async fn loopback_is_exempt_from_per_ip_limits_by_default() {
    let server = TestServer::start_with(|c| c.max_sessions_per_ip = 1).await;
    let a = server.connect(Transport::Quic, "a", "student", ROOM).await;
    let b = server.connect(Transport::Quic, "b", "student", ROOM).await;
    a.close(ErrorCode::Normal);
    b.close(ErrorCode::Normal);
}

/// Five attempts at once from an address allowed one: those over its rate never reach TLS
/// on QUIC and WebTransport (the connection is refused), and get 503 with `Retry-After` on
/// WebSocket — which the client reads as `Overloaded` with that wait.
#[tokio::test]
async fn handshakes_over_the_per_ip_rate_are_shed_before_tls() {
    for transport in TRANSPORTS {
        let server = TestServer::start_with(|c| {
            c.handshakes_per_ip = Rate { per_sec: 1, burst: 1 };
            c.limit_loopback = true;
        })
        .await;
        let token = token(ROOM, "eager", "student", 3600);
        let attempts = (0..5).map(|_| attempt(&server, transport, &token));
        let results = futures::future::join_all(attempts).await;
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        let shed: Vec<&ClientError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(admitted >= 1, "{transport:?}: the first attempt is within the burst");
        assert!(!shed.is_empty(), "{transport:?}: five at once from an address allowed 1/s");
        for e in &shed {
            match (transport, e) {
                (
                    Transport::WebSocket,
                    ClientError::GoAway { code: ErrorCode::Overloaded, retry_after, .. },
                ) => {
                    assert!(*retry_after >= Duration::from_secs(1), "Retry-After in whole seconds");
                }
                (Transport::WebSocket, other) => panic!("expected 503 with Retry-After, got {other}"),
                (_, ClientError::GoAway { .. } | ClientError::Refused { .. }) => {
                    panic!("{transport:?}: shed before TLS, yet an Easel frame was read: {e}")
                }
                _ => {}
            }
        }
        let label = match transport {
            Transport::Quic => "quic",
            Transport::WebTransport => "webtransport",
            _ => "websocket",
        };
        let metrics = scrape(&server).await;
        let counted = metric(&metrics, &format!("easel_admission_shed_total{{transport=\"{label}\"}}"));
        assert!(counted >= shed.len() as f64, "{label}: {counted} counted, {} shed", shed.len());
        for conn in results.into_iter().flatten() {
            conn.close(ErrorCode::Normal);
        }
    }
}

#[tokio::test]
async fn overloaded_refusals_are_counted_by_code() {
    let server = TestServer::start_with(capped(1)).await;
    let first = server.connect(Transport::Quic, "first", "student", ROOM).await;
    let before = metric(&scrape(&server).await, "easel_refusals_total{code=\"Overloaded\"}");
    for transport in TRANSPORTS {
        overloaded(attempt(&server, transport, &token(ROOM, "x", "student", 3600)).await, "counted");
    }
    // The server counts a refusal before it writes the GoAway the client has read.
    let after = metric(&scrape(&server).await, "easel_refusals_total{code=\"Overloaded\"}");
    assert!(after >= before + 3.0, "{before} → {after}");
    first.close(ErrorCode::Normal);
}

/// `GET /metrics`. The recorder is process-wide: under nextest (a process per test) these are
/// this server's counts; otherwise other tests' add to them, which the `>=` checks allow.
async fn scrape(server: &TestServer) -> String {
    let (status, text) = http_get(server.server.http_addr(), "/metrics").await;
    assert_eq!(status, 200);
    text
}

/// The value of the sample `name` (with its labels), 0 if absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse().ok())
        .next()
        .unwrap_or(0.0)
}

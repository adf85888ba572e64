//! Connecting: the transports a URL names race (each after a head start), the first to finish
//! the handshake wins, and the winner goes first next time.

use std::time::Duration;

use easel_proto::message::Hello;
use easel_transport::client::{ClientError, Connection, Options, Transport};
use futures::future::{BoxFuture, FutureExt as _};
use futures::stream::{FuturesUnordered, StreamExt as _};

use crate::endpoint::Endpoint;

/// A race's result: the winning connection, or the error of every attempt.
pub(super) type Outcome = Result<(Connection, Transport), Vec<(Endpoint, ClientError)>>;

/// A race under way.
pub(super) type Connecting = BoxFuture<'static, Outcome>;

type Attempt = BoxFuture<'static, (Endpoint, Result<Connection, ClientError>)>;

/// Where and how the client connects.
pub(super) struct Dialer {
    /// The URL's endpoints, the last winner first.
    pub(super) endpoints: Vec<Endpoint>,
    pub(super) cert_hash: Option<[u8; 32]>,
    pub(super) head_start: Duration,
    pub(super) attempt_timeout: Duration,
    /// QUIC and WebTransport's dead-path timeout (`None`: the transport's default).
    pub(super) idle_timeout: Option<Duration>,
}

impl Dialer {
    /// Starts a race that presents `hello`.
    pub(super) fn dial(&self, hello: Hello) -> Connecting {
        let tuning = Tuning {
            cert_hash: self.cert_hash,
            head_start: self.head_start,
            timeout: self.attempt_timeout,
            idle_timeout: self.idle_timeout,
        };
        race(self.endpoints.clone(), hello, tuning).boxed()
    }

    /// Prefer the winner next time.
    pub(super) fn prefer(&mut self, transport: Transport) {
        if let Some(i) = self.endpoints.iter().position(|e| e.transport == transport) {
            let winner = self.endpoints.remove(i);
            self.endpoints.insert(0, winner);
        }
    }
}

/// How a race's attempts run.
#[derive(Clone, Copy)]
struct Tuning {
    cert_hash: Option<[u8; 32]>,
    head_start: Duration,
    timeout: Duration,
    idle_timeout: Option<Duration>,
}

/// Tries `endpoints` in order, each starting `head_start` after the previous one (or at once
/// when every earlier attempt has failed); the first to finish the handshake wins.
async fn race(endpoints: Vec<Endpoint>, hello: Hello, tuning: Tuning) -> Outcome {
    let Tuning { head_start, timeout, .. } = tuning;
    let mut waiting = endpoints.into_iter();
    let mut running: FuturesUnordered<Attempt> = FuturesUnordered::new();
    let mut errors = Vec::new();
    let start = |endpoint: Endpoint| {
        let hello = hello.clone();
        async move {
            let result = match tokio::time::timeout(timeout, attempt(&endpoint, hello, tuning)).await {
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
                // A refusal (bad token) or an overloaded server's answer will not change on
                // another transport.
                Err(e @ (ClientError::Refused { .. } | ClientError::GoAway { .. })) => {
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

async fn attempt(endpoint: &Endpoint, hello: Hello, tuning: Tuning) -> Result<Connection, ClientError> {
    let addr =
        endpoint.resolve().await.map_err(|e| ClientError::Connect(format!("{}: {e}", endpoint.host)))?;
    let mut options = Options::new(addr, endpoint.transport);
    options.server_name = endpoint.host.trim_start_matches('[').trim_end_matches(']').to_owned();
    options.cert_hash = tuning.cert_hash;
    options.idle_timeout = tuning.idle_timeout;
    options.tls = endpoint.tls;
    Connection::handshake(&options, hello).await
}

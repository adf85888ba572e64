//! Connecting: the transports of every node the client knows race (each after a head start),
//! the first to finish the handshake wins, and the winner goes first next time. With several
//! nodes (cluster mode, one URL per node) the last node that answered is tried first and the
//! others follow in an order shuffled per client, so clients spread over the nodes and a node
//! that does not come back costs a head start, not a failed reconnect.

use std::time::Duration;

use easel_proto::message::Hello;
use easel_transport::client::{ClientError, Connection, Options, Transport};
use futures::future::{BoxFuture, FutureExt as _};
use futures::stream::{FuturesUnordered, StreamExt as _};
use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;

use crate::endpoint::Endpoint;

/// A race's result: the winning connection and where it went, or the error of every attempt.
pub(super) type Outcome = Result<(Connection, Won), Vec<(Endpoint, ClientError)>>;

/// A race under way.
pub(super) type Connecting = BoxFuture<'static, Outcome>;

/// Where a race was won: the node (its index in the client's list) and the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Won {
    pub(super) node: usize,
    pub(super) transport: Transport,
}

/// Where and how the client connects.
pub(super) struct Dialer {
    /// Each node's endpoints (one URL's), its last winner first.
    pub(super) nodes: Vec<Vec<Endpoint>>,
    /// The order nodes are tried in.
    pub(super) order: NodeOrder,
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
        let plan = plan(&self.nodes, &self.order.order());
        race(plan, tuning, move |endpoint| {
            let hello = hello.clone();
            async move { attempt(&endpoint, hello, tuning).await }.boxed()
        })
        .boxed()
    }

    /// Prefer the winner next time: its node first, and its transport first there.
    pub(super) fn prefer(&mut self, won: Won) {
        self.order.succeeded(won.node);
        let Some(endpoints) = self.nodes.get_mut(won.node) else { return };
        if let Some(i) = endpoints.iter().position(|e| e.transport == won.transport) {
            let winner = endpoints.remove(i);
            endpoints.insert(0, winner);
        }
    }
}

/// The order nodes are tried in (sans IO): the last that answered first, then the others in
/// an order shuffled once per client, so that clients spread over the nodes instead of all
/// falling onto the next one in the list when a node dies.
#[derive(Debug, Clone)]
pub(super) struct NodeOrder {
    shuffled: Vec<usize>,
    last_good: Option<usize>,
}

impl NodeOrder {
    /// `nodes` nodes, shuffled by `seed`.
    pub(super) fn new(nodes: usize, seed: u64) -> Self {
        let mut shuffled: Vec<usize> = (0..nodes).collect();
        shuffled.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        Self { shuffled, last_good: None }
    }

    /// Every node, in the order to try them.
    pub(super) fn order(&self) -> Vec<usize> {
        let rest = self.shuffled.iter().copied().filter(|n| Some(*n) != self.last_good);
        self.last_good.into_iter().chain(rest).collect()
    }

    /// `node` answered: it goes first from now on.
    pub(super) fn succeeded(&mut self, node: usize) {
        if self.shuffled.contains(&node) {
            self.last_good = Some(node);
        }
    }
}

/// The endpoints to try, in order: each node's, node by node in `order`.
fn plan(nodes: &[Vec<Endpoint>], order: &[usize]) -> Vec<(usize, Endpoint)> {
    order
        .iter()
        .filter_map(|n| nodes.get(*n).map(|eps| (*n, eps)))
        .flat_map(|(n, eps)| eps.iter().cloned().map(move |e| (n, e)))
        .collect()
}

/// How a race's attempts run.
#[derive(Clone, Copy)]
struct Tuning {
    cert_hash: Option<[u8; 32]>,
    head_start: Duration,
    timeout: Duration,
    idle_timeout: Option<Duration>,
}

type Attempt<C> = BoxFuture<'static, (usize, Endpoint, Result<C, ClientError>)>;

/// Tries `plan` in order, each attempt starting `head_start` after the previous one (or at
/// once when every earlier attempt has failed); the first to finish the handshake wins. A
/// refusal (bad token) ends the race: it would be the same everywhere. A node that answers
/// `GoAway` (overloaded) is not tried on its other transports; the other nodes are.
async fn race<C: Send + 'static>(
    plan: Vec<(usize, Endpoint)>,
    tuning: Tuning,
    attempt: impl Fn(Endpoint) -> BoxFuture<'static, Result<C, ClientError>>,
) -> Result<(C, Won), Vec<(Endpoint, ClientError)>> {
    let Tuning { head_start, timeout, .. } = tuning;
    let mut waiting = std::collections::VecDeque::from(plan);
    let mut running: FuturesUnordered<Attempt<C>> = FuturesUnordered::new();
    // The node of each running attempt.
    let mut running_nodes: Vec<usize> = Vec::new();
    let mut errors = Vec::new();
    let start = |(node, endpoint): (usize, Endpoint)| {
        let attempt = attempt(endpoint.clone());
        async move {
            let result = match tokio::time::timeout(timeout, attempt).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Connect(format!("no answer within {timeout:?}"))),
            };
            (node, endpoint, result)
        }
        .boxed()
    };
    let launch =
        |next: (usize, Endpoint), running: &mut FuturesUnordered<Attempt<C>>, nodes: &mut Vec<usize>| {
            nodes.push(next.0);
            running.push(start(next));
        };
    if let Some(first) = waiting.pop_front() {
        launch(first, &mut running, &mut running_nodes);
    }
    loop {
        if running.is_empty() {
            match waiting.pop_front() {
                Some(next) => launch(next, &mut running, &mut running_nodes),
                None => return Err(errors),
            }
        }
        tokio::select! {
            Some((node, endpoint, result)) = running.next() => {
                if let Some(i) = running_nodes.iter().position(|n| *n == node) {
                    running_nodes.swap_remove(i);
                }
                match result {
                Ok(conn) => return Ok((conn, Won { node, transport: endpoint.transport })),
                Err(e @ ClientError::Refused { .. }) => {
                    errors.push((endpoint, e));
                    return Err(errors);
                }
                // An overloaded node's answer will not change on another of its transports.
                Err(e @ ClientError::GoAway { .. }) => {
                    errors.push((endpoint, e));
                    waiting.retain(|(n, _)| *n != node);
                    // No other node left to try: done (as with a single node).
                    if waiting.is_empty() && running_nodes.iter().all(|n| *n == node) {
                        return Err(errors);
                    }
                }
                Err(e) => errors.push((endpoint, e)),
                }
            },
            () = tokio::time::sleep(head_start), if !waiting.is_empty() => {
                if let Some(next) = waiting.pop_front() {
                    launch(next, &mut running, &mut running_nodes);
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use easel_proto::ErrorCode;

    use super::*;

    fn node(port: u16) -> Vec<Endpoint> {
        let at = |transport| Endpoint { transport, host: "127.0.0.1".into(), port, tls: false };
        vec![at(Transport::Quic), at(Transport::WebSocket)]
    }

    fn tuning() -> Tuning {
        // A head start short enough not to slow the tests; outcomes, not times, are asserted.
        Tuning {
            cert_hash: None,
            head_start: Duration::from_millis(1),
            timeout: Duration::from_secs(60),
            idle_timeout: None,
        }
    }

    /// Races `plan` with attempts that answer as `answer` says for each endpoint (`None`: never);
    /// returns the outcome's winner and every endpoint tried, in order.
    async fn run(
        plan: Vec<(usize, Endpoint)>,
        answer: impl Fn(&Endpoint) -> Option<Result<(), ClientError>> + Send + Sync + 'static,
    ) -> (Result<Won, Vec<ClientError>>, Vec<Endpoint>) {
        let tried = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let log = tried.clone();
        let outcome = race(plan, tuning(), move |e: Endpoint| {
            log.lock().expect("lock").push(e.clone());
            let answer = answer.clone();
            async move {
                match answer(&e) {
                    Some(r) => r,
                    None => std::future::pending().await,
                }
            }
            .boxed()
        })
        .await;
        let outcome = outcome.map(|((), won)| won).map_err(|errs| errs.into_iter().map(|(_, e)| e).collect());
        let tried = tried.lock().expect("lock").clone();
        (outcome, tried)
    }

    fn refused() -> ClientError {
        ClientError::Connect("connection refused".into())
    }

    #[test]
    fn the_last_good_node_goes_first_and_the_others_follow_shuffled() {
        let order = NodeOrder::new(5, 7);
        let first = order.order();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4], "every node, once");
        let mut order = order;
        order.succeeded(3);
        let after = order.order();
        assert_eq!(after[0], 3, "the last good node first");
        let rest: Vec<usize> = first.iter().copied().filter(|n| *n != 3).collect();
        assert_eq!(after[1..], rest, "then the others, in the client's shuffled order");
        order.succeeded(9);
        assert_eq!(order.order()[0], 3, "a node not in the list changes nothing");
        // Clients spread: their seeds give them different first nodes.
        let firsts: std::collections::BTreeSet<usize> =
            (0..64).map(|s| NodeOrder::new(5, s).order()[0]).collect();
        assert!(firsts.len() > 1, "{firsts:?}");
    }

    #[test]
    fn the_plan_is_node_by_node_with_each_nodes_transports() {
        let nodes = vec![node(1), node(2)];
        let ports: Vec<(usize, u16, Transport)> =
            plan(&nodes, &[1, 0]).into_iter().map(|(n, e)| (n, e.port, e.transport)).collect();
        assert_eq!(
            ports,
            [
                (1, 2, Transport::Quic),
                (1, 2, Transport::WebSocket),
                (0, 1, Transport::Quic),
                (0, 1, Transport::WebSocket)
            ]
        );
    }

    #[test]
    fn the_winner_goes_first_next_time() {
        let mut dialer = Dialer {
            nodes: vec![node(1), node(2)],
            order: NodeOrder::new(2, 1),
            cert_hash: None,
            head_start: Duration::ZERO,
            attempt_timeout: Duration::ZERO,
            idle_timeout: None,
        };
        dialer.prefer(Won { node: 1, transport: Transport::WebSocket });
        let first = plan(&dialer.nodes, &dialer.order.order())[0].clone();
        assert_eq!((first.0, first.1.port, first.1.transport), (1, 2, Transport::WebSocket));
    }

    #[tokio::test]
    async fn a_node_that_fails_hands_over_to_the_next() {
        let (won, tried) = run(plan(&[node(1), node(2)], &[0, 1]), |e| {
            Some(if e.port == 1 { Err(refused()) } else { Ok(()) })
        })
        .await;
        assert_eq!(won.expect("connected"), Won { node: 1, transport: Transport::Quic });
        assert_eq!(
            tried.iter().map(|e| e.port).collect::<Vec<_>>(),
            [1, 1, 2],
            "node 1's transports, then node 2"
        );
    }

    #[tokio::test]
    async fn a_node_that_never_answers_is_passed_after_a_head_start() {
        let (won, _) = run(plan(&[node(1), node(2)], &[0, 1]), |e| (e.port == 2).then_some(Ok(()))).await;
        assert_eq!(won.expect("connected").node, 1);
    }

    #[tokio::test]
    async fn every_node_failing_gives_every_error_and_a_refusal_ends_the_race() {
        let (won, tried) = run(plan(&[node(1), node(2)], &[0, 1]), |_| Some(Err(refused()))).await;
        assert_eq!(won.expect_err("nobody answered").len(), 4);
        assert_eq!(tried.len(), 4);

        let refusal = || ClientError::Refused { code: ErrorCode::InvalidToken, message: "bad token".into() };
        let (won, tried) = run(plan(&[node(1), node(2)], &[0, 1]), move |_| Some(Err(refusal()))).await;
        assert_eq!(won.expect_err("refused").len(), 1);
        assert_eq!(tried.len(), 1, "the same token is refused everywhere");
    }

    #[tokio::test]
    async fn an_overloaded_node_is_left_for_the_next_not_retried_on_its_other_transport() {
        let go_away = || ClientError::GoAway {
            code: ErrorCode::Overloaded,
            retry_after: Duration::from_secs(1),
            message: "busy".into(),
        };
        let (won, tried) = run(plan(&[node(1), node(2)], &[0, 1]), move |e| {
            Some(if e.port == 1 { Err(go_away()) } else { Ok(()) })
        })
        .await;
        assert_eq!(won.expect("connected").node, 1);
        assert_eq!(
            tried.iter().map(|e| (e.port, e.transport)).collect::<Vec<_>>()[..2],
            [(1, Transport::Quic), (2, Transport::Quic)]
        );

        // One node only: its GoAway is the answer, as before.
        let (won, tried) = run(plan(&[node(1)], &[0]), move |_| Some(Err(go_away()))).await;
        assert_eq!(won.expect_err("overloaded").len(), 1);
        assert_eq!(tried.len(), 1);
    }
}

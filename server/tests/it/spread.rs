//! A room spread over nodes: suites written for one server run again with their members on
//! the two nodes of one cluster (one NATS), each connection on the next node in turn, which is
//! issue 15's proof that a room behaves across nodes as on one.

use easel_server::ServerConfig;

use crate::harness::TestServer;
use crate::nats::{Nats, node_config};

/// Where a test's members are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One server alone.
    One,
    /// Two nodes of one cluster, members on each in turn.
    Spread,
}

/// Both layouts, one server first.
pub const LAYOUTS: [Layout; 2] = [Layout::One, Layout::Spread];

impl Layout {
    pub async fn start(self) -> TestServer {
        self.start_with(|_| {}).await
    }

    /// Starts the layout's servers, each configured as a test server that `change` adjusts.
    pub async fn start_with(self, change: impl Fn(&mut ServerConfig)) -> TestServer {
        match self {
            Self::One => TestServer::start_with(change).await,
            Self::Spread => {
                let nats = Nats::start().await;
                let node = |id| {
                    let cluster = node_config(&nats, id);
                    let change = &change;
                    TestServer::start_with(move |c| {
                        c.cluster = Some(cluster);
                        change(c);
                    })
                };
                let a = node("a").await;
                let TestServer { server: b, dir: b_dir, .. } = node("b").await;
                TestServer::spread(a, vec![b], Box::new((b_dir, nats)))
            }
        }
    }
}

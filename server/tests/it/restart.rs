//! A server restarted on the same data dir and ports (after a `kill -9`) answers its
//! predecessor's connections with a QUIC stateless reset, because its reset key is kept in the
//! data dir: clients learn at their next packet that the server is gone, not by their idle
//! timeout.

use std::time::Duration;

use easel_transport::client::{Connection, Options, Transport};

use crate::harness::{token, within};
use crate::spawned::Spawned;

/// Far above this test's own bound (`within`: 15 s): only a reset can end the connection in time.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_restarted_server_resets_its_predecessors_connections() {
    for transport in [Transport::Quic, Transport::WebTransport] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut before = Spawned::start(dir.path()).await;
        let options = Options { idle_timeout: Some(IDLE_TIMEOUT), ..before.options(transport) };
        let conn = within(
            "connect",
            Connection::connect(&options, &token("r/c/1", "ada", "student", 3600), "ada-1"),
        )
        .await
        .expect("connect");

        before.child.kill().await.expect("kill -9");
        let _after = Spawned::start_again(dir.path(), &before).await;
        // The client's keep-alives (every 5 s) are the old connection's next packets.
        let why = within("the old connection ends", conn.closed()).await;
        assert!(why.to_string().contains("reset"), "{transport:?}: a stateless reset, not {why}");
    }
}

//! The SDK against a server over its session cap (`--max-sessions`): the refusal's
//! `GoAway { Overloaded, retry_after_ms }` times the next attempt (the hint plus full jitter,
//! not the client's shorter own backoff), and the client gets in once a slot frees.

use std::time::Duration;

use easel_client::{Client, Event};
use easel_proto::ErrorCode;

use crate::harness::{TRANSPORTS, TestServer, token, within};
use crate::sdk::url;

const ROOM: &str = "school/overload/today";
/// Longer than the client's own backoff bound below, so a wait this long is the server's.
const HINT: Duration = Duration::from_millis(400);

#[tokio::test]
async fn a_client_refused_as_overloaded_waits_the_hint_and_gets_in_once_a_slot_frees() {
    for transport in TRANSPORTS {
        let server = TestServer::start_with(|c| {
            c.max_sessions = 1;
            c.overload_retry_after = HINT;
        })
        .await;
        let holder = server.connect(transport, "holder", "student", ROOM).await;
        let client = Client::builder(token(ROOM, "latecomer", "student", 3600))
            .cert_hash(server.server.cert_hash())
            .expect("hash")
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .spawn(&url(&server.server, transport))
            .expect("client");
        let mut refusals = 0;
        within("refused, then in", async {
            loop {
                match client.next_event().await.expect("client open") {
                    Event::Disconnected { code, retry_in, reason, .. } => {
                        assert_eq!(code, Some(ErrorCode::Overloaded), "{transport:?}: {reason}");
                        assert!(
                            (HINT..=HINT * 2).contains(&retry_in),
                            "{transport:?}: waits {retry_in:?}, not the hint {HINT:?} plus jitter"
                        );
                        refusals += 1;
                        // The slot frees only after the client has been refused once.
                        if refusals == 1 {
                            holder.close(ErrorCode::Normal);
                        }
                    }
                    Event::Connected { .. } => break,
                    _ => {}
                }
            }
        })
        .await;
        assert!(refusals >= 1, "{transport:?}: admitted over the cap");
        client.close().await;
    }
}

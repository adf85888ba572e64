//! The Janus adapter's room and peer lifecycle, its errors, and its reconnect after a restart.

use std::time::Duration;

use easel_proto::ErrorCode;
use easel_sfu_bridge::janus::{Janus, JanusConfig};
use easel_sfu_bridge::{Access, PeerEvent, PeerRequest, Sfu, SfuError};
use tokio::sync::mpsc;

use crate::process::{ADMIN_KEY, JanusProcess};

const ROOM: &str = "uni-a/physics/2026-11-23";

fn config(janus: &JanusProcess, key: &str) -> JanusConfig {
    JanusConfig { admin_key: Some(key.into()), ..JanusConfig::new(janus.url()) }
}

fn request(participant: u16, access: Access, publish: bool) -> PeerRequest {
    PeerRequest { room: ROOM.into(), participant, display: format!("p{participant}"), access, publish }
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `listparticipants` (bounded) until `want` holds for the room's publisher count.
async fn listed_until(bridge: &Janus, what: &str, want: impl Fn(usize) -> bool) {
    within(what, async {
        loop {
            if let Ok(listed) = bridge.participants(ROOM).await
                && want(listed.len())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn rooms_publishers_and_refusals() {
    let janus = JanusProcess::start();
    let bridge = Janus::start(config(&janus, ADMIN_KEY));
    within("session", bridge.connected(Duration::from_secs(10))).await.expect("session");
    bridge.ensure_room(ROOM).await.expect("room created");
    bridge.ensure_room(ROOM).await.expect("ensure is idempotent");

    let (tx, mut events) = mpsc::unbounded_channel();
    let (mut teacher, grant) = bridge.join(request(0, Access::Publish, true), tx).await.expect("join");
    assert!(grant.can_publish);
    assert_eq!(within("joined", events.recv()).await, Some(PeerEvent::Joined));
    let listed = bridge.participants(ROOM).await.expect("list");
    assert_eq!(listed.len(), 1, "the publisher is in the room: {listed:?}");
    assert_eq!(listed[0].display, "p0");

    // A subscriber-only participant may not publish, neither at join nor by offering.
    let (tx, _viewer_events) = mpsc::unbounded_channel();
    let refused = bridge.join(request(1, Access::Subscribe, true), tx.clone()).await.err().expect("refused");
    assert_eq!(refused.code(), ErrorCode::Forbidden);
    let (mut viewer, grant) = bridge.join(request(1, Access::Subscribe, false), tx).await.expect("join");
    assert!(!grant.can_publish);
    assert_eq!(viewer.offer("v=0".into()).await.err().map(|e| e.code()), Some(ErrorCode::Forbidden));
    // Janus refuses a feed that does not exist: a typed rejection with Janus's code.
    match viewer.subscribe(424_242).await {
        Err(SfuError::Rejected { code, .. }) => assert_eq!(code, 428, "no such feed"),
        other => panic!("expected a rejection, got {other:?}"),
    }

    teacher.leave().await.expect("leave");
    listed_until(&bridge, "publisher gone", |n| n == 0).await;
    assert_eq!(within("unpublished/left", events.recv()).await, Some(PeerEvent::Left));
}

#[tokio::test]
async fn a_wrong_admin_key_is_a_typed_rejection() {
    let janus = JanusProcess::start();
    let bridge = Janus::start(config(&janus, "not-the-key"));
    match within("create", bridge.ensure_room(ROOM)).await {
        Err(e @ SfuError::Rejected { .. }) => assert_eq!(e.code(), ErrorCode::SfuRejected),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_janus_restart_ends_peers_and_a_new_session_serves_again() {
    let janus = JanusProcess::start();
    let bridge = Janus::start(config(&janus, ADMIN_KEY));
    let (tx, mut events) = mpsc::unbounded_channel();
    let (_peer, _) = within("join", bridge.join(request(0, Access::Publish, true), tx)).await.expect("join");
    assert_eq!(within("joined", events.recv()).await, Some(PeerEvent::Joined));

    janus.restart();
    assert_eq!(within("left on restart", events.recv()).await, Some(PeerEvent::Left));
    // The bridge makes a new session and re-creates the room on demand.
    within("session again", bridge.connected(Duration::from_secs(10))).await.expect("reconnected");
    let (tx, _events) = mpsc::unbounded_channel();
    let (_peer, _) =
        within("join again", bridge.join(request(0, Access::Publish, true), tx)).await.expect("join");
    listed_until(&bridge, "listed after restart", |n| n == 1).await;
}

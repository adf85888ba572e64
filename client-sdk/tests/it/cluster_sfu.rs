//! SFU signalling across the nodes of a cluster: two servers on one nats-server and one Janus,
//! a teacher publishing a real webrtc-rs VP8 track through node a, students on node b who see
//! it as on one node (under b's numbers), subscribe to its feed through b and get its RTP; a
//! student's feed through b stopped by the teacher on a; the teacher's cursor cap, in force on
//! both nodes.

use std::time::Duration;

use easel_client::{Event, ModAction, SfuEventKind};
use easel_server::config::ClusterConfig;

use crate::harness::TestServer;
use crate::janus::JanusProcess;
use crate::nats::Nats;
use crate::sfu::{Member, api, camera, publish, sfu_config, sfu_event, subscribe};

/// A node of the cluster on `nats`, in front of `janus`.
async fn node(nats: &Nats, janus: &JanusProcess, id: &str) -> TestServer {
    let cluster = ClusterConfig {
        node_id: Some(id.into()),
        heartbeat: Duration::from_millis(100),
        ..ClusterConfig::new(&nats.url)
    };
    let sfu = sfu_config(janus);
    TestServer::start_with(move |c| {
        c.cluster = Some(cluster);
        c.sfu = Some(sfu);
    })
    .await
}

/// Waits until `user` is listed to `member`; returns its number as `member`'s node numbers it.
async fn listed(member: &mut Member, user: &str) -> u16 {
    member
        .wait(&format!("{user} listed"), |e| match e {
            Event::ParticipantJoined { participant, .. } if participant.user == user => {
                Some(participant.index)
            }
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_on_one_node_is_seen_and_subscribed_to_on_another() {
    let nats = Nats::start().await;
    let janus = JanusProcess::start();
    let (a, b) = (node(&nats, &janus, "a").await, node(&nats, &janus, "b").await);
    let api = api();
    let mut tess = Member::join(&a, "tess", "teacher").await;
    let mut sam = Member::join(&b, "sam", "student").await;
    // Listed before she does anything in the SFU: her SFU events follow.
    let tess_at_b = listed(&mut sam, "tess").await;
    let sam_at_a = listed(&mut tess, "sam").await;
    assert!(sam.sfu_join(true).await, "students publish here");

    assert!(tess.sfu_join(true).await);
    let (publisher, _) = publish(&mut tess, &api).await;
    let feed = sfu_event(&mut sam, tess_at_b, SfuEventKind::Publishing).await;
    camera(&mut sam, tess_at_b, true).await;
    let me = tess.index;
    assert_eq!(sfu_event(&mut tess, me, SfuEventKind::Publishing).await, feed, "Janus's feed id");

    // A newcomer on b is told who publishes which feed.
    let mut cyd = Member::join(&b, "cyd", "student").await;
    assert_eq!(sfu_event(&mut cyd, tess_at_b, SfuEventKind::Publishing).await, feed);

    // Through b's bridge to the feed a's bridge published: the SFU offers, media flows.
    let (_subscriber, mut rtp) = subscribe(&mut sam, &api, feed).await;
    crate::harness::within("the first RTP packet at sam", rtp.recv()).await.expect("RTP");

    tess.room.sfu_leave(0).await.expect("unpublish");
    assert_eq!(sfu_event(&mut sam, tess_at_b, SfuEventKind::Unpublished).await, feed);
    camera(&mut sam, tess_at_b, false).await;
    drop(publisher);

    // The other way round, and a teacher's StopMedia carried out by the publisher's node.
    let (_publisher, _) = publish(&mut sam, &api).await;
    let feed = sfu_event(&mut tess, sam_at_a, SfuEventKind::Publishing).await;
    camera(&mut tess, sam_at_a, true).await;
    tess.room.moderate(sam_at_a, ModAction::StopMedia, "").await.expect("moderate");
    assert_eq!(sfu_event(&mut tess, sam_at_a, SfuEventKind::Unpublished).await, feed);
    camera(&mut tess, sam_at_a, false).await;

    // The lecture's cursor cap: every node's, each naming her by its own number.
    for (cap, told) in [(Some(1), 1), (Some(0), 0)] {
        tess.room.set_cursor_cap(cap).await.expect("set the cap");
        for (member, by) in [(&mut tess, me), (&mut sam, tess_at_b), (&mut cyd, tess_at_b)] {
            let seen = member
                .wait("the cursor cap", |e| match e {
                    Event::CursorCap { cap, by, .. } => Some((*cap, *by)),
                    _ => None,
                })
                .await;
            assert_eq!(seen, (told, by), "#{} told the cap", member.index);
        }
    }
}

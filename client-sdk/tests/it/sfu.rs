//! Video through a real Janus, signalled only over Easel: webrtc-rs peers publish a VP8 track
//! from one SDK client and receive its RTP at another; teacher moderation tears the publisher
//! down in Janus; a viewer may not publish. Each test starts its own Janus (scripts/janus.sh).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use easel_client::{Client, Event, ModAction, Room, SdpKind, SfuEventKind, Transport};
use easel_proto::ErrorCode;
use easel_proto::message::Kind;
use easel_server::config::{SfuConfig, SfuKind};
use easel_sfu_bridge::janus::{Janus, JanusConfig};
use tokio::sync::mpsc;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{API, APIBuilder};
use webrtc::dtls_transport::dtls_role::DTLSRole;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::interceptor::registry::Registry;
use webrtc::media::Sample;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocal;
use webrtc::track::track_local::track_local_static_sample::TrackLocalStaticSample;

use crate::harness::{TestServer, token, within};
use crate::janus::{ADMIN_KEY, JanusProcess};
use crate::sdk::url;

pub const ROOM: &str = "uni-a/biology/2026-11-23";

/// The SFU configuration of a server in front of `janus`.
pub fn sfu_config(janus: &JanusProcess) -> SfuConfig {
    SfuConfig {
        kind: SfuKind::Janus,
        janus_url: janus.url(),
        janus_admin_key: Some(ADMIN_KEY.into()),
        ice_servers: Vec::new(),
        students_publish: true,
    }
}

async fn server_with(janus: &JanusProcess) -> TestServer {
    let sfu = sfu_config(janus);
    TestServer::start_with(|c| c.sfu = Some(sfu)).await
}

/// An SDK client in the room. Its events are pumped by a task: ICE candidates from the SFU go
/// straight to the peer connection of their feed, everything else to `events`.
pub struct Member {
    _client: Arc<Client>,
    pub room: Room,
    pub index: u16,
    events: mpsc::UnboundedReceiver<Event>,
    peers: Arc<Mutex<HashMap<u64, Arc<RTCPeerConnection>>>>,
}

impl Member {
    pub async fn join(server: &TestServer, user: &str, role: &str) -> Self {
        let client = Client::builder(token(ROOM, user, role, 3600))
            .cert_hash(server.server.cert_hash())
            .expect("hash")
            .connect(&url(&server.server, Transport::Quic))
            .await
            .expect("connect");
        let room = within("join", client.join(ROOM)).await.expect("join");
        let client = Arc::new(client);
        let peers: Arc<Mutex<HashMap<u64, Arc<RTCPeerConnection>>>> = Arc::default();
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn({
            let (client, peers) = (client.clone(), peers.clone());
            async move {
                while let Some(event) = client.next_event().await {
                    if let Event::SfuCandidate { feed, candidate, mid, mline_index, .. } = &event {
                        let pc = peers.lock().expect("lock").get(feed).cloned();
                        if let Some(pc) = pc.filter(|_| !candidate.is_empty()) {
                            let init = RTCIceCandidateInit {
                                candidate: candidate.clone(),
                                sdp_mid: Some(mid.clone()),
                                sdp_mline_index: Some(*mline_index),
                                username_fragment: None,
                            };
                            pc.add_ice_candidate(init).await.expect("remote candidate");
                        }
                        continue;
                    }
                    if tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        let index = within("joined", async {
            loop {
                match events.recv().await {
                    Some(Event::Joined { participant, .. }) => return participant,
                    Some(_) => {}
                    None => panic!("client closed before Joined"),
                }
            }
        })
        .await;
        Self { _client: client, room, index, events, peers }
    }

    /// Waits for the first event `want` accepts, skipping others.
    pub async fn wait<T>(&mut self, what: &str, mut want: impl FnMut(&Event) -> Option<T>) -> T {
        within(what, async {
            loop {
                let event = self.events.recv().await.unwrap_or_else(|| panic!("client closed: {what}"));
                if let Some(t) = want(&event) {
                    return t;
                }
                if let Event::Refused { code, kind, message, .. } = &event
                    && (Kind::SfuJoin.to_u8()..=Kind::SfuEvent.to_u8()).contains(kind)
                {
                    panic!("SFU request refused while waiting for {what}: {code} {message}");
                }
            }
        })
        .await
    }

    pub async fn sfu_join(&mut self, publish: bool) -> bool {
        self.room.sfu_join(publish).await.expect("sfu_join");
        self.wait("grant", |e| match e {
            Event::SfuGrant { can_publish, .. } => Some(*can_publish),
            _ => None,
        })
        .await
    }

    /// Sends our ICE candidates for `feed` as they are gathered. Started once the SDP is sent,
    /// so the server gets it first; candidates gathered meanwhile wait in `gathered`.
    fn trickle(&self, feed: u64, mut gathered: mpsc::UnboundedReceiver<Option<RTCIceCandidate>>) {
        let room = self.room.clone();
        tokio::spawn(async move {
            while let Some(candidate) = gathered.recv().await {
                let init = candidate.map(|c| c.to_json().expect("candidate json"));
                let (line, mid, index) = init.map_or_else(Default::default, |i| {
                    (i.candidate, i.sdp_mid.unwrap_or_default(), i.sdp_mline_index.unwrap_or(0))
                });
                if room.sfu_candidate(feed, &line, &mid, index).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A webrtc-rs API whose only candidate is 127.0.0.2: Janus (libnice) refuses remote
/// candidates at 127.0.0.1, and no mDNS socket is opened. Answering (subscribing) it takes the
/// DTLS server role: as the client, about one run in three took ~1 s longer to the first RTP
/// (the DTLS retransmit interval; its first flight apparently reached Janus too early).
pub fn api() -> API {
    let mut media = MediaEngine::default();
    media.register_default_codecs().expect("codecs");
    let registry = register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip| ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_answering_dtls_role(DTLSRole::Server).expect("dtls role");
    APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build()
}

/// A peer connection whose gathered candidates queue on the returned channel.
async fn peer(api: &API) -> (Arc<RTCPeerConnection>, mpsc::UnboundedReceiver<Option<RTCIceCandidate>>) {
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await.expect("peer connection"));
    let (tx, rx) = mpsc::unbounded_channel();
    pc.on_ice_candidate(Box::new(move |c| {
        let _ = tx.send(c);
        Box::pin(async {})
    }));
    (pc, rx)
}

/// The VP8 start code and 320×240, as every synthetic frame carries them.
const FRAME_HEAD: [u8; 7] = [0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];

/// A synthetic VP8 key frame of about 1 KB (320×240): a valid frame tag and start code, so
/// Janus's key-frame detection sees one; the payload is not decodable, which an SFU never needs.
fn vp8_frame(n: u32) -> Bytes {
    let mut frame = vec![0x90, 0x0c, 0x00];
    frame.extend_from_slice(&FRAME_HEAD);
    frame.extend((0..1000u32).map(|i| (i.wrapping_mul(31) ^ n) as u8));
    Bytes::from(frame)
}

/// A publisher sending frames at 30 fps until dropped.
pub struct Publisher {
    pc: Arc<RTCPeerConnection>,
    frames: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.frames.abort();
        let pc = self.pc.clone();
        tokio::spawn(async move { pc.close().await });
    }
}

/// `member` publishes a VP8 track through Easel's SFU signalling. Returns the publisher and
/// when the offer was sent.
pub async fn publish(member: &mut Member, api: &API) -> (Publisher, Instant) {
    let (pc, gathered) = peer(api).await;
    let capability = RTCRtpCodecCapability {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        ..Default::default()
    };
    let track = Arc::new(TrackLocalStaticSample::new(capability, "video".into(), "easel-test".into()));
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal + Send + Sync>).await.expect("add track");
    // RTCP must be read for the interceptors (NACK, reports) to run.
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while sender.read(&mut buf).await.is_ok() {}
    });
    member.peers.lock().expect("lock").insert(0, pc.clone());
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer.clone()).await.expect("local offer");
    let offered = Instant::now();
    member.room.sfu_sdp(0, SdpKind::Offer, &offer.sdp).await.expect("send offer");
    member.trickle(0, gathered);
    let answer = member
        .wait("publisher answer", |e| match e {
            Event::SfuSdp { feed: 0, kind: SdpKind::Answer, sdp, .. } => Some(sdp.clone()),
            _ => None,
        })
        .await;
    pc.set_remote_description(RTCSessionDescription::answer(answer).expect("answer sdp"))
        .await
        .expect("remote answer");
    // Pacing of a 30 fps camera, not synchronisation: frames before ICE completes are dropped.
    let frames = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(33));
        for n in 0u32.. {
            every.tick().await;
            let sample =
                Sample { data: vp8_frame(n), duration: Duration::from_millis(33), ..Default::default() };
            if track.write_sample(&sample).await.is_err() {
                return;
            }
        }
    });
    (Publisher { pc, frames }, offered)
}

/// `member` subscribes to `feed`; returns the peer connection and a channel that gets, for
/// every RTP packet, when it arrived and whether it carries one of [`vp8_frame`]'s frames.
pub async fn subscribe(
    member: &mut Member,
    api: &API,
    feed: u64,
) -> (Arc<RTCPeerConnection>, mpsc::UnboundedReceiver<(Instant, bool)>) {
    let (pc, gathered) = peer(api).await;
    let (rtp_tx, rtp) = mpsc::unbounded_channel();
    pc.on_track(Box::new(move |track, _, _| {
        let rtp_tx = rtp_tx.clone();
        tokio::spawn(async move {
            while let Ok((packet, _)) = track.read_rtp().await {
                let ours = packet.payload.windows(FRAME_HEAD.len()).any(|w| w == FRAME_HEAD);
                if rtp_tx.send((Instant::now(), ours)).is_err() {
                    return;
                }
            }
        });
        Box::pin(async {})
    }));
    member.peers.lock().expect("lock").insert(feed, pc.clone());
    member.room.sfu_subscribe(&[feed]).await.expect("subscribe");
    let offer = member
        .wait("subscriber offer", |e| match e {
            Event::SfuSdp { feed: f, kind: SdpKind::Offer, sdp, .. } if *f == feed => Some(sdp.clone()),
            _ => None,
        })
        .await;
    pc.set_remote_description(RTCSessionDescription::offer(offer).expect("offer sdp"))
        .await
        .expect("remote offer");
    let answer = pc.create_answer(None).await.expect("answer");
    pc.set_local_description(answer.clone()).await.expect("local answer");
    member.room.sfu_sdp(feed, SdpKind::Answer, &answer.sdp).await.expect("send answer");
    member.trickle(feed, gathered);
    (pc, rtp)
}

/// Waits for `who`'s SFU event of `kind`; returns its feed.
pub async fn sfu_event(member: &mut Member, who: u16, kind: SfuEventKind) -> u64 {
    member
        .wait(&format!("SfuEvent {kind:?} of #{who}"), |e| match e {
            Event::SfuEvent { participant, feed, event, .. } if *participant == who && *event == kind => {
                Some(*feed)
            }
            _ => None,
        })
        .await
}

pub async fn camera(member: &mut Member, who: u16, on: bool) {
    member
        .wait(&format!("camera of #{who} {on}"), |e| match e {
            Event::ParticipantUpdated { participant, .. }
                if participant.index == who && participant.camera == on =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
}

/// Polls Janus's `listparticipants` (bounded) until nobody publishes in the room.
async fn until_janus_lists_nobody(janus: &Janus) {
    within("Janus no longer lists the publisher", async {
        loop {
            match janus.participants(ROOM).await {
                Ok(listed) if listed.is_empty() => return,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_published_over_easel_reaches_a_subscriber_through_janus_until_removed() {
    let janus_process = JanusProcess::start();
    let server = server_with(&janus_process).await;
    let janus = Janus::start(JanusConfig::new(janus_process.url()));
    let api = api();
    let mut teacher = Member::join(&server, "teach", "teacher").await;
    let mut ada = Member::join(&server, "ada", "student").await;

    let started = Instant::now();
    assert!(ada.sfu_join(true).await, "a student may publish here");
    let (_publisher, offered) = publish(&mut ada, &api).await;

    assert!(teacher.sfu_join(false).await, "a teacher may publish");
    let feed = sfu_event(&mut teacher, ada.index, SfuEventKind::Publishing).await;
    let published = Instant::now();
    camera(&mut teacher, ada.index, true).await;
    let listed = janus.participants(ROOM).await.expect("listparticipants");
    assert!(listed.iter().any(|p| p.id == feed && p.publisher), "Janus lists the feed: {listed:?}");

    let (_subscriber, mut rtp) = subscribe(&mut teacher, &api, feed).await;
    let (first, _) = within("first RTP packet through Janus", rtp.recv()).await.expect("RTP");
    let mut frames = 0;
    for n in 1..30 {
        let (_, ours) = within(&format!("RTP packet {n}"), rtp.recv()).await.expect("RTP");
        frames += usize::from(ours);
    }
    assert!(frames >= 25, "the publisher's frames arrive intact: {frames} of 29 packets");
    println!(
        "publish -> first RTP at the subscriber: {} ms from SfuJoin, {} ms from the offer \
         (publisher media up after {} ms; subscribe -> first RTP {} ms)",
        first.duration_since(started).as_millis(),
        first.duration_since(offered).as_millis(),
        published.duration_since(offered).as_millis(),
        first.duration_since(published).as_millis(),
    );

    teacher.room.moderate(ada.index, ModAction::Remove, "camera off please").await.expect("moderate");
    let code = ada
        .wait("removed", |e| match e {
            Event::Left { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::Removed);
    assert_eq!(sfu_event(&mut teacher, ada.index, SfuEventKind::Unpublished).await, feed);
    sfu_event(&mut teacher, ada.index, SfuEventKind::Left).await;
    until_janus_lists_nobody(&janus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_media_tears_the_publisher_down_and_a_viewer_may_not_publish() {
    let janus_process = JanusProcess::start();
    let server = server_with(&janus_process).await;
    let janus = Janus::start(JanusConfig::new(janus_process.url()));
    let api = api();
    let mut teacher = Member::join(&server, "teach", "teacher").await;
    let mut ada = Member::join(&server, "ada", "student").await;
    let mut vic = Member::join(&server, "vic", "viewer").await;

    vic.room.sfu_join(true).await.expect("sent");
    let (code, kind) = vic
        .wait("viewer refused", |e| match e {
            Event::Refused { code, kind, .. } => Some((*code, *kind)),
            Event::SfuGrant { .. } => panic!("a viewer was granted publishing"),
            _ => None,
        })
        .await;
    assert_eq!((code, kind), (ErrorCode::Forbidden, Kind::SfuJoin.to_u8()), "SPEC §6.4: 204");
    assert!(!vic.sfu_join(false).await, "a viewer may subscribe, not publish");

    assert!(ada.sfu_join(true).await);
    let (_publisher, _) = publish(&mut ada, &api).await;
    let feed = sfu_event(&mut teacher, ada.index, SfuEventKind::Publishing).await;
    camera(&mut teacher, ada.index, true).await;
    assert_eq!(sfu_event(&mut vic, ada.index, SfuEventKind::Publishing).await, feed);

    teacher.room.moderate(ada.index, ModAction::StopMedia, "").await.expect("moderate");
    assert_eq!(sfu_event(&mut teacher, ada.index, SfuEventKind::Unpublished).await, feed);
    camera(&mut teacher, ada.index, false).await;
    until_janus_lists_nobody(&janus).await;
    // Still in the room: only the camera went.
    ada.room.chat("still here").await.expect("chat");
    ada.wait("own chat echo", |e| matches!(e, Event::Chat { .. }).then_some(())).await;
}

#[tokio::test]
async fn without_an_sfu_signalling_is_refused_as_unavailable() {
    let server = TestServer::start().await;
    let mut ada = Member::join(&server, "ada", "student").await;
    ada.room.sfu_join(true).await.expect("sent");
    let code = ada
        .wait("refused", |e| match e {
            Event::Refused { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::SfuUnavailable);
}

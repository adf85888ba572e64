//! The NATS side of membership: connects, keeps the `easel_nodes` bucket and its watch open,
//! announces this node every heartbeat, feeds what the watch says into
//! [`Membership`](super::members::Membership) and publishes the result to [`Cluster`].
//!
//! Failures never stop the node: an announcement that is not stored, a watch that ends or a
//! dropped connection is counted (`easel_cluster_nats_errors_total`), shown in `/healthz`
//! (`degraded`), and the bucket and its watch are opened again on the next heartbeat, and at
//! once when the connection comes back (a restarted NATS may have lost the bucket: it is kept
//! in memory, as announcements are worth nothing once a time-to-live old).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::members::{Event, Membership};
use super::{BUCKET, Cluster, NodeInfo, Relay, RoomLog, error, log};
use crate::config::ClusterConfig;
use crate::shared::unix_ms;

/// A connection to NATS and the connection events its client reports.
pub(crate) struct Nats {
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    /// Nodes counted out, for the rooms' presence relays.
    gone: broadcast::Sender<Arc<str>>,
}

/// Why the cluster's NATS could not be used at start.
#[derive(Debug, thiserror::Error)]
#[error("cluster: NATS at {url}: {reason}")]
pub struct ConnectError {
    url: String,
    reason: String,
}

/// Connects to NATS and opens the bucket once, failing at once if NATS is not reachable or
/// has no usable JetStream (started without `-js`, or too old for key-value buckets): a node
/// that starts without its cluster would serve rooms the others cannot see, and an operator
/// sees a refusal to start sooner than a log line. Once connected, the client reconnects by
/// itself for ever.
pub(crate) async fn connect(config: &ClusterConfig) -> Result<Nats, ConnectError> {
    let fail = |reason: String| {
        error("connect");
        ConnectError { url: config.nats_url.clone(), reason }
    };
    let addrs = config
        .nats_url
        .split(',')
        .map(|a| a.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("not a NATS URL: {e}")))?;
    let (tx, events) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .name("easel")
        .connection_timeout(Duration::from_secs(3))
        // Back within a fraction of a second of NATS being back (the default doubles to 4 s).
        .reconnect_delay_callback(|attempts| Duration::from_millis(100 * attempts.min(10) as u64))
        .event_callback(move |event| {
            let _ = tx.send(event);
            async {}
        })
        .connect(addrs)
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let js = context(&client, config.heartbeat);
    open(&js, config.node_ttl())
        .await
        .map_err(|e| fail(format!("no usable JetStream key-value bucket {BUCKET}: {e}")))?;
    log::open_stream(&js)
        .await
        .map_err(|e| fail(format!("no usable JetStream stream {}: {e}", log::STREAM)))?;
    Ok(Nats { client, events, gone: broadcast::channel(64).0 })
}

impl Nats {
    /// The room log on this connection; `origin` names this node and its start.
    pub(crate) fn room_log(&self, origin: String) -> RoomLog {
        RoomLog::new(self.client.clone(), origin)
    }

    /// Resume entries on this connection, written by node `node`; they live for `grace`.
    pub(crate) fn resumes(&self, node: String, grace: Duration) -> super::resume::ResumeKv {
        super::resume::ResumeKv::new(self.client.clone(), node, grace)
    }

    /// The presence relay on this connection; `origin` names this node and its start.
    pub(crate) fn relay(&self, origin: String) -> Relay {
        Relay::new(self.client.clone(), origin, self.gone.clone())
    }
}

/// Runs membership until `stop`, then withdraws this node's entry (bounded to a second, so a
/// dead NATS does not hold up shutdown).
pub(crate) async fn run(
    nats: Nats,
    cluster: Arc<Cluster>,
    me: NodeInfo,
    config: ClusterConfig,
    stop: CancellationToken,
) {
    let Nats { client, mut events, gone } = nats;
    let (heartbeat, ttl) = (config.heartbeat, config.node_ttl());
    let js = context(&client, heartbeat);
    let announcement: bytes::Bytes = serde_json::to_vec(&me).unwrap_or_default().into();
    let mut members = Membership::new(me, ttl);
    cluster.set_connected(true);
    cluster.set_nodes(members.nodes());
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            // Retry on the next heartbeat, not in a hot loop while NATS is away (or at once
            // when it is back). The connection's events are followed meanwhile: the watch
            // often ends before the loss is reported, and health must still say it.
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        expire(&mut members, &cluster, &gone);
                        break;
                    }
                    Some(event) = events.recv() => {
                        if connection(&cluster, event) {
                            break;
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
        }
        // A NATS that lost its data lost the stream too: made again with the bucket.
        let reopen = async {
            log::open_stream(&js).await?;
            open(&js, ttl).await
        };
        let opened = tokio::select! {
            opened = reopen => opened,
            () = stop.cancelled() => return,
        };
        let (bucket, mut watch) = match opened {
            Ok(open) => open,
            Err(e) => {
                if cluster.healthy() || cluster.nats_connected() {
                    tracing::warn!("cluster: cannot open the {BUCKET} bucket: {e}");
                }
                error("watch");
                cluster.set_announced(false);
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match bucket.put(members.me().id.as_str(), announcement.clone()).await {
                        Ok(_) => cluster.set_announced(true),
                        Err(e) => {
                            if cluster.healthy() {
                                tracing::warn!("cluster: announcing this node failed: {e}");
                            }
                            error("heartbeat");
                            cluster.set_announced(false);
                            expire(&mut members, &cluster, &gone);
                            break;
                        }
                    }
                    expire(&mut members, &cluster, &gone);
                }
                entry = watch.next() => match entry {
                    Some(Ok(entry)) => {
                        if let Some(event) = apply(&mut members, entry) {
                            log(&event, &gone);
                            cluster.set_nodes(members.nodes());
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!("cluster: watching {BUCKET} failed: {e}");
                        error("watch");
                        break;
                    }
                    None => {
                        tracing::warn!("cluster: the watch of {BUCKET} ended");
                        error("watch");
                        break;
                    }
                },
                Some(event) = events.recv() => {
                    if connection(&cluster, event) {
                        // Back after a loss: NATS may have restarted without the bucket.
                        first = true;
                        break;
                    }
                }
                () = stop.cancelled() => {
                    let id = members.me().id.clone();
                    match tokio::time::timeout(Duration::from_secs(1), bucket.delete(&id)).await {
                        Ok(Ok(())) => tracing::debug!("cluster: withdrew this node"),
                        Ok(Err(e)) => tracing::warn!("cluster: withdrawing this node failed: {e}"),
                        Err(_) => tracing::warn!("cluster: withdrawing this node timed out"),
                    }
                    return;
                }
            }
        }
    }
}

fn context(client: &async_nats::Client, heartbeat: Duration) -> jetstream::Context {
    // An answer later than a heartbeat would be stale anyway; at least 500 ms for slow disks.
    jetstream::context::ContextBuilder::new()
        .timeout(heartbeat.max(Duration::from_millis(500)))
        .build(client.clone())
}

/// Opens the bucket (making it if it is missing) and a watch of every key, starting with the
/// last entry of each.
async fn open(js: &jetstream::Context, ttl: Duration) -> Result<(kv::Store, kv::Watch), String> {
    let bucket = match js.get_key_value(BUCKET).await {
        Ok(bucket) => bucket,
        Err(_) => {
            let config = kv::Config {
                bucket: BUCKET.to_owned(),
                description: "Easel cluster nodes: one entry per node, renewed every heartbeat".into(),
                history: 1,
                // Entries of nodes long dead go; the time-to-live itself is each node's to judge.
                max_age: ttl,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            };
            match js.create_key_value(config).await {
                Ok(bucket) => bucket,
                // Another node made it first.
                Err(e) => js.get_key_value(BUCKET).await.map_err(|_| e.to_string())?,
            }
        }
    };
    let watch = bucket.watch_with_history(">").await.map_err(|e| e.to_string())?;
    Ok((bucket, watch))
}

/// One entry of the bucket into the table; a malformed one is dropped with a log line.
fn apply(members: &mut Membership, entry: kv::Entry) -> Option<Event> {
    match entry.operation {
        kv::Operation::Put => match serde_json::from_slice::<NodeInfo>(&entry.value) {
            Ok(info) if info.id == entry.key => {
                // Entries read before the watch caught up may be old: count from when they were
                // written (the NATS server's clock; the nodes' should agree within a heartbeat).
                let age = if entry.seen_current {
                    Duration::ZERO
                } else {
                    let written =
                        u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                    Duration::from_millis(unix_ms().saturating_sub(written))
                };
                members.heard(Instant::now(), info, age)
            }
            Ok(info) => {
                tracing::warn!(
                    key = entry.key,
                    id = info.id,
                    "cluster: ignoring an entry whose id is not its key"
                );
                error("malformed");
                None
            }
            Err(e) => {
                tracing::warn!(key = entry.key, "cluster: ignoring a malformed entry in {BUCKET}: {e}");
                error("malformed");
                None
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => members.withdrew(&entry.key),
    }
}

fn expire(members: &mut Membership, cluster: &Cluster, counted_out: &broadcast::Sender<Arc<str>>) {
    let gone = members.expire(Instant::now());
    if !gone.is_empty() {
        gone.iter().for_each(|event| log(event, counted_out));
        cluster.set_nodes(members.nodes());
    }
}

/// Follows the connection's state; true when it came back after a loss.
fn connection(cluster: &Cluster, event: async_nats::Event) -> bool {
    match event {
        async_nats::Event::Disconnected => {
            tracing::warn!("cluster: NATS connection lost; reconnecting");
            error("disconnected");
            cluster.set_connected(false);
            false
        }
        async_nats::Event::Connected => {
            let was_down = !cluster.nats_connected();
            if was_down {
                tracing::info!("cluster: NATS connection back");
            }
            cluster.set_connected(true);
            was_down
        }
        other => {
            tracing::debug!("cluster: NATS: {other}");
            false
        }
    }
}

/// Logs a membership change; a node counted out is told to the rooms' relays.
fn log(event: &Event, gone: &broadcast::Sender<Arc<str>>) {
    match event {
        Event::Joined(n) => {
            tracing::info!(
                node = n.id,
                quic = n.quic,
                http = n.http,
                version = n.version,
                "cluster: node joined"
            )
        }
        Event::Left { id, why } => {
            tracing::info!(node = id, ?why, "cluster: node left");
            // No receiver: no room is loaded.
            let _ = gone.send(id.as_str().into());
        }
    }
}

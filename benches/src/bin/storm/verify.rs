//! After the storm: a fresh client joins each room and reads the server's document; every
//! edit a client saw acked must be in it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, bail};
use easel_benches::token;
use easel_client::{Client, Event};
use loro::LoroDoc;

use crate::crowd::Record;

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct Verdict {
    /// Acked edits checked.
    pub(crate) acked: u64,
    /// Acked edits missing from the server's document, as `user:k`.
    pub(crate) lost: Vec<String>,
    /// Rooms read.
    pub(crate) rooms: usize,
}

/// Reads every room the records name from the server at `url` and compares.
pub(crate) async fn check(
    url: &str,
    cert_hash: &str,
    secret: &str,
    records: &[Record],
) -> anyhow::Result<Verdict> {
    let mut by_room: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Some(m) = &r.member {
            by_room.entry(m.room.as_str()).or_default().push(r);
        }
    }
    let mut verdict = Verdict { rooms: by_room.len(), ..Verdict::default() };
    for (room, members) in by_room {
        let doc = read(url, cert_hash, secret, room).await.with_context(|| format!("reading {room}"))?;
        for r in members {
            let Some(m) = &r.member else { continue };
            let have = elements(&doc, &m.list());
            for k in &r.acked {
                verdict.acked += 1;
                if !have.contains(&k.to_string()) {
                    verdict.lost.push(format!("{}:{k}", m.user()));
                }
            }
        }
    }
    Ok(verdict)
}

/// The room's document as the server has it.
async fn read(url: &str, cert_hash: &str, secret: &str, room: &str) -> anyhow::Result<LoroDoc> {
    let client =
        Client::builder(token(secret, room, "storm-checker")?).cert_hash(cert_hash)?.connect(url).await?;
    let board = client.join(room).await?;
    let synced = async {
        while let Some(event) = client.next_event().await {
            if matches!(&event, Event::Synced { room: r } if r == room) {
                return Ok(());
            }
        }
        bail!("the checker's client ended")
    };
    tokio::time::timeout(Duration::from_secs(30), synced).await.context("no snapshot within 30 s")??;
    let doc = board.doc().clone();
    client.close().await;
    Ok(doc)
}

/// The string elements of list `key`.
fn elements(doc: &LoroDoc, key: &str) -> BTreeSet<String> {
    let list = doc.get_list(key);
    (0..list.len())
        .filter_map(|at| list.get(at)?.into_value().ok()?.into_string().ok())
        .map(|s| s.to_string())
        .collect()
}

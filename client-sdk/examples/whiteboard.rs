//! Draw shapes from the command line and watch everyone else's appear.
//!
//! ```text
//! cargo run -p easel-client --example whiteboard -- demo/board "circle 10 20" "rect 0 0 50 80"
//! cargo run -p easel-client --example whiteboard -- demo/board          # just watch
//! ```
//! Environment: `EASEL_TOKEN` (required), `EASEL_URL` (default `easel://127.0.0.1`),
//! `EASEL_CERT_HASH` (a dev server's `/cert-hash`), `EASEL_WATCH_SECS` (default 30).
//! The board is a Loro list `shapes` of strings; every shape is one op, acked once durable.

use std::time::Duration;

use anyhow::Context as _;
use easel_client::{Client, Event, Room};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let room_id = args.next().context("usage: whiteboard ROOM [SHAPE...]")?;
    let shapes: Vec<String> = args.collect();
    let url = std::env::var("EASEL_URL").unwrap_or_else(|_| "easel://127.0.0.1".into());
    let token = std::env::var("EASEL_TOKEN").context("set EASEL_TOKEN (see `easel token --help`)")?;
    let watch: u64 = std::env::var("EASEL_WATCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);

    let mut builder = Client::builder(token);
    if let Ok(hash) = std::env::var("EASEL_CERT_HASH") {
        builder = builder.cert_hash(&hash)?;
    }
    let client = builder.connect(&url).await?;
    let room = client.join(&room_id).await?;
    for shape in &shapes {
        room.edit(|doc| doc.get_list("shapes").push(shape.as_str()))?;
    }
    let mut unacked = shapes.len();
    let run = async {
        while let Some(event) = client.next_event().await {
            match event {
                Event::Connected { transport, resumed } => {
                    println!("connected over {transport:?} (resumed: {resumed})")
                }
                Event::Synced { .. } | Event::RemoteUpdate { .. } => print_board(&room),
                Event::Acked { op_ids, .. } => {
                    unacked = unacked.saturating_sub(op_ids.len());
                    if unacked == 0 && !shapes.is_empty() {
                        println!("all {} shapes are durable on the server", shapes.len());
                        print_board(&room);
                    }
                }
                Event::Rejected { op_id, code, message, .. } => {
                    println!("op {op_id} refused: {code} {message}")
                }
                Event::Disconnected { reason, retry_in, .. } => {
                    println!("disconnected ({reason}); retrying in {retry_in:?}")
                }
                Event::Error { code, message, .. } => println!("error {code}: {message}"),
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(watch), run).await;
    client.close().await;
    Ok(())
}

fn print_board(room: &Room) {
    let list = room.doc().get_list("shapes");
    println!("board {} has {} shapes:", room.id(), list.len());
    for value in list.to_vec() {
        match value.into_string() {
            Ok(shape) => println!("  {}", &*shape),
            Err(other) => println!("  {other:?}"),
        }
    }
}

//! Edit while the server is down; the edit is kept on disk and synced when the server returns,
//! even across a restart of this program.
//!
//! ```text
//! # server stopped:
//! cargo run -p easel-client --example offline -- demo/board "note written on the train"
//! #   → "server unreachable: the edit is stored in easel-offline.redb"
//! cargo run --release -p easel-server &
//! cargo run -p easel-client --example offline -- demo/board
//! #   → "synced 1 stored edit(s)"
//! ```
//! Environment as for the `whiteboard` example; `EASEL_OFFLINE_STORE` sets the store path
//! (default `easel-offline.redb`).

use std::time::Duration;

use anyhow::Context as _;
use easel_client::{Client, Event};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let room_id = args.next().context("usage: offline ROOM [TEXT]")?;
    let text = args.next();
    let url = std::env::var("EASEL_URL").unwrap_or_else(|_| "easel://127.0.0.1".into());
    let token = std::env::var("EASEL_TOKEN").context("set EASEL_TOKEN (see `easel token --help`)")?;
    let store = std::env::var("EASEL_OFFLINE_STORE").unwrap_or_else(|_| "easel-offline.redb".into());

    let mut builder = Client::builder(token).offline_store(&store).attempt_timeout(Duration::from_secs(2));
    if let Ok(hash) = std::env::var("EASEL_CERT_HASH") {
        builder = builder.cert_hash(&hash)?;
    }
    // `spawn` does not wait for the server: the app works offline from the first second.
    let client = builder.spawn(&url)?;
    let room = client.join(&room_id).await?;
    if let Some(text) = &text {
        room.edit(|doc| doc.get_list("notes").push(text.as_str()))?;
    }
    println!("local board: {}", notes(&room));

    let mut acked = 0;
    let sync = async {
        while let Some(event) = client.next_event().await {
            match event {
                Event::Joined { .. } if acked == 0 => println!("connected; sending stored edits"),
                Event::Acked { op_ids, .. } => {
                    acked += op_ids.len();
                    println!("synced {acked} stored edit(s)");
                }
                Event::Synced { .. } => println!("board now: {}", notes(&room)),
                _ => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), sync).await.is_err() && acked == 0 {
        println!("server unreachable: the edit is stored in {store} and will be sent next time");
    }
    client.close().await;
    Ok(())
}

fn notes(room: &easel_client::Room) -> String {
    let notes: Vec<String> = room
        .doc()
        .get_list("notes")
        .to_vec()
        .into_iter()
        .map(|v| v.into_string().map_or_else(|v| format!("{v:?}"), |s| format!("{:?}", &*s)))
        .collect();
    format!("[{}]", notes.join(", "))
}

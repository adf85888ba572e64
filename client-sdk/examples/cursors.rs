//! Two clients in one room: `ada` draws a circle with her cursor, `bob` prints where he sees it.
//!
//! ```text
//! cargo run --release -p easel-server &                        # a dev server on loopback
//! export EASEL_TOKEN=$(cargo run -q -p easel-server -- token --room 'demo/*' --user ada --role student)
//! export EASEL_CERT_HASH=$(curl -s http://127.0.0.1:8080/cert-hash)
//! cargo run -p easel-client --example cursors                  # EASEL_URL defaults to easel://127.0.0.1
//! ```
//! Runs for five seconds. Without `EASEL_CERT_HASH` the QUIC attempt fails verification and
//! the client falls back to WebSocket, which it reports.

use std::time::Duration;

use anyhow::Context as _;
use easel_client::{Client, Event};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("EASEL_URL").unwrap_or_else(|_| "easel://127.0.0.1".into());
    let token = std::env::var("EASEL_TOKEN").context("set EASEL_TOKEN (see `easel token --help`)")?;
    let connect = |name: &'static str| {
        let mut builder = Client::builder(token.clone()).name(name);
        if let Ok(hash) = std::env::var("EASEL_CERT_HASH") {
            builder = builder.cert_hash(&hash).map_err(anyhow::Error::from)?;
        }
        Ok::<_, anyhow::Error>(builder.connect(&url))
    };
    let ada = connect("ada")?.await.context("ada connects")?;
    let bob = connect("bob")?.await.context("bob connects")?;
    let board = ada.join("demo/cursors").await?;
    bob.join("demo/cursors").await?;

    let draw = tokio::spawn(async move {
        for step in 0..300u32 {
            let angle = f64::from(step) / 30.0;
            board.cursor(400.0 + 100.0 * angle.cos(), 300.0 + 100.0 * angle.sin());
            tokio::time::sleep(Duration::from_millis(16)).await;
        }
    });
    let watch = async {
        while let Some(event) = bob.next_event().await {
            match event {
                Event::Connected { transport, .. } => println!("bob connected over {transport:?}"),
                Event::Cursors { cursors, .. } => {
                    for c in cursors {
                        println!("bob sees #{} at ({:7.1}, {:7.1})", c.participant, c.x, c.y);
                    }
                }
                Event::ParticipantJoined { participant, .. } => println!("{} joined", participant.name),
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), watch).await;
    draw.abort();
    ada.close().await;
    bob.close().await;
    Ok(())
}

//! A class in one process: a teacher and two students chat, answer a poll, raise hands, and
//! the teacher makes a student read-only, then removes them.
//!
//! ```text
//! cargo run --release -p easel-server &
//! export EASEL_DATA_DIR=./easel-data                      # where the dev server keeps its secret
//! cargo run -p easel-client --example classroom
//! ```
//! Tokens are minted with `easel token` for the room `demo/class/*` (the binary must be built:
//! `cargo build -p easel-server`), or set `EASEL_TEACHER_TOKEN`, `EASEL_ADA_TOKEN` and
//! `EASEL_BOB_TOKEN`. `EASEL_URL` (default `easel://127.0.0.1`) and `EASEL_CERT_HASH` as for
//! the other examples.

use std::time::Duration;

use anyhow::Context as _;
use easel_client::{Client, Event, ModAction, Poll};

const ROOM: &str = "demo/class/monday";

fn token(user: &str, role: &str) -> anyhow::Result<String> {
    if let Ok(t) = std::env::var(format!("EASEL_{}_TOKEN", user.to_uppercase())) {
        return Ok(t);
    }
    let out = std::process::Command::new("target/debug/easel")
        .args(["token", "--room", "demo/class/*", "--user", user, "--role", role])
        .output()
        .context("running target/debug/easel token (build it, or set the EASEL_*_TOKEN variables)")?;
    anyhow::ensure!(out.status.success(), "easel token: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

async fn connect(user: &str, role: &str) -> anyhow::Result<Client> {
    let url = std::env::var("EASEL_URL").unwrap_or_else(|_| "easel://127.0.0.1".into());
    let mut builder = Client::builder(token(user, role)?).name(user);
    if let Ok(hash) = std::env::var("EASEL_CERT_HASH") {
        builder = builder.cert_hash(&hash)?;
    }
    Ok(builder.connect(&url).await?)
}

/// Prints `client`'s classroom events for a moment.
async fn show(who: &str, client: &Client) {
    let _ = tokio::time::timeout(Duration::from_millis(300), async {
        while let Some(event) = client.next_event().await {
            match event {
                Event::Chat { message, .. } => {
                    println!("[{who}] chat #{} {}: {}", message.id, message.name, message.text)
                }
                Event::PollStarted { poll, .. } => {
                    println!("[{who}] poll {}: {} {:?}", poll.poll_id, poll.question, poll.options)
                }
                Event::PollResults { results, .. } => {
                    println!("[{who}] results {:?} (closed: {})", results.counts, results.closed)
                }
                Event::HandQueue { queue, .. } => println!("[{who}] hands: {queue:?}"),
                Event::Moderated { target, action, reason, .. } => {
                    println!("[{who}] #{target} {action:?}: {reason}")
                }
                Event::Rejected { code, .. } => println!("[{who}] edit refused: {code}"),
                Event::Refused { code, message, .. } => println!("[{who}] refused: {code} {message}"),
                Event::Left { code, .. } => println!("[{who}] out of the room: {code}"),
                _ => {}
            }
        }
    })
    .await;
}

/// Waits (at most 2 s) for the first event of `client` that `want` accepts.
async fn until<T>(client: &Client, mut want: impl FnMut(Event) -> Option<T>) -> anyhow::Result<T> {
    let found = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(event) = client.next_event().await {
            if let Some(t) = want(event) {
                return Some(t);
            }
        }
        None
    });
    found.await.ok().flatten().context("the expected event did not come")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let teacher = connect("teacher", "teacher").await?;
    let ada = connect("ada", "student").await?;
    let bob = connect("bob", "student").await?;
    let t = teacher.join(ROOM).await?;
    let a = ada.join(ROOM).await?;
    let b = bob.join(ROOM).await?;
    let bob_index = until(&bob, |e| match e {
        Event::Joined { participant, .. } => Some(participant),
        _ => None,
    })
    .await?;

    a.chat("Good morning!").await?;
    let poll = Poll {
        question: "Ready for the quiz?".into(),
        options: vec!["yes".into(), "no".into()],
        multiple: false,
        duration: Some(Duration::from_secs(60)),
        live: true,
    };
    t.start_poll(poll).await?;
    let poll_id = until(&ada, |e| match e {
        Event::PollStarted { poll, .. } => Some(poll.poll_id),
        _ => None,
    })
    .await?;
    a.answer_poll(poll_id, &[0]).await?;
    b.answer_poll(poll_id, &[1]).await?;
    b.raise_hand().await?;
    show("teacher", &teacher).await;
    t.close_poll(poll_id).await?;
    show("ada", &ada).await;

    t.moderate(bob_index, ModAction::ReadOnly, "listen for a minute").await?;
    b.edit(|doc| doc.get_list("shapes").push("bob's doodle"))?;
    show("bob", &bob).await;
    t.moderate(bob_index, ModAction::Remove, "see you next week").await?;
    show("bob", &bob).await;
    for c in [teacher, ada, bob] {
        c.close().await;
    }
    Ok(())
}

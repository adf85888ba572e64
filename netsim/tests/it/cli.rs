//! The `netsim` binary: lists scenarios, rejects bad ones, prints a ready line and proxies.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use crate::within;

const NETSIM: &str = env!("CARGO_BIN_EXE_netsim");

#[test]
fn scenarios_lists_every_builtin_with_a_description() {
    let output = Command::new(NETSIM).arg("scenarios").output().expect("runs");
    assert!(output.status.success());
    let listing = String::from_utf8(output.stdout).expect("utf-8");
    for (name, _) in easel_netsim::scenario::BUILTINS {
        let line = listing.lines().find(|l| l.split_whitespace().next() == Some(name)).expect("listed");
        assert!(line.len() > name.len() + 10, "{line:?} describes {name}");
    }
}

#[test]
fn an_unknown_scenario_is_an_error_that_names_the_builtins() {
    let output = Command::new(NETSIM)
        .args(["run", "--scenario", "moon-base", "--udp", "127.0.0.1:0=127.0.0.1:9"])
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("moon-base") && stderr.contains("lossy-2pct"), "{stderr}");
}

#[test]
fn bench_refuses_unknown_transports_and_missing_binaries_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("out.json");
    let run = |extra: &[&str]| {
        let output = Command::new(NETSIM)
            .args(["bench", "--scenario", "loopback", "--clients", "2", "--json"])
            .arg(&json)
            .args(extra)
            .output()
            .expect("runs");
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = run(&["--transports", "quic,pigeon", "--server", "/bin/true", "--load", "/bin/true"]);
    assert!(stderr.contains("pigeon"), "{stderr}");
    let stderr = run(&["--server", "/nonexistent/easel", "--load", "/bin/true"]);
    assert!(stderr.contains("/nonexistent/easel"), "{stderr}");
    assert!(!json.exists(), "no report for a run that did not happen");
}

#[tokio::test]
async fn run_prints_a_ready_line_and_proxies_udp() {
    let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let echo_addr = echo.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((len, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..len], from).await;
        }
    });
    let mut child = Command::new(NETSIM)
        .args(["run", "--scenario", "lan", "--seed", "9", "--udp", &format!("127.0.0.1:0={echo_addr}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = within(
        "ready line",
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).expect("read");
            line
        }),
    )
    .await
    .expect("reader");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(
        (ready["event"].as_str(), ready["scenario"].as_str(), ready["seed"].as_u64()),
        (Some("ready"), Some("lan"), Some(9))
    );
    assert_eq!(ready["udp"][0]["upstream"], echo_addr.to_string());
    let listen: std::net::SocketAddr =
        ready["udp"][0]["listen"].as_str().expect("listen").parse().expect("addr");

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    client.send_to(b"ping", listen).await.expect("send");
    let mut buf = [0u8; 8];
    let (len, _) = within("echo through netsim", client.recv_from(&mut buf)).await.expect("recv");
    assert_eq!(&buf[..len], b"ping");
    child.kill().expect("kill");
    child.wait().expect("reaped");
}

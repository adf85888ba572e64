//! `easel-storm` small: 40 SDK clients in 2 rooms lose their connections at once — the
//! server restarted under them, or every packet dropped by a netsim proxy for longer than
//! their idle timeout — and every one must come back, none may give up, and every edit a
//! client saw acked must be in the server's document afterwards. (Small because the server,
//! the proxy and the clients run as debug builds on a busy 2-core machine.)

use std::time::Duration;

use serde_json::Value;

const CLIENTS: u64 = 40;

/// Runs the storm tool with `args` and returns its report, whatever its exit status.
async fn storm(args: &[&str]) -> (bool, Value) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel-storm"))
        .args(["--clients", &CLIENTS.to_string(), "--rooms", "2", "--edit-every-ms", "1000"])
        .args(["--cursor-hz", "2", "--steady", "1", "--deadline", "90", "--backoff-max-ms", "1000"])
        .args(args)
        .kill_on_drop(true)
        .output();
    // The tool stops itself at its deadline; this bound is for a tool that hangs anyway.
    let out = tokio::time::timeout(Duration::from_secs(150), run).await.expect("bounded").expect("runs");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

fn assert_everyone_back(ok: bool, report: &Value) {
    assert_eq!(report["joined"], CLIENTS, "{report:#}");
    assert_eq!(report["missing"]["count"], 0, "everyone is back: {report:#}");
    assert_eq!(report["back"], CLIENTS, "{report:#}");
    assert_eq!(report["gave_up"]["count"], 0, "nobody gave up: {report:#}");
    assert_eq!(report["time_to_back"]["samples"], CLIENTS);
    assert!(report["all_back_ms"].as_f64().is_some(), "{report:#}");
    assert!(report["edits"]["acked"].as_u64() > Some(CLIENTS), "each editor's probe and more were acked");
    assert_eq!(report["edits"]["rooms_checked"], 2);
    assert_eq!(report["edits"]["lost"], 0, "no acked edit is lost: {report:#}");
    assert!(ok, "the tool's verdict agrees");
}

#[tokio::test]
async fn a_crowd_comes_back_after_a_server_restart_by_rejoining() {
    let (ok, report) = storm(&["--cut", "restart"]).await;
    assert_everyone_back(ok, &report);
    assert_eq!(report["rejoined"], CLIENTS, "a restarted server cannot resume: {report:#}");
    assert_eq!(report["resumed"], 0);
}

#[tokio::test]
async fn a_crowd_in_two_processes_comes_back_after_a_network_cut_by_resuming() {
    // A 3 s idle timeout and a 4 s cut: connections die, well inside the resume grace window.
    // (A client starved of CPU across the whole cut may find its connection alive after it.)
    // The clients in two processes, the proxy in a third: their records come back merged.
    let netsim = ["--cut", "netsim", "--cut-for", "4", "--idle-timeout-ms", "3000", "--processes", "2"];
    let (ok, report) = storm(&netsim).await;
    assert_everyone_back(ok, &report);
    assert_eq!(report["generator"]["processes"], 2);
    let cpu = report["generator"]["client_cpu_percent_recovery"].as_array().expect("per process");
    assert_eq!(cpu.len(), 2, "{report:#}");
    assert!(report["proxy"]["dropped_while_cut"].as_u64() > Some(0), "the proxy cut: {report:#}");
    let (resumed, survived) = (report["resumed"].as_u64().unwrap(), report["survived"].as_u64().unwrap());
    assert_eq!(resumed + survived, CLIENTS, "every lost session resumed: {report:#}");
    assert!(resumed > 0, "the cut killed connections: {report:#}");
    assert_eq!(report["rejoined"], 0, "no place was lost: {report:#}");
}

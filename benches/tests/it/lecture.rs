//! `easel-load --scenario lecture` against a real in-process server: a small lecture in two
//! generator processes, everyone joined and the chat, poll and hands seen end to end.

use std::time::Duration;

use crate::harness::{SECRET, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_lecture_joins_everyone_and_sees_chat_poll_and_hands() {
    let server = TestServer::start().await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_easel-load"))
        .args(["--scenario", "lecture", "--clients", "20", "--observers", "2", "--processes", "2"])
        .args(["--warmup", "1", "--duration", "3", "--hands", "3", "--chat-every-ms", "500"])
        .args(["--url", &format!("easel+quic://{}", server.server.quic_addr())])
        .args(["--cert-hash", server.server.cert_hash(), "--jwt-secret", SECRET])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run).await.expect("bounded").expect("runs");
    assert!(out.status.success(), "easel-load failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");

    assert_eq!(report["connected"], 20, "{report:#}");
    assert_eq!(report["connect_failures"], 0);
    assert_eq!(report["generator"]["processes"], 2);
    assert_eq!(report["join"]["to_synced"]["samples"], 20, "every viewer's join was timed");
    assert!(report["teacher_cursor"]["delivered"].as_u64() > Some(0), "the teacher's cursor reached viewers");
    assert!(report["teacher_edits"]["delivery"]["samples"].as_u64() > Some(0), "the drawing reached viewers");
    // One message every 500 ms of the window (how many fit depends on the machine's pace),
    // each seen by 20 viewers and the teacher.
    let sent = report["chat"]["sent"].as_u64().expect("a count");
    assert!(sent >= 1, "{report:#}");
    assert_eq!(report["chat"]["latency"]["samples"], sent * 21);
    assert_eq!(report["poll"]["open_to_seen"]["samples"], 20);
    assert_eq!(report["poll"]["answers"], 20);
    assert_eq!(report["poll"]["respondents_seen_by_teacher"], 20.0);
    assert_eq!(report["poll"]["answer_to_results_at_teacher"]["samples"], 20);
    assert_eq!(report["hand"]["raised"], 3);
    assert_eq!(report["hand"]["latency"]["samples"], 3);
    assert_eq!(report["closes"], serde_json::json!({}));
    assert_eq!(report["forced_leaves"], serde_json::json!({}));
}

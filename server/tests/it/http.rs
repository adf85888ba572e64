//! The HTTP side (health, certificate hash; metrics in `metrics.rs`) and the `easel token`
//! command.

use easel_server::auth::Verifier;

use crate::harness::{SECRET, TestServer, http_get, now_secs};

#[tokio::test]
async fn health_and_cert_hash() {
    let server = TestServer::start().await;
    let http = server.server.http_addr();
    assert_eq!(http_get(http, "/healthz").await, (200, "ok\n".to_owned()));
    let (status, hash) = http_get(http, "/cert-hash").await;
    assert_eq!(status, 200);
    assert_eq!(hash, server.server.cert_hash());
    assert_eq!(hash.len(), 64, "sha-256 as hex");
    server.server.shutdown().await;
}

#[test]
fn token_command_signs_with_the_server_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["token", "--room", "uni/math/*", "--user", "ada", "--role", "teacher", "--ttl", "1h"])
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .env("EASEL_JWT_SECRET", SECRET)
        .output()
        .expect("run easel token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let claims = Verifier::new(SECRET.as_bytes(), None)
        .expect("verifier")
        .verify(token.trim(), now_secs())
        .expect("valid");
    assert_eq!((claims.sub.as_str(), claims.role.as_str()), ("ada", "teacher"));
    assert!(claims.grants("uni/math/monday"));
    assert!((3590..=3600).contains(&(claims.exp - now_secs())));

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["token", "--room", "r", "--user", "u", "--role", "admin"])
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .env("EASEL_JWT_SECRET", SECRET)
        .output()
        .expect("run easel token");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--role"));
}

#[test]
fn non_loopback_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
        .args(["--data-dir", dir.path().to_str().expect("utf-8")])
        .args(["--wt-addr", "0.0.0.0:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env_remove("EASEL_JWT_SECRET")
        .output()
        .expect("run easel");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("non-loopback") && stderr.contains("EASEL_JWT_SECRET"), "{stderr}");
}

#[test]
fn an_out_of_range_flag_is_refused_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (flag, value) in [("--max-frame", "1"), ("--outbound-queue", "8"), ("--tick-hz", "0")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_easel"))
            .args(["--data-dir", dir.path().to_str().expect("utf-8")])
            .args(["--wt-addr", "127.0.0.1:0", "--quic-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args([flag, value])
            .env("EASEL_JWT_SECRET", SECRET)
            .output()
            .expect("run easel");
        assert_eq!(out.status.code(), Some(2), "{flag} {value} is a usage error");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{flag} {value}")) && stderr.contains("out of range"), "{stderr}");
        assert!(out.stdout.is_empty(), "nothing was served: {}", String::from_utf8_lossy(&out.stdout));
    }
}

//! `easel`: runs the server (default), mints a token with the server's secret, prints a room's
//! attendance, or revokes tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser as _};
use easel_server::auth::{self, Claims, Issuer, SecretSource};
use easel_server::cli::{Action, AttendanceArgs, Cli, RevokeArgs, Serve, Token};
use easel_server::{Server, ServerConfig, telemetry};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.action {
        Some(Action::Token(token)) => mint(&token),
        Some(Action::Serve(serve)) => run(*serve),
        Some(Action::Attendance(args)) => attendance(&args),
        Some(Action::Revoke(args)) => revoke(&args),
        None => run(cli.serve),
    }
}

fn run(flags: Serve) -> anyhow::Result<()> {
    // An out-of-range flag is a usage error, reported like clap's own (exit status 2).
    let config = flags
        .to_config()
        .unwrap_or_else(|e| Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit());
    telemetry::init_logging(flags.log_format);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let server = Server::start(config.clone()).await.context("easel cannot start")?;
    if server.secret_source() == SecretSource::DevFile {
        tracing::warn!(
            file = %config.data_dir.join(auth::DEV_SECRET_FILE).display(),
            "dev mode: no --jwt-secret given, using a generated secret kept in the data dir (loopback only)"
        );
    }
    tracing::info!(
        wt = %server.wt_addr(),
        quic = %server.quic_addr(),
        http = %server.http_addr(),
        cert_sha256 = server.cert_hash(),
        data_dir = %config.data_dir.display(),
        "easel listening"
    );
    // One machine-readable line on stdout for scripts and tests (ports may have been 0).
    println!(
        "{}",
        serde_json::json!({
            "event": "ready",
            "wt": server.wt_addr().to_string(),
            "quic": server.quic_addr().to_string(),
            "http": server.http_addr().to_string(),
            "cert_sha256": server.cert_hash(),
        })
    );
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn attendance(args: &AttendanceArgs) -> anyhow::Result<()> {
    easel_proto::room::validate_id(&args.room).map_err(|e| anyhow::anyhow!("--room {:?}: {e}", args.room))?;
    let store = easel_server::store::Store::open(&args.data_dir).with_context(|| {
        format!(
            "opening {} (if the server is running, ask it: GET /rooms/{}/attendance?format=csv with a teacher token)",
            args.data_dir.display(),
            args.room
        )
    })?;
    let records = store.load_side(&args.room)?;
    store.close();
    let attendance = easel_server::class::attendance_of(records)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?.as_millis() as u64;
    print!("{}", easel_server::http::attendance_csv(&args.room, &attendance, now));
    Ok(())
}

fn mint(token: &Token) -> anyhow::Result<()> {
    let (secret, _) = auth::resolve_secret(token.common.jwt_secret.as_deref(), &token.common.data_dir, true)?;
    if auth::parse_role(&token.role).is_none() {
        anyhow::bail!("--role must be teacher, student or viewer, not {:?}", token.role);
    }
    easel_proto::room::validate_pattern(&token.room)
        .map_err(|e| anyhow::anyhow!("--room {:?}: {e}", token.room))?;
    let ttl = auth::parse_ttl(&token.ttl)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?.as_secs();
    let claims = Claims {
        iat: Some(now),
        name: token.name.clone(),
        iss: token.common.jwt_issuer.clone(),
        aud: token.common.jwt_audience.clone(),
        ..Claims::new(&token.user, &token.room, &token.role, now + ttl.as_secs())
    };
    println!("{}", Issuer::hs256(&secret).mint(&claims)?);
    Ok(())
}

fn revoke(args: &RevokeArgs) -> anyhow::Result<()> {
    use easel_server::revoke::{Revocation, Revocations};
    let what = match (&args.user, &args.token_id) {
        (Some(user), None) => Revocation::User(user.clone()),
        (None, Some(id)) => Revocation::TokenId(id.clone()),
        _ => anyhow::bail!("give exactly one of --user and --token-id"),
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    match (&args.server, &args.data_dir) {
        (Some(server), None) => {
            let token = args
                .admin_token
                .as_deref()
                .context("--admin-token (or EASEL_ADMIN_TOKEN) is needed with --server")?;
            let body = match &what {
                Revocation::User(user) => serde_json::json!({ "user": user }),
                Revocation::TokenId(id) => serde_json::json!({ "token_id": id }),
            };
            let (status, answer) =
                runtime.block_on(post(*server, "/admin/revoke", token, &body.to_string()))?;
            anyhow::ensure!(status == 200, "the server answered {status}: {}", answer.trim());
            println!("{}", answer.trim());
        }
        (None, Some(dir)) => {
            let store = easel_server::store::Store::open(dir).with_context(|| {
                format!(
                    "opening {} (if the server is running, use --server with its admin token)",
                    dir.display()
                )
            })?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).context("clock before 1970")?.as_secs();
            let revoked = Revocations::load(&store)?;
            runtime.block_on(revoked.revoke(&store, what.clone(), now))?;
            store.close();
            println!("{}", serde_json::json!({ "revoked": what, "at": now }));
        }
        _ => anyhow::bail!("give --server ADDR (a running server) or --data-dir DIR (a stopped one)"),
    }
    Ok(())
}

/// One HTTP/1.0 POST of JSON with a bearer token; the status and the body of the answer.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp =
        tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await?;
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status line")?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

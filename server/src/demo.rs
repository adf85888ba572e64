//! The demo whiteboard and the browser SDK on the HTTP port: the built files of
//! `client-sdk/web/dist/` (committed, rebuilt by `scripts/build-web.sh`) embedded in the binary,
//! so `cargo run --release -p easel-server` serves a page at `/` with no other step; and, in dev
//! mode only (no configured secret, loopback), `GET /demo-token` minting a token for the page.
//! A browser that accepts gzip gets the larger files gzipped (loro's wasm: 3.6 MB, 1.2 MB
//! gzipped), compressed once on first request.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{self, Claims, Issuer};
use crate::shared::Shared;

/// One embedded file: its URL path, content type and bytes.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Served at this path.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../client-sdk/web/dist/", $file)),
        }
    };
}

/// The page, the SDK module, loro-crdt's module and both wasm files.
pub const ASSETS: [Asset; 6] = [
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/demo.js", "demo.js", "text/javascript; charset=utf-8"),
    asset!("/easel.js", "easel.js", "text/javascript; charset=utf-8"),
    asset!("/loro.js", "loro.js", "text/javascript; charset=utf-8"),
    asset!("/easel_web_bg.wasm", "easel_web_bg.wasm", "application/wasm"),
    asset!("/loro_wasm_bg.wasm", "loro_wasm_bg.wasm", "application/wasm"),
];

/// Smaller files go out as they are: gzip's framing would eat what it saves.
const GZIP_OVER: usize = 1024;

/// Each asset gzipped, made on its first request by a client that accepts it.
/// `None` if it could not be compressed (then it goes out as it is).
static GZIPPED: [OnceLock<Option<Vec<u8>>>; ASSETS.len()] = [const { OnceLock::new() }; ASSETS.len()];

/// How long a demo token lasts (the page asks again on reconnect and before expiry).
const DEMO_TOKEN_SECS: u64 = 3600;

/// The routes: every asset, and `/demo-token` when the secret is the generated dev secret.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> axum::Router<S> {
    let mut router = axum::Router::new();
    for (index, asset) in ASSETS.into_iter().enumerate() {
        router = router.route(
            asset.path,
            axum::routing::get(move |headers: HeaderMap| async move { serve(index, asset, &headers).await }),
        );
    }
    // A configured secret means production: this route must not exist there.
    if shared.config.jwt_secret.is_none() {
        router = router.route("/demo-token", axum::routing::get(demo_token).with_state(shared));
    }
    router
}

async fn serve(index: usize, asset: Asset, request: &HeaderMap) -> Response {
    let headers = [
        (header::CONTENT_TYPE, asset.content_type),
        (header::CACHE_CONTROL, "no-cache"),
        (header::VARY, "accept-encoding"),
    ];
    if asset.bytes.len() <= GZIP_OVER || !accepts_gzip(request) {
        return (headers, asset.bytes).into_response();
    }
    let cell = &GZIPPED[index];
    let gzipped = match cell.get() {
        Some(bytes) => bytes,
        // Compressing 3.6 MB takes a while: not on a runtime thread.
        None => {
            match tokio::task::spawn_blocking(move || cell.get_or_init(|| gzip(asset.bytes).ok())).await {
                Ok(bytes) => bytes,
                Err(_) => &None,
            }
        }
    };
    match gzipped {
        Some(gzipped) => (headers, [(header::CONTENT_ENCODING, "gzip")], gzipped.as_slice()).into_response(),
        None => (headers, asset.bytes).into_response(),
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts
                .any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// `GET /demo-token?room=demo/board&user=ada&role=teacher[&name=Ada]`: a dev-mode token.
async fn demo_token(State(shared): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (room, user, role) = (get("room"), get("user"), get("role"));
    if let Err(e) = easel_proto::room::validate_pattern(room) {
        return (StatusCode::BAD_REQUEST, format!("room: {e}\n")).into_response();
    }
    if user.is_empty() || user.len() > 64 {
        return (StatusCode::BAD_REQUEST, "user: 1 to 64 bytes\n").into_response();
    }
    if auth::parse_role(role).is_none() {
        return (StatusCode::BAD_REQUEST, "role: teacher, student or viewer\n").into_response();
    }
    // The dev secret lives in the data dir (generated at start); read it as `easel token` does.
    let secret = match auth::resolve_secret(None, &shared.config.data_dir, true) {
        Ok((secret, _)) => secret,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = Claims {
        iat: Some(now),
        name: q.get("name").cloned(),
        iss: shared.config.jwt_issuer.clone(),
        aud: shared.config.jwt_audience.clone(),
        ..Claims::new(user, room, role, now + DEMO_TOKEN_SECS)
    };
    match Issuer::hs256(&secret).mint(&claims) {
        Ok(token) => ([(header::CONTENT_TYPE, "text/plain")], token).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().expect("header"));
        headers
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        assert!(accepts_gzip(&with("gzip, deflate, br, zstd")));
        assert!(accepts_gzip(&with("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0, br")));
        assert!(!accepts_gzip(&with("br, identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}

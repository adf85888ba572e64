//! The demo whiteboard and the browser SDK on the HTTP port: the built files of
//! `client-sdk/web/dist/` (committed, rebuilt by `scripts/build-web.sh`) embedded in the binary,
//! so `cargo run --release -p easel-server` serves a page at `/` with no other step; and, in dev
//! mode only (no configured secret, loopback), `GET /demo-token` minting a token for the page.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
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

/// How long a demo token lasts (the page asks again on reconnect and before expiry).
const DEMO_TOKEN_SECS: u64 = 3600;

/// The routes: every asset, and `/demo-token` when the secret is the generated dev secret.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> axum::Router<S> {
    let mut router = axum::Router::new();
    for asset in ASSETS {
        router = router.route(asset.path, axum::routing::get(move || async move { serve(asset) }));
    }
    // A configured secret means production: this route must not exist there.
    if shared.config.jwt_secret.is_none() {
        router = router.route("/demo-token", axum::routing::get(demo_token).with_state(shared));
    }
    router
}

fn serve(asset: Asset) -> Response {
    ([(header::CONTENT_TYPE, asset.content_type), (header::CACHE_CONTROL, "no-cache")], asset.bytes)
        .into_response()
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

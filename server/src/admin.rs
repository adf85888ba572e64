//! The admin endpoints on the HTTP port, behind the operator's bearer token (`--admin-token`;
//! unset, they answer 404): `POST /admin/revoke` with `{"user": …}` or `{"token_id": …}`
//! revokes tokens (SPEC §5.3) and `GET /admin/revocations` lists what is revoked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::revoke::Revocation;
use crate::shared::Shared;

/// The admin routes, on the server's shared state.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/admin/revoke", axum::routing::post(revoke))
        .route("/admin/revocations", axum::routing::get(revocations))
        .with_state(shared)
}

/// The body of `POST /admin/revoke`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    user: Option<String>,
    token_id: Option<String>,
}

async fn revoke(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    let what = match serde_json::from_slice::<RevokeBody>(&body) {
        Ok(RevokeBody { user: Some(user), token_id: None }) if !user.is_empty() => Revocation::User(user),
        Ok(RevokeBody { user: None, token_id: Some(id) }) if !id.is_empty() => Revocation::TokenId(id),
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "give exactly one of \"user\" and \"token_id\", not empty",
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    match shared.verifier.revocations().revoke(&shared.store, what.clone(), now).await {
        Ok(()) => axum::Json(serde_json::json!({ "revoked": what, "at": now })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &format!("not stored, nothing revoked: {e}")),
    }
}

async fn revocations(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&shared, &headers) {
        return refused;
    }
    let list: Vec<serde_json::Value> = shared
        .verifier
        .revocations()
        .list()
        .into_iter()
        .map(|(what, at)| serde_json::json!({ "revoked": what, "at": at }))
        .collect();
    axum::Json(serde_json::json!({ "revocations": list })).into_response()
}

/// The answer to a request without the configured bearer token, if it lacks it (compared
/// as digests, so the comparison's time says nothing about the token).
fn refusal(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &shared.config.admin_token else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "admin endpoints are off: start the server with --admin-token",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    (Sha256::digest(given.as_bytes()) != Sha256::digest(expected.as_bytes()))
        .then(|| error(StatusCode::UNAUTHORIZED, "a valid admin bearer token is needed"))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

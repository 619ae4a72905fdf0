//! The CSRF token of the caller's browser session, for scripts of this server's pages that
//! cannot rely on the Origin header (see src/http/csrf.rs).

use crate::domain::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::saml::session_cookie_in;
use crate::http::ApiState;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct CsrfToken {
    /// The header to send it in: `X-CSRF-Token`.
    pub header: String,
    /// Valid as long as the session; null for an API token, whose calls are not checked.
    pub token: Option<String>,
}

/// The CSRF token of this session. Only calls authenticated by the session cookie need one,
/// and only when they carry neither an Origin nor a Referer header naming this server.
#[utoipa::path(get, path = "/csrf-token", tag = "account",
    responses(
        (status = 200, description = "The session's token (null when called with an API token)", body = CsrfToken),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn csrf_token(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Json<CsrfToken>, ApiError> {
    // The principal proves the session (or token) is valid; a token caller has no session.
    let token = session_cookie_in(&headers)
        .filter(|_| principal.token_id.is_none())
        .map(|session| state.csrf.token_for(&session));
    Ok(Json(CsrfToken {
        header: "X-CSRF-Token".into(),
        token,
    }))
}

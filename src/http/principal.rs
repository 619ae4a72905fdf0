//! Who is calling: an API token (`Authorization: Bearer pst_...`) or a signed-in user's
//! session cookie (`postern_session`). Yields the [`Principal`] every handler acts for.

use super::error::ApiError;
use super::request_cookies::cookie_values;
use super::ApiState;
use crate::domain::Principal;
use crate::store::SESSION_COOKIE;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(AUTHORIZATION) {
            // A request that names a token is judged by it alone, never by a cookie as well.
            let value = value.to_str().unwrap_or_default().trim();
            let token = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim())
                .ok_or_else(|| {
                    ApiError::unauthorized(
                        "the Authorization header must be `Bearer <token>`; create a token with `postern token create`",
                    )
                })?;
            return state
                .store
                .token_principal(token)
                .await?
                .map_err(|refusal| ApiError::unauthorized(refusal.to_string()));
        }
        if let Some(session) = cookie_values(&parts.headers, SESSION_COOKIE).next() {
            return state
                .store
                .session_principal(&session)
                .await?
                .ok_or_else(|| {
                    ApiError::unauthorized("the session has expired or ended; sign in again")
                });
        }
        Err(ApiError::unauthorized(
            "authentication required: send `Authorization: Bearer <token>` (see `postern token create`) or sign in",
        ))
    }
}

/// Admin-only actions: users, API tokens, single sign-on and imports.
pub fn require_admin(p: &Principal) -> Result<(), ApiError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this needs an admin: agents cannot manage users, API tokens, single sign-on or imports",
        ))
    }
}

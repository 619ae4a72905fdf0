//! API tokens of the account (admins only). A token is shown once, when it is created.
//! A token made here records who made it (the signed-in admin, or the user behind the
//! token used), works only while that user is enabled, and always expires (`api.*`).

use crate::domain::{Principal, Role};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::store::{ApiTokenView, TokenCreator};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The account's API tokens, revoked and expired ones included, with who made each, when
/// it expires and when it was last used.
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses(
        (status = 200, description = "Tokens (never their secret)", body = Vec<ApiTokenView>),
        (status = 403, description = "Agents cannot manage tokens", body = ErrorBody),
    ))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<ApiTokenView>>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(state.store.api_tokens(principal.account_id).await?))
}

/// One API token.
#[utoipa::path(get, path = "/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses(
        (status = 200, description = "The token (never its secret)", body = ApiTokenView),
        (status = 403, description = "Agents cannot manage tokens", body = ErrorBody),
        (status = 404, description = "No such token in this account", body = ErrorBody),
    ))]
pub async fn get_token(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ApiTokenView>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(state.store.api_token(id, principal.scope()).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(value_type = String, example = "agent")]
    role: Role,
    /// What the token is for, e.g. "helpdesk bridge".
    name: Option<String>,
    /// How long the token works, e.g. "30d" or "12h" (default `api.token_default_ttl`, 90
    /// days; at most `api.token_max_ttl`, 365 days). Not with `expires_at`.
    #[schema(example = "30d")]
    expires_in: Option<String>,
    /// When the token stops working (RFC 3339); within `api.token_max_ttl` from now. Not
    /// with `expires_in`.
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: ApiTokenView,
    /// The secret: shown this once, only its hash is kept.
    pub token: String,
}

/// When a token asked for now should expire (ms), under the account's limits.
fn expiry(body: &NewToken, api: &crate::config::ApiSettings, now: i64) -> Result<i64, ApiError> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let max = now.saturating_add(ms(api.token_max_ttl));
    let at = match (&body.expires_in, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give expires_in or expires_at, not both"))
        }
        (Some(text), None) => {
            let d = humantime::parse_duration(text.trim()).map_err(|e| {
                ApiError::invalid(format!(
                    "expires_in {text:?} is not a duration such as \"30d\" or \"12h\": {e}"
                ))
            })?;
            if d.is_zero() {
                return Err(ApiError::invalid("expires_in must be more than 0s"));
            }
            now.saturating_add(ms(d))
        }
        (None, Some(at)) => {
            let at = at.timestamp_millis();
            if at <= now {
                return Err(ApiError::invalid("expires_at is in the past"));
            }
            at
        }
        (None, None) => now.saturating_add(ms(api.token_default_ttl)),
    };
    if at > max {
        return Err(ApiError::invalid(format!(
            "a token made through the API works at most {} (api.token_max_ttl); ask for less",
            humantime::format_duration(api.token_max_ttl)
        )));
    }
    Ok(at)
}

/// Creates an API token (admins only). It records its creator: the signed-in admin, or the
/// user who made the token used for this request. It stops working when that user is
/// disabled, never acts with more than that user's role, and expires (default 90 days).
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses(
        (status = 201, description = "The token with its secret, shown once", body = CreatedToken),
        (status = 403, description = "Agents cannot manage tokens", body = ErrorBody),
        (status = 422, description = "A bad expiry: both expires_in and expires_at, not a duration, in the past, or beyond api.token_max_ttl", body = ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    require_admin(&principal)?;
    let expires_at = expiry(&body, &state.api, crate::store::now_ms())?;
    let creator = match (principal.user_id, principal.token_id) {
        (Some(user), _) => TokenCreator::User(user),
        (None, Some(token)) => TokenCreator::Token(token),
        (None, None) => TokenCreator::Operator,
    };
    let (info, token) = state
        .store
        .create_api_token_by(
            principal.account_id,
            body.role,
            body.name.as_deref().unwrap_or(""),
            creator,
            Some(expires_at),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

/// Revokes an API token at once (admins only).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "Token id")),
    responses(
        (status = 200, description = "The revoked token", body = ApiTokenView),
        (status = 403, description = "Agents cannot manage tokens", body = ErrorBody),
        (status = 404, description = "No such token in this account", body = ErrorBody),
    ))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ApiTokenView>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(
        state.store.revoke_api_token(id, principal.scope()).await?,
    ))
}

//! API tokens of the account (admins only). A token is shown once, when it is created.

use crate::domain::{Principal, Role};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::store::ApiTokenView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The account's API tokens, revoked ones included.
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
    Ok(Json(
        state
            .store
            .api_token(id, Some(principal.account_id))
            .await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[schema(value_type = String, example = "agent")]
    role: Role,
    /// What the token is for, e.g. "helpdesk bridge".
    name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: ApiTokenView,
    /// The secret: shown this once, only its hash is kept.
    pub token: String,
}

/// Creates an API token (admins only).
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses(
        (status = 201, description = "The token with its secret, shown once", body = CreatedToken),
        (status = 403, description = "Agents cannot manage tokens", body = ErrorBody),
    ))]
pub async fn create_token(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    require_admin(&principal)?;
    let (info, token) = state
        .store
        .create_api_token(
            principal.account_id,
            body.role,
            body.name.as_deref().unwrap_or(""),
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
        state
            .store
            .revoke_api_token(id, Some(principal.account_id))
            .await?,
    ))
}

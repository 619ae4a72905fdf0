//! Users (agents and admins) of the account. Everyone may list them (to assign tickets);
//! only admins may add or change them.

use crate::domain::{Principal, Role};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::store::{UserChanges, UserView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer};

/// Users of the account.
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, description = "Users", body = Vec<UserView>)))]
pub async fn list_users(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(state.store.users(principal.account_id).await?))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user in this account", body = ErrorBody),
    ))]
pub async fn get_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.store.user(id, principal.account_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    email: String,
    name: Option<String>,
    #[schema(value_type = String, example = "agent")]
    role: Role,
}

/// Adds a user (admins only). Users signing in through SSO are added on their first sign-in.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "The user", body = UserView),
        (status = 403, description = "Agents cannot manage users", body = ErrorBody),
        (status = 409, description = "The address is already a user", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    require_admin(&principal)?;
    let email = super::email_address(&body.email).map_err(ApiError::invalid)?;
    let u = state
        .store
        .create_user(
            principal.account_id,
            &email,
            body.name.as_deref(),
            body.role,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(u)))
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    #[schema(value_type = Option<String>, example = "admin")]
    role: Option<Role>,
    /// A disabled user is signed out and cannot sign in; the API tokens they made stop
    /// working at once (and stay revoked if the user is enabled again).
    disabled: Option<bool>,
}

/// Changes a user's name, role or whether they may sign in (admins only).
#[utoipa::path(patch, path = "/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "User id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 403, description = "Agents cannot manage users", body = ErrorBody),
        (status = 404, description = "No such user in this account", body = ErrorBody),
    ))]
pub async fn patch_user(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    require_admin(&principal)?;
    let changes = UserChanges {
        name: body.name,
        role: body.role,
        disabled: body.disabled,
    };
    Ok(Json(
        state
            .store
            .update_user(id, principal.account_id, &changes)
            .await?,
    ))
}

//! The caller's account and its support addresses (forwarding address, Gmail's
//! forwarding-confirmation code, status).

use crate::domain::{EmailAddress, Principal};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::store::{AccountView, SupportAddressView, UserView};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The account this request acts for.
#[utoipa::path(get, path = "/account", tag = "account",
    responses((status = 200, description = "The account", body = AccountView)))]
pub async fn get_account(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(state.store.account(principal.account_id).await?))
}

/// The account's support addresses.
#[utoipa::path(get, path = "/account/support-addresses", tag = "account",
    responses((status = 200, description = "Support addresses", body = Vec<SupportAddressView>)))]
pub async fn list_support_addresses(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<SupportAddressView>>, ApiError> {
    Ok(Json(
        state
            .store
            .account(principal.account_id)
            .await?
            .support_addresses,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSupportAddress {
    /// The store's support mailbox, e.g. support@brand.com.
    address: String,
    /// The address replies leave from, when not the account's default.
    from_address: Option<String>,
}

fn parse_address(field: &str, value: &str) -> Result<EmailAddress, ApiError> {
    super::email_address(value).map_err(|reason| ApiError::invalid(format!("{field}: {reason}")))
}

/// Adds a support address (admins only). The answer carries the forwarding address to
/// point the mailbox's auto-forwarding at.
#[utoipa::path(post, path = "/account/support-addresses", tag = "account",
    request_body = NewSupportAddress,
    responses(
        (status = 201, description = "The new support address and its forwarding address", body = SupportAddressView),
        (status = 403, description = "Agents cannot manage support addresses", body = ErrorBody),
        (status = 409, description = "Already a support address of this account", body = ErrorBody),
    ))]
pub async fn add_support_address(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewSupportAddress>,
) -> Result<(StatusCode, Json<SupportAddressView>), ApiError> {
    require_admin(&principal)?;
    let address = parse_address("address", &body.address)?;
    let from = body
        .from_address
        .as_deref()
        .map(|f| parse_address("from_address", f))
        .transpose()?;
    let view = state
        .store
        .add_support_address(
            principal.account_id,
            &address,
            from.as_ref(),
            &state.inbound_domain,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One support address of the account.
#[utoipa::path(get, path = "/account/support-addresses/{id}", tag = "account",
    params(("id" = i64, Path, description = "Support address id")),
    responses(
        (status = 200, description = "The support address", body = SupportAddressView),
        (status = 404, description = "No such support address in this account", body = ErrorBody),
    ))]
pub async fn get_support_address(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SupportAddressView>, ApiError> {
    state
        .store
        .account(principal.account_id)
        .await?
        .support_addresses
        .into_iter()
        .find(|s| s.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no support address with id {id}")))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub account_id: i64,
    /// admin or agent.
    pub role: String,
    /// The signed-in user (absent for an API token).
    pub user: Option<UserView>,
    /// The API token used (absent for a signed-in user).
    pub token_id: Option<i64>,
}

/// Who the caller is.
#[utoipa::path(get, path = "/me", tag = "account",
    responses((status = 200, description = "The caller", body = Me)))]
pub async fn me(State(state): State<ApiState>, principal: Principal) -> Result<Json<Me>, ApiError> {
    let user = match principal.user_id {
        Some(u) => Some(state.store.user(u, principal.account_id).await?),
        None => None,
    };
    Ok(Json(Me {
        account_id: principal.account_id.0,
        role: principal.role.as_str().to_string(),
        user,
        token_id: principal.token_id,
    }))
}

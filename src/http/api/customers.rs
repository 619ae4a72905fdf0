//! Customers: e-mail address, name and free-form attributes (order numbers, ...).

use crate::domain::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{cut_page, encode_cursor, id_after, page_limit};
use crate::http::ApiState;
use crate::store::CustomerView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerListQuery {
    /// Text looked for in the e-mail address and the name.
    q: Option<String>,
    /// next_cursor of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerView>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const ORDER: &str = "id";

/// Customers of the account, by id.
#[utoipa::path(get, path = "/customers", tag = "customers", params(CustomerListQuery),
    responses(
        (status = 200, description = "One page of customers", body = CustomerPage),
        (status = 400, description = "Bad query or cursor", body = ErrorBody),
    ))]
pub async fn list_customers(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<CustomerListQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    let after = id_after(q.cursor.as_deref(), ORDER)?;
    if q.q.as_deref().is_some_and(|t| t.len() > 500) {
        return Err(ApiError::bad_query("q is longer than 500 bytes"));
    }
    let text = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let mut items = state
        .store
        .customers(principal.account_id, text, after, limit + 1)
        .await?;
    let next_cursor = cut_page(&mut items, limit).map(|c| encode_cursor(ORDER, c.id, c.id));
    Ok(Json(CustomerPage { items, next_cursor }))
}

/// One customer.
#[utoipa::path(get, path = "/customers/{id}", tag = "customers",
    params(("id" = i64, Path, description = "Customer id")),
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 404, description = "No such customer in this account", body = ErrorBody),
    ))]
pub async fn get_customer(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<CustomerView>, ApiError> {
    Ok(Json(state.store.customer(id, principal.account_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCustomer {
    email: String,
    name: Option<String>,
    /// A JSON object (at most 16 KiB).
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
}

/// Adds a customer.
#[utoipa::path(post, path = "/customers", tag = "customers", request_body = NewCustomer,
    responses(
        (status = 201, description = "The customer", body = CustomerView),
        (status = 409, description = "The address is already a customer", body = ErrorBody),
        (status = 422, description = "Invalid address or attributes", body = ErrorBody),
    ))]
pub async fn create_customer(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewCustomer>,
) -> Result<(StatusCode, Json<CustomerView>), ApiError> {
    let email = super::email_address(&body.email).map_err(ApiError::invalid)?;
    let attributes = body.attributes.unwrap_or_else(|| serde_json::json!({}));
    let c = state
        .store
        .create_customer(
            principal.account_id,
            &email,
            body.name.as_deref(),
            &attributes,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    /// null clears the name.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// Merged into the existing attributes; a key set to null is removed.
    #[schema(value_type = Option<Object>)]
    attributes: Option<serde_json::Value>,
}

/// Changes a customer's name or attributes.
#[utoipa::path(patch, path = "/customers/{id}", tag = "customers",
    params(("id" = i64, Path, description = "Customer id")),
    request_body = CustomerPatch,
    responses(
        (status = 200, description = "The customer", body = CustomerView),
        (status = 404, description = "No such customer in this account", body = ErrorBody),
    ))]
pub async fn patch_customer(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CustomerPatch>,
) -> Result<Json<CustomerView>, ApiError> {
    let c = state
        .store
        .update_customer(
            id,
            principal.account_id,
            body.name.as_ref().map(|n| n.as_deref()),
            body.attributes.as_ref(),
        )
        .await?;
    Ok(Json(c))
}

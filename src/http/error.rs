//! The one shape of every API error: `{"error": {"code": "...", "message": "..."}}`, with
//! a stable machine-readable code and a sentence saying what went wrong and what to do.

use super::request_id;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: unauthorized, forbidden, not_found, invalid_body, invalid_query,
    /// invalid_path, bad_cursor, invalid, conflict, payload_too_large, unsupported_media_type,
    /// method_not_allowed, csrf_refused, unavailable, internal, undeliverable_recipient.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// A failure that is ours, not the client's: a 500 whose message names only the request
    /// id; the details go to the operator's log under that id.
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> Self {
        let id = request_id::current().unwrap_or_else(|| "none".into());
        tracing::error!(request_id = %id, error = %error, "{what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "internal error (request id {id}); try again, and tell the operator if it \
                 persists, quoting the request id"
            ),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => Self::not_found(m),
            StoreError::Invalid(m) => Self::invalid(m),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::DiskFull(_) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "unavailable",
                "the server's disk is full; try again later",
            ),
            // Details of database failures are for the operator's log, not for clients.
            other => Self::internal("API request failed in the store", &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"postern\""),
            );
        }
        response
    }
}

//! Replies to the customer: composed, DKIM-signed and queued for delivery.

use crate::domain::{Principal, TicketId};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::ApiState;
use crate::outbound::{DraftAttachment, OutboundError, QueuedReply, ReplyDraft};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use serde::Deserialize;

/// Largest request body of a reply (base64 attachments included); the decoded reply is
/// further held to `outbound.max_message_size`.
pub const MAX_REPLY_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyBody {
    /// Plain text of the reply.
    text: String,
    /// HTML alternative (optional).
    html: Option<String>,
    /// Extra recipients (plain addresses).
    #[serde(default)]
    cc: Vec<String>,
    /// Quote the customer's last message under the reply.
    #[serde(default)]
    quote: bool,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentBody {
    filename: String,
    /// MIME type, e.g. application/pdf.
    content_type: String,
    /// The bytes, base64 (standard alphabet).
    data: String,
}

pub(crate) fn outbound_error(e: OutboundError) -> ApiError {
    match e {
        OutboundError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
        OutboundError::NotFound(m) => ApiError::not_found(m),
        OutboundError::DomainNotReady(m) => {
            ApiError::new(StatusCode::CONFLICT, "domain_not_verified", m)
        }
        e @ OutboundError::Undeliverable { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "undeliverable_recipient",
            e.to_string(),
        ),
        OutboundError::Store(e) => e.into(),
        other => ApiError::internal("outbound request failed", &other),
    }
}

/// Replies to the customer of the ticket (and CCs), from the brand's address, DKIM-signed.
/// The reply is queued; its delivery status per recipient is in the answer and on the
/// ticket (`deliveries`).
#[utoipa::path(post, path = "/tickets/{id}/replies", tag = "outbound",
    params(("id" = i64, Path, description = "Ticket id")),
    request_body = ReplyBody,
    responses(
        (status = 202, description = "Queued for delivery", body = QueuedReply),
        (status = 400, description = "Invalid reply (control characters in a header value, sizes, addresses)", body = ErrorBody),
        (status = 404, description = "No such ticket in this account", body = ErrorBody),
        (status = 409, description = "The sending domain is not set up or not verified", body = ErrorBody),
        (status = 422, description = "`undeliverable_recipient`: a recipient (a CC or the customer) that mail can never reach, such as an address literal `a@[127.0.0.1]`, an IP address or a name that is not an Internet domain; the message names it and says why", body = ErrorBody),
    ))]
pub async fn send_reply(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ReplyBody>,
) -> Result<(StatusCode, Json<QueuedReply>), ApiError> {
    let mut attachments = Vec::with_capacity(body.attachments.len());
    for (i, a) in body.attachments.into_iter().enumerate() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(a.data.trim())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("attachments[{i}].data is not base64: {e}"),
                )
            })?;
        attachments.push(DraftAttachment {
            filename: a.filename,
            content_type: a.content_type,
            data,
        });
    }
    let draft = ReplyDraft {
        text: body.text,
        html: body.html,
        attachments,
        cc: body.cc,
        author_user_id: principal.user_id,
        quote: body.quote,
        ..Default::default()
    };
    let queued = state
        .outbound
        .enqueue_reply(principal.account_id, TicketId(id), draft, false)
        .await
        .map_err(outbound_error)?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

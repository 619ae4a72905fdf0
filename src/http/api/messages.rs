//! Messages: one message (HTML sanitised), the raw message, its HTML as a page, and
//! attachment downloads.

use crate::domain::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::sanitize::sanitize_message_html;
use crate::http::ApiState;
use crate::store::MessageView;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HtmlQuery {
    /// Load remote images in message HTML (off by default: they tell the sender the mail
    /// was read).
    pub remote_images: Option<bool>,
}

/// Where an attachment is downloaded from; `cid:` images are rewritten to it.
pub fn attachment_url(id: i64) -> String {
    format!("{}{id}", crate::http::sanitize::ATTACHMENT_PATH)
}

/// The message with its HTML sanitised for a browser.
pub fn safe_message(mut m: MessageView, remote_images: bool) -> MessageView {
    if let Some(html) = m.html.take() {
        let cids: HashMap<String, String> = m
            .attachments
            .iter()
            .filter_map(|a| {
                a.content_id
                    .as_ref()
                    .map(|c| (c.clone(), attachment_url(a.id)))
            })
            .collect();
        m.html = Some(sanitize_message_html(&html, &cids, remote_images).html);
    }
    m
}

/// One message of the account.
#[utoipa::path(get, path = "/messages/{id}", tag = "messages",
    params(("id" = i64, Path, description = "Message id"), HtmlQuery),
    responses(
        (status = 200, description = "The message; `html` is sanitised", body = MessageView),
        (status = 404, description = "No such message in this account", body = ErrorBody),
    ))]
pub async fn get_message(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<HtmlQuery>,
) -> Result<Json<MessageView>, ApiError> {
    let m = state.store.message(id, principal.account_id).await?;
    Ok(Json(safe_message(m, q.remote_images.unwrap_or(false))))
}

/// Headers that keep a browser from running or sniffing what we serve.
fn locked_down(headers: &mut HeaderMap, csp: &str) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The message as received (RFC 5322), with Postern's Authentication-Results on top.
#[utoipa::path(get, path = "/messages/{id}/raw", tag = "messages",
    params(("id" = i64, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message", content_type = "message/rfc822", body = String),
        (status = 404, description = "No such message in this account (notes have no raw form)", body = ErrorBody),
    ))]
pub async fn raw_message(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = state
        .store
        .raw_message_for_download(id, principal.account_id)
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"message-{id}.eml\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    locked_down(&mut headers, "default-src 'none'; sandbox");
    Ok((headers, bytes))
}

/// The message's HTML as a page for a browser frame: sanitised, remote images blocked
/// unless `remote_images=true`, inline images served from their attachments.
#[utoipa::path(get, path = "/messages/{id}/html", tag = "messages",
    params(("id" = i64, Path, description = "Message id"), HtmlQuery),
    responses(
        (status = 200, description = "Sanitised HTML", content_type = "text/html", body = String),
        (status = 404, description = "No such message, or it has no HTML", body = ErrorBody),
    ))]
pub async fn message_html(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<HtmlQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let remote = q.remote_images.unwrap_or(false);
    let m = safe_message(state.store.message(id, principal.account_id).await?, remote);
    let html = m
        .html
        .ok_or_else(|| ApiError::not_found(format!("message {id} has no HTML part")))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Defence in depth behind the sanitiser: no script at all, images only from us (and
    // from anywhere when the reader asked for remote images).
    let img = if remote {
        "'self' https: http:"
    } else {
        "'self'"
    };
    locked_down(
        &mut headers,
        &format!(
            "default-src 'none'; img-src {img}; style-src 'unsafe-inline'; sandbox allow-popups"
        ),
    );
    Ok((
        headers,
        format!("<!DOCTYPE html>\n<meta charset=\"utf-8\">\n{html}"),
    ))
}

/// Image types a browser may display inline; everything else is served as bytes to save.
const INLINE_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An attachment's bytes.
#[utoipa::path(get, path = "/attachments/{id}", tag = "messages",
    params(("id" = i64, Path, description = "Attachment id")),
    responses(
        (status = 200, description = "The attachment", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such attachment in this account", body = ErrorBody),
    ))]
pub async fn download_attachment(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let (a, _message, bytes) = state.store.attachment(id, principal.account_id).await?;
    let declared = a.content_type.to_ascii_lowercase();
    let declared = declared.split(';').next().unwrap_or_default().trim();
    // The sender chose the type: never let it be HTML, SVG or anything a browser runs.
    let content_type = if INLINE_TYPES.contains(&declared) {
        declared.to_string()
    } else {
        "application/octet-stream".to_string()
    };
    let name: String = a
        .filename
        .unwrap_or_else(|| format!("attachment-{id}"))
        .chars()
        .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
        .collect();
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let disposition = format!(
        "{}; filename=\"{}\"; filename*=UTF-8''{}",
        if INLINE_TYPES.contains(&declared) {
            "inline"
        } else {
            "attachment"
        },
        name.chars()
            .map(|c| if c.is_ascii() { c } else { '_' })
            .collect::<String>(),
        urlencoding::encode(&name)
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    locked_down(&mut headers, "default-src 'none'; sandbox");
    Ok((headers, bytes))
}

//! Tickets: filtered, sorted, paginated listing; one ticket with its messages; changes
//! (status, priority, assignee, tags); internal notes.

use super::messages::{safe_message, HtmlQuery};
use crate::domain::{Principal, TicketEdit, TicketId, TicketStatus};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{cut_page, decode_cursor, encode_cursor, page_limit};
use crate::http::ApiState;
use crate::store::{
    AssigneeFilter, MessageView, TicketDetail, TicketEvent, TicketFilter, TicketSort,
    TicketSortKey, TicketSummary,
};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketListQuery {
    /// open, pending, snoozed or closed.
    status: Option<String>,
    /// Only tickets with this tag.
    tag: Option<String>,
    /// A user id, `me` (the signed-in user) or `none` (unassigned).
    assignee: Option<String>,
    /// A customer id or e-mail address.
    customer: Option<String>,
    /// Text looked for in subjects and message texts.
    q: Option<String>,
    /// updated_at, created_at or id; `-` in front for newest first. Default: -updated_at.
    sort: Option<String>,
    /// next_cursor of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TicketPage {
    pub items: Vec<TicketSummary>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn parse_sort(sort: Option<&str>) -> Result<(TicketSort, String), ApiError> {
    let text = sort.unwrap_or("-updated_at").trim();
    let (descending, name) = match text.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, text),
    };
    let key = match name {
        "updated_at" => TicketSortKey::UpdatedAt,
        "created_at" => TicketSortKey::CreatedAt,
        "id" => TicketSortKey::Id,
        other => {
            return Err(ApiError::bad_query(format!(
                "cannot sort by {other:?}: use updated_at, created_at or id, with - in front for descending"
            )))
        }
    };
    Ok((TicketSort { key, descending }, text.to_string()))
}

/// Tickets of the caller's account.
#[utoipa::path(get, path = "/tickets", tag = "tickets", params(TicketListQuery),
    responses(
        (status = 200, description = "One page of tickets", body = TicketPage),
        (status = 400, description = "Bad filter, sort or cursor", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ))]
pub async fn list_tickets(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<TicketListQuery>,
) -> Result<Json<TicketPage>, ApiError> {
    let account = principal.account_id;
    let limit = page_limit(q.limit)?;
    let (sort, order) = parse_sort(q.sort.as_deref())?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c, &order))
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<TicketStatus>().map_err(ApiError::bad_query))
        .transpose()?;
    let assignee = match q.assignee.as_deref().map(str::trim) {
        None => None,
        Some("none") => Some(AssigneeFilter::Nobody),
        Some("me") => Some(AssigneeFilter::User(principal.user_id.ok_or_else(
            || ApiError::bad_query("assignee=me needs a signed-in user; an API token is not one"),
        )?)),
        Some(id) => Some(AssigneeFilter::User(id.parse().map_err(|_| {
            ApiError::bad_query(format!("assignee={id:?}: use a user id, `me` or `none`"))
        })?)),
    };
    let customer_id = match q.customer.as_deref().map(str::trim) {
        None => None,
        Some(c) if c.contains('@') => Some(
            // An address the account does not know matches no ticket.
            state
                .store
                .customer_id_by_email(account, c)
                .await?
                .unwrap_or(-1),
        ),
        Some(c) => Some(c.parse().map_err(|_| {
            ApiError::bad_query(format!(
                "customer={c:?}: use a customer id or an e-mail address"
            ))
        })?),
    };
    if q.q.as_deref().is_some_and(|t| t.len() > 500) {
        return Err(ApiError::bad_query("q is longer than 500 bytes"));
    }
    let filter = TicketFilter {
        status,
        tag: q.tag.filter(|t| !t.trim().is_empty()),
        assignee,
        customer_id,
        text: q.q.filter(|t| !t.trim().is_empty()),
    };
    // One more than asked tells whether there is a next page.
    let mut items = state
        .store
        .search_tickets(account, &filter, sort, after, limit + 1)
        .await?;
    let next_cursor =
        cut_page(&mut items, limit).map(|t| encode_cursor(&order, sort.key_of(t), t.id));
    Ok(Json(TicketPage { items, next_cursor }))
}

/// One ticket with its messages (HTML sanitised), tags and history.
#[utoipa::path(get, path = "/tickets/{id}", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id"), HtmlQuery),
    responses(
        (status = 200, description = "The ticket", body = TicketDetail),
        (status = 404, description = "No such ticket in this account", body = ErrorBody),
    ))]
pub async fn get_ticket(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(html): ApiQuery<HtmlQuery>,
) -> Result<Json<TicketDetail>, ApiError> {
    let mut t = state.store.ticket(TicketId(id), principal.scope()).await?;
    t.messages = t
        .messages
        .into_iter()
        .map(|m| safe_message(m, html.remote_images.unwrap_or(false)))
        .collect();
    Ok(Json(t))
}

/// Distinguishes an absent field (leave as is) from an explicit null (clear it).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketPatch {
    #[schema(value_type = Option<String>, example = "closed")]
    status: Option<TicketStatus>,
    /// Wake-up time of a snoozed ticket (RFC 3339).
    snoozed_until: Option<chrono::DateTime<chrono::Utc>>,
    /// low, normal, high or urgent.
    priority: Option<String>,
    /// A user of the account; null unassigns.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    assignee_id: Option<Option<i64>>,
    /// Replaces all tags.
    tags: Option<Vec<String>>,
}

/// Changes status, priority, assignee or tags; each change is recorded in the history.
#[utoipa::path(patch, path = "/tickets/{id}", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id")),
    request_body = TicketPatch,
    responses(
        (status = 200, description = "The ticket after the change", body = TicketDetail),
        (status = 404, description = "No such ticket (or assignee) in this account", body = ErrorBody),
        (status = 422, description = "Invalid change", body = ErrorBody),
    ))]
pub async fn patch_ticket(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<TicketPatch>,
) -> Result<Json<TicketDetail>, ApiError> {
    let edit = TicketEdit {
        status: patch.status,
        snoozed_until: patch.snoozed_until.map(|t| t.timestamp_millis()),
        priority: patch.priority,
        assignee_id: patch.assignee_id,
        tags: patch.tags,
    };
    state
        .store
        .update_ticket(TicketId(id), &principal, &edit)
        .await?;
    get_ticket(
        State(state),
        principal,
        ApiPath(id),
        ApiQuery(HtmlQuery::default()),
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    tag: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TagList {
    tags: Vec<String>,
}

async fn tags_of(state: &ApiState, p: &Principal, id: i64) -> Result<Json<TagList>, ApiError> {
    let t = state.store.ticket(TicketId(id), p.scope()).await?;
    Ok(Json(TagList { tags: t.tags }))
}

/// Adds a tag.
#[utoipa::path(post, path = "/tickets/{id}/tags", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id")),
    request_body = TagBody,
    responses(
        (status = 200, description = "The ticket's tags", body = TagList),
        (status = 404, description = "No such ticket in this account", body = ErrorBody),
    ))]
pub async fn add_tag(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<TagBody>,
) -> Result<Json<TagList>, ApiError> {
    state
        .store
        .add_ticket_tag(TicketId(id), &principal, &body.tag)
        .await?;
    tags_of(&state, &principal, id).await
}

/// Removes a tag.
#[utoipa::path(delete, path = "/tickets/{id}/tags/{tag}", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id"), ("tag" = String, Path, description = "The tag")),
    responses(
        (status = 200, description = "The ticket's tags", body = TagList),
        (status = 404, description = "No such ticket or tag in this account", body = ErrorBody),
    ))]
pub async fn remove_tag(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath((id, tag)): ApiPath<(i64, String)>,
) -> Result<Json<TagList>, ApiError> {
    state
        .store
        .remove_ticket_tag(TicketId(id), &principal, &tag)
        .await?;
    tags_of(&state, &principal, id).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Plain text, never sent to the customer.
    body: String,
}

/// Adds an internal note.
#[utoipa::path(post, path = "/tickets/{id}/notes", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id")),
    request_body = NoteBody,
    responses(
        (status = 201, description = "The note (a message with direction `note`)", body = MessageView),
        (status = 404, description = "No such ticket in this account", body = ErrorBody),
        (status = 422, description = "Empty or too long", body = ErrorBody),
    ))]
pub async fn add_note(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let note = state
        .store
        .add_note(TicketId(id), &principal, &body.body)
        .await?;
    Ok((StatusCode::CREATED, Json(note)))
}

/// The ticket's history (status changes, assignments, tags, notes, merges, bounces).
#[utoipa::path(get, path = "/tickets/{id}/events", tag = "tickets",
    params(("id" = i64, Path, description = "Ticket id")),
    responses(
        (status = 200, description = "Events, oldest first", body = Vec<TicketEvent>),
        (status = 404, description = "No such ticket in this account", body = ErrorBody),
    ))]
pub async fn ticket_events(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Vec<TicketEvent>>, ApiError> {
    let t = state.store.ticket(TicketId(id), principal.scope()).await?;
    Ok(Json(t.events))
}

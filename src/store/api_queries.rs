//! What the HTTP API asks of tickets beyond the CLI's views: filtered and sorted listings
//! with keyset (cursor) pagination, changes by agents with their history, internal notes
//! and attachment downloads. Always within one account.

use super::customers::like_pattern;
use super::tickets::{summary, TicketRow, TICKET_SELECT};
use super::{AttachmentView, MessageView, TicketSummary};
use super::{Store, StoreError};
use crate::domain::{
    check_note, clean_tag, AccountId, ChangeAuthor, Principal, TicketChange, TicketEdit, TicketId,
    TicketStatus,
};

/// The column a ticket listing is ordered by; ties are broken by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketSortKey {
    UpdatedAt,
    CreatedAt,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketSort {
    pub key: TicketSortKey,
    pub descending: bool,
}

impl Default for TicketSort {
    fn default() -> Self {
        Self {
            key: TicketSortKey::UpdatedAt,
            descending: true,
        }
    }
}

impl TicketSort {
    fn column(self) -> &'static str {
        match self.key {
            TicketSortKey::UpdatedAt => "t.updated_at",
            TicketSortKey::CreatedAt => "t.created_at",
            TicketSortKey::Id => "t.id",
        }
    }

    /// The value of the sort column for a ticket, as the cursor carries it.
    pub fn key_of(self, t: &TicketSummary) -> i64 {
        match self.key {
            TicketSortKey::UpdatedAt => t.updated_at.timestamp_millis(),
            TicketSortKey::CreatedAt => t.created_at.timestamp_millis(),
            TicketSortKey::Id => t.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeFilter {
    Nobody,
    User(i64),
}

/// Which tickets a listing shows. Every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<TicketStatus>,
    pub tag: Option<String>,
    pub assignee: Option<AssigneeFilter>,
    pub customer_id: Option<i64>,
    /// Words looked for in the subject and in the text of the messages.
    pub text: Option<String>,
}

/// An attachment with its message id and bytes as stored.
#[derive(sqlx::FromRow)]
struct AttachmentRow {
    #[sqlx(flatten)]
    view: AttachmentView,
    message_id: i64,
    data: Vec<u8>,
    compression: Option<String>,
    stored_size: i64,
}

impl Store {
    /// Tickets of one account matching `filter`, in `sort` order, after the cursor
    /// `(sort key, id)` when given; at most `limit`. Merged tickets are left out.
    ///
    /// Text search is a LIKE scan over subjects and message texts: simple and exact, good
    /// for one store's volume; a full-text index (FTS5) is the step up when it gets slow.
    pub async fn search_tickets(
        &self,
        account: AccountId,
        filter: &TicketFilter,
        sort: TicketSort,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> Result<Vec<TicketSummary>, StoreError> {
        let col = sort.column();
        let (cmp, dir) = if sort.descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut sql = format!("{TICKET_SELECT} WHERE t.account_id = ? AND t.merged_into IS NULL");
        if filter.status.is_some() {
            sql.push_str(" AND t.status = ?");
        }
        if filter.tag.is_some() {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM ticket_tags g WHERE g.ticket_id = t.id AND g.tag = ?)",
            );
        }
        match filter.assignee {
            Some(AssigneeFilter::Nobody) => sql.push_str(" AND t.assignee_id IS NULL"),
            Some(AssigneeFilter::User(_)) => sql.push_str(" AND t.assignee_id = ?"),
            None => {}
        }
        if filter.customer_id.is_some() {
            sql.push_str(" AND t.customer_id = ?");
        }
        if filter.text.is_some() {
            sql.push_str(
                " AND (t.subject LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages s
                    WHERE s.ticket_id = t.id AND s.account_id = t.account_id
                      AND body_text(s.text_body) LIKE ? ESCAPE '\\'))",
            );
        }
        if after.is_some() {
            sql.push_str(&format!(
                " AND ({col} {cmp} ? OR ({col} = ? AND t.id {cmp} ?))"
            ));
        }
        sql.push_str(&format!(" ORDER BY {col} {dir}, t.id {dir} LIMIT ?"));
        let mut q = sqlx::query_as::<_, TicketRow>(&sql).bind(account.0);
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(tag) = &filter.tag {
            q = q.bind(tag.trim().to_string());
        }
        if let Some(AssigneeFilter::User(u)) = filter.assignee {
            q = q.bind(u);
        }
        if let Some(c) = filter.customer_id {
            q = q.bind(c);
        }
        if let Some(text) = &filter.text {
            let p = like_pattern(text.trim());
            q = q.bind(p.clone()).bind(p);
        }
        if let Some((key, id)) = after {
            q = q.bind(key).bind(key).bind(id);
        }
        let rows = q.bind(i64::from(limit)).fetch_all(self.pool()).await?;
        Ok(rows.into_iter().map(summary).collect())
    }

    /// The account of a ticket, checked: another account's ticket is not found.
    async fn own_ticket(&self, id: TicketId, account: AccountId) -> Result<(), StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM tickets WHERE id = ? AND account_id = ?")
                .bind(id.0)
                .bind(account.0)
                .fetch_optional(self.pool())
                .await?;
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("no ticket with id {id}")))
    }

    /// Checks an agent's changes and applies them to a ticket in one transaction, with one
    /// history event per field that changes (tags: whenever they are given).
    pub async fn update_ticket(
        &self,
        id: TicketId,
        by: &Principal,
        edit: &TicketEdit,
    ) -> Result<(), StoreError> {
        let account = by.account_id;
        self.own_ticket(id, account).await?;
        if let Some(Some(user)) = edit.assignee_id {
            // Another account's user is "not found", like a user that does not exist.
            self.user(user, account).await?;
        }
        let changes = edit.changes()?;
        self.change_ticket(account, id.0, &ChangeAuthor::from(by), &changes)
            .await?;
        Ok(())
    }

    /// The ticket's tags, in order.
    async fn stored_tags(&self, id: TicketId) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT tag FROM ticket_tags WHERE ticket_id = ? ORDER BY tag")
                .bind(id.0)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Replaces the ticket's tags with `tags`, as an agent's change.
    async fn set_tags(
        &self,
        id: TicketId,
        by: &Principal,
        tags: Vec<String>,
    ) -> Result<(), StoreError> {
        let edit = TicketEdit {
            tags: Some(tags),
            ..Default::default()
        };
        self.update_ticket(id, by, &edit).await
    }

    /// Adds one tag (no-op when present).
    pub async fn add_ticket_tag(
        &self,
        id: TicketId,
        by: &Principal,
        tag: &str,
    ) -> Result<(), StoreError> {
        self.own_ticket(id, by.account_id).await?;
        let tag = clean_tag(tag)?;
        let mut tags = self.stored_tags(id).await?;
        if tags.contains(&tag) {
            return Ok(());
        }
        tags.push(tag);
        self.set_tags(id, by, tags).await
    }

    /// Removes one tag; a tag the ticket does not have is "not found".
    pub async fn remove_ticket_tag(
        &self,
        id: TicketId,
        by: &Principal,
        tag: &str,
    ) -> Result<(), StoreError> {
        self.own_ticket(id, by.account_id).await?;
        let mut tags = self.stored_tags(id).await?;
        let before = tags.len();
        tags.retain(|t| t != tag);
        if tags.len() == before {
            return Err(StoreError::NotFound(format!(
                "ticket {id} has no tag {tag:?}"
            )));
        }
        self.set_tags(id, by, tags).await
    }

    /// Adds an internal note (never sent to the customer) to a ticket.
    pub async fn add_note(
        &self,
        id: TicketId,
        by: &Principal,
        body: &str,
    ) -> Result<MessageView, StoreError> {
        let account = by.account_id;
        self.own_ticket(id, account).await?;
        check_note(body)?;
        let author = match by.user_id {
            Some(u) => Some(self.user(u, account).await?),
            None => None,
        };
        let note = TicketChange::Note {
            text: body.to_string(),
            from_address: author.as_ref().map(|a| a.email.clone()),
            from_name: author.and_then(|a| a.name),
        };
        let written = self
            .change_ticket(account, id.0, &ChangeAuthor::from(by), &[note])
            .await?;
        let note = written
            .first()
            .copied()
            .ok_or_else(|| StoreError::NotFound(format!("no note written on ticket {id}")))?;
        self.message(note, account).await
    }

    /// An attachment of one of the account's messages, with its bytes.
    pub async fn attachment(
        &self,
        id: i64,
        account: AccountId,
    ) -> Result<(AttachmentView, i64, Vec<u8>), StoreError> {
        let row: Option<AttachmentRow> = sqlx::query_as(
            "SELECT a.id, a.filename, a.content_type, a.size, a.content_id, a.disposition,
                        a.message_id, b.data, b.compression, b.size AS stored_size
                 FROM attachments a
                 JOIN messages m ON m.id = a.message_id
                 JOIN blobs b ON b.sha256 = a.blob_sha256
                 WHERE a.id = ? AND m.account_id = ?",
        )
        .bind(id)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        let row = row.ok_or_else(|| StoreError::NotFound(format!("no attachment with id {id}")))?;
        let data =
            super::blob_codec::decode(row.data, row.compression.as_deref(), row.stored_size)?;
        Ok((row.view, row.message_id, data))
    }
}

//! Writes decided changes to one ticket: the rows each change touches, one history event
//! per change that records one, and the ticket's `updated_at`. The one place where rules,
//! the scheduler and the agent API change a ticket.

use super::{now_ms, Store, StoreError};
use crate::domain::{
    AccountId, ChangeAuthor, InvalidChange, TicketBefore, TicketChange, TicketStatus,
};
use rusqlite::{Connection, OptionalExtension};

/// A change a client asked for that cannot be made is the client's mistake.
impl From<InvalidChange> for StoreError {
    fn from(e: InvalidChange) -> Self {
        StoreError::Invalid(e.0)
    }
}

impl Store {
    /// Applies `changes` to a ticket of `account` now, in one transaction (see
    /// [`apply_ticket_changes`]); returns the ids of the notes written, in order.
    pub async fn change_ticket(
        &self,
        account: AccountId,
        ticket: i64,
        by: &ChangeAuthor,
        changes: &[TicketChange],
    ) -> Result<Vec<i64>, StoreError> {
        let (by, changes, now) = (by.clone(), changes.to_vec(), now_ms());
        self.write(move |conn| apply_ticket_changes(conn, account, ticket, &by, &changes, now))
            .await
    }
}

/// Applies `changes` in order to a ticket of `account` on the writer's `conn` (within the
/// caller's transaction), with the history events they record (compared with the ticket as
/// it was before the first), at `now`. Another account's ticket is not found. Returns the
/// ids of the notes written, in order.
pub(super) fn apply_ticket_changes(
    conn: &Connection,
    account: AccountId,
    ticket: i64,
    by: &ChangeAuthor,
    changes: &[TicketChange],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut notes = Vec::new();
    if changes.is_empty() {
        return Ok(notes);
    }
    // The ticket before the changes: what history compares with, and the subject notes take.
    let row = conn
        .query_row(
            "SELECT status, priority, assignee_id, team, subject FROM tickets WHERE id = ?1 AND account_id = ?2",
            (ticket, account.0),
            |r| {
                let before = TicketBefore {
                    status: r.get(0)?,
                    priority: r.get(1)?,
                    assignee: r.get(2)?,
                    team: r.get(3)?,
                };
                Ok((before, r.get::<_, String>(4)?))
            },
        )
        .optional()?;
    let Some((before, subject)) = row else {
        return Err(StoreError::NotFound(format!("no ticket with id {ticket}")));
    };
    let mut recorded = false;
    for change in changes {
        let note = write_change(conn, account, ticket, by, change, &subject, now)?;
        notes.extend(note);
        let Some(entry) = change.history(by, &before, note) else {
            continue;
        };
        recorded = true;
        conn.prepare_cached(
            "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute((account.0, ticket, entry.kind, entry.data.to_string(), now))?;
    }
    if recorded {
        conn.execute(
            "UPDATE tickets SET updated_at = MAX(updated_at, ?1) WHERE id = ?2",
            (now, ticket),
        )?;
    }
    Ok(notes)
}

/// The rows of one change; the id of the note it wrote, if it wrote one.
fn write_change(
    conn: &Connection,
    account: AccountId,
    ticket: i64,
    by: &ChangeAuthor,
    change: &TicketChange,
    subject: &str,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    // One column of the ticket row; `column` is one of the names written below.
    let set = |column: &str, value: &dyn rusqlite::ToSql| {
        conn.prepare_cached(&format!("UPDATE tickets SET {column} = ?1 WHERE id = ?2"))?
            .execute((value, ticket))
            .map(|_| ())
    };
    match change {
        TicketChange::AddTag(tag) => {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO ticket_tags (ticket_id, tag) VALUES (?1, ?2)",
            )?
            .execute((ticket, tag))?;
        }
        TicketChange::RemoveTags { stored, .. } => {
            let mut delete =
                conn.prepare_cached("DELETE FROM ticket_tags WHERE ticket_id = ?1 AND tag = ?2")?;
            for tag in stored {
                delete.execute((ticket, tag))?;
            }
        }
        TicketChange::ReplaceTags(tags) => {
            conn.execute("DELETE FROM ticket_tags WHERE ticket_id = ?1", [ticket])?;
            let mut insert =
                conn.prepare_cached("INSERT INTO ticket_tags (ticket_id, tag) VALUES (?1, ?2)")?;
            for tag in tags {
                insert.execute((ticket, tag))?;
            }
        }
        TicketChange::SetStatus {
            status,
            snoozed_until,
        } => {
            conn.execute(
                "UPDATE tickets SET status = ?1, snoozed_until = ?2, closed_at = ?3 WHERE id = ?4",
                (
                    status.as_str(),
                    snoozed_until,
                    (*status == TicketStatus::Closed).then_some(now),
                    ticket,
                ),
            )?;
        }
        TicketChange::Assign(user) => set("assignee_id", user)?,
        TicketChange::Team(team) => set("team", team)?,
        TicketChange::Priority(p) => set("priority", p)?,
        TicketChange::Note {
            text,
            from_address,
            from_name,
        } => {
            // Rules' notes and people's notes keep the sources and keys they always had.
            let (source, key) = match by {
                ChangeAuthor::Rule { .. } => ("rule", "rule-note"),
                ChangeAuthor::Agent { .. } => ("api", "note"),
            };
            let note: i64 = conn.query_row(
                "INSERT INTO messages (account_id, ticket_id, direction, source, dedup_key, subject,
                                       received_at, text_body, size, from_address, from_name,
                                       author_user_id, classification, thread_reason)
                 VALUES (?1, ?2, 'note', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'normal', 'note')
                 RETURNING id",
                (
                    account.0,
                    ticket,
                    source,
                    format!("{key}:{}", super::tokens::random_secret()),
                    subject,
                    now,
                    text,
                    text.len() as i64,
                    from_address,
                    from_name,
                    by.user_id(),
                ),
                |r| r.get(0),
            )?;
            return Ok(Some(note));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_fixtures::{store_with_ticket, tags};
    use serde_json::{json, Value};

    async fn events(store: &Store, ticket: i64) -> Vec<(String, Value, i64)> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, data, created_at FROM ticket_events WHERE ticket_id = ? ORDER BY id",
        )
        .bind(ticket)
        .fetch_all(store.pool())
        .await
        .unwrap();
        rows.into_iter()
            .map(|(k, d, at)| (k, serde_json::from_str(&d).unwrap(), at))
            .collect()
    }

    /// `changes` to the ticket in one transaction at `now`, as the rules commit them.
    async fn apply_at(
        t: &(tempfile::TempDir, Store, AccountId, i64),
        by: &ChangeAuthor,
        changes: &[TicketChange],
        now: i64,
    ) -> Vec<i64> {
        let (account, ticket) = (t.2, t.3);
        let (by, changes) = (by.clone(), changes.to_vec());
        t.1.write(move |conn| apply_ticket_changes(conn, account, ticket, &by, &changes, now))
            .await
            .unwrap()
    }

    type Row = (
        String,
        Option<i64>,
        Option<i64>,
        String,
        Option<String>,
        i64,
    );

    async fn row(store: &Store, ticket: i64) -> Row {
        sqlx::query_as(
            "SELECT status, snoozed_until, closed_at, priority, team, updated_at FROM tickets WHERE id = ?",
        )
        .bind(ticket)
        .fetch_one(store.pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_rules_list_writes_its_rows_and_one_event_per_change() {
        let t = store_with_ticket("Where is my order").await;
        let (store, ticket) = (&t.1, t.3);
        let rule = ChangeAuthor::Rule {
            id: 5,
            name: "vip".into(),
            depth: 0,
        };
        let by = rule.to_json();
        let changes = [
            TicketChange::AddTag("VIP".into()),
            TicketChange::AddTag("urgent".into()),
            TicketChange::AddTag("Urgent".into()),
            TicketChange::RemoveTags {
                tag: "URGENT".into(),
                stored: vec!["urgent".into(), "Urgent".into()],
            },
            TicketChange::SetStatus {
                status: TicketStatus::Snoozed,
                snoozed_until: Some(9_000),
            },
            TicketChange::Priority("high".into()),
            TicketChange::Team("billing".into()),
            TicketChange::Note {
                text: "Seen".into(),
                from_address: None,
                from_name: None,
            },
        ];
        let notes = apply_at(&t, &rule, &changes, 1_000).await;
        assert_eq!(tags(store, ticket).await, ["VIP"]);
        assert_eq!(
            row(store, ticket).await,
            (
                "snoozed".into(),
                Some(9_000),
                None,
                "high".into(),
                Some("billing".into()),
                1_000
            )
        );
        let [note] = notes[..] else {
            panic!("one note expected, got {notes:?}")
        };
        let (source, key, subject, text, author): (String, String, String, String, Option<i64>) =
            sqlx::query_as(
                "SELECT source, dedup_key, subject, text_body, author_user_id FROM messages WHERE id = ?",
            )
            .bind(note)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(
            (source.as_str(), subject.as_str(), text.as_str(), author),
            ("rule", "Where is my order", "Seen", None)
        );
        assert!(key.starts_with("rule-note:"), "{key}");
        let expected = [
            ("tag_added", json!({"tag": "VIP", "by": by})),
            ("tag_added", json!({"tag": "urgent", "by": by})),
            ("tag_added", json!({"tag": "Urgent", "by": by})),
            ("tag_removed", json!({"tag": "URGENT", "by": by})),
            (
                "status_changed",
                json!({"to": "snoozed", "snoozed_until": 9_000, "by": by}),
            ),
            ("priority_changed", json!({"to": "high", "by": by})),
            ("team_assigned", json!({"to": "billing", "by": by})),
            ("note_added", json!({"message_id": note, "by": by})),
        ];
        let got = events(store, ticket).await;
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for ((kind, data, at), (want_kind, want_data)) in got.iter().zip(expected) {
            assert_eq!((kind.as_str(), data, *at), (want_kind, &want_data, 1_000));
        }
    }

    #[tokio::test]
    async fn an_agents_list_records_only_what_changes() {
        let t = store_with_ticket("Where is my order").await;
        let (store, ticket) = (&t.1, t.3);
        let agent = ChangeAuthor::Agent {
            user_id: None,
            token_id: Some(2),
        };
        // Nothing changes: the rows are written, nothing is recorded, updated_at stays.
        let same = [
            TicketChange::SetStatus {
                status: TicketStatus::Open,
                snoozed_until: None,
            },
            TicketChange::Assign(None),
            TicketChange::Priority("normal".into()),
        ];
        apply_at(&t, &agent, &same, 500).await;
        assert!(events(store, ticket).await.is_empty());
        assert_eq!(row(store, ticket).await.5, 10);
        let changes = [
            TicketChange::SetStatus {
                status: TicketStatus::Closed,
                snoozed_until: None,
            },
            TicketChange::ReplaceTags(vec!["b".into(), "a".into()]),
        ];
        apply_at(&t, &agent, &changes, 2_000).await;
        let by = agent.to_json();
        assert_eq!(
            events(store, ticket).await,
            [
                (
                    "status_changed".to_string(),
                    json!({"from": "open", "to": "closed", "by": by}),
                    2_000
                ),
                (
                    "tags_set".to_string(),
                    json!({"tags": ["b", "a"], "by": by}),
                    2_000
                ),
            ]
        );
        let r = row(store, ticket).await;
        assert_eq!((r.0.as_str(), r.2, r.5), ("closed", Some(2_000), 2_000));
        assert_eq!(tags(store, ticket).await, ["a", "b"]);
    }

    #[tokio::test]
    async fn another_accounts_ticket_is_not_found_and_left_alone() {
        let (_dir, store, account, ticket) = store_with_ticket("Where is my order").await;
        let other = AccountId(account.0 + 1);
        let err = store
            .change_ticket(
                other,
                ticket,
                &ChangeAuthor::Agent {
                    user_id: None,
                    token_id: Some(1),
                },
                &[TicketChange::AddTag("x".into())],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(tags(&store, ticket).await.is_empty());
        assert!(events(&store, ticket).await.is_empty());
    }
}

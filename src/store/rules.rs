//! What the rules part keeps and reads: rules, macros, the run log, the scheduler's
//! bookkeeping (fires, automated replies, cursors), the state of tickets as rules see it,
//! and each run's log entry with the changes it made. Always within one account.

use super::ticket_changes::apply_ticket_changes;
use super::{is_unique_violation, now_ms, Store, StoreError};
use crate::domain::{AccountId, ChangeAuthor, CustomerFacts, TicketChange, TicketFacts};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use sqlx::Row;

fn ms(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `e` as a Conflict saying `message` when it is a unique violation (the name is taken).
fn conflict_when_taken(e: rusqlite::Error, message: impl FnOnce() -> String) -> StoreError {
    match is_unique_violation(&e) {
        true => StoreError::Conflict(message()),
        false => e.into(),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleRecord {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    /// message_received, ticket_created, ticket_updated or time.
    pub trigger: String,
    pub position: i64,
    pub enabled: bool,
    /// The rule as written (canonical JSON; see docs/RULES.md).
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

type RuleRow = (i64, i64, String, String, i64, bool, String, i64, i64);

fn rule_record(r: RuleRow) -> RuleRecord {
    RuleRecord {
        id: r.0,
        account_id: r.1,
        name: r.2,
        trigger: r.3,
        position: r.4,
        enabled: r.5,
        definition: serde_json::from_str(&r.6).unwrap_or_default(),
        created_at: ms(r.7),
        updated_at: ms(r.8),
    }
}

/// Whether a rule's definition replies with the macro named `name`.
fn replies_with_macro(definition: &serde_json::Value, name: &str) -> bool {
    definition["actions"].as_array().is_some_and(|actions| {
        actions
            .iter()
            .any(|a| a["type"] == "reply_with_macro" && a["macro"] == name)
    })
}

const RULE_SELECT: &str = "SELECT id, account_id, name, trigger, position, enabled != 0, definition, created_at, updated_at FROM rules";

/// A rule to store: its checked, canonical definition and the columns taken from it.
pub struct NewRule<'a> {
    pub name: &'a str,
    pub trigger: &'a str,
    pub position: i64,
    pub enabled: bool,
    pub definition: &'a serde_json::Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MacroRecord {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub subject: Option<String>,
    pub body: String,
    /// empty or fallback
    pub missing: String,
    pub fallback: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

type MacroRow = (
    i64,
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    i64,
);

fn macro_record(r: MacroRow) -> MacroRecord {
    MacroRecord {
        id: r.0,
        account_id: r.1,
        name: r.2,
        subject: r.3,
        body: r.4,
        missing: r.5,
        fallback: r.6,
        created_at: ms(r.7),
        updated_at: ms(r.8),
    }
}

const MACRO_SELECT: &str =
    "SELECT id, account_id, name, subject, body, missing, fallback, created_at, updated_at FROM macros";

/// One entry of the rule log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleRunView {
    pub id: i64,
    pub rule_id: Option<i64>,
    pub rule_name: String,
    pub ticket_id: Option<i64>,
    pub message_id: Option<i64>,
    pub trigger: String,
    pub matched: bool,
    /// Each condition with what the field held and whether it matched.
    #[schema(value_type = Vec<Object>)]
    pub conditions: serde_json::Value,
    /// Each action: planned/done/skipped/blocked/failed, with the reason.
    #[schema(value_type = Vec<Object>)]
    pub actions: serde_json::Value,
    pub depth: i64,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub struct NewRuleRun<'a> {
    pub account: AccountId,
    pub rule_id: Option<i64>,
    pub rule_name: &'a str,
    pub ticket_id: Option<i64>,
    pub message_id: Option<i64>,
    pub trigger: &'a str,
    pub matched: bool,
    pub conditions: serde_json::Value,
    pub actions: serde_json::Value,
    pub depth: i64,
    pub error: Option<String>,
    pub at: i64,
    /// What the run was for ('message:ID', 'time:EPISODE', 'events:ID:DEPTH'): one run per
    /// rule, ticket and key, so a retried event does not run the rule's actions again.
    pub run_key: Option<String>,
}

/// Which entries of the log to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub rule_id: Option<i64>,
    pub ticket_id: Option<i64>,
    pub matched_only: bool,
    /// Entries older than this id (paging backwards from the newest).
    pub before: Option<i64>,
}

/// A message as rules see it.
#[derive(Debug, Clone, Default)]
pub struct MessageState {
    pub id: i64,
    pub ticket_id: i64,
    pub direction: String,
    pub source: String,
    pub subject: String,
    pub text_body: Option<String>,
    pub stripped_text: Option<String>,
    pub from_address: Option<String>,
    pub to: Vec<String>,
    pub classification: String,
    pub flags: Vec<String>,
    pub auth_results: Option<String>,
    pub has_attachment: bool,
    pub received_at: i64,
}

/// The SQL side of a time-based rule's conditions: a superset of the tickets it can match,
/// so that the scheduler only looks at those (with the indexes of migration 0007).
#[derive(Debug, Clone, Default)]
pub struct TimeFilter {
    pub statuses: Option<Vec<String>>,
    pub customer_message_before: Option<i64>,
    pub agent_reply_before: Option<i64>,
    pub created_before: Option<i64>,
    pub customer_wrote_last: Option<bool>,
    pub without_tags: Vec<String>,
}

/// A message committed after the rules worker's cursor.
#[derive(Debug, Clone)]
pub struct NewMessageEvent {
    pub id: i64,
    pub account_id: i64,
    pub ticket_id: i64,
    pub direction: String,
    pub source: String,
    /// The message opened its ticket.
    pub first_in_ticket: bool,
}

#[derive(Debug, Clone)]
pub struct TicketEventRow {
    pub id: i64,
    pub account_id: i64,
    pub ticket_id: i64,
    pub kind: String,
    pub data: serde_json::Value,
    pub created_at: i64,
}

/// Everything the simulation replays for one ticket.
#[derive(Debug, Clone, Default)]
pub struct SimTicket {
    pub state: TicketFacts,
    pub messages: Vec<MessageState>,
    pub events: Vec<TicketEventRow>,
}

fn list<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

const STATE_SELECT: &str = "SELECT t.id, t.account_id, t.subject, t.status, t.priority,
        u.email, u.name, t.team, t.flags, t.created_at, t.last_customer_message_at,
        t.last_agent_reply_at, c.email, c.name, COALESCE(c.attributes, '{}')
    FROM tickets t LEFT JOIN customers c ON c.id = t.customer_id
    LEFT JOIN users u ON u.id = t.assignee_id";

fn ticket_state(r: &sqlx::sqlite::SqliteRow) -> Result<TicketFacts, sqlx::Error> {
    let customer_email: Option<String> = r.try_get(12)?;
    let customer_name: Option<String> = r.try_get(13)?;
    let attributes: String = r.try_get(14)?;
    Ok(TicketFacts {
        id: r.try_get(0)?,
        subject: r.try_get(2)?,
        status: r.try_get(3)?,
        priority: r.try_get(4)?,
        assignee_email: r.try_get(5)?,
        assignee_name: r.try_get(6)?,
        team: r.try_get(7)?,
        flags: list(&r.try_get::<String, _>(8)?),
        created_at: r.try_get(9)?,
        last_customer_message_at: r.try_get(10)?,
        last_agent_reply_at: r.try_get(11)?,
        customer: customer_email.map(|email| CustomerFacts {
            email,
            name: customer_name,
            attributes: serde_json::from_str(&attributes).unwrap_or_else(|_| serde_json::json!({})),
        }),
        tags: Vec::new(),
    })
}

fn message_state(
    r: &sqlx::sqlite::SqliteRow,
    with_text: bool,
) -> Result<MessageState, sqlx::Error> {
    let to: Vec<super::Mailbox> = list(&r.try_get::<String, _>(8)?);
    Ok(MessageState {
        id: r.try_get(0)?,
        ticket_id: r.try_get(1)?,
        direction: r.try_get(2)?,
        source: r.try_get(3)?,
        subject: r.try_get(4)?,
        text_body: if with_text { r.try_get(5)? } else { None },
        stripped_text: if with_text { r.try_get(6)? } else { None },
        from_address: r.try_get(7)?,
        to: to.into_iter().map(|m| m.address).collect(),
        classification: r.try_get(9)?,
        flags: list(&r.try_get::<String, _>(10)?),
        auth_results: r.try_get(11)?,
        has_attachment: r.try_get::<i64, _>(12)? != 0,
        received_at: r.try_get(13)?,
    })
}

fn message_select(with_text: bool) -> String {
    let text = if with_text {
        "body_text(m.text_body), m.stripped_text"
    } else {
        "NULL, NULL"
    };
    let attachments = if with_text {
        "EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id AND a.disposition = 'attachment')"
    } else {
        "0"
    };
    format!(
        "SELECT m.id, m.ticket_id, m.direction, m.source, m.subject, {text}, m.from_address,
                m.to_list, m.classification, m.flags, m.auth_results, {attachments}, m.received_at
         FROM messages m"
    )
}

impl Store {
    pub async fn create_rule(
        &self,
        account: AccountId,
        rule: &NewRule<'_>,
    ) -> Result<RuleRecord, StoreError> {
        self.account(account).await?;
        let now = now_ms();
        let row = RuleColumns::of(rule);
        let id: i64 = self
            .write(move |conn| {
                conn.query_row(
                    "INSERT INTO rules (account_id, name, trigger, position, enabled, definition, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
                    (account.0, &row.name, &row.trigger, row.position, row.enabled, &row.definition, now),
                    |r| r.get(0),
                )
                .map_err(|e| {
                    conflict_when_taken(e, || {
                        format!(
                            "a rule named {:?} already exists in this account; choose another name or replace it",
                            row.name
                        )
                    })
                })
            })
            .await?;
        self.rule(id, account).await
    }

    /// Replaces a rule's definition (same id, log kept).
    pub async fn replace_rule(
        &self,
        id: i64,
        account: AccountId,
        rule: &NewRule<'_>,
    ) -> Result<RuleRecord, StoreError> {
        self.rule(id, account).await?;
        let now = now_ms();
        let row = RuleColumns::of(rule);
        self.write(move |conn| {
            conn.execute(
                "UPDATE rules SET name = ?1, trigger = ?2, position = ?3, enabled = ?4, definition = ?5, updated_at = ?6
                 WHERE id = ?7 AND account_id = ?8",
                (&row.name, &row.trigger, row.position, row.enabled, &row.definition, now, id, account.0),
            )
            .map_err(|e| conflict_when_taken(e, || format!("another rule is named {:?}", row.name)))
        })
        .await?;
        self.rule(id, account).await
    }

    pub async fn rule(&self, id: i64, account: AccountId) -> Result<RuleRecord, StoreError> {
        self.one_of_account(RULE_SELECT, id, account, "rule", rule_record)
            .await
    }

    /// The account's rules in the order they run.
    pub async fn rules(&self, account: AccountId) -> Result<Vec<RuleRecord>, StoreError> {
        self.all_of_account(RULE_SELECT, "position, id", account, rule_record)
            .await
    }

    /// The row `id` of `select`'s table when it belongs to the account; NotFound naming
    /// `what` otherwise (another account's ids are not found).
    async fn one_of_account<R, T>(
        &self,
        select: &str,
        id: i64,
        account: AccountId,
        what: &str,
        record: fn(R) -> T,
    ) -> Result<T, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let row: Option<R> = sqlx::query_as(&format!("{select} WHERE id = ? AND account_id = ?"))
            .bind(id)
            .bind(account.0)
            .fetch_optional(self.pool())
            .await?;
        row.map(record)
            .ok_or_else(|| StoreError::NotFound(format!("no {what} with id {id}")))
    }

    /// Every row of `select`'s table in the account, in `order`; NotFound without the account.
    async fn all_of_account<R, T>(
        &self,
        select: &str,
        order: &str,
        account: AccountId,
        record: fn(R) -> T,
    ) -> Result<Vec<T>, StoreError>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        self.account(account).await?;
        let rows: Vec<R> =
            sqlx::query_as(&format!("{select} WHERE account_id = ? ORDER BY {order}"))
                .bind(account.0)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// Enabled rules of the account, in order.
    pub async fn enabled_rules(&self, account: AccountId) -> Result<Vec<RuleRecord>, StoreError> {
        let rows: Vec<RuleRow> = sqlx::query_as(&format!(
            "{RULE_SELECT} WHERE account_id = ? AND enabled = 1 ORDER BY position, id"
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(rule_record).collect())
    }

    /// Enabled time-based rules of every account, in order.
    pub async fn enabled_time_rules(&self) -> Result<Vec<RuleRecord>, StoreError> {
        let rows: Vec<RuleRow> = sqlx::query_as(&format!(
            "{RULE_SELECT} WHERE trigger = 'time' AND enabled = 1 ORDER BY account_id, position, id"
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(rule_record).collect())
    }

    pub async fn set_rule_enabled(
        &self,
        id: i64,
        account: AccountId,
        enabled: bool,
    ) -> Result<RuleRecord, StoreError> {
        let now = now_ms();
        // The definition is read and written back in one write, so that a replace_rule
        // committed in between is not overwritten with the old definition.
        self.write(move |conn| {
            let text: String = conn
                .query_row(
                    "SELECT definition FROM rules WHERE id = ?1 AND account_id = ?2",
                    (id, account.0),
                    |r| r.get(0),
                )
                .map_err(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => {
                        StoreError::NotFound(format!("no rule with id {id}"))
                    }
                    e => e.into(),
                })?;
            let mut definition = match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    return Err(StoreError::Internal(format!(
                        "the stored definition of rule {id} is not a JSON object"
                    )))
                }
            };
            definition.insert("enabled".into(), enabled.into());
            conn.execute(
                "UPDATE rules SET enabled = ?1, definition = ?2, updated_at = ?3 WHERE id = ?4 AND account_id = ?5",
                (
                    enabled,
                    serde_json::Value::Object(definition).to_string(),
                    now,
                    id,
                    account.0,
                ),
            )?;
            Ok(())
        })
        .await?;
        self.rule(id, account).await
    }

    /// Deletes a rule; its log entries stay, with the name.
    pub async fn delete_rule(&self, id: i64, account: AccountId) -> Result<(), StoreError> {
        self.rule(id, account).await?;
        self.write(move |conn| {
            conn.execute(
                "UPDATE rule_runs SET rule_id = NULL WHERE rule_id = ?1 AND account_id = ?2",
                (id, account.0),
            )?;
            conn.execute(
                "DELETE FROM rules WHERE id = ?1 AND account_id = ?2",
                (id, account.0),
            )?;
            Ok(())
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_macro(
        &self,
        account: AccountId,
        name: &str,
        subject: Option<&str>,
        body: &str,
        missing: &str,
        fallback: &str,
    ) -> Result<MacroRecord, StoreError> {
        self.account(account).await?;
        let now = now_ms();
        let (name, subject, body) = (
            name.to_string(),
            subject.map(str::to_string),
            body.to_string(),
        );
        let (missing, fallback) = (missing.to_string(), fallback.to_string());
        let id: i64 = self
            .write(move |conn| {
                conn.query_row(
                    "INSERT INTO macros (account_id, name, subject, body, missing, fallback, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
                    (account.0, &name, &subject, &body, &missing, &fallback, now),
                    |r| r.get(0),
                )
                .map_err(|e| {
                    conflict_when_taken(e, || {
                        format!("a macro named {name:?} already exists in this account")
                    })
                })
            })
            .await?;
        self.macro_record(id, account).await
    }

    pub async fn macro_record(
        &self,
        id: i64,
        account: AccountId,
    ) -> Result<MacroRecord, StoreError> {
        self.one_of_account(MACRO_SELECT, id, account, "macro", macro_record)
            .await
    }

    pub async fn macros(&self, account: AccountId) -> Result<Vec<MacroRecord>, StoreError> {
        self.all_of_account(MACRO_SELECT, "name", account, macro_record)
            .await
    }

    /// Deletes a macro unless a rule replies with it.
    pub async fn delete_macro(&self, id: i64, account: AccountId) -> Result<(), StoreError> {
        let name = self.macro_record(id, account).await?.name;
        // The check and the delete in one write: a rule saved in between cannot be left
        // naming a macro that is gone.
        self.write(move |conn| {
            let mut rules = conn.prepare_cached(
                "SELECT id, name, definition FROM rules WHERE account_id = ?1 ORDER BY position, id",
            )?;
            let rows = rules.query_map([account.0], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (rule_id, rule_name, definition) = row?;
                let definition: serde_json::Value =
                    serde_json::from_str(&definition).unwrap_or_default();
                if replies_with_macro(&definition, &name) {
                    return Err(StoreError::Conflict(format!(
                        "the rule {rule_name:?} (id {rule_id}) replies with the macro {name:?}: change or delete the rule first"
                    )));
                }
            }
            conn.execute(
                "DELETE FROM macros WHERE id = ?1 AND account_id = ?2",
                (id, account.0),
            )?;
            Ok(())
        })
        .await
    }

    /// Logs a run; `None` when a run with the same rule, ticket and key is already logged.
    pub async fn insert_rule_run(&self, run: &NewRuleRun<'_>) -> Result<Option<i64>, StoreError> {
        let run = RunColumns::of(run);
        self.write(move |conn| insert_run(conn, &run)).await
    }

    /// Whether the rule already ran on the ticket for this key, and if so whether it matched.
    pub async fn rule_run_for_key(
        &self,
        account: AccountId,
        rule: i64,
        ticket: i64,
        key: &str,
    ) -> Result<Option<bool>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT matched != 0 FROM rule_runs
             WHERE rule_id = ? AND ticket_id = ? AND run_key = ? AND account_id = ?",
        )
        .bind(rule)
        .bind(ticket)
        .bind(key)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Applies a rule's changes to a ticket and logs its run in one transaction, so that
    /// the changes are made once per run key: returns false (and changes nothing) when the
    /// run is already logged.
    pub async fn commit_rule_run(
        &self,
        ticket: i64,
        by: &ChangeAuthor,
        changes: &[TicketChange],
        run: &NewRuleRun<'_>,
    ) -> Result<bool, StoreError> {
        let (by, changes, run) = (by.clone(), changes.to_vec(), RunColumns::of(run));
        self.write(move |conn| {
            if let Some(key) = &run.run_key {
                let done: Option<i64> = conn
                    .query_row(
                        "SELECT id FROM rule_runs WHERE rule_id IS ?1 AND ticket_id = ?2 AND run_key = ?3",
                        (run.rule_id, ticket, key),
                        |r| r.get(0),
                    )
                    .optional()?;
                if done.is_some() {
                    return Ok(false);
                }
            }
            apply_ticket_changes(conn, AccountId(run.account), ticket, &by, &changes, run.at)?;
            Ok(insert_run(conn, &run)?.is_some())
        })
        .await
    }

    /// The rule log, newest first.
    pub async fn rule_runs(
        &self,
        account: AccountId,
        filter: &RunFilter,
        limit: u32,
    ) -> Result<Vec<RuleRunView>, StoreError> {
        self.account(account).await?;
        let rows = sqlx::query(
            "SELECT id, rule_id, rule_name, ticket_id, message_id, trigger, matched, conditions, actions,
                    depth, error, created_at
             FROM rule_runs
             WHERE account_id = ?1 AND (?2 IS NULL OR rule_id = ?2) AND (?3 IS NULL OR ticket_id = ?3)
               AND (NOT ?4 OR matched = 1) AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC LIMIT ?6",
        )
        .bind(account.0)
        .bind(filter.rule_id)
        .bind(filter.ticket_id)
        .bind(filter.matched_only)
        .bind(filter.before)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RuleRunView {
                    id: r.try_get(0)?,
                    rule_id: r.try_get(1)?,
                    rule_name: r.try_get(2)?,
                    ticket_id: r.try_get(3)?,
                    message_id: r.try_get(4)?,
                    trigger: r.try_get(5)?,
                    matched: r.try_get::<i64, _>(6)? != 0,
                    conditions: serde_json::from_str(&r.try_get::<String, _>(7)?)
                        .unwrap_or_default(),
                    actions: serde_json::from_str(&r.try_get::<String, _>(8)?).unwrap_or_default(),
                    depth: r.try_get(9)?,
                    error: r.try_get(10)?,
                    created_at: ms(r.try_get(11)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// A ticket as rules see it, with its tags.
    pub async fn ticket_state(
        &self,
        account: AccountId,
        ticket: i64,
    ) -> Result<Option<TicketFacts>, StoreError> {
        let row = sqlx::query(&format!(
            "{STATE_SELECT} WHERE t.id = ? AND t.account_id = ? AND t.merged_into IS NULL"
        ))
        .bind(ticket)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut state = ticket_state(&row)?;
        state.tags =
            sqlx::query_scalar("SELECT tag FROM ticket_tags WHERE ticket_id = ? ORDER BY tag")
                .bind(ticket)
                .fetch_all(self.pool())
                .await?;
        Ok(Some(state))
    }

    pub async fn message_state(
        &self,
        account: AccountId,
        message: i64,
    ) -> Result<Option<MessageState>, StoreError> {
        self.first_message_state("m.id = ?", "m.id", message, account)
            .await
    }

    /// The ticket's latest inbound message.
    pub async fn last_inbound_state(
        &self,
        account: AccountId,
        ticket: i64,
    ) -> Result<Option<MessageState>, StoreError> {
        self.first_message_state(
            "m.ticket_id = ? AND m.direction = 'inbound'",
            "m.received_at DESC, m.id DESC",
            ticket,
            account,
        )
        .await
    }

    /// The first message of the account in `order` matching `filter` (one `?`, for
    /// `value`), with its text.
    async fn first_message_state(
        &self,
        filter: &str,
        order: &str,
        value: i64,
        account: AccountId,
    ) -> Result<Option<MessageState>, StoreError> {
        let row = sqlx::query(&format!(
            "{} WHERE {filter} AND m.account_id = ? ORDER BY {order} LIMIT 1",
            message_select(true)
        ))
        .bind(value)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| message_state(&r, true)).transpose()?)
    }

    /// The account's enabled users: (id, e-mail, name).
    pub async fn rule_agents(
        &self,
        account: AccountId,
    ) -> Result<Vec<(i64, String, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, email, name FROM users WHERE account_id = ? AND disabled = 0 ORDER BY id",
        )
        .bind(account.0)
        .fetch_all(self.pool())
        .await?)
    }

    /// When `rule` last replied automatically to `customer`.
    pub async fn last_auto_reply(
        &self,
        rule: i64,
        customer: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MAX(sent_at) FROM rule_auto_replies WHERE rule_id = ? AND customer = ?",
        )
        .bind(rule)
        .bind(customer)
        .fetch_one(self.pool())
        .await?)
    }

    /// Wakes the snoozed tickets whose time has come (`snoozed_until <= now`): open again,
    /// with a status_changed event (which ticket_updated rules see). Returns how many.
    pub async fn wake_snoozed(&self, now: i64, limit: u32) -> Result<usize, StoreError> {
        // Most passes have nothing to wake: a read, without taking the write lock.
        let any: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tickets WHERE status = 'snoozed' AND snoozed_until <= ? LIMIT 1",
        )
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        if any.is_none() {
            return Ok(0);
        }
        self.write(move |conn| {
            let due = conn
                .prepare_cached(
                    "SELECT id, account_id, snoozed_until FROM tickets
                     WHERE status = 'snoozed' AND snoozed_until <= ?1 ORDER BY snoozed_until, id LIMIT ?2",
                )?
                .query_map((now, i64::from(limit)), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut reopen = conn.prepare_cached(
                "UPDATE tickets SET status = 'open', snoozed_until = NULL,
                    updated_at = MAX(updated_at, ?1) WHERE id = ?2",
            )?;
            let mut record = conn.prepare_cached(
                "INSERT INTO ticket_events (account_id, ticket_id, kind, data, created_at)
                 VALUES (?1, ?2, 'status_changed', ?3, ?4)",
            )?;
            for (ticket, account, until) in &due {
                reopen.execute((now, ticket))?;
                let data =
                    serde_json::json!({"from": "snoozed", "to": "open", "snooze_ended": until});
                record.execute((account, ticket, data.to_string(), now))?;
            }
            Ok(due.len())
        })
        .await
    }

    /// Remembers an automated reply of `rule` to `customer`, for the rule's reply window.
    pub async fn note_auto_reply(
        &self,
        account: AccountId,
        rule: i64,
        customer: &str,
        ticket: i64,
        message: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        let customer = customer.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO rule_auto_replies (account_id, rule_id, customer, ticket_id, message_id, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (account.0, rule, &customer, ticket, message, now),
            )?;
            Ok(())
        })
        .await
    }

    /// A time-based rule fired on a ticket in this episode.
    pub async fn record_fire(
        &self,
        rule: i64,
        ticket: i64,
        episode: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO rule_fires (rule_id, ticket_id, episode, fired_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (rule_id, ticket_id) DO UPDATE SET episode = excluded.episode, fired_at = excluded.fired_at",
                (rule, ticket, episode, now),
            )?;
            Ok(())
        })
        .await
    }

    /// Tickets a time-based rule may match now, not yet fired on in their current episode.
    pub async fn time_candidates(
        &self,
        account: AccountId,
        rule: i64,
        filter: &TimeFilter,
        after: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError> {
        let mut sql = String::from(
            "SELECT t.id FROM tickets t WHERE t.account_id = ? AND t.merged_into IS NULL AND t.id > ?",
        );
        if let Some(statuses) = &filter.statuses {
            let marks = vec!["?"; statuses.len()].join(", ");
            sql.push_str(&format!(" AND t.status IN ({marks})"));
        }
        if filter.customer_message_before.is_some() {
            sql.push_str(" AND t.last_customer_message_at <= ?");
        }
        if filter.agent_reply_before.is_some() {
            sql.push_str(" AND COALESCE(t.last_agent_reply_at, t.created_at) <= ?");
        }
        if filter.created_before.is_some() {
            sql.push_str(" AND t.created_at <= ?");
        }
        match filter.customer_wrote_last {
            Some(true) => sql.push_str(
                " AND t.last_customer_message_at IS NOT NULL AND t.last_customer_message_at >= COALESCE(t.last_agent_reply_at, 0)",
            ),
            Some(false) => sql.push_str(
                " AND t.last_agent_reply_at IS NOT NULL AND t.last_agent_reply_at > COALESCE(t.last_customer_message_at, 0)",
            ),
            None => {}
        }
        for _ in &filter.without_tags {
            sql.push_str(
                " AND NOT EXISTS (SELECT 1 FROM ticket_tags g WHERE g.ticket_id = t.id AND g.tag = ?)",
            );
        }
        sql.push_str(
            " AND NOT EXISTS (SELECT 1 FROM rule_fires f WHERE f.rule_id = ? AND f.ticket_id = t.id
                 AND f.episode >= MAX(t.created_at, COALESCE(t.last_customer_message_at, 0), COALESCE(t.last_agent_reply_at, 0)))
             ORDER BY t.id LIMIT ?",
        );
        let mut q = sqlx::query_scalar::<_, i64>(&sql)
            .bind(account.0)
            .bind(after);
        if let Some(statuses) = &filter.statuses {
            for s in statuses {
                q = q.bind(s.clone());
            }
        }
        for v in [
            filter.customer_message_before,
            filter.agent_reply_before,
            filter.created_before,
        ]
        .into_iter()
        .flatten()
        {
            q = q.bind(v);
        }
        for tag in &filter.without_tags {
            q = q.bind(tag.clone());
        }
        Ok(q.bind(rule)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn rule_cursor(&self, name: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT last_id FROM rule_cursors WHERE name = ?")
                .bind(name)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn set_rule_cursor(&self, name: &str, last_id: i64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO rule_cursors (name, last_id) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                (&name, last_id),
            )?;
            Ok(())
        })
        .await
    }

    /// Whether any account has an enabled rule that a message can fire (any but time rules).
    pub async fn any_message_rules(&self) -> Result<bool, StoreError> {
        let (any,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM rules WHERE enabled = 1 AND trigger <> 'time')",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(any)
    }

    /// The id of the newest message, if it is above `after`.
    pub async fn newest_message_after(&self, after: i64) -> Result<Option<i64>, StoreError> {
        let (newest,): (Option<i64>,) = sqlx::query_as("SELECT MAX(id) FROM messages WHERE id > ?")
            .bind(after)
            .fetch_one(self.pool())
            .await?;
        Ok(newest)
    }

    /// Messages committed after `after`, oldest first.
    pub async fn messages_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<NewMessageEvent>, StoreError> {
        let rows: Vec<(i64, i64, i64, String, String, bool)> = sqlx::query_as(
            "SELECT m.id, m.account_id, m.ticket_id, m.direction, m.source,
                    NOT EXISTS (SELECT 1 FROM messages p WHERE p.ticket_id = m.ticket_id AND p.id < m.id)
             FROM messages m WHERE m.id > ? ORDER BY m.id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NewMessageEvent {
                id: r.0,
                account_id: r.1,
                ticket_id: r.2,
                direction: r.3,
                source: r.4,
                first_in_ticket: r.5,
            })
            .collect())
    }

    /// Ticket events recorded after `after`, oldest first.
    pub async fn ticket_events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<TicketEventRow>, StoreError> {
        let rows: Vec<TicketEventColumns> = sqlx::query_as(
            "SELECT id, account_id, ticket_id, kind, data, created_at FROM ticket_events
             WHERE id > ? ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(ticket_event_row).collect())
    }

    /// The history the simulation replays: tickets with activity since `since`, with their
    /// messages (text only when asked) and events, in time order. Read-only.
    pub async fn simulation_history(
        &self,
        account: AccountId,
        since: i64,
        with_text: bool,
    ) -> Result<Vec<SimTicket>, StoreError> {
        self.account(account).await?;
        let rows = sqlx::query(&format!(
            "{STATE_SELECT} WHERE t.account_id = ? AND t.merged_into IS NULL
               AND (t.created_at >= ? OR t.updated_at >= ?) ORDER BY t.id"
        ))
        .bind(account.0)
        .bind(since)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        let mut tickets: Vec<SimTicket> = Vec::with_capacity(rows.len());
        let mut index = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let state = ticket_state(r)?;
            index.insert(state.id, tickets.len());
            tickets.push(SimTicket {
                state,
                ..Default::default()
            });
        }
        drop(rows);
        let tags: Vec<(i64, String)> = sqlx::query_as(
            "SELECT g.ticket_id, g.tag FROM ticket_tags g JOIN tickets t ON t.id = g.ticket_id
             WHERE t.account_id = ? ORDER BY g.ticket_id, g.tag",
        )
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        for (ticket, tag) in tags {
            if let Some(&i) = index.get(&ticket) {
                tickets[i].state.tags.push(tag);
            }
        }
        let messages = sqlx::query(&format!(
            "{} WHERE m.account_id = ? ORDER BY m.received_at, m.id",
            message_select(with_text)
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        for r in &messages {
            let m = message_state(r, with_text)?;
            if let Some(&i) = index.get(&m.ticket_id) {
                tickets[i].messages.push(m);
            }
        }
        drop(messages);
        let events: Vec<TicketEventColumns> = sqlx::query_as(
            "SELECT id, account_id, ticket_id, kind, data, created_at FROM ticket_events
             WHERE account_id = ? ORDER BY created_at, id",
        )
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        for r in events {
            if let Some(&i) = index.get(&r.2) {
                tickets[i].events.push(ticket_event_row(r));
            }
        }
        Ok(tickets)
    }
}

/// A `ticket_events` row: id, account_id, ticket_id, kind, data, created_at.
type TicketEventColumns = (i64, i64, i64, String, String, i64);

/// The event of a row; data that is not JSON reads as null.
fn ticket_event_row(r: TicketEventColumns) -> TicketEventRow {
    TicketEventRow {
        id: r.0,
        account_id: r.1,
        ticket_id: r.2,
        kind: r.3,
        data: serde_json::from_str(&r.4).unwrap_or_default(),
        created_at: r.5,
    }
}

/// The columns of a rule to write, owned (the writer's closure outlives the caller's
/// borrows, and may run more than once).
struct RuleColumns {
    name: String,
    trigger: String,
    position: i64,
    enabled: bool,
    definition: String,
}

impl RuleColumns {
    fn of(rule: &NewRule<'_>) -> Self {
        Self {
            name: rule.name.to_string(),
            trigger: rule.trigger.to_string(),
            position: rule.position,
            enabled: rule.enabled,
            definition: rule.definition.to_string(),
        }
    }
}

/// The columns of a run log entry, owned (see [`RuleColumns`]).
struct RunColumns {
    account: i64,
    rule_id: Option<i64>,
    rule_name: String,
    ticket_id: Option<i64>,
    message_id: Option<i64>,
    trigger: String,
    matched: bool,
    conditions: String,
    actions: String,
    depth: i64,
    error: Option<String>,
    at: i64,
    run_key: Option<String>,
}

impl RunColumns {
    fn of(run: &NewRuleRun<'_>) -> Self {
        Self {
            account: run.account.0,
            rule_id: run.rule_id,
            rule_name: run.rule_name.to_string(),
            ticket_id: run.ticket_id,
            message_id: run.message_id,
            trigger: run.trigger.to_string(),
            matched: run.matched,
            conditions: run.conditions.to_string(),
            actions: run.actions.to_string(),
            depth: run.depth,
            error: run.error.clone(),
            at: run.at,
            run_key: run.run_key.clone(),
        }
    }
}

/// Logs a run; `None` when a run with the same rule, ticket and key is already logged.
fn insert_run(conn: &Connection, run: &RunColumns) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO rule_runs (account_id, rule_id, rule_name, ticket_id, message_id, trigger, matched,
                                    conditions, actions, depth, error, created_at, run_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT DO NOTHING RETURNING id",
        )?
        .query_row(
            (
                run.account,
                run.rule_id,
                &run.rule_name,
                run.ticket_id,
                run.message_id,
                &run.trigger,
                run.matched,
                &run.conditions,
                &run.actions,
                run.depth,
                &run.error,
                run.at,
                &run.run_key,
            ),
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TicketStatus;
    use crate::store::test_fixtures::{count, store_with_ticket, tags};
    use serde_json::json;

    fn new_rule<'a>(name: &'a str, definition: &'a serde_json::Value) -> NewRule<'a> {
        NewRule {
            name,
            trigger: "message_received",
            position: 0,
            enabled: true,
            definition,
        }
    }

    fn run<'a>(account: AccountId, ticket: i64, key: &str) -> NewRuleRun<'a> {
        NewRuleRun {
            account,
            rule_id: None,
            rule_name: "vip",
            ticket_id: Some(ticket),
            message_id: None,
            trigger: "message_received",
            matched: true,
            conditions: json!([]),
            actions: json!([]),
            depth: 0,
            error: None,
            at: 1_000,
            run_key: Some(key.to_string()),
        }
    }

    fn by_rule() -> ChangeAuthor {
        ChangeAuthor::Rule {
            id: 1,
            name: "vip".into(),
            depth: 0,
        }
    }

    #[tokio::test]
    async fn a_taken_name_is_a_conflict_that_changes_nothing() {
        let (_dir, store, account, _) = store_with_ticket("Order").await;
        let definition = json!({"name": "vip"});
        store
            .create_rule(account, &new_rule("vip", &definition))
            .await
            .unwrap();
        let err = store
            .create_rule(account, &new_rule("vip", &definition))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m == "a rule named \"vip\" already exists in this account; choose another name or replace it"),
            "{err:?}"
        );
        let other = store
            .create_rule(account, &new_rule("other", &definition))
            .await
            .unwrap();
        let err = store
            .replace_rule(other.id, account, &new_rule("vip", &json!({"x": 1})))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m == "another rule is named \"vip\""),
            "{err:?}"
        );
        let kept = store.rule(other.id, account).await.unwrap();
        assert_eq!(
            (kept.name.as_str(), &kept.definition),
            ("other", &definition)
        );
        let replaced = store
            .replace_rule(other.id, account, &new_rule("renamed", &json!({"x": 2})))
            .await
            .unwrap();
        assert_eq!(
            (replaced.name.as_str(), &replaced.definition),
            ("renamed", &json!({"x": 2}))
        );

        store
            .create_macro(account, "thanks", Some("Re"), "Thanks", "empty", "")
            .await
            .unwrap();
        let err = store
            .create_macro(account, "thanks", None, "Other", "empty", "")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m == "a macro named \"thanks\" already exists in this account"),
            "{err:?}"
        );
        let macros = store.macros(account).await.unwrap();
        assert_eq!(macros.len(), 1);
        assert_eq!(macros[0].body, "Thanks");
    }

    #[tokio::test]
    async fn rules_and_macros_are_switched_and_deleted() {
        let (_dir, store, account, ticket) = store_with_ticket("Order").await;
        let uses =
            json!({"enabled": true, "actions": [{"type": "reply_with_macro", "macro": "thanks"}]});
        let rule = store
            .create_rule(account, &new_rule("replies", &uses))
            .await
            .unwrap();
        let off = store
            .set_rule_enabled(rule.id, account, false)
            .await
            .unwrap();
        assert!(!off.enabled);
        assert_eq!(off.definition["enabled"], false);
        let thanks = store
            .create_macro(account, "thanks", None, "Thanks", "empty", "")
            .await
            .unwrap();
        let err = store.delete_macro(thanks.id, account).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let want = format!(
            "the rule \"replies\" (id {}) replies with the macro \"thanks\"",
            rule.id
        );
        assert!(err.to_string().starts_with(&want), "{err}");
        assert_eq!(store.macros(account).await.unwrap().len(), 1);

        let mut logged = run(account, ticket, "message:1");
        logged.rule_id = Some(rule.id);
        assert!(store.insert_rule_run(&logged).await.unwrap().is_some());
        store.delete_rule(rule.id, account).await.unwrap();
        assert!(matches!(
            store.rule(rule.id, account).await,
            Err(StoreError::NotFound(_))
        ));
        // The log entry stays, with the name and without the rule.
        let runs = store
            .rule_runs(account, &RunFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].rule_id, runs[0].rule_name.as_str()), (None, "vip"));
        store.delete_macro(thanks.id, account).await.unwrap();
        assert!(store.macros(account).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_run_key_applies_the_changes_once() {
        let (_dir, store, account, ticket) = store_with_ticket("Order").await;
        let rule = store
            .create_rule(account, &new_rule("vip", &json!({})))
            .await
            .unwrap();
        let first = [TicketChange::AddTag("first".into())];
        let mut logged = run(account, ticket, "message:1");
        logged.rule_id = Some(rule.id);
        assert!(store
            .commit_rule_run(ticket, &by_rule(), &first, &logged)
            .await
            .unwrap());
        let again = [TicketChange::AddTag("again".into())];
        assert!(!store
            .commit_rule_run(ticket, &by_rule(), &again, &logged)
            .await
            .unwrap());
        assert_eq!(tags(&store, ticket).await, ["first"]);
        assert_eq!(store.insert_rule_run(&logged).await.unwrap(), None);
        assert_eq!(count(&store, "rule_runs").await, 1);
        assert_eq!(count(&store, "ticket_events").await, 1);
    }

    /// A list that fails part way (here a tag twice in a replacement) leaves the ticket as
    /// it was and logs no run, so that the worker may try the event again.
    #[tokio::test]
    async fn a_failing_change_leaves_neither_changes_nor_log() {
        let (_dir, store, account, ticket) = store_with_ticket("Order").await;
        let changes = [
            TicketChange::AddTag("kept".into()),
            TicketChange::SetStatus {
                status: TicketStatus::Closed,
                snoozed_until: None,
            },
            TicketChange::ReplaceTags(vec!["a".into(), "a".into()]),
        ];
        let logged = run(account, ticket, "message:1");
        let err = store
            .commit_rule_run(ticket, &by_rule(), &changes, &logged)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Writer(_)), "{err:?}");
        assert!(tags(&store, ticket).await.is_empty());
        let status: String = sqlx::query_scalar("SELECT status FROM tickets WHERE id = ?")
            .bind(ticket)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(status, "open");
        assert_eq!(count(&store, "rule_runs").await, 0);
        assert_eq!(count(&store, "ticket_events").await, 0);

        // Another account's ticket is not found, and nothing is logged either.
        let elsewhere = run(AccountId(account.0 + 1), ticket, "message:2");
        let err = store
            .commit_rule_run(ticket, &by_rule(), &changes[..1], &elsewhere)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(count(&store, "rule_runs").await, 0);
        // The same run then goes through.
        assert!(store
            .commit_rule_run(ticket, &by_rule(), &changes[..1], &logged)
            .await
            .unwrap());
        assert_eq!(tags(&store, ticket).await, ["kept"]);
    }

    #[tokio::test]
    async fn snoozed_tickets_wake_when_their_time_comes() {
        let (_dir, store, account, ticket) = store_with_ticket("Order").await;
        assert_eq!(store.wake_snoozed(5_000, 10).await.unwrap(), 0);
        let snooze = [TicketChange::SetStatus {
            status: TicketStatus::Snoozed,
            snoozed_until: Some(4_000),
        }];
        store
            .change_ticket(account, ticket, &by_rule(), &snooze)
            .await
            .unwrap();
        assert_eq!(store.wake_snoozed(3_999, 10).await.unwrap(), 0);
        assert_eq!(store.wake_snoozed(5_000, 10).await.unwrap(), 1);
        let (status, until): (String, Option<i64>) =
            sqlx::query_as("SELECT status, snoozed_until FROM tickets WHERE id = ?")
                .bind(ticket)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!((status.as_str(), until), ("open", None));
        let events = store.ticket_events_after(0, 10).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.kind.as_str(), &last.data),
            (
                "status_changed",
                &json!({"from": "snoozed", "to": "open", "snooze_ended": 4_000})
            )
        );
        assert_eq!(store.wake_snoozed(6_000, 10).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn scheduler_bookkeeping_is_kept() {
        let (_dir, store, account, ticket) = store_with_ticket("Order").await;
        assert_eq!(store.rule_cursor("messages").await.unwrap(), 0);
        store.set_rule_cursor("messages", 7).await.unwrap();
        // A cursor never goes back.
        store.set_rule_cursor("messages", 3).await.unwrap();
        assert_eq!(store.rule_cursor("messages").await.unwrap(), 7);

        let rule = store
            .create_rule(account, &new_rule("late", &json!({})))
            .await
            .unwrap();
        store.record_fire(rule.id, ticket, 10, 100).await.unwrap();
        store.record_fire(rule.id, ticket, 20, 200).await.unwrap();
        let fires: Vec<(i64, i64)> =
            sqlx::query_as("SELECT episode, fired_at FROM rule_fires WHERE rule_id = ?")
                .bind(rule.id)
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(fires, [(20, 200)]);

        assert_eq!(
            store.last_auto_reply(rule.id, "c@x.test").await.unwrap(),
            None
        );
        store
            .note_auto_reply(account, rule.id, "c@x.test", ticket, None, 300)
            .await
            .unwrap();
        assert_eq!(
            store.last_auto_reply(rule.id, "c@x.test").await.unwrap(),
            Some(300)
        );
    }
}

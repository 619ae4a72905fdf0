//! The rules worker of `postern serve`: runs rules after intake has committed, never before
//! the 250 and never in its way. It reads what was committed after its cursors (messages,
//! ticket events) in id order, so nothing is lost: mail that arrived while it was busy,
//! stopped or failing is picked up on the next pass, and a crash between the commit and
//! the rules only delays them. Intake wakes it (a [`tokio::sync::Notify`]); it also looks
//! every `rules.poll_interval`.

use super::live::{RuleEvent, RulesEngine};
use super::schema::Trigger;
use super::RulesError;
use crate::domain::AccountId;
use crate::store::{NewRuleRun, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 200;
/// Shortest time between the starts of two passes.
const MIN_GAP: Duration = Duration::from_millis(50);
/// Tries at one item before it is logged as failed and passed over.
const ATTEMPTS: u32 = 3;

/// Ticket events that mean "the ticket changed" for ticket_updated rules. Intake's own
/// events (merges, bounces) come with the message that caused them. The simulation replays
/// history with the same list.
pub(crate) const UPDATE_KINDS: &[&str] = &[
    "status_changed",
    "priority_changed",
    "assigned",
    "tags_set",
    "note_added",
    "tag_added",
    "tag_removed",
    "team_assigned",
];

impl RulesEngine {
    /// Processes everything committed since the cursors; returns how many items it read.
    pub async fn catch_up(&self) -> Result<usize, RulesError> {
        let mut seen = 0;
        loop {
            let n = self.messages_pass().await? + self.events_pass().await?;
            seen += n;
            self.cursors.save(&self.store, false).await?;
            if n == 0 {
                return Ok(seen);
            }
        }
    }

    /// Saves the worker's positions now (at shutdown).
    pub async fn save_cursors(&self) -> Result<(), RulesError> {
        Ok(self.cursors.save(&self.store, true).await?)
    }

    async fn messages_pass(&self) -> Result<usize, RulesError> {
        let cursor = self.cursors.get(&self.store, "messages").await?;
        // With no rule a message can fire (no account has one, as in most installations
        // at first) the messages are not read, only passed: reading them was a twentieth
        // of the server's CPU under a stream of mail. The newest id is taken before the
        // rules are asked about, so a message passed over was committed while there was no
        // rule for it; rules apply to mail that arrives once they are enabled.
        let newest = self.store.newest_message_after(cursor).await?;
        let Some(newest) = newest else {
            return Ok(0);
        };
        if !self.store.any_message_rules().await? {
            self.cursors.advance("messages", newest);
            return Ok(0);
        }
        let batch = self.store.messages_after(cursor, BATCH).await?;
        // Most accounts have no rules: one query per account and batch, not per message.
        let mut has_rules: HashMap<i64, bool> = HashMap::new();
        for m in &batch {
            // Imported history and what we wrote ourselves fire no rule; agents' replies
            // and notes arrive as ticket events.
            if m.direction == "inbound" && m.source != "import" && m.source != "rule" {
                let any = match has_rules.get(&m.account_id) {
                    Some(&any) => any,
                    None => {
                        let any = !self
                            .store
                            .enabled_rules(AccountId(m.account_id))
                            .await?
                            .is_empty();
                        has_rules.insert(m.account_id, any);
                        any
                    }
                };
                if any {
                    let triggers = if m.first_in_ticket {
                        vec![Trigger::TicketCreated, Trigger::MessageReceived]
                    } else {
                        vec![Trigger::MessageReceived, Trigger::TicketUpdated]
                    };
                    let event = RuleEvent {
                        account: AccountId(m.account_id),
                        ticket: m.ticket_id,
                        message: Some(m.id),
                        triggers,
                        depth: 0,
                        key: format!("message:{}", m.id),
                    };
                    self.run_logged(&event, "messages", m.id).await?;
                }
            }
            self.cursors.advance("messages", m.id);
        }
        Ok(batch.len())
    }

    async fn events_pass(&self) -> Result<usize, RulesError> {
        let cursor = self.cursors.get(&self.store, "ticket_events").await?;
        let batch = self.store.ticket_events_after(cursor, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.id) else {
            return Ok(0);
        };
        // One ticket_updated run per ticket and depth for the whole batch (a PATCH that
        // changes status and priority is one update), known by its first event: the same
        // key when the batch is read again after a failure.
        let mut updates: BTreeMap<(i64, i64, i64), i64> = BTreeMap::new();
        for e in &batch {
            if !UPDATE_KINDS.contains(&e.kind.as_str()) {
                continue;
            }
            let depth = match e.data["by"]["rule"].as_i64() {
                Some(_) => e.data["by"]["depth"].as_i64().unwrap_or(0) + 1,
                None => 0,
            };
            updates
                .entry((e.account_id, e.ticket_id, depth))
                .or_insert(e.id);
        }
        for ((account, ticket, depth), first) in updates {
            let event = RuleEvent {
                account: AccountId(account),
                ticket,
                message: None,
                triggers: vec![Trigger::TicketUpdated],
                depth,
                key: format!("events:{first}:{depth}"),
            };
            self.run_logged(&event, "ticket_events", last).await?;
        }
        self.cursors.advance("ticket_events", last);
        Ok(batch.len())
    }

    /// Runs an event. A failure stops the pass without moving the cursor, so the item is
    /// tried again (a busy database, a full disk); after [`ATTEMPTS`] failures it is logged
    /// in the rule log and passed over, so one bad item cannot block the rest. A full disk
    /// is no item's fault and fails every write, the log entry's too: the item waits for
    /// space however long that takes, and is never passed over for it. The mail itself is
    /// safe in the store whatever rules do.
    async fn run_logged(
        &self,
        event: &RuleEvent,
        cursor: &'static str,
        id: i64,
    ) -> Result<(), RulesError> {
        if let Err(e) = self.run_event(event).await {
            if matches!(e, RulesError::Store(StoreError::DiskFull(_))) {
                tracing::warn!(cursor, id, error = %e, "rules wait for disk space");
                return Err(e);
            }
            {
                let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
                let attempts = match *failures {
                    Some((c, i, n)) if c == cursor && i == id => n + 1,
                    _ => 1,
                };
                if attempts < ATTEMPTS {
                    *failures = Some((cursor, id, attempts));
                    tracing::warn!(cursor, id, attempts, error = %e, "rules failed; will retry");
                    return Err(e);
                }
                *failures = None;
            }
            tracing::error!(account = event.account.0, ticket = event.ticket, error = %e, "rules failed for an event");
            let _ = self
                .store
                .insert_rule_run(&NewRuleRun {
                    account: event.account,
                    rule_id: None,
                    rule_name: "(rules)",
                    ticket_id: Some(event.ticket),
                    message_id: event.message,
                    trigger: event.triggers.first().map_or("", |t| t.as_str()),
                    matched: false,
                    conditions: serde_json::json!([]),
                    actions: serde_json::json!([]),
                    depth: event.depth,
                    error: Some(format!("rules could not run: {e}")),
                    at: self.clock.now_ms(),
                    run_key: None,
                })
                .await;
        }
        Ok(())
    }
}

/// Runs the worker until `shutdown`: catch-up on wake-ups and every `poll`.
pub async fn run_worker(
    engine: Arc<RulesEngine>,
    wake: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let pass = tokio::time::Instant::now();
        if let Err(e) = engine.catch_up().await {
            tracing::error!(error = %e, "rules worker pass failed; retrying");
        }
        // A position not saved yet is saved on the next pass, within a second or so.
        let wait = if engine.cursors.unsaved() {
            poll.min(super::cursors::SAVE_EVERY)
        } else {
            poll
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        // Under a stream of mail, one pass for the commits of a short while rather than one
        // per commit: each pass costs its reads whatever it finds.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(pass + MIN_GAP) => {}
        }
    }
    if let Err(e) = engine.save_cursors().await {
        tracing::warn!(error = %e, "could not save the rules worker's position; it will read again from the last saved one");
    }
}

/// Runs the scheduler until `shutdown`: a pass every `interval`.
pub async fn run_scheduler(
    engine: Arc<RulesEngine>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let started = std::time::Instant::now();
        match engine.scheduler_pass().await {
            Ok(r) => tracing::debug!(
                rules = r.rules,
                candidates = r.candidates,
                fired = r.fired,
                woken = r.woken,
                millis = started.elapsed().as_millis() as u64,
                "scheduler pass"
            ),
            Err(e) => tracing::error!(error = %e, "scheduler pass failed"),
        }
    }
}

//! Live rules: run the account's enabled rules on a ticket when something happens (mail
//! received, ticket created or changed) and on the scheduler's ticks, execute the plans
//! and log every run.

use super::business_hours::BusinessHours;
use super::engine::{plan, Outcome, Plan, PlanContext, Step};
use super::facts::{dmarc_result, AccountFacts, Facts, MessageFacts};
use super::macros::{Macro, Missing};
use super::reply::{AutoReply, ReplySender};
use super::schema::{parse_rule, Condition, Field, Operand, Operator, Rule, Trigger};
use super::RulesError;
use crate::domain::{AccountId, ChangeAuthor, TicketChange, TicketId, TicketStatus};
use crate::store::{MacroRecord, MessageState, NewRuleRun, RuleRecord, Store, TimeFilter};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Where time comes from: the system clock, or one that tests move by hand.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// A clock that only moves when told.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(at: i64) -> Self {
        Self(AtomicI64::new(at))
    }
    pub fn set(&self, at: i64) {
        self.0.store(at, Ordering::SeqCst);
    }
    pub fn advance_minutes(&self, minutes: i64) {
        self.0.fetch_add(minutes * 60_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Default window of "one automated reply per customer per rule" (ms).
    pub reply_window_ms: i64,
    /// Depth of rule runs caused by other rules' changes beyond which nothing runs.
    pub max_depth: i64,
    /// Most tickets one time-based rule looks at in one pass.
    pub scheduler_batch: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            reply_window_ms: 24 * 3_600_000,
            max_depth: 3,
            scheduler_batch: 5_000,
        }
    }
}

/// A stored rule, parsed.
pub struct LoadedRule {
    pub record: RuleRecord,
    pub rule: Rule,
}

/// What runs for one account need besides the ticket.
pub struct AccountRules {
    pub account: AccountFacts,
    pub business_hours: Option<BusinessHours>,
    pub macros: HashMap<String, Macro>,
    pub agents: HashMap<String, (i64, Option<String>)>,
    pub rules: Vec<LoadedRule>,
}

pub fn macro_from_record(m: &MacroRecord) -> Macro {
    Macro {
        id: m.id,
        name: m.name.clone(),
        subject: m.subject.clone(),
        body: m.body.clone(),
        missing: if m.missing == "fallback" {
            Missing::Fallback(m.fallback.clone())
        } else {
            Missing::Empty
        },
    }
}

pub fn message_facts(m: &MessageState) -> MessageFacts {
    let full = m.text_body.clone().unwrap_or_default();
    let body = m
        .stripped_text
        .clone()
        .unwrap_or_else(|| full.trim_end().to_string());
    MessageFacts {
        id: m.id,
        subject: m.subject.clone(),
        body,
        body_full: full,
        from_address: m.from_address.clone().unwrap_or_default(),
        to: m.to.clone(),
        has_attachment: m.has_attachment,
        classification: m.classification.clone(),
        source: m.source.clone(),
        spoof_suspected: m.flags.iter().any(|f| f == "spoof_suspected"),
        dmarc: dmarc_result(m.auth_results.as_deref()),
    }
}

/// Loads what the rules of one account need (`only_enabled`: live runs).
pub async fn account_rules(
    store: &Store,
    account: AccountId,
    only_enabled: bool,
) -> Result<AccountRules, RulesError> {
    let view = store.account(account).await?;
    let settings = store.account_settings(account).await?;
    let business_hours = match &settings.business_hours {
        Some(v) => match BusinessHours::parse(v) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(account = account.0, error = %e, "business hours ignored");
                None
            }
        },
        None => None,
    };
    let macros = store
        .macros(account)
        .await?
        .iter()
        .map(|m| (m.name.clone(), macro_from_record(m)))
        .collect();
    let agents = store
        .rule_agents(account)
        .await?
        .into_iter()
        .map(|(id, email, name)| (email.to_ascii_lowercase(), (id, name)))
        .collect();
    let records = if only_enabled {
        store.enabled_rules(account).await?
    } else {
        store.rules(account).await?
    };
    let mut rules = Vec::with_capacity(records.len());
    for record in records {
        match parse_rule(&record.definition) {
            Ok(rule) => rules.push(LoadedRule { record, rule }),
            Err(e) => {
                tracing::error!(rule = record.id, error = %e, "stored rule no longer valid: skipped")
            }
        }
    }
    Ok(AccountRules {
        account: AccountFacts {
            id: view.id,
            name: view.name,
            from_address: view.from_address,
        },
        business_hours,
        macros,
        agents,
        rules,
    })
}

/// The SQL side of a time-based rule's conditions at `now` (see [`TimeFilter`]).
pub fn time_filter(c: &Condition, now: i64) -> TimeFilter {
    let mut f = TimeFilter::default();
    let conjuncts: Vec<&Condition> = match c {
        Condition::All(list) => list.iter().collect(),
        other => vec![other],
    };
    for c in conjuncts {
        match c {
            Condition::Test(t) => {
                let before = |d: i64| now - d * 60_000;
                let lower_bound = matches!(t.operator, Operator::GreaterThan | Operator::AtLeast);
                match (&t.field, &t.value) {
                    (Field::Status, Operand::Text(s, _)) if t.operator == Operator::Equals => {
                        f.statuses = Some(vec![s.clone()]);
                    }
                    (Field::Status, Operand::List(l, _)) => f.statuses = Some(l.clone()),
                    (Field::TimeSinceLastCustomerMessage, Operand::Duration(d, _))
                        if lower_bound =>
                    {
                        f.customer_message_before = Some(before(*d));
                    }
                    (Field::TimeSinceLastAgentReply, Operand::Duration(d, _)) if lower_bound => {
                        f.agent_reply_before = Some(before(*d));
                    }
                    (Field::TimeSinceCreated, Operand::Duration(d, _)) if lower_bound => {
                        f.created_before = Some(before(*d));
                    }
                    (Field::LastMessageFrom, Operand::Text(s, _))
                        if t.operator == Operator::Equals =>
                    {
                        f.customer_wrote_last = Some(s == "customer");
                    }
                    _ => {}
                }
            }
            // An exact stored tag excluded in SQL is also excluded by the folded comparison.
            Condition::Not(inner) => {
                if let Condition::Test(t) = inner.as_ref() {
                    if let (Field::Tags, Operator::Contains, Operand::Text(tag, _)) =
                        (&t.field, t.operator, &t.value)
                    {
                        f.without_tags.push(tag.clone());
                    }
                }
            }
            _ => {}
        }
    }
    f
}

/// The ticket changes of a matched plan, marked done (they are committed with the run's
/// log entry, or not at all), with the index of each one's action.
fn ticket_changes(p: &mut Plan) -> (Vec<TicketChange>, Vec<usize>) {
    let mut changes = Vec::new();
    let mut slots = Vec::new();
    for (i, a) in p.actions.iter_mut().enumerate() {
        let change = match &a.step {
            Some(Step::AddTag(t)) => TicketChange::AddTag(t.clone()),
            Some(Step::RemoveTag { tag, stored }) => TicketChange::RemoveTags {
                tag: tag.clone(),
                stored: stored.clone(),
            },
            Some(Step::SetStatus {
                status,
                snoozed_until,
            }) => match status.parse::<TicketStatus>() {
                Ok(status) => TicketChange::SetStatus {
                    status,
                    snoozed_until: *snoozed_until,
                },
                // The rule's schema admits only the four statuses.
                Err(e) => {
                    a.outcome = Outcome::Failed;
                    a.reason = Some(e);
                    continue;
                }
            },
            Some(Step::Assign { user_id, .. }) => TicketChange::Assign(*user_id),
            Some(Step::AssignTeam(t)) => TicketChange::Team(t.clone()),
            Some(Step::SetPriority(x)) => TicketChange::Priority(x.clone()),
            Some(Step::AddNote(n)) => TicketChange::Note {
                text: n.clone(),
                from_address: None,
                from_name: None,
            },
            Some(Step::Reply { .. }) => continue,
            None => {
                if a.outcome == Outcome::Planned {
                    // stop_processing
                    a.outcome = Outcome::Done;
                }
                continue;
            }
        };
        a.outcome = Outcome::Done;
        changes.push(change);
        slots.push(i);
    }
    (changes, slots)
}

/// One event for the rules of a ticket.
#[derive(Debug, Clone)]
pub struct RuleEvent {
    pub account: AccountId,
    pub ticket: i64,
    pub message: Option<i64>,
    /// The triggers this event stands for (in order: rules of all of them run together,
    /// by position).
    pub triggers: Vec<Trigger>,
    pub depth: i64,
    /// What the event is, stably across retries ('message:ID', 'events:FIRST_ID:DEPTH'):
    /// a rule runs once per ticket and key.
    pub key: String,
}

pub struct RulesEngine {
    pub store: Store,
    pub sender: Arc<dyn ReplySender>,
    pub config: RulesConfig,
    pub clock: Arc<dyn Clock>,
    /// Failed attempts at the item the worker is stuck on: (cursor name, id, attempts).
    pub(super) failures: std::sync::Mutex<Option<(&'static str, i64, u32)>>,
    /// The worker's positions in the messages and ticket-event streams.
    pub(super) cursors: super::cursors::WorkerCursors,
}

/// What one scheduler pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassReport {
    pub rules: usize,
    pub candidates: usize,
    pub fired: usize,
    /// Snoozed tickets woken (their snooze ended).
    pub woken: usize,
}

impl RulesEngine {
    pub fn new(
        store: Store,
        sender: Arc<dyn ReplySender>,
        config: RulesConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            sender,
            config,
            clock,
            failures: std::sync::Mutex::new(None),
            cursors: Default::default(),
        }
    }

    fn by(rule: &RuleRecord, depth: i64) -> ChangeAuthor {
        ChangeAuthor::Rule {
            id: rule.id,
            name: rule.name.clone(),
            depth,
        }
    }

    /// Runs the enabled rules of the event's triggers on its ticket, in order.
    pub async fn run_event(&self, event: &RuleEvent) -> Result<(), RulesError> {
        // Most events concern accounts without rules for them: one indexed query decides.
        let any = self
            .store
            .enabled_rules(event.account)
            .await?
            .iter()
            .any(|r| Trigger::parse(&r.trigger).is_some_and(|t| event.triggers.contains(&t)));
        if !any {
            return Ok(());
        }
        let ctx = account_rules(&self.store, event.account, true).await?;
        let rules: Vec<&LoadedRule> = ctx
            .rules
            .iter()
            .filter(|r| event.triggers.contains(&r.rule.trigger))
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let trigger_name = event
            .triggers
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join("+");
        if event.depth > self.config.max_depth {
            for r in &rules {
                self.store
                    .insert_rule_run(&NewRuleRun {
                        account: event.account,
                        rule_id: Some(r.record.id),
                        rule_name: &r.record.name,
                        ticket_id: Some(event.ticket),
                        message_id: event.message,
                        trigger: &trigger_name,
                        matched: false,
                        conditions: serde_json::json!([]),
                        actions: serde_json::json!([]),
                        depth: event.depth,
                        error: Some(format!(
                            "not run: changes made by rules may trigger rules {} levels deep at most (rules.max_depth); this stops loops between rules",
                            self.config.max_depth
                        )),
                        at: self.clock.now_ms(),
                        run_key: Some(event.key.clone()),
                    })
                    .await?;
            }
            return Ok(());
        }
        let Some(mut facts) = self.facts(&ctx, event.ticket, event.message).await? else {
            return Ok(());
        };
        for r in rules {
            let stop = self
                .run_rule(
                    &ctx,
                    r,
                    &mut facts,
                    &trigger_name,
                    event.message,
                    event.depth,
                    &event.key,
                )
                .await?;
            if stop {
                break;
            }
        }
        Ok(())
    }

    async fn facts(
        &self,
        ctx: &AccountRules,
        ticket: i64,
        message: Option<i64>,
    ) -> Result<Option<Facts>, RulesError> {
        let account = AccountId(ctx.account.id);
        let Some(state) = self.store.ticket_state(account, ticket).await? else {
            return Ok(None);
        };
        let message = match message {
            Some(id) => self.store.message_state(account, id).await?,
            None => self.store.last_inbound_state(account, ticket).await?,
        };
        Ok(Some(Facts {
            now: self.clock.now_ms(),
            account: ctx.account.clone(),
            ticket: state,
            message: message.as_ref().map(message_facts),
            business_hours: ctx.business_hours.clone(),
        }))
    }

    /// Plans, executes and logs one rule; returns whether it asked to stop processing.
    ///
    /// Once per rule, ticket and `key`: a retry of the event (a failure later in the pass)
    /// finds the run logged and does nothing again. The reply goes first, then the ticket's
    /// changes and the log entry in one transaction: a failure between the two leaves no
    /// change, and the retry's reply is stopped by the rule's reply window (logged as such)
    /// while its changes are made once.
    #[allow(clippy::too_many_arguments)]
    async fn run_rule(
        &self,
        ctx: &AccountRules,
        r: &LoadedRule,
        facts: &mut Facts,
        trigger: &str,
        message: Option<i64>,
        depth: i64,
        key: &str,
    ) -> Result<bool, RulesError> {
        let account = AccountId(ctx.account.id);
        let stops = |matched: bool| {
            matched
                && r.rule
                    .actions
                    .iter()
                    .any(|a| matches!(a, super::schema::Action::StopProcessing))
        };
        if let Some(matched) = self
            .store
            .rule_run_for_key(account, r.record.id, facts.ticket.id, key)
            .await?
        {
            return Ok(stops(matched));
        }
        let customer = facts.ticket.customer.as_ref().map(|c| c.email.clone());
        let last_auto_reply_at = match (&customer, r.rule.macros().is_empty()) {
            (Some(c), false) => self.store.last_auto_reply(r.record.id, c).await?,
            _ => None,
        };
        let pctx = PlanContext {
            macros: &ctx.macros,
            agents: &ctx.agents,
            last_auto_reply_at,
            reply_window_ms: r
                .rule
                .reply_window_minutes
                .map_or(self.config.reply_window_ms, |m| m * 60_000),
            render: true,
        };
        let mut p = plan(&r.rule, facts, &pctx);
        let changes = if p.matched {
            self.send_replies(account, &r.record, facts.ticket.id, &mut p, facts.now)
                .await;
            ticket_changes(&mut p)
        } else {
            (Vec::new(), Vec::new())
        };
        let mut run = NewRuleRun {
            account,
            rule_id: Some(r.record.id),
            rule_name: &r.record.name,
            ticket_id: Some(facts.ticket.id),
            message_id: message,
            trigger,
            matched: p.matched,
            conditions: serde_json::to_value(&p.conditions).unwrap_or_default(),
            actions: serde_json::to_value(&p.actions).unwrap_or_default(),
            depth,
            error: None,
            at: facts.now,
            run_key: Some(key.to_string()),
        };
        let by = Self::by(&r.record, depth);
        if let Err(e) = self
            .store
            .commit_rule_run(facts.ticket.id, &by, &changes.0, &run)
            .await
        {
            if changes.0.is_empty() {
                return Err(e.into());
            }
            // The changes cannot be made (the ticket is gone, a constraint): log the run
            // with them failed, as a retry would fail the same way. If even that cannot be
            // written, the event is tried again as a whole.
            for &i in &changes.1 {
                p.actions[i].outcome = Outcome::Failed;
                p.actions[i].reason = Some(format!("not applied: {e}"));
            }
            run.actions = serde_json::to_value(&p.actions).unwrap_or_default();
            self.store.insert_rule_run(&run).await?;
        }
        Ok(p.stop)
    }

    /// Hands the planned replies to the sender; their outcome goes to the log.
    async fn send_replies(
        &self,
        account: AccountId,
        rule: &RuleRecord,
        ticket: i64,
        p: &mut Plan,
        now: i64,
    ) {
        for a in p.actions.iter_mut() {
            let Some(Step::Reply { to, subject, body }) = &a.step else {
                continue;
            };
            let reply = AutoReply {
                account,
                ticket: TicketId(ticket),
                rule_id: rule.id,
                to: to.clone(),
                subject: subject.clone(),
                text: body.clone(),
                automated: true,
                at: now,
            };
            match self.sender.send_reply(&reply).await {
                Ok(sent) => {
                    a.outcome = Outcome::Done;
                    a.reason = Some(match sent.note {
                        Some(n) => format!("message {}: {n}", sent.message),
                        None => format!("message {} queued", sent.message),
                    });
                }
                Err(e) => {
                    a.outcome = Outcome::Failed;
                    a.reason = Some(format!("the reply could not be handed over: {e}"));
                }
            }
        }
    }

    /// One pass of the scheduler over every enabled time-based rule.
    pub async fn scheduler_pass(&self) -> Result<PassReport, RulesError> {
        let now = self.clock.now_ms();
        let mut report = PassReport::default();
        // Snoozes that have ended first: the tickets are open again for the rules below.
        loop {
            let n = self
                .store
                .wake_snoozed(now, self.config.scheduler_batch)
                .await?;
            report.woken += n;
            if n < self.config.scheduler_batch as usize {
                break;
            }
        }
        let records = self.store.enabled_time_rules().await?;
        let mut by_account: Vec<(AccountId, Vec<i64>)> = Vec::new();
        for r in &records {
            let a = AccountId(r.account_id);
            match by_account.last_mut() {
                Some((acc, ids)) if *acc == a => ids.push(r.id),
                _ => by_account.push((a, vec![r.id])),
            }
        }
        for (account, _) in by_account {
            let ctx = account_rules(&self.store, account, true).await?;
            // A ticket on which a rule said stop_processing is left alone by later rules
            // of this pass.
            let mut stopped: HashSet<i64> = HashSet::new();
            for r in ctx.rules.iter().filter(|r| r.rule.trigger == Trigger::Time) {
                report.rules += 1;
                let filter = time_filter(&r.rule.conditions, now);
                let mut after = 0;
                loop {
                    let candidates = self
                        .store
                        .time_candidates(
                            account,
                            r.record.id,
                            &filter,
                            after,
                            self.config.scheduler_batch,
                        )
                        .await?;
                    let Some(&last) = candidates.last() else {
                        break;
                    };
                    after = last;
                    report.candidates += candidates.len();
                    for ticket in candidates {
                        if stopped.contains(&ticket) {
                            continue;
                        }
                        let Some(mut facts) = self.facts(&ctx, ticket, None).await? else {
                            continue;
                        };
                        facts.now = now;
                        let episode = facts.ticket.episode();
                        // Evaluate first: a ticket that does not match now may match later,
                        // and is neither logged nor marked.
                        let (matched, _) = super::conditions::evaluate(&r.rule.conditions, &facts);
                        if !matched {
                            continue;
                        }
                        report.fired += 1;
                        let key = format!("time:{episode}");
                        let stop = self
                            .run_rule(&ctx, r, &mut facts, "time", None, 0, &key)
                            .await?;
                        self.store
                            .record_fire(r.record.id, ticket, episode, now)
                            .await?;
                        if stop {
                            stopped.insert(ticket);
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::engine::ActionResult;

    fn action(step: Option<Step>, outcome: Outcome) -> ActionResult {
        ActionResult {
            action: serde_json::json!({}),
            outcome,
            reason: None,
            rendered: None,
            step,
        }
    }

    #[test]
    fn a_plan_becomes_the_ticket_changes_of_its_planned_steps() {
        let mut p = Plan {
            matched: true,
            conditions: Vec::new(),
            actions: vec![
                action(
                    Some(Step::RemoveTag {
                        tag: "urgent".into(),
                        stored: vec!["URGENT".into(), "Urgent".into()],
                    }),
                    Outcome::Planned,
                ),
                action(
                    Some(Step::Reply {
                        to: "ana@client.test".into(),
                        subject: "Re".into(),
                        body: "Hi".into(),
                    }),
                    Outcome::Planned,
                ),
                action(None, Outcome::Skipped),
                action(
                    Some(Step::SetStatus {
                        status: "snoozed".into(),
                        snoozed_until: Some(60_000),
                    }),
                    Outcome::Planned,
                ),
                action(Some(Step::AddNote("Seen".into())), Outcome::Planned),
            ],
            stop: false,
        };
        let (changes, slots) = ticket_changes(&mut p);
        assert_eq!(
            changes,
            [
                TicketChange::RemoveTags {
                    tag: "urgent".into(),
                    stored: vec!["URGENT".into(), "Urgent".into()],
                },
                TicketChange::SetStatus {
                    status: TicketStatus::Snoozed,
                    snoozed_until: Some(60_000),
                },
                TicketChange::Note {
                    text: "Seen".into(),
                    from_address: None,
                    from_name: None,
                },
            ]
        );
        assert_eq!(slots, [0, 3, 4]);
        let outcomes: Vec<Outcome> = p.actions.iter().map(|a| a.outcome).collect();
        // The reply is the sender's to mark; a skipped action stays skipped.
        assert_eq!(
            outcomes,
            [
                Outcome::Done,
                Outcome::Planned,
                Outcome::Skipped,
                Outcome::Done,
                Outcome::Done
            ]
        );
    }
}

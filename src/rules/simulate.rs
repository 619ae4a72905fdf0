//! Simulation: what a rule would have done on the account's past tickets, enabled or not,
//! without any side effect (the store is only read).
//!
//! History is replayed in time order across all tickets with a virtual clock: messages
//! arrive (customer messages move `last_customer_message_at` and reopen the ticket, agents'
//! replies move `last_agent_reply_at`), recorded changes (status, priority, assignment,
//! tags) apply when they happened, and the rule is evaluated when its trigger would have
//! fired: at each customer message (message_received), at the first (ticket_created), at
//! later messages and recorded changes (ticket_updated), and for time-based rules at every
//! minute where a time_since_* condition starts to hold (minute precision, as the
//! scheduler's ticks). The rule's own planned actions change the virtual ticket, and its
//! automated replies count for the reply window, as they would have.
//!
//! The planning is [`super::engine::plan`], the code live rules run.
//!
//! What the history does not tell is assumed: a field with no recorded change (tags set by
//! import, a status never changed through the API) holds its present value throughout.

use super::conditions::TestResult;
use super::engine::{plan, ActionResult, Outcome, PlanContext};
use super::facts::{Facts, MessageFacts, TicketFacts};
use super::live::{account_rules, message_facts};
use super::schema::{Condition, Field, Operand, Operator, Rule, Trigger};
use super::RulesError;
use crate::domain::AccountId;
use crate::store::{MessageState, SimTicket, Store, TicketEventRow};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

const MINUTE: i64 = 60_000;
/// Checks of business hours per quiet interval, at most (every 30 minutes).
const MAX_HOUR_CHECKS: i64 = 2_000;
/// Matches listed in full in a report; the counts cover all of them.
pub const MAX_LISTED: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct SimMatch {
    pub ticket_id: i64,
    pub subject: String,
    pub customer: Option<String>,
    /// When the rule would have acted.
    pub at: chrono::DateTime<chrono::Utc>,
    pub trigger: &'static str,
    pub message_id: Option<i64>,
    /// The conditions, each with its value and result.
    pub conditions: Vec<TestResult>,
    /// Each action: planned (would be done), skipped, blocked by a guard or failed, with
    /// the rendered reply or note.
    pub actions: Vec<ActionResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimBlocked {
    pub ticket_id: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub action: serde_json::Value,
    pub outcome: Outcome,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SimTotals {
    pub tickets_examined: usize,
    pub messages_replayed: usize,
    pub evaluations: usize,
    pub matches: usize,
    pub tickets_matched: usize,
    pub actions_planned: usize,
    pub replies_planned: usize,
    pub actions_blocked: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SimulationReport {
    pub rule: String,
    pub trigger: Trigger,
    pub since: chrono::DateTime<chrono::Utc>,
    pub until: chrono::DateTime<chrono::Utc>,
    pub totals: SimTotals,
    /// Matches per day (in the account's business-hours time zone, else UTC): the
    /// forecast of the rule's daily activity.
    pub per_day: BTreeMap<String, usize>,
    /// Each time the rule would have acted (the first MAX_LISTED).
    pub matches: Vec<SimMatch>,
    /// Actions that a guard stopped or that could not be carried out, and why.
    pub blocked: Vec<SimBlocked>,
    pub notes: Vec<String>,
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// One ticket being replayed.
struct Replay {
    facts: TicketFacts,
    /// Messages and events merged, in time order.
    items: Vec<Item>,
    next: usize,
    last_inbound: Option<MessageFacts>,
    /// Bumped at every item: checks planned before it are stale.
    generation: u64,
    fired_episode: Option<i64>,
}

enum Item {
    Message(MessageState),
    Event(TicketEventRow),
}

impl Item {
    fn at(&self) -> i64 {
        match self {
            Item::Message(m) => m.received_at,
            Item::Event(e) => e.created_at,
        }
    }
}

/// The durations the rule's time conditions wait for: (field, minutes, strict).
fn thresholds(c: &Condition, out: &mut Vec<(Field, i64, bool)>, hours: &mut bool) {
    match c {
        Condition::All(l) | Condition::Any(l) => {
            for c in l {
                thresholds(c, out, hours);
            }
        }
        Condition::Not(c) => thresholds(c, out, hours),
        Condition::Test(t) => {
            if t.field == Field::WithinBusinessHours {
                *hours = true;
            }
            if let Operand::Duration(d, _) = t.value {
                let strict = matches!(t.operator, Operator::GreaterThan | Operator::AtMost);
                out.push((t.field.clone(), d, strict));
            }
        }
    }
}

fn ceil_minute(t: i64) -> i64 {
    (t + MINUTE - 1).div_euclid(MINUTE) * MINUTE
}

/// Replays the account's history since `since` (ms) until `until` with `rule`.
pub async fn simulate(
    store: &Store,
    account: AccountId,
    rule: &Rule,
    rule_id: Option<i64>,
    since: i64,
    until: i64,
    default_reply_window_ms: i64,
) -> Result<SimulationReport, RulesError> {
    let ctx = account_rules(store, account, false).await?;
    let users: HashMap<i64, (String, Option<String>)> = store
        .users(account)
        .await?
        .into_iter()
        .map(|u| (u.id, (u.email, u.name)))
        .collect();
    let history = store
        .simulation_history(account, since, rule.needs_text())
        .await?;
    let mut totals = SimTotals {
        tickets_examined: history.len(),
        ..Default::default()
    };
    let mut replays: Vec<Replay> = history
        .into_iter()
        .map(|t| {
            totals.messages_replayed += t.messages.len();
            initial_replay(t)
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<(i64, u8, usize, u64)>> = BinaryHeap::new();
    for (i, r) in replays.iter().enumerate() {
        if let Some(item) = r.items.first() {
            heap.push(Reverse((item.at(), 0, i, 0)));
        }
    }
    let mut limits = Vec::new();
    let mut uses_hours = false;
    thresholds(&rule.conditions, &mut limits, &mut uses_hours);
    let reply_window_ms = rule
        .reply_window_minutes
        .map_or(default_reply_window_ms, |m| m * MINUTE);
    // The reply window is per customer across tickets: the virtual ledger of this rule.
    let mut replied: HashMap<String, i64> = HashMap::new();
    let mut matches = Vec::new();
    let mut blocked = Vec::new();
    let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
    let mut matched_tickets = std::collections::HashSet::new();
    let tz = ctx.business_hours.as_ref().map(|h| h.timezone);

    while let Some(Reverse((at, kind, i, generation))) = heap.pop() {
        if at > until {
            continue;
        }
        let mut evaluate_now: Option<(&'static str, Option<i64>)> = None;
        if kind == 0 {
            // The next item of ticket i.
            let r = &mut replays[i];
            let idx = r.next;
            r.next += 1;
            r.generation += 1;
            let next_at = r.items.get(r.next).map(|x| x.at());
            let item = &r.items[idx];
            let first_message = matches!(item, Item::Message(_))
                && !r.items[..idx].iter().any(|x| matches!(x, Item::Message(_)));
            match item {
                Item::Message(m) => {
                    apply_message(&mut r.facts, &mut r.last_inbound, m, first_message);
                    if m.direction == "inbound" && m.source != "rule" {
                        let t = match rule.trigger {
                            Trigger::MessageReceived => Some("message_received"),
                            Trigger::TicketCreated if first_message => Some("ticket_created"),
                            Trigger::TicketUpdated if !first_message => Some("ticket_updated"),
                            _ => None,
                        };
                        evaluate_now = t.map(|t| (t, Some(m.id)));
                    }
                }
                Item::Event(e) => {
                    apply_event(&mut r.facts, e, &users);
                    if rule.trigger == Trigger::TicketUpdated
                        && super::worker::UPDATE_KINDS.contains(&e.kind.as_str())
                    {
                        evaluate_now = Some(("ticket_updated", None));
                    }
                }
            }
            if let Some(n) = next_at {
                heap.push(Reverse((n, 0, i, 0)));
            }
            if at < since {
                // History before the window builds the state; the rule acts from `since`.
                evaluate_now = None;
            }
            if rule.trigger == Trigger::Time {
                let end = next_at.unwrap_or(until).min(until);
                for c in check_times(&r.facts, at.max(since), end, &limits, uses_hours) {
                    heap.push(Reverse((c, 1, i, r.generation)));
                }
            }
        } else {
            // A scheduler tick for ticket i; stale when an item came since.
            let r = &replays[i];
            if generation != r.generation {
                continue;
            }
            if r.fired_episode == Some(r.facts.episode()) {
                continue;
            }
            evaluate_now = Some(("time", None));
        }
        let Some((trigger, message_id)) = evaluate_now else {
            continue;
        };
        let r = &mut replays[i];
        let mut facts = Facts {
            now: at,
            account: ctx.account.clone(),
            ticket: r.facts.clone(),
            message: r.last_inbound.clone(),
            business_hours: ctx.business_hours.clone(),
        };
        totals.evaluations += 1;
        if !super::conditions::holds(&rule.conditions, &facts) {
            continue;
        }
        let customer = facts.ticket.customer.as_ref().map(|c| c.email.clone());
        let pctx = PlanContext {
            macros: &ctx.macros,
            agents: &ctx.agents,
            last_auto_reply_at: customer.as_ref().and_then(|c| replied.get(c).copied()),
            reply_window_ms,
            render: matches.len() < MAX_LISTED,
        };
        let p = plan(rule, &mut facts, &pctx);
        if !p.matched {
            continue;
        }
        if trigger == "time" {
            r.fired_episode = Some(r.facts.episode());
        }
        r.facts = std::mem::take(&mut facts.ticket);
        totals.matches += 1;
        matched_tickets.insert(r.facts.id);
        let day = match tz {
            Some(tz) => time(at).with_timezone(&tz).date_naive().to_string(),
            None => time(at).date_naive().to_string(),
        };
        *per_day.entry(day).or_default() += 1;
        for a in &p.actions {
            match a.outcome {
                Outcome::Planned => {
                    totals.actions_planned += 1;
                    if a.action["type"] == "reply_with_macro" {
                        totals.replies_planned += 1;
                        if let Some(c) = &customer {
                            replied.insert(c.clone(), at);
                        }
                    }
                }
                Outcome::Blocked | Outcome::Failed => {
                    totals.actions_blocked += 1;
                    blocked.push(SimBlocked {
                        ticket_id: r.facts.id,
                        at: time(at),
                        action: a.action.clone(),
                        outcome: a.outcome,
                        reason: a.reason.clone().unwrap_or_default(),
                    });
                }
                _ => {}
            }
        }
        if matches.len() < MAX_LISTED {
            matches.push(SimMatch {
                ticket_id: r.facts.id,
                subject: r.facts.subject.clone(),
                customer,
                at: time(at),
                trigger,
                message_id,
                conditions: p.conditions,
                actions: p.actions,
            });
        }
    }
    totals.tickets_matched = matched_tickets.len();
    blocked.truncate(MAX_LISTED);
    let mut notes = vec![
        "read-only: nothing was changed, sent or logged".to_string(),
        "fields with no recorded change in history are taken at their present value throughout"
            .to_string(),
    ];
    if rule.trigger == Trigger::Time {
        notes.push(
            "time-based: evaluated at the minute each time condition starts to hold, once per ticket per episode"
                .into(),
        );
    }
    if totals.matches > MAX_LISTED {
        notes.push(format!(
            "{} matches; the first {MAX_LISTED} are listed",
            totals.matches
        ));
    }
    if rule_id.is_some() && !rule.enabled {
        notes.push("the rule is disabled: simulated as if it had been enabled".into());
    }
    Ok(SimulationReport {
        rule: rule.name.clone(),
        trigger: rule.trigger,
        since: time(since),
        until: time(until),
        totals,
        per_day,
        matches,
        blocked,
        notes,
    })
}

/// The ticket before its first recorded item: present values for what history never
/// changes, defaults for what it does.
fn initial_replay(t: SimTicket) -> Replay {
    let has = |kinds: &[&str]| t.events.iter().any(|e| kinds.contains(&e.kind.as_str()));
    let mut facts = t.state.clone();
    facts.last_customer_message_at = None;
    facts.last_agent_reply_at = None;
    if has(&["status_changed"]) {
        facts.status = "open".into();
    }
    if has(&["priority_changed"]) {
        facts.priority = "normal".into();
    }
    if has(&["assigned"]) {
        facts.assignee_email = None;
        facts.assignee_name = None;
    }
    if has(&["team_assigned"]) {
        facts.team = None;
    }
    if has(&["tags_set", "tag_added", "tag_removed"]) {
        facts.tags.clear();
    }
    let mut items: Vec<Item> = t
        .messages
        .into_iter()
        .map(Item::Message)
        .chain(t.events.into_iter().map(Item::Event))
        .collect();
    items.sort_by_key(|x| x.at());
    Replay {
        facts,
        items,
        next: 0,
        last_inbound: None,
        generation: 0,
        fired_episode: None,
    }
}

fn apply_message(
    facts: &mut TicketFacts,
    last_inbound: &mut Option<MessageFacts>,
    m: &MessageState,
    first: bool,
) {
    match m.direction.as_str() {
        "inbound" => {
            let at = m.received_at;
            facts.last_customer_message_at =
                Some(facts.last_customer_message_at.unwrap_or(0).max(at));
            // As intake: a person writing again reopens the ticket (imports do not).
            if !first && m.classification == "normal" && m.source != "import" {
                facts.status = "open".into();
            }
            *last_inbound = Some(message_facts(m));
        }
        // Automated replies are not agents' replies (as live).
        "outbound" if m.source != "rule" => {
            facts.last_agent_reply_at =
                Some(facts.last_agent_reply_at.unwrap_or(0).max(m.received_at));
        }
        _ => {}
    }
}

fn apply_event(
    t: &mut TicketFacts,
    e: &TicketEventRow,
    users: &HashMap<i64, (String, Option<String>)>,
) {
    let to = &e.data["to"];
    match e.kind.as_str() {
        "status_changed" => {
            if let Some(s) = to.as_str() {
                t.status = s.to_string();
            }
        }
        "priority_changed" => {
            if let Some(p) = to.as_str() {
                t.priority = p.to_string();
            }
        }
        "assigned" => {
            let user = to.as_i64().and_then(|id| users.get(&id));
            t.assignee_email = user.map(|u| u.0.clone());
            t.assignee_name = user.and_then(|u| u.1.clone());
        }
        "team_assigned" => t.team = to.as_str().map(str::to_string),
        "tags_set" => {
            t.tags = e.data["tags"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        "tag_added" => {
            if let Some(tag) = e.data["tag"].as_str() {
                if !t.tags.iter().any(|x| x == tag) {
                    t.tags.push(tag.to_string());
                }
            }
        }
        "tag_removed" => {
            if let Some(tag) = e.data["tag"].as_str() {
                let f = super::text::fold(tag);
                t.tags.retain(|x| super::text::fold(x) != f);
            }
        }
        _ => {}
    }
}

/// The instants in `[from, to)` at which a time-based rule could start to hold: now, and
/// each minute a time condition crosses its threshold (and, when the rule looks at
/// business hours, every half hour). Rounded up to the minute, like the scheduler's ticks.
fn check_times(
    t: &TicketFacts,
    from: i64,
    to: i64,
    limits: &[(Field, i64, bool)],
    uses_hours: bool,
) -> Vec<i64> {
    let mut out = vec![ceil_minute(from)];
    for (field, minutes, strict) in limits {
        let reference = match field {
            Field::TimeSinceLastCustomerMessage => t.last_customer_message_at,
            Field::TimeSinceLastAgentReply => Some(t.last_agent_reply_at.unwrap_or(t.created_at)),
            Field::TimeSinceCreated => Some(t.created_at),
            _ => None,
        };
        if let Some(r) = reference {
            let wait = (minutes + i64::from(*strict)) * MINUTE;
            out.push(ceil_minute(r + wait));
        }
    }
    if uses_hours {
        let mut at = ceil_minute(from);
        let mut n = 0;
        while at < to && n < MAX_HOUR_CHECKS {
            at = (at / (30 * MINUTE) + 1) * 30 * MINUTE;
            out.push(at);
            n += 1;
        }
    }
    out.retain(|&c| c >= from && c < to);
    out.sort_unstable();
    out.dedup();
    out
}

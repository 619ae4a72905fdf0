//! One rule on one ticket: evaluate the conditions, then plan each action in order, with
//! the guards, and say for each what would be done or why it is skipped. Pure: the live
//! runner executes the plan, the simulation reports it, and both use this same code.

use super::conditions::{evaluate, TestResult};
use super::facts::Facts;
use super::macros::{self, Macro, Rendered};
use super::schema::{Action, Rule, Trigger};
use serde::Serialize;
use std::collections::HashMap;

/// What the planner needs beyond the facts.
pub struct PlanContext<'a> {
    /// The account's macros by name.
    pub macros: &'a HashMap<String, Macro>,
    /// The account's (enabled) agents by e-mail address: (id, name).
    pub agents: &'a HashMap<String, (i64, Option<String>)>,
    /// When this rule last replied automatically to this customer, if it did.
    pub last_auto_reply_at: Option<i64>,
    /// At most one automated reply per customer per rule within this window (ms).
    pub reply_window_ms: i64,
    /// Render notes and replies and trace the conditions (off: the simulation's matches
    /// beyond those it lists, which nobody reads; templates compiled when saved).
    pub render: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Planned (simulation: would be done).
    Planned,
    Done,
    Skipped,
    /// A guard refused it (auto-replies to auto-generated mail, spoofs, imports...).
    Blocked,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    pub action: serde_json::Value,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The rendered reply or note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Rendered>,
    #[serde(skip)]
    pub step: Option<Step>,
}

/// A change to carry out, resolved (agent id found, template rendered).
#[derive(Debug, Clone)]
pub enum Step {
    AddTag(String),
    /// The tag as the rule names it, and the ticket's stored spellings of it.
    RemoveTag {
        tag: String,
        stored: Vec<String>,
    },
    SetStatus {
        status: String,
        snoozed_until: Option<i64>,
    },
    Assign {
        user_id: Option<i64>,
        email: Option<String>,
        name: Option<String>,
    },
    AssignTeam(String),
    SetPriority(String),
    AddNote(String),
    Reply {
        to: String,
        subject: String,
        body: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub matched: bool,
    pub conditions: Vec<TestResult>,
    pub actions: Vec<ActionResult>,
    /// The rule asked to stop processing further rules.
    pub stop: bool,
}

/// Why an automated reply must not be sent, if it must not.
pub fn reply_guard(facts: &Facts, ctx: &PlanContext) -> Option<String> {
    if let Some(m) = &facts.message {
        if m.bounce() {
            return Some("guard: the message is a bounce (delivery report)".into());
        }
        if m.auto_generated() {
            return Some("guard: the message is auto-generated (auto-reply, list or robot mail); automated replies to it would loop".into());
        }
        if m.spoof_suspected {
            return Some("guard: the sender is suspected of spoofing".into());
        }
        if m.source == "import" {
            return Some("guard: imported history never gets automated replies".into());
        }
    }
    if facts.ticket.flags.iter().any(|f| f == "spoof_suspected") {
        return Some("guard: the ticket is flagged spoof_suspected".into());
    }
    if facts.ticket.customer.is_none() {
        return Some("guard: the ticket has no customer address to reply to".into());
    }
    if let Some(at) = ctx.last_auto_reply_at {
        if facts.now - at < ctx.reply_window_ms {
            let when = chrono::DateTime::from_timestamp_millis(at)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            return Some(format!(
                "guard: this rule already replied to this customer at {when}, within the window of {}",
                window_text(ctx.reply_window_ms)
            ));
        }
    }
    None
}

fn window_text(ms: i64) -> String {
    let minutes = ms / 60_000;
    if minutes % 1_440 == 0 {
        format!("{}d", minutes / 1_440)
    } else if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

fn skip(action: &Action, outcome: Outcome, reason: impl Into<String>) -> ActionResult {
    ActionResult {
        action: serde_json::to_value(action).unwrap_or_default(),
        outcome,
        reason: Some(reason.into()),
        rendered: None,
        step: None,
    }
}

fn planned(action: &Action, step: Step, rendered: Option<Rendered>) -> ActionResult {
    ActionResult {
        action: serde_json::to_value(action).unwrap_or_default(),
        outcome: Outcome::Planned,
        reason: None,
        rendered,
        step: Some(step),
    }
}

/// Evaluates the rule and plans its actions. `facts` is updated as each planned action
/// would change the ticket, so that later actions (and later rules) see the result.
pub fn plan(rule: &Rule, facts: &mut Facts, ctx: &PlanContext) -> Plan {
    let (matched, conditions) = if ctx.render {
        evaluate(&rule.conditions, facts)
    } else {
        (
            super::conditions::holds(&rule.conditions, facts),
            Vec::new(),
        )
    };
    let mut actions = Vec::new();
    let mut stop = false;
    if !matched {
        return Plan {
            matched,
            conditions,
            actions,
            stop,
        };
    }
    let mut replied = false;
    for action in &rule.actions {
        let result = plan_one(action, facts, ctx, &mut replied, &mut stop);
        if let Some(step) = &result.step {
            apply_to_facts(step, facts);
        }
        actions.push(result);
    }
    Plan {
        matched,
        conditions,
        actions,
        stop,
    }
}

fn plan_one(
    action: &Action,
    facts: &Facts,
    ctx: &PlanContext,
    replied: &mut bool,
    stop: &mut bool,
) -> ActionResult {
    let t = &facts.ticket;
    let has_tag = |tag: &str| {
        let f = super::text::fold(tag);
        t.tags.iter().any(|x| super::text::fold(x) == f)
    };
    match action {
        Action::AddTag { tag } => {
            if has_tag(tag) {
                skip(action, Outcome::Skipped, "the ticket already has this tag")
            } else if t.tags.len() >= crate::domain::MAX_TAGS_PER_TICKET {
                skip(
                    action,
                    Outcome::Skipped,
                    "the ticket has the most tags allowed",
                )
            } else {
                planned(action, Step::AddTag(tag.clone()), None)
            }
        }
        Action::RemoveTag { tag } => {
            let stored = stored_spellings(&t.tags, tag);
            if !stored.is_empty() {
                planned(
                    action,
                    Step::RemoveTag {
                        tag: tag.clone(),
                        stored,
                    },
                    None,
                )
            } else {
                skip(
                    action,
                    Outcome::Skipped,
                    "the ticket does not have this tag",
                )
            }
        }
        Action::SetStatus {
            status,
            until_minutes,
            ..
        } => {
            let snoozed_until = until_minutes.map(|m| facts.now + m * 60_000);
            if &t.status == status && status != "snoozed" {
                skip(
                    action,
                    Outcome::Skipped,
                    format!("the ticket is already {status}"),
                )
            } else {
                planned(
                    action,
                    Step::SetStatus {
                        status: status.clone(),
                        snoozed_until,
                    },
                    None,
                )
            }
        }
        Action::AssignAgent { agent } => match ctx.agents.get(agent) {
            None => skip(
                action,
                Outcome::Failed,
                format!("no enabled agent {agent:?} in this account"),
            ),
            Some(_) if t.assignee_email.as_deref() == Some(agent.as_str()) => skip(
                action,
                Outcome::Skipped,
                "the ticket is already assigned to this agent",
            ),
            Some((id, name)) => planned(
                action,
                Step::Assign {
                    user_id: Some(*id),
                    email: Some(agent.clone()),
                    name: name.clone(),
                },
                None,
            ),
        },
        Action::Unassign => {
            if t.assignee_email.is_none() {
                skip(action, Outcome::Skipped, "the ticket is not assigned")
            } else {
                planned(
                    action,
                    Step::Assign {
                        user_id: None,
                        email: None,
                        name: None,
                    },
                    None,
                )
            }
        }
        Action::AssignTeam { team } => {
            if t.team.as_deref() == Some(team.as_str()) {
                skip(
                    action,
                    Outcome::Skipped,
                    "the ticket is already in this team's queue",
                )
            } else {
                planned(action, Step::AssignTeam(team.clone()), None)
            }
        }
        Action::SetPriority { priority } => {
            if &t.priority == priority {
                skip(
                    action,
                    Outcome::Skipped,
                    format!("the priority is already {priority}"),
                )
            } else {
                planned(action, Step::SetPriority(priority.clone()), None)
            }
        }
        Action::AddNote { .. } if !ctx.render => {
            planned(action, Step::AddNote(String::new()), None)
        }
        Action::AddNote { text } => {
            let ctx_vars = macros::context(facts);
            match macros::render_template(text, &macros::Missing::Empty, &ctx_vars) {
                Ok(body) if body.trim().is_empty() => {
                    skip(action, Outcome::Skipped, "the note renders empty")
                }
                Ok(body) => planned(
                    action,
                    Step::AddNote(body.clone()),
                    Some(Rendered {
                        subject: String::new(),
                        body,
                    }),
                ),
                Err(e) => skip(
                    action,
                    Outcome::Failed,
                    format!("the note does not render: {e}"),
                ),
            }
        }
        Action::ReplyWithMacro { macro_name } => {
            if *replied {
                return skip(
                    action,
                    Outcome::Blocked,
                    "guard: one automated reply per run",
                );
            }
            let Some(m) = ctx.macros.get(macro_name) else {
                return skip(
                    action,
                    Outcome::Failed,
                    format!("no macro named {macro_name:?} in this account"),
                );
            };
            let rendered = if !ctx.render {
                Ok(Rendered {
                    subject: String::new(),
                    body: String::new(),
                })
            } else {
                macros::render(m, facts)
            };
            let rendered = match rendered {
                Ok(r) => r,
                Err(e) => {
                    return skip(
                        action,
                        Outcome::Failed,
                        format!("the macro does not render: {e}"),
                    )
                }
            };
            if let Some(reason) = reply_guard(facts, ctx) {
                let mut r = skip(action, Outcome::Blocked, reason);
                r.rendered = ctx.render.then_some(rendered);
                return r;
            }
            *replied = true;
            let to = t
                .customer
                .as_ref()
                .map(|c| c.email.clone())
                .unwrap_or_default();
            planned(
                action,
                Step::Reply {
                    to,
                    subject: rendered.subject.clone(),
                    body: rendered.body.clone(),
                },
                ctx.render.then_some(rendered),
            )
        }
        Action::StopProcessing => {
            *stop = true;
            ActionResult {
                action: serde_json::to_value(action).unwrap_or_default(),
                outcome: Outcome::Planned,
                reason: None,
                rendered: None,
                step: None,
            }
        }
    }
}

/// How a step changes the ticket as rules see it.
pub fn apply_to_facts(step: &Step, facts: &mut Facts) {
    let t = &mut facts.ticket;
    match step {
        Step::AddTag(tag) => t.tags.push(tag.clone()),
        Step::RemoveTag { stored, .. } => t.tags.retain(|x| !stored.contains(x)),
        Step::SetStatus { status, .. } => t.status = status.clone(),
        Step::Assign { email, name, .. } => {
            t.assignee_email = email.clone();
            t.assignee_name = name.clone();
        }
        Step::AssignTeam(team) => t.team = Some(team.clone()),
        Step::SetPriority(p) => t.priority = p.clone(),
        // Notes and automated replies are not human activity: they change no condition.
        Step::AddNote(_) | Step::Reply { .. } => {}
    }
}

/// The ticket's stored spellings of `tag`: rules compare tags case and accents aside, so
/// removing a tag removes every spelling of it that the rule sees.
pub fn stored_spellings(tags: &[String], tag: &str) -> Vec<String> {
    let wanted = super::text::fold(tag);
    tags.iter()
        .filter(|t| super::text::fold(t) == wanted)
        .cloned()
        .collect()
}

/// Does a rule with this trigger run for this event?
pub fn runs_on(rule_trigger: Trigger, event: &[Trigger]) -> bool {
    event.contains(&rule_trigger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::facts::{CustomerFacts, MessageFacts, TicketFacts};
    use crate::rules::schema::parse_rule;
    use serde_json::json;

    fn follow_up() -> Rule {
        parse_rule(&json!({
            "name": "follow-up", "trigger": "time",
            "conditions": {"all": [
                {"field": "status", "operator": "equals", "value": "open"},
                {"field": "last_message_from", "operator": "equals", "value": "customer"},
                {"field": "time_since_last_agent_reply", "operator": "at_least", "value": "24h"},
                {"not": {"field": "tags", "operator": "contains", "value": "do-not-follow-up"}}
            ]},
            "actions": [
                {"type": "reply_with_macro", "macro": "on-it"},
                {"type": "add_tag", "tag": "followed-up"},
                {"type": "set_priority", "priority": "high"},
                {"type": "add_note", "text": "Follow-up sent to {{ customer.email }}"},
                {"type": "reply_with_macro", "macro": "on-it"},
                {"type": "assign_agent", "agent": "nobody@x.test"}
            ]
        }))
        .unwrap()
    }

    fn facts(hours_waiting: i64) -> Facts {
        let h = 3_600_000;
        Facts {
            now: 1_000 * h,
            ticket: TicketFacts {
                id: 7,
                subject: "Parcel".into(),
                status: "open".into(),
                priority: "normal".into(),
                created_at: (1_000 - hours_waiting) * h,
                last_customer_message_at: Some((1_000 - hours_waiting) * h),
                customer: Some(CustomerFacts {
                    email: "ana@client.test".into(),
                    name: Some("Ana".into()),
                    attributes: json!({}),
                }),
                ..Default::default()
            },
            message: Some(MessageFacts {
                classification: "normal".into(),
                source: "smtp".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn macros() -> HashMap<String, Macro> {
        let m = Macro {
            id: 1,
            name: "on-it".into(),
            subject: None,
            body: "Hi {{ customer.first_name }}, we are on it.".into(),
            missing: macros::Missing::Empty,
        };
        HashMap::from([("on-it".to_string(), m)])
    }

    #[test]
    fn follow_up_plans_reply_tag_priority_note_with_guards() {
        let macros = macros();
        let agents = HashMap::new();
        let ctx = PlanContext {
            macros: &macros,
            agents: &agents,
            last_auto_reply_at: None,
            reply_window_ms: 24 * 3_600_000,
            render: true,
        };
        let mut f = facts(23);
        assert!(
            !plan(&follow_up(), &mut f, &ctx).matched,
            "23 hours is too early"
        );
        let mut f = facts(25);
        let p = plan(&follow_up(), &mut f, &ctx);
        assert!(p.matched);
        let outcomes: Vec<Outcome> = p.actions.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Planned,
                Outcome::Planned,
                Outcome::Planned,
                Outcome::Planned,
                Outcome::Blocked,
                Outcome::Failed
            ]
        );
        assert_eq!(
            p.actions[0].rendered.as_ref().unwrap().body,
            "Hi Ana, we are on it."
        );
        assert_eq!(f.ticket.tags, vec!["followed-up"]);
        assert_eq!(f.ticket.priority, "high");
        // Tagged do-not-follow-up: no match.
        let mut f = facts(25);
        f.ticket.tags.push("Do-Not-Follow-Up".into());
        assert!(!plan(&follow_up(), &mut f, &ctx).matched);
    }

    #[test]
    fn guards_block_replies() {
        let macros = macros();
        let agents = HashMap::new();
        let mut ctx = PlanContext {
            macros: &macros,
            agents: &agents,
            last_auto_reply_at: None,
            reply_window_ms: 24 * 3_600_000,
            render: true,
        };
        type Change = Box<dyn Fn(&mut Facts)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|f| f.message.as_mut().unwrap().classification = "auto_generated".into()),
                "auto-generated",
            ),
            (
                Box::new(|f| f.message.as_mut().unwrap().classification = "bounce".into()),
                "bounce",
            ),
            (
                Box::new(|f| f.message.as_mut().unwrap().spoof_suspected = true),
                "spoofing",
            ),
            (
                Box::new(|f| f.message.as_mut().unwrap().source = "import".into()),
                "imported",
            ),
        ];
        for (change, why) in cases {
            let mut f = facts(30);
            change(&mut f);
            let p = plan(&follow_up(), &mut f, &ctx);
            assert_eq!(p.actions[0].outcome, Outcome::Blocked, "{why}");
            assert!(
                p.actions[0].reason.as_deref().unwrap().contains(why),
                "{:?}",
                p.actions[0].reason
            );
            // The other actions still run.
            assert_eq!(p.actions[1].outcome, Outcome::Planned);
        }
        let mut f = facts(30);
        ctx.last_auto_reply_at = Some(f.now - 3_600_000);
        let p = plan(&follow_up(), &mut f, &ctx);
        assert_eq!(p.actions[0].outcome, Outcome::Blocked);
        assert!(p.actions[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("within the window of 1d"));
        let mut f = facts(30);
        ctx.last_auto_reply_at = Some(f.now - 25 * 3_600_000);
        assert_eq!(
            plan(&follow_up(), &mut f, &ctx).actions[0].outcome,
            Outcome::Planned
        );
    }
    #[test]
    fn a_removed_tag_names_every_stored_spelling_of_it() {
        let tags: Vec<String> = ["Urgent", "urgent", "ÜRGENT", "urgently", "vip"]
            .map(String::from)
            .into();
        assert_eq!(
            stored_spellings(&tags, "URGENT"),
            ["Urgent", "urgent", "ÜRGENT"]
        );
        assert!(stored_spellings(&tags, "billing").is_empty());
    }

    #[test]
    fn remove_tag_plans_the_stored_spellings_and_later_actions_see_them_gone() {
        let rule = parse_rule(&json!({
            "name": "calm", "trigger": "ticket_updated",
            "conditions": {"field": "status", "operator": "equals", "value": "open"},
            "actions": [
                {"type": "remove_tag", "tag": "urgent"},
                {"type": "remove_tag", "tag": "Urgent"}
            ]
        }))
        .unwrap();
        let (macros, agents) = (HashMap::new(), HashMap::new());
        let ctx = PlanContext {
            macros: &macros,
            agents: &agents,
            last_auto_reply_at: None,
            reply_window_ms: 0,
            render: true,
        };
        let mut f = facts(1);
        f.ticket.tags = vec!["URGENT".into(), "vip".into(), "Urgent".into()];
        let p = plan(&rule, &mut f, &ctx);
        assert!(matches!(
            &p.actions[0].step,
            Some(Step::RemoveTag { tag, stored }) if tag == "urgent" && stored == &["URGENT", "Urgent"]
        ));
        assert_eq!(p.actions[1].outcome, Outcome::Skipped);
        assert_eq!(f.ticket.tags, ["vip"]);
    }
}

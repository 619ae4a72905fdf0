//! Rules, macros, the scheduler and the simulation (docs/RULES.md).
//!
//! `schema` reads rules (JSON or TOML) with errors that name the offending field;
//! `conditions` and `engine` evaluate a rule on [`facts::Facts`] and plan its actions with
//! the guards, purely; `live` runs the enabled rules of an account and executes the plans;
//! `worker` runs them after intake's commit and on the scheduler's ticks; `simulate`
//! replays history through the same `engine`, read-only. Uses `store`, `outbound` (automated
//! replies go through its queue, [`reply::QueueReplySender`]) and `domain`.

pub mod business_hours;
pub mod conditions;
pub mod cursors;
pub mod engine;
pub mod facts;
pub mod live;
pub mod macros;
pub mod reply;
pub mod schema;
pub mod simulate;
pub mod text;
pub mod worker;

pub use live::{Clock, ManualClock, RulesConfig, RulesEngine, SystemClock};
pub use reply::{AutoReply, QueueReplySender, ReplyError, ReplySender, SentReply};
pub use schema::{parse_rule, parse_rule_text, Format, Rule, RuleErrors, Trigger};

use crate::domain::AccountId;
use crate::store::{NewRule, RuleRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the rule is not valid:\n{0}")]
    Invalid(#[from] RuleErrors),
    #[error("{0}")]
    Refused(String),
}

/// Checks what a rule refers to in its account (macros, agents) beyond its own shape.
pub async fn check_references(
    store: &Store,
    account: AccountId,
    rule: &Rule,
) -> Result<(), RulesError> {
    let macros = store.macros(account).await?;
    let agents = store.rule_agents(account).await?;
    let mut errors = Vec::new();
    for (i, a) in rule.actions.iter().enumerate() {
        match a {
            schema::Action::ReplyWithMacro { macro_name }
                if !macros.iter().any(|m| &m.name == macro_name) =>
            {
                let known: Vec<&str> = macros.iter().map(|m| m.name.as_str()).collect();
                errors.push(schema::FieldError {
                        path: format!("actions[{i}].macro"),
                        message: format!(
                            "no macro named {macro_name:?} in this account (known: {}); add it with `postern macros add`",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    });
            }
            schema::Action::AssignAgent { agent }
                if !agents.iter().any(|(_, e, _)| e.eq_ignore_ascii_case(agent)) =>
            {
                errors.push(schema::FieldError {
                    path: format!("actions[{i}].agent"),
                    message: format!("no enabled user {agent:?} in this account"),
                });
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RuleErrors(errors).into())
    }
}

/// Parses, checks and stores a rule (`replace`: the id of the rule it replaces).
pub async fn save_rule(
    store: &Store,
    account: AccountId,
    text: &str,
    format: Format,
    replace: Option<i64>,
) -> Result<RuleRecord, RulesError> {
    let rule = parse_rule_text(text, format)?;
    save_parsed(store, account, &rule, replace).await
}

pub async fn save_parsed(
    store: &Store,
    account: AccountId,
    rule: &Rule,
    replace: Option<i64>,
) -> Result<RuleRecord, RulesError> {
    check_references(store, account, rule).await?;
    let definition = rule.to_json();
    let new = NewRule {
        name: &rule.name,
        trigger: rule.trigger.as_str(),
        position: rule.position,
        enabled: rule.enabled,
        definition: &definition,
    };
    Ok(match replace {
        Some(id) => store.replace_rule(id, account, &new).await?,
        None => store.create_rule(account, &new).await?,
    })
}

/// Checks and stores a macro; a template that does not compile is refused with its line
/// and column.
pub async fn save_macro(
    store: &Store,
    account: AccountId,
    name: &str,
    subject: Option<&str>,
    body: &str,
    fallback: Option<&str>,
) -> Result<crate::store::MacroRecord, RulesError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(RulesError::Refused(
            "the macro name must be 1 to 100 characters, without control characters".into(),
        ));
    }
    if let Some(s) = subject {
        macros::check_template(s).map_err(|e| {
            RulesError::Refused(format!("the macro's subject does not compile: {e}"))
        })?;
    }
    if body.trim().is_empty() {
        return Err(RulesError::Refused("the macro's body is empty".into()));
    }
    macros::check_template(body)
        .map_err(|e| RulesError::Refused(format!("the macro's body does not compile: {e}")))?;
    let (missing, fallback) = match fallback {
        Some(f) => ("fallback", f),
        None => ("empty", ""),
    };
    Ok(store
        .create_macro(account, name, subject, body, missing, fallback)
        .await?)
}

/// Renders a macro on a ticket of the account, without sending anything.
pub async fn preview_macro(
    store: &Store,
    account: AccountId,
    macro_id: i64,
    ticket: i64,
) -> Result<macros::Rendered, RulesError> {
    let record = store.macro_record(macro_id, account).await?;
    let ctx = live::account_rules(store, account, false).await?;
    let state = store
        .ticket_state(account, ticket)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no ticket with id {ticket}")))?;
    let facts = facts::Facts {
        now: crate::store::now_ms(),
        account: ctx.account.clone(),
        ticket: state,
        message: None,
        business_hours: ctx.business_hours.clone(),
    };
    macros::render(&live::macro_from_record(&record), &facts)
        .map_err(|e| RulesError::Refused(format!("the macro does not render: {e}")))
}

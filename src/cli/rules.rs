//! `postern rules`: add, list, enable, simulate on past tickets, the log, business hours.

use super::open_store;
use super::output::{print_deleted, print_json, print_list, print_one, JsonFlag};
use super::text_file::read_text;
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Add a rule from a JSON or TOML file (.toml is TOML); it starts disabled unless it says
    /// `enabled = true`.
    Add {
        #[arg(long)]
        account: AccountId,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Replace the rule with this id instead of adding one.
        #[arg(long, value_name = "ID")]
        replace: Option<i64>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The account's rules in the order they run.
    List {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// One rule as stored.
    Show {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Switch a rule on.
    Enable {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Switch a rule off.
    Disable {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete a rule (its log stays).
    Delete {
        id: i64,
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// What a rule would have done on past tickets, without changing anything.
    Simulate {
        #[arg(long)]
        account: AccountId,
        /// A rule file (JSON or TOML), not stored.
        #[arg(
            long,
            alias = "rule-file",
            value_name = "FILE",
            conflicts_with = "rule"
        )]
        file: Option<PathBuf>,
        /// A stored rule, enabled or not.
        #[arg(long, value_name = "ID", required_unless_present = "file")]
        rule: Option<i64>,
        /// How far back: 90d, 12w, 48h...
        #[arg(long, default_value = "90d")]
        since: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The rule log: every run, what matched, what was done or skipped and why.
    Log {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        rule: Option<i64>,
        #[arg(long)]
        ticket: Option<i64>,
        /// Only runs whose conditions matched.
        #[arg(long)]
        matched: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show or set the account's business hours (a JSON file, see docs/RULES.md).
    BusinessHours {
        #[arg(long)]
        account: AccountId,
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        file: Option<PathBuf>,
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Run the scheduler's pass once now (what `postern serve` does every minute).
    Tick {
        #[command(flatten)]
        out: JsonFlag,
    },
}

fn print_rule(r: &crate::store::RuleRecord) {
    outln!(
        "{:<5} {:<9} pos {:<5} {:<17} {}",
        r.id,
        if r.enabled { "enabled" } else { "disabled" },
        r.position,
        r.trigger,
        r.name
    );
}

fn print_rule_run(r: &crate::store::RuleRunView) {
    outln!(
        "{} run {} rule {:?} ticket {} {} depth {}: {}",
        r.created_at.to_rfc3339(),
        r.id,
        r.rule_name,
        r.ticket_id.map_or("-".into(), |t| t.to_string()),
        r.trigger,
        r.depth,
        if r.matched { "matched" } else { "no match" }
    );
    if let Some(e) = &r.error {
        outln!("    error: {e}");
    }
    for a in r.actions.as_array().into_iter().flatten() {
        outln!(
            "    {} {}{}",
            a["outcome"].as_str().unwrap_or("?"),
            a["action"]["type"].as_str().unwrap_or("?"),
            a["reason"]
                .as_str()
                .map(|x| format!(": {x}"))
                .unwrap_or_default()
        );
    }
}

pub(super) async fn run(cmd: RulesCommand, settings: &Settings) -> Result<()> {
    use crate::rules;
    let store = open_store(settings).await?;
    match cmd {
        RulesCommand::Add {
            account,
            file,
            replace,
            out,
        } => {
            let text = read_text(&file)?;
            let r = rules::save_rule(
                &store,
                account,
                &text,
                rules::Format::of_path(&file),
                replace,
            )
            .await?;
            print_one(&out, &r, |r| {
                outln!(
                    "rule {} {}: {} ({}, {})",
                    r.id,
                    if replace.is_some() {
                        "replaced"
                    } else {
                        "added"
                    },
                    r.name,
                    r.trigger,
                    if r.enabled {
                        "enabled"
                    } else {
                        "disabled: `postern rules enable` switches it on"
                    }
                );
            })?;
        }
        RulesCommand::List { account, out } => {
            print_list(&out, &store.rules(account).await?, "no rules", print_rule)?;
        }
        RulesCommand::Show { id, account, out } => {
            print_one(&out, &store.rule(id, account).await?, |r| {
                print_rule(r);
                outln!("{:#}", r.definition);
            })?;
        }
        RulesCommand::Enable { id, account, out } => {
            print_one(
                &out,
                &store.set_rule_enabled(id, account, true).await?,
                print_rule,
            )?;
        }
        RulesCommand::Disable { id, account, out } => {
            print_one(
                &out,
                &store.set_rule_enabled(id, account, false).await?,
                print_rule,
            )?;
        }
        RulesCommand::Delete { id, account, out } => {
            store.delete_rule(id, account).await?;
            print_deleted(&out, "rule", id)?;
        }
        RulesCommand::Simulate {
            account,
            file,
            rule,
            since,
            out,
        } => {
            let minutes = rules::schema::parse_minutes(&since)
                .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
            let (parsed, id) = match (file, rule) {
                (Some(f), _) => {
                    let text = read_text(&f)?;
                    (
                        rules::parse_rule_text(&text, rules::Format::of_path(&f))?,
                        None,
                    )
                }
                (None, Some(id)) => {
                    let r = store.rule(id, account).await?;
                    (rules::parse_rule(&r.definition)?, Some(id))
                }
                (None, None) => bail!("give --file FILE or --rule ID"),
            };
            let now = crate::store::now_ms();
            let report = rules::simulate::simulate(
                &store,
                account,
                &parsed,
                id,
                now - minutes * 60_000,
                now,
                settings.rules.reply_window.as_millis() as i64,
            )
            .await?;
            print_one(&out, &report, print_simulation)?;
        }
        RulesCommand::Log {
            account,
            rule,
            ticket,
            matched,
            limit,
            out,
        } => {
            let filter = crate::store::RunFilter {
                rule_id: rule,
                ticket_id: ticket,
                matched_only: matched,
                before: None,
            };
            let runs = store
                .rule_runs(account, &filter, limit.clamp(1, 1000))
                .await?;
            print_list(&out, &runs, "no rule runs", print_rule_run)?;
        }
        RulesCommand::BusinessHours {
            account,
            file,
            clear,
            out,
        } => {
            // The file is checked before the account is looked up.
            let written = match file {
                Some(f) => {
                    let v: serde_json::Value = serde_json::from_str(&read_text(&f)?)
                        .with_context(|| format!("{} is not JSON", f.display()))?;
                    rules::business_hours::BusinessHours::parse(&v)
                        .map_err(|e| anyhow::anyhow!(e))?;
                    Some(v)
                }
                None => None,
            };
            let mut account_settings = store.account_settings(account).await?;
            if let Some(v) = written {
                account_settings.business_hours = Some(v);
                store
                    .set_account_settings(account, &account_settings)
                    .await?;
            } else if clear {
                account_settings.business_hours = None;
                store
                    .set_account_settings(account, &account_settings)
                    .await?;
            }
            let hours = &account_settings.business_hours;
            if out.json {
                print_json(hours)?;
            } else if let Some(v) = hours {
                outln!("{}", serde_json::to_string_pretty(v)?);
            } else {
                outln!("no business hours: every hour counts as within business hours");
            }
        }
        RulesCommand::Tick { out } => {
            let outbound = crate::app::outbound_queue(settings, &store).await?;
            let engine = crate::app::rules_engine(settings, &store, outbound);
            let report = engine.scheduler_pass().await?;
            print_one(&out, &report, |report| {
                outln!(
                    "{} time-based rules, {} candidate tickets, {} fired",
                    report.rules,
                    report.candidates,
                    report.fired
                );
            })?;
        }
    }
    Ok(())
}

fn print_simulation(r: &crate::rules::simulate::SimulationReport) {
    outln!(
        "Simulation of {:?} ({}) from {} to {}",
        r.rule,
        r.trigger.as_str(),
        r.since.format("%Y-%m-%d %H:%M"),
        r.until.format("%Y-%m-%d %H:%M")
    );
    let t = &r.totals;
    outln!(
        "{} tickets and {} messages replayed, {} evaluations: {} matches on {} tickets; {} actions would be taken ({} replies), {} blocked or failed",
        t.tickets_examined, t.messages_replayed, t.evaluations, t.matches, t.tickets_matched,
        t.actions_planned, t.replies_planned, t.actions_blocked
    );
    if !r.per_day.is_empty() {
        outln!();
        outln!("Per day:");
        for (day, n) in &r.per_day {
            outln!("  {day}  {n:>5}  {}", "#".repeat((*n).min(60)));
        }
    }
    if !r.matches.is_empty() {
        outln!();
        outln!("Would have acted on:");
    }
    for m in &r.matches {
        outln!(
            "  {} ticket #{} {:?} ({}) on {}",
            m.at.format("%Y-%m-%d %H:%M"),
            m.ticket_id,
            m.subject,
            m.customer.clone().unwrap_or_default(),
            m.trigger
        );
        for c in &m.conditions {
            // A test under `not` holds for the rule when it does not match.
            let negated = c.path.contains(".not");
            if c.matched != negated {
                let op = serde_json::to_value(c.operator).unwrap_or_default();
                outln!(
                    "      matched {}{} {} {} (was {})",
                    if negated { "not " } else { "" },
                    c.field,
                    op.as_str().unwrap_or("?"),
                    c.value,
                    c.actual
                );
            }
        }
        for a in &m.actions {
            outln!(
                "      {:?} {}{}",
                a.outcome,
                a.action["type"].as_str().unwrap_or("?"),
                a.reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            );
            if let Some(rendered) = &a.rendered {
                for line in rendered.body.lines().take(6) {
                    outln!("        | {line}");
                }
            }
        }
    }
    if !r.blocked.is_empty() {
        outln!();
        outln!("Stopped by a guard or failed:");
        for b in &r.blocked {
            outln!(
                "  {} ticket #{} {}: {}",
                b.at.format("%Y-%m-%d %H:%M"),
                b.ticket_id,
                b.action["type"].as_str().unwrap_or("?"),
                b.reason
            );
        }
    }
    for n in &r.notes {
        outln!("note: {n}");
    }
}

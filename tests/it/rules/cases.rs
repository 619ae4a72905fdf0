//! Rule cases as data: tests/fixtures/rules/<case>.toml holds the rules, macros, agents and
//! business hours of one account, the mail sent to it over SMTP (Python's smtplib), and what
//! the running server's rules worker must have done (tickets, rule log). One test runs every
//! case, each against its own server, and names every case that fails.

use crate::common::fixture_cases::{assert_all_passed, case_names, fixture_dir, read_case, record};
use crate::common::rules::{add_macro, add_rule, send, ticket_by_subject, wait_runs, write};
use crate::common::{cli, cli_json, spawn_app_with_acme, TestApp};
use postern::domain::{AccountId, EmailAddress, Role};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// JSON given to `postern rules business-hours`.
    business_hours: Option<String>,
    #[serde(default)]
    agents: Vec<Agent>,
    #[serde(default)]
    macros: Vec<MacroDef>,
    #[serde(default)]
    rules: Vec<RuleDef>,
    #[serde(default)]
    messages: Vec<Mail>,
    #[serde(default)]
    tickets: Vec<TicketWant>,
    #[serde(default)]
    log: Vec<LogWant>,
    matched_runs: Option<Count>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Agent {
    email: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MacroDef {
    name: String,
    body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    /// The file name given to `postern rules add` (its ending says TOML or JSON); the case
    /// names the rule by it.
    file: String,
    /// The definition; when absent, read from definitions/<file> beside the cases.
    text: Option<String>,
    /// Keys that the definition shown by `postern rules show --json` must hold.
    #[serde(default)]
    shown: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mail {
    from: String,
    subject: String,
    body: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// After sending: wait until the account's rule log holds this many runs.
    runs: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TicketWant {
    /// The ticket is found by its subject.
    subject: String,
    tags: Option<Vec<String>>,
    /// The text of the ticket's note.
    note: Option<String>,
    reply_subject: Option<String>,
    reply_text: Option<String>,
    /// No reply was written into the ticket.
    #[serde(default)]
    no_reply: bool,
    /// The agent the ticket is assigned to, by email.
    assignee: Option<String>,
    /// A `tag_added` event names this rule.
    tag_added_by_rule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogWant {
    /// The rule, by its file.
    rule: String,
    /// How many runs its log holds.
    runs: Option<usize>,
    #[serde(default)]
    all_matched: bool,
    /// The field of every run's first condition.
    condition_field: Option<String>,
    /// Runs whose first action, written "<outcome> <reason>", fits.
    #[serde(default)]
    first_action: Vec<ActionWant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionWant {
    starts_with: String,
    #[serde(default)]
    contains: Vec<String>,
    /// Exactly this many runs; at least one when absent.
    count: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    count: usize,
}

/// Checks `cond`, recording `what` when it does not hold.
fn expect(problems: &mut Vec<String>, cond: bool, what: impl FnOnce() -> String) {
    if !cond {
        problems.push(what());
    }
}

async fn check_ticket(app: &TestApp, account: i64, want: &TicketWant, problems: &mut Vec<String>) {
    let t = ticket_by_subject(app, account, &want.subject).await;
    let s = &want.subject;
    if let Some(tags) = &want.tags {
        expect(problems, &t.tags == tags, || {
            format!("{s}: tags {:?}, expected {tags:?}", t.tags)
        });
    }
    let by_direction = |d: &str| t.messages.iter().find(|m| m.direction == d);
    if let Some(note) = &want.note {
        let got = by_direction("note").and_then(|m| m.text.as_deref());
        expect(problems, got == Some(note), || {
            format!("{s}: note {got:?}, expected {note:?}")
        });
    }
    let reply = by_direction("outbound");
    if let Some(subject) = &want.reply_subject {
        let got = reply.map(|m| m.subject.as_str());
        expect(problems, got == Some(subject), || {
            format!("{s}: reply subject {got:?}, expected {subject:?}")
        });
    }
    if let Some(text) = &want.reply_text {
        let got = reply.and_then(|m| m.text.as_deref());
        expect(problems, got == Some(text), || {
            format!("{s}: reply text {got:?}, expected {text:?}")
        });
    }
    if want.no_reply {
        expect(problems, reply.is_none(), || {
            format!("{s}: a reply: {reply:?}")
        });
    }
    if let Some(agent) = &want.assignee {
        let users = app.store.users(AccountId(account)).await.expect("users");
        let id = users.iter().find(|u| &u.email == agent).map(|u| u.id);
        expect(problems, id.is_some() && t.ticket.assignee_id == id, || {
            format!("{s}: assignee {:?}, expected {agent}", t.ticket.assignee_id)
        });
    }
    if let Some(rule) = &want.tag_added_by_rule {
        let found = t
            .events
            .iter()
            .any(|e| e.kind == "tag_added" && e.data["by"]["rule_name"] == rule.as_str());
        expect(problems, found, || {
            format!("{s}: no tag_added event by {rule}: {:?}", t.events)
        });
    }
}

fn check_log(dir: &Path, account: i64, rule: i64, want: &LogWant, problems: &mut Vec<String>) {
    let account = account.to_string();
    let rule = rule.to_string();
    let log = cli_json(
        dir,
        &[
            "rules",
            "log",
            "--account",
            &account,
            "--rule",
            &rule,
            "--json",
        ],
    );
    let runs = log.as_array().cloned().unwrap_or_default();
    let r = &want.rule;
    if let Some(n) = want.runs {
        expect(problems, runs.len() == n, || {
            format!("log of {r}: {} runs, expected {n}", runs.len())
        });
    }
    for run in &runs {
        if want.all_matched {
            expect(problems, run["matched"] == true, || {
                format!("log of {r}: a run did not match: {run}")
            });
        }
        if let Some(field) = &want.condition_field {
            expect(
                problems,
                run["conditions"][0]["field"] == field.as_str(),
                || format!("log of {r}: first condition is not on {field}: {run}"),
            );
        }
    }
    let first_actions: Vec<String> = runs
        .iter()
        .map(|run| {
            format!(
                "{} {}",
                run["actions"][0]["outcome"].as_str().unwrap_or(""),
                run["actions"][0]["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    for a in &want.first_action {
        let n = first_actions
            .iter()
            .filter(|got| {
                got.starts_with(&a.starts_with) && a.contains.iter().all(|c| got.contains(c))
            })
            .count();
        let fits = match a.count {
            Some(count) => n == count,
            None => n > 0,
        };
        expect(problems, fits, || {
            format!("log of {r}: {n} runs fit {a:?}: {first_actions:?}")
        });
    }
}

/// Runs one case against a server of its own; returns what differs from the case.
async fn run_case(cases: &Path, case: Case) -> Vec<String> {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    let dir = app.dir.path().to_path_buf();
    let account = acct.to_string();
    for agent in &case.agents {
        let email = EmailAddress::parse(&agent.email).expect("agent address in the case");
        app.store
            .create_user(AccountId(acct), &email, agent.name.as_deref(), Role::Agent)
            .await
            .expect("agent");
    }
    for m in &case.macros {
        add_macro(&dir, acct, &m.name, &m.body);
    }
    if let Some(hours) = &case.business_hours {
        let file = write(&dir, "hours.json", hours);
        let file = file.to_str().expect("path");
        cli(
            &dir,
            &[
                "rules",
                "business-hours",
                "--account",
                &account,
                "--file",
                file,
            ],
        );
    }
    let mut ids = BTreeMap::new();
    for r in &case.rules {
        let text = match &r.text {
            Some(text) => text.clone(),
            None => {
                let path = cases.join("definitions").join(&r.file);
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }
        };
        ids.insert(r.file.clone(), add_rule(&dir, acct, &r.file, &text));
    }
    for m in &case.messages {
        let headers: Vec<(&str, &str)> = m
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(&app, &m.from, &fwd, &m.subject, &m.body, &headers).await;
        if let Some(n) = m.runs {
            wait_runs(&app, acct, n).await;
        }
    }

    let mut problems = Vec::new();
    for t in &case.tickets {
        check_ticket(&app, acct, t, &mut problems).await;
    }
    for l in &case.log {
        let Some(&rule) = ids.get(&l.rule) else {
            problems.push(format!("the case has no rule {}", l.rule));
            continue;
        };
        check_log(&dir, acct, rule, l, &mut problems);
    }
    if let Some(want) = &case.matched_runs {
        let log = cli_json(
            &dir,
            &["rules", "log", "--account", &account, "--matched", "--json"],
        );
        let n = log.as_array().map_or(0, Vec::len);
        expect(&mut problems, n == want.count, || {
            format!("{n} matched runs, expected {}", want.count)
        });
    }
    for r in &case.rules {
        if r.shown.is_empty() {
            continue;
        }
        let id = ids[&r.file].to_string();
        let shown = cli_json(
            &dir,
            &["rules", "show", &id, "--account", &account, "--json"],
        );
        for (key, want) in &r.shown {
            let want = serde_json::to_value(want).expect("TOML value as JSON");
            let got = &shown["definition"][key];
            expect(&mut problems, got == &want, || {
                format!("{}: definition.{key} is {got}, expected {want}", r.file)
            });
        }
    }
    app.stop().await;
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_cases() {
    let dir = fixture_dir("rules");
    let names = case_names(&dir, "toml");
    // Each case has a server of its own: they run side by side, and a panic in one (a
    // helper's assertion) is that case's failure.
    let mut tasks = Vec::new();
    for name in &names {
        let case = read_case(&dir, name, "toml")
            .and_then(|text| toml::from_str::<Case>(&text).map_err(|e| e.to_string()));
        tasks.push((
            name,
            case.map(|case| {
                let dir = dir.clone();
                tokio::spawn(async move { run_case(&dir, case).await })
            }),
        ));
    }
    let mut failures = Vec::new();
    for (name, task) in tasks {
        let outcome = match task {
            Err(e) => Err(e),
            Ok(handle) => handle.await.map_err(|e| match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                Err(e) => e.to_string(),
            }),
        };
        record(&mut failures, name, outcome);
    }
    assert_all_passed(&failures, names.len());
}

//! Rules benchmark (bench/rules.sh runs it in release): generates an account with TICKETS
//! tickets and MESSAGES messages over 90 days, then times
//! 1. the simulation of the seed's follow-up rule over the 90 days (target: < 10 s for
//!    100,000 tickets and 500,000 messages), and
//! 2. scheduler passes of the same rule, enabled, over the open tickets (target: < 1 s for
//!    100,000 open tickets), as when the rule has been running: fires are recorded for the
//!    tickets it handled before, one ticket in a thousand is newly due. The first pass fires
//!    on those, the next ones find nothing new (steady state).
//!
//! Usage: rules_bench DIR [TICKETS] [MESSAGES]. Prints one JSON document.

use postern::domain::{AccountId, EmailAddress};
use postern::rules::{self, ManualClock, QueueReplySender, RulesConfig, RulesEngine};
use postern::store::Store;
use std::sync::Arc;
use std::time::Instant;

const RULE: &str = r#"
name = "Follow up after 24 hours without an answer"
trigger = "time"
enabled = false

[conditions]
all = [
  { field = "status", operator = "equals", value = "open" },
  { field = "last_message_from", operator = "equals", value = "customer" },
  { field = "time_since_last_agent_reply", operator = "at_least", value = "24h" },
  { not = { field = "tags", operator = "contains", value = "do-not-follow-up" } },
]

[[actions]]
type = "reply_with_macro"
macro = "on-it"

[[actions]]
type = "add_tag"
tag = "followed-up"

[[actions]]
type = "set_priority"
priority = "high"

[[actions]]
type = "add_note"
text = "Automatic follow-up sent to {{ customer.email }}"
"#;

/// A small deterministic generator (xorshift), so that runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(
        args.get(1)
            .ok_or("usage: rules_bench DIR [TICKETS] [MESSAGES]")?,
    );
    let tickets: i64 = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
    let messages: i64 = args.get(3).map_or(Ok(500_000), |s| s.parse())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(dir, tickets, messages))
}

async fn run(
    dir: std::path::PathBuf,
    tickets: i64,
    messages: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("rules-bench.db");
    let _ = std::fs::remove_file(&db);
    let store = Store::open(&db, 4).await?;
    let account = store
        .create_account(
            "Bench",
            &[EmailAddress::parse("support@bench.test")?],
            None,
            "in.bench.test",
        )
        .await?;
    let acct = AccountId(account.id);
    let now = postern::store::now_ms();
    let day = 86_400_000;
    let started = Instant::now();
    {
        // Bulk load through one rusqlite transaction: the fixture, not what is measured.
        let mut conn = rusqlite::Connection::open(&db)?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        let tx = conn.transaction()?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let customers = (tickets / 4).max(1);
        {
            let mut c = tx.prepare("INSERT INTO customers (account_id, email, name, attributes, created_at) VALUES (?, ?, ?, ?, ?)")?;
            for i in 0..customers {
                let vip = if i % 10 == 0 { "{\"vip\": true}" } else { "{}" };
                c.execute(rusqlite::params![
                    account.id,
                    format!("c{i}@client.test"),
                    format!("Client {i}"),
                    vip,
                    now - 100 * day
                ])?;
            }
        }
        let mut t = tx.prepare(
            "INSERT INTO tickets (account_id, subject, normalized_subject, status, customer_id, created_at, updated_at,
                                  last_customer_message_at, last_agent_reply_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )?;
        let mut m = tx.prepare(
            "INSERT INTO messages (account_id, ticket_id, direction, source, dedup_key, from_address, subject, received_at,
                                   text_body, size) VALUES (?, ?, ?, 'smtp', ?, ?, ?, ?, ?, 100)",
        )?;
        let mut g =
            tx.prepare("INSERT INTO ticket_tags (ticket_id, tag) VALUES (?, 'do-not-follow-up')")?;
        let per = messages / tickets.max(1);
        let mut seq = 0;
        for i in 0..tickets {
            let created = now - 90 * day + (i * 90 * day) / tickets.max(1);
            let customer = 1 + (i % customers);
            let subject = format!("Order {i}");
            let mut at = created;
            let (mut last_c, mut last_a) = (None, None);
            let n = per + i64::from(i < messages % tickets.max(1));
            let mut times = Vec::new();
            for k in 0..n {
                // Customers write first; then agent and customer alternate, 1 to 40 hours apart.
                let inbound = k % 2 == 0 || rng.below(10) == 0;
                times.push((at, inbound));
                if inbound {
                    last_c = Some(at)
                } else {
                    last_a = Some(at)
                }
                at += (1 + rng.below(40) as i64) * 3_600_000;
                if at > now {
                    at = now - rng.below(3_600_000) as i64;
                }
            }
            // Every ticket open: the scheduler's worst case (a store that never closes any).
            let status = "open";
            let id: i64 = t.query_row(
                rusqlite::params![
                    account.id,
                    subject,
                    subject.to_lowercase(),
                    status,
                    customer,
                    created,
                    at,
                    last_c,
                    last_a
                ],
                |r| r.get(0),
            )?;
            for (at, inbound) in times {
                seq += 1;
                m.execute(rusqlite::params![
                    account.id,
                    id,
                    if inbound { "inbound" } else { "outbound" },
                    format!("m{seq}"),
                    if inbound {
                        format!("c{}@client.test", customer - 1)
                    } else {
                        "support@bench.test".into()
                    },
                    subject,
                    at,
                    "Bonjour, où en est ma commande ?"
                ])?;
            }
            if rng.below(10) == 0 {
                g.execute([id])?;
            }
        }
        drop((t, m, g));
        tx.commit()?;
    }
    let load_s = started.elapsed().as_secs_f64();
    rules::save_macro(
        &store,
        acct,
        "on-it",
        None,
        "Hi {{ customer.first_name }}, we are on it.",
        None,
    )
    .await?;
    let rule = rules::parse_rule_text(RULE, rules::Format::Toml)?;
    let record = rules::save_parsed(&store, acct, &rule, None).await?;

    let t0 = Instant::now();
    let report = rules::simulate::simulate(
        &store,
        acct,
        &rule,
        Some(record.id),
        now - 90 * day,
        now,
        24 * 3_600_000,
    )
    .await?;
    let simulate_s = t0.elapsed().as_secs_f64();

    store.set_rule_enabled(record.id, acct, true).await?;
    let open: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE account_id = ? AND status = 'open'")
            .bind(account.id)
            .fetch_one(store.pool())
            .await?;
    // The rule has been running: every ticket due before now was handled in an earlier
    // minute (one fire recorded for its episode), except one in a thousand, newly due.
    let handled = sqlx::query(
        "INSERT INTO rule_fires (rule_id, ticket_id, episode, fired_at)
         SELECT ?, id, MAX(created_at, COALESCE(last_customer_message_at, 0), COALESCE(last_agent_reply_at, 0)), ?
         FROM tickets WHERE account_id = ? AND id % 1000 != 0",
    )
    .bind(record.id)
    .bind(now)
    .bind(account.id)
    .execute(store.pool())
    .await?
    .rows_affected();
    let settings = postern::config::Settings::load_with_env(
        None,
        vec![
            ("POSTERN__INBOUND__DOMAIN".into(), "in.bench.test".into()),
            ("POSTERN__DNS__NAMESERVERS".into(), "127.0.0.1:9".into()),
        ],
    )?;
    let clock = Arc::new(ManualClock::new(now));
    let engine = RulesEngine::new(
        store.clone(),
        // No sending domain: replies are recorded in their tickets, not sent.
        Arc::new(QueueReplySender {
            store: store.clone(),
            queue: postern::app::outbound_queue(&settings, &store).await?,
        }),
        RulesConfig::default(),
        clock.clone(),
    );
    let mut passes = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = engine.scheduler_pass().await?;
        passes.push(serde_json::json!({"seconds": t.elapsed().as_secs_f64(), "candidates": r.candidates, "fired": r.fired}));
        clock.advance_minutes(1);
    }
    let out = serde_json::json!({
        "tickets": tickets,
        "messages": messages,
        "open_tickets": open,
        "already_handled": handled,
        "fixture_load_seconds": load_s,
        "simulate_seconds": simulate_s,
        "simulation": {"evaluations": report.totals.evaluations, "matches": report.totals.matches,
                        "tickets_matched": report.totals.tickets_matched, "replies_planned": report.totals.replies_planned,
                        "blocked": report.totals.actions_blocked, "days": report.per_day.len()},
        "scheduler_passes": passes,
        "database": db.display().to_string(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

//! Outbound benchmark (bench/outbound.sh runs it): DKIM signatures per second on their own,
//! then N replies enqueued through `OutboundQueue::enqueue_reply` (compose, sign, store,
//! queue) and delivered by the queue workers through a relay (smtp-sink). Prints one JSON
//! document.
//!
//!   cargo run --release --example outbound_bench -- RELAY_PORT [REPLIES] [WORKERS]

use postern::config::Settings;
use postern::domain::{AccountId, EmailAddress, TicketId};
use postern::outbound::dkim::{generate_keys, DomainSigner};
use postern::outbound::ReplyDraft;
use postern::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .ok_or("usage: outbound_bench RELAY_PORT [REPLIES] [WORKERS]")?
        .parse()?;
    let replies: i64 = args.get(2).map_or(Ok(10_000), |s| s.parse())?;
    let workers: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let port_s = port.to_string();
    let workers_s = workers.to_string();
    let env: Vec<(String, String)> = [
        ("POSTERN__DATA_DIR", dir.path().to_str().ok_or("temp dir")?),
        ("POSTERN__OUTBOUND__MODE", "relay"),
        ("POSTERN__OUTBOUND__RELAY__HOST", "127.0.0.1"),
        ("POSTERN__OUTBOUND__RELAY__PORT", &port_s),
        ("POSTERN__OUTBOUND__RELAY__TLS", "none"),
        ("POSTERN__OUTBOUND__WORKERS", &workers_s),
        ("POSTERN__OUTBOUND__POLL_INTERVAL", "50ms"),
        ("POSTERN__DNS__NAMESERVERS", "127.0.0.1:9"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let settings = Settings::load_with_env(None, env)?;
    let store = Store::open(&settings.database_path(), 4).await?;
    let account = store
        .create_account(
            "Bench Shop",
            &[EmailAddress::parse("support@brand.test")?],
            None,
            "in.bench.test",
        )
        .await?;
    let acct = AccountId(account.id);
    let queue = postern::app::outbound_queue(&settings, &store).await?;
    let (domain, _) = queue.add_domain(acct, "brand.test", None).await?;
    store
        .set_domain_check(domain.id, true, &serde_json::json!({"bench": true}))
        .await?;

    // DKIM on its own: the same composed reply signed again and again.
    let keys = generate_keys(true)?;
    let (ed_priv, _) = keys.ed25519.clone().ok_or("no ed25519 key")?;
    let sample = b"From: \"Bench Shop\" <support@brand.test>\r\nTo: customer@example.test\r\nSubject: Re: Order\r\nDate: Mon, 16 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a.1.b@in.bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYour order left this morning.\r\n";
    let both = DomainSigner::new(
        "brand.test",
        "s",
        &keys.rsa_private,
        Some(("s-ed", &ed_priv)),
    )?;
    let rsa_only = DomainSigner::new("brand.test", "s", &keys.rsa_private, None)?;
    let n_sign = 2000;
    let t = Instant::now();
    for _ in 0..n_sign {
        rsa_only.sign(sample)?;
    }
    let rsa_per_sec = n_sign as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n_sign {
        both.sign(sample)?;
    }
    let both_per_sec = n_sign as f64 / t.elapsed().as_secs_f64();

    // Tickets to answer, straight into the tables (intake is measured elsewhere).
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = store.pool().begin().await?;
    for i in 0..replies {
        let customer: i64 = sqlx::query_scalar(
            "INSERT INTO customers (account_id, email, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(acct.0)
        .bind(format!("customer{i}@example.test"))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tickets (id, account_id, subject, normalized_subject, customer_id, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(i + 1)
        .bind(acct.0)
        .bind(format!("Order {i}"))
        .bind(format!("order {i}"))
        .bind(customer)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let t = Instant::now();
    for i in 0..replies {
        let draft = ReplyDraft {
            text: format!("Hello,\nyour order {i} left this morning.\n\nBench Shop"),
            ..Default::default()
        };
        queue
            .enqueue_reply(acct, TicketId(i + 1), draft, false)
            .await?;
    }
    let enqueue_secs = t.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let runner = tokio::spawn(Arc::clone(&queue).run(stop.clone()));
    let t = Instant::now();
    loop {
        let left = store.queue_depth().await?;
        if left == 0 {
            break;
        }
        if t.elapsed() > Duration::from_secs(3600) {
            return Err(format!("{left} replies still queued after an hour").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliver_secs = t.elapsed().as_secs_f64();
    stop.cancel();
    let _ = runner.await;
    let delivered: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbound_queue WHERE status = 'delivered'")
            .fetch_one(store.pool())
            .await?;
    println!(
        "{}",
        serde_json::json!({
            "replies": replies,
            "workers": workers,
            "delivered": delivered,
            "dkim_rsa_signatures_per_sec": rsa_per_sec.round(),
            "dkim_rsa_plus_ed25519_messages_per_sec": both_per_sec.round(),
            "enqueue_per_sec": (replies as f64 / enqueue_secs).round(),
            "deliveries_per_sec": (delivered as f64 / deliver_secs).round(),
            "deliver_secs": (deliver_secs * 100.0).round() / 100.0,
        })
    );
    Ok(())
}

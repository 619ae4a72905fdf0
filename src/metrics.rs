//! Prometheus metrics of the whole process, in one registry, rendered at `/metrics`.
//!
//! A leaf module: it imports nothing of Postern, so the SMTP server, the intake, the commit
//! writer and the outbound queue can all report to it without depending on each other.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

struct Metrics {
    registry: Registry,
    smtp_sessions_opened: Counter,
    smtp_sessions_active: Gauge,
    messages_accepted: Counter,
    messages_rejected: Family<ReasonLabel, Counter>,
    commit_seconds: Histogram,
    commit_batch_size: Histogram,
    queue_depth: Gauge,
    admin_commands: Counter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("postern");
    let smtp_sessions_opened = Counter::default();
    registry.register(
        "smtp_sessions_opened",
        "SMTP connections accepted since start",
        smtp_sessions_opened.clone(),
    );
    let smtp_sessions_active = Gauge::default();
    registry.register(
        "smtp_sessions_active",
        "SMTP sessions open right now",
        smtp_sessions_active.clone(),
    );
    let messages_accepted = Counter::default();
    registry.register(
        "smtp_messages_accepted",
        "Messages answered 250 after a durable commit",
        messages_accepted.clone(),
    );
    let messages_rejected = Family::<ReasonLabel, Counter>::default();
    registry.register(
        "smtp_messages_rejected",
        "Recipients and messages refused, by reason (the category of the SMTP reply)",
        messages_rejected.clone(),
    );
    // 0.5 ms .. ~16 s: an fsync'd group commit is usually a few milliseconds.
    let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
    registry.register(
        "store_commit_seconds",
        "Time of one group commit of the storage writer",
        commit_seconds.clone(),
    );
    let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
    registry.register(
        "store_commit_batch_size",
        "Messages committed together in one group commit",
        commit_batch_size.clone(),
    );
    let queue_depth = Gauge::default();
    registry.register(
        "outbound_queue_depth",
        "Outbound messages waiting for delivery",
        queue_depth.clone(),
    );
    let admin_commands = Counter::default();
    registry.register(
        "admin_commands",
        "Command-line commands run in this server for a client of the admin socket",
        admin_commands.clone(),
    );
    Metrics {
        registry,
        smtp_sessions_opened,
        smtp_sessions_active,
        messages_accepted,
        messages_rejected,
        commit_seconds,
        commit_batch_size,
        queue_depth,
        admin_commands,
    }
});

/// Counts one SMTP connection for as long as it lives; drop it when the connection ends.
pub struct SmtpSessionGuard(());

impl Drop for SmtpSessionGuard {
    fn drop(&mut self) {
        METRICS.smtp_sessions_active.dec();
    }
}

/// An SMTP connection was accepted: counted as opened, and active until the guard drops.
pub fn smtp_session_opened() -> SmtpSessionGuard {
    METRICS.smtp_sessions_opened.inc();
    METRICS.smtp_sessions_active.inc();
    SmtpSessionGuard(())
}

/// A message was committed and answered 250.
pub fn message_accepted() {
    METRICS.messages_accepted.inc();
}

/// A recipient or message was refused; `reason` is a short snake_case category
/// (unknown_recipient, relay_denied, too_large, storage_failure, ...).
pub fn message_rejected(reason: &str) {
    METRICS
        .messages_rejected
        .get_or_create(&ReasonLabel {
            reason: reason.to_string(),
        })
        .inc();
}

/// One group commit of the storage writer: how long it took and how many messages it held.
pub fn observe_commit(duration: Duration, batch_size: usize) {
    METRICS.commit_seconds.observe(duration.as_secs_f64());
    METRICS.commit_batch_size.observe(batch_size as f64);
}

/// Outbound messages waiting for delivery (0 until the outbound queue exists).
pub fn set_queue_depth(depth: i64) {
    METRICS.queue_depth.set(depth);
}

/// A command of the command line ran here for a client of the admin socket.
pub fn admin_command() {
    METRICS.admin_commands.inc();
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &METRICS.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_the_exposition() {
        let guard = smtp_session_opened();
        message_accepted();
        message_rejected("unknown_recipient");
        observe_commit(Duration::from_millis(3), 4);
        set_queue_depth(0);
        admin_command();
        let text = render();
        assert!(
            text.contains("postern_smtp_sessions_opened_total"),
            "{text}"
        );
        assert!(
            text.contains("postern_smtp_messages_accepted_total"),
            "{text}"
        );
        assert!(
            text.contains("postern_smtp_messages_rejected_total{reason=\"unknown_recipient\"}"),
            "{text}"
        );
        assert!(
            text.contains("postern_store_commit_seconds_count"),
            "{text}"
        );
        assert!(text.contains("postern_outbound_queue_depth 0"), "{text}");
        assert!(text.contains("postern_admin_commands_total"), "{text}");
        drop(guard);
    }
}

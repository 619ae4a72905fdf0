//! The conversations an import leaves in the store, to compare one import with another.

use postern::store::Store;
use std::collections::{BTreeSet, HashMap};

/// The conversations of an account: the sets of Message-IDs (dedup keys when missing) that
/// share a ticket.
pub async fn threads_of(store: &Store, account: i64) -> BTreeSet<BTreeSet<String>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT ticket_id, COALESCE(message_id, dedup_key) FROM messages WHERE account_id = ?",
    )
    .bind(account)
    .fetch_all(store.pool())
    .await
    .expect("messages");
    let mut by_ticket: HashMap<i64, BTreeSet<String>> = HashMap::new();
    for (t, id) in rows {
        by_ticket.entry(t).or_default().insert(id);
    }
    by_ticket.into_values().collect()
}

//! The databases the store's unit tests start from: a new store in a temporary directory
//! (kept while the returned `TempDir` lives) with one account, and with one of its tickets;
//! and what they read back.

use super::Store;
use crate::domain::AccountId;

/// A new store with one account.
pub(super) async fn store_with_account() -> (tempfile::TempDir, Store, AccountId) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.db"), 1).await.unwrap();
    let account = store
        .write(|conn| {
            Ok(conn.query_row(
                "INSERT INTO accounts (name, from_address, created_at)
                 VALUES ('a', 'a@b.test', 0) RETURNING id",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    (dir, store, AccountId(account))
}

/// A new store with one account and one open ticket of it with `subject` (lowercased as
/// the normalized subject), created and updated at 10.
pub(super) async fn store_with_ticket(subject: &str) -> (tempfile::TempDir, Store, AccountId, i64) {
    let (dir, store, account) = store_with_account().await;
    let (subject, normalized) = (subject.to_string(), subject.to_lowercase());
    let ticket = store
        .write(move |conn| {
            Ok(conn.query_row(
                "INSERT INTO tickets (account_id, subject, normalized_subject, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 10, 10) RETURNING id",
                (account.0, &subject, &normalized),
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    (dir, store, account, ticket)
}

/// The tags of `ticket`, in order.
pub(super) async fn tags(store: &Store, ticket: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT tag FROM ticket_tags WHERE ticket_id = ? ORDER BY tag")
        .bind(ticket)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// The number of rows in `table`.
pub(super) async fn count(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

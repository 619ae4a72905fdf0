//! Browser sessions of signed-in users (SAML single sign-on). The cookie carries a random
//! value; the table keeps its SHA-256, so a copy of the database signs nobody in.

use super::tokens::{random_secret, secret_hash};
use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, Principal, Role};
use std::time::Duration;

/// Name of the cookie that carries the session value.
pub const SESSION_COOKIE: &str = "postern_session";

impl Store {
    /// Opens a session for `user` of `account`, valid for `ttl`; returns the cookie value
    /// (shown once, never stored).
    pub async fn create_session(
        &self,
        account: AccountId,
        user: i64,
        ttl: Duration,
    ) -> Result<String, StoreError> {
        let u = self.user(user, account).await?;
        if u.disabled {
            return Err(StoreError::Invalid(format!(
                "the user {} is disabled and cannot sign in",
                u.email
            )));
        }
        let value = random_secret();
        let now = now_ms();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let hash = secret_hash(&value);
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, account_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                (&hash, user, account.0, now, now.saturating_add(ttl_ms)),
            )?;
            // Expired sessions go when new ones come: no separate sweeper needed.
            conn.execute("DELETE FROM sessions WHERE expires_at < ?1", [now])?;
            Ok(())
        })
        .await?;
        Ok(value)
    }

    /// Who a session cookie signs in; None when unknown, expired, or the user is disabled.
    pub async fn session_principal(&self, value: &str) -> Result<Option<Principal>, StoreError> {
        if value.is_empty() || value.len() > 200 {
            return Ok(None);
        }
        let row: Option<(i64, i64, String)> = sqlx::query_as(
            "SELECT s.account_id, s.user_id, u.role FROM sessions s
             JOIN users u ON u.id = s.user_id AND u.account_id = s.account_id
             WHERE s.token_hash = ? AND s.expires_at > ? AND u.disabled = 0",
        )
        .bind(secret_hash(value))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(account, user, role)| Principal {
            account_id: AccountId(account),
            // The user's current role, so a demotion takes effect at once.
            role: role.parse().unwrap_or(Role::Agent),
            user_id: Some(user),
            token_id: None,
        }))
    }

    /// Signs out: the cookie value stops working. Unknown values are ignored.
    pub async fn delete_session(&self, value: &str) -> Result<(), StoreError> {
        let hash = secret_hash(value);
        self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [&hash])?;
            Ok(())
        })
        .await
    }

    /// Signs out of one account: the cookie value stops working if it is a session of
    /// `account`; another account's session is left alone.
    pub async fn delete_account_session(
        &self,
        account: AccountId,
        value: &str,
    ) -> Result<(), StoreError> {
        let hash = secret_hash(value);
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM sessions WHERE token_hash = ?1 AND account_id = ?2",
                (&hash, account.0),
            )?;
            Ok(())
        })
        .await
    }
}

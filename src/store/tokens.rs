//! API tokens: random secrets shown once; only their SHA-256 is stored.

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, Principal, Role};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Every token starts with this, so a leaked one is easy to recognise (secret scanners).
pub const API_TOKEN_PREFIX: &str = "pst_";

/// How often `last_used_at` is refreshed at most: not a write per request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiTokenView {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    #[schema(value_type = String, example = "agent")]
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    account_id: i64,
    name: String,
    role: String,
    prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn view(r: TokenRow) -> ApiTokenView {
    ApiTokenView {
        id: r.id,
        account_id: r.account_id,
        name: r.name,
        role: r.role.parse().unwrap_or(Role::Agent),
        prefix: r.prefix,
        created_at: time(r.created_at),
        last_used_at: r.last_used_at.map(time),
        revoked_at: r.revoked_at.map(time),
    }
}

/// Hex SHA-256 of a secret: what tokens and sessions are looked up by.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, hex-encoded.
pub(crate) fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

const TOKEN_COLUMNS: &str =
    "id, account_id, name, role, prefix, created_at, last_used_at, revoked_at";

impl Store {
    /// Creates a token for `account`; returns it with the secret, which is never stored.
    pub async fn create_api_token(
        &self,
        account: AccountId,
        role: Role,
        name: &str,
    ) -> Result<(ApiTokenView, String), StoreError> {
        self.account(account).await?;
        let name = name.trim();
        if name.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "the token name is longer than 200 characters".into(),
            ));
        }
        let secret = format!("{API_TOKEN_PREFIX}{}", random_secret());
        let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 8).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (account_id, name, role, token_hash, prefix, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(account.0)
        .bind(name)
        .bind(role.as_str())
        .bind(secret_hash(&secret))
        .bind(&prefix)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok((self.api_token(id, Some(account)).await?, secret))
    }

    /// One token; with `account`, a token of another account is not found.
    pub async fn api_token(
        &self,
        id: i64,
        account: Option<AccountId>,
    ) -> Result<ApiTokenView, StoreError> {
        let acct = account.map(|a| a.0);
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ? AND (? IS NULL OR account_id = ?)"
        ))
        .bind(id)
        .bind(acct)
        .bind(acct)
        .fetch_optional(self.pool())
        .await?;
        row.map(view)
            .ok_or_else(|| StoreError::NotFound(format!("no API token with id {id}")))
    }

    /// The account's tokens, revoked ones included, oldest first.
    pub async fn api_tokens(&self, account: AccountId) -> Result<Vec<ApiTokenView>, StoreError> {
        self.account(account).await?;
        let rows: Vec<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE account_id = ? ORDER BY id"
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// Revokes a token at once. With `account`, a token of another account is not found.
    pub async fn revoke_api_token(
        &self,
        id: i64,
        account: Option<AccountId>,
    ) -> Result<ApiTokenView, StoreError> {
        let acct = account.map(|a| a.0);
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?)
             WHERE id = ? AND (? IS NULL OR account_id = ?)",
        )
        .bind(now_ms())
        .bind(id)
        .bind(acct)
        .bind(acct)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no API token with id {id}")));
        }
        self.api_token(id, account).await
    }

    /// Who a bearer token speaks for; None for an unknown or revoked token.
    pub async fn token_principal(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        if !secret.starts_with(API_TOKEN_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        let row: Option<(i64, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT id, account_id, role, last_used_at FROM api_tokens
             WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(secret_hash(secret))
        .fetch_optional(self.pool())
        .await?;
        let Some((id, account, role, last_used)) = row else {
            return Ok(None);
        };
        let now = now_ms();
        if last_used.is_none_or(|t| now - t > LAST_USED_RESOLUTION_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(self.pool())
                .await?;
        }
        Ok(Some(Principal {
            account_id: AccountId(account),
            role: role.parse().unwrap_or(Role::Agent),
            user_id: None,
            token_id: Some(id),
        }))
    }
}

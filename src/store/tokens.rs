//! API tokens: random secrets shown once; only their SHA-256 is stored. A token made
//! through the API records its creator and works only while that user is enabled, with at
//! most that user's role; it may expire. Tokens made on the command line have no creator.

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, Principal, Role, Scope};
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
    /// The token's role; it never acts with more than its creator's current role.
    #[schema(value_type = String, example = "agent")]
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The user who made it through the API (or whose token made it); the token works only
    /// while that user is enabled. None for tokens made with `postern token create`.
    pub created_by_user_id: Option<i64>,
    /// That user's e-mail address.
    pub created_by: Option<String>,
    /// The API token that made it, when one did.
    pub created_by_token_id: Option<i64>,
    /// When it stops working; None: never (operator tokens made on the command line).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `active`, `revoked`, `expired`, or `creator_disabled` (its creator is disabled or
    /// gone).
    pub status: String,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    account_id: i64,
    name: String,
    role: String,
    prefix: String,
    created_at: i64,
    created_by_user_id: Option<i64>,
    created_by_token_id: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    /// From the creator's row (LEFT JOIN): None when there is none, or it is gone.
    creator_email: Option<String>,
    creator_role: Option<String>,
    creator_disabled: Option<bool>,
}

fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Why a bearer token is refused. The caller holds the secret, so saying why is no leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token has this secret.
    Unknown,
    Revoked {
        at: chrono::DateTime<chrono::Utc>,
    },
    Expired {
        at: chrono::DateTime<chrono::Utc>,
    },
    /// The user who made the token is disabled.
    CreatorDisabled {
        email: String,
    },
    /// The user who made the token no longer exists.
    CreatorGone,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown => f.write_str(
                "the API token is unknown; create a new one with `postern token create` or POST /api/v1/tokens",
            ),
            Self::Revoked { at } => write!(
                f,
                "the API token was revoked at {}; ask an admin of the account for a new one",
                at.to_rfc3339()
            ),
            Self::Expired { at } => write!(
                f,
                "the API token expired at {}; ask an admin of the account for a new one (POST /api/v1/tokens takes expires_in)",
                at.to_rfc3339()
            ),
            Self::CreatorDisabled { email } => write!(
                f,
                "the API token was created by {email}, whose user is disabled: a token stops working with the user who made it; ask an admin of the account for a new one"
            ),
            Self::CreatorGone => f.write_str(
                "the user who created this API token no longer exists, so the token no longer works; ask an admin of the account for a new one",
            ),
        }
    }
}

/// Is the token usable at `now`, and with which role? The creator's state comes first, so
/// that a token revoked because its creator was disabled says so while the user is.
fn judge(r: &TokenRow, now: i64) -> Result<Role, TokenRefusal> {
    let role: Role = r.role.parse().unwrap_or(Role::Agent);
    let creator_role = match (r.created_by_user_id, r.creator_disabled) {
        (None, _) => None,
        (Some(_), None) => return Err(TokenRefusal::CreatorGone),
        (Some(_), Some(true)) => {
            return Err(TokenRefusal::CreatorDisabled {
                email: r.creator_email.clone().unwrap_or_default(),
            })
        }
        (Some(_), Some(false)) => Some(
            r.creator_role
                .as_deref()
                .and_then(|x| x.parse().ok())
                .unwrap_or(Role::Agent),
        ),
    };
    if let Some(at) = r.revoked_at {
        return Err(TokenRefusal::Revoked { at: time(at) });
    }
    if let Some(at) = r.expires_at.filter(|&at| at <= now) {
        return Err(TokenRefusal::Expired { at: time(at) });
    }
    // Never more than the creator may do now: an admin made agent keeps agent tokens only.
    Ok(match creator_role {
        Some(Role::Agent) => Role::Agent,
        _ => role,
    })
}

fn view(r: TokenRow) -> ApiTokenView {
    let status = match judge(&r, now_ms()) {
        Ok(_) => "active",
        Err(TokenRefusal::Revoked { .. }) => "revoked",
        Err(TokenRefusal::Expired { .. }) => "expired",
        Err(_) => "creator_disabled",
    };
    ApiTokenView {
        id: r.id,
        account_id: r.account_id,
        name: r.name,
        role: r.role.parse().unwrap_or(Role::Agent),
        prefix: r.prefix,
        created_at: time(r.created_at),
        created_by_user_id: r.created_by_user_id,
        created_by: r.creator_email,
        created_by_token_id: r.created_by_token_id,
        expires_at: r.expires_at.map(time),
        last_used_at: r.last_used_at.map(time),
        revoked_at: r.revoked_at.map(time),
        status: status.to_string(),
    }
}

/// Who asks for a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCreator {
    /// An operator on the server (`postern token create`): no creator recorded.
    Operator,
    /// A signed-in user (session cookie).
    User(i64),
    /// Another API token: the new one belongs to that token's creator, if it has one.
    Token(i64),
}

/// Hex SHA-256 of a secret: what tokens and sessions are looked up by.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 random bits, hex-encoded.
pub(crate) fn random_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The token's columns with its creator's (`t` and `u`).
const TOKEN_COLUMNS: &str = "t.id, t.account_id, t.name, t.role, t.prefix, t.created_at,
    t.created_by_user_id, t.created_by_token_id, t.expires_at, t.last_used_at, t.revoked_at,
    u.email AS creator_email, u.role AS creator_role, u.disabled AS creator_disabled";
const TOKEN_FROM: &str = "api_tokens t LEFT JOIN users u ON u.id = t.created_by_user_id";

impl Store {
    /// Creates an operator's token for `account` (no creator, no expiry); returns it with
    /// the secret, which is never stored.
    pub async fn create_api_token(
        &self,
        account: AccountId,
        role: Role,
        name: &str,
    ) -> Result<(ApiTokenView, String), StoreError> {
        self.create_api_token_by(account, role, name, TokenCreator::Operator, None)
            .await
    }

    /// Creates a token for `account` made by `creator`, working until `expires_at` (ms;
    /// None: never); returns it with the secret, which is never stored.
    pub async fn create_api_token_by(
        &self,
        account: AccountId,
        role: Role,
        name: &str,
        creator: TokenCreator,
        expires_at: Option<i64>,
    ) -> Result<(ApiTokenView, String), StoreError> {
        self.account(account).await?;
        let name = name.trim();
        if name.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "the token name is longer than 200 characters".into(),
            ));
        }
        let (user, token) = match creator {
            TokenCreator::Operator => (None, None),
            TokenCreator::User(u) => {
                let user = self.user(u, account).await?;
                if user.disabled {
                    return Err(StoreError::Invalid(format!(
                        "the user {} is disabled and cannot create tokens",
                        user.email
                    )));
                }
                (Some(user.id), None)
            }
            TokenCreator::Token(t) => {
                let parent: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT created_by_user_id FROM api_tokens WHERE id = ? AND account_id = ?",
                )
                .bind(t)
                .bind(account.0)
                .fetch_optional(self.pool())
                .await?;
                let parent = parent
                    .ok_or_else(|| StoreError::NotFound(format!("no API token with id {t}")))?;
                (parent, Some(t))
            }
        };
        let secret = format!("{API_TOKEN_PREFIX}{}", random_secret());
        let prefix: String = secret.chars().take(API_TOKEN_PREFIX.len() + 8).collect();
        let (name, hash) = (name.to_string(), secret_hash(&secret));
        let id: i64 = self
            .write(move |conn| {
                Ok(conn.query_row(
                    "INSERT INTO api_tokens (account_id, name, role, token_hash, prefix, created_at,
                                             created_by_user_id, created_by_token_id, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
                    rusqlite::params![
                        account.0,
                        &name,
                        role.as_str(),
                        &hash,
                        &prefix,
                        now_ms(),
                        user,
                        token,
                        expires_at
                    ],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok((self.api_token(id, Scope::Account(account)).await?, secret))
    }

    /// One token; in an account's scope, a token of another account is not found.
    pub async fn api_token(&self, id: i64, scope: Scope) -> Result<ApiTokenView, StoreError> {
        let acct = scope.account().map(|a| a.0);
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.id = ? AND (? IS NULL OR t.account_id = ?)"
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
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.account_id = ? ORDER BY t.id"
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// Revokes a token at once. In an account's scope, a token of another account is not found.
    pub async fn revoke_api_token(
        &self,
        id: i64,
        scope: Scope,
    ) -> Result<ApiTokenView, StoreError> {
        let acct = scope.account().map(|a| a.0);
        let done = self
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?1)
                     WHERE id = ?2 AND (?3 IS NULL OR account_id = ?3)",
                    (now_ms(), id, acct),
                )?)
            })
            .await?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("no API token with id {id}")));
        }
        self.api_token(id, scope).await
    }

    /// Who a bearer token speaks for, or why it is refused: unknown, revoked, expired, or
    /// made by a user who is now disabled or gone. Its role is capped by its creator's.
    pub async fn token_principal(
        &self,
        secret: &str,
    ) -> Result<Result<Principal, TokenRefusal>, StoreError> {
        if !secret.starts_with(API_TOKEN_PREFIX) || secret.len() > 200 {
            return Ok(Err(TokenRefusal::Unknown));
        }
        let row: Option<TokenRow> = sqlx::query_as(&format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.token_hash = ?"
        ))
        .bind(secret_hash(secret))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let now = now_ms();
        let role = match judge(&row, now) {
            Ok(role) => role,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if row
            .last_used_at
            .is_none_or(|t| now - t > LAST_USED_RESOLUTION_MS)
        {
            let id = row.id;
            self.write(move |conn| {
                conn.execute(
                    "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                    (now, id),
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(Ok(Principal {
            account_id: AccountId(row.account_id),
            role,
            user_id: None,
            token_id: Some(row.id),
        }))
    }
}

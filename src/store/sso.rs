//! SAML single sign-on records: each account's identity provider, the login requests we
//! issued (consumed once) and the assertion IDs we accepted (kept until they expire).
//! Every query filters by account.

use super::{now_ms, Store, StoreError};
use crate::domain::AccountId;
use serde::Serialize;

/// Login requests one account may have in flight; beyond it new logins are refused until
/// older ones expire (a flood of anonymous GET /login cannot grow the table without bound).
pub const MAX_PENDING_SSO_REQUESTS: i64 = 10_000;

/// The identity provider of an account, as validated from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdpRecord {
    pub idp_entity_id: String,
    pub sso_url: String,
    pub slo_url: Option<String>,
    /// Base64 DER certificates the IdP signs with.
    pub signing_certs: Vec<String>,
    pub metadata_xml: String,
}

/// How an attribute of the assertion gives the user's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SsoRoleRecord {
    pub attribute: String,
    pub admin_values: Vec<String>,
    pub agent_values: Vec<String>,
    /// A user with no matching value becomes an agent instead of being refused.
    pub default_agent: bool,
}

impl Default for SsoRoleRecord {
    fn default() -> Self {
        Self {
            attribute: "role".into(),
            admin_values: vec!["admin".into()],
            agent_values: vec!["agent".into()],
            default_agent: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoProviderRecord {
    pub account_id: AccountId,
    pub idp: SsoIdpRecord,
    pub roles: SsoRoleRecord,
    pub updated_at: i64,
}

/// A login request we issued, looked up when its response arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoRequestRecord {
    pub request_id: String,
    pub relay_state: String,
    pub expires_at: i64,
    pub consumed: bool,
}

/// What [`Store::finish_sso_login`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoFinish {
    /// The request was consumed and the assertion remembered.
    Accepted,
    /// The request is unknown, expired or was already answered.
    RequestNotPending,
    /// This assertion ID was already accepted and has not expired: a replay.
    AssertionReplayed,
}

type ProviderRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

fn json_list(raw: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_default()
}

impl Store {
    /// Sets (or replaces) the identity provider of an account. `roles: None` keeps the role
    /// mapping already stored (the defaults for a new provider).
    pub async fn set_sso_provider(
        &self,
        account: AccountId,
        idp: &SsoIdpRecord,
        roles: Option<&SsoRoleRecord>,
    ) -> Result<(), StoreError> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = ?")
            .bind(account.0)
            .fetch_optional(self.pool())
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "no account with id {account}"
            )));
        }
        let certs = serde_json::to_string(&idp.signing_certs).unwrap_or_else(|_| "[]".into());
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sso_providers
                 (account_id, idp_entity_id, sso_url, slo_url, signing_certs, metadata_xml, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET
                 idp_entity_id = excluded.idp_entity_id, sso_url = excluded.sso_url,
                 slo_url = excluded.slo_url, signing_certs = excluded.signing_certs,
                 metadata_xml = excluded.metadata_xml, updated_at = excluded.updated_at",
        )
        .bind(account.0)
        .bind(&idp.idp_entity_id)
        .bind(&idp.sso_url)
        .bind(&idp.slo_url)
        .bind(&certs)
        .bind(&idp.metadata_xml)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if let Some(roles) = roles {
            sqlx::query(
                "UPDATE sso_providers SET role_attribute = ?, admin_values = ?, agent_values = ?,
                        default_agent = ?
                 WHERE account_id = ?",
            )
            .bind(&roles.attribute)
            .bind(serde_json::to_string(&roles.admin_values).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&roles.agent_values).unwrap_or_else(|_| "[]".into()))
            .bind(roles.default_agent)
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The account's identity provider, if one was set.
    pub async fn sso_provider(
        &self,
        account: AccountId,
    ) -> Result<Option<SsoProviderRecord>, StoreError> {
        let row: Option<ProviderRow> = sqlx::query_as(
            "SELECT idp_entity_id, sso_url, slo_url, signing_certs, metadata_xml, role_attribute,
                    admin_values, agent_values, default_agent, updated_at
             FROM sso_providers WHERE account_id = ?",
        )
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SsoProviderRecord {
            account_id: account,
            idp: SsoIdpRecord {
                idp_entity_id: r.0,
                sso_url: r.1,
                slo_url: r.2,
                signing_certs: json_list(&r.3),
                metadata_xml: r.4,
            },
            roles: SsoRoleRecord {
                attribute: r.5,
                admin_values: json_list(&r.6),
                agent_values: json_list(&r.7),
                default_agent: r.8 != 0,
            },
            updated_at: r.9,
        }))
    }

    /// Remembers a login request we are about to send, after dropping the account's expired
    /// ones. Refuses when the account already has too many in flight.
    pub async fn record_sso_request(
        &self,
        account: AccountId,
        request_id: &str,
        relay_state: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sso_requests WHERE account_id = ? AND expires_at <= ?")
            .bind(account.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sso_requests WHERE account_id = ? AND consumed_at IS NULL",
        )
        .bind(account.0)
        .fetch_one(&mut *tx)
        .await?;
        if pending >= MAX_PENDING_SSO_REQUESTS {
            return Err(StoreError::Invalid(
                "too many sign-ins are in progress for this account; try again in a few minutes"
                    .into(),
            ));
        }
        sqlx::query(
            "INSERT INTO sso_requests (request_id, account_id, relay_state, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(request_id)
        .bind(account.0)
        .bind(relay_state)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A login request of this account (whatever its state), for checking a response to it.
    pub async fn sso_request(
        &self,
        account: AccountId,
        request_id: &str,
    ) -> Result<Option<SsoRequestRecord>, StoreError> {
        let row: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT request_id, relay_state, expires_at, consumed_at FROM sso_requests
             WHERE account_id = ? AND request_id = ?",
        )
        .bind(account.0)
        .bind(request_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SsoRequestRecord {
            request_id: r.0,
            relay_state: r.1,
            expires_at: r.2,
            consumed: r.3.is_some(),
        }))
    }

    /// In one transaction: consumes the login request (it must still be pending) and
    /// remembers the assertion ID until `assertion_expires_at` (it must be new). Either both
    /// happen or neither, so two copies of one response cannot both log in.
    pub async fn finish_sso_login(
        &self,
        account: AccountId,
        request_id: &str,
        assertion_id: &str,
        assertion_expires_at: i64,
    ) -> Result<SsoFinish, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sso_seen_assertions WHERE account_id = ? AND expires_at <= ?")
            .bind(account.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "INSERT INTO sso_seen_assertions (account_id, assertion_id, expires_at)
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(assertion_id)
        .bind(assertion_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh != 1 {
            return Ok(SsoFinish::AssertionReplayed);
        }
        let consumed = sqlx::query(
            "UPDATE sso_requests SET consumed_at = ?
             WHERE account_id = ? AND request_id = ? AND consumed_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .bind(account.0)
        .bind(request_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if consumed != 1 {
            // Dropping the transaction forgets the assertion again.
            return Ok(SsoFinish::RequestNotPending);
        }
        tx.commit().await?;
        Ok(SsoFinish::Accepted)
    }

    /// Whether an assertion ID of this account is remembered (not yet expired).
    pub async fn sso_assertion_seen(
        &self,
        account: AccountId,
        assertion_id: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sso_seen_assertions
             WHERE account_id = ? AND assertion_id = ? AND expires_at > ?",
        )
        .bind(account.0)
        .bind(assertion_id)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }
}

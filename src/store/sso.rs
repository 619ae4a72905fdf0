//! SAML single sign-on records: each account's identity provider, the login requests that
//! were answered (each answered once, kept until the request would have expired) and the
//! assertion IDs we accepted (kept until they expire). Requests are not stored when they are
//! issued: they are sealed records that the HTTP side checks (src/http/saml). Every query
//! filters by account.

use super::{now_ms, Store, StoreError};
use crate::domain::AccountId;
use serde::Serialize;

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

/// What [`Store::finish_sso_login`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsoFinish {
    /// The request was consumed and the assertion remembered.
    Accepted,
    /// The request was already answered by another response.
    RequestAlreadyUsed,
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

    /// In one transaction: marks the login request answered (remembered until
    /// `request_expires_at`, when its sealed record stops being accepted anyway) and remembers
    /// the assertion ID until `assertion_expires_at`. Both must be new; either both are
    /// remembered or neither, so two copies of one response cannot both sign in. Expired
    /// entries of the account are dropped first, which bounds both tables by the sign-ins of
    /// one request lifetime.
    pub async fn finish_sso_login(
        &self,
        account: AccountId,
        request_id: &str,
        request_expires_at: i64,
        assertion_id: &str,
        assertion_expires_at: i64,
    ) -> Result<SsoFinish, StoreError> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        for sql in [
            "DELETE FROM sso_seen_assertions WHERE account_id = ? AND expires_at <= ?",
            "DELETE FROM sso_consumed_requests WHERE account_id = ? AND expires_at <= ?",
        ] {
            sqlx::query(sql)
                .bind(account.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let fresh_assertion = sqlx::query(
            "INSERT INTO sso_seen_assertions (account_id, assertion_id, expires_at)
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(assertion_id)
        .bind(assertion_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh_assertion != 1 {
            return Ok(SsoFinish::AssertionReplayed);
        }
        let fresh_request = sqlx::query(
            "INSERT INTO sso_consumed_requests (account_id, request_id, expires_at)
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(account.0)
        .bind(request_id)
        .bind(request_expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh_request != 1 {
            // Dropping the transaction forgets the assertion again.
            return Ok(SsoFinish::RequestAlreadyUsed);
        }
        tx.commit().await?;
        Ok(SsoFinish::Accepted)
    }
}

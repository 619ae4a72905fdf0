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
        let idp = idp.clone();
        let certs = serde_json::to_string(&idp.signing_certs).unwrap_or_else(|_| "[]".into());
        let roles = roles.map(|roles| {
            (
                roles.attribute.clone(),
                serde_json::to_string(&roles.admin_values).unwrap_or_else(|_| "[]".into()),
                serde_json::to_string(&roles.agent_values).unwrap_or_else(|_| "[]".into()),
                roles.default_agent,
            )
        });
        let now = now_ms();
        self.write(move |conn| {
            super::accounts::require_account(conn, account)?;
            conn.execute(
                "INSERT INTO sso_providers
                     (account_id, idp_entity_id, sso_url, slo_url, signing_certs, metadata_xml, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (account_id) DO UPDATE SET
                     idp_entity_id = excluded.idp_entity_id, sso_url = excluded.sso_url,
                     slo_url = excluded.slo_url, signing_certs = excluded.signing_certs,
                     metadata_xml = excluded.metadata_xml, updated_at = excluded.updated_at",
                rusqlite::params![
                    account.0,
                    &idp.idp_entity_id,
                    &idp.sso_url,
                    &idp.slo_url,
                    &certs,
                    &idp.metadata_xml,
                    now
                ],
            )?;
            if let Some((attribute, admin_values, agent_values, default_agent)) = &roles {
                conn.execute(
                    "UPDATE sso_providers SET role_attribute = ?1, admin_values = ?2,
                            agent_values = ?3, default_agent = ?4
                     WHERE account_id = ?5",
                    (attribute, admin_values, agent_values, default_agent, account.0),
                )?;
            }
            Ok(())
        })
        .await
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
        let request_id = request_id.to_string();
        let assertion_id = assertion_id.to_string();
        self.write(move |conn| {
            for sql in [
                "DELETE FROM sso_seen_assertions WHERE account_id = ?1 AND expires_at <= ?2",
                "DELETE FROM sso_consumed_requests WHERE account_id = ?1 AND expires_at <= ?2",
            ] {
                conn.execute(sql, (account.0, now))?;
            }
            // Checked before anything is remembered: a refused response leaves no trace
            // (the writer runs one write at a time, so nothing comes in between).
            let replayed: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM sso_seen_assertions
                                WHERE account_id = ?1 AND assertion_id = ?2)",
                (account.0, &assertion_id),
                |r| r.get(0),
            )?;
            if replayed {
                return Ok(SsoFinish::AssertionReplayed);
            }
            let fresh_request = conn.execute(
                "INSERT INTO sso_consumed_requests (account_id, request_id, expires_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                (account.0, &request_id, request_expires_at),
            )?;
            if fresh_request != 1 {
                return Ok(SsoFinish::RequestAlreadyUsed);
            }
            conn.execute(
                "INSERT INTO sso_seen_assertions (account_id, assertion_id, expires_at)
                 VALUES (?1, ?2, ?3)",
                (account.0, &assertion_id, assertion_expires_at),
            )?;
            Ok(SsoFinish::Accepted)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_fixtures::store_with_account;

    fn idp(entity: &str) -> SsoIdpRecord {
        SsoIdpRecord {
            idp_entity_id: entity.into(),
            sso_url: "https://idp.test/sso".into(),
            slo_url: None,
            signing_certs: vec!["MIIB".into()],
            metadata_xml: "<EntityDescriptor/>".into(),
        }
    }

    #[tokio::test]
    async fn a_provider_of_an_unknown_account_is_not_found_and_not_stored() {
        let (_dir, store, _) = store_with_account().await;
        let err = store
            .set_sso_provider(AccountId(999), &idp("https://idp.test"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(m) if m == "no account with id 999"),
            "{err}"
        );
        assert_eq!(store.sso_provider(AccountId(999)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn replacing_the_provider_keeps_the_roles_unless_new_ones_are_given() {
        let (_dir, store, account) = store_with_account().await;
        store
            .set_sso_provider(account, &idp("https://one.test"), None)
            .await
            .unwrap();
        let first = store.sso_provider(account).await.unwrap().unwrap();
        assert_eq!(first.idp, idp("https://one.test"));
        assert_eq!(first.roles, SsoRoleRecord::default());
        let roles = SsoRoleRecord {
            attribute: "groups".into(),
            admin_values: vec!["ops".into()],
            agent_values: vec!["support".into(), "sales".into()],
            default_agent: true,
        };
        store
            .set_sso_provider(account, &idp("https://two.test"), Some(&roles))
            .await
            .unwrap();
        store
            .set_sso_provider(account, &idp("https://three.test"), None)
            .await
            .unwrap();
        let last = store.sso_provider(account).await.unwrap().unwrap();
        assert_eq!(last.idp, idp("https://three.test"));
        assert_eq!(last.roles, roles);
    }

    #[tokio::test]
    async fn a_refused_response_leaves_neither_its_request_nor_its_assertion_used() {
        let (_dir, store, account) = store_with_account().await;
        let later = now_ms() + 60_000;
        let finish = |request: &'static str, assertion: &'static str| {
            let store = store.clone();
            async move {
                store
                    .finish_sso_login(account, request, later, assertion, later)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(finish("req-1", "as-1").await, SsoFinish::Accepted);
        assert_eq!(finish("req-2", "as-1").await, SsoFinish::AssertionReplayed);
        assert_eq!(finish("req-1", "as-2").await, SsoFinish::RequestAlreadyUsed);
        // Neither refusal remembered anything: req-2 and as-2 still sign in, once.
        assert_eq!(finish("req-2", "as-2").await, SsoFinish::Accepted);
        assert_eq!(finish("req-2", "as-3").await, SsoFinish::RequestAlreadyUsed);
    }

    #[tokio::test]
    async fn expired_requests_and_assertions_are_forgotten() {
        let (_dir, store, account) = store_with_account().await;
        let past = now_ms() - 1;
        let later = now_ms() + 60_000;
        assert_eq!(
            store
                .finish_sso_login(account, "req", past, "as", past)
                .await
                .unwrap(),
            SsoFinish::Accepted
        );
        assert_eq!(
            store
                .finish_sso_login(account, "req", later, "as", later)
                .await
                .unwrap(),
            SsoFinish::Accepted
        );
    }
}

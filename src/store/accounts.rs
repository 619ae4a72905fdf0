//! Accounts and their support addresses.

use super::{is_unique_violation, now_ms, Store, StoreError};
use crate::domain::{
    AccountId, AccountSettings, EmailAddress, ForwardingAddress, SupportAddressId,
};
use rusqlite::OptionalExtension;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SupportAddressView {
    pub id: i64,
    pub address: String,
    pub forwarding_address: String,
    pub from_address: Option<String>,
    pub status: String,
    pub confirmation_code: Option<String>,
    pub confirmation_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: i64,
    pub name: String,
    pub from_address: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub support_addresses: Vec<SupportAddressView>,
}

type SupportRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Fails with "no account with id …" unless the account exists. Called inside a write, so
/// that no account can be deleted between the check and the rows written for it.
pub(super) fn require_account(
    conn: &rusqlite::Connection,
    account: AccountId,
) -> Result<(), StoreError> {
    let exists: Option<i64> = conn
        .query_row("SELECT id FROM accounts WHERE id = ?1", [account.0], |r| {
            r.get(0)
        })
        .optional()?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!(
            "no account with id {account}"
        ))),
    }
}

impl Store {
    /// Creates an account with a forwarding address for each support address.
    pub async fn create_account(
        &self,
        name: &str,
        support_addresses: &[EmailAddress],
        from: Option<&EmailAddress>,
        inbound_domain: &str,
    ) -> Result<AccountView, StoreError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(StoreError::Invalid("the account name is empty".into()));
        }
        let first = support_addresses.first().ok_or_else(|| {
            StoreError::Invalid("an account needs at least one support address".into())
        })?;
        let from = from.unwrap_or(first).to_string();
        let now = now_ms();
        let name = name.to_string();
        let addresses: Vec<(String, String, String)> = support_addresses
            .iter()
            .map(|addr| {
                let fwd = ForwardingAddress::generate(addr.local(), inbound_domain);
                (addr.normalized().to_string(), fwd.address, addr.to_string())
            })
            .collect();
        let id = self
            .write(move |conn| {
                let id: i64 = conn.query_row(
                    "INSERT INTO accounts (name, from_address, created_at) VALUES (?1, ?2, ?3) RETURNING id",
                    (&name, &from, now),
                    |r| r.get(0),
                )?;
                for (addr, forwarding, shown) in &addresses {
                    conn.execute(
                        "INSERT INTO support_addresses (account_id, address, forwarding_address, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        (id, addr, forwarding, now),
                    )
                    .map_err(|e| match is_unique_violation(&e) {
                        true => {
                            StoreError::Invalid(format!("support address {shown} is given twice"))
                        }
                        false => e.into(),
                    })?;
                }
                Ok(id)
            })
            .await?;
        self.account(AccountId(id)).await
    }

    /// Adds a support address to an account, with a new forwarding address for it.
    pub async fn add_support_address(
        &self,
        account: AccountId,
        address: &EmailAddress,
        from: Option<&EmailAddress>,
        inbound_domain: &str,
    ) -> Result<SupportAddressView, StoreError> {
        let fwd = ForwardingAddress::generate(address.local(), inbound_domain).address;
        let addr = address.normalized().to_string();
        let from = from.map(|f| f.normalized().to_string());
        let shown = address.to_string();
        let id = self
            .write(move |conn| {
                conn.query_row(
                    "INSERT INTO support_addresses (account_id, address, forwarding_address, from_address, created_at)
                     SELECT id, ?1, ?2, ?3, ?4 FROM accounts WHERE id = ?5 RETURNING id",
                    (&addr, &fwd, &from, now_ms(), account.0),
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => {
                        StoreError::NotFound(format!("no account with id {account}"))
                    }
                    e if is_unique_violation(&e) => StoreError::Conflict(format!(
                        "{shown} is already a support address of this account"
                    )),
                    e => e.into(),
                })
            })
            .await?;
        self.account(account)
            .await?
            .support_addresses
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("no support address with id {id}")))
    }

    pub async fn account(&self, id: AccountId) -> Result<AccountView, StoreError> {
        let row: Option<(i64, String, String, i64)> =
            sqlx::query_as("SELECT id, name, from_address, created_at FROM accounts WHERE id = ?")
                .bind(id.0)
                .fetch_optional(self.pool())
                .await?;
        let (id, name, from_address, created) =
            row.ok_or_else(|| StoreError::NotFound(format!("no account with id {id}")))?;
        let rows: Vec<SupportRow> = sqlx::query_as(
            "SELECT id, address, forwarding_address, from_address, status, confirmation_code,
                    confirmation_url
             FROM support_addresses WHERE account_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        Ok(AccountView {
            id,
            name,
            from_address,
            created_at: ms_to_time(created),
            support_addresses: rows
                .into_iter()
                .map(|r| SupportAddressView {
                    id: r.0,
                    address: r.1,
                    forwarding_address: r.2,
                    from_address: r.3,
                    status: r.4,
                    confirmation_code: r.5,
                    confirmation_url: r.6,
                })
                .collect(),
        })
    }

    pub async fn accounts(&self) -> Result<Vec<AccountView>, StoreError> {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM accounts ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.account(AccountId(id)).await?);
        }
        Ok(out)
    }

    /// The account's own settings (defaults for what it does not set).
    pub async fn account_settings(&self, id: AccountId) -> Result<AccountSettings, StoreError> {
        let raw: Option<String> = sqlx::query_scalar("SELECT settings FROM accounts WHERE id = ?")
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?;
        let raw = raw.ok_or_else(|| StoreError::NotFound(format!("no account with id {id}")))?;
        Ok(AccountSettings::parse(&raw))
    }

    /// Replaces the account's settings.
    pub async fn set_account_settings(
        &self,
        id: AccountId,
        settings: &AccountSettings,
    ) -> Result<(), StoreError> {
        // Cannot fail for these types; if it ever did, it is an encoding failure, not the
        // caller's mistake.
        let text = serde_json::to_string(settings)
            .map_err(|e| StoreError::Internal(format!("account settings do not encode: {e}")))?;
        let done = self
            .write(move |conn| {
                Ok(conn.execute(
                    "UPDATE accounts SET settings = ?1 WHERE id = ?2",
                    (&text, id.0),
                )?)
            })
            .await?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("no account with id {id}")));
        }
        Ok(())
    }

    /// The account and support address that a forwarding address belongs to.
    pub async fn route_forwarding_address(
        &self,
        address: &EmailAddress,
    ) -> Result<Option<(AccountId, SupportAddressId)>, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT account_id, id FROM support_addresses WHERE forwarding_address = ?",
        )
        .bind(address.normalized())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(a, s)| (AccountId(a), SupportAddressId(s))))
    }
}

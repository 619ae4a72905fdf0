//! Agents and admins of an account.

use super::{is_unique_violation, now_ms, Store, StoreError};
use crate::domain::{AccountId, EmailAddress, Role};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub name: Option<String>,
    #[schema(value_type = String, example = "agent")]
    pub role: Role,
    /// A disabled user cannot sign in; their notes and assignments stay.
    pub disabled: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    account_id: i64,
    email: String,
    name: Option<String>,
    role: String,
    disabled: bool,
    created_at: i64,
}

fn view(r: UserRow) -> UserView {
    UserView {
        id: r.id,
        account_id: r.account_id,
        email: r.email,
        name: r.name,
        role: r.role.parse().unwrap_or(Role::Agent),
        disabled: r.disabled,
        created_at: chrono::DateTime::from_timestamp_millis(r.created_at).unwrap_or_default(),
    }
}

const USER_COLUMNS: &str = "id, account_id, email, name, role, disabled, created_at";

/// What may change on a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserChanges {
    pub name: Option<Option<String>>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// What adding a user does when the account already has one with the address.
#[derive(Clone, Copy)]
enum ExistingUser {
    /// Fails with a conflict.
    Refuse,
    /// Updates its name (when one is given) and role.
    Update,
}

fn clean_name(name: Option<&str>) -> Result<Option<String>, StoreError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(StoreError::Invalid(
            "the name is longer than 200 characters".into(),
        ));
    }
    Ok(name.map(str::to_string))
}

impl Store {
    /// Users of one account, by id.
    pub async fn users(&self, account: AccountId) -> Result<Vec<UserView>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE account_id = ? ORDER BY id"
        ))
        .bind(account.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    /// One user of `account` (another account's user is not found).
    pub async fn user(&self, id: i64, account: AccountId) -> Result<UserView, StoreError> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ? AND account_id = ?"
        ))
        .bind(id)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        row.map(view)
            .ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))
    }

    /// Adds a user; an address already used in the account is refused.
    pub async fn create_user(
        &self,
        account: AccountId,
        email: &EmailAddress,
        name: Option<&str>,
        role: Role,
    ) -> Result<UserView, StoreError> {
        self.add_user(account, email, name, role, ExistingUser::Refuse)
            .await
    }

    /// Just-in-time provisioning for single sign-on: the user with this address in the
    /// account, created when new; name and role follow what the identity provider says now.
    /// A disabled user stays disabled (the caller refuses the sign-in).
    pub async fn upsert_sso_user(
        &self,
        account: AccountId,
        email: &EmailAddress,
        name: Option<&str>,
        role: Role,
    ) -> Result<UserView, StoreError> {
        self.add_user(account, email, name, role, ExistingUser::Update)
            .await
    }

    /// Writes the user (address, name, role) into the account, the address normalized and
    /// the name checked, and reads it back.
    async fn add_user(
        &self,
        account: AccountId,
        email: &EmailAddress,
        name: Option<&str>,
        role: Role,
        existing: ExistingUser,
    ) -> Result<UserView, StoreError> {
        self.account(account).await?;
        let name = clean_name(name)?;
        let address = email.normalized().to_string();
        let id = self
            .write(move |conn| {
                let insert = match existing {
                    ExistingUser::Refuse => {
                        "INSERT INTO users (account_id, email, name, role, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id"
                    }
                    ExistingUser::Update => {
                        "INSERT INTO users (account_id, email, name, role, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (account_id, email) DO UPDATE
                           SET name = COALESCE(excluded.name, users.name), role = excluded.role
                         RETURNING id"
                    }
                };
                conn.query_row(
                    insert,
                    (account.0, &address, &name, role.as_str(), now_ms()),
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| match existing {
                    ExistingUser::Refuse if is_unique_violation(&e) => StoreError::Conflict(
                        format!("the account already has a user with the address {address}"),
                    ),
                    _ => e.into(),
                })
            })
            .await?;
        self.user(id, account).await
    }

    pub async fn update_user(
        &self,
        id: i64,
        account: AccountId,
        changes: &UserChanges,
    ) -> Result<UserView, StoreError> {
        let current = self.user(id, account).await?;
        let name = match &changes.name {
            Some(n) => clean_name(n.as_deref())?,
            None => current.name,
        };
        let role = changes.role.unwrap_or(current.role);
        let disabled = changes.disabled.unwrap_or(current.disabled);
        let disabling = changes.disabled == Some(true);
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET name = ?1, role = ?2, disabled = ?3 WHERE id = ?4 AND account_id = ?5",
                (&name, role.as_str(), disabled, id, account.0),
            )?;
            if disabling {
                // A disabled user is signed out everywhere at once, and the API tokens they
                // made are revoked: enabling the user again does not bring those back.
                conn.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
                conn.execute(
                    "UPDATE api_tokens SET revoked_at = ?1 WHERE created_by_user_id = ?2 AND revoked_at IS NULL",
                    (now_ms(), id),
                )?;
            }
            Ok(())
        })
        .await?;
        self.user(id, account).await
    }
}

//! Customers of an account: the people who write to the store, with free-form attributes
//! (order numbers, VIP, ...).

use super::{now_ms, Store, StoreError};
use crate::domain::{AccountId, EmailAddress};
use serde::Serialize;

/// Attributes are a JSON object of at most this many bytes.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub id: i64,
    pub account_id: i64,
    pub email: String,
    pub name: Option<String>,
    /// Free-form JSON object: order numbers, VIP, ...
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub ticket_count: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: i64,
    account_id: i64,
    email: String,
    name: Option<String>,
    attributes: String,
    ticket_count: i64,
    created_at: i64,
}

fn view(r: CustomerRow) -> CustomerView {
    CustomerView {
        id: r.id,
        account_id: r.account_id,
        email: r.email,
        name: r.name,
        attributes: serde_json::from_str(&r.attributes).unwrap_or_else(|_| serde_json::json!({})),
        ticket_count: r.ticket_count,
        created_at: chrono::DateTime::from_timestamp_millis(r.created_at).unwrap_or_default(),
    }
}

const CUSTOMER_SELECT: &str = "SELECT c.id, c.account_id, c.email, c.name, c.attributes,
        (SELECT COUNT(*) FROM tickets t WHERE t.customer_id = c.id AND t.account_id = c.account_id) AS ticket_count,
        c.created_at
    FROM customers c";

fn check_attributes(attributes: &serde_json::Value) -> Result<String, StoreError> {
    if !attributes.is_object() {
        return Err(StoreError::Invalid(
            "attributes must be a JSON object, e.g. {\"order\": \"A-1234\"}".into(),
        ));
    }
    let text = attributes.to_string();
    if text.len() > MAX_ATTRIBUTES_BYTES {
        return Err(StoreError::Invalid(format!(
            "attributes take {} bytes; the limit is {MAX_ATTRIBUTES_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}

fn check_name(name: Option<&str>) -> Result<Option<String>, StoreError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200) {
        return Err(StoreError::Invalid(
            "the name is longer than 200 characters".into(),
        ));
    }
    Ok(name.map(str::to_string))
}

/// Escapes LIKE wildcards so that a search for "50%" finds "50%".
pub(crate) fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

impl Store {
    /// Customers of one account by id, after `after`, at most `limit`; `query` matches
    /// e-mail address or name (a LIKE scan: fine for the size of one store's customer list).
    pub async fn customers(
        &self,
        account: AccountId,
        query: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<CustomerView>, StoreError> {
        let pattern = query.map(like_pattern);
        let rows: Vec<CustomerRow> = sqlx::query_as(&format!(
            "{CUSTOMER_SELECT} WHERE c.account_id = ? AND c.id > ?
               AND (? IS NULL OR c.email LIKE ? ESCAPE '\\' OR c.name LIKE ? ESCAPE '\\')
             ORDER BY c.id LIMIT ?"
        ))
        .bind(account.0)
        .bind(after.unwrap_or(0))
        .bind(&pattern)
        .bind(&pattern)
        .bind(&pattern)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(view).collect())
    }

    pub async fn customer(&self, id: i64, account: AccountId) -> Result<CustomerView, StoreError> {
        let row: Option<CustomerRow> = sqlx::query_as(&format!(
            "{CUSTOMER_SELECT} WHERE c.id = ? AND c.account_id = ?"
        ))
        .bind(id)
        .bind(account.0)
        .fetch_optional(self.pool())
        .await?;
        row.map(view)
            .ok_or_else(|| StoreError::NotFound(format!("no customer with id {id}")))
    }

    /// The id of the account's customer with this address, if any.
    pub async fn customer_id_by_email(
        &self,
        account: AccountId,
        email: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM customers WHERE account_id = ? AND email = ?")
                .bind(account.0)
                .bind(email.trim().to_lowercase())
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn create_customer(
        &self,
        account: AccountId,
        email: &EmailAddress,
        name: Option<&str>,
        attributes: &serde_json::Value,
    ) -> Result<CustomerView, StoreError> {
        let attributes = check_attributes(attributes)?;
        let name = check_name(name)?;
        let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO customers (account_id, email, name, attributes, created_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(account.0)
        .bind(email.normalized())
        .bind(name)
        .bind(attributes)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await;
        match inserted {
            Ok(id) => self.customer(id, account).await,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::Conflict(format!(
                    "the account already has a customer with the address {}",
                    email.normalized()
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Changes the name (when given) and merges `attributes` into the existing ones:
    /// a key set to null is removed.
    pub async fn update_customer(
        &self,
        id: i64,
        account: AccountId,
        name: Option<Option<&str>>,
        attributes: Option<&serde_json::Value>,
    ) -> Result<CustomerView, StoreError> {
        let current = self.customer(id, account).await?;
        let name = match name {
            Some(n) => check_name(n)?,
            None => current.name,
        };
        let mut merged = current.attributes;
        if let Some(changes) = attributes {
            let Some(changes) = changes.as_object() else {
                return Err(StoreError::Invalid(
                    "attributes must be a JSON object, e.g. {\"order\": \"A-1234\"}".into(),
                ));
            };
            if let Some(map) = merged.as_object_mut() {
                for (k, v) in changes {
                    if v.is_null() {
                        map.remove(k);
                    } else {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let attributes = check_attributes(&merged)?;
        sqlx::query(
            "UPDATE customers SET name = ?, attributes = ? WHERE id = ? AND account_id = ?",
        )
        .bind(name)
        .bind(attributes)
        .bind(id)
        .bind(account.0)
        .execute(self.pool())
        .await?;
        self.customer(id, account).await
    }
}

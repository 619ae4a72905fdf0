//! Customers of an account: the people who write to the store, with free-form attributes
//! (order numbers, VIP, ...).

use super::{is_unique_violation, now_ms, Store, StoreError};
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
        let (address, now) = (email.normalized(), now_ms());
        let id = self
            .write(move |conn| {
                conn.query_row(
                    "INSERT INTO customers (account_id, email, name, attributes, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    (account.0, &address, &name, &attributes, now),
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| match is_unique_violation(&e) {
                    true => StoreError::Conflict(format!(
                        "the account already has a customer with the address {address}"
                    )),
                    false => e.into(),
                })
            })
            .await?;
        self.customer(id, account).await
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
        self.write(move |conn| {
            conn.execute(
                "UPDATE customers SET name = ?1, attributes = ?2 WHERE id = ?3 AND account_id = ?4",
                (&name, &attributes, id, account.0),
            )?;
            Ok(())
        })
        .await?;
        self.customer(id, account).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_fixtures::store_with_account;
    use serde_json::json;

    #[tokio::test]
    async fn customers_are_created_once_per_address_and_updated() {
        let (_dir, store, account) = store_with_account().await;
        let email = EmailAddress::parse("Ann@Example.test").unwrap();
        let ann = store
            .create_customer(account, &email, Some(" Ann "), &json!({"vip": true}))
            .await
            .unwrap();
        assert_eq!(
            (ann.email.as_str(), ann.name.as_deref(), &ann.attributes),
            ("ann@example.test", Some("Ann"), &json!({"vip": true}))
        );
        let err = store
            .create_customer(account, &email, None, &json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m)
                if m == "the account already has a customer with the address ann@example.test"),
            "{err:?}"
        );
        let changed = store
            .update_customer(
                ann.id,
                account,
                Some(None),
                Some(&json!({"vip": null, "order": "A-1"})),
            )
            .await
            .unwrap();
        assert_eq!(
            (changed.name, changed.attributes),
            (None, json!({"order": "A-1"}))
        );
        let err = store
            .update_customer(ann.id + 1, account, None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
}

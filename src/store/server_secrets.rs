//! Keys the server makes for itself on first start and keeps in `server_secrets`, so that
//! every process on the same database uses the same ones (and a restart keeps them).

use super::{Store, StoreError};

/// Name of the key that seals single sign-on request records (src/http/saml).
pub const SSO_REQUEST_KEY: &str = "sso_request_key";
/// Name of the key that derives the CSRF token of a session (src/http/csrf.rs).
pub const CSRF_KEY: &str = "csrf_key";

impl Store {
    /// The key named `name`: 256 random bits made the first time it is asked for, the same
    /// value ever after. Two processes asking at once agree (the first insert wins).
    pub async fn generated_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(&fresh)
        .execute(self.pool())
        .await?;
        let key: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name)
            .fetch_one(self.pool())
            .await?;
        Ok(key.into_bytes())
    }
}

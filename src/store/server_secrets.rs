//! Keys the server makes for itself on first start and keeps in `server_secrets`, so that
//! every process on the same database uses the same ones (and a restart keeps them).

use super::{Store, StoreError};

/// Name of the key that seals single sign-on request records (src/http/saml).
pub const SSO_REQUEST_KEY: &str = "sso_request_key";
/// Name of the key that derives the CSRF token of a session (src/http/csrf.rs).
pub const CSRF_KEY: &str = "csrf_key";
/// Name of the key of reply tokens (outbound reply addresses), unless configured.
const REPLY_TOKEN_KEY: &str = "reply_token_key";

impl Store {
    /// The key named `name`: 256 random bits made the first time it is asked for, the same
    /// value ever after. Two processes asking at once agree (the first insert wins).
    pub async fn generated_secret(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let name = name.to_string();
        let key: String = self
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO server_secrets (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    (&name, &fresh),
                )?;
                Ok(conn.query_row(
                    "SELECT value FROM server_secrets WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok(key.into_bytes())
    }

    /// The reply-token key: `configured` when set, else the one generated on first start.
    pub async fn reply_token_secret(&self, configured: &str) -> Result<Vec<u8>, StoreError> {
        if !configured.is_empty() {
            return Ok(configured.as_bytes().to_vec());
        }
        self.generated_secret(REPLY_TOKEN_KEY).await
    }
}

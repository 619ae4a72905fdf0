//! What the SAML routes need from the rest of the HTTP layer, as traits the application
//! implements: starting and ending a session for a verified user, and deciding who may
//! change an account's SSO settings.

use super::login::SamlLogin;
use super::role::Role;
use crate::domain::AccountId;
use axum::http::HeaderMap;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "postern_session";

/// The opaque value of a session cookie, as the session store issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookieValue(pub String);

/// Creates users just in time and sessions for them; implemented over the users/sessions
/// store (e.g. `upsert_sso_user` then `create_session`).
#[async_trait::async_trait]
pub trait SsoSessions: Send + Sync {
    /// Called after a login was fully verified: creates or updates the user of
    /// `login.account` with `login.email` and `role`, and opens a session.
    async fn login(&self, login: &SamlLogin, role: Role) -> Result<SessionCookieValue, String>;
    /// Ends the session of this cookie value, if it exists (of this account only).
    async fn logout(&self, account: AccountId, cookie: &SessionCookieValue) -> Result<(), String>;
}

/// Decides whether a request may change the SSO settings of an account (admin of that
/// account, or an operator token). Refusal answers 404 for another account's admin.
#[async_trait::async_trait]
pub trait SsoAdminCheck: Send + Sync {
    async fn allows(&self, headers: &HeaderMap, account: AccountId) -> AdminDecision;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDecision {
    Allowed,
    /// No or bad credentials: 401.
    Unauthenticated,
    /// Authenticated, but not an admin of this account: 404 (its existence is not revealed).
    NotFound,
    /// Authenticated agent of this account: 403.
    Forbidden,
}

/// The Set-Cookie value for a new session: HttpOnly, SameSite=Lax (the IdP's POST to the ACS
/// is cross-site, but the redirect after it is a top-level GET), Secure over https.
pub fn session_cookie(value: &SessionCookieValue, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax{}",
        value.0,
        if secure { "; Secure" } else { "" }
    )
}

/// The Set-Cookie value that removes the session cookie.
pub fn cleared_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session cookie's value in a request, if any.
pub fn session_cookie_in(headers: &HeaderMap) -> Option<SessionCookieValue> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, v)| SessionCookieValue(v.trim().to_string()))
        .filter(|v| !v.0.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_attributes_and_parsing() {
        let v = SessionCookieValue("abc".into());
        assert_eq!(
            session_cookie(&v, true),
            "postern_session=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!session_cookie(&v, false).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; postern_session=xyz; b=2".parse().unwrap());
        assert_eq!(
            session_cookie_in(&h),
            Some(SessionCookieValue("xyz".into()))
        );
    }
}

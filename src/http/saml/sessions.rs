//! Sessions of users who signed in through the IdP, over the store's users and sessions:
//! the user is provisioned just in time (role as the IdP says now), refused when disabled,
//! and gets the same `postern_session` cookie the API accepts.

use super::error::SamlError;
use super::login::SamlLogin;
use crate::domain::{AccountId, EmailAddress, Role};
use crate::http::request_cookies::cookie_values;
use crate::store::{Store, StoreError, SESSION_COOKIE};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Sessions shorter than this are not worth opening: the IdP wants the session over.
const MIN_SESSION: Duration = Duration::from_secs(60);

/// How long a new session lives: the configured length, cut short when the IdP says the
/// session must end sooner (SessionNotOnOrAfter). None when that moment is (nearly) past.
pub fn session_ttl(
    default: Duration,
    not_on_or_after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let ttl = match not_on_or_after {
        None => default,
        Some(end) => {
            let left = (end - now).to_std().unwrap_or(Duration::ZERO);
            default.min(left)
        }
    };
    (ttl >= MIN_SESSION).then_some(ttl)
}

/// Creates or updates the user of a verified sign-in and opens a session; returns the
/// cookie value. A disabled user gets no session.
pub async fn open_session(
    store: &Store,
    login: &SamlLogin,
    role: Role,
    default_ttl: Duration,
) -> Result<String, SamlError> {
    let email = EmailAddress::parse(&login.email).map_err(|_| SamlError::NoEmail)?;
    let ttl = session_ttl(default_ttl, login.session_not_on_or_after, Utc::now())
        .ok_or(SamlError::SessionOver)?;
    let user = store
        .upsert_sso_user(login.account, &email, login.display_name.as_deref(), role)
        .await?;
    if user.disabled {
        return Err(SamlError::UserDisabled(user.email));
    }
    match store.create_session(login.account, user.id, ttl).await {
        Ok(cookie) => Ok(cookie),
        // Disabled between the two steps.
        Err(StoreError::Invalid(_)) => Err(SamlError::UserDisabled(user.email)),
        Err(e) => Err(e.into()),
    }
}

/// Ends the session of this cookie value if it belongs to `account`.
pub async fn end_session(store: &Store, account: AccountId, cookie: &str) -> Result<(), SamlError> {
    Ok(store.delete_account_session(account, cookie).await?)
}

/// The Set-Cookie value for a new session: HttpOnly, SameSite=Lax (the IdP's POST to the ACS
/// is cross-site, but the redirect after it is a top-level GET), Secure over https.
pub fn session_cookie(value: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{}",
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
pub fn session_cookie_in(headers: &HeaderMap) -> Option<String> {
    cookie_values(headers, SESSION_COOKIE)
        .next()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_attributes_and_parsing() {
        assert_eq!(
            session_cookie("abc", true),
            "postern_session=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(!session_cookie("abc", false).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; postern_session=xyz; b=2".parse().unwrap());
        assert_eq!(session_cookie_in(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn ttl_is_capped_by_the_idp() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let twelve = Duration::from_secs(12 * 3600);
        assert_eq!(session_ttl(twelve, None, now), Some(twelve));
        assert_eq!(
            session_ttl(twelve, Some(now + chrono::Duration::days(1)), now),
            Some(twelve)
        );
        assert_eq!(
            session_ttl(day, Some(now + chrono::Duration::hours(2)), now),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            session_ttl(day, Some(now - chrono::Duration::hours(1)), now),
            None
        );
        assert_eq!(
            session_ttl(day, Some(now + chrono::Duration::seconds(5)), now),
            None
        );
    }
}

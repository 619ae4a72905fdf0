//! The browser-binding cookie: a random value that GET /login sets (or keeps, when the
//! browser already has one) and whose hash is sealed into the request ID
//! ([`super::request_record`]). The ACS accepts a response only from the browser that holds
//! the value, so a response cannot be finished in another browser: neither a captured one,
//! nor one an attacker obtained for their own IdP account and pushes into a victim's browser
//! (login CSRF).
//!
//! One value per browser, not per sign-in, so that two tabs signing in at once both finish.
//! It authenticates nothing by itself; it only proves "this browser started that sign-in".
//!
//! Attributes, and why:
//! - `HttpOnly`: scripts have no use for it.
//! - Over https: `SameSite=None; Secure`, named `__Host-postern_sso`. The IdP returns the
//!   browser with an auto-submitted form, a cross-site top-level POST to the ACS; browsers
//!   withhold `SameSite=Lax` and `Strict` cookies from exactly that request, so only `None`
//!   reaches the ACS, and browsers accept `None` only with `Secure`. Sending it cross-site is
//!   harmless: a cross-site page can make the browser send it, never read or choose it. The
//!   `__Host-` prefix makes browsers refuse it from a sibling subdomain or over http, so
//!   another site of the same domain cannot plant its own value (cookie tossing).
//! - Over plain http (`http.public_url` empty or http://, development only): `Secure` is
//!   impossible, and browsers drop `SameSite=None` without it, so the cookie is
//!   `SameSite=Lax` under the plain name. The browser then sends it to the ACS only when the
//!   IdP is on the same site as Postern (same scheme and host, e.g. both on localhost; ports
//!   do not matter); with an IdP elsewhere the cookie is withheld and the ACS refuses the
//!   response with a page that says to serve Postern over https.

use crate::http::request_cookies::cookie_values;
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::time::Duration;

/// The cookie's name over https (`__Host-`: Secure, Path=/, no Domain, enforced by browsers).
pub const SECURE_COOKIE: &str = "__Host-postern_sso";
/// The cookie's name over plain http, where the `__Host-` prefix cannot be used.
pub const PLAIN_COOKIE: &str = "postern_sso";
/// Length of a value: 256 random bits, base64url.
const VALUE_LEN: usize = 43;

pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        PLAIN_COOKIE
    }
}

/// A fresh value for a browser that has none.
pub fn new_value() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn well_formed(value: &str) -> bool {
    value.len() == VALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The browser's value, if it sent one of the right shape.
pub fn value_in(headers: &HeaderMap, secure: bool) -> Option<String> {
    let name = cookie_name(secure);
    cookie_values(headers, name).find(|v| well_formed(v))
}

/// The Set-Cookie value; it lives as long as a sign-in may take.
pub fn set_cookie(value: &str, secure: bool, lifetime: Duration) -> String {
    let attributes = if secure {
        "HttpOnly; Secure; SameSite=None"
    } else {
        "HttpOnly; SameSite=Lax"
    };
    format!(
        "{}={value}; Path=/; Max-Age={}; {attributes}",
        cookie_name(secure),
        lifetime.as_secs().max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_follow_the_scheme() {
        let v = new_value();
        assert_eq!(v.len(), VALUE_LEN);
        assert_eq!(
            set_cookie(&v, true, Duration::from_secs(600)),
            format!("__Host-postern_sso={v}; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=None")
        );
        assert_eq!(
            set_cookie(&v, false, Duration::from_secs(600)),
            format!("postern_sso={v}; Path=/; Max-Age=600; HttpOnly; SameSite=Lax")
        );
    }

    #[test]
    fn only_a_well_formed_value_under_the_right_name_is_read() {
        let v = new_value();
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            format!("postern_sso=short; __Host-postern_sso={v}")
                .parse()
                .unwrap(),
        );
        assert_eq!(value_in(&h, true), Some(v.clone()));
        assert_eq!(value_in(&h, false), None);
        h.insert("cookie", format!("postern_sso={v}").parse().unwrap());
        assert_eq!(value_in(&h, false), Some(v));
        assert_eq!(value_in(&h, true), None);
    }
}

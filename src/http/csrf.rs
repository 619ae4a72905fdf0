//! Cross-site request forgery protection for browser sessions, as one layer over every route
//! (src/http/mod.rs), so that the JSON API, the SAML routes and a later server-rendered web
//! app share it.
//!
//! A request is checked when it can change something (any method but GET, HEAD and
//! OPTIONS) and is authenticated by the `postern_session` cookie: it carries that cookie and
//! no Authorization header (a request that names a token is judged by the token alone, see
//! principal.rs, and browsers cannot add that header to a cross-site request). It passes
//! when it comes from this server's own pages:
//!
//! 1. its `Origin` is this server's public origin (`http.public_url`); or, without Origin,
//! 2. its `Referer` is a page of that origin; or, with neither (some privacy tools strip
//!    both),
//! 3. it carries the session's CSRF token in the `X-CSRF-Token` header.
//!
//! A present Origin or Referer that names another origin is refused whatever else the
//! request carries. Refusals are 403 with the code `csrf_refused` (JSON, or an HTML page
//! for a browser that asks for one); nothing has run.
//!
//! The token is bound to the session: HMAC-SHA-256 of the session cookie's value under the
//! server's `csrf_key`, so it dies with the session and cannot be made without the key or
//! the (HttpOnly) cookie. `GET /api/v1/csrf-token` gives it to scripts of this origin; server-
//! rendered pages compute it with [`CsrfGuard::token_for`] and send it as that header
//! (htmx: `hx-headers`). Plain HTML forms need no token: browsers send Origin with every
//! POST.
//!
//! Routes that take cross-site POSTs by design are listed in [`CROSS_SITE_ROUTES`]: the
//! SAML ACS, where the IdP's auto-submitted form arrives from the IdP's site. It is not
//! authenticated by the session cookie; the IdP's signature, the one-time request and the
//! browser-binding cookie protect it.

use super::error::ApiError;
use super::saml::{page, session_cookie_in};
use super::server_key::ServerKey;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The request header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Routes (as registered) that accept state-changing requests from other sites.
pub const CROSS_SITE_ROUTES: &[&str] = &["/saml/{account_id}/acs"];

/// Domain separation: this key's MACs are CSRF tokens of sessions, nothing else.
const TOKEN_CONTEXT: &[u8] = b"postern csrf token v1\0";

#[derive(Debug, Clone)]
pub struct CsrfGuard {
    /// e.g. "https://helpdesk.example.com" (scheme, host, port when not the default).
    origin: String,
    key: ServerKey,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// Origin or Referer names another origin.
    ForeignOrigin { found: String, expected: String },
    /// Neither Origin nor Referer, and no valid token.
    NoProof { token_sent: bool, expected: String },
}

impl std::fmt::Display for CsrfRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ForeignOrigin { found, expected } => write!(
                f,
                "refused: this request carries your session cookie but was sent from {found}, not from this server ({expected}); another site cannot act with your session (cross-site request forgery protection). Scripts and tools should use an API token (Authorization: Bearer). If {found} is how your browser reaches this server, the operator must set http.public_url to it"
            ),
            Self::NoProof { token_sent, expected } => write!(
                f,
                "refused: this request carries your session cookie but neither an Origin nor a Referer header naming this server ({expected}){}, so it may come from another site (cross-site request forgery protection). Send it from this server's pages, add the header X-CSRF-Token with the token from GET /api/v1/csrf-token, or use an API token (Authorization: Bearer)",
                if *token_sent { ", and its X-CSRF-Token is not this session's" } else { ", nor an X-CSRF-Token header" }
            ),
        }
    }
}

/// The origin of a URL as browsers write it in the Origin header, or None.
fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    let origin = parsed.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

fn token_mac(key: &[u8], session: &str) -> Option<Hmac<Sha256>> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).ok()?;
    m.update(TOKEN_CONTEXT);
    m.update(session.as_bytes());
    Some(m)
}

impl CsrfGuard {
    /// `public_base_url`: the address browsers use (`http.public_url`, or http://listen).
    pub fn new(public_base_url: &str, key: ServerKey) -> Self {
        let origin = origin_of(public_base_url)
            .unwrap_or_else(|| public_base_url.trim_end_matches('/').to_ascii_lowercase());
        Self { origin, key }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The CSRF token of the session whose cookie value is `session`.
    pub fn token_for(&self, session: &str) -> String {
        token_mac(self.key.bytes(), session)
            .map(|m| URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
            .unwrap_or_default()
    }

    fn token_matches(&self, session: &str, presented: &str) -> bool {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        token_mac(self.key.bytes(), session).is_some_and(|m| m.verify_slice(&raw).is_ok())
    }

    /// Whether a request may go on. `route` is the matched route pattern, if any.
    pub fn check(
        &self,
        method: &Method,
        route: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), CsrfRefusal> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            || route.is_some_and(|r| CROSS_SITE_ROUTES.contains(&r))
            || headers.contains_key(header::AUTHORIZATION)
        {
            return Ok(());
        }
        let Some(session) = session_cookie_in(headers) else {
            return Ok(());
        };
        let claimed = headers
            .get(header::ORIGIN)
            .or_else(|| headers.get(header::REFERER));
        if let Some(value) = claimed {
            let text = value.to_str().unwrap_or_default();
            return match origin_of(text) {
                Some(o) if o == self.origin => Ok(()),
                found => Err(CsrfRefusal::ForeignOrigin {
                    found: found.unwrap_or_else(|| format!("{text:?}")),
                    expected: self.origin.clone(),
                }),
            };
        }
        let token = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        match token {
            Some(t) if self.token_matches(&session, t) => Ok(()),
            _ => Err(CsrfRefusal::NoProof {
                token_sent: token.is_some(),
                expected: self.origin.clone(),
            }),
        }
    }
}

/// The layer's function: refuses what [`CsrfGuard::check`] refuses, before any handler.
pub async fn enforce(
    State(guard): State<CsrfGuard>,
    route: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = guard.check(
        request.method(),
        route.as_ref().map(MatchedPath::as_str),
        request.headers(),
    );
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), reason = %refusal, "cross-site request refused");
            refusal_response(request.headers(), &refusal)
        }
    }
}

fn refusal_response(headers: &HeaderMap, refusal: &CsrfRefusal) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        page(
            StatusCode::FORBIDDEN,
            "Request refused",
            &refusal.to_string(),
            None,
        )
    } else {
        ApiError::new(StatusCode::FORBIDDEN, "csrf_refused", refusal.to_string()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> CsrfGuard {
        CsrfGuard::new(
            "https://Help.Example.com:443/",
            ServerKey::new(b"k".repeat(32)),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const COOKIE: (&str, &str) = ("cookie", "postern_session=s3cret");

    #[test]
    fn cookie_requests_must_come_from_our_origin() {
        let g = guard();
        assert_eq!(g.origin(), "https://help.example.com");
        let post = Method::POST;
        let ok = |h: &[(&str, &str)]| g.check(&post, Some("/api/v1/tokens"), &headers(h));
        assert!(ok(&[COOKIE, ("origin", "https://help.example.com")]).is_ok());
        assert!(ok(&[COOKIE, ("referer", "https://help.example.com/tickets?x=1")]).is_ok());
        for bad in [
            vec![COOKIE],
            vec![COOKIE, ("origin", "https://evil.example")],
            vec![COOKIE, ("origin", "null")],
            vec![COOKIE, ("origin", "http://help.example.com")],
            vec![COOKIE, ("origin", "https://help.example.com.evil.example")],
            vec![COOKIE, ("referer", "https://evil.example/help.example.com")],
            // A foreign Origin is decisive even with a valid token.
            vec![
                COOKIE,
                ("origin", "https://evil.example"),
                ("x-csrf-token", &g.token_for("s3cret")),
            ],
            vec![COOKIE, ("x-csrf-token", &g.token_for("another session"))],
            vec![COOKIE, ("x-csrf-token", "garbage")],
        ] {
            assert!(ok(&bad).is_err(), "{bad:?}");
        }
        // No Origin, no Referer: the session's token.
        assert!(ok(&[COOKIE, ("x-csrf-token", &g.token_for("s3cret"))]).is_ok());
    }

    #[test]
    fn other_requests_are_not_checked() {
        let g = guard();
        let evil = ("origin", "https://evil.example");
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(g
                .check(&method, Some("/api/v1/me"), &headers(&[COOKIE, evil]))
                .is_ok());
        }
        // A bearer token, no cookie, or the ACS.
        assert!(g
            .check(
                &Method::POST,
                Some("/api/v1/tokens"),
                &headers(&[COOKIE, evil, ("authorization", "Bearer pst_x")])
            )
            .is_ok());
        assert!(g
            .check(&Method::POST, Some("/api/v1/tokens"), &headers(&[evil]))
            .is_ok());
        assert!(g
            .check(
                &Method::POST,
                Some("/saml/{account_id}/acs"),
                &headers(&[COOKIE, evil])
            )
            .is_ok());
        // Every other state-changing method is.
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(g
                .check(
                    &method,
                    Some("/api/v1/users/{id}"),
                    &headers(&[COOKIE, evil])
                )
                .is_err());
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        let g = guard();
        let e = g
            .check(&Method::POST, None, &headers(&[COOKIE]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("X-CSRF-Token") && e.contains("https://help.example.com"),
            "{e}"
        );
        let e = g
            .check(
                &Method::POST,
                None,
                &headers(&[COOKIE, ("origin", "https://evil.example")]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("https://evil.example") && e.contains("API token"),
            "{e}"
        );
    }
}

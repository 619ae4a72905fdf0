//! The HTTP side of single sign-on, per account under /saml/{account_id}/:
//! `metadata` (SP metadata), `login` (redirect to the IdP), `acs` (the IdP posts here),
//! `logout` (POST; GET shows a form), and `idp-metadata` (admins upload the IdP's metadata). Registered with the API's
//! routes (src/http/mod.rs), so they are in its OpenAPI document.
//!
//! The browser-facing routes answer with small HTML pages; the admin upload answers in the
//! API's JSON shape and is authorised like every API call (token or session cookie).

use super::browser_binding;
use super::error::SamlError;
use super::idp_metadata::{parse_idp_metadata, MAX_METADATA_BYTES};
use super::login::{finish_login, start_login, SamlConfig, MAX_RESPONSE_BYTES};
use super::pages::{confirm_page, page};
use super::sessions::{
    cleared_session_cookie, end_session, open_session, session_cookie, session_cookie_in,
};
use super::sp_metadata::SpEndpoints;
use crate::domain::{AccountId, Principal};
use crate::http::client_addr::ClientAddresses;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::rate_limit::RateLimiter;
use crate::http::{require_admin, ApiState};
use crate::store::{SsoRoleRecord, Store, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, Path, RawQuery, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body of the SAML routes: the IdP metadata upload, and the ACS form (a
/// base64 SAMLResponse, form-encoded, which grows it by a few percent). The API's own limit
/// is much smaller; this one applies to these routes only.
pub const MAX_SAML_BODY_BYTES: usize = if MAX_METADATA_BYTES > 2 * MAX_RESPONSE_BYTES {
    MAX_METADATA_BYTES
} else {
    2 * MAX_RESPONSE_BYTES
} + 4096;

/// What the SAML routes share; a part of the API's state.
#[derive(Clone)]
pub struct SamlState {
    pub store: Store,
    pub config: SamlConfig,
    /// Sign-in starts per client address (`sso.login_rate_limit`).
    pub login_limiter: Arc<RateLimiter>,
    pub clients: ClientAddresses,
}

impl SamlState {
    pub fn new(store: Store, config: SamlConfig, clients: ClientAddresses) -> Self {
        let login_limiter = Arc::new(RateLimiter::new(
            config.login_rate_limit,
            config.login_rate_window,
        ));
        Self {
            store,
            config,
            login_limiter,
            clients,
        }
    }
}

impl FromRef<ApiState> for SamlState {
    fn from_ref(state: &ApiState) -> Self {
        state.saml.clone()
    }
}

fn parse_account(raw: &str) -> Option<AccountId> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).map(AccountId)
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such account.",
        None,
    )
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn account_exists(store: &Store, account: AccountId) -> Result<bool, StoreError> {
    match store.account(account).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The SP metadata to give the IdP. Public by nature (the IdP fetches it without
/// credentials), so it tells anyone that the account id exists; it reveals nothing else.
#[utoipa::path(get, path = "/saml/{account_id}/metadata", tag = "sso", security(()),
    params(("account_id" = i64, Path, description = "Account id")),
    responses(
        (status = 200, description = "SAML 2.0 SP metadata (entity ID, ACS URL)",
            content_type = "application/samlmetadata+xml", body = String),
        (status = 404, description = "No such account (HTML page)", content_type = "text/html", body = String),
    ))]
pub async fn sp_metadata(State(state): State<SamlState>, Path(raw): Path<String>) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    match account_exists(&state.store, account).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return error_page(&SamlError::Store(e)),
    }
    match state.config.sp(account).metadata_xml() {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the query; the handler reads it leniently.
pub struct LoginQuery {
    /// Path on this site to return to after sign-in (anything else becomes `/`).
    return_to: Option<String>,
}

/// Starts a sign-in: redirects the browser to the account's IdP with an AuthnRequest.
/// Nothing is stored: the request ID is a sealed record of the sign-in, bound to this browser
/// by the sign-in cookie set here. Limited per client address (`sso.login_rate_limit`).
#[utoipa::path(get, path = "/saml/{account_id}/login", tag = "sso", security(()),
    params(("account_id" = i64, Path, description = "Account id"), LoginQuery),
    responses(
        (status = 303, description = "Redirect to the IdP (HTTP-Redirect binding); Set-Cookie \
            postern_sso (`__Host-postern_sso` over https), the browser binding the ACS checks"),
        (status = 404, description = "No such account, or single sign-on is not set up (HTML page)",
            content_type = "text/html", body = String),
        (status = 429, description = "Too many sign-ins started from this address; Retry-After says when to try again (HTML page)",
            content_type = "text/html", body = String),
    ))]
pub async fn login(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    if let Some(client) = state.clients.client_of(&extensions, &headers) {
        if let Err(wait) = state.login_limiter.check(state.clients.group(client)) {
            tracing::warn!(account = %account, client = %client, "SAML sign-in starts over the rate limit");
            return too_many_logins(&state.login_limiter, wait);
        }
    }
    let secure = state.config.secure_cookies();
    let known = browser_binding::value_in(&headers, secure);
    let params = form(query.unwrap_or_default().as_bytes());
    match start_login(
        &state.store,
        &state.config,
        account,
        params.get("return_to").map(String::as_str),
        known.as_deref(),
    )
    .await
    {
        Ok(started) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, started.redirect_url),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::SET_COOKIE,
                    browser_binding::set_cookie(
                        &started.browser_binding,
                        secure,
                        state.config.login_timeout,
                    ),
                ),
            ],
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

/// 429 with Retry-After (whole seconds, at least 1) and a page that says what to do.
fn too_many_logins(limiter: &RateLimiter, wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-ins",
        &format!(
            "Too many sign-ins were started from your network address ({} per {}). Wait {seconds} seconds, then sign in again.",
            limiter.limit(),
            humantime::format_duration(limiter.window())
        ),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// The form the IdP has the browser post to the ACS (HTTP-POST binding).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the form; the handler parses the bytes itself.
pub struct AcsForm {
    /// The IdP's signed Response, base64.
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
    /// The RelayState sent with the AuthnRequest, returned unchanged.
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// The assertion consumer service: verifies the IdP's response, provisions the user with
/// the mapped role and opens a session (the `postern_session` cookie the API accepts).
/// Only the browser that started the sign-in can finish it: it must send the sign-in cookie
/// that GET /login set. This route takes cross-site POSTs by design (the IdP's form), so the
/// CSRF origin check does not apply to it; the signature, the one-time request and that
/// cookie protect it.
#[utoipa::path(post, path = "/saml/{account_id}/acs", tag = "sso", security(()),
    params(("account_id" = i64, Path, description = "Account id")),
    request_body(content = AcsForm, content_type = "application/x-www-form-urlencoded",
        description = "SAMLResponse and RelayState, as the IdP's auto-submitted form sends them"),
    responses(
        (status = 303, description = "Signed in: Set-Cookie postern_session, redirect to the return path"),
        (status = 400, description = "The form or the response cannot be read (HTML page)", content_type = "text/html", body = String),
        (status = 403, description = "The response is refused (signature, replay, another browser, audience, role, disabled user...): the page says why",
            content_type = "text/html", body = String),
        (status = 404, description = "No such account, or single sign-on is not set up", content_type = "text/html", body = String),
        (status = 413, description = "The response is too large", content_type = "text/html", body = String),
    ))]
pub async fn acs(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Sign-in refused",
                &format!("the posted form is larger than {MAX_SAML_BODY_BYTES} bytes; a SAMLResponse may be at most {MAX_RESPONSE_BYTES} bytes"),
                None,
            )
        }
        Err(_) => return error_page(&SamlError::ResponseEncoding),
    };
    let params = form(&body);
    let Some(response) = params.get("SAMLResponse") else {
        return error_page(&SamlError::ResponseEncoding);
    };
    let browser = browser_binding::value_in(&headers, state.config.secure_cookies());
    let finished = match finish_login(
        &state.store,
        &state.config,
        account,
        response,
        params.get("RelayState").map(String::as_str),
        browser.as_deref(),
    )
    .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(account = %account, error = %e, "SAML sign-in refused");
            return error_page(&e);
        }
    };
    let cookie = match open_session(
        &state.store,
        &finished.login,
        finished.role,
        state.config.session_ttl,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(account = %account, user = %finished.login.email, error = %e, "SAML sign-in refused");
            return error_page(&e);
        }
    };
    tracing::info!(account = %account, user = %finished.login.email, role = finished.role.as_str(), "SAML sign-in");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, finished.return_to),
            (
                header::SET_COOKIE,
                session_cookie(&cookie, state.config.secure_cookies()),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

/// The sign-out page: a button that posts the sign-out. A GET never signs out, so that a
/// link or an image on another site cannot end the session.
#[utoipa::path(get, path = "/saml/{account_id}/logout", tag = "sso", security(()),
    params(("account_id" = i64, Path, description = "Account id")),
    responses(
        (status = 200, description = "A page with a sign-out button (POST); nothing changes",
            content_type = "text/html", body = String),
        (status = 404, description = "Not an account id (HTML page)", content_type = "text/html", body = String),
    ))]
pub async fn logout_page(Path(raw): Path<String>) -> Response {
    if parse_account(&raw).is_none() {
        return not_found();
    }
    confirm_page(
        "Sign out",
        "Sign out of the helpdesk in this browser? (Your identity provider's own session stays.)",
        "Sign out",
    )
}

/// Signs out: the session of the `postern_session` cookie ends if it belongs to this
/// account, and the cookie is cleared (the IdP's own session stays). With the session
/// cookie, the request must come from this server's own pages (Origin, or an X-CSRF-Token
/// header; docs/SECURITY.md).
#[utoipa::path(post, path = "/saml/{account_id}/logout", tag = "sso", security(()),
    params(("account_id" = i64, Path, description = "Account id")),
    responses(
        (status = 200, description = "Signed out (HTML page; Set-Cookie clears postern_session)",
            content_type = "text/html", body = String),
        (status = 403, description = "Sent with the session cookie from another site (no matching Origin or Referer, no CSRF token); nothing changed",
            content_type = "text/html", body = String),
        (status = 404, description = "Not an account id (HTML page)", content_type = "text/html", body = String),
    ))]
pub async fn logout(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    if let Some(cookie) = session_cookie_in(&headers) {
        if let Err(e) = end_session(&state.store, account, &cookie).await {
            return error_page(&e);
        }
    }
    let login = format!("/saml/{account}/login");
    let mut response = page(
        StatusCode::OK,
        "Signed out",
        "You are signed out of the helpdesk.",
        Some((&login, "Sign in again")),
    );
    if let Ok(v) = cleared_session_cookie(state.config.secure_cookies()).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Role mapping given with an IdP-metadata upload; absent keys keep the current mapping.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documents the query; the handler reads it leniently.
pub struct RoleMappingQuery {
    /// Attribute of the assertion that carries the role (default `role`).
    role_attribute: Option<String>,
    /// Comma-separated values that make an admin (default `admin`).
    admin_values: Option<String>,
    /// Comma-separated values that make an agent (default `agent`).
    agent_values: Option<String>,
    /// With no matching value, sign the user in as an agent instead of refusing.
    default_agent: Option<bool>,
}

/// What an upload set up: the IdP as understood, the role mapping, and our SP addresses.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SsoSetup {
    pub account_id: i64,
    pub idp_entity_id: String,
    pub idp_sso_url: String,
    /// How many signing certificates the metadata carries.
    pub signing_certificates: usize,
    pub roles: SsoRoleRecord,
    #[schema(value_type = Object)]
    pub sp: SpEndpoints,
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The role mapping given in the query, if any of its keys is present.
fn roles_from_query(
    params: &HashMap<String, String>,
    current: SsoRoleRecord,
) -> Result<Option<SsoRoleRecord>, String> {
    let keys = [
        "role_attribute",
        "admin_values",
        "agent_values",
        "default_agent",
    ];
    if !keys.iter().any(|k| params.contains_key(*k)) {
        return Ok(None);
    }
    let mut roles = current;
    if let Some(a) = params.get("role_attribute") {
        if a.trim().is_empty() {
            return Err("role_attribute must not be empty".into());
        }
        roles.attribute = a.trim().to_string();
    }
    if let Some(v) = params.get("admin_values") {
        roles.admin_values = split_list(v);
    }
    if let Some(v) = params.get("agent_values") {
        roles.agent_values = split_list(v);
    }
    if let Some(v) = params.get("default_agent") {
        roles.default_agent = match v.as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err("default_agent must be true or false".into()),
        };
    }
    Ok(Some(roles))
}

/// A metadata problem in the API's error shape.
fn metadata_error(e: SamlError) -> ApiError {
    let status = e.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::BAD_REQUEST => "invalid_body",
        _ => "invalid",
    };
    ApiError::new(status, code, e.to_string())
}

/// Sets the account's identity provider from its SAML metadata (admins of the account).
/// The metadata must carry a signing certificate.
#[utoipa::path(put, path = "/saml/{account_id}/idp-metadata", tag = "sso",
    params(("account_id" = i64, Path, description = "Account id (the caller's own)"), RoleMappingQuery),
    request_body(content = String, content_type = "application/samlmetadata+xml",
        description = "The IdP's SAML 2.0 metadata XML (at most 1 MiB)"),
    responses(
        (status = 200, description = "Stored; what to give the IdP is under `sp`", body = SsoSetup),
        (status = 400, description = "Not IdP metadata, no signing certificate, bad role mapping...", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "An agent of this account", body = ErrorBody),
        (status = 404, description = "Not the caller's account", body = ErrorBody),
        (status = 413, description = "The metadata is too large", body = ErrorBody),
    ))]
pub async fn upload_idp_metadata(
    State(state): State<SamlState>,
    principal: Principal,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SsoSetup>, ApiError> {
    // Another account, or no account at all, is "not found" alike.
    let account = parse_account(&raw)
        .filter(|a| *a == principal.account_id)
        .ok_or_else(|| ApiError::not_found(format!("no account with id {raw}")))?;
    require_admin(&principal)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the IdP metadata is too large: at most {MAX_METADATA_BYTES} bytes are accepted; upload the metadata of the IdP application only, not an aggregate of many entities"),
            )
        } else {
            ApiError::new(
                e.status(),
                "invalid_body",
                format!("cannot read the body: {}", e.body_text()),
            )
        }
    })?;
    let xml = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the IdP metadata must be UTF-8 XML",
        )
    })?;
    let idp = parse_idp_metadata(xml).map_err(metadata_error)?;
    let current = state
        .store
        .sso_provider(account)
        .await?
        .map(|p| p.roles)
        .unwrap_or_default();
    let params = form(query.unwrap_or_default().as_bytes());
    let roles = roles_from_query(&params, current).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("bad role mapping: {e}"),
        )
    })?;
    state
        .store
        .set_sso_provider(account, &idp, roles.as_ref())
        .await?;
    let stored = state
        .store
        .sso_provider(account)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account with id {account}")))?;
    Ok(Json(SsoSetup {
        account_id: account.0,
        idp_entity_id: stored.idp.idp_entity_id,
        idp_sso_url: stored.idp.sso_url,
        signing_certificates: stored.idp.signing_certs.len(),
        roles: stored.roles,
        sp: state.config.sp(account),
    }))
}

/// A refusal page for the browser; the status follows the error.
fn error_page(e: &SamlError) -> Response {
    let title = match e.status() {
        StatusCode::NOT_FOUND => "Single sign-on unavailable",
        s if s.is_server_error() => "Sign-in failed",
        _ => "Sign-in refused",
    };
    page(e.status(), title, &e.to_string(), None)
}

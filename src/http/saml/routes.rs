//! The HTTP side of single sign-on, per account under /saml/{account}/:
//! `metadata` (SP metadata), `login` (redirect to the IdP), `acs` (the IdP posts here),
//! `logout`, and `idp-metadata` (admins upload the IdP's metadata).

use super::error::SamlError;
use super::idp_metadata::{parse_idp_metadata, MAX_METADATA_BYTES};
use super::login::{finish_login, start_login, SamlConfig, MAX_RESPONSE_BYTES};
use super::pages::page;
use super::sessions::{
    cleared_session_cookie, session_cookie, session_cookie_in, AdminDecision, SsoAdminCheck,
    SsoSessions,
};
use super::sp_metadata::SpEndpoints;
use crate::domain::AccountId;
use crate::store::{SsoRoleRecord, Store, StoreError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// What the SAML routes share.
#[derive(Clone)]
pub struct SamlState {
    pub store: Store,
    pub config: SamlConfig,
    pub sessions: Arc<dyn SsoSessions>,
    pub admin: Arc<dyn SsoAdminCheck>,
}

/// The SAML routes, with their state; merge or nest them at the root (paths start /saml).
pub fn router(state: SamlState) -> Router {
    Router::new()
        .route("/saml/{account}/metadata", get(sp_metadata))
        .route("/saml/{account}/login", get(login))
        .route("/saml/{account}/acs", post(acs))
        .route("/saml/{account}/logout", get(logout).post(logout))
        .route("/saml/{account}/idp-metadata", put(upload_idp_metadata))
        .layer(DefaultBodyLimit::max(
            MAX_METADATA_BYTES.max(MAX_RESPONSE_BYTES) + 4096,
        ))
        .with_state(state)
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

/// GET /saml/{account}/metadata: the SP metadata to give the IdP.
async fn sp_metadata(State(state): State<SamlState>, Path(raw): Path<String>) -> Response {
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

/// GET /saml/{account}/login?return_to=/path: redirects to the IdP.
async fn login(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    let params = form(query.unwrap_or_default().as_bytes());
    match start_login(
        &state.store,
        &state.config,
        account,
        params.get("return_to").map(String::as_str),
    )
    .await
    {
        Ok(url) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

/// POST /saml/{account}/acs: the IdP's answer, carried by the browser.
async fn acs(State(state): State<SamlState>, Path(raw): Path<String>, body: Bytes) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    let params = form(&body);
    let Some(response) = params.get("SAMLResponse") else {
        return error_page(&SamlError::ResponseEncoding);
    };
    let finished = match finish_login(
        &state.store,
        &state.config,
        account,
        response,
        params.get("RelayState").map(String::as_str),
    )
    .await
    {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(account = %account, error = %e, "SAML sign-in refused");
            return error_page(&e);
        }
    };
    let cookie = match state.sessions.login(&finished.login, finished.role).await {
        Ok(c) => c,
        Err(e) => return error_page(&SamlError::Session(e)),
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

/// GET or POST /saml/{account}/logout: ends the session here (the IdP session stays).
async fn logout(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return not_found();
    };
    if let Some(cookie) = session_cookie_in(&headers) {
        if let Err(e) = state.sessions.logout(account, &cookie).await {
            return error_page(&SamlError::Session(e));
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

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
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

/// PUT /saml/{account}/idp-metadata (admin): the IdP's metadata XML as the body; optional
/// query `role_attribute`, `admin_values=a,b`, `agent_values=c,d`, `default_agent=true`.
async fn upload_idp_metadata(
    State(state): State<SamlState>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(account) = parse_account(&raw) else {
        return json_error(StatusCode::NOT_FOUND, "no such account".into());
    };
    match state.admin.allows(&headers, account).await {
        AdminDecision::Allowed => {}
        AdminDecision::Unauthenticated => {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "authentication required: sign in as an admin of this account".into(),
            )
        }
        AdminDecision::Forbidden => {
            return json_error(
                StatusCode::FORBIDDEN,
                "only an admin of this account may change its single sign-on".into(),
            )
        }
        AdminDecision::NotFound => {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("no account with id {account}"),
            )
        }
    }
    let Ok(xml) = std::str::from_utf8(&body) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the IdP metadata must be UTF-8 XML".into(),
        );
    };
    let idp = match parse_idp_metadata(xml) {
        Ok(idp) => idp,
        Err(e) => return json_error(e.status(), e.to_string()),
    };
    let current = match state.store.sso_provider(account).await {
        Ok(p) => p.map(|p| p.roles).unwrap_or_default(),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let params = form(query.unwrap_or_default().as_bytes());
    let roles = match roles_from_query(&params, current) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    match state
        .store
        .set_sso_provider(account, &idp, roles.as_ref())
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound(m)) => return json_error(StatusCode::NOT_FOUND, m),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let stored = match state.store.sso_provider(account).await {
        Ok(Some(p)) => p,
        Ok(None) => return json_error(StatusCode::NOT_FOUND, "no such account".into()),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let sp: SpEndpoints = state.config.sp(account);
    Json(json!({
        "account_id": account,
        "idp_entity_id": stored.idp.idp_entity_id,
        "idp_sso_url": stored.idp.sso_url,
        "signing_certificates": stored.idp.signing_certs.len(),
        "roles": stored.roles,
        "sp": sp,
    }))
    .into_response()
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

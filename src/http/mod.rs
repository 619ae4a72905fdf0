//! The HTTP server: the JSON API under `/api/v1` (bearer tokens or a session cookie),
//! SAML single sign-on under `/saml/{account_id}` (which opens those sessions), the OpenAPI
//! document of both, health, readiness and Prometheus metrics. One layer guards every route
//! against cross-site requests made with the session cookie (csrf.rs).
//!
//! Every route is registered through utoipa-axum's `routes!`, so the router and the
//! OpenAPI document are built from the same list and cannot drift apart.

pub mod api;
pub mod body_pace;
pub mod client_addr;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod pagination;
pub mod principal;
pub mod rate_limit;
pub mod request_cookies;
pub mod request_id;
pub mod saml;
pub mod sanitize;
pub mod server;
pub mod server_key;

use crate::store::Store;
use api::{
    account, customers, domains, imports, messages, replies, rules, system, tickets, tokens, users,
};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use client_addr::ClientAddresses;
use csrf::CsrfGuard;
use error::ApiError;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use api::imports::ImportsConfig;
pub use principal::require_admin;

/// Request bodies of the API are small JSON documents.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// Domain of the forwarding addresses handed out (`inbound.domain`).
    pub inbound_domain: String,
    /// The SAML routes' part (`State<SamlState>` through `FromRef`).
    pub saml: saml::SamlState,
    /// Replies and sending domains.
    pub outbound: std::sync::Arc<crate::outbound::OutboundQueue>,
    /// Import jobs and their limits.
    pub imports: std::sync::Arc<ImportsConfig>,
    /// Lifetimes of API tokens made through the API.
    pub api: crate::config::ApiSettings,
    /// Cross-site request checks, and the CSRF tokens of sessions.
    pub csrf: CsrfGuard,
}

/// What protects browser sessions, besides the SAML settings.
#[derive(Debug, Clone)]
pub struct BrowserSecurity {
    /// Derives the CSRF tokens of sessions (`server_secrets.csrf_key`).
    pub csrf_key: server_key::ServerKey,
    /// Reverse proxies whose X-Forwarded-For is believed (`http.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How clients are grouped for per-client limits (`http.ipv4_prefix`, `http.ipv6_prefix`).
    pub client_prefixes: crate::net::PrefixLengths,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postern API",
        description = "Tickets, messages, customers, users and API tokens of one account. \
            Authenticate with `Authorization: Bearer <token>` (see `postern token create`) or \
            the `postern_session` cookie of a signed-in user; a call with the cookie that \
            changes something must come from this server's pages (Origin or Referer) or carry \
            `X-CSRF-Token` (see `/api/v1/csrf-token`), else 403 `csrf_refused`. Errors are \
            `{\"error\": {\"code\", \"message\"}}`; listings are paginated with `cursor`.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later")
    ),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session" = [])),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    tags(
        (name = "tickets", description = "Tickets, their changes and internal notes"),
        (name = "messages", description = "Messages, raw downloads and attachments"),
        (name = "customers", description = "The people who write to the store"),
        (name = "account", description = "The caller's account and support addresses"),
        (name = "users", description = "Agents and admins"),
        (name = "outbound", description = "Replies to customers and the sending domains they leave from"),
        (name = "tokens", description = "API tokens (admins)"),
        (name = "imports", description = "Import jobs: past mail from IMAP or an uploaded mbox/.eml, with progress, cancel and resume (admins)"),
        (name = "rules", description = "Rules, macros, the rule log and simulations (writes: admins)"),
        (name = "sso", description = "SAML 2.0 single sign-on: SP metadata, sign-in, sign-out, the IdP's metadata (admins)"),
        (name = "system", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (pst_...)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::store::SESSION_COOKIE,
            ))),
        );
    }
}

/// Every route with its documentation.
fn routes() -> OpenApiRouter<ApiState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(account::get_account))
        .routes(routes!(
            account::list_support_addresses,
            account::add_support_address
        ))
        .routes(routes!(account::get_support_address))
        .routes(routes!(account::me))
        .routes(routes!(api::csrf::csrf_token))
        .routes(routes!(tickets::list_tickets))
        .routes(routes!(tickets::get_ticket, tickets::patch_ticket))
        .routes(routes!(tickets::add_tag))
        .routes(routes!(tickets::remove_tag))
        .routes(routes!(tickets::add_note))
        .routes(routes!(tickets::ticket_events))
        .routes(routes!(domains::list_domains, domains::add_domain))
        .routes(routes!(domains::check_domain))
        .routes(routes!(messages::get_message))
        .routes(routes!(messages::raw_message))
        .routes(routes!(messages::message_html))
        .routes(routes!(messages::download_attachment))
        .routes(routes!(
            customers::list_customers,
            customers::create_customer
        ))
        .routes(routes!(customers::get_customer, customers::patch_customer))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::patch_user))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::get_token, tokens::revoke_token))
        .routes(routes!(rules::list_rules, rules::create_rule))
        .routes(routes!(rules::simulate_rule))
        .routes(routes!(rules::rule_log))
        .routes(routes!(
            rules::get_rule,
            rules::replace_rule,
            rules::patch_rule,
            rules::delete_rule
        ))
        .routes(routes!(rules::list_macros, rules::create_macro))
        .routes(routes!(rules::get_macro, rules::delete_macro))
        .routes(routes!(rules::preview_macro))
        .routes(routes!(imports::list_imports, imports::start_imap_import))
        .routes(routes!(imports::get_import))
        .routes(routes!(imports::cancel_import))
        .routes(routes!(imports::discard_import))
        .routes(routes!(imports::resume_import))
        .routes(routes!(system::openapi_json));
    // The ACS form and the IdP metadata are larger than API bodies: the innermost body
    // limit wins, so this one overrides the API's for these routes only.
    let sso = OpenApiRouter::new()
        .routes(routes!(saml::routes::sp_metadata))
        .routes(routes!(saml::routes::login))
        .routes(routes!(saml::routes::acs))
        .routes(routes!(saml::routes::logout_page, saml::routes::logout))
        .routes(routes!(saml::routes::upload_idp_metadata))
        .layer(DefaultBodyLimit::max(saml::MAX_SAML_BODY_BYTES));
    // Replies carry base64 attachments: a larger body limit for that route alone (the
    // decoded size is then held to outbound.max_message_size).
    let replies = OpenApiRouter::new()
        .routes(routes!(replies::send_reply))
        .layer(DefaultBodyLimit::max(replies::MAX_REPLY_BODY_BYTES));
    // Uploads are streamed to a file with their own cap (imports.max_upload_size), checked
    // as the bytes arrive.
    let uploads = OpenApiRouter::new()
        .routes(routes!(imports::upload_import))
        .layer(DefaultBodyLimit::disable());
    let v1 = v1.merge(replies).merge(uploads);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .merge(sso)
        .nest("/api/v1", v1)
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The application. Serve it with the connection's address
/// (`into_make_service_with_connect_info::<SocketAddr>()`): per-client limits need it.
pub fn router(
    store: Store,
    saml: saml::SamlConfig,
    browser: BrowserSecurity,
    inbound_domain: &str,
    outbound: std::sync::Arc<crate::outbound::OutboundQueue>,
    api: crate::config::ApiSettings,
    imports: ImportsConfig,
) -> Router {
    let (router, _doc) = routes().split_for_parts();
    let csrf = CsrfGuard::new(&saml.public_base_url, browser.csrf_key);
    let state = ApiState {
        inbound_domain: inbound_domain.to_ascii_lowercase(),
        saml: saml::SamlState::new(
            store.clone(),
            saml,
            ClientAddresses::new(browser.trusted_proxies, browser.client_prefixes),
        ),
        store,
        outbound,
        imports: std::sync::Arc::new(imports),
        api,
        csrf: csrf.clone(),
    };
    router
        // After routing, so that the check knows the matched route (the ACS is exempt), and
        // before any handler or extractor runs.
        .route_layer(axum::middleware::from_fn_with_state(csrf, csrf::enforce))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost, so that every answer carries the id, errors of the layers inside too.
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; the list is at /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

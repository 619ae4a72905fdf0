//! A sign-in from start to finish: issue the AuthnRequest with a sealed request record as
//! its ID (nothing is stored); on the response, open the record it answers, check that this
//! browser started it and that the RelayState is unchanged, verify, mark the request
//! answered and remember the assertion in one step, and turn the signed assertion into a
//! [`SamlLogin`].

use super::authn_request::build_redirect;
use super::browser_binding;
use super::error::SamlError;
use super::relay_state::{is_safe_return_path, safe_return_path};
use super::request_record::RequestRecord;
use super::response_scan::scan_response;
use super::role::resolve_role;
use super::sp_metadata::SpEndpoints;
use super::verify::verify_response;
use crate::domain::{AccountId, EmailAddress, Role};
use crate::http::server_key::ServerKey;
use crate::store::{now_ms, SsoFinish, Store};
use base64::Engine;
use chrono::{DateTime, Utc};
use samael::schema::Assertion;
use serde::Serialize;
use std::time::Duration;

/// Largest SAMLResponse accepted, base64 as posted (real ones are 5-30 KB).
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;

/// Settings of the SAML service provider, common to all accounts.
#[derive(Debug, Clone)]
pub struct SamlConfig {
    /// Public base URL, e.g. https://helpdesk.example.com (no trailing slash).
    pub public_base_url: String,
    /// How long an AuthnRequest may wait for its response.
    pub login_timeout: Duration,
    /// Clock difference tolerated with the IdP.
    pub clock_skew: Duration,
    /// Length of a session opened by a sign-in (shorter when the IdP asks).
    pub session_ttl: Duration,
    /// Seals request records (`server_secrets.sso_request_key`).
    pub request_key: ServerKey,
    /// Sign-ins one client address may start per `login_rate_window`; 0: no limit.
    pub login_rate_limit: u32,
    pub login_rate_window: Duration,
}

impl SamlConfig {
    pub fn sp(&self, account: AccountId) -> SpEndpoints {
        SpEndpoints::new(&self.public_base_url, account)
    }

    /// Cookies get the Secure attribute when browsers reach us over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_base_url.starts_with("https://")
    }

    fn skew(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.clock_skew).unwrap_or(chrono::Duration::seconds(120))
    }
}

/// A verified sign-in: who the IdP says the user is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SamlLogin {
    pub account: AccountId,
    pub idp_entity_id: String,
    /// The NameID exactly as signed.
    pub name_id: String,
    /// Lower-case e-mail address: the `email`/`mail` attribute, else an e-mail NameID.
    pub email: String,
    pub display_name: Option<String>,
    /// Values of the account's role attribute.
    pub role_values: Vec<String>,
    /// When the IdP wants the session to end (AuthnStatement SessionNotOnOrAfter).
    pub session_not_on_or_after: Option<DateTime<Utc>>,
}

/// The outcome of a response that passed every check.
#[derive(Debug, Clone)]
pub struct FinishedLogin {
    pub login: SamlLogin,
    pub role: Role,
    /// Where to send the browser: the path given when the sign-in started.
    pub return_to: String,
}

/// A sign-in started: where to send the browser, and the browser-binding value it must hold
/// (set it as a cookie; it is the one the browser sent when that was well-formed).
#[derive(Debug, Clone)]
pub struct StartedLogin {
    pub redirect_url: String,
    pub browser_binding: String,
}

/// Starts a sign-in for the browser that holds `browser_binding` (None: a new browser).
/// Stores nothing: everything the response will be checked against is sealed in the
/// request ID.
pub async fn start_login(
    store: &Store,
    config: &SamlConfig,
    account: AccountId,
    return_to: Option<&str>,
    browser_binding: Option<&str>,
) -> Result<StartedLogin, SamlError> {
    let provider = store
        .sso_provider(account)
        .await?
        .ok_or(SamlError::NotConfigured)?;
    let sp = config.sp(account);
    let relay_state = safe_return_path(return_to);
    let browser_binding = browser_binding
        .map(str::to_string)
        .unwrap_or_else(browser_binding::new_value);
    let record = RequestRecord::new(
        account,
        now_ms(),
        config.login_timeout,
        &browser_binding,
        &relay_state,
    );
    let request_id = record
        .seal(config.request_key.bytes())
        .ok_or_else(|| SamlError::Request("the request key cannot be used".into()))?;
    let issued = build_redirect(&sp, &provider.idp.sso_url, &request_id, &relay_state)?;
    Ok(StartedLogin {
        redirect_url: issued.redirect_url,
        browser_binding,
    })
}

/// Checks a posted SAMLResponse (and RelayState) for `account`, posted by the browser that
/// holds `browser_binding` (None: it sent no binding cookie).
pub async fn finish_login(
    store: &Store,
    config: &SamlConfig,
    account: AccountId,
    saml_response: &str,
    relay_state: Option<&str>,
    browser_binding: Option<&str>,
) -> Result<FinishedLogin, SamlError> {
    if saml_response.len() > MAX_RESPONSE_BYTES {
        return Err(SamlError::ResponseTooLarge(
            saml_response.len(),
            MAX_RESPONSE_BYTES,
        ));
    }
    // IdPs may wrap the base64 text; whitespace is not part of it.
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(SamlError::ResponseEncoding);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::ResponseEncoding)?;
    let xml = String::from_utf8(bytes).map_err(|_| SamlError::ResponseEncoding)?;
    let facts = scan_response(&xml)?;

    let provider = store
        .sso_provider(account)
        .await?
        .ok_or(SamlError::NotConfigured)?;
    let request_id = facts
        .in_response_to
        .clone()
        .ok_or(SamlError::NoInResponseTo)?;
    // Unsealed with our key and for this account, or it is not a request we issued (another
    // account's request is "never issued" here). The signed assertion must name the same
    // ID, which verify_response checks.
    let request = RequestRecord::open(&request_id, config.request_key.bytes())
        .filter(|r| r.account == account)
        .ok_or(SamlError::UnknownRequest)?;
    if request.expires_at_ms <= now_ms() {
        return Err(SamlError::RequestExpired);
    }
    match browser_binding {
        None => return Err(SamlError::BrowserNotBound),
        Some(b) if !request.started_by(b) => return Err(SamlError::OtherBrowser),
        Some(_) => {}
    }
    let relay_state = relay_state
        .filter(|r| request.sent_with(r))
        .ok_or(SamlError::RelayStateMismatch)?;

    let sp = config.sp(account);
    let verified = verify_response(
        &xml,
        &provider.idp,
        &sp,
        &request_id,
        facts.destination.as_deref(),
        facts.status_code.as_deref(),
        config.skew(),
    )?;
    let login = login_from_assertion(
        account,
        &provider.idp.idp_entity_id,
        &provider.roles.attribute,
        &verified.assertion,
    )?;
    // The assertion is checked first, so the page can tell a replay of the same response
    // from a second response to one request.
    match store
        .finish_sso_login(
            account,
            &request_id,
            request.expires_at_ms,
            &verified.assertion.id,
            verified.remember_until.timestamp_millis(),
        )
        .await?
    {
        SsoFinish::Accepted => {}
        SsoFinish::AssertionReplayed => return Err(SamlError::Replay),
        SsoFinish::RequestAlreadyUsed => return Err(SamlError::RequestAlreadyUsed),
    }
    let role = resolve_role(&provider.roles, &login.role_values).map_err(SamlError::RoleRefused)?;
    let return_to = if is_safe_return_path(relay_state) {
        relay_state.to_string()
    } else {
        "/".into()
    };
    Ok(FinishedLogin {
        login,
        role,
        return_to,
    })
}

const EMAIL_ATTRIBUTES: &[&str] = &[
    "email",
    "mail",
    "emailAddress",
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
];
const NAME_ATTRIBUTES: &[&str] = &[
    "displayName",
    "name",
    "cn",
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
];

/// Values of the attribute named `name` (by Name or FriendlyName).
fn attribute_values(assertion: &Assertion, name: &str) -> Vec<String> {
    assertion
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| &s.attributes)
        .filter(|a| a.name.as_deref() == Some(name) || a.friendly_name.as_deref() == Some(name))
        .flat_map(|a| &a.values)
        .filter_map(|v| v.value.as_deref())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn first_of(assertion: &Assertion, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| attribute_values(assertion, n).into_iter().next())
}

/// The user as the signed assertion describes them.
pub fn login_from_assertion(
    account: AccountId,
    idp_entity_id: &str,
    role_attribute: &str,
    assertion: &Assertion,
) -> Result<SamlLogin, SamlError> {
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .map(|n| n.value.trim().to_string())
        .filter(|n| !n.is_empty())
        .ok_or(SamlError::NoNameId)?;
    let email_text = first_of(assertion, EMAIL_ATTRIBUTES).unwrap_or_else(|| name_id.clone());
    let email = EmailAddress::parse(&email_text)
        .map_err(|_| SamlError::NoEmail)?
        .normalized();
    Ok(SamlLogin {
        account,
        idp_entity_id: idp_entity_id.to_string(),
        name_id,
        email,
        display_name: first_of(assertion, NAME_ATTRIBUTES),
        role_values: attribute_values(assertion, role_attribute),
        session_not_on_or_after: assertion
            .authn_statements
            .iter()
            .flatten()
            .filter_map(|s| s.session_not_on_or_after)
            .min(),
    })
}

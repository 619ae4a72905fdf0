//! A sign-in from start to finish, over the store: issue and remember the AuthnRequest; on
//! the response, find the request it answers, verify, consume the request and remember the
//! assertion in one step, and turn the signed assertion into a [`SamlLogin`].

use super::authn_request::build_redirect;
use super::error::SamlError;
use super::relay_state::{is_safe_return_path, safe_return_path};
use super::response_scan::scan_response;
use super::role::resolve_role;
use super::sp_metadata::SpEndpoints;
use super::verify::verify_response;
use crate::domain::{AccountId, EmailAddress, Role};
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

/// Starts a sign-in: returns the IdP URL to redirect the browser to.
pub async fn start_login(
    store: &Store,
    config: &SamlConfig,
    account: AccountId,
    return_to: Option<&str>,
) -> Result<String, SamlError> {
    let provider = store
        .sso_provider(account)
        .await?
        .ok_or(SamlError::NotConfigured)?;
    let sp = config.sp(account);
    let relay_state = safe_return_path(return_to);
    let issued = build_redirect(&sp, &provider.idp.sso_url, &relay_state)?;
    let expires_at = now_ms() + config.login_timeout.as_millis() as i64;
    store
        .record_sso_request(account, &issued.request_id, &relay_state, expires_at)
        .await?;
    Ok(issued.redirect_url)
}

/// Checks a posted SAMLResponse (and RelayState) for `account`.
pub async fn finish_login(
    store: &Store,
    config: &SamlConfig,
    account: AccountId,
    saml_response: &str,
    relay_state: Option<&str>,
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
    let request = store
        .sso_request(account, &request_id)
        .await?
        .ok_or(SamlError::UnknownRequest)?;
    if request.expires_at <= now_ms() {
        return Err(SamlError::RequestExpired);
    }
    if relay_state != Some(request.relay_state.as_str()) {
        return Err(SamlError::RelayStateMismatch);
    }

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
    if request.consumed {
        // Verified first, so the page can tell a replay of the same response from a second
        // response to one request.
        return Err(
            if store
                .sso_assertion_seen(account, &verified.assertion.id)
                .await?
            {
                SamlError::Replay
            } else {
                SamlError::RequestAlreadyUsed
            },
        );
    }
    let login = login_from_assertion(
        account,
        &provider.idp.idp_entity_id,
        &provider.roles.attribute,
        &verified.assertion,
    )?;
    match store
        .finish_sso_login(
            account,
            &request_id,
            &verified.assertion.id,
            verified.remember_until.timestamp_millis(),
        )
        .await?
    {
        SsoFinish::Accepted => {}
        SsoFinish::AssertionReplayed => return Err(SamlError::Replay),
        SsoFinish::RequestNotPending => return Err(SamlError::RequestAlreadyUsed),
    }
    let role = resolve_role(&provider.roles, &login.role_values).map_err(SamlError::RoleRefused)?;
    let return_to = if is_safe_return_path(&request.relay_state) {
        request.relay_state
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

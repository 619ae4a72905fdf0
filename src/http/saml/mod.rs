//! SAML 2.0 single sign-on, Postern as service provider (one IdP per account), on samael
//! with xmlsec. The IdP metadata must carry a signing certificate; only signed assertions
//! with SHA-256 or better are accepted, and only the element the signature covers is read;
//! request IDs are sealed records (nothing is stored until the IdP answers), bound to the
//! browser that started the sign-in, and answered once; assertion IDs are remembered until
//! they expire. docs/SSO.md explains each check.
//!
//! A verified sign-in provisions the user just in time and opens the same session the JSON
//! API accepts; the routes are registered with the API's (src/http/mod.rs), in its OpenAPI
//! document, and the IdP-metadata upload is authorised by the API's own principal.

mod authn_request;
mod browser_binding;
mod error;
mod idp_metadata;
mod login;
mod pages;
mod relay_state;
mod request_record;
mod response_scan;
mod role;
pub mod routes;
mod sessions;
mod sp_metadata;
mod verify;

pub use authn_request::{build_redirect, new_request_id, IssuedRequest};
pub use browser_binding::{PLAIN_COOKIE as BINDING_COOKIE, SECURE_COOKIE as SECURE_BINDING_COOKIE};
pub use error::SamlError;
pub use idp_metadata::{certificate_summary, parse_idp_metadata, MAX_METADATA_BYTES};
pub use login::{
    finish_login, login_from_assertion, start_login, FinishedLogin, SamlConfig, SamlLogin,
    StartedLogin, MAX_RESPONSE_BYTES,
};
pub(crate) use pages::page;
pub use relay_state::{is_safe_return_path, safe_return_path};
pub use request_record::RequestRecord;
pub use response_scan::{scan_response, ResponseFacts};
pub use role::resolve_role;
pub use routes::{SamlState, MAX_SAML_BODY_BYTES};
pub use sessions::{
    cleared_session_cookie, end_session, open_session, session_cookie, session_cookie_in,
    session_ttl,
};
pub use sp_metadata::{SpEndpoints, SAML_PATH_PREFIX};
pub use verify::{verify_response, VerifiedAssertion};

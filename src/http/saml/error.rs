//! What can go wrong with single sign-on, each saying what was wrong and what to do.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    // --- IdP metadata (admin upload) ---
    #[error("the IdP metadata is not valid SAML metadata XML: {0}")]
    MetadataUnreadable(String),
    #[error("the IdP metadata has no entityID: export the metadata of the IdP application again")]
    MetadataNoEntityId,
    #[error("the IdP metadata has no IDPSSODescriptor: this looks like SP metadata or an unrelated document; upload the metadata of the identity provider")]
    MetadataNotIdp,
    #[error("the IdP metadata carries no signing certificate (KeyDescriptor use=\"signing\" with an X509Certificate): Postern only accepts signed assertions, so it must know the IdP's certificate")]
    MetadataNoSigningCert,
    #[error(
        "the IdP metadata has a signing certificate that is not a valid X.509 certificate: {0}"
    )]
    MetadataBadCert(String),
    #[error("the IdP metadata has no SingleSignOnService with the HTTP-Redirect binding, which Postern uses to send sign-in requests")]
    MetadataNoRedirectSso,
    #[error("the IdP's SingleSignOnService location {0:?} is not an http(s) URL")]
    MetadataBadSsoUrl(String),
    #[error("the IdP metadata is too large ({0} bytes; at most {1})")]
    MetadataTooLarge(usize, usize),

    // --- login set-up ---
    #[error("single sign-on is not set up for this account: an admin must upload the IdP metadata first")]
    NotConfigured,
    #[error("cannot build the sign-in request: {0}")]
    Request(String),

    // --- the response ---
    #[error("the SAMLResponse is missing or not valid base64")]
    ResponseEncoding,
    #[error("the SAMLResponse is too large ({0} bytes; at most {1})")]
    ResponseTooLarge(usize, usize),
    #[error("the SAMLResponse is not well-formed XML: {0}")]
    ResponseMalformed(String),
    #[error("the SAMLResponse contains a DOCTYPE, which SAML never needs (entity expansion attacks); refused")]
    ResponseDoctype,
    #[error("the SAMLResponse contains an XML comment or processing instruction inside the document; comments are not covered by the signature and can alter the identity (e.g. user@evil.com<!---->.example.com), so the response is refused")]
    ResponseComment,
    #[error("the SAMLResponse must contain exactly one Assertion, it contains {0}; extra assertions are a signature-wrapping attempt")]
    AssertionCount(usize),
    #[error("the SAMLResponse contains an EncryptedAssertion; Postern does not accept encrypted assertions (turn assertion encryption off at the IdP)")]
    EncryptedAssertion,
    #[error("the SAMLResponse is not signed: the IdP must sign the assertion or the response")]
    Unsigned,
    #[error("the signature uses {0}, which is refused: only RSA/ECDSA with SHA-256, SHA-384 or SHA-512 are accepted (set the IdP to sign with SHA-256)")]
    WeakAlgorithm(String),
    #[error("the signature does not verify with the IdP's certificate (the response was altered, or the IdP signs with another key: upload its current metadata)")]
    BadSignature,
    #[error("the response was refused: {0}")]
    Rejected(String),
    #[error("the IdP answered with status {0}: the sign-in did not succeed at the IdP")]
    IdpStatus(String),
    #[error("the response's Destination {found:?} is not this account's ACS URL {expected:?}")]
    Destination { found: String, expected: String },
    #[error("the response answers no sign-in request (no InResponseTo); IdP-initiated sign-in is not accepted: start from Postern's login page")]
    NoInResponseTo,
    #[error("the response answers a sign-in request that this account never issued")]
    UnknownRequest,
    #[error(
        "the response answers a sign-in request that was already used; start the sign-in again"
    )]
    RequestAlreadyUsed,
    #[error("the sign-in request this response answers has expired; start the sign-in again")]
    RequestExpired,
    #[error("the RelayState does not match the one sent with the sign-in request")]
    RelayStateMismatch,
    #[error("this browser did not send the sign-in cookie that Postern set when the sign-in started, so it cannot be the browser that started it; start the sign-in again from Postern's login page in this browser. If this keeps happening, the browser withholds the cookie from the identity provider's cross-site form post: Postern must be reached over https (set http.public_url to its https:// address)")]
    BrowserNotBound,
    #[error("this sign-in was started in another browser (its sign-in cookie does not match this one's); a sign-in must finish in the browser that started it: start it again from Postern's login page in this browser")]
    OtherBrowser,
    #[error("the assertion has no AudienceRestriction naming this account ({0}); configure the IdP application with Postern's entity ID")]
    NoAudience(String),
    #[error(
        "the assertion has no Conditions with NotOnOrAfter: Postern cannot tell when it expires"
    )]
    NoExpiry,
    #[error("this assertion was already used to sign in (replay); start the sign-in again")]
    Replay,
    #[error("the assertion identifies nobody: it has no NameID")]
    NoNameId,
    #[error("the assertion gives no e-mail address: release an 'email' (or 'mail') attribute, or use the emailAddress NameID format")]
    NoEmail,
    #[error(
        "the assertion's {what} differs from the signed XML ({parsed:?} vs {signed:?}); refused"
    )]
    Altered {
        what: &'static str,
        parsed: String,
        signed: String,
    },
    #[error("{0}")]
    RoleRefused(String),

    // --- everything else ---
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("the user {0} is disabled in this helpdesk and cannot sign in; ask an admin of the account to enable them again")]
    UserDisabled(String),
    #[error("the identity provider says this session is already over (SessionNotOnOrAfter is past or within a minute); sign in again at the identity provider")]
    SessionOver,
}

impl SamlError {
    /// The HTTP status this error is shown with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::NotConfigured => StatusCode::NOT_FOUND,
            Self::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            Self::Store(StoreError::Invalid(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) | Self::Request(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::MetadataTooLarge(..) | Self::ResponseTooLarge(..) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::MetadataUnreadable(_)
            | Self::MetadataNoEntityId
            | Self::MetadataNotIdp
            | Self::MetadataNoSigningCert
            | Self::MetadataBadCert(_)
            | Self::MetadataNoRedirectSso
            | Self::MetadataBadSsoUrl(_)
            | Self::ResponseEncoding
            | Self::ResponseMalformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

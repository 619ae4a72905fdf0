//! A first pass over the raw SAMLResponse XML, before any signature work: refuse what a
//! genuine IdP response never contains and what attacks rely on (DOCTYPE, comments, several
//! assertions, weak algorithms), and read the request ID it claims to answer. Nothing read
//! here is trusted for the login itself; that comes only from the verified signed element.

use super::error::SamlError;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// Elements a response may have; far above any real one (bounds the work on hostile input).
const MAX_ELEMENTS: usize = 5_000;
const MAX_DEPTH: usize = 40;

/// Signature methods accepted: RSA or ECDSA with SHA-256 or better.
pub const ALLOWED_SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
/// Digest methods accepted: SHA-256 or better.
pub const ALLOWED_DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// What the first pass read (unverified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub destination: Option<String>,
    /// InResponseTo of the Response element, else of the SubjectConfirmationData.
    pub in_response_to: Option<String>,
    pub status_code: Option<String>,
    pub signatures: usize,
}

fn is(ns: &ResolveResult<'_>, want: &[u8]) -> bool {
    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == want)
}

fn attr(
    start: &quick_xml::events::BytesStart<'_>,
    name: &[u8],
) -> Result<Option<String>, SamlError> {
    for a in start.attributes() {
        let a = a.map_err(|e| SamlError::ResponseMalformed(e.to_string()))?;
        if a.key.as_ref() == name {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| SamlError::ResponseMalformed(e.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Scans the decoded response document.
pub fn scan_response(xml: &str) -> Result<ResponseFacts, SamlError> {
    let mut reader = NsReader::from_str(xml);
    let mut facts = ResponseFacts::default();
    let mut root_seen = false;
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut assertions = 0usize;
    let mut confirmation_in_response_to = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| SamlError::ResponseMalformed(e.to_string()))?;
        let (start, is_empty) = match event {
            Event::Eof => break,
            Event::DocType(_) => return Err(SamlError::ResponseDoctype),
            Event::Comment(_) | Event::PI(_) => return Err(SamlError::ResponseComment),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            _ => continue,
        };
        elements += 1;
        if elements > MAX_ELEMENTS || depth >= MAX_DEPTH {
            return Err(SamlError::ResponseMalformed(
                "the document is too large or too deeply nested".into(),
            ));
        }
        let local = start.local_name();
        let local = local.as_ref();
        if !root_seen {
            root_seen = true;
            if !(is(&ns, PROTOCOL_NS) && local == b"Response") {
                return Err(SamlError::ResponseMalformed(
                    "the document is not a samlp:Response".into(),
                ));
            }
            facts.destination = attr(&start, b"Destination")?;
            facts.in_response_to = attr(&start, b"InResponseTo")?;
        } else if is(&ns, ASSERTION_NS) && local == b"Assertion" {
            assertions += 1;
        } else if is(&ns, ASSERTION_NS) && local == b"EncryptedAssertion" {
            return Err(SamlError::EncryptedAssertion);
        } else if is(&ns, ASSERTION_NS) && local == b"SubjectConfirmationData" {
            if confirmation_in_response_to.is_none() {
                confirmation_in_response_to = attr(&start, b"InResponseTo")?;
            }
        } else if is(&ns, PROTOCOL_NS) && local == b"StatusCode" {
            if facts.status_code.is_none() {
                facts.status_code = attr(&start, b"Value")?;
            }
        } else if is(&ns, DSIG_NS) && local == b"Signature" {
            facts.signatures += 1;
        } else if is(&ns, DSIG_NS) && local == b"SignatureMethod" {
            let alg = attr(&start, b"Algorithm")?.unwrap_or_default();
            if !ALLOWED_SIGNATURE_METHODS.contains(&alg.as_str()) {
                return Err(SamlError::WeakAlgorithm(format!("signature method {alg}")));
            }
        } else if is(&ns, DSIG_NS) && local == b"DigestMethod" {
            let alg = attr(&start, b"Algorithm")?.unwrap_or_default();
            if !ALLOWED_DIGEST_METHODS.contains(&alg.as_str()) {
                return Err(SamlError::WeakAlgorithm(format!("digest method {alg}")));
            }
        }
        if !is_empty {
            depth += 1;
        }
    }
    if !root_seen {
        return Err(SamlError::ResponseMalformed("the document is empty".into()));
    }
    if assertions != 1 {
        return Err(SamlError::AssertionCount(assertions));
    }
    if facts.signatures == 0 {
        return Err(SamlError::Unsigned);
    }
    if facts.in_response_to.is_none() {
        facts.in_response_to = confirmation_in_response_to;
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Destination="https://sp/acs" InResponseTo="_abc">"#;
    const SIG: &str = r#"<ds:Signature><ds:SignedInfo><ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><ds:Reference><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/></ds:Reference></ds:SignedInfo></ds:Signature>"#;

    fn doc(body: &str) -> String {
        format!("{HEAD}{body}</samlp:Response>")
    }

    #[test]
    fn reads_destination_and_request_id() {
        let f = scan_response(&doc(&format!(
            "<saml:Assertion>{SIG}<saml:Subject/></saml:Assertion>"
        )))
        .unwrap();
        assert_eq!(f.destination.as_deref(), Some("https://sp/acs"));
        assert_eq!(f.in_response_to.as_deref(), Some("_abc"));
    }

    #[test]
    fn refuses_what_attacks_need() {
        let one = format!("<saml:Assertion>{SIG}</saml:Assertion>");
        let two = format!("{one}<saml:Assertion/>");
        assert!(matches!(
            scan_response(&doc(&two)),
            Err(SamlError::AssertionCount(2))
        ));
        let nested = format!("<samlp:Extensions>{one}</samlp:Extensions><saml:Assertion/>");
        assert!(matches!(
            scan_response(&doc(&nested)),
            Err(SamlError::AssertionCount(2))
        ));
        assert!(matches!(
            scan_response(&doc("<saml:Assertion/>")),
            Err(SamlError::Unsigned)
        ));
        let comment = format!("<saml:Assertion>{SIG}<saml:NameID>a@evil.com<!---->.x.com</saml:NameID></saml:Assertion>");
        assert!(matches!(
            scan_response(&doc(&comment)),
            Err(SamlError::ResponseComment)
        ));
        let sha1 = one.replace(
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        );
        assert!(matches!(
            scan_response(&doc(&sha1)),
            Err(SamlError::WeakAlgorithm(_))
        ));
        let dtd = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{}", doc(&one));
        assert!(matches!(
            scan_response(&dtd),
            Err(SamlError::ResponseDoctype)
        ));
    }
}

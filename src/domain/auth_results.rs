//! What sender authentication found for one message, and what the account's policy made of
//! it: the plain types `auth` produces, `ingest` stores in `messages.auth_results`, and the
//! store, rules and command line read back.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// One check's outcome, as RFC 8601 names it, with what it was about and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// pass, fail, softfail, neutral, none, temperror, permerror, policy
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArcVerdict {
    pub result: String,
    /// Sealing domains, oldest hop first (i=1, 2, ...).
    pub sealers: Vec<String>,
    /// What each hop's ARC-Authentication-Results said of DMARC (same order as `sealers`).
    pub hop_dmarc: Vec<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcVerdict {
    pub result: String,
    /// The RFC 5322 From domain the policy is about.
    pub from_domain: String,
    /// none, quarantine, reject, or unspecified when no record was found.
    pub policy: String,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every verdict on one message, and the Authentication-Results header that sums them up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthVerdicts {
    pub iprev: Verdict,
    pub spf_helo: Verdict,
    pub spf_mail_from: Verdict,
    pub dkim: Vec<Verdict>,
    pub arc: ArcVerdict,
    pub dmarc: DmarcVerdict,
    /// Value of the Authentication-Results header (without the field name).
    pub header: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    /// The From domain is proven: DMARC passed, or a trusted forwarder's ARC seal says it did.
    pub authenticated_domain: Option<String>,
    pub via_trusted_arc: Option<String>,
    pub spoof_suspected: bool,
    /// Set when strict mode refuses the message; the reason goes in the 550 reply.
    pub reject: Option<String>,
}

/// What `messages.auth_results` holds: the verdicts and the policy's outcome. Borrowed when
/// intake writes it (serialised straight to text), owned when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAuthResults<'a> {
    pub verdicts: Cow<'a, AuthVerdicts>,
    pub policy: Cow<'a, PolicyOutcome>,
}

impl StoredAuthResults<'static> {
    /// The stored document, or `None` when it is not one (a row written by hand, say).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document as intake has stored it since verdicts were first kept.
    const STORED: &str = r#"{"verdicts":{"iprev":{"result":"pass"},"spf_helo":{"result":"none"},"spf_mail_from":{"result":"fail","domain":"fwd.example"},"dkim":[{"result":"pass","domain":"brand.com","selector":"s1"}],"arc":{"result":"none","sealers":[],"hop_dmarc":[]},"dmarc":{"result":"pass","from_domain":"brand.com","policy":"reject","spf_aligned":false,"dkim_aligned":true},"header":"mx.test; dmarc=pass"},"policy":{"authenticated_domain":"brand.com","via_trusted_arc":null,"spoof_suspected":false,"reject":null}}"#;

    #[test]
    fn stored_document_reads_back_and_writes_the_same_text() {
        let a = StoredAuthResults::parse(STORED).expect("a stored document");
        assert_eq!(a.verdicts.dmarc.result, "pass");
        assert_eq!(a.verdicts.dkim[0].selector.as_deref(), Some("s1"));
        assert_eq!(a.verdicts.header, "mx.test; dmarc=pass");
        assert_eq!(a.policy.authenticated_domain.as_deref(), Some("brand.com"));
        let borrowed = StoredAuthResults {
            verdicts: Cow::Borrowed(&*a.verdicts),
            policy: Cow::Borrowed(&*a.policy),
        };
        assert_eq!(
            serde_json::to_string(&borrowed).ok().as_deref(),
            Some(STORED)
        );
    }

    #[test]
    fn anything_else_is_none() {
        assert!(StoredAuthResults::parse("{}").is_none());
        assert!(StoredAuthResults::parse("not json").is_none());
    }
}

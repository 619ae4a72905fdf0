//! What the verdicts mean for forwarded support mail. Forwarding breaks SPF by nature and
//! often DMARC too, so nothing is rejected for SPF; a trusted forwarder's ARC seal can vouch
//! for the first hop; a failing From domain with an enforcing DMARC policy is flagged as a
//! likely spoof, never threaded into an existing ticket and never auto-replied to.

use super::{AuthVerdicts, PolicyOutcome};
use crate::config::AuthSettings;
use crate::domain::AccountAuthSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthPolicy {
    /// Domains whose ARC seals we believe (the forwarders: google.com, microsoft.com, ...).
    pub trusted_arc_forwarders: Vec<String>,
    /// Answer 550 5.7.1 at end of data for direct (not forwarded) mail failing a DMARC p=reject.
    pub strict_dmarc: bool,
}

impl AuthPolicy {
    /// The server's defaults (`[auth]`), which an account's own settings may override.
    pub fn from_config(auth: &AuthSettings) -> Self {
        Self {
            trusted_arc_forwarders: auth.trusted_arc_forwarders.clone(),
            strict_dmarc: auth.strict_dmarc,
        }
    }

    /// An account's policy: what its settings set, these defaults for the rest.
    pub fn for_account(&self, account: &AccountAuthSettings) -> Self {
        Self {
            trusted_arc_forwarders: account
                .trusted_arc_forwarders
                .clone()
                .unwrap_or_else(|| self.trusted_arc_forwarders.clone()),
            strict_dmarc: account.strict_dmarc.unwrap_or(self.strict_dmarc),
        }
    }
}

fn trusted(domain: &str, list: &[String]) -> bool {
    list.iter().any(|t| {
        let t = t.trim().trim_start_matches('.').to_ascii_lowercase();
        !t.is_empty() && (domain == t || domain.ends_with(&format!(".{t}")))
    })
}

/// Same organisational domain (public suffix list). Used only to tell direct mail from
/// forwarded mail, never to grant trust.
fn related(a: &str, b: &str) -> bool {
    super::org_domain::organizational_domain(a) == super::org_domain::organizational_domain(b)
}

pub fn evaluate(
    v: &AuthVerdicts,
    policy: &AuthPolicy,
    envelope_from_domain: Option<&str>,
) -> PolicyOutcome {
    let from_domain = v.dmarc.from_domain.clone();
    let mut out = PolicyOutcome {
        authenticated_domain: None,
        via_trusted_arc: None,
        spoof_suspected: false,
        reject: None,
    };
    if v.dmarc.result == "pass" && !from_domain.is_empty() {
        out.authenticated_domain = Some(from_domain.clone());
        return out;
    }
    // The newest hop that a trusted forwarder sealed, in a chain that validates, and what
    // that forwarder saw of DMARC when the message reached it.
    if v.arc.result == "pass" {
        let vouched = v
            .arc
            .sealers
            .iter()
            .zip(v.arc.hop_dmarc.iter())
            .rev()
            .find(|(sealer, _)| trusted(sealer, &policy.trusted_arc_forwarders));
        if let Some((sealer, Some(dmarc))) = vouched {
            if dmarc == "pass" && !from_domain.is_empty() {
                out.authenticated_domain = Some(from_domain);
                out.via_trusted_arc = Some(sealer.clone());
                return out;
            }
        }
    }
    let enforcing = matches!(v.dmarc.policy.as_str(), "reject" | "quarantine");
    if v.dmarc.result == "fail" && enforcing {
        out.spoof_suspected = true;
        let direct = v.arc.sealers.is_empty()
            && envelope_from_domain.is_some_and(|d| related(d, &from_domain));
        if policy.strict_dmarc && v.dmarc.policy == "reject" && direct {
            out.reject = Some(format!(
                "{from_domain} publishes DMARC p=reject and this message fails it"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::related;

    #[test]
    fn direct_mail_is_recognised_by_organisational_domain() {
        assert!(related("bounces.shop.co.uk", "shop.co.uk"));
        assert!(!related("other.co.uk", "shop.co.uk"));
        assert!(!related("forwarder.test", "customer.test"));
    }
}

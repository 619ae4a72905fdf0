//! The DNS records a sending domain must publish, and checking them through the resolver:
//! each record ok, missing or wrong, with the value found.

use super::dkim::dkim_record;
use super::dns::txt_records;
use crate::config::{OutboundMode, OutboundSettings};
use crate::store::SendingDomainView;
use mail_auth::hickory_resolver::TokioResolver;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Published as expected.
    Ok,
    /// Nothing there.
    Missing,
    /// Something there, not what it should be.
    Wrong,
    /// The lookup itself failed (timeout, SERVFAIL): try again.
    Error,
}

/// One record to publish, and what a check found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordCheck {
    /// dkim, dkim-ed25519, spf or dmarc.
    pub kind: String,
    /// The DNS name (TXT record).
    pub name: String,
    /// The value to publish (for SPF: the mechanism to add to the record).
    pub expected: String,
    /// Set by a check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RecordStatus>,
    /// The records found at the name by the check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found: Vec<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DomainReport {
    pub id: i64,
    pub account_id: i64,
    pub domain: String,
    /// The RSA DKIM record is published as expected: replies may leave from this domain.
    pub verified: bool,
    pub records: Vec<RecordCheck>,
}

/// The SPF mechanisms that authorise our mail for the domain, from the configuration.
fn spf_mechanisms(cfg: &OutboundSettings) -> (Vec<String>, Option<String>) {
    let mut m: Vec<String> = cfg
        .spf_ips
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|ip| {
            let ip = ip.trim();
            if ip.contains(':') {
                format!("ip6:{ip}")
            } else {
                format!("ip4:{ip}")
            }
        })
        .collect();
    if !cfg.spf_include.trim().is_empty() {
        m.push(format!("include:{}", cfg.spf_include.trim()));
    }
    if m.is_empty() {
        return match cfg.mode {
            OutboundMode::Relay if !cfg.relay.host.trim().is_empty() => (
                vec![format!("a:{}", cfg.relay.host.trim())],
                Some("derived from outbound.relay.host; your relay provider may document an include: to use instead (outbound.spf_include)".into()),
            ),
            _ => (
                vec![],
                Some("set outbound.spf_ips to the public IPs this server sends from, so the mechanism can be given".into()),
            ),
        };
    }
    (m, None)
}

/// The records to publish for `d`, not yet checked.
pub fn records_to_publish(d: &SendingDomainView, cfg: &OutboundSettings) -> Vec<RecordCheck> {
    let mut out = vec![RecordCheck {
        kind: "dkim".into(),
        name: format!("{}._domainkey.{}", d.selector, d.domain),
        expected: dkim_record("rsa", &d.rsa_public_key),
        status: None,
        found: vec![],
        note: None,
    }];
    if let (Some(sel), Some(key)) = (&d.ed25519_selector, &d.ed25519_public_key) {
        out.push(RecordCheck {
            kind: "dkim-ed25519".into(),
            name: format!("{sel}._domainkey.{}", d.domain),
            expected: dkim_record("ed25519", key),
            status: None,
            found: vec![],
            note: Some("optional: a second signature for receivers that check Ed25519".into()),
        });
    }
    let (spf, note) = spf_mechanisms(cfg);
    out.push(RecordCheck {
        kind: "spf".into(),
        name: d.domain.clone(),
        expected: if spf.is_empty() {
            "v=spf1 ... ~all".into()
        } else {
            format!("v=spf1 {} ~all", spf.join(" "))
        },
        status: None,
        found: vec![],
        note: note.or_else(|| {
            Some("if the domain already has an SPF record, add the mechanisms to it: one v=spf1 record only".into())
        }),
    });
    out.push(RecordCheck {
        kind: "dmarc".into(),
        name: format!("_dmarc.{}", d.domain),
        expected: "v=DMARC1; p=none; adkim=r; aspf=r".into(),
        status: None,
        found: vec![],
        note: Some("a starting point: move to p=quarantine, then p=reject, once reports show all your mail passes".into()),
    });
    out
}

/// The `p=` of a DKIM key record (whitespace removed), and its `k=` (rsa by default).
fn dkim_key(record: &str) -> Option<(String, String)> {
    let mut k = "rsa".to_string();
    let mut p = None;
    for tag in record.split(';') {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match name.trim() {
            "k" => k = value.to_ascii_lowercase(),
            "p" => p = Some(value),
            _ => {}
        }
    }
    p.map(|p| (k, p))
}

fn expected_key(expected: &str) -> Option<(String, String)> {
    dkim_key(expected)
}

/// Looks every record up and says what it found.
pub async fn check(
    resolver: &TokioResolver,
    d: &SendingDomainView,
    cfg: &OutboundSettings,
) -> DomainReport {
    let mut records = records_to_publish(d, cfg);
    for r in records.iter_mut() {
        let found = match txt_records(resolver, &r.name).await {
            Ok(f) => f.unwrap_or_default(),
            Err(e) => {
                r.status = Some(RecordStatus::Error);
                r.note = Some(format!("{e}; check dns.nameservers and try again"));
                continue;
            }
        };
        let relevant: Vec<String> = match r.kind.as_str() {
            "spf" => found
                .into_iter()
                .filter(|t| t.trim().to_ascii_lowercase().starts_with("v=spf1"))
                .collect(),
            "dmarc" => found
                .into_iter()
                .filter(|t| t.trim().to_ascii_lowercase().starts_with("v=dmarc1"))
                .collect(),
            _ => found,
        };
        r.status = Some(if relevant.is_empty() {
            RecordStatus::Missing
        } else {
            match r.kind.as_str() {
                "dkim" | "dkim-ed25519" => {
                    let want = expected_key(&r.expected);
                    if relevant.iter().any(|t| dkim_key(t) == want) {
                        RecordStatus::Ok
                    } else {
                        r.note = Some("a DKIM record is published at this name, but not with this key: replace it with the expected value".into());
                        RecordStatus::Wrong
                    }
                }
                "spf" => {
                    let (mechanisms, _) = spf_mechanisms(cfg);
                    if relevant.len() > 1 {
                        r.note = Some("more than one v=spf1 record: receivers treat that as an error (permerror); merge them".into());
                        RecordStatus::Wrong
                    } else {
                        let terms: Vec<String> = relevant[0]
                            .split_whitespace()
                            .map(|t| t.trim_start_matches('+').to_ascii_lowercase())
                            .collect();
                        let missing: Vec<&String> = mechanisms
                            .iter()
                            .filter(|m| !terms.contains(&m.to_ascii_lowercase()))
                            .collect();
                        if missing.is_empty() {
                            RecordStatus::Ok
                        } else {
                            r.note = Some(format!(
                                "the SPF record does not name {}: add it before the all mechanism",
                                missing
                                    .iter()
                                    .map(|m| m.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ));
                            RecordStatus::Wrong
                        }
                    }
                }
                _ => {
                    if relevant.len() > 1 {
                        r.note = Some(
                            "more than one DMARC record: receivers ignore both; keep one".into(),
                        );
                        RecordStatus::Wrong
                    } else {
                        RecordStatus::Ok
                    }
                }
            }
        });
        r.found = relevant;
    }
    let verified = records
        .iter()
        .any(|r| r.kind == "dkim" && r.status == Some(RecordStatus::Ok));
    DomainReport {
        id: d.id,
        account_id: d.account_id,
        domain: d.domain.clone(),
        verified,
        records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dkim_keys_compare_without_whitespace() {
        assert_eq!(
            dkim_key("v=DKIM1; k=rsa; p=AB CD"),
            Some(("rsa".into(), "ABCD".into()))
        );
        assert_eq!(
            dkim_key("v=DKIM1; p=ABCD"),
            dkim_key("v=DKIM1;k=rsa;p=AB\tCD")
        );
        assert_ne!(
            dkim_key("v=DKIM1; k=ed25519; p=ABCD"),
            dkim_key("v=DKIM1; k=rsa; p=ABCD")
        );
        assert_eq!(dkim_key("v=DKIM1"), None);
    }
}

//! `postern verify`: SPF, DKIM, ARC and DMARC for a message file, as if it arrived over SMTP.

use super::output::{print_json, JsonFlag};
use crate::config::Settings;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct VerifyArgs {
    /// The message (.eml) exactly as received.
    file: PathBuf,
    /// IP address of the client that sent it.
    #[arg(long)]
    ip: std::net::IpAddr,
    /// Name the client gave in EHLO/HELO.
    #[arg(long)]
    helo: String,
    /// Envelope sender (MAIL FROM); omit for the null sender <>.
    #[arg(long = "mail-from")]
    mail_from: Option<String>,
    #[command(flatten)]
    out: JsonFlag,
}

pub(super) async fn run(args: VerifyArgs, settings: &Settings) -> Result<()> {
    let VerifyArgs {
        file,
        ip,
        helo,
        mail_from,
        out,
    } = args;
    let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let auth = crate::auth::Authenticator::new(
        &settings.dns.nameservers,
        settings.dns.timeout,
        settings.dns.cache_size,
        &settings.smtp.hostname,
    )?;
    let facts = crate::auth::SmtpFacts {
        ip,
        helo: &helo,
        mail_from: mail_from.as_deref(),
    };
    let v = auth.verify(&raw, &facts).await;
    let policy = crate::auth::AuthPolicy::from_config(&settings.auth);
    let envelope_domain = mail_from
        .as_deref()
        .and_then(|m| m.rsplit_once('@'))
        .map(|(_, d)| d);
    let outcome = crate::auth::evaluate(&v, &policy, envelope_domain);
    if out.json {
        print_json(&serde_json::json!({"verdicts": v, "policy": outcome}))?;
    } else {
        print_verdicts(&v, &outcome);
    }
    Ok(())
}

fn line(name: &str, v: &crate::auth::Verdict) {
    let mut s = format!("{name:<14} {}", v.result);
    if let Some(d) = &v.domain {
        s.push_str(&format!("  ({d}"));
        if let Some(sel) = &v.selector {
            s.push_str(&format!(", selector {sel}"));
        }
        s.push(')');
    }
    if let Some(r) = &v.reason {
        s.push_str(&format!("  {r}"));
    }
    outln!("{s}");
}

fn print_verdicts(v: &crate::auth::AuthVerdicts, o: &crate::auth::PolicyOutcome) {
    outln!("Authentication-Results: {}", v.header);
    outln!();
    line("iprev", &v.iprev);
    line("spf (helo)", &v.spf_helo);
    line("spf (mailfrom)", &v.spf_mail_from);
    for d in &v.dkim {
        line("dkim", d);
    }
    outln!(
        "{:<14} {}  sealed by: {}{}",
        "arc",
        v.arc.result,
        if v.arc.sealers.is_empty() {
            "-".to_string()
        } else {
            v.arc.sealers.join(", ")
        },
        v.arc
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default()
    );
    outln!(
        "{:<14} {}  (From: {}, policy {}, spf aligned {}, dkim aligned {}){}",
        "dmarc",
        v.dmarc.result,
        v.dmarc.from_domain,
        v.dmarc.policy,
        v.dmarc.spf_aligned,
        v.dmarc.dkim_aligned,
        v.dmarc
            .reason
            .as_deref()
            .map(|r| format!("  {r}"))
            .unwrap_or_default()
    );
    outln!();
    match (&o.authenticated_domain, &o.via_trusted_arc) {
        (Some(d), Some(arc)) => {
            outln!("Verdict: {d} authenticated through the ARC seal of {arc}")
        }
        (Some(d), None) => outln!("Verdict: {d} authenticated (DMARC pass)"),
        _ if o.spoof_suspected => outln!(
            "Verdict: spoof suspected (the From domain's DMARC policy is enforcing and fails)"
        ),
        _ => outln!("Verdict: not authenticated (shown to agents as such; not a spoof flag)"),
    }
    if let Some(r) = &o.reject {
        outln!("Strict mode would refuse it: 550 5.7.1 {r}");
    }
}

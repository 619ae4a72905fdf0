//! `postern domain`: sending domains, their DKIM keys and the DNS records replies need.

use super::output::{print_json, print_one, JsonFlag};
use super::{open_store, scope};
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DomainCommand {
    /// Generate the DKIM keys of a domain replies leave from, and print the records to publish.
    Add {
        #[arg(long)]
        account: AccountId,
        /// The brand's domain, e.g. brand.com.
        domain: String,
        /// DKIM selector (default: outbound.dkim_selector).
        #[arg(long)]
        selector: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Look the domain's records up and say, for each, ok, missing or wrong.
    Check {
        #[arg(long)]
        account: AccountId,
        domain: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Sending domains (of one account, or all) with the records to publish.
    List {
        #[arg(long)]
        account: Option<AccountId>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

fn print_records(records: &[crate::outbound::RecordCheck]) {
    for r in records {
        outln!();
        outln!(
            "{} record{}",
            r.kind.to_uppercase(),
            match r.status {
                Some(s) => format!(
                    ": {}",
                    serde_json::to_value(s)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
                None => String::new(),
            }
        );
        outln!("  name:  {} (TXT)", r.name);
        outln!("  value: {}", r.expected);
        for f in &r.found {
            outln!("  found: {f}");
        }
        if let Some(n) = &r.note {
            outln!("  note:  {n}");
        }
    }
}

pub(super) async fn run(cmd: DomainCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    let outbound = crate::app::outbound_queue(settings, &store).await?;
    match cmd {
        DomainCommand::Add {
            account,
            domain,
            selector,
            out,
        } => {
            let (d, records) = outbound
                .add_domain(account, &domain, selector.as_deref())
                .await?;
            if out.json {
                print_json(&serde_json::json!({"domain": d, "records": records}))?;
            } else {
                outln!(
                    "Sending domain {} added to account {} (id {}). Publish these DNS records, then run `postern domain check --account {} {}`:",
                    d.domain, d.account_id, d.id, d.account_id, d.domain
                );
                print_records(&records);
            }
        }
        DomainCommand::Check {
            account,
            domain,
            out,
        } => {
            let name = crate::outbound::dns_name(&domain)?;
            let keys = store.sending_domain(account, None, Some(&name)).await?;
            let report = outbound.check_domain(account, keys.id).await?;
            print_one(&out, &report, |report| {
                outln!(
                    "{}: {}",
                    report.domain,
                    if report.verified {
                        "verified: replies may leave from it"
                    } else {
                        "not verified: publish the DKIM record below, then check again"
                    }
                );
                print_records(&report.records);
            })?;
        }
        DomainCommand::List { account, out } => {
            let list = store.sending_domains(scope(account)).await?;
            if out.json {
                let docs: Vec<serde_json::Value> = list
                    .iter()
                    .map(|d| {
                        let mut v = serde_json::to_value(d).unwrap_or_default();
                        v["records"] =
                            serde_json::to_value(outbound.records(d)).unwrap_or_default();
                        v
                    })
                    .collect();
                print_json(&docs)?;
            } else if list.is_empty() {
                outln!(
                    "no sending domains (add one with `postern domain add --account ID DOMAIN`)"
                );
            } else {
                for d in list {
                    outln!(
                        "{:<6} account {:<6} {:<30} selector {:<12} {}",
                        d.id,
                        d.account_id,
                        d.domain,
                        d.selector,
                        if d.verified {
                            "verified"
                        } else {
                            "not verified"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

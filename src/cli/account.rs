//! `postern account`: create, list, show, and the sender-authentication policy.

use super::open_store;
use super::output::{print_json, print_one, JsonFlag};
use crate::config::Settings;
use crate::domain::{AccountId, EmailAddress};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account with a forwarding address for each support address.
    Create {
        #[arg(long)]
        name: String,
        /// A support mailbox of the store (repeat for several).
        #[arg(long = "support-address", required = true, value_name = "ADDR")]
        support_addresses: Vec<String>,
        /// Default sending address (defaults to the first support address).
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List every account.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one account with its support and forwarding addresses.
    Show {
        id: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show or change how sender authentication treats the account's mail.
    Policy {
        id: AccountId,
        /// Refuse direct mail failing DMARC p=reject with 550 5.7.1 (true/false).
        #[arg(long)]
        strict_dmarc: Option<bool>,
        /// Forwarders whose ARC seals are believed (repeat; replaces the list).
        #[arg(long = "trust-arc", value_name = "DOMAIN")]
        trust_arc: Vec<String>,
        /// Go back to the server's defaults.
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

fn parse_address(s: &str, what: &str) -> Result<EmailAddress> {
    EmailAddress::parse(s).with_context(|| format!("{what} {s:?} is not a valid address"))
}

pub(super) async fn run(cmd: AccountCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        AccountCommand::Create {
            name,
            support_addresses,
            from,
            out,
        } => {
            let addrs = support_addresses
                .iter()
                .map(|s| parse_address(s, "support address"))
                .collect::<Result<Vec<_>>>()?;
            let from = from.map(|f| parse_address(&f, "--from")).transpose()?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let account = store
                .create_account(&name, &addrs, from.as_ref(), &settings.inbound.domain)
                .await?;
            if out.json {
                #[derive(Serialize)]
                struct Created<'a> {
                    forwarding_address: &'a str,
                    #[serde(flatten)]
                    account: &'a crate::store::AccountView,
                }
                let first = account
                    .support_addresses
                    .first()
                    .map(|s| s.forwarding_address.as_str())
                    .unwrap_or_default();
                print_json(&Created {
                    forwarding_address: first,
                    account: &account,
                })?;
            } else {
                outln!("Account {} created: {}", account.id, account.name);
                print_addresses(&account);
            }
        }
        AccountCommand::List { out } => {
            let accounts = store.accounts().await?;
            print_one(&out, &accounts, |accounts| {
                for a in accounts {
                    outln!("{:<6} {:<30} from {}", a.id, a.name, a.from_address);
                }
            })?;
        }
        AccountCommand::Policy {
            id,
            strict_dmarc,
            trust_arc,
            reset,
            out,
        } => {
            let mut account_settings = store.account_settings(id).await?;
            let auth = &mut account_settings.auth;
            if reset {
                *auth = Default::default();
            }
            if let Some(strict) = strict_dmarc {
                auth.strict_dmarc = Some(strict);
            }
            if !trust_arc.is_empty() {
                let list: Vec<String> = trust_arc
                    .iter()
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect();
                if let Some(bad) = list
                    .iter()
                    .find(|d| d.is_empty() || d.contains(['@', ' ', '/']))
                {
                    bail!("--trust-arc {bad:?} is not a domain name");
                }
                auth.trusted_arc_forwarders = Some(list);
            }
            if reset || strict_dmarc.is_some() || !trust_arc.is_empty() {
                store.set_account_settings(id, &account_settings).await?;
            }
            let effective = crate::auth::AuthPolicy::from_config(&settings.auth)
                .for_account(&account_settings.auth);
            print_one(&out, &effective, |effective| {
                outln!(
                    "Account {id}: strict DMARC {}",
                    if effective.strict_dmarc { "on" } else { "off" }
                );
                outln!(
                    "Trusted ARC forwarders: {}",
                    effective.trusted_arc_forwarders.join(", ")
                );
            })?;
        }
        AccountCommand::Show { id, out } => {
            let account = store.account(id).await?;
            print_one(&out, &account, |account| {
                outln!("Account {}: {}", account.id, account.name);
                outln!("Sends from: {}", account.from_address);
                print_addresses(account);
            })?;
        }
    }
    Ok(())
}

fn print_addresses(account: &crate::store::AccountView) {
    for s in &account.support_addresses {
        outln!(
            "  {} -> forward to {} ({})",
            s.address,
            s.forwarding_address,
            s.status
        );
        if let Some(code) = &s.confirmation_code {
            outln!("    forwarding confirmation code: {code}");
        }
    }
}

//! `postern token`: API tokens (shown once; only their hash is stored).

use super::open_store;
use super::output::{print_json, print_list, print_one, JsonFlag};
use crate::config::Settings;
use crate::domain::{AccountId, Role, Scope};
use anyhow::{bail, Result};
use clap::Subcommand;
use serde::Serialize;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once).
    Create {
        #[arg(long)]
        account: AccountId,
        /// admin (everything, including users and tokens) or agent (tickets and customers).
        #[arg(long)]
        role: Role,
        /// What the token is for.
        #[arg(long)]
        name: Option<String>,
        /// Stop working after this long, e.g. 90d or 12h. Without it the token never
        /// expires (an operator's token: revoke it with `postern token revoke`).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The account's tokens (never their secrets): who made each, expiry, last use.
    List {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        id: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) async fn run(cmd: TokenCommand, settings: &Settings) -> Result<()> {
    let store = open_store(settings).await?;
    match cmd {
        TokenCommand::Create {
            account,
            role,
            name,
            expires_in,
            out,
        } => {
            let expires_at = match expires_in {
                Some(d) if d.is_zero() => bail!("--expires-in must be more than 0s"),
                Some(d) => Some(
                    crate::store::now_ms()
                        .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                ),
                None => None,
            };
            let (info, secret) = store
                .create_api_token_by(
                    account,
                    role,
                    name.as_deref().unwrap_or(""),
                    crate::store::TokenCreator::Operator,
                    expires_at,
                )
                .await?;
            if out.json {
                #[derive(Serialize)]
                struct Created<'a> {
                    token: &'a str,
                    #[serde(flatten)]
                    info: &'a crate::store::ApiTokenView,
                }
                print_json(&Created {
                    token: &secret,
                    info: &info,
                })?;
            } else {
                outln!("{secret}");
                errln!(
                    "token {} ({}) for account {account}: shown once, store it now",
                    info.id,
                    info.role
                );
            }
        }
        TokenCommand::List { account, out } => {
            let tokens = store.api_tokens(account).await?;
            print_list(&out, &tokens, "no tokens", |t| {
                let when = |d: Option<chrono::DateTime<chrono::Utc>>, none: &str| {
                    d.map_or(none.to_string(), |d| d.to_rfc3339())
                };
                outln!(
                    "{:<6} {:<6} {:<14} {:<24} {:<17} by {:<24} expires {:<26} last used {}",
                    t.id,
                    t.role,
                    format!("{}...", t.prefix),
                    t.name,
                    t.status,
                    t.created_by.as_deref().unwrap_or("operator"),
                    when(t.expires_at, "never"),
                    when(t.last_used_at, "never"),
                );
            })?;
        }
        TokenCommand::Revoke { id, out } => {
            let t = store.revoke_api_token(id, Scope::Operator).await?;
            print_one(&out, &t, |t| {
                outln!("token {} revoked", t.id);
            })?;
        }
    }
    Ok(())
}

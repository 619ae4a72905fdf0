//! `postern sso`: an account's SAML identity provider, its role mapping, our SP URLs.

use super::open_store;
use super::output::{print_json, JsonFlag};
use crate::config::Settings;
use crate::domain::AccountId;
use anyhow::{bail, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum SsoCommand {
    /// Set the account's identity provider from its metadata XML (and the role mapping).
    Set {
        #[arg(long)]
        account: AccountId,
        /// The IdP's SAML metadata (XML file); it must carry a signing certificate.
        #[arg(long, value_name = "FILE")]
        metadata: PathBuf,
        /// Attribute of the assertion that gives the user's role (default "role").
        #[arg(long, value_name = "NAME")]
        role_attribute: Option<String>,
        /// Values of that attribute that make an admin, comma-separated (default "admin").
        #[arg(long, value_name = "A,B", value_delimiter = ',')]
        admin_values: Option<Vec<String>>,
        /// Values that make an agent, comma-separated (default "agent").
        #[arg(long, value_name = "C,D", value_delimiter = ',')]
        agent_values: Option<Vec<String>>,
        /// With no matching value, sign the user in as an agent instead of refusing.
        #[arg(long)]
        default_agent: Option<bool>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// What to give the IdP (SP entity ID, ACS URL, metadata URL) and what is configured.
    Show {
        #[arg(long)]
        account: AccountId,
        #[command(flatten)]
        out: JsonFlag,
    },
}

pub(super) async fn run(cmd: SsoCommand, settings: &Settings) -> Result<()> {
    use crate::http::saml::{certificate_summary, parse_idp_metadata, SpEndpoints};
    let store = open_store(settings).await?;
    let base = settings.public_base_url(settings.http.listen);
    if settings.http.public_url.trim().is_empty() {
        errln!(
            "postern: note: http.public_url is not set; the URLs below use {base}, which an IdP outside this machine cannot reach"
        );
    }
    let (account, out) = match &cmd {
        SsoCommand::Set { account, out, .. } | SsoCommand::Show { account, out } => {
            (*account, out.json)
        }
    };
    store.account(account).await?;
    if let SsoCommand::Set {
        metadata,
        role_attribute,
        admin_values,
        agent_values,
        default_agent,
        ..
    } = cmd
    {
        let xml = super::text_file::read_any_text(&metadata)?;
        let idp = parse_idp_metadata(&xml)?;
        let mut roles = store
            .sso_provider(account)
            .await?
            .map(|p| p.roles)
            .unwrap_or_default();
        if let Some(a) = role_attribute {
            if a.trim().is_empty() {
                bail!("--role-attribute must not be empty");
            }
            roles.attribute = a.trim().to_string();
        }
        let clean = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        if let Some(v) = admin_values {
            roles.admin_values = clean(v);
        }
        if let Some(v) = agent_values {
            roles.agent_values = clean(v);
        }
        if let Some(d) = default_agent {
            roles.default_agent = d;
        }
        store.set_sso_provider(account, &idp, Some(&roles)).await?;
    }
    let sp = SpEndpoints::new(&base, account);
    let provider = store.sso_provider(account).await?;
    if out {
        let idp = provider.as_ref().map(|p| {
            serde_json::json!({
                "entity_id": p.idp.idp_entity_id,
                "sso_url": p.idp.sso_url,
                "signing_certificates": p.idp.signing_certs.iter().map(|c| certificate_summary(c)).collect::<Vec<_>>(),
                "roles": p.roles,
            })
        });
        print_json(&serde_json::json!({
            "account_id": account,
            "sp_entity_id": sp.entity_id,
            "acs_url": sp.acs_url,
            "sp_metadata_url": sp.metadata_url,
            "login_url": sp.login_url,
            "logout_url": sp.logout_url,
            "idp": idp,
        }))?;
    } else {
        outln!("SP entity ID:     {}", sp.entity_id);
        outln!("ACS URL:          {} (HTTP-POST)", sp.acs_url);
        outln!("SP metadata URL:  {}", sp.metadata_url);
        outln!("Sign-in URL:      {}", sp.login_url);
        match provider {
            None => outln!(
                "IdP:              not set (postern sso set --account {account} --metadata FILE)"
            ),
            Some(p) => {
                outln!("IdP entity ID:    {}", p.idp.idp_entity_id);
                outln!("IdP sign-in URL:  {}", p.idp.sso_url);
                for c in &p.idp.signing_certs {
                    outln!("IdP certificate:  {}", certificate_summary(c));
                }
                outln!(
                    "Roles:            attribute {:?}; admin {:?}; agent {:?}; no match: {}",
                    p.roles.attribute,
                    p.roles.admin_values,
                    p.roles.agent_values,
                    if p.roles.default_agent {
                        "agent"
                    } else {
                        "refused"
                    }
                );
            }
        }
    }
    Ok(())
}

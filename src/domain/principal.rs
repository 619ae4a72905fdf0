//! Who is making a request: the account it acts for, with which role, through which
//! user session or API token.

use super::AccountId;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What a user or token may do within its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything an agent does, plus users, API tokens, single sign-on and imports.
    Admin,
    /// Reads and works on tickets and customers.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "agent" => Ok(Self::Agent),
            other => Err(format!("unknown role {other:?} (expected admin or agent)")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller. Every request acts for exactly one account: this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub account_id: AccountId,
    pub role: Role,
    /// Set for a signed-in user (session cookie).
    pub user_id: Option<i64>,
    /// Set for an API token.
    pub token_id: Option<i64>,
}

impl Principal {
    /// What this principal may see: its own account, always.
    pub fn scope(&self) -> super::Scope {
        super::Scope::Account(self.account_id)
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

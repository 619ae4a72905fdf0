//! Whose data a read or a change may touch. An `Option<AccountId>` whose `None` meant "every
//! account" made forgetting the account look like asking for everything; a `Scope` has to be
//! said.

use super::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One account's data: every HTTP request (from its authenticated principal), and a
    /// command given `--account`.
    Account(AccountId),
    /// Every account's data: the operator on the command line, on this machine.
    Operator,
}

impl Scope {
    /// The account the data must belong to; `None` for the operator (no filter).
    pub fn account(self) -> Option<AccountId> {
        match self {
            Self::Account(a) => Some(a),
            Self::Operator => None,
        }
    }
}

impl From<AccountId> for Scope {
    fn from(account: AccountId) -> Self {
        Self::Account(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_account_scope_names_an_account() {
        assert_eq!(Scope::Account(AccountId(7)).account(), Some(AccountId(7)));
        assert_eq!(Scope::from(AccountId(3)), Scope::Account(AccountId(3)));
        assert_eq!(Scope::Operator.account(), None);
    }
}

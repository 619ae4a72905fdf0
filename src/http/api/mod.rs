//! The `/api/v1` handlers, one file per resource.

pub mod account;
pub mod csrf;
pub mod customers;
pub mod domains;
pub mod imports;
pub mod messages;
pub mod replies;
pub mod rules;
pub mod system;
pub mod tickets;
pub mod tokens;
pub mod users;

use crate::domain::EmailAddress;

/// An e-mail address given in a request, trimmed; when it is not one, the reason, naming it.
pub(crate) fn email_address(value: &str) -> Result<EmailAddress, String> {
    EmailAddress::parse(value.trim())
        .map_err(|e| format!("{value:?} is not a valid e-mail address: {e}"))
}

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

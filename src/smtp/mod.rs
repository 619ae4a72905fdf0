//! The SMTP server. It knows nothing of storage: accepted mail goes to a [`Delivery`].

pub mod budget;
pub mod command;
pub mod data;
pub mod delivery;
pub mod reply;
pub mod server;
pub mod session;
pub mod tls;

pub use crate::net::ConnectionLimits;
pub use budget::DataBudget;
pub use delivery::{Accepted, Delivery, DeliveryError, RecipientVerdict};
pub use server::SmtpServer;
pub use session::{BusyMode, Session, SessionConfig, SessionEnd};

//! Plain types shared by every part. Imports nothing of the project.

mod account_settings;
mod auth_results;
mod duplicate;
mod email_address;
mod forwarding_address;
mod import_totals;
mod mailbox;
mod message_kind;
mod principal;
mod public_address;
mod scope;
mod text_fold;
mod threading;
mod ticket_change;
mod ticket_edit;
mod ticket_facts;

pub use account_settings::{AccountAuthSettings, AccountSettings};
pub use auth_results::{
    ArcVerdict, AuthVerdicts, DmarcVerdict, PolicyOutcome, StoredAuthResults, Verdict,
};
pub use duplicate::{
    judge_duplicate, same_body, DistinctBecause, DuplicateVerdict, IncomingCopy, StoredCopy,
};
pub use email_address::{AddressError, EmailAddress};
pub use forwarding_address::ForwardingAddress;
pub use import_totals::ImportTotals;
pub use mailbox::Mailbox;
pub use message_kind::MessageKind;
pub use principal::{Principal, Role};
pub use public_address::{is_public_ip, not_public, NotPublic};
pub use scope::Scope;
pub use text_fold::{fold as fold_text, strip_marks};
pub use threading::{
    is_forward_subject, mint_reply_token, normalize_subject, parse_message_ids, reply_subject,
    verify_reply_token, ThreadReason,
};
pub use ticket_change::{ChangeAuthor, HistoryEntry, TicketBefore, TicketChange};
pub use ticket_edit::{
    check_note, clean_tag, InvalidChange, TicketEdit, MAX_NOTE_BYTES, MAX_TAGS_PER_TICKET,
    MAX_TAG_CHARS, PRIORITIES,
};
pub use ticket_facts::{CustomerFacts, TicketFacts};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.trim().parse().map($name)
            }
        }
    };
}

id_type!(AccountId);
id_type!(TicketId);
id_type!(MessageId);
id_type!(CustomerId);
id_type!(SupportAddressId);

/// A ticket's life cycle. `snoozed` carries its wake-up time on the ticket row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Open,
    Pending,
    Snoozed,
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Pending => "pending",
            Self::Snoozed => "snoozed",
            Self::Closed => "closed",
        }
    }
}

impl FromStr for TicketStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "pending" => Ok(Self::Pending),
            "snoozed" => Ok(Self::Snoozed),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "unknown ticket status {other:?} (expected open, pending, snoozed or closed)"
            )),
        }
    }
}

/// Which way a message went: from a customer, from the brand, or an internal note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    Note,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
            Self::Note => "note",
        }
    }
}

/// The envelope of one SMTP transaction, as the session saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub session_id: String,
    pub remote_ip: std::net::IpAddr,
    pub helo: String,
    /// `None` is the null reverse-path `<>` (bounces).
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub tls: bool,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

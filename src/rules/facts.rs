//! What a rule looks at: one ticket (with its customer) and, for message triggers, the
//! message that arrived. Live runs load it from the store; the simulation rebuilds it from
//! history. Both hand the same structure to the same evaluation code.

use super::business_hours::BusinessHours;
use serde::Serialize;

/// The ticket and its customer, as the store reads them for rules.
pub use crate::domain::{CustomerFacts, TicketFacts};

#[derive(Debug, Clone, Default, Serialize)]
pub struct MessageFacts {
    pub id: i64,
    pub subject: String,
    /// The reply part (quotes and signature removed).
    pub body: String,
    pub body_full: String,
    pub from_address: String,
    pub to: Vec<String>,
    pub has_attachment: bool,
    /// normal, auto_generated, bounce
    pub classification: String,
    /// smtp, import, api, rule
    pub source: String,
    pub spoof_suspected: bool,
    /// The DMARC result, when the message was verified.
    pub dmarc: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountFacts {
    pub id: i64,
    pub name: String,
    pub from_address: String,
}

/// Everything one evaluation sees.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Milliseconds since the epoch: the (virtual) time of the evaluation.
    pub now: i64,
    pub account: AccountFacts,
    pub ticket: TicketFacts,
    /// The message that triggered the run; for time-based and ticket-updated runs, the
    /// ticket's latest customer message.
    pub message: Option<MessageFacts>,
    pub business_hours: Option<BusinessHours>,
}

impl MessageFacts {
    pub fn from_domain(&self) -> &str {
        self.from_address.rsplit_once('@').map_or("", |(_, d)| d)
    }

    pub fn auto_generated(&self) -> bool {
        self.classification == "auto_generated"
    }

    pub fn bounce(&self) -> bool {
        self.classification == "bounce"
    }
}

/// The DMARC result recorded in a message's `auth_results`.
pub fn dmarc_result(auth_results: Option<&str>) -> Option<String> {
    let stored = crate::domain::StoredAuthResults::parse(auth_results?)?;
    Some(stored.verdicts.dmarc.result.to_ascii_lowercase())
}

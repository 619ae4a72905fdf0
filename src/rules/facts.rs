//! What a rule looks at: one ticket (with its customer) and, for message triggers, the
//! message that arrived. Live runs load it from the store; the simulation rebuilds it from
//! history. Both hand the same structure to the same evaluation code.

use super::business_hours::BusinessHours;
use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CustomerFacts {
    pub email: String,
    pub name: Option<String>,
    pub attributes: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TicketFacts {
    pub id: i64,
    pub subject: String,
    pub status: String,
    pub priority: String,
    pub tags: Vec<String>,
    pub assignee_email: Option<String>,
    pub assignee_name: Option<String>,
    pub team: Option<String>,
    pub flags: Vec<String>,
    pub created_at: i64,
    pub last_customer_message_at: Option<i64>,
    /// Replies written by people (automated replies do not count: "no agent has answered").
    pub last_agent_reply_at: Option<i64>,
    pub customer: Option<CustomerFacts>,
}

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

impl TicketFacts {
    /// Human activity that starts a new episode for time-based rules.
    pub fn episode(&self) -> i64 {
        self.created_at
            .max(self.last_customer_message_at.unwrap_or(0))
            .max(self.last_agent_reply_at.unwrap_or(0))
    }

    /// customer or agent: who wrote last (automated replies are not agents).
    pub fn last_message_from(&self) -> Option<&'static str> {
        match (self.last_customer_message_at, self.last_agent_reply_at) {
            (None, None) => None,
            (Some(_), None) => Some("customer"),
            (None, Some(_)) => Some("agent"),
            (Some(c), Some(a)) => Some(if c >= a { "customer" } else { "agent" }),
        }
    }
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

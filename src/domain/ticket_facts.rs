//! A ticket as rules see it: its fields, tags and customer. The store reads it for the
//! live rules; the simulation rebuilds it from history.

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

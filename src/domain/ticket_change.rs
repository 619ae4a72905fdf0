//! A change to one ticket, whoever makes it (a rule, an agent, an API token), and the
//! history entry it leaves. Decided above the store (rules, the agent API); the store
//! applies a list of them in one place.

use super::{Principal, TicketStatus};
use serde_json::{json, Value};

/// One change to a ticket, fully decided: the store writes it as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketChange {
    /// Adds the tag, spelled as given (nothing when the ticket has that exact spelling).
    AddTag(String),
    /// Removes the exact stored spellings in `stored`; the history names `tag`, the tag as
    /// asked (rules compare tags case and accents aside, so one tag can have several).
    RemoveTags {
        tag: String,
        stored: Vec<String>,
    },
    /// Replaces the whole set of tags (deduplicated by the caller).
    ReplaceTags(Vec<String>),
    /// `snoozed_until` is written as given (`None` clears it); `closed_at` becomes now when
    /// the status is closed and is cleared otherwise.
    SetStatus {
        status: TicketStatus,
        snoozed_until: Option<i64>,
    },
    /// `None` unassigns.
    Assign(Option<i64>),
    Team(String),
    Priority(String),
    /// An internal note, signed with the writer's address and name when a person wrote it.
    Note {
        text: String,
        from_address: Option<String>,
        from_name: Option<String>,
    },
}

/// Who makes a change, as the history's `by` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeAuthor {
    /// A rule's run; `depth` counts the rules' changes that led to it (the rules worker
    /// reads it back to stop loops).
    Rule { id: i64, name: String, depth: i64 },
    /// A person through the API: a signed-in user or an API token.
    Agent {
        user_id: Option<i64>,
        token_id: Option<i64>,
    },
}

impl ChangeAuthor {
    /// The `by` of the history entries.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Rule { id, name, depth } => {
                json!({"rule": id, "rule_name": name, "depth": depth})
            }
            Self::Agent { user_id, token_id } => json!({"user_id": user_id, "token_id": token_id}),
        }
    }

    /// The user who wrote, when a person did.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::Agent { user_id, .. } => *user_id,
            Self::Rule { .. } => None,
        }
    }
}

impl From<&Principal> for ChangeAuthor {
    fn from(p: &Principal) -> Self {
        Self::Agent {
            user_id: p.user_id,
            token_id: p.token_id,
        }
    }
}

/// The fields of the ticket before a list of changes, which an agent's history entries
/// compare with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketBefore {
    pub status: String,
    pub priority: String,
    pub assignee: Option<i64>,
    pub team: Option<String>,
}

/// One row of a ticket's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub kind: &'static str,
    pub data: Value,
}

impl TicketChange {
    /// The history entry of this change by `by`, or none when it records nothing.
    ///
    /// The two shapes clients read today: a rule's entries name the new value (a status
    /// with its snooze) and are always written, since the planner leaves out what changes
    /// nothing; an agent's field changes name the old and the new value and are written only
    /// when the value changes. `note` is the id of the note this change wrote.
    pub fn history(
        &self,
        by: &ChangeAuthor,
        before: &TicketBefore,
        note: Option<i64>,
    ) -> Option<HistoryEntry> {
        let rule = matches!(by, ChangeAuthor::Rule { .. });
        let field = |kind: &'static str, from: Value, to: Value, extra: Option<(&str, Value)>| {
            if rule {
                let mut data = json!({"to": to});
                if let Some((k, v)) = extra {
                    data[k] = v;
                }
                Some((kind, data))
            } else if from != to {
                Some((kind, json!({"from": from, "to": to})))
            } else {
                None
            }
        };
        let (kind, mut data) = match self {
            Self::AddTag(tag) => Some(("tag_added", json!({"tag": tag}))),
            Self::RemoveTags { tag, .. } => Some(("tag_removed", json!({"tag": tag}))),
            Self::ReplaceTags(tags) => Some(("tags_set", json!({"tags": tags}))),
            Self::SetStatus {
                status,
                snoozed_until,
            } => field(
                "status_changed",
                json!(before.status),
                json!(status.as_str()),
                Some(("snoozed_until", json!(snoozed_until))),
            ),
            Self::Assign(user) => field("assigned", json!(before.assignee), json!(user), None),
            Self::Team(team) => field("team_assigned", json!(before.team), json!(team), None),
            Self::Priority(p) => field("priority_changed", json!(before.priority), json!(p), None),
            Self::Note { .. } => Some(("note_added", json!({"message_id": note}))),
        }?;
        data["by"] = by.to_json();
        Some(HistoryEntry { kind, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ChangeAuthor {
        ChangeAuthor::Rule {
            id: 7,
            name: "vip".into(),
            depth: 1,
        }
    }

    fn agent() -> ChangeAuthor {
        ChangeAuthor::Agent {
            user_id: Some(3),
            token_id: None,
        }
    }

    fn before() -> TicketBefore {
        TicketBefore {
            status: "open".into(),
            priority: "normal".into(),
            assignee: None,
            team: None,
        }
    }

    #[test]
    fn authors_sign_as_the_history_always_said() {
        assert_eq!(
            rule().to_json(),
            json!({"rule": 7, "rule_name": "vip", "depth": 1})
        );
        assert_eq!(
            ChangeAuthor::Agent {
                user_id: None,
                token_id: Some(9)
            }
            .to_json(),
            json!({"user_id": null, "token_id": 9})
        );
    }

    #[test]
    fn a_rule_records_the_new_value_even_when_it_is_the_same() {
        let snooze = TicketChange::SetStatus {
            status: TicketStatus::Snoozed,
            snoozed_until: Some(1_000),
        };
        let mut b = before();
        b.status = "snoozed".into();
        let e = snooze.history(&rule(), &b, None).unwrap();
        assert_eq!(e.kind, "status_changed");
        assert_eq!(
            e.data,
            json!({"to": "snoozed", "snoozed_until": 1_000, "by": rule().to_json()})
        );
        let e = TicketChange::Priority("high".into())
            .history(&rule(), &before(), None)
            .unwrap();
        assert_eq!(
            (e.kind, e.data),
            (
                "priority_changed",
                json!({"to": "high", "by": rule().to_json()})
            )
        );
    }

    #[test]
    fn an_agent_records_old_and_new_and_only_a_real_change() {
        let close = TicketChange::SetStatus {
            status: TicketStatus::Closed,
            snoozed_until: None,
        };
        let e = close.history(&agent(), &before(), None).unwrap();
        assert_eq!(
            e.data,
            json!({"from": "open", "to": "closed", "by": agent().to_json()})
        );
        let mut closed = before();
        closed.status = "closed".into();
        assert_eq!(close.history(&agent(), &closed, None), None);
        assert_eq!(
            TicketChange::Assign(None).history(&agent(), &before(), None),
            None
        );
        let e = TicketChange::Assign(Some(4))
            .history(&agent(), &before(), None)
            .unwrap();
        assert_eq!(
            (e.kind, e.data),
            (
                "assigned",
                json!({"from": null, "to": 4, "by": agent().to_json()})
            )
        );
    }

    #[test]
    fn tags_and_notes_are_recorded_for_everyone() {
        let removed = TicketChange::RemoveTags {
            tag: "Urgent".into(),
            stored: vec!["urgent".into(), "URGENT".into()],
        };
        let e = removed.history(&rule(), &before(), None).unwrap();
        assert_eq!(
            (e.kind, e.data),
            (
                "tag_removed",
                json!({"tag": "Urgent", "by": rule().to_json()})
            )
        );
        let e = TicketChange::ReplaceTags(vec!["a".into()])
            .history(&agent(), &before(), None)
            .unwrap();
        assert_eq!(
            (e.kind, e.data),
            ("tags_set", json!({"tags": ["a"], "by": agent().to_json()}))
        );
        let note = TicketChange::Note {
            text: "seen".into(),
            from_address: None,
            from_name: None,
        };
        let e = note.history(&agent(), &before(), Some(42)).unwrap();
        assert_eq!(
            (e.kind, e.data),
            (
                "note_added",
                json!({"message_id": 42, "by": agent().to_json()})
            )
        );
    }
}

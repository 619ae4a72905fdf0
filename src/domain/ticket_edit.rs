//! What an agent may write on a ticket (tags, priorities, notes) and how an agent's edit
//! becomes the list of [`TicketChange`]s the store applies. Pure: the lookups an edit needs
//! (the ticket, the assignee) are the caller's.

use super::{TicketChange, TicketStatus};

/// Tags are short labels; a ticket carries a bounded number of them.
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_TAGS_PER_TICKET: usize = 50;
/// Internal notes are written by people: 64 KiB is plenty.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// A ticket's priorities, lowest first.
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];

/// A change a client asked for that cannot be made; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChange(pub String);

/// A tag as stored: trimmed, case kept, bounded.
pub fn clean_tag(tag: &str) -> Result<String, InvalidChange> {
    let tag = tag.trim();
    if tag.is_empty() {
        return Err(InvalidChange("a tag cannot be empty".into()));
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(InvalidChange(format!(
            "the tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
        )));
    }
    if tag.chars().any(char::is_control) {
        return Err(InvalidChange(format!(
            "the tag {tag:?} contains control characters"
        )));
    }
    Ok(tag.to_string())
}

/// An internal note as an agent may write it: not empty, bounded.
pub fn check_note(body: &str) -> Result<(), InvalidChange> {
    if body.trim().is_empty() {
        return Err(InvalidChange("the note is empty".into()));
    }
    if body.len() > MAX_NOTE_BYTES {
        return Err(InvalidChange(format!(
            "the note takes {} bytes; the limit is {MAX_NOTE_BYTES}",
            body.len()
        )));
    }
    Ok(())
}

/// What an agent changes on a ticket; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TicketEdit {
    pub status: Option<TicketStatus>,
    /// Kept only with the status `snoozed`.
    pub snoozed_until: Option<i64>,
    pub priority: Option<String>,
    /// `Some(None)` unassigns.
    pub assignee_id: Option<Option<i64>>,
    /// Replaces the whole set of tags.
    pub tags: Option<Vec<String>>,
}

impl TicketEdit {
    /// The changes, in the order their history is written (status, priority, assignee,
    /// tags); tags are cleaned and deduplicated. The first invalid field refuses the whole
    /// edit (tags are checked before the priority).
    pub fn changes(&self) -> Result<Vec<TicketChange>, InvalidChange> {
        let tags = match &self.tags {
            Some(list) => {
                let mut clean = Vec::with_capacity(list.len());
                for t in list {
                    let t = clean_tag(t)?;
                    if !clean.contains(&t) {
                        clean.push(t);
                    }
                }
                if clean.len() > MAX_TAGS_PER_TICKET {
                    return Err(InvalidChange(format!(
                        "a ticket has at most {MAX_TAGS_PER_TICKET} tags"
                    )));
                }
                Some(clean)
            }
            None => None,
        };
        if let Some(priority) = &self.priority {
            if !PRIORITIES.contains(&priority.as_str()) {
                return Err(InvalidChange(format!(
                    "unknown priority {priority:?} (expected low, normal, high or urgent)"
                )));
            }
        }
        let mut changes = Vec::new();
        if let Some(status) = self.status {
            changes.push(TicketChange::SetStatus {
                status,
                snoozed_until: self
                    .snoozed_until
                    .filter(|_| status == TicketStatus::Snoozed),
            });
        }
        if let Some(priority) = &self.priority {
            changes.push(TicketChange::Priority(priority.clone()));
        }
        if let Some(assignee) = self.assignee_id {
            changes.push(TicketChange::Assign(assignee));
        }
        if let Some(tags) = tags {
            changes.push(TicketChange::ReplaceTags(tags));
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_bounded_and_printable() {
        assert_eq!(clean_tag("  VIP "), Ok("VIP".to_string()));
        assert!(clean_tag(" ").is_err());
        assert!(clean_tag(&"x".repeat(MAX_TAG_CHARS)).is_ok());
        assert!(clean_tag(&"é".repeat(MAX_TAG_CHARS + 1)).is_err());
        assert_eq!(
            clean_tag("a\tb"),
            Err(InvalidChange(
                "the tag \"a\\tb\" contains control characters".into()
            ))
        );
    }

    #[test]
    fn notes_are_not_empty_and_bounded() {
        assert!(check_note(" \n").is_err());
        assert!(check_note(&"x".repeat(MAX_NOTE_BYTES)).is_ok());
        assert!(check_note(&"x".repeat(MAX_NOTE_BYTES + 1)).is_err());
    }

    #[test]
    fn an_edit_becomes_changes_in_history_order() {
        let edit = TicketEdit {
            status: Some(TicketStatus::Closed),
            snoozed_until: Some(5),
            priority: Some("high".into()),
            assignee_id: Some(None),
            tags: Some(vec![" b".into(), "a".into(), "b ".into()]),
        };
        assert_eq!(
            edit.changes(),
            Ok(vec![
                TicketChange::SetStatus {
                    status: TicketStatus::Closed,
                    snoozed_until: None
                },
                TicketChange::Priority("high".into()),
                TicketChange::Assign(None),
                TicketChange::ReplaceTags(vec!["b".into(), "a".into()]),
            ])
        );
        let snooze = TicketEdit {
            status: Some(TicketStatus::Snoozed),
            snoozed_until: Some(5),
            ..Default::default()
        };
        assert_eq!(
            snooze.changes(),
            Ok(vec![TicketChange::SetStatus {
                status: TicketStatus::Snoozed,
                snoozed_until: Some(5)
            }])
        );
        assert_eq!(TicketEdit::default().changes(), Ok(vec![]));
    }

    #[test]
    fn an_invalid_field_refuses_the_edit_tags_first() {
        let edit = TicketEdit {
            priority: Some("soon".into()),
            tags: Some(vec!["".into()]),
            ..Default::default()
        };
        assert_eq!(
            edit.changes(),
            Err(InvalidChange("a tag cannot be empty".into()))
        );
        let edit = TicketEdit {
            priority: Some("soon".into()),
            ..Default::default()
        };
        assert_eq!(
            edit.changes().unwrap_err().to_string(),
            "unknown priority \"soon\" (expected low, normal, high or urgent)"
        );
        let edit = TicketEdit {
            tags: Some((0..=MAX_TAGS_PER_TICKET).map(|i| i.to_string()).collect()),
            ..Default::default()
        };
        assert!(edit.changes().is_err());
    }
}

//! When an incoming message is one already stored (DESIGN.md: the same Message-ID in one
//! account is one message; without a Message-ID, a hash of the normalised bytes stands in).
//! A reused Message-ID alone does not make a duplicate: the same sender, the same body and
//! no proof lost do ([`judge_duplicate`]). The store only finds the candidate rows.

use crate::domain::{judge_duplicate, DuplicateVerdict, IncomingCopy, StoredCopy};
use crate::store::{NewMessage, StoreError, StoredMessage, ThreadingFacts};

/// Copies stored under one Message-ID that an incoming message is compared with; more are
/// taken as different (and stored), so that a flood of reuses costs a bounded amount each.
pub const MAX_COPIES_COMPARED: usize = 16;

/// What becomes of an incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupDecision {
    /// New: stored under this key.
    Store { dedup_key: String },
    /// Already stored: acknowledged, stored once.
    Duplicate(StoredMessage),
}

/// Whether `m` repeats a stored message of its account.
pub fn dedup<R: ThreadingFacts + ?Sized>(
    repo: &mut R,
    m: &NewMessage,
) -> Result<DedupDecision, StoreError> {
    let by_key = |repo: &mut R, key: String| -> Result<DedupDecision, StoreError> {
        Ok(match repo.message_by_dedup_key(&key)? {
            Some(stored) => DedupDecision::Duplicate(stored),
            None => DedupDecision::Store { dedup_key: key },
        })
    };
    let Some(message_id) = m
        .message_id
        .as_deref()
        .filter(|_| m.dedup_key.starts_with("mid:"))
    else {
        // No Message-ID: the key is a hash of the whole normalised message.
        return by_key(repo, m.dedup_key.clone());
    };
    let copies = repo.copies_under_message_id(message_id, MAX_COPIES_COMPARED)?;
    if copies.is_empty() {
        return Ok(DedupDecision::Store {
            dedup_key: m.dedup_key.clone(),
        });
    }
    let incoming = IncomingCopy {
        sender: &m.from.address,
        authenticated: m.dmarc_pass_domain.is_some(),
        raw: &m.raw,
    };
    for copy in &copies {
        // Bodies are read only for a copy from the same sender (the rare real repeat).
        let raw = match (
            &copy.raw_sha256,
            copy.sender.as_deref() == Some(incoming.sender),
        ) {
            (Some(sha), true) => repo.blob(sha)?,
            _ => None,
        };
        let stored = StoredCopy {
            sender: copy.sender.as_deref(),
            authenticated: copy.authenticated,
            raw: raw.as_deref(),
        };
        if judge_duplicate(stored, incoming) == DuplicateVerdict::Duplicate {
            return Ok(DedupDecision::Duplicate(copy.stored));
        }
    }
    // Another message under a used Message-ID: stored under a key of its own bytes (the
    // same bytes again are the same message).
    by_key(repo, format!("{}#{}", m.dedup_key, m.raw_sha256))
}

#[cfg(test)]
mod tests {
    //! The duplicate policy as a table: `testdata/duplicates.json` holds a store's messages
    //! and one incoming message, each with what becomes of it and, where it matters, the
    //! look-ups that may cost.

    use super::*;
    use crate::domain::{AccountId, Mailbox, MessageKind};
    use crate::ingest::decision_table;
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Incoming {
        #[serde(default)]
        message_id: Option<String>,
        /// `mid:<message_id>` when not given.
        #[serde(default)]
        dedup_key: Option<String>,
        sender: String,
        #[serde(default)]
        authenticated: bool,
        raw: String,
        #[serde(default)]
        raw_sha256: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Expected {
        Store(String),
        /// The stored message's id.
        Duplicate(i64),
    }

    fn new_message(i: Incoming) -> NewMessage {
        let dedup_key = i
            .dedup_key
            .unwrap_or_else(|| format!("mid:{}", i.message_id.as_deref().unwrap_or_default()));
        NewMessage {
            account_id: AccountId(1),
            support_address_id: None,
            message_id: i.message_id,
            dedup_key,
            in_reply_to: None,
            references: vec![],
            from: Mailbox {
                name: None,
                address: i.sender,
            },
            to: vec![],
            cc: vec![],
            participants: vec![],
            reply_to: None,
            subject: String::new(),
            sent_at: None,
            received_at: 0,
            text_body: None,
            html_body: None,
            text_packed: None,
            html_packed: None,
            raw: Arc::new(i.raw.into_bytes()),
            raw_packed: None,
            raw_sha256: i.raw_sha256,
            envelope_json: "{}".into(),
            source: "smtp",
            attachments: vec![],
            kind: MessageKind::Normal,
            forwarded_from: None,
            stripped_text: None,
            spoof_suspected: false,
            dmarc_pass_domain: i.authenticated.then(|| "cust.test".to_string()),
            auth_results: None,
            import_job: None,
        }
    }

    #[test]
    fn the_duplicate_policy_decides_every_case_of_the_table() {
        let table = include_str!("testdata/duplicates.json");
        decision_table::check(table, 12, |store, incoming| {
            Ok(match dedup(store, &new_message(incoming))? {
                DedupDecision::Store { dedup_key } => Expected::Store(dedup_key),
                DedupDecision::Duplicate(stored) => Expected::Duplicate(stored.message.0),
            })
        });
    }
}

//! When an incoming message is one already stored (the rule: the same Message-ID in one
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
    use crate::ingest::decision_table::{self, TableMessage};
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Expected {
        Store(String),
        /// The stored message's id.
        Duplicate(i64),
    }

    #[test]
    fn the_duplicate_policy_decides_every_case_of_the_table() {
        let table = include_str!("testdata/duplicates.json");
        decision_table::check(table, 12, |store, incoming: TableMessage| {
            Ok(match dedup(store, &incoming.into_new_message())? {
                DedupDecision::Store { dedup_key } => Expected::Store(dedup_key),
                DedupDecision::Duplicate(stored) => Expected::Duplicate(stored.message.0),
            })
        });
    }
}

//! Which recipients of our message a delivery report marks bounced in the outbound queue
//! (even after a relay accepted them: the report is the later truth). Delay reports change
//! nothing. A permanent report naming no recipient we know bounces every recipient of a
//! message that had only one.

use crate::store::{BounceRecords, StoreError};

/// A recipient the report says failed, with the reason kept on its queue row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    /// Lower-cased.
    pub address: String,
    pub why: String,
}

/// The reason kept when a permanent report names no recipient we know.
pub const NO_RECIPIENT_NAMED: &str = "bounce report (no recipient named)";

/// The recipients a report (classify's JSON: `recipients[]` with `address`, `action`,
/// `status`, `diagnostic`) says failed: action `failed` or a 5.x.x status.
pub fn failed_recipients(report: &serde_json::Value) -> Vec<FailedRecipient> {
    let Some(recipients) = report["recipients"].as_array() else {
        return vec![];
    };
    recipients
        .iter()
        .filter(|r| {
            r["action"].as_str() == Some("failed")
                || r["status"].as_str().is_some_and(|s| s.starts_with('5'))
        })
        .filter_map(|r| {
            let address = r["address"].as_str()?;
            let why = format!(
                "bounce report: {}{}",
                r["status"].as_str().unwrap_or("failed"),
                r["diagnostic"]
                    .as_str()
                    .map(|d| format!(" {d}"))
                    .unwrap_or_default()
            );
            Some(FailedRecipient {
                address: address.to_ascii_lowercase(),
                why,
            })
        })
        .collect()
}

/// Does the report say the failure is permanent?
pub fn is_permanent(report: &serde_json::Value) -> bool {
    report["permanent"].as_bool() == Some(true)
}

/// Marks in the queue what a report about our message `original_message_id` says failed.
pub fn mark_bounced<R: BounceRecords + ?Sized>(
    repo: &mut R,
    original_message_id: &str,
    report: &serde_json::Value,
) -> Result<(), StoreError> {
    let Some(message) = repo.outbound_message(original_message_id)? else {
        return Ok(());
    };
    let mut marked = 0;
    for r in failed_recipients(report) {
        marked += repo.mark_recipient_bounced(message, &r.address, &r.why)?;
    }
    if marked == 0 && is_permanent(report) {
        repo.mark_sole_recipient_bounced(message, NO_RECIPIENT_NAMED)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failed_recipients_are_those_failed_or_with_a_permanent_status() {
        let report = json!({"recipients": [
            {"address": "A@X.test", "action": "failed", "status": "5.1.1", "diagnostic": "no such user"},
            {"address": "b@x.test", "action": "delayed", "status": "4.4.1"},
            {"address": "c@x.test", "status": "5.2.2"},
            {"action": "failed"},
            {"address": "d@x.test", "action": "failed"}
        ]});
        assert_eq!(
            failed_recipients(&report),
            vec![
                FailedRecipient {
                    address: "a@x.test".into(),
                    why: "bounce report: 5.1.1 no such user".into()
                },
                FailedRecipient {
                    address: "c@x.test".into(),
                    why: "bounce report: 5.2.2".into()
                },
                FailedRecipient {
                    address: "d@x.test".into(),
                    why: "bounce report: failed".into()
                },
            ]
        );
        assert!(failed_recipients(&json!({"permanent": true})).is_empty());
        assert!(is_permanent(&json!({"permanent": true})));
        assert!(!is_permanent(&json!({"recipients": []})));
    }
}

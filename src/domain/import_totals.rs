//! What an import has counted: one type for the pipeline's running totals, the job row the
//! store keeps, the API's job document and the command line's summary (the same JSON keys
//! in each, flattened into the document around them).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportTotals {
    /// Messages read from the source.
    pub seen: i64,
    pub imported: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    /// Outside `since`/`until`.
    pub skipped: i64,
    /// Bytes read from the source.
    pub bytes: i64,
}

impl ImportTotals {
    /// Messages committed: imported, recognised as duplicates, or quarantined.
    pub fn committed(&self) -> i64 {
        self.imported + self.duplicates + self.quarantined
    }
}

#[cfg(test)]
mod tests {
    use super::ImportTotals;

    #[test]
    fn committed_counts_what_was_written_not_what_was_skipped() {
        let t = ImportTotals {
            seen: 10,
            imported: 4,
            duplicates: 2,
            quarantined: 1,
            skipped: 3,
            bytes: 999,
        };
        assert_eq!(t.committed(), 7);
        assert_eq!(
            serde_json::to_value(t).ok(),
            Some(
                serde_json::json!({"seen": 10, "imported": 4, "duplicates": 2,
                "quarantined": 1, "skipped": 3, "bytes": 999})
            )
        );
    }
}

//! `--since 2y|DATE` and `--until DATE`: which messages an import takes, by their date.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

/// Whole UTC days, both ends included. An empty range takes everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid date {given:?}: give YYYY-MM-DD, or for --since an age such as 2y, 6m, 30d")]
pub struct BadDate {
    pub given: String,
}

impl DateRange {
    /// Parses `--since`: an age back from `today` (`2y`, `18m`, `90d`, `3w`) or a date.
    pub fn parse_since(value: &str, today: NaiveDate) -> Result<NaiveDate, BadDate> {
        let bad = || BadDate {
            given: value.to_string(),
        };
        let v = value.trim();
        if let Some(unit) = v.chars().last().filter(|c| c.is_ascii_alphabetic()) {
            let n: u32 = v[..v.len() - 1].parse().map_err(|_| bad())?;
            let date = match unit.to_ascii_lowercase() {
                'y' => today.checked_sub_months(Months::new(n.checked_mul(12).ok_or_else(bad)?)),
                'm' => today.checked_sub_months(Months::new(n)),
                'w' => today.checked_sub_days(chrono::Days::new(u64::from(n) * 7)),
                'd' => today.checked_sub_days(chrono::Days::new(u64::from(n))),
                _ => None,
            };
            return date.ok_or_else(bad);
        }
        Self::parse_date(v)
    }

    /// Parses `--until`: a date (`YYYY-MM-DD`), included.
    pub fn parse_date(value: &str) -> Result<NaiveDate, BadDate> {
        NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").map_err(|_| BadDate {
            given: value.to_string(),
        })
    }

    pub fn is_unbounded(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Whether a message of this date is taken. A message without a date is taken: nothing
    /// says it is outside the range.
    pub fn contains(&self, date: Option<DateTime<Utc>>) -> bool {
        let Some(day) = date.map(|d| d.date_naive()) else {
            return true;
        };
        self.since.is_none_or(|s| day >= s) && self.until.is_none_or(|u| day <= u)
    }

    /// IMAP `SEARCH` criteria (`SINCE d BEFORE d+1`), on the server's INTERNALDATE.
    pub fn imap_search_criteria(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = self.since {
            parts.push(format!("SINCE {}", imap_date(s)));
        }
        if let Some(u) = self.until.and_then(|u| u.succ_opt()) {
            parts.push(format!("BEFORE {}", imap_date(u)));
        }
        parts.join(" ")
    }
}

/// RFC 3501 date: `1-Feb-2024`.
fn imap_date(d: NaiveDate) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!("{}-{}-{}", d.day(), MONTHS[d.month0() as usize], d.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn since_takes_ages_and_dates() {
        let today = day("2026-03-31");
        assert_eq!(DateRange::parse_since("2y", today), Ok(day("2024-03-31")));
        assert_eq!(DateRange::parse_since("1m", today), Ok(day("2026-02-28")));
        assert_eq!(DateRange::parse_since("10d", today), Ok(day("2026-03-21")));
        assert_eq!(
            DateRange::parse_since("2025-01-05", today),
            Ok(day("2025-01-05"))
        );
        assert!(DateRange::parse_since("2x", today).is_err());
        assert!(DateRange::parse_since("yesterday", today).is_err());
        assert!(DateRange::parse_date("2025-13-01").is_err());
    }

    #[test]
    fn range_includes_both_days_and_undated_messages() {
        let r = DateRange {
            since: Some(day("2024-01-01")),
            until: Some(day("2024-12-31")),
        };
        let at = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|d| d.to_utc());
        assert!(r.contains(at("2024-01-01T00:00:00Z")));
        assert!(r.contains(at("2024-12-31T23:59:59Z")));
        assert!(!r.contains(at("2023-12-31T23:59:59Z")));
        assert!(!r.contains(at("2025-01-01T00:00:00Z")));
        assert!(r.contains(None));
        assert_eq!(
            r.imap_search_criteria(),
            "SINCE 1-Jan-2024 BEFORE 1-Jan-2025"
        );
        assert_eq!(DateRange::default().imap_search_criteria(), "");
    }
}

//! Business hours of an account: a weekly schedule in its time zone, with holidays.
//! Stored in the account's settings under `business_hours`:
//!
//! ```json
//! {"timezone": "Europe/Paris",
//!  "week": {"mon": ["09:00-12:30", "13:30-18:00"], "tue": ["09:00-18:00"], "sat": []},
//!  "holidays": ["2025-12-25", "2026-01-01"]}
//! ```

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Timelike};
use serde::Serialize;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Debug, Clone, Serialize)]
pub struct BusinessHours {
    #[serde(serialize_with = "tz_name")]
    pub timezone: chrono_tz::Tz,
    /// Per weekday (Monday first): opening intervals in minutes since midnight.
    #[serde(skip)]
    pub week: [Vec<(u32, u32)>; 7],
    pub holidays: Vec<NaiveDate>,
    /// As written, for display.
    #[serde(rename = "week")]
    pub written: serde_json::Value,
}

fn tz_name<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl BusinessHours {
    /// Reads the `business_hours` object; errors name the offending key.
    pub fn parse(v: &serde_json::Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or("business_hours must be an object with timezone, week and holidays")?;
        for k in obj.keys() {
            if !["timezone", "week", "holidays"].contains(&k.as_str()) {
                return Err(format!(
                    "business_hours.{k}: unknown key, expected timezone, week or holidays"
                ));
            }
        }
        let tz_text = obj
            .get("timezone")
            .and_then(|t| t.as_str())
            .ok_or("business_hours.timezone: required, e.g. \"Europe/Paris\"")?;
        let timezone: chrono_tz::Tz = tz_text.parse().map_err(|_| {
            format!("business_hours.timezone: unknown time zone {tz_text:?} (use an IANA name such as \"Europe/Paris\")")
        })?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        let written = obj.get("week").cloned().unwrap_or(serde_json::json!({}));
        let days = written
            .as_object()
            .ok_or("business_hours.week: must be an object such as {\"mon\": [\"09:00-18:00\"]}")?;
        for (day, ranges) in days {
            let i = DAYS.iter().position(|d| d == day).ok_or_else(|| {
                format!(
                    "business_hours.week.{day}: unknown day, expected one of {}",
                    DAYS.join(", ")
                )
            })?;
            let list = ranges.as_array().ok_or_else(|| {
                format!("business_hours.week.{day}: must be a list such as [\"09:00-18:00\"]")
            })?;
            for (j, r) in list.iter().enumerate() {
                let path = format!("business_hours.week.{day}[{j}]");
                let text = r
                    .as_str()
                    .ok_or_else(|| format!("{path}: must be a string such as \"09:00-18:00\""))?;
                let (a, b) = text.split_once('-').ok_or_else(|| {
                    format!("{path}: {text:?} is not a range such as \"09:00-18:00\"")
                })?;
                let minutes = |t: &str| -> Result<u32, String> {
                    let t = t.trim();
                    if t == "24:00" {
                        return Ok(1_440);
                    }
                    NaiveTime::parse_from_str(t, "%H:%M")
                        .map(|t| t.hour() * 60 + t.minute())
                        .map_err(|_| format!("{path}: {t:?} is not a time such as \"09:00\""))
                };
                let (start, end) = (minutes(a)?, minutes(b)?);
                if start >= end {
                    return Err(format!("{path}: the range {text:?} ends before it starts"));
                }
                week[i].push((start, end));
            }
        }
        let mut holidays = Vec::new();
        if let Some(list) = obj.get("holidays") {
            let list = list
                .as_array()
                .ok_or("business_hours.holidays: must be a list of dates such as \"2025-12-25\"")?;
            for (j, d) in list.iter().enumerate() {
                let text = d.as_str().unwrap_or_default();
                holidays.push(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                    format!(
                        "business_hours.holidays[{j}]: {d} is not a date such as \"2025-12-25\""
                    )
                })?);
            }
        }
        Ok(Self {
            timezone,
            week,
            holidays,
            written,
        })
    }

    /// Is the instant `at` (ms since the epoch) within business hours?
    pub fn contains(&self, at: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp_millis(at) else {
            return false;
        };
        let local = self.timezone.from_utc_datetime(&utc.naive_utc());
        if self.holidays.contains(&local.date_naive()) {
            return false;
        }
        let day = local.weekday().num_days_from_monday() as usize;
        let minute = local.hour() * 60 + local.minute();
        self.week[day]
            .iter()
            .any(|&(start, end)| minute >= start && minute < end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_time_zone_and_holidays() {
        let h = BusinessHours::parse(&serde_json::json!({
            "timezone": "Europe/Paris",
            "week": {"mon": ["09:00-18:00"], "tue": ["09:00-18:00"]},
            "holidays": ["2025-06-03"]
        }))
        .unwrap();
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        // Monday 2 June 2025, 08:30 UTC is 10:30 in Paris (summer time).
        assert!(h.contains(at("2025-06-02T08:30:00Z")));
        // 06:30 UTC is 08:30 in Paris: closed.
        assert!(!h.contains(at("2025-06-02T06:30:00Z")));
        // 15:59 UTC is 17:59, open; 16:00 UTC is 18:00, closed.
        assert!(h.contains(at("2025-06-02T15:59:00Z")));
        assert!(!h.contains(at("2025-06-02T16:00:00Z")));
        // Tuesday 3 June is a holiday; Saturday has no hours.
        assert!(!h.contains(at("2025-06-03T10:00:00Z")));
        assert!(!h.contains(at("2025-06-07T10:00:00Z")));
        let e = BusinessHours::parse(&serde_json::json!({"timezone": "Mars/Olympus"})).unwrap_err();
        assert!(e.contains("unknown time zone"), "{e}");
        let e = BusinessHours::parse(
            &serde_json::json!({"timezone": "UTC", "week": {"mon": ["18:00-09:00"]}}),
        )
        .unwrap_err();
        assert!(e.starts_with("business_hours.week.mon[0]"), "{e}");
    }
}

//! An account's own settings, stored as one JSON document on its row. Missing keys mean the
//! server's defaults; a value of the wrong shape reads as missing (as the untyped reads did),
//! and keys this version does not know are kept when the document is written back.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountSettings {
    /// How sender authentication treats the account's mail (over `[auth]`).
    #[serde(default, deserialize_with = "or_default")]
    pub auth: AccountAuthSettings,
    /// The weekly schedule rules use, as written (`rules::business_hours` checks it when it
    /// is set, and ignores it with a warning if it no longer parses).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "or_none"
    )]
    pub business_hours: Option<serde_json::Value>,
    /// Keys of other versions, kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The account's overrides of the server's sender-authentication policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAuthSettings {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "or_none"
    )]
    pub strict_dmarc: Option<bool>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strings"
    )]
    pub trusted_arc_forwarders: Option<Vec<String>>,
    /// Keys of other versions, kept as they are.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl AccountSettings {
    /// The stored document; one that is not a JSON object reads as all defaults.
    pub fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// The value, or the default when it has another shape.
fn or_default<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> Result<T, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

/// The value, or `None` when it is null or has another shape.
fn or_none<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    Ok(serde_json::from_value(v).ok())
}

/// The strings of a list (other items skipped), or `None` when it is not a list.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(v.as_array().map(|items| {
        items
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_are_defaults() {
        assert_eq!(AccountSettings::parse("{}"), AccountSettings::default());
        assert_eq!(
            AccountSettings::parse("not json"),
            AccountSettings::default()
        );
        assert_eq!(AccountSettings::parse("[1]"), AccountSettings::default());
    }

    #[test]
    fn values_read_as_the_untyped_reads_did() {
        let s = AccountSettings::parse(
            r#"{"auth":{"strict_dmarc":true,"trusted_arc_forwarders":["google.com",3,"x.org"]},
                "business_hours":{"timezone":"UTC"}}"#,
        );
        assert_eq!(s.auth.strict_dmarc, Some(true));
        assert_eq!(
            s.auth.trusted_arc_forwarders,
            Some(vec!["google.com".to_string(), "x.org".to_string()])
        );
        assert_eq!(
            s.business_hours,
            Some(serde_json::json!({"timezone": "UTC"}))
        );
        // Wrong shapes read as missing, one key at a time.
        let s = AccountSettings::parse(
            r#"{"auth":{"strict_dmarc":"yes","trusted_arc_forwarders":"google.com"},"business_hours":null}"#,
        );
        assert_eq!(s, AccountSettings::default());
        assert_eq!(
            AccountSettings::parse(r#"{"auth":"on"}"#).auth,
            AccountAuthSettings::default()
        );
    }

    #[test]
    fn unknown_keys_survive_a_write() {
        let mut s = AccountSettings::parse(r#"{"auth":{},"signature":{"text":"Hi"}}"#);
        s.auth.strict_dmarc = Some(false);
        let written = serde_json::to_value(&s).ok();
        assert_eq!(
            written,
            Some(serde_json::json!({"auth": {"strict_dmarc": false}, "signature": {"text": "Hi"}}))
        );
    }
}

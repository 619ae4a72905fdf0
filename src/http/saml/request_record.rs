//! The AuthnRequest ID as a sealed, self-contained record of the sign-in it starts, so that
//! starting a sign-in stores nothing on the server (an anonymous flood of GET /login cannot
//! fill anything) and the response is checked against facts only this server could have
//! written:
//!
//! `"_" + base64url(version | account | issued | expires | nonce | browser | relay | mac)`
//!
//! - `browser`: SHA-256 (128 bits) of the browser-binding cookie's value
//!   (see [`super::browser_binding`]), so only the browser that started the sign-in can
//!   finish it;
//! - `relay`: SHA-256 (128 bits) of the RelayState (the return path) sent with the request,
//!   so a RelayState changed on the way is noticed (SAML bindings 3.4.3 ask the sender to
//!   protect its integrity);
//! - `mac`: HMAC-SHA-256 (128 bits) with the server's `sso_request_key` over all the rest.
//!
//! The record travels in the ID rather than in the RelayState because the IdP echoes the
//! ID inside the assertion it signs (InResponseTo), and because SAML limits RelayState to
//! 80 bytes. 109 characters in all, an XML NCName as IDs must be.

use crate::domain::AccountId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
/// Domain separation: this key's MACs mean "a sign-in request of Postern", nothing else.
const MAC_CONTEXT: &[u8] = b"postern sso request record v1\0";
const DIGEST_LEN: usize = 16;
const MAC_LEN: usize = 16;
const NONCE_LEN: usize = 8;
const BODY_LEN: usize = 1 + 8 + 8 + 8 + NONCE_LEN + DIGEST_LEN + DIGEST_LEN;
/// Longest ID worth decoding (anything longer is not ours).
const MAX_ID_LEN: usize = 1 + (BODY_LEN + MAC_LEN).div_ceil(3) * 4;

/// A sign-in request, as sealed into its ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub account: AccountId,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// Random, so that every request ID is unique.
    nonce: [u8; NONCE_LEN],
    browser: [u8; DIGEST_LEN],
    relay_state: [u8; DIGEST_LEN],
}

fn digest(text: &str) -> [u8; DIGEST_LEN] {
    let full = Sha256::digest(text.as_bytes());
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn mac(key: &[u8], body: &[u8]) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key).ok()?;
    m.update(MAC_CONTEXT);
    m.update(body);
    Some(m)
}

impl RequestRecord {
    /// A request of `account` issued now (`now_ms`), answerable for `lifetime`, started by the
    /// browser holding `browser_binding`, returning to `relay_state`.
    pub fn new(
        account: AccountId,
        now_ms: i64,
        lifetime: Duration,
        browser_binding: &str,
        relay_state: &str,
    ) -> Self {
        let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
        Self {
            account,
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(lifetime_ms),
            nonce: rand::random(),
            browser: digest(browser_binding),
            relay_state: digest(relay_state),
        }
    }

    fn body(&self) -> [u8; BODY_LEN] {
        let mut b = [0u8; BODY_LEN];
        b[0] = VERSION;
        b[1..9].copy_from_slice(&self.account.0.to_be_bytes());
        b[9..17].copy_from_slice(&self.issued_at_ms.to_be_bytes());
        b[17..25].copy_from_slice(&self.expires_at_ms.to_be_bytes());
        let mut at = 25;
        for part in [&self.nonce[..], &self.browser[..], &self.relay_state[..]] {
            b[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        b
    }

    /// The request ID: this record sealed with `key`. None only if the key cannot key an
    /// HMAC (it always can).
    pub fn seal(&self, key: &[u8]) -> Option<String> {
        let body = self.body();
        let tag = mac(key, &body)?.finalize().into_bytes();
        let mut raw = body.to_vec();
        raw.extend_from_slice(&tag[..MAC_LEN]);
        Some(format!("_{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The record sealed in `id`, if this server sealed it with `key` (whatever its age).
    pub fn open(id: &str, key: &[u8]) -> Option<Self> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(id.strip_prefix('_')?).ok()?;
        if raw.len() != BODY_LEN + MAC_LEN || raw[0] != VERSION {
            return None;
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        mac(key, body)?.verify_truncated_left(tag).ok()?;
        let int = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        let mut nonce = [0u8; NONCE_LEN];
        let mut browser = [0u8; DIGEST_LEN];
        let mut relay_state = [0u8; DIGEST_LEN];
        nonce.copy_from_slice(body.get(25..25 + NONCE_LEN)?);
        let at = 25 + NONCE_LEN;
        browser.copy_from_slice(body.get(at..at + DIGEST_LEN)?);
        relay_state.copy_from_slice(body.get(at + DIGEST_LEN..at + 2 * DIGEST_LEN)?);
        Some(Self {
            account: AccountId(int(1)?),
            issued_at_ms: int(9)?,
            expires_at_ms: int(17)?,
            nonce,
            browser,
            relay_state,
        })
    }

    /// Whether the browser that holds `browser_binding` started this request.
    pub fn started_by(&self, browser_binding: &str) -> bool {
        same(&self.browser, &digest(browser_binding))
    }

    /// Whether `relay_state` is the RelayState this request was sent with.
    pub fn sent_with(&self, relay_state: &str) -> bool {
        same(&self.relay_state, &digest(relay_state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn record() -> RequestRecord {
        RequestRecord::new(
            AccountId(42),
            1_700_000_000_000,
            Duration::from_secs(600),
            "browser-nonce",
            "/tickets/5",
        )
    }

    #[test]
    fn seals_and_opens_with_the_same_key_only() {
        let r = record();
        let id = r.seal(KEY).unwrap();
        assert!(id.starts_with('_'));
        assert_eq!(id.len(), 109);
        assert!(id[1..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let back = RequestRecord::open(&id, KEY).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.expires_at_ms, 1_700_000_600_000);
        assert!(back.started_by("browser-nonce"));
        assert!(!back.started_by("another-browser"));
        assert!(back.sent_with("/tickets/5"));
        assert!(!back.sent_with("/admin"));
        assert!(RequestRecord::open(&id, b"another key").is_none());
        // Two requests of the same browser and page still get different IDs.
        assert_ne!(record().seal(KEY).unwrap(), id);
    }

    #[test]
    fn any_change_breaks_the_seal() {
        let id = record().seal(KEY).unwrap();
        for i in 1..id.len() {
            let mut bytes = id.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(RequestRecord::open(&changed, KEY).is_none(), "position {i}");
        }
        for bad in [
            "",
            "_",
            "_abc",
            &id[1..],
            &format!("{id}A"),
            &format!("_{}", "ab".repeat(32)),
            &"_".repeat(5000),
        ] {
            assert!(RequestRecord::open(bad, KEY).is_none(), "{bad:?}");
        }
    }
}

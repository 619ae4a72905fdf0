//! DKIM keys of a sending domain: generation (RSA 2048, and Ed25519 as a second signature),
//! the DNS records that publish them, and signing a composed message once at enqueue.

use super::OutboundError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Headers covered by our signatures, when present. Everything a reader sees or threads on.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Auto-Submitted",
    "Thread-Topic",
    "Thread-Index",
];

/// Freshly generated keys, base64 encoded as stored and published.
#[derive(Debug, Clone)]
pub struct GeneratedKeys {
    /// PKCS#8 DER of the RSA 2048 key.
    pub rsa_private: String,
    /// SubjectPublicKeyInfo DER: the `p=` of the `k=rsa` record.
    pub rsa_public: String,
    /// PKCS#8 DER of the Ed25519 key and its 32 raw public bytes (`p=` of `k=ed25519`).
    pub ed25519: Option<(String, String)>,
}

fn crypto(what: &str, e: impl std::fmt::Display) -> OutboundError {
    OutboundError::Dkim(format!("{what}: {e}"))
}

/// Generates an RSA 2048 key (and an Ed25519 one when asked).
pub fn generate_keys(ed25519: bool) -> Result<GeneratedKeys, OutboundError> {
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(|e| crypto("RSA key generation", e))?;
    let pkey = openssl::pkey::PKey::from_rsa(rsa).map_err(|e| crypto("RSA key", e))?;
    let private = pkey
        .private_key_to_pkcs8()
        .map_err(|e| crypto("RSA key encoding", e))?;
    let public = pkey
        .public_key_to_der()
        .map_err(|e| crypto("RSA public key encoding", e))?;
    let ed25519 = if ed25519 {
        let pkcs8 = Ed25519Key::generate_pkcs8().map_err(|e| crypto("Ed25519 generation", e))?;
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).map_err(|e| crypto("Ed25519 key", e))?;
        Some((B64.encode(&pkcs8), B64.encode(key.public_key())))
    } else {
        None
    };
    Ok(GeneratedKeys {
        rsa_private: B64.encode(private),
        rsa_public: B64.encode(public),
        ed25519,
    })
}

/// The TXT value of a DKIM key record.
pub fn dkim_record(algorithm: &str, public_b64: &str) -> String {
    format!("v=DKIM1; k={algorithm}; p={public_b64}")
}

/// One key of a sending domain, ready to sign.
pub struct DomainSigner {
    rsa: DkimSigner<RsaKey<Sha256>, Done>,
    ed25519: Option<DkimSigner<Ed25519Key, Done>>,
}

impl DomainSigner {
    /// From the stored keys (base64 PKCS#8 DER).
    pub fn new(
        domain: &str,
        rsa_selector: &str,
        rsa_private_b64: &str,
        ed25519: Option<(&str, &str)>,
    ) -> Result<Self, OutboundError> {
        let der = B64
            .decode(rsa_private_b64.trim())
            .map_err(|e| crypto("stored RSA key", e))?;
        let rsa =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                .map_err(|e| crypto("stored RSA key", e))?;
        let ed25519 = match ed25519 {
            Some((selector, key_b64)) => {
                let der = B64
                    .decode(key_b64.trim())
                    .map_err(|e| crypto("stored Ed25519 key", e))?;
                let key = Ed25519Key::from_pkcs8_der(&der)
                    .map_err(|e| crypto("stored Ed25519 key", e))?;
                Some(
                    DkimSigner::from_key(key)
                        .domain(domain)
                        .selector(selector)
                        .headers(SIGNED_HEADERS.iter().copied()),
                )
            }
            None => None,
        };
        Ok(Self {
            rsa: DkimSigner::from_key(rsa)
                .domain(domain)
                .selector(rsa_selector)
                .headers(SIGNED_HEADERS.iter().copied()),
            ed25519,
        })
    }

    /// The message with its DKIM-Signature headers on top: RSA first (verifiers that look
    /// at one signature only look at the first), then Ed25519.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, OutboundError> {
        let rsa = self
            .rsa
            .sign(message)
            .map_err(|e| crypto("RSA signature", e))?;
        let mut out = Vec::with_capacity(message.len() + 1200);
        out.extend_from_slice(rsa.to_header().as_bytes());
        if let Some(signer) = &self.ed25519 {
            let ed = signer
                .sign(message)
                .map_err(|e| crypto("Ed25519 signature", e))?;
            out.extend_from_slice(ed.to_header().as_bytes());
        }
        out.extend_from_slice(message);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_records_carry_them() {
        let keys = generate_keys(true).unwrap();
        let (ed_private, ed_public) = keys.ed25519.clone().unwrap();
        assert_eq!(B64.decode(&ed_public).unwrap().len(), 32);
        // An RSA 2048 SubjectPublicKeyInfo is 294 bytes.
        assert_eq!(B64.decode(&keys.rsa_public).unwrap().len(), 294);
        let signer = DomainSigner::new(
            "brand.test",
            "s1",
            &keys.rsa_private,
            Some(("s1-ed", &ed_private)),
        )
        .unwrap();
        let msg = b"From: a@brand.test\r\nTo: b@c.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let signed = String::from_utf8(signer.sign(msg).unwrap()).unwrap();
        assert!(
            signed.starts_with("DKIM-Signature: v=1; a=rsa-sha256;"),
            "{signed}"
        );
        assert!(signed.contains("a=ed25519-sha256"), "{signed}");
        assert!(signed.contains("d=brand.test") && signed.contains("s=s1-ed"));
        assert!(signed.ends_with("\r\n\r\nbody\r\n"));
        assert_eq!(
            dkim_record("rsa", "AAA"),
            "v=DKIM1; k=rsa; p=AAA".to_string()
        );
    }
}

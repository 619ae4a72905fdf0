//! The AuthnRequest of an SP-initiated sign-in, sent with the HTTP-Redirect binding
//! (deflate, base64, URL query), with an ID that the response must echo (a sealed request
//! record, see `request_record.rs`, or any unguessable ID).

use super::error::SamlError;
use super::sp_metadata::SpEndpoints;
use samael::metadata::HTTP_POST_BINDING;
use samael::schema::{AuthnRequest, Issuer};

/// A sign-in request ready to send: the browser is redirected to `redirect_url`.
#[derive(Debug, Clone)]
pub struct IssuedRequest {
    pub request_id: String,
    pub redirect_url: String,
}

/// A fresh request ID: "_" (an XML ID must not start with a digit) and 256 random bits in
/// hex, so IDs can be neither guessed nor collide.
pub fn new_request_id() -> String {
    format!("_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Builds the redirect to the IdP's sign-in URL for `sp`: the request `request_id`,
/// carrying `relay_state`.
pub fn build_redirect(
    sp: &SpEndpoints,
    idp_sso_url: &str,
    request_id: &str,
    relay_state: &str,
) -> Result<IssuedRequest, SamlError> {
    let request_id = request_id.to_string();
    let request = AuthnRequest {
        id: request_id.clone(),
        version: "2.0".into(),
        issue_instant: chrono::Utc::now(),
        destination: Some(idp_sso_url.to_string()),
        assertion_consumer_service_url: Some(sp.acs_url.clone()),
        protocol_binding: Some(HTTP_POST_BINDING.to_string()),
        issuer: Some(Issuer {
            value: Some(sp.entity_id.clone()),
            ..Issuer::default()
        }),
        ..AuthnRequest::default()
    };
    let url = request
        .redirect(relay_state)
        .map_err(|e| SamlError::Request(e.to_string()))?
        .ok_or_else(|| SamlError::Request("the IdP sign-in URL is missing".into()))?;
    Ok(IssuedRequest {
        request_id,
        redirect_url: url.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccountId;
    use base64::Engine;
    use std::io::Read;

    #[test]
    fn redirect_carries_a_deflated_request_with_a_long_random_id() {
        let sp = SpEndpoints::new("http://127.0.0.1:8080", AccountId(3));
        let issued = build_redirect(
            &sp,
            "https://idp.example.com/sso?x=1",
            &new_request_id(),
            "/tickets",
        )
        .unwrap();
        assert_eq!(issued.request_id.len(), 65);
        assert!(issued.request_id.starts_with('_'));
        assert_ne!(issued.request_id, new_request_id());
        let url = url::Url::parse(&issued.redirect_url).unwrap();
        assert_eq!(url.host_str(), Some("idp.example.com"));
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["x"], "1");
        assert_eq!(q["RelayState"], "/tickets");
        let deflated = base64::engine::general_purpose::STANDARD
            .decode(&q["SAMLRequest"])
            .unwrap();
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(&deflated[..])
            .read_to_string(&mut xml)
            .unwrap();
        assert!(
            xml.contains(&format!("ID=\"{}\"", issued.request_id)),
            "{xml}"
        );
        assert!(xml.contains(&sp.acs_url), "{xml}");
        assert!(xml.contains(&sp.entity_id), "{xml}");
    }
}

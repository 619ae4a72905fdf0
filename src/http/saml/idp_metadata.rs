//! The identity provider's metadata, as an admin uploads it: parsed with samael, then held
//! to what Postern needs (an entity ID, a signing certificate, an HTTP-Redirect sign-in URL).

use super::error::SamlError;
use crate::store::SsoIdpRecord;
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};

/// Largest metadata document accepted (real IdP metadata is a few kilobytes; federation
/// aggregates are not per-account metadata).
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

/// Validates uploaded IdP metadata and extracts what sign-in needs.
pub fn parse_idp_metadata(xml: &str) -> Result<SsoIdpRecord, SamlError> {
    if xml.len() > MAX_METADATA_BYTES {
        return Err(SamlError::MetadataTooLarge(xml.len(), MAX_METADATA_BYTES));
    }
    let xml = xml.trim_start_matches('\u{feff}');
    let entity: EntityDescriptor = xml
        .parse()
        .map_err(|e| SamlError::MetadataUnreadable(format!("{e}")))?;
    let entity_id = entity
        .entity_id
        .clone()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .ok_or(SamlError::MetadataNoEntityId)?;
    let descriptors = entity
        .idp_sso_descriptors
        .as_deref()
        .filter(|d| !d.is_empty())
        .ok_or(SamlError::MetadataNotIdp)?;

    // Keys marked use="signing"; failing those, keys with no use (they serve both).
    let keys: Vec<_> = descriptors
        .iter()
        .flat_map(|d| &d.key_descriptors)
        .collect();
    let signing: Vec<_> = keys.iter().filter(|k| k.is_signing()).collect();
    let chosen: Vec<_> = if signing.is_empty() {
        keys.iter()
            .filter(|k| k.key_use.as_deref().is_none_or(str::is_empty))
            .collect()
    } else {
        signing
    };
    let mut certs = Vec::new();
    for key in chosen {
        for cert in key.key_info.x509_data.iter().flat_map(|x| &x.certificates) {
            let b64: String = cert.chars().filter(|c| !c.is_whitespace()).collect();
            if b64.is_empty() {
                continue;
            }
            let der = samael::crypto::decode_x509_cert(&b64)
                .map_err(|e| SamlError::MetadataBadCert(format!("not base64: {e}")))?;
            openssl::x509::X509::from_der(der.der_data())
                .map_err(|e| SamlError::MetadataBadCert(e.to_string()))?;
            if !certs.contains(&b64) {
                certs.push(b64);
            }
        }
    }
    if certs.is_empty() {
        return Err(SamlError::MetadataNoSigningCert);
    }

    let endpoint = |pick: fn(&samael::metadata::IdpSsoDescriptor) -> &Vec<_>| {
        descriptors
            .iter()
            .flat_map(pick)
            .find(|e: &&samael::metadata::Endpoint| e.binding == HTTP_REDIRECT_BINDING)
            .map(|e| e.location.trim().to_string())
    };
    let sso_url =
        endpoint(|d| &d.single_sign_on_services).ok_or(SamlError::MetadataNoRedirectSso)?;
    check_http_url(&sso_url)?;
    let slo_url = endpoint(|d| &d.single_logout_services).filter(|u| check_http_url(u).is_ok());

    Ok(SsoIdpRecord {
        idp_entity_id: entity_id,
        sso_url,
        slo_url,
        signing_certs: certs,
        metadata_xml: xml.to_string(),
    })
}

fn check_http_url(location: &str) -> Result<(), SamlError> {
    match url::Url::parse(location) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(SamlError::MetadataBadSsoUrl(location.to_string())),
    }
}

/// Facts about a stored certificate, for `postern sso show`.
pub fn certificate_summary(b64: &str) -> String {
    let parsed = samael::crypto::decode_x509_cert(b64)
        .ok()
        .and_then(|der| openssl::x509::X509::from_der(der.der_data()).ok());
    match parsed {
        Some(cert) => {
            let subject: Vec<String> = cert
                .subject_name()
                .entries()
                .filter_map(|e| e.data().to_string().ok())
                .collect();
            format!("{} (valid until {})", subject.join(", "), cert.not_after())
        }
        None => "unreadable certificate".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(key: &str, sso_binding: &str) -> String {
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.example.com/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    {key}
    <md:SingleSignOnService Binding="{sso_binding}" Location="https://idp.example.com/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
        )
    }

    fn cert_b64() -> String {
        let cert = rcgen::generate_simple_self_signed(vec!["idp.example.com".into()]).unwrap();
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cert.cert.der())
    }

    #[test]
    fn accepts_metadata_with_signing_cert_and_redirect_sso() {
        let key = format!(
            r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            cert_b64()
        );
        let idp = parse_idp_metadata(&metadata(&key, HTTP_REDIRECT_BINDING)).unwrap();
        assert_eq!(idp.idp_entity_id, "https://idp.example.com/metadata");
        assert_eq!(idp.sso_url, "https://idp.example.com/sso");
        assert_eq!(idp.signing_certs.len(), 1);
    }

    #[test]
    fn refuses_metadata_without_signing_cert() {
        let err = parse_idp_metadata(&metadata("", HTTP_REDIRECT_BINDING)).unwrap_err();
        assert!(matches!(err, SamlError::MetadataNoSigningCert), "{err}");
        let enc_only = format!(
            r#"<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            cert_b64()
        );
        let err = parse_idp_metadata(&metadata(&enc_only, HTTP_REDIRECT_BINDING)).unwrap_err();
        assert!(matches!(err, SamlError::MetadataNoSigningCert), "{err}");
    }

    #[test]
    fn refuses_garbage_cert_and_missing_redirect_binding() {
        let bad = r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>aGVsbG8=</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#;
        let err = parse_idp_metadata(&metadata(bad, HTTP_REDIRECT_BINDING)).unwrap_err();
        assert!(matches!(err, SamlError::MetadataBadCert(_)), "{err}");
        let key = format!(
            r#"<md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            cert_b64()
        );
        let err = parse_idp_metadata(&metadata(
            &key,
            "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST",
        ))
        .unwrap_err();
        assert!(matches!(err, SamlError::MetadataNoRedirectSso), "{err}");
        assert!(matches!(
            parse_idp_metadata("not xml").unwrap_err(),
            SamlError::MetadataUnreadable(_)
        ));
    }
}

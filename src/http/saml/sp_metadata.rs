//! Postern as a service provider: the entity ID, ACS URL and other addresses of an account,
//! derived from the public base URL, and the SP metadata document given to the IdP.

use super::error::SamlError;
use crate::domain::AccountId;
use samael::metadata::{
    EntityDescriptor, IndexedEndpoint, NameIdFormat, SpSsoDescriptor, HTTP_POST_BINDING,
};
use samael::traits::ToXml;
use serde::Serialize;

/// Where the SAML routes of every account live, below the public base URL.
pub const SAML_PATH_PREFIX: &str = "/saml";

/// The addresses of one account's service provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpEndpoints {
    pub account_id: AccountId,
    /// Also the URL of the SP metadata, as is customary.
    pub entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    pub login_url: String,
    pub logout_url: String,
}

impl SpEndpoints {
    /// `base` is the public base URL without trailing slash, e.g. https://helpdesk.example.com.
    pub fn new(base: &str, account: AccountId) -> Self {
        let base = base.trim_end_matches('/');
        let root = format!("{base}{SAML_PATH_PREFIX}/{account}");
        Self {
            account_id: account,
            entity_id: format!("{root}/metadata"),
            acs_url: format!("{root}/acs"),
            metadata_url: format!("{root}/metadata"),
            login_url: format!("{root}/login"),
            logout_url: format!("{root}/logout"),
        }
    }

    /// The SP metadata XML: unsigned AuthnRequests, signed assertions wanted, one ACS
    /// (HTTP-POST), e-mail NameIDs preferred.
    pub fn metadata_xml(&self) -> Result<String, SamlError> {
        let descriptor = SpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            authn_requests_signed: Some(false),
            want_assertions_signed: Some(true),
            name_id_formats: Some(vec![NameIdFormat::EmailAddressNameIDFormat
                .value()
                .to_string()]),
            assertion_consumer_services: vec![IndexedEndpoint {
                binding: HTTP_POST_BINDING.to_string(),
                location: self.acs_url.clone(),
                index: 0,
                is_default: Some(true),
                response_location: None,
            }],
            ..SpSsoDescriptor::default()
        };
        let entity = EntityDescriptor {
            entity_id: Some(self.entity_id.clone()),
            sp_sso_descriptors: Some(vec![descriptor]),
            ..EntityDescriptor::default()
        };
        entity
            .to_string()
            .map_err(|e| SamlError::Request(format!("SP metadata: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_metadata_name_the_account() {
        let sp = SpEndpoints::new("https://help.example.com/", AccountId(7));
        assert_eq!(sp.entity_id, "https://help.example.com/saml/7/metadata");
        assert_eq!(sp.acs_url, "https://help.example.com/saml/7/acs");
        let xml = sp.metadata_xml().unwrap();
        assert!(
            xml.contains(r#"entityID="https://help.example.com/saml/7/metadata""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"Location="https://help.example.com/saml/7/acs""#),
            "{xml}"
        );
        assert!(xml.contains(HTTP_POST_BINDING), "{xml}");
        assert!(xml.contains(r#"WantAssertionsSigned="true""#), "{xml}");
        // The document parses back as metadata.
        let back: EntityDescriptor = xml.parse().unwrap();
        assert_eq!(back.entity_id.as_deref(), Some(sp.entity_id.as_str()));
    }
}

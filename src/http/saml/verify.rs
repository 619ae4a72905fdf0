//! Strict verification of an IdP's Response, pure logic (no storage): the signature is
//! checked against the IdP's certificates with samael (SHA-256 or better only), the
//! document is reduced to what that signature covers, and every condition is checked on the
//! signed assertion alone.

use super::error::SamlError;
use super::sp_metadata::SpEndpoints;
use crate::store::SsoIdpRecord;
use chrono::{DateTime, Utc};
use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode};
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::schema::Assertion;
use samael::service_provider::{Error as SpError, ServiceProvider};

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";

/// The signed assertion, checked, and when Postern may forget its ID.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub assertion: Assertion,
    /// The latest of the assertion's NotOnOrAfter times, plus the clock skew.
    pub remember_until: DateTime<Utc>,
}

/// Checks one response. `request_id` is the ID of our pending AuthnRequest that the response
/// claims to answer (the caller looked it up); the signed assertion must name it too.
pub fn verify_response(
    xml: &str,
    idp: &SsoIdpRecord,
    sp: &SpEndpoints,
    request_id: &str,
    destination: Option<&str>,
    status_code: Option<&str>,
    clock_skew: chrono::Duration,
) -> Result<VerifiedAssertion, SamlError> {
    if let Some(code) = status_code {
        if code != SUCCESS {
            return Err(SamlError::IdpStatus(code.to_string()));
        }
    }
    // The Destination of an unsigned Response shell proves nothing, but a wrong one is a
    // response meant for someone else: refuse it either way.
    if let Some(found) = destination {
        if found != sp.acs_url {
            return Err(SamlError::Destination {
                found: found.to_string(),
                expected: sp.acs_url.clone(),
            });
        }
    }
    if idp.signing_certs.is_empty() {
        // samael would skip verification without certificates: never let it.
        return Err(SamlError::NotConfigured);
    }
    let service_provider = service_provider(idp, sp, clock_skew)?;
    let assertion = service_provider
        .parse_xml_response_with_mode(
            xml,
            Some(&[request_id]),
            ReduceMode::ValidateAndMarkNoAncestors,
        )
        .map_err(map_samael_error)?;
    check_assertion(&assertion, idp, sp, request_id, clock_skew)
}

fn service_provider(
    idp: &SsoIdpRecord,
    sp: &SpEndpoints,
    clock_skew: chrono::Duration,
) -> Result<ServiceProvider, SamlError> {
    // Built from the stored facts, not the stored XML, so only the certificates validated at
    // upload are used.
    let metadata = EntityDescriptor {
        entity_id: Some(idp.idp_entity_id.clone()),
        idp_sso_descriptors: Some(vec![samael::metadata::IdpSsoDescriptor {
            id: None,
            valid_until: None,
            cache_duration: None,
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            error_url: None,
            signature: None,
            key_descriptors: idp
                .signing_certs
                .iter()
                .map(|c| samael::metadata::KeyDescriptor {
                    key_use: Some("signing".into()),
                    key_info: samael::key_info::KeyInfo {
                        id: None,
                        x509_data: Some(samael::key_info::X509Data {
                            certificates: vec![c.clone()],
                        }),
                    },
                    encryption_methods: None,
                })
                .collect(),
            organization: None,
            contact_people: vec![],
            artifact_resolution_service: vec![],
            single_logout_services: vec![],
            manage_name_id_services: vec![],
            name_id_formats: vec![],
            want_authn_requests_signed: None,
            single_sign_on_services: vec![samael::metadata::Endpoint {
                binding: HTTP_REDIRECT_BINDING.into(),
                location: idp.sso_url.clone(),
                response_location: None,
            }],
            name_id_mapping_services: vec![],
            assertion_id_request_services: vec![],
            attribute_profiles: vec![],
            attributes: vec![],
        }]),
        ..EntityDescriptor::default()
    };
    Ok(ServiceProvider {
        entity_id: Some(sp.entity_id.clone()),
        metadata_url: Some(sp.metadata_url.clone()),
        acs_url: Some(sp.acs_url.clone()),
        slo_url: None,
        idp_metadata: metadata,
        allow_idp_initiated: false,
        max_clock_skew: clock_skew,
        // An assertion issued longer ago than this is stale even if it says otherwise.
        max_issue_delay: chrono::Duration::seconds(90) + clock_skew,
        allowed_signature_algorithms: Some(vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ]),
        ..ServiceProvider::default()
    })
}

fn map_samael_error(e: SpError) -> SamlError {
    match e {
        SpError::FailedToValidateSignature => SamlError::BadSignature,
        SpError::ResponseBadStatusCode { code } => SamlError::IdpStatus(code),
        SpError::DestinationValidationError {
            response_destination,
            sp_acs_url,
        } => SamlError::Destination {
            found: response_destination.unwrap_or_default(),
            expected: sp_acs_url.unwrap_or_default(),
        },
        SpError::AssertionRecipientMismatch {
            assertion_recipient,
            sp_acs_url,
        } => SamlError::Rejected(format!(
            "the assertion's Recipient {:?} is not this account's ACS URL {:?}",
            assertion_recipient.unwrap_or_default(),
            sp_acs_url.unwrap_or_default()
        )),
        SpError::AssertionConditionAudienceRestrictionFailed { requirement } => {
            SamlError::Rejected(format!(
                "the assertion's Audience does not name this account's entity ID {requirement:?}; configure the IdP application with Postern's entity ID"
            ))
        }
        SpError::AssertionInResponseToInvalid { .. }
        | SpError::ResponseInResponseToInvalid { .. } => SamlError::Rejected(
            "the signed assertion answers another sign-in request than the one claimed".into(),
        ),
        SpError::AssertionExpired { time }
        | SpError::ResponseExpired { time }
        | SpError::AssertionConditionExpired { time }
        | SpError::AssertionSubjectConfirmationExpired { time } => SamlError::Rejected(format!(
            "the assertion has expired (valid until {time}); start the sign-in again, and check the clocks of the IdP and of this server"
        )),
        SpError::AssertionConditionExpiredBefore { time }
        | SpError::AssertionSubjectConfirmationExpiredBefore { time } => {
            SamlError::Rejected(format!(
                "the assertion is not valid yet (from {time}); check the clocks of the IdP and of this server"
            ))
        }
        SpError::AssertionIssuerMismatch { issuer, entity_id }
        | SpError::ResponseIssuerMismatch { issuer, entity_id } => SamlError::Rejected(format!(
            "the Issuer {:?} is not the configured IdP {:?}",
            issuer.unwrap_or_default(),
            entity_id.unwrap_or_default()
        )),
        SpError::AssertionBearerSubjectConfirmationMissing
        | SpError::AssertionSubjectConfirmationMissing => SamlError::Rejected(
            "the assertion has no bearer SubjectConfirmation with NotOnOrAfter and Recipient"
                .into(),
        ),
        SpError::EncryptedAssertionsNotYetSupported => SamlError::EncryptedAssertion,
        other => SamlError::Rejected(format!("the response could not be verified: {other}")),
    }
}

/// Checks samael leaves optional, on the assertion the signature covers.
fn check_assertion(
    assertion: &Assertion,
    idp: &SsoIdpRecord,
    sp: &SpEndpoints,
    request_id: &str,
    clock_skew: chrono::Duration,
) -> Result<VerifiedAssertion, SamlError> {
    if assertion.issuer.value.as_deref() != Some(idp.idp_entity_id.as_str()) {
        return Err(SamlError::Rejected(format!(
            "the assertion's Issuer {:?} is not the configured IdP {:?}",
            assertion.issuer.value.clone().unwrap_or_default(),
            idp.idp_entity_id
        )));
    }
    let conditions = assertion.conditions.as_ref().ok_or(SamlError::NoExpiry)?;
    // Every AudienceRestriction must name us (they are ANDed), and there must be one.
    let restrictions = conditions.audience_restrictions.as_deref().unwrap_or(&[]);
    if restrictions.is_empty()
        || !restrictions
            .iter()
            .all(|r| r.audience.iter().any(|a| a == &sp.entity_id))
    {
        return Err(SamlError::NoAudience(sp.entity_id.clone()));
    }
    let not_on_or_after = conditions.not_on_or_after.ok_or(SamlError::NoExpiry)?;
    let now = Utc::now();
    if not_on_or_after + clock_skew <= now {
        return Err(SamlError::Rejected(format!(
            "the assertion expired at {not_on_or_after}; start the sign-in again"
        )));
    }
    // The bearer confirmation that samael accepted: for us, Recipient and InResponseTo.
    let confirmations: Vec<_> = assertion
        .subject
        .iter()
        .flat_map(|s| s.subject_confirmations.iter().flatten())
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .filter(|d| {
            d.recipient.as_deref() == Some(sp.acs_url.as_str())
                && d.in_response_to.as_deref() == Some(request_id)
                && d.not_on_or_after.is_some_and(|t| t + clock_skew > now)
        })
        .collect();
    let confirmation_expiry = confirmations
        .iter()
        .filter_map(|d| d.not_on_or_after)
        .max()
        .ok_or_else(|| {
            SamlError::Rejected(
                "no SubjectConfirmationData names this ACS URL and this sign-in request".into(),
            )
        })?;
    let remember_until = not_on_or_after.max(confirmation_expiry) + clock_skew;
    Ok(VerifiedAssertion {
        assertion: assertion.clone(),
        remember_until,
    })
}

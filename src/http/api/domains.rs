//! Sending domains: DKIM keys and the DNS records to publish (admins add and check).

use super::replies::outbound_error;
use crate::domain::Principal;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::{require_admin, ApiState};
use crate::outbound::{DomainReport, RecordCheck};
use crate::store::SendingDomainView;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Serialize, utoipa::ToSchema)]
pub struct DomainWithRecords {
    #[serde(flatten)]
    pub domain: SendingDomainView,
    /// The DNS records to publish.
    pub records: Vec<RecordCheck>,
}

/// The account's sending domains, with the records to publish.
#[utoipa::path(get, path = "/domains", tag = "outbound",
    responses(
        (status = 200, description = "Sending domains", body = Vec<DomainWithRecords>),
        (status = 401, description = "Not authenticated", body = ErrorBody),
    ))]
pub async fn list_domains(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<DomainWithRecords>>, ApiError> {
    let list = state.store.sending_domains(principal.scope()).await?;
    Ok(Json(
        list.into_iter()
            .map(|d| DomainWithRecords {
                records: state.outbound.records(&d),
                domain: d,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDomainBody {
    /// The brand's domain, e.g. brand.com.
    domain: String,
    /// DKIM selector (default: outbound.dkim_selector).
    selector: Option<String>,
}

/// Adds a sending domain: generates its DKIM keys and answers with the records to publish.
#[utoipa::path(post, path = "/domains", tag = "outbound",
    request_body = NewDomainBody,
    responses(
        (status = 201, description = "The domain and the records to publish", body = DomainWithRecords),
        (status = 400, description = "Not a domain name or selector", body = ErrorBody),
        (status = 403, description = "Agents cannot add domains", body = ErrorBody),
        (status = 409, description = "Already a sending domain of the account", body = ErrorBody),
    ))]
pub async fn add_domain(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewDomainBody>,
) -> Result<(StatusCode, Json<DomainWithRecords>), ApiError> {
    require_admin(&principal)?;
    let (domain, records) = state
        .outbound
        .add_domain(principal.account_id, &body.domain, body.selector.as_deref())
        .await
        .map_err(|e| match e {
            crate::outbound::OutboundError::DomainNotReady(m) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", m)
            }
            other => outbound_error(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(DomainWithRecords { domain, records }),
    ))
}

/// Looks the domain's records up through the configured resolver: each ok, missing or
/// wrong, with the value found. The domain is verified when its DKIM record matches.
#[utoipa::path(post, path = "/domains/{id}/check", tag = "outbound",
    params(("id" = i64, Path, description = "Sending domain id")),
    responses(
        (status = 200, description = "What was found", body = DomainReport),
        (status = 403, description = "Agents cannot check domains", body = ErrorBody),
        (status = 404, description = "No such domain in this account", body = ErrorBody),
    ))]
pub async fn check_domain(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DomainReport>, ApiError> {
    require_admin(&principal)?;
    let report = state
        .outbound
        .check_domain(principal.account_id, id)
        .await
        .map_err(outbound_error)?;
    Ok(Json(report))
}

//! Rules, macros, the rule log and the simulation (docs/RULES.md). Everyone in the account
//! reads them, previews macros and simulates; admins write rules and macros.

use crate::domain::{AccountId, Principal};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::pagination::{cut_page, page_limit};
use crate::http::principal::require_admin;
use crate::http::ApiState;
use crate::rules::{self, RulesError};
use crate::store::{MacroRecord, RuleRecord, RuleRunView, RunFilter};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Store(s) => s.into(),
            RulesError::Invalid(errors) => ApiError::invalid(format!(
                "the rule is not valid: {}",
                errors
                    .0
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            RulesError::Refused(m) => ApiError::invalid(m),
        }
    }
}

/// The account's rules in the order they run.
#[utoipa::path(get, path = "/rules", tag = "rules",
    responses((status = 200, description = "Rules", body = Vec<RuleRecord>)))]
pub async fn list_rules(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<RuleRecord>>, ApiError> {
    Ok(Json(state.store.rules(principal.account_id).await?))
}

/// Adds a rule (admins). The body is the rule document of docs/RULES.md; errors name the
/// offending field.
#[utoipa::path(post, path = "/rules", tag = "rules", request_body = Object,
    responses(
        (status = 201, description = "The rule as stored", body = RuleRecord),
        (status = 403, description = "Agents cannot write rules", body = ErrorBody),
        (status = 409, description = "A rule of that name exists", body = ErrorBody),
        (status = 422, description = "The rule is not valid (each error with its field)", body = ErrorBody),
    ))]
pub async fn create_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<RuleRecord>), ApiError> {
    require_admin(&principal)?;
    let rule = rules::parse_rule(&body).map_err(RulesError::from)?;
    let r = rules::save_parsed(&state.store, principal.account_id, &rule, None).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// One rule.
#[utoipa::path(get, path = "/rules/{id}", tag = "rules",
    params(("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = RuleRecord),
        (status = 404, description = "No such rule in this account", body = ErrorBody),
    ))]
pub async fn get_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RuleRecord>, ApiError> {
    Ok(Json(state.store.rule(id, principal.account_id).await?))
}

/// Replaces a rule's definition (admins); its log stays.
#[utoipa::path(put, path = "/rules/{id}", tag = "rules", request_body = Object,
    params(("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule as stored", body = RuleRecord),
        (status = 403, description = "Agents cannot write rules", body = ErrorBody),
        (status = 404, description = "No such rule in this account", body = ErrorBody),
        (status = 422, description = "The rule is not valid", body = ErrorBody),
    ))]
pub async fn replace_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<RuleRecord>, ApiError> {
    require_admin(&principal)?;
    state.store.rule(id, principal.account_id).await?;
    let rule = rules::parse_rule(&body).map_err(RulesError::from)?;
    Ok(Json(
        rules::save_parsed(&state.store, principal.account_id, &rule, Some(id)).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatch {
    /// Switch the rule on or off.
    enabled: bool,
}

/// Enables or disables a rule (admins).
#[utoipa::path(patch, path = "/rules/{id}", tag = "rules", request_body = RulePatch,
    params(("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = RuleRecord),
        (status = 403, description = "Agents cannot write rules", body = ErrorBody),
        (status = 404, description = "No such rule in this account", body = ErrorBody),
    ))]
pub async fn patch_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<RulePatch>,
) -> Result<Json<RuleRecord>, ApiError> {
    require_admin(&principal)?;
    Ok(Json(
        state
            .store
            .set_rule_enabled(id, principal.account_id, body.enabled)
            .await?,
    ))
}

/// Deletes a rule (admins); its log entries stay, with its name.
#[utoipa::path(delete, path = "/rules/{id}", tag = "rules",
    params(("id" = i64, Path, description = "Rule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Agents cannot write rules", body = ErrorBody),
        (status = 404, description = "No such rule in this account", body = ErrorBody),
    ))]
pub async fn delete_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    state.store.delete_rule(id, principal.account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    /// A rule document to simulate (not stored)...
    #[schema(value_type = Option<Object>)]
    rule: Option<serde_json::Value>,
    /// ...or a stored rule, enabled or not.
    rule_id: Option<i64>,
    /// How far back: "90d" (default), "12w", "48h".
    since: Option<String>,
}

/// What a rule would have done on past tickets: read-only (docs/RULES.md, Simulation).
#[utoipa::path(post, path = "/rules/simulate", tag = "rules", request_body = SimulationRequest,
    responses(
        (status = 200, description = "The report: matches with conditions and actions, per-day counts, guards", body = Object),
        (status = 404, description = "No such rule in this account", body = ErrorBody),
        (status = 422, description = "Bad rule or since", body = ErrorBody),
    ))]
pub async fn simulate_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<SimulationRequest>,
) -> Result<Json<rules::simulate::SimulationReport>, ApiError> {
    let account = principal.account_id;
    let (rule, id) = match (body.rule, body.rule_id) {
        (Some(doc), None) => (rules::parse_rule(&doc).map_err(RulesError::from)?, None),
        (None, Some(id)) => {
            let r = state.store.rule(id, account).await?;
            (
                rules::parse_rule(&r.definition).map_err(RulesError::from)?,
                Some(id),
            )
        }
        _ => {
            return Err(ApiError::invalid(
                "give either rule (a rule document) or rule_id",
            ))
        }
    };
    let minutes = rules::schema::parse_minutes(body.since.as_deref().unwrap_or("90d"))
        .map_err(|e| ApiError::invalid(format!("since: {e}")))?;
    let now = crate::store::now_ms();
    let report = rules::simulate::simulate(
        &state.store,
        account,
        &rule,
        id,
        now - minutes * 60_000,
        now,
        rules::RulesConfig::default().reply_window_ms,
    )
    .await?;
    Ok(Json(report))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunLogQuery {
    /// Only this rule's runs.
    rule: Option<i64>,
    /// Only runs on this ticket.
    ticket: Option<i64>,
    /// Only runs whose conditions matched.
    matched: Option<bool>,
    /// Runs older than this run id (next_before of the previous page).
    before: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunLogPage {
    pub items: Vec<RuleRunView>,
    /// Pass as `before` for older runs; null on the last page.
    pub next_before: Option<i64>,
}

/// The rule log, newest first.
#[utoipa::path(get, path = "/rules/log", tag = "rules", params(RunLogQuery),
    responses((status = 200, description = "Rule runs", body = RunLogPage)))]
pub async fn rule_log(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<RunLogQuery>,
) -> Result<Json<RunLogPage>, ApiError> {
    let limit = page_limit(q.limit)?;
    let filter = RunFilter {
        rule_id: q.rule,
        ticket_id: q.ticket,
        matched_only: q.matched.unwrap_or(false),
        before: q.before,
    };
    let mut items = state
        .store
        .rule_runs(principal.account_id, &filter, limit + 1)
        .await?;
    let next_before = cut_page(&mut items, limit).map(|r| r.id);
    Ok(Json(RunLogPage { items, next_before }))
}

/// The account's macros.
#[utoipa::path(get, path = "/macros", tag = "rules",
    responses((status = 200, description = "Macros", body = Vec<MacroRecord>)))]
pub async fn list_macros(
    State(state): State<ApiState>,
    principal: Principal,
) -> Result<Json<Vec<MacroRecord>>, ApiError> {
    Ok(Json(state.store.macros(principal.account_id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMacro {
    name: String,
    /// Subject template; default "Re: " and the ticket's subject.
    subject: Option<String>,
    /// Body template (minijinja).
    body: String,
    /// What missing variables render as; default nothing.
    fallback: Option<String>,
}

/// Adds a macro (admins); a template that does not compile is refused with its line and
/// column.
#[utoipa::path(post, path = "/macros", tag = "rules", request_body = NewMacro,
    responses(
        (status = 201, description = "The macro", body = MacroRecord),
        (status = 403, description = "Agents cannot write macros", body = ErrorBody),
        (status = 409, description = "A macro of that name exists", body = ErrorBody),
        (status = 422, description = "The template does not compile", body = ErrorBody),
    ))]
pub async fn create_macro(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewMacro>,
) -> Result<(StatusCode, Json<MacroRecord>), ApiError> {
    require_admin(&principal)?;
    let m = rules::save_macro(
        &state.store,
        principal.account_id,
        &body.name,
        body.subject.as_deref(),
        &body.body,
        body.fallback.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// One macro.
#[utoipa::path(get, path = "/macros/{id}", tag = "rules",
    params(("id" = i64, Path, description = "Macro id")),
    responses(
        (status = 200, description = "The macro", body = MacroRecord),
        (status = 404, description = "No such macro in this account", body = ErrorBody),
    ))]
pub async fn get_macro(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MacroRecord>, ApiError> {
    Ok(Json(
        state.store.macro_record(id, principal.account_id).await?,
    ))
}

/// Deletes a macro (admins) unless a rule replies with it.
#[utoipa::path(delete, path = "/macros/{id}", tag = "rules",
    params(("id" = i64, Path, description = "Macro id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Agents cannot write macros", body = ErrorBody),
        (status = 404, description = "No such macro in this account", body = ErrorBody),
        (status = 409, description = "A rule replies with it", body = ErrorBody),
    ))]
pub async fn delete_macro(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    state.store.delete_macro(id, principal.account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The ticket to render the macro on.
    ticket: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MacroPreview {
    pub subject: String,
    pub body: String,
}

/// Renders a macro on a ticket without sending anything.
#[utoipa::path(get, path = "/macros/{id}/preview", tag = "rules", params(("id" = i64, Path, description = "Macro id"), PreviewQuery),
    responses(
        (status = 200, description = "The rendered subject and body", body = MacroPreview),
        (status = 404, description = "No such macro or ticket in this account", body = ErrorBody),
        (status = 422, description = "ticket is missing, or the macro does not render", body = ErrorBody),
    ))]
pub async fn preview_macro(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PreviewQuery>,
) -> Result<Json<MacroPreview>, ApiError> {
    let account: AccountId = principal.account_id;
    // Another account's macro is "not found" whatever the query says.
    state.store.macro_record(id, account).await?;
    let ticket = q
        .ticket
        .ok_or_else(|| ApiError::invalid("give the ticket to render on: ?ticket=ID"))?;
    let r = rules::preview_macro(&state.store, account, id, ticket).await?;
    Ok(Json(MacroPreview {
        subject: r.subject,
        body: r.body,
    }))
}

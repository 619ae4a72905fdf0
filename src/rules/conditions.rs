//! Evaluating a rule's conditions on [`Facts`], with a trace of every test: live runs log
//! it, the simulation reports it. Every test is evaluated (no short cut), so the trace says
//! which conditions matched and which did not.

use super::facts::Facts;
use super::schema::{Condition, Field, Operand, Operator, Test};
use super::text::fold;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TestResult {
    /// Where the test is in the rule: conditions.all[2]
    pub path: String,
    pub field: String,
    pub operator: Operator,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub value: serde_json::Value,
    /// What the field held (shortened), for the log.
    pub actual: serde_json::Value,
    pub matched: bool,
}

/// Evaluates `c`; returns whether it holds and the result of each test.
pub fn evaluate(c: &Condition, facts: &Facts) -> (bool, Vec<TestResult>) {
    let mut trace = Vec::new();
    let ok = eval(c, facts, "conditions", &mut trace);
    (ok, trace)
}

/// Whether `c` holds, without a trace (short-circuits): the simulation's first look.
pub fn holds(c: &Condition, f: &Facts) -> bool {
    match c {
        Condition::All(list) => list.iter().all(|c| holds(c, f)),
        Condition::Any(list) => list.is_empty() || list.iter().any(|c| holds(c, f)),
        Condition::Not(inner) => !holds(inner, f),
        Condition::Test(t) => test(t, f).0,
    }
}

fn eval(c: &Condition, f: &Facts, path: &str, trace: &mut Vec<TestResult>) -> bool {
    match c {
        Condition::All(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| eval(c, f, &format!("{path}.all[{i}]"), trace))
            // Every test runs (collect first) so that the trace is complete.
            .collect::<Vec<bool>>()
            .into_iter()
            .all(|b| b),
        Condition::Any(list) => {
            list.is_empty()
                || list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| eval(c, f, &format!("{path}.any[{i}]"), trace))
                    .collect::<Vec<bool>>()
                    .into_iter()
                    .any(|b| b)
        }
        Condition::Not(inner) => !eval(inner, f, &format!("{path}.not"), trace),
        Condition::Test(t) => {
            let (matched, actual) = test(t, f);
            trace.push(TestResult {
                path: path.to_string(),
                field: t.field.name(),
                operator: t.operator,
                value: serde_json::to_value(&t.value).unwrap_or_default(),
                actual,
                matched,
            });
            matched
        }
    }
}

/// A field's value for one evaluation.
enum Actual {
    Text(Option<String>),
    List(Vec<String>),
    Bool(bool),
    Minutes(Option<i64>),
    Json(Option<serde_json::Value>),
}

fn short(s: &str) -> serde_json::Value {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.into()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut}...").into()
    }
}

/// Language of a text, as ISO 639-3 code (fra, eng...), when reliably detected.
pub fn detect_language(text: &str) -> Option<&'static str> {
    // A few kilobytes tell the language; the rest only costs time.
    let sample: String = text.chars().take(4_000).collect();
    let info = whatlang::detect(&sample)?;
    info.is_reliable().then(|| info.lang().code())
}

/// Two-letter codes and English names accepted for the common languages.
fn language_aliases(code3: &str) -> Vec<String> {
    let two = match code3 {
        "eng" => "en",
        "fra" => "fr",
        "deu" => "de",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "nld" => "nl",
        "pol" => "pl",
        "swe" => "sv",
        "dan" => "da",
        "nob" => "no",
        "fin" => "fi",
        "rus" => "ru",
        "jpn" => "ja",
        "cmn" => "zh",
        "ara" => "ar",
        "tur" => "tr",
        _ => "",
    };
    let mut out = vec![code3.to_string()];
    if !two.is_empty() {
        out.push(two.to_string());
    }
    if let Some(l) = whatlang::Lang::from_code(code3) {
        out.push(fold(l.eng_name()));
    }
    out
}

fn minutes_since(now: i64, at: Option<i64>) -> Option<i64> {
    at.map(|t| (now - t).max(0) / 60_000)
}

fn actual(field: &Field, f: &Facts) -> Actual {
    let m = f.message.as_ref();
    let t = &f.ticket;
    match field {
        Field::Subject => Actual::Text(Some(m.map_or(t.subject.clone(), |m| m.subject.clone()))),
        Field::Body => Actual::Text(m.map(|m| m.body.clone())),
        Field::BodyFull => Actual::Text(m.map(|m| m.body_full.clone())),
        Field::FromAddress => Actual::Text(
            m.map(|m| m.from_address.clone())
                .or_else(|| t.customer.as_ref().map(|c| c.email.clone())),
        ),
        Field::FromDomain => Actual::Text(m.map(|m| m.from_domain().to_string()).or_else(|| {
            t.customer
                .as_ref()
                .map(|c| c.email.rsplit_once('@').map_or("", |(_, d)| d).to_string())
        })),
        Field::ToAddress => Actual::List(m.map(|m| m.to.clone()).unwrap_or_default()),
        Field::HasAttachment => Actual::Bool(m.is_some_and(|m| m.has_attachment)),
        Field::Language => Actual::Text(
            m.and_then(|m| {
                detect_language(if m.body.is_empty() {
                    &m.body_full
                } else {
                    &m.body
                })
            })
            .map(str::to_string),
        ),
        Field::Status => Actual::Text(Some(t.status.clone())),
        Field::Priority => Actual::Text(Some(t.priority.clone())),
        Field::Tags => Actual::List(t.tags.clone()),
        Field::Assignee => Actual::Text(t.assignee_email.clone()),
        Field::Team => Actual::Text(t.team.clone()),
        Field::CustomerEmail => Actual::Text(t.customer.as_ref().map(|c| c.email.clone())),
        Field::CustomerName => Actual::Text(t.customer.as_ref().and_then(|c| c.name.clone())),
        Field::CustomerAttribute(key) => Actual::Json(
            t.customer
                .as_ref()
                .and_then(|c| c.attributes.get(key))
                .filter(|v| !v.is_null())
                .cloned(),
        ),
        Field::LastMessageFrom => Actual::Text(t.last_message_from().map(str::to_string)),
        Field::TimeSinceLastCustomerMessage => {
            Actual::Minutes(minutes_since(f.now, t.last_customer_message_at))
        }
        // Never answered: the whole life of the ticket counts as "no agent reply".
        Field::TimeSinceLastAgentReply => Actual::Minutes(minutes_since(
            f.now,
            Some(t.last_agent_reply_at.unwrap_or(t.created_at)),
        )),
        Field::TimeSinceCreated => Actual::Minutes(minutes_since(f.now, Some(t.created_at))),
        Field::WithinBusinessHours => {
            // No schedule set: every hour is a business hour.
            Actual::Bool(f.business_hours.as_ref().is_none_or(|h| h.contains(f.now)))
        }
        Field::SpoofSuspected => Actual::Bool(
            m.is_some_and(|m| m.spoof_suspected) || t.flags.iter().any(|x| x == "spoof_suspected"),
        ),
        Field::Dmarc => Actual::Text(Some(
            m.and_then(|m| m.dmarc.clone())
                .unwrap_or_else(|| "unknown".into()),
        )),
        Field::AutoGenerated => Actual::Bool(m.is_some_and(|m| m.auto_generated() || m.bounce())),
    }
}

fn text_test(op: Operator, value: &Operand, text: &str) -> bool {
    let folded = fold(text);
    match (op, value) {
        (Operator::Contains, Operand::Text(_, v)) => folded.contains(v.as_str()),
        (Operator::Equals, Operand::Text(_, v)) => folded.trim() == v.trim(),
        (Operator::StartsWith, Operand::Text(_, v)) => folded.trim_start().starts_with(v.as_str()),
        (Operator::EndsWith, Operand::Text(_, v)) => folded.trim_end().ends_with(v.as_str()),
        (Operator::In, Operand::List(_, list)) => list.iter().any(|v| folded.trim() == v.trim()),
        (Operator::Matches, Operand::Regex(_, re)) => re.is_match(&folded),
        (Operator::IsEmpty, _) => folded.trim().is_empty(),
        _ => false,
    }
}

fn compare(op: Operator, actual: f64, wanted: f64) -> bool {
    match op {
        Operator::GreaterThan => actual > wanted,
        Operator::LessThan => actual < wanted,
        Operator::AtLeast => actual >= wanted,
        Operator::AtMost => actual <= wanted,
        Operator::Equals => (actual - wanted).abs() < f64::EPSILON,
        _ => false,
    }
}

fn test(t: &Test, f: &Facts) -> (bool, serde_json::Value) {
    let op = t.operator;
    match actual(&t.field, f) {
        Actual::Text(text) => {
            let s = text.unwrap_or_default();
            let ok = if t.field == Field::Language && !s.is_empty() {
                // A language matches by its code, two-letter code or English name.
                let names = language_aliases(&s);
                match (&op, &t.value) {
                    (Operator::Equals, Operand::Text(_, v)) => names.iter().any(|n| n == v),
                    (Operator::In, Operand::List(_, l)) => {
                        l.iter().any(|v| names.iter().any(|n| n == v))
                    }
                    _ => text_test(op, &t.value, &s),
                }
            } else {
                text_test(op, &t.value, &s)
            };
            (ok, short(&s))
        }
        Actual::List(items) => {
            let ok = match op {
                Operator::IsEmpty => items.is_empty(),
                // "tags contains urgent": the ticket has the tag (the whole tag).
                Operator::Contains => items
                    .iter()
                    .any(|i| text_test(Operator::Equals, &t.value, i)),
                _ => items.iter().any(|i| text_test(op, &t.value, i)),
            };
            (ok, serde_json::json!(items))
        }
        Actual::Bool(b) => {
            let ok = matches!(t.value, Operand::Bool(v) if v == b);
            (ok, b.into())
        }
        Actual::Minutes(m) => {
            let ok = match (m, &t.value) {
                (Some(m), Operand::Duration(d, _)) => compare(op, m as f64, *d as f64),
                _ => false,
            };
            (
                ok,
                m.map_or(serde_json::Value::Null, |m| format!("{m}m").into()),
            )
        }
        Actual::Json(v) => {
            let shown = v.clone().unwrap_or(serde_json::Value::Null);
            let ok = match (&v, &t.value) {
                (None, _) => op == Operator::IsEmpty,
                (Some(v), Operand::Bool(b)) => {
                    v.as_bool() == Some(*b) || v.as_str().is_some_and(|s| fold(s) == b.to_string())
                }
                (Some(v), Operand::Number(n)) => {
                    let x = v
                        .as_f64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                    x.is_some_and(|x| compare(op, x, *n))
                }
                (Some(v), value) => {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    text_test(op, value, &text)
                }
            };
            (ok, shown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::facts::{CustomerFacts, MessageFacts, TicketFacts};
    use crate::rules::schema::parse_rule;
    use serde_json::json;

    fn facts() -> Facts {
        let hour = 3_600_000;
        Facts {
            now: 100 * hour,
            ticket: TicketFacts {
                id: 1,
                subject: "Commande".into(),
                status: "open".into(),
                priority: "normal".into(),
                tags: vec!["VIP".into()],
                created_at: 50 * hour,
                last_customer_message_at: Some(70 * hour),
                last_agent_reply_at: Some(60 * hour),
                customer: Some(CustomerFacts {
                    email: "ana@client.test".into(),
                    name: Some("Ana Lima".into()),
                    attributes: json!({"vip": true, "orders": 7, "plan": "Gold"}),
                }),
                ..Default::default()
            },
            message: Some(MessageFacts {
                id: 9,
                subject: "Demande de REMBOURSEMENT".into(),
                body: "Je voudrais être rembour\u{AD}sé, merci. Ma commande n'est jamais arrivée et j'attends toujours.".into(),
                body_full: "Je voudrais être remboursé.\n> old".into(),
                from_address: "ana@client.test".into(),
                classification: "normal".into(),
                source: "smtp".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn holds(conditions: serde_json::Value) -> (bool, Vec<TestResult>) {
        let rule = parse_rule(&json!({
            "name": "t", "trigger": "message_received", "conditions": conditions,
            "actions": [{"type": "unassign"}]
        }))
        .unwrap();
        evaluate(&rule.conditions, &facts())
    }

    #[test]
    fn text_operators_ignore_case_and_accents() {
        let c = |field: &str, op: &str, v: serde_json::Value| {
            holds(json!({"field": field, "operator": op, "value": v})).0
        };
        assert!(c("subject", "contains", json!("remboursement")));
        assert!(c("subject", "contains", json!("rembourSÉment")));
        assert!(c("body", "contains", json!("rembourse")));
        assert!(c("subject", "starts_with", json!("demande")));
        assert!(c("subject", "ends_with", json!("Remboursement")));
        assert!(c("subject", "matches", json!("^demande de r[eé]mb")));
        assert!(c("from_domain", "equals", json!("CLIENT.test")));
        assert!(c(
            "from_address",
            "in",
            json!(["bob@x.test", "Ana@Client.test"])
        ));
        assert!(!c("subject", "equals", json!("remboursement")));
        assert!(c("tags", "contains", json!("vip")));
        assert!(!c("tags", "contains", json!("vi")));
        assert!(c("language", "equals", json!("fr")));
        assert!(c("language", "in", json!(["french", "de"])));
    }

    #[test]
    fn attributes_times_and_groups() {
        let (ok, trace) = holds(json!({"all": [
            {"field": "customer.vip", "operator": "is", "value": true},
            {"field": "customer.orders", "operator": "greater_than", "value": 5},
            {"field": "customer.plan", "operator": "equals", "value": "gold"},
            {"field": "customer.missing", "operator": "is_empty"},
            {"field": "time_since_last_customer_message", "operator": "at_least", "value": "30h"},
            {"field": "time_since_last_agent_reply", "operator": "greater_than", "value": "1d"},
            {"field": "last_message_from", "operator": "equals", "value": "customer"},
            {"not": {"field": "tags", "operator": "contains", "value": "do-not-follow-up"}},
            {"any": [
                {"field": "status", "operator": "equals", "value": "closed"},
                {"field": "status", "operator": "in", "value": ["open", "pending"]}
            ]}
        ]}));
        assert!(ok, "{trace:#?}");
        assert_eq!(trace.len(), 10);
        assert!(!trace[8].matched && trace[9].matched);
        assert_eq!(trace[4].actual, json!("1800m"));
        let (ok, trace) = holds(
            json!({"field": "time_since_last_customer_message", "operator": "greater_than", "value": "31h"}),
        );
        assert!(!ok);
        assert_eq!(trace[0].path, "conditions");
    }
}

//! What users submit to the rules engine (src/rules): rule definitions in JSON or TOML
//! (schema.rs), macro templates (macros.rs) and business hours (business_hours.rs).
//!
//! Input: the first byte picks what the rest is: 0 a JSON rule, 1 a TOML rule, 2 a macro
//! template, 3 business hours (JSON). A rule that is accepted must come back the same
//! from its stored form (live.rs re-reads every stored definition) and is then planned
//! on a ticket, rendering its notes and replies; an accepted template is rendered on the
//! same ticket. Rendering is bounded (fuel, output size): a template that takes long or
//! lots of memory shows as a libFuzzer timeout or out-of-memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::rules::business_hours::BusinessHours;
use postern::rules::engine::{plan, PlanContext};
use postern::rules::facts::{AccountFacts, CustomerFacts, Facts, MessageFacts, TicketFacts};
use postern::rules::macros::{self, Macro, Missing, MAX_OUTPUT_BYTES};
use postern::rules::{parse_rule, parse_rule_text, Format};
use serde_json::json;
use std::collections::HashMap;

const NOW: i64 = 1_796_601_600_000; // 2026-12-07, a Monday

fn facts() -> Facts {
    Facts {
        now: NOW,
        account: AccountFacts {
            id: 1,
            name: "Acme".into(),
            from_address: "support@acme.test".into(),
        },
        ticket: TicketFacts {
            id: 7,
            subject: "Remboursement commande 1234".into(),
            status: "open".into(),
            priority: "normal".into(),
            tags: vec!["vip".into()],
            assignee_email: Some("ana@acme.test".into()),
            assignee_name: Some("Ana Lima".into()),
            team: None,
            flags: vec![],
            created_at: NOW - 86_400_000,
            last_customer_message_at: Some(NOW - 3_600_000),
            last_agent_reply_at: None,
            customer: Some(CustomerFacts {
                email: "jo@example.test".into(),
                name: Some("Jo Martin".into()),
                attributes: json!({"vip": true, "orders": 3, "last_order": "A-1", "nested": {"a": [1, 2]}}),
            }),
        },
        message: Some(MessageFacts {
            id: 9,
            subject: "Re: Remboursement commande 1234".into(),
            body: "Bonjour, où en est mon remboursement ?".into(),
            body_full: "Bonjour, où en est mon remboursement ?\n> ancien message".into(),
            from_address: "jo@example.test".into(),
            to: vec!["support@acme.test".into()],
            has_attachment: false,
            classification: "normal".into(),
            source: "smtp".into(),
            spoof_suspected: false,
            dmarc: Some("pass".into()),
        }),
        business_hours: BusinessHours::parse(&json!({"timezone": "Europe/Paris", "week": {"mon": ["09:00-12:30", "13:30-18:00"]}, "holidays": ["2026-12-25"]})).ok(),
    }
}

fn plan_on_ticket(rule: &postern::rules::Rule, template: Option<&str>) {
    let mut known = HashMap::new();
    known.insert(
        "m".to_string(),
        Macro {
            id: 1,
            name: "m".into(),
            subject: None,
            body: template
                .unwrap_or("Bonjour {{ customer.first_name }},")
                .to_string(),
            missing: Missing::Fallback("client".into()),
        },
    );
    let mut agents = HashMap::new();
    agents.insert(
        "ana@acme.test".to_string(),
        (3, Some("Ana Lima".to_string())),
    );
    let ctx = PlanContext {
        macros: &known,
        agents: &agents,
        last_auto_reply_at: None,
        reply_window_ms: 86_400_000,
        render: true,
    };
    let _ = plan(rule, &mut facts(), &ctx);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    postern_fuzz::run(move || match mode % 4 {
        0 | 1 => {
            let format = if mode % 4 == 0 {
                Format::Json
            } else {
                Format::Toml
            };
            let Ok(rule) = parse_rule_text(&text, format) else {
                return;
            };
            let stored = rule.to_json();
            let again = parse_rule(&stored).unwrap_or_else(|e| {
                panic!("an accepted rule is refused when read back: {e}\n{stored}")
            });
            assert_eq!(again.to_json(), stored, "a rule changes when read back");
            plan_on_ticket(&rule, None);
        }
        2 => {
            if macros::check_template(&text).is_err() {
                return;
            }
            let m = Macro {
                id: 1,
                name: "m".into(),
                subject: Some(text.clone()),
                body: text.clone(),
                missing: Missing::Empty,
            };
            if let Ok(rendered) = macros::render(&m, &facts()) {
                assert!(rendered.body.len() <= MAX_OUTPUT_BYTES);
                assert!(!rendered.subject.contains(['\r', '\n']));
            }
            let rule = parse_rule(&json!({
                "name": "r", "trigger": "message_received",
                "actions": [{"type": "reply_with_macro", "macro": "m"}, {"type": "add_note", "text": text}]
            }));
            if let Ok(rule) = rule {
                plan_on_ticket(&rule, Some(&text));
            }
        }
        _ => {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                return;
            };
            if let Ok(hours) = BusinessHours::parse(&value) {
                let _ = hours.contains(NOW);
                let _ = hours.contains(i64::MAX);
                let _ = hours.contains(i64::MIN);
            }
        }
    });
});

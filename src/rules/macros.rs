//! Macros: reply templates in minijinja's language (Jinja2), rendered in a sandbox: no
//! file access (no loader), bounded work (fuel) and output. A template that does not
//! compile is refused when saved, with its line and column.
//!
//! Variables: `customer` (name, first_name, email, attributes, and every attribute by its
//! own name: `customer.last_order`), `ticket` (id, subject, tags, status, priority),
//! `agent` (name, email: the assigned agent) and `account` (name, from_address).

use super::facts::Facts;
use minijinja::value::Value as JValue;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Most instructions one rendering may execute.
const FUEL: u64 = 200_000;
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// What a variable the ticket does not have renders as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Missing {
    Empty,
    Fallback(String),
}

/// A macro as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Macro {
    pub id: i64,
    pub name: String,
    /// Empty: "Re: " and the ticket's subject.
    pub subject: Option<String>,
    pub body: String,
    pub missing: Missing,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

fn environment(missing: &Missing) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(50);
    // A mail body ends with its newline as written.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // Plain text mail: nothing to escape.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let fallback = match missing {
        Missing::Empty => String::new(),
        Missing::Fallback(f) => f.clone(),
    };
    env.set_formatter(move |out, state, value| {
        if value.is_undefined() || value.is_none() {
            out.write_str(&fallback)?;
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

fn position(source: &str, e: &minijinja::Error) -> (usize, usize) {
    let line = e.line().unwrap_or(1);
    let column = match e.range() {
        Some(r) => {
            let before = &source[..r.start.min(source.len())];
            before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1
        }
        None => 1,
    };
    (line, column)
}

fn template_error(source: &str, e: &minijinja::Error) -> TemplateError {
    let (line, column) = position(source, e);
    let message = match e.detail() {
        Some(d) => format!("{} ({d})", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError {
        line,
        column,
        message,
    }
}

/// Compiles a template; the error says where it breaks.
pub fn check_template(source: &str) -> Result<(), TemplateError> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(TemplateError {
            line: 1,
            column: 1,
            message: format!("the template is longer than {MAX_TEMPLATE_BYTES} bytes"),
        });
    }
    let env = environment(&Missing::Empty);
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| template_error(source, &e))
}

/// The variables a template sees for these facts.
pub fn context(f: &Facts) -> JValue {
    let t = &f.ticket;
    let customer = t.customer.as_ref().map(|c| {
        let mut map = serde_json::Map::new();
        if let Some(attrs) = c.attributes.as_object() {
            for (k, v) in attrs {
                map.insert(k.clone(), v.clone());
            }
        }
        let first = c
            .name
            .as_deref()
            .and_then(|n| n.split_whitespace().next())
            .map(str::to_string);
        map.insert("name".into(), c.name.clone().into());
        map.insert("first_name".into(), first.into());
        map.insert("email".into(), c.email.clone().into());
        map.insert("attributes".into(), c.attributes.clone());
        serde_json::Value::Object(map)
    });
    let agent = t.assignee_email.as_ref().map(|email| {
        serde_json::json!({
            "email": email,
            "name": t.assignee_name,
            "first_name": t.assignee_name.as_deref().and_then(|n| n.split_whitespace().next()),
        })
    });
    let ctx = serde_json::json!({
        "customer": customer,
        "ticket": {
            "id": t.id,
            "subject": t.subject,
            "tags": t.tags,
            "status": t.status,
            "priority": t.priority,
        },
        "agent": agent,
        "account": {"id": f.account.id, "name": f.account.name, "from_address": f.account.from_address},
    });
    // None values are left out, so that they render as missing (empty or the fallback).
    JValue::from(minijinja::value::Serde(strip_nulls(ctx)))
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Templates compiled per thread, by what missing variables render as and by source: a
/// simulation renders the same macro for every ticket it acts on.
const CACHED_TEMPLATES: usize = 256;

thread_local! {
    static ENVIRONMENTS: std::cell::RefCell<std::collections::HashMap<String, (Environment<'static>, usize)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Renders one template.
pub fn render_template(
    source: &str,
    missing: &Missing,
    ctx: &JValue,
) -> Result<String, TemplateError> {
    let key = match missing {
        Missing::Empty => "\0empty".to_string(),
        Missing::Fallback(f) => f.clone(),
    };
    let out = ENVIRONMENTS.with(|cell| {
        let mut envs = cell.borrow_mut();
        if envs.len() > 16 {
            envs.clear();
        }
        let (env, count) = envs.entry(key).or_insert_with(|| (environment(missing), 0));
        if env.get_template(source).is_err() {
            if *count >= CACHED_TEMPLATES {
                *env = environment(missing);
                *count = 0;
            }
            env.add_template_owned(source.to_string(), source.to_string())
                .map_err(|e| template_error(source, &e))?;
            *count += 1;
        }
        let tmpl = env
            .get_template(source)
            .map_err(|e| template_error(source, &e))?;
        // minijinja 3.1.0 panics on some format strings (`{{ "%(-%é" | format(1) }}`: it
        // slices inside a character), and the string may come from ticket data. Uncaught,
        // that panic would end the rules worker, for every account, on every restart.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tmpl.render(ctx)))
            .map_err(|_| TemplateError {
                line: 1,
                column: 1,
                message: "the template engine failed on this template (an internal error, \
                          often a format string with non-ASCII text): simplify the template"
                    .into(),
            })?
            .map_err(|e| template_error(source, &e))
    })?;
    if out.len() > MAX_OUTPUT_BYTES {
        return Err(TemplateError {
            line: 1,
            column: 1,
            message: format!("the rendered text is longer than {MAX_OUTPUT_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// Renders a macro for a ticket. The subject is one line (CR/LF become spaces).
pub fn render(m: &Macro, f: &Facts) -> Result<Rendered, TemplateError> {
    let ctx = context(f);
    let subject = match m.subject.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => render_template(s, &m.missing, &ctx)?,
        None => reply_subject(&f.ticket.subject),
    };
    let subject = subject
        .replace(['\r', '\n'], " ")
        .trim()
        .chars()
        .take(998)
        .collect();
    Ok(Rendered {
        subject,
        body: render_template(&m.body, &m.missing, &ctx)?,
    })
}

/// "Re: subject", without stacking prefixes.
pub fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.len() >= 3 && s[..3].eq_ignore_ascii_case("re:") {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::facts::{CustomerFacts, TicketFacts};

    fn facts() -> Facts {
        Facts {
            ticket: TicketFacts {
                id: 42,
                subject: "Where is my parcel?".into(),
                tags: vec!["vip".into()],
                customer: Some(CustomerFacts {
                    email: "ana@client.test".into(),
                    name: Some("Ana Lima".into()),
                    attributes: serde_json::json!({"last_order": "A-1001", "tracking": "https://t.test/1"}),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn renders_variables_and_missing_ones_as_configured() {
        let m = Macro {
            id: 1,
            name: "on-it".into(),
            subject: None,
            body: "Hello {{ customer.first_name }}, order {{ customer.last_order }} ({{ customer.attributes.tracking }}) ticket #{{ ticket.id }}. {{ agent.name }}|{{ customer.coupon }}".into(),
            missing: Missing::Empty,
        };
        let r = render(&m, &facts()).unwrap();
        assert_eq!(r.subject, "Re: Where is my parcel?");
        assert_eq!(
            r.body,
            "Hello Ana, order A-1001 (https://t.test/1) ticket #42. |"
        );
        let m = Macro {
            missing: Missing::Fallback("[?]".into()),
            subject: Some("Ticket {{ ticket.id }}\r\nBcc: x@evil.test".into()),
            ..m
        };
        let r = render(&m, &facts()).unwrap();
        assert!(r.body.ends_with("[?]|[?]"), "{}", r.body);
        assert_eq!(r.subject, "Ticket 42  Bcc: x@evil.test");
    }

    #[test]
    fn compile_errors_have_line_and_column() {
        let e = check_template("Hello,\n\nyour order {{ customer.last_order }\nbye").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.column > 1, "{e}");
        let e = check_template("{% if x %}never closed").unwrap_err();
        assert!(e.to_string().starts_with("line 1, column"), "{e}");
        // A loop that would run forever runs out of fuel.
        let ctx = context(&facts());
        let err = render_template(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &Missing::Empty,
            &ctx,
        )
        .unwrap_err();
        assert!(
            err.message.contains("fuel") || err.message.contains("range"),
            "{err}"
        );
    }
}

//! The HTTP API end to end: mail arrives over SMTP, tokens come from the CLI, a real HTTP
//! client (reqwest) talks to the server.

use crate::common::api::Api;
use crate::common::{api_token, cli, cli_json, spawn_app, spawn_app_with_acme, RawSmtp, TestApp};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::path::Path;

/// 1x1 PNG, for inline images.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn base(app: &TestApp) -> String {
    format!("http://{}", app.http_addr)
}

/// Sends one message over SMTP; asserts 250.
async fn deliver(app: &TestApp, from: &str, to: &str, message: String) {
    let reply = app.smtp_send("client.test", from, to, &message).await;
    assert_eq!(reply.code, 250, "delivery refused: {}", reply.text);
}

fn plain_mail(from: &str, to: &str, subject: &str, body: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}@client.test>\r\n\
         Date: Mon, 2 Jun 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

/// HTML with an inline cid: image and a PDF attachment.
fn rich_mail(from: &str, to: &str, subject: &str, html: &str, id: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}@client.test>\r\n\
         Date: Mon, 2 Jun 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n\
         --rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n\
         --rel\r\nContent-Type: image/png\r\nContent-ID: <logo-{id}@client.test>\r\n\
         Content-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {PNG_B64}\r\n--rel--\r\n\
         --outer\r\nContent-Type: application/pdf; name=\"invoice-{id}.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"invoice-{id}.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSBpbnZvaWNl\r\n--outer--\r\n"
    )
}

/// Sends one plain text message over SMTP from `from` (envelope and header); asserts 250.
async fn deliver_plain(app: &TestApp, from: &str, to: &str, subject: &str, body: &str, id: &str) {
    deliver(app, from, to, plain_mail(from, to, subject, body, id)).await;
}

fn assert_error_shape(status: StatusCode, body: &str, code: &str) {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|_| panic!("error body is not JSON ({status}): {body}"));
    assert_eq!(v["error"]["code"], code, "{status}: {body}");
    assert!(
        v["error"]["message"].as_str().is_some_and(|m| m.len() > 10),
        "a helpful message: {body}"
    );
}

/// The tickets of an account as seen through the API.
async fn ticket_ids(api: &Api) -> Vec<i64> {
    api.get("/api/v1/tickets").await["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_flow_from_cli_to_raw_download_and_revocation() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    deliver(
        &app,
        "ana@customer.test",
        &fwd,
        plain_mail(
            "Ana <ana@customer.test>",
            &fwd,
            "Where is my order 1234?",
            "It has not arrived.",
            "flow-1",
        ),
    )
    .await;
    let secret = api_token(app.dir.path(), acct, "agent");
    assert!(secret.starts_with("pst_"));

    let api = Api::new(&app, &secret);
    let list = api.get("/api/v1/tickets").await;
    let t = &list["items"][0];
    assert_eq!(t["subject"], "Where is my order 1234?");
    assert_eq!(t["customer"], "ana@customer.test");
    let id = t["id"].as_i64().expect("ticket id");
    let detail = api.get(&format!("/api/v1/tickets/{id}")).await;
    let message = detail["messages"][0]["id"].as_i64().expect("message id");
    assert!(detail["messages"][0]["text"]
        .as_str()
        .is_some_and(|t| t.contains("has not arrived")));

    let resp = api
        .download(&format!("/api/v1/messages/{message}/raw"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "message/rfc822");
    let raw = resp.text().await.expect("raw body");
    assert!(raw.contains("Message-ID: <flow-1@client.test>"), "{raw}");
    assert!(raw.contains("It has not arrived."));

    // The CLI lists it (never the secret), and revocation takes effect at once.
    let listed = cli_json(
        app.dir.path(),
        &["token", "list", "--account", &acct.to_string(), "--json"],
    );
    let tok = &listed[0];
    assert_eq!(tok["role"], "agent");
    assert!(tok["last_used_at"].is_string(), "use recorded: {listed}");
    assert!(!listed.to_string().contains(&secret[4..]));
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_all(app.store.pool())
        .await
        .expect("hashes");
    assert!(stored
        .iter()
        .all(|h| !h.contains(&secret[4..]) && h.len() == 64));
    cli(
        app.dir.path(),
        &[
            "token",
            "revoke",
            &tok["id"].as_i64().expect("id").to_string(),
        ],
    );
    let (status, body) = api.send(Method::GET, "/api/v1/tickets", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_shape(status, &body, "unauthorized");
    app.stop().await;
}

/// Everything one account has, and strings that must never show up elsewhere.
struct Fixture {
    account: i64,
    token: String,
    ticket: i64,
    message: i64,
    attachment: i64,
    customer: i64,
    customer_email: String,
    user: i64,
    user_email: String,
    token_id: i64,
    support_address: i64,
    tag: String,
    sending_domain: i64,
    sending_domain_name: String,
    rule: i64,
    macro_id: i64,
    import_job: i64,
    markers: Vec<String>,
}

/// Waits until the account runs no import job (one runs at a time per account).
async fn imports_idle(api: &Api) {
    for _ in 0..300 {
        let page = api.get("/api/v1/imports").await;
        let busy = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|j| j["status"] == "queued" || j["status"] == "running");
        if !busy {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("an import job did not end");
}

/// A one-message upload, as the request body of POST /imports/upload.
fn upload_eml(lower: &str) -> Vec<u8> {
    format!(
        "From: archive-{lower}@customer.test\r\nTo: support@{lower}.test\r\n\
         Subject: Archived secret of {lower}\r\nMessage-ID: <archive-{lower}@client.test>\r\n\
         Date: Mon, 2 Jun 2025 09:00:00 +0000\r\n\r\nOld mail of {lower}.\r\n"
    )
    .into_bytes()
}

async fn populate(app: &TestApp, name: &str) -> Fixture {
    let lower = name.to_lowercase();
    let (acct, fwd) = app.account(name, &format!("support@{lower}.test")).await;
    let customer_email = format!("client-{lower}@customer.test");
    let subject = format!("Secret subject of {name}");
    let html = format!("<p>Body of {name}</p><img src=\"cid:logo-{lower}@client.test\">");
    deliver(
        app,
        &customer_email,
        &fwd,
        rich_mail(&customer_email, &fwd, &subject, &html, &lower),
    )
    .await;
    let secret = api_token(app.dir.path(), acct, "admin");
    let api = Api::new(app, &secret);
    let ticket = ticket_ids(&api).await[0];
    let detail = api.get(&format!("/api/v1/tickets/{ticket}")).await;
    let message = detail["messages"][0]["id"].as_i64().expect("message");
    let attachment = detail["messages"][0]["attachments"][0]["id"]
        .as_i64()
        .expect("attachment");
    let customer = detail["customer_id"].as_i64().expect("customer id");
    let user_email = format!("agent-{lower}@{lower}.test");
    let user = api
        .create(
            "/api/v1/users",
            json!({"email": user_email, "name": format!("Agent of {name}"), "role": "agent"}),
        )
        .await;
    let user = user["id"].as_i64().expect("user id");
    let tag = format!("tag-of-{lower}");
    api.call_ok(
        Method::PATCH,
        &format!("/api/v1/tickets/{ticket}"),
        json!({"tags": [tag], "assignee_id": user, "priority": "high"}),
    )
    .await;
    let note = format!("Internal note of {name}");
    api.create(
        &format!("/api/v1/tickets/{ticket}/notes"),
        json!({"body": note}),
    )
    .await;
    api.call_ok(
        Method::PATCH,
        &format!("/api/v1/customers/{customer}"),
        json!({"attributes": {"order": format!("ORDER-{name}")}}),
    )
    .await;
    let domain_name = format!("mail-{lower}.test");
    let d = api
        .create(
            "/api/v1/domains",
            json!({"domain": domain_name, "selector": format!("sel-{lower}")}),
        )
        .await;
    let sending_domain = d["id"].as_i64().expect("domain id");
    let macro_body = format!("Macro of {name}: hello {{{{ customer.first_name }}}}");
    let m = api
        .create(
            "/api/v1/macros",
            json!({"name": format!("macro-{lower}"), "body": macro_body}),
        )
        .await;
    let macro_id = m["id"].as_i64().expect("macro id");
    let rule_name = format!("Rule of {name}");
    let r = api.create("/api/v1/rules", json!({"name": rule_name, "trigger": "ticket_created", "enabled": false,
                   "conditions": {"field": "subject", "operator": "contains", "value": format!("Secret of {name}")},
                   "actions": [{"type": "reply_with_macro", "macro": format!("macro-{lower}")}]})).await;
    let rule = r["id"].as_i64().expect("rule id");
    let (s, job) = api
        .send_raw(
            Method::POST,
            &format!("/api/v1/imports/upload?kind=eml&name=archive-of-{lower}.eml"),
            Some(("message/rfc822", upload_eml(&lower))),
            true,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let job: Value = serde_json::from_str(&job).expect("job JSON");
    let import_job = job["id"].as_i64().expect("import job id");
    imports_idle(&api).await;
    let me = api.get("/api/v1/me").await;
    let support_address = api.get("/api/v1/account").await["support_addresses"][0]["id"]
        .as_i64()
        .expect("support address");
    Fixture {
        account: acct,
        token: secret.clone(),
        ticket,
        message,
        attachment,
        customer,
        customer_email: customer_email.clone(),
        user,
        user_email: user_email.clone(),
        token_id: me["token_id"].as_i64().expect("token id"),
        support_address,
        tag: tag.clone(),
        sending_domain,
        sending_domain_name: domain_name.clone(),
        rule,
        macro_id,
        import_job,
        markers: vec![
            format!("archive-of-{lower}"),
            format!("Archived secret of {lower}"),
            domain_name,
            format!("sel-{lower}"),
            rule_name,
            format!("Macro of {name}"),
            format!("macro-{lower}"),
            subject,
            format!("Body of {name}"),
            customer_email,
            user_email,
            tag,
            note,
            format!("ORDER-{name}"),
            fwd,
            format!("invoice-{lower}.pdf"),
            secret[..12].to_string(),
        ],
    }
}

/// A path of the OpenAPI document with the other account's ids filled in.
fn fill(path: &str, other: &Fixture) -> String {
    if path.starts_with("/saml/") {
        return path.replace("{account_id}", &other.account.to_string());
    }
    let resource = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .next()
        .unwrap_or_default();
    let id = match resource {
        "tickets" => other.ticket,
        "messages" => other.message,
        "attachments" => other.attachment,
        "customers" => other.customer,
        "users" => other.user,
        "tokens" => other.token_id,
        "account" => other.support_address,
        "domains" => other.sending_domain,
        "rules" => other.rule,
        "macros" => other.macro_id,
        "imports" => other.import_job,
        r => panic!("the isolation test does not know the resource of {path} ({r}): add it"),
    };
    path.replace("{id}", &id.to_string())
        .replace("{tag}", &other.tag)
}

/// A body for each writing SAML route (form or XML, not JSON); a new one without fails the
/// test. They are refused anyway: the point is what the refusal reveals.
fn saml_sample_body(method: &str, path: &str) -> Option<(&'static str, Vec<u8>)> {
    match (method, path) {
        ("get", _) => None,
        ("post", "/saml/{account_id}/logout") => None,
        // base64 of <samlp:Response/>: readable, signed by nobody.
        ("post", "/saml/{account_id}/acs") => Some((
            "application/x-www-form-urlencoded",
            b"SAMLResponse=PHNhbWxwOlJlc3BvbnNlLz4%3D&RelayState=%2F".to_vec(),
        )),
        ("put", "/saml/{account_id}/idp-metadata") => Some((
            "application/samlmetadata+xml",
            br#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://evil.test"/>"#.to_vec(),
        )),
        _ => panic!("the isolation test has no sample body for {method} {path}: add one"),
    }
}

/// An account id that does not exist.
const NO_ACCOUNT: i64 = 987_654;

/// The SAML routes with another account's id. They are public by nature (the IdP and the
/// browser reach them without credentials), so the one thing they may tell a holder of
/// account A's token is what they tell anyone: the SP metadata of an existing account id
/// (docs/SSO.md). Everything else answers exactly as for an account that does not exist.
async fn check_saml_route(api: &Api, method: &str, path: &str, other: &Fixture) {
    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let body = saml_sample_body(method, path);
    let url = fill(path, other);
    let none = path.replace("{account_id}", &NO_ACCOUNT.to_string());
    let (status, text) = api.send_raw(m.clone(), &url, body.clone(), true).await;
    let (anon_status, anon_text) = api.send_raw(m.clone(), &url, body.clone(), false).await;
    let (none_status, none_text) = api.send_raw(m.clone(), &none, body, true).await;
    for marker in &other.markers {
        assert!(
            !text.contains(marker.as_str()),
            "{method} {url} leaked {marker:?}: {text}"
        );
    }
    if path == "/saml/{account_id}/metadata" {
        assert_eq!(status, StatusCode::OK, "{url}: {text}");
        assert_eq!(
            (status, &text),
            (anon_status, &anon_text),
            "a token of another account sees exactly the public SP metadata"
        );
        assert_eq!(none_status, StatusCode::NOT_FOUND, "{none}: {none_text}");
        return;
    }
    let neutral = |t: &str, id: i64| t.replace(&id.to_string(), "ID");
    assert_eq!(
        (status, neutral(&text, other.account)),
        (none_status, neutral(&none_text, NO_ACCOUNT)),
        "{method} {url} must answer as for an account that does not exist"
    );
    if method == "put" {
        // The admin upload: another account's id is "not found", in the API's shape.
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {url}: {text}");
        assert_error_shape(status, &text, "not_found");
    }
}

/// A valid body for each writing route; a new route without one fails the test.
fn sample_body(method: &str, path: &str, other: &Fixture) -> Option<Value> {
    match (method, path) {
        ("delete", _) => None,
        ("patch", "/api/v1/tickets/{id}") => Some(json!({"status": "closed"})),
        ("post", "/api/v1/tickets/{id}/tags") => Some(json!({"tag": "sneaky"})),
        ("post", "/api/v1/tickets/{id}/notes") => Some(json!({"body": "sneaky note"})),
        ("post", "/api/v1/tickets/{id}/replies") => Some(json!({"text": "sneaky reply"})),
        ("post", "/api/v1/domains/{id}/check") => None,
        // The same domain name in another account is allowed and tells nothing.
        ("post", "/api/v1/domains") => Some(json!({"domain": other.sending_domain_name})),
        ("patch", "/api/v1/customers/{id}") => Some(json!({"name": "sneaky"})),
        ("patch", "/api/v1/users/{id}") => Some(json!({"role": "admin"})),
        // Creating things with the other account's addresses must work and say nothing
        // about them (a 409 would reveal that they exist elsewhere).
        ("post", "/api/v1/customers") => Some(json!({"email": other.customer_email})),
        ("post", "/api/v1/users") => Some(json!({"email": other.user_email, "role": "agent"})),
        ("post", "/api/v1/tokens") => Some(json!({"role": "agent"})),
        ("post", "/api/v1/rules") | ("put", "/api/v1/rules/{id}") => Some(json!({
            "name": "sneaky rule", "trigger": "message_received",
            "actions": [{"type": "add_tag", "tag": "sneaky"}]})),
        ("patch", "/api/v1/rules/{id}") => Some(json!({"enabled": true})),
        ("post", "/api/v1/rules/simulate") => Some(json!({"since": "2d", "rule": {
            "name": "sneaky simulation", "trigger": "message_received",
            "actions": [{"type": "add_tag", "tag": "sneaky"}]}})),
        ("post", "/api/v1/macros") => Some(json!({"name": "sneaky", "body": "hi"})),
        // A dry run against a closed port: accepted (202), then the job fails on its own.
        ("post", "/api/v1/imports") => Some(json!({
            "url": "imaps://sneaky@127.0.0.1:9/INBOX", "password": "sneaky", "dry_run": true})),
        ("post", "/api/v1/imports/{id}/cancel") => None,
        ("post", "/api/v1/imports/{id}/discard") => None,
        // Sent as the raw mailbox by the walk, not as JSON.
        ("post", "/api/v1/imports/upload") => None,
        ("post", "/api/v1/imports/{id}/resume") => Some(json!({"password": "sneaky"})),
        ("post", "/api/v1/account/support-addresses") => {
            Some(json!({"address": other.customer_email}))
        }
        _ => panic!("the isolation test has no sample body for {method} {path}: add one"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_endpoint_reveals_another_accounts_data() {
    let app = spawn_app(&[]).await;
    let a = populate(&app, "Alpha").await;
    let b = populate(&app, "Bravo").await;
    let api = Api::new(&app, &a.token);
    let doc = api.get("/api/v1/openapi.json").await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut walked = 0;
    let mut saml_walked = 0;
    for (path, item) in paths {
        if path.starts_with("/saml/") {
            for method in item.as_object().expect("path item").keys() {
                check_saml_route(&api, method, path, &b).await;
                saml_walked += 1;
            }
            continue;
        }
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        for method in item.as_object().expect("path item").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let has_id = path.contains('{');
            let url = if has_id { fill(path, &b) } else { path.clone() };
            let body = if m == Method::GET {
                None
            } else {
                sample_body(method, path, &b)
            };
            let sent = body.as_ref().map(Value::to_string).unwrap_or_default();
            if path.starts_with("/api/v1/imports") && !has_id && m == Method::POST {
                // One import at a time per account: the previous one must have ended.
                imports_idle(&api).await;
            }
            let (status, text) = if path == "/api/v1/imports/upload" {
                // The body of an upload is the mailbox itself, not JSON.
                api.send_raw(
                    m.clone(),
                    "/api/v1/imports/upload?kind=eml&dry_run=true",
                    Some(("message/rfc822", upload_eml("sneaky"))),
                    true,
                )
                .await
            } else {
                api.send(m.clone(), &url, body).await
            };
            walked += 1;
            if has_id {
                assert_eq!(
                    status,
                    StatusCode::NOT_FOUND,
                    "{method} {url} with the other account's id: {text}"
                );
                assert_error_shape(status, &text, "not_found");
            } else {
                assert!(status.is_success(), "{method} {url}: {status} {text}");
            }
            for marker in &b.markers {
                if !sent.contains(marker.as_str()) {
                    assert!(
                        !text.contains(marker.as_str()),
                        "{method} {url} leaked {marker:?}: {text}"
                    );
                }
            }
        }
    }
    assert!(walked >= 20, "only {walked} routes walked");
    assert!(saml_walked >= 6, "only {saml_walked} SAML routes walked");
    assert!(
        app.store
            .sso_provider(postern::domain::AccountId(b.account))
            .await
            .expect("sso provider")
            .is_none(),
        "Bravo's single sign-on must be untouched"
    );

    // Listings filtered by the other account's ids or names find nothing.
    for q in [
        format!("customer={}", b.customer),
        format!("customer={}", b.customer_email),
        format!("assignee={}", b.user),
        format!("tag={}", b.tag),
        "q=Bravo".to_string(),
    ] {
        let page = api.get(&format!("/api/v1/tickets?{q}")).await;
        assert_eq!(page["items"], json!([]), "{q}");
    }
    // Another account's user cannot be assigned (and is "not found").
    let (s, v) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/tickets/{}", a.ticket),
            json!({"assignee_id": b.user}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");

    // Bravo's data is untouched and its token still works.
    let bravo = Api::new(&app, &b.token);
    let t = bravo.get(&format!("/api/v1/tickets/{}", b.ticket)).await;
    assert_eq!(t["status"], "open");
    assert_eq!(t["tags"], json!([b.tag]));
    assert_eq!(t["priority"], "high");
    let u = bravo.get(&format!("/api/v1/users/{}", b.user)).await;
    assert_eq!(u["role"], "agent");
    assert!(t["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .all(|m| m["text"] != "sneaky note"));
    assert_eq!(
        bravo
            .get(&format!("/api/v1/customers/{}", b.customer))
            .await["name"],
        Value::Null
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_cannot_manage_users_or_tokens() {
    let (app, acct, _) = spawn_app_with_acme(&[]).await;
    let admin = Api::of_role(&app, acct, "admin");
    let agent = Api::of_role(&app, acct, "agent");
    let user = admin
        .create(
            "/api/v1/users",
            json!({"email": "bob@acme.test", "role": "agent"}),
        )
        .await;
    let uid = user["id"].as_i64().expect("id");
    let tokens = admin.get("/api/v1/tokens").await;
    let tid = tokens[0]["id"].as_i64().expect("token id");

    for (m, path, body) in [
        (
            Method::POST,
            "/api/v1/users".to_string(),
            Some(json!({"email": "eve@acme.test", "role": "admin"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{uid}"),
            Some(json!({"role": "admin"})),
        ),
        (Method::GET, "/api/v1/tokens".to_string(), None),
        (Method::GET, format!("/api/v1/tokens/{tid}"), None),
        (
            Method::POST,
            "/api/v1/tokens".to_string(),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("/api/v1/tokens/{tid}"), None),
        (
            Method::POST,
            "/api/v1/account/support-addresses".to_string(),
            Some(json!({"address": "billing@acme.test"})),
        ),
    ] {
        let (status, text) = agent.send(m.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{m} {path}: {text}");
        assert_error_shape(status, &text, "forbidden");
        assert!(text.contains("admin"), "{text}");
    }
    // What agents do is open to them.
    agent.get("/api/v1/users").await;
    agent.get("/api/v1/tickets").await;
    agent.get("/api/v1/customers").await;
    // The refused calls changed nothing.
    assert_eq!(
        admin.get(&format!("/api/v1/users/{uid}")).await["role"],
        "agent"
    );
    assert!(admin.get(&format!("/api/v1/tokens/{tid}")).await["revoked_at"].is_null());
    app.stop().await;
}

const XSS_VECTORS: &[&str] = &[
    "<script>alert('xss-script')</script>",
    "<SCRIPT SRC=//evil.test/x.js></SCRIPT>",
    "<img src=x onerror=alert('xss-onerror')>",
    "<body onload=alert('xss-onload')>",
    "<a href=\"javascript:alert('xss-js')\">click</a>",
    "<a href=\"JaVaScRiPt:alert('xss-js2')\">click</a>",
    "<a href=\"&#106;avascript:alert('xss-entity')\">click</a>",
    "<svg><script>alert('xss-svg')</script></svg>",
    "<svg onload=alert('xss-svgonload')><circle r=1></circle></svg>",
    "<div style=\"width: expression(alert('xss-expr'))\">x</div>",
    "<div style=\"background:url(https://evil.test/bg.png)\">x</div>",
    "<style>body{background:url(https://evil.test/style.png)}</style>",
    "<p>unclosed <b><i>nested <scr<script>ipt>alert('xss-nested')</script>",
    "<img src=\"data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=\">",
    "<a href=\"data:text/html,<script>alert('xss-data')</script>\">d</a>",
    "<base href=\"https://evil.test/\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=https://evil.test/\">",
    "<iframe src=\"https://evil.test/frame\"></iframe>",
    "<object data=\"https://evil.test/obj.swf\"></object>",
    "<embed src=\"https://evil.test/embed.swf\">",
    "<form action=\"https://evil.test/steal\"><input name=p type=password></form>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('xss-mxss')>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert('xss-noscript')>\">",
    "<video><source onerror=alert('xss-video')></video>",
    "<link rel=stylesheet href=https://evil.test/x.css>",
];

const FORBIDDEN_OUTPUT: &[&str] = &[
    "<script",
    "onerror",
    "onload",
    "javascript:",
    "expression(",
    "url(",
    "evil.test",
    "<svg",
    "<style",
    "<base",
    "<meta",
    "<iframe",
    "<object",
    "<embed",
    "<form",
    "<input",
    "data:",
    "<link",
];

#[tokio::test(flavor = "multi_thread")]
async fn message_html_is_sanitised_with_remote_images_blocked_and_cid_rewritten() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    let html = format!(
        "<html><body><p>Hello <b>agent</b></p>\
         <img src=\"cid:logo-x1@client.test\" alt=\"logo\">\
         <img src=\"https://tracker.example/open.gif\" alt=\"pixel\">{}</body></html>",
        XSS_VECTORS.join("\n")
    );
    deliver(
        &app,
        "ana@customer.test",
        &fwd,
        rich_mail("ana@customer.test", &fwd, "Fancy mail", &html, "x1"),
    )
    .await;
    let secret = api_token(app.dir.path(), acct, "agent");
    let api = Api::new(&app, &secret);
    let ticket = ticket_ids(&api).await[0];
    let detail = api.get(&format!("/api/v1/tickets/{ticket}")).await;
    let m = &detail["messages"][0];
    let message = m["id"].as_i64().expect("id");
    let logo = m["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .find(|a| {
            a["content_id"]
                .as_str()
                .is_some_and(|c| c.contains("logo-x1"))
        })
        .expect("inline logo attachment");
    let logo_url = format!("/api/v1/attachments/{}", logo["id"]);

    let from_ticket = m["html"].as_str().expect("html");
    let from_message = api.get(&format!("/api/v1/messages/{message}")).await["html"]
        .as_str()
        .expect("html")
        .to_string();
    let resp = api
        .download(&format!("/api/v1/messages/{message}/html"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let page = resp.text().await.expect("page");
    // The page adds its own charset tag in front of the sanitised body.
    let page_body = page
        .split_once("<meta charset=\"utf-8\">\n")
        .expect("prefix")
        .1;

    for html in [from_ticket, from_message.as_str(), page_body] {
        let lower = html.to_lowercase();
        for bad in FORBIDDEN_OUTPUT {
            assert!(
                !lower.contains(bad),
                "{bad:?} survived sanitisation: {html}"
            );
        }
        assert!(
            !lower.contains("tracker.example"),
            "remote image loaded: {html}"
        );
        assert!(
            html.contains("<b>agent</b>"),
            "harmless markup kept: {html}"
        );
        assert!(
            html.contains(&format!("src=\"{logo_url}\"")),
            "cid rewritten: {html}"
        );
        assert!(!lower.contains("cid:"), "{html}");
    }

    // The rewritten URL serves the image.
    let img = api.download(&logo_url).await;
    assert_eq!(img.status(), StatusCode::OK);
    assert_eq!(img.headers()["content-type"], "image/png");
    assert_eq!(&img.bytes().await.expect("png")[1..4], b"PNG");

    // Remote images only on request, and still nothing else.
    let opted = api
        .get(&format!("/api/v1/messages/{message}?remote_images=true"))
        .await["html"]
        .as_str()
        .expect("html")
        .to_string();
    assert!(
        opted.contains("src=\"https://tracker.example/open.gif\""),
        "{opted}"
    );
    assert!(
        !opted.contains("evil.test") && !opted.contains("<script"),
        "{opted}"
    );

    // Attachments of a dangerous type are never served as something a browser runs.
    let pdf = m["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .find(|a| a["filename"] == "invoice-x1.pdf")
        .expect("pdf");
    let resp = api
        .download(&format!("/api/v1/attachments/{}", pdf["id"]))
        .await;
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .expect("disposition")
        .starts_with("attachment;"));
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_is_valid_and_lists_every_route() {
    let app = spawn_app(&[]).await;
    let client = Client::new();
    let doc: Value = public_get(&client, &app, "/api/v1/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    // An independent validator.
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/venv/bin/python");
    let check = std::process::Command::new(&python)
        .args(["-c", "import openapi_spec_validator"])
        .status();
    assert!(
        check.is_ok_and(|s| s.success()),
        "this test needs openapi-spec-validator in {}: run `scripts/install-deps.sh test` (make test does)",
        python.display()
    );
    let file = app.dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write doc");
    crate::common::run_ok(
        std::process::Command::new(&python)
            .args([
                "-c",
                "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')",
            ])
            .arg(&file),
        "openapi-spec-validator refused the document",
    );
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));

    // Every documented route is served (401 without credentials, not 404/405)...
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in item.as_object().expect("item").keys() {
            let url = format!(
                "{}{}",
                base(&app),
                path.replace("{id}", "1")
                    .replace("{tag}", "x")
                    .replace("{account_id}", "1")
            );
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let resp = client.request(m, &url).send().await.expect("request");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            let public = !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json";
            let authenticated = path == "/saml/{account_id}/idp-metadata";
            if public && !authenticated {
                // Served: not the router's fallback (a bodiless POST to a public form may
                // well be a 400, and the SAML pages of a missing account are a 404 page).
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED
                        && !(status == StatusCode::NOT_FOUND && text.contains("no such endpoint")),
                    "{method} {path}: {status} {text}"
                );
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
    for p in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/tickets/{id}",
        "/api/v1/messages/{id}/raw",
        "/api/v1/attachments/{id}",
        "/api/v1/tokens/{id}",
        "/api/v1/imports",
        "/api/v1/imports/upload",
        "/api/v1/imports/{id}",
        "/api/v1/imports/{id}/cancel",
        "/api/v1/imports/{id}/discard",
        "/api/v1/imports/{id}/resume",
        "/saml/{account_id}/metadata",
        "/saml/{account_id}/login",
        "/saml/{account_id}/acs",
        "/saml/{account_id}/logout",
        "/saml/{account_id}/idp-metadata",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the document");
    }
    // The SAML routes are documented like the others: tag, bodies, both logout methods.
    let saml = |p: &str, m: &str| doc["paths"][p][m].clone();
    assert_eq!(
        saml("/saml/{account_id}/acs", "post")["tags"],
        json!(["sso"])
    );
    assert!(
        saml("/saml/{account_id}/acs", "post")["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]
            .is_object()
    );
    assert!(
        saml("/saml/{account_id}/idp-metadata", "put")["requestBody"]["content"]
            ["application/samlmetadata+xml"]
            .is_object()
    );
    assert!(saml("/saml/{account_id}/logout", "get").is_object());
    assert!(saml("/saml/{account_id}/logout", "post").is_object());
    // The browser-facing routes need no credentials; the upload does.
    assert_eq!(
        saml("/saml/{account_id}/metadata", "get")["security"],
        json!([{}])
    );
    assert!(saml("/saml/{account_id}/idp-metadata", "put")["security"].is_null());
    // ...and the router has no route outside the document: every route in src/http is
    // registered through utoipa-axum's routes!, never with a bare .route().
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/http").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("source");
                assert!(
                    !text.contains(".route(")
                        && !text.contains(".route_service(")
                        && !text.contains(".nest_service("),
                    "{} adds a route outside the OpenAPI document: use .routes(routes!(...))",
                    p.display()
                );
            }
        }
    }
    // Unknown endpoints answer in the error shape.
    let resp = client
        .get(format!("{}/api/v1/nope", base(&app)))
        .send()
        .await
        .expect("nope");
    let status = resp.status();
    assert_error_shape(status, &resp.text().await.expect("body"), "not_found");
    app.stop().await;
}

/// A GET without credentials (the OpenAPI document, the metrics).
async fn public_get(client: &Client, app: &TestApp, path: &str) -> reqwest::Response {
    client
        .get(format!("{}{path}", base(app)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

async fn metric(client: &Client, app: &TestApp, name: &str) -> f64 {
    let text = public_get(client, app, "/metrics")
        .await
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_smtp_sessions_and_messages() {
    let (app, _, fwd) = spawn_app_with_acme(&[]).await;
    let client = Client::new();
    let accepted = "postern_smtp_messages_accepted_total ";
    let unknown = "postern_smtp_messages_rejected_total{reason=\"unknown_recipient\"} ";
    let sessions = "postern_smtp_sessions_opened_total ";
    let commits = "postern_store_commit_seconds_count ";
    let (a0, u0, s0, c0) = (
        metric(&client, &app, accepted).await,
        metric(&client, &app, unknown).await,
        metric(&client, &app, sessions).await,
        metric(&client, &app, commits).await,
    );
    deliver_plain(&app, "ana@customer.test", &fwd, "Counted", "hello", "m-1").await;
    let addr = app.smtp_addr;
    let refused = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(addr).expect("connect");
        c.cmd("EHLO client.test").expect("ehlo");
        c.cmd("MAIL FROM:<x@customer.test>").expect("mail");
        c.cmd(&format!(
            "RCPT TO:<nobody@{}>",
            crate::common::INBOUND_DOMAIN
        ))
        .expect("rcpt")
    })
    .await
    .expect("join");
    assert_eq!(refused.code, 550);
    // Counters are process-wide (other tests in this binary may add to them): they only grow.
    assert!(metric(&client, &app, accepted).await >= a0 + 1.0);
    assert!(metric(&client, &app, unknown).await >= u0 + 1.0);
    assert!(metric(&client, &app, sessions).await >= s0 + 2.0);
    // The delivery was committed by the writer, which reports each group commit.
    assert!(metric(&client, &app, commits).await >= c0 + 1.0);
    let text = public_get(&client, &app, "/metrics")
        .await
        .text()
        .await
        .expect("text");
    for name in [
        "postern_smtp_sessions_active",
        "postern_store_commit_seconds",
        "postern_store_commit_batch_size",
        "postern_outbound_queue_depth 0",
    ] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_answers_400_or_422_in_the_error_shape() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    deliver_plain(&app, "ana@customer.test", &fwd, "Hello", "hi", "bad-1").await;
    let secret = api_token(app.dir.path(), acct, "admin");
    let api = Api::new(&app, &secret);
    let ticket = ticket_ids(&api).await[0];
    let url = format!("{}/api/v1/tickets/{ticket}", api.base);

    let raw = |body: &'static str, ctype: &'static str| {
        api.client
            .patch(&url)
            .bearer_auth(&secret)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    for (body, ctype, status, code) in [
        ("{\"status\": ", "application/json", 400, "invalid_body"),
        ("not json", "application/json", 400, "invalid_body"),
        (
            "{\"status\": \"closed\", \"colour\": \"red\"}",
            "application/json",
            422,
            "invalid_body",
        ),
        (
            "{\"status\": \"finished\"}",
            "application/json",
            422,
            "invalid_body",
        ),
        (
            "{\"assignee_id\": \"bob\"}",
            "application/json",
            422,
            "invalid_body",
        ),
        (
            "{\"priority\": \"whenever\"}",
            "application/json",
            422,
            "invalid",
        ),
        (
            "{\"status\": \"closed\"}",
            "text/plain",
            415,
            "unsupported_media_type",
        ),
    ] {
        let resp = raw(body, ctype).await.expect("request");
        let s = resp.status();
        let text = resp.text().await.expect("body");
        assert_eq!(s.as_u16(), status, "{body}: {text}");
        assert_error_shape(s, &text, code);
    }
    for (path, code) in [
        ("/api/v1/tickets?cursor=garbage", "bad_cursor"),
        ("/api/v1/tickets?cursor=MFRGG", "bad_cursor"),
        ("/api/v1/tickets?status=finished", "invalid_query"),
        ("/api/v1/tickets?sort=colour", "invalid_query"),
        ("/api/v1/tickets?limit=0", "invalid_query"),
        ("/api/v1/tickets?limit=100000", "invalid_query"),
        ("/api/v1/tickets?unknown=1", "invalid_query"),
        ("/api/v1/tickets?assignee=me", "invalid_query"),
        ("/api/v1/customers?cursor=%%%", "bad_cursor"),
        ("/api/v1/tickets/abc", "invalid_path"),
    ] {
        let (s, text) = api.send(Method::GET, path, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert_error_shape(s, &text, code);
    }
    // A cursor from one sort order is refused by another.
    for i in 0..2 {
        deliver(
            &app,
            &format!("c{i}@customer.test"),
            &fwd,
            plain_mail(
                &format!("c{i}@customer.test"),
                &fwd,
                &format!("More {i}"),
                "x",
                &format!("more-{i}"),
            ),
        )
        .await;
    }
    let page = api.get("/api/v1/tickets?limit=1").await;
    let cursor = page["next_cursor"].as_str().expect("cursor").to_string();
    let (s, text) = api
        .send(
            Method::GET,
            &format!("/api/v1/tickets?sort=id&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error_shape(s, &text, "bad_cursor");
    // Missing and wrong credentials.
    let resp = api
        .client
        .get(format!("{}/api/v1/tickets", api.base))
        .send()
        .await
        .expect("anon");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_error_shape(
        StatusCode::UNAUTHORIZED,
        &resp.text().await.expect("body"),
        "unauthorized",
    );
    for auth in ["Bearer pst_0000", "Basic YTpi", "Bearer "] {
        let resp = api
            .client
            .get(format!("{}/api/v1/tickets", api.base))
            .header("authorization", auth)
            .send()
            .await
            .expect("bad auth");
        let s = resp.status();
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth}");
        assert_error_shape(s, &resp.text().await.expect("body"), "unauthorized");
    }
    // A body over the limit.
    let big = format!("{{\"body\": \"{}\"}}", "x".repeat(300 * 1024));
    let resp = api
        .client
        .post(format!("{url}/notes"))
        .bearer_auth(&secret)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("big");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_filters_sorts_and_pages_through_every_ticket() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    for i in 0..7 {
        let from = format!("buyer{}@customer.test", i % 3);
        let body = if i == 4 {
            "my parcel is damaged (50% crushed)"
        } else {
            "question"
        };
        deliver(
            &app,
            &from,
            &fwd,
            plain_mail(
                &from,
                &fwd,
                &format!("Order {i}"),
                body,
                &format!("list-{i}"),
            ),
        )
        .await;
    }
    let api = Api::of_role(&app, acct, "admin");
    let user = api
        .create(
            "/api/v1/users",
            json!({"email": "bob@acme.test", "role": "agent"}),
        )
        .await;
    let bob = user["id"].as_i64().expect("bob");
    let all = ticket_ids(&api).await;
    assert_eq!(all.len(), 7);

    // Pages of 3 cover every ticket once, in the same order as one big page.
    for sort in ["-updated_at", "created_at", "id", "-id"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/tickets?limit=3&sort={sort}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = api.get(&path).await;
            seen.extend(
                page["items"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .map(|t| t["id"].as_i64().expect("id")),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let whole: Vec<i64> = api
            .get(&format!("/api/v1/tickets?limit=200&sort={sort}"))
            .await["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["id"].as_i64().expect("id"))
            .collect();
        assert_eq!(seen, whole, "sort {sort}");
        assert_eq!(seen.len(), 7);
        if sort == "id" {
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
        }
        if sort == "-id" {
            assert!(seen.windows(2).all(|w| w[0] > w[1]));
        }
    }

    let (first, second) = (all[0], all[1]);
    api.call_ok(
        Method::PATCH,
        &format!("/api/v1/tickets/{first}"),
        json!({"status": "closed", "assignee_id": bob}),
    )
    .await;
    let tags = api
        .call_ok(
            Method::POST,
            &format!("/api/v1/tickets/{second}/tags"),
            json!({"tag": "Urgent"}),
        )
        .await;
    assert_eq!(tags["tags"], json!(["Urgent"]));
    let ids = |v: Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["id"].as_i64().expect("id"))
            .collect()
    };
    assert_eq!(
        ids(api.get("/api/v1/tickets?status=closed").await),
        vec![first]
    );
    assert_eq!(ids(api.get("/api/v1/tickets?status=open").await).len(), 6);
    assert_eq!(
        ids(api.get("/api/v1/tickets?tag=Urgent").await),
        vec![second]
    );
    assert_eq!(
        ids(api.get(&format!("/api/v1/tickets?assignee={bob}")).await),
        vec![first]
    );
    assert_eq!(ids(api.get("/api/v1/tickets?assignee=none").await).len(), 6);
    assert_eq!(
        ids(api
            .get("/api/v1/tickets?customer=buyer1@customer.test")
            .await)
        .len(),
        2
    );
    let found = api.get("/api/v1/tickets?q=50%25%20crushed").await;
    assert_eq!(found["items"][0]["subject"], "Order 4");
    assert_eq!(ids(found).len(), 1);
    assert_eq!(ids(api.get("/api/v1/tickets?q=Order%206").await).len(), 1);
    // Changes are in the history; removing the tag works once.
    let events = api.get(&format!("/api/v1/tickets/{first}/events")).await;
    let kinds: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"status_changed") && kinds.contains(&"assigned"),
        "{kinds:?}"
    );
    let (s, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tickets/{second}/tags/Urgent"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api
        .send(
            Method::DELETE,
            &format!("/api/v1/tickets/{second}/tags/Urgent"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Customers page and search.
    let page = api.get("/api/v1/customers?limit=2").await;
    assert_eq!(page["items"].as_array().expect("items").len(), 2);
    let next = page["next_cursor"].as_str().expect("cursor");
    let rest = api
        .get(&format!("/api/v1/customers?limit=2&cursor={next}"))
        .await;
    assert_eq!(rest["items"].as_array().expect("items").len(), 1);
    assert!(rest["next_cursor"].is_null());
    let hit = api.get("/api/v1/customers?q=buyer2").await;
    assert_eq!(hit["items"][0]["email"], "buyer2@customer.test");
    app.stop().await;
}

#[tokio::test]
async fn session_cookie_signs_a_user_in_until_it_ends() {
    let (app, acct, _) = spawn_app_with_acme(&[]).await;
    let account = postern::domain::AccountId(acct);
    let email = postern::domain::EmailAddress::parse("carol@acme.test").expect("address");
    let user = app
        .store
        .upsert_sso_user(account, &email, Some("Carol"), postern::domain::Role::Agent)
        .await
        .expect("provision");
    // Provisioning again updates, never duplicates.
    let again = app
        .store
        .upsert_sso_user(account, &email, None, postern::domain::Role::Admin)
        .await
        .expect("again");
    assert_eq!(again.id, user.id);
    assert_eq!(again.name.as_deref(), Some("Carol"));
    let cookie = app
        .store
        .create_session(account, user.id, std::time::Duration::from_secs(3600))
        .await
        .expect("session");
    let client = Client::new();
    let me = |value: String| {
        client
            .get(format!("{}/api/v1/me", base(&app)))
            .header(
                "cookie",
                format!("other=1; {}={value}", postern::store::SESSION_COOKIE),
            )
            .send()
    };
    let resp = me(cookie.clone()).await.expect("me");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(v["account_id"], acct);
    assert_eq!(v["role"], "admin");
    assert_eq!(v["user"]["email"], "carol@acme.test");
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(app.store.pool())
        .await
        .expect("sessions");
    assert!(!stored.contains(&cookie), "only the hash is stored");

    app.store.delete_session(&cookie).await.expect("sign out");
    assert_eq!(
        me(cookie).await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    let expired = app
        .store
        .create_session(account, user.id, std::time::Duration::ZERO)
        .await
        .expect("session");
    assert_eq!(
        me(expired).await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    // A disabled user's sessions end.
    let live = app
        .store
        .create_session(account, user.id, std::time::Duration::from_secs(3600))
        .await
        .expect("session");
    app.store
        .update_user(
            user.id,
            account,
            &postern::store::UserChanges {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("disable");
    assert_eq!(
        me(live).await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me("forged".into()).await.expect("me").status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_adds_a_support_address_and_mail_to_its_forwarding_address_arrives() {
    let (app, acct, _) = spawn_app_with_acme(&[]).await;
    let admin = Api::of_role(&app, acct, "admin");
    let added = admin
        .create(
            "/api/v1/account/support-addresses",
            json!({"address": "Billing@Acme.test", "from_address": "billing@acme.test"}),
        )
        .await;
    assert_eq!(added["address"], "billing@acme.test");
    assert_eq!(added["status"], "awaiting_mail");
    let fwd = added["forwarding_address"]
        .as_str()
        .expect("forwarding address");
    assert!(
        fwd.starts_with("billing-")
            && fwd.ends_with(&format!("@{}", crate::common::INBOUND_DOMAIN)),
        "{fwd}"
    );
    let listed = admin.get("/api/v1/account/support-addresses").await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    deliver(
        &app,
        "ana@customer.test",
        fwd,
        plain_mail(
            "ana@customer.test",
            "billing@acme.test",
            "Invoice",
            "where is it",
            "inv-1",
        ),
    )
    .await;
    let page = admin.get("/api/v1/tickets").await;
    assert_eq!(page["items"][0]["subject"], "Invoice", "{page}");
    let id = added["id"].as_i64().expect("id");
    let now = admin
        .get(&format!("/api/v1/account/support-addresses/{id}"))
        .await;
    assert_eq!(now["status"], "active", "mail arrived: {now}");

    // The same address again: a conflict that says so; a bad address: a clear 4xx.
    let (status, text) = admin
        .send(
            Method::POST,
            "/api/v1/account/support-addresses",
            Some(json!({"address": "billing@acme.test"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert_error_shape(status, &text, "conflict");
    assert!(text.contains("billing@acme.test"), "{text}");
    let (status, text) = admin
        .send(
            Method::POST,
            "/api/v1/account/support-addresses",
            Some(json!({"address": "not an address"})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {text}");
    assert!(text.contains("not a valid e-mail address"), "{text}");
    app.stop().await;
}

/// Blobs are stored compressed when that pays (text) and as they are otherwise (random
/// bytes), and both come back byte for byte through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_blobs_are_compressed_and_downloads_are_byte_exact() {
    use base64::Engine;
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    let mut noise = vec![0u8; 6000];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&noise);
    let b64_lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    let text = "My order 1234 has not arrived, could you look into it please?\r\n".repeat(80);
    let message = format!(
        "From: Ana <ana@customer.test>\r\nTo: {fwd}\r\nSubject: Parcel\r\n\
         Message-ID: <blob-1@client.test>\r\nDate: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"noise.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        b64_lines.join("\r\n")
    );
    deliver(&app, "ana@customer.test", &fwd, message.clone()).await;

    let rows: Vec<(i64, i64, Option<String>)> =
        sqlx::query_as("SELECT size, length(data), compression FROM blobs ORDER BY size")
            .fetch_all(app.store.pool())
            .await
            .expect("blobs");
    assert_eq!(rows.len(), 2, "the message and its attachment: {rows:?}");
    assert_eq!(
        rows[0],
        (6000, 6000, None),
        "random bytes stored as they are"
    );
    let (size, stored, compression) = rows[1].clone();
    assert_eq!(size as usize, message.len(), "size is the size as received");
    assert_eq!(compression.as_deref(), Some("zstd"));
    assert!(
        stored < size / 2,
        "text compressed: {stored} of {size} bytes"
    );

    let secret = api_token(app.dir.path(), acct, "agent");
    let api = Api::new(&app, &secret);
    let list = api.get("/api/v1/tickets").await;
    let id = list["items"][0]["id"].as_i64().expect("ticket id");
    let detail = api.get(&format!("/api/v1/tickets/{id}")).await;
    let m = &detail["messages"][0];
    let raw = api
        .download(&format!("/api/v1/messages/{}/raw", m["id"]))
        .await
        .bytes()
        .await
        .expect("raw body");
    assert!(
        raw.ends_with(message.as_bytes()),
        "the raw download ends with the message exactly as received"
    );
    let att = &m["attachments"][0];
    let got = api
        .download(&format!("/api/v1/attachments/{}", att["id"]))
        .await
        .bytes()
        .await
        .expect("attachment body");
    assert_eq!(got.as_ref(), noise.as_slice());
}

/// Long text and HTML bodies are kept compressed (zstd BLOBs in `text_body` and
/// `html_body`), short ones as text, and every reader gets the text back: the ticket's
/// messages (text, stripped text, sanitised HTML), the search, the quote of a reply.
#[tokio::test(flavor = "multi_thread")]
async fn long_bodies_are_stored_compressed_and_read_back_as_text_everywhere() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    let text = format!(
        "{}The word to find is zanzibar7781.\r\nAna",
        "Mon colis n° 1234 n'est pas arrivé, pouvez-vous vérifier ?\r\n".repeat(120)
    );
    let html = format!(
        "<p>{}</p><p>Last line: <b>quokka-html</b></p><script>alert(1)</script>",
        "Où est ma commande ? ".repeat(200)
    );
    let message = format!(
        "From: Ana <ana@customer.test>\r\nTo: {fwd}\r\nSubject: Long one\r\n\
         Message-ID: <long-1@client.test>\r\nDate: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         {text}\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
    );
    deliver(&app, "ana@customer.test", &fwd, message).await;
    deliver_plain(
        &app,
        "bo@customer.test",
        &fwd,
        "Short one",
        "short zanzibar7781 note",
        "short-1",
    )
    .await;

    let stored: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT subject, typeof(text_body), typeof(html_body), length(text_body)
         FROM messages ORDER BY id",
    )
    .fetch_all(app.store.pool())
    .await
    .expect("messages");
    assert_eq!(stored[0].0, "Long one");
    assert_eq!(
        (stored[0].1.as_str(), stored[0].2.as_str()),
        ("blob", "blob"),
        "long bodies compressed: {stored:?}"
    );
    assert!(
        (stored[0].3 as usize) < text.len() / 4,
        "the stored text is a small frame: {stored:?}"
    );
    assert_eq!(
        (stored[1].1.as_str(), stored[1].2.as_str()),
        ("text", "null"),
        "a short body stays text: {stored:?}"
    );

    let secret = api_token(app.dir.path(), acct, "agent");
    let api = Api::new(&app, &secret);
    let found = api.get("/api/v1/tickets?q=zanzibar7781").await;
    let mut subjects: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["subject"].as_str())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["Long one", "Short one"], "{found}");
    let only_long = api.get("/api/v1/tickets?q=n%C2%B0%201234").await;
    assert_eq!(
        only_long["items"].as_array().map(Vec::len),
        Some(1),
        "{only_long}"
    );

    let list = api.get("/api/v1/tickets?q=Long%20one").await;
    let id = list["items"][0]["id"].as_i64().expect("ticket id");
    let detail = api.get(&format!("/api/v1/tickets/{id}")).await;
    let m = &detail["messages"][0];
    assert_eq!(
        m["text"].as_str().map(|t| t.replace("\r\n", "\n")),
        Some(text.replace("\r\n", "\n"))
    );
    assert_eq!(
        m["stripped_text"].as_str().map(|t| t.replace("\r\n", "\n")),
        Some(text.replace("\r\n", "\n").trim_end().to_string()),
        "no quoted part: the stripped text is the whole text"
    );
    let shown = m["html"].as_str().expect("html");
    assert!(shown.contains("quokka-html"), "{shown}");
    assert!(!shown.contains("<script"), "sanitised: {shown}");

    let context = app
        .store
        .reply_context(
            postern::domain::AccountId(acct),
            postern::domain::TicketId(id),
        )
        .await
        .expect("reply context");
    let quoted = context.parent.and_then(|p| p.text).expect("parent text");
    assert!(quoted.contains("zanzibar7781"), "{quoted}");
}

/// Tokens made through the API record who made them and expire. An admin's tokens (one made
/// with their session, one made with that token) act as an agent once the admin is made an
/// agent, and stop at once, with a 401 that says why, when the admin is disabled; operators'
/// tokens from the CLI keep working. An expired token is refused.
#[tokio::test(flavor = "multi_thread")]
async fn api_tokens_die_with_their_creator_and_expire() {
    let (app, acct, _) = spawn_app_with_acme(&[]).await;
    let account = postern::domain::AccountId(acct);
    let operator_token = api_token(app.dir.path(), acct, "admin");
    let operator = Api::new(&app, &operator_token);
    let dana = operator
        .create(
            "/api/v1/users",
            json!({"email": "dana@acme.test", "role": "admin"}),
        )
        .await;
    let dana_id = dana["id"].as_i64().expect("user id");
    let cookie = app
        .store
        .create_session(account, dana_id, std::time::Duration::from_secs(3600))
        .await
        .expect("session");
    let day_ms = 86_400_000i64;
    let expires_in_days = |v: &Value| {
        let at =
            chrono::DateTime::parse_from_rfc3339(v["expires_at"].as_str().expect("expires_at"))
                .expect("RFC 3339");
        (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()) as f64 / day_ms as f64
    };

    // Dana, signed in, makes a token; the answer says who made it and when it expires.
    let resp = Client::new()
        .post(format!("{}/api/v1/tokens", base(&app)))
        .header(
            "cookie",
            format!("{}={cookie}", postern::store::SESSION_COOKIE),
        )
        .header("origin", base(&app))
        .json(&json!({"role": "admin", "name": "dana's bridge", "expires_in": "30d"}))
        .send()
        .await
        .expect("POST /tokens");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = resp.json().await.expect("JSON");
    assert_eq!(made["created_by_user_id"], dana_id, "{made}");
    assert_eq!(made["created_by"], "dana@acme.test", "{made}");
    assert_eq!(made["status"], "active", "{made}");
    let days = expires_in_days(&made);
    assert!((29.9..30.1).contains(&days), "{made}");
    let dana_token = made["token"].as_str().expect("secret").to_string();
    let dana_api = Api::new(&app, &dana_token);

    // A token made with Dana's token is Dana's too, and expires after the default 90 days.
    let child = dana_api
        .create("/api/v1/tokens", json!({"role": "agent"}))
        .await;
    assert_eq!(child["created_by_user_id"], dana_id, "{child}");
    assert_eq!(child["created_by_token_id"], made["id"], "{child}");
    let days = expires_in_days(&child);
    assert!((89.9..90.1).contains(&days), "{child}");
    let child_api = Api::new(&app, child["token"].as_str().expect("secret"));
    child_api.get("/api/v1/tickets").await;

    // Expiries the API refuses.
    for bad in [
        json!({"role": "agent", "expires_in": "400d"}),
        json!({"role": "agent", "expires_in": "soon"}),
        json!({"role": "agent", "expires_in": "1d", "expires_at": "2100-01-01T00:00:00Z"}),
        json!({"role": "agent", "expires_at": "2000-01-01T00:00:00Z"}),
    ] {
        let (s, v) = dana_api
            .call(Method::POST, "/api/v1/tokens", bad.clone())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
    }

    // The listing shows creators and expiries; the CLI's operator token has neither.
    let list = operator.get("/api/v1/tokens").await;
    let by_id = |id: &Value| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|t| t["id"] == *id)
            .cloned()
            .expect("listed")
    };
    let listed = by_id(&made["id"]);
    assert_eq!(listed["created_by"], "dana@acme.test", "{listed}");
    assert!(listed["expires_at"].is_string(), "{listed}");
    assert!(listed["last_used_at"].is_string(), "{listed}");
    let ops = list
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["created_by_user_id"].is_null())
        .cloned()
        .expect("the operator's token");
    assert!(ops["expires_at"].is_null(), "{ops}");

    // Dana made an agent: her admin token acts as an agent.
    let (s, v) = operator
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{dana_id}"),
            json!({"role": "agent"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, text) = dana_api.send(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{text}");
    dana_api.get("/api/v1/tickets").await;

    // Dana disabled: both tokens stop at once, and say why.
    operator
        .call_ok(
            Method::PATCH,
            &format!("/api/v1/users/{dana_id}"),
            json!({"disabled": true}),
        )
        .await;
    for api in [&dana_api, &child_api] {
        let (s, text) = api.send(Method::GET, "/api/v1/tickets", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
        assert_error_shape(s, &text, "unauthorized");
        assert!(
            text.contains("dana@acme.test") && text.contains("disabled"),
            "{text}"
        );
    }
    let list = operator.get("/api/v1/tokens").await;
    let listed = list
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["id"] == made["id"])
        .cloned()
        .expect("listed");
    assert_eq!(listed["status"], "creator_disabled", "{listed}");
    // Enabling Dana again does not bring them back: they were revoked.
    operator
        .call_ok(
            Method::PATCH,
            &format!("/api/v1/users/{dana_id}"),
            json!({"disabled": false}),
        )
        .await;
    let (s, text) = dana_api.send(Method::GET, "/api/v1/tickets", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("revoked"), "{text}");
    // The operator's token from the CLI is nobody's: it works on.
    operator.get("/api/v1/tickets").await;

    // An expired token is refused, and says when it expired.
    let (_, expired) = app
        .store
        .create_api_token_by(
            account,
            postern::domain::Role::Admin,
            "old",
            postern::store::TokenCreator::Operator,
            Some(postern::store::now_ms() - 1000),
        )
        .await
        .expect("token");
    let (s, text) = Api::new(&app, &expired)
        .send(Method::GET, "/api/v1/tickets", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    assert_error_shape(s, &text, "unauthorized");
    assert!(text.contains("expired"), "{text}");
    app.stop().await;
}

/// A failure of ours (here a stored message damaged on disk) is a 500 whose message names only
/// the request id, never the internal detail; every answer carries `X-Request-Id`.
#[tokio::test(flavor = "multi_thread")]
async fn internal_failures_are_500_with_a_request_id_and_no_internal_detail() {
    let (app, acct, fwd) = spawn_app_with_acme(&[]).await;
    let text = "My order 1234 has not arrived, could you look into it please?\r\n".repeat(80);
    deliver_plain(
        &app,
        "ana@customer.test",
        &fwd,
        "Parcel",
        &text,
        "damaged-1",
    )
    .await;
    // The raw message is a zstd frame; damage it the way a bad disk would.
    let damaged = crate::common::raw_db(&app.store)
        .execute(
            "UPDATE blobs SET data = x'28b52ffd00deadbeef' WHERE compression = 'zstd'",
            [],
        )
        .expect("damage the blob");
    assert_eq!(damaged, 1, "the raw message is stored compressed");

    let secret = api_token(app.dir.path(), acct, "agent");
    let api = Api::new(&app, &secret);
    let list = api.get("/api/v1/tickets").await;
    let id = list["items"][0]["id"].as_i64().expect("ticket id");
    let detail = api.get(&format!("/api/v1/tickets/{id}")).await;
    let response = api
        .download(&format!(
            "/api/v1/messages/{}/raw",
            detail["messages"][0]["id"]
        ))
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("X-Request-Id on an error");
    assert_eq!(request_id.len(), 16, "{request_id}");
    let body = response.text().await.expect("body");
    assert_error_shape(StatusCode::INTERNAL_SERVER_ERROR, &body, "internal");
    assert!(
        body.contains(&request_id),
        "the message names the request id: {body}"
    );
    for detail in ["decompress", "blob", "zstd", "storage"] {
        assert!(
            !body.contains(detail),
            "no internal detail ({detail}): {body}"
        );
    }

    // Every answer carries an id, a new one each time.
    let ok = api.download("/api/v1/tickets").await;
    let other = ok
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    assert!(other.is_some_and(|o| o != request_id), "{other:?}");
}

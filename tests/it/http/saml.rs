//! SAML single sign-on end to end, against a real identity provider (pysaml2 with xmlsec1,
//! tests/peers/saml_idp.py): GET login → the IdP reads Postern's AuthnRequest and signs a
//! response → POST to the ACS → a user with the mapped role and a session cookie that the
//! JSON API accepts. Then every attack the IdP script can forge is refused: no cookie, a
//! clear reason, no user. The IdP-metadata upload is authorised by the API's own tokens.
//! Issue 19: starting a sign-in stores nothing and is rate-limited per client address
//! (finding 5), the session cookie cannot act from another site (finding 7), and a sign-in
//! finishes only in the browser that started it (finding 8).

mod support;

use crate::common::{spawn_app_in, RawSmtp, TestApp};
use postern::domain::{AccountId, Role};
use std::collections::HashMap;
use std::path::Path;
use support::*;

struct Fixture {
    app: TestApp,
    idp_dir: tempfile::TempDir,
    account: i64,
    other_account: i64,
    /// The forwarding address of `account`.
    forwarding: String,
    /// API tokens: (account, role) -> secret.
    tokens: HashMap<(i64, Role), String>,
    /// The browser of the tests that need only one, on 127.0.0.1.
    browser: Browser,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Fixture {
        idp_python();
        let app = spawn_app_in(tempfile::tempdir().expect("temp dir"), extra).await;
        let (account, forwarding) = app.account("Acme", "support@acme.test").await;
        let (other_account, _) = app.account("Other", "help@other.test").await;
        let mut tokens = HashMap::new();
        for a in [account, other_account] {
            for role in [Role::Admin, Role::Agent] {
                let (_, secret) = app
                    .store
                    .create_api_token(AccountId(a), role, "saml test")
                    .await
                    .expect("token");
                tokens.insert((a, role), secret);
            }
        }
        let idp_dir = tempfile::tempdir().expect("temp dir");
        make_idp_key(idp_dir.path());
        let f = Fixture {
            app,
            idp_dir,
            account,
            other_account,
            forwarding,
            tokens,
            browser: Browser::new(None),
        };
        f.upload_metadata(
            account,
            true,
            "role_attribute=role&admin_values=admin,owner&agent_values=agent,support",
        )
        .assert_status(200);
        f.fetch_sp_metadata(account);
        f
    }

    fn token(&self, account: i64, role: Role) -> &str {
        &self.tokens[&(account, role)]
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.app.http_addr
    }

    /// The server's own origin (no http.public_url: http://<listen address>).
    fn origin(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Uploads the IdP metadata as an admin of `account`.
    fn upload_metadata(&self, account: i64, with_cert: bool, query: &str) -> HttpResponse {
        let xml = idp_metadata(self.idp_dir.path(), with_cert);
        let bearer = format!("Bearer {}", self.token(account, Role::Admin));
        self.put_metadata(account, query, Some(&bearer), xml.as_bytes())
    }

    fn put_metadata(
        &self,
        account: i64,
        query: &str,
        authorization: Option<&str>,
        xml: &[u8],
    ) -> HttpResponse {
        let mut headers = vec![("Content-Type", "application/samlmetadata+xml")];
        if let Some(a) = authorization {
            headers.push(("Authorization", a));
        }
        http(
            self.addr(),
            "PUT",
            &format!("/saml/{account}/idp-metadata?{query}"),
            &headers,
            xml,
        )
    }

    /// A whole sign-in through the IdP; returns the ACS answer.
    fn sign_in(&self, account: i64, email: &str, attrs: &[&str]) -> HttpResponse {
        let request = self.start_login(account, "/");
        let answer = self.respond(&request, email, attrs, "good");
        self.post_answer(&answer)
    }

    /// The IdP's answer to the sign-in request `request`, made as `variant` (see
    /// [`idp_respond`]), for `email` with the attributes `attrs`.
    fn respond(&self, request: &str, email: &str, attrs: &[&str], variant: &str) -> IdpAnswer {
        idp_respond(self.idp_dir(), request, email, attrs, variant, None)
    }

    /// Posts the IdP's answer to the ACS URL it names, in the fixture's browser.
    fn post_answer(&self, answer: &IdpAnswer) -> HttpResponse {
        self.post_acs(&Fixture::acs_path(answer), answer)
    }

    /// Posts the sign-out of `account` with the session cookie `session`, from this server's
    /// own pages (their Origin).
    fn sign_out(&self, account: i64, session: &str) -> HttpResponse {
        let cookie = format!("postern_session={session}");
        let origin = self.origin();
        http(
            self.addr(),
            "POST",
            &format!("/saml/{account}/logout"),
            &[("Cookie", &cookie), ("Origin", &origin)],
            b"",
        )
    }

    /// A JSON API call with the session cookie, as this server's own pages make it (with
    /// their Origin).
    fn api_with_cookie(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let origin = self.origin();
        self.api_with_cookie_and(method, path, cookie, &[("Origin", &origin)], body)
    }

    /// A JSON API call with the session cookie and exactly `extra` besides.
    fn api_with_cookie_and(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (u16, serde_json::Value) {
        let cookie = format!("postern_session={cookie}");
        let mut headers = vec![
            ("Cookie", cookie.as_str()),
            ("Content-Type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        let r = http(self.addr(), method, path, &headers, body.as_bytes());
        (
            r.status,
            serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn fetch_sp_metadata(&self, account: i64) {
        let r = http(
            self.addr(),
            "GET",
            &format!("/saml/{account}/metadata"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        std::fs::write(self.idp_dir.path().join("sp.xml"), &r.body).expect("write sp.xml");
    }

    /// GET login in the fixture's browser; returns the IdP URL Postern redirected to.
    fn start_login(&self, account: i64, return_to: &str) -> String {
        self.start_login_in(&self.browser, account, return_to)
    }

    /// GET login in `browser`, which keeps the sign-in cookie.
    fn start_login_in(&self, browser: &Browser, account: i64, return_to: &str) -> String {
        let r = browser.request(
            self.addr(),
            "GET",
            &format!("/saml/{account}/login?return_to={}", urlencode(return_to)),
            &[],
            b"",
        );
        assert_eq!(r.status, 303, "login: {}", r.body);
        let location = r.header("location").expect("Location").to_string();
        assert!(location.starts_with(IDP_SSO_URL), "{location}");
        location
    }

    /// The IdP's form posted to the ACS by the fixture's browser.
    fn post_acs(&self, path: &str, answer: &IdpAnswer) -> HttpResponse {
        self.post_acs_in(&self.browser, path, answer)
    }

    /// The IdP's form posted by `browser`, with its cookies and the IdP's Origin (the
    /// auto-submitted form is a cross-site POST).
    fn post_acs_in(&self, browser: &Browser, path: &str, answer: &IdpAnswer) -> HttpResponse {
        let body = form_encode(&[
            ("SAMLResponse", &answer.saml_response),
            ("RelayState", &answer.relay_state),
        ]);
        browser.request(
            self.addr(),
            "POST",
            path,
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", "http://idp.test"),
            ],
            body.as_bytes(),
        )
    }

    fn acs_path(answer: &IdpAnswer) -> String {
        let url = url::Url::parse(&answer.acs_url).expect("ACS URL");
        url.path().to_string()
    }

    async fn user(&self, email: &str) -> Option<(i64, String, Option<String>)> {
        sqlx::query_as("SELECT account_id, role, name FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(self.app.store.pool())
            .await
            .expect("query users")
    }

    fn idp_dir(&self) -> &Path {
        self.idp_dir.path()
    }
}

trait AssertStatus {
    fn assert_status(self, status: u16) -> Self;
}

impl AssertStatus for HttpResponse {
    fn assert_status(self, status: u16) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn session_cookie(r: &HttpResponse) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .find(|v| v.starts_with("postern_session=") && !v.starts_with("postern_session=;"))
}

/// The value of the session cookie set by a response.
fn cookie_value(r: &HttpResponse) -> String {
    session_cookie(r)
        .expect("session cookie")
        .trim_start_matches("postern_session=")
        .split(';')
        .next()
        .expect("value")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_creates_user_with_role_sets_cookie_and_signs_out() {
    let f = Fixture::start().await;
    let request = f.start_login(f.account, "/tickets/5?tab=open");
    let answer = f.respond(&request, "Ana@Acme.test", &["role=owner"], "good");
    assert_eq!(answer.relay_state, "/tickets/5?tab=open");
    let r = f.post_answer(&answer).assert_status(303);
    assert_eq!(r.header("location"), Some("/tickets/5?tab=open"));
    let cookie = session_cookie(&r).expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http test server: {cookie}"
    );
    let user = f
        .user("ana@acme.test")
        .await
        .expect("user created just in time");
    assert_eq!(user.0, f.account);
    assert_eq!(user.1, "admin", "'owner' is an admin value");
    assert_eq!(user.2.as_deref(), Some("Test User"));

    // The same response again: a replay.
    let again = f.post_answer(&answer).assert_status(403);
    assert!(again.body.contains("replay"), "{}", again.body);
    assert!(session_cookie(&again).is_none());

    // A second, freshly signed response to the same (consumed) request.
    let second = f.respond(&request, "ana@acme.test", &["role=owner"], "good");
    let r2 = f.post_answer(&second).assert_status(403);
    assert!(r2.body.contains("already used"), "{}", r2.body);
    assert!(session_cookie(&r2).is_none());

    // An agent through the Response-signed variant.
    let request = f.start_login(f.account, "/");
    let answer = f.respond(
        &request,
        "bob@acme.test",
        &["role=support"],
        "sign-response",
    );
    let r = f.post_answer(&answer).assert_status(303);
    assert_eq!(f.user("bob@acme.test").await.expect("bob").1, "agent");
    let bob = cookie_value(&r);

    // The API sees each signed-in user with the mapped role.
    let ana = cookie
        .trim_start_matches("postern_session=")
        .split(';')
        .next()
        .expect("value")
        .to_string();
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &ana, "");
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["account_id"], f.account, "{me}");
    assert_eq!(me["role"], "admin", "{me}");
    assert_eq!(me["user"]["email"], "ana@acme.test", "{me}");
    assert_eq!(me["user"]["role"], "admin", "{me}");
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &bob, "");
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["role"], "agent", "{me}");
    // An agent's session cannot manage tokens.
    let (s, v) = f.api_with_cookie("POST", "/api/v1/tokens", &bob, r#"{"role":"admin"}"#);
    assert_eq!(s, 403, "{v}");

    // The role follows the IdP on every sign-in: Ana demoted to support is an agent.
    let r = f
        .sign_in(f.account, "ana@acme.test", &["role=support"])
        .assert_status(303);
    assert_eq!(f.user("ana@acme.test").await.expect("ana").1, "agent");
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &cookie_value(&r), "");
    assert_eq!((s, me["role"].as_str()), (200, Some("agent")), "{me}");
    // Her older session follows the user's current role too.
    let (_, me) = f.api_with_cookie("GET", "/api/v1/me", &ana, "");
    assert_eq!(me["role"], "agent", "{me}");

    // Signing out of another account leaves the session alone.
    f.sign_out(f.other_account, &ana).assert_status(200);
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &ana, "");
    assert_eq!(s, 200, "a sign-out elsewhere must not end this session");

    // Sign out: the session is gone and the cookie cleared.
    let out = f.sign_out(f.account, &ana).assert_status(200);
    assert!(out
        .header("set-cookie")
        .is_some_and(|c| c.contains("Max-Age=0")));
    let (s, v) = f.api_with_cookie("GET", "/api/v1/me", &ana, "");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized", "{v}");
    // Bob's session is his own and still works.
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &bob, "");
    assert_eq!(s, 200);
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_cannot_sign_in() {
    let f = Fixture::start().await;
    let r = f
        .sign_in(f.account, "carol@acme.test", &["role=agent"])
        .assert_status(303);
    let session = cookie_value(&r);
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &session, "");
    assert_eq!(s, 200, "{me}");
    let user = me["user"]["id"].as_i64().expect("user id");

    // An admin disables Carol through the API.
    let bearer = format!("Bearer {}", f.token(f.account, Role::Admin));
    let r = http(
        f.addr(),
        "PATCH",
        &format!("/api/v1/users/{user}"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        br#"{"disabled": true}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &session, "");
    assert_eq!(s, 401, "disabling ends her sessions");

    // The IdP still vouches for her: a clear refusal, no session, still disabled.
    let r = f
        .sign_in(f.account, "carol@acme.test", &["role=admin"])
        .assert_status(403);
    assert!(r.body.contains("disabled"), "{}", r.body);
    assert!(r.body.contains("carol@acme.test"), "{}", r.body);
    assert!(session_cookie(&r).is_none());
    let disabled: bool = sqlx::query_scalar("SELECT disabled FROM users WHERE email = ?")
        .bind("carol@acme.test")
        .fetch_one(f.app.store.pool())
        .await
        .expect("carol");
    assert!(disabled);
    f.app.stop().await;
}

/// The whole story of an admin: sign in through the IdP, create an API token with the
/// session cookie, and use that token for tickets and a raw message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_signs_in_then_creates_a_token_that_reads_tickets_and_raw_mail() {
    let f = Fixture::start().await;
    let smtp = f.app.smtp_addr;
    let message = "From: Dana <dana@customer.test>\r\nTo: support@acme.test\r\n\
        Subject: Where is my order?\r\nMessage-ID: <sso-flow-1@customer.test>\r\n\
        Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\r\nOrder 1234 has not arrived.\r\n";
    let to = f.forwarding.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(smtp).expect("connect");
        c.cmd("EHLO client.test").expect("ehlo");
        let r = c
            .send_mail("dana@customer.test", &to, message)
            .expect("send");
        let _ = c.cmd("QUIT");
        r
    })
    .await
    .expect("join");
    assert_eq!(reply.code, 250, "{}", reply.text);

    let r = f
        .sign_in(f.account, "owner@acme.test", &["role=owner"])
        .assert_status(303);
    let session = cookie_value(&r);
    let (s, created) = f.api_with_cookie(
        "POST",
        "/api/v1/tokens",
        &session,
        r#"{"role": "agent", "name": "helpdesk integration"}"#,
    );
    assert_eq!(s, 201, "{created}");
    let token = created["token"].as_str().expect("token").to_string();
    assert!(token.starts_with("pst_"), "{created}");

    let bearer = format!("Bearer {token}");
    let r = http(
        f.addr(),
        "GET",
        "/api/v1/tickets",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let page: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let ticket = page["items"][0]["id"].as_i64().expect("a ticket");
    let r = http(
        f.addr(),
        "GET",
        &format!("/api/v1/tickets/{ticket}"),
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let detail: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(detail["subject"], "Where is my order?", "{detail}");
    let message = detail["messages"][0]["id"].as_i64().expect("message id");
    let r = http(
        f.addr(),
        "GET",
        &format!("/api/v1/messages/{message}/raw"),
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("message/rfc822")),
        "{:?}",
        r.headers
    );
    assert!(
        r.body.contains("Message-ID: <sso-flow-1@customer.test>"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Order 1234 has not arrived."), "{}", r.body);
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_mistaken_responses_are_refused() {
    let f = Fixture::start().await;
    // (variant, e-mail the IdP signs for, who an attack would log in as, expected reason)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("unsigned", "eve@acme.test", "eve@acme.test", "not signed"),
        (
            "wrap-sibling",
            "eve@acme.test",
            "boss@example.com",
            "exactly one Assertion",
        ),
        (
            "wrap-extensions",
            "eve@acme.test",
            "boss@example.com",
            "exactly one Assertion",
        ),
        (
            "tamper-nameid",
            "eve@acme.test",
            "boss@example.com",
            "does not verify",
        ),
        (
            "comment",
            "user@evil.com.example.com",
            "user@evil.com",
            "comment",
        ),
        ("audience", "eve@acme.test", "eve@acme.test", "Audience"),
        ("recipient", "eve@acme.test", "eve@acme.test", "ACS URL"),
        ("expired", "eve@acme.test", "eve@acme.test", "expired"),
        ("sha1", "eve@acme.test", "eve@acme.test", "rsa-sha1"),
    ];
    for (variant, email, attacker, reason) in cases {
        let request = f.start_login(f.account, "/");
        let answer = idp_respond(f.idp_dir(), &request, email, &["role=admin"], variant, None);
        // The wrong-recipient response is posted to our real ACS all the same.
        let path = format!("/saml/{}/acs", f.account);
        let r = f.post_acs(&path, &answer);
        assert!(
            r.status == 403 || r.status == 400,
            "{variant}: expected a refusal, got {} {}",
            r.status,
            r.body
        );
        assert!(
            r.body.contains(reason),
            "{variant}: the page should say {reason:?}: {}",
            r.body
        );
        assert!(session_cookie(&r).is_none(), "{variant}: no session");
        for who in [*email, *attacker] {
            assert!(
                f.user(who).await.is_none(),
                "{variant}: no user {who} may be created"
            );
        }
    }

    // A correctly signed response to a request ID Postern never issued.
    let request = f.start_login(f.account, "/");
    let forged_id = format!("_{}", "ab".repeat(32));
    let answer = idp_respond(
        f.idp_dir(),
        &request,
        "eve@acme.test",
        &["role=admin"],
        "good",
        Some(&forged_id),
    );
    let r = f
        .post_acs(&format!("/saml/{}/acs", f.account), &answer)
        .assert_status(403);
    assert!(r.body.contains("never issued"), "{}", r.body);

    // A response to account 1's request posted to account 2's ACS: unknown there.
    let answer = f.respond(&request, "eve@acme.test", &["role=admin"], "good");
    f.upload_metadata(f.other_account, true, "")
        .assert_status(200);
    let r = f.post_acs(&format!("/saml/{}/acs", f.other_account), &answer);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(session_cookie(&r).is_none());

    // RelayState changed on the way: refused (the request is still pending after that).
    let mut changed = answer.clone();
    changed.relay_state = "/admin".into();
    let r = f
        .post_acs(&format!("/saml/{}/acs", f.account), &changed)
        .assert_status(403);
    assert!(r.body.contains("RelayState"), "{}", r.body);

    // A signed role nobody mapped: a clear refusal page, no user.
    let answer_no_role = {
        let request = f.start_login(f.account, "/");
        f.respond(&request, "zed@acme.test", &["role=sales"], "good")
    };
    let r = f
        .post_acs(&format!("/saml/{}/acs", f.account), &answer_no_role)
        .assert_status(403);
    assert!(
        r.body.contains("not allowed to use this helpdesk"),
        "{}",
        r.body
    );
    assert!(r.body.contains("&quot;sales&quot;"), "{}", r.body);
    assert!(f.user("zed@acme.test").await.is_none());
    assert!(f.user("eve@acme.test").await.is_none());
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_upload_is_checked_and_admin_only() {
    let f = Fixture::start().await;
    // No signing certificate: refused, and the previous provider stays.
    let r = f.upload_metadata(f.account, false, "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("no signing certificate"), "{}", r.body);
    let stored = f
        .app
        .store
        .sso_provider(AccountId(f.account))
        .await
        .unwrap()
        .expect("provider kept");
    assert_eq!(stored.idp.signing_certs.len(), 1);
    assert_eq!(stored.roles.admin_values, vec!["admin", "owner"]);

    // Authorised like the API: no credentials 401, an agent 403, an admin of another
    // account (or of none) 404, in the API's error shape.
    let xml = idp_metadata(f.idp_dir(), true);
    let error_code = |r: &HttpResponse| -> String {
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("API error shape");
        v["error"]["code"].as_str().unwrap_or_default().to_string()
    };
    let r = f.put_metadata(f.account, "", None, xml.as_bytes());
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (401, "unauthorized"),
        "{}",
        r.body
    );
    let r = f.put_metadata(
        f.account,
        "",
        Some("Bearer pst_not-a-token"),
        xml.as_bytes(),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let agent = format!("Bearer {}", f.token(f.account, Role::Agent));
    let r = f.put_metadata(f.account, "", Some(&agent), xml.as_bytes());
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (403, "forbidden"),
        "{}",
        r.body
    );
    let other_admin = format!("Bearer {}", f.token(f.other_account, Role::Admin));
    let r = f.put_metadata(
        f.account,
        "admin_values=x",
        Some(&other_admin),
        xml.as_bytes(),
    );
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    let admin = format!("Bearer {}", f.token(f.account, Role::Admin));
    let r = f.put_metadata(999, "", Some(&admin), xml.as_bytes());
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (404, "not_found"),
        "{}",
        r.body
    );
    // None of the refusals changed anything.
    let stored = f
        .app
        .store
        .sso_provider(AccountId(f.account))
        .await
        .unwrap()
        .expect("provider kept");
    assert_eq!(stored.roles.admin_values, vec!["admin", "owner"]);

    // Size: its own limit, above the API's 256 KiB. 600 KiB of metadata (padded with
    // whitespace after the document) is accepted; 2 MiB is refused with 413.
    let padded = |size: usize| {
        let mut p = xml.clone().into_bytes();
        p.resize(size, b' ');
        p
    };
    let r = f.put_metadata(f.account, "", Some(&admin), &padded(600 * 1024));
    assert_eq!(r.status, 200, "600 KiB of metadata: {}", r.body);
    let r = f.put_metadata(f.account, "", Some(&admin), &padded(2 * 1024 * 1024));
    assert_eq!(
        (r.status, error_code(&r).as_str()),
        (413, "payload_too_large"),
        "{}",
        r.body
    );
    // And the ACS form has the same larger limit, with a page that says so.
    let r = http(
        f.addr(),
        "POST",
        &format!("/saml/{}/acs", f.account),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &padded(2 * 1024 * 1024),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("larger than"), "{}", r.body);

    // Login where no IdP is set up, and SP metadata of an unknown account.
    let r = http(f.addr(), "GET", "/saml/999/login", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http(f.addr(), "GET", "/saml/999/metadata", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);

    // Return paths: an absolute URL to another host never becomes the RelayState.
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let location = f.start_login(f.account, evil);
        let url = url::Url::parse(&location).unwrap();
        let relay: HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(relay["RelayState"], "/", "{evil}");
    }
    f.app.stop().await;
}

/// Below the first pass (which refuses these documents outright), samael's reduction to the
/// signed element is the second line: verified directly, a wrapped or comment-injected
/// response never yields the attacker's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_only_the_signed_assertion() {
    use base64::Engine;
    use postern::http::saml::{
        build_redirect, new_request_id, parse_idp_metadata, verify_response, SpEndpoints,
    };
    idp_python();
    let dir = tempfile::tempdir().unwrap();
    make_idp_key(dir.path());
    let idp = parse_idp_metadata(&idp_metadata(dir.path(), true)).unwrap();
    let sp = SpEndpoints::new("http://127.0.0.1:9", AccountId(1));
    std::fs::write(dir.path().join("sp.xml"), sp.metadata_xml().unwrap()).unwrap();
    let skew = chrono::Duration::seconds(120);
    for variant in ["good", "wrap-sibling", "wrap-extensions", "comment"] {
        let issued = build_redirect(&sp, IDP_SSO_URL, &new_request_id(), "/").unwrap();
        let answer = idp_respond(
            dir.path(),
            &issued.redirect_url,
            "eve@acme.test",
            &[],
            variant,
            None,
        );
        let xml = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(&answer.saml_response)
                .unwrap(),
        )
        .unwrap();
        match verify_response(&xml, &idp, &sp, &issued.request_id, None, None, skew) {
            Ok(v) => {
                let name_id = v.assertion.subject.unwrap().name_id.unwrap().value;
                let signed_for = if variant == "comment" {
                    "user@evil.com.example.com"
                } else {
                    "eve@acme.test"
                };
                assert_eq!(name_id, signed_for, "{variant}: only the signed identity");
            }
            Err(e) => assert_ne!(variant, "good", "a good response must verify: {e}"),
        }
    }
}

#[test]
fn cli_sets_and_shows_sso() {
    idp_python();
    let dir = tempfile::tempdir().unwrap();
    let idp_dir = tempfile::tempdir().unwrap();
    make_idp_key(idp_dir.path());
    let good = idp_dir.path().join("idp.xml");
    let bad = idp_dir.path().join("idp-nocert.xml");
    std::fs::write(&good, idp_metadata(idp_dir.path(), true)).unwrap();
    std::fs::write(&bad, idp_metadata(idp_dir.path(), false)).unwrap();
    let (id, _) = crate::common::create_account(dir.path(), "Acme", "support@acme.test");
    let id = id.to_string();

    let shown = crate::common::cli_json(dir.path(), &["sso", "show", "--account", &id, "--json"]);
    assert!(shown["idp"].is_null());
    assert!(shown["acs_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/saml/{id}/acs")));

    let out = std::process::Command::new(crate::common::postern_bin())
        .args(["sso", "set", "--account", &id, "--metadata"])
        .arg(&bad)
        .envs(crate::common::test_env(dir.path(), &[]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no signing certificate"), "{err}");

    let public = [("POSTERN__HTTP__PUBLIC_URL", "https://help.acme.test")];
    let out = std::process::Command::new(crate::common::postern_bin())
        .args(["sso", "set", "--account", &id, "--metadata"])
        .arg(&good)
        .args([
            "--role-attribute",
            "groups",
            "--admin-values",
            "helpdesk-admins,owners",
            "--agent-values",
            "support",
            "--json",
        ])
        .envs(crate::common::test_env(dir.path(), &public))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["sp_entity_id"],
        format!("https://help.acme.test/saml/{id}/metadata")
    );
    assert_eq!(
        v["acs_url"],
        format!("https://help.acme.test/saml/{id}/acs")
    );
    assert_eq!(
        v["sp_metadata_url"],
        format!("https://help.acme.test/saml/{id}/metadata")
    );
    assert_eq!(v["idp"]["entity_id"], IDP_ENTITY_ID);
    assert_eq!(v["idp"]["roles"]["attribute"], "groups");
    assert_eq!(
        v["idp"]["roles"]["admin_values"],
        serde_json::json!(["helpdesk-admins", "owners"])
    );
    assert!(v["idp"]["signing_certificates"][0]
        .as_str()
        .unwrap()
        .contains("idp.test"));

    let text = crate::common::cli(dir.path(), &["sso", "show", "--account", &id]);
    assert!(
        text.contains("ACS URL:") && text.contains("groups"),
        "{text}"
    );
    let out = std::process::Command::new(crate::common::postern_bin())
        .args(["sso", "show", "--account", "99"])
        .envs(crate::common::test_env(dir.path(), &[]))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Rows that single sign-on keeps besides the IdP settings: every `sso_*` table but
/// `sso_providers`, summed (whatever tables the schema has).
async fn sso_rows(f: &Fixture) -> i64 {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sso\\_%' ESCAPE '\\'
         AND name <> 'sso_providers'",
    )
    .fetch_all(f.app.store.pool())
    .await
    .expect("tables");
    let mut rows = 0;
    for t in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(f.app.store.pool())
            .await
            .expect("count");
        rows += n;
    }
    rows
}

/// Issue 19, finding 5: anonymous GET /login used to store a pending request, and 10,050 of
/// them filled the account's cap so that a real user got 503. Now a start stores nothing,
/// one client address is held to `sso.login_rate_limit` with a clear 429, and the real user
/// signs in whatever others did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sign_in_starts_stores_nothing_and_locks_nobody_out() {
    let f = Fixture::start_with(&[
        ("POSTERN__SSO__LOGIN_RATE_LIMIT", "20"),
        ("POSTERN__SSO__LOGIN_RATE_WINDOW", "1h"),
        ("POSTERN__HTTP__TRUSTED_PROXIES", "127.0.0.9"),
    ])
    .await;
    let addr = f.addr();
    let path = format!("/saml/{}/login?return_to=%2F", f.account);
    // 2,000 starts from 100 client addresses, each within its limit: all redirected to the
    // IdP, and nothing is stored for any of them.
    let flood = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut redirected = 0;
            for host in 1..=100u8 {
                let from = std::net::IpAddr::from([127, 0, 1, host]);
                for _ in 0..20 {
                    let r = http_from(Some(from), addr, "GET", &path, &[], b"");
                    assert_eq!(r.status, 303, "start from {from}: {}", r.body);
                    redirected += 1;
                }
            }
            redirected
        })
    };
    assert_eq!(flood.await.expect("flood"), 2000);
    assert_eq!(
        sso_rows(&f).await,
        0,
        "starting a sign-in must store nothing on the server"
    );

    // One address over its limit: 429, Retry-After, a page that says what to do, no cookie
    // and no redirect.
    let attacker = std::net::IpAddr::from([127, 0, 1, 1]);
    let over = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            (0..500)
                .map(|_| http_from(Some(attacker), addr, "GET", &path, &[], b""))
                .collect::<Vec<_>>()
        })
        .await
        .expect("over the limit")
    };
    for r in &over {
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.header("location").is_none());
        assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    }
    let r = &over[0];
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert!(r.body.contains("Too many sign-ins"), "{}", r.body);
    assert!(
        r.body.contains(&format!("Wait {retry} seconds")),
        "{}",
        r.body
    );
    // X-Forwarded-For from a client is its own claim, not a way around its limit...
    let r = http_from(
        Some(attacker),
        addr,
        "GET",
        &path,
        &[("X-Forwarded-For", "198.51.100.77")],
        b"",
    );
    assert_eq!(r.status, 429, "{}", r.body);
    // ...but from the trusted proxy it names the client.
    let r = http_from(
        Some(std::net::IpAddr::from([127, 0, 0, 9])),
        addr,
        "GET",
        &path,
        &[("X-Forwarded-For", "127.0.1.1, 198.51.100.77")],
        b"",
    );
    assert_eq!(r.status, 303, "{}", r.body);

    // The real user, from her own address, signs in as if nothing happened.
    let r = f
        .sign_in(f.account, "real@acme.test", &["role=agent"])
        .assert_status(303);
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &cookie_value(&r), "");
    assert_eq!(
        (s, me["user"]["email"].as_str()),
        (200, Some("real@acme.test"))
    );
    // Only an answered request is remembered (against a second answer), with its assertion.
    let consumed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sso_consumed_requests")
        .fetch_one(f.app.store.pool())
        .await
        .expect("count");
    assert_eq!(consumed, 1);
    assert_eq!(
        sso_rows(&f).await,
        2,
        "one answered request and its assertion"
    );
    f.app.stop().await;
}

/// Issue 19, finding 8: the ACS accepted a valid response from any browser, so a response
/// obtained elsewhere (or an attacker's own, pushed into a victim's browser) signed in. Now
/// it must come with the sign-in cookie that GET /login set in that browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_finishes_only_in_the_browser_that_started_it() {
    let f = Fixture::start().await;
    let acs = format!("/saml/{}/acs", f.account);
    let alice = Browser::new(None);
    let request = f.start_login_in(&alice, f.account, "/tickets");
    let binding = alice.cookie("postern_sso").expect("sign-in cookie");
    let answer = f.respond(&request, "alice@acme.test", &["role=agent"], "good");

    // Without the cookie (a browser that never started it, or one that withheld it).
    let bare = Browser::new(None);
    let r = f.post_acs_in(&bare, &acs, &answer).assert_status(403);
    assert!(
        r.body.contains("did not send the sign-in cookie"),
        "{}",
        r.body
    );
    assert!(r.body.contains("https"), "{}", r.body);
    assert!(session_cookie(&r).is_none());
    // From another browser, with its own sign-in cookie.
    let mallory = Browser::new(None);
    f.start_login_in(&mallory, f.account, "/");
    assert_ne!(mallory.cookie("postern_sso"), Some(binding.clone()));
    let r = f.post_acs_in(&mallory, &acs, &answer).assert_status(403);
    assert!(r.body.contains("started in another browser"), "{}", r.body);
    assert!(session_cookie(&r).is_none());
    // With a made-up value of the right shape.
    let forger = Browser::new(None);
    forger.set_cookie("postern_sso", &"A".repeat(43));
    let r = f.post_acs_in(&forger, &acs, &answer).assert_status(403);
    assert!(r.body.contains("started in another browser"), "{}", r.body);
    assert!(f.user("alice@acme.test").await.is_none());

    // The browser that started it: signed in (the refusals did not use the request up).
    let r = f.post_acs_in(&alice, &acs, &answer).assert_status(303);
    assert_eq!(r.header("location"), Some("/tickets"));
    let (s, me) = f.api_with_cookie("GET", "/api/v1/me", &cookie_value(&r), "");
    assert_eq!(
        (s, me["user"]["email"].as_str()),
        (200, Some("alice@acme.test"))
    );

    // One cookie per browser, kept across sign-ins: two tabs signing in at once both finish.
    let first = f.start_login_in(&alice, f.account, "/a");
    let second = f.start_login_in(&alice, f.account, "/b");
    assert_eq!(alice.cookie("postern_sso"), Some(binding));
    for (request, back) in [(&second, "/b"), (&first, "/a")] {
        let answer = idp_respond(
            f.idp_dir(),
            request,
            "alice@acme.test",
            &["role=agent"],
            "good",
            None,
        );
        let r = f.post_acs_in(&alice, &acs, &answer).assert_status(303);
        assert_eq!(r.header("location"), Some(back));
    }
    f.app.stop().await;
}

/// The cookies' attributes, over plain http (this test server) and over https (a public URL
/// behind a TLS proxy): the sign-in cookie must reach the ACS in the IdP's cross-site POST,
/// the session cookie must not go along with cross-site requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_attributes_over_http_and_https() {
    let f = Fixture::start().await;
    let browser = Browser::new(None);
    let r = browser.request(
        f.addr(),
        "GET",
        &format!("/saml/{}/login", f.account),
        &[],
        b"",
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r.set_cookies();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].starts_with("postern_sso="), "{set:?}");
    for attribute in ["Path=/", "Max-Age=600", "HttpOnly", "SameSite=Lax"] {
        assert!(set[0].contains(attribute), "{attribute}: {set:?}");
    }
    assert!(!set[0].contains("Secure"), "{set:?}");
    f.app.stop().await;

    let f = Fixture::start_with(&[("POSTERN__HTTP__PUBLIC_URL", "https://help.acme.test")]).await;
    let browser = Browser::new(None);
    let request = f.start_login_in(&browser, f.account, "/");
    let binding = browser
        .cookie("__Host-postern_sso")
        .expect("__Host- cookie");
    let answer = f.respond(&request, "https@acme.test", &["role=agent"], "good");
    assert!(
        answer.acs_url.starts_with("https://help.acme.test/"),
        "{}",
        answer.acs_url
    );
    let r = f
        .post_acs_in(&browser, &Fixture::acs_path(&answer), &answer)
        .assert_status(303);
    let session = session_cookie(&r).expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(session.contains(attribute), "{attribute}: {session}");
    }
    // The sign-in cookie as set at the start: cross-site capable, so Secure.
    let again = browser.request(
        f.addr(),
        "GET",
        &format!("/saml/{}/login", f.account),
        &[],
        b"",
    );
    let set = again.set_cookies();
    assert_eq!(
        set,
        vec![format!(
            "__Host-postern_sso={binding}; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=None"
        )]
    );
    // The public origin is the https one: the listener's own address is another site.
    let value = cookie_value(&r);
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &value,
        &[("Origin", "https://help.acme.test")],
        r#"{"role": "agent"}"#,
    );
    assert_eq!(s, 403, "an agent may not create tokens, but may ask: {v}");
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    let origin = f.origin();
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &value,
        &[("Origin", &origin)],
        r#"{"role": "agent"}"#,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("csrf_refused")),
        "{v}"
    );
    f.app.stop().await;
}

/// Issue 19, finding 7: a page of another site could import a message with an admin's
/// session cookie (any content type, no Origin check), and a plain link signed people out.
/// Now every state-changing request made with the session cookie must come from this
/// server (Origin, else Referer) or carry the session's CSRF token; API tokens are not
/// affected; sign-out is a POST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_from_other_sites_are_refused() {
    let f = Fixture::start().await;
    let session = cookie_value(
        &f.sign_in(f.account, "admin@acme.test", &["role=admin"])
            .assert_status(303),
    );
    let cookie = format!("postern_session={session}");
    let origin = f.origin();
    let bearer = format!("Bearer {}", f.token(f.account, Role::Admin));
    let eml = b"From: Attacker <a@evil.test>\r\nTo: support@acme.test\r\n\
        Subject: planted\r\nMessage-ID: <planted-1@evil.test>\r\n\
        Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\r\nI was never sent to you.\r\n";
    let upload = "/api/v1/imports/upload?kind=eml";
    let jobs = || async {
        let r = http(
            f.addr(),
            "GET",
            "/api/v1/imports",
            &[("Authorization", &bearer)],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        v["items"].as_array().expect("items").len()
    };
    let refused = |r: &HttpResponse, says: &str| {
        assert_eq!(r.status, 403, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON error");
        assert_eq!(v["error"]["code"], "csrf_refused", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{says:?} not in {message}");
    };

    // The attack as it was: a form of another site posting text/plain with the cookie, and
    // the same without any Origin or Referer.
    // (headers besides the cookie, what the refusal must name)
    let attacks: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("Content-Type", "text/plain"),
                ("Origin", "https://evil.example"),
            ],
            "sent from https://evil.example",
        ),
        (
            &[
                ("Content-Type", "multipart/form-data; boundary=x"),
                ("Referer", "https://evil.example/page"),
            ],
            "sent from https://evil.example",
        ),
        (
            &[("Content-Type", "application/octet-stream")],
            "neither an Origin nor a Referer",
        ),
        (&[("Origin", "null")], "sent from \"null\""),
        (&[("X-CSRF-Token", "forged")], "is not this session's"),
    ];
    for (extra, says) in attacks {
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        refused(&http(f.addr(), "POST", upload, &headers, eml), says);
    }
    refused(
        &http(
            f.addr(),
            "POST",
            upload,
            &[("Cookie", &cookie), ("Origin", "https://evil.example")],
            eml,
        ),
        "https://evil.example",
    );
    assert_eq!(jobs().await, 0, "no refused upload may start a job");

    // From this server's pages: accepted.
    let r = http(
        f.addr(),
        "POST",
        upload,
        &[("Cookie", &cookie), ("Origin", &origin)],
        eml,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let job: serde_json::Value = serde_json::from_str(&r.body).expect("job");
    let id = job["id"].as_i64().expect("job id");
    // A bearer-token call needs no Origin (once the first job is over).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let r = http(
            f.addr(),
            "GET",
            &format!("/api/v1/imports/{id}"),
            &[("Authorization", &bearer)],
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("job");
        if !["queued", "running"].contains(&v["status"].as_str().unwrap_or_default()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} did not end: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = http(
        f.addr(),
        "POST",
        upload,
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/octet-stream"),
        ],
        b"From: Dana <dana@customer.test>\r\nTo: support@acme.test\r\nSubject: old\r\n\
          Message-ID: <old-1@customer.test>\r\n\r\nold mail\r\n",
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(jobs().await, 2);

    // Other JSON calls alike: a foreign Origin is refused, a Referer of ours or the
    // session's token (no Origin, no Referer) is accepted, another session's token is not.
    let body = r#"{"role": "agent", "name": "from a page"}"#;
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &session,
        &[("Origin", "https://evil.example")],
        body,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("csrf_refused")),
        "{v}"
    );
    let referer = format!("{origin}/tickets/1");
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &session,
        &[("Referer", &referer)],
        body,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = f.api_with_cookie_and("GET", "/api/v1/csrf-token", &session, &[], "");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["header"], "X-CSRF-Token");
    let token = v["token"].as_str().expect("token").to_string();
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &session,
        &[("X-CSRF-Token", &token)],
        body,
    );
    assert_eq!(s, 201, "{v}");
    let other = cookie_value(
        &f.sign_in(f.account, "other@acme.test", &["role=admin"])
            .assert_status(303),
    );
    let (s, v) = f.api_with_cookie_and(
        "POST",
        "/api/v1/tokens",
        &other,
        &[("X-CSRF-Token", &token)],
        body,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("csrf_refused")),
        "{v}"
    );
    let (s, v) = f.api_with_cookie_and(
        "PATCH",
        "/api/v1/tickets/1",
        &session,
        &[("Origin", "https://evil.example")],
        r#"{"status": "closed"}"#,
    );
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("csrf_refused")),
        "{v}"
    );
    // Bearer calls need no token and no Origin; the token endpoint says so.
    let r = http(
        f.addr(),
        "GET",
        "/api/v1/csrf-token",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert!(v["token"].is_null(), "{v}");

    // Sign-out: a GET (a link, an image) shows a button and changes nothing.
    let logout = format!("/saml/{}/logout", f.account);
    let r = http(f.addr(), "GET", &logout, &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"<form method="post""#), "{}", r.body);
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &session, "");
    assert_eq!(s, 200, "a GET must not sign out");
    // A POST from another site: refused, with a page for the browser.
    let r = http(
        f.addr(),
        "POST",
        &logout,
        &[
            ("Cookie", &cookie),
            ("Origin", "https://evil.example"),
            ("Accept", "text/html"),
        ],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("<html"), "{}", r.body);
    assert!(r.body.contains("https://evil.example"), "{}", r.body);
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &session, "");
    assert_eq!(s, 200, "a cross-site POST must not sign out");
    // The button of our page: signed out.
    let r = http(
        f.addr(),
        "POST",
        &logout,
        &[("Cookie", &cookie), ("Origin", &origin)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.set_cookies().iter().any(|c| c.contains("Max-Age=0")));
    let (s, _) = f.api_with_cookie("GET", "/api/v1/me", &session, "");
    assert_eq!(s, 401);
    f.app.stop().await;
}

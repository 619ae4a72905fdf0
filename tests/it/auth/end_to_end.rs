//! Sender authentication end to end: a loopback DNS server serves the test zones, dkimpy
//! (independent of Postern) signs as the customer's domain and seals as a forwarder, and the
//! messages reach Postern over SMTP. Verdicts, spoof flags and the strict mode come out as the
//! policy in the README says.

use crate::common::dns::{TestDns, Zone};
use crate::common::*;
use postern::domain::{AccountId, Scope, TicketId};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Keys {
    _dir: tempfile::TempDir,
    customer: PathBuf,
    customer_pub: String,
    google: PathBuf,
    google_pub: String,
    evil: PathBuf,
    evil_pub: String,
}

fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status();
    assert!(
        ok.map(|s| s.success()).unwrap_or(false),
        "openssl is needed to make test keys (make test installs it)"
    );
    let der = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let b64 = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&der.stdout)?;
            c.wait_with_output()
        });
    (key, String::from_utf8(b64.unwrap().stdout).unwrap())
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (customer, customer_pub) = keypair(dir.path(), "customer");
    let (google, google_pub) = keypair(dir.path(), "google");
    let (evil, evil_pub) = keypair(dir.path(), "evil");
    Keys {
        _dir: dir,
        customer,
        customer_pub,
        google,
        google_pub,
        evil,
        evil_pub,
    }
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("build/venv/bin/python");
    assert!(p.is_file(), "the Python test peers are missing at {}: run `make test` (it creates the venv with dkimpy)", p.display());
    p
}

/// Runs tests/peers/mail_hop.py.
fn hop(args: &[&str], input: &[u8]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mail_hop.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mail_hop {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `message` DKIM-signed (dkimpy) by `domain`, selector s1, with `key`; `extra` are more
/// mail_hop.py arguments (an --algorithm).
fn signed_by(domain: &str, key: &Path, extra: &[&str], message: &[u8]) -> Vec<u8> {
    let key = key.to_str().expect("key path");
    let mut args = vec!["sign", "--domain", domain, "--selector", "s1", "--key", key];
    args.extend_from_slice(extra);
    hop(&args, message)
}

/// `message` forwarded by `domain`: `footer` added to the body and an ARC set (selector arc,
/// signed with `key`, authserv-id mx.`domain`); `extra` are more mail_hop.py arguments.
fn forwarded_by(domain: &str, key: &Path, footer: &str, extra: &[&str], message: &[u8]) -> Vec<u8> {
    let key = key.to_str().expect("key path");
    let authserv_id = format!("mx.{domain}");
    let mut args = vec![
        "forward",
        "--domain",
        domain,
        "--selector",
        "arc",
        "--key",
        key,
    ];
    args.extend_from_slice(&["--authserv-id", &authserv_id, "--footer", footer]);
    args.extend_from_slice(extra);
    hop(&args, message)
}

/// ORIGINAL as customer.test signs it (dkimpy), with `algorithm` (rsa-sha256 or rsa-sha1).
fn signed_by_customer(k: &Keys, algorithm: &str) -> Vec<u8> {
    signed_by(
        "customer.test",
        &k.customer,
        &["--algorithm", algorithm],
        ORIGINAL.as_bytes(),
    )
}

fn zone(k: &Keys) -> Zone {
    Zone::default()
        .txt("customer.test", "v=spf1 ip4:192.0.2.10 -all")
        .txt("_dmarc.customer.test", "v=DMARC1; p=reject")
        .txt(
            "s1._domainkey.customer.test",
            &format!("v=DKIM1; k=rsa; p={}", k.customer_pub),
        )
        .txt(
            "arc._domainkey.google.com",
            &format!("v=DKIM1; k=rsa; p={}", k.google_pub),
        )
        .txt(
            "arc._domainkey.evil.test",
            &format!("v=DKIM1; k=rsa; p={}", k.evil_pub),
        )
        .txt("quarantine.test", "v=spf1 -all")
        .txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine")
        .txt("lenient.test", "v=spf1 ?all")
        .txt("_dmarc.lenient.test", "v=DMARC1; p=none")
}

const ORIGINAL: &str = "From: Ana <ana@customer.test>\r\nTo: support@acme.test\r\nSubject: Order 77\r\nDate: Mon, 16 Nov 2026 10:00:00 +0000\r\nMessage-ID: <o77@customer.test>\r\n\r\nWhere is my order 77?\r\n";

async fn app_with_dns(dns: &TestDns) -> TestApp {
    let ns = dns.addr.to_string();
    spawn_app(&[
        ("POSTERN__AUTH__ENABLED", "true"),
        ("POSTERN__DNS__NAMESERVERS", &ns),
        ("POSTERN__DNS__TIMEOUT", "1s"),
    ])
    .await
}

/// The test zones on a loopback DNS server, and a server using it with the account Acme:
/// (dns, app, account id, forwarding address); the DNS server stops when `dns` is dropped.
async fn acme_with_dns(k: &Keys) -> (TestDns, TestApp, i64, String) {
    let dns = TestDns::start(zone(k)).await;
    let app = app_with_dns(&dns).await;
    let (account, fwd) = app.account("Acme", "support@acme.test").await;
    (dns, app, account, fwd)
}

/// Sends bytes exactly (BDAT) from `mail_from`; returns the final reply.
async fn send(app: &TestApp, mail_from: &str, fwd: &str, raw: Vec<u8>) -> SmtpReply {
    app.smtp_send_exact("mail.sender.test", mail_from, fwd, raw)
        .await
}

/// Delivers `raw` (asserting 250) and reads back the last message of the account's newest
/// ticket: see [`last_message`].
async fn deliver_and_read(
    app: &TestApp,
    account: i64,
    mail_from: &str,
    fwd: &str,
    raw: Vec<u8>,
) -> (postern::store::TicketDetail, serde_json::Value) {
    let r = send(app, mail_from, fwd, raw).await;
    assert_eq!(r.code, 250, "{}", r.text);
    last_message(app, account).await
}

/// Asserts that a verdict's reason says `words`.
fn assert_reason_contains(verdict: &serde_json::Value, words: &str) {
    assert!(
        verdict["reason"]
            .as_str()
            .is_some_and(|r| r.contains(words)),
        "{verdict}"
    );
}

async fn last_message(
    app: &TestApp,
    account: i64,
) -> (postern::store::TicketDetail, serde_json::Value) {
    let tickets = app.store.tickets(AccountId(account), None).await.unwrap();
    let t = app.ticket_detail(tickets[0].id, Scope::Operator).await;
    let auth = t
        .messages
        .last()
        .unwrap()
        .auth_results
        .clone()
        .expect("verdicts stored");
    (t, auth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mail_passes_dmarc_through_dkim_even_when_spf_fails() {
    let k = keys();
    let (_dns, app, account, fwd) = acme_with_dns(&k).await;
    let signed = signed_by_customer(&k, "rsa-sha256");
    let (t, auth) = deliver_and_read(&app, account, "ana@customer.test", &fwd, signed).await;
    let v = &auth["verdicts"];
    assert_eq!(v["dkim"][0]["result"], "pass", "{v}");
    assert_eq!(v["dkim"][0]["domain"], "customer.test");
    assert_eq!(
        v["spf_mail_from"]["result"], "fail",
        "127.0.0.1 is not in customer.test's SPF"
    );
    assert_eq!(v["dmarc"]["result"], "pass");
    assert_eq!(v["dmarc"]["policy"], "reject");
    assert_eq!(auth["policy"]["authenticated_domain"], "customer.test");
    assert_eq!(auth["policy"]["spoof_suspected"], false);
    assert!(t.ticket.flags.is_empty());
    assert!(v["header"].as_str().unwrap().contains("dkim=pass"));
    // The copy agents download carries the Authentication-Results header; the original stays as received.
    let id = t.messages[0].id;
    let download = app
        .store
        .raw_message_for_download(id, AccountId(account))
        .await
        .unwrap();
    assert!(
        download.starts_with(b"Authentication-Results: mx.postern.test;"),
        "{}",
        String::from_utf8_lossy(&download[..80])
    );
    let original = app.store.raw_message(id, AccountId(account)).await.unwrap();
    assert!(original.starts_with(b"DKIM-Signature:"));
    app.stop().await;
}

/// RFC 8301 3.1: rsa-sha1 signatures must not be considered valid. A DKIM signature with a
/// good rsa-sha1 signature is a permerror, left out of DMARC; an ARC chain sealed with
/// rsa-sha1, even by a trusted forwarder, vouches for nothing. The signatures come from
/// dkimpy, and the stored Authentication-Results header says the same as the verdicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_sha1_signatures_and_seals_are_refused() {
    let k = keys();
    let (dns, app, account, fwd) = acme_with_dns(&k).await;
    let sha1 = signed_by_customer(&k, "rsa-sha1");
    assert!(
        String::from_utf8_lossy(&sha1).contains("a=rsa-sha1"),
        "dkimpy signed with SHA-1"
    );
    let (t, auth) = deliver_and_read(&app, account, "ana@customer.test", &fwd, sha1).await;
    let v = &auth["verdicts"];
    assert_eq!(v["dkim"][0]["result"], "permerror", "{v}");
    assert_eq!(v["dkim"][0]["domain"], "customer.test", "{v}");
    assert_reason_contains(&v["dkim"][0], "RFC 8301");
    assert_eq!(v["dmarc"]["dkim_aligned"], false, "{v}");
    assert_eq!(v["dmarc"]["result"], "fail", "SPF fails too: {v}");
    let header = v["header"].as_str().unwrap();
    assert!(
        header.contains("dkim=permerror (unsupported algorithm)") && !header.contains("dkim=pass"),
        "{header}"
    );
    assert_eq!(auth["policy"]["spoof_suspected"], true, "{auth}");
    assert_eq!(t.ticket.flags, vec!["spoof_suspected"]);

    // The same message forwarded by Google (trusted) with an rsa-sha1 ARC set, to another
    // server (the first one would take it as a duplicate).
    let app2 = app_with_dns(&dns).await;
    let (account2, fwd2) = app2.account("Acme", "support@acme.test").await;
    let via_google = forwarded_by(
        "google.com",
        &k.google,
        "-- forwarded by the shop's Gmail",
        &["--algorithm", "rsa-sha1"],
        &signed_by_customer(&k, "rsa-sha256"),
    );
    let (t, auth) = deliver_and_read(
        &app2,
        account2,
        "support+caf_=fwd@acme.test",
        &fwd2,
        via_google,
    )
    .await;
    let v = &auth["verdicts"];
    assert_eq!(v["arc"]["result"], "fail", "{v}");
    assert_reason_contains(&v["arc"], "rsa-sha1");
    let header = v["header"].as_str().unwrap();
    assert!(
        header.contains("arc=fail") && !header.contains("arc=pass"),
        "{header}"
    );
    assert!(auth["policy"]["via_trusted_arc"].is_null(), "{auth}");
    assert_eq!(auth["policy"]["spoof_suspected"], true, "{auth}");
    assert_eq!(t.ticket.flags, vec!["spoof_suspected"]);
    app.stop().await;
    app2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_mail_is_flagged_and_never_joins_the_real_customers_ticket() {
    let k = keys();
    let (_dns, app, account, fwd) = acme_with_dns(&k).await;
    let signed = signed_by_customer(&k, "rsa-sha256");
    assert_eq!(
        send(&app, "ana@customer.test", &fwd, signed).await.code,
        250
    );
    let real = app.store.tickets(AccountId(account), None).await.unwrap()[0].id;
    // Eve writes "as Ana", replying into Ana's conversation, without a signature.
    let forged = "From: Ana <ana@customer.test>\r\nTo: support@acme.test\r\nSubject: Re: Order 77\r\nMessage-ID: <forged-1@evil.test>\r\nIn-Reply-To: <o77@customer.test>\r\n\r\nPlease change my delivery address to 1 Evil Street.\r\n";
    let r = send(&app, "bounce@evil.test", &fwd, forged.as_bytes().to_vec()).await;
    assert_eq!(r.code, 250, "a spoof is flagged, not refused: {}", r.text);
    let tickets = app.store.tickets(AccountId(account), None).await.unwrap();
    assert_eq!(tickets.len(), 2);
    let flagged = tickets.iter().find(|t| t.id != real).unwrap();
    assert_eq!(flagged.flags, vec!["spoof_suspected"]);
    let t = app.ticket_detail(flagged.id, Scope::Operator).await;
    let auth = t.messages[0].auth_results.clone().unwrap();
    assert_eq!(auth["verdicts"]["dmarc"]["result"], "fail");
    assert_eq!(auth["policy"]["spoof_suspected"], true);
    assert_eq!(t.messages[0].thread_reason, "spoof_suspected");
    app.stop().await;
}

/// Every inbound message of the account, with whether DMARC proved its sender.
async fn stored_messages(app: &TestApp, account: i64) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for t in app.store.tickets(AccountId(account), None).await.unwrap() {
        for m in app
            .store
            .ticket(TicketId(t.id), Scope::Operator)
            .await
            .unwrap()
            .messages
        {
            let auth = m.auth_results.clone().unwrap_or_default();
            out.push((
                m.text.clone().unwrap_or_default().trim().to_string(),
                auth["policy"]["authenticated_domain"] == "customer.test",
            ));
        }
    }
    out.sort();
    out
}

/// Issue 19, finding 9: a spoof sent first under the real message's Message-ID and From must
/// not make the real message a "duplicate" that is acknowledged and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoof_under_the_same_message_id_does_not_get_the_real_message_dropped() {
    let k = keys();
    let (_dns, app, account, fwd) = acme_with_dns(&k).await;
    // Eve guesses the Message-ID of Ana's next message and sends first, another body.
    let spoof = ORIGINAL.replace(
        "Where is my order 77?",
        "Please send the refund to IBAN XX00 EVIL.",
    );
    let r = send(&app, "bounce@evil.test", &fwd, spoof.into_bytes()).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let real = signed_by_customer(&k, "rsa-sha256");
    let r = send(&app, "ana@customer.test", &fwd, real.clone()).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(
        stored_messages(&app, account).await,
        vec![
            (
                "Please send the refund to IBAN XX00 EVIL.".to_string(),
                false
            ),
            ("Where is my order 77?".to_string(), true),
        ],
        "the real message is stored beside the spoof"
    );
    // The real message again (a retry) is a duplicate: stored once.
    let r = send(&app, "ana@customer.test", &fwd, real).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(stored_messages(&app, account).await.len(), 2);
    app.stop().await;
}

/// Even a spoof that copies the body exactly does not win over the authenticated message;
/// an unauthenticated copy after the authenticated one is a plain duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_message_is_never_dropped_for_an_unauthenticated_copy() {
    let k = keys();
    let (_dns, app, account, fwd) = acme_with_dns(&k).await;
    let r = send(&app, "bounce@evil.test", &fwd, ORIGINAL.as_bytes().to_vec()).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let real = signed_by_customer(&k, "rsa-sha256");
    let r = send(&app, "ana@customer.test", &fwd, real).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let stored = stored_messages(&app, account).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(
        stored.iter().any(|(_, authenticated)| *authenticated),
        "{stored:?}"
    );
    // The unsigned copy once more: the same message as a stored one, nothing new.
    let r = send(&app, "bounce@evil.test", &fwd, ORIGINAL.as_bytes().to_vec()).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(stored_messages(&app, account).await.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_mail_is_vouched_for_by_a_trusted_arc_seal_only() {
    let k = keys();
    let (dns, app, account, fwd) = acme_with_dns(&k).await;
    let signed = signed_by_customer(&k, "rsa-sha256");
    // Gmail forwards it: the footer breaks the original DKIM body hash; the ARC seal says
    // DMARC passed when Gmail received it.
    let via_google = forwarded_by(
        "google.com",
        &k.google,
        "-- forwarded by the shop's Gmail",
        &[],
        &signed,
    );
    let (t, auth) = deliver_and_read(
        &app,
        account,
        "support+caf_=fwd@acme.test",
        &fwd,
        via_google,
    )
    .await;
    let v = &auth["verdicts"];
    // The footer broke the body hash: mail-auth reports that as neutral (RFC 6376 allows it).
    let dkim = &v["dkim"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == "customer.test")
        .unwrap()["result"];
    assert!(dkim == "neutral" || dkim == "fail", "{v}");
    assert_eq!(v["dmarc"]["result"], "fail", "{v}");
    assert!(
        v["header"].as_str().unwrap().contains("dmarc=fail"),
        "the header agrees: {v}"
    );
    assert_eq!(v["arc"]["result"], "pass", "{v}");
    assert_eq!(v["arc"]["sealers"], serde_json::json!(["google.com"]));
    assert_eq!(auth["policy"]["via_trusted_arc"], "google.com");
    assert_eq!(auth["policy"]["authenticated_domain"], "customer.test");
    assert!(t.ticket.flags.is_empty(), "{:?}", t.ticket.flags);

    // The same made-up story sealed by an untrusted domain convinces nobody.
    let app2 = app_with_dns(&dns).await;
    let (account2, fwd2) = app2.account("Acme", "support@acme.test").await;
    let via_evil = forwarded_by("evil.test", &k.evil, "-- x", &[], &signed);
    assert_eq!(
        send(&app2, "relay@evil.test", &fwd2, via_evil).await.code,
        250
    );
    let (t2, auth2) = last_message(&app2, account2).await;
    assert_eq!(auth2["verdicts"]["arc"]["result"], "pass");
    assert_eq!(auth2["policy"]["spoof_suspected"], true);
    assert_eq!(t2.ticket.flags, vec!["spoof_suspected"]);
    app.stop().await;
    app2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_refuses_direct_dmarc_reject_failures_only() {
    let k = keys();
    let (_dns, app, account, fwd) = acme_with_dns(&k).await;
    cli(
        app.dir.path(),
        &[
            "account",
            "policy",
            &account.to_string(),
            "--strict-dmarc",
            "true",
        ],
    );
    let forged = "From: Ana <ana@customer.test>\r\nTo: support@acme.test\r\nSubject: pay here\r\nMessage-ID: <f2@x>\r\n\r\nx\r\n";
    // Direct: the envelope sender is the From domain itself.
    let r = send(&app, "ana@customer.test", &fwd, forged.as_bytes().to_vec()).await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(
        r.text.contains("5.7.1") && r.text.contains("customer.test"),
        "{}",
        r.text
    );
    // Forwarded (another envelope domain): flagged, not refused.
    let r = send(
        &app,
        "fwd@forwarder.test",
        &fwd,
        forged.replace("<f2@x>", "<f3@x>").into_bytes(),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // p=quarantine: flagged, never refused (strict mode is about p=reject only).
    let q = "From: Quinn <q@quarantine.test>\r\nSubject: hello\r\nMessage-ID: <q1@x>\r\n\r\nx\r\n";
    assert_eq!(
        send(&app, "q@quarantine.test", &fwd, q.as_bytes().to_vec())
            .await
            .code,
        250
    );
    // p=none domains are never refused nor flagged.
    let lenient = "From: Bob <bob@lenient.test>\r\nSubject: hi\r\nMessage-ID: <l1@x>\r\n\r\nx\r\n";
    assert_eq!(
        send(&app, "bob@lenient.test", &fwd, lenient.as_bytes().to_vec())
            .await
            .code,
        250
    );
    let tickets = app.store.tickets(AccountId(account), None).await.unwrap();
    assert_eq!(tickets.len(), 3);
    let quinn = tickets
        .iter()
        .find(|t| t.customer.as_deref() == Some("q@quarantine.test"))
        .unwrap();
    assert_eq!(quinn.flags, vec!["spoof_suspected"]);
    let bob = tickets
        .iter()
        .find(|t| t.customer.as_deref() == Some("bob@lenient.test"))
        .unwrap();
    assert!(bob.flags.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_server_that_never_answers_gives_temperror_in_bounded_time() {
    let k = keys();
    let dns = TestDns::start(
        zone(&k)
            .timeout("slow.test")
            .timeout("_dmarc.slow.test")
            .timeout("s1._domainkey.slow.test"),
    )
    .await;
    let app = app_with_dns(&dns).await;
    let (account, fwd) = app.account("Acme", "support@acme.test").await;
    let msg = signed_by(
        "slow.test",
        &k.evil,
        &[],
        b"From: Sam <sam@slow.test>\r\nSubject: slow\r\nMessage-ID: <s1@slow.test>\r\n\r\nx\r\n",
    );
    let started = Instant::now();
    let r = send(&app, "sam@slow.test", &fwd, msg).await;
    let took = started.elapsed();
    assert_eq!(r.code, 250, "a DNS failure never rejects: {}", r.text);
    // Each lookup costs at most dns.timeout (1 s); the lookups of one message run side by side.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let (_, auth) = last_message(&app, account).await;
    let v = &auth["verdicts"];
    assert_eq!(v["spf_mail_from"]["result"], "temperror", "{v}");
    assert_eq!(v["dkim"][0]["result"], "temperror", "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_command_explains_each_verdict() {
    let k = keys();
    let dns = TestDns::start(zone(&k)).await;
    let dir = tempfile::tempdir().unwrap();
    let signed = signed_by_customer(&k, "rsa-sha256");
    let file = dir.path().join("m.eml");
    std::fs::write(&file, &signed).unwrap();
    let ns = dns.addr.to_string();
    let data = dir.path().to_path_buf();
    let run = move |json: bool| {
        let mut cmd = Command::new(postern_bin());
        cmd.args([
            "verify",
            file.to_str().unwrap(),
            "--ip",
            "192.0.2.10",
            "--helo",
            "mail.customer.test",
            "--mail-from",
            "ana@customer.test",
        ])
        .envs(test_env(&data, &[("POSTERN__DNS__NAMESERVERS", &ns)]));
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run(true), run(false)))
        .await
        .unwrap();
    assert!(
        out.0.status.success(),
        "{}",
        String::from_utf8_lossy(&out.0.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.0.stdout).unwrap();
    assert_eq!(v["verdicts"]["spf_mail_from"]["result"], "pass");
    assert_eq!(v["verdicts"]["dkim"][0]["result"], "pass");
    assert_eq!(v["verdicts"]["dmarc"]["result"], "pass");
    let text = String::from_utf8_lossy(&out.1.stdout);
    assert!(text.starts_with("Authentication-Results: "), "{text}");
    assert!(
        text.contains("dmarc          pass") && text.contains("customer.test authenticated"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_confirmation_counts_only_when_google_signed_it() {
    let k = keys();
    let dns = TestDns::start(zone(&k).txt(
        "s1._domainkey.google.com",
        &format!("v=DKIM1; k=rsa; p={}", k.google_pub),
    ))
    .await;
    let app = app_with_dns(&dns).await;
    let (account, fwd) = app.account("Brand", "support@brand.test").await;
    let confirmation = format!(
        "From: Gmail Team <forwarding-noreply@google.com>\r\nTo: {fwd}\r\nSubject: (#5550123) Gmail Forwarding Confirmation - Receive Mail from support@brand.test\r\nDate: Mon, 16 Nov 2026 10:00:00 +0000\r\nMessage-ID: <c1@google.com>\r\n\r\nsupport@brand.test has requested to automatically forward mail to your email\r\naddress {fwd}.\r\nConfirmation code: 5550123\r\n\r\nhttps://mail-settings.google.com/mail/vf-%5BX%5D-Y\r\n"
    );
    // Forged: not signed by google.com. It becomes a normal (flagged) ticket; no code is stored.
    assert_eq!(
        send(
            &app,
            "forwarding-noreply@google.com",
            &fwd,
            confirmation.clone().into_bytes()
        )
        .await
        .code,
        250
    );
    let shown = cli_json(
        app.dir.path(),
        &["account", "show", &account.to_string(), "--json"],
    );
    assert!(
        shown["support_addresses"][0]["confirmation_code"].is_null(),
        "{shown}"
    );
    assert_eq!(app.ticket_count(account).await, 1);
    // Signed by google.com: the code is stored, no ticket.
    let signed = signed_by(
        "google.com",
        &k.google,
        &[],
        confirmation
            .replace("<c1@google.com>", "<c2@google.com>")
            .as_bytes(),
    );
    assert_eq!(
        send(&app, "forwarding-noreply@google.com", &fwd, signed)
            .await
            .code,
        250
    );
    let shown = cli_json(
        app.dir.path(),
        &["account", "show", &account.to_string(), "--json"],
    );
    assert_eq!(
        shown["support_addresses"][0]["confirmation_code"],
        "5550123"
    );
    assert_eq!(app.ticket_count(account).await, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_spf_record_cannot_take_the_session_down() {
    // mail-auth computes the mask of "/0" by an overflowing shift (a panic in debug builds):
    // the panic is caught around the verification, so the message is still stored, with
    // verdicts.
    let k = keys();
    let dns = TestDns::start(zone(&k).txt("zero.test", "v=spf1 ip4:10.0.0.0/0 -all")).await;
    let app = app_with_dns(&dns).await;
    let (account, fwd) = app.account("Acme", "support@acme.test").await;
    let msg = "From: z@zero.test\r\nSubject: zero\r\nMessage-ID: <z0@zero.test>\r\n\r\nx\r\n";
    let (_, auth) =
        deliver_and_read(&app, account, "z@zero.test", &fwd, msg.as_bytes().to_vec()).await;
    assert!(auth["verdicts"]["spf_mail_from"]["result"].is_string());
    // The server is still serving.
    let again = send(
        &app,
        "z@zero.test",
        &fwd,
        msg.replace("<z0@", "<z1@").into_bytes(),
    )
    .await;
    assert_eq!(again.code, 250);
    app.stop().await;
}

/// An authenticator that asks only `dns`.
fn authenticator_on(dns: &TestDns) -> postern::auth::Authenticator {
    postern::auth::Authenticator::new(
        &[dns.addr.to_string()],
        Duration::from_secs(2),
        256,
        "mx.postern.test",
    )
    .expect("authenticator")
}

/// What the SMTP session saw of a client at 192.0.2.1.
fn facts_from<'a>(helo: &'a str, mail_from: &'a str) -> postern::auth::SmtpFacts<'a> {
    postern::auth::SmtpFacts {
        ip: "192.0.2.1".parse().unwrap(),
        helo,
        mail_from: Some(mail_from),
    }
}

/// A sender domain without SPF or DMARC is not asked about again for every message: the
/// NXDOMAIN answers (with the zone's SOA) are cached for their negative TTL.
#[tokio::test]
async fn missing_records_are_not_looked_up_again_for_every_message() {
    let dns =
        TestDns::start(Zone::new().a("mx.elsewhere.test", "192.0.2.9".parse().unwrap())).await;
    let auth = authenticator_on(&dns);
    let raw = b"From: Ana <ana@nothing.test>\r\nTo: support@acme.test\r\nSubject: hi\r\nMessage-ID: <n1@nothing.test>\r\n\r\nhello\r\n";
    let facts = facts_from("client.nothing.test", "ana@nothing.test");
    let first = auth.verify(raw, &facts).await;
    let asked = dns.queries_for("nothing.test") + dns.queries_for("_dmarc.nothing.test");
    assert!(asked >= 2, "SPF and DMARC were looked up: {asked}");
    let second = auth.verify(raw, &facts).await;
    let again = dns.queries_for("nothing.test") + dns.queries_for("_dmarc.nothing.test");
    assert_eq!(again, asked, "the NXDOMAIN answers were not cached");
    assert_eq!(first.spf_mail_from.result, "none");
    assert_eq!(second.spf_mail_from.result, first.spf_mail_from.result);
    assert_eq!(second.dmarc.result, first.dmarc.result);
}

/// A name without SPF or DMARC is remembered as such for the zone's negative TTL only: once
/// it is over, a record published meanwhile is found.
#[tokio::test]
async fn a_missing_record_is_remembered_for_the_negative_ttl_only() {
    const NEGATIVE_TTL: u32 = 2;
    let dns = TestDns::start(Zone::new().negative_ttl(NEGATIVE_TTL)).await;
    let auth = authenticator_on(&dns);
    let raw = b"From: Ana <ana@later.test>\r\nTo: support@acme.test\r\nSubject: hi\r\nMessage-ID: <l1@later.test>\r\n\r\nhello\r\n";
    let facts = facts_from("client.later.test", "ana@later.test");
    let before = auth.verify(raw, &facts).await;
    assert_eq!(before.spf_mail_from.result, "none");
    assert_eq!(before.dmarc.result, "none");
    for name in [
        "later.test",
        "client.later.test",
        "_dmarc.later.test",
        "_dmarc.test",
    ] {
        assert!(auth.remembers_absent_txt(name), "{name} is not remembered");
    }
    assert!(!auth.remembers_absent_txt("never.asked.test"));

    dns.set(
        Zone::new()
            .txt("later.test", "v=spf1 ip4:192.0.2.1 -all")
            .txt("_dmarc.later.test", "v=DMARC1; p=reject"),
    );
    tokio::time::sleep(Duration::from_millis(u64::from(NEGATIVE_TTL) * 1000 + 1500)).await;
    assert!(
        !auth.remembers_absent_txt("later.test"),
        "kept past its TTL"
    );
    let after = auth.verify(raw, &facts).await;
    assert_eq!(after.spf_mail_from.result, "pass");
    assert_eq!(after.dmarc.result, "pass");
    assert!(!auth.remembers_absent_txt("_dmarc.later.test"));
}

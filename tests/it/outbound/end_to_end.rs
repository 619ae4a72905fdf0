//! Outbound mail end to end, against real peers: Postfix's smtp-sink as the receiving MTA
//! (MX mode, with MX records from the loopback DNS server, and relay mode), dkimpy checking
//! the delivered bytes against the records published on that DNS server, scripted SMTP
//! servers for the failure cases (451 twice then 250, 550, a connection dropped mid-DATA,
//! a server that stalls while `postern serve` is killed), and the customer's answer and a
//! DSN coming back through SMTP into the same ticket.

use crate::common::api::Api;
use crate::common::dns::{TestDns, Zone};
use crate::common::outbound::*;
use crate::common::*;
use postern::domain::{AccountId, Scope, TicketId};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Peers

/// What a scripted SMTP server does on one connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Accept,
    /// 451 4.3.0 at the end of DATA.
    TempFailData,
    /// 550 5.1.1 to RCPT.
    RejectRcpt,
    /// Reads part of the message after 354, then closes the connection.
    DropMidData,
    /// Reads the message and never answers.
    Stall,
    /// Reads the message, waits until the test opens the gate, then accepts it.
    Gated,
}

#[derive(Default)]
struct PeerLog {
    connections: Vec<Instant>,
    /// Every RCPT TO line received, as sent.
    rcpts: Vec<String>,
    accepted: Vec<Vec<u8>>,
    data_started: usize,
    gate_open: bool,
}

/// A small SMTP server playing `script` (one step per connection; the last one repeats).
struct Peer {
    port: u16,
    log: Arc<Mutex<PeerLog>>,
}

impl Peer {
    fn start(script: Vec<Step>) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(PeerLog::default()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let step = script[n.min(script.len() - 1)];
                shared.lock().unwrap().connections.push(Instant::now());
                let log = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, step, &log);
                });
            }
        });
        Peer { port, log }
    }

    fn connections(&self) -> Vec<Instant> {
        self.log.lock().unwrap().connections.clone()
    }

    fn accepted(&self) -> Vec<Vec<u8>> {
        self.log.lock().unwrap().accepted.clone()
    }

    fn rcpts(&self) -> Vec<String> {
        self.log.lock().unwrap().rcpts.clone()
    }

    fn data_started(&self) -> usize {
        self.log.lock().unwrap().data_started
    }

    fn open_gate(&self) {
        self.log.lock().unwrap().gate_open = true;
    }
}

fn serve(stream: TcpStream, step: Step, log: &Mutex<PeerLog>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 peer.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
            w.write_all(b"250-peer.test\r\n250 8BITMIME\r\n")?;
        } else if cmd.starts_with("MAIL") {
            w.write_all(b"250 2.1.0 ok\r\n")?;
        } else if cmd.starts_with("RCPT") {
            log.lock().unwrap().rcpts.push(line.trim_end().to_string());
            if step == Step::RejectRcpt {
                w.write_all(b"550 5.1.1 no such user here\r\n")?;
            } else {
                w.write_all(b"250 2.1.5 ok\r\n")?;
            }
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            log.lock().unwrap().data_started += 1;
            if step == Step::DropMidData {
                let mut buf = [0u8; 200];
                let _ = r.read(&mut buf)?;
                return Ok(()); // closes the connection mid-DATA
            }
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    l[1..].to_vec()
                } else {
                    l
                };
                data.extend_from_slice(&l);
            }
            match step {
                Step::TempFailData => w.write_all(b"451 4.3.0 try again later\r\n")?,
                Step::Stall => {
                    std::thread::sleep(Duration::from_secs(120));
                    return Ok(());
                }
                Step::Gated => {
                    while !log.lock().unwrap().gate_open {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    log.lock().unwrap().accepted.push(data);
                    w.write_all(b"250 2.0.0 queued\r\n")?;
                }
                _ => {
                    log.lock().unwrap().accepted.push(data);
                    w.write_all(b"250 2.0.0 queued\r\n")?;
                }
            }
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 ok\r\n")?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Postern under test

/// A customer writes to the forwarding address; returns the ticket.
async fn customer_writes(
    store: &postern::store::Store,
    smtp: std::net::SocketAddr,
    account: i64,
    fwd: &str,
    message_id: &str,
) -> i64 {
    let raw = format!(
        "From: Ana Lima <ana@customer.test>\r\nTo: {fwd}\r\nSubject: Order 77 late\r\nDate: Mon, 16 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n\r\nWhere is my order 77?\r\n"
    );
    let fwd = fwd.to_string();
    let r = tokio::task::spawn_blocking(move || {
        let (mut c, _) = RawSmtp::connect(smtp).expect("connect");
        c.cmd("EHLO customer.test").expect("EHLO");
        c.send_mail("ana@customer.test", &fwd, &raw).expect("send")
    })
    .await
    .expect("join");
    assert_eq!(r.code, 250, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = store
            .tickets(AccountId(account), None)
            .await
            .expect("tickets");
        if let Some(t) = t.first() {
            return t.id;
        }
        assert!(Instant::now() < deadline, "no ticket");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reply_cli(dir: &Path, env: &[(&str, &str)], ticket: i64, text: &str, extra: &[&str]) -> Value {
    let body = dir.join(format!("reply-{}.txt", rand_suffix()));
    std::fs::write(&body, text).expect("write body");
    let t = ticket.to_string();
    let mut args = vec![
        "reply",
        "--ticket",
        &t,
        "--body-file",
        body.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&cli_ok(dir, env, &args)).expect("JSON")
}

fn rand_suffix() -> u64 {
    use std::time::SystemTime;
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Tests

/// The whole path in MX mode: domain add/check through the CLI, a customer's mail, the
/// agent's reply through the CLI, delivery to smtp-sink found through MX records, both
/// DKIM signatures verified by dkimpy, then the customer's answer and a DSN come back
/// through SMTP into the same ticket.
#[tokio::test(flavor = "multi_thread")]
async fn mx_delivery_is_signed_threaded_and_comes_back_to_the_ticket() {
    let sink = Sink::start();
    let dns = TestDns::start_in_thread(
        Zone::default()
            .mx("customer.test", 10, "mx.customer.test")
            .a("mx.customer.test", Ipv4Addr::LOCALHOST)
            .mx("partner.test", 10, "mx.customer.test"),
    );
    let port = sink.port.to_string();
    let env = outbound_env(&dns, &[("POSTERN__OUTBOUND__MX_PORT", &port)]);
    let env = pairs(&env);
    let app = spawn_app(&env).await;
    let (account, fwd) = app.account("Acme Shop", &format!("support@{BRAND}")).await;
    set_up_domain(app.dir.path(), &env, &dns, account);
    let ticket =
        customer_writes(&app.store, app.smtp_addr, account, &fwd, "q1@customer.test").await;

    let queued = reply_cli(
        app.dir.path(),
        &env,
        ticket,
        "Hello Ana,\nit left this morning.\n.\nAcme",
        &["--cc", "boss@partner.test", "--quote"],
    );
    let token = queued["message_id"]
        .as_str()
        .expect("message id")
        .to_string();
    assert!(token.ends_with(&format!("@{INBOUND_DOMAIN}")), "{token}");
    assert_eq!(
        queued["deliveries"].as_array().unwrap().len(),
        2,
        "{queued}"
    );

    let d = wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    assert_eq!(d.len(), 2);
    let msgs = sink.wait_messages(2);
    assert_eq!(msgs.len(), 2, "smtp-sink got {} messages", msgs.len());
    for raw in &msgs {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        assert_eq!(
            header(&text, "X-Mail-Args"),
            Some(&*format!("<support@{BRAND}>"))
        );
        assert_eq!(
            header(&text, "From"),
            Some(&*format!("\"Acme Shop\" <support@{BRAND}>"))
        );
        assert_eq!(header(&text, "Subject"), Some("Re: Order 77 late"));
        assert_eq!(header(&text, "In-Reply-To"), Some("<q1@customer.test>"));
        assert_eq!(header(&text, "Message-ID"), Some(&*format!("<{token}>")));
        assert!(header(&text, "Thread-Index").is_some());
        assert!(
            header(&text, "Auto-Submitted").is_none(),
            "an agent's reply is not automated"
        );
        assert!(
            text.contains("\n..\n") || text.contains("\n.\nAcme"),
            "the dot line survives: {text}"
        );
        assert!(
            text.contains("> Where is my order 77?"),
            "quoted history: {text}"
        );
        let verdicts = dkimpy_verify(&dns, raw);
        assert_eq!(verdicts.len(), 2, "{verdicts:?}");
        for v in &verdicts {
            assert_eq!(v["d"], BRAND, "{v}");
            assert_eq!(
                v["ok"], true,
                "dkimpy refused a signature: {verdicts:?}\n{text}"
            );
        }
        assert!(verdicts.iter().any(|v| v["a"] == "ed25519-sha256"));
        assert!(verdicts.iter().any(|v| v["a"] == "rsa-sha256"));
    }
    // Same bytes to both recipients: signed once.
    let body = |m: &Vec<u8>| {
        let s = String::from_utf8_lossy(m).replace("\r\n", "\n");
        s[s.find("DKIM-Signature").expect("signature")..].to_string()
    };
    assert_eq!(body(&msgs[0]), body(&msgs[1]));

    // The ticket shows it; `ticket show --json` and `queue list` too.
    let shown: Value = serde_json::from_str(&cli_ok(
        app.dir.path(),
        &env,
        &["ticket", "show", &ticket.to_string(), "--json"],
    ))
    .unwrap();
    assert_eq!(shown["deliveries"][0]["status"], "delivered", "{shown}");
    let outbound = shown["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["direction"] == "outbound")
        .expect("outbound message")
        .clone();
    assert_eq!(outbound["message_id"], token);
    let list: Value = serde_json::from_str(&cli_ok(
        app.dir.path(),
        &env,
        &["queue", "list", "--account", &account.to_string(), "--json"],
    ))
    .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // The customer answers our Message-ID: same ticket, by our reply token.
    let answer = format!(
        "From: Ana Lima <ana@customer.test>\r\nTo: support@{BRAND}\r\nSubject: Re: Order 77 late\r\nMessage-ID: <q2@customer.test>\r\nIn-Reply-To: <{token}>\r\nReferences: <q1@customer.test> <{token}>\r\n\r\nThanks!\r\n"
    );
    let r = app
        .smtp_send("customer.test", "ana@customer.test", &fwd, &answer)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    let back = t
        .messages
        .iter()
        .find(|m| m.message_id.as_deref() == Some("q2@customer.test"))
        .expect("the answer is in the same ticket");
    assert_eq!(back.thread_reason, "reply_token");
    assert_eq!(app.ticket_count(account).await, 1);

    // Later the partner's server bounces: a DSN about our message marks that recipient
    // bounced, joins the ticket, opens no new one.
    let dsn = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\nTo: support@{BRAND}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.customer.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe mailbox is gone.\r\n\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.customer.test\r\n\r\nFinal-Recipient: rfc822; boss@partner.test\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 mailbox gone\r\n\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@{BRAND}\r\nTo: ana@customer.test\r\nMessage-ID: <{token}>\r\nSubject: Re: Order 77 late\r\n\r\n--b1--\r\n"
    );
    let r = app.smtp_send("mx.customer.test", "", &fwd, &dsn).await;
    assert_eq!(r.code, 250, "{}", r.text);
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    let boss = t
        .deliveries
        .iter()
        .find(|d| d.recipient == "boss@partner.test")
        .unwrap();
    assert_eq!(boss.status, "bounced", "{:?}", t.deliveries);
    assert!(boss
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("5.1.1"));
    let ana = t
        .deliveries
        .iter()
        .find(|d| d.recipient == "ana@customer.test")
        .unwrap();
    assert_eq!(ana.status, "delivered");
    assert!(t.events.iter().any(|e| e.kind == "bounce"));
    assert_eq!(app.ticket_count(account).await, 1);
    app.stop().await;
}

/// Relay mode: everything goes to the smarthost (smtp-sink), whatever the MX records say.
#[tokio::test(flavor = "multi_thread")]
async fn relay_delivery_reaches_the_smarthost_signed() {
    let sink = Sink::start();
    let (app, dns, env) = spawn_relaying_app(
        sink.port,
        "opportunistic",
        // Private MX hosts stay refused: the relay is not an MX host.
        &[("POSTERN__OUTBOUND__ALLOW_PRIVATE_MX", "false")],
    )
    .await;
    let env = pairs(&env);
    let (account, fwd) = app.account("Acme", &format!("support@{BRAND}")).await;
    set_up_domain(app.dir.path(), &env, &dns, account);
    let ticket =
        customer_writes(&app.store, app.smtp_addr, account, &fwd, "r1@customer.test").await;
    reply_cli(app.dir.path(), &env, ticket, "Sent today.", &[]);
    wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    let msgs = sink.wait_messages(1);
    assert_eq!(msgs.len(), 1);
    let verdicts = dkimpy_verify(&dns, &msgs[0]);
    assert!(
        verdicts.iter().all(|v| v["ok"] == true) && verdicts.len() == 2,
        "{verdicts:?}"
    );
    app.stop().await;
}

async fn app_with_peer(
    peer: &Peer,
    extra: &[(&str, &str)],
) -> (TestApp, TestDns, i64, i64, Vec<(String, String)>) {
    let (app, dns, env) = spawn_relaying_app(peer.port, "none", extra).await;
    let (account, fwd) = app.account("Acme", &format!("support@{BRAND}")).await;
    set_up_domain(app.dir.path(), &pairs(&env), &dns, account);
    let ticket =
        customer_writes(&app.store, app.smtp_addr, account, &fwd, "p1@customer.test").await;
    (app, dns, account, ticket, env)
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failures_are_retried_until_accepted() {
    let peer = Peer::start(vec![Step::TempFailData, Step::TempFailData, Step::Accept]);
    let (app, _dns, _account, ticket, env) = app_with_peer(&peer, &[]).await;
    reply_cli(app.dir.path(), &pairs(&env), ticket, "Hello", &[]);
    // Deferred first, with the server's words.
    let d = wait_deliveries(&app.store, ticket, &["deferred"], 15).await;
    let err = d[0].last_error.clone().unwrap_or_default();
    assert!(
        err.contains("451") && err.contains("try again later"),
        "{err}"
    );
    assert_eq!(d[0].last_code, Some(451));
    let d = wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    assert_eq!(d[0].attempts, 3, "{d:?}");
    assert_eq!(peer.accepted().len(), 1);
    assert_eq!(peer.connections().len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_failure_bounces_at_once() {
    let peer = Peer::start(vec![Step::RejectRcpt]);
    let (app, _dns, _account, ticket, env) = app_with_peer(&peer, &[]).await;
    reply_cli(app.dir.path(), &pairs(&env), ticket, "Hello", &[]);
    let d = wait_deliveries(&app.store, ticket, &["bounced"], 15).await;
    assert_eq!(d[0].attempts, 1);
    assert_eq!(d[0].last_code, Some(550));
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap_or_default()
            .contains("5.1.1"),
        "{d:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer.connections().len(), 1, "no retry after a 5xx");
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    assert!(
        t.events.iter().any(|e| e.kind == "delivery_failed"),
        "{:?}",
        t.events
    );
    // `postern queue retry` makes it due again.
    let out: Value = serde_json::from_str(&cli_ok(
        app.dir.path(),
        &pairs(&env),
        &["queue", "retry", &d[0].id.to_string(), "--json"],
    ))
    .unwrap();
    assert_eq!(out["status"], "deferred", "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while peer.connections().len() < 2 {
        assert!(Instant::now() < deadline, "retry did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_dropped_mid_data_is_retried() {
    let peer = Peer::start(vec![Step::DropMidData, Step::Accept]);
    let (app, _dns, _account, ticket, env) = app_with_peer(&peer, &[]).await;
    reply_cli(
        app.dir.path(),
        &pairs(&env),
        ticket,
        &"A long reply line.\n".repeat(200),
        &[],
    );
    let d = wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    assert_eq!(d[0].attempts, 2, "{d:?}");
    assert_eq!(peer.accepted().len(), 1);
    assert!(String::from_utf8_lossy(&peer.accepted()[0]).contains("DKIM-Signature"));
    app.stop().await;
}

/// A worker killed in the middle of DATA: its lease keeps every other worker away until it
/// expires, then another `postern serve` delivers the message, once.
#[tokio::test]
async fn killed_worker_lease_expires_and_another_delivers_once() {
    let peer = Peer::start(vec![Step::Stall, Step::Accept]);
    let dns = TestDns::start_in_thread(Zone::default());
    let dir = tempfile::tempdir().unwrap();
    let env = relay_env(
        &dns,
        peer.port,
        "none",
        &[
            ("POSTERN__OUTBOUND__LEASE", "6s"),
            ("POSTERN__OUTBOUND__ATTEMPT_TIMEOUT", "5s"),
            ("POSTERN__OUTBOUND__COMMAND_TIMEOUT", "4s"),
        ],
    );
    let env = pairs(&env);
    let created: Value = serde_json::from_str(&cli_ok(
        dir.path(),
        &env,
        &[
            "account",
            "create",
            "--name",
            "Acme",
            "--support-address",
            &format!("support@{BRAND}"),
            "--json",
        ],
    ))
    .unwrap();
    let account = created["id"].as_i64().unwrap();
    let fwd = created["forwarding_address"].as_str().unwrap().to_string();
    set_up_domain(dir.path(), &env, &dns, account);
    let first = ServerProcess::start(dir.path(), &env);
    let store = postern::store::Store::open(&dir.path().join("postern.db"), 1)
        .await
        .unwrap();
    let ticket = customer_writes(&store, first.smtp_addr, account, &fwd, "k1@customer.test").await;
    reply_cli(dir.path(), &env, ticket, "Hello", &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while peer.data_started() < 1 {
        assert!(
            Instant::now() < deadline,
            "the first worker never reached DATA"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed_at = Instant::now();
    first.kill9();
    let second = ServerProcess::start(dir.path(), &env);
    let d = wait_deliveries(&store, ticket, &["delivered"], 30).await;
    let conns = peer.connections();
    assert_eq!(conns.len(), 2, "one attempt per worker");
    assert!(
        conns[1] >= killed_at + Duration::from_secs(3),
        "the second worker took the message while the first one's lease was still running"
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].attempts, 2, "{d:?}");
    assert_eq!(peer.accepted().len(), 1, "delivered exactly once");
    second.terminate();
}

/// The API: domains (admins), replies (agents), refusals with clear errors.
#[tokio::test(flavor = "multi_thread")]
async fn api_replies_and_domains() {
    let sink = Sink::start();
    let (app, dns, _) = spawn_relaying_app(sink.port, "none", &[]).await;
    let (account, fwd) = app.account("Acme", &format!("support@{BRAND}")).await;
    let ticket =
        customer_writes(&app.store, app.smtp_addr, account, &fwd, "a1@customer.test").await;
    let (admin, agent) = (
        Api::of_role(&app, account, "admin"),
        Api::of_role(&app, account, "agent"),
    );
    let reply = json!({"text": "Hello from the API", "cc": ["boss@customer.test"]});

    // No sending domain yet: a clear 409.
    let v = agent
        .answer(
            409,
            Method::POST,
            &format!("/api/v1/tickets/{ticket}/replies"),
            Some(reply.clone()),
        )
        .await;
    assert_error_message_contains(&v, "postern domain add");

    // Agents cannot add domains; admins can, and get the records.
    agent
        .answer(
            403,
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": BRAND})),
        )
        .await;
    let d = admin
        .answer(
            201,
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": BRAND})),
        )
        .await;
    let id = d["id"].as_i64().unwrap();
    admin
        .answer(
            409,
            Method::POST,
            "/api/v1/domains",
            Some(json!({"domain": BRAND})),
        )
        .await;
    assert_eq!(d["verified"], false);

    // Not verified yet: still a clear 409.
    let v = agent
        .answer(
            409,
            Method::POST,
            &format!("/api/v1/tickets/{ticket}/replies"),
            Some(reply.clone()),
        )
        .await;
    assert_error_message_contains(&v, "not verified");

    // A wrong key published: the check says wrong, with the value found.
    let dkim = d["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "dkim")
        .unwrap()
        .clone();
    let name = dkim["name"].as_str().unwrap().to_string();
    dns.set(Zone::default().txt(
        &name,
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong",
    ));
    let rep = admin
        .answer(
            200,
            Method::POST,
            &format!("/api/v1/domains/{id}/check"),
            None,
        )
        .await;
    assert_eq!(rep["verified"], false);
    let rec = rep["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "dkim")
        .unwrap();
    assert_eq!(rec["status"], "wrong", "{rep}");
    assert!(rec["found"][0].as_str().unwrap().contains("wrong"));
    let spf = rep["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "spf")
        .unwrap();
    assert_eq!(spf["status"], "missing", "{rep}");
    agent
        .answer(
            403,
            Method::POST,
            &format!("/api/v1/domains/{id}/check"),
            None,
        )
        .await;

    let mut zone = Zone::default();
    for r in d["records"].as_array().unwrap() {
        if r["kind"].as_str().unwrap().starts_with("dkim") {
            zone = zone.txt(r["name"].as_str().unwrap(), r["expected"].as_str().unwrap());
        }
    }
    dns.set(zone);
    let rep = admin
        .answer(
            200,
            Method::POST,
            &format!("/api/v1/domains/{id}/check"),
            None,
        )
        .await;
    assert_eq!(rep["verified"], true, "{rep}");

    // Header injection through any field: 400 with a clear message, nothing queued.
    for bad in [
        json!({"text": "x", "cc": ["boss@customer.test\r\nBcc: evil@evil.test"]}),
        json!({"text": "x", "attachments": [{"filename": "a.pdf\r\nX-Evil: 1", "content_type": "application/pdf", "data": "JVBERg=="}]}),
        json!({"text": "x", "attachments": [{"filename": "a.pdf", "content_type": "application/pdf\nX-Evil: 1", "data": "JVBERg=="}]}),
    ] {
        let v = agent
            .answer(
                400,
                Method::POST,
                &format!("/api/v1/tickets/{ticket}/replies"),
                Some(bad),
            )
            .await;
        assert_error_message_contains(&v, "control character");
    }
    agent.answer(400, Method::POST, &format!("/api/v1/tickets/{ticket}/replies"), Some(json!({"text": "x", "attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "data": "%%%"}]}))).await;
    assert!(app
        .store
        .queue_entries(Scope::Operator, 10)
        .await
        .unwrap()
        .is_empty());

    // A good reply with an attachment: 202, delivered, listed on the ticket.
    let good = json!({"text": "Invoice attached.", "html": "<p>Invoice attached.</p>", "cc": ["boss@customer.test"],
        "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "data": "JVBERi0xLjQK"}]});
    let q = agent
        .answer(
            202,
            Method::POST,
            &format!("/api/v1/tickets/{ticket}/replies"),
            Some(good),
        )
        .await;
    assert_eq!(q["deliveries"].as_array().unwrap().len(), 2);
    wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    let t = agent
        .answer(200, Method::GET, &format!("/api/v1/tickets/{ticket}"), None)
        .await;
    assert_eq!(t["deliveries"][0]["status"], "delivered", "{t}");
    let msgs = sink.wait_messages(1);
    let text = String::from_utf8_lossy(&msgs[0]).to_string();
    assert!(
        text.contains("invoice.pdf") && text.contains("text/html"),
        "{text}"
    );
    let verdicts = dkimpy_verify(&dns, &msgs[0]);
    assert!(
        verdicts.iter().all(|v| v["ok"] == true),
        "{verdicts:?}\n{text}"
    );
    let list = agent
        .answer(200, Method::GET, "/api/v1/domains", None)
        .await;
    assert_eq!(list[0]["verified"], true);
    assert!(
        list[0].get("rsa_private_key").is_none(),
        "private keys never leave"
    );
    app.stop().await;
}

/// MX mode refusals: a null MX bounces at once; an MX host on a private address is refused
/// unless allowed.
#[tokio::test(flavor = "multi_thread")]
async fn null_mx_and_private_mx_are_permanent_failures() {
    let dns = TestDns::start_in_thread(
        Zone::default()
            .mx("customer.test", 0, ".")
            .mx("private.test", 10, "mx.private.test")
            .a("mx.private.test", Ipv4Addr::new(10, 0, 0, 25)),
    );
    let env = outbound_env(&dns, &[("POSTERN__OUTBOUND__ALLOW_PRIVATE_MX", "false")]);
    let env = pairs(&env);
    let app = spawn_app(&env).await;
    let (account, fwd) = app.account("Acme", &format!("support@{BRAND}")).await;
    set_up_domain(app.dir.path(), &env, &dns, account);
    let ticket =
        customer_writes(&app.store, app.smtp_addr, account, &fwd, "n1@customer.test").await;
    reply_cli(
        app.dir.path(),
        &env,
        ticket,
        "Hello",
        &["--cc", "x@private.test"],
    );
    let d = wait_deliveries(&app.store, ticket, &["bounced"], 20).await;
    let by = |r: &str| {
        d.iter()
            .find(|x| x.recipient == r)
            .unwrap()
            .last_error
            .clone()
            .unwrap_or_default()
    };
    assert!(by("ana@customer.test").contains("null MX"), "{d:?}");
    assert!(by("x@private.test").contains("non-public"), "{d:?}");
    app.stop().await;
}

/// A recipient mail can never reach (an address literal) is refused when the reply is
/// queued through the API (422, which recipient and why, nothing queued); one that reaches
/// the queue anyway (stored directly, as older versions queued it) fails permanently at
/// once, is never handed to the relay, and is not retried. The customer still gets it.
#[tokio::test(flavor = "multi_thread")]
async fn address_literal_recipients_are_refused_and_never_retried() {
    let peer = Peer::start(vec![Step::Accept]);
    let (app, _dns, account, ticket, _env) = app_with_peer(&peer, &[]).await;
    let agent = Api::of_role(&app, account, "agent");
    let v = agent
        .answer(
            422,
            Method::POST,
            &format!("/api/v1/tickets/{ticket}/replies"),
            Some(json!({"text": "Hello", "cc": ["boss@customer.test", "a@[127.0.0.1]"]})),
        )
        .await;
    assert_eq!(v["error"]["code"], "undeliverable_recipient", "{v}");
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("a@[127.0.0.1]") && msg.contains("address literal"),
        "{v}"
    );
    assert!(app
        .store
        .queue_entries(Scope::Operator, 10)
        .await
        .unwrap()
        .is_empty());

    // Stored straight into the queue, past the API's check.
    let from = postern::store::Mailbox {
        name: None,
        address: format!("support@{BRAND}"),
    };
    let to = [postern::store::Mailbox {
        name: None,
        address: "ana@customer.test".into(),
    }];
    let cc = [postern::store::Mailbox {
        name: None,
        address: "a@[127.0.0.1]".into(),
    }];
    let raw = format!(
        "From: support@{BRAND}\r\nTo: ana@customer.test\r\nCc: a@[127.0.0.1]\r\nSubject: Re: Order 77 late\r\nMessage-ID: <lit1@{BRAND}>\r\n\r\nHello\r\n"
    );
    app.store
        .record_outbound_reply(&postern::store::NewOutboundReply {
            account: AccountId(account),
            ticket: TicketId(ticket),
            message_id: &format!("lit1@{BRAND}"),
            in_reply_to: None,
            references: &[],
            from: &from,
            to: &to,
            cc: &cc,
            subject: "Re: Order 77 late",
            text: "Hello",
            html: None,
            attachments: vec![],
            author_user_id: None,
            author_rule_id: None,
            automated: false,
            disposition: postern::store::Disposition::Queue {
                raw: raw.as_bytes(),
                mail_from: &format!("support@{BRAND}"),
                expires_at: postern::store::now_ms() + 5 * 86_400_000,
            },
        })
        .await
        .expect("stored");
    let d = wait_deliveries(&app.store, ticket, &["delivered", "bounced"], 20).await;
    let literal = d
        .iter()
        .find(|x| x.recipient == "a@[127.0.0.1]")
        .expect("the literal's delivery")
        .clone();
    assert_eq!(literal.status, "bounced", "{d:?}");
    assert_eq!(literal.attempts, 1, "{d:?}");
    assert_eq!(literal.last_code, Some(550), "{d:?}");
    let err = literal.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("5.1.2") && err.contains("address literal"),
        "{err}"
    );
    let ana = d
        .iter()
        .find(|x| x.recipient == "ana@customer.test")
        .unwrap();
    assert_eq!(ana.status, "delivered", "{d:?}");
    // Retries are due every second here: none happens, and the relay never saw the literal.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let t = app.ticket_detail(ticket, Scope::Operator).await;
    let again = t
        .deliveries
        .iter()
        .find(|x| x.recipient == "a@[127.0.0.1]")
        .unwrap();
    assert_eq!((again.status.as_str(), again.attempts), ("bounced", 1));
    let rcpts = peer.rcpts();
    assert!(
        rcpts.iter().all(|r| !r.contains("127.0.0.1")),
        "the relay was asked for the literal: {rcpts:?}"
    );
    assert_eq!(rcpts.len(), 1, "{rcpts:?}");
    app.stop().await;
}

/// The relay took the message but its outcome cannot be written yet (here another process
/// holds the database's write lock past the busy timeout; in the soak it was a full disk): the
/// worker keeps the outcome and writes it once it can, within its lease, so the message is not
/// sent a second time when the lease runs out (found by the soak: a duplicate 46 s later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_outcome_cannot_be_written_yet_is_not_sent_twice() {
    let peer = Peer::start(vec![Step::Gated, Step::Accept]);
    let (app, _dns, _account, ticket, env) = app_with_peer(
        &peer,
        &[
            ("POSTERN__OUTBOUND__LEASE", "20s"),
            ("POSTERN__OUTBOUND__ATTEMPT_TIMEOUT", "5s"),
            ("POSTERN__OUTBOUND__POLL_INTERVAL", "200ms"),
        ],
    )
    .await;
    reply_cli(app.dir.path(), &pairs(&env), ticket, "Hello", &[]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while peer.data_started() == 0 {
        assert!(
            Instant::now() < deadline,
            "the reply never reached the relay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The message is on the wire. Another process takes the write lock, longer than the
    // store's 10 s busy timeout, then the relay answers 250.
    let db = app.dir.path().join("postern.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(12));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    peer.open_gate();
    holder.join().unwrap();
    let d = wait_deliveries(&app.store, ticket, &["delivered"], 30).await;
    assert_eq!(d[0].attempts, 1, "{d:?}");
    // Past the lease of the first attempt (20 s from its claim): nobody took the message
    // over and sent it again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(peer.accepted().len(), 1, "sent once");
    assert_eq!(peer.connections().len(), 1);
    app.stop().await;
}

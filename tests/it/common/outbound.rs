//! Outbound peers shared by the outbound and rules tests: Postfix's smtp-sink as the
//! receiving MTA, dkimpy checking our signatures against the loopback DNS server, a
//! verified sending domain set up through the CLI, and the queue's deliveries.

use super::dns::{TestDns, Zone};
use super::{cli_ok, require_program, spawn_app, TestApp};
use postern::domain::{Scope, TicketId};
use serde_json::Value;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Postfix's smtp-sink, dumping every message it accepts into a folder (`-d`).
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    pub fn start() -> Sink {
        let bin = require_program("smtp-sink");
        let dir = tempfile::tempdir().expect("dir");
        // smtp-sink drops to `nobody` when started as root; the dump folder must let it write.
        let _ = Command::new("chmod").arg("777").arg(dir.path()).status();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            if nix_is_root() {
                cmd.args(["-u", "nobody"]);
            }
            let child = cmd
                .arg("-d")
                .arg(format!("{}/%M.", dir.path().display()))
                .arg(format!("127.0.0.1:{port}"))
                .arg("100")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start smtp-sink");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sink { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut child = child;
            let _ = child.kill();
        }
        panic!("smtp-sink did not start");
    }

    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for e in entries.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push(b);
                }
            }
        }
        out
    }

    pub fn wait_messages(&self, n: usize) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = self.messages();
            if m.len() >= n || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// dkimpy's verdict on every DKIM signature of `message`, keys from the test DNS server.
pub fn dkimpy_verify(dns: &TestDns, message: &[u8]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("build/venv/bin/python");
    assert!(
        python.is_file(),
        "dkimpy is needed at {}: run scripts/install-deps.sh test",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("tests/peers/dkim_verify.py"))
        .arg("--dns")
        .arg(dns.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dkim_verify.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(message)
        .expect("write");
    let out = child.wait_with_output().expect("dkim_verify.py");
    assert!(
        out.status.success(),
        "dkim_verify.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("JSON from dkim_verify.py")
}

/// Environment for outbound tests: DNS on the test server, fast retries.
pub fn outbound_env(dns: &TestDns, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let env: Vec<(String, String)> = vec![
        ("POSTERN__DNS__NAMESERVERS".into(), dns.addr.to_string()),
        ("POSTERN__OUTBOUND__ALLOW_PRIVATE_MX".into(), "true".into()),
        ("POSTERN__OUTBOUND__RETRY_SCHEDULE".into(), "1s".into()),
        ("POSTERN__OUTBOUND__POLL_INTERVAL".into(), "100ms".into()),
        ("POSTERN__OUTBOUND__CONNECT_TIMEOUT".into(), "3s".into()),
        ("POSTERN__OUTBOUND__COMMAND_TIMEOUT".into(), "5s".into()),
    ];
    super::with_overrides(env, extra)
}

pub fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub const BRAND: &str = "brand.test";

/// A server in this process whose outbound queue relays to 127.0.0.1:`port` with relay TLS
/// `tls`, and a loopback DNS server for the DKIM records: (app, dns, environment for the CLI).
pub async fn spawn_relaying_app(
    port: u16,
    tls: &str,
    extra: &[(&str, &str)],
) -> (TestApp, TestDns, Vec<(String, String)>) {
    let dns = TestDns::start_in_thread(Zone::default());
    let env = relay_env(&dns, port, tls, extra);
    let app = spawn_app(&pairs(&env)).await;
    (app, dns, env)
}

/// [`outbound_env`] for a server whose outbound queue relays everything to 127.0.0.1:`port`
/// with `tls` (none, opportunistic, required), then `extra`.
pub fn relay_env(
    dns: &TestDns,
    port: u16,
    tls: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let port = port.to_string();
    let mut all = vec![
        ("POSTERN__OUTBOUND__MODE", "relay"),
        ("POSTERN__OUTBOUND__RELAY__HOST", "127.0.0.1"),
        ("POSTERN__OUTBOUND__RELAY__PORT", port.as_str()),
        ("POSTERN__OUTBOUND__RELAY__TLS", tls),
    ];
    all.extend_from_slice(extra);
    outbound_env(dns, &all)
}

/// Adds brand.test as a sending domain of `account` through the CLI, publishes its DKIM
/// records on the test DNS server and checks it: verified.
pub fn set_up_domain(dir: &Path, env: &[(&str, &str)], dns: &TestDns, account: i64) -> Value {
    let acct = account.to_string();
    let added: Value = serde_json::from_str(&cli_ok(
        dir,
        env,
        &["domain", "add", "--account", &acct, BRAND, "--json"],
    ))
    .expect("JSON");
    let records = added["records"].as_array().expect("records").clone();
    let mut zone = Zone::default();
    for r in &records {
        let kind = r["kind"].as_str().unwrap_or_default();
        if kind.starts_with("dkim") {
            zone = zone.txt(r["name"].as_str().unwrap(), r["expected"].as_str().unwrap());
        }
    }
    dns.set(zone);
    let report: Value = serde_json::from_str(&cli_ok(
        dir,
        env,
        &["domain", "check", "--account", &acct, BRAND, "--json"],
    ))
    .expect("JSON");
    assert_eq!(report["verified"], true, "{report}");
    added
}

/// Waits until every delivery of the ticket is in one of `states`; returns them.
pub async fn wait_deliveries(
    store: &postern::store::Store,
    ticket: i64,
    states: &[&str],
    secs: u64,
) -> Vec<postern::store::DeliveryView> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = store
            .ticket(TicketId(ticket), Scope::Operator)
            .await
            .expect("ticket")
            .deliveries;
        if !d.is_empty() && d.iter().all(|x| states.contains(&x.status.as_str())) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries not {states:?} in time: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let head = msg.split("\n\n").next().unwrap_or(msg);
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

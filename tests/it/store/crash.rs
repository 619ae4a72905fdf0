//! Crash safety: SIGKILL the server in the middle of a load; every message that was
//! answered 250 must be in the store afterwards, and the database must be intact.

use crate::common::*;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn sigkill_mid_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let (account, fwd) = create_account(dir.path(), "Acme", "support@acme.test");
    let server = ServerProcess::start(dir.path(), &[]);
    let addr = server.smtp_addr;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    // Bounded load: 6 sessions, at most 400 messages each, 20 s at most.
    for worker in 0..6 {
        let (acked, stop, fwd) = (acked.clone(), stop.clone(), fwd.clone());
        clients.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let Ok((mut c, _)) = RawSmtp::connect(addr) else { return };
            if c.cmd("EHLO load.test").is_err() {
                return;
            }
            for n in 0..400 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    return;
                }
                let subject = format!("crash-{worker}-{n}");
                let body = format!(
                    "From: c{worker}@customer.test\nMessage-ID: <{subject}@customer.test>\nSubject: {subject}\n\n{}\n",
                    "payload line\n".repeat(200)
                );
                match c.send_mail(&format!("c{worker}@customer.test"), &fwd, &body) {
                    Ok(r) if r.code == 250 => {
                        acked.lock().unwrap().insert(subject);
                    }
                    _ => return, // connection died with the server
                }
            }
        }));
    }
    // Let the load run, then pull the plug while it is still going.
    let start = Instant::now();
    while acked.lock().unwrap().len() < 150 && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "the load did not get going ({} acked)",
        acked.len()
    );

    // Restart on the same data: the database recovers from its WAL.
    let server = ServerProcess::start(dir.path(), &[]);
    let tickets = tickets_json(dir.path(), account);
    let stored: HashSet<String> = tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["subject"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|s| !stored.contains(*s)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    drop(server);

    let db = dir.path().join("postern.db");
    let out = std::process::Command::new("python3")
        .args(["-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

//! The data folder holds the DKIM private keys, the reply-token key and every customer's
//! mail: the real `postern serve`, started under umask 022 (the usual default, which would
//! make files 0644), creates its folders 0700 and its files 0600, and makes a folder left
//! readable by other users private again at start, saying so in its log.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Every file and folder the server keeps: the data folder and all below it.
fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut below: Vec<PathBuf> = std::fs::read_dir(&out[i])
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            below.sort();
            out.extend(below);
        }
        i += 1;
    }
    out
}

fn names(root: &Path) -> Vec<String> {
    tree(root)
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// A mailbox of `n` small messages.
fn mailbox(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "From ana@customer.test Mon Jan  1 00:00:00 2024\nFrom: ana{i}@customer.test\n\
             To: support@shop.test\nSubject: order {i}\nMessage-ID: <perm{i}@customer.test>\n\
             Date: Mon, 1 Jan 2024 00:{:02}:00 +0000\n\nWhere is order {i}?\n\n",
            i % 60
        ));
    }
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_is_private_under_umask_022_and_made_private_again_at_start() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    // Slow enough that the import's upload, staging copy and lock are there to look at.
    let env = [("POSTERN__IMPORTS__MAX_RATE", "2")];
    let server = ServerProcess::start_with_umask(&data, &env, "022");

    let db = data.join("postern.db");
    let wal = data.join("postern.db-wal");
    let shm = data.join("postern.db-shm");
    assert_eq!(mode(&data), 0o700, "the data folder");
    for f in [&db, &wal, &shm] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // An import through the API: its upload, staging copy and lock in data/imports.
    let account = create_account(&data, "Shop", "support@shop.test").0;
    let token = api_token(&data, account, "admin");
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/v1/imports/upload?kind=mbox",
            server.http_addr
        ))
        .bearer_auth(&token)
        .body(mailbox(60))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    let imports = data.join("imports");
    let deadline = Instant::now() + Duration::from_secs(60);
    let kinds = |names: &[String]| {
        ["upload-", "job-", "import-"]
            .iter()
            .all(|k| names.iter().any(|n| n.starts_with(k)))
    };
    loop {
        let listed: Vec<String> = std::fs::read_dir(&imports)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if kinds(&listed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the running import's files never all showed up: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let everything = tree(&data);
    assert!(everything.len() >= 7, "{:?}", names(&data));
    for p in &everything {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} under umask 022", p.display());
    }

    // Killed in the middle (the database's -wal and -shm stay), then opened up as an older
    // version or a careless copy would leave it.
    server.kill9();
    let left = tree(&data);
    assert!(
        left.contains(&wal) && left.contains(&shm),
        "{:?}",
        names(&data)
    );
    for p in &left {
        set_mode(p, if p.is_dir() { 0o755 } else { 0o644 });
    }

    let server = ServerProcess::start_with_umask(&data, &[], "022");
    for p in &left {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} after the restart", p.display());
    }
    let logs = server.logs();
    let said: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("permissions were tightened"))
        .collect();
    assert_eq!(said.len(), 1, "one log line says what changed: {logs:?}");
    assert!(
        said[0].contains("postern.db 0644->0600") && said[0].contains("0755->0700"),
        "{}",
        said[0]
    );
    // The server works on the files it made private.
    let (mut smtp, greeting) = RawSmtp::connect(server.smtp_addr).expect("smtp");
    assert_eq!(greeting.code, 220);
    assert_eq!(smtp.cmd("QUIT").expect("quit").code, 221);
    assert!(server.terminate().success());
}

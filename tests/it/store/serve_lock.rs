//! One writer per database: while `postern serve` runs on a data folder, `postern import`
//! (which would start a second group-commit writer in a second process) and a second
//! `postern serve` refuse with a message saying what to do; once the server stops, the same
//! import runs, and a server started while it runs refuses.

use crate::common::{cli_output, create_account, postern_bin, test_env, ServerProcess};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MBOX: &str = "From ana@customer.test Mon Jun  2 10:00:00 2025\n\
From: Ana <ana@customer.test>\n\
To: support@shop.test\n\
Subject: Where is my parcel?\n\
Message-ID: <lock-1@customer.test>\n\
Date: Mon, 2 Jun 2025 10:00:00 +0000\n\
\n\
Order 1234 has not arrived.\n\
\n";

#[test]
fn a_running_server_is_the_only_writer_of_its_database() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let account = create_account(&data, "Shop", "support@shop.test").0;
    let mbox = tmp.path().join("old.mbox");
    std::fs::write(&mbox, MBOX).expect("write mbox");
    let import = [
        "import",
        "--account",
        &account.to_string(),
        "--mbox",
        mbox.to_str().expect("path"),
        "--json",
    ];

    let server = ServerProcess::start(&data, &[]);
    let out = cli_output(&data, &[], &import);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused while serve runs: {stderr}");
    assert!(
        stderr.contains("`postern serve` is running") && stderr.contains("/api/v1/imports"),
        "says why and what to do: {stderr}"
    );

    assert_second_serve_refused(&data);

    assert!(
        server.terminate().success(),
        "the first server stops cleanly"
    );
    let out = cli_output(&data, &[], &import);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the same import once the server stopped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(summary["imported"], 1, "{summary}");

    // A slow import (one message a second) holds the database: no server starts beside it.
    let many: String = (0..6)
        .map(|i| MBOX.replace("lock-1@", &format!("slow-{i}@")))
        .collect();
    std::fs::write(&mbox, many).expect("write mbox");
    let mut slow = Command::new(postern_bin())
        .args(import)
        .args(["--max-rate", "1"])
        .envs(test_env(&data, &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a slow import");
    // The import holds the database once its run has started (its job lock file appears).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !import_running(&data) {
        assert!(Instant::now() < deadline, "the slow import did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_second_serve_refused(&data);
    let status = slow.wait().expect("slow import");
    assert!(status.success(), "the slow import finished");
}

fn import_running(data: &std::path::Path) -> bool {
    std::fs::read_dir(data.join("imports"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".lock"))
        })
        .unwrap_or(false)
}

/// Starts `postern serve` on `data` and asserts that it exits at once, saying why.
fn assert_second_serve_refused(data: &std::path::Path) {
    let mut second = Command::new(postern_bin())
        .args(["serve", "--log-json"])
        .envs(test_env(data, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second writer of the same data kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = second.wait_with_output().expect("second serve output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("another Postern process writes to this database"),
        "{stderr}"
    );
}

/// An import into a data folder that does not exist yet makes the folder before it takes
/// the lock there: the error is the real one (here, an unknown account), not the lock's.
#[test]
fn an_import_into_a_new_data_folder_fails_for_its_own_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("new").join("data");
    let mbox = dir.path().join("one.mbox");
    std::fs::write(
        &mbox,
        "From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nhi\n",
    )
    .expect("mbox");
    let out = cli_output(
        &data,
        &[],
        &[
            "import",
            "--account",
            "1",
            "--mbox",
            mbox.to_str().expect("path"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("server lock"), "{stderr}");
    assert!(stderr.contains("account"), "{stderr}");
    assert!(data.is_dir(), "the data folder was made");
}

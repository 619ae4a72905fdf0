//! Imports cannot fill the disk: a gzip bomb uploaded to the running server is refused
//! with 413 while it arrives (by its ratio, or by the decompressed size cap), an import
//! whose staging copy would pass its cap fails with the setting to raise, `postern import`
//! of a bomb stops the same way, and none of them leaves a staging or lock file behind.

use crate::common::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const FROM_LINE: &str = "From ana@customer.test Mon Jan  1 00:00:00 2024\n";

/// A real gzip bomb: one mbox message whose body is `zeros` zero bytes, compressed as
/// hard as deflate goes (about 1000 to 1).
fn gzip_bomb(zeros: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(format!("{FROM_LINE}From: ana@customer.test\nSubject: zeros\n\n").as_bytes())
        .expect("gzip");
    let block = vec![0u8; 1024 * 1024];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(block.len());
        enc.write_all(&block[..n]).expect("gzip");
        left -= n;
    }
    enc.finish().expect("gzip")
}

/// An mbox of `n` messages with bodies that barely compress (hex of a pseudo-random walk).
fn mailbox(n: usize, body_bytes: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = String::new();
    for i in 0..n {
        out.push_str(FROM_LINE);
        out.push_str(&format!(
            "From: c{i}@customer.test\nTo: support@shop.test\nSubject: order {i}\n\
             Message-ID: <lim{i}@customer.test>\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\n"
        ));
        let mut body = String::new();
        while body.len() < body_bytes {
            for _ in 0..4 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                body.push_str(&format!("{state:016x}"));
            }
            body.push('\n');
        }
        out.push_str(&body);
        out.push('\n');
    }
    out.into_bytes()
}

/// What the imports folder holds (nothing when it does not exist).
fn imports_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("imports"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn upload(&self, bytes: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(format!("{}/api/v1/imports/upload?kind=mbox", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    async fn wait_ended(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let job = self.get(&format!("/api/v1/imports/{id}")).await;
            let status = job["status"].as_str().unwrap_or_default();
            if !["queued", "running"].contains(&status) && job["progress"].is_null() {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn admin_api(app: &TestApp) -> Api {
    let (account, _) = app.account("Shop", "support@shop.test").await;
    Api {
        client: reqwest::Client::new(),
        base: format!("http://{}", app.http_addr),
        token: api_token(app.dir.path(), account, "admin"),
    }
}

fn message_of(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_upload_is_refused_while_it_arrives_and_nothing_is_kept() {
    let app = spawn_app(&[]).await;
    let api = admin_api(&app).await;

    // 200 MiB of zeros in about 200 KB: refused by its ratio with the defaults.
    let bomb = gzip_bomb(200 * 1024 * 1024);
    assert!(bomb.len() < 400 * 1024, "{} bytes", bomb.len());
    let (status, body) = api.upload(bomb).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "decompressed_too_large", "{body}");
    let message = message_of(&body);
    assert!(
        message.contains("imports.max_compression_ratio (100 to 1)")
            && message.contains("POSTERN__IMPORTS__MAX_COMPRESSION_RATIO"),
        "the message says the limit and how to raise it: {message}"
    );
    assert_eq!(
        imports_files(app.dir.path()),
        Vec::<String>::new(),
        "no upload, staging or lock file remains"
    );
    let jobs = api.get("/api/v1/imports").await;
    assert_eq!(jobs["items"], serde_json::json!([]), "no job was created");

    // A genuine mailbox passes with the defaults and imports.
    let fine = gzip(&mailbox(20, 2000));
    let (status, job) = api.upload(fine).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = api.wait_ended(job["id"].as_i64().expect("job id")).await;
    assert_eq!(
        (done["status"].as_str(), done["imported"].as_i64()),
        (Some("completed"), Some(20)),
        "{done}"
    );
    assert_eq!(imports_files(app.dir.path()), Vec::<String>::new());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decompressed_and_staged_sizes_are_capped_as_configured() {
    let app = spawn_app(&[
        ("POSTERN__IMPORTS__MAX_DECOMPRESSED_SIZE", "2097152"),
        ("POSTERN__IMPORTS__MAX_STAGED_SIZE", "1048576"),
    ])
    .await;
    let api = admin_api(&app).await;
    // About 3 MiB that compresses only 2 to 1: within any ratio, over the size cap.
    let big = mailbox(300, 10_000);
    let (status, body) = api.upload(gzip(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let message = message_of(&body);
    assert!(
        message.contains("imports.max_decompressed_size (2097152 bytes)")
            && message.contains("POSTERN__IMPORTS__MAX_DECOMPRESSED_SIZE"),
        "{message}"
    );
    assert_eq!(imports_files(app.dir.path()), Vec::<String>::new());

    // Plain, within the upload cap but over the staging cap: the job fails with the setting
    // to raise, its partial staging copy and its lock are deleted; the upload stays so that
    // the job can be resumed once the cap is raised (or discarded).
    let (status, job) = api.upload(mailbox(150, 10_000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_i64().expect("job id");
    let failed = api.wait_ended(id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("imports.max_staged_size (1048576 bytes)")
            && error.contains("POSTERN__IMPORTS__MAX_STAGED_SIZE"),
        "{error}"
    );
    let left = imports_files(app.dir.path());
    assert!(
        left.len() == 1 && left[0].starts_with("upload-"),
        "only the upload remains: {left:?}"
    );

    // A file that is no mbox at all: the job fails and leaves no empty staging file or lock.
    let discard = reqwest::Client::new()
        .post(format!("{}/api/v1/imports/{id}/discard", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("discard");
    assert_eq!(discard.status(), StatusCode::OK);
    let (status, job) = api.upload(b"just some notes, not mail\n".to_vec()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let failed = api.wait_ended(job["id"].as_i64().expect("job id")).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let left = imports_files(app.dir.path());
    assert!(
        left.iter()
            .all(|n| n.starts_with("upload-") && !n.ends_with(".lock")),
        "no staging or lock file: {left:?}"
    );
    app.stop().await;
}

#[test]
fn postern_import_of_a_gzip_bomb_stops_and_leaves_no_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let account = create_account(&data, "Shop", "support@shop.test").0;
    let bomb = tmp.path().join("old.mbox.gz");
    std::fs::write(&bomb, gzip_bomb(200 * 1024 * 1024)).expect("write bomb");
    let out = cli_output(
        &data,
        &[],
        &[
            "import",
            "--account",
            &account.to_string(),
            "--mbox",
            bomb.to_str().expect("path"),
            "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("imports.max_compression_ratio")
            && stderr.contains("POSTERN__IMPORTS__MAX_COMPRESSION_RATIO"),
        "{stderr}"
    );
    assert_eq!(imports_files(&data), Vec::<String>::new());
}

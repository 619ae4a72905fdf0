//! A file uploaded for an import (an mbox, plain or gzip, or one .eml), written into the
//! imports folder as it arrives: where it goes, what it may weigh, and that it is on disk
//! before the job that reads it exists. HTTP streams the request body here and maps the
//! errors to answers.

use super::decompress_limit::{DecompressLimits, LimitExceeded, UploadCheck};
use super::runner::UploadKind;
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The two bytes every gzip file starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What an upload may weigh.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    /// `imports.max_upload_size`: bytes received, compressed or not.
    pub max_size: u64,
    /// A gzip mbox past these is refused while it arrives.
    pub decompress: DecompressLimits,
}

/// An upload on disk, whole and fsync'd.
#[derive(Debug)]
pub struct ReceivedUpload {
    /// What the job owns and deletes once done: the mbox file, or the folder of the .eml.
    pub path: PathBuf,
    /// Bytes received.
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than the server takes")]
    TooLarge,
    /// A gzip upload past the decompression limits (a gzip bomb, or a mailbox too large).
    #[error("{0}")]
    Decompressed(LimitExceeded),
    #[error("the upload is empty")]
    Empty,
    /// The body stopped before its end (the client's side).
    #[error("the upload did not arrive whole: {0}")]
    Client(String),
    /// Our side: the disk is full or the folder not writable.
    #[error("{0}")]
    Disk(#[from] std::io::Error),
}

/// A name no other upload or saved file has: `{prefix}-{ms}-{random}`.
pub fn unique_file_name(prefix: &str) -> String {
    use rand::Rng;
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}-{}-{n:016x}", crate::store::now_ms())
}

/// Writes `body` under `dir` as an upload of `kind` (0600): an mbox as one file, an .eml
/// alone in a folder of its own. Refuses more than `limits.max_size` bytes and a gzip mbox
/// that decompresses past `limits.decompress`; on any error nothing of it is kept.
pub async fn receive_upload<S, B, E>(
    dir: &Path,
    kind: UploadKind,
    body: S,
    limits: UploadLimits,
) -> Result<ReceivedUpload, UploadError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let base = unique_file_name("upload");
    let (owned, file_path) = match kind {
        UploadKind::Mbox => {
            let p = dir.join(format!("{base}.mbox"));
            (p.clone(), p)
        }
        UploadKind::Eml => {
            let folder = dir.join(&base);
            (folder.clone(), folder.join("message.eml"))
        }
    };
    let gzip_limits = (kind == UploadKind::Mbox).then_some(limits.decompress);
    match write_body(body, &file_path, limits.max_size, gzip_limits).await {
        Ok(size) => Ok(ReceivedUpload { path: owned, size }),
        Err(e) => {
            discard_upload(&owned).await;
            Err(e)
        }
    }
}

/// Deletes an upload no job will read (refused, or its job could not start).
pub async fn discard_upload(path: &Path) {
    let result = if tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir()) {
        tokio::fs::remove_dir_all(path).await
    } else {
        tokio::fs::remove_file(path).await
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a refused upload");
        }
    }
}

/// Writes the body to `path` (0600) as it arrives, refusing more than `cap` bytes and, with
/// `gzip_limits`, a gzip body that decompresses past them. The decompression runs inline:
/// ordinary mail costs about a millisecond per chunk, and a bomb is stopped once
/// [`super::decompress_limit::RATIO_FLOOR`] bytes have come out of it.
async fn write_body<S, B, E>(
    mut body: S,
    path: &Path,
    cap: u64,
    gzip_limits: Option<DecompressLimits>,
) -> Result<u64, UploadError>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    if let Some(parent) = path.parent() {
        crate::private_files::create_dir_all_async(parent).await?;
    }
    let mut file = crate::private_files::open_options_async()
        .write(true)
        .create_new(true)
        .open(path)
        .await?;
    let mut size: u64 = 0;
    // The first bytes, until there are enough to tell gzip from plain text.
    let mut first: Option<Vec<u8>> = gzip_limits.map(|_| Vec::new());
    let mut gzip: Option<UploadCheck> = None;
    // Once refused, the rest of the body is read and dropped: a client still sending would
    // otherwise see its connection reset instead of the answer.
    let mut refused: Option<LimitExceeded> = None;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| UploadError::Client(e.to_string()))?;
        let chunk = chunk.as_ref();
        size += chunk.len() as u64;
        if size > cap {
            return Err(refused.map_or(UploadError::TooLarge, UploadError::Decompressed));
        }
        if refused.is_some() {
            continue;
        }
        let checked = if let (Some(seen), Some(limits)) = (first.as_mut(), gzip_limits) {
            seen.extend_from_slice(chunk);
            let mut checked = Ok(());
            if seen.len() >= GZIP_MAGIC.len() {
                if seen.starts_with(&GZIP_MAGIC) {
                    let mut check = UploadCheck::new(limits);
                    checked = check.feed(seen);
                    gzip = Some(check);
                }
                first = None;
            }
            checked
        } else if let Some(check) = gzip.as_mut() {
            check.feed(chunk)
        } else {
            Ok(())
        };
        if let Err(limit) = checked {
            refused = Some(limit);
            continue;
        }
        file.write_all(chunk).await?;
    }
    if let Some(limit) = refused {
        return Err(UploadError::Decompressed(limit));
    }
    if size == 0 {
        return Err(UploadError::Empty);
    }
    if let Some(check) = gzip.as_mut() {
        check.finish().map_err(UploadError::Decompressed)?;
    }
    // On disk before the job that reads it exists: a resume after a crash finds it whole.
    file.sync_all().await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<&'static [u8], String>> + Unpin {
        futures_util::stream::iter(parts.iter().map(|p| Ok(*p)).collect::<Vec<_>>())
    }

    fn limits(max_size: u64) -> UploadLimits {
        UploadLimits {
            max_size,
            decompress: DecompressLimits::default(),
        }
    }

    #[tokio::test]
    async fn an_eml_is_kept_alone_in_a_folder_of_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let body = chunks(&[b"Subject: hi\r\n", b"\r\nbody\r\n"]);
        let up = receive_upload(dir.path(), UploadKind::Eml, body, limits(1024))
            .await
            .expect("stored");
        assert_eq!(up.size, 21);
        assert!(up.path.is_dir());
        let text = std::fs::read(up.path.join("message.eml")).expect("the message");
        assert_eq!(text, b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[tokio::test]
    async fn refused_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let big = chunks(&[b"From a@b Mon Jan  1 00:00:00 2024\n", b"0123456789"]);
        let e = receive_upload(dir.path(), UploadKind::Mbox, big, limits(40)).await;
        assert!(matches!(e, Err(UploadError::TooLarge)), "{e:?}");
        let e = receive_upload(dir.path(), UploadKind::Eml, chunks(&[]), limits(40)).await;
        assert!(matches!(e, Err(UploadError::Empty)), "{e:?}");
        let left = std::fs::read_dir(dir.path()).expect("listing").count();
        assert_eq!(left, 0);
    }
}

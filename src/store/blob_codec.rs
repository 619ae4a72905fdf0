//! How content-addressed blobs are kept on disk: zstd-compressed when that saves at least an
//! eighth, as is otherwise (JPEG, PDF and other packed attachments). Mail is mostly text and
//! base64, so a message takes about half the pages; every page costs a WAL write, a
//! checkpoint copy and an fsync, which is what limits intake and imports. The blob's key
//! stays the SHA-256 of the bytes as received, so deduplication does not change.

use super::StoreError;

/// Column value of `blobs.compression` for zstd frames; NULL means stored as is.
pub const ZSTD: &str = "zstd";

/// zstd's fastest level: several hundred MB/s, about 3:1 on mail text.
const LEVEL: i32 = 1;
/// Below this, the frame header eats the gain.
const MIN_SIZE: usize = 256;

/// A blob as stored: its bytes and how they are encoded.
pub struct StoredBlob<'a> {
    pub data: std::borrow::Cow<'a, [u8]>,
    pub compression: Option<&'static str>,
}

/// The stored form of `data`.
pub fn encode(data: &[u8]) -> StoredBlob<'_> {
    if data.len() >= MIN_SIZE {
        if let Some(packed) = compress(data) {
            if packed.len() <= data.len() - data.len() / 8 {
                return StoredBlob {
                    data: packed.into(),
                    compression: Some(ZSTD),
                };
            }
        }
    }
    StoredBlob {
        data: data.into(),
        compression: None,
    }
}

thread_local! {
    /// One compression context per thread, made once: creating a context (and its tables)
    /// for every message was a twentieth of an import's CPU time.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `data` as one zstd frame, or `None` when zstd fails (the blob is then stored as is).
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Compressor::new(LEVEL).ok()?);
        }
        slot.as_mut()?.compress(data).ok()
    })
}

/// The content address of `data`: the hex SHA-256 of the bytes as received.
pub fn key(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The zstd frame of `data` when compressing pays, computed where there are cores to spare
/// (the SMTP sessions, the import's parsing threads) so that the writer thread, the serial
/// part of intake, only stores it.
pub fn pack(data: &[u8]) -> Option<Vec<u8>> {
    match encode(data) {
        StoredBlob {
            data,
            compression: Some(_),
        } => Some(data.into_owned()),
        _ => None,
    }
}

/// Writes a blob row: content-addressed, so stored once whatever the number of messages
/// using it (a second insert of the same key changes nothing). `size` is the length of the
/// bytes as received; `data` and `compression` their stored form.
pub fn insert(
    conn: &rusqlite::Connection,
    sha256: &str,
    size: i64,
    data: &[u8],
    compression: Option<&str>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO blobs (sha256, size, data, compression) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?
    .execute((sha256, size, data, compression))?;
    Ok(())
}

/// The bytes as received from a stored blob of `size` bytes. A frame that does not decode
/// to exactly `size` bytes is damage, reported as such rather than served.
pub fn decode(data: Vec<u8>, compression: Option<&str>, size: i64) -> Result<Vec<u8>, StoreError> {
    match compression {
        None => Ok(data),
        Some(ZSTD) => {
            let size = usize::try_from(size)
                .map_err(|_| StoreError::Internal(format!("blob with a negative size {size}")))?;
            let out = zstd::bulk::decompress(&data, size).map_err(|e| {
                StoreError::Internal(format!("a stored blob does not decompress: {e}"))
            })?;
            if out.len() != size {
                return Err(StoreError::Internal(format!(
                    "a stored blob decompressed to {} bytes instead of {size}",
                    out.len()
                )));
            }
            Ok(out)
        }
        Some(other) => Err(StoreError::Internal(format!(
            "a stored blob uses an unknown compression {other:?} (written by a newer Postern?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compressed_and_comes_back_byte_for_byte() {
        let text = "Hello, where is my order 12345?\r\n".repeat(200);
        let stored = encode(text.as_bytes());
        assert_eq!(stored.compression, Some(ZSTD));
        assert!(stored.data.len() < text.len() / 4);
        let back = decode(stored.data.into_owned(), Some(ZSTD), text.len() as i64).unwrap();
        assert_eq!(back, text.as_bytes());
    }

    #[test]
    fn incompressible_and_small_data_is_stored_as_is() {
        let mut noise = vec![0u8; 4096];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let stored = encode(&noise);
        assert_eq!(stored.compression, None);
        assert_eq!(&*stored.data, noise.as_slice());
        assert_eq!(encode(b"short").compression, None);
    }

    #[test]
    fn damaged_or_unknown_blobs_are_errors_not_garbage() {
        let text = "x".repeat(1000);
        let stored = encode(text.as_bytes()).data.into_owned();
        assert!(
            decode(stored.clone(), Some(ZSTD), 999).is_err(),
            "wrong size"
        );
        assert!(decode(vec![1, 2, 3], Some(ZSTD), 3).is_err(), "not a frame");
        assert!(decode(stored, Some("lzma"), 1000).is_err(), "unknown");
    }
}

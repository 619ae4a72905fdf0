//! How message bodies (`messages.text_body` and `html_body`, the decoded text and HTML) are
//! kept on disk: a BLOB in those columns is a zstd frame of the UTF-8 text, a TEXT value is
//! the text itself (bodies too small to gain, rows written by the API and rows written
//! before bodies were compressed). A 10 KB body took a leaf page and two overflow pages of
//! its message row; each page is a WAL frame written, synced and later copied again by the
//! checkpoint, on the writer thread that every SMTP session waits for (docs/BENCHMARKS.md).
//!
//! SQL reads a body through `body_text(column)`, a function registered on every connection
//! Postern opens (the sqlx pool and the writer's own connections): it returns the text
//! whichever way it is stored, so `body_text(text_body) LIKE ?` searches compressed bodies
//! too. Outside Postern (the sqlite3 shell), a compressed body shows as a BLOB; `zstd -d`
//! turns it back into the text.

use super::StoreError;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};

/// The SQL function that returns a stored body as text.
pub const SQL_FUNCTION: &str = "body_text";

/// No body decompresses beyond this: a frame that claims more is damage, not mail (bodies
/// come from messages that the size limits of intake and import already bound).
const MAX_BODY_BYTES: u64 = 512 << 20;

/// The stored form of a body when compressing pays: its zstd frame. `None`: store the text.
/// Runs where cores are to spare (the SMTP sessions, the import's parsing threads).
pub fn pack(text: &str) -> Option<Vec<u8>> {
    super::blob_codec::pack(text.as_bytes())
}

/// The text of a stored zstd frame; a frame that does not decode to UTF-8 text within
/// [`MAX_BODY_BYTES`] is reported as damage rather than served.
pub fn unpack(frame: &[u8]) -> Result<String, StoreError> {
    let damaged =
        |why: String| StoreError::Internal(format!("a stored message body is damaged: {why}"));
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_BODY_BYTES => size,
        Ok(Some(size)) => return Err(damaged(format!("it claims {size} bytes"))),
        Ok(None) => return Err(damaged("its frame does not say its size".into())),
        Err(_) => return Err(damaged("not a zstd frame".into())),
    };
    let capacity = usize::try_from(size).map_err(|_| damaged(format!("it claims {size} bytes")))?;
    let bytes = zstd::bulk::decompress(frame, capacity).map_err(|e| damaged(e.to_string()))?;
    if bytes.len() as u64 != size {
        return Err(damaged(format!(
            "it decompressed to {} bytes instead of {size}",
            bytes.len()
        )));
    }
    String::from_utf8(bytes).map_err(|_| damaged("it is not UTF-8 text".into()))
}

/// Registers [`SQL_FUNCTION`] on a connection.
pub fn register(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.create_scalar_function(
        SQL_FUNCTION,
        1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            Ok(match ctx.get_raw(0) {
                ValueRef::Blob(frame) => Value::Text(
                    unpack(frame).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))?,
                ),
                ValueRef::Text(text) => Value::Text(String::from_utf8_lossy(text).into_owned()),
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(r) => Value::Real(r),
            })
        },
    )?;
    Ok(())
}

/// Registers [`SQL_FUNCTION`] on one of sqlx's connections (the pool's `after_connect`).
pub async fn register_sqlx(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    // SAFETY: `raw` is sqlx's open connection, locked by `handle` for as long as `view`
    // lives; `from_handle` makes a view that never closes it, and sqlx and rusqlite link the
    // same libsqlite3-sys (one version in Cargo.lock), so the handle types are the same.
    // The function's closure is owned by SQLite from then on, not by `view`.
    let view = unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) }
        .map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
    register(&view).map_err(|e| sqlx::Error::Configuration(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        conn
    }

    fn body_text(conn: &rusqlite::Connection, value: Value) -> rusqlite::Result<Option<String>> {
        conn.query_row("SELECT body_text(?1)", [value], |r| r.get(0))
    }

    #[test]
    fn a_long_body_is_packed_and_reads_back_as_the_same_text() {
        let text = "Où est ma commande n° 12345 ? Merci.\r\n".repeat(300);
        let frame = pack(&text).expect("long text compresses");
        assert!(frame.len() < text.len() / 4, "{} bytes", frame.len());
        assert_eq!(unpack(&frame).unwrap(), text);
        let conn = conn();
        assert_eq!(body_text(&conn, Value::Blob(frame)).unwrap(), Some(text));
    }

    #[test]
    fn plain_text_and_null_pass_through_the_function() {
        let conn = conn();
        assert_eq!(
            body_text(&conn, Value::Text("short".into())).unwrap(),
            Some("short".into())
        );
        assert_eq!(body_text(&conn, Value::Null).unwrap(), None);
        assert!(pack("short").is_none(), "small bodies stay text");
    }

    #[test]
    fn like_finds_words_in_compressed_and_plain_bodies_alike() {
        let conn = conn();
        conn.execute_batch("CREATE TABLE m (id INTEGER PRIMARY KEY, text_body TEXT)")
            .unwrap();
        let long = format!("{}the parcel never arrived\n", "filler line\n".repeat(200));
        let frame = pack(&long).unwrap();
        conn.execute(
            "INSERT INTO m (text_body) VALUES (?1)",
            [Value::Blob(frame)],
        )
        .unwrap();
        conn.execute("INSERT INTO m (text_body) VALUES ('my PARCEL is late')", [])
            .unwrap();
        conn.execute("INSERT INTO m (text_body) VALUES ('unrelated')", [])
            .unwrap();
        let column = |sql: &str| -> Vec<Value> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            column("SELECT id FROM m WHERE body_text(text_body) LIKE '%parcel%' ORDER BY id"),
            [Value::Integer(1), Value::Integer(2)]
        );
        assert_eq!(
            column("SELECT typeof(text_body) FROM m ORDER BY id"),
            ["blob", "text", "text"].map(|k| Value::Text(k.into()))
        );
    }

    #[test]
    fn damaged_frames_are_errors_not_garbage() {
        let text = "x".repeat(5000);
        let frame = pack(&text).unwrap();
        let mut cut = frame.clone();
        cut.truncate(frame.len() - 3);
        assert!(unpack(&cut).is_err());
        assert!(unpack(b"not zstd at all").is_err());
        let not_utf8 = super::super::blob_codec::pack(&[0xffu8; 2000]).unwrap();
        let err = unpack(&not_utf8).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let conn = conn();
        let err = body_text(&conn, Value::Blob(cut)).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}

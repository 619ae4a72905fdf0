//! Opaque cursors for keyset pagination: the sort order, the sort key and the id of the
//! last item seen. Stable under inserts, unlike offsets.

use super::error::ApiError;
use axum::http::StatusCode;

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_query(format!(
            "limit={n} is out of range: use 1 to {MAX_LIMIT}"
        ))),
    }
}

pub fn encode_cursor(order: &str, key: i64, id: i64) -> String {
    base32::encode(
        base32::Alphabet::Rfc4648Lower { padding: false },
        format!("{order}|{key}|{id}").as_bytes(),
    )
}

fn bad_cursor(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", message)
}

/// The (key, id) after which the next page starts; the cursor must come from a listing
/// with the same order.
pub fn decode_cursor(cursor: &str, order: &str) -> Result<(i64, i64), ApiError> {
    const USE: &str = "the cursor is not one this server gave out: pass next_cursor from the previous page unchanged, or start again without a cursor";
    if cursor.len() > 200 {
        return Err(bad_cursor(USE));
    }
    let bytes = base32::decode(base32::Alphabet::Rfc4648Lower { padding: false }, cursor)
        .ok_or_else(|| bad_cursor(USE))?;
    let text = String::from_utf8(bytes).map_err(|_| bad_cursor(USE))?;
    let mut parts = text.split('|');
    let (Some(o), Some(k), Some(i), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_cursor(USE));
    };
    if o != order {
        return Err(bad_cursor(
            "the cursor belongs to a listing with another sort order; start again without a cursor",
        ));
    }
    match (k.parse(), i.parse()) {
        (Ok(k), Ok(i)) => Ok((k, i)),
        _ => Err(bad_cursor(USE)),
    }
}

/// The id after which a listing ordered by `order` with only the id in its cursor goes on:
/// `None` for the first page.
pub fn id_after(cursor: Option<&str>, order: &str) -> Result<Option<i64>, ApiError> {
    Ok(cursor
        .map(|c| decode_cursor(c, order))
        .transpose()?
        .map(|(_, id)| id))
}

/// Cuts a page read with one item more than `limit` (which tells whether another page
/// follows) back to `limit`, and gives the last item kept when another page follows: what
/// the next cursor is made of.
pub fn cut_page<T>(items: &mut Vec<T>, limit: u32) -> Option<&T> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_refusals() {
        let c = encode_cursor("-updated_at", 1_700_000_000_000, 42);
        assert_eq!(
            decode_cursor(&c, "-updated_at").map_err(|e| e.code).ok(),
            Some((1_700_000_000_000, 42))
        );
        assert_eq!(decode_cursor(&c, "id").unwrap_err().code, "bad_cursor");
        assert_eq!(decode_cursor("!!!", "id").unwrap_err().code, "bad_cursor");
        let forged = base32::encode(
            base32::Alphabet::Rfc4648Lower { padding: false },
            b"id|1 OR 1=1|2",
        );
        assert_eq!(decode_cursor(&forged, "id").unwrap_err().code, "bad_cursor");
        let extra = base32::encode(
            base32::Alphabet::Rfc4648Lower { padding: false },
            b"id|1|2|3",
        );
        assert_eq!(decode_cursor(&extra, "id").unwrap_err().code, "bad_cursor");
    }

    #[test]
    fn pages_are_cut_to_their_limit_and_say_whether_more_follow() {
        let mut more = vec![1, 2, 3];
        assert_eq!(cut_page(&mut more, 2), Some(&2));
        assert_eq!(more, [1, 2]);
        let mut last = vec![1, 2];
        assert_eq!(cut_page(&mut last, 2), None);
        assert_eq!(last, [1, 2]);
        assert_eq!(id_after(None, "id").map_err(|e| e.code).ok(), Some(None));
        let c = encode_cursor("id", 7, 7);
        assert_eq!(
            id_after(Some(&c), "id").map_err(|e| e.code).ok(),
            Some(Some(7))
        );
        assert_eq!(id_after(Some(&c), "-id").unwrap_err().code, "bad_cursor");
    }
}

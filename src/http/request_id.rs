//! A request id for every HTTP request: sent back in `X-Request-Id`, quoted in the message of
//! an internal error, and logged with that error's details, so that an operator can find what
//! a client saw without the client ever seeing internal details.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static CURRENT: String;
}

/// A new id: 16 hex digits, random (a client's own `X-Request-Id` is not trusted: it would
/// let a client write what it likes into the operator's log).
fn new_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The id of the request being handled, when called from inside one.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Middleware: gives the request its id for the whole handling and puts it in the answer.
pub async fn assign(request: Request, next: Next) -> Response {
    let id = new_id();
    let mut response = CURRENT.scope(id.clone(), next.run(request)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_known_inside_the_request_only() {
        assert_eq!(current(), None);
        let seen = CURRENT.scope("abc".to_string(), async { current() }).await;
        assert_eq!(seen.as_deref(), Some("abc"));
        let a = new_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, new_id());
    }
}

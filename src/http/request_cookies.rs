//! The cookies a request carries, by name.

use axum::http::header::COOKIE;
use axum::http::HeaderMap;

/// The values of the cookies named `name` in `headers`, in the order the request gives them
/// (Cookie headers that are not text, and pairs that do not parse, are passed over).
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|text| cookie::Cookie::split_parse(text).flatten())
        .filter(move |c| c.name() == name)
        .map(|c| c.value().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn values_of_the_named_cookie_across_headers_in_order() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; s=first"));
        headers.append(COOKIE, HeaderValue::from_bytes(b"s=\xff").unwrap());
        headers.append(COOKIE, HeaderValue::from_static("s=second;b=2"));
        let values: Vec<String> = cookie_values(&headers, "s").collect();
        assert_eq!(values, ["first", "second"]);
        assert_eq!(cookie_values(&headers, "none").count(), 0);
    }
}

//! The RelayState: the page to return to after sign-in. Only a path on this server is
//! accepted, never an absolute URL or a scheme-relative one (an open redirect would let a
//! phishing link bounce users through our sign-in to another host).

const MAX_RETURN_PATH: usize = 512;

/// `requested` if it is a safe relative path on this server, else "/".
pub fn safe_return_path(requested: Option<&str>) -> String {
    match requested {
        Some(p) if is_safe_return_path(p) => p.to_string(),
        _ => "/".to_string(),
    }
}

pub fn is_safe_return_path(path: &str) -> bool {
    path.len() <= MAX_RETURN_PATH
        && path.starts_with('/')
        // "//host" and "/\host" are taken by browsers as another host.
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths() {
        assert_eq!(safe_return_path(Some("/tickets?x=1#a")), "/tickets?x=1#a");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "/\t/evil.example",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_return_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_path(None), "/");
    }
}

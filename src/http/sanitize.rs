//! Message HTML from the internet is untrusted. Before any of it reaches a browser it goes
//! through ammonia (an allow-list sanitiser built on html5ever's parser): no scripts, no
//! event handlers, no style, no forms, frames, objects or base/meta tags, only safe URL
//! schemes. On top of that:
//! - remote images are dropped unless the caller opts in (they track the reader);
//! - inline `cid:` images point at the attachment download URL of the same message;
//! - relative URLs are dropped: they mean nothing in a mail and would hit our own server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The sanitised HTML, and whether remote images were removed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeHtml {
    pub html: String,
    pub remote_images_blocked: bool,
}

/// `cid_urls` maps a Content-ID (without angle brackets) to the URL that serves it.
pub fn sanitize_message_html(
    html: &str,
    cid_urls: &HashMap<String, String>,
    remote_images: bool,
) -> SafeHtml {
    let blocked = Arc::new(AtomicBool::new(false));
    let seen_blocked = blocked.clone();
    let cids: HashMap<String, String> = cid_urls
        .iter()
        .map(|(k, v)| (k.trim_matches(['<', '>']).to_ascii_lowercase(), v.clone()))
        .collect();
    let mut builder = ammonia::Builder::default();
    builder
        .add_url_schemes(["cid"])
        // Relative URLs from the mail are dropped by the filter below; what is left relative
        // is our own rewriting of cid: images, which must survive.
        .url_relative(ammonia::UrlRelative::Custom(Box::new(keep_attachment_urls)))
        .attribute_filter(move |element, attribute, value| {
            let v = value.trim();
            let lower = v.to_ascii_lowercase();
            if let Some(cid) = lower.strip_prefix("cid:") {
                // Only images may use cid:, and only Content-IDs of this very message.
                if (element, attribute) != ("img", "src") {
                    return None;
                }
                let cid = urlencoding::decode(cid)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| cid.to_string());
                return cids
                    .get(cid.trim_matches(['<', '>']))
                    .map(|url| url.clone().into());
            }
            if URL_ATTRIBUTES.contains(&attribute) && is_relative(&lower) {
                return None;
            }
            if (element, attribute) == ("img", "src") {
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    if remote_images {
                        return Some(value.into());
                    }
                    seen_blocked.store(true, Ordering::Relaxed);
                }
                // Anything else an image could load from is refused.
                return None;
            }
            Some(value.into())
        });
    let html = builder.clean(html).to_string();
    SafeHtml {
        html,
        remote_images_blocked: blocked.load(Ordering::Relaxed),
    }
}

/// Attributes holding a URL (those ammonia lets through are a subset).
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "cite",
    "longdesc",
    "action",
    "poster",
    "background",
    "data",
];

/// No scheme: a path, a query or a fragment. (`#top` links inside the mail are harmless,
/// but nothing else relative is.)
fn is_relative(lower: &str) -> bool {
    if lower.starts_with('#') {
        return false;
    }
    match lower.find(':') {
        None => true,
        // "a/b:c" or "?x:y": the colon is not a scheme separator.
        Some(i) => lower[..i].contains(['/', '?', '#']),
    }
}

/// Only in-page anchors and the attachment URLs this module wrote stay relative.
fn keep_attachment_urls(url: &str) -> Option<std::borrow::Cow<'_, str>> {
    if url.starts_with('#') {
        return Some(url.into());
    }
    let id = url.strip_prefix(ATTACHMENT_PATH)?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(url.into())
}

/// Where attachment downloads live (see `api::messages::attachment_url`).
pub const ATTACHMENT_PATH: &str = "/api/v1/attachments/";

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        let mut cids = HashMap::new();
        cids.insert("logo@x".to_string(), "/api/v1/attachments/7".to_string());
        sanitize_message_html(html, &cids, false).html
    }

    #[test]
    fn cid_images_point_at_their_attachment() {
        assert_eq!(
            clean(r#"<img src="cid:logo@x" alt="logo">"#),
            r#"<img src="/api/v1/attachments/7" alt="logo">"#
        );
        assert_eq!(
            clean(r#"<img src="CID:%3Clogo@x%3E">"#),
            r#"<img src="/api/v1/attachments/7">"#
        );
        // A Content-ID the message does not have loads nothing.
        assert_eq!(clean(r#"<img src="cid:other@x">"#), "<img>");
        assert_eq!(
            clean(r#"<a href="cid:logo@x">x</a>"#),
            r#"<a rel="noopener noreferrer">x</a>"#
        );
    }

    #[test]
    fn cid_with_dashes_and_numbers() {
        let mut cids = HashMap::new();
        cids.insert(
            "logo-x1@client.test".to_string(),
            "/api/v1/attachments/3".to_string(),
        );
        let out = sanitize_message_html(
            "<html><body><img src=\"cid:logo-x1@client.test\" alt=\"logo\"></body></html>",
            &cids,
            false,
        );
        assert_eq!(out.html, r#"<img src="/api/v1/attachments/3" alt="logo">"#);
    }

    #[test]
    fn remote_images_need_consent() {
        let html = r#"<p>hi<img src="https://tracker.example/p.gif"></p>"#;
        let blocked = sanitize_message_html(html, &HashMap::new(), false);
        assert!(blocked.remote_images_blocked);
        assert!(!blocked.html.contains("tracker"), "{}", blocked.html);
        let allowed = sanitize_message_html(html, &HashMap::new(), true);
        assert!(!allowed.remote_images_blocked);
        assert!(allowed.html.contains("https://tracker.example/p.gif"));
    }

    #[test]
    fn relative_and_data_urls_are_dropped() {
        assert_eq!(clean(r#"<img src="/api/v1/tokens">"#), "<img>");
        assert_eq!(clean(r#"<img src="data:image/png;base64,AAAA">"#), "<img>");
        assert_eq!(
            clean(r#"<a href="/api/v1/attachments/9">x</a><a href="../x">y</a>"#),
            r#"<a rel="noopener noreferrer">x</a><a rel="noopener noreferrer">y</a>"#
        );
        assert_eq!(
            clean(r##"<a href="#top">x</a>"##),
            r##"<a href="#top" rel="noopener noreferrer">x</a>"##
        );
    }
}

//! The content type of a file attached to a reply, from its name (the command line attaches
//! files by path; the API is told the type by its caller).

/// Extensions we recognise, lower case; anything else is `application/octet-stream`.
const BY_EXTENSION: &[(&str, &str)] = &[
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("txt", "text/plain"),
    ("csv", "text/csv"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("zip", "application/zip"),
];

/// The content type for a file named `filename`, by its last extension (any case).
pub fn content_type_of(filename: &str) -> &'static str {
    let Some((_, ext)) = filename.rsplit_once('.') else {
        return "application/octet-stream";
    };
    BY_EXTENSION
        .iter()
        .find(|(known, _)| ext.eq_ignore_ascii_case(known))
        .map_or("application/octet-stream", |(_, content_type)| content_type)
}

#[cfg(test)]
mod tests {
    use super::content_type_of;

    #[test]
    fn content_type_by_last_extension_in_any_case() {
        let cases = [
            ("invoice.pdf", "application/pdf"),
            ("PHOTO.JPG", "image/jpeg"),
            ("scan.Jpeg", "image/jpeg"),
            ("logo.png", "image/png"),
            ("anim.gif", "image/gif"),
            ("notes.txt", "text/plain"),
            ("orders.csv", "text/csv"),
            ("page.htm", "text/html"),
            ("page.html", "text/html"),
            ("bundle.tar.zip", "application/zip"),
            ("archive.tar.gz", "application/octet-stream"),
            ("README", "application/octet-stream"),
            ("trailing.", "application/octet-stream"),
            ("pdf", "application/octet-stream"),
        ];
        for (name, expected) in cases {
            assert_eq!(content_type_of(name), expected, "{name}");
        }
    }
}

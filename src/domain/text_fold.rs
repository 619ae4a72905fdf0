//! Text as rules (and anything else that matches words) compare it: case- and accent-insensitive, blind to the invisible
//! characters that mail clients and copy-paste leave inside words.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Characters that never change what a word says: soft hyphen, zero-width space, joiners,
/// word joiner, byte-order mark.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}'
    )
}

/// Compatibility decomposition (NFKD), combining marks and invisible characters removed,
/// lower-cased: "Rembourse\u{AD}ment" and "REMBOURSÉMENT" both become "remboursement".
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        if is_combining_mark(c) || is_invisible(c) {
            continue;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Like [`fold`] without lower-casing: for regular expressions, whose escapes (`\D`, `\W`)
/// change meaning with case; they are compiled case-insensitive instead.
pub fn strip_marks(text: &str) -> String {
    text.nfkd()
        .filter(|&c| !is_combining_mark(c) && !is_invisible(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_accents_and_invisible_characters_do_not_count() {
        for variant in [
            "remboursement",
            "Remboursement",
            "REMBOURSEMENT",
            "rembourSEment",
            "rembourse\u{AD}ment",
            "rembour\u{200B}sement",
            "rémbóursèmênt",
            "Rembourse\u{0301}ment",
        ] {
            assert_eq!(fold(variant), "remboursement", "{variant:?}");
        }
        assert_eq!(fold("ﬁn"), "fin");
        assert_eq!(fold("Straße"), "straße");
    }
}

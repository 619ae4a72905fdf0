//! The reply part of a message, without the quoted history and the signature (what Postmark
//! calls StrippedTextReply), shown to agents beside the full text.
//!
//! The text is cut at the first of:
//! - an attribution line above quoted mail, in English, French, German, Spanish, Italian,
//!   Portuguese, Dutch and Swedish/Danish/Norwegian ("On Mon, 3 Jun 2024 at 10:00, Ana
//!   <a@b> wrote:", "Le … a écrit :", "Am … schrieb …:", "El … escribió:", "Il giorno … ha
//!   scritto:", "Em … escreveu:", "Op … schreef …:", "Den … skrev …:"), also when the client
//!   wrapped it over two lines;
//! - a block of quoted lines ("> ...") with no new text after it;
//! - a separator: Outlook's "-----Original Message-----" and translations, a line of
//!   underscores above a From header, a "From: / Sent: / To: / Subject:" header block in any
//!   of those languages, the forwarded-message separators of Gmail, Thunderbird, Yahoo and
//!   Apple Mail;
//! - a signature: the "-- " delimiter (or "--"), and the mobile and Outlook taglines ("Sent
//!   from my iPhone", "Envoyé de mon iPhone", "Von meinem iPhone gesendet", "Get Outlook for
//!   iOS", "Sent from Mail for Windows" and similar).
//!
//! Inline answers: when quoted lines are interleaved with new text (the author answered
//! point by point, or wrote below the quote), the quoted lines and the attribution lines above
//! them are dropped and every new line is kept, in order, so the agent reads all that the
//! author wrote. The questions being answered are then missing; the full text is kept beside
//! this one for that.
//!
//! Work is linear in the size of the text: every line is classified once, with look-ahead
//! bounded to a few lines and recognisers that only read short lines, so a hostile text (5 MB of
//! '>' lines, one 5 MB line) costs no more than reading it.

use super::forwarded::{fold, header_field, is_rule, marker, Field};
use crate::store::whole_text_reply;
use std::borrow::Cow;

/// Attribution lines are short; longer lines are prose. Also bounds the work per line.
const ATTRIBUTION_MAX: usize = 400;

/// How far below a From header the other header fields of a quoted header block are looked for.
const HEADER_BLOCK_LOOKAHEAD: usize = 6;

/// One line of the text, with its byte range so that the result can be cut from the original.
struct Line<'a> {
    /// Without the line ending.
    text: &'a str,
    start: usize,
    /// After the line ending.
    end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Quoted,
    Text,
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::with_capacity(text.len() / 40 + 1);
    let mut start = 0;
    // One pass of memchr over the whole text: a search per line costs more than the line.
    let ends = memchr::memchr_iter(b'\n', text.as_bytes())
        .map(|nl| (nl, nl + 1))
        .chain((!text.is_empty() && !text.ends_with('\n')).then_some((text.len(), text.len())));
    for (content_end, end) in ends {
        let content = &text[start..content_end];
        lines.push(Line {
            text: content.strip_suffix('\r').unwrap_or(content),
            start,
            end,
        });
        start = end;
    }
    lines
}

/// The new text an author wrote, without the quoted history and the signature. Returns the
/// trimmed result; if stripping would leave nothing, returns the full text trimmed.
pub fn stripped_reply(text: &str) -> String {
    stripped(text).into_owned()
}

/// [`stripped_reply`], or `None` when that is what readers take without a stored reply
/// part ([`whole_text_reply`]; most messages quote nothing): callers then keep the text
/// alone rather than a second copy of it.
pub fn stripped_reply_if_shorter(text: &str) -> Option<String> {
    let reply = stripped(text);
    (reply != whole_text_reply(text)).then(|| reply.into_owned())
}

fn stripped(text: &str) -> Cow<'_, str> {
    let lines = split_lines(text);
    let n = lines.len();
    let kinds: Vec<Kind> = lines
        .iter()
        .map(|l| {
            let t = l.text.trim_start();
            if t.is_empty() {
                Kind::Blank
            } else if t.starts_with('>') {
                Kind::Quoted
            } else {
                Kind::Text
            }
        })
        .collect();
    // next_non_blank[i]: the first line at or after i that is not blank (n if none).
    let mut next_non_blank = vec![n; n + 1];
    for i in (0..n).rev() {
        next_non_blank[i] = if kinds[i] == Kind::Blank {
            next_non_blank[i + 1]
        } else {
            i
        };
    }
    let ctx = Context {
        lines: &lines,
        kinds: &kinds,
        next_non_blank: &next_non_blank,
    };

    // 1. The first separator or signature ends the reply, whatever follows.
    let cut = (0..n)
        .filter(|&i| kinds[i] == Kind::Text)
        .find_map(|i| ctx.hard_cut(i))
        .unwrap_or(n);

    // 2. Quoted lines before it: history below the reply, or inline answers.
    let keep = match (0..cut).find(|&i| kinds[i] == Kind::Quoted) {
        None => Kept::Prefix(cut),
        Some(first_quoted) => {
            // Attribution lines introducing each quoted block are part of the quote.
            let mut dropped = vec![false; cut];
            let mut prev_non_blank: Option<usize> = None;
            for i in 0..cut {
                if kinds[i] == Kind::Quoted
                    && prev_non_blank.is_none_or(|p| kinds[p] != Kind::Quoted)
                {
                    if let Some(p) = prev_non_blank {
                        if let Some(from) = ctx.attribution_ending_at(p) {
                            dropped[from..=p].fill(true);
                        }
                    }
                }
                if kinds[i] != Kind::Blank {
                    prev_non_blank = Some(i);
                }
            }
            let new_text_after_quote =
                (first_quoted + 1..cut).any(|i| kinds[i] == Kind::Text && !dropped[i]);
            if new_text_after_quote {
                Kept::Lines(
                    (0..cut)
                        .filter(|&i| kinds[i] != Kind::Quoted && !dropped[i])
                        .collect(),
                )
            } else {
                // Everything from the quote (and its attribution) on is history.
                let first_dropped = dropped.iter().position(|&d| d).unwrap_or(first_quoted);
                Kept::Prefix(first_dropped.min(first_quoted))
            }
        }
    };

    let result = match keep {
        Kept::Prefix(end) => {
            let end = lines.get(end).map_or(text.len(), |l| l.start);
            Cow::Borrowed(text[..end].trim())
        }
        Kept::Lines(kept) => {
            // Removing quotes leaves runs of blank lines: keep one of each.
            let mut out = String::new();
            let mut last_blank = true;
            for i in kept {
                let blank = kinds[i] == Kind::Blank;
                if blank && last_blank {
                    continue;
                }
                last_blank = blank;
                out.push_str(&text[lines[i].start..lines[i].end]);
            }
            Cow::Owned(out.trim().to_string())
        }
    };
    if result.is_empty() {
        Cow::Borrowed(text.trim())
    } else {
        result
    }
}

enum Kept {
    /// The lines before this index.
    Prefix(usize),
    /// These lines, in order.
    Lines(Vec<usize>),
}

struct Context<'a, 'b> {
    lines: &'b [Line<'a>],
    kinds: &'b [Kind],
    next_non_blank: &'b [usize],
}

impl Context<'_, '_> {
    fn text_line(&self, i: usize) -> Option<&str> {
        (self.kinds.get(i) == Some(&Kind::Text)).then(|| self.lines[i].text)
    }

    /// Where the reply ends if line `i` (a text line) starts the history or a signature.
    fn hard_cut(&self, i: usize) -> Option<usize> {
        let line = self.lines[i].text;
        if !self.may_cut(line, i) {
            return None;
        }
        if line.trim() == "--" || is_mobile_signature(line) || marker(line).is_some() {
            return Some(i);
        }
        if is_rule(line) {
            // Outlook's rule above the header block of the quoted message.
            let next = self.next_non_blank[i + 1];
            return self
                .text_line(next)
                .filter(|l| matches!(header_field(l), Some((Field::From, _))))
                .map(|_| i);
        }
        if matches!(header_field(line), Some((Field::From, _))) {
            // "From: / Sent: / To: / Subject:" without a separator. Two more fields within a
            // few lines (values may wrap) tell it from prose that says "From: ...".
            let telling = (i + 1..self.lines.len().min(i + 1 + HEADER_BLOCK_LOOKAHEAD))
                .filter_map(|j| self.text_line(j))
                .filter(|l| {
                    matches!(
                        header_field(l),
                        Some((Field::Date | Field::Subject | Field::To, _))
                    )
                })
                .count();
            return (telling >= 2).then_some(i);
        }
        // An attribution above unquoted history (Outlook on the web and some mobile clients
        // do not quote). One above quoted lines is handled with the quote, so that inline
        // answers below it survive.
        let end = if is_attribution(line, true) {
            i
        } else {
            let next = self.text_line(i + 1)?;
            if !is_wrapped_attribution(line, next, true) {
                return None;
            }
            i + 1
        };
        let after = self.next_non_blank[end + 1];
        (self.kinds.get(after) != Some(&Kind::Quoted)).then_some(i)
    }

    /// What every recogniser of [`Self::hard_cut`] needs at the least, in one cheap look:
    /// a separator or rule starts with '-' or '_', a tagline with one of a few letters, a
    /// header field or an attribution has a colon, and an attribution wrapped over this
    /// line and the next ends the next one with a colon. Most lines of most messages have
    /// none of these, and are then refused without the recognisers' work.
    fn may_cut(&self, line: &str, i: usize) -> bool {
        let t = line.trim();
        t.starts_with(['-', '_'])
            || may_be_tagline(t)
            || memchr::memchr(b':', t.as_bytes()).is_some()
            || self
                .lines
                .get(i + 1)
                .is_some_and(|next| next.text.trim_end().ends_with(':'))
    }

    /// If line `p` ends an attribution (on one line, or wrapped over `p - 1` and `p`), the
    /// index of its first line.
    fn attribution_ending_at(&self, p: usize) -> Option<usize> {
        let line = self.text_line(p)?;
        if is_attribution(line, false) {
            return Some(p);
        }
        let prev = self.text_line(p.checked_sub(1)?)?;
        is_wrapped_attribution(prev, line, false).then_some(p - 1)
    }
}

fn is_wrapped_attribution(first: &str, second: &str, strict: bool) -> bool {
    // Cheap refusals first: this is asked of most pairs of lines.
    if first.len() + second.len() > ATTRIBUTION_MAX || !second.trim_end().ends_with(':') {
        return false;
    }
    is_attribution(&format!("{} {}", first.trim(), second.trim()), strict)
}

/// "On <date>, <name> wrote:" and its translations. `strict` asks for the opening word and a
/// digit (every client writes the date), for cutting where no quote follows; otherwise the
/// closing verb is enough, since the line is known to stand above quoted lines.
fn is_attribution(line: &str, strict: bool) -> bool {
    let t = line.trim();
    if t.len() > ATTRIBUTION_MAX || !t.ends_with(':') {
        return false;
    }
    let folded = fold(t);
    let Some(body) = folded.strip_suffix(':') else {
        return false;
    };
    let body = body.trim_end();
    let opens = |w: &str| body.starts_with(w);
    let ends = |w: &str| body.ends_with(w);
    let has = |w: &str| body.contains(w);
    let strict_match = (opens("on ") && ends(" wrote"))
        || (opens("le ") && ends(" a écrit"))
        || (opens("am ") && has(" schrieb"))
        || (opens("el ") && ends(" escribió"))
        || (opens("il ") && ends(" ha scritto"))
        || (opens("em ") && ends(" escreveu"))
        || (opens("op ") && (has(" schreef") || ends(" geschreven")))
        || (opens("den ") && has(" skrev"));
    if strict {
        return strict_match && body.bytes().any(|b| b.is_ascii_digit());
    }
    strict_match
        || [
            " wrote",
            " writes",
            " a écrit",
            " escribió",
            " ha scritto",
            " escreveu",
            " schrieb",
            " schreef",
            " geschreven",
            " skrev",
        ]
        .iter()
        .any(|w| ends(w))
        || has(" schrieb ")
        || has(" schreef ")
}

/// Every tagline is short and starts with one of these letters: most lines are refused
/// without work. `t` is trimmed.
fn may_be_tagline(t: &str) -> bool {
    t.len() <= 200
        && t.chars()
            .next()
            .is_some_and(|c| matches!(c.to_ascii_lowercase(), 's' | 'g' | 'e' | 'o' | 'i' | 'v'))
}

/// Taglines that mobile and desktop clients append below the reply.
fn is_mobile_signature(line: &str) -> bool {
    let t = line.trim();
    if !may_be_tagline(t) {
        return false;
    }
    // Links are kept in angle brackets when HTML becomes text ("Sent from Mail<https://...>
    // for Windows"): read the words only.
    let mut words = String::with_capacity(t.len());
    let mut in_link = false;
    for c in t.chars() {
        match c {
            '<' => in_link = true,
            '>' if in_link => {
                in_link = false;
                words.push(' ');
            }
            c if !in_link => words.push(c),
            _ => {}
        }
    }
    let f = fold(&words);
    const PREFIXES: &[&str] = &[
        "sent from my ",
        "sent from mail for windows",
        "sent from outlook",
        "sent from yahoo mail",
        "sent from the all new aol app",
        "get outlook for ios",
        "get outlook for android",
        "envoyé de mon ",
        "envoyé depuis mon ",
        "envoyé à partir de outlook",
        "envoyé à partir de courrier pour windows",
        "obtenir outlook pour ",
        "gesendet von meinem ",
        "gesendet von mail für windows",
        "outlook für ios beziehen",
        "outlook für android beziehen",
        "enviado desde mi ",
        "enviado desde correo para windows",
        "obtener outlook para ",
        "inviato da ",
        "scarica outlook per ",
        "enviado do meu ",
        "enviado de meu ",
        "enviado do meu ",
        "obter o outlook para ",
        "verzonden vanaf mijn ",
        "verstuurd vanaf mijn ",
        "verzonden met ",
        "outlook voor ios downloaden",
        "outlook voor android downloaden",
    ];
    PREFIXES.iter().any(|p| f.starts_with(p))
        || (f.starts_with("von meinem ") && f.ends_with(" gesendet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribution_lines() {
        assert!(is_attribution(
            "On Mon, 3 Jun 2024 at 10:00, Ana <a@b.c> wrote:",
            true
        ));
        assert!(is_attribution(
            "Le lun. 3 juin 2024 à 10:00, Ana <a@b.c> a écrit\u{a0}:",
            true
        ));
        assert!(is_attribution(
            "Am 03.06.2024 um 10:00 schrieb Ana <a@b.c>:",
            true
        ));
        assert!(!is_attribution("On Monday Ana wrote:", true));
        assert!(is_attribution("On Monday Ana wrote:", false));
        assert!(is_attribution("Ana Lima <a@b.c> wrote:", false));
        assert!(!is_attribution("Ana Lima <a@b.c> wrote", false));
        assert!(!is_attribution("Here is my answer:", false));
    }

    #[test]
    fn mobile_signatures() {
        assert!(is_mobile_signature("Sent from my iPhone"));
        assert!(is_mobile_signature("Von meinem iPhone gesendet"));
        assert!(is_mobile_signature("Envoyé de mon iPad"));
        assert!(!is_mobile_signature("Sent it yesterday"));
    }

    #[test]
    fn line_endings_are_kept() {
        assert_eq!(
            stripped_reply("Yes.\r\nThanks\r\n\r\n> old\r\n"),
            "Yes.\r\nThanks"
        );
        assert_eq!(stripped_reply(""), "");
        assert_eq!(stripped_reply("\n\n"), "");
    }

    #[test]
    fn lines_cover_the_text_with_and_without_a_final_line_ending() {
        for text in ["", "a", "a\n", "a\r\nb", "\n\n", "a\nb\n", "\r\n", "x\n\ny"] {
            let lines = split_lines(text);
            // Each line starts where the previous one ended, and the last ends the text.
            let mut at = 0;
            for l in &lines {
                assert_eq!(l.start, at, "{text:?}");
                assert!(text[l.start..l.end].starts_with(l.text), "{text:?}");
                assert!(!l.text.ends_with(['\r', '\n']), "{text:?}");
                at = l.end;
            }
            assert_eq!(at, text.len(), "{text:?}");
            assert_eq!(lines.len(), text.lines().count(), "{text:?}");
        }
    }
}

//! Parsing of one SMTP command line (without its line ending).

use super::reply::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        path: String,
        params: MailParams,
    },
    Rcpt {
        path: String,
    },
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    /// Something that is not SMTP at all (an HTTP request sent to port 25).
    Foreign,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub smtputf8: bool,
}

fn syntax(enhanced: &'static str, text: &str) -> Reply {
    Reply::new(501, enhanced, text)
}

pub fn parse(line: &[u8]) -> Result<Command, Reply> {
    if line.contains(&0) {
        return Err(Reply::new(500, "5.5.2", "NUL character in command"));
    }
    let line = std::str::from_utf8(line)
        .map_err(|_| Reply::new(500, "5.5.2", "Command is not valid UTF-8"))?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line.trim_end(), ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(syntax(
                "5.5.4",
                "Syntax error: this command takes no arguments",
            ))
        }
    };
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err(syntax("5.5.4", &format!("Syntax: {verb} hostname")));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(name.to_string())
            } else {
                Command::Helo(name.to_string())
            })
        }
        "MAIL" => {
            let args = strip_keyword(rest, "FROM:")
                .ok_or_else(|| syntax("5.5.4", "Syntax: MAIL FROM:<address>"))?;
            let (path, params) =
                split_path(args).ok_or_else(|| syntax("5.1.7", "Syntax: MAIL FROM:<address>"))?;
            Ok(Command::Mail {
                path,
                params: parse_mail_params(params)?,
            })
        }
        "RCPT" => {
            let args = strip_keyword(rest, "TO:")
                .ok_or_else(|| syntax("5.5.4", "Syntax: RCPT TO:<address>"))?;
            let (path, params) =
                split_path(args).ok_or_else(|| syntax("5.1.3", "Syntax: RCPT TO:<address>"))?;
            if let Some(p) = params.split_whitespace().next() {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Unsupported RCPT parameter {p}"),
                ));
            }
            Ok(Command::Rcpt { path })
        }
        "DATA" => no_args(Command::Data),
        "BDAT" => {
            let mut parts = rest.split_whitespace();
            let size = parts
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| syntax("5.5.4", "Syntax: BDAT size [LAST]"))?;
            let last = match parts.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(syntax("5.5.4", "Syntax: BDAT size [LAST]")),
            };
            if parts.next().is_some() {
                return Err(syntax("5.5.4", "Syntax: BDAT size [LAST]"));
            }
            Ok(Command::Bdat { size, last })
        }
        "RSET" => no_args(Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "HELP" => Ok(Command::Help),
        "STARTTLS" => no_args(Command::StartTls),
        "GET" | "POST" | "HEAD" | "PUT" | "CONNECT" | "OPTIONS" | "DELETE" => Ok(Command::Foreign),
        v if v.ends_with(':') => Ok(Command::Foreign), // "Host:", "User-Agent:" header lines
        _ => Err(Reply::new(500, "5.5.2", "Command not recognized")),
    }
}

/// `FROM:` / `TO:`, case-insensitive, allowing the common (if non-standard) space after the colon.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| rest[keyword.len()..].trim_start())
}

/// Splits `<path> params` into the address (without brackets and source route) and the
/// parameter string. `<>` gives an empty address.
fn split_path(args: &str) -> Option<(String, &str)> {
    let (inner, params) = if let Some(after) = args.strip_prefix('<') {
        let close = closing_bracket(after)?;
        (&after[..close], &after[close + 1..])
    } else {
        // No brackets: tolerated for a bare address (some old clients), never with spaces inside.
        match args.find(' ') {
            Some(i) => (&args[..i], &args[i..]),
            None => (args, ""),
        }
    };
    if !params.is_empty() && !params.starts_with(' ') {
        return None;
    }
    // A source route (`@a,@b:user@c`) is obsolete; RFC 5321 says to ignore it.
    let inner = if inner.starts_with('@') {
        &inner[inner.find(':')? + 1..]
    } else {
        inner
    };
    Some((inner.to_string(), params.trim()))
}

fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_mail_params(params: &str) -> Result<MailParams, Reply> {
    let mut out = MailParams::default();
    for p in params.split_whitespace() {
        let (key, value) = match p.find('=') {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                out.size = Some(
                    v.parse()
                        .map_err(|_| syntax("5.5.4", "Syntax: SIZE=<number of bytes>"))?,
                )
            }
            ("BODY", Some(v))
                if ["7BIT", "8BITMIME", "BINARYMIME"]
                    .iter()
                    .any(|b| b.eq_ignore_ascii_case(v)) => {}
            ("SMTPUTF8", None) => out.smtputf8 = true,
            _ => {
                return Err(Reply::new(
                    555,
                    "5.5.4",
                    format!("Unsupported MAIL parameter {p}"),
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            parse(b"ehlo  client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(
            parse(b"MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME"),
            Ok(Command::Mail {
                path: "a@b.c".into(),
                params: MailParams {
                    size: Some(100),
                    smtputf8: false
                }
            })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail {
                path: "".into(),
                params: MailParams::default()
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.x,@y:u@d.e>"),
            Ok(Command::Rcpt {
                path: "u@d.e".into()
            })
        );
        assert_eq!(
            parse(b"BDAT 42 LAST"),
            Ok(Command::Bdat {
                size: 42,
                last: true
            })
        );
        assert_eq!(parse(b"GET / HTTP/1.1"), Ok(Command::Foreign));
    }

    #[test]
    fn rejects_bad_syntax() {
        assert_eq!(parse(b"MAIL TO:<a@b>").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b").unwrap_err().code, 501);
        assert_eq!(parse(b"MAIL FROM:<a@b> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse(b"RCPT TO:<a@b> NOTIFY=NEVER").unwrap_err().code, 555);
        assert_eq!(parse(b"DATA x").unwrap_err().code, 501);
        assert_eq!(parse(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse(b"XYZZY").unwrap_err().code, 500);
        assert_eq!(parse(b"NO\0OP").unwrap_err().enhanced, "5.5.2");
        assert_eq!(parse(b"BDAT x").unwrap_err().code, 501);
    }
}

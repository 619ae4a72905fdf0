//! mbox files in every dialect (mboxo, mboxrd, mboxcl, mboxcl2), LF or CRLF, plain or gzip,
//! streamed in bounded memory.
//!
//! A message starts at a line beginning `From ` (the From_ line). In the body, a `From ` line
//! ends the message only when the line after it looks like a header field (or the file ends):
//! mboxo writers that forgot to escape "From Russia with love" do not split a message.
//! `Content-Length` (mboxcl, mboxcl2) is honoured when it is no larger than the size cap and
//! lands exactly before the next From_ line (or the end of the file); otherwise the message is
//! delimited by From_ lines as in the other dialects.
//! Unescaping (`Auto`): `>From ` lines lose one `>` as mboxrd says (`>>From ` becomes
//! `>From `), except in a body delimited by a Content-Length that checked out: that body is
//! kept byte for byte (mboxcl2; Content-Length counts the stored bytes), as MimeKit does.
//! The blank line a writer puts between messages is not part of a message.

use super::decompress_limit::{exceeded, CountingReader, LimitedReader};
use super::headers::{
    from_line_date, from_line_sender, header_date, looks_like_header_line, mbox_status_flags,
    HEADER_SCAN_LIMIT,
};
use super::source::{
    item_of_read, Content, DateSource, FileSourceOptions, MessageSource, Position, SourceError,
    SourceItem, SourceMessage, OVERSIZED_HEAD,
};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The longest piece of a line handled at once; a longer line is read in several pieces, so
/// memory stays bounded whatever the file holds.
const PIECE: usize = 64 * 1024;
const READ_BUFFER: usize = 256 * 1024;

/// How `>From ` lines are unescaped and whether Content-Length is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MboxDialect {
    /// Content-Length when it checks out (body kept as is), else mboxrd unescaping (see the
    /// module documentation).
    #[default]
    Auto,
    /// Only `>From ` is unescaped; Content-Length ignored.
    Mboxo,
    /// `>+From ` loses one `>`; Content-Length ignored.
    Mboxrd,
    /// Content-Length, and `>From ` unescaped as in mboxo.
    Mboxcl,
    /// Content-Length, nothing unescaped.
    Mboxcl2,
}

impl std::str::FromStr for MboxDialect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "mboxo" => Ok(Self::Mboxo),
            "mboxrd" => Ok(Self::Mboxrd),
            "mboxcl" => Ok(Self::Mboxcl),
            "mboxcl2" => Ok(Self::Mboxcl2),
            _ => Err(format!(
                "unknown mbox dialect {s:?}: give auto, mboxo, mboxrd, mboxcl or mboxcl2"
            )),
        }
    }
}

impl MboxDialect {
    fn uses_content_length(self) -> bool {
        matches!(self, Self::Auto | Self::Mboxcl | Self::Mboxcl2)
    }
}

/// Which `>` lines lose their first `>`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unescape {
    None,
    /// `>From ` only.
    Single,
    /// `>+From `.
    Any,
}

impl Unescape {
    fn applies(self, line: &[u8]) -> bool {
        match self {
            Unescape::None => false,
            Unescape::Single => line.starts_with(b">From "),
            Unescape::Any => {
                let quotes = line.iter().take_while(|b| **b == b'>').count();
                quotes > 0 && line[quotes..].starts_with(b"From ")
            }
        }
    }
}

/// Reads pieces of lines, with bytes pushed back in front when a guess about Content-Length
/// proves wrong. `pos` is the offset of the next byte returned.
struct PieceReader {
    inner: Box<dyn BufRead + Send>,
    pushback: Vec<u8>,
    pushback_at: usize,
    pos: u64,
    line_start: bool,
}

impl PieceReader {
    /// Reads at most `limit` bytes, up to and including the next LF, into `out`. Returns
    /// `None` at the end, else whether the piece starts a line.
    fn next_piece(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<Option<bool>> {
        out.clear();
        let starts_line = self.line_start;
        if self.pushback_at < self.pushback.len() {
            let avail = &self.pushback[self.pushback_at..];
            let n = memchr::memchr(b'\n', avail)
                .map_or(avail.len(), |i| i + 1)
                .min(limit);
            out.extend_from_slice(&avail[..n]);
            self.pushback_at += n;
            if self.pushback_at == self.pushback.len() {
                self.pushback.clear();
                self.pushback_at = 0;
            }
        }
        while !out.ends_with(b"\n") && out.len() < limit {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let window = &buf[..buf.len().min(limit - out.len())];
            let n = memchr::memchr(b'\n', window).map_or(window.len(), |i| i + 1);
            out.extend_from_slice(&window[..n]);
            self.inner.consume(n);
        }
        if out.is_empty() {
            return Ok(None);
        }
        self.pos += out.len() as u64;
        self.line_start = out.ends_with(b"\n");
        Ok(Some(starts_line))
    }

    /// Puts `data`, which started a line, back in front of what is left to read.
    fn unread(&mut self, data: &[u8]) {
        let mut joined = Vec::with_capacity(data.len() + self.pushback.len() - self.pushback_at);
        joined.extend_from_slice(data);
        joined.extend_from_slice(&self.pushback[self.pushback_at..]);
        self.pushback = joined;
        self.pushback_at = 0;
        self.pos -= data.len() as u64;
        self.line_start = true;
    }
}

/// A message being gathered: complete up to the cap, then only its size and head.
struct Gathered {
    raw: Vec<u8>,
    size: u64,
    cap: u64,
    oversized: bool,
}

impl Gathered {
    fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.oversized {
            return;
        }
        if self.size > self.cap {
            self.oversized = true;
            self.raw.truncate(OVERSIZED_HEAD);
            self.raw.shrink_to_fit();
            return;
        }
        self.raw.extend_from_slice(bytes);
    }
}

/// An mbox file read message by message. Positions are byte offsets of From_ lines.
pub struct MboxSource {
    path: PathBuf,
    gzip: bool,
    reader: PieceReader,
    dialect: MboxDialect,
    max_message_size: u64,
    /// The From_ line that starts the next message, and its offset.
    next_from: Option<(u64, Vec<u8>)>,
    piece: Vec<u8>,
    done: bool,
}

impl MboxSource {
    /// Opens `path` (gzip is recognised by its magic bytes). Fails at once when the file is
    /// missing, is not an mbox, or the checkpoint does not fall on a message.
    pub fn open(
        path: &Path,
        dialect: MboxDialect,
        options: &FileSourceOptions,
    ) -> Result<Self, SourceError> {
        let mut file = File::open(path).map_err(|e| open_error(path, e))?;
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut file, &mut magic).map_err(|e| io_error(path, e))?;
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let named_gz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
        if named_gz && !gzip && got > 0 {
            return Err(SourceError::Gzip {
                path: path.to_path_buf(),
                offset: 0,
                source: io::Error::new(io::ErrorKind::InvalidData, "no gzip header"),
            });
        }
        let resume_offset = match &options.resume_after {
            None => None,
            Some(Position::Mbox { offset }) => Some(*offset),
            Some(other) => {
                return Err(SourceError::BadCheckpoint {
                    checkpoint: other.to_string(),
                    reason: "an mbox resumes from an mbox:OFFSET checkpoint".into(),
                })
            }
        };
        let start = if gzip { 0 } else { resume_offset.unwrap_or(0) };
        file.seek(SeekFrom::Start(start))
            .map_err(|e| io_error(path, e))?;
        let inner: Box<dyn BufRead + Send> = if gzip {
            let (file, compressed) = CountingReader::new(file);
            let decoder = flate2::read::MultiGzDecoder::new(BufReader::new(file));
            let limited = LimitedReader::new(decoder, compressed, options.decompress);
            Box::new(BufReader::with_capacity(READ_BUFFER, limited))
        } else {
            Box::new(BufReader::with_capacity(READ_BUFFER, file))
        };
        let mut source = Self::over(path, gzip, inner, start, dialect, options.max_message_size);
        if gzip {
            if let Some(offset) = resume_offset {
                source.skip_decompressed(offset)?;
            }
        }
        source.read_first_from_line(resume_offset)?;
        if resume_offset.is_some() {
            // The message at the checkpoint is the one already taken.
            source.read_message()?;
        }
        Ok(source)
    }

    /// Reads an mbox from any byte stream, as [`MboxSource::open`] reads a plain file from
    /// its start (no gzip, no checkpoint); `name` stands for the path in origins and errors.
    /// For readers that are not files, and for the fuzz targets.
    pub fn from_reader(
        name: &Path,
        reader: impl Read + Send + 'static,
        dialect: MboxDialect,
        max_message_size: u64,
    ) -> Result<Self, SourceError> {
        let inner = Box::new(BufReader::with_capacity(READ_BUFFER, reader));
        let mut source = Self::over(name, false, inner, 0, dialect, max_message_size);
        source.read_first_from_line(None)?;
        Ok(source)
    }

    fn over(
        path: &Path,
        gzip: bool,
        inner: Box<dyn BufRead + Send>,
        start: u64,
        dialect: MboxDialect,
        max_message_size: u64,
    ) -> Self {
        MboxSource {
            path: path.to_path_buf(),
            gzip,
            reader: PieceReader {
                inner,
                pushback: Vec::new(),
                pushback_at: 0,
                pos: start,
                line_start: true,
            },
            dialect,
            max_message_size,
            next_from: None,
            piece: Vec::new(),
            done: false,
        }
    }

    fn skip_decompressed(&mut self, offset: u64) -> Result<(), SourceError> {
        let skipped = io::copy(&mut (&mut self.reader.inner).take(offset), &mut io::sink())
            .map_err(|e| self.read_error(e))?;
        self.reader.pos = skipped;
        if skipped < offset {
            return Err(SourceError::BadCheckpoint {
                checkpoint: Position::Mbox { offset }.to_string(),
                reason: format!("{} has only {skipped} bytes", self.path.display()),
            });
        }
        Ok(())
    }

    fn read_first_from_line(&mut self, resume_offset: Option<u64>) -> Result<(), SourceError> {
        let mut piece = Vec::new();
        let offset = self.reader.pos;
        if self
            .reader
            .next_piece(&mut piece, PIECE)
            .map_err(|e| self.read_error(e))?
            .is_none()
        {
            if let Some(offset) = resume_offset.filter(|o| *o > 0) {
                return Err(SourceError::BadCheckpoint {
                    checkpoint: Position::Mbox { offset }.to_string(),
                    reason: format!("{} ends before that offset", self.path.display()),
                });
            }
            self.done = true; // an empty mbox holds no message
            return Ok(());
        }
        let mut offset = offset;
        if offset == 0 && piece.starts_with(b"\xEF\xBB\xBF") {
            piece.drain(..3);
            offset = 3;
        }
        if !piece.starts_with(b"From ") {
            return Err(match resume_offset {
                Some(offset) => SourceError::BadCheckpoint {
                    checkpoint: Position::Mbox { offset }.to_string(),
                    reason: format!(
                        "no message starts there in {}: the file changed since",
                        self.path.display()
                    ),
                },
                None => SourceError::NotMbox {
                    path: self.path.clone(),
                    found: String::from_utf8_lossy(&piece[..piece.len().min(40)])
                        .trim_end()
                        .to_string(),
                },
            });
        }
        self.next_from = Some((offset, piece));
        Ok(())
    }

    fn read_error(&self, e: io::Error) -> SourceError {
        if let Some(limit) = exceeded(&e) {
            return SourceError::GzipLimit {
                path: self.path.clone(),
                offset: self.reader.pos,
                limit,
            };
        }
        if self.gzip {
            SourceError::Gzip {
                path: self.path.clone(),
                offset: self.reader.pos,
                source: e,
            }
        } else {
            io_error(&self.path, e)
        }
    }

    fn piece(&mut self, limit: usize) -> Result<Option<bool>, SourceError> {
        let mut piece = std::mem::take(&mut self.piece);
        let got = self.reader.next_piece(&mut piece, limit);
        self.piece = piece;
        got.map_err(|e| self.read_error(e))
    }

    /// Whether the `From ` line just read in `self.piece` starts a message: the line after it
    /// looks like a header field, or the line before it was blank and it is a complete From_
    /// line (sender and asctime date). The second case keeps a message whose header block is
    /// garbage (a damaged export) as its own message, to be quarantined, instead of gluing it
    /// to the message before; an unescaped "From Russia with love" has no date and stays body.
    fn candidate_starts_message(&mut self, after_blank: bool) -> Result<bool, SourceError> {
        if !self.piece.ends_with(b"\n") {
            return Ok(false);
        }
        if after_blank && from_line_date(&self.piece).is_some() {
            return Ok(true);
        }
        let candidate = std::mem::take(&mut self.piece);
        let next = self.piece(PIECE)?;
        let answer = match next {
            // "From time to time" as the last line of a file is body text.
            None => false,
            Some(_) => {
                let next = std::mem::take(&mut self.piece);
                self.reader.unread(&next);
                looks_like_header_line(&next) || next.starts_with(b"From ")
            }
        };
        self.piece = candidate;
        Ok(answer)
    }

    fn read_message(&mut self) -> Result<Option<SourceMessage>, SourceError> {
        let Some((offset, from_line)) = self.next_from.take() else {
            return Ok(None);
        };
        // The rest of an absurdly long From_ line is not kept.
        let mut from_line_ended = from_line.ends_with(b"\n");
        while !from_line_ended {
            match self.piece(PIECE)? {
                None => break,
                Some(_) => from_line_ended = self.piece.ends_with(b"\n"),
            }
        }
        let mut message = Gathered {
            raw: Vec::new(),
            size: 0,
            cap: self.max_message_size,
            oversized: false,
        };
        let mut headers = Vec::new();
        let mut truncated = false;
        let mut last_piece_ended_line = from_line_ended;
        let mut body_ready = false;
        let unescape_default = match self.dialect {
            MboxDialect::Auto | MboxDialect::Mboxrd => Unescape::Any,
            MboxDialect::Mboxo | MboxDialect::Mboxcl => Unescape::Single,
            MboxDialect::Mboxcl2 => Unescape::None,
        };

        // Header block.
        let mut in_headers = from_line_ended;
        while in_headers {
            let piece_offset = self.reader.pos;
            let Some(starts_line) = self.piece(PIECE)? else {
                truncated = true; // the file ends inside the header block
                break;
            };
            if starts_line
                && self.piece.starts_with(b"From ")
                && self.candidate_starts_message(false)?
            {
                self.next_from = Some((piece_offset, std::mem::take(&mut self.piece)));
                break;
            }
            last_piece_ended_line = self.piece.ends_with(b"\n");
            let blank = starts_line && (self.piece == b"\n" || self.piece == b"\r\n");
            let line: &[u8] = if starts_line && unescape_default.applies(&self.piece) {
                &self.piece[1..]
            } else {
                &self.piece
            };
            message.push(line);
            if !blank && headers.len() < HEADER_SCAN_LIMIT {
                headers.extend_from_slice(line);
            }
            if blank {
                in_headers = false;
                body_ready = true;
            }
        }

        // Body delimited by Content-Length, when it checks out.
        let content_length = super::headers::header_value(&headers, "Content-Length")
            .and_then(|v| v.parse::<u64>().ok());
        let mut delimited = false;
        if body_ready && self.dialect.uses_content_length() {
            if let Some(length) = content_length.filter(|l| *l <= self.max_message_size) {
                if let Some(body) = self.body_by_length(length)? {
                    let unescape = match self.dialect {
                        MboxDialect::Mboxcl => Unescape::Single,
                        _ => Unescape::None,
                    };
                    for (line, starts_line) in lines_of(&body) {
                        if starts_line && unescape.applies(line) {
                            message.push(&line[1..]);
                        } else {
                            message.push(line);
                        }
                    }
                    last_piece_ended_line = body.is_empty() || body.ends_with(b"\n");
                    delimited = true;
                }
            }
        }

        // Body delimited by the next From_ line.
        if body_ready && !delimited {
            let mut body_len: u64 = 0;
            // The body starts after the blank line that ends the header block.
            let mut after_blank = true;
            loop {
                let piece_offset = self.reader.pos;
                let Some(starts_line) = self.piece(PIECE)? else {
                    truncated |=
                        !last_piece_ended_line || content_length.is_some_and(|l| body_len < l);
                    break;
                };
                if starts_line
                    && self.piece.starts_with(b"From ")
                    && self.candidate_starts_message(after_blank)?
                {
                    self.next_from = Some((piece_offset, std::mem::take(&mut self.piece)));
                    break;
                }
                after_blank = starts_line && (self.piece == b"\n" || self.piece == b"\r\n");
                last_piece_ended_line = self.piece.ends_with(b"\n");
                body_len += self.piece.len() as u64;
                if starts_line && unescape_default.applies(&self.piece) {
                    message.push(&self.piece[1..]);
                } else {
                    message.push(&self.piece);
                }
            }
        }

        if !message.oversized && !delimited {
            // The blank line written between messages belongs to no message.
            if message.raw.ends_with(b"\r\n\r\n") {
                message.raw.truncate(message.raw.len() - 2);
            } else if message.raw.ends_with(b"\n\n") {
                message.raw.pop();
            }
        }
        let (date, date_source) = match header_date(&headers) {
            Some(d) => (Some(d), DateSource::Header),
            None => match from_line_date(&from_line) {
                Some(d) => (Some(d), DateSource::MboxFromLine),
                None => (None, DateSource::Unknown),
            },
        };
        let content = if message.oversized {
            Content::Oversized {
                size: message.size,
                head: message.raw,
            }
        } else {
            Content::Complete(message.raw)
        };
        Ok(Some(SourceMessage {
            position: Position::Mbox { offset },
            origin: format!("{} at byte {offset}", self.path.display()),
            content,
            date,
            date_source,
            flags: mbox_status_flags(&headers),
            folder: None,
            truncated,
            envelope_sender: from_line_sender(&from_line),
        }))
    }

    /// Reads `length` body bytes and checks that the next From_ line (or the end) follows,
    /// after at most one blank line. On success returns the body; otherwise puts everything
    /// back and returns `None`.
    fn body_by_length(&mut self, length: u64) -> Result<Option<Vec<u8>>, SourceError> {
        let mut body = Vec::with_capacity(length.min(1 << 20) as usize);
        while (body.len() as u64) < length {
            let remaining = (length - body.len() as u64).min(PIECE as u64) as usize;
            match self.piece(remaining)? {
                None => break,
                Some(_) => body.extend_from_slice(&self.piece),
            }
        }
        let mut lookahead: Vec<Vec<u8>> = Vec::new();
        let valid = if (body.len() as u64) < length {
            false
        } else {
            let mut valid = false;
            for _ in 0..2 {
                let offset = self.reader.pos;
                match self.piece(PIECE)? {
                    None => {
                        valid = true;
                        break;
                    }
                    Some(false) => {
                        lookahead.push(std::mem::take(&mut self.piece));
                        break;
                    }
                    Some(true) if self.piece.starts_with(b"From ") => {
                        self.next_from = Some((offset, std::mem::take(&mut self.piece)));
                        valid = true;
                        break;
                    }
                    Some(true) => {
                        let blank = self.piece == b"\n" || self.piece == b"\r\n";
                        lookahead.push(std::mem::take(&mut self.piece));
                        if !blank {
                            break;
                        }
                    }
                }
            }
            valid
        };
        if valid {
            return Ok(Some(body));
        }
        for piece in lookahead.iter().rev() {
            self.reader.unread(piece);
        }
        self.reader.unread(&body);
        Ok(None)
    }
}

/// The lines of `buf` (each with its LF), and whether each starts a line (always true here:
/// `buf` starts at a line start).
fn lines_of(buf: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    buf.split_inclusive(|b| *b == b'\n').map(|l| (l, true))
}

impl Iterator for MboxSource {
    type Item = SourceItem;

    fn next(&mut self) -> Option<SourceItem> {
        if self.done {
            return None;
        }
        let read = self.read_message();
        item_of_read(&mut self.done, read)
    }
}

impl MessageSource for MboxSource {
    fn description(&self) -> String {
        let kind = if self.gzip { "gzip mbox" } else { "mbox" };
        format!("{kind} {}", self.path.display())
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(crate) fn open_error(path: &Path, e: io::Error) -> SourceError {
    if e.kind() == io::ErrorKind::NotFound {
        SourceError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        io_error(path, e)
    }
}

pub(crate) fn io_error(path: &Path, e: io::Error) -> SourceError {
    SourceError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

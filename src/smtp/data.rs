//! The DATA phase: finds the end of data and undoes dot-stuffing.
//!
//! End of data is `CRLF . CRLF` and nothing else. A bare LF or a bare CR never starts a
//! line, so `\n.\n`, `\r.\r`, `\n.\r\n` or `\r\n.\n` stay inside the message and can
//! never split it into two (SMTP smuggling).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Right after CRLF (or at the start of data).
    LineStart,
    /// Inside a line.
    Text,
    /// Inside a line, after a CR that may begin CRLF.
    Cr,
    /// After CRLF and a dot.
    Dot,
    /// After CRLF, a dot and a CR: an LF now ends the data.
    DotCr,
}

/// Incremental end-of-data scanner. Feed it the bytes as they arrive; it appends the
/// message (unstuffed) to an output buffer until `max_size` bytes, and keeps scanning
/// for the end beyond that so the session can answer 552 and stay in sync.
#[derive(Debug)]
pub struct DotReader {
    state: State,
    size: usize,
    max_size: usize,
    overflow: bool,
}

impl DotReader {
    pub fn new(max_size: usize) -> Self {
        Self {
            state: State::LineStart,
            size: 0,
            max_size,
            overflow: false,
        }
    }

    /// True when the message went over `max_size`; the output then holds only a prefix.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// Bytes of message seen, including those dropped after an overflow.
    pub fn size(&self) -> usize {
        self.size
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len();
        if self.size > self.max_size {
            self.overflow = true;
        }
        if !self.overflow {
            out.extend_from_slice(bytes);
        }
    }

    /// Consumes bytes from `input`; returns how many were used and whether the end of data
    /// was reached (the terminating `.CRLF` is consumed but not emitted; the bytes after it
    /// belong to the next command).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        // Plain text runs are copied in one go; the state machine only looks at CR, LF and dots.
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Text => {
                    let run_end = memchr::memchr(b'\r', &input[i..]).map_or(input.len(), |p| i + p);
                    if run_end > i {
                        self.emit(out, &input[i..run_end]);
                        i = run_end;
                        continue;
                    }
                    self.state = State::Cr;
                    i += 1;
                }
                State::LineStart => {
                    if b == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Cr => match b {
                    b'\n' => {
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    }
                    b'\r' => {
                        self.emit(out, b"\r");
                        i += 1;
                    }
                    _ => {
                        self.emit(out, b"\r");
                        self.state = State::Text;
                    }
                },
                State::Dot => {
                    if b == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // A line starting with a dot and more: the dot is stuffing (RFC 5321 4.5.2).
                        self.state = State::Text;
                    }
                }
                State::DotCr => {
                    if b == b'\n' {
                        return (i + 1, true);
                    }
                    // ".\r" followed by anything else: the dot was stuffing, the CR is data.
                    self.state = State::Cr;
                }
            }
        }
        (i, false)
    }
}

/// Counts the Received header fields of a message (the loop guard), reading only the header.
pub fn count_received_headers(message: &[u8]) -> usize {
    let mut count = 0;
    let mut line_start = 0;
    while line_start < message.len() {
        let end = message[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| line_start + p + 1);
        let line = &message[line_start..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            count += 1;
        }
        line_start = end;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]], max: usize) -> (Vec<u8>, bool, usize, DotReader) {
        let mut reader = DotReader::new(max);
        let mut out = Vec::new();
        let mut consumed_total = 0;
        for chunk in chunks {
            let (used, done) = reader.feed(chunk, &mut out);
            consumed_total += used;
            if done {
                return (out, true, consumed_total, reader);
            }
        }
        (out, false, consumed_total, reader)
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf() {
        let (out, done, used, _) = run(&[b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"], 1000);
        assert!(done);
        assert_eq!(out, b"Subject: x\r\n\r\nbody\r\n");
        assert_eq!(used, b"Subject: x\r\n\r\nbody\r\n.\r\n".len());
    }

    #[test]
    fn smuggling_variants_never_end_data() {
        for variant in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\n.\r",
            b"\r\n.\r",
            b"\r\n.\rX\r\n",
        ] {
            let mut input = b"Subject: a\r\n\r\nfirst".to_vec();
            input.extend_from_slice(variant);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n");
            let (_, done, _, _) = run(&[&input], 1000);
            assert!(!done, "{variant:?} ended the data");
        }
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let msg = b"a\r\n..dotted\r\n.\rx\r\nend\r\r\n\r\n.\r\n";
        let whole = run(&[msg], 1000);
        let bytes: Vec<&[u8]> = msg.chunks(1).collect();
        let split = run(&bytes, 1000);
        assert_eq!(whole.0, split.0);
        assert!(whole.1 && split.1);
        assert_eq!(whole.0, b"a\r\n.dotted\r\n\rx\r\nend\r\r\n\r\n");
    }

    #[test]
    fn overflow_keeps_scanning_to_the_end() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (out, done, used, reader) = run(&[&input], 100);
        assert!(done);
        assert!(reader.overflowed());
        assert!(out.len() <= 100);
        assert_eq!(&input[used..], b"NOOP\r\n");
    }

    #[test]
    fn empty_message() {
        let (out, done, _, _) = run(&[b".\r\n"], 10);
        assert!(done);
        assert!(out.is_empty());
    }

    #[test]
    fn counts_received_in_header_only() {
        let msg = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n";
        assert_eq!(count_received_headers(msg), 2);
    }
}

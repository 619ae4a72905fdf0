//! A real DNS server on loopback for the sender-authentication tests (SPF, DKIM, DMARC, ARC,
//! iprev).
//!
//! ```ignore
//! let dns = TestDns::start(
//!     Zone::new()
//!         .txt("example.com", "v=spf1 ip4:192.0.2.1 -all")
//!         .txt("sel._domainkey.example.com", &dkim_record)
//!         .a("mail.example.com", "192.0.2.1".parse().unwrap()),
//! )
//! .await;
//! // point the code under test at `dns.addr` (UDP and TCP, same port)
//! dns.set(Zone::new().txt("example.com", "v=spf1 -all")); // change DNS mid-test
//! assert_eq!(dns.queries(), 3);
//! ```
//!
//! The wire format is written by hand (RFC 1035, RFC 6891) so that every byte is under the
//! test's control; the self-test in `tests/it/common/dns_self_test.rs` checks it against hickory.
//! hickory-server (0.26, the hickory-proto of mail-auth) was weighed as a replacement: it
//! would take over the wire codec and the socket loops only, while the tests also need what
//! its typed records and authorities do not give: malformed or raw RDATA (`raw`, non-UTF-8
//! character-strings), per-name and per-type SERVFAIL and silence, query counts per name and
//! per transport, and whole zones swapped mid-test; a request handler of ours would remain.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{AbortHandle, JoinSet};

/// TTL of every record served, and the SOA minimum (negative-caching TTL).
pub const TTL: u32 = 300;

/// The UDP payload size this server advertises in its own OPT record.
const SERVER_UDP_PAYLOAD: u16 = 1232;

const T_A: u16 = 1;
const T_CNAME: u16 = 5;
const T_SOA: u16 = 6;
const T_PTR: u16 = 12;
const T_MX: u16 = 15;
const T_TXT: u16 = 16;
const T_AAAA: u16 = 28;
const T_OPT: u16 = 41;
const T_SPF: u16 = 99;
const T_ANY: u16 = 255;

const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;

const RCODE_NOERROR: u8 = 0;
const RCODE_SERVFAIL: u8 = 2;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;

/// A domain name as its labels, leftmost first (the root is the empty list).
type Labels = Vec<Vec<u8>>;

fn lower(labels: &[Vec<u8>]) -> Labels {
    labels.iter().map(|l| l.to_ascii_lowercase()).collect()
}

/// Parses `name` (case kept; with or without the trailing dot) into labels.
fn parse_name(name: &str) -> Result<Labels, String> {
    let trimmed = name.trim();
    let body = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Labels = body.split('.').map(|l| l.as_bytes().to_vec()).collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!("empty label in domain name {name:?}"));
        }
        if label.len() > 63 {
            return Err(format!(
                "label longer than 63 bytes in domain name {name:?}"
            ));
        }
    }
    if wire_len(&labels) > 255 {
        return Err(format!("domain name longer than 255 bytes: {name:?}"));
    }
    Ok(labels)
}

fn wire_len(labels: &[Vec<u8>]) -> usize {
    labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1
}

fn encode_name(out: &mut Vec<u8>, labels: &[Vec<u8>]) {
    for label in labels {
        // Labels are at most 63 bytes (checked when parsed).
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

fn display_name(labels: &[Vec<u8>]) -> String {
    if labels.is_empty() {
        return ".".into();
    }
    labels
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect::<Vec<_>>()
        .join(".")
}

/// The reverse-lookup name of `ip`: `d.c.b.a.in-addr.arpa` or the 32 nibbles under `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut parts = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                parts.push(format!("{:x}", byte & 0x0f));
                parts.push(format!("{:x}", byte >> 4));
            }
            parts.push("ip6".into());
            parts.push("arpa".into());
            parts.join(".")
        }
    }
}

/// Record type by mnemonic (`TXT`, `A`, ...) or number (`99`, `TYPE99`).
fn parse_type(text: &str) -> Result<u16, String> {
    let upper = text.trim().to_ascii_uppercase();
    let known = match upper.as_str() {
        "A" => Some(T_A),
        "NS" => Some(2),
        "CNAME" => Some(T_CNAME),
        "SOA" => Some(T_SOA),
        "PTR" => Some(T_PTR),
        "MX" => Some(T_MX),
        "TXT" => Some(T_TXT),
        "AAAA" => Some(T_AAAA),
        "SPF" => Some(T_SPF),
        "ANY" => Some(T_ANY),
        _ => None,
    };
    if let Some(t) = known {
        return Ok(t);
    }
    upper
        .strip_prefix("TYPE")
        .unwrap_or(&upper)
        .parse::<u16>()
        .map_err(|_| format!("unknown record type {text:?}"))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Failure {
    #[default]
    None,
    ServFail,
    Timeout,
}

#[derive(Clone, Debug)]
struct Rr {
    rtype: u16,
    rdata: Vec<u8>,
    /// For CNAME records: the target, case kept.
    target: Option<Labels>,
}

#[derive(Clone, Debug, Default)]
struct Node {
    /// The name as first written, for answers to CNAME chains.
    labels: Labels,
    records: Vec<Rr>,
    /// Applies to every query type.
    failure: Failure,
    /// Applies to one query type (a whole-name failure wins).
    type_failures: Vec<(u16, Failure)>,
    /// `nodata()` was called: on `TestDns::set`, the name's old records are dropped.
    cleared: bool,
}

impl Node {
    fn failure_for(&self, qtype: u16) -> Failure {
        if self.failure != Failure::None {
            return self.failure;
        }
        self.type_failures
            .iter()
            .rev()
            .find(|(t, _)| *t == qtype)
            .map_or(Failure::None, |(_, f)| *f)
    }
}

/// A set of DNS records. Builder methods panic on invalid input (a test-setup error);
/// [`Zone::parse`] reports it as an `Err` instead.
#[derive(Clone, Default)]
pub struct Zone {
    nodes: BTreeMap<Labels, Node>,
    /// TTL and minimum of the SOA in negative answers (RFC 2308); `TTL` when unset.
    negative_ttl: Option<u32>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_map();
        for node in self.nodes.values() {
            let types: Vec<u16> = node.records.iter().map(|r| r.rtype).collect();
            list.entry(
                &display_name(&node.labels),
                &format!(
                    "types={types:?} failure={:?} type_failures={:?}",
                    node.failure, node.type_failures
                ),
            );
        }
        list.finish()
    }
}

fn must<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("TestDns zone: {e}"))
}

/// Character-strings of at most 255 bytes: longer strings are split into consecutive ones.
fn character_strings(strings: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut rdata = Vec::new();
    for s in strings {
        if s.is_empty() {
            rdata.push(0);
        }
        for chunk in s.chunks(255) {
            rdata.push(chunk.len() as u8);
            rdata.extend_from_slice(chunk);
        }
    }
    if rdata.is_empty() {
        rdata.push(0);
    }
    if rdata.len() > 65535 {
        return Err(format!(
            "TXT record data of {} bytes (max 65535)",
            rdata.len()
        ));
    }
    Ok(rdata)
}

impl Zone {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long resolvers may cache this zone's "no such record" answers (SOA TTL and
    /// minimum, RFC 2308 section 5); `TTL` by default.
    pub fn negative_ttl(mut self, secs: u32) -> Self {
        self.negative_ttl = Some(secs);
        self
    }

    fn node(&mut self, name: &str) -> Result<&mut Node, String> {
        let labels = parse_name(name)?;
        let node = self.nodes.entry(lower(&labels)).or_default();
        if node.labels.is_empty() {
            node.labels = labels;
        }
        Ok(node)
    }

    fn try_add(mut self, name: &str, rtype: u16, rdata: Vec<u8>) -> Result<Self, String> {
        if rdata.len() > 65535 {
            return Err(format!("record data of {} bytes (max 65535)", rdata.len()));
        }
        self.node(name)?.records.push(Rr {
            rtype,
            rdata,
            target: None,
        });
        Ok(self)
    }

    fn try_txt_strings(self, name: &str, rtype: u16, strings: &[&[u8]]) -> Result<Self, String> {
        let rdata = character_strings(strings)?;
        self.try_add(name, rtype, rdata)
    }

    fn try_mx(self, name: &str, preference: u16, exchange: &str) -> Result<Self, String> {
        let mut rdata = preference.to_be_bytes().to_vec();
        encode_name(&mut rdata, &parse_name(exchange)?);
        self.try_add(name, T_MX, rdata)
    }

    fn try_ptr(self, name: &str, target: &str) -> Result<Self, String> {
        let mut rdata = Vec::new();
        encode_name(&mut rdata, &parse_name(target)?);
        self.try_add(name, T_PTR, rdata)
    }

    fn try_cname(mut self, name: &str, target: &str) -> Result<Self, String> {
        let target = parse_name(target)?;
        let mut rdata = Vec::new();
        encode_name(&mut rdata, &target);
        self.node(name)?.records.push(Rr {
            rtype: T_CNAME,
            rdata,
            target: Some(target),
        });
        Ok(self)
    }

    fn try_failure(
        mut self,
        name: &str,
        rtype: Option<u16>,
        failure: Failure,
    ) -> Result<Self, String> {
        let node = self.node(name)?;
        match rtype {
            None => node.failure = failure,
            Some(t) => node.type_failures.push((t, failure)),
        }
        Ok(self)
    }

    fn try_nodata(mut self, name: &str) -> Result<Self, String> {
        let node = self.node(name)?;
        node.records.clear();
        node.cleared = true;
        Ok(self)
    }

    /// A TXT record; a value longer than 255 bytes is split into 255-byte character-strings
    /// (as DKIM keys are published).
    pub fn txt(self, name: &str, value: &str) -> Self {
        must(self.try_txt_strings(name, T_TXT, &[value.as_bytes()]))
    }

    /// One TXT record made of several character-strings (each one longer than 255 bytes is
    /// split like [`Zone::txt`]).
    pub fn txt_multi(self, name: &str, strings: &[&str]) -> Self {
        let bytes: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).collect();
        must(self.try_txt_strings(name, T_TXT, &bytes))
    }

    /// A record of type SPF (99, obsolete since RFC 7208) made of several character-strings,
    /// for the RFC 4408 test suite.
    pub fn spf_bytes(self, name: &str, strings: &[&[u8]]) -> Self {
        must(self.try_txt_strings(name, T_SPF, strings))
    }

    pub fn a(self, name: &str, ip: Ipv4Addr) -> Self {
        must(self.try_add(name, T_A, ip.octets().to_vec()))
    }

    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Self {
        must(self.try_add(name, T_AAAA, ip.octets().to_vec()))
    }

    pub fn mx(self, name: &str, preference: u16, exchange: &str) -> Self {
        must(self.try_mx(name, preference, exchange))
    }

    /// A PTR record at the reverse name of `ip` (see [`reverse_name`]).
    pub fn ptr(self, ip: IpAddr, name: &str) -> Self {
        must(self.try_ptr(&reverse_name(ip), name))
    }

    pub fn cname(self, name: &str, target: &str) -> Self {
        must(self.try_cname(name, target))
    }

    /// A record of any type with its RDATA given in wire format (names in it uncompressed).
    pub fn raw(self, name: &str, rtype: u16, rdata: &[u8]) -> Self {
        must(self.try_add(name, rtype, rdata.to_vec()))
    }

    /// Answer SERVFAIL for this name, whatever the type asked.
    pub fn servfail(self, name: &str) -> Self {
        must(self.try_failure(name, None, Failure::ServFail))
    }

    /// Never answer queries for this name (whatever the type asked).
    pub fn timeout(self, name: &str) -> Self {
        must(self.try_failure(name, None, Failure::Timeout))
    }

    /// Never answer queries for this name and this type only; other types are answered.
    pub fn timeout_type(self, name: &str, rtype: &str) -> Self {
        must(parse_type(rtype).and_then(|t| self.try_failure(name, Some(t), Failure::Timeout)))
    }

    /// The name exists with no records of any type (NOERROR, empty answer). Drops the records
    /// given for this name earlier in this zone (and, through [`TestDns::set`], those served).
    pub fn nodata(self, name: &str) -> Self {
        must(self.try_nodata(name))
    }

    /// Parses a simple zone text, one record per line: `name TYPE value`.
    ///
    /// - TYPE is TXT, SPF, A, AAAA, MX, PTR, CNAME, SERVFAIL, TIMEOUT or NODATA (any case).
    /// - TXT/SPF: one or more double-quoted strings, each one a character-string (`\"`, `\\` and
    ///   `\DDD` decimal escapes), or an unquoted value taken to the end of the line.
    /// - MX: `preference exchange`. PTR: the name may be an IP address (`192.0.2.1 PTR host.`)
    ///   or the reverse name itself.
    /// - SERVFAIL and TIMEOUT take an optional type: `example.com TIMEOUT TXT`.
    /// - `#` starts a comment (outside quotes); blank lines are skipped.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let mut zone = Zone::new();
        for (index, raw_line) in text.lines().enumerate() {
            let line = strip_comment(raw_line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            zone = parse_line(zone, line)
                .map_err(|e| format!("line {}: {e}: {raw_line:?}", index + 1))?;
        }
        Ok(zone)
    }

    /// Puts `other` over `self`: for every name in `other`, its record types replace the same
    /// types here (other types stay), its failure settings replace the ones here, and
    /// `nodata()` drops every record of that name here.
    fn merge(&mut self, other: Zone) {
        if other.negative_ttl.is_some() {
            self.negative_ttl = other.negative_ttl;
        }
        for (key, new) in other.nodes {
            let node = self.nodes.entry(key).or_default();
            if node.labels.is_empty() {
                node.labels = new.labels.clone();
            }
            if new.cleared {
                node.records.clear();
            }
            node.records
                .retain(|old| !new.records.iter().any(|r| r.rtype == old.rtype));
            node.records.extend(new.records);
            node.failure = new.failure;
            node.type_failures = new.type_failures;
        }
    }
}

fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits off the first whitespace-delimited word.
fn word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    }
}

fn parse_quoted_strings(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let bytes = text.as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' => i += 1,
            b'"' => {
                i += 1;
                let mut s = Vec::new();
                loop {
                    match bytes.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let digits = bytes
                                .get(i + 1..i + 4)
                                .filter(|d| d.iter().all(u8::is_ascii_digit));
                            if let Some(d) = digits {
                                let value =
                                    d.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
                                let byte = u8::try_from(value)
                                    .map_err(|_| format!("escape \\{value} is over 255"))?;
                                s.push(byte);
                                i += 4;
                            } else {
                                let c = bytes.get(i + 1).ok_or("backslash at end of line")?;
                                s.push(*c);
                                i += 2;
                            }
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                strings.push(s);
            }
            _ => return Err("text outside double quotes".into()),
        }
    }
    Ok(strings)
}

fn parse_line(zone: Zone, line: &str) -> Result<Zone, String> {
    let (name, rest) = word(line);
    let (rtype, value) = word(rest);
    let value = value.trim();
    let no_value = |zone: Zone| {
        if value.is_empty() {
            Ok(zone)
        } else {
            Err(format!("unexpected value {value:?}"))
        }
    };
    match rtype.to_ascii_uppercase().as_str() {
        t @ ("TXT" | "SPF") => {
            let code = if t == "TXT" { T_TXT } else { T_SPF };
            let strings = if value.starts_with('"') {
                parse_quoted_strings(value)?
            } else {
                vec![value.as_bytes().to_vec()]
            };
            let refs: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
            zone.try_txt_strings(name, code, &refs)
        }
        "A" => {
            let ip: Ipv4Addr = value
                .parse()
                .map_err(|_| format!("bad IPv4 address {value:?}"))?;
            zone.try_add(name, T_A, ip.octets().to_vec())
        }
        "AAAA" => {
            let ip: Ipv6Addr = value
                .parse()
                .map_err(|_| format!("bad IPv6 address {value:?}"))?;
            zone.try_add(name, T_AAAA, ip.octets().to_vec())
        }
        "MX" => {
            let (pref, exchange) = word(value);
            let pref: u16 = pref
                .parse()
                .map_err(|_| format!("bad MX preference {pref:?}"))?;
            if exchange.is_empty() || exchange.contains(char::is_whitespace) {
                return Err(format!("bad MX exchange {exchange:?}"));
            }
            zone.try_mx(name, pref, exchange)
        }
        "PTR" => {
            let owner = match name.parse::<IpAddr>() {
                Ok(ip) => reverse_name(ip),
                Err(_) => name.to_string(),
            };
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(format!("bad PTR target {value:?}"));
            }
            zone.try_ptr(&owner, value)
        }
        "CNAME" => {
            if value.is_empty() || value.contains(char::is_whitespace) {
                return Err(format!("bad CNAME target {value:?}"));
            }
            zone.try_cname(name, value)
        }
        f @ ("SERVFAIL" | "TIMEOUT") => {
            let failure = if f == "SERVFAIL" {
                Failure::ServFail
            } else {
                Failure::Timeout
            };
            let only = if value.is_empty() {
                None
            } else {
                Some(parse_type(value)?)
            };
            zone.try_failure(name, only, failure)
        }
        "NODATA" => no_value(zone)?.try_nodata(name),
        "" => Err("missing record type".into()),
        other => Err(format!("unsupported record type {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Wire format.

struct Query<'a> {
    id: u16,
    opcode: u8,
    rd: bool,
    cd: bool,
    /// The question section exactly as received (echoed verbatim, case included).
    question: &'a [u8],
    qname: Labels,
    qtype: u16,
    qclass: u16,
    /// The UDP payload size of the client's OPT record, if it sent one.
    edns: Option<u16>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A name without compression (as in a question), into labels.
    fn plain_name(&mut self) -> Option<Labels> {
        let mut labels = Vec::new();
        let mut total = 1;
        loop {
            let len = self.u8()?;
            if len == 0 {
                return Some(labels);
            }
            if len > 63 {
                return None; // compression pointer or extended label: not in a question
            }
            total += usize::from(len) + 1;
            if total > 255 {
                return None;
            }
            labels.push(self.bytes(usize::from(len))?.to_vec());
        }
    }

    /// Skips a possibly compressed name.
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len {
                0 => return Some(()),
                1..=63 => {
                    self.bytes(usize::from(len))?;
                }
                0xc0..=0xff => {
                    self.u8()?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips a resource record; returns its type and class.
    fn record(&mut self) -> Option<(u16, u16)> {
        self.skip_name()?;
        let rtype = self.u16()?;
        let class = self.u16()?;
        self.bytes(4)?; // TTL
        let rdlen = self.u16()?;
        self.bytes(usize::from(rdlen))?;
        Some((rtype, class))
    }
}

/// `None` for anything that is not a well-formed query with exactly one question.
fn parse_query(buf: &[u8]) -> Option<Query<'_>> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 != 0 {
        return None; // a response
    }
    let qdcount = r.u16()?;
    let ancount = r.u16()?;
    let nscount = r.u16()?;
    let arcount = r.u16()?;
    if qdcount != 1 {
        return None;
    }
    let start = r.pos;
    let qname = r.plain_name()?;
    let qtype = r.u16()?;
    let qclass = r.u16()?;
    let question = buf.get(start..r.pos)?;
    for _ in 0..(u32::from(ancount) + u32::from(nscount)) {
        r.record()?;
    }
    let mut edns = None;
    for _ in 0..arcount {
        let (rtype, class) = r.record()?;
        if rtype == T_OPT {
            edns = Some(class);
        }
    }
    Some(Query {
        id,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        question,
        qname,
        qtype,
        qclass,
        edns,
    })
}

fn push_rr(out: &mut Vec<u8>, owner: Option<&[Vec<u8>]>, rtype: u16, rdata: &[u8]) {
    push_rr_ttl(out, owner, rtype, TTL, rdata)
}

fn push_rr_ttl(out: &mut Vec<u8>, owner: Option<&[Vec<u8>]>, rtype: u16, ttl: u32, rdata: &[u8]) {
    match owner {
        // A pointer to the question name at offset 12: the case the client used is kept.
        None => out.extend_from_slice(&[0xc0, 0x0c]),
        Some(labels) => encode_name(out, labels),
    }
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    // Record data is at most 65535 bytes (checked when the zone is built).
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

fn soa_rdata(negative_ttl: u32) -> Vec<u8> {
    let mut rdata = Vec::new();
    encode_name(&mut rdata, &[b"ns".to_vec(), b"test-dns".to_vec()]);
    encode_name(&mut rdata, &[b"hostmaster".to_vec(), b"test-dns".to_vec()]);
    for value in [1u32, 3600, 600, 86400, negative_ttl] {
        rdata.extend_from_slice(&value.to_be_bytes());
    }
    rdata
}

struct Answer {
    rcode: u8,
    /// `None` owner: the question name.
    answers: Vec<(Option<Labels>, u16, Vec<u8>)>,
    negative: bool,
}

impl Answer {
    fn rcode(rcode: u8) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            negative: false,
        }
    }
}

fn matches(rr: &Rr, qtype: u16) -> bool {
    qtype == T_ANY || rr.rtype == qtype
}

/// What the zone says about a question; `None`: do not answer.
fn resolve(zone: &Zone, qname: &[Vec<u8>], qtype: u16, qclass: u16) -> Option<Answer> {
    if qclass != CLASS_IN && qclass != CLASS_ANY {
        return Some(Answer::rcode(RCODE_REFUSED));
    }
    let key = lower(qname);
    let Some(node) = zone.nodes.get(&key) else {
        let parent_of_known = zone
            .nodes
            .keys()
            .any(|k| k.len() > key.len() && k.ends_with(&key));
        let mut answer = Answer::rcode(if parent_of_known {
            RCODE_NOERROR
        } else {
            RCODE_NXDOMAIN
        });
        answer.negative = true;
        return Some(answer);
    };
    match node.failure_for(qtype) {
        Failure::Timeout => return None,
        Failure::ServFail => return Some(Answer::rcode(RCODE_SERVFAIL)),
        Failure::None => {}
    }
    let mut answer = Answer::rcode(RCODE_NOERROR);
    let cname = node.records.iter().find(|r| r.rtype == T_CNAME);
    match cname {
        Some(first) if qtype != T_CNAME && qtype != T_ANY => {
            answer.answers.push((None, T_CNAME, first.rdata.clone()));
            let mut target = first.target.clone();
            // Follow the chain (bounded, in case of a loop).
            for _ in 0..8 {
                let Some(t) = target.take() else { break };
                let Some(tnode) = zone.nodes.get(&lower(&t)) else {
                    break;
                };
                match tnode.failure_for(qtype) {
                    Failure::Timeout => return None,
                    Failure::ServFail => return Some(Answer::rcode(RCODE_SERVFAIL)),
                    Failure::None => {}
                }
                if let Some(next) = tnode.records.iter().find(|r| r.rtype == T_CNAME) {
                    answer.answers.push((Some(t), T_CNAME, next.rdata.clone()));
                    target = next.target.clone();
                } else {
                    for rr in tnode.records.iter().filter(|r| matches(r, qtype)) {
                        answer
                            .answers
                            .push((Some(t.clone()), rr.rtype, rr.rdata.clone()));
                    }
                }
            }
        }
        _ => {
            for rr in node.records.iter().filter(|r| matches(r, qtype)) {
                answer.answers.push((None, rr.rtype, rr.rdata.clone()));
            }
            answer.negative = answer.answers.is_empty();
        }
    }
    Some(answer)
}

fn header(q: &Query<'_>, truncated: bool, rcode: u8, counts: [u16; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q.id.to_be_bytes());
    // QR, opcode, AA, TC, RD; RA (we answer everything we know: recursion is "available"),
    // CD echoed, RCODE.
    let b2 = 0x80 | (q.opcode << 3) | 0x04 | (u8::from(truncated) << 1) | u8::from(q.rd);
    let b3 = (u8::from(q.rd) << 7) | (u8::from(q.cd) << 4) | (rcode & 0x0f);
    out.extend_from_slice(&[b2, b3]);
    out.extend_from_slice(&1u16.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(q.question);
    out
}

fn push_opt(out: &mut Vec<u8>) {
    out.push(0); // root
    out.extend_from_slice(&T_OPT.to_be_bytes());
    out.extend_from_slice(&SERVER_UDP_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // extended rcode, version 0, flags
    out.extend_from_slice(&[0, 0]); // no options
}

/// The response bytes, `None` for no response. `udp`: truncate to the client's size.
fn build_response(zone: &Zone, q: &Query<'_>, udp: bool) -> Option<Vec<u8>> {
    let additional = u16::from(q.edns.is_some());
    let answer = if q.opcode != 0 {
        Answer::rcode(RCODE_NOTIMP)
    } else {
        resolve(zone, &q.qname, q.qtype, q.qclass)?
    };
    let authority = u16::from(answer.negative);
    let ancount = u16::try_from(answer.answers.len()).unwrap_or(u16::MAX);
    let mut out = header(q, false, answer.rcode, [ancount, authority, additional]);
    for (owner, rtype, rdata) in &answer.answers {
        push_rr(&mut out, owner.as_deref(), *rtype, rdata);
    }
    if answer.negative {
        let ttl = zone.negative_ttl.unwrap_or(TTL);
        push_rr_ttl(&mut out, Some(&[]), T_SOA, ttl, &soa_rdata(ttl));
    }
    if q.edns.is_some() {
        push_opt(&mut out);
    }
    let limit = if udp {
        usize::from(q.edns.unwrap_or(512).max(512))
    } else {
        usize::from(u16::MAX)
    };
    if out.len() > limit || answer.answers.len() > usize::from(u16::MAX) {
        let mut short = header(q, true, answer.rcode, [0, 0, additional]);
        if q.edns.is_some() {
            push_opt(&mut short);
        }
        return Some(short);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Server.

#[derive(Default)]
struct Shared {
    zone: Mutex<Zone>,
    queries: AtomicUsize,
    tcp_queries: AtomicUsize,
    per_name: Mutex<HashMap<Labels, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn handle(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        let query = parse_query(packet)?;
        self.queries.fetch_add(1, Ordering::SeqCst);
        if !udp {
            self.tcp_queries.fetch_add(1, Ordering::SeqCst);
        }
        *lock(&self.per_name).entry(lower(&query.qname)).or_default() += 1;
        let zone = lock(&self.zone);
        build_response(&zone, &query, udp)
    }
}

/// A DNS server on 127.0.0.1 (UDP and TCP on the same port) serving a [`Zone`]. It stops when
/// dropped.
pub struct TestDns {
    /// UDP and TCP.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    thread: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl TestDns {
    /// Starts a UDP and TCP DNS server on 127.0.0.1 (same port for both; port chosen by the OS)
    /// serving `zone`, as tasks of the current tokio runtime.
    pub async fn start(zone: Zone) -> TestDns {
        let shared = Arc::new(Shared {
            zone: Mutex::new(zone),
            ..Shared::default()
        });
        let mut attempt = 0;
        let (udp, tcp) = loop {
            attempt += 1;
            let udp = UdpSocket::bind(("127.0.0.1", 0))
                .await
                .expect("bind UDP on 127.0.0.1");
            let port = udp.local_addr().expect("UDP local address").port();
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(tcp) => break (udp, tcp),
                Err(e) if attempt >= 50 => panic!("no port free for both UDP and TCP: {e}"),
                Err(_) => continue,
            }
        };
        let addr = udp.local_addr().expect("UDP local address");
        let udp_task = tokio::spawn(serve_udp(udp, shared.clone()));
        let tcp_task = tokio::spawn(serve_tcp(tcp, shared.clone()));
        TestDns {
            addr,
            shared,
            tasks: vec![udp_task.abort_handle(), tcp_task.abort_handle()],
            thread: None,
        }
    }

    /// Like [`TestDns::start`], but on a runtime of its own in a new thread: for tests that block
    /// their thread (std sockets, `Command::output` of a child `postern verify`, a
    /// current-thread runtime busy elsewhere). May be called from inside or outside a runtime.
    pub fn start_in_thread(zone: Zone) -> TestDns {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("test DNS runtime");
                runtime.block_on(async move {
                    let dns = TestDns::start(zone).await;
                    let _ = ready_tx.send((dns.addr, dns.shared.clone()));
                    let _ = stop_rx.await;
                    drop(dns);
                });
            })
            .expect("spawn test DNS thread");
        let (addr, shared) = ready_rx.recv().expect("test DNS thread started");
        TestDns {
            addr,
            shared,
            tasks: Vec::new(),
            thread: Some((stop_tx, thread)),
        }
    }

    /// Replaces or adds records while running. For every name in `zone`: its record types
    /// replace the same types served for that name (other types stay), its SERVFAIL/TIMEOUT
    /// settings replace the old ones (none given: the name answers again), and `nodata(name)`
    /// drops every record of the name. Names not in `zone` are untouched.
    pub fn set(&self, zone: Zone) {
        lock(&self.shared.zone).merge(zone);
    }

    /// Replaces the whole zone.
    pub fn replace(&self, zone: Zone) {
        *lock(&self.shared.zone) = zone;
    }

    /// Removes a name and all its records (it answers NXDOMAIN, unless it is the parent of a
    /// name that remains).
    pub fn remove(&self, name: &str) {
        let key = lower(&must(parse_name(name)));
        lock(&self.shared.zone).nodes.remove(&key);
    }

    /// How many well-formed queries were received (UDP and TCP, answered or not; a query
    /// retried over TCP after truncation counts twice).
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }

    /// How many of [`TestDns::queries`] came over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.shared.tcp_queries.load(Ordering::SeqCst)
    }

    /// How many queries were received for this name (any type, case-insensitive).
    pub fn queries_for(&self, name: &str) -> usize {
        let key = lower(&must(parse_name(name)));
        lock(&self.shared.per_name).get(&key).copied().unwrap_or(0)
    }

    /// Sets the query counters back to zero.
    pub fn reset_counts(&self) {
        self.shared.queries.store(0, Ordering::SeqCst);
        self.shared.tcp_queries.store(0, Ordering::SeqCst);
        lock(&self.shared.per_name).clear();
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some((stop, thread)) = self.thread.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            // Transient (e.g. an ICMP error reported on the socket): keep serving.
            tokio::task::yield_now().await;
            continue;
        };
        let Some(packet) = buf.get(..len) else {
            continue;
        };
        if let Some(response) = shared.handle(packet, true) {
            let _ = socket.send_to(&response, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set: aborting this task drops it, which aborts them.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_tcp_connection(stream, shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let Some(packet) = buf.get_mut(..usize::from(len)) else {
            return;
        };
        if stream.read_exact(packet).await.is_err() {
            return;
        }
        let Some(response) = shared.handle(packet, false) else {
            continue;
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        // Responses over TCP are at most 65535 bytes (longer ones are sent truncated).
        framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
        framed.extend_from_slice(&response);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

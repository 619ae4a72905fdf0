//! Unpacking of Outlook's `winmail.dat` (TNEF, `application/ms-tnef`) into the files it
//! carries, so that agents see `invoice.pdf` instead of an opaque `winmail.dat`.
//!
//! A TNEF stream is a 4-byte signature, a 2-byte key, then a flat list of attributes:
//! `level u8` (1 message, 2 attachment), `id u32` (type in the high word, id in the low
//! word), `length u32`, `data`, `checksum u16`. An attachment starts at `attAttachRendData`
//! (0x9002) and its attributes follow until the next one. Its content is in
//! `attAttachData` (0x800F) or in the `PR_ATTACH_DATA_BIN`/`_OBJ` MAPI property of its
//! `attAttachment` (0x9005) attribute; its name in `attAttachTitle` (0x8010, 8-bit, often
//! an 8.3 name) or, better, in the MAPI property `PR_ATTACH_LONG_FILENAME`.
//!
//! Hand-written rather than the `tnef` crate: that crate drops attachments whose content
//! is only in MAPI properties, rejects unknown attribute ids and bad checksums (both common
//! in real Outlook output) and never reads the MAPI properties, so no long file names.
//!
//! Hostile input: every read is bounds-checked through [`Reader`] (no indexing, no
//! arithmetic that can overflow), nothing is allocated from a length field (lengths are
//! only used to slice the input), every loop consumes input, and the output is bounded by
//! [`MAX_ATTACHMENTS`] and [`MAX_OUTPUT_BYTES`].

use mail_parser::decoders::charsets::map::charset_decoder;

/// `unpack` refuses streams that would yield more attachments than this.
pub const MAX_ATTACHMENTS: usize = 1000;

/// `unpack` never returns more bytes of attachment content than the smaller of this and
/// the length of its input. Content is copied out of the input, never decompressed, and
/// two attachments never share input bytes, so a valid stream stays within its own length;
/// the absolute cap keeps the promise if that ever changes.
pub const MAX_OUTPUT_BYTES: usize = 128 * 1024 * 1024;

const SIGNATURE: [u8; 4] = 0x223E_9F78_u32.to_le_bytes();

/// Level byte, id, length: the bytes before an attribute's data.
const ATTRIBUTE_HEADER: usize = 9;
/// The checksum after an attribute's data.
const CHECKSUM: usize = 2;

const LEVEL_MESSAGE: u8 = 1;
const LEVEL_ATTACHMENT: u8 = 2;

// Attribute ids (low word of the attribute id; the high word is its type, which some
// writers get wrong, so it is ignored).
const ATT_OEM_CODEPAGE: u32 = 0x9007;
const ATT_ATTACH_RENDDATA: u32 = 0x9002;
const ATT_ATTACH_TITLE: u32 = 0x8010;
const ATT_ATTACH_DATA: u32 = 0x800F;
const ATT_ATTACHMENT: u32 = 0x9005;

// MAPI property ids of an attachment.
const PR_DISPLAY_NAME: u16 = 0x3001;
const PR_ATTACH_DATA: u16 = 0x3701;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_MIME_TAG: u16 = 0x370E;

// MAPI property types.
const PT_OBJECT: u16 = 0x000D;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
const PT_BINARY: u16 = 0x0102;
const MV_FLAG: u16 = 0x1000;

/// `PT_OBJECT` values start with the interface id of the object (IStorage for OLE
/// objects, IMessage for embedded messages); the content follows.
const IID_LEN: usize = 16;

/// Names and MIME tags are read from at most this many bytes of the stream (512 UTF-16
/// characters): longer ones are broken or hostile, and decoding them would cost memory
/// out of proportion to the result.
const MAX_STRING_BYTES: usize = 1024;

/// One file found inside a TNEF stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TnefAttachment {
    /// The first of: the long file name (`PR_ATTACH_LONG_FILENAME`), the title
    /// (attAttachTitle, often 8.3), the short file name (`PR_ATTACH_FILENAME`), the
    /// display name (`PR_DISPLAY_NAME`); `None` when the stream names it nowhere. Not
    /// sanitised: it may hold path separators or control characters, like any name that
    /// comes from mail.
    pub filename: Option<String>,
    /// `PR_ATTACH_MIME_TAG` when the sender's client set it, `application/vnd.ms-tnef`
    /// for an attached Outlook item (an embedded message, itself a TNEF stream), else
    /// `None` (guess from the name).
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TnefError {
    #[error("not a TNEF stream: it does not start with the TNEF signature 0x223E9F78")]
    NotTnef,
    #[error(
        "TNEF stream truncated at byte {offset}: the attribute there needs {needed} bytes \
         but only {available} remain"
    )]
    Truncated {
        offset: usize,
        needed: u64,
        available: usize,
    },
    #[error(
        "TNEF stream corrupt at byte {offset}: attribute level {level} is neither 1 \
         (message) nor 2 (attachment)"
    )]
    BadLevel { offset: usize, level: u8 },
    #[error("TNEF stream holds more than {limit} attachments")]
    TooManyAttachments { limit: usize },
    #[error("TNEF attachments would exceed {limit} bytes in all")]
    OutputTooLarge { limit: usize },
}

/// What [`unpack_detailed`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unpacked {
    /// Every attachment whose content was read in full, in stream order.
    pub attachments: Vec<TnefAttachment>,
    /// Why reading stopped before the end of the stream (truncation or garbage), if it did.
    /// Attachments after that point, if any, are missing from `attachments`.
    pub damage: Option<TnefError>,
}

/// True for parts that hold TNEF: content type application/ms-tnef or
/// application/vnd.ms-tnef, or a file named winmail.dat / win.dat, or data starting with
/// the TNEF signature 0x223E9F78.
///
/// A hint only: [`unpack`] checks the signature itself and answers [`TnefError::NotTnef`]
/// for a `winmail.dat` that is something else.
pub fn is_tnef(content_type: Option<&str>, filename: Option<&str>, data: &[u8]) -> bool {
    let by_type = content_type.is_some_and(|ct| {
        // Parameters (`; name=winmail.dat`) do not matter.
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/ms-tnef")
            || essence.eq_ignore_ascii_case("application/vnd.ms-tnef")
    });
    let by_name = filename.is_some_and(|name| {
        // Some clients send a full Windows path as the name.
        let base = name.trim().rsplit(['/', '\\']).next().unwrap_or("");
        base.eq_ignore_ascii_case("winmail.dat") || base.eq_ignore_ascii_case("win.dat")
    });
    by_type || by_name || data.starts_with(&SIGNATURE)
}

/// The attachments inside a TNEF stream.
///
/// Bounded: at most [`MAX_ATTACHMENTS`] attachments, and never more bytes of content in
/// all than the smaller of the input's length and [`MAX_OUTPUT_BYTES`]; a stream over
/// either limit is an error (the caller keeps the TNEF part as it is), not a cut list.
/// Memory use is the output plus a small constant: no length field is ever trusted for
/// an allocation, and names are read from at most 1 KiB each.
///
/// A truncated or corrupt stream (an attribute running past the end, an impossible
/// attribute level) returns the attachments whose content was read in full before the
/// damage, or the damage as an error when there are none. That is safe because TNEF
/// frames each attribute by its length: damage after an attribute cannot change it, so
/// the content of a returned attachment is byte for byte an attribute the sender wrote,
/// and what is lost is later attachments (and, for the attachment the damage cut, its
/// long name or MIME type). Use [`unpack_detailed`] to learn whether anything was lost.
///
/// Deliberately lenient, like Outlook and the other readers: attribute checksums are not
/// checked (Exchange writes wrong ones), unknown attributes are skipped, a few bytes of
/// NUL or white-space padding after the last attribute are ignored, and a damaged MAPI
/// property list only loses the properties after the damage.
pub fn unpack(data: &[u8]) -> Result<Vec<TnefAttachment>, TnefError> {
    let unpacked = unpack_detailed(data)?;
    match unpacked.damage {
        Some(damage) if unpacked.attachments.is_empty() => Err(damage),
        _ => Ok(unpacked.attachments),
    }
}

/// Like [`unpack`], but a damaged stream is not an error: the result says what was
/// read and why reading stopped. Errors are only [`TnefError::NotTnef`] and the limits.
pub fn unpack_detailed(data: &[u8]) -> Result<Unpacked, TnefError> {
    let mut reader = Reader::new(data);
    if reader.take(SIGNATURE.len()) != Some(&SIGNATURE[..]) {
        return Err(TnefError::NotTnef);
    }
    let mut out = Output::new(data.len());
    let mut codepage = None;
    let mut current: Option<PendingAttachment> = None;
    let mut damage = None;
    // The legacy key (a u16) is of no use for reading.
    if reader.take(2).is_none() {
        damage = Some(TnefError::Truncated {
            offset: SIGNATURE.len(),
            needed: 2,
            available: reader.remaining(),
        });
    }
    while damage.is_none() && !reader.at_padding_end() {
        let attribute = match read_attribute(&mut reader) {
            Ok(attribute) => attribute,
            Err(e) => {
                damage = Some(e);
                break;
            }
        };
        match (attribute.level, attribute.id & 0xFFFF) {
            (LEVEL_MESSAGE, ATT_OEM_CODEPAGE) => {
                // Two u32: the code page of 8-bit strings, then one that is always 0.
                codepage = Reader::new(attribute.data).u32();
            }
            (LEVEL_ATTACHMENT, ATT_ATTACH_RENDDATA) => {
                if let Some(done) = current.replace(PendingAttachment::default()) {
                    out.push(done, codepage)?;
                }
            }
            (LEVEL_ATTACHMENT, id) => {
                // An attachment attribute before any attAttachRendData still belongs to an
                // attachment; some writers omit the render data.
                let pending = current.get_or_insert_with(PendingAttachment::default);
                match id {
                    ATT_ATTACH_TITLE => pending.title = Some(attribute.data),
                    ATT_ATTACH_DATA => pending.data = Some(attribute.data),
                    ATT_ATTACHMENT => pending.read_mapi_properties(attribute.data),
                    _ => {}
                }
            }
            // The message's own attributes (subject, body, recipients) are not attachments.
            _ => {}
        }
    }
    if let Some(last) = current {
        // After damage, the attachment being read is kept if its content attribute arrived
        // in full (bad_checksum.tnef of tnefparse needs this). What the damage may have
        // cost it is its long name, its MIME tag, or the MAPI copy of its content that
        // would have replaced a legacy placeholder (see `content`).
        out.push(last, codepage)?;
    }
    Ok(Unpacked {
        attachments: out.attachments,
        damage,
    })
}

/// Collects attachments and enforces the limits.
struct Output {
    attachments: Vec<TnefAttachment>,
    byte_budget: usize,
}

impl Output {
    fn new(input_len: usize) -> Self {
        Self {
            attachments: Vec::new(),
            byte_budget: input_len.min(MAX_OUTPUT_BYTES),
        }
    }

    fn push(
        &mut self,
        pending: PendingAttachment<'_>,
        codepage: Option<u32>,
    ) -> Result<(), TnefError> {
        // An attachment without content (a link, or one whose data never arrived) is not a file.
        let Some(content) = pending.content() else {
            return Ok(());
        };
        if self.attachments.len() >= MAX_ATTACHMENTS {
            return Err(TnefError::TooManyAttachments {
                limit: MAX_ATTACHMENTS,
            });
        }
        self.byte_budget =
            self.byte_budget
                .checked_sub(content.len())
                .ok_or(TnefError::OutputTooLarge {
                    limit: MAX_OUTPUT_BYTES,
                })?;
        let filename = pending
            .long_filename
            .and_then(|s| s.decode(codepage))
            .or_else(|| {
                pending
                    .title
                    .and_then(|t| MapiString::Bytes(t).decode(codepage))
            })
            .or_else(|| pending.short_filename.and_then(|s| s.decode(codepage)))
            .or_else(|| pending.display_name.and_then(|s| s.decode(codepage)));
        let content_type = pending
            .mime_tag
            .and_then(|s| s.decode(codepage))
            .filter(|t| is_plausible_mime_type(t))
            .or_else(|| {
                // An attached Outlook item (embedded message) is itself a TNEF stream.
                (pending.data_is_object && content.starts_with(&SIGNATURE))
                    .then(|| "application/vnd.ms-tnef".to_string())
            });
        self.attachments.push(TnefAttachment {
            filename,
            content_type,
            data: content.to_vec(),
        });
        Ok(())
    }
}

/// `type/subtype` in printable ASCII, as a Content-Type can carry it.
fn is_plausible_mime_type(t: &str) -> bool {
    t.len() <= 127
        && t.split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
        && t.bytes().all(|b| b.is_ascii_graphic())
}

/// The parts of one attachment seen so far; slices of the input, copied only at the end.
#[derive(Default)]
struct PendingAttachment<'a> {
    title: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    mapi_data: Option<&'a [u8]>,
    data_is_object: bool,
    long_filename: Option<MapiString<'a>>,
    short_filename: Option<MapiString<'a>>,
    display_name: Option<MapiString<'a>>,
    mime_tag: Option<MapiString<'a>>,
}

impl<'a> PendingAttachment<'a> {
    /// The MAPI copy of the content wins: when both exist, attAttachData is the legacy
    /// rendering (for an embedded message, a placeholder text "This attachment is a MAPI
    /// 1.0 embedded message and is not supported by this mail system.").
    fn content(&self) -> Option<&'a [u8]> {
        self.mapi_data.or(self.data)
    }

    /// Reads the attAttachment property list. A damaged list keeps what came before the
    /// damage: the attribute's length already bounds it, so nothing else is affected.
    fn read_mapi_properties(&mut self, data: &'a [u8]) {
        let mut r = Reader::new(data);
        let Some(count) = r.u32() else { return };
        // Not trusted for an allocation or a bound: every property consumes input, so the
        // loop ends with the data whatever the count says.
        for _ in 0..count {
            let Some(property) = read_property(&mut r) else {
                return;
            };
            let Some(first) = property.first_value else {
                continue;
            };
            let string = match property.kind {
                PT_STRING8 => Some(MapiString::Bytes(first)),
                PT_UNICODE => Some(MapiString::Utf16(first)),
                _ => None,
            };
            match (property.id, string) {
                (PR_ATTACH_LONG_FILENAME, Some(s)) => self.long_filename = Some(s),
                (PR_ATTACH_FILENAME, Some(s)) => self.short_filename = Some(s),
                (PR_DISPLAY_NAME, Some(s)) => self.display_name = Some(s),
                (PR_ATTACH_MIME_TAG, Some(s)) => self.mime_tag = Some(s),
                (PR_ATTACH_DATA, None) if property.kind == PT_OBJECT => {
                    // Drop the interface id so that an OLE object comes out as the
                    // compound file it is, and an embedded message as its TNEF stream.
                    // A value too short to hold the id holds nothing.
                    if let Some(content) = first.get(IID_LEN..) {
                        self.mapi_data = Some(content);
                        self.data_is_object = true;
                    }
                }
                (PR_ATTACH_DATA, None) if property.kind == PT_BINARY => {
                    self.mapi_data = Some(first);
                    self.data_is_object = false;
                }
                _ => {}
            }
        }
    }
}

/// A string property, decoded only if it is used.
#[derive(Clone, Copy)]
enum MapiString<'a> {
    /// 8-bit, in the code page of attOemCodepage.
    Bytes(&'a [u8]),
    /// UTF-16LE.
    Utf16(&'a [u8]),
}

impl MapiString<'_> {
    /// The text up to its first NUL (and within [`MAX_STRING_BYTES`]), trimmed; `None`
    /// when nothing is left.
    fn decode(self, codepage: Option<u32>) -> Option<String> {
        let text = match self {
            MapiString::Bytes(b) => {
                let b = b.get(..MAX_STRING_BYTES).unwrap_or(b);
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
                decode_8bit(b.get(..end).unwrap_or_default(), codepage)
            }
            MapiString::Utf16(b) => {
                let b = b.get(..MAX_STRING_BYTES).unwrap_or(b);
                let units: Vec<u16> = b
                    .chunks_exact(2)
                    .filter_map(|p| p.try_into().ok().map(u16::from_le_bytes))
                    .take_while(|&u| u != 0)
                    .collect();
                String::from_utf16_lossy(&units)
            }
        };
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }
}

/// Decodes 8-bit text in the stream's code page.
fn decode_8bit(bytes: &[u8], codepage: Option<u32>) -> String {
    // Valid UTF-8 beyond ASCII is almost never text in a legacy code page, and writers
    // other than Outlook put UTF-8 here whatever code page they declare.
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_string();
    }
    if codepage == Some(65001) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    // Unknown or missing code page: windows-1252, Outlook's Western default. Without
    // mail-parser's "full_encoding" feature its CJK decoders fall back to lossy UTF-8.
    let decoder = codepage
        .and_then(codepage_charset)
        .and_then(|name| charset_decoder(name.as_bytes()))
        .or_else(|| charset_decoder(b"windows-1252"));
    match decoder {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The charset name (as mail-parser knows it) of a Windows code page number.
fn codepage_charset(codepage: u32) -> Option<String> {
    Some(match codepage {
        1250..=1258 => format!("windows-{codepage}"),
        874 => "windows-874".into(),
        850 | 866 => format!("cp{codepage}"),
        932 => "shift_jis".into(),
        936 => "gbk".into(),
        949 => "euc-kr".into(),
        950 => "big5".into(),
        20866 => "koi8-r".into(),
        21866 => "koi8-u".into(),
        28591..=28599 | 28603 | 28605 => format!("iso-8859-{}", codepage - 28590),
        _ => return None,
    })
}

struct Attribute<'a> {
    level: u8,
    id: u32,
    data: &'a [u8],
}

/// One attribute, with its checksum skipped (see [`unpack`] on checksums).
fn read_attribute<'a>(r: &mut Reader<'a>) -> Result<Attribute<'a>, TnefError> {
    let offset = r.pos;
    let available = r.remaining();
    let truncated = |needed: u64| TnefError::Truncated {
        offset,
        needed,
        available,
    };
    let header = r.take(ATTRIBUTE_HEADER).ok_or(truncated(9))?;
    let mut h = Reader::new(header);
    let (Some(level), Some(id), Some(len)) = (h.u8(), h.u32(), h.u32()) else {
        return Err(truncated(9));
    };
    // Checked before the length: a wrong level means the bytes here are not an attribute
    // at all (garbage after the stream), and their "length" is meaningless.
    if level != LEVEL_MESSAGE && level != LEVEL_ATTACHMENT {
        return Err(TnefError::BadLevel { offset, level });
    }
    let needed = (ATTRIBUTE_HEADER + CHECKSUM) as u64 + u64::from(len);
    let data = usize::try_from(len)
        .ok()
        .and_then(|len| r.take(len))
        .ok_or(truncated(needed))?;
    r.take(CHECKSUM).ok_or(truncated(needed))?;
    Ok(Attribute { level, id, data })
}

struct Property<'a> {
    id: u16,
    /// The property type without the multi-value flag.
    kind: u16,
    /// The first (usually only) value, for the types read here.
    first_value: Option<&'a [u8]>,
}

/// One MAPI property of a property list ([MS-OXTNEF] 2.1.3.5), or `None` when the list is
/// damaged or has a type this reader does not know (then nothing after it can be found).
fn read_property<'a>(r: &mut Reader<'a>) -> Option<Property<'a>> {
    let kind_raw = r.u16()?;
    let id = r.u16()?;
    if id >= 0x8000 {
        // A named property: GUID, then a number or a UTF-16 name. Skipped.
        r.take(16)?;
        match r.u32()? {
            0 => {
                r.u32()?;
            }
            1 => {
                let len = usize::try_from(r.u32()?).ok()?;
                r.take_padded(len)?;
            }
            _ => return None,
        }
    }
    let multi = kind_raw & MV_FLAG != 0;
    let kind = kind_raw & !MV_FLAG;
    let mut first_value = None;
    match fixed_size(kind) {
        Some(size) if !multi => {
            first_value = Some(r.take_padded(size)?);
        }
        Some(size) => {
            let count = r.u32()?;
            // Not trusted either: each value consumes input, so the data ends the loop.
            for _ in 0..count {
                let value = r.take_padded(size)?;
                first_value.get_or_insert(value);
            }
        }
        None if is_variable_size(kind) => {
            // Strings, binaries and objects always carry a value count, even when single.
            let count = r.u32()?;
            for _ in 0..count {
                let len = usize::try_from(r.u32()?).ok()?;
                let value = r.take_padded(len)?;
                first_value.get_or_insert(value);
            }
        }
        None => return None,
    }
    Some(Property {
        id,
        kind,
        first_value,
    })
}

/// Size of a fixed-size MAPI value type (before padding to 4 bytes).
fn fixed_size(kind: u16) -> Option<usize> {
    Some(match kind {
        // PT_SHORT, PT_BOOLEAN
        0x0002 | 0x000B => 2,
        // PT_LONG, PT_FLOAT, PT_ERROR
        0x0003 | 0x0004 | 0x000A => 4,
        // PT_DOUBLE, PT_CURRENCY, PT_APPTIME, PT_I8, PT_SYSTIME
        0x0005..=0x0007 | 0x0014 | 0x0040 => 8,
        // PT_CLSID
        0x0048 => 16,
        _ => return None,
    })
}

/// PT_OBJECT, PT_STRING8, PT_UNICODE, PT_BINARY, and the rare server-side binaries
/// (PT_SVREID, PT_SRESTRICT, PT_ACTIONS), which TNEF writes the same way.
fn is_variable_size(kind: u16) -> bool {
    matches!(
        kind,
        PT_OBJECT | PT_STRING8 | PT_UNICODE | PT_BINARY | 0x00FB | 0x00FD | 0x00FE
    )
}

/// A cursor over the input; every read is checked and returns `None` past the end.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let slice = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    /// `len` bytes, then the padding to the next multiple of 4. Writers that leave out the
    /// padding of the very last value are tolerated.
    fn take_padded(&mut self, len: usize) -> Option<&'a [u8]> {
        let value = self.take(len)?;
        let padding = (4 - len % 4) % 4;
        self.pos = self.pos.saturating_add(padding).min(self.data.len());
        Some(value)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    /// True at the end of the data, or when all that is left is too short to be an
    /// attribute and is NUL or white space: padding that transports append to the stream.
    fn at_padding_end(&self) -> bool {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        rest.len() < ATTRIBUTE_HEADER + CHECKSUM
            && rest.iter().all(|&b| b == 0 || b.is_ascii_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
        let mut out = vec![level];
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn stream(attributes: &[Vec<u8>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0x01, 0x00]);
        for a in attributes {
            out.extend_from_slice(a);
        }
        out
    }

    /// An attAttachment property list with a Unicode long file name and a MIME tag.
    fn mapi_props(long_name: &str, mime: &str) -> Vec<u8> {
        let mut out = 2u32.to_le_bytes().to_vec();
        let utf16: Vec<u8> = long_name
            .encode_utf16()
            .chain([0])
            .flat_map(u16::to_le_bytes)
            .collect();
        let mime = [mime.as_bytes(), b"\0"].concat();
        for (kind, tag, value) in [
            (PT_UNICODE, PR_ATTACH_LONG_FILENAME, &utf16),
            (PT_STRING8, PR_ATTACH_MIME_TAG, &mime),
        ] {
            // One value of variable length, padded to four bytes.
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out
    }

    #[test]
    fn long_name_and_mime_tag_from_mapi_properties() {
        let data = stream(&[
            attribute(1, 0x0008_9006, &[0, 0, 1, 0]),
            attribute(2, 0x0006_9002, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            attribute(2, 0x0001_8010, b"INVOIC~1.PDF\0"),
            attribute(2, 0x0006_800F, b"%PDF-1.4"),
            attribute(
                2,
                0x0006_9005,
                &mapi_props("Invoice März.pdf", "application/pdf"),
            ),
        ]);
        let got = unpack(&data).unwrap();
        assert_eq!(
            got,
            vec![TnefAttachment {
                filename: Some("Invoice März.pdf".into()),
                content_type: Some("application/pdf".into()),
                data: b"%PDF-1.4".to_vec(),
            }]
        );
    }

    #[test]
    fn title_in_windows_1252_when_no_long_name() {
        let data = stream(&[
            attribute(1, 0x0006_9007, &[0xE4, 0x04, 0, 0, 0, 0, 0, 0]), // 1252
            attribute(2, 0x0006_9002, &[]),
            attribute(2, 0x0001_8010, b"R\xE9sum\xE9.txt\0"),
            attribute(2, 0x0006_800F, b"x"),
        ]);
        let got = unpack(&data).unwrap();
        assert_eq!(got[0].filename.as_deref(), Some("Résumé.txt"));
        assert_eq!(got[0].content_type, None);
    }

    #[test]
    fn every_mapped_code_page_has_a_decoder() {
        for codepage in 0..70000 {
            if let Some(name) = codepage_charset(codepage) {
                assert!(charset_decoder(name.as_bytes()).is_some(), "{name}");
            }
        }
        assert_eq!(decode_8bit(b"\xC0\xE1", Some(1251)), "Аб");
        assert_eq!(decode_8bit("déjà".as_bytes(), Some(1252)), "déjà");
        assert_eq!(decode_8bit(b"d\xE9j\xE0", None), "déjà");
    }

    #[test]
    fn is_tnef_by_type_name_or_signature() {
        assert!(is_tnef(
            Some("Application/MS-TNEF; name=\"winmail.dat\""),
            None,
            b""
        ));
        assert!(is_tnef(Some("application/vnd.ms-tnef"), None, b""));
        assert!(is_tnef(None, Some("WINMAIL.DAT"), b""));
        assert!(is_tnef(None, Some("C:\\Temp\\win.dat"), b""));
        assert!(is_tnef(None, None, &[0x78, 0x9F, 0x3E, 0x22, 0, 0]));
        assert!(!is_tnef(
            Some("application/octet-stream"),
            Some("winmail.txt"),
            b"hello"
        ));
    }

    #[test]
    fn long_names_are_capped() {
        let name = "n".repeat(100_000);
        let data = stream(&[
            attribute(2, 0x0006_9002, &[]),
            attribute(2, 0x0006_800F, b"x"),
            attribute(
                2,
                0x0006_9005,
                &mapi_props(&name, &format!("text/{}", "a".repeat(100_000))),
            ),
        ]);
        let got = unpack(&data).unwrap();
        assert_eq!(got[0].filename.as_deref().map(str::len), Some(512));
        // A MIME tag cut short is no longer plausible; better none than a wrong one.
        assert_eq!(got[0].content_type, None);
    }

    #[test]
    fn not_tnef() {
        assert_eq!(unpack(b"hello world"), Err(TnefError::NotTnef));
        assert_eq!(unpack(b""), Err(TnefError::NotTnef));
    }
}

//! The pull decoder: WBXML bytes in, [`Event`]s out, borrowing strings from the input.
//!
//! Owns the WBXML 1.3 token grammar as EAS uses it: header (version, public id as a number or a
//! string-table reference, charset, string table), SWITCH_PAGE, END, STR_I, STR_T, OPAQUE and
//! tags with the content bit. Everything else WBXML allows (attributes, entities, processing
//! instructions, literals, extension tokens) is rejected with a typed error, because no EAS peer
//! sends it and accepting it would only widen what a hostile client can feed us.
//!
//! The reader never panics and never allocates per event; it enforces [`Limits`] as it goes so
//! that a hostile document costs at most the configured size and depth.

use crate::codepage::{CodePage, Tag};
use crate::error::DecodeError;

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const ENTITY: u8 = 0x02;
const STR_I: u8 = 0x03;
const LITERAL: u8 = 0x04;
const EXT_I_0: u8 = 0x40;
const EXT_I_2: u8 = 0x42;
const PI: u8 = 0x43;
const LITERAL_C: u8 = 0x44;
const EXT_T_0: u8 = 0x80;
const EXT_T_2: u8 = 0x82;
const STR_T: u8 = 0x83;
const LITERAL_A: u8 = 0x84;
const EXT_0: u8 = 0xC0;
const EXT_2: u8 = 0xC2;
const OPAQUE: u8 = 0xC3;
const LITERAL_AC: u8 = 0xC4;

const CONTENT_BIT: u8 = 0x40;
const ATTRIBUTE_BIT: u8 = 0x80;
const UTF8_MIBENUM: u32 = 106;

/// Bounds the decoder enforces on untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole document accepted, in bytes.
    pub max_document: usize,
    /// Deepest element nesting accepted.
    pub max_depth: usize,
    /// Largest single OPAQUE block accepted, in bytes.
    pub max_opaque: usize,
}

impl Default for Limits {
    /// Generous enough for a SendMail carrying a 40 MB message, small enough that a request body
    /// cannot make the gateway buffer more than that.
    fn default() -> Self {
        Limits {
            max_document: 64 * 1024 * 1024,
            max_depth: 64,
            max_opaque: 48 * 1024 * 1024,
        }
    }
}

/// What the document header says. EAS documents always carry `03 01 6A 00`, but other encoders
/// (libwbxml among them) write the public id as a string-table reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The WBXML version byte (0x03 for 1.3).
    pub version: u8,
    /// The public id: a well-known number, or a string from the string table.
    pub public_id: PublicId<'a>,
    /// Charset MIBenum; always 106 (UTF-8) in an accepted document.
    pub charset: u32,
}

/// The document's public identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicId<'a> {
    /// A registered number (EAS sends 1, "unknown").
    Number(u32),
    /// A string from the string table, e.g. `-//MICROSOFT//DTD ActiveSync//EN`.
    String(&'a str),
}

/// One decoding step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// An element with content opens; an [`Event::End`] follows its content.
    Start(Tag),
    /// An element without content (`<Tag/>`); no `End` follows.
    Empty(Tag),
    /// The innermost open element closes.
    End(Tag),
    /// A string (STR_I or STR_T). Consecutive strings belong to the same text.
    Text(&'a str),
    /// Opaque bytes.
    Opaque(&'a [u8]),
}

/// Pull decoder over one complete document held in memory.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    page: CodePage,
    string_table: &'a [u8],
    header: Header<'a>,
    limits: Limits,
    /// Open elements; its length is the current depth.
    open: Vec<Tag>,
    root_seen: bool,
}

impl<'a> Reader<'a> {
    /// Parses the header and prepares to read the body, with default [`Limits`].
    pub fn new(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::with_limits(buf, Limits::default())
    }

    /// Parses the header and prepares to read the body.
    pub fn with_limits(buf: &'a [u8], limits: Limits) -> Result<Self, DecodeError> {
        if buf.len() > limits.max_document {
            return Err(DecodeError::TooLarge {
                size: buf.len(),
                limit: limits.max_document,
            });
        }
        let mut r = Reader {
            buf,
            pos: 0,
            page: CodePage::AirSync,
            string_table: &[],
            header: Header {
                version: 0,
                public_id: PublicId::Number(0),
                charset: 0,
            },
            limits,
            open: Vec::with_capacity(16),
            root_seen: false,
        };
        r.header = r.read_header()?;
        Ok(r)
    }

    /// The parsed document header.
    pub fn header(&self) -> Header<'a> {
        self.header
    }

    /// How far into the input the reader is.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Current element depth (0 outside the root).
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    fn read_header(&mut self) -> Result<Header<'a>, DecodeError> {
        let version = self.byte()?;
        if version > 0x03 {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let public_id = self.mb_u32()?;
        let string_ref = if public_id == 0 {
            Some(self.mb_u32()?)
        } else {
            None
        };
        let charset = self.mb_u32()?;
        if charset != UTF8_MIBENUM {
            return Err(DecodeError::UnsupportedCharset(charset));
        }
        let table_len = self.mb_u32()? as usize;
        let table_start = self.pos;
        if self.buf.len() - self.pos < table_len {
            return Err(DecodeError::Truncated { offset: self.pos });
        }
        self.string_table = &self.buf[table_start..table_start + table_len];
        self.pos += table_len;
        let public_id = match string_ref {
            Some(index) => PublicId::String(self.table_string(index, table_start)?),
            None => PublicId::Number(public_id),
        };
        Ok(Header {
            version,
            public_id,
            charset,
        })
    }

    /// The next event, or `None` once the root element has closed and the input is consumed.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<Option<Event<'a>>, DecodeError> {
        loop {
            if self.root_seen && self.open.is_empty() {
                return if self.pos == self.buf.len() {
                    Ok(None)
                } else {
                    Err(DecodeError::TrailingData { offset: self.pos })
                };
            }
            let offset = self.pos;
            let Some(&token) = self.buf.get(self.pos) else {
                return Err(if self.root_seen {
                    DecodeError::Truncated { offset }
                } else {
                    DecodeError::NoRootElement
                });
            };
            self.pos += 1;
            match token {
                SWITCH_PAGE => {
                    let page = self.byte()?;
                    self.page = CodePage::from_number(page)
                        .ok_or(DecodeError::UnknownCodePage { page, offset })?;
                }
                END => {
                    let tag = self
                        .open
                        .pop()
                        .ok_or(DecodeError::UnbalancedEnd { offset })?;
                    return Ok(Some(Event::End(tag)));
                }
                STR_I => {
                    self.in_element(offset)?;
                    return self.inline_string().map(|s| Some(Event::Text(s)));
                }
                STR_T => {
                    self.in_element(offset)?;
                    let index = self.mb_u32()?;
                    let s = self.table_string(index, offset)?;
                    return Ok(Some(Event::Text(s)));
                }
                OPAQUE => {
                    self.in_element(offset)?;
                    return self.opaque(offset).map(|b| Some(Event::Opaque(b)));
                }
                ENTITY
                | LITERAL
                | LITERAL_C
                | LITERAL_A
                | LITERAL_AC
                | PI
                | EXT_I_0..=EXT_I_2
                | EXT_T_0..=EXT_T_2
                | EXT_0..=EXT_2 => {
                    return Err(DecodeError::UnsupportedToken { token, offset });
                }
                _ if token & ATTRIBUTE_BIT != 0 => {
                    return Err(DecodeError::Attributes { offset });
                }
                _ => return self.tag(token, offset).map(Some),
            }
        }
    }

    fn tag(&mut self, token: u8, offset: usize) -> Result<Event<'a>, DecodeError> {
        if self.root_seen && self.open.is_empty() {
            return Err(DecodeError::TrailingData { offset });
        }
        let tag = Tag::from_token(self.page, token & 0x3F).ok_or(DecodeError::UnknownTag {
            page: self.page.number(),
            token: token & 0x3F,
            offset,
        })?;
        self.root_seen = true;
        if token & CONTENT_BIT == 0 {
            // An empty element still counts as one level for the depth limit.
            if self.open.len() >= self.limits.max_depth {
                return Err(DecodeError::TooDeep {
                    limit: self.limits.max_depth,
                });
            }
            return Ok(Event::Empty(tag));
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(DecodeError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        self.open.push(tag);
        Ok(Event::Start(tag))
    }

    fn in_element(&self, offset: usize) -> Result<(), DecodeError> {
        if self.open.is_empty() {
            Err(DecodeError::ContentOutsideRoot { offset })
        } else {
            Ok(())
        }
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    /// WBXML's mb_u_int32: big-endian base-128 with a continuation bit, at most five bytes.
    fn mb_u32(&mut self) -> Result<u32, DecodeError> {
        let start = self.pos;
        let mut value: u32 = 0;
        for _ in 0..5 {
            let b = self.byte()?;
            if value > (u32::MAX >> 7) {
                return Err(DecodeError::BadInteger { offset: start });
            }
            value = (value << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::BadInteger { offset: start })
    }

    fn inline_string(&mut self) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let rest = &self.buf[start..];
        let len =
            memchr::memchr(0, rest).ok_or(DecodeError::UnterminatedString { offset: start })?;
        self.pos = start + len + 1;
        simdutf8::basic::from_utf8(&rest[..len])
            .map_err(|_| DecodeError::InvalidUtf8 { offset: start })
    }

    fn table_string(&self, index: u32, offset: usize) -> Result<&'a str, DecodeError> {
        let bad = DecodeError::BadStringReference { index, offset };
        let table = self.string_table;
        let rest = table.get(index as usize..).ok_or(bad.clone())?;
        let len = memchr::memchr(0, rest).ok_or(bad)?;
        simdutf8::basic::from_utf8(&rest[..len]).map_err(|_| DecodeError::InvalidUtf8 { offset })
    }

    fn opaque(&mut self, offset: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.mb_u32()?;
        if len as usize > self.limits.max_opaque {
            return Err(DecodeError::OpaqueTooLarge {
                len: u64::from(len),
                limit: self.limits.max_opaque,
                offset,
            });
        }
        let len = len as usize;
        if self.buf.len() - self.pos < len {
            return Err(DecodeError::Truncated { offset: self.pos });
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::tags::airsync;

    fn events(bytes: &[u8]) -> Result<Vec<Event<'_>>, DecodeError> {
        let mut r = Reader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn reads_the_canonical_header_and_a_small_body() {
        let doc = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0x4B, 0x03, b'1', 0x00, 0x01, 0x13, 0x01,
        ];
        assert_eq!(
            events(&doc).unwrap(),
            vec![
                Event::Start(airsync::Sync),
                Event::Start(airsync::SyncKey),
                Event::Text("1"),
                Event::End(airsync::SyncKey),
                Event::Empty(airsync::GetChanges),
                Event::End(airsync::Sync),
            ]
        );
    }

    #[test]
    fn public_id_from_the_string_table_and_str_t() {
        let mut doc = vec![0x03, 0x00, 0x00, 0x6A, 0x06];
        doc.extend_from_slice(b"ab\0cd\0");
        doc.extend_from_slice(&[0x45, 0x4B, 0x83, 0x03, 0x01, 0x01]);
        let r = Reader::new(&doc).unwrap();
        assert_eq!(r.header().public_id, PublicId::String("ab"));
        assert_eq!(events(&doc).unwrap()[2], Event::Text("cd"));
    }

    #[test]
    fn rejects_what_eas_never_sends() {
        let head = [0x03, 0x01, 0x6A, 0x00];
        let with = |body: &[u8]| [&head[..], body].concat();
        assert!(matches!(
            events(&with(&[0xC5, 0x01])),
            Err(DecodeError::Attributes { .. })
        ));
        assert!(matches!(
            events(&with(&[0x45, 0x02, 0x41, 0x01])),
            Err(DecodeError::UnsupportedToken { token: 0x02, .. })
        ));
        assert!(matches!(
            events(&with(&[0x45, 0x43])),
            Err(DecodeError::UnsupportedToken { token: 0x43, .. })
        ));
        assert!(matches!(
            events(&with(&[0x00, 26, 0x05])),
            Err(DecodeError::UnknownCodePage { page: 26, .. })
        ));
        assert!(matches!(
            events(&with(&[0x04])),
            Err(DecodeError::UnsupportedToken { .. })
        ));
        assert!(matches!(
            events(&with(&[0x05, 0x05])),
            Err(DecodeError::TrailingData { .. })
        ));
        assert!(matches!(
            events(&with(&[])),
            Err(DecodeError::NoRootElement)
        ));
        assert!(matches!(
            events(&with(&[0x45, 0x03, b'a'])),
            Err(DecodeError::UnterminatedString { .. })
        ));
        assert!(matches!(
            events(&with(&[0x45, 0x03, 0xFF, 0x00, 0x01])),
            Err(DecodeError::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            events(&with(&[0x45])),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            events(&[0x03, 0x01, 0x04, 0x00, 0x05]),
            Err(DecodeError::UnsupportedCharset(4))
        ));
        assert!(matches!(
            events(&with(&[0x45, 0xC3, 0x90, 0x80, 0x80, 0x80, 0x00])),
            Err(DecodeError::BadInteger { .. })
        ));
    }

    #[test]
    fn enforces_limits() {
        let mut doc = vec![0x03, 0x01, 0x6A, 0x00];
        doc.extend(std::iter::repeat_n(0x5C, 10));
        doc.extend(std::iter::repeat_n(0x01, 10));
        let limits = Limits {
            max_depth: 5,
            ..Limits::default()
        };
        let mut r = Reader::with_limits(&doc, limits).unwrap();
        let err = loop {
            match r.next() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("depth limit not enforced"),
                Err(e) => break e,
            }
        };
        assert_eq!(err, DecodeError::TooDeep { limit: 5 });

        let small = Limits {
            max_document: 3,
            ..Limits::default()
        };
        assert!(matches!(
            Reader::with_limits(&doc, small),
            Err(DecodeError::TooLarge { .. })
        ));

        let opaque = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0xC3, 0x05, 1, 2, 3, 4, 5, 0x01,
        ];
        let tight = Limits {
            max_opaque: 4,
            ..Limits::default()
        };
        let mut r = Reader::with_limits(&opaque, tight).unwrap();
        r.next().unwrap();
        assert!(matches!(
            r.next(),
            Err(DecodeError::OpaqueTooLarge { len: 5, .. })
        ));
    }
}

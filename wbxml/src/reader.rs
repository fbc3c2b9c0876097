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
//!
//! # The decoding budget
//!
//! Events borrow from the input, but every consumer (the element tree, the XML renderer, the
//! gateway's commands) copies text and opaque data out of them. STR_I text and OPAQUE data are
//! never longer than the bytes that carry them, so without a string table a document decodes to
//! at most its own size. A STR_T reference, though, costs two or three bytes and yields a whole
//! string-table string, as many times as it is repeated: a 120 KB document made of one 60 KB
//! entry referenced 30,000 times asks its consumer for 1.8 GB. The reader therefore counts, as
//! it goes and before handing the event out, every decoded byte (each STR_T reference counted
//! every time it is used) and every element, and fails with [`DecodeError::BudgetExceeded`] the
//! moment a document goes over:
//!
//! - decoded bytes: at most [`Limits::decoded_budget`] of the document's length, that is
//!   `max_expansion` times the length (never below [`Limits::MIN_DECODED_BUDGET`]), and never
//!   more than `max_decoded`;
//! - elements (with or without content): at most `max_elements`.
//!
//! The gateway builds its limits with [`Limits::for_body`] from its request-body cap.

use crate::codepage::{CodePage, Tag};
use crate::error::{Budget, DecodeError};

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
    /// Most text and opaque bytes one document may decode to in total, whatever its length;
    /// string-table references count every time they are used.
    pub max_decoded: usize,
    /// Most decoded bytes per byte of the document (see [`Limits::decoded_budget`]).
    pub max_expansion: usize,
    /// Most elements one document may hold, empty ones included.
    pub max_elements: usize,
}

/// Four decoded bytes per document byte. An EAS client sends no string table, so its documents
/// decode to at most their own size (STR_I text and OPAQUE data are never longer than their
/// encoding) and use a quarter of this. Encoders that do use the table (libwbxml) put repeated
/// strings in it; four times the document is room for that, while a repeated reference to a
/// large entry, which is the only way to decode to more than the input, is stopped after a few
/// copies, so a request costs its consumer a few times its length and no more.
const DEFAULT_EXPANSION: usize = 4;

impl Default for Limits {
    /// Generous enough for a SendMail carrying a 40 MB message, small enough that a request body
    /// cannot make the gateway buffer more than that.
    fn default() -> Self {
        let max_document = 64 * 1024 * 1024;
        Limits {
            max_document,
            max_depth: 64,
            max_opaque: 48 * 1024 * 1024,
            // A document without a string table decodes to at most its own length, so this
            // only ever stops string-table amplification.
            max_decoded: max_document,
            max_expansion: DEFAULT_EXPANSION,
            // Far above any request a phone makes (a Sync uploading a hundred contacts is a few
            // thousand elements); each element costs an element tree a few dozen bytes, so this
            // caps the tree at a few megabytes even when every input byte is an empty element.
            max_elements: 100_000,
        }
    }
}

impl Limits {
    /// The decoded-bytes budget never goes below this, so that a small document from an encoder
    /// that uses the string table freely is not refused for being small.
    pub const MIN_DECODED_BUDGET: usize = 64 * 1024;

    /// The limits for a request body of at most `max_body_bytes`: that is the largest document,
    /// and also the most any body may decode to, so a request never costs more decoded data
    /// than the largest body the server accepts; within that, a body may decode to at most four
    /// times its own length (`max_expansion`). The other limits are the defaults.
    pub fn for_body(max_body_bytes: usize) -> Limits {
        Limits {
            max_document: max_body_bytes,
            max_decoded: max_body_bytes,
            ..Limits::default()
        }
    }

    /// How many text and opaque bytes a document of `document_len` bytes may decode to:
    /// `max_expansion` times its length, at least [`Limits::MIN_DECODED_BUDGET`], at most
    /// `max_decoded`.
    pub fn decoded_budget(&self, document_len: usize) -> usize {
        self.max_expansion
            .saturating_mul(document_len)
            .max(Self::MIN_DECODED_BUDGET)
            .min(self.max_decoded)
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
    /// Text and opaque bytes handed out so far, and the most allowed for this document.
    decoded: usize,
    decoded_budget: usize,
    /// Elements handed out so far.
    elements: usize,
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
            decoded: 0,
            decoded_budget: limits.decoded_budget(buf.len()),
            elements: 0,
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

    /// Text and opaque bytes handed out so far, string-table references counted at every use.
    pub fn decoded(&self) -> usize {
        self.decoded
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
                    let s = self.inline_string()?;
                    self.spend(s.len(), offset)?;
                    return Ok(Some(Event::Text(s)));
                }
                STR_T => {
                    self.in_element(offset)?;
                    let index = self.mb_u32()?;
                    let s = self.table_string(index, offset)?;
                    self.spend(s.len(), offset)?;
                    return Ok(Some(Event::Text(s)));
                }
                OPAQUE => {
                    self.in_element(offset)?;
                    let b = self.opaque(offset)?;
                    self.spend(b.len(), offset)?;
                    return Ok(Some(Event::Opaque(b)));
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
        if self.elements >= self.limits.max_elements {
            return Err(DecodeError::BudgetExceeded {
                what: Budget::Elements,
                limit: self.limits.max_elements,
                offset,
            });
        }
        self.elements += 1;
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

    /// Counts `len` decoded bytes against the budget before they are handed out.
    fn spend(&mut self, len: usize, offset: usize) -> Result<(), DecodeError> {
        match self.decoded.checked_add(len) {
            Some(total) if total <= self.decoded_budget => {
                self.decoded = total;
                Ok(())
            }
            _ => Err(DecodeError::BudgetExceeded {
                what: Budget::DecodedBytes,
                limit: self.decoded_budget,
                offset,
            }),
        }
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
    use crate::Element;
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

    #[test]
    fn decoded_budget_is_a_multiple_of_the_document_within_a_floor_and_a_cap() {
        let limits = Limits {
            max_decoded: 1_000_000,
            max_expansion: 4,
            ..Limits::default()
        };
        assert_eq!(limits.decoded_budget(0), Limits::MIN_DECODED_BUDGET);
        assert_eq!(limits.decoded_budget(100_000), 400_000);
        assert_eq!(limits.decoded_budget(300_000), 1_000_000);
        assert_eq!(limits.decoded_budget(usize::MAX), 1_000_000);
        let body = Limits::for_body(50 << 20);
        assert_eq!(body.max_document, 50 << 20);
        assert_eq!(body.decoded_budget(120_000), 480_000);
        assert_eq!(body.decoded_budget(40 << 20), 50 << 20);
    }

    #[test]
    fn every_string_table_reference_is_charged() {
        // One 10-byte entry; a budget of 25 bytes allows two references, not a third.
        let mut doc = vec![0x03, 0x01, 0x6A, 0x0B];
        doc.extend_from_slice(b"0123456789\0");
        doc.push(0x4B);
        doc.extend_from_slice(&[0x83, 0x00].repeat(3));
        doc.push(0x01);
        let limits = Limits {
            max_decoded: 25,
            ..Limits::default()
        };
        let mut r = Reader::with_limits(&doc, limits).unwrap();
        assert_eq!(r.next().unwrap(), Some(Event::Start(airsync::SyncKey)));
        assert_eq!(r.next().unwrap(), Some(Event::Text("0123456789")));
        assert_eq!(r.next().unwrap(), Some(Event::Text("0123456789")));
        assert_eq!(r.decoded(), 20);
        assert_eq!(
            r.next(),
            Err(DecodeError::BudgetExceeded {
                what: Budget::DecodedBytes,
                limit: 25,
                offset: 20,
            })
        );
        // Exactly at the budget is accepted.
        let exact = Limits {
            max_decoded: 30,
            ..Limits::default()
        };
        let mut r = Reader::with_limits(&doc, exact).unwrap();
        while r.next().unwrap().is_some() {}
        assert_eq!(r.decoded(), 30);
    }

    #[test]
    fn inline_text_and_opaque_data_are_charged_too() {
        let doc = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0x4B, 0x03, b'a', b'b', b'c', 0x00, 0x01, 0x4B, 0xC3,
            0x02, 7, 8, 0x01, 0x01,
        ];
        let limits = |max_decoded| Limits {
            max_decoded,
            ..Limits::default()
        };
        assert!(Element::decode_with(&doc, limits(5)).is_ok());
        assert_eq!(
            Element::decode_with(&doc, limits(4)),
            Err(DecodeError::BudgetExceeded {
                what: Budget::DecodedBytes,
                limit: 4,
                offset: 13,
            })
        );
    }

    #[test]
    fn elements_are_counted_empty_or_not() {
        // <Sync><GetChanges/><GetChanges/><GetChanges/></Sync>: four elements.
        let doc = [0x03, 0x01, 0x6A, 0x00, 0x45, 0x13, 0x13, 0x13, 0x01];
        let limits = |max_elements| Limits {
            max_elements,
            ..Limits::default()
        };
        assert!(Element::decode_with(&doc, limits(4)).is_ok());
        assert_eq!(
            Element::decode_with(&doc, limits(3)),
            Err(DecodeError::BudgetExceeded {
                what: Budget::Elements,
                limit: 3,
                offset: 7,
            })
        );
    }
}

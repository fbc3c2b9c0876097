//! The streaming encoder: start/end/text/opaque calls in, canonical EAS WBXML bytes out.
//!
//! Owns the canonical form every EAS peer expects: the header `03 01 6A 00`, no string table,
//! SWITCH_PAGE only when the page actually changes, the content bit only on elements that have
//! content, strings as STR_I. A response of any size is written element by element straight into
//! the sink, so a Sync with hundreds of items never needs a tree.
//!
//! The content bit of a tag depends on what follows it, so a started tag is held back until the
//! next call says whether the element has content; that is the only buffering the writer does.
//!
//! A [`Fragment`] is a run of sibling elements encoded ahead of time (a mail item rendered as
//! soon as its bytes arrive, while the next one is still being read) and spliced into a
//! document later; the document comes out byte for byte as if the elements had been written
//! in place.

use std::io::Write;

use crate::codepage::{CodePage, Tag};
use crate::error::EncodeError;

/// The header EAS documents carry: WBXML 1.3, public id 1 (unknown), UTF-8, empty string table.
pub const HEADER: [u8; 4] = [0x03, 0x01, 0x6A, 0x00];

const SWITCH_PAGE: u8 = 0x00;
const END: u8 = 0x01;
const STR_I: u8 = 0x03;
const OPAQUE: u8 = 0xC3;
const CONTENT_BIT: u8 = 0x40;

/// Streaming WBXML writer over any [`Write`] sink (a `Vec<u8>` in the common case).
pub struct Writer<W: Write> {
    out: W,
    page: CodePage,
    /// Open elements whose tag byte has been written.
    open: Vec<Tag>,
    /// A started element whose tag byte waits for the next call.
    pending: Option<Tag>,
    root_done: bool,
    /// Writing a [`Fragment`]: no header, any number of top-level elements, and the first
    /// tag's page is recorded instead of switched to (the document it lands in decides).
    fragment: bool,
    first_page: Option<CodePage>,
}

/// Sibling elements encoded without a header, to be spliced into a document with
/// [`Writer::splice`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    bytes: Vec<u8>,
    /// The page of the first tag (None when the fragment is empty).
    first_page: Option<CodePage>,
    /// The page in force after the last byte.
    last_page: Option<CodePage>,
}

impl Fragment {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl Writer<Vec<u8>> {
    /// A writer for a [`Fragment`]: no header, top-level elements written one after another.
    pub fn fragment() -> Self {
        Writer {
            out: Vec::new(),
            page: CodePage::AirSync,
            open: Vec::with_capacity(16),
            pending: None,
            root_done: false,
            fragment: true,
            first_page: None,
        }
    }

    /// The fragment written so far; every element must be closed.
    pub fn into_fragment(self) -> Result<Fragment, EncodeError> {
        let open = self.open.len() + usize::from(self.pending.is_some());
        if open > 0 || !self.fragment {
            return Err(EncodeError::Unclosed { open });
        }
        Ok(Fragment {
            first_page: self.first_page,
            last_page: self.first_page.map(|_| self.page),
            bytes: self.out,
        })
    }
}

impl<W: Write> Writer<W> {
    /// Writes the header and returns a writer positioned before the root element.
    pub fn new(mut out: W) -> Result<Self, EncodeError> {
        out.write_all(&HEADER)?;
        Ok(Writer {
            out,
            page: CodePage::AirSync,
            open: Vec::with_capacity(16),
            pending: None,
            root_done: false,
            fragment: false,
            first_page: None,
        })
    }

    /// Writes a [`Fragment`]'s elements as content of the innermost open element.
    pub fn splice(&mut self, f: &Fragment) -> Result<&mut Self, EncodeError> {
        let (Some(first), Some(last)) = (f.first_page, f.last_page) else {
            return Ok(self);
        };
        self.flush_pending(true)?;
        if self.open.is_empty() && !self.fragment {
            return Err(EncodeError::ContentOutsideElement);
        }
        if self.fragment && self.first_page.is_none() {
            self.first_page = Some(first);
        } else if first != self.page {
            self.out.write_all(&[SWITCH_PAGE, first.number()])?;
        }
        self.out.write_all(&f.bytes)?;
        self.page = last;
        Ok(self)
    }

    /// Opens an element; its content (children, text or opaque data) follows until [`end`].
    ///
    /// [`end`]: Writer::end
    pub fn start(&mut self, tag: Tag) -> Result<&mut Self, EncodeError> {
        self.flush_pending(true)?;
        if self.root_done && self.open.is_empty() && !self.fragment {
            return Err(EncodeError::SecondRoot);
        }
        self.pending = Some(tag);
        Ok(self)
    }

    /// Closes the innermost open element. An element closed right after it was started is
    /// written as an empty tag (`<Tag/>`).
    pub fn end(&mut self) -> Result<&mut Self, EncodeError> {
        if let Some(tag) = self.pending.take() {
            self.write_tag(tag, false)?;
        } else {
            self.open.pop().ok_or(EncodeError::UnbalancedEnd)?;
            self.out.write_all(&[END])?;
        }
        if self.open.is_empty() {
            self.root_done = true;
        }
        Ok(self)
    }

    /// Writes text content. NUL characters cannot be carried by STR_I and are dropped: a phone is
    /// better served by the text without them than by a failed response.
    pub fn text(&mut self, text: &str) -> Result<&mut Self, EncodeError> {
        self.flush_pending(true)?;
        if self.open.is_empty() {
            return Err(EncodeError::ContentOutsideElement);
        }
        self.out.write_all(&[STR_I])?;
        let bytes = text.as_bytes();
        // Bodies of tens of kilobytes pass through here: one vectorised search, and a copy.
        if memchr::memchr(0, bytes).is_none() {
            self.out.write_all(bytes)?;
        } else {
            for piece in bytes.split(|&b| b == 0) {
                self.out.write_all(piece)?;
            }
        }
        self.out.write_all(&[0])?;
        Ok(self)
    }

    /// Writes opaque (binary) content.
    pub fn opaque(&mut self, data: &[u8]) -> Result<&mut Self, EncodeError> {
        self.flush_pending(true)?;
        if self.open.is_empty() {
            return Err(EncodeError::ContentOutsideElement);
        }
        let len = u32::try_from(data.len()).map_err(|_| EncodeError::OpaqueTooLarge(data.len()))?;
        self.out.write_all(&[OPAQUE])?;
        write_mb_u32(&mut self.out, len)?;
        self.out.write_all(data)?;
        Ok(self)
    }

    /// `<tag/>`.
    pub fn empty(&mut self, tag: Tag) -> Result<&mut Self, EncodeError> {
        self.start(tag)?.end()
    }

    /// `<tag>text</tag>`.
    pub fn text_element(&mut self, tag: Tag, text: &str) -> Result<&mut Self, EncodeError> {
        self.start(tag)?.text(text)?.end()
    }

    /// `<tag>` with opaque content.
    pub fn opaque_element(&mut self, tag: Tag, data: &[u8]) -> Result<&mut Self, EncodeError> {
        self.start(tag)?.opaque(data)?.end()
    }

    /// Checks the document is complete and hands back the sink.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        let open = self.open.len() + usize::from(self.pending.is_some());
        if open > 0 || !self.root_done {
            return Err(EncodeError::Unclosed { open });
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_pending(&mut self, has_content: bool) -> Result<(), EncodeError> {
        if let Some(tag) = self.pending.take() {
            self.write_tag(tag, has_content)?;
            self.open.push(tag);
        }
        Ok(())
    }

    fn write_tag(&mut self, tag: Tag, has_content: bool) -> Result<(), EncodeError> {
        if self.fragment && self.first_page.is_none() {
            self.first_page = Some(tag.page());
            self.page = tag.page();
        } else if tag.page() != self.page {
            self.out.write_all(&[SWITCH_PAGE, tag.page().number()])?;
            self.page = tag.page();
        }
        let byte = tag.token() | if has_content { CONTENT_BIT } else { 0 };
        self.out.write_all(&[byte])?;
        Ok(())
    }
}

fn write_mb_u32<W: Write>(out: &mut W, mut value: u32) -> std::io::Result<()> {
    let mut buf = [0u8; 5];
    let mut i = buf.len() - 1;
    buf[i] = (value & 0x7F) as u8;
    value >>= 7;
    while value > 0 {
        i -= 1;
        buf[i] = (value & 0x7F) as u8 | 0x80;
        value >>= 7;
    }
    out.write_all(&buf[i..])
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::tags::{airsync, airsyncbase, email2};

    #[test]
    fn writes_the_canonical_form() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.start(airsync::Sync).unwrap();
        w.text_element(airsync::SyncKey, "1").unwrap();
        w.empty(airsync::GetChanges).unwrap();
        w.start(airsyncbase::Body).unwrap();
        w.text_element(airsyncbase::Type, "2").unwrap();
        w.end().unwrap();
        w.opaque_element(email2::ConversationId, &[1, 2, 3])
            .unwrap();
        w.end().unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(
            bytes,
            [
                0x03, 0x01, 0x6A, 0x00, // header
                0x45, 0x4B, 0x03, b'1', 0x00, 0x01, 0x13, // Sync, SyncKey "1", GetChanges/
                0x00, 0x11, 0x4A, 0x46, 0x03, b'2', 0x00, 0x01,
                0x01, // page 17, Body>Type "2"
                0x00, 0x16, 0x49, 0xC3, 0x03, 1, 2, 3, 0x01, // page 22, ConversationId opaque
                0x01, // </Sync>
            ]
        );
    }

    #[test]
    fn misuse_is_an_error_not_a_bad_document() {
        let mut w = Writer::new(Vec::new()).unwrap();
        assert!(matches!(w.end(), Err(EncodeError::UnbalancedEnd)));
        assert!(matches!(
            w.text("x"),
            Err(EncodeError::ContentOutsideElement)
        ));
        w.empty(airsync::Sync).unwrap();
        assert!(matches!(
            w.start(airsync::Sync),
            Err(EncodeError::SecondRoot)
        ));
        let mut w = Writer::new(Vec::new()).unwrap();
        w.start(airsync::Sync).unwrap();
        assert!(matches!(w.finish(), Err(EncodeError::Unclosed { open: 1 })));
        assert!(matches!(
            Writer::new(Vec::new()).unwrap().finish(),
            Err(EncodeError::Unclosed { open: 0 })
        ));
    }

    #[test]
    fn nul_is_dropped_from_text() {
        let mut w = Writer::new(Vec::new()).unwrap();
        w.text_element(airsync::SyncKey, "a\0b").unwrap();
        let bytes = w.finish().unwrap();
        let tree = crate::Element::decode(&bytes).unwrap();
        assert_eq!(tree.text(), Some("ab"));
    }

    #[test]
    fn a_spliced_fragment_encodes_as_if_written_in_place() {
        let props = |w: &mut Writer<Vec<u8>>| {
            w.text_element(email2::ConversationId, "c").unwrap();
            w.start(airsyncbase::Body).unwrap();
            w.text_element(airsyncbase::Type, "2").unwrap();
            w.end().unwrap();
        };
        let mut direct = Writer::new(Vec::new()).unwrap();
        direct.start(airsync::Add).unwrap();
        direct.start(airsync::ApplicationData).unwrap();
        props(&mut direct);
        direct.end().unwrap();
        direct.text_element(airsync::ServerId, "1:2").unwrap();
        direct.end().unwrap();

        let mut f = Writer::fragment();
        props(&mut f);
        let f = f.into_fragment().unwrap();
        let mut spliced = Writer::new(Vec::new()).unwrap();
        spliced.start(airsync::Add).unwrap();
        spliced.start(airsync::ApplicationData).unwrap();
        spliced.splice(&f).unwrap();
        spliced.end().unwrap();
        spliced.text_element(airsync::ServerId, "1:2").unwrap();
        spliced.end().unwrap();
        assert_eq!(direct.finish().unwrap(), spliced.finish().unwrap());

        // Empty fragments leave the document alone, even an empty element empty.
        let empty = Writer::fragment().into_fragment().unwrap();
        assert!(empty.is_empty());
        let mut w = Writer::new(Vec::new()).unwrap();
        w.start(airsync::Sync)
            .unwrap()
            .splice(&empty)
            .unwrap()
            .end()
            .unwrap();
        assert_eq!(w.finish().unwrap(), [0x03, 0x01, 0x6A, 0x00, 0x05]);
        // Outside any element a fragment has nowhere to go.
        let mut w = Writer::new(Vec::new()).unwrap();
        assert!(matches!(
            w.splice(&f),
            Err(EncodeError::ContentOutsideElement)
        ));
    }

    #[test]
    fn multi_byte_lengths() {
        let mut v = Vec::new();
        write_mb_u32(&mut v, 0).unwrap();
        write_mb_u32(&mut v, 0x7F).unwrap();
        write_mb_u32(&mut v, 0x80).unwrap();
        write_mb_u32(&mut v, u32::MAX).unwrap();
        assert_eq!(v, [0x00, 0x7F, 0x81, 0x00, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F]);
    }
}

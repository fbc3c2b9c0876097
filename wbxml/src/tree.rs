//! The element tree: a whole document in memory, for tests, small commands and debugging.
//!
//! Owns the in-memory shape of an EAS document and its conversion to and from WBXML through the
//! [`Reader`] and [`Writer`]. Large responses should be written with the [`Writer`] directly.

use std::io::Write;

use crate::codepage::Tag;
use crate::error::{DecodeError, EncodeError};
use crate::reader::{Event, Limits, Reader};
use crate::writer::Writer;

/// An element and everything inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The element's tag.
    pub tag: Tag,
    /// What the element holds.
    pub content: Content,
}

/// What an EAS element holds: child elements, a string, or opaque bytes, never a mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Child elements; an empty list is an empty element (`<Tag/>`).
    Elements(Vec<Element>),
    /// A string (possibly empty: `<Tag></Tag>` on the wire is STR_I "").
    Text(String),
    /// Binary data (WBXML OPAQUE).
    Opaque(Vec<u8>),
}

impl Element {
    /// An empty element.
    pub fn new(tag: Tag) -> Element {
        Element {
            tag,
            content: Content::Elements(Vec::new()),
        }
    }

    /// An element holding text.
    pub fn with_text(tag: Tag, text: impl Into<String>) -> Element {
        Element {
            tag,
            content: Content::Text(text.into()),
        }
    }

    /// An element holding opaque bytes.
    pub fn with_opaque(tag: Tag, data: impl Into<Vec<u8>>) -> Element {
        Element {
            tag,
            content: Content::Opaque(data.into()),
        }
    }

    /// An element holding children.
    pub fn with_children(tag: Tag, children: Vec<Element>) -> Element {
        Element {
            tag,
            content: Content::Elements(children),
        }
    }

    /// Appends a child; an element holding text or opaque data is turned into a container.
    pub fn push(&mut self, child: Element) -> &mut Self {
        match &mut self.content {
            Content::Elements(children) => children.push(child),
            other => *other = Content::Elements(vec![child]),
        }
        self
    }

    /// Child elements (empty for text and opaque elements).
    pub fn children(&self) -> &[Element] {
        match &self.content {
            Content::Elements(children) => children,
            _ => &[],
        }
    }

    /// The first child with this tag.
    pub fn child(&self, tag: Tag) -> Option<&Element> {
        self.children().iter().find(|c| c.tag == tag)
    }

    /// Every child with this tag, in document order.
    pub fn children_with(&self, tag: Tag) -> impl Iterator<Item = &Element> {
        self.children().iter().filter(move |c| c.tag == tag)
    }

    /// The text of a text element.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of an opaque element.
    pub fn opaque(&self) -> Option<&[u8]> {
        match &self.content {
            Content::Opaque(b) => Some(b),
            _ => None,
        }
    }

    /// Decodes a whole document with default [`Limits`].
    pub fn decode(bytes: &[u8]) -> Result<Element, DecodeError> {
        Self::decode_with(bytes, Limits::default())
    }

    /// Decodes a whole document.
    pub fn decode_with(bytes: &[u8], limits: Limits) -> Result<Element, DecodeError> {
        let mut reader = Reader::with_limits(bytes, limits)?;
        let mut stack: Vec<Frame> = Vec::with_capacity(16);
        let mut root = None;
        while let Some(event) = reader.next()? {
            let done = match event {
                Event::Start(tag) => {
                    // Mixed content is reported where it starts, as the streaming renderer does,
                    // not after the child's own (possibly broken) content.
                    opens_child(&mut stack)?;
                    stack.push(Frame::new(tag));
                    None
                }
                Event::Empty(tag) => {
                    opens_child(&mut stack)?;
                    Some(Element::new(tag))
                }
                Event::End(_) => {
                    // The reader guarantees End matches an open Start.
                    let frame = stack.pop().ok_or(DecodeError::NoRootElement)?;
                    Some(frame.finish())
                }
                Event::Text(s) => {
                    current(&mut stack)?.text(s)?;
                    None
                }
                Event::Opaque(b) => {
                    current(&mut stack)?.opaque(b)?;
                    None
                }
            };
            if let Some(element) = done {
                match stack.last_mut() {
                    Some(parent) => parent.child(element)?,
                    None => root = Some(element),
                }
            }
        }
        root.ok_or(DecodeError::NoRootElement)
    }

    /// Encodes the tree as a canonical EAS WBXML document.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(Vec::with_capacity(256)).expect("Vec sink cannot fail");
        self.write(&mut w).expect("Vec sink cannot fail");
        w.finish().expect("a tree is always balanced")
    }

    /// Writes this element (and its subtree) into a streaming writer.
    pub fn write<W: Write>(&self, w: &mut Writer<W>) -> Result<(), EncodeError> {
        w.start(self.tag)?;
        match &self.content {
            Content::Elements(children) => {
                for child in children {
                    child.write(w)?;
                }
            }
            Content::Text(s) => {
                w.text(s)?;
            }
            Content::Opaque(b) => {
                w.opaque(b)?;
            }
        }
        w.end()?;
        Ok(())
    }
}

fn current(stack: &mut [Frame]) -> Result<&mut Frame, DecodeError> {
    // The reader only yields text and opaque data inside an open element.
    stack.last_mut().ok_or(DecodeError::NoRootElement)
}

fn opens_child(stack: &mut [Frame]) -> Result<(), DecodeError> {
    match stack.last_mut() {
        Some(parent) => parent.holds_elements(),
        None => Ok(()),
    }
}

/// An element being decoded.
struct Frame {
    tag: Tag,
    content: Option<Content>,
}

impl Frame {
    fn new(tag: Tag) -> Frame {
        Frame { tag, content: None }
    }

    fn mixed(&self) -> DecodeError {
        DecodeError::MixedContent { tag: self.tag }
    }

    fn text(&mut self, s: &str) -> Result<(), DecodeError> {
        match &mut self.content {
            None => self.content = Some(Content::Text(s.to_owned())),
            Some(Content::Text(t)) => t.push_str(s),
            Some(_) => return Err(self.mixed()),
        }
        Ok(())
    }

    fn opaque(&mut self, b: &[u8]) -> Result<(), DecodeError> {
        match &self.content {
            None => self.content = Some(Content::Opaque(b.to_vec())),
            Some(_) => return Err(self.mixed()),
        }
        Ok(())
    }

    fn holds_elements(&mut self) -> Result<(), DecodeError> {
        match &self.content {
            None => self.content = Some(Content::Elements(Vec::new())),
            Some(Content::Elements(_)) => {}
            Some(_) => return Err(self.mixed()),
        }
        Ok(())
    }

    fn child(&mut self, e: Element) -> Result<(), DecodeError> {
        match &mut self.content {
            None => self.content = Some(Content::Elements(vec![e])),
            Some(Content::Elements(c)) => c.push(e),
            Some(_) => return Err(self.mixed()),
        }
        Ok(())
    }

    fn finish(self) -> Element {
        Element {
            tag: self.tag,
            content: self.content.unwrap_or(Content::Elements(Vec::new())),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::tags::{airsync, email2};

    #[test]
    fn tree_round_trip() {
        let mut sync = Element::new(airsync::Sync);
        sync.push(Element::with_text(airsync::SyncKey, "0"))
            .push(Element::new(airsync::GetChanges))
            .push(Element::with_text(airsync::Class, ""))
            .push(Element::with_opaque(
                email2::ConversationId,
                vec![0, 1, 255],
            ));
        let bytes = sync.encode();
        assert_eq!(Element::decode(&bytes).unwrap(), sync);
        assert_eq!(sync.child(airsync::SyncKey).unwrap().text(), Some("0"));
        assert_eq!(
            sync.child(email2::ConversationId).unwrap().opaque(),
            Some(&[0u8, 1, 255][..])
        );
    }

    #[test]
    fn mixed_content_is_rejected() {
        let doc = [0x03, 0x01, 0x6A, 0x00, 0x45, 0x03, b'a', 0, 0x13, 0x01];
        assert!(matches!(
            Element::decode(&doc),
            Err(DecodeError::MixedContent { .. })
        ));
        let doc = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0x03, b'a', 0, 0xC3, 0x00, 0x01,
        ];
        assert!(matches!(
            Element::decode(&doc),
            Err(DecodeError::MixedContent { .. })
        ));
        // Opaque, then a child whose own content is broken (an ENTITY token): the mixed
        // content comes first in the document, so it is the error reported.
        let doc = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0xC3, 0x01, 0x00, 0x45, 0x02, 0x01, 0x01,
        ];
        assert_eq!(
            Element::decode(&doc).unwrap_err(),
            DecodeError::MixedContent { tag: airsync::Sync }
        );
    }

    #[test]
    fn split_strings_join() {
        let doc = [
            0x03, 0x01, 0x6A, 0x00, 0x45, 0x03, b'a', 0, 0x03, b'b', 0, 0x01,
        ];
        assert_eq!(Element::decode(&doc).unwrap().text(), Some("ab"));
    }
}

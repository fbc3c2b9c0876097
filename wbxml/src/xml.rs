//! The readable XML form of an element tree.
//!
//! Owns the text representation used by fixtures, the `wbxml decode/encode` CLI and debugging.
//! Each code page is an XML namespace named after the page with a trailing colon (`AirSync:`,
//! `Email:`, `AirSyncBase:` …). The root element's page is the default namespace; every other page
//! used in the document is declared on the root with the page name in lower case as its prefix:
//!
//! ```xml
//! <Sync xmlns="AirSync:" xmlns:email2="Email2:">
//!   <SyncKey>1</SyncKey>
//!   <email2:ConversationId opaque="base64">AAEC</email2:ConversationId>
//! </Sync>
//! ```
//!
//! Opaque (binary) content is written as standard base64 and marked with the attribute
//! `opaque="base64"`; that is the only attribute the form uses, and it is what lets opaque data
//! round-trip through text. Reading is namespace-aware (any prefixes, or libwbxml's per-element
//! default namespaces), ignores whitespace between elements and keeps leaf text exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event as XmlEvent};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::codepage::{CodePage, Tag};
use crate::error::{DecodeError, XmlError};
use crate::reader::{Event, Limits, Reader};
use crate::tree::{Content, Element};

const OPAQUE_ATTR: &str = "opaque";

/// Renders a tree as indented, namespace-qualified XML (with a trailing newline).
pub fn to_xml(root: &Element) -> String {
    let mut f = Formatter::default();
    feed_tree(root, &mut f).expect("a tree holds one kind of content per element");
    f.finish()
}

/// Renders a WBXML document straight from its bytes, without building a tree: the same text as
/// `to_xml(&Element::decode_with(bytes, limits)?)`, in less time and memory.
pub fn wbxml_to_xml(bytes: &[u8], limits: Limits) -> Result<String, DecodeError> {
    let mut reader = Reader::with_limits(bytes, limits)?;
    let mut f = Formatter::with_capacity(bytes.len() * 2);
    while let Some(event) = reader.next()? {
        f.event(event)?;
    }
    Ok(f.finish())
}

fn feed_tree(e: &Element, f: &mut Formatter) -> Result<(), DecodeError> {
    match &e.content {
        Content::Elements(children) if children.is_empty() => f.event(Event::Empty(e.tag)),
        Content::Elements(children) => {
            f.event(Event::Start(e.tag))?;
            children.iter().try_for_each(|c| feed_tree(c, f))?;
            f.event(Event::End(e.tag))
        }
        Content::Text(s) => {
            f.event(Event::Start(e.tag))?;
            f.event(Event::Text(s))?;
            f.event(Event::End(e.tag))
        }
        Content::Opaque(b) => {
            f.event(Event::Start(e.tag))?;
            f.event(Event::Opaque(b))?;
            f.event(Event::End(e.tag))
        }
    }
}

/// What an open element turned out to hold, decided by its first content event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Holds {
    Nothing,
    Elements,
    Text,
    Opaque,
}

/// Turns decoder events into the readable form. The root's namespace declarations depend on
/// every page the document uses, so the root start tag is written last, in [`Formatter::finish`].
#[derive(Default)]
struct Formatter {
    /// Everything after the root's `<Name xmlns…` part.
    body: String,
    root: Option<Tag>,
    /// Pages in order of first use, so the declarations follow the document.
    pages: Vec<CodePage>,
    open: Vec<(Tag, Holds)>,
}

impl Formatter {
    fn with_capacity(n: usize) -> Formatter {
        Formatter {
            body: String::with_capacity(n),
            ..Formatter::default()
        }
    }

    fn event(&mut self, event: Event<'_>) -> Result<(), DecodeError> {
        match event {
            Event::Start(tag) => {
                self.open_tag(tag)?;
                self.open.push((tag, Holds::Nothing));
            }
            Event::Empty(tag) => {
                self.open_tag(tag)?;
                self.body.push_str("/>\n");
            }
            Event::Text(s) => {
                if self.content(Holds::Text)? {
                    self.body.push('>');
                }
                escape_into(s, &mut self.body);
            }
            Event::Opaque(b) => {
                self.content(Holds::Opaque)?;
                self.body.push_str(" opaque=\"base64\">");
                BASE64.encode_string(b, &mut self.body);
            }
            Event::End(_) => {
                let Some((tag, holds)) = self.open.pop() else {
                    return Ok(()); // the reader never yields an unbalanced End
                };
                match holds {
                    Holds::Nothing => self.body.push_str("/>\n"),
                    Holds::Elements => {
                        indent(self.open.len(), &mut self.body);
                        self.close(tag);
                    }
                    Holds::Text | Holds::Opaque => self.close(tag),
                }
            }
        }
        Ok(())
    }

    /// Writes `<name` (the root's is written in `finish`), after settling that the parent holds
    /// elements.
    fn open_tag(&mut self, tag: Tag) -> Result<(), DecodeError> {
        if let Some((parent, holds)) = self.open.last_mut() {
            match holds {
                Holds::Nothing => {
                    *holds = Holds::Elements;
                    self.body.push_str(">\n");
                }
                Holds::Elements => {}
                Holds::Text | Holds::Opaque => {
                    return Err(DecodeError::MixedContent { tag: *parent });
                }
            }
        }
        if !self.pages.contains(&tag.page()) {
            self.pages.push(tag.page());
        }
        match self.root {
            None => self.root = Some(tag),
            Some(_) => {
                indent(self.open.len(), &mut self.body);
                self.body.push('<');
                self.push_qualified(tag);
            }
        }
        Ok(())
    }

    /// Records that the innermost element holds `kind`; true when this is its first content.
    fn content(&mut self, kind: Holds) -> Result<bool, DecodeError> {
        let (tag, holds) = self.open.last_mut().ok_or(DecodeError::NoRootElement)?;
        if *holds == Holds::Nothing {
            *holds = kind;
            return Ok(true);
        }
        if *holds == kind && kind == Holds::Text {
            return Ok(false); // consecutive strings join
        }
        Err(DecodeError::MixedContent { tag: *tag })
    }

    fn close(&mut self, tag: Tag) {
        self.body.push_str("</");
        self.push_qualified(tag);
        self.body.push_str(">\n");
    }

    fn push_qualified(&mut self, tag: Tag) {
        let root_page = self.root.map(|r| r.page());
        if Some(tag.page()) != root_page {
            for c in tag.page().name().chars() {
                self.body.push(c.to_ascii_lowercase());
            }
            self.body.push(':');
        }
        self.body.push_str(tag.name());
    }

    fn finish(mut self) -> String {
        let Some(root) = self.root else {
            return String::new();
        };
        let mut head = String::with_capacity(256);
        head.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<");
        head.push_str(root.name());
        head.push_str(" xmlns=\"");
        head.push_str(&root.page().namespace());
        head.push('"');
        for page in self.pages.iter().filter(|&&p| p != root.page()) {
            head.push_str(&format!(
                " xmlns:{}=\"{}\"",
                page.prefix(),
                page.namespace()
            ));
        }
        // In place: a large document is not copied into a second buffer.
        self.body.insert_str(0, &head);
        self.body
    }
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Escapes what XML requires in element content. Control characters (other than tab and newline)
/// are written as character references: `\r` because parsers would fold it into `\n`, the rest
/// because a raw control character is not allowed in an XML document at all.
fn escape_into(s: &str, out: &mut String) {
    /// Bytes that need escaping: `&`, `<`, `>` and C0 controls other than tab and newline. All
    /// are ASCII, so slicing at them always falls on a character boundary.
    const SPECIAL: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = b != b'\t' as usize && b != b'\n' as usize;
            b += 1;
        }
        t[b'&' as usize] = true;
        t[b'<' as usize] = true;
        t[b'>' as usize] = true;
        t
    };
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !SPECIAL[usize::from(b)] {
            continue;
        }
        out.push_str(&s[from..i]);
        match b {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            control => {
                out.push_str("&#");
                out.push_str(&control.to_string());
                out.push(';');
            }
        }
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// Parses the readable XML form into a tree.
pub fn from_xml(xml: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Building> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let offset = reader.buffer_position();
        let (resolved, event) = reader.read_resolved_event().map_err(|e| XmlError::Syntax {
            offset,
            message: e.to_string(),
        })?;
        match event {
            XmlEvent::Start(start) => {
                let b = Building::open(&resolved, &start)?;
                if root.is_some() {
                    return Err(XmlError::BadDocument);
                }
                stack.push(b);
            }
            XmlEvent::Empty(start) => {
                let b = Building::open(&resolved, &start)?;
                let e = if b.opaque {
                    Element::with_opaque(b.tag, Vec::new())
                } else {
                    Element::new(b.tag)
                };
                attach(&mut stack, &mut root, e)?;
            }
            XmlEvent::End(_) => {
                let b = stack.pop().ok_or(XmlError::BadDocument)?;
                let e = b.finish()?;
                attach(&mut stack, &mut root, e)?;
            }
            // Text arrives in pieces around each entity or character reference; the pieces
            // are joined in the element's text. `decode` does not normalise line ends, so
            // leaf text is kept exactly.
            XmlEvent::Text(t) => {
                let text = t.decode().map_err(|e| XmlError::Syntax {
                    offset,
                    message: e.to_string(),
                })?;
                push_text(&mut stack, &text)?;
            }
            XmlEvent::GeneralRef(r) => {
                let text = reference(&r).map_err(|message| XmlError::Syntax { offset, message })?;
                push_text(&mut stack, &text)?;
            }
            XmlEvent::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                match stack.last_mut() {
                    Some(b) => b.text.push_str(&text),
                    None => return Err(XmlError::BadDocument),
                }
            }
            XmlEvent::Eof => break,
            XmlEvent::Decl(_) | XmlEvent::DocType(_) | XmlEvent::Comment(_) | XmlEvent::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::BadDocument);
    }
    root.ok_or(XmlError::BadDocument)
}

/// Text inside the innermost open element; outside the root only whitespace is allowed.
fn push_text(stack: &mut [Building], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(b) => b.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::BadDocument),
    }
    Ok(())
}

/// The text of `&name;` or `&#number;`: the five predefined entities and character references,
/// nothing else (the form declares no entities of its own).
fn reference(r: &BytesRef<'_>) -> Result<Cow<'static, str>, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(Cow::Owned(c.to_string()));
    }
    let name = r.decode().map_err(|e| e.to_string())?;
    resolve_predefined_entity(&name)
        .map(Cow::Borrowed)
        .ok_or_else(|| format!("unknown entity &{name};"))
}

fn attach(stack: &mut [Building], root: &mut Option<Element>, e: Element) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => {
            if !parent.text.trim().is_empty() {
                return Err(XmlError::MixedContent {
                    element: parent.name.clone(),
                });
            }
            parent.text.clear();
            parent.children.push(e);
        }
        None if root.is_none() => *root = Some(e),
        None => return Err(XmlError::BadDocument),
    }
    Ok(())
}

/// An element whose end tag has not been read yet.
struct Building {
    tag: Tag,
    name: String,
    opaque: bool,
    text: String,
    children: Vec<Element>,
}

impl Building {
    fn open(resolved: &ResolveResult<'_>, start: &BytesStart<'_>) -> Result<Building, XmlError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
        let namespace = match resolved {
            ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
            ResolveResult::Unbound => return Err(XmlError::NoNamespace { name }),
            ResolveResult::Unknown(prefix) => {
                return Err(XmlError::UnknownNamespace {
                    name,
                    namespace: String::from_utf8_lossy(prefix).into_owned(),
                });
            }
        };
        let page =
            CodePage::from_namespace(&namespace).ok_or_else(|| XmlError::UnknownNamespace {
                name: name.clone(),
                namespace: namespace.clone(),
            })?;
        let tag = Tag::from_name_or_alias(page, &local).ok_or_else(|| XmlError::UnknownTag {
            namespace: page.namespace(),
            name: local.clone(),
        })?;
        let mut opaque = false;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| XmlError::Syntax {
                offset: 0,
                message: e.to_string(),
            })?;
            let key = attr.key.as_ref();
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                continue;
            }
            if key == OPAQUE_ATTR.as_bytes() && attr.value.as_ref() == b"base64" {
                opaque = true;
                continue;
            }
            return Err(XmlError::UnexpectedAttribute {
                element: name,
                name: String::from_utf8_lossy(key).into_owned(),
            });
        }
        Ok(Building {
            tag,
            name,
            opaque,
            text: String::new(),
            children: Vec::new(),
        })
    }

    fn finish(self) -> Result<Element, XmlError> {
        if self.opaque {
            if !self.children.is_empty() {
                return Err(XmlError::MixedContent { element: self.name });
            }
            let cleaned: String = self.text.split_ascii_whitespace().collect();
            let bytes = BASE64
                .decode(cleaned.as_bytes())
                .map_err(|_| XmlError::BadBase64 { element: self.name })?;
            return Ok(Element::with_opaque(self.tag, bytes));
        }
        if !self.children.is_empty() {
            if !self.text.trim().is_empty() {
                return Err(XmlError::MixedContent { element: self.name });
            }
            return Ok(Element::with_children(self.tag, self.children));
        }
        Ok(Element {
            tag: self.tag,
            content: Content::Text(self.text),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn references_join_the_text_around_them_and_line_ends_are_kept() {
        let tree = from_xml(
            "<Sync xmlns=\"AirSync:\"><SyncKey>a &amp; b&#13;\r\nc&lt;&#x41;&quot;</SyncKey></Sync>",
        )
        .unwrap();
        assert_eq!(tree.children()[0].text(), Some("a & b\r\r\nc<A\""));
        assert!(matches!(
            from_xml("<Sync xmlns=\"AirSync:\"><SyncKey>&nbsp;</SyncKey></Sync>"),
            Err(XmlError::Syntax { .. })
        ));
        assert!(matches!(
            from_xml("<Sync xmlns=\"AirSync:\">&#65;</Sync>"),
            Ok(Element {
                content: Content::Text(t),
                ..
            }) if t == "A"
        ));
    }
}

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
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::codepage::{CodePage, Tag};
use crate::error::XmlError;
use crate::tree::{Content, Element};

const OPAQUE_ATTR: &str = "opaque";

/// Renders a tree as indented, namespace-qualified XML (with a trailing newline).
pub fn to_xml(root: &Element) -> String {
    let mut pages = Vec::new();
    collect_pages(root, &mut pages);
    let root_page = root.tag.page();
    let mut out = String::with_capacity(1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push('<');
    out.push_str(root.tag.name());
    out.push_str(" xmlns=\"");
    out.push_str(&root_page.namespace());
    out.push('"');
    for page in pages.into_iter().filter(|&p| p != root_page) {
        out.push_str(&format!(
            " xmlns:{}=\"{}\"",
            page.prefix(),
            page.namespace()
        ));
    }
    write_rest(root, root_page, 0, &mut out);
    out
}

/// Pages in order of first use, depth first, so declarations follow the document.
fn collect_pages(e: &Element, pages: &mut Vec<CodePage>) {
    if !pages.contains(&e.tag.page()) {
        pages.push(e.tag.page());
    }
    for c in e.children() {
        collect_pages(c, pages);
    }
}

fn push_qualified(tag: Tag, root_page: CodePage, out: &mut String) {
    if tag.page() != root_page {
        for c in tag.page().name().chars() {
            out.push(c.to_ascii_lowercase());
        }
        out.push(':');
    }
    out.push_str(tag.name());
}

fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_element(e: &Element, root_page: CodePage, depth: usize, out: &mut String) {
    indent(depth, out);
    out.push('<');
    push_qualified(e.tag, root_page, out);
    write_rest(e, root_page, depth, out);
}

/// Everything after `<name` (attributes, content, closing tag, newline).
fn write_rest(e: &Element, root_page: CodePage, depth: usize, out: &mut String) {
    match &e.content {
        Content::Elements(children) if children.is_empty() => out.push_str("/>\n"),
        Content::Elements(children) => {
            out.push_str(">\n");
            for c in children {
                write_element(c, root_page, depth + 1, out);
            }
            indent(depth, out);
            close(e.tag, root_page, out);
        }
        Content::Text(s) => {
            out.push('>');
            escape_into(s, out);
            close(e.tag, root_page, out);
        }
        Content::Opaque(b) => {
            out.push_str(" opaque=\"base64\">");
            BASE64.encode_string(b, out);
            close(e.tag, root_page, out);
        }
    }
}

fn close(tag: Tag, root_page: CodePage, out: &mut String) {
    out.push_str("</");
    push_qualified(tag, root_page, out);
    out.push_str(">\n");
}

/// Escapes what XML requires in element content. Control characters (other than tab and newline)
/// are written as character references: `\r` because parsers would fold it into `\n`, the rest
/// because a raw control character is not allowed in an XML document at all.
fn escape_into(s: &str, out: &mut String) {
    let special = |c: char| matches!(c, '&' | '<' | '>') || (c < ' ' && c != '\t' && c != '\n');
    let mut rest = s;
    while let Some(i) = rest.find(special) {
        out.push_str(&rest[..i]);
        match rest.as_bytes()[i] {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            control => out.push_str(&format!("&#{control};")),
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
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
            Event::Start(start) => {
                let b = Building::open(&resolved, &start)?;
                if root.is_some() {
                    return Err(XmlError::BadDocument);
                }
                stack.push(b);
            }
            Event::Empty(start) => {
                let b = Building::open(&resolved, &start)?;
                let e = if b.opaque {
                    Element::with_opaque(b.tag, Vec::new())
                } else {
                    Element::new(b.tag)
                };
                attach(&mut stack, &mut root, e)?;
            }
            Event::End(_) => {
                let b = stack.pop().ok_or(XmlError::BadDocument)?;
                let e = b.finish()?;
                attach(&mut stack, &mut root, e)?;
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| XmlError::Syntax {
                    offset,
                    message: e.to_string(),
                })?;
                match stack.last_mut() {
                    Some(b) => b.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(XmlError::BadDocument),
                }
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                match stack.last_mut() {
                    Some(b) => b.text.push_str(&text),
                    None => return Err(XmlError::BadDocument),
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::DocType(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::BadDocument);
    }
    root.ok_or(XmlError::BadDocument)
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

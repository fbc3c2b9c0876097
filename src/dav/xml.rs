//! The XML of WebDAV (RFC 4918), CardDAV (RFC 6352), CalDAV (RFC 4791) and sync-collection
//! (RFC 6578): request bodies built as strings, and `multistatus` answers parsed into
//! [`Multistatus`]. Pure: no I/O, so every form is unit- and property-tested on its own.
//!
//! Parsing goes through a small namespace-resolved tree ([`Node`]) with a depth and node
//! bound, so a hostile or broken server costs at most the (already bounded) body it sent.

use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

pub const DAV: &str = "DAV:";
pub const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";
pub const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
/// Where `getctag` lives (Apple's extension, which most servers implement).
pub const CALSERVER: &str = "http://calendarserver.org/ns/";

/// Nesting deeper than this is not a DAV answer (real ones are about 8 deep).
const MAX_DEPTH: usize = 64;
/// Elements per document; with the body-size bound this keeps the tree small.
const MAX_NODES: usize = 1_000_000;

/// Why an XML body could not be read as the answer expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML syntax: {0}")]
    Syntax(String),
    #[error("XML nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("XML with more than {MAX_NODES} elements")]
    TooManyNodes,
    #[error("not a DAV:multistatus document (root is {0})")]
    NotMultistatus(String),
}

/// An element with its resolved namespace, its text and its child elements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    pub ns: String,
    pub name: String,
    pub text: String,
    /// Attributes by local name (namespace declarations left out).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The element's text, trimmed.
    pub fn trimmed(&self) -> &str {
        self.text.trim()
    }

    /// The trimmed text of every `DAV:href` child (the form of `*-home-set` and
    /// `current-user-principal`).
    pub fn hrefs(&self) -> Vec<String> {
        self.children_named(DAV, "href")
            .map(|h| h.trimmed().to_owned())
            .filter(|h| !h.is_empty())
            .collect()
    }
}

/// Parses a whole document into its root [`Node`].
pub fn parse(body: &[u8]) -> Result<Node, XmlError> {
    let text = std::str::from_utf8(body).map_err(|e| XmlError::Syntax(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::Syntax(e.to_string()))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(XmlError::TooManyNodes);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let ns = match resolved {
                    ResolveResult::Bound(ns) => String::from_utf8_lossy(ns.as_ref()).into_owned(),
                    _ => String::new(),
                };
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(|e| XmlError::Syntax(e.to_string()))?;
                    let key = a.key.as_ref();
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        continue;
                    }
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| XmlError::Syntax(e.to_string()))?;
                    attrs.push((
                        String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                let node = Node {
                    ns,
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    attrs,
                    ..Node::default()
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(node);
                } else {
                    attach(&mut stack, &mut root, node)?;
                }
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| XmlError::Syntax("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, node)?;
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let s = if let Some(c) = r
                    .resolve_char_ref()
                    .map_err(|e| XmlError::Syntax(e.to_string()))?
                {
                    c.to_string()
                } else {
                    let name = r.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                    resolve_predefined_entity(&name)
                        .ok_or_else(|| XmlError::Syntax(format!("unknown entity &{name};")))?
                        .to_owned()
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::DocType(_) | Event::Comment(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Syntax("unclosed element".into()));
    }
    root.ok_or_else(|| XmlError::Syntax("empty document".into()))
}

fn attach(stack: &mut [Node], root: &mut Option<Node>, node: Node) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None if root.is_none() => *root = Some(node),
        None => return Err(XmlError::Syntax("more than one root element".into())),
    }
    Ok(())
}

/// One `DAV:response` of a multistatus.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The `DAV:href`, as sent (percent-encoded path or absolute URL).
    pub href: String,
    /// The response-level `DAV:status` (sync-collection reports removed members as 404 here).
    pub status: Option<u16>,
    /// The properties found (status 2xx), in document order.
    pub found: Vec<Node>,
    /// The names (namespace, local name) of properties the server reported with another status.
    pub missing: Vec<(String, String)>,
}

impl Response {
    pub fn prop(&self, ns: &str, name: &str) -> Option<&Node> {
        self.found.iter().find(|p| p.is(ns, name))
    }

    /// A found property's trimmed text; `None` when absent or empty.
    pub fn text(&self, ns: &str, name: &str) -> Option<String> {
        self.prop(ns, name)
            .map(|p| p.trimmed().to_owned())
            .filter(|t| !t.is_empty())
    }

    /// The ETag, as the server wrote it (quotes and all: it goes back into If-Match as is).
    pub fn etag(&self) -> Option<String> {
        self.text(DAV, "getetag")
    }

    /// Whether `resourcetype` holds `ns:name` (e.g. CardDAV `addressbook`).
    pub fn has_type(&self, ns: &str, name: &str) -> bool {
        self.prop(DAV, "resourcetype")
            .is_some_and(|t| t.child(ns, name).is_some())
    }
}

/// A parsed `DAV:multistatus`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Multistatus {
    pub responses: Vec<Response>,
    /// The `DAV:sync-token` of a sync-collection answer.
    pub sync_token: Option<String>,
}

/// The number in a status line (`HTTP/1.1 404 Not Found` → 404).
pub fn status_code(line: &str) -> Option<u16> {
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads a multistatus body.
pub fn parse_multistatus(body: &[u8]) -> Result<Multistatus, XmlError> {
    let root = parse(body)?;
    if !root.is(DAV, "multistatus") {
        return Err(XmlError::NotMultistatus(format!(
            "{{{}}}{}",
            root.ns, root.name
        )));
    }
    let mut out = Multistatus {
        sync_token: root
            .child(DAV, "sync-token")
            .map(|t| t.trimmed().to_owned())
            .filter(|t| !t.is_empty()),
        ..Multistatus::default()
    };
    for r in root.children_named(DAV, "response") {
        let Some(href) = r.child(DAV, "href").map(|h| h.trimmed().to_owned()) else {
            continue;
        };
        let mut response = Response {
            href,
            status: r.child(DAV, "status").and_then(|s| status_code(&s.text)),
            ..Response::default()
        };
        for ps in r.children_named(DAV, "propstat") {
            let status = ps
                .child(DAV, "status")
                .and_then(|s| status_code(&s.text))
                .unwrap_or(200);
            let Some(prop) = ps.child(DAV, "prop") else {
                continue;
            };
            for p in &prop.children {
                if (200..300).contains(&status) {
                    response.found.push(p.clone());
                } else {
                    response.missing.push((p.ns.clone(), p.name.clone()));
                }
            }
        }
        out.responses.push(response);
    }
    Ok(out)
}

/// A property name for a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prop {
    pub ns: &'static str,
    pub name: &'static str,
}

pub const fn prop(ns: &'static str, name: &'static str) -> Prop {
    Prop { ns, name }
}

pub const CURRENT_USER_PRINCIPAL: Prop = prop(DAV, "current-user-principal");
pub const ADDRESSBOOK_HOME_SET: Prop = prop(CARDDAV, "addressbook-home-set");
pub const CALENDAR_HOME_SET: Prop = prop(CALDAV, "calendar-home-set");
pub const RESOURCETYPE: Prop = prop(DAV, "resourcetype");
pub const DISPLAYNAME: Prop = prop(DAV, "displayname");
pub const GETETAG: Prop = prop(DAV, "getetag");
pub const GETCTAG: Prop = prop(CALSERVER, "getctag");
pub const SYNC_TOKEN: Prop = prop(DAV, "sync-token");
pub const SUPPORTED_CALENDAR_COMPONENT_SET: Prop = prop(CALDAV, "supported-calendar-component-set");
pub const ADDRESS_DATA: Prop = prop(CARDDAV, "address-data");
pub const CALENDAR_DATA: Prop = prop(CALDAV, "calendar-data");

/// The prefix each namespace gets in the bodies we write.
fn prefix(ns: &str) -> &'static str {
    match ns {
        DAV => "d",
        CARDDAV => "card",
        CALDAV => "cal",
        _ => "cs",
    }
}

const XMLNS: &str = r#"xmlns:d="DAV:" xmlns:card="urn:ietf:params:xml:ns:carddav" xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/""#;

fn props(out: &mut String, props: &[Prop]) {
    out.push_str("<d:prop>");
    for p in props {
        out.push('<');
        out.push_str(prefix(p.ns));
        out.push(':');
        out.push_str(p.name);
        out.push_str("/>");
    }
    out.push_str("</d:prop>");
}

/// `PROPFIND` asking for `props`.
pub fn propfind(wanted: &[Prop]) -> String {
    let mut out = format!(r#"<?xml version="1.0" encoding="utf-8"?><d:propfind {XMLNS}>"#);
    props(&mut out, wanted);
    out.push_str("</d:propfind>");
    out
}

/// The `sync-collection` REPORT (RFC 6578); an empty token asks for the initial listing.
pub fn sync_collection(token: Option<&str>, wanted: &[Prop]) -> String {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection {XMLNS}><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level>"#,
        escape(token.unwrap_or(""))
    );
    props(&mut out, wanted);
    out.push_str("</d:sync-collection>");
    out
}

/// Which kind of objects a collection holds (decides the multiget and MKCOL forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    AddressBook,
    Calendar,
}

/// `addressbook-multiget` / `calendar-multiget` of `hrefs` with their data and ETags.
pub fn multiget(kind: Kind, hrefs: &[String]) -> String {
    let (root, data) = match kind {
        Kind::AddressBook => ("card:addressbook-multiget", ADDRESS_DATA),
        Kind::Calendar => ("cal:calendar-multiget", CALENDAR_DATA),
    };
    let mut out = format!(r#"<?xml version="1.0" encoding="utf-8"?><{root} {XMLNS}>"#);
    props(&mut out, &[GETETAG, data]);
    for h in hrefs {
        out.push_str("<d:href>");
        out.push_str(&escape(h.as_str()));
        out.push_str("</d:href>");
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

/// `calendar-query` (RFC 4791 7.8) of the objects holding a `component` (`VEVENT`, `VTODO`)
/// with their ETags, and their data when `with_data`: the listing of one component of a
/// collection that may hold both.
pub fn calendar_query(component: &str, with_data: bool) -> String {
    let mut out = format!(r#"<?xml version="1.0" encoding="utf-8"?><cal:calendar-query {XMLNS}>"#);
    if with_data {
        props(&mut out, &[GETETAG, CALENDAR_DATA]);
    } else {
        props(&mut out, &[GETETAG]);
    }
    out.push_str(&format!(
        r#"<cal:filter><cal:comp-filter name="VCALENDAR"><cal:comp-filter name="{}"/></cal:comp-filter></cal:filter></cal:calendar-query>"#,
        escape(component)
    ));
    out
}

/// A `calendar-query` for the VEVENT objects whose UID is exactly `uid`, with their data
/// (RFC 4791 §7.8.6's text-match, `i;octet` so the match is exact).
pub fn calendar_query_uid(uid: &str) -> String {
    let mut out = format!(r#"<?xml version="1.0" encoding="utf-8"?><cal:calendar-query {XMLNS}>"#);
    props(&mut out, &[GETETAG, CALENDAR_DATA]);
    out.push_str(&format!(
        r#"<cal:filter><cal:comp-filter name="VCALENDAR"><cal:comp-filter name="VEVENT"><cal:prop-filter name="UID"><cal:text-match collation="i;octet">{}</cal:text-match></cal:prop-filter></cal:comp-filter></cal:comp-filter></cal:filter></cal:calendar-query>"#,
        escape(uid)
    ));
    out
}

/// A `calendar-query` for the VEVENT objects with an occurrence in `[start, end)` (UTC, basic
/// form `20300101T000000Z`), with their data.
pub fn calendar_query_range(start: &str, end: &str) -> String {
    let mut out = format!(r#"<?xml version="1.0" encoding="utf-8"?><cal:calendar-query {XMLNS}>"#);
    props(&mut out, &[GETETAG, CALENDAR_DATA]);
    out.push_str(&format!(
        r#"<cal:filter><cal:comp-filter name="VCALENDAR"><cal:comp-filter name="VEVENT"><cal:time-range start="{}" end="{}"/></cal:comp-filter></cal:comp-filter></cal:filter></cal:calendar-query>"#,
        escape(start),
        escape(end)
    ));
    out
}

/// A `free-busy-query` (RFC 4791 §7.10) for `[start, end)`.
pub fn free_busy_query(start: &str, end: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><cal:free-busy-query {XMLNS}><cal:time-range start="{}" end="{}"/></cal:free-busy-query>"#,
        escape(start),
        escape(end)
    )
}

/// Extended `MKCOL` (RFC 5689) of an address book, or the body of `MKCALENDAR` (RFC 4791)
/// restricted to `components` (e.g. `VEVENT`, `VTODO`; empty: the server's default).
pub fn make_collection(kind: Kind, display_name: &str, components: &[&str]) -> String {
    let name = escape(display_name);
    match kind {
        Kind::AddressBook => format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:mkcol {XMLNS}><d:set><d:prop><d:resourcetype><d:collection/><card:addressbook/></d:resourcetype><d:displayname>{name}</d:displayname></d:prop></d:set></d:mkcol>"#
        ),
        Kind::Calendar => {
            let mut set = String::new();
            if !components.is_empty() {
                set.push_str("<cal:supported-calendar-component-set>");
                for c in components {
                    set.push_str(&format!(r#"<cal:comp name="{}"/>"#, escape(*c)));
                }
                set.push_str("</cal:supported-calendar-component-set>");
            }
            format!(
                r#"<?xml version="1.0" encoding="utf-8"?><cal:mkcalendar {XMLNS}><d:set><d:prop><d:displayname>{name}</d:displayname>{set}</d:prop></d:set></cal:mkcalendar>"#
            )
        }
    }
}

/// `PROPPATCH` setting `displayname`.
pub fn proppatch_displayname(display_name: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:propertyupdate {XMLNS}><d:set><d:prop><d:displayname>{}</d:displayname></d:prop></d:set></d:propertyupdate>"#,
        escape(display_name)
    )
}

/// The component names of a `supported-calendar-component-set` property.
pub fn components(set: &Node) -> Vec<String> {
    set.children_named(CALDAV, "comp")
        .filter_map(|c| c.attr("name").map(str::to_owned))
        .collect()
}

/// Whether a multistatus error body (or a `DAV:error` body) names precondition `name`.
pub fn names_precondition(body: &[u8], name: &str) -> bool {
    match parse(body) {
        Ok(root) => contains(&root, name),
        Err(_) => false,
    }
}

fn contains(node: &Node, name: &str) -> bool {
    node.name == name || node.children.iter().any(|c| contains(c, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RADICALE_LIKE: &str = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav" xmlns:CS="http://calendarserver.org/ns/">
  <response><href>/alice/</href>
    <propstat><prop><resourcetype><collection/><principal/></resourcetype></prop><status>HTTP/1.1 200 OK</status></propstat>
  </response>
  <response><href>/alice/book%201/</href>
    <propstat><prop><resourcetype><collection/><C:addressbook/></resourcetype><displayname>Book &amp; co</displayname><CS:getctag>"abc"</CS:getctag></prop><status>HTTP/1.1 200 OK</status></propstat>
    <propstat><prop><sync-token/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
  </response>
  <sync-token>http://radicale.org/ns/sync/123</sync-token>
</multistatus>"#;

    #[test]
    fn calendar_queries_filter_one_component() {
        let q = calendar_query("VTODO", false);
        assert!(q.contains(r#"<cal:comp-filter name="VCALENDAR"><cal:comp-filter name="VTODO"/>"#));
        assert!(!q.contains("calendar-data"));
        assert!(parse(q.as_bytes()).is_ok());
        assert!(calendar_query("VEVENT", true).contains("<cal:calendar-data/>"));
    }

    #[test]
    fn parses_a_multistatus() {
        let ms = parse_multistatus(RADICALE_LIKE.as_bytes()).unwrap();
        assert_eq!(ms.responses.len(), 2);
        assert_eq!(
            ms.sync_token.as_deref(),
            Some("http://radicale.org/ns/sync/123")
        );
        let book = &ms.responses[1];
        assert_eq!(book.href, "/alice/book%201/");
        assert!(book.has_type(CARDDAV, "addressbook"));
        assert!(!ms.responses[0].has_type(CARDDAV, "addressbook"));
        assert_eq!(book.text(DAV, "displayname").as_deref(), Some("Book & co"));
        assert_eq!(book.text(CALSERVER, "getctag").as_deref(), Some("\"abc\""));
        assert_eq!(
            book.missing,
            vec![(DAV.to_owned(), "sync-token".to_owned())]
        );
    }

    #[test]
    fn removed_members_carry_a_response_status() {
        let body = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a/x.vcf</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response><d:sync-token>t2</d:sync-token></d:multistatus>"#;
        let ms = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(ms.responses[0].status, Some(404));
        assert_eq!(ms.sync_token.as_deref(), Some("t2"));
    }

    #[test]
    fn refuses_what_is_not_a_multistatus() {
        assert!(matches!(
            parse_multistatus(b"<html><body>login</body></html>"),
            Err(XmlError::NotMultistatus(_))
        ));
        assert!(matches!(
            parse_multistatus(b"<d:multistatus xmlns:d=\"DAV:\">"),
            Err(XmlError::Syntax(_))
        ));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooDeep));
    }

    #[test]
    fn request_bodies_parse_back() {
        let body = sync_collection(Some("tok<&>"), &[GETETAG]);
        let root = parse(body.as_bytes()).unwrap();
        assert!(root.is(DAV, "sync-collection"));
        assert_eq!(root.child(DAV, "sync-token").unwrap().text, "tok<&>");
        let mg = multiget(Kind::AddressBook, &["/a/b&c.vcf".to_owned()]);
        let root = parse(mg.as_bytes()).unwrap();
        assert!(root.is(CARDDAV, "addressbook-multiget"));
        assert_eq!(root.hrefs(), vec!["/a/b&c.vcf".to_owned()]);
        let mk = make_collection(Kind::Calendar, "Work <1>", &["VEVENT"]);
        let root = parse(mk.as_bytes()).unwrap();
        assert!(root.is(CALDAV, "mkcalendar"));
        let set = &root.children[0].children[0];
        assert_eq!(set.child(DAV, "displayname").unwrap().text, "Work <1>");
        let comps = set
            .child(CALDAV, "supported-calendar-component-set")
            .unwrap();
        assert_eq!(components(comps), vec!["VEVENT".to_owned()]);
        let pf = propfind(&[CURRENT_USER_PRINCIPAL, ADDRESSBOOK_HOME_SET]);
        let root = parse(pf.as_bytes()).unwrap();
        let p = root.child(DAV, "prop").unwrap();
        assert!(p.child(DAV, "current-user-principal").is_some());
        assert!(p.child(CARDDAV, "addressbook-home-set").is_some());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            // Whatever a server sends, the parser answers (Ok or Err) without panicking.
            #[test]
            fn never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_multistatus(&body);
            }

            // Mutations of a real answer: cut, spliced and with bytes replaced.
            #[test]
            fn never_panics_on_mutated_answers(cut in 0usize..1200, at in 0usize..1200, byte in any::<u8>()) {
                let mut body = RADICALE_LIKE.as_bytes().to_vec();
                let at = at.min(body.len().saturating_sub(1));
                body[at] = byte;
                body.truncate(cut.min(body.len()));
                let _ = parse_multistatus(&body);
            }

            // Hrefs and tokens survive the round trip through our bodies and the parser.
            #[test]
            fn texts_round_trip(href in "[ -~]{0,40}", token in "\\PC{0,40}") {
                let body = multiget(Kind::Calendar, std::slice::from_ref(&href));
                let root = parse(body.as_bytes()).unwrap();
                prop_assert_eq!(root.child(DAV, "href").unwrap().text.clone(), href);
                let body = sync_collection(Some(&token), &[GETETAG]);
                let root = parse(body.as_bytes()).unwrap();
                prop_assert_eq!(root.child(DAV, "sync-token").unwrap().text.clone(), token);
            }
        }

        const RADICALE_LIKE: &str = super::RADICALE_LIKE;
    }
}

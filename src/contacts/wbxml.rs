//! [`Contact`] ↔ the `ApplicationData` of a contact on the wire.

use std::borrow::Cow;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use eas_wbxml::tags::{airsyncbase as asb, contacts as c};
use eas_wbxml::{Content, Element, EncodeError, Fragment, Writer};

use super::card::{day_of_eas_date, eas_date};
use super::{Contact, ContactError, Field, MAX_PHONE_PICTURE_BASE64};
use crate::mime::body::truncate;
use crate::mime::{BodyOutput, BodyPreference, BodyType, write_body};

/// What rendering a contact needs from the request and the configuration.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// The collection's `BodyPreference`s (none: whole plain text).
    pub body_preferences: Vec<BodyPreference>,
    /// Photos larger than this are left out (never cut: a cut image is a broken one).
    pub picture_max_bytes: usize,
}

/// The preference the notes are rendered by: plain text if the phone takes it, else HTML,
/// else plain text without a limit (contacts have neither RTF nor MIME).
fn preference(prefs: &[BodyPreference]) -> BodyPreference {
    for kind in [BodyType::Plain, BodyType::Html] {
        if let Some(p) = prefs.iter().find(|p| p.kind == kind) {
            return *p;
        }
    }
    BodyPreference::new(BodyType::Plain)
}

fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 32);
    out.push_str("<html><body>");
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push_str("</body></html>");
    out
}

/// Writes the contact's properties (the children of `ApplicationData`).
pub fn write_application_data<W: Write>(
    w: &mut Writer<W>,
    contact: &Contact,
    opts: &RenderOptions,
) -> Result<(), EncodeError> {
    for f in Field::ALL {
        if let Some(v) = contact.get(f) {
            w.text_element(f.tag(), v)?;
        }
    }
    if !contact.categories.is_empty() {
        w.start(c::Categories)?;
        for cat in &contact.categories {
            w.text_element(c::Category, cat)?;
        }
        w.end()?;
    }
    if !contact.children.is_empty() {
        w.start(c::Children)?;
        for child in &contact.children {
            w.text_element(c::Child, child)?;
        }
        w.end()?;
    }
    if let Some(notes) = &contact.body {
        let pref = preference(&opts.body_preferences);
        let full: Cow<'_, str> = match pref.kind {
            BodyType::Html => Cow::Owned(html(notes)),
            _ => Cow::Borrowed(notes.as_str()),
        };
        let estimated_size = full.len() as u64;
        let (truncated, data) = truncate(full, &pref);
        write_body(
            w,
            &BodyOutput {
                kind: pref.kind,
                estimated_size,
                truncated,
                data,
                preview: None,
            },
        )?;
    }
    if let Some(p) = &contact.picture
        && p.len() <= opts.picture_max_bytes
    {
        w.text_element(c::Picture, &B64.encode(p))?;
    }
    Ok(())
}

/// The contact as an encoded fragment, ready to splice into a Sync response.
pub fn render(contact: &Contact, opts: &RenderOptions) -> Result<Fragment, EncodeError> {
    let mut w = Writer::fragment();
    write_application_data(&mut w, contact, opts)?;
    w.into_fragment()
}

fn text(e: &Element) -> &str {
    match &e.content {
        Content::Text(t) => t,
        _ => "",
    }
}

/// Reads a phone's `ApplicationData` (an Add or Change). Unknown elements are ignored; a
/// malformed date or picture is an error for this item only.
pub fn parse_application_data(data: &Element) -> Result<Contact, ContactError> {
    let mut out = Contact::default();
    for e in data.children() {
        if let Some(f) = Field::from_tag(e.tag) {
            let v = text(e).trim();
            let v = match f {
                Field::Birthday | Field::Anniversary if !v.is_empty() => {
                    let day =
                        day_of_eas_date(v).ok_or(ContactError::BadValue { field: f.name() })?;
                    eas_date(day)
                }
                Field::Email1 | Field::Email2 | Field::Email3 => bare_address(v).to_owned(),
                _ => v.to_owned(),
            };
            out.set(f, v);
        } else if e.tag == c::Categories {
            out.categories = e
                .children_with(c::Category)
                .map(|c| text(c).trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
        } else if e.tag == c::Children {
            out.children = e
                .children_with(c::Child)
                .map(|c| text(c).trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect();
        } else if e.tag == asb::Body {
            let data = e.child(asb::Data).map(text).unwrap_or("");
            let kind = e.child(asb::Type).map(text).unwrap_or("1");
            let body = if kind.trim() == "2" {
                crate::mime::html::html_to_text(data)
            } else {
                data.replace("\r\n", "\n")
            };
            out.body = Some(body).filter(|b| !b.trim().is_empty());
        } else if e.tag == c::Body {
            // EAS 2.5's plain notes, still sent by a few clients.
            let body = text(e).replace("\r\n", "\n");
            out.body = Some(body).filter(|b| !b.trim().is_empty());
        } else if e.tag == c::Picture {
            let b64: String = text(e).chars().filter(|c| !c.is_whitespace()).collect();
            if b64.len() > MAX_PHONE_PICTURE_BASE64 {
                return Err(ContactError::PictureTooLarge);
            }
            if !b64.is_empty() {
                let bytes = B64
                    .decode(b64.as_bytes())
                    .map_err(|_| ContactError::BadValue { field: "Picture" })?;
                out.picture = Some(bytes);
            }
        }
    }
    Ok(out)
}

/// `"Name" <a@b>` → `a@b`; a bare address as it is.
fn bare_address(v: &str) -> &str {
    match (v.rfind('<'), v.rfind('>')) {
        (Some(start), Some(end)) if start < end => v[start + 1..end].trim(),
        _ => v,
    }
}

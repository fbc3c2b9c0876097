//! Header fields of the messages the gateway writes (drafts, sent replies and forwards),
//! built with `email-encoding` (lettre's header encoder): text outside ASCII as RFC 2047
//! encoded words of at most 75 characters, never splitting a character; lines folded at
//! spaces to stay within 76 characters where the text allows (RFC 5322 section 2.1.1); display
//! names quoted or encoded as a phrase must be, the addresses left readable.
//!
//! Values often come from a phone: control characters in them (line breaks above all) are
//! made spaces first, so no value can start a header field of its own.

use std::borrow::Cow;
use std::fmt::Write as _;

use email_encoding::headers::writer::EmailWriter;
use email_encoding::headers::{quoted_string, rfc2047};

/// Control characters (line breaks above all) as spaces.
fn one_line(value: &str) -> Cow<'_, str> {
    if value.chars().any(char::is_control) {
        Cow::Owned(
            value
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(value)
    }
}

/// `Name: ` + what `body` writes + CRLF.
fn field(name: &str, body: impl FnOnce(&mut EmailWriter<'_>) -> std::fmt::Result) -> String {
    let mut out = String::with_capacity(name.len() + 64);
    out.push_str(name);
    out.push_str(": ");
    {
        let mut w = EmailWriter::new(&mut out, name.len() + 2, 0, false);
        // Writing into a String cannot fail.
        let _ = body(&mut w);
    }
    out.push_str("\r\n");
    out
}

/// Plain words, folded at spaces; or, with anything outside printable ASCII, encoded words.
fn write_text(w: &mut EmailWriter<'_>, value: &str) -> std::fmt::Result {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        w.folding().write_str(value)
    } else {
        rfc2047::encode(value, w)
    }
}

/// An unstructured field (Subject, Importance, …), CRLF included.
pub fn text(name: &str, value: &str) -> String {
    let value = one_line(value);
    field(name, |w| write_text(w, value.trim()))
}

/// A field of message ids (Message-ID, In-Reply-To, References), each given without its
/// angle brackets; folded between ids.
pub fn message_ids<'a>(name: &str, ids: impl IntoIterator<Item = &'a str>) -> String {
    field(name, |w| {
        let mut f = w.folding();
        for (i, id) in ids.into_iter().enumerate() {
            let id: String = one_line(id).split_whitespace().collect();
            if i > 0 {
                f.write_char(' ')?;
            }
            // In one piece: the writer folds only before a piece.
            f.write_str(&format!("<{id}>"))?;
        }
        Ok(())
    })
}

fn write_mailbox(
    w: &mut EmailWriter<'_>,
    display: Option<&str>,
    address: &str,
) -> std::fmt::Result {
    let address: String = one_line(address).split_whitespace().collect();
    match display
        .map(one_line)
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
    {
        Some(name) => {
            quoted_string::encode(&name, w)?;
            let mut f = w.folding();
            f.write_char(' ')?;
            f.write_str(&format!("<{address}>"))
        }
        None => w.folding().write_str(&address),
    }
}

/// One mailbox: `name <address>` or the bare address.
pub fn mailbox(name: &str, display: Option<&str>, address: &str) -> String {
    field(name, |w| write_mailbox(w, display, address))
}

/// An address list as a phone writes it (`"Bob" <bob@example.org>, carol@example.com`),
/// read with mail-parser and written again. A value that holds no address is written as
/// unstructured text, so nothing the phone typed is lost.
pub fn address_list(name: &str, value: &str) -> String {
    let value = one_line(value);
    let probe = format!("To: {value}\r\n\r\n");
    let parsed = mail_parser::MessageParser::default().parse_headers(probe.as_bytes());
    let addresses: Vec<(Option<&str>, &str)> = parsed
        .as_ref()
        .and_then(|m| m.to())
        .map(|list| {
            list.iter()
                .filter_map(|a| Some((a.name(), a.address()?.trim())))
                .filter(|(_, address)| !address.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if addresses.is_empty() {
        return text(name, &value);
    }
    field(name, |w| {
        for (i, (display, address)) in addresses.iter().enumerate() {
            if i > 0 {
                w.write_char(',')?;
                w.space();
            }
            write_mailbox(w, *display, address)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod test {
    use super::*;

    fn lines(field: &str) -> Vec<&str> {
        field.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    #[test]
    fn long_text_outside_ascii_is_encoded_and_folded() {
        let subject = "Grüße aus Köln – ".repeat(12);
        let f = text("Subject", &subject);
        assert!(f.ends_with("\r\n"));
        for line in lines(&f) {
            assert!(line.len() <= 78, "{line:?} in {f:?}");
            for word in line.split_whitespace().filter(|w| w.starts_with("=?")) {
                assert!(word.len() <= 75, "encoded word {word:?} over 75");
            }
        }
        let block = format!("{f}\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse_headers(block.as_bytes())
            .unwrap();
        assert_eq!(parsed.subject(), Some(subject.trim_end()));
    }

    #[test]
    fn a_line_break_cannot_start_a_new_field() {
        let f = text("Subject", "hi\r\nBcc: victim@example.org");
        assert_eq!(lines(&f).len(), 1, "{f:?}");
        let f = address_list("To", "bob@example.org\r\nBcc: victim@example.org");
        assert!(!f.contains("\r\nBcc"), "{f:?}");
    }

    #[test]
    fn address_lists_keep_names_and_addresses() {
        let f = address_list(
            "To",
            "\"Jürgen Müller\" <jm@example.org>, carol@example.com, \"Bob\" <bob@example.org>",
        );
        let block = format!("{f}\r\n");
        let parsed = mail_parser::MessageParser::default()
            .parse_headers(block.as_bytes())
            .unwrap();
        let to: Vec<(Option<&str>, Option<&str>)> = parsed
            .to()
            .unwrap()
            .iter()
            .map(|a| (a.name(), a.address()))
            .collect();
        assert_eq!(
            to,
            [
                (Some("Jürgen Müller"), Some("jm@example.org")),
                (None, Some("carol@example.com")),
                (Some("Bob"), Some("bob@example.org")),
            ]
        );
        assert!(f.is_ascii());
        assert_eq!(
            address_list("To", "not an address"),
            "To: not an address\r\n"
        );
    }

    #[test]
    fn many_references_are_folded() {
        let ids: Vec<String> = (0..20).map(|i| format!("{i}.abcdef@example.org")).collect();
        let f = message_ids("References", ids.iter().map(String::as_str));
        assert!(lines(&f).len() > 1);
        assert!(lines(&f).iter().all(|l| l.len() <= 78), "{f}");
        assert!(f.starts_with("References: <0.abcdef@example.org> <1.abcdef@example.org>"));
    }
}

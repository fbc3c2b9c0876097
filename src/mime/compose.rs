//! Outgoing mail: the message a phone hands to SendMail, SmartReply or SmartForward, made
//! ready for submission.
//!
//! Pure like the rest of `mime`: bytes in, bytes out; the clock and the host name for a
//! Message-ID are passed in. [`prepare`] does, in order:
//!
//! 1. **Sender.** The From address must be the authenticated user's (MS-ASCMD: the server
//!    sets From to the user's primary address). A From naming anyone else is rewritten to
//!    the user's address, keeping the display name; a `Sender` naming someone else is
//!    dropped. The SMTP envelope sender is the user's address either way.
//! 2. **Recipients.** To, Cc and Bcc give the envelope recipients; none is an error.
//! 3. **Smart replies and forwards.** Unless the phone sent the complete message
//!    (`ReplaceMime`), the original is added as Exchange does: a reply quotes the original
//!    text below the phone's (`> ` lines, and a `<blockquote>` in HTML), a forward adds the
//!    original's header summary and text and carries its attachments over unchanged. The
//!    phone's own attachments stay.
//! 4. **Headers a message needs.** Date and Message-ID when missing; In-Reply-To and
//!    References for a reply that lacks them.
//! 5. **Bcc.** Removed from the copy that is transmitted, kept in the copy filed in Sent.

use std::fmt::Write as _;

use super::date::rfc5322_date;
use super::header;
use base64::Engine as _;
use mail_parser::{Message, MessageParser, PartType};
use sha2::{Digest, Sha256};

/// What the phone asked the server to add.
#[derive(Debug, Clone, Copy)]
pub enum Smart<'a> {
    /// SendMail, or a Smart command with ReplaceMime: the message is complete.
    None,
    /// SmartReply: quote this original.
    Reply(&'a [u8]),
    /// SmartForward: include this original and its attachments.
    Forward(&'a [u8]),
}

/// Who sends, and what a new message needs.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The authenticated user's address: envelope sender and From.
    pub address: &'a str,
    pub now_unix: i64,
    /// The right-hand side of Message-IDs the gateway makes up.
    pub message_id_host: &'a str,
}

/// A message ready for submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The bytes handed to SMTP: CRLF line ends, no Bcc header.
    pub transmit: Vec<u8>,
    /// The copy for the Sent folder: the same message with its Bcc header.
    pub sent_copy: Vec<u8>,
    /// Envelope recipients (To, Cc, Bcc), each once.
    pub recipients: Vec<String>,
    /// Whether From named someone else and was rewritten.
    pub from_rewritten: bool,
}

/// Why a message cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// The bytes are not an RFC 5322 message (no header block).
    #[error("not a MIME message")]
    InvalidMime,
    /// No To, Cc or Bcc address.
    #[error("the message has no recipients")]
    NoRecipients,
}

/// One header field: its name and the whole field as written (folded lines included).
struct Field {
    name: String,
    raw: Vec<u8>,
}

impl Field {
    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    fn new(name: &str, value: &str) -> Field {
        Field {
            name: name.to_owned(),
            raw: format!("{name}: {value}\r\n").into_bytes(),
        }
    }

    /// A field written by [`super::header`] (folded, encoded, CRLF included).
    fn written(name: &str, field: String) -> Field {
        Field {
            name: name.to_owned(),
            raw: field.into_bytes(),
        }
    }
}

/// Makes the phone's message ready to submit; see the module documentation.
pub fn prepare(
    mime: &[u8],
    sender: &Sender<'_>,
    smart: Smart<'_>,
) -> Result<Prepared, ComposeError> {
    let mime = crlf(mime);
    let (header_block, body) = split(&mime).ok_or(ComposeError::InvalidMime)?;
    let mut fields = parse_fields(header_block).ok_or(ComposeError::InvalidMime)?;
    let parsed = MessageParser::default()
        .parse(&mime[..])
        .ok_or(ComposeError::InvalidMime)?;

    let recipients = recipients(&parsed);
    if recipients.is_empty() {
        return Err(ComposeError::NoRecipients);
    }

    let from_rewritten = fix_sender(&mut fields, &parsed, sender.address);
    if !fields.iter().any(|f| f.is("Date")) {
        fields.push(Field::new("Date", &rfc5322_date(sender.now_unix)));
    }
    if !fields.iter().any(|f| f.is("Message-ID")) {
        let id = format!(
            "{}.{}@{}",
            sender.now_unix,
            hex(&Sha256::digest(&mime)[..8]),
            sender.message_id_host
        );
        fields.push(Field::written(
            "Message-ID",
            header::message_ids("Message-ID", [id.as_str()]),
        ));
    }

    let body = match smart {
        Smart::None => body.to_vec(),
        Smart::Reply(original) | Smart::Forward(original) => {
            let forward = matches!(smart, Smart::Forward(_));
            let original_crlf = crlf(original);
            let Some(orig) = MessageParser::default().parse(&original_crlf[..]) else {
                // An original we cannot read is left out rather than failing the send.
                return Ok(finish(fields, body.to_vec(), recipients, from_rewritten));
            };
            if !forward {
                add_threading(&mut fields, &orig);
            }
            let (content_fields, new_body) =
                combine(&parsed, &orig, forward, &mime, &original_crlf);
            fields.retain(|f| {
                !f.is("Content-Type")
                    && !f.is("Content-Transfer-Encoding")
                    && !f.is("Content-Disposition")
            });
            if !fields.iter().any(|f| f.is("MIME-Version")) {
                fields.push(Field::new("MIME-Version", "1.0"));
            }
            fields.extend(content_fields);
            new_body
        }
    };
    Ok(finish(fields, body, recipients, from_rewritten))
}

fn finish(
    fields: Vec<Field>,
    body: Vec<u8>,
    recipients: Vec<String>,
    from_rewritten: bool,
) -> Prepared {
    let assemble = |keep_bcc: bool| {
        let mut out = Vec::with_capacity(body.len() + 1024);
        for f in fields.iter().filter(|f| keep_bcc || !f.is("Bcc")) {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    };
    Prepared {
        transmit: assemble(false),
        sent_copy: assemble(true),
        recipients,
        from_rewritten,
    }
}

/// Bare LF line ends become CRLF (SMTP wants CRLF; some phones send LF).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Header block (ending with its last CRLF) and body.
fn split(mime: &[u8]) -> Option<(&[u8], &[u8])> {
    match mime.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Some((&mime[..i + 2], &mime[i + 4..])),
        // Headers only, no body.
        None if mime.ends_with(b"\r\n") => Some((mime, &[][..])),
        None => None,
    }
}

fn parse_fields(block: &[u8]) -> Option<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::new();
    for line in block.split_inclusive(|&b| b == b'\n') {
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            // A folded continuation of the previous field.
            fields.last_mut()?.raw.extend_from_slice(line);
            continue;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = std::str::from_utf8(&line[..colon]).ok()?.trim();
        if name.is_empty() || name.contains(' ') {
            return None;
        }
        fields.push(Field {
            name: name.to_owned(),
            raw: line.to_vec(),
        });
    }
    (!fields.is_empty()).then_some(fields)
}

fn recipients(m: &Message<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in [m.to(), m.cc(), m.bcc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(addr) = a.address().map(str::trim).filter(|a| a.contains('@')) {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(addr)) {
                    out.push(addr.to_owned());
                }
            }
        }
    }
    out
}

/// Makes From the user's address (keeping the display name) and drops a foreign Sender.
/// Returns whether From was rewritten.
fn fix_sender(fields: &mut Vec<Field>, m: &Message<'_>, user: &str) -> bool {
    let from = m.from().and_then(|f| f.first());
    let from_address = from.and_then(|a| a.address());
    let own = |a: Option<&str>| a.is_some_and(|a| a.trim().eq_ignore_ascii_case(user));
    let sender_ok = own(m.sender().and_then(|s| s.first()).and_then(|a| a.address()));
    if !sender_ok {
        fields.retain(|f| !f.is("Sender"));
    }
    if own(from_address) && m.from().is_some_and(|f| f.iter().count() == 1) {
        return false;
    }
    let name = from
        .and_then(|a| a.name())
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let had_from = fields.iter().any(|f| f.is("From"));
    fields.retain(|f| !f.is("From"));
    fields.insert(
        0,
        Field::written("From", header::mailbox("From", name, user)),
    );
    had_from
}

/// In-Reply-To and References pointing at the original, when the phone did not set them.
fn add_threading(fields: &mut Vec<Field>, orig: &Message<'_>) {
    let Some(id) = orig.message_id() else { return };
    if !fields.iter().any(|f| f.is("In-Reply-To")) {
        fields.push(Field::written(
            "In-Reply-To",
            header::message_ids("In-Reply-To", [id]),
        ));
    }
    if !fields.iter().any(|f| f.is("References")) {
        let mut refs: Vec<&str> = orig
            .references()
            .as_text_list()
            .map(|list| list.iter().map(|r| r.as_ref()).collect())
            .unwrap_or_default();
        refs.push(id);
        fields.push(Field::written(
            "References",
            header::message_ids("References", refs),
        ));
    }
}

/// The new Content-* fields and body: the phone's text with the original below it, as
/// text (and HTML when either side has HTML), plus attachments.
fn combine(
    new: &Message<'_>,
    orig: &Message<'_>,
    forward: bool,
    new_raw: &[u8],
    orig_raw: &[u8],
) -> (Vec<Field>, Vec<u8>) {
    let new_text = text_of(new);
    let orig_text = text_of(orig);
    let intro = if forward {
        forward_summary(orig)
    } else {
        format!("{} wrote:", reply_attribution(orig))
    };
    let quoted: String = if forward {
        orig_text.clone()
    } else {
        orig_text
            .lines()
            .map(|l| {
                if l.is_empty() {
                    ">".to_owned()
                } else {
                    format!("> {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let text = format!("{}\r\n\r\n{intro}\r\n\r\n{quoted}\r\n", new_text.trim_end());
    let html = (real_html(new).is_some() || real_html(orig).is_some()).then(|| {
        let new_html = real_html(new).unwrap_or_else(|| text_to_html(&new_text));
        let orig_html = real_html(orig).unwrap_or_else(|| text_to_html(&orig_text));
        let quote = if forward {
            format!(
                "<br><div>{}</div><br>{}",
                text_to_html(&intro),
                body_inner(&orig_html)
            )
        } else {
            format!(
                "<br><div>{}</div><blockquote type=\"cite\" style=\"margin:0 0 0 .8ex;\
                 border-left:1px solid #ccc;padding-left:1ex\">{}</blockquote>",
                text_to_html(&intro),
                body_inner(&orig_html)
            )
        };
        insert_before_body_end(&new_html, &quote)
    });

    let mut attachments: Vec<&[u8]> = attachment_parts(new, new_raw);
    if forward {
        attachments.extend(attachment_parts(orig, orig_raw));
    }

    let seed = Sha256::digest([new_raw, orig_raw].concat());
    let boundary = |n: u8| format!("=_easgw_{}_{n}", hex(&seed[..12]));
    let text_part = leaf("text/plain; charset=utf-8", &text);
    let body_part = match &html {
        None => text_part,
        Some(html) => multipart(
            "alternative",
            &boundary(1),
            &[&text_part, &leaf("text/html; charset=utf-8", html)],
        ),
    };
    let whole = if attachments.is_empty() {
        body_part
    } else {
        let mut parts: Vec<&[u8]> = vec![&body_part];
        parts.extend(attachments);
        multipart("mixed", &boundary(2), &parts)
    };
    // `whole` starts with its own Content-* fields: move them into the message header.
    let (head, body) = split(&whole).expect("parts are written with a header block");
    let fields = parse_fields(head).expect("parts are written with valid fields");
    (fields, body.to_vec())
}

/// The message's text: its text/plain body, or its HTML made readable.
fn text_of(m: &Message<'_>) -> String {
    m.body_text(0).map(|t| t.into_owned()).unwrap_or_default()
}

/// The HTML body, only when the message really has one (mail-parser makes one up from text).
fn real_html(m: &Message<'_>) -> Option<String> {
    m.html_bodies()
        .find(|p| matches!(p.body, PartType::Html(_)))
        .and_then(|p| p.text_contents().map(str::to_owned))
}

fn reply_attribution(orig: &Message<'_>) -> String {
    let from = orig
        .from()
        .and_then(|f| f.first())
        .map(|a| match (a.name(), a.address()) {
            (Some(n), Some(ad)) => format!("{n} <{ad}>"),
            (None, Some(ad)) => ad.to_owned(),
            (Some(n), None) => n.to_owned(),
            (None, None) => String::new(),
        })
        .unwrap_or_default();
    match orig.date() {
        Some(d) => format!("On {}, {from}", d.to_rfc822()),
        None => from,
    }
}

fn forward_summary(orig: &Message<'_>) -> String {
    let list = |a: Option<&mail_parser::Address<'_>>| {
        a.map(|l| {
            l.iter()
                .map(|x| match (x.name(), x.address()) {
                    (Some(n), Some(ad)) => format!("{n} <{ad}>"),
                    (_, Some(ad)) => ad.to_owned(),
                    (Some(n), None) => n.to_owned(),
                    _ => String::new(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
    };
    let mut s = String::from("---------- Forwarded message ----------");
    let _ = write!(s, "\r\nFrom: {}", list(orig.from()));
    if let Some(d) = orig.date() {
        let _ = write!(s, "\r\nDate: {}", d.to_rfc822());
    }
    let _ = write!(s, "\r\nSubject: {}", orig.subject().unwrap_or(""));
    let _ = write!(s, "\r\nTo: {}", list(orig.to()));
    if orig.cc().is_some() {
        let _ = write!(s, "\r\nCc: {}", list(orig.cc()));
    }
    s
}

/// The raw bytes (headers and encoded body) of each attachment, to be carried over as is.
fn attachment_parts<'a>(m: &Message<'_>, raw: &'a [u8]) -> Vec<&'a [u8]> {
    m.attachments()
        .filter_map(|p| raw.get(p.offset_header as usize..p.offset_end as usize))
        .filter(|p| !p.is_empty())
        .collect()
}

fn leaf(content_type: &str, text: &str) -> Vec<u8> {
    let mut out =
        format!("Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n")
            .into_bytes();
    let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn multipart(subtype: &str, boundary: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut out =
        format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n").into_bytes();
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(p);
        if !p.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    crate::mime::body::escape_text_into(&mut out, text);
    out
}

/// What is between `<body ...>` and `</body>`, or the whole text when there is no body tag.
fn body_inner(html: &str) -> &str {
    let lower = html.to_ascii_lowercase();
    let start = lower
        .find("<body")
        .and_then(|i| lower[i..].find('>').map(|j| i + j + 1))
        .unwrap_or(0);
    let end = lower
        .rfind("</body>")
        .filter(|&e| e >= start)
        .unwrap_or(html.len());
    &html[start..end]
}

fn insert_before_body_end(html: &str, insert: &str) -> String {
    let lower = html.to_ascii_lowercase();
    match lower.rfind("</body>") {
        Some(i) => format!("{}{insert}{}", &html[..i], &html[i..]),
        None => format!("{html}{insert}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod test {
    use super::*;
    use mail_parser::MimeHeaders;

    const ME: Sender<'static> = Sender {
        address: "alice@example.com",
        now_unix: 1_772_445_600,
        message_id_host: "gw.example.com",
    };

    fn text(p: &[u8]) -> String {
        String::from_utf8_lossy(p).into_owned()
    }

    #[test]
    fn bcc_goes_to_the_envelope_and_the_sent_copy_only() {
        let m = b"From: Alice <alice@example.com>\nTo: bob@example.com\nCc: Carol <carol@example.com>\nBcc: dave@example.com\nSubject: hi\n\nHello\n";
        let p = prepare(m, &ME, Smart::None).unwrap();
        assert_eq!(
            p.recipients,
            ["bob@example.com", "carol@example.com", "dave@example.com"]
        );
        assert!(!text(&p.transmit).contains("dave@"));
        assert!(text(&p.sent_copy).contains("Bcc: dave@example.com\r\n"));
        let t = text(&p.transmit);
        assert!(t.starts_with("From: Alice <alice@example.com>\r\n"), "{t}");
        assert!(
            t.contains("\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n"),
            "{t}"
        );
        assert!(t.contains("\r\nMessage-ID: <1772445600."), "{t}");
        assert!(t.ends_with("\r\n\r\nHello\r\n"), "{t}");
        assert!(!p.from_rewritten);
    }

    #[test]
    fn a_foreign_from_is_rewritten_and_a_missing_one_added() {
        let m = b"From: \"The Boss\" <boss@example.org>\r\nSender: boss@example.org\r\nTo: bob@example.com\r\n\r\nx\r\n";
        let p = prepare(m, &ME, Smart::None).unwrap();
        let t = text(&p.transmit);
        assert!(
            t.starts_with("From: \"The Boss\" <alice@example.com>\r\n"),
            "{t}"
        );
        assert!(!t.contains("boss@example.org"), "{t}");
        assert!(p.from_rewritten);
        let p = prepare(b"To: bob@example.com\r\n\r\nx\r\n", &ME, Smart::None).unwrap();
        assert!(text(&p.transmit).starts_with("From: alice@example.com\r\n"));
        assert!(!p.from_rewritten);
    }

    #[test]
    fn no_recipients_and_no_headers_are_errors() {
        assert_eq!(
            prepare(
                b"From: alice@example.com\r\nSubject: x\r\n\r\nx",
                &ME,
                Smart::None
            ),
            Err(ComposeError::NoRecipients)
        );
        assert_eq!(
            prepare(b"just some text", &ME, Smart::None),
            Err(ComposeError::InvalidMime)
        );
    }

    const ORIGINAL: &[u8] = b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Plans\r\nDate: Sun, 1 Mar 2026 09:00:00 +0000\r\nMessage-ID: <plans@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nShall we meet?\r\nAt noon.\r\n--b1\r\nContent-Type: application/pdf; name=\"agenda.pdf\"\r\nContent-Disposition: attachment; filename=\"agenda.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";

    #[test]
    fn a_smart_reply_quotes_the_original_and_threads() {
        let m = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: Re: Plans\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nYes!\r\n";
        let p = prepare(m, &ME, Smart::Reply(ORIGINAL)).unwrap();
        let parsed = MessageParser::default().parse(&p.transmit[..]).unwrap();
        let body = parsed.body_text(0).unwrap();
        assert!(body.starts_with("Yes!\r\n\r\nOn "), "{body}");
        assert!(body.contains("Bob <bob@example.com> wrote:"), "{body}");
        assert!(body.contains("> Shall we meet?\r\n> At noon."), "{body}");
        assert_eq!(parsed.in_reply_to().as_text(), Some("plans@example.com"));
        // A reply does not carry the original's attachments.
        assert_eq!(parsed.attachment_count(), 0);
    }

    #[test]
    fn a_smart_forward_carries_the_attachments_and_html_stays_html() {
        let m = b"From: alice@example.com\r\nTo: carol@example.com\r\nSubject: Fwd: Plans\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>FYI</p></body></html>\r\n";
        let p = prepare(m, &ME, Smart::Forward(ORIGINAL)).unwrap();
        let parsed = MessageParser::default().parse(&p.transmit[..]).unwrap();
        assert_eq!(parsed.attachment_count(), 1);
        let a = parsed.attachment(0).unwrap();
        assert_eq!(a.attachment_name(), Some("agenda.pdf"));
        assert_eq!(a.contents(), b"%PDF-1.4\n");
        let html = parsed.body_html(0).unwrap();
        assert!(
            html.contains("<p>FYI</p><br><div>---------- Forwarded message"),
            "{html}"
        );
        assert!(html.contains("Shall we meet?"), "{html}");
        let text = parsed.body_text(0).unwrap();
        assert!(text.contains("Subject: Plans"), "{text}");
        assert_eq!(p.recipients, ["carol@example.com"]);
    }

    proptest::proptest! {
        /// Whatever a phone sends, and whatever the original is, composing never panics, and
        /// a message it accepts never transmits a Bcc header.
        #[test]
        fn never_panics_and_never_leaks_bcc(
            head in proptest::collection::vec(
                proptest::sample::select(vec![
                    "To: a@example.com\r\n", "Bcc: b@example.com\r\n", "From: x@y\r\n",
                    "Content-Type: text/html\r\n", "Subject: s\r\n", " folded\r\n",
                    "\r\n", "<body>", "</BODY>", "--b\r\n", "\n", "\u{e9}",
                ]),
                0..12,
            ),
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            forward in proptest::bool::ANY,
        ) {
            let mut mime = head.concat().into_bytes();
            mime.extend_from_slice(&tail);
            let smart = if forward { Smart::Forward(&tail) } else { Smart::Reply(&mime) };
            for s in [Smart::None, smart] {
                if let Ok(p) = prepare(&mime, &ME, s) {
                    let (head, _) = split(&p.transmit).unwrap();
                    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
                    proptest::prop_assert!(!head.starts_with("bcc:") && !head.contains("\nbcc:"));
                }
            }
        }
    }
}

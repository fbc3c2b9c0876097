//! A message with the base64 bodies of its attachments left out, for rendering an item.
//!
//! An item lists attachments (name, type, size) but carries none of their bytes, yet the MIME
//! parser decodes every part it meets: on a page of 100 ordinary messages, decoding base64
//! attachments nobody asked for was the largest share of the gateway's CPU in a Sync (about
//! 5 ms a page, `docs/benchmarks.md`). [`skeleton`] copies the message with those bodies
//! emptied and their decoded size recorded in a header of the part ([`SIZE_HEADER`]), so the
//! parser sees the same structure and headers and has nothing big to decode.
//!
//! Only a body without a `-` is removed: such text cannot hold a delimiter line (`--` and the
//! boundary), so the parser finds exactly the parts it would have found in the original. Text, message and
//! S/MIME parts are kept whole, as is anything the scanner does not fully understand (then
//! there is no skeleton and the caller parses the original).
//!
//! Owns nothing but this copy; the original bytes stay what MIME bodies and attachment
//! downloads are made from.

use super::attachment::PartPath;

/// The header added to an emptied part: its decoded size in bytes.
pub const SIZE_HEADER: &str = "X-EAS-Gateway-Decoded-Size";

/// Bodies shorter than this are kept: decoding them costs less than copying around them.
const MIN_BODY: usize = 1024;

/// Nesting deeper than this is left to the parser.
const MAX_DEPTH: usize = 16;

/// The message with large base64 attachment bodies emptied, or None when there is nothing
/// to leave out (or the structure is not one this scanner is sure of).
pub fn skeleton(raw: &[u8]) -> Option<Vec<u8>> {
    build(raw, None, None)
}

/// Like [`skeleton`], but the part at `keep` (an attachment's [`PartPath`]) keeps its body:
/// parsing the result decodes that attachment and none of the others, where the whole
/// message would have them all decoded at once. None when there is nothing else to leave out.
pub fn skeleton_keeping(raw: &[u8], keep: &PartPath) -> Option<Vec<u8>> {
    build(raw, Some(keep.segments()), None)
}

/// The message with the base64 attachments larger than `limit` decoded bytes left out as
/// [`skeleton`] leaves them out (the size recorded, the body empty), and everything else
/// as it was: a MIME body a phone may have when a policy limits attachments. None when no
/// attachment is over the limit (or the structure is not one this scanner is sure of).
pub fn without_attachments_over(raw: &[u8], limit: u64) -> Option<Vec<u8>> {
    build(raw, None, Some(limit))
}

fn build(raw: &[u8], keep: Option<&[u32]>, over: Option<u64>) -> Option<Vec<u8>> {
    // Most messages have no base64 part at all: don't copy them only to throw the copy away.
    if !mentions_base64(raw) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len().min(64 * 1024));
    let mut at = Where {
        path: Vec::new(),
        keep,
        over,
    };
    let removed = entity(raw, &mut out, &mut at)?;
    (removed > 0).then_some(out)
}

/// The part being copied (IMAP section numbering, as [`PartPath`]), the one to keep, and
/// the decoded size above which attachments go (None: every one worth leaving out).
struct Where<'k> {
    path: Vec<u32>,
    keep: Option<&'k [u32]>,
    over: Option<u64>,
}

impl Where<'_> {
    fn keeps_this(&self) -> bool {
        // A message that is not multipart has its body as part 1.
        let here: &[u32] = if self.path.is_empty() {
            &[1]
        } else {
            &self.path
        };
        self.keep == Some(here)
    }
}

/// Copies one entity (headers and body) into `out`; returns how many body bytes were left
/// out.
fn entity(e: &[u8], out: &mut Vec<u8>, at: &mut Where<'_>) -> Option<usize> {
    let depth = at.path.len();
    if depth > MAX_DEPTH {
        return None;
    }
    let (header_end, body_start) = header_block(e)?;
    let headers = &e[..header_end];
    let body = &e[body_start..];
    let content_type = header_value(headers, "content-type").ok()?;
    let (media, boundary) = match content_type {
        Some(v) => (media_type(&v), param(&v, "boundary")),
        None => (String::from("text/plain"), None),
    };
    if media.starts_with("multipart/") {
        let boundary = boundary.filter(|b| !b.is_empty() && b.len() <= 200)?;
        out.extend_from_slice(&e[..body_start]);
        return multipart(body, boundary.as_bytes(), out, at);
    }
    let cte = header_value(headers, "content-transfer-encoding")
        .ok()?
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let droppable = cte == "base64"
        && plain_media_type(&media)
        && header_value(headers, SIZE_HEADER).ok()?.is_none()
        && !media.starts_with("text/")
        && !media.starts_with("message/")
        && !media.contains("pkcs7")
        && (at.over.is_some() || body.len() >= MIN_BODY)
        && !at.keeps_this();
    let size = droppable.then(|| base64_size(body)).flatten();
    let Some(size) = size.filter(|&size| at.over.is_none_or(|limit| size > limit)) else {
        out.extend_from_slice(e);
        return Some(0);
    };
    // Headers as they were, then the size, then the blank line and an empty body.
    let eol: &[u8] = if e[header_end..body_start].starts_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    out.extend_from_slice(headers);
    if !headers.is_empty() && !headers.ends_with(b"\n") {
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(format!("{SIZE_HEADER}: {size}").as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
    Some(body.len())
}

/// The end of the header block and the start of the body: the first empty line. A message
/// without one has no body (None: nothing to do).
fn header_block(e: &[u8]) -> Option<(usize, usize)> {
    if e.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if e.starts_with(b"\n") {
        return Some((0, 1));
    }
    for nl in memchr::memchr_iter(b'\n', e) {
        let rest = &e[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return Some((nl + 1, nl + 3));
        }
        if rest.starts_with(b"\n") {
            return Some((nl + 1, nl + 2));
        }
    }
    None
}

/// A header's unfolded value, by name. A header given twice is Err: parsers disagree on
/// which one counts, and the skeleton must be read exactly as the original.
fn header_value(headers: &[u8], name: &str) -> Result<Option<String>, ()> {
    let text = crate::mime::utf8_lossy(headers);
    let mut value: Option<String> = None;
    let mut open = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if open && line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        open = false;
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case(name) {
                if value.is_some() {
                    return Err(());
                }
                value = Some(v.trim().to_owned());
                open = true;
            }
        }
    }
    Ok(value)
}

/// Whether a media type is a plain `type/subtype` every parser reads the same way.
fn plain_media_type(t: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    t.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A parameter of a structured header (`boundary="abc"`), unquoted. Parameters in RFC 2231
/// form (`boundary*=`) are not understood: None, and the caller gives up.
fn param(value: &str, name: &str) -> Option<String> {
    for p in value.split(';').skip(1) {
        let (n, v) = p.split_once('=')?;
        if n.trim().eq_ignore_ascii_case(name) {
            let v = v.trim();
            return Some(
                match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(q) => q.to_owned(),
                    None => v.to_owned(),
                },
            );
        }
    }
    None
}

/// Copies a multipart body: preamble, each part (through [`entity`]), delimiters and
/// epilogue as they were. A body whose closing delimiter is missing is not understood.
fn multipart(body: &[u8], boundary: &[u8], out: &mut Vec<u8>, at: &mut Where<'_>) -> Option<usize> {
    let delims = delimiters(body, boundary);
    let last = delims.last()?;
    if !last.closing || delims[..delims.len() - 1].iter().any(|d| d.closing) {
        return None;
    }
    let mut removed = 0;
    out.extend_from_slice(&body[..delims[0].start]);
    for (index, pair) in (1..).zip(delims.windows(2)) {
        let (d, next) = (&pair[0], &pair[1]);
        out.extend_from_slice(&body[d.start..d.end]);
        // The line break before the next delimiter belongs to it (RFC 2046).
        let part_end = next.start;
        at.path.push(index);
        let child = entity(&body[d.end..part_end], out, at);
        at.path.pop();
        removed += child?;
    }
    out.extend_from_slice(&body[last.start..]);
    Some(removed)
}

struct Delimiter {
    /// Where the delimiter begins, its preceding line break included.
    start: usize,
    /// After the delimiter line's own line break.
    end: usize,
    closing: bool,
}

/// Whether `base64` (in any case) occurs anywhere: no part can be dropped otherwise.
fn mentions_base64(raw: &[u8]) -> bool {
    memchr::memmem::find_iter(raw, b"64")
        .any(|at| at >= 4 && raw[at - 4..at].eq_ignore_ascii_case(b"base"))
}

/// The delimiter lines of a multipart body: `--boundary` (or `--boundary--`) at the start
/// of a line, followed only by spaces or tabs up to the line's end. Found by searching for
/// the boundary itself, not line by line: most of a body is attachment text.
fn delimiters(body: &[u8], boundary: &[u8]) -> Vec<Delimiter> {
    let mut needle = Vec::with_capacity(boundary.len() + 2);
    needle.extend_from_slice(b"--");
    needle.extend_from_slice(boundary);
    let mut out = Vec::new();
    for at in memchr::memmem::find_iter(body, &needle) {
        if at > 0 && body[at - 1] != b'\n' {
            continue;
        }
        let line_end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |n| at + n + 1);
        let rest = &body[at + needle.len()..line_end];
        let (closing, rest) = match rest.strip_prefix(b"--") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !rest
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            continue;
        }
        let start = if at >= 2 && body[at - 2] == b'\r' {
            at - 2
        } else {
            at.saturating_sub(1)
        };
        out.push(Delimiter {
            start,
            end: line_end,
            closing,
        });
        if closing {
            break;
        }
    }
    out
}

/// The decoded size of a base64 body, or None when it may hold a delimiter line (see the
/// module documentation): base64 has no `-`, so a body without one cannot. The size counts
/// every byte but line breaks and trailing padding, exact for base64 as mailers write it
/// (an estimate otherwise, which is all the item's EstimatedDataSize promises). Only
/// vectorised byte searches: this runs over every attachment of every page.
fn base64_size(body: &[u8]) -> Option<u64> {
    if memchr::memchr(b'-', body).is_some() {
        return None;
    }
    // Counted a block at a time (the compiler vectorises the sum): an iterator stopping at
    // each of the ~5,000 line breaks of a 400 KB attachment cost more than the scan itself.
    let breaks: usize = body
        .chunks(256)
        .map(|c| {
            c.iter()
                .map(|&b| u16::from(b == b'\r') + u16::from(b == b'\n'))
                .sum::<u16>() as usize
        })
        .sum();
    let tail = body
        .iter()
        .rev()
        .take_while(|b| matches!(b, b'=' | b'\r' | b'\n' | b' ' | b'\t'))
        .filter(|&&b| b == b'=')
        .count();
    let chars = body.len().saturating_sub(breaks + tail);
    Some(chars as u64 * 3 / 4)
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::mime::{MessageMeta, MessageView};
    use base64::Engine;
    use proptest::prelude::*;

    fn message(attachment: &[u8], eol: &str) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
        let wrapped: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let lines = [
            "From: a@example.org",
            "Subject: report",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed;",
            " boundary=\"outer\"",
            "",
            "preamble",
            "--outer",
            "Content-Type: multipart/alternative; boundary=inner",
            "",
            "--inner",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Hello --outer-ish text",
            "--inner",
            "Content-Type: text/html",
            "",
            "<p>Hello</p>",
            "--inner--",
            "",
            "--outer",
            "Content-Type: application/pdf; name=\"r.pdf\"",
            "Content-Disposition: attachment; filename=\"r.pdf\"",
            "Content-Transfer-Encoding: base64",
            "",
        ];
        let mut s = lines.join(eol);
        s.push_str(eol);
        s.push_str(&wrapped.join(eol));
        s.push_str(eol);
        s.push_str("--outer--");
        s.push_str(eol);
        s.push_str("epilogue");
        s.into_bytes()
    }

    fn meta() -> MessageMeta {
        MessageMeta {
            flags: Vec::new(),
            internal_date: 0,
            size: 0,
        }
    }

    #[test]
    fn attachments_are_left_out_and_sized() {
        for eol in ["\r\n", "\n"] {
            let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
            let raw = message(&pdf, eol);
            let skel = skeleton(&raw).expect("a skeleton");
            assert!(
                skel.len() < raw.len() / 2,
                "{} vs {}",
                skel.len(),
                raw.len()
            );
            let full = MessageView::parse(&raw, meta());
            let thin = MessageView::parse_with_skeleton(&raw, Some(&skel), meta());
            assert_eq!(full.plain_text(), thin.plain_text());
            assert_eq!(full.html(), thin.html());
            assert_eq!(full.attachments(), thin.attachments());
            assert_eq!(thin.attachments()[0].size, 5000);
        }
    }

    /// [`message`] with a second attachment (part 3) after the PDF.
    fn two_attachments(pdf: &[u8], png: &[u8]) -> Vec<u8> {
        let mut raw = message(pdf, "\r\n");
        let end = memchr::memmem::rfind(&raw, b"--outer--").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        let part = format!(
            "--outer\r\nContent-Type: image/png\r\nContent-Disposition: attachment; \
             filename=\"p.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        );
        raw.splice(end..end, part.into_bytes());
        raw
    }

    #[test]
    fn keeping_one_attachment_decodes_it_alone() {
        let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let png: Vec<u8> = (0..7000u32).map(|i| (i % 239) as u8).collect();
        let raw = two_attachments(&pdf, &png);
        let full = MessageView::parse(&raw, meta());
        for (path, bytes) in [("2", &pdf), ("3", &png)] {
            let path: PartPath = path.parse().unwrap();
            let skel = skeleton_keeping(&raw, &path).expect("the other one is left out");
            assert!(skel.len() < raw.len() * 3 / 4);
            let thin = MessageView::parse_with_skeleton(&raw, Some(&skel), meta());
            assert_eq!(full.attachments(), thin.attachments());
            assert_eq!(&thin.attachment(&path).unwrap().data[..], &bytes[..]);
            assert_eq!(thin.into_attachment(&path).unwrap().data, *bytes);
        }
        // A message that is not multipart has its body as part 1.
        let single = format!(
            "Subject: x\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: \
             base64\r\n\r\n{}\r\n",
            base64::engine::general_purpose::STANDARD.encode(&pdf)
        );
        assert_eq!(
            skeleton_keeping(single.as_bytes(), &"1".parse().unwrap()),
            None
        );
        assert!(skeleton(single.as_bytes()).is_some());
    }

    #[test]
    fn attachments_over_a_limit_are_left_out_of_a_mime_body() {
        let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let png: Vec<u8> = (0..300u32).map(|i| (i % 239) as u8).collect();
        let raw = two_attachments(&pdf, &png);
        let stripped = without_attachments_over(&raw, 1000).expect("the PDF is over");
        let view = MessageView::parse(&stripped, meta());
        assert_eq!(view.attachments().len(), 2);
        assert_eq!(view.attachments()[0].size, 5000, "the size is still told");
        assert!(
            view.attachment(&"2".parse().unwrap())
                .unwrap()
                .data
                .is_empty()
        );
        assert_eq!(
            &view.attachment(&"3".parse().unwrap()).unwrap().data[..],
            &png[..],
            "a small one stays, however small"
        );
        let none = without_attachments_over(&raw, 0).unwrap();
        let view = MessageView::parse(&none, meta());
        assert!(
            view.attachment(&"3".parse().unwrap())
                .unwrap()
                .data
                .is_empty()
        );
        assert_eq!(without_attachments_over(&raw, 5000), None, "nothing over");
    }

    #[test]
    fn nothing_to_leave_out_is_no_skeleton() {
        assert_eq!(skeleton(b"Subject: x\r\n\r\nhello\r\n"), None);
        // A small attachment is cheaper to decode than to work around.
        assert_eq!(skeleton(&message(b"tiny", "\r\n")), None);
        // No closing delimiter: not understood.
        let raw = message(&[7u8; 4000], "\r\n");
        let cut = &raw[..raw.len() - 20];
        assert_eq!(skeleton(cut), None);
        // A body that could hold a delimiter line is kept.
        let mut odd = message(&[7u8; 4000], "\r\n");
        let at = odd.len() - 200;
        odd[at] = b'-';
        let skel = skeleton(&odd);
        assert!(skel.is_none());
    }

    /// The item's texts and attachment list are the same from the skeleton (if any).
    fn reads_the_same(raw: &[u8]) -> Result<(), TestCaseError> {
        let full = MessageView::parse(raw, meta());
        let skel = skeleton(raw);
        let thin = MessageView::parse_with_skeleton(raw, skel.as_deref(), meta());
        prop_assert_eq!(full.plain_text(), thin.plain_text());
        prop_assert_eq!(full.html(), thin.html());
        prop_assert_eq!(full.attachments(), thin.attachments());
        Ok(())
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = skeleton(&bytes);
        }

        /// Messages assembled from random parts (texts, base64 attachments big and small,
        /// bodies with dashes, doubled headers, nested multiparts) read the same from the
        /// skeleton, sizes included.
        #[test]
        fn assembled_messages_read_the_same(
            parts in proptest::collection::vec((0u8..6, 0usize..3000, any::<bool>()), 1..6),
            crlf in any::<bool>(),
            nested in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let b64 = |n: usize| {
                let data: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
                let text = base64::engine::general_purpose::STANDARD.encode(data);
                text.as_bytes()
                    .chunks(76)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join(eol)
            };
            let mut body = String::new();
            for (i, &(kind, n, twice)) in parts.iter().enumerate() {
                body.push_str(&format!("--b1{eol}"));
                let (headers, content) = match kind {
                    0 => ("Content-Type: text/plain".to_owned(), format!("text {i} -- dash")),
                    1 => ("Content-Type: text/html".to_owned(), format!("<p>{i}</p>")),
                    2 => (
                        format!("Content-Type: application/pdf; name=\"f{i}.pdf\"{eol}Content-Transfer-Encoding: base64"),
                        b64(n * 3),
                    ),
                    3 => (
                        format!("Content-Type: image/png{eol}Content-Disposition: inline{eol}Content-ID: <c{i}>{eol}Content-Transfer-Encoding: base64"),
                        b64(n),
                    ),
                    4 => (
                        format!("Content-Type: application/octet-stream{eol}Content-Transfer-Encoding: base64"),
                        format!("{}{eol}--not-a-boundary", b64(n)),
                    ),
                    _ => (
                        format!("Content-Type: application/zip{eol}Content-Type: text/plain{eol}Content-Transfer-Encoding: base64"),
                        b64(n),
                    ),
                };
                body.push_str(&headers);
                if twice {
                    body.push_str(&format!("{eol}X-Other: {i}"));
                }
                body.push_str(&format!("{eol}{eol}{content}{eol}"));
            }
            body.push_str(&format!("--b1--{eol}"));
            let raw = if nested {
                format!(
                    "Subject: s{eol}Content-Type: multipart/mixed; boundary=b0{eol}{eol}--b0{eol}\
                     Content-Type: multipart/mixed; boundary=\"b1\"{eol}{eol}{body}--b0--{eol}"
                )
            } else {
                format!("Subject: s{eol}Content-Type: multipart/mixed; boundary=b1{eol}{eol}{body}")
            };
            let raw = raw.into_bytes();
            reads_the_same(&raw)?;
        }

        /// Whatever the attachment and the line breaks, the item is the same from the skeleton.
        #[test]
        fn the_item_is_the_same_from_the_skeleton(
            attachment in proptest::collection::vec(any::<u8>(), 0..6000),
            crlf in any::<bool>(),
        ) {
            let raw = message(&attachment, if crlf { "\r\n" } else { "\n" });
            reads_the_same(&raw)?;
        }
    }
}

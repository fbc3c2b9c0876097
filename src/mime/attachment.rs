//! Attachments: which MIME parts are attachments, how a phone names them, and their bytes.
//!
//! A part is addressed by its IMAP section number (`1`, `2.1`, ...: RFC 3501 `BODY[<section>]`
//! numbering), so a FileReference stays valid as long as the message does, needs no state,
//! and could equally be served by an IMAP partial fetch. A FileReference is the caller's prefix
//! (typically the item's ServerId, `2:4711`), a colon and the path: `2:4711:2.1`. The path
//! never holds a colon, so the last colon always splits the two.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// Deeper paths only come from hostile input; no mail client nests this far.
const MAX_DEPTH: usize = 32;

/// Why an attachment could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The FileReference is not `<prefix>:<part path>` (ItemOperations status 15).
    #[error("malformed file reference {0:?}")]
    BadFileReference(String),
    /// The message has no attachment at that part path (ItemOperations status 6): the message
    /// changed, or the reference was made up.
    #[error("no attachment at part {0}")]
    NotFound(PartPath),
    /// The requested byte range starts past the end of the data or ends before it starts
    /// (ItemOperations status 8).
    #[error("byte range {start}-{end} is outside an attachment of {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
}

/// An IMAP section number such as `2.1`: one-based part indexes from the outermost multipart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartPath(Vec<u32>);

impl PartPath {
    /// The indexes, outermost first.
    pub fn segments(&self) -> &[u32] {
        &self.0
    }

    fn child(&self, index: u32) -> PartPath {
        let mut v = self.0.clone();
        v.push(index);
        PartPath(v)
    }
}

impl fmt::Display for PartPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl FromStr for PartPath {
    type Err = AttachmentError;

    /// Only non-empty dot-separated positive decimal numbers, at most 32 levels.
    fn from_str(s: &str) -> Result<PartPath, AttachmentError> {
        let bad = || AttachmentError::BadFileReference(s.to_owned());
        let segments = s
            .split('.')
            .map(|seg| {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match seg.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(bad()),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if segments.is_empty() || segments.len() > MAX_DEPTH {
            return Err(bad());
        }
        Ok(PartPath(segments))
    }
}

/// `<prefix>:<path>`.
pub fn file_reference(prefix: &str, path: &PartPath) -> String {
    format!("{prefix}:{path}")
}

/// Splits a FileReference made by [`file_reference`] into its prefix and part path.
pub fn split_file_reference(reference: &str) -> Result<(&str, PartPath), AttachmentError> {
    let (prefix, path) = reference
        .rsplit_once(':')
        .ok_or_else(|| AttachmentError::BadFileReference(reference.to_owned()))?;
    let path = path
        .parse()
        .map_err(|_| AttachmentError::BadFileReference(reference.to_owned()))?;
    Ok((prefix, path))
}

/// What the attachment list tells a phone about one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// Where the part is; with the caller's prefix it makes the FileReference.
    pub path: PartPath,
    /// `DisplayName`: the file name, decoded; made up from the type when the part has none.
    pub display_name: String,
    /// `type/subtype`, lower case.
    pub content_type: String,
    /// `ContentId`, without the angle brackets.
    pub content_id: Option<String>,
    /// `ContentLocation`.
    pub content_location: Option<String>,
    /// `IsInline`: shown inside the HTML body (`cid:`) rather than listed.
    pub is_inline: bool,
    /// `Method`: always 1 (normal attachment). Embedded messages are offered as `.eml` files
    /// too; Method 5 would promise an item the phone could open by ServerId, which they are not.
    pub method: u8,
    /// `EstimatedDataSize`: decoded bytes.
    pub size: u64,
}

impl AttachmentInfo {
    /// The FileReference for this attachment under `prefix`.
    pub fn file_reference(&self, prefix: &str) -> String {
        file_reference(prefix, &self.path)
    }
}

/// The decoded bytes of one attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentData<'a> {
    /// `airsyncbase:ContentType` for ItemOperations; text parts have been converted to UTF-8,
    /// so their type says so.
    pub content_type: String,
    /// The whole attachment.
    pub data: Cow<'a, [u8]>,
}

impl AttachmentData<'_> {
    /// ItemOperations `Range` `start-end` (both inclusive); an end past the data is cut to it.
    pub fn range(&self, start: u64, end: u64) -> Result<&[u8], AttachmentError> {
        let size = self.data.len() as u64;
        if start > end || (start >= size && size > 0) || (size == 0 && start > 0) {
            return Err(AttachmentError::InvalidRange { start, end, size });
        }
        let end = end.saturating_add(1).min(size);
        Ok(&self.data[start as usize..end as usize])
    }
}

/// Every part of the message with its path, in document order. Ids out of range and loops
/// (which mail-parser does not produce, but a bug must not become a hang) are skipped.
pub(crate) fn part_paths(msg: &Message<'_>) -> Vec<(u32, PartPath)> {
    let mut out = Vec::new();
    let Some(root) = msg.parts.first() else {
        return out;
    };
    let mut seen = vec![false; msg.parts.len()];
    seen[0] = true;
    match &root.body {
        PartType::Multipart(children) => {
            let mut stack: Vec<(u32, PartPath)> = Vec::new();
            push_children(&mut stack, children, &PartPath(Vec::new()));
            while let Some((id, path)) = stack.pop() {
                let Some(part) = msg.parts.get(id as usize) else {
                    continue;
                };
                if std::mem::replace(&mut seen[id as usize], true) {
                    continue;
                }
                if let PartType::Multipart(children) = &part.body
                    && path.0.len() < MAX_DEPTH
                {
                    push_children(&mut stack, children, &path);
                }
                out.push((id, path));
            }
        }
        _ => out.push((0, PartPath(vec![1]))),
    }
    out
}

fn push_children(stack: &mut Vec<(u32, PartPath)>, children: &[u32], parent: &PartPath) {
    // Reversed so the first child is popped first and the output keeps document order.
    for (i, &id) in children.iter().enumerate().rev() {
        stack.push((id, parent.child(i as u32 + 1)));
    }
}

/// The attachments of a message, in document order.
pub(crate) fn collect(
    msg: &Message<'_>,
    paths: &[(u32, PartPath)],
    is_smime: bool,
) -> Vec<AttachmentInfo> {
    let mut out = Vec::new();
    for (id, path) in paths {
        if !msg.attachments.contains(id) {
            continue;
        }
        let Some(part) = msg.parts.get(*id as usize) else {
            continue;
        };
        let content_type = content_type(part);
        // The signature or envelope of an S/MIME message is what the phone needs MIME for,
        // not a file to open.
        if is_smime && is_smime_type(&content_type) {
            continue;
        }
        let content_id = part
            .content_id()
            .map(|id| {
                id.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|id| !id.is_empty());
        let disposition = part
            .content_disposition()
            .map(|d| d.ctype().to_ascii_lowercase());
        let is_inline = match disposition.as_deref() {
            Some("inline") => true,
            Some(_) => false,
            None => content_id.is_some(),
        };
        out.push(AttachmentInfo {
            path: path.clone(),
            display_name: display_name(part, &content_type, path),
            content_id: content_id.map(|c| crate::mime::xml_safe(&c).into_owned()),
            content_location: part
                .content_location()
                .map(|l| crate::mime::xml_safe(l.trim()).into_owned()),
            is_inline,
            method: 1,
            size: decoded_size(part),
            content_type,
        });
    }
    out
}

/// The decoded bytes of the attachment at `path`.
pub(crate) fn lookup<'m>(
    msg: &'m Message<'_>,
    paths: &[(u32, PartPath)],
    path: &PartPath,
) -> Result<AttachmentData<'m>, AttachmentError> {
    let (id, _) = paths
        .iter()
        .find(|(id, p)| p == path && msg.attachments.contains(id))
        .ok_or_else(|| AttachmentError::NotFound(path.clone()))?;
    let part = msg
        .parts
        .get(*id as usize)
        .ok_or_else(|| AttachmentError::NotFound(path.clone()))?;
    let mut content_type = content_type(part);
    if matches!(part.body, PartType::Text(_) | PartType::Html(_)) {
        content_type.push_str("; charset=utf-8");
    }
    Ok(AttachmentData {
        content_type,
        data: Cow::Borrowed(part_bytes(part)),
    })
}

/// An attachment's decoded bytes, owned: what [`take`] moves out of a parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedAttachment {
    /// As in [`AttachmentData::content_type`].
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Like [`lookup`], but moves the bytes out of the parsed message, which is left without
/// them. Decoded bytes (base64, quoted-printable, text in another charset) are moved, not
/// copied, so the raw message can be dropped before they are sent: only bytes the parser
/// borrowed from the message unchanged are copied.
pub(crate) fn take(
    msg: &mut Message<'_>,
    paths: &[(u32, PartPath)],
    path: &PartPath,
) -> Result<OwnedAttachment, AttachmentError> {
    let content_type = lookup(msg, paths, path)?.content_type;
    let (id, _) = paths
        .iter()
        .find(|(id, p)| p == path && msg.attachments.contains(id))
        .ok_or_else(|| AttachmentError::NotFound(path.clone()))?;
    let part = msg
        .parts
        .get_mut(*id as usize)
        .ok_or_else(|| AttachmentError::NotFound(path.clone()))?;
    let data = match std::mem::replace(&mut part.body, PartType::Multipart(Vec::new())) {
        PartType::Text(t) | PartType::Html(t) => t.into_owned().into_bytes(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.into_owned(),
        PartType::Message(m) => m.raw_message.into_owned(),
        PartType::Multipart(_) => Vec::new(),
    };
    Ok(OwnedAttachment { content_type, data })
}

/// The attachment's decoded size: its bytes, or for a part [`super::skeleton`] emptied, the
/// size it recorded.
fn decoded_size(part: &MessagePart<'_>) -> u64 {
    let bytes = part_bytes(part);
    if bytes.is_empty() {
        if let Some(size) = part
            .headers()
            .iter()
            .find(|h| {
                h.name
                    .as_str()
                    .eq_ignore_ascii_case(super::skeleton::SIZE_HEADER)
            })
            .and_then(|h| h.value.as_text())
            .and_then(|v| v.trim().parse().ok())
        {
            return size;
        }
    }
    bytes.len() as u64
}

fn part_bytes<'m>(part: &'m MessagePart<'_>) -> &'m [u8] {
    part.contents()
}

fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => {
            let sub = ct.subtype().unwrap_or("octet-stream");
            let t = format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase();
            if t.bytes().all(|b| b.is_ascii_graphic()) {
                t
            } else {
                "application/octet-stream".to_owned()
            }
        }
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

fn is_smime_type(t: &str) -> bool {
    matches!(
        t,
        "application/pkcs7-signature"
            | "application/x-pkcs7-signature"
            | "application/pkcs7-mime"
            | "application/x-pkcs7-mime"
    )
}

fn display_name(part: &MessagePart<'_>, content_type: &str, path: &PartPath) -> String {
    let name = part
        .attachment_name()
        .map(|n| crate::mime::xml_safe(n.trim()).into_owned())
        .filter(|n| !n.is_empty());
    if let Some(name) = name {
        return name;
    }
    if let PartType::Message(m) = &part.body
        && let Some(subject) = m.subject().map(str::trim).filter(|s| !s.is_empty())
    {
        // A subject may hold characters no file system accepts.
        let safe: String = subject
            .chars()
            .map(|c| {
                if c.is_control() || "/\\:*?\"<>|".contains(c) {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        return format!("{safe}.eml");
    }
    let ext = match content_type {
        "message/rfc822" | "message/global" => "eml",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/calendar" => "ics",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("attachment-{path}.{ext}")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn part_paths_parse_and_print() {
        let p: PartPath = "2.10.1".parse().unwrap();
        assert_eq!(p.segments(), [2, 10, 1]);
        assert_eq!(p.to_string(), "2.10.1");
        for bad in [
            "",
            "0",
            "1..2",
            "1.",
            "a",
            "-1",
            "1.2x",
            "99999999999",
            "+1",
        ] {
            assert!(bad.parse::<PartPath>().is_err(), "{bad}");
        }
        assert!(vec!["1"; 33].join(".").parse::<PartPath>().is_err());
    }

    #[test]
    fn file_references_round_trip() {
        let p: PartPath = "1.2".parse().unwrap();
        let r = file_reference("2:4711", &p);
        assert_eq!(r, "2:4711:1.2");
        assert_eq!(split_file_reference(&r).unwrap(), ("2:4711", p));
        assert!(split_file_reference("nocolon").is_err());
        assert!(split_file_reference("2:4711:").is_err());
    }

    #[test]
    fn ranges() {
        let a = AttachmentData {
            content_type: "x/y".into(),
            data: Cow::Borrowed(b"0123456789"),
        };
        assert_eq!(a.range(0, 3).unwrap(), b"0123");
        assert_eq!(a.range(8, 100).unwrap(), b"89");
        assert_eq!(a.range(9, 9).unwrap(), b"9");
        assert!(a.range(10, 12).is_err());
        assert!(a.range(5, 4).is_err());
        let empty = AttachmentData {
            content_type: "x/y".into(),
            data: Cow::Borrowed(b""),
        };
        assert_eq!(empty.range(0, 10).unwrap(), b"");
    }
}

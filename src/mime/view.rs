//! [`MessageView`]: one message parsed once, and every Email property derived from it.
//!
//! Parsing is mail-parser's (charset conversion included: any charset in, UTF-8 out). What a
//! parser cannot make sense of degrades instead of failing: no headers or an unparseable
//! message becomes a plain-text item holding the raw bytes (invalid UTF-8 replaced), a part
//! with broken base64 keeps what decoded, a missing Date falls back to INTERNALDATE.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use crate::mime::attachment::{self, AttachmentData, AttachmentError, AttachmentInfo, PartPath};
use crate::mime::body::{self, BodyOutput, BodyPreference, BodyType, MimeSupport};
use crate::mime::flags::FlagState;
use crate::mime::{Version, utf8_lossy, xml_safe, xml_safe_owned};
use crate::mime::{date, html};

/// What IMAP knows about a message besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// FLAGS: system flags (`\Seen`, ...) and keywords (`$Forwarded`, `Work`, ...).
    pub flags: Vec<String>,
    /// INTERNALDATE as unix seconds: when the message arrived, which is what DateReceived means.
    pub internal_date: i64,
    /// RFC822.SIZE: the EstimatedDataSize of a MIME body. It matters when the caller passes
    /// only a prefix of a very large message; otherwise it equals the length of the bytes.
    pub size: u64,
}

/// `email:Importance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    Low = 0,
    Normal = 1,
    High = 2,
}

/// How a message is protected with S/MIME, which decides its MessageClass and whether
/// `MIMESupport` 1 sends it as MIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Smime {
    /// multipart/signed: readable, with a detached signature.
    Signed,
    /// application/pkcs7-mime: encrypted or opaque-signed; only the phone can open it.
    Opaque,
}

/// A message parsed once from its raw bytes; borrows them.
///
/// The bodies in each format are converted on first use and kept, so asking for the same
/// format for a Sync item and its Preview does the conversion once.
pub struct MessageView<'a> {
    raw: &'a [u8],
    msg: Option<Message<'a>>,
    meta: MessageMeta,
    flags: FlagState,
    paths: Vec<(u32, PartPath)>,
    attachments: Vec<AttachmentInfo>,
    smime: Option<Smime>,
    plain: OnceCell<String>,
    html: OnceCell<String>,
}

/// mail-parser's default header parsers, except that `Received` (nothing here reads it) is
/// kept raw: tokenizing the several Received lines of ordinary mail was ~5 % of rendering a
/// page of items. Listing every parser is how mail-parser takes exceptions: with any header
/// configured, unlisted ones are read raw, as its default does for unknown names.
fn parser() -> &'static MessageParser {
    use mail_parser::HeaderName as H;
    static PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
        let mut p = MessageParser::new();
        for h in [
            H::Subject,
            H::Comments,
            H::ContentDescription,
            H::ContentLocation,
            H::ContentTransferEncoding,
        ] {
            p = p.header_text(h);
        }
        for h in [
            H::From,
            H::To,
            H::Cc,
            H::Bcc,
            H::ReplyTo,
            H::Sender,
            H::ResentTo,
            H::ResentFrom,
            H::ResentBcc,
            H::ResentCc,
            H::ResentSender,
            H::ListArchive,
            H::ListHelp,
            H::ListId,
            H::ListOwner,
            H::ListPost,
            H::ListSubscribe,
            H::ListUnsubscribe,
        ] {
            p = p.header_address(h);
        }
        for h in [H::Date, H::ResentDate] {
            p = p.header_date(h);
        }
        for h in [
            H::MessageId,
            H::References,
            H::InReplyTo,
            H::ReturnPath,
            H::ContentId,
            H::ResentMessageId,
        ] {
            p = p.header_id(h);
        }
        for h in [H::Keywords, H::ContentLanguage] {
            p = p.header_comma_separated(h);
        }
        for h in [H::ContentType, H::ContentDisposition] {
            p = p.header_content_type(h);
        }
        p.header_raw(H::Received).header_raw(H::MimeVersion)
    });
    &PARSER
}

/// A mail's iTIP part ([`MessageView::calendar_part`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarPart {
    pub method: Option<String>,
    pub text: String,
}

impl std::fmt::Debug for MessageView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The parsed tree is large and says little; these identify the message.
        f.debug_struct("MessageView")
            .field("size", &self.raw.len())
            .field("parsed", &self.msg.is_some())
            .field("subject", &self.subject())
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

impl<'a> MessageView<'a> {
    /// Parses `raw`. Never fails: see the module documentation for what broken input becomes.
    pub fn parse(raw: &'a [u8], meta: MessageMeta) -> MessageView<'a> {
        MessageView::parse_with_skeleton(raw, None, meta)
    }

    /// Like [`MessageView::parse`], with the structure, headers and texts read from
    /// `skeleton` ([`super::skeleton::skeleton`] of `raw`) when given: the item is the same,
    /// but attachment bytes are not available ([`MessageView::attachment`] needs a view of
    /// the whole message). MIME bodies still come from `raw`.
    pub fn parse_with_skeleton(
        raw: &'a [u8],
        skeleton: Option<&'a [u8]>,
        meta: MessageMeta,
    ) -> MessageView<'a> {
        let source = skeleton.unwrap_or(raw);
        // mail-parser is fuzzed and documented never to panic; the guard is there because a
        // panic here would take down a whole Sync response for one hostile message.
        let msg = catch_unwind(AssertUnwindSafe(|| parser().parse(source)))
            .ok()
            .flatten()
            .filter(|m| !m.parts.is_empty());
        let (paths, smime) = match &msg {
            Some(m) => (attachment::part_paths(m), smime_kind(m)),
            None => (Vec::new(), None),
        };
        let attachments = match &msg {
            Some(m) => attachment::collect(m, &paths, smime.is_some()),
            None => Vec::new(),
        };
        MessageView {
            raw,
            flags: FlagState::from_imap(&meta.flags),
            meta,
            msg,
            paths,
            attachments,
            smime,
            plain: OnceCell::new(),
            html: OnceCell::new(),
        }
    }

    /// The bytes the view was parsed from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The metadata the view was given.
    pub fn meta(&self) -> &MessageMeta {
        &self.meta
    }

    /// False when the bytes could not be parsed as a message at all and the item is the raw
    /// text.
    pub fn is_parsed(&self) -> bool {
        self.msg.is_some()
    }

    /// `email:To`: `"Name" <addr>, addr`.
    pub fn to(&self) -> Option<String> {
        self.address_list(|m| m.to())
    }

    /// `email:Cc`.
    pub fn cc(&self) -> Option<String> {
        self.address_list(|m| m.cc())
    }

    /// `email:From`.
    pub fn from(&self) -> Option<String> {
        self.address_list(|m| m.from())
    }

    /// `email:ReplyTo`.
    pub fn reply_to(&self) -> Option<String> {
        self.address_list(|m| m.reply_to())
    }

    /// `email2:Sender`, only when it names someone other than From (a list, a secretary).
    pub fn sender(&self) -> Option<String> {
        let m = self.msg.as_ref()?;
        let sender = m.sender()?.first()?;
        let sender_addr = sender.address.as_deref()?;
        let same = m.from().is_some_and(|f| {
            f.iter().any(|a| {
                a.address
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(sender_addr))
            })
        });
        if same {
            return None;
        }
        Some(format_addr(sender.name.as_deref(), Some(sender_addr)))
    }

    /// `email:DisplayTo`: the names of the To recipients (addresses where there is no name),
    /// separated by `"; "`.
    pub fn display_to(&self) -> Option<String> {
        display_names(self.msg.as_ref()?.to()?)
    }

    /// `find:DisplayCc`: the names of the Cc recipients, as [`Self::display_to`].
    pub fn display_cc(&self) -> Option<String> {
        display_names(self.msg.as_ref()?.cc()?)
    }

    /// `find:DisplayBcc`: a Bcc header is only ever present on the sender's own copy.
    pub fn display_bcc(&self) -> Option<String> {
        display_names(self.msg.as_ref()?.bcc()?)
    }

    /// `email:Subject`, decoded.
    pub fn subject(&self) -> Option<String> {
        let s = self.msg.as_ref()?.subject()?;
        Some(xml_safe(s).into_owned())
    }

    /// `email:ThreadTopic`: the subject without `Re:`/`Fwd:` prefixes and list tags.
    pub fn thread_topic(&self) -> Option<String> {
        let m = self.msg.as_ref()?;
        m.subject()?;
        let t = m.thread_name()?.trim();
        Some(xml_safe(t).into_owned())
    }

    /// `email:DateReceived`, from INTERNALDATE.
    pub fn date_received(&self) -> String {
        date::eas_date(self.meta.internal_date)
    }

    /// The Date header as unix seconds, else INTERNALDATE.
    pub fn sent_date(&self) -> i64 {
        self.msg
            .as_ref()
            .and_then(|m| m.date())
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp())
            .unwrap_or(self.meta.internal_date)
    }

    /// `email:Importance` from `Importance:`, `X-Priority:`, `X-MSMail-Priority:` or
    /// `Priority:`, first one that says something; normal otherwise.
    pub fn importance(&self) -> Importance {
        let Some(m) = self.msg.as_ref() else {
            return Importance::Normal;
        };
        for name in ["Importance", "X-MSMail-Priority", "Priority"] {
            let value = m.header_raw(name).map(|v| v.trim().to_ascii_lowercase());
            match value.as_deref() {
                Some("high" | "urgent") => return Importance::High,
                Some("low" | "non-urgent") => return Importance::Low,
                Some("normal") => return Importance::Normal,
                _ => {}
            }
        }
        // "1 (Highest)", "5 (Lowest)": only the leading digit counts.
        match m
            .header_raw("X-Priority")
            .and_then(|v| v.trim().bytes().next())
        {
            Some(b'1' | b'2') => Importance::High,
            Some(b'4' | b'5') => Importance::Low,
            _ => Importance::Normal,
        }
    }

    /// Read, Flag, Categories and the last verb, from the IMAP flags.
    pub fn flags(&self) -> &FlagState {
        &self.flags
    }

    /// True for S/MIME signed or encrypted messages.
    pub fn is_smime(&self) -> bool {
        self.smime.is_some()
    }

    /// The first `text/calendar` part (an iTIP invitation, cancellation or reply): its
    /// `method` parameter and its text. Parts larger than 1 MiB are no invitation anyone
    /// sends and are not read.
    pub fn calendar_part(&self) -> Option<CalendarPart> {
        self.calendar_part_with_id().map(|(_, part)| part)
    }

    /// The attachments a phone is shown: for a meeting mail (`meeting`: its calendar part was
    /// read as one) without the calendar part, which the phone shows as the meeting already
    /// (Exchange lists no `.ics` for it either); every attachment otherwise.
    pub fn listed_attachments(&self, meeting: bool) -> Cow<'_, [AttachmentInfo]> {
        let hidden = if meeting {
            self.calendar_part_with_id().and_then(|(id, _)| {
                self.paths
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, path)| path.clone())
            })
        } else {
            None
        };
        match hidden {
            Some(path) if self.attachments.iter().any(|a| a.path == path) => Cow::Owned(
                self.attachments
                    .iter()
                    .filter(|a| a.path != path)
                    .cloned()
                    .collect(),
            ),
            _ => Cow::Borrowed(&self.attachments),
        }
    }

    /// [`Self::calendar_part`] and the id of its part in the parsed message.
    fn calendar_part_with_id(&self) -> Option<(u32, CalendarPart)> {
        let m = self.msg.as_ref()?;
        m.parts.iter().enumerate().find_map(|(id, p)| {
            let ct = p.content_type()?;
            if !ct.ctype().eq_ignore_ascii_case("text")
                || !ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("calendar"))
            {
                return None;
            }
            let bytes = match &p.body {
                PartType::Text(t) => t.as_bytes(),
                PartType::Binary(b) | PartType::InlineBinary(b) => b.as_ref(),
                _ => return None,
            };
            if bytes.len() > 1 << 20 {
                return None;
            }
            Some((
                id as u32,
                CalendarPart {
                    method: ct.attribute("method").map(str::to_owned),
                    text: String::from_utf8_lossy(bytes).into_owned(),
                },
            ))
        })
    }

    /// `email:MessageClass`.
    pub fn message_class(&self) -> &'static str {
        match self.smime {
            Some(Smime::Signed) => "IPM.Note.SMIME.MultipartSigned",
            Some(Smime::Opaque) => "IPM.Note.SMIME",
            None => "IPM.Note",
        }
    }

    /// `airsyncbase:NativeBodyType`: HTML when the message has an HTML body, else plain.
    pub fn native_body_type(&self) -> BodyType {
        let html = self.msg.as_ref().is_some_and(|m| {
            m.html_body.iter().any(|&id| {
                matches!(
                    m.parts.get(id as usize).map(|p| &p.body),
                    Some(PartType::Html(_))
                )
            })
        });
        if html {
            BodyType::Html
        } else {
            BodyType::Plain
        }
    }

    /// The attachment list, in document order.
    pub fn attachments(&self) -> &[AttachmentInfo] {
        &self.attachments
    }

    /// The decoded bytes of the attachment at `path`.
    pub fn attachment(&self, path: &PartPath) -> Result<AttachmentData<'_>, AttachmentError> {
        match &self.msg {
            Some(m) => attachment::lookup(m, &self.paths, path),
            None => Err(AttachmentError::NotFound(path.clone())),
        }
    }

    /// The attachment at `path`, its bytes moved out of the view (see
    /// [`attachment::take`]): once the view is consumed the raw message can be dropped while
    /// the attachment is sent.
    pub fn into_attachment(
        mut self,
        path: &PartPath,
    ) -> Result<attachment::OwnedAttachment, AttachmentError> {
        match &mut self.msg {
            Some(m) => attachment::take(m, &self.paths, path),
            None => Err(AttachmentError::NotFound(path.clone())),
        }
    }

    /// `email2:ConversationId`: 16 bytes that every message of a thread shares, hashed from
    /// the thread root's Message-ID (the first References entry, else In-Reply-To, else the
    /// message's own id). A message with none of them is its own conversation, keyed by its
    /// header block so the id is still stable.
    pub fn conversation_id(&self) -> [u8; 16] {
        let root = self.msg.as_ref().and_then(|m| {
            first_id(m.references())
                .or_else(|| first_id(m.in_reply_to()))
                .or_else(|| m.message_id().map(str::trim).filter(|s| !s.is_empty()))
        });
        let digest = match root {
            Some(id) => Sha256::digest(id.trim_start_matches('<').trim_end_matches('>').as_bytes()),
            None => Sha256::digest(self.header_block()),
        };
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        out
    }

    /// `email2:ConversationIndex`: the 22-byte header block of MS-OXOMSG — the reserved byte
    /// (0x01) and the top five bytes of the sent time as FILETIME, then the conversation's
    /// 16 bytes. Reply levels would need the parent's index, which a mail store does not keep.
    pub fn conversation_index(&self) -> [u8; 22] {
        let ft = date::filetime(self.sent_date()).to_be_bytes();
        let mut out = [0u8; 22];
        out[0] = 0x01;
        out[1..6].copy_from_slice(&ft[1..6]);
        out[6..].copy_from_slice(&self.conversation_id());
        out
    }

    /// The whole body as plain text: the text/plain parts, or the HTML made readable.
    pub fn plain_text(&self) -> &str {
        self.plain.get_or_init(|| match &self.msg {
            None => utf8_lossy(self.raw).into_owned(),
            Some(m) => {
                let mut out = String::new();
                for &id in &m.text_body {
                    let text = match m.parts.get(id as usize).map(|p| &p.body) {
                        Some(PartType::Text(t)) => Cow::Borrowed(t.as_ref()),
                        Some(PartType::Html(h)) => Cow::Owned(html::html_to_text(h)),
                        _ => continue,
                    };
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&text);
                }
                xml_safe_owned(out)
            }
        })
    }

    /// The whole body as HTML: the text/html parts, or the plain text escaped.
    pub fn html(&self) -> &str {
        self.html.get_or_init(|| {
            let Some(m) = self
                .msg
                .as_ref()
                .filter(|_| self.native_body_type() == BodyType::Html)
            else {
                return body::text_to_html(self.plain_text());
            };
            let mut out = String::new();
            for &id in &m.html_body {
                match m.parts.get(id as usize).map(|p| &p.body) {
                    Some(PartType::Html(h)) => out.push_str(&html::declare_utf8(h)),
                    // A text part between HTML parts (a signature block in multipart/mixed).
                    Some(PartType::Text(t)) => {
                        let html = body::text_to_html(t);
                        out.push_str(&html);
                    }
                    _ => {}
                }
            }
            xml_safe_owned(out)
        })
    }

    /// The raw message as text for a Type 4 body. Bytes that are not UTF-8 (8-bit bodies in
    /// legacy charsets) are replaced: a WBXML string cannot carry them.
    pub fn mime_text(&self) -> Cow<'a, str> {
        match utf8_lossy(self.raw) {
            Cow::Borrowed(s) => xml_safe(s),
            Cow::Owned(s) => Cow::Owned(xml_safe_owned(s)),
        }
    }

    /// The body for the preference [`body::select`] picks.
    pub fn body_for(
        &self,
        prefs: &[BodyPreference],
        mime_support: MimeSupport,
        mime_truncation: Option<u8>,
        version: Version,
    ) -> BodyOutput<'_> {
        let pref = body::select(prefs, mime_support, mime_truncation, self.is_smime());
        self.body(&pref, version)
    }

    /// The body in the preference's type, truncated as it says, with a Preview when it asks
    /// for one and the version has them.
    pub fn body(&self, pref: &BodyPreference, version: Version) -> BodyOutput<'_> {
        let (kind, full): (BodyType, Cow<'_, str>) = match pref.kind {
            BodyType::Mime => (BodyType::Mime, self.mime_text()),
            BodyType::Html => (BodyType::Html, Cow::Borrowed(self.html())),
            BodyType::Plain | BodyType::Rtf => (BodyType::Plain, Cow::Borrowed(self.plain_text())),
        };
        let estimated_size = match kind {
            // The phone compares this with what it stores; the message's own size is what
            // it will get if it downloads it whole.
            BodyType::Mime => (self.raw.len() as u64).max(self.meta.size),
            _ => full.len() as u64,
        };
        let (truncated, data) = body::truncate(full, pref);
        // A message longer than the gateway fetches whole arrives cut to that length: the
        // phone must not take what it got for all of it.
        let cut = kind == BodyType::Mime && (self.raw.len() as u64) < self.meta.size;
        let truncated = truncated || cut;
        let preview = pref
            .preview
            .filter(|&n| n > 0 && version.has_email2())
            .map(|n| body::preview(self.plain_text(), n));
        BodyOutput {
            kind,
            estimated_size,
            truncated,
            data,
            preview,
        }
    }

    fn address_list(
        &self,
        get: impl for<'m> Fn(&'m Message<'a>) -> Option<&'m Address<'a>>,
    ) -> Option<String> {
        let list = get(self.msg.as_ref()?)?;
        let parts: Vec<String> = list
            .iter()
            .filter(|a| a.name.is_some() || a.address.is_some())
            .map(|a| format_addr(a.name.as_deref(), a.address.as_deref()))
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    fn header_block(&self) -> &[u8] {
        let end = self
            .msg
            .as_ref()
            .and_then(|m| m.parts.first())
            .map(|p| p.offset_body as usize)
            .unwrap_or(self.raw.len())
            .min(self.raw.len());
        &self.raw[..end]
    }
}

/// `"Name" <addr>`, or the bare address, or the quoted name when there is no address.
/// Names (addresses where there is no name) separated by `"; "`.
fn display_names(list: &Address<'_>) -> Option<String> {
    let names: Vec<String> = list
        .iter()
        .filter_map(|a| {
            let name = a.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
            name.or(a.address.as_deref())
                .map(|s| xml_safe(s).into_owned())
        })
        .collect();
    (!names.is_empty()).then(|| names.join("; "))
}

fn format_addr(name: Option<&str>, addr: Option<&str>) -> String {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let addr = addr.map(str::trim).filter(|a| !a.is_empty());
    let quoted = |n: &str| {
        let escaped = n.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{}\"", xml_safe(&escaped))
    };
    match (name, addr) {
        (Some(n), Some(a)) if n != a => format!("{} <{}>", quoted(n), xml_safe(a)),
        (_, Some(a)) => xml_safe(a).into_owned(),
        (Some(n), None) => quoted(n),
        (None, None) => String::new(),
    }
}

fn first_id<'h>(value: &'h HeaderValue<'_>) -> Option<&'h str> {
    let first = match value {
        HeaderValue::Text(t) => Some(t.as_ref()),
        HeaderValue::TextList(l) => l.first().map(|t| t.as_ref()),
        _ => None,
    };
    first.map(str::trim).filter(|s| !s.is_empty())
}

fn smime_kind(m: &Message<'_>) -> Option<Smime> {
    let ct = m.parts.first()?.content_type()?;
    let t = ct.ctype().to_ascii_lowercase();
    let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
    match (t.as_str(), sub.as_str()) {
        ("multipart", "signed") => {
            let protocol = ct.attribute("protocol").unwrap_or("").to_ascii_lowercase();
            protocol
                .contains("pkcs7-signature")
                .then_some(Smime::Signed)
        }
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => Some(Smime::Opaque),
        _ => None,
    }
}

#[cfg(test)]
mod test {
    /// The parser with Received kept raw reads every other header as mail-parser's default
    /// does, on every fixture message and a few headers written to trip it.
    #[test]
    fn parser_differs_from_the_default_only_in_received() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut messages: Vec<Vec<u8>> = ["fixtures/mail", "fixtures/mime"]
            .iter()
            .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        messages.push(
            b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
              List-Id: <list.example.org>\r\nKeywords: a, b\r\nResent-Date: Tue, 2 Jan 2024 \
              00:00:00 +0000\r\nComments: =?utf-8?q?caf=C3=A9?=\r\nX-Other: =?utf-8?q?x?=\r\n\
              MIME-Version: 1.0\r\nReturn-Path: <a@b>\r\nContent-Language: en, de\r\n\r\nbody"
                .to_vec(),
        );
        assert!(messages.len() > 10);
        for raw in &messages {
            // One fixture makes mail-parser panic (the reason for the guard in `parse`).
            let guarded = |p: &mail_parser::MessageParser| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.parse(raw)))
                    .ok()
                    .flatten()
            };
            let ours = guarded(super::parser());
            let theirs = guarded(&mail_parser::MessageParser::default());
            assert_eq!(ours.is_some(), theirs.is_some());
            let headers = |m: &Option<mail_parser::Message<'_>>| -> Vec<String> {
                m.iter()
                    .flat_map(|m| m.parts.iter())
                    .flat_map(|p| p.headers.iter())
                    .filter(|h| h.name != mail_parser::HeaderName::Received)
                    .map(|h| format!("{:?}", h))
                    .collect()
            };
            assert_eq!(
                headers(&ours),
                headers(&theirs),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    use super::*;

    #[test]
    fn address_formats() {
        assert_eq!(
            format_addr(Some("Jane Doe"), Some("j@x")),
            "\"Jane Doe\" <j@x>"
        );
        assert_eq!(format_addr(None, Some("j@x")), "j@x");
        assert_eq!(format_addr(Some("j@x"), Some("j@x")), "j@x");
        assert_eq!(format_addr(Some("A \"B\""), None), "\"A \\\"B\\\"\"");
        assert_eq!(format_addr(Some(" "), None), "");
    }

    fn view(raw: &[u8]) -> MessageView<'_> {
        MessageView::parse(raw, MessageMeta::default())
    }

    #[test]
    fn importance_headers() {
        let cases: [(&[u8], Importance); 5] = [
            (b"Importance: High\r\n\r\nx", Importance::High),
            (b"X-Priority: 5 (Lowest)\r\n\r\nx", Importance::Low),
            (b"X-Priority: 3\r\n\r\nx", Importance::Normal),
            (
                b"X-MSMail-Priority: Low\r\nX-Priority: 1\r\n\r\nx",
                Importance::Low,
            ),
            (b"Subject: x\r\n\r\nx", Importance::Normal),
        ];
        for (raw, want) in cases {
            assert_eq!(
                view(raw).importance(),
                want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn conversation_root() {
        let reply =
            view(b"Message-ID: <c@x>\r\nIn-Reply-To: <b@x>\r\nReferences: <a@x> <b@x>\r\n\r\nx");
        let root = view(b"Message-ID: <a@x>\r\n\r\nx");
        let middle = view(b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\n\r\nx");
        assert_eq!(reply.conversation_id(), root.conversation_id());
        assert_eq!(middle.conversation_id(), root.conversation_id());
        assert_ne!(
            view(b"Message-ID: <z@x>\r\n\r\nx").conversation_id(),
            root.conversation_id()
        );
        let idx = root.conversation_index();
        assert_eq!(idx[0], 1);
        assert_eq!(&idx[6..], &root.conversation_id());
    }

    #[test]
    fn smime_classes() {
        let signed = view(
            b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b--\r\n",
        );
        assert_eq!(signed.message_class(), "IPM.Note.SMIME.MultipartSigned");
        assert!(
            signed.attachments().is_empty(),
            "{:?}",
            signed.attachments()
        );
        let enc = view(b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n");
        assert_eq!(enc.message_class(), "IPM.Note.SMIME");
        assert_eq!(view(b"Subject: x\r\n\r\ny").message_class(), "IPM.Note");
    }
}

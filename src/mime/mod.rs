//! RFC 5322 messages as Exchange ActiveSync Email items.
//!
//! Owns the conversion from the raw bytes of one message (as IMAP `BODY.PEEK[]` returns them)
//! plus the little metadata IMAP keeps beside it (flags, INTERNALDATE, size) into what a phone
//! is told about that message: the `email:`, `airsyncbase:` and `email2:` properties inside
//! `<ApplicationData>`, the body in the format the phone prefers (truncated as it asked), the
//! attachment list with stable FileReferences, and the decoded bytes of one attachment.
//!
//! It must not touch anything else: no I/O, no IMAP, no state, no clock. Everything it needs
//! is passed in, so the same bytes and metadata always give the same item. Errors are typed
//! ([`AttachmentError`]); a message that is broken in any way degrades to what can still be
//! shown (at worst its raw bytes as text) and never fails the caller or panics: one bad mail
//! must not stop a whole Sync window (the "mobile loop" the protocol notes warn about).
//!
//! Module map:
//! - [`view`]: [`MessageView`], the message parsed once, and the properties derived from it.
//! - [`body`]: body preferences, choosing a body type, truncation and preview.
//! - [`compose`]: the other direction: a phone's outgoing message made ready to submit
//!   (sender, recipients, Bcc, quoted replies and forwards).
//! - [`attachment`]: MIME part paths, FileReferences and attachment lookup.
//! - [`html`]: HTML made readable as plain text.
//! - [`skeleton`]: the message without its attachments' base64 bodies, for rendering items.
//! - [`flags`]: IMAP flags and keywords as Read, Flag, Categories and LastVerbExecuted.
//! - [`write`]: the WBXML of an item, per protocol version.
//! - [`date`]: the EAS date format, RFC 5322 dates and Windows FILETIME.
//! - [`header`]: header fields for messages the gateway writes (drafts, replies), folded and
//!   with encoded words within RFC 2047's limits.
//!
//! ```
//! use eas_gateway::mime::{BodyPreference, BodyType, ItemOptions, MessageMeta, MessageView, Version};
//! use eas_wbxml::{Element, Writer, tags::{airsync, email}};
//!
//! let raw = b"From: Bob <bob@example.org>\r\nTo: jane@example.com\r\nSubject: Lunch?\r\n\r\nAt noon.\r\n";
//! let meta = MessageMeta { flags: vec!["\\Seen".into()], internal_date: 1_700_000_000, size: raw.len() as u64 };
//! let view = MessageView::parse(raw, meta);
//! let prefs = [BodyPreference::new(BodyType::Plain)];
//! let options = ItemOptions::new(Version::V14_1, &prefs, "2:4711");
//!
//! let mut w = Writer::new(Vec::new()).unwrap();
//! w.start(airsync::ApplicationData).unwrap();
//! eas_gateway::mime::write_application_data(&mut w, &view, &options).unwrap();
//! w.end().unwrap();
//! let tree = Element::decode(&w.finish().unwrap()).unwrap();
//! assert_eq!(tree.child(email::Subject).and_then(|e| e.text()), Some("Lunch?"));
//! assert_eq!(tree.child(email::Read).and_then(|e| e.text()), Some("1"));
//! ```

pub mod attachment;
pub mod body;
pub mod compose;
pub mod date;
pub mod flags;
pub mod header;
pub mod html;
pub mod skeleton;
pub mod view;
pub mod write;

use std::fmt;
use std::str::FromStr;

pub use attachment::{AttachmentData, AttachmentError, AttachmentInfo, OwnedAttachment, PartPath};
pub use body::{BodyOutput, BodyPreference, BodyType, MimeSupport};
pub use flags::FlagState;
pub use view::{Importance, MessageMeta, MessageView};
pub use write::{
    ItemOptions, write_application_data, write_attachments, write_body, write_flag_change,
};

/// The protocol versions whose Email items differ.
///
/// Kept here rather than borrowed from the command layer so that this module depends on
/// nothing above it; `Version::from_str("14.1")` or [`Version::from_tenths`] converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V12_1,
    V14_0,
    V14_1,
    V16_0,
    V16_1,
}

impl Version {
    /// From the base64 query form's byte (121, 140, 141, 160, 161).
    pub fn from_tenths(v: u8) -> Option<Version> {
        match v {
            121 => Some(Version::V12_1),
            140 => Some(Version::V14_0),
            141 => Some(Version::V14_1),
            160 => Some(Version::V16_0),
            161 => Some(Version::V16_1),
            _ => None,
        }
    }

    /// `email2:` (conversations), `email:Categories` and `airsyncbase:Preview` arrived in 14.0.
    pub fn has_email2(self) -> bool {
        self >= Version::V14_0
    }

    /// `email2:IsDraft` arrived in 16.0.
    pub fn has_drafts(self) -> bool {
        self >= Version::V16_0
    }

    fn as_str(self) -> &'static str {
        match self {
            Version::V12_1 => "12.1",
            Version::V14_0 => "14.0",
            Version::V14_1 => "14.1",
            Version::V16_0 => "16.0",
            Version::V16_1 => "16.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version string that is not one of 12.1, 14.0, 14.1, 16.0, 16.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol version {0:?}")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Version, UnknownVersion> {
        [
            Version::V12_1,
            Version::V14_0,
            Version::V14_1,
            Version::V16_0,
            Version::V16_1,
        ]
        .into_iter()
        .find(|v| v.as_str() == s.trim())
        .ok_or_else(|| UnknownVersion(s.to_owned()))
    }
}

/// Drops characters that no XML 1.0 document may hold (C0 controls other than tab, CR, LF):
/// some clients turn WBXML into XML internally and reject the whole response over one of them.
pub(crate) fn xml_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if has_control(s) {
        s.chars()
            .filter(|&c| !is_control(c))
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

/// `String::from_utf8_lossy` with a fast path: it checks one byte at a time, `str::from_utf8`
/// a word at a time, and most mail is valid UTF-8 (or ASCII). Same result.
pub(crate) fn utf8_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// [`xml_safe`] for a string the caller owns: no copy when nothing needs dropping.
pub(crate) fn xml_safe_owned(s: String) -> String {
    if has_control(&s) {
        s.chars().filter(|&c| !is_control(c)).collect()
    } else {
        s
    }
}

fn is_control(c: char) -> bool {
    c < ' ' && !matches!(c, '\t' | '\n' | '\r')
}

/// The controls are ASCII, so whole blocks of bytes can be tested without decoding UTF-8
/// (the `|` form compiles to SIMD compares; a `char` scan cost ~10 % of a Sync page).
fn has_control(s: &str) -> bool {
    s.as_bytes().chunks(64).any(|block| {
        block.iter().fold(false, |any, &b| {
            any | ((b < b' ') & (b != b'\t') & (b != b'\n') & (b != b'\r'))
        })
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!("14.1".parse::<Version>().unwrap(), Version::V14_1);
        assert!("2.5".parse::<Version>().is_err());
        assert_eq!(Version::from_tenths(161), Some(Version::V16_1));
        assert!(!Version::V12_1.has_email2());
        assert!(Version::V14_0.has_email2());
        assert!(Version::V16_0.has_drafts());
    }

    proptest::proptest! {
        /// The vendored mail-parser's delimiter search (vendor/mail-parser/PATCHED.md) ends a
        /// part where the original byte walk did and leaves the stream in the same place,
        /// from any start, on input rich in dashes and line breaks.
        #[test]
        fn vendored_mime_part_matches_the_walk(
            data in proptest::collection::vec(proptest::sample::select(b"--\r\nab".to_vec()), 0..40),
            boundary in proptest::sample::select(vec![&b"ab"[..], b"-a", b"b", b"a-b", b"\nab"]),
            start in 0usize..41,
        ) {
            use mail_parser::parsers::MessageStream;
            let start = start.min(data.len());
            let mut fast = MessageStream::new(&data);
            let mut walk = MessageStream::new(&data);
            fast.skip_bytes(start);
            walk.skip_bytes(start);
            proptest::prop_assert_eq!(fast.mime_part(boundary), walk.mime_part_walk(boundary));
            proptest::prop_assert_eq!(fast.offset(), walk.offset());
            proptest::prop_assert_eq!(fast.peek(), walk.peek());
            fast.restore();
            walk.restore();
            proptest::prop_assert_eq!(fast.offset(), walk.offset());
        }
    }

    #[test]
    fn xml_safe_strips_controls_only() {
        assert_eq!(xml_safe("a\u{1}b\tc\r\n"), "ab\tc\r\n");
        assert!(matches!(xml_safe("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(xml_safe_owned("é\u{0}x\u{1f}".into()), "éx");
        let long = format!("{}\u{b}{}", "a".repeat(100), "€".repeat(30));
        assert_eq!(xml_safe(&long), long.replace('\u{b}', ""));
    }
}

//! Body preferences and the body a phone is sent for them.
//!
//! A phone lists the body types it can show, best first, each with an optional truncation size
//! in bytes, an all-or-nothing switch and (14.0+) a preview length. The gateway answers with
//! the first type it can produce; 12.1-era `MIMESupport` can force the full MIME instead.
//! Truncation counts UTF-8 bytes and always cuts on a character boundary, so the Data the phone
//! gets is valid UTF-8 whatever the limit.

use std::borrow::Cow;

/// `airsyncbase:Type`: the format of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// 1: plain text.
    Plain = 1,
    /// 2: HTML.
    Html = 2,
    /// 3: compressed RTF. Never produced: nothing in an IMAP store is RTF, and converting to it
    /// buys nothing over HTML.
    Rtf = 3,
    /// 4: the whole RFC 5322 message.
    Mime = 4,
}

impl BodyType {
    /// From the number on the wire.
    pub fn from_code(code: u8) -> Option<BodyType> {
        match code {
            1 => Some(BodyType::Plain),
            2 => Some(BodyType::Html),
            3 => Some(BodyType::Rtf),
            4 => Some(BodyType::Mime),
            _ => None,
        }
    }

    /// The number on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    fn supported(self) -> bool {
        self != BodyType::Rtf
    }
}

/// One `airsyncbase:BodyPreference` of a Sync, ItemOperations or Search request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPreference {
    /// `Type`.
    pub kind: BodyType,
    /// `TruncationSize` in bytes of the converted body; `None` for no limit.
    pub truncation_size: Option<u32>,
    /// `AllOrNone`: send no Data at all rather than a truncated one.
    pub all_or_none: bool,
    /// `Preview` (14.0+): how many characters of plain-text preview to add, at most 255.
    pub preview: Option<u32>,
}

impl BodyPreference {
    /// A preference for `kind` with no limit and no preview.
    pub fn new(kind: BodyType) -> BodyPreference {
        BodyPreference {
            kind,
            truncation_size: None,
            all_or_none: false,
            preview: None,
        }
    }
}

/// `airsync:MIMESupport`: when the phone wants the whole MIME message instead of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MimeSupport {
    /// 0 (the default): only when a BodyPreference asks for Type 4.
    #[default]
    Never = 0,
    /// 1: for S/MIME messages, which the phone must verify or decrypt itself.
    SmimeOnly = 1,
    /// 2: for every message.
    Always = 2,
}

impl MimeSupport {
    /// From the number on the wire; unknown values are treated as the default.
    pub fn from_code(code: u8) -> MimeSupport {
        match code {
            1 => MimeSupport::SmimeOnly,
            2 => MimeSupport::Always,
            _ => MimeSupport::Never,
        }
    }
}

/// Bytes allowed by a 12.1 `MIMETruncation` code; `None` means no truncation.
pub fn mime_truncation_bytes(code: u8) -> Option<u32> {
    match code {
        0 => Some(0),
        1 => Some(4 * 1024),
        2 => Some(5 * 1024),
        3 => Some(7 * 1024),
        4 => Some(10 * 1024),
        5 => Some(20 * 1024),
        6 => Some(50 * 1024),
        7 => Some(100 * 1024),
        _ => None,
    }
}

/// Picks the body to send.
///
/// The first supported type in the phone's order wins. `MIMESupport` 2, or 1 for an S/MIME
/// message, forces MIME (truncated as the phone's Type 4 preference says, else by the 12.1
/// `MIMETruncation` code); `MIMESupport` 1 keeps a Type 4 preference from applying to ordinary
/// messages. A Type 4 preference with `MIMESupport` 0 is still honoured: the phone asked for it
/// explicitly, which is how iOS fetches the full message it needs for S/MIME or "load all".
/// With no usable preference (12.1 phones may send none, or only RTF) the answer is plain text,
/// which every client shows.
pub fn select(
    prefs: &[BodyPreference],
    mime_support: MimeSupport,
    mime_truncation: Option<u8>,
    is_smime: bool,
) -> BodyPreference {
    let want_mime = match mime_support {
        MimeSupport::Always => true,
        MimeSupport::SmimeOnly => is_smime,
        MimeSupport::Never => false,
    };
    if want_mime {
        return prefs
            .iter()
            .find(|p| p.kind == BodyType::Mime)
            .copied()
            .unwrap_or(BodyPreference {
                truncation_size: mime_truncation.and_then(mime_truncation_bytes),
                ..BodyPreference::new(BodyType::Mime)
            });
    }
    let skip_mime = mime_support == MimeSupport::SmimeOnly && !is_smime;
    prefs
        .iter()
        .find(|p| p.kind.supported() && !(skip_mime && p.kind == BodyType::Mime))
        .copied()
        .unwrap_or_else(|| {
            // Keep the limits of whatever the phone asked for: they say what it can afford.
            let first = prefs.first().copied();
            BodyPreference {
                kind: BodyType::Plain,
                ..first.unwrap_or(BodyPreference::new(BodyType::Plain))
            }
        })
}

/// The body of one item, ready for `airsyncbase:Body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOutput<'a> {
    /// `Type`.
    pub kind: BodyType,
    /// `EstimatedDataSize`: bytes of the whole body in this type, before truncation.
    pub estimated_size: u64,
    /// `Truncated`.
    pub truncated: bool,
    /// `Data`; `None` when AllOrNone refused a truncated body or the limit was zero.
    pub data: Option<Cow<'a, str>>,
    /// `Preview` (14.0+ and only when asked for).
    pub preview: Option<String>,
}

/// Applies a preference's truncation rules to a whole body.
pub(crate) fn truncate<'a>(
    full: Cow<'a, str>,
    pref: &BodyPreference,
) -> (bool, Option<Cow<'a, str>>) {
    let limit = match pref.truncation_size {
        Some(limit) if full.len() > limit as usize => limit as usize,
        _ => return (false, Some(full)),
    };
    if pref.all_or_none || limit == 0 {
        return (true, None);
    }
    let cut = floor_char_boundary(&full, limit);
    let data = match full {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
        Cow::Owned(mut s) => {
            s.truncate(cut);
            Cow::Owned(s)
        }
    };
    (true, Some(data))
}

/// The largest index `<= at` that starts a character (`str::floor_char_boundary` is unstable).
pub(crate) fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    // A UTF-8 character is at most four bytes, so a boundary is at most three steps back.
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

/// The first `chars` characters of `text` with every run of whitespace made one space, as a
/// one-line preview in a message list wants.
pub fn preview(text: &str, chars: u32) -> String {
    let max = chars.min(255) as usize;
    let mut out = String::with_capacity(max.min(text.len()));
    let mut count = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if count >= max {
            break;
        }
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            count += 1;
            pending_space = false;
            if count >= max {
                break;
            }
        }
        out.push(c);
        count += 1;
    }
    let end = out.trim_end().len();
    out.truncate(end);
    out
}

/// Plain text as a small HTML document, for phones that asked for HTML only. Line breaks are
/// kept as `<br>` rather than `<pre>` so long lines still wrap on a narrow screen.
pub fn text_to_html(text: &str) -> String {
    const HEAD: &str = "<html><head><meta charset=\"utf-8\"></head><body>";
    const TAIL: &str = "</body></html>";
    let mut out = String::with_capacity(HEAD.len() + text.len() + text.len() / 16 + TAIL.len());
    out.push_str(HEAD);
    escape_text_into(&mut out, text);
    out.push_str(TAIL);
    out
}

/// Appends plain text as HTML text: `& < > "` escaped, line breaks as `<br>`, CRs dropped.
pub(crate) fn escape_text_into(out: &mut String, text: &str) {
    // Runs between the few bytes that need escaping are copied whole. Each 32-byte block is
    // tested at once (a mask the compiler builds with SIMD compares) and only its marked bytes
    // are visited: every byte that needs escaping is ASCII, so this never splits a UTF-8
    // sequence. (A byte-at-a-time loop was ~20 % of a Sync page's CPU; `cargo bench --bench
    // render`.)
    let bytes = text.as_bytes();
    let mut run = 0;
    let mut emit = |out: &mut String, j: usize| {
        let escaped = match bytes[j] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\r' => "",
            _ => "<br>\n",
        };
        out.push_str(&text[run..j]);
        out.push_str(escaped);
        run = j + 1;
    };
    let mut blocks = bytes.chunks_exact(BLOCK);
    for (n, block) in blocks.by_ref().enumerate() {
        let mut mask = 0u32;
        for (k, &b) in block.iter().enumerate() {
            mask |= u32::from(needs_escape(b)) << k;
        }
        while mask != 0 {
            emit(out, n * BLOCK + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
    }
    let tail = bytes.len() - blocks.remainder().len();
    for (k, &b) in blocks.remainder().iter().enumerate() {
        if needs_escape(b) {
            emit(out, tail + k);
        }
    }
    out.push_str(&text[run..]);
}

const BLOCK: usize = 32;

/// Written with `|` rather than `matches!` so the block test compiles to SIMD compares.
#[inline(always)]
fn needs_escape(b: u8) -> bool {
    (b == b'&') | (b == b'<') | (b == b'>') | (b == b'"') | (b == b'\r') | (b == b'\n')
}

#[cfg(test)]
mod test {
    use super::*;

    fn pref(kind: BodyType, truncation: Option<u32>) -> BodyPreference {
        BodyPreference {
            truncation_size: truncation,
            ..BodyPreference::new(kind)
        }
    }

    #[test]
    fn first_supported_preference_wins() {
        let prefs = [
            pref(BodyType::Rtf, None),
            pref(BodyType::Html, Some(10)),
            pref(BodyType::Plain, None),
        ];
        assert_eq!(
            select(&prefs, MimeSupport::Never, None, false),
            pref(BodyType::Html, Some(10))
        );
        assert_eq!(
            select(&[], MimeSupport::Never, None, false).kind,
            BodyType::Plain
        );
        let only_rtf = [pref(BodyType::Rtf, Some(7))];
        assert_eq!(
            select(&only_rtf, MimeSupport::Never, None, false),
            pref(BodyType::Plain, Some(7))
        );
    }

    #[test]
    fn mime_support_rules() {
        let prefs = [pref(BodyType::Mime, Some(100)), pref(BodyType::Html, None)];
        // SMIME-only: ordinary mail skips the MIME preference, S/MIME mail takes it.
        assert_eq!(
            select(&prefs, MimeSupport::SmimeOnly, None, false).kind,
            BodyType::Html
        );
        assert_eq!(
            select(&prefs, MimeSupport::SmimeOnly, None, true),
            pref(BodyType::Mime, Some(100))
        );
        // Always: MIME even without a Type 4 preference, truncated by MIMETruncation.
        let html = [pref(BodyType::Html, None)];
        assert_eq!(
            select(&html, MimeSupport::Always, Some(1), false),
            pref(BodyType::Mime, Some(4096))
        );
        assert_eq!(
            select(&html, MimeSupport::Always, Some(8), false),
            pref(BodyType::Mime, None)
        );
        // Never: an explicit Type 4 preference is still honoured.
        assert_eq!(
            select(&prefs, MimeSupport::Never, None, false).kind,
            BodyType::Mime
        );
    }

    #[test]
    fn truncation_on_char_boundary() {
        let text = "aé日😀"; // 1 + 2 + 3 + 4 bytes
        for limit in 0..=10u32 {
            let (truncated, data) = truncate(text.into(), &pref(BodyType::Plain, Some(limit)));
            assert_eq!(truncated, limit < 10);
            let data = data.map(|d| d.into_owned()).unwrap_or_default();
            assert!(data.len() <= limit as usize);
            assert!(text.starts_with(&data));
        }
        let (_, data) = truncate(text.into(), &pref(BodyType::Plain, Some(5)));
        assert_eq!(data.as_deref(), Some("aé"));
        let all_or_none = BodyPreference {
            all_or_none: true,
            ..pref(BodyType::Plain, Some(5))
        };
        assert_eq!(truncate(text.into(), &all_or_none), (true, None));
        assert_eq!(
            truncate(
                text.into(),
                &BodyPreference {
                    truncation_size: Some(10),
                    ..all_or_none
                }
            ),
            (false, Some(text.into()))
        );
    }

    #[test]
    fn preview_collapses_whitespace() {
        assert_eq!(
            preview("  Hello,\r\n\r\n  world\t!  ", 255),
            "Hello, world !"
        );
        assert_eq!(preview("abc def", 4), "abc");
        assert_eq!(preview("日本語のテキスト", 3), "日本語");
        assert_eq!(preview(&"x".repeat(1000), 1000).len(), 255);
    }

    #[test]
    fn text_to_html_escapes() {
        let html = text_to_html("a<b> & \"c\"\r\nnext");
        assert!(html.contains("a&lt;b&gt; &amp; &quot;c&quot;<br>\nnext"));
    }

    /// The block scan gives what escaping one character at a time gives, wherever the
    /// special bytes fall relative to the 32-byte blocks (and between multi-byte characters).
    fn text_to_html_reference(text: &str) -> String {
        let mut out = String::from("<html><head><meta charset=\"utf-8\"></head><body>");
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\r' => {}
                '\n' => out.push_str("<br>\n"),
                c => out.push(c),
            }
        }
        out.push_str("</body></html>");
        out
    }

    proptest::proptest! {
        #[test]
        fn text_to_html_matches_reference(text in "[a-z&<>\"\r\n é€😀]{0,200}") {
            proptest::prop_assert_eq!(text_to_html(&text), text_to_html_reference(&text));
        }
    }
}

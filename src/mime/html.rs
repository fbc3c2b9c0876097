//! HTML made readable as plain text, for phones that asked for plain text of an HTML-only
//! message and for previews.
//!
//! Not a renderer: it keeps the text, turns block structure into line breaks, drops what is
//! never shown (scripts, styles, comments, the title) and decodes the entities mail actually
//! uses. mail-parser's own converter runs headings and paragraphs together ("DigestFirst
//! item"), which is what a one-line preview shows first. Linear in the input, no allocation per
//! tag, and total: any string in, some text out.

/// Elements whose content is never displayed.
const HIDDEN: &[&str] = &["script", "style", "title", "head", "template"];
/// Elements that end a line.
const LINE: &[&str] = &[
    "div",
    "tr",
    "li",
    "dt",
    "dd",
    "ul",
    "ol",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "form",
    "address",
    "figure",
    "figcaption",
    "center",
    "caption",
];
/// Elements set off by a blank line.
const PARAGRAPH: &[&str] = &[
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
];

/// Converts HTML to readable plain text.
pub fn html_to_text(html: &str) -> String {
    let mut out = Text::new(html.len() / 2);
    let mut rest = html;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            out.push_text(rest);
            break;
        };
        out.push_text(&rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |i| &after[i + 3..]);
            continue;
        }
        let Some(tag) = Tag::parse(rest) else {
            // A '<' that starts no tag ("a < b") is text.
            out.push_text("<");
            rest = &rest[1..];
            continue;
        };
        rest = &rest[tag.len..];
        let name = tag.name.as_str();
        if !tag.closing && HIDDEN.contains(&name) {
            rest = skip_element(rest, name);
            continue;
        }
        match name {
            "br" => out.line_break(),
            "pre" => {
                out.pre = !tag.closing;
                out.block(2);
            }
            "li" if !tag.closing => {
                out.block(1);
                out.push_raw("- ");
            }
            "td" | "th" if tag.closing => out.push_raw("\t"),
            _ if PARAGRAPH.contains(&name) => out.block(2),
            _ if LINE.contains(&name) => out.block(1),
            _ => {}
        }
    }
    out.finish()
}

/// Everything after the end tag of a hidden element; the rest of the document when the end
/// tag is missing, as browsers do for an unclosed `<script>`.
fn skip_element<'h>(rest: &'h str, name: &str) -> &'h str {
    let mut from = 0;
    while let Some(i) = rest[from..].find("</") {
        let at = from + i;
        let candidate = &rest[at + 2..];
        if candidate.len() >= name.len()
            && candidate.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return candidate.find('>').map_or("", |j| &candidate[j + 1..]);
        }
        from = at + 2;
    }
    ""
}

/// A start or end tag (or `<!DOCTYPE>`, `<?xml?>`, which have no name we act on).
struct Tag {
    name: String,
    closing: bool,
    /// Bytes from `<` to `>` inclusive.
    len: usize,
}

impl Tag {
    fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let mut i = 1;
        let closing = b.get(i) == Some(&b'/');
        if closing {
            i += 1;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b':') {
            i += 1;
        }
        let named = i > start && b[start].is_ascii_alphabetic();
        if !named && !matches!(b.get(start), Some(b'!' | b'?')) {
            return None;
        }
        let name = s[start..i].to_ascii_lowercase();
        // Find the closing '>' outside quoted attribute values.
        let mut quote = None;
        while i < b.len() {
            match (quote, b[i]) {
                (None, b'>') => {
                    return Some(Tag {
                        name,
                        closing,
                        len: i + 1,
                    });
                }
                (None, q @ (b'"' | b'\'')) => quote = Some(q),
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            i += 1;
        }
        // An unterminated tag swallows the rest, as in a browser.
        Some(Tag {
            name,
            closing,
            len: b.len(),
        })
    }
}

/// The output with whitespace collapsed the way HTML renders it.
struct Text {
    out: String,
    pending_space: bool,
    pre: bool,
}

impl Text {
    fn new(capacity: usize) -> Text {
        Text {
            out: String::with_capacity(capacity),
            pending_space: false,
            pre: false,
        }
    }

    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let decoded = decode_entities(text);
        for c in decoded.chars() {
            if self.pre {
                self.out.push(c);
            } else if c.is_whitespace() && c != '\u{a0}' {
                self.pending_space = true;
            } else {
                let at_line_start = self.out.is_empty() || self.out.ends_with('\n');
                if self.pending_space && !at_line_start {
                    self.out.push(' ');
                }
                self.pending_space = false;
                self.out.push(if c == '\u{a0}' { ' ' } else { c });
            }
        }
    }

    fn push_raw(&mut self, s: &str) {
        self.pending_space = false;
        self.out.push_str(s);
    }

    fn line_break(&mut self) {
        self.trim_line_end();
        self.out.push('\n');
        self.pending_space = false;
    }

    /// Ends the current line and leaves `lines - 1` empty lines, without piling up breaks
    /// when blocks nest or follow each other.
    fn block(&mut self, lines: usize) {
        self.pending_space = false;
        if self.out.is_empty() {
            return;
        }
        self.trim_line_end();
        let have = self.out.len() - self.out.trim_end_matches('\n').len();
        for _ in have..lines {
            self.out.push('\n');
        }
    }

    fn trim_line_end(&mut self) {
        let end = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(end);
    }

    fn finish(mut self) -> String {
        let end = self.out.trim_end().len();
        self.out.truncate(end);
        self.out
    }
}

/// Makes a `<meta>` charset declaration say UTF-8. The HTML has been converted to UTF-8, and
/// a phone that renders it in a web view would otherwise believe a stale
/// `<meta charset="iso-8859-1">` and show mojibake. Only the head is searched: a declaration
/// later in the document has no effect on a browser either.
pub fn declare_utf8(html: &str) -> std::borrow::Cow<'_, str> {
    const HEAD: usize = 4096;
    let head = &html.as_bytes()[..html.len().min(HEAD)];
    let mut from = 0;
    while let Some(i) = find_ascii_ci(&head[from..], b"<meta") {
        let tag_start = from + i;
        // An unterminated tag is not a declaration a browser would act on.
        let Some(tag_end) = head[tag_start..].iter().position(|&b| b == b'>') else {
            break;
        };
        let tag_end = tag_start + tag_end;
        if let Some(j) = find_ascii_ci(&head[tag_start..tag_end], b"charset=") {
            let value_start = tag_start + j + b"charset=".len();
            let skip_quote = usize::from(matches!(head.get(value_start), Some(b'"' | b'\'')));
            let value_start = value_start + skip_quote;
            let value_end = head[value_start..tag_end]
                .iter()
                .position(|&b| matches!(b, b'"' | b'\'' | b';' | b' ' | b'/' | b'>'))
                .map_or(tag_end, |e| value_start + e);
            let value = &html[value_start..value_end];
            if value.is_empty() || value.eq_ignore_ascii_case("utf-8") {
                return html.into();
            }
            return format!("{}utf-8{}", &html[..value_start], &html[value_end..]).into();
        }
        from = tag_end;
    }
    html.into()
}

fn find_ascii_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // Candidates start with the needle's first byte in either case; memchr finds those at
    // SIMD speed (a `windows` scan of a 4 KB head was ~5 % of a Sync page).
    let (&first, rest) = needle.split_first()?;
    memchr::memchr2_iter(
        first.to_ascii_lowercase(),
        first.to_ascii_uppercase(),
        haystack,
    )
    .find(|&i| {
        haystack
            .get(i + 1..i + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    })
}

/// Decodes `&name;`, `&#123;` and `&#x7B;`; anything else stays as written.
pub(crate) fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Entity names are short; a longer run is not an entity.
        let semi = rest.as_bytes().iter().take(12).position(|&b| b == b';');
        let decoded = semi.and_then(|semi| entity(&rest[1..semi]).map(|c| (c, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        // NUL and surrogates are not characters; U+FFFD is what a browser shows.
        return Some(
            char::from_u32(code)
                .filter(|&c| c != '\0')
                .unwrap_or('\u{fffd}'),
        );
    }
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "ensp" | "emsp" | "thinsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "deg" => '°',
        "times" => '×',
        "divide" => '÷',
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        "szlig" => 'ß',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "ccedil" => 'ç',
        _ => return None,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn blocks_become_lines() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
                    <h1>Digest</h1><p>First&nbsp;item &amp; <b>second</b>\n   item.</p>\
                    <ul><li>one</li><li>two</li></ul>line<br>break<div>div</div>\
                    <!-- hidden --><script>alert('<p>')</script>end</body></html>";
        assert_eq!(
            html_to_text(html),
            "Digest\n\nFirst item & second item.\n\n- one\n- two\nline\nbreak\ndiv\nend"
        );
    }

    #[test]
    fn pre_keeps_whitespace_and_tables_get_tabs() {
        assert_eq!(html_to_text("<pre>a  b\n c</pre>x"), "a  b\n c\n\nx");
        assert_eq!(
            html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>"),
            "a\tb\nc"
        );
    }

    #[test]
    fn meta_charset_says_utf8() {
        assert_eq!(
            declare_utf8("<html><head><META charset=\"ISO-8859-1\"></head>"),
            "<html><head><META charset=\"utf-8\"></head>"
        );
        assert_eq!(
            declare_utf8(
                "<meta name=x><meta http-equiv=\"Content-Type\" content=\"text/html; charset=windows-1252\">"
            ),
            "<meta name=x><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">"
        );
        assert_eq!(
            declare_utf8("<meta charset=big5>x"),
            "<meta charset=utf-8>x"
        );
        for unchanged in [
            "<p>charset=latin1</p>",
            "<meta charset=\"utf-8\">",
            "<meta",
            "é<meta charset=",
            "<meta charset=>",
        ] {
            assert!(
                matches!(declare_utf8(unchanged), std::borrow::Cow::Borrowed(_)),
                "{unchanged}"
            );
        }
    }

    #[test]
    fn broken_html_is_still_text() {
        assert_eq!(html_to_text("a < b and c > d"), "a < b and c > d");
        assert_eq!(html_to_text("x<script>never closed"), "x");
        assert_eq!(html_to_text("x<b class=\"a>b\">y</b>"), "xy");
        assert_eq!(html_to_text("x<a href='"), "x");
        assert_eq!(html_to_text("<!-- unclosed"), "");
        assert_eq!(
            html_to_text("&bogus; &#xD800; &#65; &amp"),
            "&bogus; \u{fffd} A &amp"
        );
        assert_eq!(html_to_text("日本<br>語"), "日本\n語");
    }
}

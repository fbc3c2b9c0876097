//! Building command lines: how each argument is written on the wire (RFC 3501 §4).
//!
//! A string argument goes out as an atom when it can, as a quoted string when it is 7-bit
//! text, and as a literal (`{n}` CRLF bytes) otherwise, e.g. a password with non-ASCII
//! characters. Literals are kept as separate parts because sending one may require waiting for
//! the server's `+` (see [`super::session`]). Arguments that are passed through verbatim (UID
//! sets, STORE items, flags) are checked here, so a CR/LF from a caller can never end the
//! command early and smuggle in another one.

use std::borrow::Cow;

use super::error::ImapError;
use super::utf7;

/// One piece of a command: protocol text, or literal data to announce with `{n}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<'a> {
    Text(Vec<u8>),
    Literal(Cow<'a, [u8]>),
}

/// A command without its tag; the session adds the tag when it sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Command<'a> {
    /// The command name, the only part that is ever logged.
    pub name: &'static str,
    pub parts: Vec<Part<'a>>,
    /// Set right after an opening parenthesis: the next argument follows without a space.
    glued: bool,
}

impl<'a> Command<'a> {
    pub fn new(name: &'static str) -> Self {
        Command {
            name,
            parts: vec![Part::Text(name.as_bytes().to_vec())],
            glued: false,
        }
    }

    /// The space before the next argument (none right after `(`).
    fn sep(&mut self) {
        if std::mem::take(&mut self.glued) {
            self.text();
        } else {
            self.text().push(b' ');
        }
    }

    /// SP `(`: the start of a parenthesized group of arguments.
    pub fn open_paren(mut self) -> Self {
        self.sep();
        self.text().push(b'(');
        self.glued = true;
        self
    }

    /// `)`: the end of the group [`Command::open_paren`] began.
    pub fn close_paren(mut self) -> Self {
        self.glued = false;
        self.text().push(b')');
        self
    }

    fn text(&mut self) -> &mut Vec<u8> {
        if !matches!(self.parts.last(), Some(Part::Text(_))) {
            self.parts.push(Part::Text(Vec::new()));
        }
        match self.parts.last_mut() {
            Some(Part::Text(t)) => t,
            _ => unreachable!("a text part was just ensured"),
        }
    }

    /// SP and protocol text the caller has already validated (keywords, numbers, sets).
    pub fn raw(mut self, s: &str) -> Self {
        self.sep();
        self.text().extend_from_slice(s.as_bytes());
        self
    }

    /// SP and a string argument in the cheapest form that carries it exactly.
    pub fn astring(mut self, value: &'a [u8]) -> Self {
        self.sep();
        match string_form(value) {
            Form::Atom => self.text().extend_from_slice(value),
            Form::Quoted => push_quoted(self.text(), value),
            Form::Literal => self.parts.push(Part::Literal(Cow::Borrowed(value))),
        }
        self
    }

    /// SP and a mailbox name, encoded to modified UTF-7. The result is always 7-bit, so it
    /// never needs a literal.
    pub fn mailbox(mut self, name: &str) -> Self {
        let wire = utf7::encode(name);
        self.sep();
        let t = self.text();
        if string_form(wire.as_bytes()) == Form::Atom {
            t.extend_from_slice(wire.as_bytes());
        } else {
            push_quoted(t, wire.as_bytes());
        }
        self
    }

    /// SP and literal data (APPEND's message).
    pub fn literal(mut self, data: &'a [u8]) -> Self {
        self.sep();
        self.parts.push(Part::Literal(Cow::Borrowed(data)));
        self
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Form {
    Atom,
    Quoted,
    Literal,
}

fn string_form(value: &[u8]) -> Form {
    if !value.is_empty() && value.iter().all(|&b| is_atom_char(b)) {
        Form::Atom
    } else if value
        .iter()
        .all(|&b| matches!(b, 0x01..=0x7f) && b != b'\r' && b != b'\n')
    {
        Form::Quoted
    } else {
        Form::Literal
    }
}

/// ATOM-CHAR, 7-bit only (we never send 8-bit atoms).
fn is_atom_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e) && !b"(){%*\"\\]".contains(&b)
}

fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Checks a UID or sequence set (`1`, `1:5`, `3,7:*`).
pub(crate) fn check_set(set: &str) -> Result<&str, ImapError> {
    let ok = !set.is_empty()
        && set.split(',').all(|range| {
            let mut ends = range.splitn(2, ':');
            ends.all(|n| n == "*" || (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        });
    if ok {
        Ok(set)
    } else {
        Err(ImapError::InvalidArgument(format!(
            "not a UID set: {set:?}"
        )))
    }
}

/// Checks text passed through verbatim (a STORE item such as `+FLAGS.SILENT (\Seen)`):
/// printable 7-bit only, and no `{` so it cannot announce a literal.
pub(crate) fn check_verbatim<'s>(what: &str, s: &'s str) -> Result<&'s str, ImapError> {
    if !s.is_empty() && s.bytes().all(|b| matches!(b, 0x20..=0x7e) && b != b'{') {
        Ok(s)
    } else {
        Err(ImapError::InvalidArgument(format!(
            "{what} must be printable ASCII without `{{`"
        )))
    }
}

/// Checks a flag (`\Seen`, `$Forwarded`): an optional backslash and an atom.
pub(crate) fn check_flag(flag: &str) -> Result<&str, ImapError> {
    let atom = flag.strip_prefix('\\').unwrap_or(flag);
    if !atom.is_empty() && atom.bytes().all(is_atom_char) {
        Ok(flag)
    } else {
        Err(ImapError::InvalidArgument(format!("not a flag: {flag:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(c: &Command<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for p in &c.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Literal(l) => {
                    out.extend_from_slice(format!("{{{}}}\r\n", l.len()).as_bytes());
                    out.extend_from_slice(l);
                }
            }
        }
        out
    }

    #[test]
    fn strings_take_the_cheapest_exact_form() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"alice@example.com", b"LOGIN alice@example.com"),
            (b"", b"LOGIN \"\""),
            (b"two words", b"LOGIN \"two words\""),
            (b"q\"b\\s", b"LOGIN \"q\\\"b\\\\s\""),
            (b"a]b", b"LOGIN \"a]b\""),
            (b"NIL", b"LOGIN NIL"),
            ("pässword".as_bytes(), b"LOGIN {9}\r\np\xc3\xa4ssword"),
            (b"line\r\nbreak", b"LOGIN {11}\r\nline\r\nbreak"),
        ];
        for (value, want) in cases {
            let c = Command::new("LOGIN").astring(value);
            assert_eq!(
                String::from_utf8_lossy(&wire(&c)),
                String::from_utf8_lossy(want)
            );
        }
    }

    #[test]
    fn mailboxes_are_encoded_and_quoted_when_needed() {
        let c = Command::new("CREATE").mailbox("Projekte/Entwürfe");
        assert_eq!(wire(&c), b"CREATE Projekte/Entw&APw-rfe");
        let c = Command::new("RENAME").mailbox("A b").mailbox("*%");
        assert_eq!(wire(&c), b"RENAME \"A b\" \"*%\"");
        let c = Command::new("LIST").mailbox("").raw("*");
        assert_eq!(wire(&c), b"LIST \"\" *");
    }

    #[test]
    fn literal_parts_are_separate() {
        let c = Command::new("APPEND")
            .mailbox("INBOX")
            .raw("(\\Seen)")
            .literal(b"msg");
        assert_eq!(
            c.parts,
            vec![
                Part::Text(b"APPEND INBOX (\\Seen) ".to_vec()),
                Part::Literal(Cow::Borrowed(b"msg")),
            ]
        );
    }

    #[test]
    fn verbatim_arguments_are_checked() {
        for ok in ["1", "1:5", "3,7:*", "*", "1,2,3"] {
            assert!(check_set(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1:",
            ":1",
            "1 2",
            "1\r\nA2 LOGOUT",
            "a",
            "1,,2",
            "1:2:3",
        ] {
            assert!(check_set(bad).is_err(), "{bad:?}");
        }
        assert!(check_verbatim("item", "+FLAGS.SILENT (\\Seen $Forwarded)").is_ok());
        assert!(check_verbatim("item", "+FLAGS (\\Seen)\r\nA9 DELETE INBOX").is_err());
        assert!(check_verbatim("item", "+FLAGS {5}").is_err());
        assert!(check_flag("\\Seen").is_ok());
        assert!(check_flag("$Forwarded").is_ok());
        for bad in ["", "\\", "a b", "(x", "\\Seen)"] {
            assert!(check_flag(bad).is_err(), "{bad:?}");
        }
    }
}

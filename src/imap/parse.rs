//! The response parser: the bytes of one framed response ([`super::frame`]) in, a
//! [`Response`] out (RFC 3501 §9 grammar, plus the codes and responses of the extensions we
//! use).
//!
//! It works on a byte slice with a cursor and never panics, whatever the bytes: the
//! table-driven and randomized tests below feed it garbage. It is lenient where real servers
//! are sloppy (a missing text after a status, a bare LF, 8-bit bytes in atoms and quoted
//! strings from servers in UTF-8 mode, unknown or malformed response codes kept as
//! [`Code::Other`]) and strict where a mistake would misplace data (literal lengths, quoting).

use super::frame;
use super::mailbox::Mailbox;
use super::response::{Code, ESearch, Response, Status, Tagged, Untagged, Value};
use super::set::{self, SequenceSet};

/// Lists may nest at most this deep; deeper input is refused instead of exhausting the stack.
const MAX_DEPTH: usize = 64;

/// Where and why a response could not be parsed. Shows the response kind (`* LIST`), never
/// its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} at byte {at} of a `{kind}` response")]
pub struct ParseError {
    pub expected: &'static str,
    pub at: usize,
    pub kind: String,
}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses one complete response (as delimited by [`frame::response_len`], CRLF included).
pub fn response(buf: &[u8]) -> Result<Response> {
    let mut c = Cursor { b: buf, pos: 0 };
    c.response().map_err(|e| ParseError {
        kind: kind_of(buf),
        ..e
    })
}

/// The first one or two words (`*`, `A12`, `LIST`, `FETCH`), safe to log: only tags, numbers
/// and keywords, never names or message data.
fn kind_of(buf: &[u8]) -> String {
    let mut words = buf
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    let mut kind = word(first);
    if first == b"*" {
        let mut second = words.next().unwrap_or_default();
        if second.iter().all(u8::is_ascii_digit) {
            // `* 12 FETCH`: the keyword follows the number.
            second = words.next().unwrap_or_default();
        }
        kind.push(' ');
        kind.push_str(&word(second));
    }
    kind
}

fn word(w: &[u8]) -> String {
    w.iter()
        .take(16)
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"*+-=.".contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

fn is_atom_char(b: u8) -> bool {
    // ATOM-CHAR is any CHAR except atom-specials: ( ) { SP CTL % * " \ ]. 8-bit bytes are
    // accepted too (quirk: servers in UTF-8 mode send raw UTF-8 names).
    !matches!(
        b,
        b'(' | b')' | b'{' | b' ' | 0x00..=0x1f | 0x7f | b'%' | b'*' | b'"' | b'\\' | b']'
    )
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl<'a> Cursor<'a> {
    fn err<T>(&self, expected: &'static str) -> Result<T> {
        Err(ParseError {
            expected,
            at: self.pos,
            kind: String::new(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn sp(&mut self) -> Result<()> {
        self.expect(b' ', "a space")
    }

    fn at_eol(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r') | Some(b'\n'))
    }

    /// The end of the response: CRLF (or LF) and nothing after it.
    fn eol(&mut self) -> Result<()> {
        self.eat(b'\r');
        if !self.eat(b'\n') && self.pos < self.b.len() {
            return self.err("the end of the line");
        }
        if self.pos != self.b.len() {
            return self.err("the end of the response");
        }
        Ok(())
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.b[start..self.pos]
    }

    /// Everything up to the end of the line (human-readable text).
    fn text(&mut self) -> String {
        lossy(self.take_while(|b| b != b'\r' && b != b'\n'))
    }

    fn atom(&mut self) -> Result<&'a [u8]> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            self.err("an atom")
        } else {
            Ok(a)
        }
    }

    /// An atom as an upper-case keyword, for matching response names.
    fn keyword(&mut self) -> Result<String> {
        Ok(lossy(self.atom()?).to_ascii_uppercase())
    }

    fn number64(&mut self) -> Result<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return self.err("a number");
        }
        digits
            .iter()
            .try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .map_or_else(|| self.err("a number that fits 64 bits"), Ok)
    }

    fn number(&mut self) -> Result<u32> {
        let n = self.number64()?;
        u32::try_from(n).or_else(|_| self.err("a number that fits 32 bits"))
    }

    fn quoted(&mut self) -> Result<Vec<u8>> {
        self.expect(b'"', "a quoted string")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b) if b != b'\r' && b != b'\n' => {
                            out.push(b);
                            self.pos += 1;
                        }
                        _ => return self.err("an escaped character"),
                    }
                }
                Some(b'\r' | b'\n') | None => return self.err("the closing quote"),
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}` CRLF and n bytes (also `~{n}` from BINARY and `{n+}`).
    fn literal(&mut self) -> Result<&'a [u8]> {
        self.eat(b'~');
        self.expect(b'{', "a literal")?;
        let n = self.number()? as usize;
        self.eat(b'+');
        self.expect(b'}', "the end of a literal length")?;
        self.eat(b'\r');
        self.expect(b'\n', "a line break after a literal length")?;
        let Some(data) = self.b.get(self.pos..self.pos + n) else {
            return self.err("as many literal bytes as announced");
        };
        self.pos += n;
        Ok(data)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{' | b'~') => Ok(self.literal()?.to_vec()),
            _ => self.err("a string"),
        }
    }

    fn astring(&mut self) -> Result<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{' | b'~') => self.string(),
            _ => {
                let a = self.take_while(is_astring_char);
                if a.is_empty() {
                    self.err("a string or atom")
                } else {
                    Ok(a.to_vec())
                }
            }
        }
    }

    fn is_nil(&self) -> bool {
        self.b
            .get(self.pos..self.pos + 3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"NIL"))
            && !self.b.get(self.pos + 3).copied().is_some_and(is_atom_char)
    }

    /// A flag or mailbox attribute: `\Seen`, `\*`, or a keyword atom like `$Forwarded`.
    fn flag(&mut self) -> Result<String> {
        let start = self.pos;
        let system = self.eat(b'\\');
        if !(system && self.eat(b'*')) {
            self.atom()?;
        }
        Ok(lossy(&self.b[start..self.pos]))
    }

    /// `(` [flag *(SP flag)] `)`.
    fn flag_list(&mut self) -> Result<Vec<String>> {
        self.expect(b'(', "a parenthesized flag list")?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.sp()?;
        }
    }

    /// Space-separated atoms to the end of the line or a `]`.
    fn atoms(&mut self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while self.eat(b' ') {
            if self.at_eol() || self.peek() == Some(b']') {
                break; // Tolerate a trailing space.
            }
            out.push(lossy(self.atom()?));
        }
        Ok(out)
    }

    fn response(&mut self) -> Result<Response> {
        if self.eat(b'+') {
            self.eat(b' ');
            let text = self.text();
            self.eol()?;
            return Ok(Response::Continue { text });
        }
        if self.eat(b'*') {
            self.sp()?;
            let u = self.untagged()?;
            self.eol()?;
            return Ok(Response::Untagged(u));
        }
        let tag = self.take_while(|b| is_astring_char(b) && b != b'+');
        if tag.is_empty() {
            return self.err("`*`, `+` or a tag");
        }
        let tag = lossy(tag);
        self.sp()?;
        let Some(status) = self.status()? else {
            return self.err("OK, NO or BAD");
        };
        let (code, text) = self.resp_text()?;
        self.eol()?;
        Ok(Response::Tagged(Tagged {
            tag,
            status,
            code,
            text,
        }))
    }

    /// OK/NO/BAD, or `None` (cursor unmoved) for another word.
    fn status(&mut self) -> Result<Option<Status>> {
        let start = self.pos;
        let status = match self.keyword()?.as_str() {
            "OK" => Status::Ok,
            "NO" => Status::No,
            "BAD" => Status::Bad,
            _ => {
                self.pos = start;
                return Ok(None);
            }
        };
        Ok(Some(status))
    }

    fn untagged(&mut self) -> Result<Untagged> {
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return self.message_data();
        }
        if let Some(status) = self.status()? {
            let (code, text) = self.resp_text()?;
            return Ok(Untagged::Status { status, code, text });
        }
        let name = self.keyword()?;
        Ok(match name.as_str() {
            "PREAUTH" => {
                let (code, text) = self.resp_text()?;
                Untagged::PreAuth { code, text }
            }
            "BYE" => {
                let (code, text) = self.resp_text()?;
                Untagged::Bye { code, text }
            }
            "CAPABILITY" => Untagged::Capability(self.atoms()?),
            "ENABLED" => Untagged::Enabled(self.atoms()?),
            "LIST" => Untagged::List(self.mailbox_list()?),
            "LSUB" => Untagged::Lsub(self.mailbox_list()?),
            "FLAGS" => {
                self.sp()?;
                Untagged::Flags(self.flag_list()?)
            }
            "SEARCH" => self.search()?,
            // The same number list as SEARCH (a CONDSTORE MODSEQ suffix is dropped).
            "SORT" => match self.search()? {
                Untagged::Search { ids, .. } => Untagged::Sort(ids),
                other => other,
            },
            "ESEARCH" => Untagged::ESearch(self.esearch()?),
            "VANISHED" => self.vanished()?,
            "STATUS" => self.status_data()?,
            _ => {
                self.eat(b' ');
                let rest = self.rest();
                Untagged::Other {
                    name,
                    number: None,
                    rest,
                }
            }
        })
    }

    /// The bytes to the final line break, literals included.
    fn rest(&mut self) -> Vec<u8> {
        let end = frame::trim_eol(&self.b[self.pos..]).len() + self.pos;
        let rest = self.b[self.pos..end].to_vec();
        self.pos = end;
        rest
    }

    /// `n EXISTS`, `n RECENT`, `n EXPUNGE`, `n FETCH (…)`.
    fn message_data(&mut self) -> Result<Untagged> {
        let n = self.number()?;
        self.sp()?;
        let name = self.keyword()?;
        Ok(match name.as_str() {
            "EXISTS" => Untagged::Exists(n),
            "RECENT" => Untagged::Recent(n),
            "EXPUNGE" => Untagged::Expunge(n),
            "FETCH" => {
                self.sp()?;
                let items = self.list_items(0)?;
                Untagged::Fetch { seq: n, items }
            }
            _ => {
                self.eat(b' ');
                let rest = self.rest();
                Untagged::Other {
                    name,
                    number: Some(n),
                    rest,
                }
            }
        })
    }

    /// `SEARCH *(SP nz-number) [SP "(" "MODSEQ" SP mod-sequence-value ")"]`.
    fn search(&mut self) -> Result<Untagged> {
        let mut ids = Vec::new();
        let mut modseq = None;
        while self.eat(b' ') {
            if self.at_eol() {
                break;
            }
            if self.eat(b'(') {
                if self.keyword()? != "MODSEQ" {
                    return self.err("MODSEQ");
                }
                self.sp()?;
                modseq = Some(self.number64()?);
                self.expect(b')', "`)` after MODSEQ")?;
                break;
            }
            ids.push(self.number()?);
        }
        Ok(Untagged::Search { ids, modseq })
    }

    /// `SP mailbox SP "(" [status-att SP number *(SP status-att SP number)] ")"`.
    fn status_data(&mut self) -> Result<Untagged> {
        self.sp()?;
        let raw_name = lossy(&self.astring()?);
        self.sp()?;
        self.expect(b'(', "a parenthesized status list")?;
        let mut items = Vec::new();
        while !self.eat(b')') {
            if !items.is_empty() {
                self.sp()?;
            }
            let name = self.keyword()?;
            self.sp()?;
            items.push((name, self.number64()?));
        }
        // Quirk: some servers end the line with a space.
        self.eat(b' ');
        let name = super::utf7::decode(&raw_name).unwrap_or_else(|_| raw_name.clone());
        Ok(Untagged::MailboxStatus {
            name,
            raw_name,
            items,
        })
    }

    /// `(attributes) SP delimiter SP mailbox [SP extended-data]` (RFC 3501, RFC 5258).
    fn mailbox_list(&mut self) -> Result<Mailbox> {
        self.sp()?;
        let attributes = self.flag_list()?;
        self.sp()?;
        let delimiter = if self.is_nil() {
            self.pos += 3;
            None
        } else {
            let d = self.quoted()?;
            match std::str::from_utf8(&d).ok().map(|s| s.chars()) {
                Some(mut chars) => match (chars.next(), chars.next()) {
                    (Some(ch), None) => Some(ch),
                    _ => return self.err("a one-character delimiter"),
                },
                None => return self.err("a one-character delimiter"),
            }
        };
        self.sp()?;
        let raw_name = lossy(&self.astring()?);
        if self.eat(b' ') {
            // LIST-EXTENDED data such as ("CHILDINFO" ("SUBSCRIBED")) or ("OLDNAME" (…)):
            // parsed so its syntax is checked, not kept yet.
            self.list(0)?;
        }
        Ok(Mailbox::from_wire(raw_name, delimiter, attributes))
    }

    /// `[ "[" code "]" SP ] text`; the text may be missing entirely (quirk of some servers).
    fn resp_text(&mut self) -> Result<(Option<Code>, String)> {
        if !self.eat(b' ') {
            if self.at_eol() {
                return Ok((None, String::new()));
            }
            return self.err("a space");
        }
        let mut code = None;
        if self.eat(b'[') {
            code = Some(self.code()?);
            self.expect(b']', "`]` after a response code")?;
            self.eat(b' ');
        }
        Ok((code, self.text()))
    }

    /// A response code; known codes that do not parse fall back to [`Code::Other`].
    fn code(&mut self) -> Result<Code> {
        let start = self.pos;
        if let Ok(code) = self.known_code()
            && self.peek() == Some(b']')
        {
            return Ok(code);
        }
        self.pos = start;
        let name = self.keyword()?;
        let args = if self.eat(b' ') {
            Some(lossy(
                self.take_while(|b| b != b']' && b != b'\r' && b != b'\n'),
            ))
        } else {
            None
        };
        Ok(Code::Other { name, args })
    }

    fn known_code(&mut self) -> Result<Code> {
        let name = self.keyword()?;
        Ok(match name.as_str() {
            "ALERT" => Code::Alert,
            "PARSE" => Code::Parse,
            "READ-ONLY" => Code::ReadOnly,
            "READ-WRITE" => Code::ReadWrite,
            "TRYCREATE" => Code::TryCreate,
            "NOMODSEQ" => Code::NoModSeq,
            "CLOSED" => Code::Closed,
            "CAPABILITY" => Code::Capability(self.atoms()?),
            "PERMANENTFLAGS" => {
                self.sp()?;
                Code::PermanentFlags(self.flag_list()?)
            }
            "UIDNEXT" => {
                self.sp()?;
                Code::UidNext(self.number()?)
            }
            "UIDVALIDITY" => {
                self.sp()?;
                Code::UidValidity(self.number()?)
            }
            "UNSEEN" => {
                self.sp()?;
                Code::Unseen(self.number()?)
            }
            "HIGHESTMODSEQ" => {
                self.sp()?;
                Code::HighestModSeq(self.number64()?)
            }
            "APPENDUID" => {
                self.sp()?;
                let uid_validity = self.number()?;
                self.sp()?;
                let uids = self.uid_set()?;
                Code::AppendUid { uid_validity, uids }
            }
            "COPYUID" => {
                self.sp()?;
                let uid_validity = self.number()?;
                self.sp()?;
                let from = self.uid_set()?;
                self.sp()?;
                let to = self.uid_set()?;
                Code::CopyUid {
                    uid_validity,
                    from,
                    to,
                }
            }
            _ => return self.err("a known response code"),
        })
    }

    fn uid_set(&mut self) -> Result<SequenceSet> {
        let start = self.pos;
        let s = self.take_while(|b| b.is_ascii_digit() || b == b':' || b == b',' || b == b'*');
        match set::parse(s) {
            Some(set) => Ok(set),
            None => {
                self.pos = start;
                self.err("a UID set")
            }
        }
    }

    /// `VANISHED [(EARLIER)] uid-set` (QRESYNC, RFC 7162 §3.2.10).
    fn vanished(&mut self) -> Result<Untagged> {
        self.sp()?;
        let mut earlier = false;
        if self.eat(b'(') {
            if self.keyword()? != "EARLIER" {
                return self.err("EARLIER");
            }
            self.expect(b')', "`)` after EARLIER")?;
            self.sp()?;
            earlier = true;
        }
        let uids = self.uid_set()?;
        Ok(Untagged::Vanished { earlier, uids })
    }

    /// `ESEARCH [(TAG "t")] [UID] *(SP return-data)` (RFC 4731; MODSEQ from RFC 7162).
    /// Return data we do not know is checked for syntax and skipped.
    fn esearch(&mut self) -> Result<ESearch> {
        let mut out = ESearch::default();
        loop {
            if !self.eat(b' ') {
                break;
            }
            if self.at_eol() {
                break; // A trailing space.
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
                if self.keyword()? != "TAG" {
                    return self.err("TAG");
                }
                self.sp()?;
                out.tag = Some(lossy(&self.string()?));
                self.expect(b')', "`)` after the search tag")?;
                continue;
            }
            let label = self.keyword()?;
            if label == "UID" {
                out.uid = true;
                continue;
            }
            self.sp()?;
            match label.as_str() {
                "MIN" => out.min = Some(self.number()?),
                "MAX" => out.max = Some(self.number()?),
                "COUNT" => out.count = Some(self.number()?),
                "ALL" => out.all = Some(self.uid_set()?),
                "MODSEQ" => out.modseq = Some(self.number64()?),
                _ => {
                    if self.peek() == Some(b'(') {
                        self.list(0)?;
                    } else if self
                        .take_while(|b| b != b' ' && b != b'\r' && b != b'\n')
                        .is_empty()
                    {
                        return self.err("a search return value");
                    }
                }
            }
        }
        Ok(out)
    }

    /// A generic value: NIL, number, string, list, or atom (with a `[section]<partial>`
    /// suffix as in FETCH's `BODY[HEADER]<0>`).
    fn value(&mut self, depth: usize) -> Result<Value> {
        match self.peek() {
            Some(b'(') => self.list(depth),
            Some(b'"' | b'{' | b'~') => Ok(Value::String(self.string()?)),
            Some(b'\\') => Ok(Value::Atom(self.flag()?)),
            Some(b) if b.is_ascii_digit() => {
                let start = self.pos;
                let n = self.number64()?;
                if self.peek().is_some_and(is_atom_char) {
                    // An atom that merely starts with digits (e.g. a keyword like `1abc`).
                    self.pos = start;
                    return self.section_atom();
                }
                Ok(Value::Number(n))
            }
            _ if self.is_nil() => {
                self.pos += 3;
                Ok(Value::Nil)
            }
            _ => self.section_atom(),
        }
    }

    fn section_atom(&mut self) -> Result<Value> {
        let start = self.pos;
        // `[` is an ATOM-CHAR, but here it opens a section.
        if self.take_while(|b| is_atom_char(b) && b != b'[').is_empty() {
            return self.err("an atom");
        }
        if self.eat(b'[') {
            // The section may contain spaces, parentheses and quoted header names, but not `]`
            // outside quotes (RFC 3501 `section`).
            let mut in_quotes = false;
            loop {
                match self.peek() {
                    None | Some(b'\r' | b'\n') => return self.err("`]` closing a section"),
                    Some(b'"') => in_quotes = !in_quotes,
                    Some(b'\\') if in_quotes => self.pos += 1,
                    Some(b']') if !in_quotes => break,
                    _ => {}
                }
                self.pos += 1;
            }
            self.pos += 1;
            if self.eat(b'<') {
                self.number()?;
                self.expect(b'>', "`>` closing a partial")?;
            }
        }
        Ok(Value::Atom(lossy(&self.b[start..self.pos])))
    }

    fn list(&mut self, depth: usize) -> Result<Value> {
        Ok(Value::List(self.list_items(depth)?))
    }

    fn list_items(&mut self, depth: usize) -> Result<Vec<Value>> {
        if depth >= MAX_DEPTH {
            return self.err("less deeply nested lists");
        }
        self.expect(b'(', "a parenthesized list")?;
        let mut items = Vec::new();
        if self.eat(b')') {
            return Ok(items);
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.eat(b')') {
                return Ok(items);
            }
            self.sp()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn parse(s: &[u8]) -> Response {
        response(s).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(s)))
    }

    fn list(s: &[u8]) -> Mailbox {
        match parse(s) {
            Response::Untagged(Untagged::List(mb)) => mb,
            other => panic!("not a LIST: {other:?}"),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn list_with_atom_quoted_and_literal_names() {
        let mb = list(b"* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n");
        assert_eq!(mb.name, "Sent");
        assert_eq!(mb.delimiter, Some('/'));
        assert_eq!(mb.attributes, strings(&["\\HasNoChildren", "\\Sent"]));

        let mb = list(b"* LIST () \"/\" \"Projekte/Entw&APw-rfe\"\r\n");
        assert_eq!(mb.name, "Projekte/Entwürfe");
        assert_eq!(mb.raw_name, "Projekte/Entw&APw-rfe");
        assert!(mb.attributes.is_empty());

        let mb = list(b"* LIST (\\Noselect) \"/\" {13}\r\nwith \"quotes\"\r\n");
        assert_eq!(mb.name, "with \"quotes\"");
        assert!(!mb.is_selectable());

        let mb = list(b"* LIST () \"/\" \"back\\\\slash \\\"q\\\"\"\r\n");
        assert_eq!(mb.name, "back\\slash \"q\"");
    }

    #[test]
    fn list_with_nil_and_escaped_delimiters() {
        let mb = list(b"* LIST (\\HasNoChildren) NIL INBOX\r\n");
        assert_eq!(mb.delimiter, None);
        assert!(mb.is_inbox());
        let mb = list(b"* LIST () \"\\\\\" \"Public\\\\Folder\"\r\n");
        assert_eq!(mb.delimiter, Some('\\'));
        assert_eq!(mb.name, "Public\\Folder");
        // `]` is an ASTRING-CHAR, so a name may contain it unquoted.
        let mb = list(b"* list () \".\" a]b\r\n");
        assert_eq!(mb.name, "a]b");
        assert_eq!(mb.delimiter, Some('.'));
    }

    #[test]
    fn list_extended_data_is_accepted() {
        let mb = list(b"* LIST (\\Subscribed) \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
        assert_eq!(mb.name, "Foo");
        let mb = list(b"* LIST () \"/\" New (\"OLDNAME\" (\"Old\"))\r\n");
        assert_eq!(mb.name, "New");
    }

    #[test]
    fn greetings_and_capabilities() {
        let r = parse(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n");
        assert_eq!(
            r,
            Response::Untagged(Untagged::Status {
                status: Status::Ok,
                code: Some(Code::Capability(strings(&[
                    "IMAP4rev1",
                    "LITERAL+",
                    "AUTH=PLAIN"
                ]))),
                text: "Dovecot ready.".into(),
            })
        );
        let r = parse(b"* CAPABILITY IMAP4rev1 IDLE NOTIFY\r\n");
        assert_eq!(
            r,
            Response::Untagged(Untagged::Capability(strings(&[
                "IMAP4rev1",
                "IDLE",
                "NOTIFY"
            ])))
        );
        assert!(matches!(
            parse(b"* BYE Too many connections\r\n"),
            Response::Untagged(Untagged::Bye { code: None, text }) if text == "Too many connections"
        ));
        assert!(matches!(
            parse(b"* PREAUTH welcome\r\n"),
            Response::Untagged(Untagged::PreAuth { .. })
        ));
    }

    #[test]
    fn tagged_completions_and_codes() {
        let cases: &[(&[u8], Status, Option<Code>, &str)] = &[
            (b"A1 OK done\r\n", Status::Ok, None, "done"),
            (b"A1 ok\r\n", Status::Ok, None, ""),
            (
                b"A2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
                Status::No,
                Some(Code::Other {
                    name: "AUTHENTICATIONFAILED".into(),
                    args: None,
                }),
                "Authentication failed.",
            ),
            (
                b"A3 OK [APPENDUID 1795374921 7] Append completed.\r\n",
                Status::Ok,
                Some(Code::AppendUid {
                    uid_validity: 1795374921,
                    uids: SequenceSet::single(7),
                }),
                "Append completed.",
            ),
            (
                b"A4 OK [COPYUID 9 1:3,5 10:13] Moved\r\n",
                Status::Ok,
                Some(Code::CopyUid {
                    uid_validity: 9,
                    from: "1:3,5".parse().unwrap(),
                    to: "10:13".parse().unwrap(),
                }),
                "Moved",
            ),
            (
                b"A5 OK [READ-WRITE] Select completed.\r\n",
                Status::Ok,
                Some(Code::ReadWrite),
                "Select completed.",
            ),
            (
                b"A6 BAD Error in IMAP command: Unknown command.\r\n",
                Status::Bad,
                None,
                "Error in IMAP command: Unknown command.",
            ),
            (
                b"A7 NO [BADCHARSET (UTF-8 US-ASCII)] no\r\n",
                Status::No,
                Some(Code::Other {
                    name: "BADCHARSET".into(),
                    args: Some("(UTF-8 US-ASCII)".into()),
                }),
                "no",
            ),
            // A known code with unexpected arguments falls back to Other instead of failing.
            (
                b"A8 OK [UIDNEXT soon] hm\r\n",
                Status::Ok,
                Some(Code::Other {
                    name: "UIDNEXT".into(),
                    args: Some("soon".into()),
                }),
                "hm",
            ),
            // A bare LF instead of CRLF.
            (b"A9 OK fine\n", Status::Ok, None, "fine"),
        ];
        for (bytes, status, code, text) in cases {
            let Response::Tagged(t) = parse(bytes) else {
                panic!("not tagged: {bytes:?}")
            };
            assert_eq!(
                (&t.status, &t.code, t.text.as_str()),
                (status, code, *text),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn select_responses() {
        let cases: &[(&[u8], Untagged)] = &[
            (
                b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
                Untagged::Flags(strings(&[
                    "\\Answered",
                    "\\Flagged",
                    "\\Deleted",
                    "\\Seen",
                    "\\Draft",
                ])),
            ),
            (
                b"* OK [PERMANENTFLAGS (\\Seen $Forwarded \\*)] Flags permitted.\r\n",
                Untagged::Status {
                    status: Status::Ok,
                    code: Some(Code::PermanentFlags(strings(&["\\Seen", "$Forwarded", "\\*"]))),
                    text: "Flags permitted.".into(),
                },
            ),
            (b"* 23 EXISTS\r\n", Untagged::Exists(23)),
            (b"* 0 RECENT\r\n", Untagged::Recent(0)),
            (b"* 4 EXPUNGE\r\n", Untagged::Expunge(4)),
            (
                b"* OK [UIDVALIDITY 1795374921] UIDs valid\r\n",
                Untagged::Status {
                    status: Status::Ok,
                    code: Some(Code::UidValidity(1795374921)),
                    text: "UIDs valid".into(),
                },
            ),
            (
                b"* OK [HIGHESTMODSEQ 18446744073709551615] Highest\r\n",
                Untagged::Status {
                    status: Status::Ok,
                    code: Some(Code::HighestModSeq(u64::MAX)),
                    text: "Highest".into(),
                },
            ),
            (
                b"* SEARCH 2 5 6 (MODSEQ 917162500)\r\n",
                Untagged::Search {
                    ids: vec![2, 5, 6],
                    modseq: Some(917162500),
                },
            ),
            (
                b"* SEARCH\r\n",
                Untagged::Search {
                    ids: vec![],
                    modseq: None,
                },
            ),
            (b"* SORT 9 2 5\r\n", Untagged::Sort(vec![9, 2, 5])),
            (b"* SORT\r\n", Untagged::Sort(vec![])),
            (
                b"* ENABLED CONDSTORE QRESYNC\r\n",
                Untagged::Enabled(strings(&["CONDSTORE", "QRESYNC"])),
            ),
            (
                b"* STATUS \"Entw&APw-rfe\" (MESSAGES 3 UIDVALIDITY 1795374921 HIGHESTMODSEQ 9)\r\n",
                Untagged::MailboxStatus {
                    name: "Entwürfe".into(),
                    raw_name: "Entw&APw-rfe".into(),
                    items: vec![
                        ("MESSAGES".into(), 3),
                        ("UIDVALIDITY".into(), 1795374921),
                        ("HIGHESTMODSEQ".into(), 9),
                    ],
                },
            ),
            (
                b"* STATUS INBOX ()\r\n",
                Untagged::MailboxStatus {
                    name: "INBOX".into(),
                    raw_name: "INBOX".into(),
                    items: vec![],
                },
            ),
            (
                b"* VANISHED (EARLIER) 1:5,9\r\n",
                Untagged::Vanished {
                    earlier: true,
                    uids: "1:5,9".parse().unwrap(),
                },
            ),
            (
                b"* VANISHED 7\r\n",
                Untagged::Vanished {
                    earlier: false,
                    uids: SequenceSet::single(7),
                },
            ),
            (
                b"* ESEARCH (TAG \"A5\") UID MIN 2 MAX 9 COUNT 4 ALL 2:4,9 MODSEQ 17\r\n",
                Untagged::ESearch(ESearch {
                    tag: Some("A5".into()),
                    uid: true,
                    min: Some(2),
                    max: Some(9),
                    count: Some(4),
                    all: Some("2:4,9".parse().unwrap()),
                    modseq: Some(17),
                }),
            ),
            (
                b"* ESEARCH (TAG \"A6\") UID COUNT 0 PARTIAL (1:10 NIL) X 1:*\r\n",
                Untagged::ESearch(ESearch {
                    tag: Some("A6".into()),
                    uid: true,
                    count: Some(0),
                    ..ESearch::default()
                }),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Response::Untagged(want.clone()),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn fetch_is_a_generic_value_tree() {
        let r = parse(
            b"* 12 FETCH (UID 7 FLAGS (\\Seen $Forwarded) MODSEQ (42) \
              BODY[HEADER.FIELDS (FROM \"X-A]\")]<0> {9}\r\nFrom: a\r\n \
              ENVELOPE (NIL \"s\" NIL) BINARY[1] ~{2}\r\n\x00\x01 RFC822.SIZE 1234)\r\n",
        );
        let Response::Untagged(Untagged::Fetch { seq, items }) = r else {
            panic!("{r:?}")
        };
        assert_eq!(seq, 12);
        assert_eq!(
            items,
            vec![
                Value::Atom("UID".into()),
                Value::Number(7),
                Value::Atom("FLAGS".into()),
                Value::List(vec![
                    Value::Atom("\\Seen".into()),
                    Value::Atom("$Forwarded".into())
                ]),
                Value::Atom("MODSEQ".into()),
                Value::List(vec![Value::Number(42)]),
                Value::Atom("BODY[HEADER.FIELDS (FROM \"X-A]\")]<0>".into()),
                Value::String(b"From: a\r\n".to_vec()),
                Value::Atom("ENVELOPE".into()),
                Value::List(vec![Value::Nil, Value::String(b"s".to_vec()), Value::Nil]),
                Value::Atom("BINARY[1]".into()),
                Value::String(vec![0, 1]),
                Value::Atom("RFC822.SIZE".into()),
                Value::Number(1234),
            ]
        );
    }

    #[test]
    fn continuation_requests() {
        assert_eq!(parse(b"+ OK\r\n"), Response::Continue { text: "OK".into() });
        assert_eq!(parse(b"+\r\n"), Response::Continue { text: "".into() });
        assert_eq!(
            parse(b"+ idling\r\n"),
            Response::Continue {
                text: "idling".into()
            }
        );
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let bad: &[&[u8]] = &[
            b"",
            b"\r\n",
            b"*\r\n",
            b"* \r\n",
            b"A1\r\n",
            b"A1 MAYBE\r\n",
            b"* LIST\r\n",
            b"* LIST (\\Sent \"/\" Sent\r\n",
            b"* LIST () \"//\" Sent\r\n",
            b"* LIST () \"/\" {10}\r\nshort\r\n",
            b"* LIST () \"/\" \"unterminated\r\n",
            b"* 99999999999 EXISTS\r\n",
            b"* 1 FETCH (UID 1\r\n",
            b"* 1 FETCH (BODY[HEADER {1}\r\nx)\r\n",
            b"* OK [UIDVALIDITY 1 done\r\n",
            b"A1 OK done\r\nextra",
        ];
        for b in bad {
            let e = response(b).expect_err(&format!("{:?}", String::from_utf8_lossy(b)));
            // The message names the kind of response, and nothing of its content.
            assert!(!e.to_string().contains("Sent"), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let mut b = b"* 1 FETCH ".to_vec();
        b.extend(std::iter::repeat_n(b'(', 100_000));
        b.extend_from_slice(b"\r\n");
        assert!(response(&b).is_err());
    }

    proptest::proptest! {
        /// The extension responses this client interprets, followed by arbitrary bytes.
        #[test]
        fn extension_responses_never_panic(
            head in proptest::sample::select(vec![
                "* VANISHED ", "* VANISHED (EARLIER) ", "* ESEARCH ", "* ESEARCH (TAG ",
                "A1 OK [COPYUID ", "A1 OK [APPENDUID ", "* 1 FETCH (",
            ]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
        ) {
            let mut b = head.as_bytes().to_vec();
            b.extend_from_slice(&tail);
            let _ = response(&b);
            b.extend_from_slice(b"\r\n");
            let _ = response(&b);
        }

        /// Well-formed VANISHED and ESEARCH sets parse back to the numbers they hold.
        #[test]
        fn vanished_sets_round_trip(nums in proptest::collection::vec(1u32..5000, 1..40)) {
            let set: SequenceSet = nums.iter().collect();
            let line = format!("* VANISHED {set}\r\n");
            let parsed = response(line.as_bytes());
            proptest::prop_assert_eq!(
                parsed,
                Ok(Response::Untagged(Untagged::Vanished { earlier: false, uids: set.clone() }))
            );
            let line = format!("* ESEARCH (TAG \"A9\") UID ALL {set}\r\n");
            let Ok(Response::Untagged(Untagged::ESearch(e))) = response(line.as_bytes()) else {
                return Err(proptest::test_runner::TestCaseError::fail("not ESEARCH"));
            };
            proptest::prop_assert_eq!(e.all, Some(set));
        }
    }

    /// Parses valid responses with random mutations and random bytes; must never panic (a
    /// seeded generator, older than the proptest cases above).
    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let seeds: &[&[u8]] = &[
            b"* LIST (\\HasNoChildren \\Sent) \"/\" {4}\r\nSent (\"CHILDINFO\" (\"X\"))\r\n",
            b"* 3 FETCH (UID 7 BODY[HEADER.FIELDS (A)]<0> {3}\r\nabc FLAGS (\\Seen))\r\n",
            b"A1 OK [APPENDUID 17 4:5] done\r\n",
            b"* OK [PERMANENTFLAGS (\\Seen \\*)] x\r\n",
            b"* SEARCH 1 2 (MODSEQ 3)\r\n",
            b"+ go\r\n",
            b"* VANISHED (EARLIER) 1:5,9:*\r\n",
            b"* ESEARCH (TAG \"A1\") UID MIN 1 ALL 1:3,7 COUNT 4 X (1 2)\r\n",
            b"A2 OK [COPYUID 9 1:3,5 10:13] Moved\r\n",
        ];
        let mut rng = StdRng::seed_from_u64(0x1a4);
        for _ in 0..20_000 {
            let mut b = seeds[rng.gen_range(0..seeds.len())].to_vec();
            for _ in 0..rng.gen_range(0..6) {
                let i = rng.gen_range(0..b.len());
                match rng.gen_range(0..4) {
                    0 => b[i] = rng.r#gen(),
                    1 => {
                        b.remove(i);
                    }
                    2 => {
                        let specials = b"(){}[]\"\\ \r\n0123456789~+*";
                        b.insert(i, specials[rng.gen_range(0..specials.len())]);
                    }
                    _ => b.truncate(i),
                }
                if b.is_empty() {
                    break;
                }
            }
            let _ = response(&b);
            let _ = frame::response_len(&b);
        }
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let b: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = response(&b);
            let _ = frame::response_len(&b);
        }
    }
}

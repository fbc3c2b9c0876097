//! The gateway's out-of-office section inside a user's Sieve script: writing it, finding it,
//! taking it out, and reading back a vacation rule (the gateway's or one the user wrote
//! elsewhere). Pure text work, no I/O.
//!
//! **The choice: a delimited section, not `include`.** The section sits in the user's active
//! script between two marker comments, right after the script's leading `require` commands
//! (Sieve wants every `require` before the first other command, and the section brings its
//! own `require`). It is inserted as one run of bytes and taken out as exactly that run, so
//! the user's text around it comes back byte for byte, in its order. `include` would have
//! needed a second script *and* a changed line in the user's script all the same, and two
//! PUTSCRIPTs cannot be made atomic; one PUTSCRIPT of one script is.
//!
//! The section's first comment line carries what the phone set (base64), because Sieve
//! cannot express all of it (known vs unknown external senders): Get answers from that line
//! and the rule below it is what the server runs.

use base64::Engine;

use super::{Message, OutOfOffice, SieveError, State};

pub const BEGIN: &str = "# >>> eas-gateway out-of-office";
pub const END: &str = "# <<< eas-gateway out-of-office";
const STATE_PREFIX: &str = "# eas-gateway-state: ";

/// Where the gateway's section is in a script: `start..end` covers both marker lines.
pub fn find_section(script: &str) -> Option<std::ops::Range<usize>> {
    let start = script.find(BEGIN)?;
    let end_marker = start + script[start..].find(END)?;
    let end = match script[end_marker..].find('\n') {
        Some(nl) => end_marker + nl + 1,
        None => script.len(),
    };
    Some(start..end)
}

/// The script with the gateway's section taken out (the user's text, exactly as it was).
pub fn without_section(script: &str) -> String {
    match find_section(script) {
        Some(r) => format!("{}{}", &script[..r.start], &script[r.end..]),
        None => script.to_owned(),
    }
}

/// The script with `section` in place of the old one, or inserted after the leading
/// `require` commands when there was none. `section` empty: the old one is only removed.
pub fn with_section(script: &str, section: &str) -> String {
    if let Some(r) = find_section(script) {
        return format!("{}{section}{}", &script[..r.start], &script[r.end..]);
    }
    if section.is_empty() {
        return script.to_owned();
    }
    let at = after_requires(script);
    format!("{}{section}{}", &script[..at], &script[at..])
}

/// The byte offset just past the script's leading `require` commands: the start of the
/// next line when the rest of that line is blank, else right after the `;`. 0 without any.
fn after_requires(script: &str) -> usize {
    let tokens = match tokenize(script) {
        Ok(t) => t,
        Err(_) => return 0,
    };
    let mut end = None;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].kind {
            Tok::Ident(w) if w.eq_ignore_ascii_case("require") => {
                match tokens[i..].iter().position(|t| t.kind == Tok::Semicolon) {
                    Some(j) => {
                        end = Some(tokens[i + j].end);
                        i += j + 1;
                    }
                    None => break,
                }
            }
            _ => break,
        }
    }
    let Some(end) = end else { return 0 };
    let rest = &script[end..];
    match rest.find('\n') {
        Some(nl) if rest[..nl].trim().is_empty() => end + nl + 1,
        None if rest.trim().is_empty() => script.len(),
        _ => end,
    }
}

/// A quoted Sieve string (RFC 5228 2.4.2): `"` and `\` escaped; line breaks and any UTF-8
/// are allowed as they are.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The section for these settings; empty when out-of-office is off (nothing to run).
pub fn section(oof: &OutOfOffice, own_domains: &[String], addresses: &[String]) -> String {
    if oof.state == State::Disabled {
        return String::new();
    }
    let external = if oof.unknown_external.enabled {
        Some(&oof.unknown_external)
    } else {
        None
    };
    let internal = oof.internal.enabled.then_some(&oof.internal);
    let mut s = String::new();
    s.push_str(BEGIN);
    s.push_str(": written by eas-gateway from the phone's automatic replies; edits between these two lines are replaced\n");
    s.push_str(STATE_PREFIX);
    s.push_str(&base64::engine::general_purpose::STANDARD.encode(encode_state(oof)));
    s.push('\n');
    let scheduled = matches!(oof.state, State::Scheduled { .. });
    s.push_str(if scheduled {
        "require [\"vacation\", \"date\", \"relational\"];\n"
    } else {
        "require \"vacation\";\n"
    });
    let mut indent = "";
    if let State::Scheduled { start, end } = &oof.state {
        s.push_str(&format!(
            "if allof (currentdate :zone \"+0000\" :value \"ge\" \"iso8601\" {}, currentdate :zone \"+0000\" :value \"lt\" \"iso8601\" {}) {{\n",
            quote(start),
            quote(end)
        ));
        indent = "  ";
    }
    let domains = format!(
        "[{}]",
        own_domains
            .iter()
            .map(|d| quote(d))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let internal_test = format!("address :domain :is \"from\" {domains}");
    match (internal, external) {
        (Some(i), Some(e)) => {
            s.push_str(&format!("{indent}if {internal_test} {{\n"));
            s.push_str(&format!("{indent}  {}\n", vacation(i, addresses)));
            s.push_str(&format!("{indent}}} else {{\n"));
            s.push_str(&format!("{indent}  {}\n", vacation(e, addresses)));
            s.push_str(&format!("{indent}}}\n"));
        }
        (Some(i), None) => {
            s.push_str(&format!("{indent}if {internal_test} {{\n"));
            s.push_str(&format!("{indent}  {}\n", vacation(i, addresses)));
            s.push_str(&format!("{indent}}}\n"));
        }
        (None, Some(e)) => {
            s.push_str(&format!("{indent}if not {internal_test} {{\n"));
            s.push_str(&format!("{indent}  {}\n", vacation(e, addresses)));
            s.push_str(&format!("{indent}}}\n"));
        }
        // On, but every audience off: the section only remembers the settings.
        (None, None) => {}
    }
    if scheduled {
        s.push_str("}\n");
    }
    s.push_str(END);
    s.push('\n');
    s
}

fn vacation(m: &Message, addresses: &[String]) -> String {
    let mut v = String::from("vacation");
    if !addresses.is_empty() {
        v.push_str(&format!(
            " :addresses [{}]",
            addresses
                .iter()
                .map(|a| quote(a))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if m.html {
        // With :mime the reason is a MIME entity: headers, a blank line, the body.
        let entity = format!(
            "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
            m.text
        );
        v.push_str(&format!(" :mime {};", quote(&entity)));
    } else {
        v.push_str(&format!(" {};", quote(&m.text)));
    }
    v
}

/// The settings as the phone gave them: `v1`, then length-prefixed fields, so any text
/// (line breaks, quotes, any language) comes back exactly.
fn encode_state(oof: &OutOfOffice) -> String {
    let mut out = String::from("v1");
    let mut field = |s: &str| out.push_str(&format!(" {}:{s}", s.len()));
    match &oof.state {
        State::Disabled => field("0"),
        State::Global => field("1"),
        State::Scheduled { start, end } => {
            field("2");
            field(start);
            field(end);
        }
    }
    for m in [&oof.internal, &oof.known_external, &oof.unknown_external] {
        field(if m.enabled { "1" } else { "0" });
        field(if m.html { "html" } else { "text" });
        field(&m.text);
    }
    out
}

fn decode_state(s: &str) -> Option<OutOfOffice> {
    let mut rest = s.strip_prefix("v1")?;
    let mut next = || -> Option<String> {
        let r = rest.strip_prefix(' ')?;
        let (len, after) = r.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let value = after.get(..len)?.to_owned();
        rest = &after[len..];
        Some(value)
    };
    let state = match next()?.as_str() {
        "0" => State::Disabled,
        "1" => State::Global,
        "2" => State::Scheduled {
            start: next()?,
            end: next()?,
        },
        _ => return None,
    };
    let mut message = || -> Option<Message> {
        Some(Message {
            enabled: next()? == "1",
            html: next()? == "html",
            text: next()?,
        })
    };
    Some(OutOfOffice {
        state,
        internal: message()?,
        known_external: message()?,
        unknown_external: message()?,
    })
}

/// What a script says about out-of-office: the gateway's own section when there is one, else
/// a vacation command the user wrote elsewhere (shown as on, for everyone), else off.
pub fn read(script: &str) -> Result<OutOfOffice, SieveError> {
    if let Some(r) = find_section(script) {
        let section = &script[r];
        let line = section
            .lines()
            .find_map(|l| l.strip_prefix(STATE_PREFIX))
            .ok_or_else(|| SieveError::Script("the gateway's section has no state line".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(line.trim())
            .map_err(|_| SieveError::Script("the gateway's state line is not base64".into()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| SieveError::Script("the gateway's state line is not UTF-8".into()))?;
        return decode_state(&text)
            .ok_or_else(|| SieveError::Script("the gateway's state line cannot be read".into()));
    }
    Ok(match foreign_vacation(script) {
        Some(m) => OutOfOffice {
            state: State::Global,
            internal: m.clone(),
            known_external: m.clone(),
            unknown_external: m,
        },
        None => OutOfOffice::default(),
    })
}

/// The first `vacation` command of a script the gateway did not write: its reason.
fn foreign_vacation(script: &str) -> Option<Message> {
    let tokens = tokenize(script).ok()?;
    let mut prev_ends_command = true;
    for (i, t) in tokens.iter().enumerate() {
        if prev_ends_command
            && matches!(&t.kind, Tok::Ident(w) if w.eq_ignore_ascii_case("vacation"))
        {
            let mut mime = false;
            let mut j = i + 1;
            let mut reason = None;
            while j < tokens.len() && tokens[j].kind != Tok::Semicolon {
                match &tokens[j].kind {
                    Tok::Tag(tag) => {
                        let tag = tag.to_ascii_lowercase();
                        if tag == "mime" {
                            mime = true;
                        } else if ["days", "seconds", "subject", "from", "handle", "addresses"]
                            .contains(&tag.as_str())
                        {
                            // The tag's argument (a number, a string or a list) is skipped.
                            j += 1;
                            if tokens.get(j).map(|t| &t.kind) == Some(&Tok::Open('[')) {
                                while j < tokens.len() && tokens[j].kind != Tok::Close(']') {
                                    j += 1;
                                }
                            }
                        }
                    }
                    Tok::Str(s) => reason = Some(s.clone()),
                    _ => {}
                }
                j += 1;
            }
            let text = reason?;
            return Some(if mime {
                let (head, body) = text
                    .split_once("\r\n\r\n")
                    .or_else(|| text.split_once("\n\n"))
                    .unwrap_or(("", text.as_str()));
                Message {
                    enabled: true,
                    html: head.to_ascii_lowercase().contains("text/html"),
                    text: body.to_owned(),
                }
            } else {
                Message {
                    enabled: true,
                    html: false,
                    text,
                }
            });
        }
        prev_ends_command = matches!(t.kind, Tok::Semicolon | Tok::Open('{') | Tok::Close('}'));
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Tag(String),
    Number(String),
    Str(String),
    Open(char),
    Close(char),
    Comma,
    Semicolon,
}

#[derive(Debug)]
struct Token {
    kind: Tok,
    end: usize,
}

/// Sieve's lexical grammar (RFC 5228 2.2–2.4): comments skipped, quoted strings unescaped,
/// `text:` multi-line strings with their dot-stuffing undone.
fn tokenize(s: &str) -> Result<Vec<Token>, SieveError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let bad = |why: &str| SieveError::Script(why.to_owned());
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = s[i + 2..]
                    .find("*/")
                    .ok_or_else(|| bad("a comment is never closed"))?;
                i = i + 2 + end + 2;
            }
            b'"' => {
                let mut v = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(bad("a string is never closed")),
                        Some(b'\\') => {
                            if let Some(&n) = b.get(i + 1) {
                                v.push(n);
                            }
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&x) => {
                            v.push(x);
                            i += 1;
                        }
                    }
                }
                out.push(Token {
                    kind: Tok::Str(String::from_utf8_lossy(&v).into_owned()),
                    end: i,
                });
            }
            b':' => {
                let start = i + 1;
                i = start;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Tag(s[start..i].to_owned()),
                    end: i,
                });
            }
            b'[' | b'(' | b'{' => {
                i += 1;
                out.push(Token {
                    kind: Tok::Open(c as char),
                    end: i,
                });
            }
            b']' | b')' | b'}' => {
                i += 1;
                out.push(Token {
                    kind: Tok::Close(c as char),
                    end: i,
                });
            }
            b',' => {
                i += 1;
                out.push(Token {
                    kind: Tok::Comma,
                    end: i,
                });
            }
            b';' => {
                i += 1;
                out.push(Token {
                    kind: Tok::Semicolon,
                    end: i,
                });
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b"KMGkmg".contains(&b[i])) {
                    i += 1;
                }
                out.push(Token {
                    kind: Tok::Number(s[start..i].to_owned()),
                    end: i,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &s[start..i];
                if word.eq_ignore_ascii_case("text") && b.get(i) == Some(&b':') {
                    // text: … CRLF . CRLF, lines starting with ".." un-stuffed.
                    let body_start = match s[i..].find('\n') {
                        Some(nl) => i + nl + 1,
                        None => return Err(bad("a text: string is never closed")),
                    };
                    let mut text = String::new();
                    let mut pos = body_start;
                    loop {
                        let line_end = s[pos..].find('\n').map(|n| pos + n + 1);
                        let Some(line_end) = line_end else {
                            return Err(bad("a text: string is never closed"));
                        };
                        let line = &s[pos..line_end];
                        if line.trim_end_matches(['\r', '\n']) == "." {
                            pos = line_end;
                            break;
                        }
                        text.push_str(line.strip_prefix("..").map_or(line, |l| {
                            // Keep one of the two dots.
                            &line[line.len() - l.len() - 1..]
                        }));
                        pos = line_end;
                    }
                    i = pos;
                    out.push(Token {
                        kind: Tok::Str(text),
                        end: i,
                    });
                } else {
                    out.push(Token {
                        kind: Tok::Ident(word.to_owned()),
                        end: i,
                    });
                }
            }
            _ => return Err(bad("a character Sieve does not allow here")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    fn oof(text: &str) -> OutOfOffice {
        OutOfOffice {
            state: State::Scheduled {
                start: "2026-12-01T08:00:00".into(),
                end: "2026-12-24T18:00:00".into(),
            },
            internal: Message {
                enabled: true,
                html: false,
                text: text.into(),
            },
            known_external: Message {
                enabled: true,
                html: false,
                text: "known".into(),
            },
            unknown_external: Message {
                enabled: false,
                html: true,
                text: "<p>away</p>".into(),
            },
        }
    }

    const USER: &str = "require [\"fileinto\"];\r\n# mine\r\nif header :contains \"subject\" \"x\" {\r\n  fileinto \"X\";\r\n}\r\n";

    #[test]
    fn the_section_goes_after_the_requires_and_comes_out_byte_for_byte() {
        let o = oof("back \"soon\" \\ later\nzurück ✈");
        let sec = section(&o, &["example.org".into()], &["a@example.org".into()]);
        let with = with_section(USER, &sec);
        assert!(with.starts_with("require [\"fileinto\"];\r\n# >>> eas-gateway"));
        assert_eq!(without_section(&with), USER);
        assert_eq!(read(&with).unwrap(), o);
        // Replacing keeps the place; removing gives the user's script back.
        let again = with_section(&with, &section(&oof("other"), &["example.org".into()], &[]));
        assert_eq!(without_section(&again), USER);
        assert_eq!(with_section(&again, ""), USER);
        assert_eq!(with_section("", &sec), sec);
        // The reason reads back through the tokenizer as written.
        let tokens = tokenize(&with).unwrap();
        assert!(
            tokens
                .iter()
                .any(|t| t.kind == Tok::Str("back \"soon\" \\ later\nzurück ✈".into()))
        );
    }

    #[test]
    fn requires_sharing_a_line_with_a_command_are_split_exactly() {
        let s = "require \"fileinto\"; fileinto \"A\";";
        let sec = section(&oof("x"), &["e.org".into()], &[]);
        let with = with_section(s, &sec);
        assert!(with.starts_with("require \"fileinto\";# >>>"));
        assert_eq!(without_section(&with), s);
    }

    #[test]
    fn a_vacation_rule_written_elsewhere_is_read() {
        let s = "require [\"vacation\"];\nif true { vacation :days 3 :subject \"Away\" :addresses [\"a@x\", \"b@x\"] text:\nGone.\n..dot\n.\n; }\n";
        let got = read(s).unwrap();
        assert_eq!(got.state, State::Global);
        assert_eq!(got.internal.text, "Gone.\n.dot\n");
        assert_eq!(read("keep;").unwrap(), OutOfOffice::default());
    }
}

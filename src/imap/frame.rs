//! Framing: where one server response ends in a byte buffer.
//!
//! An IMAP response is a line, unless that line ends in a literal announcement `{n}` (or
//! `~{n}` for BINARY, or `{n+}`), in which case exactly `n` raw bytes follow and the response
//! continues with another line after them. Literals may hold anything (CRLFs, a whole message),
//! so the end of a response can only be found by counting, never by searching for CRLF.
//!
//! This module only finds boundaries; it is pure (no I/O), so the connection can feed it
//! whatever the socket delivered and [`super::parse`] gets exactly one response at a time.

/// The most we buffer for a single response unless the session is given another limit
/// ([`super::Session::set_max_response_bytes`]). A FETCH of a large message is one response,
/// so this has to be generous; it exists so a broken server cannot make us allocate without
/// end. The gateway sets a tighter limit derived from the largest message it fetches.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why the buffered bytes cannot be a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The response (a line, or a literal it announces) would exceed `limit` bytes.
    #[error("response larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// How far the buffered bytes get towards a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// The first response is the first `n` bytes.
    Complete(usize),
    /// More bytes are needed: at least this many in all (a literal's announced length says
    /// how many; for an unfinished line, one more than there are).
    Incomplete { at_least: usize },
}

/// Returns the length of the first complete response at the start of `buf`, or `None` when
/// more bytes are needed, within [`MAX_RESPONSE_BYTES`]. Lines end in CRLF; a bare LF is
/// tolerated.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    Ok(match frame(buf, MAX_RESPONSE_BYTES)? {
        Framed::Complete(n) => Some(n),
        Framed::Incomplete { .. } => None,
    })
}

/// Finds the first response in `buf`, refusing one longer than `limit` bytes as soon as its
/// length is known: a literal announcement over the limit is refused before any of its bytes
/// are waited for, so nothing of it is ever buffered.
pub fn frame(buf: &[u8], limit: usize) -> Result<Framed, FrameError> {
    let too_large = FrameError::TooLarge { limit };
    let mut pos = 0;
    loop {
        let Some(nl) = memchr(b'\n', &buf[pos..]) else {
            return if buf.len() > limit {
                Err(too_large)
            } else {
                Ok(Framed::Incomplete {
                    at_least: buf.len() + 1,
                })
            };
        };
        let line_end = pos + nl + 1;
        let line = trim_eol(&buf[pos..line_end]);
        match literal_len(line) {
            None => return Ok(Framed::Complete(line_end)),
            Some(n) => {
                let next = line_end.checked_add(n).ok_or(too_large.clone())?;
                if next > limit {
                    return Err(too_large);
                }
                if next > buf.len() {
                    return Ok(Framed::Incomplete { at_least: next });
                }
                pos = next;
            }
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// A line without its CRLF (or bare LF).
pub(crate) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// If `line` ends in `{n}` or `{n+}`, the announced literal length. (`~{n}` ends the same way.)
pub(crate) fn literal_len(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    // 1..=10 digits: enough for any u32 length, few enough not to overflow usize.
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0usize, |n, d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_a_response() {
        assert_eq!(response_len(b"* OK ready\r\nA1 OK"), Ok(Some(12)));
        assert_eq!(response_len(b"* OK ready\nrest"), Ok(Some(11)));
        assert_eq!(response_len(b"* OK rea"), Ok(None));
        assert_eq!(response_len(b""), Ok(None));
    }

    #[test]
    fn literals_are_counted_not_searched() {
        // The literal contains CRLF and even something that looks like a literal announcement.
        let r = b"* LIST () \"/\" {7}\r\na\r\n{99}\r\n";
        assert_eq!(response_len(r), Ok(Some(r.len())));
        let mut more = r.to_vec();
        more.extend_from_slice(b"A1 OK done\r\n");
        assert_eq!(response_len(&more), Ok(Some(r.len())));
    }

    #[test]
    fn waits_for_the_whole_literal_and_the_line_after_it() {
        let r = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n";
        for cut in 0..r.len() {
            assert_eq!(response_len(&r[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(response_len(r), Ok(Some(r.len())));
    }

    #[test]
    fn several_literals_and_binary_and_non_synchronizing_forms() {
        let r = b"* 1 FETCH (A {1}\r\nx B ~{2}\r\nyz C {0+}\r\n)\r\n";
        assert_eq!(response_len(r), Ok(Some(r.len())));
    }

    #[test]
    fn braces_that_are_not_literals_end_the_line() {
        for line in [
            &b"* OK {}\r\n"[..],
            b"* OK {x}\r\n",
            b"* OK {12345678901}\r\n",
            b"* OK 5}\r\n",
        ] {
            assert_eq!(response_len(line), Ok(Some(line.len())));
        }
    }

    #[test]
    fn refuses_absurd_literals() {
        assert_eq!(
            response_len(b"* 1 FETCH (BODY[] {4294967295}\r\n"),
            Err(FrameError::TooLarge {
                limit: MAX_RESPONSE_BYTES
            })
        );
    }

    #[test]
    fn a_literal_over_the_limit_is_refused_from_its_announcement() {
        let head = b"* 1 FETCH (UID 7 BODY[] {1000}\r\n";
        assert_eq!(frame(head, 1000), Err(FrameError::TooLarge { limit: 1000 }));
        // Within the limit it waits, and says for how many bytes.
        assert_eq!(
            frame(head, 2000),
            Ok(Framed::Incomplete {
                at_least: head.len() + 1000
            })
        );
        let line = b"* OK a line with no end yet";
        assert_eq!(frame(line, 10), Err(FrameError::TooLarge { limit: 10 }));
        assert_eq!(
            frame(line, 100),
            Ok(Framed::Incomplete {
                at_least: line.len() + 1
            })
        );
    }
}

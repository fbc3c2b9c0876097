//! Modified UTF-7, the encoding of mailbox names on the wire (RFC 3501 §5.1.3).
//!
//! IMAP4rev1 predates UTF-8 mailbox names, so a name like `Entwürfe` travels as
//! `Entw&APw-rfe`: printable US-ASCII stands for itself except `&`, which becomes `&-`; any run
//! of other characters is UTF-16BE, base64-encoded with `,` instead of `/` and no padding,
//! between `&` and `-`.
//!
//! [`decode`] is strict: it accepts only what [`encode`] would produce, so that
//! `encode(decode(x)) == x` and a decoded name always leads back to the same mailbox.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64 with the IMAP alphabet (`+` and `,`), no padding written or accepted, and trailing
/// bits required to be zero (otherwise two spellings would decode to the same name).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Why a wire name is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Utf7Error {
    /// A byte outside printable US-ASCII appears outside a base64 run (8-bit names are not
    /// modified UTF-7; a server sends them only after UTF8=ACCEPT).
    #[error("byte 0x{0:02x} is not printable US-ASCII")]
    NotAscii(u8),
    /// A `&` run has no closing `-`.
    #[error("unterminated base64 run")]
    Unterminated,
    /// A base64 run is not valid modified base64 or not whole UTF-16 code units.
    #[error("invalid base64 run")]
    BadBase64,
    /// The UTF-16 in a base64 run has an unpaired surrogate.
    #[error("invalid UTF-16 in base64 run")]
    BadUtf16,
    /// The run is not in canonical form (it encodes printable ASCII, is empty but not `&-`,
    /// or two runs follow each other directly); accepting it would make two wire names decode
    /// to one.
    #[error("non-canonical base64 run")]
    NotCanonical,
}

/// Encodes a Unicode mailbox name for the wire.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u16> = Vec::new();
    for ch in name.chars() {
        if is_direct(ch) {
            flush_run(&mut out, &mut run);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut units = [0u16; 2];
            run.extend_from_slice(ch.encode_utf16(&mut units));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

/// Printable US-ASCII stands for itself (`&` too, escaped as `&-`).
fn is_direct(ch: char) -> bool {
    (' '..='~').contains(&ch)
}

fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    ENGINE.encode_string(&bytes, out);
    out.push('-');
    run.clear();
}

/// Decodes a wire mailbox name. Fails on anything [`encode`] would not have produced.
pub fn decode(wire: &str) -> Result<String, Utf7Error> {
    let bytes = wire.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    // Where the previous base64 run ended: a run directly after another is not canonical
    // (the encoder would have merged them).
    let mut last_run_end = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(Utf7Error::NotAscii(b));
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        let start = i + 1;
        let len = bytes[start..]
            .iter()
            .position(|&c| c == b'-')
            .ok_or(Utf7Error::Unterminated)?;
        let end = start + len;
        if len == 0 {
            out.push('&');
        } else {
            if last_run_end == Some(i) {
                return Err(Utf7Error::NotCanonical);
            }
            decode_run(&bytes[start..end], &mut out)?;
            last_run_end = Some(end + 1);
        }
        i = end + 1;
    }
    Ok(out)
}

fn decode_run(b64: &[u8], out: &mut String) -> Result<(), Utf7Error> {
    let raw = ENGINE.decode(b64).map_err(|_| Utf7Error::BadBase64)?;
    if raw.len() % 2 != 0 {
        return Err(Utf7Error::BadBase64);
    }
    let units = raw
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    for ch in char::decode_utf16(units) {
        let ch = ch.map_err(|_| Utf7Error::BadUtf16)?;
        if is_direct(ch) {
            return Err(Utf7Error::NotCanonical);
        }
        out.push(ch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs from RFC 3501 §5.1.3 and from what Dovecot writes.
    const PAIRS: &[(&str, &str)] = &[
        ("INBOX", "INBOX"),
        ("", ""),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("&", "&-"),
        ("&&", "&-&-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("Projekte/Entwürfe", "Projekte/Entw&APw-rfe"),
        ("日本", "&ZeVnLA-"),
        ("日本語", "&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("Gelöschte Elemente", "Gel&APY-schte Elemente"),
        ("Ünïcödé & more", "&ANw-n&AO8-c&APY-d&AOk- &- more"),
        // Outside the BMP: a surrogate pair.
        ("Mail 📬", "Mail &2D3c7A-"),
        // A tab is not printable ASCII, so it is encoded too.
        ("a\tb", "a&AAk-b"),
    ];

    #[test]
    fn encodes_known_names() {
        for (name, wire) in PAIRS {
            assert_eq!(encode(name), *wire, "encoding {name:?}");
        }
    }

    #[test]
    fn decodes_known_names() {
        for (name, wire) in PAIRS {
            assert_eq!(decode(wire).as_deref(), Ok(*name), "decoding {wire:?}");
        }
    }

    #[test]
    fn round_trips_every_kind_of_character() {
        let names = [
            "Entwürfe",
            "日本",
            "a&b&&c",
            "Ελληνικά/Πρόχειρα",
            "emoji 😀😀 mixed ä ascii",
            "\u{7f}\u{80}\u{ffff}\u{10000}\u{10ffff}",
        ];
        for name in names {
            let wire = encode(name);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire:?}");
            assert_eq!(decode(&wire).as_deref(), Ok(name));
        }
    }

    #[test]
    fn rejects_what_encode_never_writes() {
        let bad = [
            ("Entw&APw", Utf7Error::Unterminated),
            ("&!!-", Utf7Error::BadBase64),
            // One byte of UTF-16 is not a code unit.
            ("&AP-", Utf7Error::BadBase64),
            // Standard base64 `/` is not the IMAP alphabet.
            ("&U/BTFw-", Utf7Error::BadBase64),
            // An unpaired high surrogate.
            ("&2D0-", Utf7Error::BadUtf16),
            // "A" encoded in base64 instead of written directly.
            ("&AEE-", Utf7Error::NotCanonical),
            // Two adjacent runs that the encoder would have merged.
            ("&APw-&APw-", Utf7Error::NotCanonical),
            ("Entwürfe", Utf7Error::NotAscii(0xc3)),
        ];
        for (wire, err) in bad {
            assert_eq!(decode(wire), Err(err), "decoding {wire:?}");
        }
    }
}

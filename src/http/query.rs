//! The EAS request line: `Cmd`, `User`, `DeviceId`, `DeviceType` and command parameters, from
//! either query form.
//!
//! Owns parsing of the plain query (`?Cmd=Sync&User=…&DeviceId=…&DeviceType=…`, names
//! case-insensitive) and of the base64-encoded binary query (MS-ASHTTP 2.2.1.1.1.1), which also
//! carries the protocol version and policy key that the plain form sends as headers. Pure: no
//! I/O, never panics on any input.

use base64::Engine as _;

use super::limits::log_safe;
use crate::eas::ids::PolicyKey;
use crate::eas::version::{Command, ProtocolVersion};

/// Longest DeviceId we accept. The spec says 32, real clients send more; we only need a bound.
const MAX_DEVICE_ID: usize = 64;
const MAX_DEVICE_TYPE: usize = 64;
/// The longest command name is 17 characters; more of an unknown one says nothing.
const MAX_LOGGED_COMMAND: usize = 40;

pub use crate::eas::request::{CommandParams, RequestLine};

/// Why a query string is not an EAS request line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A required parameter (`Cmd`, `DeviceId`, `DeviceType`) is absent or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `Cmd` names no EAS command (or the base64 form has an unknown command code). The value
    /// is kept escaped and shortened ([`log_safe`]): it is logged before any log-in, and a
    /// raw one could forge log lines.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A DeviceId or DeviceType longer than we accept, or with control characters.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// The base64 form does not decode, or its fields run past the end.
    #[error("malformed base64 query")]
    MalformedBase64,
    /// The base64 form names a protocol version we do not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
}

/// Parses either query form.
pub fn parse(query: &str) -> Result<RequestLine, QueryError> {
    let plain = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
        .any(|k| {
            matches!(
                percent_decode(k).to_ascii_lowercase().as_str(),
                "cmd" | "deviceid"
            )
        });
    if plain {
        parse_plain(query)
    } else {
        parse_base64(query)
    }
}

fn parse_plain(query: &str) -> Result<RequestLine, QueryError> {
    let mut cmd = None;
    let mut line = RequestLine {
        command: Command::Sync,
        user: None,
        device_id: String::new(),
        device_type: String::new(),
        version: None,
        policy_key: None,
        locale: None,
        params: CommandParams::default(),
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match percent_decode(k).to_ascii_lowercase().as_str() {
            "cmd" => cmd = Some(v),
            "user" => line.user = Some(v).filter(|u| !u.is_empty()),
            "deviceid" => line.device_id = v,
            "devicetype" => line.device_type = v,
            "attachmentname" => line.params.attachment_name = Some(v),
            "collectionid" => line.params.collection_id = Some(v),
            "itemid" => line.params.item_id = Some(v),
            "longid" => line.params.long_id = Some(v),
            "occurrence" => line.params.occurrence = Some(v),
            "saveinsent" => line.params.save_in_sent = v.eq_ignore_ascii_case("T"),
            // Unknown parameters are ignored: clients add their own (e.g. `Locale`).
            _ => {}
        }
    }
    let cmd = cmd
        .filter(|c| !c.is_empty())
        .ok_or(QueryError::Missing("Cmd"))?;
    line.command = Command::from_name(&cmd)
        .ok_or_else(|| QueryError::UnknownCommand(log_safe(&cmd, MAX_LOGGED_COMMAND)))?;
    check_device(&line.device_id, &line.device_type)?;
    Ok(line)
}

fn parse_base64(query: &str) -> Result<RequestLine, QueryError> {
    let text = percent_decode(query);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim().as_bytes())
        .map_err(|_| QueryError::MalformedBase64)?;
    let mut r = Bytes(&bytes);
    let version_byte = r.u8()?;
    let version = ProtocolVersion::from_byte(version_byte)
        .ok_or(QueryError::UnsupportedVersion(version_byte))?;
    let code = r.u8()?;
    let command = Command::from_code(code).ok_or(QueryError::UnknownCommand(code.to_string()))?;
    let locale = u16::from_le_bytes([r.u8()?, r.u8()?]);
    let device_id = device_id_from_bytes(r.field()?);
    let policy_key = match r.u8()? {
        0 => None,
        4 => PolicyKey::from_number(u32::from_le_bytes(
            r.take(4)?.try_into().expect("4 bytes"),
        )),
        _ => return Err(QueryError::MalformedBase64),
    };
    let device_type =
        String::from_utf8(r.field()?.to_vec()).map_err(|_| QueryError::Invalid("DeviceType"))?;
    let mut line = RequestLine {
        command,
        user: None,
        device_id,
        device_type,
        version: Some(version),
        policy_key,
        locale: Some(locale),
        params: CommandParams::default(),
    };
    while !r.0.is_empty() {
        let tag = r.u8()?;
        let value = r.field()?;
        let text = || String::from_utf8_lossy(value).into_owned();
        match tag {
            0 => line.params.attachment_name = Some(text()),
            1 => line.params.collection_id = Some(text()),
            3 => line.params.item_id = Some(text()),
            4 => line.params.long_id = Some(text()),
            6 => line.params.occurrence = Some(text()),
            7 => {
                let options = value.first().copied().unwrap_or(0);
                line.params.save_in_sent = options & 0x01 != 0;
                line.params.accept_multipart = options & 0x02 != 0;
            }
            8 => line.user = Some(text()).filter(|u| !u.is_empty()),
            // Tags 2 and 5 are unused by the spec; later tags are ignored like unknown
            // plain-query parameters.
            _ => {}
        }
    }
    check_device(&line.device_id, &line.device_type)?;
    Ok(line)
}

/// A DeviceId in the base64 form is raw bytes: a string, or a 16-byte GUID. Printable ASCII is
/// kept as is (so the same phone has the same id in both forms); anything else is hex-encoded.
fn device_id_from_bytes(raw: &[u8]) -> String {
    if raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        raw.iter().map(|b| format!("{b:02X}")).collect()
    }
}

fn check_device(id: &str, kind: &str) -> Result<(), QueryError> {
    if id.is_empty() {
        return Err(QueryError::Missing("DeviceId"));
    }
    if kind.is_empty() {
        return Err(QueryError::Missing("DeviceType"));
    }
    if id.len() > MAX_DEVICE_ID || id.chars().any(|c| c.is_control()) {
        return Err(QueryError::Invalid("DeviceId"));
    }
    if kind.len() > MAX_DEVICE_TYPE || kind.chars().any(|c| c.is_control()) {
        return Err(QueryError::Invalid("DeviceType"));
    }
    Ok(())
}

/// A cursor over the base64 form's bytes.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> Result<u8, QueryError> {
        Ok(self.take(1)?[0])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], QueryError> {
        if self.0.len() < n {
            return Err(QueryError::MalformedBase64);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// A length-prefixed field.
    fn field(&mut self) -> Result<&'a [u8], QueryError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
}

/// `application/x-www-form-urlencoded` decoding: `%XX` escapes and `+` as space. Invalid escapes
/// are kept literally; invalid UTF-8 is replaced, since the values are only compared or stored.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn plain_query_with_any_case() {
        let line = parse("cmd=FolderSync&user=jane%40example.com&DEVICEID=dev1&DeviceType=iPhone")
            .unwrap();
        assert_eq!(line.command, Command::FolderSync);
        assert_eq!(line.user.as_deref(), Some("jane@example.com"));
        assert_eq!(line.device_id, "dev1");
        assert_eq!(line.device_type, "iPhone");
        assert_eq!(line.version, None);
        let line = parse("Cmd=SendMail&DeviceId=a&DeviceType=b&SaveInSent=T&ItemId=5%3A7").unwrap();
        assert!(line.params.save_in_sent);
        assert_eq!(line.params.item_id.as_deref(), Some("5:7"));
    }

    #[test]
    fn plain_query_errors() {
        assert_eq!(
            parse("Cmd=Sync&DeviceType=x"),
            Err(QueryError::Missing("DeviceId"))
        );
        assert_eq!(
            parse("Cmd=Sync&DeviceId=x"),
            Err(QueryError::Missing("DeviceType"))
        );
        assert_eq!(
            parse("DeviceId=x&DeviceType=y"),
            Err(QueryError::Missing("Cmd"))
        );
        assert_eq!(
            parse("Cmd=Frobnicate&DeviceId=x&DeviceType=y"),
            Err(QueryError::UnknownCommand("Frobnicate".into()))
        );
        let long = "x".repeat(65);
        assert_eq!(
            parse(&format!("Cmd=Sync&DeviceId={long}&DeviceType=y")),
            Err(QueryError::Invalid("DeviceId"))
        );
    }

    #[test]
    fn an_unknown_command_reaches_the_log_escaped() {
        let forged = "Foo%0A2026-12-04T10:00:00Z%20INFO%20eas:%20answered%20user=admin";
        let Err(e) = parse(&format!("Cmd={forged}&DeviceId=a&DeviceType=b")) else {
            panic!("an unknown command was accepted");
        };
        let logged = format!(
            "{} / {}",
            e,
            super::super::error::HttpError::from(e.clone())
        );
        assert!(!logged.contains('\n'), "{logged}");
        assert!(logged.contains("Foo\\n2026"), "{logged}");
        let long = "X".repeat(5000);
        let Err(QueryError::UnknownCommand(kept)) =
            parse(&format!("Cmd={long}&DeviceId=a&DeviceType=b"))
        else {
            panic!("accepted");
        };
        assert!(kept.len() < 50, "{kept}");
        // Device id and type with control characters are refused outright.
        assert_eq!(
            parse("Cmd=Sync&DeviceId=a%0Ab&DeviceType=b"),
            Err(QueryError::Invalid("DeviceId"))
        );
        assert_eq!(
            parse("Cmd=Sync&DeviceId=a&DeviceType=b%0D"),
            Err(QueryError::Invalid("DeviceType"))
        );
    }

    #[test]
    fn the_specs_base64_example() {
        // v14.0, Sync, LCID 1033, DeviceId "v140Device", no policy key, DeviceType "SmartPhone".
        let line = parse("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l").unwrap();
        assert_eq!(line.version, Some(ProtocolVersion::V14_0));
        assert_eq!(line.command, Command::Sync);
        assert_eq!(line.locale, Some(0x0409));
        assert_eq!(line.device_id, "v140Device");
        assert_eq!(line.device_type, "SmartPhone");
        assert_eq!(line.policy_key, None);
    }

    #[test]
    fn base64_with_policy_key_guid_device_and_parameters() {
        let mut raw = vec![141, 20, 0x09, 0x04, 16];
        raw.extend(0u8..16);
        raw.extend([4, 0x78, 0x56, 0x34, 0x12, 6]);
        raw.extend(b"Laptop");
        raw.extend([8, 4]);
        raw.extend(b"jane");
        raw.extend([7, 1, 0x03]);
        let q = base64::engine::general_purpose::STANDARD.encode(&raw);
        let line = parse(
            &q.replace('+', "%2B")
                .replace('/', "%2F")
                .replace('=', "%3D"),
        )
        .unwrap();
        assert_eq!(line.command, Command::Provision);
        assert_eq!(line.device_id, "000102030405060708090A0B0C0D0E0F");
        assert_eq!(line.policy_key, PolicyKey::from_number(0x1234_5678));
        assert_eq!(line.user.as_deref(), Some("jane"));
        assert!(line.params.save_in_sent && line.params.accept_multipart);
        // Cut anywhere: never a panic, and an error while a field is incomplete.
        let header_end = 5 + 16 + 5 + 7;
        for n in 0..raw.len() {
            let q = base64::engine::general_purpose::STANDARD.encode(&raw[..n]);
            let parsed = parse(&q);
            let field_cut = n < header_end || n == header_end + 1 || n == header_end + 3;
            assert!(!field_cut || parsed.is_err(), "prefix {n}");
        }
    }

    #[test]
    fn percent_decoding_edges() {
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("a+b%41"), "a bA");
    }
}

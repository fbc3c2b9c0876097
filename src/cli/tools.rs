//! Offline tools: converting between WBXML and its readable XML form.
//!
//! Owns the behaviour of `eas-gateway wbxml decode|encode`. It reads and writes whole byte
//! buffers; the binary does the file and terminal handling.

use eas_wbxml::{DecodeError, Limits, XmlError};

/// Why a conversion failed; each variant prints as one line for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The input is not a WBXML document we accept.
    #[error("not a valid EAS WBXML document: {0}")]
    Decode(DecodeError),
    /// The input is not the readable XML form.
    #[error("not a valid EAS XML document: {0}")]
    Xml(XmlError),
    /// The input is not UTF-8 text (XML input only).
    #[error("XML input is not UTF-8")]
    NotUtf8,
}

impl From<DecodeError> for ToolError {
    fn from(e: DecodeError) -> Self {
        ToolError::Decode(e)
    }
}

impl From<XmlError> for ToolError {
    fn from(e: XmlError) -> Self {
        ToolError::Xml(e)
    }
}

/// WBXML bytes → readable XML.
pub fn decode(wbxml: &[u8], limits: Limits) -> Result<String, ToolError> {
    Ok(eas_wbxml::xml::wbxml_to_xml(wbxml, limits)?)
}

/// Readable XML → canonical WBXML bytes.
pub fn encode(xml: &[u8]) -> Result<Vec<u8>, ToolError> {
    let text = std::str::from_utf8(xml).map_err(|_| ToolError::NotUtf8)?;
    Ok(eas_wbxml::from_xml(text)?.encode())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn both_directions_and_one_line_errors() {
        let xml = "<Ping xmlns=\"Ping:\"><HeartbeatInterval>480</HeartbeatInterval></Ping>";
        let bytes = encode(xml.as_bytes()).unwrap();
        assert_eq!(&bytes[..4], &eas_wbxml::HEADER);
        let back = decode(&bytes, Limits::default()).unwrap();
        assert!(back.contains("<HeartbeatInterval>480</HeartbeatInterval>"));

        let err = decode(&[0x03, 0x01, 0x6A, 0x00, 0x45], Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a valid EAS WBXML document: document truncated at byte 5"
        );
        let err = encode(b"<Nope xmlns=\"Ping:\"/>").unwrap_err();
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn string_table_amplification_is_refused_by_the_default_limits() {
        // A 6 KB entry referenced 3,000 times: 12 KB that would decode to 18 MB of text.
        let mut doc = vec![0x03, 0x01, 0x6A, 0xAE, 0x71];
        doc.extend(std::iter::repeat_n(b'A', 6000));
        doc.extend_from_slice(&[0x00, 0x45, 0x4B]);
        doc.extend_from_slice(&[0x83, 0x00].repeat(3000));
        doc.extend_from_slice(&[0x01, 0x01]);
        let err = decode(&doc, Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ToolError::Decode(DecodeError::BudgetExceeded {
                    what: eas_wbxml::Budget::DecodedBytes,
                    ..
                })
            ),
            "{err}"
        );
    }
}

//! Drafts a 16.x phone creates with Sync `<Add>` in the Drafts folder: the item's
//! ApplicationData (To, Cc, Bcc, Subject, Importance, Body) written as an RFC 5322 message
//! that any IMAP client (Thunderbird, webmail) opens as a draft.
//!
//! Pure: builds bytes, nothing else. The From address is the authenticated user's; what a
//! phone puts in the item cannot change it.

use base64::Engine as _;
use eas_wbxml::Element;
use eas_wbxml::tags::{airsyncbase as asb, email, email2};

use crate::mime::date::rfc5322_date;

/// The message for a draft item, or None when the item is not a draft we can store (no
/// usable body type).
pub fn message(
    data: &Element,
    from: &str,
    now_unix: i64,
    message_id_host: &str,
) -> Option<Vec<u8>> {
    let text = |t| child_text(data, t).map(str::trim).filter(|s| !s.is_empty());
    let (kind, body) = match data.child(asb::Body) {
        Some(b) => (
            child_text(b, asb::Type).unwrap_or("1").trim().to_owned(),
            child_text(b, asb::Data).unwrap_or("").to_owned(),
        ),
        None => ("1".to_owned(), String::new()),
    };
    let content_type = match kind.as_str() {
        "1" => "text/plain",
        "2" => "text/html",
        _ => return None,
    };
    let mut m = String::new();
    header(&mut m, "From", Some(from));
    header(&mut m, "To", text(email::To));
    header(&mut m, "Cc", text(email::Cc));
    header(&mut m, "Bcc", text(email2::Bcc));
    header(&mut m, "Subject", text(email::Subject));
    header(&mut m, "Date", Some(&rfc5322_date(now_unix)));
    let id = format!(
        "<{}.{}@{}>",
        now_unix,
        rand::random::<u64>(),
        message_id_host
    );
    header(&mut m, "Message-ID", Some(&id));
    match text(email::Importance) {
        Some("2") => header(&mut m, "Importance", Some("high")),
        Some("0") => header(&mut m, "Importance", Some("low")),
        _ => {}
    }
    header(&mut m, "MIME-Version", Some("1.0"));
    header(
        &mut m,
        "Content-Type",
        Some(&format!("{content_type}; charset=utf-8")),
    );
    header(&mut m, "Content-Transfer-Encoding", Some("base64"));
    m.push_str("\r\n");
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    for chunk in encoded.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        m.push_str("\r\n");
    }
    Some(m.into_bytes())
}

/// One header field, folded and encoded by `mime::header`: addresses as address lists,
/// Subject as text (encoded words when not ASCII), the rest as they are.
fn header(m: &mut String, name: &str, value: Option<&str>) {
    use crate::mime::header;
    if let Some(v) = value {
        m.push_str(&match name {
            "From" | "To" | "Cc" | "Bcc" => header::address_list(name, v),
            _ => header::text(name, v),
        });
    }
}

fn child_text(e: &Element, tag: eas_wbxml::Tag) -> Option<&str> {
    e.child(tag).and_then(|c| c.text())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_772_445_600),
            "Mon, 2 Mar 2026 10:00:00 +0000"
        );
    }

    #[test]
    fn a_draft_becomes_a_message() {
        let data = eas_wbxml::from_xml(
            r#"<ApplicationData xmlns="AirSync:" xmlns:email="Email:" xmlns:airsyncbase="AirSyncBase:">
                 <email:To>bob@example.org</email:To><email:Subject>Grüße
injected: header</email:Subject>
                 <airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Hi Bob</airsyncbase:Data></airsyncbase:Body>
               </ApplicationData>"#,
        )
        .unwrap();
        let m =
            String::from_utf8(message(&data, "me@example.com", 0, "example.com").unwrap()).unwrap();
        assert!(
            m.starts_with("From: me@example.com\r\nTo: bob@example.org\r\nSubject: =?utf-8?b?")
        );
        assert!(!m.contains("\r\ninjected"));
        assert!(m.contains("Content-Type: text/plain; charset=utf-8"));
        assert!(m.ends_with("\r\n\r\nSGkgQm9i\r\n"));
        let rtf = eas_wbxml::from_xml(
            r#"<ApplicationData xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><airsyncbase:Body><airsyncbase:Type>3</airsyncbase:Type></airsyncbase:Body></ApplicationData>"#,
        )
        .unwrap();
        assert_eq!(message(&rtf, "me@example.com", 0, "example.com"), None);
    }
}

//! Autodiscover for mobile clients: `POST /autodiscover/autodiscover.xml` with the mobilesync
//! request schema answers the ActiveSync URL.
//!
//! Owns the request reading and the two response shapes (settings, or the schema's error). The
//! caller has already authenticated the user.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

const RESPONSE_NS: &str = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const MOBILESYNC_RESPONSE: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";

/// What the request asked.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub email: String,
    pub schema: String,
}

/// Reads `Autodiscover > Request > { EMailAddress, AcceptableResponseSchema }` (namespaces and
/// element order are not checked: clients differ).
pub fn parse(body: &[u8]) -> Option<Request> {
    let mut reader = Reader::from_reader(body);
    let mut current = Vec::new();
    // The element's text so far: it arrives in pieces around each `&...;` reference.
    let mut text = String::new();
    let (mut email, mut schema) = (None, None);
    let mut depth = 0usize;
    let mut saw_root = false;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                depth += 1;
                saw_root |= e.local_name().as_ref() == b"Autodiscover" && depth == 1;
                current = e.local_name().as_ref().to_vec();
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().ok()?),
            Event::GeneralRef(r) => match r.resolve_char_ref().ok()? {
                Some(c) => text.push(c),
                None => text.push_str(resolve_predefined_entity(&r.decode().ok()?)?),
            },
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                let value = text.trim();
                match current.as_slice() {
                    b"EMailAddress" => email = Some(value.to_owned()),
                    b"AcceptableResponseSchema" => schema = Some(value.to_owned()),
                    _ => {}
                }
                current.clear();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root || depth != 0 {
        return None;
    }
    Some(Request {
        email: email.filter(|e| !e.is_empty())?,
        schema: schema.unwrap_or_default(),
    })
}

/// Whether the client accepts the mobilesync schema (the only one we answer).
pub fn wants_mobilesync(request: &Request) -> bool {
    request.schema.is_empty() || request.schema.eq_ignore_ascii_case(MOBILESYNC_RESPONSE)
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The settings response pointing the phone at `url`.
pub fn settings_response(email: &str, url: &str) -> String {
    let (email, url) = (escape(email), escape(url));
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"{RESPONSE_NS}\">\n\
         <Response xmlns=\"{MOBILESYNC_RESPONSE}\">\n\
         <Culture>en:us</Culture>\n\
         <User><DisplayName>{email}</DisplayName><EMailAddress>{email}</EMailAddress></User>\n\
         <Action><Settings><Server><Type>MobileSync</Type><Url>{url}</Url><Name>{url}</Name>\
         </Server></Settings></Action>\n\
         </Response>\n\
         </Autodiscover>\n"
    )
}

/// The schema's error response: 600 for a request we cannot read, 601 for a response schema
/// we do not provide.
pub fn error_response(code: u16) -> String {
    let message = if code == 601 {
        "Provider is not available"
    } else {
        "Invalid Request"
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"{RESPONSE_NS}\">\n\
         <Response>\n\
         <Error Time=\"00:00:00\" Id=\"1\">\n\
         <ErrorCode>{code}</ErrorCode>\n\
         <Message>{message}</Message>\n\
         <DebugData />\n\
         </Error>\n\
         </Response>\n\
         </Autodiscover>\n"
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reads_the_mobilesync_request() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006">
  <Request>
    <EMailAddress>jane@example.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;
        let r = parse(body).unwrap();
        assert_eq!(r.email, "jane@example.com");
        assert!(wants_mobilesync(&r));
        let out = settings_response(
            &r.email,
            "https://mail.example.com/Microsoft-Server-ActiveSync",
        );
        assert!(out.contains("<Url>https://mail.example.com/Microsoft-Server-ActiveSync</Url>"));
    }

    #[test]
    fn rejects_garbage_and_other_schemas() {
        assert_eq!(parse(b"<Autodiscover><Request>"), None);
        assert_eq!(parse(b"not xml at all"), None);
        assert_eq!(
            parse(b"<Other><EMailAddress>a@b</EMailAddress></Other>"),
            None
        );
        let r = parse(b"<Autodiscover><Request><EMailAddress>a@b</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>").unwrap();
        assert!(!wants_mobilesync(&r));
        assert!(error_response(600).contains("<ErrorCode>600</ErrorCode>"));
    }

    #[test]
    fn references_in_the_address_are_resolved() {
        let r = parse(b"<Autodiscover><Request><EMailAddress> o&apos;brien&#x2B;eas&#64;example.com </EMailAddress></Request></Autodiscover>").unwrap();
        assert_eq!(r.email, "o'brien+eas@example.com");
        assert_eq!(
            parse(b"<Autodiscover><Request><EMailAddress>a&nbsp;b</EMailAddress></Request></Autodiscover>"),
            None
        );
    }
}

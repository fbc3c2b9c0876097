//! ResolveRecipients (MS-ASCMD 2.2.1.15): names and addresses typed on the phone, looked up
//! in the configured directory.
//!
//! S/MIME certificates come from the directory (LDAP `userCertificate;binary`); a recipient
//! without one gets certificate status 7. Exchange's mini-certificate format is its own and
//! undocumented, so a request for mini certificates (CertificateRetrieval 3) gets the first
//! full X.509 certificate in `MiniCertificate`, the only form the directory holds.
//! Availability (free/busy) comes from the recipient's calendars on the user's CalDAV server
//! when the user may read them (`freebusy`): status 163 when not, 162 when the server is down;
//! without a `[dav]` server every half hour is "no data" (4). Up to 100 names per request, as
//! Exchange allows.

use eas_wbxml::Element;
use eas_wbxml::tags::resolverecipients as r;

use super::freebusy::Availability;
use super::status::ResolveRecipientsStatus;
use super::{Context, EasError, Reply, child_text, gal, search};
use crate::directory::{Entry, Resolution};

/// Most `To` elements one request may carry.
const MAX_TO: usize = 100;
/// Suggestions per ambiguous name when the request does not say.
const DEFAULT_AMBIGUOUS: usize = 20;
/// Longest free/busy span Exchange 2010+ answers.
const MAX_AVAILABILITY_SECS: i64 = 42 * 86_400;
const HALF_HOUR: i64 = 1800;

/// What CertificateRetrieval asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Certificates {
    /// 1 (the default): none.
    None,
    /// 2: every full certificate.
    Full,
    /// 3: one mini certificate.
    Mini,
}

#[derive(Debug, PartialEq)]
struct Request {
    to: Vec<String>,
    certificates: Certificates,
    max_ambiguous: usize,
    /// (start, end) in unix seconds.
    availability: Option<(i64, i64)>,
    pictures: Option<gal::PictureRequest>,
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let request = match parse(body) {
        Ok(r) => r,
        Err(why) => {
            tracing::info!(%why, "bad ResolveRecipients");
            return Ok(top(ResolveRecipientsStatus::ProtocolError));
        }
    };
    let mut budget = gal::PictureBudget::new(request.pictures);
    let mut responses = Vec::with_capacity(request.to.len());
    let mut free_busy = request
        .availability
        .and_then(|_| super::freebusy::FreeBusy::new(ctx));
    for to in &request.to {
        let resolution = match ctx.directory.resolve(to, Some(ctx.directory_asker())).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "directory unavailable");
                return Ok(top(ResolveRecipientsStatus::ServerError));
            }
        };
        // Free/busy only for a name that resolved to one person, as the spec says.
        let availability = match (&resolution, request.availability, free_busy.as_mut()) {
            (Resolution::Resolved(e), Some((start, end)), Some(fb)) => match e.primary_email() {
                Some(email) => Some(fb.of(email, start, end).await),
                None => Some(Availability::NoData),
            },
            _ => None,
        };
        responses.push(response(
            to,
            resolution,
            &request,
            availability.as_ref(),
            &mut budget,
        ));
    }
    let mut children = vec![Element::with_text(
        r::Status,
        ResolveRecipientsStatus::Success.as_str(),
    )];
    children.extend(responses);
    Ok(Reply::Document(Element::with_children(
        r::ResolveRecipients,
        children,
    )))
}

fn parse(body: &Element) -> Result<Request, String> {
    let to: Vec<String> = body
        .children_with(r::To)
        .map(|t| t.text().unwrap_or("").trim().to_owned())
        .collect();
    if to.is_empty() {
        return Err("no To".into());
    }
    if to.len() > MAX_TO {
        return Err(format!("{} names, more than {MAX_TO}", to.len()));
    }
    if to.iter().any(|t| t.is_empty() || t.chars().count() > 256) {
        return Err("an empty or over-long To".into());
    }
    let options = body.child(r::Options);
    let number = |tag| -> Result<Option<usize>, String> {
        match options.and_then(|o| child_text(o, tag)) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("{tag:?} is not a number")),
        }
    };
    let certificates = match number(r::CertificateRetrieval)?.unwrap_or(1) {
        1 => Certificates::None,
        2 => Certificates::Full,
        3 => Certificates::Mini,
        _ => return Err("CertificateRetrieval out of range".into()),
    };
    let availability = match options.and_then(|o| o.child(r::Availability)) {
        None => None,
        Some(a) => {
            let start = child_text(a, r::StartTime)
                .and_then(search::parse_eas_date)
                .ok_or("Availability without a valid StartTime")?;
            let end = match child_text(a, r::EndTime) {
                None => start + 7 * 86_400,
                Some(t) => search::parse_eas_date(t).ok_or("invalid EndTime")?,
            };
            if end < start + HALF_HOUR || end - start > MAX_AVAILABILITY_SECS {
                return Err("Availability span out of range".into());
            }
            Some((start, end))
        }
    };
    Ok(Request {
        to,
        certificates,
        max_ambiguous: number(r::MaxAmbiguousRecipients)?.unwrap_or(DEFAULT_AMBIGUOUS),
        availability,
        pictures: gal::PictureRequest::from_options(
            options,
            r::Picture,
            r::MaxSize,
            r::MaxPictures,
        ),
    })
}

fn response(
    to: &str,
    resolution: Resolution,
    request: &Request,
    availability: Option<&Availability>,
    budget: &mut gal::PictureBudget,
) -> Element {
    let (status, count, shown, unique): (ResolveRecipientsStatus, usize, Vec<Entry>, bool) =
        match resolution {
            Resolution::Resolved(e) => (ResolveRecipientsStatus::Success, 1, vec![*e], true),
            Resolution::Ambiguous(all) => {
                let count = all.len();
                let shown: Vec<Entry> = all.into_iter().take(request.max_ambiguous).collect();
                let status = if shown.len() < count {
                    ResolveRecipientsStatus::AmbiguousPartial
                } else {
                    ResolveRecipientsStatus::Ambiguous
                };
                (status, count, shown, false)
            }
            Resolution::NotFound => (ResolveRecipientsStatus::NotResolved, 0, Vec::new(), false),
        };
    let mut children = vec![
        Element::with_text(r::To, to),
        Element::with_text(r::Status, status.as_str()),
        Element::with_text(r::RecipientCount, count.to_string()),
    ];
    for entry in &shown {
        children.push(recipient(entry, request, unique, availability, budget));
    }
    Element::with_children(r::Response, children)
}

fn recipient(
    entry: &Entry,
    request: &Request,
    unique: bool,
    availability: Option<&Availability>,
    budget: &mut gal::PictureBudget,
) -> Element {
    let mut c = vec![
        // 1: a GAL entry (the gateway has no personal contacts to resolve against).
        Element::with_text(r::Type, "1"),
        Element::with_text(r::DisplayName, entry.display_name.clone()),
        Element::with_text(r::EmailAddress, entry.primary_email().unwrap_or("")),
    ];
    // Free/busy only for a name that resolved to one person, as the spec says.
    if let (Some((start, end)), true) = (request.availability, unique) {
        let slots = ((end - start) + HALF_HOUR - 1) / HALF_HOUR;
        let children = match availability {
            Some(Availability::Data(merged)) => vec![
                Element::with_text(r::Status, ResolveRecipientsStatus::Success.as_str()),
                Element::with_text(r::MergedFreeBusy, merged.clone()),
            ],
            Some(Availability::NoData) => vec![Element::with_text(
                r::Status,
                ResolveRecipientsStatus::NoFreeBusyData.as_str(),
            )],
            Some(Availability::Retry) => vec![Element::with_text(
                r::Status,
                ResolveRecipientsStatus::FreeBusyRetry.as_str(),
            )],
            // No calendar server: 4 (no data) for every half hour.
            None => vec![
                Element::with_text(r::Status, ResolveRecipientsStatus::Success.as_str()),
                Element::with_text(r::MergedFreeBusy, "4".repeat(slots as usize)),
            ],
        };
        c.push(Element::with_children(r::Availability, children));
    }
    if request.certificates != Certificates::None && unique {
        c.push(certificates(entry, request.certificates));
    }
    if let Some((status, data)) = budget.take(entry) {
        let mut p = vec![Element::with_text(r::Status, status.as_str())];
        if let Some(data) = data {
            p.push(Element::with_opaque(r::Data, data.to_vec()));
        }
        c.push(Element::with_children(r::Picture, p));
    }
    Element::with_children(r::Recipient, c)
}

/// The Certificates container of one resolved person: Status, CertificateCount, and when
/// there are certificates RecipientCount (1: a person, not a distribution list) and them.
fn certificates(entry: &Entry, wanted: Certificates) -> Element {
    use base64::Engine;
    let b64 = |der: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(der);
    let found = &entry.certificates;
    let status = if found.is_empty() {
        ResolveRecipientsStatus::NoValidCertificate
    } else {
        ResolveRecipientsStatus::Success
    };
    let mut c = vec![
        Element::with_text(r::Status, status.as_str()),
        Element::with_text(r::CertificateCount, found.len().to_string()),
    ];
    // With certificates, whose they are: one person (a distribution list would count its
    // members). Without any there is nobody to count, as the recorded answers show.
    if !found.is_empty() {
        c.push(Element::with_text(r::RecipientCount, "1"));
    }
    match wanted {
        Certificates::None => {}
        Certificates::Full => {
            c.extend(
                found
                    .iter()
                    .map(|d| Element::with_text(r::Certificate, b64(d))),
            );
        }
        Certificates::Mini => {
            c.extend(
                found
                    .first()
                    .map(|d| Element::with_text(r::MiniCertificate, b64(d))),
            );
        }
    }
    Element::with_children(r::Certificates, c)
}

fn top(status: ResolveRecipientsStatus) -> Reply {
    Reply::Document(Element::with_children(
        r::ResolveRecipients,
        vec![Element::with_text(r::Status, status.as_str())],
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    fn req(xml: &str) -> Result<Request, String> {
        parse(&eas_wbxml::from_xml(xml).unwrap())
    }

    #[test]
    fn requests_are_checked() {
        let ok = req(r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>bob</To><Options>
              <CertificateRetrieval>2</CertificateRetrieval><MaxAmbiguousRecipients>3</MaxAmbiguousRecipients>
              <Availability><StartTime>2026-11-01T00:00:00.000Z</StartTime><EndTime>2026-11-01T02:00:00.000Z</EndTime></Availability>
              <Picture/></Options></ResolveRecipients>"#)
        .unwrap();
        assert_eq!(ok.to, vec!["bob"]);
        assert_eq!(ok.certificates, Certificates::Full);
        assert_eq!(ok.max_ambiguous, 3);
        assert_eq!(ok.availability.map(|(s, e)| e - s), Some(7200));
        assert!(ok.pictures.is_some());
        assert!(req(r#"<ResolveRecipients xmlns="ResolveRecipients:"/>"#).is_err());
        assert!(req(r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>x</To><Options><Availability><EndTime>2026-11-01T02:00:00Z</EndTime></Availability></Options></ResolveRecipients>"#).is_err());
        assert!(req(r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>x</To><Options><CertificateRetrieval>9</CertificateRetrieval></Options></ResolveRecipients>"#).is_err());
        let many = format!(
            r#"<ResolveRecipients xmlns="ResolveRecipients:">{}</ResolveRecipients>"#,
            "<To>a</To>".repeat(101)
        );
        assert!(req(&many).is_err());
    }

    #[test]
    fn certificates_are_answered_as_asked() {
        let der = vec![0x30, 0x82, 0x01];
        let with = Entry {
            certificates: vec![der.clone(), vec![0x30, 0x03]],
            ..Entry::default()
        };
        let full = certificates(&with, Certificates::Full);
        assert_eq!(child_text(&full, r::Status), Some("1"));
        assert_eq!(child_text(&full, r::CertificateCount), Some("2"));
        assert_eq!(full.children_with(r::Certificate).count(), 2);
        let mini = certificates(&with, Certificates::Mini);
        assert_eq!(mini.children_with(r::MiniCertificate).count(), 1);
        assert_eq!(child_text(&mini, r::MiniCertificate), Some("MIIB"));
        let none = certificates(&Entry::default(), Certificates::Full);
        assert_eq!(child_text(&none, r::Status), Some("7"));
        assert_eq!(child_text(&none, r::CertificateCount), Some("0"));
        assert_eq!(none.children_with(r::Certificate).count(), 0);
    }
}

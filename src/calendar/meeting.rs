//! Meeting invitations that arrive by mail (iTIP, RFC 5546) as EAS sees them (pure).
//!
//! Owns three things: reading the `text/calendar` part of an invitation or cancellation
//! ([`parse`]) into what the Email item's `email:MeetingRequest` carries ([`write_meeting_request`],
//! [`message_class`]); setting the user's own PARTSTAT in a calendar object when they answer
//! ([`respond`]); and the iTIP REPLY that tells the organizer ([`reply`]), or the COUNTER when
//! the user proposes another time ([`Proposal`]). No I/O: the mail, the DAV server and SMTP are
//! the command's.

use std::io::Write;

use base64::Engine;
use calcard::icalendar::{
    ICalendar, ICalendarComponentType, ICalendarEntry, ICalendarMethod, ICalendarParameter,
    ICalendarParameterName, ICalendarParticipationStatus, ICalendarProperty, ICalendarValue, Uri,
};
use chrono::{Datelike, NaiveDateTime};
use eas_wbxml::tags::{airsyncbase as asb, email, email2};
use eas_wbxml::{EncodeError, Writer};

use super::event::{EventData, EventOptions, MergeOptions};
use super::ical;
use super::recurrence::Tags;
use super::timezone::Zone;
use super::{CalendarError, Version, date};

/// What an iTIP object asks (the METHOD of its VCALENDAR, or the `method` of its part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Request,
    Cancel,
    /// An attendee's answer; the PARTSTAT it carries (2 tentative, 3 accepted, 4 declined).
    Reply(u8),
    /// PUBLISH, COUNTER, REFRESH…: shown as an ordinary mail.
    Other,
}

/// The user's answer (MeetingResponse `UserResponse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Accepted,
    Tentative,
    Declined,
}

impl Response {
    /// `UserResponse` 1, 2 or 3.
    pub fn from_code(code: &str) -> Option<Response> {
        match code.trim() {
            "1" => Some(Response::Accepted),
            "2" => Some(Response::Tentative),
            "3" => Some(Response::Declined),
            _ => None,
        }
    }

    fn partstat(self) -> ICalendarParticipationStatus {
        match self {
            Response::Accepted => ICalendarParticipationStatus::Accepted,
            Response::Tentative => ICalendarParticipationStatus::Tentative,
            Response::Declined => ICalendarParticipationStatus::Declined,
        }
    }

    /// The word the reply's subject starts with.
    pub fn word(self) -> &'static str {
        match self {
            Response::Accepted => "Accepted",
            Response::Tentative => "Tentative",
            Response::Declined => "Declined",
        }
    }
}

/// Another time the attendee proposes (MeetingResponse 16.x `ProposedStartTime` and
/// `ProposedEndTime`, UTC). Without an end the meeting keeps its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub start: NaiveDateTime,
    pub end: Option<NaiveDateTime>,
}

/// Whether the organizer forbade proposing new times (X-MICROSOFT-DISALLOW-COUNTER on the
/// first VEVENT), as Outlook marks such meetings.
pub fn disallows_counter(ical: &ICalendar) -> bool {
    ical::children_of(ical, &ICalendarComponentType::VEvent)
        .first()
        .and_then(|id| {
            ical::text(
                &ical.components[*id as usize],
                &ICalendarProperty::Other("X-MICROSOFT-DISALLOW-COUNTER".into()),
            )
        })
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("TRUE"))
}

/// Why an answer cannot be applied (MeetingResponse status 2: not a meeting to answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeetingError {
    #[error("the user organizes this meeting")]
    Organizer,
    #[error("no such occurrence")]
    NoInstance,
    #[error(transparent)]
    Calendar(#[from] CalendarError),
}

/// One invitation, cancellation or reply as read from a mail's calendar part.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub method: Method,
    /// The object as it came (METHOD included).
    pub ical: ICalendar,
    pub uid: String,
    pub sequence: i64,
    /// The meeting as EAS sees it: the series, or the one occurrence the mail is about.
    pub data: EventData,
    /// The occurrence (UTC) when the mail is about one occurrence of a series.
    pub recurrence_id: Option<NaiveDateTime>,
    /// Whether the organizer asked for an answer (the user's RSVP, true when unsaid).
    pub response_requested: bool,
    /// X-MICROSOFT-DISALLOW-COUNTER.
    pub disallow_new_time: bool,
}

fn method_of(ical: &ICalendar, hint: Option<&str>) -> Option<String> {
    let root = ical.components.first()?;
    root.property(&ICalendarProperty::Method)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(str::to_owned)
        .or_else(|| hint.map(str::to_owned))
}

fn email_of(v: &str) -> &str {
    let v = v.trim();
    if v.len() >= 7 && v[..7].eq_ignore_ascii_case("mailto:") {
        &v[7..]
    } else {
        v
    }
}

fn is_user(value: Option<&str>, user_emails: &[&str]) -> bool {
    value.is_some_and(|v| {
        let e = email_of(v);
        user_emails.iter().any(|u| u.eq_ignore_ascii_case(e))
    })
}

/// Reads an iTIP object. `method_hint` is the `method` parameter of the MIME part, used when
/// the VCALENDAR has no METHOD; `user_emails` tell the user's ATTENDEE (its RSVP).
pub fn parse(
    text: &str,
    method_hint: Option<&str>,
    user_emails: &[&str],
    year: i32,
) -> Result<Invitation, CalendarError> {
    let ical = ical::parse(text)?;
    let events = ical::children_of(&ical, &ICalendarComponentType::VEvent);
    let Some(&first) = events.first() else {
        return Err(CalendarError::NoComponent("VEVENT"));
    };
    let c = &ical.components[first as usize];
    let method = match method_of(&ical, method_hint)
        .map(|m| m.to_ascii_uppercase())
        .as_deref()
    {
        Some("REQUEST") | Some("ADD") => Method::Request,
        Some("CANCEL") => Method::Cancel,
        Some("REPLY") => {
            let partstat = c
                .properties(&ICalendarProperty::Attendee)
                .find_map(|e| param(e, &ICalendarParameterName::Partstat));
            Method::Reply(match partstat.map(str::to_ascii_uppercase).as_deref() {
                Some("ACCEPTED") => 3,
                Some("DECLINED") => 4,
                _ => 2,
            })
        }
        _ => Method::Other,
    };
    let uid = ical::text(c, &ICalendarProperty::Uid)
        .ok_or_else(|| CalendarError::Parse("an iTIP VEVENT without UID".into()))?
        .to_owned();
    let sequence = c
        .property(&ICalendarProperty::Sequence)
        .and_then(|e| e.values.first()?.as_integer())
        .unwrap_or(0);
    let zone = Zone::Utc;
    let options = EventOptions {
        version: Version::V16_1,
        body_preferences: &[],
        user_zone: &zone,
        year,
        user_emails,
    };
    let data = match EventData::from_ical(&ical, &options) {
        Ok((data, _)) => data,
        // A REPLY need not carry the meeting's times (RFC 5546 §3.2.3).
        Err(_) if matches!(method, Method::Reply(_)) => EventData {
            uid: Some(uid.clone()),
            ..EventData::default()
        },
        Err(e) => return Err(e),
    };
    let recurrence_id = data.instance_id;
    let rsvp = c
        .properties(&ICalendarProperty::Attendee)
        .find(|e| is_user(e.values.first().and_then(|v| v.as_text()), user_emails))
        .and_then(|e| e.parameters(&ICalendarParameterName::Rsvp).next())
        .map(|v| !matches!(v, calcard::icalendar::ICalendarParameterValue::Bool(false)));
    let disallow_new_time = ical::text(
        c,
        &ICalendarProperty::Other("X-MICROSOFT-DISALLOW-COUNTER".into()),
    )
    .is_some_and(|v| v.eq_ignore_ascii_case("TRUE"));
    Ok(Invitation {
        method,
        ical,
        uid,
        sequence,
        data,
        recurrence_id,
        response_requested: rsvp.unwrap_or(true),
        disallow_new_time,
    })
}

fn param<'a>(e: &'a ICalendarEntry, name: &ICalendarParameterName) -> Option<&'a str> {
    e.parameters(name).find_map(|v| v.as_text())
}

/// `email:MessageClass` of a mail carrying this object (None: an ordinary mail).
pub fn message_class(method: &Method) -> Option<&'static str> {
    Some(match method {
        Method::Request => "IPM.Schedule.Meeting.Request",
        Method::Cancel => "IPM.Schedule.Meeting.Canceled",
        Method::Reply(3) => "IPM.Schedule.Meeting.Resp.Pos",
        Method::Reply(4) => "IPM.Schedule.Meeting.Resp.Neg",
        Method::Reply(_) => "IPM.Schedule.Meeting.Resp.Tent",
        Method::Other => return None,
    })
}

/// `email:ContentClass` of meeting mails.
pub const CONTENT_CLASS: &str = "urn:content-classes:calendarmessage";

/// The Recurrence children inside a meeting request (Email page, Email2 for the 14.x ones).
pub const EMAIL_TAGS: Tags = Tags {
    recurrence: email::Recurrence,
    kind: email::Type,
    interval: email::Interval,
    until: email::Until,
    occurrences: email::Occurrences,
    day_of_week: email::DayOfWeek,
    day_of_month: email::DayOfMonth,
    week_of_month: email::WeekOfMonth,
    month_of_year: email::MonthOfYear,
    calendar_type: email2::CalendarType,
    is_leap_month: email2::IsLeapMonth,
    first_day_of_week: email2::FirstDayOfWeek,
};

/// MS-ASEMAIL's GlobalObjId for a UID (the "vCal-Uid" form), base64: the class id, the
/// occurrence's date (zeros for the series), the creation time and reserved bytes (zeros:
/// the id must be the same every time the mail is sent), the length and the UID.
pub fn global_obj_id(uid: &str, instance: Option<NaiveDateTime>) -> String {
    const CLASS_ID: [u8; 16] = [
        0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0xE0, 0x00, 0x74, 0xC5, 0xB7, 0x10, 0x1A, 0x82, 0xE0,
        0x08,
    ];
    let mut b = Vec::with_capacity(60 + uid.len());
    b.extend_from_slice(&CLASS_ID);
    match instance {
        Some(i) => {
            let year = i.year().clamp(0, 0xffff) as u16;
            b.extend_from_slice(&year.to_be_bytes());
            b.push(i.month() as u8);
            b.push(i.day() as u8);
        }
        None => b.extend_from_slice(&[0; 4]),
    }
    b.extend_from_slice(&[0; 16]);
    let data_len = (8 + 4 + uid.len() + 1) as u32;
    b.extend_from_slice(&data_len.to_le_bytes());
    b.extend_from_slice(b"vCal-Uid");
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(uid.as_bytes());
    b.push(0);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Writes `<email:MeetingRequest>` for an invitation or cancellation, children in
/// MS-ASEMAIL's order, each only in the versions that have it.
pub fn write_meeting_request<W: Write>(
    w: &mut Writer<W>,
    inv: &Invitation,
    version: Version,
    year: i32,
) -> Result<(), EncodeError> {
    let d = &inv.data;
    w.start(email::MeetingRequest)?;
    w.text_element(
        email::AllDayEvent,
        if d.all_day.unwrap_or(false) { "1" } else { "0" },
    )?;
    if let Some(s) = d.start {
        w.text_element(email::StartTime, &date::compact(s))?;
    }
    let stamp = d.dtstamp.or(d.start).unwrap_or_default();
    w.text_element(email::DtStamp, &date::compact(stamp))?;
    if let Some(e) = d.end {
        w.text_element(email::EndTime, &date::compact(e))?;
    }
    let instance_type = if inv.recurrence_id.is_some() {
        "3"
    } else if d.recurrence.is_some() {
        "1"
    } else {
        "0"
    };
    w.text_element(email::InstanceType, instance_type)?;
    if let Some(l) = d.location.as_deref().filter(|l| !l.is_empty()) {
        if version >= Version::V16_0 {
            w.start(asb::Location)?;
            w.text_element(asb::DisplayName, l)?;
            w.end()?;
        } else {
            w.text_element(email::Location, l)?;
        }
    }
    if let Some(o) = d.organizer_email.as_deref().filter(|o| !o.is_empty()) {
        let organizer = match d.organizer_name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => format!("\"{}\" <{o}>", n.replace('"', "")),
            None => o.to_owned(),
        };
        w.text_element(email::Organizer, &organizer)?;
    }
    if let Some(r) = inv.recurrence_id {
        w.text_element(email::RecurrenceId, &date::compact(r))?;
    }
    if let Some(minutes) = d.reminder {
        // Seconds here, where the Calendar class counts minutes.
        w.text_element(email::Reminder, &(u64::from(minutes) * 60).to_string())?;
    }
    w.text_element(
        email::ResponseRequested,
        if inv.response_requested && inv.method == Method::Request {
            "1"
        } else {
            "0"
        },
    )?;
    if let Some(r) = &d.recurrence {
        w.start(email::Recurrences)?;
        w.start(email::Recurrence)?;
        r.write_children(w, &EMAIL_TAGS, version, false)?;
        w.end()?;
        w.end()?;
    }
    w.text_element(email::Sensitivity, &d.sensitivity.unwrap_or(0).to_string())?;
    w.text_element(email::BusyStatus, &d.busy_status.unwrap_or(2).to_string())?;
    let tz = d.timezone.clone().unwrap_or_else(|| Zone::Utc.blob(year));
    w.text_element(email::TimeZone, &tz.to_base64())?;
    w.text_element(
        email::GlobalObjId,
        &global_obj_id(&inv.uid, inv.recurrence_id),
    )?;
    if version >= Version::V14_0 {
        w.text_element(
            email::DisallowNewTimeProposal,
            if inv.disallow_new_time { "1" } else { "0" },
        )?;
    }
    if version >= Version::V14_1 && inv.method == Method::Request {
        // 1 a new request, 2 a full update of one already sent.
        w.text_element(
            email2::MeetingMessageType,
            if inv.sequence > 0 { "2" } else { "1" },
        )?;
    }
    w.end()?;
    Ok(())
}

/// The object to store on the CalDAV server: the invitation without METHOD (RFC 4791 §4.1
/// forbids it in calendar object resources).
pub fn to_stored(inv: &Invitation) -> ICalendar {
    let mut ical = inv.ical.clone();
    if let Some(root) = ical.components.first_mut() {
        root.entries.retain(|e| e.name != ICalendarProperty::Method);
    }
    ical
}

/// The UID of a stored object's first VEVENT.
pub fn uid_of(ical: &ICalendar) -> Option<&str> {
    let id = *ical::children_of(ical, &ICalendarComponentType::VEvent).first()?;
    ical::text(&ical.components[id as usize], &ICalendarProperty::Uid)
}

/// The VEVENT overriding the occurrence that started at `instance` (UTC).
fn override_for(ical: &ICalendar, instance: NaiveDateTime, year: i32) -> Option<u32> {
    ical::children_of(ical, &ICalendarComponentType::VEvent)
        .into_iter()
        .find(|id| {
            let c = &ical.components[*id as usize];
            utc_of(ical, c, &ICalendarProperty::RecurrenceId, year) == Some(instance)
        })
}

/// Sets the user's PARTSTAT in `ical` (the whole series, or with `instance` one occurrence,
/// made an override when it is not one yet). A user not among the attendees (invited
/// through a list or an alias) is added as one. Refused when the user is the organizer.
/// Returns the VEVENT answered for, whose RECURRENCE-ID the reply carries.
pub fn respond(
    ical: &mut ICalendar,
    user_emails: &[&str],
    response: Response,
    instance: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> Result<u32, MeetingError> {
    let events = ical::children_of(ical, &ICalendarComponentType::VEvent);
    let Some(&first) = events.first() else {
        return Err(CalendarError::NoComponent("VEVENT").into());
    };
    let organizer = ical.components[first as usize]
        .property(&ICalendarProperty::Organizer)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text());
    if is_user(organizer, user_emails) {
        return Err(MeetingError::Organizer);
    }
    let targets = match instance {
        None => events,
        Some(i) => {
            let year = i.year();
            if override_for(ical, i, year).is_none() {
                let zone = Zone::Utc;
                let o = MergeOptions {
                    version: Version::V16_1,
                    user_zone: &zone,
                    year,
                    now,
                    new_uid: "",
                    organizer: None,
                };
                *ical = super::event::merge_instance(ical, i, &EventData::default(), &o)?;
            }
            vec![override_for(ical, i, year).ok_or(MeetingError::NoInstance)?]
        }
    };
    let user = user_emails.first().copied().unwrap_or_default();
    for id in &targets {
        let c = &mut ical.components[*id as usize];
        let mut found = false;
        for e in c.entries.iter_mut() {
            if e.name == ICalendarProperty::Attendee
                && is_user(e.values.first().and_then(|v| v.as_text()), user_emails)
            {
                e.params
                    .retain(|p| p.name != ICalendarParameterName::Partstat);
                e.params
                    .push(ICalendarParameter::partstat(response.partstat()));
                found = true;
            }
        }
        if !found {
            c.entries.push(
                ICalendarEntry::new(ICalendarProperty::Attendee)
                    .with_param(ICalendarParameter::partstat(response.partstat()))
                    .with_value(ICalendarValue::Uri(Uri::Location(format!("mailto:{user}")))),
            );
        }
    }
    Ok(targets[0])
}

/// The iTIP REPLY for the answer `respond` recorded in `ical` for the VEVENT `answered`:
/// the same UID, SEQUENCE and RECURRENCE-ID, the ORGANIZER, the user's ATTENDEE with its
/// PARTSTAT alone, a fresh DTSTAMP (RFC 5546 §3.2.3).
///
/// With a `proposal` it is a COUNTER instead (RFC 5546 §3.2.7): the same, with the proposed
/// DTSTART and DTEND, and the meeting's own times as X-MS-OLK-ORIGINALSTART/-END, which is
/// how Outlook and Exchange write and read a new time proposal (MS-OXCICAL), so an Outlook
/// organizer sees "new time proposed" and the original next to it.
pub fn reply(
    ical: &ICalendar,
    answered: u32,
    user_email: &str,
    user_name: Option<&str>,
    response: Response,
    proposal: Option<Proposal>,
    now: NaiveDateTime,
) -> Result<ICalendar, CalendarError> {
    let src = ical
        .components
        .get(answered as usize)
        .ok_or(CalendarError::NoComponent("VEVENT"))?;
    let mut out = super::event::new_calendar();
    if let Some(root) = out.components.first_mut() {
        root.entries
            .push(ICalendarEntry::new(ICalendarProperty::Method).with_value(
                ICalendarValue::Method(if proposal.is_some() {
                    ICalendarMethod::Counter
                } else {
                    ICalendarMethod::Reply
                }),
            ));
    }
    let mut ev = calcard::icalendar::ICalendarComponent::new(ICalendarComponentType::VEvent);
    for prop in [
        ICalendarProperty::Uid,
        ICalendarProperty::Sequence,
        ICalendarProperty::RecurrenceId,
        ICalendarProperty::Organizer,
        ICalendarProperty::Summary,
    ] {
        if let Some(e) = src.property(&prop) {
            ev.entries.push(e.clone());
        }
    }
    if let Some(p) = proposal {
        counter_times(ical, src, p, &mut ev);
    }
    ev.entries
        .push(ICalendarEntry::new(ICalendarProperty::Dtstamp).with_value(ical::utc_value(now)));
    let mut attendee = ICalendarEntry::new(ICalendarProperty::Attendee)
        .with_param(ICalendarParameter::partstat(response.partstat()));
    if let Some(n) = user_name.filter(|n| !n.is_empty()) {
        attendee = attendee.with_param(ICalendarParameter::cn(n.to_owned()));
    }
    ev.entries.push(
        attendee.with_value(ICalendarValue::Uri(Uri::Location(format!(
            "mailto:{user_email}"
        )))),
    );
    // A RECURRENCE-ID with a TZID needs its VTIMEZONE in the reply too.
    if let Some(tzid) = src
        .property(&ICalendarProperty::RecurrenceId)
        .and_then(|e| param(e, &ICalendarParameterName::Tzid))
    {
        for id in ical::children_of(ical, &ICalendarComponentType::VTimezone) {
            let tz = &ical.components[id as usize];
            if ical::text(tz, &ICalendarProperty::Tzid) == Some(tzid) {
                copy_component(ical, id, &mut out, 0);
            }
        }
    }
    ical::add_child(&mut out, 0, ev);
    Ok(out)
}

/// The proposed times of a COUNTER, and the original ones in Outlook's properties.
fn counter_times(
    ical: &ICalendar,
    src: &calcard::icalendar::ICalendarComponent,
    p: Proposal,
    ev: &mut calcard::icalendar::ICalendarComponent,
) {
    let year = p.start.year();
    let start = utc_of(ical, src, &ICalendarProperty::Dtstart, year);
    let end = utc_of(ical, src, &ICalendarProperty::Dtend, year);
    ev.entries
        .push(ICalendarEntry::new(ICalendarProperty::Dtstart).with_value(ical::utc_value(p.start)));
    // No end proposed: the meeting keeps its length.
    let proposed_end = p
        .end
        .or_else(|| Some(p.start + (end? - start?)).filter(|e| *e >= p.start));
    match proposed_end {
        Some(e) => ev
            .entries
            .push(ICalendarEntry::new(ICalendarProperty::Dtend).with_value(ical::utc_value(e))),
        None => {
            if let Some(d) = src.property(&ICalendarProperty::Duration) {
                ev.entries.push(d.clone());
            }
        }
    }
    for (prop, original, name) in [
        (ICalendarProperty::Dtstart, start, "X-MS-OLK-ORIGINALSTART"),
        (ICalendarProperty::Dtend, end, "X-MS-OLK-ORIGINALEND"),
    ] {
        let Some(dp) = ical::date_prop(src, &prop) else {
            continue;
        };
        // Written as text: calcard writes an unknown property's value only in that form. An
        // all-day meeting's original dates stay dates.
        let value = if dp.is_date {
            dp.value.format("%Y%m%d").to_string()
        } else if let Some(t) = original {
            date::compact(t)
        } else {
            continue;
        };
        ev.entries.push(
            ICalendarEntry::new(ICalendarProperty::Other(name.into()))
                .with_value(ICalendarValue::Text(value)),
        );
    }
}

/// A DATE-TIME property of `c` as UTC (a floating time taken as UTC).
fn utc_of(
    ical: &ICalendar,
    c: &calcard::icalendar::ICalendarComponent,
    prop: &ICalendarProperty,
    year: i32,
) -> Option<NaiveDateTime> {
    let dp = ical::date_prop(c, prop)?;
    Some(if dp.is_utc {
        dp.value
    } else {
        dp.tzid
            .as_deref()
            .and_then(|t| Zone::from_tzid(ical, t, year))
            .unwrap_or(Zone::Utc)
            .to_utc(dp.value)
    })
}

/// Copies component `id` of `from` (with its children) under `parent` of `to`.
fn copy_component(from: &ICalendar, id: u32, to: &mut ICalendar, parent: u32) {
    let mut c = from.components[id as usize].clone();
    let children = std::mem::take(&mut c.component_ids);
    let new = ical::add_child(to, parent, c);
    for child in children {
        copy_component(from, child, to, new);
    }
}

/// The PARTSTAT of the user in a stored object's first VEVENT (for tests and logs).
pub fn partstat_of(ical: &ICalendar, user_emails: &[&str]) -> Option<String> {
    let id = *ical::children_of(ical, &ICalendarComponentType::VEvent).first()?;
    ical.components[id as usize]
        .properties(&ICalendarProperty::Attendee)
        .find(|e| is_user(e.values.first().and_then(|v| v.as_text()), user_emails))
        .and_then(|e| param(e, &ICalendarParameterName::Partstat))
        .map(str::to_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nMETHOD:REQUEST\r\n\
BEGIN:VEVENT\r\nUID:m1@example.org\r\nSEQUENCE:2\r\nDTSTAMP:20261101T090000Z\r\n\
DTSTART:20261120T100000Z\r\nDTEND:20261120T110000Z\r\nSUMMARY:Planning\r\nLOCATION:Room 4\r\n\
ORGANIZER;CN=Olga:mailto:olga@example.org\r\n\
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:bob@example.com\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:carl@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn invitation_reads_and_answers() {
        let inv = parse(INVITE, None, &["bob@example.com"], 2026).unwrap();
        assert_eq!(inv.method, Method::Request);
        assert_eq!(inv.uid, "m1@example.org");
        assert_eq!(inv.sequence, 2);
        assert!(inv.response_requested);
        assert_eq!(
            message_class(&inv.method),
            Some("IPM.Schedule.Meeting.Request")
        );
        let mut stored = to_stored(&inv);
        assert!(!ical::write(&stored).contains("METHOD"));
        let now = date::parse("20261102T080000Z").unwrap();
        let at = respond(
            &mut stored,
            &["BOB@example.com"],
            Response::Tentative,
            None,
            now,
        )
        .unwrap();
        assert_eq!(
            partstat_of(&stored, &["bob@example.com"]).as_deref(),
            Some("TENTATIVE")
        );
        let r = ical::write(
            &reply(
                &stored,
                at,
                "bob@example.com",
                None,
                Response::Tentative,
                None,
                now,
            )
            .unwrap(),
        );
        assert!(r.contains("METHOD:REPLY"), "{r}");
        assert!(
            r.contains("UID:m1@example.org") && r.contains("SEQUENCE:2"),
            "{r}"
        );
        assert!(
            r.contains("PARTSTAT=TENTATIVE") && r.contains("mailto:bob@example.com"),
            "{r}"
        );
        assert!(
            r.contains("DTSTAMP:20261102T080000Z") && !r.contains("carl"),
            "{r}"
        );
        // The organizer cannot answer their own meeting.
        assert_eq!(
            respond(
                &mut stored,
                &["olga@example.org"],
                Response::Accepted,
                None,
                now
            ),
            Err(MeetingError::Organizer)
        );
    }

    #[test]
    fn cancellation_and_writing() {
        let text = INVITE.replace("METHOD:REQUEST", "METHOD:CANCEL");
        let inv = parse(&text, None, &["bob@example.com"], 2026).unwrap();
        assert_eq!(
            message_class(&inv.method),
            Some("IPM.Schedule.Meeting.Canceled")
        );
        let mut w = Writer::fragment();
        write_meeting_request(&mut w, &inv, Version::V14_1, 2026).unwrap();
        assert!(w.into_fragment().is_ok());
        // The id is stable and carries the UID.
        let id = base64::engine::general_purpose::STANDARD
            .decode(global_obj_id("m1@example.org", None))
            .unwrap();
        assert!(id.ends_with(b"vCal-Uid\x01\x00\x00\x00m1@example.org\x00"));
    }

    #[test]
    fn an_occurrence_is_answered_alone() {
        let text = INVITE.replace(
            "SUMMARY:Planning",
            "SUMMARY:Planning\r\nRRULE:FREQ=WEEKLY;COUNT=4",
        );
        let inv = parse(&text, None, &["bob@example.com"], 2026).unwrap();
        assert!(inv.data.recurrence.is_some());
        let mut stored = to_stored(&inv);
        let now = date::parse("20261102T080000Z").unwrap();
        let i = date::parse("20261127T100000Z").unwrap();
        let at = respond(
            &mut stored,
            &["bob@example.com"],
            Response::Declined,
            Some(i),
            now,
        )
        .unwrap();
        let r = ical::write(
            &reply(
                &stored,
                at,
                "bob@example.com",
                Some("Bob"),
                Response::Declined,
                None,
                now,
            )
            .unwrap(),
        );
        assert!(r.contains("RECURRENCE-ID:20261127T100000Z"), "{r}");
        // The series keeps the user's old answer.
        assert_eq!(
            partstat_of(&stored, &["bob@example.com"]).as_deref(),
            Some("NEEDS-ACTION")
        );
    }

    #[test]
    fn a_new_time_is_a_counter() {
        let text = INVITE.replace(
            "DTSTART:20261120T100000Z\r\nDTEND:20261120T110000Z",
            "DTSTART;TZID=Europe/Berlin:20261120T110000\r\nDTEND;TZID=Europe/Berlin:20261120T120000",
        );
        let inv = parse(&text, None, &["bob@example.com"], 2026).unwrap();
        let mut stored = to_stored(&inv);
        let now = date::parse("20261102T080000Z").unwrap();
        let at = respond(
            &mut stored,
            &["bob@example.com"],
            Response::Tentative,
            None,
            now,
        )
        .unwrap();
        let start = date::parse("20261120T133000Z").unwrap();
        // Without an end the meeting keeps its hour.
        for end in [None, date::parse("20261120T143000Z")] {
            let proposal = Proposal { start, end };
            let r = ical::write(
                &reply(
                    &stored,
                    at,
                    "bob@example.com",
                    None,
                    Response::Tentative,
                    Some(proposal),
                    now,
                )
                .unwrap(),
            );
            assert!(r.contains("METHOD:COUNTER"), "{r}");
            assert!(r.contains("DTSTART:20261120T133000Z"), "{r}");
            assert!(r.contains("DTEND:20261120T143000Z"), "{r}");
            assert!(r.contains("X-MS-OLK-ORIGINALSTART:20261120T100000Z"), "{r}");
            assert!(r.contains("X-MS-OLK-ORIGINALEND:20261120T110000Z"), "{r}");
            assert!(r.contains("PARTSTAT=TENTATIVE"), "{r}");
        }
        // The stored event keeps its time.
        assert!(ical::write(&stored).contains("DTSTART;TZID=Europe/Berlin:20261120T110000"));
        assert!(!disallows_counter(&stored));
        let text = INVITE.replace(
            "SUMMARY:Planning",
            "SUMMARY:Planning\r\nX-MICROSOFT-DISALLOW-COUNTER:TRUE",
        );
        let inv = parse(&text, None, &["bob@example.com"], 2026).unwrap();
        assert!(disallows_counter(&inv.ical) && inv.disallow_new_time);
    }

    #[test]
    fn answers() {
        assert_eq!(Response::from_code("2"), Some(Response::Tentative));
        assert_eq!(Response::from_code("4"), None);
        assert!(parse("garbage", None, &[], 2026).is_err());
    }
}

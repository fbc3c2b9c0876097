//! VEVENT ↔ EAS Calendar items (`calendar:` code page 4, bodies through `airsyncbase:`).
//!
//! Server → phone: [`EventData::from_ical`] reads the series (master VEVENT, its RECURRENCE-ID
//! overrides and EXDATEs) into the values EAS carries, all times in UTC; [`write_event`]
//! writes them as the children of `<ApplicationData>` for one protocol version.
//!
//! Phone → server: [`EventData::from_element`] reads a phone's `<ApplicationData>` (absent
//! elements stay `None`), and [`merge_event`] applies it to the stored object: only what EAS
//! carries is rewritten, and a value the phone sends back unchanged leaves the property as it
//! was (parameters, spelling and all). X- properties, other attendees' parameters, alarms the
//! phone did not touch, attachments, CONFERENCE, GEO… stay as they are.
//!
//! Version differences: 16.x puts the location in `airsyncbase:Location` and identifies an
//! exception by `airsyncbase:InstanceId` instead of `ExceptionStartTime`; its all-day events are
//! dates (StartTime/EndTime at 00:00 UTC of the local dates, no TimeZone), where 12.1/14.x
//! all-day events are local midnights in the TimeZone sent, which is then the user's zone for
//! DATE values. Floating times are read in the user's zone ([`EventOptions::user_zone`]).
//!
//! Mapping choices worth knowing: Sensitivity 1 (personal) becomes CLASS:PRIVATE (iCalendar
//! has no "personal"); BusyStatus is X-MICROSOFT-CDO-BUSYSTATUS when present, else TRANSP
//! (transparent = free) and STATUS:TENTATIVE; the Reminder is the first DISPLAY/AUDIO alarm
//! relative to the start; AttendeeType 3 is CUTYPE=RESOURCE. A recurrence EAS cannot express
//! is left out (the item shows its first occurrence) and reported in [`Written::lossy`].

use std::io::Write;

use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarDuration, ICalendarEntry,
    ICalendarParameter, ICalendarParameterName, ICalendarParameterValue,
    ICalendarParticipationRole, ICalendarParticipationStatus, ICalendarProperty, ICalendarRelated,
    ICalendarUserTypes, ICalendarValue, Uri,
};
use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike};
use eas_wbxml::tags::{airsyncbase as asb, calendar as cal};
use eas_wbxml::{Element, EncodeError, Writer};

use super::ical::{self, DateProp};
use super::recurrence::{self, CALENDAR_TAGS, Recurrence, ToEas, Unsupported};
use super::timezone::{TimeZoneInfo, Zone};
use super::{CalendarError, Version, date};
use crate::mime::body::{self, BodyPreference, BodyType, MimeSupport};

/// What rendering needs besides the object.
#[derive(Debug, Clone)]
pub struct EventOptions<'a> {
    pub version: Version,
    pub body_preferences: &'a [BodyPreference],
    /// The zone of floating times and DATE values (the user's zone; UTC when unknown).
    pub user_zone: &'a Zone,
    /// The year whose time-zone rules the TimeZone blob carries (the current year).
    pub year: i32,
    /// The user's addresses, to tell meetings they organize from invitations.
    pub user_emails: &'a [&'a str],
}

/// What merging needs besides the object and the item.
#[derive(Debug, Clone)]
pub struct MergeOptions<'a> {
    pub version: Version,
    pub user_zone: &'a Zone,
    pub year: i32,
    /// DTSTAMP/LAST-MODIFIED of the change.
    pub now: NaiveDateTime,
    /// The UID of a new object when the phone sends none (16.x sends ClientUid, or nothing).
    pub new_uid: &'a str,
    /// The user as ORGANIZER of a meeting they create on the phone (RFC 5545 wants one when
    /// there are attendees): `(name, email)`.
    pub organizer: Option<(&'a str, &'a str)>,
}

/// `calendar:Attendee`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    pub email: String,
    pub name: String,
    /// 0 unknown, 2 tentative, 3 accepted, 4 declined, 5 not responded.
    pub status: Option<u8>,
    /// 1 required, 2 optional, 3 resource.
    pub kind: Option<u8>,
}

/// A body as a phone sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneBody {
    pub kind: BodyType,
    pub data: Option<String>,
    pub truncated: bool,
}

/// One occurrence that differs from the series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionData {
    /// The original start (UTC) of the occurrence: ExceptionStartTime / InstanceId.
    pub original_start: NaiveDateTime,
    pub deleted: bool,
    /// The changed values (absent = as the series).
    pub fields: EventData,
}

/// The values of one event (or exception) EAS carries. `None` = not present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventData {
    pub subject: Option<String>,
    pub location: Option<String>,
    /// UTC.
    pub start: Option<NaiveDateTime>,
    pub end: Option<NaiveDateTime>,
    pub all_day: Option<bool>,
    pub timezone: Option<TimeZoneInfo>,
    pub dtstamp: Option<NaiveDateTime>,
    pub uid: Option<String>,
    pub organizer_email: Option<String>,
    pub organizer_name: Option<String>,
    pub attendees: Option<Vec<Attendee>>,
    /// Minutes before the start.
    pub reminder: Option<u32>,
    pub sensitivity: Option<u8>,
    pub busy_status: Option<u8>,
    pub categories: Option<Vec<String>>,
    /// Server → phone: the whole text; phone → server: what it sent.
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub phone_body: Option<PhoneBody>,
    pub meeting_status: Option<u8>,
    pub response_type: Option<u8>,
    pub recurrence: Option<Recurrence>,
    pub exceptions: Option<Vec<ExceptionData>>,
    /// 16.x: the InstanceId of an orphan instance / instance change.
    pub instance_id: Option<NaiveDateTime>,
}

/// A rendered item and what could not be said.
#[derive(Debug)]
pub struct Written {
    pub lossy: Vec<Unsupported>,
}

fn x_prop(name: &str) -> ICalendarProperty {
    ICalendarProperty::Other(name.to_owned())
}

const CDO_BUSY: &str = "X-MICROSOFT-CDO-BUSYSTATUS";

/// The master VEVENT and the overrides of an object.
fn vevents(ical: &ICalendar) -> (Option<u32>, Vec<u32>) {
    let ids = ical::children_of(ical, &ICalendarComponentType::VEvent);
    let mut master = None;
    let mut overrides = Vec::new();
    for id in ids {
        let c = &ical.components[id as usize];
        if c.has_property(&ICalendarProperty::RecurrenceId) {
            overrides.push(id);
        } else if master.is_none() {
            master = Some(id);
        }
    }
    (master, overrides)
}

/// Resolves a date property to UTC and the zone it is in.
fn resolve(ical: &ICalendar, dp: &DateProp, user_zone: &Zone, year: i32) -> (NaiveDateTime, Zone) {
    if dp.is_utc {
        return (dp.value, Zone::Utc);
    }
    let zone = dp
        .tzid
        .as_deref()
        .and_then(|t| Zone::from_tzid(ical, t, year))
        .unwrap_or_else(|| user_zone.clone());
    (zone.to_utc(dp.value), zone)
}

fn email_of(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix("mailto:")
        .or_else(|| v.strip_prefix("MAILTO:"))
        .unwrap_or(v);
    v.to_owned()
}

fn param_text<'a>(e: &'a ICalendarEntry, name: &ICalendarParameterName) -> Option<&'a str> {
    e.parameters(name).find_map(|v| v.as_text())
}

fn partstat_code(p: Option<&str>) -> u8 {
    match p.map(str::to_ascii_uppercase).as_deref() {
        Some("ACCEPTED") => 3,
        Some("DECLINED") => 4,
        Some("TENTATIVE") => 2,
        Some("NEEDS-ACTION") | None => 5,
        _ => 0,
    }
}

fn partstat_of(code: u8) -> Option<ICalendarParticipationStatus> {
    Some(match code {
        2 => ICalendarParticipationStatus::Tentative,
        3 => ICalendarParticipationStatus::Accepted,
        4 => ICalendarParticipationStatus::Declined,
        5 => ICalendarParticipationStatus::NeedsAction,
        _ => return None,
    })
}

fn attendee_type(e: &ICalendarEntry) -> u8 {
    let cutype = param_text(e, &ICalendarParameterName::Cutype).map(str::to_ascii_uppercase);
    if matches!(cutype.as_deref(), Some("RESOURCE") | Some("ROOM")) {
        return 3;
    }
    match param_text(e, &ICalendarParameterName::Role)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("OPT-PARTICIPANT") | Some("NON-PARTICIPANT") => 2,
        _ => 1,
    }
}

fn attendees_of(c: &ICalendarComponent) -> Vec<Attendee> {
    c.properties(&ICalendarProperty::Attendee)
        .filter_map(|e| {
            let email = email_of(e.values.first()?.as_text()?);
            Some(Attendee {
                name: param_text(e, &ICalendarParameterName::Cn)
                    .unwrap_or_default()
                    .to_owned(),
                status: Some(partstat_code(param_text(
                    e,
                    &ICalendarParameterName::Partstat,
                ))),
                kind: Some(attendee_type(e)),
                email,
            })
        })
        .collect()
}

fn sensitivity_of(c: &ICalendarComponent) -> u8 {
    match ical::text(c, &ICalendarProperty::Class)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("PRIVATE") => 2,
        Some("CONFIDENTIAL") => 3,
        Some("X-PERSONAL") => 1,
        _ => 0,
    }
}

fn busy_of(c: &ICalendarComponent) -> u8 {
    if let Some(v) = ical::text(c, &x_prop(CDO_BUSY)) {
        match v.to_ascii_uppercase().as_str() {
            "FREE" => return 0,
            "TENTATIVE" => return 1,
            "BUSY" => return 2,
            "OOF" => return 3,
            "WORKINGELSEWHERE" => return 4,
            _ => {}
        }
    }
    if ical::text(c, &ICalendarProperty::Transp)
        .is_some_and(|t| t.eq_ignore_ascii_case("TRANSPARENT"))
    {
        return 0;
    }
    if ical::text(c, &ICalendarProperty::Status)
        .is_some_and(|t| t.eq_ignore_ascii_case("TENTATIVE"))
    {
        return 1;
    }
    2
}

fn categories_of(c: &ICalendarComponent) -> Vec<String> {
    c.properties(&ICalendarProperty::Categories)
        .flat_map(|e| e.values.iter().filter_map(|v| v.as_text()))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The alarm EAS's Reminder stands for: the first DISPLAY/AUDIO alarm whose trigger is a
/// duration before (or at) the start. Returns its index and minutes.
fn reminder_alarm(ical: &ICalendar, c: &ICalendarComponent) -> Option<(u32, u32)> {
    c.component_ids.iter().find_map(|id| {
        let a = ical.components.get(*id as usize)?;
        if a.component_type != ICalendarComponentType::VAlarm {
            return None;
        }
        let action = ical::text(a, &ICalendarProperty::Action)?.to_ascii_uppercase();
        if action != "DISPLAY" && action != "AUDIO" {
            return None;
        }
        let trigger = a.property(&ICalendarProperty::Trigger)?;
        if trigger
            .parameters(&ICalendarParameterName::Related)
            .any(|r| matches!(r, ICalendarParameterValue::Related(ICalendarRelated::End)))
        {
            return None;
        }
        match trigger.values.first()? {
            ICalendarValue::Duration(d) => {
                let secs = d.as_seconds();
                (secs <= 0).then_some((*id, (-secs / 60) as u32))
            }
            _ => None,
        }
    })
}

fn description_of(c: &ICalendarComponent) -> (Option<String>, Option<String>) {
    let text = ical::text(c, &ICalendarProperty::Description).map(str::to_owned);
    let html = c
        .properties(&x_prop("X-ALT-DESC"))
        .chain(c.properties(&ICalendarProperty::StyledDescription))
        .find(|e| {
            param_text(e, &ICalendarParameterName::Fmttype)
                .is_some_and(|f| f.eq_ignore_ascii_case("text/html"))
        })
        .and_then(|e| e.values.first()?.as_text())
        .map(str::to_owned);
    (text, html)
}

impl EventData {
    /// Reads one VEVENT's own values (not its exceptions).
    fn from_component(
        ical: &ICalendar,
        c: &ICalendarComponent,
        options: &EventOptions<'_>,
    ) -> Result<(EventData, Zone, bool), CalendarError> {
        let start_dp = ical::date_prop(c, &ICalendarProperty::Dtstart)
            .ok_or(CalendarError::NoComponent("DTSTART"))?;
        let all_day = start_dp.is_date;
        let (start, zone) = if all_day {
            (
                options.user_zone.to_utc(start_dp.value),
                options.user_zone.clone(),
            )
        } else {
            resolve(ical, &start_dp, options.user_zone, options.year)
        };
        let end = match ical::date_prop(c, &ICalendarProperty::Dtend) {
            Some(dp) if all_day => options.user_zone.to_utc(dp.value),
            Some(dp) => resolve(ical, &dp, options.user_zone, options.year).0,
            None => {
                let dur =
                    c.property(&ICalendarProperty::Duration)
                        .and_then(|e| match e.values.first() {
                            Some(ICalendarValue::Duration(d)) => d.to_time_delta(),
                            _ => None,
                        });
                match dur {
                    Some(d) if all_day => options.user_zone.to_utc(start_dp.value + d),
                    Some(d) => start + d,
                    None if all_day => options.user_zone.to_utc(start_dp.value + Duration::days(1)),
                    None => start,
                }
            }
        };
        let organizer = c.property(&ICalendarProperty::Organizer);
        let organizer_email = organizer
            .and_then(|e| e.values.first()?.as_text())
            .map(email_of);
        let attendees = attendees_of(c);
        let is_user = |email: &str| {
            options
                .user_emails
                .iter()
                .any(|u| u.eq_ignore_ascii_case(email))
        };
        let cancelled = ical::text(c, &ICalendarProperty::Status)
            .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"));
        let organizer_is_user = organizer_email.as_deref().is_none_or(is_user);
        let meeting_status = if attendees.is_empty() {
            0
        } else {
            let base = if organizer_is_user { 1 } else { 3 };
            if cancelled { base + 4 } else { base }
        };
        let response_type = if attendees.is_empty() {
            None
        } else if organizer_is_user {
            Some(1)
        } else {
            attendees
                .iter()
                .find(|a| is_user(&a.email))
                .map(|a| a.status.unwrap_or(0))
                .or(Some(0))
        };
        let (body_text, body_html) = description_of(c);
        let data = EventData {
            subject: ical::text(c, &ICalendarProperty::Summary).map(str::to_owned),
            location: ical::text(c, &ICalendarProperty::Location).map(str::to_owned),
            start: Some(start),
            end: Some(end.max(start)),
            all_day: Some(all_day),
            timezone: None,
            dtstamp: ical::date_prop(c, &ICalendarProperty::Dtstamp).map(|d| d.value),
            uid: c.uid().map(str::to_owned),
            organizer_name: organizer
                .and_then(|e| param_text(e, &ICalendarParameterName::Cn))
                .map(str::to_owned),
            organizer_email,
            attendees: Some(attendees),
            reminder: reminder_alarm(ical, c).map(|(_, m)| m),
            sensitivity: Some(sensitivity_of(c)),
            busy_status: Some(busy_of(c)),
            categories: Some(categories_of(c)),
            body_text,
            body_html,
            phone_body: None,
            meeting_status: Some(meeting_status),
            response_type,
            recurrence: None,
            exceptions: None,
            instance_id: None,
        };
        Ok((data, zone, all_day))
    }

    /// The series in `ical` as EAS sees it, and what EAS cannot say about it.
    pub fn from_ical(
        ical: &ICalendar,
        options: &EventOptions<'_>,
    ) -> Result<(EventData, Vec<Unsupported>), CalendarError> {
        let (master, overrides) = vevents(ical);
        let mut lossy = Vec::new();
        let Some(master) = master.or_else(|| overrides.first().copied()) else {
            return Err(CalendarError::NoComponent("VEVENT"));
        };
        let mc = &ical.components[master as usize];
        let (mut data, zone, all_day) = EventData::from_component(ical, mc, options)?;
        data.timezone = Some(zone.blob(options.year));
        // An instance without its series (an invitation to one occurrence): 16.x names it.
        if let Some(rid) = ical::date_prop(mc, &ICalendarProperty::RecurrenceId) {
            data.instance_id = Some(resolve(ical, &rid, &zone, options.year).0);
        }
        let start_local = zone.to_local(data.start.unwrap_or_default());
        let rule = mc
            .property(&ICalendarProperty::Rrule)
            .and_then(|e| match e.values.first() {
                Some(ICalendarValue::RecurrenceRule(r)) => Some(r),
                _ => None,
            });
        let Some(rule) = rule.filter(|_| !mc.has_property(&ICalendarProperty::RecurrenceId)) else {
            return Ok((data, lossy));
        };
        if mc.has_property(&ICalendarProperty::Rdate) {
            lossy.push(Unsupported::Rdate);
        }
        match recurrence::to_eas(rule, start_local, &zone) {
            ToEas::Exact(r) => data.recurrence = Some(r),
            ToEas::Approximate { recurrence, reason } => {
                data.recurrence = Some(recurrence);
                lossy.push(reason);
            }
            ToEas::CannotExpress(reason) => {
                lossy.push(reason);
                return Ok((data, lossy));
            }
        }
        let mut exceptions = Vec::new();
        for e in mc.properties(&ICalendarProperty::Exdate) {
            for v in &e.values {
                let Some(dp) = ical::entry_date(e, v) else {
                    continue;
                };
                let original = if dp.is_date {
                    zone.to_utc(dp.value.date().and_time(start_local.time()))
                } else {
                    resolve(ical, &dp, &zone, options.year).0
                };
                exceptions.push(ExceptionData {
                    original_start: original,
                    deleted: true,
                    fields: EventData::default(),
                });
            }
        }
        for id in overrides {
            let oc = &ical.components[id as usize];
            let Some(rid) = ical::date_prop(oc, &ICalendarProperty::RecurrenceId) else {
                continue;
            };
            let original = if rid.is_date {
                zone.to_utc(rid.value.date().and_time(start_local.time()))
            } else {
                resolve(ical, &rid, &zone, options.year).0
            };
            let cancelled = ical::text(oc, &ICalendarProperty::Status)
                .is_some_and(|s| s.eq_ignore_ascii_case("CANCELLED"));
            if cancelled {
                exceptions.push(ExceptionData {
                    original_start: original,
                    deleted: true,
                    fields: EventData::default(),
                });
                continue;
            }
            let Ok((o, _, o_all_day)) = EventData::from_component(ical, oc, options) else {
                continue;
            };
            // An exception carries what differs from the series, and always its times.
            fn differs<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
                a != b
            }
            let fields = EventData {
                subject: differs(&o.subject, &data.subject)
                    .then(|| o.subject.clone().unwrap_or_default()),
                location: differs(&o.location, &data.location)
                    .then(|| o.location.clone().unwrap_or_default()),
                start: o.start,
                end: o.end,
                all_day: (o_all_day != all_day).then_some(o_all_day),
                dtstamp: o.dtstamp,
                reminder: if o.reminder != data.reminder {
                    o.reminder.or(Some(0))
                } else {
                    None
                },
                sensitivity: differs(&o.sensitivity, &data.sensitivity)
                    .then_some(o.sensitivity)
                    .flatten(),
                busy_status: differs(&o.busy_status, &data.busy_status)
                    .then_some(o.busy_status)
                    .flatten(),
                categories: differs(&o.categories, &data.categories)
                    .then(|| o.categories.clone())
                    .flatten(),
                body_text: differs(&o.body_text, &data.body_text)
                    .then(|| o.body_text.clone())
                    .flatten(),
                meeting_status: differs(&o.meeting_status, &data.meeting_status)
                    .then_some(o.meeting_status)
                    .flatten(),
                attendees: differs(&o.attendees, &data.attendees)
                    .then(|| o.attendees.clone())
                    .flatten(),
                response_type: differs(&o.response_type, &data.response_type)
                    .then_some(o.response_type)
                    .flatten(),
                ..EventData::default()
            };
            exceptions.push(ExceptionData {
                original_start: original,
                deleted: false,
                fields,
            });
        }
        exceptions.sort_by_key(|e| e.original_start);
        exceptions.dedup_by_key(|e| e.original_start);
        if !exceptions.is_empty() {
            data.exceptions = Some(exceptions);
        }
        Ok((data, lossy))
    }
}

/// Writes the Calendar ApplicationData children of the object's event.
pub fn write_event<W: Write>(
    w: &mut Writer<W>,
    ical: &ICalendar,
    options: &EventOptions<'_>,
) -> Result<Written, CalendarError> {
    let (data, lossy) = EventData::from_ical(ical, options)?;
    write_data(w, &data, options)?;
    Ok(Written { lossy })
}

/// Parses `text` and renders it into an encoded fragment (what Sync splices in).
pub fn render_event(
    text: &str,
    options: &EventOptions<'_>,
) -> Result<(eas_wbxml::Fragment, Written), CalendarError> {
    let ical = ical::parse(text)?;
    let mut w = Writer::fragment();
    let written = write_event(&mut w, &ical, options)?;
    Ok((w.into_fragment()?, written))
}

fn all_day_time(t: NaiveDateTime, zone: &Zone, version: Version) -> NaiveDateTime {
    if version >= Version::V16_0 {
        // 16.x: the local date, at 00:00 "UTC".
        zone.to_local(t).date().and_hms_opt(0, 0, 0).unwrap_or(t)
    } else {
        t
    }
}

fn write_body<W: Write>(
    w: &mut Writer<W>,
    text: Option<&str>,
    html: Option<&str>,
    prefs: &[BodyPreference],
    version: Version,
) -> Result<(), EncodeError> {
    let text = text.unwrap_or_default();
    let pref = body::select(prefs, MimeSupport::Never, None, false);
    let (kind, full) = match pref.kind {
        BodyType::Html => (
            BodyType::Html,
            html.map(str::to_owned)
                .unwrap_or_else(|| body::text_to_html(text)),
        ),
        _ => (BodyType::Plain, text.to_owned()),
    };
    let size = full.len() as u64;
    let (truncated, data) = body::truncate(std::borrow::Cow::Owned(full), &pref);
    let preview = pref
        .preview
        .filter(|_| version >= Version::V14_0)
        .map(|n| body::preview(text, n));
    crate::mime::write_body(
        w,
        &body::BodyOutput {
            kind,
            estimated_size: size,
            truncated,
            data,
            preview,
        },
    )
}

fn write_attendees<W: Write>(w: &mut Writer<W>, attendees: &[Attendee]) -> Result<(), EncodeError> {
    if attendees.is_empty() {
        return Ok(());
    }
    w.start(cal::Attendees)?;
    for a in attendees {
        w.start(cal::Attendee)?;
        w.text_element(cal::Email, &a.email)?;
        w.text_element(
            cal::Name,
            if a.name.is_empty() { &a.email } else { &a.name },
        )?;
        if let Some(s) = a.status {
            w.text_element(cal::AttendeeStatus, &s.to_string())?;
        }
        if let Some(k) = a.kind {
            w.text_element(cal::AttendeeType, &k.to_string())?;
        }
        w.end()?;
    }
    w.end()?;
    Ok(())
}

fn write_location<W: Write>(
    w: &mut Writer<W>,
    location: &str,
    version: Version,
) -> Result<(), EncodeError> {
    if version >= Version::V16_0 {
        w.start(asb::Location)?;
        w.text_element(asb::DisplayName, location)?;
        w.end()?;
    } else {
        w.text_element(cal::Location, location)?;
    }
    Ok(())
}

fn write_categories<W: Write>(w: &mut Writer<W>, categories: &[String]) -> Result<(), EncodeError> {
    if categories.is_empty() {
        return Ok(());
    }
    w.start(cal::Categories)?;
    for c in categories {
        w.text_element(cal::Category, c)?;
    }
    w.end()?;
    Ok(())
}

fn write_data<W: Write>(
    w: &mut Writer<W>,
    d: &EventData,
    o: &EventOptions<'_>,
) -> Result<(), CalendarError> {
    let v = o.version;
    let all_day = d.all_day.unwrap_or(false);
    let zone_for_dates = o.user_zone;
    let time = |t: NaiveDateTime| {
        if all_day {
            all_day_time(t, zone_for_dates, v)
        } else {
            t
        }
    };
    if !(all_day && v >= Version::V16_0)
        && let Some(tz) = &d.timezone
    {
        w.text_element(cal::Timezone, &tz.to_base64())?;
    }
    w.text_element(cal::AllDayEvent, if all_day { "1" } else { "0" })?;
    write_body(
        w,
        d.body_text.as_deref(),
        d.body_html.as_deref(),
        o.body_preferences,
        v,
    )?;
    if let Some(b) = d.busy_status {
        w.text_element(cal::BusyStatus, &b.to_string())?;
    }
    if let Some(n) = d.organizer_name.as_deref().or(d.organizer_email.as_deref()) {
        w.text_element(cal::OrganizerName, n)?;
    }
    if let Some(e) = &d.organizer_email {
        w.text_element(cal::OrganizerEmail, e)?;
    }
    w.text_element(
        cal::DtStamp,
        &date::compact(d.dtstamp.or(d.start).unwrap_or_default()),
    )?;
    if let Some(e) = d.end {
        w.text_element(cal::EndTime, &date::compact(time(e)))?;
    }
    if let Some(l) = d.location.as_deref().filter(|l| !l.is_empty()) {
        write_location(w, l, v)?;
    }
    if let Some(r) = d.reminder {
        w.text_element(cal::Reminder, &r.to_string())?;
    }
    w.text_element(cal::Sensitivity, &d.sensitivity.unwrap_or(0).to_string())?;
    w.text_element(cal::Subject, d.subject.as_deref().unwrap_or_default())?;
    if let Some(s) = d.start {
        w.text_element(cal::StartTime, &date::compact(time(s)))?;
    }
    if let Some(u) = &d.uid {
        w.text_element(cal::UID, u)?;
    }
    if v >= Version::V16_0
        && let Some(i) = d.instance_id
    {
        w.text_element(asb::InstanceId, &date::compact(i))?;
    }
    w.text_element(
        cal::MeetingStatus,
        &d.meeting_status.unwrap_or(0).to_string(),
    )?;
    if let Some(a) = &d.attendees {
        write_attendees(w, a)?;
    }
    if let Some(c) = &d.categories {
        write_categories(w, c)?;
    }
    if let Some(r) = &d.recurrence {
        r.write(w, &CALENDAR_TAGS, v)?;
    }
    if let Some(exceptions) = d.exceptions.as_ref().filter(|e| !e.is_empty()) {
        w.start(cal::Exceptions)?;
        for e in exceptions {
            write_exception(w, e, all_day, o)?;
        }
        w.end()?;
    }
    if v >= Version::V14_0
        && let Some(r) = d.response_type
    {
        w.text_element(cal::ResponseType, &r.to_string())?;
    }
    Ok(())
}

fn write_exception<W: Write>(
    w: &mut Writer<W>,
    e: &ExceptionData,
    series_all_day: bool,
    o: &EventOptions<'_>,
) -> Result<(), CalendarError> {
    let v = o.version;
    let f = &e.fields;
    let all_day = f.all_day.unwrap_or(series_all_day);
    let time = |t: NaiveDateTime| {
        if all_day {
            all_day_time(t, o.user_zone, v)
        } else {
            t
        }
    };
    w.start(cal::Exception)?;
    if e.deleted {
        w.text_element(cal::Deleted, "1")?;
    }
    let original = if series_all_day {
        all_day_time(e.original_start, o.user_zone, v)
    } else {
        e.original_start
    };
    if v >= Version::V16_0 {
        w.text_element(asb::InstanceId, &date::compact(original))?;
    } else {
        w.text_element(cal::ExceptionStartTime, &date::compact(original))?;
    }
    if !e.deleted {
        if let Some(s) = &f.subject {
            w.text_element(cal::Subject, s)?;
        }
        if let Some(s) = f.start {
            w.text_element(cal::StartTime, &date::compact(time(s)))?;
        }
        if let Some(s) = f.end {
            w.text_element(cal::EndTime, &date::compact(time(s)))?;
        }
        if let Some(b) = &f.body_text {
            write_body(w, Some(b), None, o.body_preferences, v)?;
        }
        if let Some(l) = &f.location {
            write_location(w, l, v)?;
        }
        if let Some(c) = &f.categories {
            write_categories(w, c)?;
        }
        if let Some(s) = f.sensitivity {
            w.text_element(cal::Sensitivity, &s.to_string())?;
        }
        if let Some(b) = f.busy_status {
            w.text_element(cal::BusyStatus, &b.to_string())?;
        }
        if let Some(a) = f.all_day {
            w.text_element(cal::AllDayEvent, if a { "1" } else { "0" })?;
        }
        if let Some(r) = f.reminder {
            w.text_element(cal::Reminder, &r.to_string())?;
        }
        if let Some(d) = f.dtstamp {
            w.text_element(cal::DtStamp, &date::compact(d))?;
        }
        if let Some(m) = f.meeting_status {
            w.text_element(cal::MeetingStatus, &m.to_string())?;
        }
        if let Some(a) = &f.attendees {
            write_attendees(w, a)?;
        }
        if v >= Version::V14_0
            && let Some(r) = f.response_type
        {
            w.text_element(cal::ResponseType, &r.to_string())?;
        }
    }
    w.end()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phone → server.

fn child_text(e: &Element, tag: eas_wbxml::codepage::Tag) -> Option<String> {
    e.child(tag)
        .map(|c| c.text().unwrap_or_default().to_owned())
}

fn child_num(
    e: &Element,
    tag: eas_wbxml::codepage::Tag,
    max: u32,
) -> Result<Option<u32>, CalendarError> {
    match e.child(tag) {
        None => Ok(None),
        Some(c) => match c.text().unwrap_or_default().trim().parse::<u32>() {
            Ok(v) if v <= max => Ok(Some(v)),
            _ => Err(CalendarError::InvalidItem(format!(
                "{} is not a number up to {max}",
                tag.name()
            ))),
        },
    }
}

fn child_date(
    e: &Element,
    tag: eas_wbxml::codepage::Tag,
) -> Result<Option<NaiveDateTime>, CalendarError> {
    match e.child(tag).and_then(|c| c.text()) {
        None => Ok(None),
        Some(t) if t.trim().is_empty() => Ok(None),
        Some(t) => date::parse(t)
            .map(Some)
            .ok_or_else(|| CalendarError::InvalidItem(format!("{} is not a date", tag.name()))),
    }
}

fn read_fields(e: &Element) -> Result<EventData, CalendarError> {
    let mut d = EventData {
        subject: child_text(e, cal::Subject),
        location: child_text(e, cal::Location).or_else(|| {
            e.child(asb::Location)
                .map(|l| child_text(l, asb::DisplayName).unwrap_or_default())
        }),
        start: child_date(e, cal::StartTime)?,
        end: child_date(e, cal::EndTime)?,
        all_day: child_num(e, cal::AllDayEvent, 1)?.map(|v| v == 1),
        dtstamp: child_date(e, cal::DtStamp)?,
        reminder: child_num(e, cal::Reminder, 60 * 24 * 365)?,
        sensitivity: child_num(e, cal::Sensitivity, 3)?.map(|v| v as u8),
        busy_status: child_num(e, cal::BusyStatus, 4)?.map(|v| v as u8),
        meeting_status: child_num(e, cal::MeetingStatus, 15)?.map(|v| v as u8),
        response_type: child_num(e, cal::ResponseType, 5)?.map(|v| v as u8),
        organizer_email: child_text(e, cal::OrganizerEmail),
        organizer_name: child_text(e, cal::OrganizerName),
        ..EventData::default()
    };
    if let Some(tz) = e.child(cal::Timezone).and_then(|t| t.text()) {
        d.timezone = Some(
            TimeZoneInfo::from_base64(tz)
                .map_err(|err| CalendarError::InvalidItem(format!("Timezone: {err}")))?,
        );
    }
    // 16.x phones send no UID; ClientUid names a new item.
    d.uid = child_text(e, cal::UID)
        .or_else(|| child_text(e, cal::ClientUid))
        .filter(|u| !u.trim().is_empty());
    if let Some(a) = e.child(cal::Attendees) {
        let mut list = Vec::new();
        for at in a.children_with(cal::Attendee) {
            let email = child_text(at, cal::Email).unwrap_or_default();
            if email.trim().is_empty() {
                continue;
            }
            list.push(Attendee {
                name: child_text(at, cal::Name).unwrap_or_default(),
                status: child_num(at, cal::AttendeeStatus, 5)?.map(|v| v as u8),
                kind: child_num(at, cal::AttendeeType, 3)?.map(|v| v as u8),
                email: email.trim().to_owned(),
            });
        }
        d.attendees = Some(list);
    }
    if let Some(c) = e.child(cal::Categories) {
        d.categories = Some(
            c.children_with(cal::Category)
                .filter_map(|c| c.text())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        );
    }
    if let Some(b) = e.child(asb::Body) {
        let kind = child_num(b, asb::Type, 4)?
            .and_then(|k| BodyType::from_code(k as u8))
            .unwrap_or(BodyType::Plain);
        d.phone_body = Some(PhoneBody {
            kind,
            data: child_text(b, asb::Data),
            truncated: child_num(b, asb::Truncated, 1)? == Some(1),
        });
    } else if let Some(b) = child_text(e, cal::Body) {
        d.phone_body = Some(PhoneBody {
            kind: BodyType::Plain,
            data: Some(b),
            truncated: child_num(e, cal::BodyTruncated, 1)? == Some(1),
        });
    }
    if let Some(r) = e.child(cal::Recurrence) {
        d.recurrence = Some(Recurrence::from_element(r, &CALENDAR_TAGS)?);
    }
    d.instance_id = child_date(e, asb::InstanceId)?;
    if let Some(x) = e.child(cal::Exceptions) {
        let mut list = Vec::new();
        for ex in x.children_with(cal::Exception) {
            let original = child_date(ex, cal::ExceptionStartTime)?
                .or(child_date(ex, asb::InstanceId)?)
                .ok_or_else(|| CalendarError::InvalidItem("Exception without its start".into()))?;
            list.push(ExceptionData {
                original_start: original,
                deleted: child_num(ex, cal::Deleted, 1)? == Some(1),
                fields: read_fields(ex)?,
            });
        }
        d.exceptions = Some(list);
    }
    Ok(d)
}

impl EventData {
    /// Reads a phone's Calendar `<ApplicationData>` (or an `<Exception>`).
    pub fn from_element(app_data: &Element, version: Version) -> Result<EventData, CalendarError> {
        // The elements are the same in every version; 16.x only adds some.
        let _ = version;
        let d = read_fields(app_data)?;
        if let (Some(s), Some(e)) = (d.start, d.end)
            && e < s
        {
            return Err(CalendarError::InvalidItem(
                "EndTime before StartTime".into(),
            ));
        }
        Ok(d)
    }
}

/// The time of a phone's value as the object writes it: in `zone` (with TZID), or a DATE.
fn date_entry(
    prop: ICalendarProperty,
    utc: NaiveDateTime,
    zone: &Zone,
    all_day: bool,
    version: Version,
) -> ICalendarEntry {
    if all_day {
        let d = if version >= Version::V16_0 {
            utc.date()
        } else {
            zone.to_local(utc).date()
        };
        return ICalendarEntry::new(prop)
            .with_param(ICalendarParameter::value(
                calcard::icalendar::ICalendarValueType::Date,
            ))
            .with_value(ical::date_value(d));
    }
    match zone.tzid() {
        None => ICalendarEntry::new(prop).with_value(ical::utc_value(utc)),
        Some(tzid) => ICalendarEntry::new(prop)
            .with_param(ICalendarParameter::tzid(tzid.to_owned()))
            .with_value(ical::local_value(zone.to_local(utc))),
    }
}

/// Whether an existing date property already says `utc` (so it is left as written).
fn same_time(
    ical: &ICalendar,
    c: &ICalendarComponent,
    prop: &ICalendarProperty,
    utc: NaiveDateTime,
    all_day: bool,
    o: &MergeOptions<'_>,
) -> bool {
    let Some(dp) = ical::date_prop(c, prop) else {
        return false;
    };
    if dp.is_date != all_day {
        return false;
    }
    if all_day {
        let d = if o.version >= Version::V16_0 {
            utc.date()
        } else {
            o.user_zone.to_local(utc).date()
        };
        return dp.value.date() == d;
    }
    resolve(ical, &dp, o.user_zone, o.year).0 == utc
}

fn set_attendees(c: &mut ICalendarComponent, list: &[Attendee]) {
    let mut kept: Vec<ICalendarEntry> = Vec::new();
    for a in list {
        let existing = c.properties(&ICalendarProperty::Attendee).find(|e| {
            e.values
                .first()
                .and_then(|v| v.as_text())
                .is_some_and(|v| email_of(v).eq_ignore_ascii_case(&a.email))
        });
        let mut e = match existing {
            Some(e) => e.clone(),
            None => ICalendarEntry::new(ICalendarProperty::Attendee)
                .with_param(ICalendarParameter::rsvp(true))
                .with_value(ICalendarValue::Uri(Uri::Location(format!(
                    "mailto:{}",
                    a.email
                )))),
        };
        let name_now = param_text(&e, &ICalendarParameterName::Cn)
            .unwrap_or_default()
            .to_owned();
        if !a.name.is_empty() && a.name != name_now && a.name != a.email {
            e.params.retain(|p| p.name != ICalendarParameterName::Cn);
            e.params.insert(0, ICalendarParameter::cn(a.name.clone()));
        }
        let status_now =
            existing.map(|x| partstat_code(param_text(x, &ICalendarParameterName::Partstat)));
        if let Some(s) = a.status.filter(|s| Some(*s) != status_now)
            && let Some(p) = partstat_of(s)
        {
            e.params
                .retain(|p| p.name != ICalendarParameterName::Partstat);
            e.params.push(ICalendarParameter::partstat(p));
        } else if existing.is_none() {
            e.params.push(ICalendarParameter::partstat(
                ICalendarParticipationStatus::NeedsAction,
            ));
        }
        let kind_now = existing.map(attendee_type);
        if let Some(k) = a.kind.filter(|k| Some(*k) != kind_now) {
            e.params.retain(|p| {
                p.name != ICalendarParameterName::Role && p.name != ICalendarParameterName::Cutype
            });
            match k {
                3 => e
                    .params
                    .push(ICalendarParameter::cutype(ICalendarUserTypes::Resource)),
                2 => e.params.push(ICalendarParameter::role(
                    ICalendarParticipationRole::OptParticipant,
                )),
                _ => e.params.push(ICalendarParameter::role(
                    ICalendarParticipationRole::ReqParticipant,
                )),
            }
        }
        kept.push(e);
    }
    let at = c
        .entries
        .iter()
        .position(|e| e.name == ICalendarProperty::Attendee)
        .unwrap_or(c.entries.len());
    c.entries.retain(|e| e.name != ICalendarProperty::Attendee);
    let at = at.min(c.entries.len());
    c.entries.splice(at..at, kept);
}

/// Applies the phone's values to one VEVENT (master or override) at `id`.
fn apply_fields(
    ical: &mut ICalendar,
    id: u32,
    d: &EventData,
    zone: &Zone,
    all_day: bool,
    o: &MergeOptions<'_>,
    is_new: bool,
) {
    let c_ro = ical.components[id as usize].clone();
    let mut changed_time = false;
    if let Some(s) = d.start
        && !same_time(ical, &c_ro, &ICalendarProperty::Dtstart, s, all_day, o)
    {
        let e = date_entry(ICalendarProperty::Dtstart, s, zone, all_day, o.version);
        ical::set(
            &mut ical.components[id as usize],
            ICalendarProperty::Dtstart,
            Some(e),
        );
        changed_time = true;
    }
    if let Some(end) = d.end
        && !same_time(ical, &c_ro, &ICalendarProperty::Dtend, end, all_day, o)
    {
        let e = date_entry(ICalendarProperty::Dtend, end, zone, all_day, o.version);
        let c = &mut ical.components[id as usize];
        ical::set(c, ICalendarProperty::Duration, None);
        ical::set(c, ICalendarProperty::Dtend, Some(e));
        changed_time = true;
    }
    let reminder_now = reminder_alarm(ical, &c_ro);
    let c = &mut ical.components[id as usize];
    if let Some(s) = &d.subject
        && ical::text(c, &ICalendarProperty::Summary) != Some(s.as_str())
    {
        ical::set_text(
            c,
            ICalendarProperty::Summary,
            (!s.is_empty()).then_some(s.as_str()),
        );
    }
    if let Some(l) = &d.location
        && ical::text(c, &ICalendarProperty::Location).unwrap_or_default() != l
    {
        ical::set_text(
            c,
            ICalendarProperty::Location,
            (!l.is_empty()).then_some(l.as_str()),
        );
    }
    if let Some(s) = d.sensitivity
        && s != sensitivity_of(c)
    {
        let v = match s {
            1 | 2 => "PRIVATE",
            3 => "CONFIDENTIAL",
            _ => "PUBLIC",
        };
        ical::set(
            c,
            ICalendarProperty::Class,
            Some(ICalendarEntry::new(ICalendarProperty::Class).with_value(v)),
        );
    }
    if let Some(b) = d.busy_status
        && (is_new || b != busy_of(c))
    {
        let transp = if b == 0 { "TRANSPARENT" } else { "OPAQUE" };
        ical::set(
            c,
            ICalendarProperty::Transp,
            Some(ICalendarEntry::new(ICalendarProperty::Transp).with_value(transp)),
        );
        let cdo = match b {
            0 => "FREE",
            1 => "TENTATIVE",
            3 => "OOF",
            4 => "WORKINGELSEWHERE",
            _ => "BUSY",
        };
        if matches!(b, 1 | 3 | 4) || c.has_property(&x_prop(CDO_BUSY)) {
            ical::set(
                c,
                x_prop(CDO_BUSY),
                Some(ICalendarEntry::new(x_prop(CDO_BUSY)).with_value(cdo)),
            );
        }
    }
    if let Some(cats) = &d.categories
        && *cats != categories_of(c)
    {
        let e = (!cats.is_empty()).then(|| {
            ICalendarEntry::new(ICalendarProperty::Categories).with_values(
                cats.iter()
                    .map(|s| ICalendarValue::Text(s.clone()))
                    .collect(),
            )
        });
        ical::set(c, ICalendarProperty::Categories, e);
    }
    // RTF (compressed, base64) and MIME bodies are not text: the description stays.
    if let Some(b) = &d.phone_body
        && !b.truncated
        && matches!(b.kind, BodyType::Plain | BodyType::Html)
        && let Some(data) = &b.data
    {
        let text = match b.kind {
            BodyType::Html => crate::mime::html::html_to_text(data),
            _ => data.replace("\r\n", "\n"),
        };
        let (now_text, _) = description_of(c);
        if now_text
            .as_deref()
            .unwrap_or_default()
            .replace("\r\n", "\n")
            .trim_end()
            != text.trim_end()
        {
            ical::set_text(
                c,
                ICalendarProperty::Description,
                (!text.is_empty()).then_some(text.as_str()),
            );
            if b.kind == BodyType::Html {
                let alt = ICalendarEntry::new(x_prop("X-ALT-DESC"))
                    .with_param(ICalendarParameter::fmttype("text/html".to_owned()))
                    .with_value(data.clone());
                ical::set(c, x_prop("X-ALT-DESC"), Some(alt));
            } else {
                // The HTML twin no longer says the same thing.
                ical::set(c, x_prop("X-ALT-DESC"), None);
            }
        }
    }
    if let Some(list) = &d.attendees {
        set_attendees(c, list);
    }
    if let Some(email) = d.organizer_email.as_ref().filter(|e| !e.trim().is_empty()) {
        let now = c
            .property(&ICalendarProperty::Organizer)
            .and_then(|e| e.values.first()?.as_text())
            .map(email_of);
        if now
            .as_deref()
            .is_none_or(|n| !n.eq_ignore_ascii_case(email))
            && (c.has_property(&ICalendarProperty::Attendee) || now.is_some())
        {
            let mut e = ICalendarEntry::new(ICalendarProperty::Organizer).with_value(
                ICalendarValue::Uri(Uri::Location(format!("mailto:{}", email.trim()))),
            );
            if let Some(n) = d
                .organizer_name
                .as_ref()
                .filter(|n| !n.is_empty() && *n != email)
            {
                e = e.with_param(ICalendarParameter::cn(n.clone()));
            }
            ical::set(c, ICalendarProperty::Organizer, Some(e));
        }
    }
    if c.has_property(&ICalendarProperty::Attendee)
        && !c.has_property(&ICalendarProperty::Organizer)
        && let Some((name, email)) = o.organizer
    {
        let mut e = ICalendarEntry::new(ICalendarProperty::Organizer).with_value(
            ICalendarValue::Uri(Uri::Location(format!("mailto:{email}"))),
        );
        if !name.is_empty() {
            e = e.with_param(ICalendarParameter::cn(name.to_owned()));
        }
        ical::set(c, ICalendarProperty::Organizer, Some(e));
    }
    ical::set(
        c,
        ICalendarProperty::Dtstamp,
        Some(ICalendarEntry::new(ICalendarProperty::Dtstamp).with_value(ical::utc_value(o.now))),
    );
    if !is_new {
        ical::set(
            c,
            ICalendarProperty::LastModified,
            Some(
                ICalendarEntry::new(ICalendarProperty::LastModified)
                    .with_value(ical::utc_value(o.now)),
            ),
        );
        if changed_time {
            let seq = c
                .property(&ICalendarProperty::Sequence)
                .and_then(|e| e.values.first()?.as_integer())
                .unwrap_or(0);
            ical::set(
                c,
                ICalendarProperty::Sequence,
                Some(
                    ICalendarEntry::new(ICalendarProperty::Sequence)
                        .with_value(ICalendarValue::Integer(seq + 1)),
                ),
            );
        }
    }
    // Reminder: only the alarm it stands for changes; other alarms stay.
    match (d.reminder, reminder_now) {
        (Some(m), Some((_, now))) if m == now => {}
        (Some(m), Some((aid, _))) => {
            if let Some(t) = ical.components[aid as usize].property_mut(&ICalendarProperty::Trigger)
            {
                t.values = vec![ICalendarValue::Duration(ICalendarDuration::from_seconds(
                    -(m as i64) * 60,
                ))];
                t.params.retain(|p| p.name != ICalendarParameterName::Value);
            }
        }
        (Some(m), None) => {
            let mut a = ICalendarComponent::new(ICalendarComponentType::VAlarm);
            a.entries
                .push(ICalendarEntry::new(ICalendarProperty::Action).with_value("DISPLAY"));
            a.entries.push(
                ICalendarEntry::new(ICalendarProperty::Description)
                    .with_value(d.subject.clone().unwrap_or_else(|| "Reminder".into())),
            );
            a.entries
                .push(ICalendarEntry::new(ICalendarProperty::Trigger).with_value(
                    ICalendarValue::Duration(ICalendarDuration::from_seconds(-(m as i64) * 60)),
                ));
            ical::add_child(ical, id, a);
        }
        (None, Some((aid, _))) if !is_new => {
            ical.components[id as usize]
                .component_ids
                .retain(|x| *x != aid);
            ical.remove_component_ids(&[aid]);
        }
        (None, _) => {}
    }
}

/// A new, empty VCALENDAR.
pub fn new_calendar() -> ICalendar {
    let mut root = ICalendarComponent::new(ICalendarComponentType::VCalendar);
    root.entries
        .push(ICalendarEntry::new(ICalendarProperty::Version).with_value("2.0"));
    root.entries
        .push(ICalendarEntry::new(ICalendarProperty::Prodid).with_value("-//eas-gateway//EN"));
    ICalendar {
        components: vec![root],
    }
}

/// The zone a phone item's times are written in: the stored event's zone when the phone's
/// TimeZone has the same rule, else the best zone for the blob, else the user's.
fn phone_zone(stored: Option<&Zone>, tz: Option<&TimeZoneInfo>, o: &MergeOptions<'_>) -> Zone {
    match tz {
        Some(info) => {
            if let Some(z) = stored
                && z.blob(o.year).same_rule(info, o.year)
            {
                return z.clone();
            }
            let mut hints: Vec<&str> = Vec::new();
            if let Some(t) = stored.and_then(|z| z.tzid()) {
                hints.push(t);
            }
            if let Some(t) = o.user_zone.tzid() {
                hints.push(t);
            }
            Zone::from_blob(info, o.year, &hints)
        }
        None => stored.cloned().unwrap_or_else(|| o.user_zone.clone()),
    }
}

/// Merges a phone's event into the stored object (or a new one) and returns the object to PUT.
pub fn merge_event(
    stored: Option<&ICalendar>,
    phone: &EventData,
    o: &MergeOptions<'_>,
) -> Result<ICalendar, CalendarError> {
    let mut ical = stored.cloned().unwrap_or_else(new_calendar);
    let (master, _) = vevents(&ical);
    let is_new = master.is_none();
    if is_new && (phone.start.is_none() || phone.end.is_none()) {
        return Err(CalendarError::InvalidItem(
            "a new event needs StartTime and EndTime".into(),
        ));
    }
    let master = match master {
        Some(m) => m,
        None => {
            let mut c = ICalendarComponent::new(ICalendarComponentType::VEvent);
            let uid = phone.uid.clone().unwrap_or_else(|| o.new_uid.to_owned());
            c.entries
                .push(ICalendarEntry::new(ICalendarProperty::Uid).with_value(uid));
            ical::add_child(&mut ical, 0, c)
        }
    };
    // The stored zone of the series.
    let stored_zone = ical::date_prop(
        &ical.components[master as usize],
        &ICalendarProperty::Dtstart,
    )
    .filter(|d| !d.is_date)
    .map(|d| resolve(&ical, &d, o.user_zone, o.year).1);
    let zone = phone_zone(stored_zone.as_ref(), phone.timezone.as_ref(), o);
    let stored_all_day = ical::date_prop(
        &ical.components[master as usize],
        &ICalendarProperty::Dtstart,
    )
    .is_some_and(|d| d.is_date);
    let all_day = phone.all_day.unwrap_or(stored_all_day);
    // A zone of our own needs its VTIMEZONE in the object.
    if let Zone::Rules { tzid, info } = &zone
        && !ical
            .timezones()
            .any(|t| ical::text(t, &ICalendarProperty::Tzid) == Some(tzid.as_str()))
    {
        info.add_vtimezone(&mut ical, tzid, o.year);
    } else if let Zone::Iana(tz) = &zone
        && !all_day
        && !ical
            .timezones()
            .any(|t| ical::text(t, &ICalendarProperty::Tzid) == Some(tz.name()))
    {
        let from = chrono::NaiveDate::from_ymd_opt(o.year - 1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |d| d.and_utc().timestamp());
        let to = chrono::NaiveDate::from_ymd_opt(o.year + 10, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, |d| d.and_utc().timestamp());
        ical.add_timezone(tz.name(), from, to);
    }
    let (master, _) = vevents(&ical);
    let master = master.unwrap_or(master_fallback(&ical));
    apply_fields(&mut ical, master, phone, &zone, all_day, o, is_new);
    // Removing an alarm renumbers components.
    let master = vevents(&ical).0.unwrap_or(master);
    // Recurrence: rewritten only when the phone's pattern differs from what the stored rule
    // gives (so a rule EAS could only approximate is not replaced by the approximation).
    let mc = ical.components[master as usize].clone();
    let start_utc = phone.start.or_else(|| {
        ical::date_prop(&mc, &ICalendarProperty::Dtstart)
            .map(|d| resolve(&ical, &d, o.user_zone, o.year).0)
    });
    let start_local = zone.to_local(start_utc.unwrap_or_default());
    let stored_rule = mc
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| match e.values.first() {
            Some(ICalendarValue::RecurrenceRule(r)) => Some((**r).clone()),
            _ => None,
        });
    let stored_as_eas = stored_rule
        .as_ref()
        .map(|r| recurrence::to_eas(r, start_local, &zone));
    let same = |r: &Recurrence| match &stored_as_eas {
        Some(ToEas::Exact(s)) | Some(ToEas::Approximate { recurrence: s, .. }) => {
            same_recurrence(s, r)
        }
        _ => false,
    };
    match &phone.recurrence {
        Some(r) if same(r) => {}
        Some(r) => {
            let rule = recurrence::from_eas(r, &zone, all_day);
            ical::set(
                &mut ical.components[master as usize],
                ICalendarProperty::Rrule,
                Some(ICalendarEntry::new(ICalendarProperty::Rrule).with_value(rule)),
            );
        }
        // A rule EAS could not express was never shown to the phone: it stays.
        None if matches!(stored_as_eas, Some(ToEas::CannotExpress(_))) => {}
        None if !is_new && stored_rule.is_some() => {
            // No longer a series: its rule, deletions and moved occurrences go.
            let c = &mut ical.components[master as usize];
            ical::set(c, ICalendarProperty::Rrule, None);
            ical::set(c, ICalendarProperty::Exdate, None);
            let (_, overrides) = vevents(&ical);
            ical.remove_component_ids(&overrides);
        }
        None => {}
    }
    if let Some(exceptions) = &phone.exceptions {
        let master_fields = phone.clone();
        for e in exceptions {
            let master = vevents(&ical).0.unwrap_or(master);
            apply_exception(&mut ical, master, e, &master_fields, &zone, all_day, o)?;
        }
    }
    Ok(ical)
}

fn master_fallback(ical: &ICalendar) -> u32 {
    ical::children_of(ical, &ICalendarComponentType::VEvent)
        .first()
        .copied()
        .unwrap_or(0)
}

/// Whether two patterns give the same occurrences (the defaults a phone may leave out).
fn same_recurrence(a: &Recurrence, b: &Recurrence) -> bool {
    let norm = |r: &Recurrence| {
        let mut r = r.clone();
        r.first_day_of_week = r.first_day_of_week.or(Some(1));
        r.calendar_type = r.calendar_type.filter(|t| *t > 1);
        if r.until.is_some() {
            r.occurrences = None;
        }
        r
    };
    let (a, b) = (norm(a), norm(b));
    // Until is compared to the minute: phones round it.
    let until = |r: &Recurrence| r.until.map(|u| u.with_second(0).unwrap_or(u));
    Recurrence {
        until: until(&a),
        ..a.clone()
    } == Recurrence {
        until: until(&b),
        ..b.clone()
    }
}

/// The RECURRENCE-ID/EXDATE value of an occurrence, in the series' own form.
fn instance_entry(
    prop: ICalendarProperty,
    original: NaiveDateTime,
    zone: &Zone,
    all_day: bool,
    o: &MergeOptions<'_>,
) -> ICalendarEntry {
    date_entry(prop, original, zone, all_day, o.version)
}

/// Applies one phone exception: a deletion becomes an EXDATE, a change an override VEVENT.
fn apply_exception(
    ical: &mut ICalendar,
    master: u32,
    e: &ExceptionData,
    series: &EventData,
    zone: &Zone,
    all_day: bool,
    o: &MergeOptions<'_>,
) -> Result<(), CalendarError> {
    let uid = ical.components[master as usize]
        .uid()
        .unwrap_or_default()
        .to_owned();
    let (_, overrides) = vevents(ical);
    let existing = overrides.into_iter().find(|id| {
        ical::date_prop(
            &ical.components[*id as usize],
            &ICalendarProperty::RecurrenceId,
        )
        .is_some_and(|dp| {
            if dp.is_date {
                // 16.x names an all-day occurrence by its date at 00:00 "UTC".
                let date = if o.version >= Version::V16_0 {
                    e.original_start.date()
                } else {
                    zone.to_local(e.original_start).date()
                };
                dp.value.date() == date
            } else {
                resolve(ical, &dp, zone, o.year).0 == e.original_start
            }
        })
    });
    if e.deleted {
        if let Some(id) = existing {
            ical.components[0].component_ids.retain(|x| *x != id);
            let children = ical.components[id as usize].component_ids.clone();
            let mut gone = vec![id];
            gone.extend(children);
            ical.remove_component_ids(&gone);
        }
        let master = vevents(ical).0.unwrap_or(master);
        let entry = instance_entry(
            ICalendarProperty::Exdate,
            e.original_start,
            zone,
            all_day,
            o,
        );
        let already = ical.components[master as usize]
            .properties(&ICalendarProperty::Exdate)
            .any(|x| x.values.iter().any(|v| Some(v) == entry.values.first()));
        if !already {
            ical.components[master as usize].entries.push(entry);
        }
        return Ok(());
    }
    let id = match existing {
        Some(id) => id,
        None => {
            // A new override starts as a copy of the series' own properties (not its rule).
            let m = &ical.components[master as usize];
            let mut c = ICalendarComponent::new(ICalendarComponentType::VEvent);
            c.entries = m
                .entries
                .iter()
                .filter(|x| {
                    !matches!(
                        x.name,
                        ICalendarProperty::Rrule
                            | ICalendarProperty::Rdate
                            | ICalendarProperty::Exdate
                            | ICalendarProperty::Exrule
                    )
                })
                .cloned()
                .collect();
            c.entries.push(instance_entry(
                ICalendarProperty::RecurrenceId,
                e.original_start,
                zone,
                all_day,
                o,
            ));
            if uid.is_empty() {
                return Err(CalendarError::InvalidItem(
                    "exception of an event without UID".into(),
                ));
            }
            ical::add_child(ical, 0, c)
        }
    };
    let mut f = e.fields.clone();
    // Absent values in an exception mean "as the series".
    let duration = series
        .end
        .zip(series.start)
        .map(|(e, s)| e - s)
        .unwrap_or_default();
    f.start = f.start.or(Some(e.original_start));
    f.end = f.end.or_else(|| f.start.map(|s| s + duration));
    if existing.is_none() {
        f.reminder = f.reminder.or(series.reminder);
    }
    let ex_all_day = f.all_day.unwrap_or(all_day);
    apply_fields(ical, id, &f, zone, ex_all_day, o, existing.is_none());
    Ok(())
}

/// 16.x: a phone's change of one occurrence (Sync Change with InstanceId).
pub fn merge_instance(
    stored: &ICalendar,
    instance_id: NaiveDateTime,
    phone: &EventData,
    o: &MergeOptions<'_>,
) -> Result<ICalendar, CalendarError> {
    let mut ical = stored.clone();
    let (Some(master), _) = vevents(&ical) else {
        return Err(CalendarError::NoComponent("VEVENT"));
    };
    let options = EventOptions {
        version: o.version,
        body_preferences: &[],
        user_zone: o.user_zone,
        year: o.year,
        user_emails: &[],
    };
    let (series, zone, all_day) =
        EventData::from_component(&ical, &ical.components[master as usize].clone(), &options)?;
    let e = ExceptionData {
        original_start: instance_id,
        deleted: false,
        fields: phone.clone(),
    };
    apply_exception(&mut ical, master, &e, &series, &zone, all_day, o)?;
    Ok(ical)
}

/// 16.x: a phone's deletion of one occurrence (Sync Delete with InstanceId).
pub fn delete_instance(
    stored: &ICalendar,
    instance_id: NaiveDateTime,
    o: &MergeOptions<'_>,
) -> Result<ICalendar, CalendarError> {
    let mut ical = stored.clone();
    let (Some(master), _) = vevents(&ical) else {
        return Err(CalendarError::NoComponent("VEVENT"));
    };
    let options = EventOptions {
        version: o.version,
        body_preferences: &[],
        user_zone: o.user_zone,
        year: o.year,
        user_emails: &[],
    };
    let (series, zone, all_day) =
        EventData::from_component(&ical, &ical.components[master as usize].clone(), &options)?;
    let e = ExceptionData {
        original_start: instance_id,
        deleted: true,
        fields: EventData::default(),
    };
    apply_exception(&mut ical, master, &e, &series, &zone, all_day, o)?;
    Ok(ical)
}

/// The local date of a UTC instant in a zone (for callers formatting all-day values).
pub fn local_date(zone: &Zone, utc: NaiveDateTime) -> NaiveDate {
    zone.to_local(utc).date()
}

//! VTODO ↔ EAS Tasks items (`tasks:` code page 9, MS-ASTASK).
//!
//! Tasks carry each date twice: `StartDate`/`DueDate` are the *local* wall-clock time written
//! as if it were UTC, `UtcStartDate`/`UtcDueDate` the real instant. A DATE-valued DUE (the
//! usual "due on Friday") is local midnight of that day in the user's zone. The reminder is an
//! absolute `ReminderTime`; a relative VALARM is resolved against DTSTART or DUE. PRIORITY
//! 1–4 is high (2), 5 or none normal (1), 6–9 low (0). Merging follows the event rules: a
//! value sent back unchanged leaves the property as written; everything else stays.

use std::io::Write;

use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarParameter,
    ICalendarParameterName, ICalendarParameterValue, ICalendarProperty, ICalendarRelated,
    ICalendarValue, ICalendarValueType,
};
use chrono::{Duration, NaiveDateTime, Timelike};
use eas_wbxml::tags::{airsyncbase as asb, tasks as t};
use eas_wbxml::{Element, Writer};

use super::ical;
use super::recurrence::{self, Recurrence, TASK_TAGS, ToEas, Unsupported};
use super::timezone::Zone;
use super::{CalendarError, Version, date};
use crate::mime::body::{self, BodyPreference, BodyType, MimeSupport};

/// What rendering and merging need besides the object.
#[derive(Debug, Clone)]
pub struct TaskOptions<'a> {
    pub version: Version,
    pub body_preferences: &'a [BodyPreference],
    /// The zone of floating and DATE values.
    pub user_zone: &'a Zone,
    pub year: i32,
    /// DTSTAMP/LAST-MODIFIED of a merge.
    pub now: NaiveDateTime,
    /// The UID of a new task.
    pub new_uid: &'a str,
}

/// A task's values as EAS carries them. Dates are `(local, utc)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskData {
    pub subject: Option<String>,
    pub body: Option<String>,
    /// Phone → server: whether the body it sent was cut.
    pub body_truncated: bool,
    pub start: Option<(NaiveDateTime, NaiveDateTime)>,
    pub due: Option<(NaiveDateTime, NaiveDateTime)>,
    pub complete: Option<bool>,
    pub date_completed: Option<NaiveDateTime>,
    pub importance: Option<u8>,
    pub sensitivity: Option<u8>,
    pub reminder: Option<NaiveDateTime>,
    pub reminder_set: Option<bool>,
    pub categories: Option<Vec<String>>,
    pub recurrence: Option<Recurrence>,
}

fn the_todo(ical: &ICalendar) -> Option<u32> {
    ical::children_of(ical, &ICalendarComponentType::VTodo)
        .into_iter()
        .find(|id| !ical.components[*id as usize].has_property(&ICalendarProperty::RecurrenceId))
}

fn zone_of(ical: &ICalendar, dp: &ical::DateProp, o: &TaskOptions<'_>) -> Zone {
    if dp.is_utc {
        return Zone::Utc;
    }
    dp.tzid
        .as_deref()
        .and_then(|tz| Zone::from_tzid(ical, tz, o.year))
        .unwrap_or_else(|| o.user_zone.clone())
}

/// `(local, utc)` of a date property.
fn both(
    ical: &ICalendar,
    c: &ICalendarComponent,
    prop: &ICalendarProperty,
    o: &TaskOptions<'_>,
) -> Option<(NaiveDateTime, NaiveDateTime, Zone)> {
    let dp = ical::date_prop(c, prop)?;
    let zone = zone_of(ical, &dp, o);
    if dp.is_utc {
        let local = o.user_zone.to_local(dp.value);
        return Some((local, dp.value, o.user_zone.clone()));
    }
    Some((dp.value, zone.to_utc(dp.value), zone))
}

fn importance_of(c: &ICalendarComponent) -> u8 {
    match c
        .property(&ICalendarProperty::Priority)
        .and_then(|e| e.values.first()?.as_integer())
    {
        Some(1..=4) => 2,
        Some(6..=9) => 0,
        _ => 1,
    }
}

fn sensitivity_of(c: &ICalendarComponent) -> u8 {
    match ical::text(c, &ICalendarProperty::Class)
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("PRIVATE") => 2,
        Some("CONFIDENTIAL") => 3,
        _ => 0,
    }
}

fn is_complete(c: &ICalendarComponent) -> bool {
    ical::text(c, &ICalendarProperty::Status).is_some_and(|s| s.eq_ignore_ascii_case("COMPLETED"))
        || c.has_property(&ICalendarProperty::Completed)
}

fn categories_of(c: &ICalendarComponent) -> Vec<String> {
    c.properties(&ICalendarProperty::Categories)
        .flat_map(|e| e.values.iter().filter_map(|v| v.as_text()))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The alarm `ReminderTime` stands for and its absolute time (UTC).
fn reminder_alarm(
    ical: &ICalendar,
    c: &ICalendarComponent,
    o: &TaskOptions<'_>,
) -> Option<(u32, NaiveDateTime)> {
    c.component_ids.iter().find_map(|id| {
        let a = ical.components.get(*id as usize)?;
        if a.component_type != ICalendarComponentType::VAlarm {
            return None;
        }
        let trigger = a.property(&ICalendarProperty::Trigger)?;
        match trigger.values.first()? {
            ICalendarValue::Duration(d) => {
                let related_end = trigger
                    .parameters(&ICalendarParameterName::Related)
                    .any(|r| matches!(r, ICalendarParameterValue::Related(ICalendarRelated::End)));
                let anchor = if related_end {
                    both(ical, c, &ICalendarProperty::Due, o)
                } else {
                    both(ical, c, &ICalendarProperty::Dtstart, o)
                        .or_else(|| both(ical, c, &ICalendarProperty::Due, o))
                }?;
                Some((*id, anchor.1 + Duration::seconds(d.as_seconds())))
            }
            v => Some((*id, ical::entry_date(trigger, v)?.value)),
        }
    })
}

impl TaskData {
    /// The task of an object and what EAS cannot say about its recurrence.
    pub fn from_ical(
        ical: &ICalendar,
        o: &TaskOptions<'_>,
    ) -> Result<(TaskData, Vec<Unsupported>), CalendarError> {
        let id = the_todo(ical).ok_or(CalendarError::NoComponent("VTODO"))?;
        let c = &ical.components[id as usize];
        let start = both(ical, c, &ICalendarProperty::Dtstart, o);
        let due = both(ical, c, &ICalendarProperty::Due, o);
        let mut lossy = Vec::new();
        let rule = c
            .property(&ICalendarProperty::Rrule)
            .and_then(|e| match e.values.first() {
                Some(ICalendarValue::RecurrenceRule(r)) => Some(r),
                _ => None,
            });
        let recurrence = rule.and_then(|r| {
            let (anchor_local, _, zone) = start.clone().or(due.clone())?;
            match recurrence::to_eas(r, anchor_local, &zone) {
                ToEas::Exact(r) => Some(r),
                ToEas::Approximate { recurrence, reason } => {
                    lossy.push(reason);
                    Some(recurrence)
                }
                ToEas::CannotExpress(reason) => {
                    lossy.push(reason);
                    None
                }
            }
        });
        let reminder = reminder_alarm(ical, c, o).map(|(_, t)| t);
        Ok((
            TaskData {
                subject: ical::text(c, &ICalendarProperty::Summary).map(str::to_owned),
                body: ical::text(c, &ICalendarProperty::Description).map(str::to_owned),
                body_truncated: false,
                start: start.map(|(l, u, _)| (l, u)),
                due: due.map(|(l, u, _)| (l, u)),
                complete: Some(is_complete(c)),
                date_completed: ical::date_prop(c, &ICalendarProperty::Completed).map(|d| d.value),
                importance: Some(importance_of(c)),
                sensitivity: Some(sensitivity_of(c)),
                reminder_set: Some(reminder.is_some()),
                reminder,
                categories: Some(categories_of(c)),
                recurrence,
            },
            lossy,
        ))
    }

    /// Reads a phone's Tasks `<ApplicationData>`.
    pub fn from_element(e: &Element) -> Result<TaskData, CalendarError> {
        let text = |tag| {
            e.child(tag)
                .map(|c: &Element| c.text().unwrap_or_default().to_owned())
        };
        let when = |tag: eas_wbxml::codepage::Tag| -> Result<Option<NaiveDateTime>, CalendarError> {
            match e
                .child(tag)
                .and_then(|c| c.text())
                .filter(|s| !s.trim().is_empty())
            {
                None => Ok(None),
                Some(s) => date::parse(s).map(Some).ok_or_else(|| {
                    CalendarError::InvalidItem(format!("{} is not a date", tag.name()))
                }),
            }
        };
        let flag = |tag| -> Result<Option<bool>, CalendarError> {
            match text(tag).as_deref().map(str::trim) {
                None => Ok(None),
                Some("0") => Ok(Some(false)),
                Some("1") => Ok(Some(true)),
                Some(_) => Err(CalendarError::InvalidItem("a flag is not 0 or 1".into())),
            }
        };
        let small = |tag: eas_wbxml::codepage::Tag, max: u8| -> Result<Option<u8>, CalendarError> {
            match text(tag) {
                None => Ok(None),
                Some(s) => match s.trim().parse::<u8>() {
                    Ok(v) if v <= max => Ok(Some(v)),
                    _ => Err(CalendarError::InvalidItem(format!(
                        "{} out of range",
                        tag.name()
                    ))),
                },
            }
        };
        let pair = |local, utc| -> Result<Option<(NaiveDateTime, NaiveDateTime)>, CalendarError> {
            Ok(match (when(local)?, when(utc)?) {
                (Some(l), Some(u)) => Some((l, u)),
                (Some(l), None) => Some((l, l)),
                (None, Some(u)) => Some((u, u)),
                (None, None) => None,
            })
        };
        let (body, body_truncated) = match e.child(asb::Body) {
            Some(b) => (
                b.child(asb::Data).map(|d| {
                    let s = d.text().unwrap_or_default();
                    if b.child(asb::Type).and_then(|t| t.text()) == Some("2") {
                        crate::mime::html::html_to_text(s)
                    } else {
                        s.replace("\r\n", "\n")
                    }
                }),
                b.child(asb::Truncated).and_then(|t| t.text()) == Some("1"),
            ),
            None => (text(t::Body), false),
        };
        let recurrence = match e.child(t::Recurrence) {
            Some(r) => Some(Recurrence::from_element(r, &TASK_TAGS)?),
            None => None,
        };
        Ok(TaskData {
            subject: text(t::Subject),
            body,
            body_truncated,
            start: pair(t::StartDate, t::UtcStartDate)?,
            due: pair(t::DueDate, t::UtcDueDate)?,
            complete: flag(t::Complete)?,
            date_completed: when(t::DateCompleted)?,
            importance: small(t::Importance, 2)?,
            sensitivity: small(t::Sensitivity, 3)?,
            reminder: when(t::ReminderTime)?,
            reminder_set: flag(t::ReminderSet)?,
            categories: e.child(t::Categories).map(|c| {
                c.children_with(t::Category)
                    .filter_map(|c| c.text())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            recurrence,
        })
    }
}

/// Writes the Tasks ApplicationData children of the object's VTODO.
pub fn write_task<W: Write>(
    w: &mut Writer<W>,
    ical: &ICalendar,
    o: &TaskOptions<'_>,
) -> Result<Vec<Unsupported>, CalendarError> {
    let (d, lossy) = TaskData::from_ical(ical, o)?;
    write_data(w, &d, o)?;
    Ok(lossy)
}

/// Parses `text` and renders its task into an encoded fragment.
pub fn render_task(
    text: &str,
    o: &TaskOptions<'_>,
) -> Result<(eas_wbxml::Fragment, Vec<Unsupported>), CalendarError> {
    let ical = ical::parse(text)?;
    let mut w = Writer::fragment();
    let lossy = write_task(&mut w, &ical, o)?;
    Ok((w.into_fragment()?, lossy))
}

fn write_data<W: Write>(
    w: &mut Writer<W>,
    d: &TaskData,
    o: &TaskOptions<'_>,
) -> Result<(), CalendarError> {
    let text = d.body.as_deref().unwrap_or_default();
    let pref = body::select(o.body_preferences, MimeSupport::Never, None, false);
    let (kind, full) = match pref.kind {
        BodyType::Html => (BodyType::Html, body::text_to_html(text)),
        _ => (BodyType::Plain, text.to_owned()),
    };
    let size = full.len() as u64;
    let (truncated, data) = body::truncate(std::borrow::Cow::Owned(full), &pref);
    crate::mime::write_body(
        w,
        &body::BodyOutput {
            kind,
            estimated_size: size,
            truncated,
            data,
            preview: pref
                .preview
                .filter(|_| o.version >= Version::V14_0)
                .map(|n| body::preview(text, n)),
        },
    )?;
    w.text_element(t::Subject, d.subject.as_deref().unwrap_or_default())?;
    w.text_element(t::Importance, &d.importance.unwrap_or(1).to_string())?;
    if let Some((local, utc)) = d.start {
        w.text_element(t::UtcStartDate, &date::extended(utc))?;
        w.text_element(t::StartDate, &date::extended(local))?;
    }
    if let Some((local, utc)) = d.due {
        w.text_element(t::UtcDueDate, &date::extended(utc))?;
        w.text_element(t::DueDate, &date::extended(local))?;
    }
    if let Some(c) = d.categories.as_ref().filter(|c| !c.is_empty()) {
        w.start(t::Categories)?;
        for x in c {
            w.text_element(t::Category, x)?;
        }
        w.end()?;
    }
    if let Some(r) = &d.recurrence {
        w.start(t::Recurrence)?;
        r.write_children(w, &TASK_TAGS, o.version, true)?;
        if let Some((local, _)) = d.start.or(d.due) {
            w.text_element(t::Start, &date::extended(local))?;
        }
        w.end()?;
    }
    let complete = d.complete.unwrap_or(false);
    w.text_element(t::Complete, if complete { "1" } else { "0" })?;
    if complete && let Some(c) = d.date_completed {
        w.text_element(t::DateCompleted, &date::extended(c))?;
    }
    w.text_element(t::Sensitivity, &d.sensitivity.unwrap_or(0).to_string())?;
    if let Some(r) = d.reminder {
        w.text_element(t::ReminderTime, &date::extended(r))?;
    }
    w.text_element(t::ReminderSet, if d.reminder.is_some() { "1" } else { "0" })?;
    Ok(())
}

/// The DUE/DTSTART entry for a phone's `(local, utc)`: the stored form is kept (DATE, TZID or
/// UTC); a new value is a DATE at local midnight, else local time in the user's zone.
fn date_entry(
    prop: ICalendarProperty,
    (local, utc): (NaiveDateTime, NaiveDateTime),
    stored: Option<&ical::DateProp>,
    o: &TaskOptions<'_>,
) -> ICalendarEntry {
    let as_date = match stored {
        Some(dp) => dp.is_date,
        None => local.time() == chrono::NaiveTime::MIN,
    };
    if as_date {
        return ICalendarEntry::new(prop)
            .with_param(ICalendarParameter::value(ICalendarValueType::Date))
            .with_value(ical::date_value(local.date()));
    }
    if stored.is_some_and(|d| d.is_utc) {
        return ICalendarEntry::new(prop).with_value(ical::utc_value(utc));
    }
    let tzid = stored
        .and_then(|d| d.tzid.clone())
        .or_else(|| o.user_zone.tzid().map(str::to_owned));
    match tzid {
        Some(tz) => ICalendarEntry::new(prop)
            .with_param(ICalendarParameter::tzid(tz))
            .with_value(ical::local_value(local)),
        None => ICalendarEntry::new(prop).with_value(ical::utc_value(utc)),
    }
}

/// Merges a phone's task into the stored object (or a new one).
pub fn merge_task(
    stored: Option<&ICalendar>,
    phone: &TaskData,
    o: &TaskOptions<'_>,
) -> Result<ICalendar, CalendarError> {
    let mut ical = stored.cloned().unwrap_or_else(super::event::new_calendar);
    let is_new = the_todo(&ical).is_none();
    let id = match the_todo(&ical) {
        Some(id) => id,
        None => {
            let mut c = ICalendarComponent::new(ICalendarComponentType::VTodo);
            c.entries
                .push(ICalendarEntry::new(ICalendarProperty::Uid).with_value(o.new_uid.to_owned()));
            ical::add_child(&mut ical, 0, c)
        }
    };
    let (now_data, _) = if is_new {
        (TaskData::default(), Vec::new())
    } else {
        TaskData::from_ical(&ical, o)?
    };
    let reminder_now = reminder_alarm(&ical, &ical.components[id as usize].clone(), o);
    let c = &mut ical.components[id as usize];
    if let Some(s) = &phone.subject
        && now_data.subject.as_deref() != Some(s.as_str())
    {
        ical::set_text(
            c,
            ICalendarProperty::Summary,
            (!s.is_empty()).then_some(s.as_str()),
        );
    }
    if let Some(b) = phone.body.as_ref().filter(|_| !phone.body_truncated)
        && now_data.body.as_deref().unwrap_or_default().trim_end() != b.trim_end()
    {
        ical::set_text(
            c,
            ICalendarProperty::Description,
            (!b.is_empty()).then_some(b.as_str()),
        );
    }
    for (prop, new, old) in [
        (ICalendarProperty::Dtstart, phone.start, now_data.start),
        (ICalendarProperty::Due, phone.due, now_data.due),
    ] {
        match new {
            Some(v) if Some(v.1) != old.map(|o| o.1) => {
                let stored = ical::date_prop(c, &prop);
                let e = date_entry(prop.clone(), v, stored.as_ref(), o);
                ical::set(c, prop, Some(e));
            }
            None if !is_new && old.is_some() => ical::set(c, prop, None),
            _ => {}
        }
    }
    if let Some(done) = phone.complete
        && (is_new || Some(done) != now_data.complete)
    {
        if done {
            let at = phone.date_completed.unwrap_or(o.now);
            ical::set(
                c,
                ICalendarProperty::Status,
                Some(ICalendarEntry::new(ICalendarProperty::Status).with_value("COMPLETED")),
            );
            ical::set(
                c,
                ICalendarProperty::Completed,
                Some(
                    ICalendarEntry::new(ICalendarProperty::Completed)
                        .with_value(ical::utc_value(at)),
                ),
            );
            ical::set(
                c,
                ICalendarProperty::PercentComplete,
                Some(
                    ICalendarEntry::new(ICalendarProperty::PercentComplete)
                        .with_value(ICalendarValue::Integer(100)),
                ),
            );
        } else {
            ical::set(
                c,
                ICalendarProperty::Status,
                Some(ICalendarEntry::new(ICalendarProperty::Status).with_value("NEEDS-ACTION")),
            );
            ical::set(c, ICalendarProperty::Completed, None);
            ical::set(c, ICalendarProperty::PercentComplete, None);
        }
    }
    if let Some(i) = phone.importance
        && i != importance_of(c)
    {
        let p = match i {
            2 => 1,
            0 => 9,
            _ => 5,
        };
        ical::set(
            c,
            ICalendarProperty::Priority,
            Some(
                ICalendarEntry::new(ICalendarProperty::Priority)
                    .with_value(ICalendarValue::Integer(p)),
            ),
        );
    }
    if let Some(s) = phone.sensitivity
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
    if let Some(cats) = &phone.categories
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
    if let Some(r) = &phone.recurrence {
        let anchor = phone.start.or(phone.due).map(|v| v.0).unwrap_or_default();
        let zone = o.user_zone.clone();
        let same = now_data.recurrence.as_ref() == Some(r);
        if !same {
            let rule = recurrence::from_eas(r, &zone, anchor.time() == chrono::NaiveTime::MIN);
            ical::set(
                c,
                ICalendarProperty::Rrule,
                Some(ICalendarEntry::new(ICalendarProperty::Rrule).with_value(rule)),
            );
        }
    } else if !is_new && now_data.recurrence.is_some() {
        ical::set(c, ICalendarProperty::Rrule, None);
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
    }
    let want = match (phone.reminder_set, phone.reminder) {
        (Some(false), _) => None,
        (_, r) => r,
    };
    match (want, reminder_now) {
        (Some(t), Some((_, now))) if t.with_second(0) == now.with_second(0) => {}
        (Some(t), Some((aid, _))) => {
            if let Some(tr) =
                ical.components[aid as usize].property_mut(&ICalendarProperty::Trigger)
            {
                *tr = ICalendarEntry::new(ICalendarProperty::Trigger)
                    .with_param(ICalendarParameter::value(ICalendarValueType::DateTime))
                    .with_value(ical::utc_value(t));
            }
        }
        (Some(t), None) => {
            let mut a = ICalendarComponent::new(ICalendarComponentType::VAlarm);
            a.entries
                .push(ICalendarEntry::new(ICalendarProperty::Action).with_value("DISPLAY"));
            a.entries.push(
                ICalendarEntry::new(ICalendarProperty::Description)
                    .with_value(phone.subject.clone().unwrap_or_else(|| "Reminder".into())),
            );
            a.entries.push(
                ICalendarEntry::new(ICalendarProperty::Trigger)
                    .with_param(ICalendarParameter::value(ICalendarValueType::DateTime))
                    .with_value(ical::utc_value(t)),
            );
            ical::add_child(&mut ical, id, a);
        }
        (None, Some((aid, _)))
            if phone.reminder_set == Some(false) || (phone.reminder_set.is_none() && !is_new) =>
        {
            ical.components[id as usize]
                .component_ids
                .retain(|x| *x != aid);
            ical.remove_component_ids(&[aid]);
        }
        (None, _) => {}
    }
    Ok(ical)
}

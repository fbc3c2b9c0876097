//! Small helpers over `calcard`'s iCalendar model: parsing one object, writing it, and the
//! few value shapes the mapping needs (local, UTC and date-only times; text properties).

use calcard::common::PartialDateTime;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarParameterName,
    ICalendarProperty, ICalendarValue,
};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};

use super::CalendarError;

/// Parses one iCalendar object (a VCALENDAR as a CalDAV resource holds).
pub fn parse(text: &str) -> Result<ICalendar, CalendarError> {
    match calcard::Parser::new(text).entry() {
        calcard::Entry::ICalendar(ical)
            if ical
                .components
                .first()
                .is_some_and(|c| c.component_type == ICalendarComponentType::VCalendar) =>
        {
            Ok(ical)
        }
        calcard::Entry::ICalendar(_) => Err(CalendarError::Parse("not a VCALENDAR".into())),
        calcard::Entry::InvalidLine(line) => Err(CalendarError::Parse(format!(
            "invalid line {:?}",
            line.chars().take(60).collect::<String>()
        ))),
        other => Err(CalendarError::Parse(format!(
            "{:?}",
            std::mem::discriminant(&other)
        ))),
    }
}

/// Writes an iCalendar object with CRLF line ends and folding, as RFC 5545 asks.
pub fn write(ical: &ICalendar) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = ical.write_to(&mut out);
    out
}

/// A floating or zone-local date-time value (no `Z`).
pub fn local_value(dt: NaiveDateTime) -> PartialDateTime {
    PartialDateTime {
        year: Some(dt.year() as u16),
        month: Some(dt.month() as u8),
        day: Some(dt.day() as u8),
        hour: Some(dt.hour() as u8),
        minute: Some(dt.minute() as u8),
        second: Some(dt.second() as u8),
        ..Default::default()
    }
}

/// A UTC date-time value (`…Z`).
pub fn utc_value(dt: NaiveDateTime) -> PartialDateTime {
    PartialDateTime {
        tz_hour: Some(0),
        tz_minute: Some(0),
        ..local_value(dt)
    }
}

/// A DATE value.
pub fn date_value(d: NaiveDate) -> PartialDateTime {
    PartialDateTime {
        year: Some(d.year() as u16),
        month: Some(d.month() as u8),
        day: Some(d.day() as u8),
        ..Default::default()
    }
}

/// The first text value of a property.
pub fn text<'a>(c: &'a ICalendarComponent, prop: &ICalendarProperty) -> Option<&'a str> {
    c.property(prop)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
}

/// Replaces every occurrence of `prop` by one entry (or removes it for `None`), keeping the
/// position of the first so a rewritten object diffs small.
pub fn set(c: &mut ICalendarComponent, prop: ICalendarProperty, entry: Option<ICalendarEntry>) {
    let at = c.entries.iter().position(|e| e.name == prop);
    c.entries.retain(|e| e.name != prop);
    if let Some(entry) = entry {
        let at = at.unwrap_or(c.entries.len()).min(c.entries.len());
        c.entries.insert(at, entry);
    }
}

/// Sets a text property, keeping its parameters (LANGUAGE, ALTREP…) when it existed.
pub fn set_text(c: &mut ICalendarComponent, prop: ICalendarProperty, value: Option<&str>) {
    match value {
        Some(v) => {
            if let Some(e) = c.property_mut(&prop) {
                e.values = vec![ICalendarValue::Text(v.to_owned())];
                let name = prop.clone();
                let mut first = true;
                c.entries.retain(|e| {
                    if e.name != name {
                        return true;
                    }
                    std::mem::replace(&mut first, false)
                });
            } else {
                c.entries
                    .push(ICalendarEntry::new(prop).with_value(v.to_owned()));
            }
        }
        None => set(c, prop, None),
    }
}

/// A date or date-time property as written: the naive value, whether it is a DATE, whether it
/// is UTC, and its TZID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateProp {
    pub value: NaiveDateTime,
    pub is_date: bool,
    pub is_utc: bool,
    pub tzid: Option<String>,
}

pub fn date_prop(c: &ICalendarComponent, prop: &ICalendarProperty) -> Option<DateProp> {
    let e = c.property(prop)?;
    entry_date(e, e.values.first()?)
}

pub fn entry_date(e: &ICalendarEntry, v: &ICalendarValue) -> Option<DateProp> {
    let p = v.as_partial_date_time()?;
    let r = p.to_date_time()?;
    let offset = r.offset.map(|o| o.local_minus_utc());
    Some(DateProp {
        // A time with a numeric offset other than Z is kept as its UTC instant.
        value: r.date_time - chrono::Duration::seconds(offset.unwrap_or(0) as i64),
        is_date: !p.has_time(),
        is_utc: offset.is_some(),
        tzid: e
            .parameters(&ICalendarParameterName::Tzid)
            .find_map(|v| v.as_text())
            .map(str::to_owned),
    })
}

/// The root VCALENDAR's child components of a kind, as indexes.
pub fn children_of(ical: &ICalendar, kind: &ICalendarComponentType) -> Vec<u32> {
    ical.components
        .first()
        .map(|root| {
            root.component_ids
                .iter()
                .copied()
                .filter(|id| {
                    ical.components
                        .get(*id as usize)
                        .is_some_and(|c| &c.component_type == kind)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Appends a component under `parent` and returns its index.
pub fn add_child(ical: &mut ICalendar, parent: u32, c: ICalendarComponent) -> u32 {
    let id = ical.components.len() as u32;
    ical.components.push(c);
    if let Some(p) = ical.components.get_mut(parent as usize) {
        p.component_ids.push(id);
    }
    id
}

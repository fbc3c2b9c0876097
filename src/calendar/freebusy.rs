//! Free/busy for ResolveRecipients' Availability (pure): busy periods read from a VFREEBUSY
//! (the answer to a CalDAV `free-busy-query`, RFC 4791 §7.10) or worked out from the events
//! of a calendar (for servers without that report), and merged into MS-ASCMD's
//! MergedFreeBusy string: one digit per half hour, 0 free, 1 tentative, 2 busy, 3 out of
//! office, 4 no data; within a half hour the highest digit wins.

use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponentType, ICalendarFreeBusyType, ICalendarParameterName,
    ICalendarParameterValue, ICalendarParticipationStatus, ICalendarPeriod, ICalendarProperty,
    ICalendarValue,
};
use chrono::NaiveDateTime;

use super::ical;

/// Free/busy levels as MergedFreeBusy digits.
pub const TENTATIVE: u8 = 1;
pub const BUSY: u8 = 2;
pub const OUT_OF_OFFICE: u8 = 3;

/// One busy period (UTC) and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub level: u8,
}

/// Events expanded at most per object (a daily series over the longest span is ~42).
const EXPANSION_LIMIT: usize = 2_000;

fn utc_of(p: &calcard::common::PartialDateTime) -> Option<NaiveDateTime> {
    let r = p.to_date_time()?;
    let offset = r.offset.map_or(0, |o| o.local_minus_utc());
    Some(r.date_time - chrono::Duration::seconds(offset as i64))
}

/// The busy periods of a VFREEBUSY (FREEBUSY properties; FBTYPE FREE ignored).
pub fn from_vfreebusy(text: &str) -> Vec<Busy> {
    let Ok(ical) = ical::parse(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &ical.components {
        if c.component_type != ICalendarComponentType::VFreebusy {
            continue;
        }
        for e in c.properties(&ICalendarProperty::Freebusy) {
            let level = match e.parameters(&ICalendarParameterName::Fbtype).next() {
                Some(ICalendarParameterValue::Fbtype(ICalendarFreeBusyType::Free)) => continue,
                Some(ICalendarParameterValue::Fbtype(ICalendarFreeBusyType::BusyTentative)) => {
                    TENTATIVE
                }
                Some(ICalendarParameterValue::Fbtype(ICalendarFreeBusyType::BusyUnavailable)) => {
                    OUT_OF_OFFICE
                }
                _ => BUSY,
            };
            for v in &e.values {
                let ICalendarValue::Period(p) = v else {
                    continue;
                };
                let (start, end) = match p {
                    ICalendarPeriod::Range { start, end } => (utc_of(start), utc_of(end)),
                    ICalendarPeriod::Duration { start, duration } => {
                        let s = utc_of(start);
                        (s, s.and_then(|s| duration.to_time_delta().map(|d| s + d)))
                    }
                };
                if let (Some(start), Some(end)) = (start, end) {
                    out.push(Busy { start, end, level });
                }
            }
        }
    }
    out
}

/// The busy periods of one stored object inside `[from, to)`, recurrences expanded:
/// transparent, cancelled and declined (by `owner`) events are free; TENTATIVE (the event's
/// STATUS, the owner's PARTSTAT or Microsoft's busy status) is tentative, Microsoft's OOF out of
/// office.
pub fn from_events(
    ical: &ICalendar,
    owner: &[&str],
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Vec<Busy> {
    let expanded = ical.expand_dates(Tz::UTC, EXPANSION_LIMIT);
    let mut out = Vec::new();
    for ev in &expanded.events {
        let Some(c) = ical.components.get(ev.comp_id as usize) else {
            continue;
        };
        if c.component_type != ICalendarComponentType::VEvent {
            continue;
        }
        let Some(level) = level_of(c, owner) else {
            continue;
        };
        let start = ev.start.naive_utc();
        let end = match &ev.end {
            calcard::icalendar::dates::TimeOrDelta::Time(t) => t.naive_utc(),
            calcard::icalendar::dates::TimeOrDelta::Delta(d) => start + *d,
        };
        if end > from && start < to {
            out.push(Busy { start, end, level });
        }
    }
    out
}

fn level_of(c: &calcard::icalendar::ICalendarComponent, owner: &[&str]) -> Option<u8> {
    let text = |p: ICalendarProperty| ical::text(c, &p).map(str::to_ascii_uppercase);
    if text(ICalendarProperty::Transp).as_deref() == Some("TRANSPARENT")
        || text(ICalendarProperty::Status).as_deref() == Some("CANCELLED")
    {
        return None;
    }
    let partstat = c
        .properties(&ICalendarProperty::Attendee)
        .find(|e| {
            e.values.first().and_then(|v| v.as_text()).is_some_and(|v| {
                let v = v.trim();
                let v = v
                    .strip_prefix("mailto:")
                    .or_else(|| v.strip_prefix("MAILTO:"))
                    .unwrap_or(v);
                owner.iter().any(|o| o.eq_ignore_ascii_case(v))
            })
        })
        .and_then(|e| {
            e.parameters(&ICalendarParameterName::Partstat)
                .next()
                .cloned()
        });
    match partstat {
        Some(ICalendarParameterValue::Partstat(ICalendarParticipationStatus::Declined)) => {
            return None;
        }
        Some(ICalendarParameterValue::Partstat(ICalendarParticipationStatus::Tentative)) => {
            return Some(TENTATIVE);
        }
        _ => {}
    }
    match text(ICalendarProperty::Other(
        "X-MICROSOFT-CDO-BUSYSTATUS".into(),
    ))
    .as_deref()
    {
        Some("FREE") => return None,
        Some("TENTATIVE") => return Some(TENTATIVE),
        Some("OOF") => return Some(OUT_OF_OFFICE),
        _ => {}
    }
    if text(ICalendarProperty::Status).as_deref() == Some("TENTATIVE") {
        return Some(TENTATIVE);
    }
    Some(BUSY)
}

/// MergedFreeBusy for `[from, to)` (UTC, half hours from `from`): 0 where nothing is busy.
pub fn merged(busy: &[Busy], from: NaiveDateTime, to: NaiveDateTime) -> String {
    let half = chrono::Duration::minutes(30);
    let slots = ((to - from).num_seconds().max(0) + 1799) / 1800;
    let mut out = vec![b'0'; slots as usize];
    for b in busy {
        for (i, slot) in out.iter_mut().enumerate() {
            let s = from + half * i as i32;
            let e = s + half;
            if b.start < e && b.end > s && b'0' + b.level > *slot {
                *slot = b'0' + b.level;
            }
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::date;

    fn at(s: &str) -> NaiveDateTime {
        date::parse(s).unwrap()
    }

    #[test]
    fn events_become_half_hours() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n\
BEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T090000Z\r\n\
DTEND:20300101T100000Z\r\nRRULE:FREQ=DAILY;COUNT=2\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let ical = ical::parse(text).unwrap();
        let from = at("20300101T080000Z");
        let to = at("20300102T110000Z");
        let busy = from_events(&ical, &[], from, to);
        assert_eq!(busy.len(), 2);
        let m = merged(&busy, from, to);
        assert_eq!(&m[..6], "002200");
        assert_eq!(m.len(), 54);
        assert_eq!(&m[50..], "2200");
        let tentative = text.replace("DTSTAMP", "STATUS:TENTATIVE\r\nDTSTAMP");
        let busy = from_events(&ical::parse(&tentative).unwrap(), &[], from, to);
        assert_eq!(&merged(&busy, from, to)[..4], "0011");
        let free = text.replace("DTSTAMP", "TRANSP:TRANSPARENT\r\nDTSTAMP");
        assert!(from_events(&ical::parse(&free).unwrap(), &[], from, to).is_empty());
    }

    #[test]
    fn vfreebusy_periods() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VFREEBUSY\r\n\
DTSTAMP:20300101T000000Z\r\nDTSTART:20300101T000000Z\r\nDTEND:20300102T000000Z\r\n\
FREEBUSY;FBTYPE=BUSY:20300101T090000Z/20300101T100000Z\r\n\
FREEBUSY;FBTYPE=BUSY-TENTATIVE:20300101T100000Z/PT30M\r\nEND:VFREEBUSY\r\nEND:VCALENDAR\r\n";
        let busy = from_vfreebusy(text);
        assert_eq!(busy.len(), 2, "{busy:?}");
        let from = at("20300101T080000Z");
        assert_eq!(merged(&busy, from, at("20300101T120000Z")), "00221000");
    }
}

//! FilterType windows: whether an event has an occurrence the phone asked for.
//!
//! A calendar Sync with FilterType 4 ("two weeks back") wants every event that *ends* after
//! that moment, recurring series included when any occurrence does. Single events are decided
//! from DTSTART/DTEND; series are expanded with `calcard` (RECURRENCE-ID overrides and EXDATEs
//! applied). An endless rule always has occurrences after any moment. Expansion stops after
//! [`EXPANSION_LIMIT`] occurrences; a series still undecided then is *included*: sending one
//! event too many is harmless, hiding one is not.

use calcard::icalendar::{ICalendar, dates::TimeOrDelta};
use chrono::NaiveDateTime;

use super::timezone::Zone;

/// Occurrences expanded at most per object.
pub const EXPANSION_LIMIT: usize = 20_000;

/// The start of the window of a calendar FilterType (1 one day, 2 three days, 3 one week,
/// 4 two weeks, 5 one month, 6 three months, 7 six months back); `None` for 0 (all) and
/// unknown values.
pub fn window_start(filter_type: u8, now: NaiveDateTime) -> Option<NaiveDateTime> {
    let days = match filter_type {
        1 => 1,
        2 => 3,
        3 => 7,
        4 => 14,
        5 => 31,
        6 => 92,
        7 => 183,
        _ => return None,
    };
    Some(now - chrono::Duration::days(days))
}

fn calcard_zone(z: &Zone) -> calcard::common::timezone::Tz {
    match z {
        Zone::Iana(tz) => calcard::common::timezone::Tz::Tz(*tz),
        _ => calcard::common::timezone::Tz::UTC,
    }
}

/// Whether any occurrence of the object's event(s) ends after `from` (UTC) and starts before
/// `to` (UTC, `None` = no end). Floating times are read in `user_zone`.
pub fn has_occurrence_in(
    ical: &ICalendar,
    from: NaiveDateTime,
    to: Option<NaiveDateTime>,
    user_zone: &Zone,
) -> bool {
    let endless = ical.components.iter().any(|c| {
        c.component_type.is_event_or_todo()
            && c.properties(&calcard::icalendar::ICalendarProperty::Rrule).any(|e| {
                matches!(e.values.first(), Some(calcard::icalendar::ICalendarValue::RecurrenceRule(r))
                    if r.until.is_none() && r.count.is_none())
            })
    });
    if endless && to.is_none() {
        return true;
    }
    // calcard 0.3 compares a UTC UNTIL with local times, which can drop a series' last
    // occurrence in zones east of UTC (tests/calendar_recurrence.rs shows it): a series whose
    // UNTIL reaches into the window is included without expanding.
    let until_reaches = ical.components.iter().any(|c| {
        c.properties(&calcard::icalendar::ICalendarProperty::Rrule).any(|e| {
            matches!(e.values.first(), Some(calcard::icalendar::ICalendarValue::RecurrenceRule(r))
                if r.until.as_ref().and_then(|u| u.to_date_time()).is_some_and(|u| u.date_time >= from))
        })
    });
    if until_reaches && to.is_none() {
        return true;
    }
    let expanded = ical.expand_dates(calcard_zone(user_zone), EXPANSION_LIMIT);
    let mut seen = 0usize;
    for ev in &expanded.events {
        seen += 1;
        let start = ev.start.naive_utc();
        let end = match &ev.end {
            TimeOrDelta::Time(t) => t.naive_utc(),
            TimeOrDelta::Delta(d) => start + *d,
        };
        // A zero-length event at the boundary still counts.
        let ends_after = end > from || (end == start && start >= from);
        if ends_after && to.is_none_or(|t| start < t) {
            return true;
        }
    }
    // Undecidable inside the budget (or the object did not expand): include it.
    seen >= EXPANSION_LIMIT || (expanded.events.is_empty() && !expanded.errors.is_empty())
}

/// Tasks FilterType 8 ("incomplete tasks only"): whether the object's task is still open.
pub fn task_is_incomplete(ical: &ICalendar) -> bool {
    ical.components
        .iter()
        .filter(|c| c.component_type == calcard::icalendar::ICalendarComponentType::VTodo)
        .any(|c| {
            let done = c
                .property(&calcard::icalendar::ICalendarProperty::Status)
                .and_then(|e| e.values.first()?.as_text())
                .is_some_and(|s| {
                    s.eq_ignore_ascii_case("COMPLETED") || s.eq_ignore_ascii_case("CANCELLED")
                });
            !done && !c.has_property(&calcard::icalendar::ICalendarProperty::Completed)
        })
}

//! The recurrence corpus: 60 rules written from RFC 5545's examples and real-world cases (DST
//! transitions, month ends, leap days, BYSETPOS, UNTIL in UTC for a zone far from it, EXDATEs
//! and moved occurrences). For each, the occurrences a phone computes from what we send — the
//! EAS Recurrence and Exceptions, in the zone the TimeZone blob describes
//! ([`recurrence::expand`]) — are compared with calcard's expansion of the iCalendar object.
//! A rule we call exact must give the same instants; a rule we approximate or cannot express
//! must be classified as the corpus says (the item then goes out without it, reported).
//!
//! calcard is the reference because neither DAV server Debian 12 ships expands correctly
//! (Radicale 3.1.8 ignores `expand`; Xandikos 0.2.8 fails on EXDATE and on DST changes): see
//! docs/calendar.md.

use chrono::{NaiveDate, NaiveDateTime};
use eas_gateway::calendar::Version;
use eas_gateway::calendar::event::{EventData, EventOptions};
use eas_gateway::calendar::ical;
use eas_gateway::calendar::recurrence::{self, Unsupported};
use eas_gateway::calendar::timezone::Zone;
use eas_gateway::mime::{BodyPreference, BodyType};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Exact,
    Approximate,
    Cannot,
}
use Class::*;

/// (zone, DTSTART local, RRULE, extra VEVENT lines / override, expected class)
const CORPUS: &[(&str, &str, &str, &str, Class)] = &[
    (
        "Europe/Berlin",
        "20260301T090000",
        "FREQ=DAILY;COUNT=40",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260301T080000",
        "FREQ=DAILY;INTERVAL=2;UNTIL=20260415T000000Z",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260105T090000",
        "FREQ=DAILY;INTERVAL=10;COUNT=5",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20261001T090000",
        "FREQ=WEEKLY;COUNT=10",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20261001T090000",
        "FREQ=WEEKLY;UNTIL=20261224T000000Z",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260902T090000",
        "FREQ=WEEKLY;INTERVAL=2;WKST=SU",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260901T090000",
        "FREQ=WEEKLY;UNTIL=20261007T000000Z;WKST=SU;BYDAY=TU,TH",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260901T090000",
        "FREQ=WEEKLY;COUNT=10;WKST=SU;BYDAY=TU,TH",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260902T090000",
        "FREQ=WEEKLY;INTERVAL=2;UNTIL=20261224T000000Z;WKST=SU;BYDAY=MO,WE,FR",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260901T090000",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=8;WKST=SU;BYDAY=TU,TH",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260804T090000",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260804T090000",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260105T090000",
        "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;COUNT=20",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=MONTHLY;COUNT=10;BYDAY=1FR",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=MONTHLY;UNTIL=20261224T000000Z;BYDAY=1FR",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260104T090000",
        "FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260119T090000",
        "FREQ=MONTHLY;COUNT=6;BYDAY=-2MO",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260129T090000",
        "FREQ=MONTHLY;BYMONTHDAY=-3",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260101T090000",
        "FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260110T090000",
        "FREQ=MONTHLY;INTERVAL=18;COUNT=10;BYMONTHDAY=10,11,12,13,14,15",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260106T090000",
        "FREQ=MONTHLY;INTERVAL=2;BYDAY=TU",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260610T090000",
        "FREQ=YEARLY;COUNT=10;BYMONTH=6,7",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260110T090000",
        "FREQ=YEARLY;INTERVAL=2;COUNT=10;BYMONTH=1,2,3",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260101T090000",
        "FREQ=YEARLY;INTERVAL=3;COUNT=10;BYYEARDAY=1,100,200",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260518T090000",
        "FREQ=YEARLY;BYDAY=20MO",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260511T090000",
        "FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260305T090000",
        "FREQ=YEARLY;BYMONTH=3;BYDAY=TH",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260604T090000",
        "FREQ=YEARLY;BYDAY=TH;BYMONTH=6,7,8",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260213T090000",
        "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260110T090000",
        "FREQ=MONTHLY;BYDAY=SA;BYMONTHDAY=7,8,9,10,11,12,13",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20281107T090000",
        "FREQ=YEARLY;INTERVAL=4;BYMONTH=11;BYDAY=TU;BYMONTHDAY=2,3,4,5,6,7,8",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260107T090000",
        "FREQ=MONTHLY;COUNT=3;BYDAY=TU,WE,TH;BYSETPOS=3",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260129T090000",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-2",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=HOURLY;INTERVAL=3;UNTIL=20260102T170000Z",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=MINUTELY;INTERVAL=15;COUNT=6",
        "",
        Cannot,
    ),
    (
        "America/New_York",
        "20260102T090000",
        "FREQ=DAILY;BYHOUR=9,10,11,12,13,14,15,16;BYMINUTE=0,20,40",
        "",
        Cannot,
    ),
    (
        "Europe/Berlin",
        "20260115T090000",
        "FREQ=MONTHLY;BYMONTHDAY=15;COUNT=12",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260131T090000",
        "FREQ=MONTHLY;BYMONTHDAY=31;COUNT=12",
        "",
        Approximate,
    ),
    (
        "Europe/Berlin",
        "20260130T090000",
        "FREQ=MONTHLY;BYMONTHDAY=30;COUNT=12",
        "",
        Approximate,
    ),
    (
        "Europe/Berlin",
        "20260131T090000",
        "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=12",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20240229T090000",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "",
        Approximate,
    ),
    (
        "Europe/Berlin",
        "20260704T090000",
        "FREQ=YEARLY;COUNT=5",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20261126T090000",
        "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH;COUNT=5",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260525T090000",
        "FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO;COUNT=5",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260329T033000",
        "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU;COUNT=3",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20261101T090000",
        "FREQ=WEEKLY;BYDAY=SU;COUNT=6",
        "",
        Exact,
    ),
    (
        "Australia/Sydney",
        "20260301T090000",
        "FREQ=DAILY;UNTIL=20260310T000000Z",
        "",
        Exact,
    ),
    (
        "Asia/Kolkata",
        "20260301T183000",
        "FREQ=DAILY;COUNT=30",
        "",
        Exact,
    ),
    (
        "Australia/Sydney",
        "20260330T090000",
        "FREQ=WEEKLY;COUNT=6",
        "",
        Exact,
    ),
    (
        "America/St_Johns",
        "20260302T090000",
        "FREQ=WEEKLY;COUNT=4",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260105T090000",
        "FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=12",
        "EXDATE;TZID=Europe/Berlin:20260107T090000,20260114T090000\r\n",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260323T090000",
        "FREQ=DAILY;COUNT=10",
        "OVERRIDE:20260326T090000/20260326T110000",
        Exact,
    ),
    (
        "America/New_York",
        "20260130T090000",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=12",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260103T090000",
        "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1;COUNT=6",
        "",
        Exact,
    ),
    (
        "America/New_York",
        "20260907T090000",
        "FREQ=YEARLY;BYMONTH=9;BYDAY=MO;BYSETPOS=1;COUNT=4",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260105T090000",
        "FREQ=MONTHLY;INTERVAL=3;BYMONTHDAY=5;UNTIL=20281231T000000Z",
        "",
        Exact,
    ),
    (
        "Pacific/Auckland",
        "20260110T090000",
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=SA;COUNT=5",
        "",
        Exact,
    ),
    (
        "Europe/Berlin",
        "20260101T090000",
        "FREQ=DAILY;BYMONTH=1",
        "",
        Cannot,
    ),
    (
        "Europe/Berlin",
        "20260105T090000",
        "FREQ=MONTHLY;INTERVAL=1;BYDAY=MO",
        "",
        Exact,
    ),
];

/// Rules where calcard 0.3 itself deviates from RFC 5545: it compares a UTC UNTIL with the
/// *local* start times, so a zone east of UTC loses its last occurrence (09:00 Sydney on
/// 10 March is 22:00 UTC on 9 March, before UNTIL=20260310T000000Z). For these the phone's
/// occurrences must be calcard's plus exactly that last one, which is what RFC 5545 gives.
const CALCARD_UNTIL_DEVIATION: &[&str] = &["FREQ=DAILY;UNTIL=20260310T000000Z"];

fn horizon() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2029, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

fn object(zone: &str, start: &str, rule: &str, extra: &str) -> String {
    let mut overrides = String::new();
    let mut lines = String::new();
    if let Some(spec) = extra.strip_prefix("OVERRIDE:") {
        let (rid, new) = spec.split_once('/').unwrap();
        overrides = format!(
            "BEGIN:VEVENT\r\nUID:c\r\nRECURRENCE-ID;TZID={zone}:{rid}\r\nDTSTART;TZID={zone}:{new}\r\nDURATION:PT1H\r\nSUMMARY:moved\r\nEND:VEVENT\r\n"
        );
    } else {
        lines = extra.to_owned();
    }
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:c\r\nDTSTART;TZID={zone}:{start}\r\nDURATION:PT1H\r\nSUMMARY:s\r\nRRULE:{rule}\r\n{lines}END:VEVENT\r\n{overrides}END:VCALENDAR\r\n"
    )
}

/// The phone's view: the Recurrence and Exceptions we send, expanded in the blob's zone.
fn phone_occurrences(d: &EventData) -> Vec<NaiveDateTime> {
    let zone = Zone::Rules {
        tzid: "phone".into(),
        info: d.timezone.clone().unwrap(),
    };
    let start = zone.to_local(d.start.unwrap());
    let rec = d.recurrence.as_ref().unwrap();
    let mut out = recurrence::expand(rec, start, &zone, horizon(), 400);
    for e in d.exceptions.iter().flatten() {
        out.retain(|t| *t != e.original_start);
        if !e.deleted {
            out.push(e.fields.start.unwrap_or(e.original_start));
        }
    }
    out.sort();
    out
}

fn calcard_occurrences(text: &str) -> Vec<NaiveDateTime> {
    let ical = ical::parse(text).unwrap();
    let expanded = ical.expand_dates(calcard::common::timezone::Tz::UTC, 400);
    assert!(expanded.errors.is_empty(), "{:?}", expanded.errors);
    let mut out: Vec<NaiveDateTime> = expanded
        .events
        .iter()
        .map(|e| e.start.naive_utc())
        .filter(|t| *t <= horizon())
        .collect();
    out.sort();
    out
}

#[test]
fn corpus_has_sixty_rules() {
    assert!(CORPUS.len() >= 60, "{}", CORPUS.len());
}

#[test]
fn phone_occurrences_match_the_rule() {
    let user = Zone::Iana(chrono_tz::Europe::Berlin);
    let prefs = [BodyPreference::new(BodyType::Plain)];
    let options = EventOptions {
        version: Version::V14_1,
        body_preferences: &prefs,
        user_zone: &user,
        year: 2026,
        user_emails: &[],
    };
    let mut counts = [0usize; 3];
    for (zone, start, rule, extra, class) in CORPUS {
        let text = object(zone, start, rule, extra);
        let ical = ical::parse(&text).unwrap();
        let (d, lossy) = EventData::from_ical(&ical, &options).unwrap();
        let got = match (d.recurrence.is_some(), lossy.as_slice()) {
            (true, []) => Exact,
            (true, [Unsupported::MonthEnd(_) | Unsupported::LeapDay]) => Approximate,
            (false, [_]) => Cannot,
            other => panic!("{rule}: {other:?}"),
        };
        assert_eq!(got, *class, "{zone} {start} {rule}: {lossy:?}");
        counts[*class as usize] += 1;
        let theirs = calcard_occurrences(&text);
        match class {
            Exact => {
                let ours = phone_occurrences(&d);
                assert!(!theirs.is_empty(), "{rule}");
                if CALCARD_UNTIL_DEVIATION.contains(rule) {
                    let until = d.recurrence.as_ref().unwrap().until.unwrap();
                    assert_eq!(&ours[..ours.len() - 1], &theirs[..], "{rule}");
                    assert!(*ours.last().unwrap() <= until, "{rule}");
                    continue;
                }
                assert_eq!(ours, theirs, "{zone} {start} {rule} {extra}");
            }
            Approximate => {
                // Same in the months both have; the phone adds the clamped ones (and so
                // reaches its COUNT sooner).
                let ours = phone_occurrences(&d);
                let end = *ours.last().unwrap().min(theirs.last().unwrap());
                let common: Vec<_> = theirs.iter().filter(|t| **t <= end).collect();
                assert!(
                    common.iter().all(|t| ours.contains(t)),
                    "{rule}: {theirs:?} ⊄ {ours:?}"
                );
                assert_ne!(ours, theirs, "{rule}: the approximation is visible");
            }
            Cannot => {}
        }
    }
    // Most of the corpus is expressible; the rest is what EAS has no pattern for.
    assert_eq!(counts.iter().sum::<usize>(), CORPUS.len());
    assert!(counts[0] >= 30, "{counts:?}");
}

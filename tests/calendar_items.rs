//! Calendar and task items (src/calendar): the fixtures in `fixtures/calendar` rendered per
//! protocol version byte for byte, ics → EAS → ics round trips of everything EAS carries, the
//! merge of phone edits keeping what EAS does not carry, exceptions both ways, 16.x instance
//! changes, FilterType windows over recurring series, and TimeZone blobs of real zones.
//!
//! Pure mapping: no server is involved (the CalDAV round trips against Radicale/Xandikos are
//! the backend's tests).

use std::path::PathBuf;

use chrono::{NaiveDate, NaiveDateTime};
use eas_gateway::calendar::event::{self, EventData, EventOptions, MergeOptions};
use eas_gateway::calendar::ical;
use eas_gateway::calendar::recurrence::Unsupported;
use eas_gateway::calendar::task::{self, TaskData, TaskOptions};
use eas_gateway::calendar::timezone::{TimeZoneInfo, Zone};
use eas_gateway::calendar::{Version, window};
use eas_gateway::mime::{BodyPreference, BodyType};
use eas_wbxml::tags::{airsync, airsyncbase as asb, calendar as cal, tasks as t};
use eas_wbxml::{Element, Fragment, Writer};
use proptest::prelude::*;

const YEAR: i32 = 2026;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/calendar")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap()
}

fn berlin() -> Zone {
    Zone::Iana(chrono_tz::Europe::Berlin)
}

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

const PLAIN: &[BodyPreference] = &[BodyPreference {
    kind: BodyType::Plain,
    truncation_size: Some(4096),
    all_or_none: false,
    preview: None,
}];

fn event_options<'a>(version: Version, zone: &'a Zone) -> EventOptions<'a> {
    EventOptions {
        version,
        body_preferences: PLAIN,
        user_zone: zone,
        year: YEAR,
        user_emails: &["jane@example.com"],
    }
}

fn merge_options<'a>(version: Version, zone: &'a Zone) -> MergeOptions<'a> {
    MergeOptions {
        version,
        user_zone: zone,
        year: YEAR,
        now: at(2026, 11, 15, 12, 0),
        new_uid: "new-uid@eas-gateway",
        organizer: Some(("Jane Doe", "jane@example.com")),
    }
}

fn task_options<'a>(version: Version, zone: &'a Zone) -> TaskOptions<'a> {
    TaskOptions {
        version,
        body_preferences: PLAIN,
        user_zone: zone,
        year: YEAR,
        now: at(2026, 11, 15, 12, 0),
        new_uid: "new-task@eas-gateway",
    }
}

/// A fragment as a whole `<ApplicationData>` document.
fn document(fragment: &Fragment) -> Vec<u8> {
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(airsync::ApplicationData).unwrap();
    w.splice(fragment).unwrap();
    w.end().unwrap();
    w.finish().unwrap()
}

fn tree(fragment: &Fragment) -> Element {
    Element::decode(&document(fragment)).unwrap()
}

/// Compares (or with UPDATE_FIXTURES=1 rewrites) `<stem>.xml` and `<stem>.wbxml`.
fn check_fixture(stem: &str, bytes: &[u8]) {
    let xml = eas_wbxml::xml::to_xml(&Element::decode(bytes).unwrap());
    let (xml_path, wbxml_path) = (
        fixtures().join(format!("{stem}.xml")),
        fixtures().join(format!("{stem}.wbxml")),
    );
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&xml_path, &xml).unwrap();
        std::fs::write(&wbxml_path, bytes).unwrap();
        return;
    }
    let want_xml = std::fs::read_to_string(&xml_path)
        .unwrap_or_else(|_| panic!("{stem}.xml missing: run with UPDATE_FIXTURES=1"));
    assert_eq!(xml, want_xml, "{stem}.xml");
    assert_eq!(bytes, std::fs::read(&wbxml_path).unwrap(), "{stem}.wbxml");
    // The twin reads back as the same tree.
    let from_xml = eas_wbxml::xml::from_xml(&want_xml).unwrap();
    assert_eq!(from_xml.encode(), bytes, "{stem}: xml → wbxml");
}

#[test]
fn event_fixtures_per_version() {
    let zone = berlin();
    for name in ["meeting", "recurring", "allday", "unexpressible"] {
        for (version, label) in [
            (Version::V12_1, "12.1"),
            (Version::V14_1, "14.1"),
            (Version::V16_1, "16.1"),
        ] {
            let (fragment, written) = event::render_event(
                &read(&format!("{name}.ics")),
                &event_options(version, &zone),
            )
            .unwrap();
            check_fixture(&format!("{name}.{label}"), &document(&fragment));
            if name == "unexpressible" {
                assert!(
                    matches!(written.lossy.as_slice(), [Unsupported::Part(_)]),
                    "{:?}",
                    written.lossy
                );
                assert!(tree(&fragment).child(cal::Recurrence).is_none());
            } else {
                assert!(written.lossy.is_empty(), "{name}: {:?}", written.lossy);
            }
        }
    }
}

#[test]
fn task_fixture() {
    let zone = berlin();
    let (fragment, lossy) =
        task::render_task(&read("task.ics"), &task_options(Version::V14_1, &zone)).unwrap();
    assert!(lossy.is_empty());
    check_fixture("task.14.1", &document(&fragment));
    let tree = tree(&fragment);
    // Local midnight of the due date, and its UTC instant in the user's zone.
    assert_eq!(
        tree.child(t::DueDate).unwrap().text(),
        Some("2026-11-20T00:00:00.000Z")
    );
    assert_eq!(
        tree.child(t::UtcDueDate).unwrap().text(),
        Some("2026-11-19T23:00:00.000Z")
    );
    assert_eq!(tree.child(t::Importance).unwrap().text(), Some("2"));
    assert_eq!(
        tree.child(t::ReminderTime).unwrap().text(),
        Some("2026-11-20T08:00:00.000Z")
    );
}

#[test]
fn meeting_values() {
    let zone = berlin();
    let ical = ical::parse(&read("meeting.ics")).unwrap();
    let (d, _) = EventData::from_ical(&ical, &event_options(Version::V14_1, &zone)).unwrap();
    assert_eq!(d.start, Some(at(2026, 11, 22, 9, 0)));
    assert_eq!(d.end, Some(at(2026, 11, 22, 10, 30)));
    assert_eq!(d.reminder, Some(15));
    assert_eq!(d.sensitivity, Some(2));
    assert_eq!(d.busy_status, Some(2));
    assert_eq!(d.meeting_status, Some(1), "the user organizes it");
    let att = d.attendees.unwrap();
    let kinds: Vec<_> = att
        .iter()
        .map(|a| (a.email.as_str(), a.status, a.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("jane@example.com", Some(3), Some(1)),
            ("bob@example.org", Some(2), Some(1)),
            ("carol@example.net", Some(5), Some(2)),
            ("room412@example.com", Some(3), Some(3)),
        ]
    );
    let tz = d.timezone.unwrap();
    assert_eq!(tz.to_iana(YEAR, &[]), Some(chrono_tz::Europe::Berlin));
    // For someone else it is an invitation.
    let other = EventOptions {
        user_emails: &["bob@example.org"],
        ..event_options(Version::V14_1, &zone)
    };
    let (d, _) = EventData::from_ical(&ical, &other).unwrap();
    assert_eq!((d.meeting_status, d.response_type), (Some(3), Some(2)));
}

/// ics → EAS (WBXML) → phone parse → merge into nothing → ics gives the same EAS values.
#[test]
fn round_trip_preserves_what_eas_carries() {
    let zone = berlin();
    for name in ["meeting", "recurring", "allday"] {
        for version in [Version::V12_1, Version::V14_1, Version::V16_1] {
            let options = event_options(version, &zone);
            let original = ical::parse(&read(&format!("{name}.ics"))).unwrap();
            let (fragment, _) =
                event::render_event(&read(&format!("{name}.ics")), &options).unwrap();
            let phone = EventData::from_element(&tree(&fragment), version).unwrap();
            let rebuilt = event::merge_event(None, &phone, &merge_options(version, &zone)).unwrap();
            let text = ical::write(&rebuilt);
            let again = ical::parse(&text).unwrap();
            let (a, _) = EventData::from_ical(&original, &options).unwrap();
            let (b, _) = EventData::from_ical(&again, &options).unwrap();
            let norm = |mut d: EventData| {
                d.dtstamp = None;
                d.timezone = d.timezone.map(|t| TimeZoneInfo {
                    standard_name: String::new(),
                    daylight_name: String::new(),
                    ..t
                });
                for e in d.exceptions.iter_mut().flatten() {
                    e.fields.dtstamp = None;
                }
                d
            };
            assert_eq!(norm(a), norm(b), "{name} {version}:\n{text}");
        }
    }
}

fn phone_item(xml_children: &str) -> Element {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ApplicationData xmlns=\"AirSync:\" xmlns:airsyncbase=\"AirSyncBase:\" xmlns:calendar=\"Calendar:\" xmlns:tasks=\"Tasks:\">{xml_children}</ApplicationData>"
    );
    eas_wbxml::xml::from_xml(&xml).unwrap()
}

#[test]
fn merge_keeps_what_eas_does_not_carry() {
    let zone = berlin();
    let version = Version::V14_1;
    let stored = ical::parse(&read("meeting.ics")).unwrap();
    // What the phone sends back after changing the subject and the reminder: everything else
    // as it was given.
    let (fragment, _) =
        event::render_event(&read("meeting.ics"), &event_options(version, &zone)).unwrap();
    let mut phone = EventData::from_element(&tree(&fragment), version).unwrap();
    phone.subject = Some("Budget review (final)".into());
    phone.reminder = Some(30);
    let merged = event::merge_event(Some(&stored), &phone, &merge_options(version, &zone)).unwrap();
    let text = ical::write(&merged);
    for kept in [
        "X-EXAMPLE-COLOR:blue",
        "ATTACH;FMTTYPE=application/pdf:https://files.example.com/budget.pdf",
        "SCHEDULE-STATUS=2.0",
        "X-NUM-GUESTS=1",
        "CUTYPE=ROOM",
        "ACTION:EMAIL",
        "TRIGGER:-P1D",
        "DTSTART;TZID=Europe/Berlin:20261122T100000",
        "CATEGORIES:Work,Finance",
        "CLASS:PRIVATE",
        "ROLE=CHAIR",
    ] {
        assert!(text.contains(kept), "lost {kept}:\n{text}");
    }
    assert!(text.contains("SUMMARY:Budget review (final)"), "{text}");
    assert!(text.contains("TRIGGER:-PT30M"), "{text}");
    assert!(!text.contains("TRIGGER:-PT15M"), "{text}");
    assert!(!text.contains("SEQUENCE"), "times did not change:\n{text}");

    // The phone drops the reminder and moves the meeting by an hour.
    phone.reminder = None;
    phone.start = phone.start.map(|s| s + chrono::Duration::hours(1));
    phone.end = phone.end.map(|s| s + chrono::Duration::hours(1));
    let merged = event::merge_event(Some(&merged), &phone, &merge_options(version, &zone)).unwrap();
    let text = ical::write(&merged);
    assert!(
        text.contains("DTSTART;TZID=Europe/Berlin:20261122T110000"),
        "{text}"
    );
    assert!(text.contains("SEQUENCE:1"), "{text}");
    assert!(
        text.contains("ACTION:EMAIL"),
        "the other alarm stays:\n{text}"
    );
    assert!(!text.contains("ACTION:DISPLAY"), "{text}");
}

#[test]
fn phone_edits_exceptions() {
    let zone = berlin();
    for version in [Version::V14_1, Version::V16_1] {
        let stored = ical::parse(&read("recurring.ics")).unwrap();
        let (fragment, _) =
            event::render_event(&read("recurring.ics"), &event_options(version, &zone)).unwrap();
        let mut phone = EventData::from_element(&tree(&fragment), version).unwrap();
        let exceptions = phone.exceptions.as_mut().unwrap();
        assert_eq!(exceptions.len(), 3);
        // Delete Friday 20 March (09:30 New York = 13:30 UTC) and retitle Monday 23 March.
        exceptions.push(event::ExceptionData {
            original_start: at(2026, 3, 20, 13, 30),
            deleted: true,
            fields: EventData::default(),
        });
        exceptions.push(event::ExceptionData {
            original_start: at(2026, 3, 23, 13, 30),
            deleted: false,
            fields: EventData {
                subject: Some("Stand-up with guests".into()),
                ..EventData::default()
            },
        });
        let merged =
            event::merge_event(Some(&stored), &phone, &merge_options(version, &zone)).unwrap();
        let text = ical::write(&merged);
        assert!(
            text.contains("EXDATE;TZID=America/New_York:20260320T093000"),
            "{version}:\n{text}"
        );
        assert!(
            text.contains("RECURRENCE-ID;TZID=America/New_York:20260323T093000"),
            "{text}"
        );
        assert!(text.contains("SUMMARY:Stand-up with guests"), "{text}");
        assert!(
            text.contains("SUMMARY:Stand-up (moved)"),
            "the old override stays:\n{text}"
        );
        assert!(
            text.contains("RRULE:FREQ=WEEKLY;UNTIL=20261231T235959Z;BYDAY=MO,WE,FR"),
            "rule untouched:\n{text}"
        );
        // The server's view of the merged object has all five exceptions.
        let (d, _) = EventData::from_ical(&merged, &event_options(version, &zone)).unwrap();
        assert_eq!(d.exceptions.unwrap().len(), 5);
    }
}

#[test]
fn instance_changes_16() {
    let zone = berlin();
    let o = merge_options(Version::V16_1, &zone);
    let stored = ical::parse(&read("recurring.ics")).unwrap();
    let deleted = event::delete_instance(&stored, at(2026, 1, 7, 14, 30), &o).unwrap();
    assert!(ical::write(&deleted).contains("EXDATE;TZID=America/New_York:20260107T093000"));
    let change = phone_item(
        "<calendar:Subject>Retro</calendar:Subject><calendar:StartTime>20260109T150000Z</calendar:StartTime><calendar:EndTime>20260109T160000Z</calendar:EndTime>",
    );
    let phone = EventData::from_element(&change, Version::V16_1).unwrap();
    let changed = event::merge_instance(&deleted, at(2026, 1, 9, 14, 30), &phone, &o).unwrap();
    let text = ical::write(&changed);
    assert!(
        text.contains("RECURRENCE-ID;TZID=America/New_York:20260109T093000"),
        "{text}"
    );
    assert!(
        text.contains("DTSTART;TZID=America/New_York:20260109T100000"),
        "{text}"
    );
    // Exceptions are identified by InstanceId in 16.x.
    let (fragment, _) = event::render_event(&text, &event_options(Version::V16_1, &zone)).unwrap();
    let ex = tree(&fragment);
    let ids: Vec<_> = ex
        .child(cal::Exceptions)
        .unwrap()
        .children_with(cal::Exception)
        .map(|e| {
            e.child(asb::InstanceId)
                .and_then(|i| i.text())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(ids.contains(&"20260109T143000Z".to_owned()), "{ids:?}");
}

#[test]
fn all_day_dates() {
    let zone = berlin();
    let text = read("allday.ics");
    let (f14, _) = event::render_event(&text, &event_options(Version::V14_1, &zone)).unwrap();
    let t14 = tree(&f14);
    // 12.1/14.x: local midnight in the TimeZone sent.
    assert_eq!(
        t14.child(cal::StartTime).unwrap().text(),
        Some("20261223T230000Z")
    );
    assert_eq!(
        t14.child(cal::EndTime).unwrap().text(),
        Some("20261226T230000Z")
    );
    assert!(t14.child(cal::Timezone).is_some());
    let (f16, _) = event::render_event(&text, &event_options(Version::V16_1, &zone)).unwrap();
    let t16 = tree(&f16);
    assert_eq!(
        t16.child(cal::StartTime).unwrap().text(),
        Some("20261224T000000Z")
    );
    assert_eq!(
        t16.child(cal::EndTime).unwrap().text(),
        Some("20261227T000000Z")
    );
    // A 16.x phone's new all-day event becomes DATE values.
    let new = phone_item(
        "<calendar:AllDayEvent>1</calendar:AllDayEvent><calendar:StartTime>20270101T000000Z</calendar:StartTime><calendar:EndTime>20270102T000000Z</calendar:EndTime><calendar:Subject>New year</calendar:Subject>",
    );
    let phone = EventData::from_element(&new, Version::V16_1).unwrap();
    let merged = event::merge_event(None, &phone, &merge_options(Version::V16_1, &zone)).unwrap();
    let text = ical::write(&merged);
    assert!(text.contains("DTSTART;VALUE=DATE:20270101"), "{text}");
    assert!(text.contains("DTEND;VALUE=DATE:20270102"), "{text}");
    assert!(text.contains("UID:new-uid@eas-gateway"), "{text}");
}

#[test]
fn unknown_zone_blob_becomes_its_own_vtimezone() {
    let zone = berlin();
    // A rule no IANA zone has: UTC+3, DST from the 2nd Sunday of April to the 1st of September.
    let mut info = TimeZoneInfo {
        bias: -180,
        daylight_bias: -60,
        ..TimeZoneInfo::default()
    };
    info.daylight_date.month = 4;
    info.daylight_date.day = 2;
    info.daylight_date.hour = 2;
    info.standard_date.month = 9;
    info.standard_date.day = 1;
    info.standard_date.hour = 3;
    let item = phone_item(&format!(
        "<calendar:Timezone>{}</calendar:Timezone><calendar:StartTime>20260601T070000Z</calendar:StartTime><calendar:EndTime>20260601T080000Z</calendar:EndTime><calendar:Subject>Odd zone</calendar:Subject>",
        info.to_base64()
    ));
    let phone = EventData::from_element(&item, Version::V14_1).unwrap();
    let merged = event::merge_event(None, &phone, &merge_options(Version::V14_1, &zone)).unwrap();
    let text = ical::write(&merged);
    assert!(text.contains("BEGIN:VTIMEZONE"), "{text}");
    assert!(
        text.contains("DTSTART;TZID=EAS+0300:20260601T110000"),
        "{text}"
    );
    // And it reads back as the same rule and instant.
    let (d, _) = EventData::from_ical(&merged, &event_options(Version::V14_1, &zone)).unwrap();
    assert_eq!(d.start, Some(at(2026, 6, 1, 7, 0)));
    assert!(d.timezone.unwrap().same_rule(&info, YEAR));
}

#[test]
fn malformed_phone_items_are_refused() {
    for bad in [
        "<calendar:StartTime>tomorrow</calendar:StartTime>",
        "<calendar:Timezone>not base64!</calendar:Timezone>",
        "<calendar:BusyStatus>9</calendar:BusyStatus>",
        "<calendar:Recurrence><calendar:Type>4</calendar:Type></calendar:Recurrence>",
        "<calendar:StartTime>20260102T100000Z</calendar:StartTime><calendar:EndTime>20260101T100000Z</calendar:EndTime>",
        "<calendar:Exceptions><calendar:Exception><calendar:Deleted>1</calendar:Deleted></calendar:Exception></calendar:Exceptions>",
    ] {
        assert!(
            matches!(
                EventData::from_element(&phone_item(bad), Version::V14_1),
                Err(eas_gateway::calendar::CalendarError::InvalidItem(_))
            ),
            "{bad}"
        );
    }
    // A new event without times cannot be stored.
    let zone = berlin();
    let phone = EventData::from_element(
        &phone_item("<calendar:Subject>x</calendar:Subject>"),
        Version::V14_1,
    )
    .unwrap();
    assert!(event::merge_event(None, &phone, &merge_options(Version::V14_1, &zone)).is_err());
    assert!(ical::parse("BEGIN:VCARD\nEND:VCARD\n").is_err());
}

#[test]
fn task_round_trip_and_merge() {
    let zone = berlin();
    let o = task_options(Version::V14_1, &zone);
    let stored = ical::parse(&read("task.ics")).unwrap();
    let (fragment, _) = task::render_task(&read("task.ics"), &o).unwrap();
    let phone = TaskData::from_element(&tree(&fragment)).unwrap();
    let (mine, _) = TaskData::from_ical(&stored, &o).unwrap();
    assert_eq!(phone, mine);
    // Unchanged: the object keeps its own spelling.
    let same = task::merge_task(Some(&stored), &phone, &o).unwrap();
    let text = ical::write(&same);
    for kept in [
        "DUE;VALUE=DATE:20261120",
        "PRIORITY:1",
        "X-EXAMPLE-LIST:office",
        "TRIGGER;VALUE=DATE-TIME:20261120T080000Z",
    ] {
        assert!(text.contains(kept), "lost {kept}:\n{text}");
    }
    // Completed on the phone.
    let mut done = phone.clone();
    done.complete = Some(true);
    done.date_completed = Some(at(2026, 11, 18, 16, 0));
    done.reminder_set = Some(false);
    let merged = task::merge_task(Some(&stored), &done, &o).unwrap();
    let text = ical::write(&merged);
    assert!(text.contains("STATUS:COMPLETED"), "{text}");
    assert!(text.contains("COMPLETED:20261118T160000Z"), "{text}");
    assert!(!text.contains("BEGIN:VALARM"), "{text}");
    assert!(text.contains("X-EXAMPLE-LIST:office"), "{text}");
    // A new task from the phone with a recurrence.
    let item = phone_item(
        "<tasks:Subject>Water plants</tasks:Subject><tasks:StartDate>2026-11-16T00:00:00.000Z</tasks:StartDate><tasks:UtcStartDate>2026-11-15T23:00:00.000Z</tasks:UtcStartDate><tasks:DueDate>2026-11-16T00:00:00.000Z</tasks:DueDate><tasks:UtcDueDate>2026-11-15T23:00:00.000Z</tasks:UtcDueDate><tasks:Recurrence><tasks:Type>1</tasks:Type><tasks:Interval>1</tasks:Interval><tasks:DayOfWeek>2</tasks:DayOfWeek><tasks:Start>2026-11-16T00:00:00.000Z</tasks:Start></tasks:Recurrence><tasks:Complete>0</tasks:Complete><tasks:Importance>0</tasks:Importance>",
    );
    let phone = TaskData::from_element(&item).unwrap();
    let created = task::merge_task(None, &phone, &o).unwrap();
    let text = ical::write(&created);
    assert!(text.contains("DUE;VALUE=DATE:20261116"), "{text}");
    assert!(text.contains("RRULE:FREQ=WEEKLY;BYDAY=MO"), "{text}");
    assert!(text.contains("PRIORITY:9"), "{text}");
    assert!(text.contains("UID:new-task@eas-gateway"), "{text}");
}

#[test]
fn filter_windows_select_by_occurrence() {
    let zone = berlin();
    let now = at(2026, 11, 15, 12, 0);
    let from = window::window_start(4, now).unwrap();
    let ev = |body: &str| {
        ical::parse(&format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n{body}END:VEVENT\r\nEND:VCALENDAR\r\n"
        ))
        .unwrap()
    };
    // A single event a month ago: out; one yesterday: in.
    assert!(!window::has_occurrence_in(
        &ev("DTSTART:20261015T100000Z\r\nDTEND:20261015T110000Z\r\n"),
        from,
        None,
        &zone
    ));
    assert!(window::has_occurrence_in(
        &ev("DTSTART:20261114T100000Z\r\nDTEND:20261114T110000Z\r\n"),
        from,
        None,
        &zone
    ));
    // An endless weekly series from 2020: in.
    assert!(window::has_occurrence_in(
        &ev("DTSTART:20200106T100000Z\r\nRRULE:FREQ=WEEKLY\r\n"),
        from,
        None,
        &zone
    ));
    // A daily series that ended in 2025: out, even after expansion.
    assert!(!window::has_occurrence_in(
        &ev("DTSTART:20200106T100000Z\r\nRRULE:FREQ=DAILY;UNTIL=20250101T000000Z\r\n"),
        from,
        None,
        &zone
    ));
    // A monthly series with COUNT whose last occurrence is in the window: in.
    assert!(window::has_occurrence_in(
        &ev("DTSTART:20260110T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=MONTHLY;COUNT=11\r\n"),
        from,
        None,
        &zone
    ));
    // The same series one occurrence shorter: out; but an override moved into the window: in.
    assert!(!window::has_occurrence_in(
        &ev("DTSTART:20260110T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=MONTHLY;COUNT=10\r\n"),
        from,
        None,
        &zone
    ));
    let moved = ical::parse(
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:y\r\nDTSTART:20260110T100000Z\r\nDURATION:PT1H\r\nRRULE:FREQ=MONTHLY;COUNT=10\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:y\r\nRECURRENCE-ID:20261010T100000Z\r\nDTSTART:20261112T100000Z\r\nDTEND:20261112T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    assert!(window::has_occurrence_in(&moved, from, None, &zone));
    // A bounded window (Search/free-busy style).
    let recurring = ical::parse(&read("recurring.ics")).unwrap();
    assert!(
        !window::has_occurrence_in(
            &recurring,
            at(2026, 3, 9, 0, 0),
            Some(at(2026, 3, 10, 0, 0)),
            &zone
        ),
        "EXDATE honoured"
    );
    assert!(window::has_occurrence_in(
        &recurring,
        at(2026, 3, 13, 0, 0),
        Some(at(2026, 3, 14, 0, 0)),
        &zone
    ));
}

#[test]
fn real_zones() {
    for (name, bias, dst) in [
        ("Europe/Berlin", -60, true),
        ("America/New_York", 300, true),
        ("Australia/Sydney", -600, true),
        ("Asia/Kolkata", -330, false),
        ("UTC", 0, false),
        ("America/Sao_Paulo", 180, false),
        ("Pacific/Auckland", -720, true),
        ("America/St_Johns", 210, true),
    ] {
        let tz: chrono_tz::Tz = name.parse().unwrap();
        let info = TimeZoneInfo::from_iana(tz, YEAR);
        assert_eq!((info.bias, info.has_dst()), (bias, dst), "{name}");
        let back = TimeZoneInfo::from_base64(&info.to_base64()).unwrap();
        assert_eq!(back, info, "{name}");
        let found = back.to_iana(YEAR, &[]).unwrap();
        assert!(
            TimeZoneInfo::from_iana(found, YEAR).same_rule(&info, YEAR),
            "{name} → {found}"
        );
        // Every hour of the year converts as the IANA database says.
        let mut t = at(YEAR, 1, 1, 0, 30);
        while t.and_utc().timestamp() < at(YEAR + 1, 1, 1, 0, 0).and_utc().timestamp() {
            use chrono::{Offset, TimeZone};
            let want = tz.offset_from_utc_datetime(&t).fix().local_minus_utc();
            assert_eq!(info.utc_offset_at(t), want, "{name} at {t}");
            t += chrono::Duration::hours(1);
        }
    }
}

#[test]
fn every_iana_zone_round_trips_to_the_same_rule() {
    let mut failures = Vec::new();
    for tz in chrono_tz::TZ_VARIANTS {
        let info = TimeZoneInfo::from_iana(tz, YEAR);
        let back = TimeZoneInfo::from_base64(&info.to_base64()).unwrap();
        match back.to_iana(YEAR, &[]) {
            Some(found) if TimeZoneInfo::from_iana(found, YEAR).same_rule(&info, YEAR) => {}
            other => failures.push(format!("{} → {other:?}", tz.name())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} zones: {failures:?}",
        failures.len()
    );
}

fn arb_systemtime() -> impl Strategy<Value = eas_gateway::calendar::timezone::SystemTime> {
    (0u16..=12, 0u16..=6, 1u16..=5, 0u16..=23, 0u16..=59).prop_map(
        |(month, dow, day, hour, minute)| eas_gateway::calendar::timezone::SystemTime {
            year: 0,
            month,
            day_of_week: dow,
            day,
            hour,
            minute,
            second: 0,
            milliseconds: 0,
        },
    )
}

proptest! {
    #[test]
    fn blob_encode_decode_round_trips(
        bias in -720i32..=840,
        daylight_bias in -120i32..=0,
        std_name in "[A-Za-z /_+-]{0,31}",
        dst_name in "\\PC{0,20}",
        std_date in arb_systemtime(),
        dst_date in arb_systemtime(),
    ) {
        let info = TimeZoneInfo {
            bias,
            standard_name: std_name,
            standard_date: std_date,
            standard_bias: 0,
            daylight_name: dst_name.chars().filter(|c| *c != '\0').collect::<String>().encode_utf16().take(31).collect::<Vec<_>>().pipe(|u| String::from_utf16_lossy(&u)),
            daylight_date: dst_date,
            daylight_bias,
        };
        let back = TimeZoneInfo::from_base64(&info.to_base64()).unwrap();
        prop_assert_eq!(back, info);
    }

    #[test]
    fn local_utc_conversions_agree(minutes in 0i64..(366 * 24 * 60)) {
        let zone = Zone::Rules { tzid: "x".into(), info: TimeZoneInfo::from_iana(chrono_tz::Australia::Sydney, YEAR) };
        let iana = Zone::Iana(chrono_tz::Australia::Sydney);
        let utc = at(YEAR, 1, 1, 0, 0) + chrono::Duration::minutes(minutes);
        prop_assert_eq!(zone.to_local(utc), iana.to_local(utc));
        let local = iana.to_local(utc);
        prop_assert_eq!(zone.to_utc(local), iana.to_utc(local));
    }
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn new_meeting_from_the_phone_gets_the_user_as_organizer() {
    let zone = berlin();
    let item = phone_item(&format!(
        "<calendar:Timezone>{}</calendar:Timezone>\
<calendar:StartTime>20261201T090000Z</calendar:StartTime><calendar:EndTime>20261201T100000Z</calendar:EndTime>\
<calendar:Subject>Kick-off</calendar:Subject><calendar:Attendees><calendar:Attendee><calendar:Email>bob@example.org</calendar:Email><calendar:Name>Bob</calendar:Name><calendar:AttendeeType>1</calendar:AttendeeType></calendar:Attendee></calendar:Attendees>\
<airsyncbase:Body><airsyncbase:Type>3</airsyncbase:Type><airsyncbase:Data>e1xydGYxfQ==</airsyncbase:Data></airsyncbase:Body>\
<calendar:Reminder>10</calendar:Reminder><calendar:ClientUid>client-1</calendar:ClientUid>",
        TimeZoneInfo::from_iana(chrono_tz::Europe::Berlin, YEAR).to_base64()
    ));
    let phone = EventData::from_element(&item, Version::V16_1).unwrap();
    let merged = event::merge_event(None, &phone, &merge_options(Version::V16_1, &zone)).unwrap();
    // Unfolded, as a reader sees it.
    let text = ical::write(&merged).replace("\r\n ", "");
    assert!(
        text.contains("ORGANIZER;CN=\"Jane Doe\":mailto:jane@example.com"),
        "{text}"
    );
    assert!(
        text.contains("ATTENDEE;CN=Bob;RSVP=TRUE;PARTSTAT=NEEDS-ACTION;ROLE=REQ-PARTICIPANT:mailto:bob@example.org"),
        "{text}"
    );
    assert!(text.contains("UID:client-1"), "{text}");
    assert!(
        text.contains("DTSTART;TZID=Europe/Berlin:20261201T100000"),
        "{text}"
    );
    assert!(
        !text.contains("e1xydGYxfQ"),
        "an RTF body is not text:\n{text}"
    );
    assert!(text.contains("TRIGGER:-PT10M"), "{text}");
}

fn arb_recurrence() -> impl Strategy<Value = eas_gateway::calendar::recurrence::Recurrence> {
    use eas_gateway::calendar::recurrence::{Pattern, Recurrence};
    (
        prop_oneof![
            Just(Pattern::Daily),
            Just(Pattern::Weekly),
            Just(Pattern::Monthly),
            Just(Pattern::MonthlyNth),
            Just(Pattern::Yearly),
            Just(Pattern::YearlyNth)
        ],
        1u16..=12,
        prop::option::of(1u32..=50),
        1u8..=127,
        1u8..=28,
        1u8..=5,
        1u8..=12,
        0u8..=6,
    )
        .prop_map(
            |(pattern, interval, occurrences, mask, dom, wom, moy, fdow)| {
                let mut r = Recurrence {
                    pattern,
                    interval,
                    until: None,
                    occurrences,
                    day_of_week: None,
                    day_of_month: None,
                    week_of_month: None,
                    month_of_year: None,
                    calendar_type: None,
                    is_leap_month: false,
                    first_day_of_week: Some(fdow),
                };
                match pattern {
                    Pattern::Daily => {}
                    Pattern::Weekly => r.day_of_week = Some(mask),
                    Pattern::Monthly => r.day_of_month = Some(dom),
                    Pattern::MonthlyNth => {
                        r.day_of_week = Some(mask);
                        r.week_of_month = Some(wom);
                    }
                    Pattern::Yearly => {
                        r.day_of_month = Some(dom);
                        r.month_of_year = Some(moy);
                    }
                    Pattern::YearlyNth => {
                        r.day_of_week = Some(mask);
                        r.week_of_month = Some(wom);
                        r.month_of_year = Some(moy);
                    }
                }
                r
            },
        )
}

proptest! {
    /// Every EAS pattern (days 1–28) becomes an RRULE that translates back to itself.
    #[test]
    fn eas_recurrence_round_trips_through_rrule(rec in arb_recurrence()) {
        use eas_gateway::calendar::recurrence::{from_eas, to_eas, ToEas, Pattern};
        let zone = Zone::Iana(chrono_tz::Europe::Berlin);
        let rule = from_eas(&rec, &zone, false);
        let start = at(2026, 1, 5, 9, 0);
        let back = match to_eas(&rule, start, &zone) {
            ToEas::Exact(r) => r,
            other => return Err(TestCaseError::fail(format!("{rule} → {other:?}"))),
        };
        let mut want = rec.clone();
        if rec.pattern == Pattern::Daily {
            want.day_of_week = None;
        }
        // "The n-th day of the month" (all seven days, week 1–4) is the plain month day.
        if matches!(rec.pattern, Pattern::MonthlyNth | Pattern::YearlyNth)
            && rec.day_of_week == Some(127)
            && rec.week_of_month != Some(5)
        {
            want.pattern = if rec.pattern == Pattern::MonthlyNth { Pattern::Monthly } else { Pattern::Yearly };
            want.day_of_month = rec.week_of_month;
            want.day_of_week = None;
            want.week_of_month = None;
        }
        // Monday is the default the RRULE leaves out.
        want.first_day_of_week = rec.first_day_of_week.filter(|d| *d != 1);
        prop_assert_eq!(back, want, "{}", rule);
    }
}

#[test]
fn series_made_single_drops_its_exceptions() {
    let zone = berlin();
    let stored = ical::parse(&read("recurring.ics")).unwrap();
    let (fragment, _) = event::render_event(
        &read("recurring.ics"),
        &event_options(Version::V14_1, &zone),
    )
    .unwrap();
    let mut phone = EventData::from_element(&tree(&fragment), Version::V14_1).unwrap();
    phone.recurrence = None;
    phone.exceptions = None;
    let merged =
        event::merge_event(Some(&stored), &phone, &merge_options(Version::V14_1, &zone)).unwrap();
    let text = ical::write(&merged);
    let events = &text[text.find("BEGIN:VEVENT").unwrap()..];
    assert!(
        !events.contains("RRULE")
            && !events.contains("EXDATE")
            && !events.contains("RECURRENCE-ID"),
        "{text}"
    );
    assert_eq!(text.matches("BEGIN:VEVENT").count(), 1, "{text}");
}

#[test]
fn all_day_occurrences_16_west_of_utc() {
    // A user in New York: 16.x names all-day occurrences by their date, not local midnight.
    let zone = Zone::Iana(chrono_tz::America::New_York);
    let o = merge_options(Version::V16_1, &zone);
    let text = read("allday.ics");
    let (fragment, _) = event::render_event(&text, &event_options(Version::V16_1, &zone)).unwrap();
    assert_eq!(
        tree(&fragment).child(cal::StartTime).unwrap().text(),
        Some("20261224T000000Z")
    );
    let stored = ical::parse(&text).unwrap();
    let change = phone_item("<calendar:Subject>Holidays (away)</calendar:Subject>");
    let phone = EventData::from_element(&change, Version::V16_1).unwrap();
    let once = event::merge_instance(&stored, at(2027, 12, 24, 0, 0), &phone, &o).unwrap();
    let twice = event::merge_instance(&once, at(2027, 12, 24, 0, 0), &phone, &o).unwrap();
    let text = ical::write(&twice);
    assert_eq!(
        text.matches("RECURRENCE-ID;VALUE=DATE:20271224").count(),
        1,
        "{text}"
    );
    let deleted = event::delete_instance(&twice, at(2028, 12, 24, 0, 0), &o).unwrap();
    assert!(ical::write(&deleted).contains("EXDATE;VALUE=DATE:20281224"));
}

#[test]
fn incomplete_task_filter() {
    let open = ical::parse(&read("task.ics")).unwrap();
    assert!(window::task_is_incomplete(&open));
    let zone = berlin();
    let o = task_options(Version::V14_1, &zone);
    let mut done = TaskData::from_ical(&open, &o).unwrap().0;
    done.complete = Some(true);
    let closed = task::merge_task(Some(&open), &done, &o).unwrap();
    assert!(!window::task_is_incomplete(&closed));
}

/// Calendar and task tags with values a phone might (mis)send.
fn arb_phone_child() -> impl Strategy<Value = Element> {
    let tags = prop_oneof![
        Just(cal::Subject),
        Just(cal::StartTime),
        Just(cal::EndTime),
        Just(cal::AllDayEvent),
        Just(cal::Timezone),
        Just(cal::Reminder),
        Just(cal::BusyStatus),
        Just(cal::Sensitivity),
        Just(cal::Location),
        Just(cal::UID),
        Just(cal::OrganizerEmail),
        Just(cal::MeetingStatus),
        Just(t::Subject),
        Just(t::DueDate),
        Just(t::UtcDueDate),
        Just(t::StartDate),
        Just(t::Complete),
        Just(t::Importance),
        Just(t::ReminderTime),
        Just(t::ReminderSet),
    ];
    let values = prop_oneof![
        Just(String::new()),
        Just("1".to_owned()),
        Just("5".to_owned()),
        Just("99999999999".to_owned()),
        Just("-1".to_owned()),
        Just("20261122T100000Z".to_owned()),
        Just("2026-11-22T10:00:00.000Z".to_owned()),
        Just("99991231T235959Z".to_owned()),
        Just("16010101T000000Z".to_owned()),
        Just(TimeZoneInfo::from_iana(chrono_tz::Pacific::Chatham, YEAR).to_base64()),
        "\\PC{0,40}",
    ];
    let recurrence = (
        0u8..=7,
        "[0-9]{0,4}",
        "[0-9]{0,3}",
        "[0-9]{0,2}",
        "[0-9T]{0,16}",
    )
        .prop_map(|(ty, a, b, c, u)| {
            Element::with_children(
                cal::Recurrence,
                vec![
                    Element::with_text(cal::Type, ty.to_string()),
                    Element::with_text(cal::Interval, a),
                    Element::with_text(cal::DayOfWeek, b),
                    Element::with_text(cal::WeekOfMonth, c.clone()),
                    Element::with_text(cal::DayOfMonth, c),
                    Element::with_text(cal::Until, u),
                ],
            )
        });
    prop_oneof![
        4 => (tags, values).prop_map(|(tag, v)| Element::with_text(tag, v)),
        1 => recurrence,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Whatever a phone sends, reading and merging it answers Ok or InvalidItem: no panic.
    #[test]
    fn phone_items_never_panic(children in prop::collection::vec(arb_phone_child(), 0..12)) {
        let zone = berlin();
        let item = Element::with_children(airsync::ApplicationData, children);
        for version in [Version::V12_1, Version::V16_1] {
            if let Ok(phone) = EventData::from_element(&item, version) {
                let stored = ical::parse(&read("recurring.ics")).unwrap();
                for merged in [
                    event::merge_event(Some(&stored), &phone, &merge_options(version, &zone)),
                    event::merge_event(None, &phone, &merge_options(version, &zone)),
                ]
                .into_iter()
                .flatten()
                {
                    // What was stored renders again.
                    let text = ical::write(&merged);
                    let _ = event::render_event(&text, &event_options(version, &zone));
                    let again = ical::parse(&text).unwrap();
                    let _ = window::has_occurrence_in(&again, at(2026, 1, 1, 0, 0), None, &zone);
                }
                if let Some(r) = &phone.recurrence {
                    let _ = eas_gateway::calendar::recurrence::expand(r, at(2026, 1, 5, 9, 0), &zone, at(2030, 1, 1, 0, 0), 500);
                }
            }
        }
        if let Ok(phone) = TaskData::from_element(&item) {
            let o = task_options(Version::V14_1, &zone);
            let stored = ical::parse(&read("task.ics")).unwrap();
            let _ = task::merge_task(Some(&stored), &phone, &o);
            let _ = task::merge_task(None, &phone, &o);
        }
    }
}

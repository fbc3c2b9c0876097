//! The calendar and task store (`backend::calendar::CalendarItems`, the Sync engine's
//! `ItemStore` for CalDAV collections) against a private Radicale and a private Xandikos: a
//! collection holding events and tasks read as a calendar folder and a task folder, a recurring
//! event with an exception and a time zone rendered, the FilterType window by occurrence, a
//! phone's Change merged so that X- properties survive, the 412 path (the server wins), Add
//! without a UID (16.x), Delete, and a server that is down (retryable).

mod support;

use support::dav::{Server, client, dav};

use eas_gateway::backend::calendar::{CalendarItems, CalendarToken, locator};
use eas_gateway::backend::{
    AddContext, Added, BackendError, Changed, CollectionRef, ItemStore, RenderOptions, Rendered,
    Snapshot, Token, kinds,
};
use eas_gateway::dav::{DavClient, DavError, Kind, Write};
use eas_wbxml::tags::{calendar as cal, tasks as tk};
use eas_wbxml::{Content, Element, Writer};
use reqwest::Url;

/// A new calendar collection holding events and tasks.
async fn new_calendar(c: &DavClient) -> Url {
    let d = c.discover(&[Kind::Calendar]).await.unwrap();
    let home = d.calendar_homes.first().unwrap().clone();
    let url = home.join(&format!("{}/", support::unique("cal"))).unwrap();
    c.make_collection(&url, Kind::Calendar, "Store test", &["VEVENT", "VTODO"])
        .await
        .unwrap();
    url
}

const BERLIN: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:DAYLIGHT\r\n\
TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\n\
TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

/// A weekly series without end (so always in a window), one occurrence moved, one deleted,
/// in Berlin time, with properties EAS does not carry.
fn series() -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{BERLIN}BEGIN:VEVENT\r\n\
UID:series-1@example.org\r\nDTSTAMP:20250101T090000Z\r\n\
DTSTART;TZID=Europe/Berlin:20250106T093000\r\nDTEND;TZID=Europe/Berlin:20250106T094500\r\n\
RRULE:FREQ=WEEKLY;BYDAY=MO\r\nEXDATE;TZID=Europe/Berlin:20250120T093000\r\n\
SUMMARY:Stand-up\r\nX-FOO;X-P=1:keep me\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\n\
UID:series-1@example.org\r\nDTSTAMP:20250101T090000Z\r\n\
RECURRENCE-ID;TZID=Europe/Berlin:20250113T093000\r\n\
DTSTART;TZID=Europe/Berlin:20250113T110000\r\nDTEND;TZID=Europe/Berlin:20250113T111500\r\n\
SUMMARY:Stand-up (moved)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// A single event long past (outside any window).
const OLD: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n\
UID:old-1@example.org\r\nDTSTAMP:20200101T090000Z\r\nDTSTART:20200101T100000Z\r\n\
DTEND:20200101T110000Z\r\nSUMMARY:New year 2020\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

const TODO: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\n\
UID:todo-1@example.org\r\nDTSTAMP:20250101T090000Z\r\nSUMMARY:Buy milk\r\n\
DUE:20250110T170000Z\r\nX-BAR:kept\r\nEND:VTODO\r\nEND:VCALENDAR\r\n";

fn render() -> RenderOptions {
    RenderOptions {
        version: eas_gateway::mime::Version::V16_1,
        body_preferences: vec![eas_gateway::mime::BodyPreference::new(
            eas_gateway::mime::BodyType::Plain,
        )],
        mime_support: eas_gateway::mime::MimeSupport::Never,
        mime_truncation: None,
    }
}

fn context() -> AddContext<'static> {
    AddContext {
        version: eas_gateway::mime::Version::V16_1,
        email: "alice@example.com",
        now_unix: 0,
    }
}

/// The ApplicationData the phone received for `id`.
fn on_phone(r: &Rendered, id: u32) -> Element {
    let mut w = Writer::new(Vec::new()).unwrap();
    r.write(&mut w, id, false).unwrap();
    Element::decode(&w.finish().unwrap()).unwrap()
}

fn text(e: &Element, tag: eas_wbxml::Tag) -> Option<String> {
    e.child(tag).and_then(|t| t.text()).map(str::to_owned)
}

/// `e` with the text of its child `tag` replaced.
fn with_text(e: &Element, tag: eas_wbxml::Tag, value: &str) -> Element {
    let mut e = e.clone();
    if let Content::Elements(children) = &mut e.content {
        for c in children.iter_mut() {
            if c.tag == tag {
                c.content = Content::Text(value.to_owned());
            }
        }
    }
    e
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn radicale() {
                super::$body(super::Server::Radicale).await;
            }
            #[tokio::test]
            async fn xandikos() {
                super::$body(super::Server::Xandikos).await;
            }
        }
    };
}

both!(round_trip, read_window_change_add_delete);
async fn read_window_change_add_delete(server: Server) {
    let d = client(server, "heidi");
    let coll = new_calendar(&d).await;
    let ct = "text/calendar; charset=utf-8";
    let series_url = coll.join("series.ics").unwrap();
    d.put(&series_url, ct, series(), Write::Create)
        .await
        .unwrap();
    d.put(
        &coll.join("old.ics").unwrap(),
        ct,
        OLD.into(),
        Write::Create,
    )
    .await
    .unwrap();
    let todo_url = coll.join("todo.ics").unwrap();
    d.put(&todo_url, ct, TODO.into(), Write::Create)
        .await
        .unwrap();

    let mut store = CalendarItems::new(
        d.clone(),
        "heidi@example.org".into(),
        eas_gateway::mime::Version::V16_1,
    );
    let cal_loc = locator(&coll, kinds::CALENDAR);
    let task_loc = locator(&coll, kinds::TASKS);
    let at = CollectionRef {
        id: 1,
        locator: &cal_loc,
        kind: kinds::CALENDAR,
    };
    let at_tasks = CollectionRef {
        id: 2,
        locator: &task_loc,
        kind: kinds::TASKS,
    };
    let now = store.state(at).await.unwrap().expect("the calendar exists");
    let now_tasks = store.state(at_tasks).await.unwrap().unwrap();
    assert!(!now.same_collection(&now_tasks), "two folders, two tokens");
    let empty = Snapshot {
        token: CalendarToken::identity(&now),
        ..Snapshot::default()
    };

    // The calendar folder lists the two events, the task folder the task.
    let listing = store.changes(at, &empty, 0).await.unwrap();
    assert_eq!(listing.diff.adds.len(), 2, "{:?}", listing.diff);
    let tasks = store
        .changes(
            at_tasks,
            &Snapshot {
                token: CalendarToken::identity(&now_tasks),
                ..Snapshot::default()
            },
            0,
        )
        .await
        .unwrap();
    assert_eq!(tasks.diff.adds.len(), 1, "{:?}", tasks.diff);
    let task_id = tasks.diff.adds[0];
    let r = store
        .fetch(at_tasks, &[task_id], &[task_id], &render())
        .await
        .unwrap();
    assert_eq!(
        text(&on_phone(&r, task_id), tk::Subject).as_deref(),
        Some("Buy milk")
    );

    let ids = listing.diff.adds.clone();
    let rendered = store.fetch(at, &ids, &ids, &render()).await.unwrap();
    let items: Vec<(u32, Element)> = ids.iter().map(|i| (*i, on_phone(&rendered, *i))).collect();
    let (series_id, phone_series) = items
        .iter()
        .find(|(_, e)| text(e, cal::Subject).as_deref() == Some("Stand-up"))
        .cloned()
        .expect("the series");
    let (old_id, _) = items
        .iter()
        .find(|(_, e)| text(e, cal::Subject).as_deref() == Some("New year 2020"))
        .cloned()
        .expect("the old event");
    assert!(phone_series.child(cal::Recurrence).is_some());
    assert!(phone_series.child(cal::Timezone).is_some());
    let exceptions = phone_series.child(cal::Exceptions).expect("exceptions");
    assert_eq!(exceptions.children_with(cal::Exception).count(), 2);
    // 09:30 Berlin in January is 08:30 UTC.
    assert_eq!(
        text(&phone_series, cal::StartTime).as_deref(),
        Some("20250106T083000Z")
    );
    let mut snap = Snapshot {
        token: listing.token.clone(),
        items: ids
            .iter()
            .map(|id| (*id, rendered.fold_of(*id).unwrap()))
            .collect(),
        ..Snapshot::default()
    };
    assert!(store.changes(at, &snap, 0).await.unwrap().diff.is_empty());

    // Two weeks back: the old single event leaves, the endless series stays.
    let since = unix_now() - 14 * 86_400;
    let windowed = store.changes(at, &snap, since).await.unwrap();
    assert_eq!(windowed.diff.soft_deletes, vec![old_id]);
    assert!(windowed.diff.adds.is_empty() && windowed.diff.changes.is_empty());
    let fresh = store.changes(at, &empty, since).await.unwrap();
    assert_eq!(fresh.diff.adds, vec![series_id]);

    // The phone renames the series: the X- property and the exception stay.
    let old = snap.items[&series_id];
    let edit = with_text(&phone_series, cal::Subject, "Daily stand-up");
    let fold = match store.change(at, series_id, old, &edit).await.unwrap() {
        Changed::To(f) => f,
        Changed::Gone => panic!("gone"),
    };
    assert_ne!(fold, old);
    snap.items.insert(series_id, fold);
    let stored = d.get(&series_url).await.unwrap().data.unwrap();
    let lower = stored.to_lowercase();
    assert!(stored.contains("SUMMARY:Daily stand-up"), "{stored}");
    assert!(lower.contains("x-foo;x-p=1:keep me"), "{stored}");
    assert!(stored.contains("Stand-up (moved)"), "{stored}");
    assert!(stored.contains("UID:series-1@example.org"), "{stored}");
    assert!(lower.contains("rrule:freq=weekly"), "{stored}");
    // Its own change does not come back.
    assert!(store.changes(at, &snap, 0).await.unwrap().diff.is_empty());

    // Someone else edits the series on the server: the phone's late edit loses.
    let etag = d.get(&series_url).await.unwrap().etag.unwrap();
    let other = stored.replace("SUMMARY:Daily stand-up", "SUMMARY:Stand-up (desk)");
    d.put(&series_url, ct, other.clone(), Write::Replace(&etag))
        .await
        .unwrap();
    let late = with_text(&phone_series, cal::Subject, "Too late");
    let r = store
        .change(at, series_id, snap.items[&series_id], &late)
        .await
        .unwrap();
    assert_eq!(r, Changed::To(snap.items[&series_id]));
    assert_eq!(d.get(&series_url).await.unwrap().data.unwrap(), other);
    let after = store.changes(at, &snap, 0).await.unwrap();
    assert_eq!(after.diff.changes, vec![series_id]);

    // The phone's task edit keeps X-BAR.
    let phone_task = on_phone(&r_task(&mut store, at_tasks, task_id).await, task_id);
    let task_fold = match store
        .change(
            at_tasks,
            task_id,
            tasks.folds[&task_id],
            &with_text(&phone_task, tk::Subject, "Buy oat milk"),
        )
        .await
        .unwrap()
    {
        Changed::To(f) => f,
        Changed::Gone => panic!("gone"),
    };
    assert_ne!(task_fold, tasks.folds[&task_id]);
    let stored_task = d.get(&todo_url).await.unwrap().data.unwrap();
    assert!(
        stored_task.contains("SUMMARY:Buy oat milk"),
        "{stored_task}"
    );
    assert!(stored_task.contains("X-BAR:kept"), "{stored_task}");

    // A 16.x Add without a UID.
    let add = eas_wbxml::from_xml(
        r#"<ApplicationData xmlns="AirSync:" xmlns:calendar="Calendar:"><calendar:Subject>Lunch</calendar:Subject><calendar:StartTime>20260301T120000Z</calendar:StartTime><calendar:EndTime>20260301T130000Z</calendar:EndTime><calendar:AllDayEvent>0</calendar:AllDayEvent></ApplicationData>"#,
    )
    .unwrap();
    let (new_id, _) = match store.add(at, &add, context()).await.unwrap() {
        Added::Created(id, fold) => (id, fold),
        other => panic!("{other:?}"),
    };
    let listed = d.list(&coll).await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let created = listed
        .iter()
        .find(|m| {
            !["series.ics", "old.ics", "todo.ics"]
                .iter()
                .any(|n| m.url.path().ends_with(n))
        })
        .unwrap()
        .clone();
    let text_new = d.get(&created.url).await.unwrap().data.unwrap();
    assert!(
        text_new.contains("UID:") && text_new.contains("SUMMARY:Lunch"),
        "{text_new}"
    );
    // A malformed event is refused and not stored.
    let bad = eas_wbxml::from_xml(
        r#"<ApplicationData xmlns="AirSync:" xmlns:calendar="Calendar:"><calendar:Subject>Bad</calendar:Subject><calendar:StartTime>20260301T120000Z</calendar:StartTime><calendar:EndTime>20260301T110000Z</calendar:EndTime></ApplicationData>"#,
    )
    .unwrap();
    assert_eq!(
        store.add(at, &bad, context()).await.unwrap(),
        Added::Refused
    );
    assert_eq!(d.list(&coll).await.unwrap().len(), 4);

    // The phone deletes it.
    store.delete(at, new_id, true).await.unwrap();
    assert!(matches!(d.get(&created.url).await, Err(DavError::NotFound)));

    // The old event moved into the window (a new ETag): decided afresh, it comes in.
    let old_url = coll.join("old.ics").unwrap();
    let etag = d.get(&old_url).await.unwrap().etag.unwrap();
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let moved = OLD
        .replace("20200101T100000Z", &format!("{today}T000000Z"))
        .replace("20200101T110000Z", &format!("{today}T235900Z"));
    d.put(&old_url, ct, moved, Write::Replace(&etag))
        .await
        .unwrap();
    let fresh = store.changes(at, &empty, since).await.unwrap();
    assert!(fresh.diff.adds.contains(&old_id), "{:?}", fresh.diff);
    assert!(fresh.diff.adds.contains(&series_id), "{:?}", fresh.diff);
}

both!(instances, one_occurrence_changed_and_deleted);
async fn one_occurrence_changed_and_deleted(server: Server) {
    let d = client(server, "ivan");
    let coll = new_calendar(&d).await;
    let url = coll.join("series.ics").unwrap();
    d.put(&url, "text/calendar", series(), Write::Create)
        .await
        .unwrap();
    let mut store = CalendarItems::new(
        d.clone(),
        "ivan@example.org".into(),
        eas_gateway::mime::Version::V16_1,
    );
    let loc = locator(&coll, kinds::USER_CALENDAR);
    let at = CollectionRef {
        id: 3,
        locator: &loc,
        kind: kinds::USER_CALENDAR,
    };
    let now = store.state(at).await.unwrap().unwrap();
    let empty = Snapshot {
        token: CalendarToken::identity(&now),
        ..Snapshot::default()
    };
    let listing = store.changes(at, &empty, 0).await.unwrap();
    let id = listing.diff.adds[0];
    let fold = listing.folds[&id];
    // 16.x: the occurrence of 27 January (09:30 Berlin = 08:30 UTC) gets its own subject.
    let one = eas_wbxml::from_xml(
        r#"<ApplicationData xmlns="AirSync:" xmlns:calendar="Calendar:" xmlns:airsyncbase="AirSyncBase:"><airsyncbase:InstanceId>20250127T083000Z</airsyncbase:InstanceId><calendar:Subject>Stand-up with guests</calendar:Subject></ApplicationData>"#,
    )
    .unwrap();
    let Changed::To(fold) = store.change(at, id, fold, &one).await.unwrap() else {
        panic!("gone");
    };
    let stored = d.get(&url).await.unwrap().data.unwrap();
    assert!(stored.contains("SUMMARY:Stand-up with guests"), "{stored}");
    assert!(stored.contains("SUMMARY:Stand-up\r\n"), "{stored}");
    assert!(stored.contains("20250127T093000"), "{stored}");
    assert!(
        stored.to_lowercase().contains("x-foo;x-p=1:keep me"),
        "{stored}"
    );
    // 16.x: the occurrence of 3 February deleted; the series stays.
    let gone = eas_wbxml::from_xml(
        r#"<ApplicationData xmlns="AirSync:" xmlns:calendar="Calendar:" xmlns:airsyncbase="AirSyncBase:"><calendar:Deleted>1</calendar:Deleted><airsyncbase:InstanceId>20250203T083000Z</airsyncbase:InstanceId></ApplicationData>"#,
    )
    .unwrap();
    let r = store.change(at, id, fold, &gone).await.unwrap();
    assert!(matches!(r, Changed::To(f) if f != fold), "{r:?}");
    let stored = d.get(&url).await.unwrap().data.unwrap();
    let exdates: Vec<&str> = stored.lines().filter(|l| l.starts_with("EXDATE")).collect();
    assert!(exdates.iter().any(|l| l.contains("20250203")), "{stored}");
    assert!(stored.contains("RRULE:"), "{stored}");
    assert!(stored.contains("SUMMARY:Stand-up with guests"), "{stored}");
}

async fn r_task(store: &mut CalendarItems, at: CollectionRef<'_>, id: u32) -> Rendered {
    store.fetch(at, &[id], &[id], &render()).await.unwrap()
}

#[tokio::test]
async fn a_server_that_is_down_is_an_error_not_an_empty_calendar() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/");
    let mut store = CalendarItems::new(
        dav(&base, "alice", "pw"),
        "alice@example.org".into(),
        eas_gateway::mime::Version::V14_1,
    );
    let cal = format!("{base}alice/calendar/");
    for kind in [kinds::CALENDAR, kinds::USER_TASKS] {
        let at = CollectionRef {
            id: 1,
            locator: &cal,
            kind,
        };
        let e = store.state(at).await.unwrap_err();
        assert!(
            matches!(&e, BackendError::Dav(d) if d.is_retryable()),
            "{e:?}"
        );
        let e = store
            .changes(at, &Snapshot::<CalendarToken>::default(), 86_400)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, BackendError::Dav(d) if d.is_retryable()),
            "{e:?}"
        );
        let eas = eas_gateway::eas::EasError::from(e);
        assert!(
            matches!(eas, eas_gateway::eas::EasError::Unavailable(_)),
            "{eas:?}"
        );
    }
}

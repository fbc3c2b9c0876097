//! Calendars and tasks end to end: the simulated phone against the gateway (in process), with
//! mail on the private Dovecot and calendars on a private Radicale (whose users are Dovecot's)
//! or a private Xandikos. The phone sees a collection holding events and tasks as a calendar
//! folder and a task folder in FolderSync (exactly one default of each type), syncs both with a
//! two-week FilterType window (an old single event and a finished series stay away, a series
//! with a recent occurrence comes), and a Change it makes reaches the CalDAV server with what EAS
//! does not carry kept.

mod eas;
mod support;

use support::dav::{Server, dav, radicale, xandikos};

use chrono::{Duration as Days, Utc};
use eas::{Gateway, Phone, folder_changes};
use eas_gateway::dav::{DavClient, Kind, Write};
use eas_testbed::Radicale;
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, calendar as cal, tasks as tk};
use reqwest::Url;

fn ics(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n")
}

fn stamp(days_from_now: i64, hour: u32) -> String {
    let d = (Utc::now() + Days::days(days_from_now)).date_naive();
    format!("{}T{hour:02}0000Z", d.format("%Y%m%d"))
}

/// The objects of the test calendar: a recent single event (with an X- property), an old one,
/// a daily series that started two months ago and still runs, one that ended in 2020, a task.
fn objects() -> Vec<(&'static str, String)> {
    vec![
        (
            "recent.ics",
            ics(&format!(
                "BEGIN:VEVENT\r\nUID:recent@example.org\r\nDTSTAMP:20250101T000000Z\r\n\
DTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Review\r\nX-KEEP:yes\r\nEND:VEVENT\r\n",
                stamp(-2, 10),
                stamp(-2, 11)
            )),
        ),
        (
            "old.ics",
            ics(
                "BEGIN:VEVENT\r\nUID:old@example.org\r\nDTSTAMP:20200101T000000Z\r\n\
DTSTART:20200101T100000Z\r\nDTEND:20200101T110000Z\r\nSUMMARY:Old party\r\nEND:VEVENT\r\n",
            ),
        ),
        (
            "running.ics",
            ics(&format!(
                "BEGIN:VEVENT\r\nUID:running@example.org\r\nDTSTAMP:20250101T000000Z\r\n\
DTSTART:{}\r\nDTEND:{}\r\nRRULE:FREQ=DAILY;COUNT=100\r\nSUMMARY:Daily walk\r\nEND:VEVENT\r\n",
                stamp(-60, 7),
                stamp(-60, 8)
            )),
        ),
        (
            "finished.ics",
            ics(
                "BEGIN:VEVENT\r\nUID:finished@example.org\r\nDTSTAMP:20200101T000000Z\r\n\
DTSTART:20200301T100000Z\r\nDTEND:20200301T110000Z\r\nRRULE:FREQ=DAILY;COUNT=3\r\n\
SUMMARY:Course 2020\r\nEND:VEVENT\r\n",
            ),
        ),
        (
            "task.ics",
            ics(
                "BEGIN:VTODO\r\nUID:task@example.org\r\nDTSTAMP:20250101T000000Z\r\n\
SUMMARY:File taxes\r\nDUE:20300415T170000Z\r\nEND:VTODO\r\n",
            ),
        ),
    ]
}

/// A calendar holding events and tasks with [`objects`], and the gateway pointed at the server.
async fn setup(
    server: Server,
    user: &str,
    device: &str,
    name: &str,
) -> (Gateway, Phone, DavClient, Url) {
    let (login, password) = support::credentials(user);
    let url = match server {
        Server::Radicale => radicale().url(),
        Server::Xandikos => xandikos().url(),
    };
    let d = dav(&url, &login, &password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let coll = disc.calendar_homes[0]
        .join(&format!("{}/", support::unique("e2e")))
        .unwrap();
    d.make_collection(&coll, Kind::Calendar, name, &["VEVENT", "VTODO"])
        .await
        .unwrap();
    for (name, body) in objects() {
        d.put(
            &coll.join(name).unwrap(),
            "text/calendar; charset=utf-8",
            body,
            Write::Create,
        )
        .await
        .unwrap();
    }
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, device);
    p.provision().await;
    (g, p, d, coll)
}

async fn sync(p: &Phone, coll: &str, key: &str, filter: u8, commands: &str) -> Element {
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:" xmlns:calendar="Calendar:" xmlns:tasks="Tasks:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><GetChanges/><WindowSize>100</WindowSize><Options><FilterType>{filter}</FilterType><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>32768</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>{commands}</Collection></Collections></Sync>"#
    );
    let answer = p.send("Sync", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    answer.tree()
}

fn collection(tree: &Element) -> &Element {
    tree.child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .unwrap_or_else(|| panic!("no Collection in {}", eas_wbxml::to_xml(tree)))
}

fn key_of(tree: &Element) -> String {
    collection(tree)
        .child(a::SyncKey)
        .and_then(|k| k.text())
        .unwrap()
        .to_owned()
}

fn text(e: &Element, tag: eas_wbxml::Tag) -> Option<String> {
    e.child(tag).and_then(|t| t.text()).map(str::to_owned)
}

fn adds(tree: &Element) -> Vec<Element> {
    collection(tree)
        .child(a::Commands)
        .map(|c| c.children_with(a::Add).cloned().collect())
        .unwrap_or_default()
}

macro_rules! both {
    ($name:ident, $body:ident, $user:literal) => {
        mod $name {
            #[tokio::test]
            async fn radicale() {
                super::$body(super::Server::Radicale, $user, concat!("R", $user)).await;
            }
            #[tokio::test]
            async fn xandikos() {
                // Xandikos serves one user; the phone logs in to Dovecot as alice.
                super::$body(super::Server::Xandikos, "alice", concat!("X", $user)).await;
            }
        }
    };
}

both!(end_to_end, a_phone_syncs_calendar_and_tasks, "kim");
async fn a_phone_syncs_calendar_and_tasks(server: Server, user: &str, device: &str) {
    let (_g, p, d, coll) = setup(server, user, device, "E2E").await;
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let e2e: Vec<_> = folders.iter().filter(|f| f.name == "E2E").collect();
    let calendar = e2e
        .iter()
        .find(|f| matches!(f.kind, 8 | 13))
        .unwrap_or_else(|| panic!("no calendar folder in {folders:?}"));
    let tasks = e2e
        .iter()
        .find(|f| matches!(f.kind, 7 | 15))
        .unwrap_or_else(|| panic!("no task folder in {folders:?}"));
    assert_ne!(calendar.id, tasks.id);
    assert_eq!(
        folders.iter().filter(|f| f.kind == 8).count(),
        1,
        "{folders:?}"
    );
    assert_eq!(
        folders.iter().filter(|f| f.kind == 7).count(),
        1,
        "{folders:?}"
    );
    assert_eq!(folders.iter().filter(|f| f.kind == 2).count(), 1, "Inbox");
    // Calendars are not mailboxes: deleting one from the phone is refused, nothing is lost.
    let fs_key = eas::find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let refused = p
        .send(
            "FolderDelete",
            &format!(
                r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{fs_key}</SyncKey><ServerId>{}</ServerId></FolderDelete>"#,
                calendar.id
            ),
        )
        .await;
    assert_eq!(
        eas::find_text(&refused.tree(), eas_wbxml::tags::folderhierarchy::Status).as_deref(),
        Some("3"),
        "{}",
        refused.xml()
    );

    // Two weeks back: the recent event and the running series, nothing older.
    let first = sync(&p, &calendar.id, "0", 4, "").await;
    // GetItemEstimate runs on the same store and window.
    let estimate = p
        .send(
            "GetItemEstimate",
            &format!(
                r#"<GetItemEstimate xmlns="GetItemEstimate:" xmlns:airsync="AirSync:"><Collections><Collection><airsync:SyncKey>{}</airsync:SyncKey><CollectionId>{}</CollectionId><airsync:Options><airsync:FilterType>4</airsync:FilterType></airsync:Options></Collection></Collections></GetItemEstimate>"#,
                key_of(&first),
                calendar.id
            ),
        )
        .await
        .tree();
    assert_eq!(
        eas::find_text(&estimate, eas_wbxml::tags::getitemestimate::Estimate).as_deref(),
        Some("2"),
        "{}",
        eas_wbxml::to_xml(&estimate)
    );
    let got = sync(&p, &calendar.id, &key_of(&first), 4, "").await;
    let data = |e: &Element| e.child(a::ApplicationData).unwrap().clone();
    let events = adds(&got);
    let mut subjects: Vec<String> = events
        .iter()
        .filter_map(|e| text(&data(e), cal::Subject))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec!["Daily walk".to_owned(), "Review".to_owned()],
        "{}",
        eas_wbxml::to_xml(&got)
    );
    let walk = events
        .iter()
        .find(|e| text(&data(e), cal::Subject).as_deref() == Some("Daily walk"))
        .unwrap();
    assert!(data(walk).child(cal::Recurrence).is_some());
    let review = events
        .iter()
        .find(|e| text(&data(e), cal::Subject).as_deref() == Some("Review"))
        .unwrap();
    let review_id = text(review, a::ServerId).unwrap();
    let key = key_of(&got);

    // Nothing new: nothing sent.
    let again = p.try_sync(&calendar.id, &key, "").await.unwrap();
    assert!(again.empty || again.added.is_empty());

    // All: the old ones come too.
    let all0 = sync(&p, &calendar.id, "0", 0, "").await;
    let all = sync(&p, &calendar.id, &key_of(&all0), 0, "").await;
    assert_eq!(adds(&all).len(), 4, "{}", eas_wbxml::to_xml(&all));
    // A new partnership (key 0) voids the older key; item ids stay.
    let key = key_of(&all);

    // The task folder holds the task only.
    let t0 = sync(&p, &tasks.id, "0", 0, "").await;
    let t1 = sync(&p, &tasks.id, &key_of(&t0), 0, "").await;
    let task_adds = adds(&t1);
    assert_eq!(task_adds.len(), 1, "{}", eas_wbxml::to_xml(&t1));
    assert_eq!(
        text(&data(&task_adds[0]), tk::Subject).as_deref(),
        Some("File taxes")
    );

    // The phone renames the recent event (sending it back whole, as phones do).
    let mut changed = data(review);
    if let eas_wbxml::Content::Elements(children) = &mut changed.content {
        for c in children.iter_mut() {
            if c.tag == cal::Subject {
                c.content = eas_wbxml::Content::Text("Review (room 2)".into());
            }
        }
    }
    let xml = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{}</CollectionId><GetChanges/><WindowSize>100</WindowSize><Options><FilterType>0</FilterType></Options><Commands><Change><ServerId>{review_id}</ServerId><ApplicationData/></Change></Commands></Collection></Collections></Sync>"#,
        calendar.id
    );
    let mut request = eas_wbxml::from_xml(&xml).unwrap();
    assert!(
        replace(&mut request, &changed),
        "an ApplicationData to fill"
    );
    let answer = p.post("Sync", request.encode()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let done = answer.tree();
    if let Some(responses) = collection(&done).child(a::Responses) {
        for r in responses.children() {
            assert_eq!(
                text(r, a::Status).as_deref(),
                Some("1"),
                "{}",
                eas_wbxml::to_xml(&done)
            );
        }
    }
    let stored = d
        .get(&coll.join("recent.ics").unwrap())
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(
        stored.contains("SUMMARY:Review (room 2)"),
        "{stored}\n{}",
        eas_wbxml::to_xml(&done)
    );
    assert!(stored.contains("X-KEEP:yes"), "{stored}");
    assert!(stored.contains("UID:recent@example.org"), "{stored}");
}

/// Replaces the first ApplicationData below `e` with `with`.
fn replace(e: &mut Element, with: &Element) -> bool {
    if let eas_wbxml::Content::Elements(children) = &mut e.content {
        for c in children.iter_mut() {
            if c.tag == a::ApplicationData {
                *c = with.clone();
                return true;
            }
            if replace(c, with) {
                return true;
            }
        }
    }
    false
}

#[tokio::test]
async fn a_caldav_server_that_is_down_keeps_the_folders_and_asks_to_retry() {
    // A Radicale of this test's own, stopped half way.
    let (login, password) = support::credentials("lena");
    let own = Radicale::start(&[support::user("lena")]).unwrap();
    let d = dav(&own.url(), &login, &password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let coll = disc.calendar_homes[0].join("cal/").unwrap();
    d.make_collection(&coll, Kind::Calendar, "Mine", &["VEVENT", "VTODO"])
        .await
        .unwrap();
    for (name, body) in objects() {
        d.put(
            &coll.join(name).unwrap(),
            "text/calendar",
            body,
            Write::Create,
        )
        .await
        .unwrap();
    }
    let url = own.url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.dav.timeout_secs = 5;
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, "CALDOWN");
    p.provision().await;
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let calendar = folders.iter().find(|f| f.kind == 8).unwrap().clone();
    assert!(folders.iter().any(|f| f.kind == 7), "{folders:?}");
    let key = eas::find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let first = sync(&p, &calendar.id, "0", 4, "").await;
    let got = sync(&p, &calendar.id, &key_of(&first), 4, "").await;
    let sync_key = key_of(&got);

    own.stop();
    // The folders stay: no FolderSync change would make the phone drop its events.
    let again = p.folder_sync(&key).await;
    let (added, updated, deleted) = folder_changes(&again);
    assert!(
        added.is_empty() && updated.is_empty() && deleted.is_empty(),
        "{}",
        eas_wbxml::to_xml(&again)
    );
    // A Sync is refused with a retryable status, never answered with an empty calendar.
    let xml = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{sync_key}</SyncKey><CollectionId>{}</CollectionId><GetChanges/><Options><FilterType>4</FilterType></Options></Collection></Collections></Sync>"#,
        calendar.id
    );
    let answer = p
        .post("Sync", eas_wbxml::from_xml(&xml).unwrap().encode())
        .await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
}

both!(
    instances_16,
    a_16_phone_deletes_one_occurrence_and_adds,
    "max"
);
async fn a_16_phone_deletes_one_occurrence_and_adds(server: Server, user: &str, device: &str) {
    let (_g, mut p, d, coll) = setup(server, user, device, "Sixteen").await;
    p.version = "16.1";
    let fs = p.folder_sync("0").await;
    let (folders, _, _) = folder_changes(&fs);
    let calendar = folders
        .iter()
        .find(|f| f.name == "Sixteen" && matches!(f.kind, 8 | 13))
        .unwrap_or_else(|| panic!("no calendar folder in {folders:?}"));
    let first = sync(&p, &calendar.id, "0", 4, "").await;
    let got = sync(&p, &calendar.id, &key_of(&first), 4, "").await;
    let walk = adds(&got)
        .into_iter()
        .find(|e| {
            e.child(a::ApplicationData)
                .and_then(|d| text(d, cal::Subject))
                .as_deref()
                == Some("Daily walk")
        })
        .expect("the series");
    let walk_id = text(&walk, a::ServerId).unwrap();
    // Tomorrow's walk (07:00 UTC) is cancelled on the phone; a lunch is added without a UID.
    let instance = stamp(1, 7);
    let commands = format!(
        "<Commands><Delete><ServerId>{walk_id}</ServerId><airsyncbase:InstanceId>{instance}</airsyncbase:InstanceId></Delete>\
<Add><ClientId>n1</ClientId><ApplicationData><calendar:Subject>Lunch</calendar:Subject><calendar:StartTime>{}</calendar:StartTime><calendar:EndTime>{}</calendar:EndTime><calendar:AllDayEvent>0</calendar:AllDayEvent></ApplicationData></Add></Commands>",
        stamp(2, 12),
        stamp(2, 13)
    );
    let done = sync(&p, &calendar.id, &key_of(&got), 4, &commands).await;
    let responses = collection(&done).child(a::Responses).expect("Responses");
    for r in responses.children() {
        assert_eq!(
            text(r, a::Status).as_deref(),
            Some("1"),
            "{}",
            eas_wbxml::to_xml(&done)
        );
    }
    let stored = d
        .get(&coll.join("running.ics").unwrap())
        .await
        .unwrap()
        .data
        .unwrap();
    let day = &instance[..8];
    assert!(
        stored
            .lines()
            .any(|l| l.starts_with("EXDATE") && l.contains(day)),
        "{stored}"
    );
    assert!(stored.contains("RRULE:FREQ=DAILY;COUNT=100"), "{stored}");
    let members = d.list(&coll).await.unwrap();
    assert_eq!(members.len(), 6, "{members:?}");
    let mut lunch = None;
    for m in &members {
        let text = d.get(&m.url).await.unwrap().data.unwrap();
        if text.contains("SUMMARY:Lunch") {
            lunch = Some(text);
        }
    }
    let lunch = lunch.expect("the phone's lunch on the server");
    assert!(lunch.contains("UID:"), "{lunch}");
    // Nothing of it comes back to the phone.
    let after = sync(&p, &calendar.id, &key_of(&done), 4, "").await;
    assert!(adds(&after).is_empty(), "{}", eas_wbxml::to_xml(&after));
}

both!(
    folders_from_the_phone,
    calendars_and_task_lists_are_created_renamed_and_deleted,
    "nora"
);
async fn calendars_and_task_lists_are_created_renamed_and_deleted(
    server: Server,
    user: &str,
    device: &str,
) {
    use eas_wbxml::tags::folderhierarchy as f;
    let (_g, p, d, _coll) = setup(server, user, device, "Main").await;
    // A second collection holding events and tasks: a calendar folder and a task folder that
    // are one collection on the server.
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let shared_name = support::unique("Shared");
    let shared = disc.calendar_homes[0]
        .join(&format!("{}/", support::unique("shared")))
        .unwrap();
    d.make_collection(&shared, Kind::Calendar, &shared_name, &["VEVENT", "VTODO"])
        .await
        .unwrap();
    let fs = p.folder_sync("0").await;
    let mut key = eas::find_text(&fs, f::SyncKey).unwrap();
    let t = |e: &Element, tag| eas::find_text(e, tag).unwrap_or_default();
    let collections = || async { d.discover(&[Kind::Calendar]).await.unwrap().collections };
    let named = |cs: &[eas_gateway::dav::Collection], name: &str| {
        cs.iter()
            .find(|c| c.display_name.as_deref() == Some(name))
            .cloned()
    };

    // New calendar and task list: MKCALENDAR with the one component each holds.
    let mut created = Vec::new();
    for (kind, component) in [(13, "VEVENT"), (15, "VTODO")] {
        let name = support::unique(&format!("New {component}"));
        let answer = p
            .send(
                "FolderCreate",
                &format!(
                    r#"<FolderCreate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ParentId>0</ParentId><DisplayName>{name}</DisplayName><Type>{kind}</Type></FolderCreate>"#
                ),
            )
            .await
            .tree();
        assert_eq!(t(&answer, f::Status), "1", "{}", eas_wbxml::to_xml(&answer));
        key = t(&answer, f::SyncKey);
        let made = named(&collections().await, &name).expect("the new collection");
        match server {
            Server::Radicale => assert_eq!(made.components, vec![component.to_owned()]),
            // Xandikos ignores the component set of MKCALENDAR: every calendar holds all.
            Server::Xandikos => assert!(made.components.iter().any(|c| c == component)),
        }
        created.push((t(&answer, f::ServerId), name, kind));
    }
    // The next FolderSync does not echo them back. (On Xandikos each new collection also
    // holds the other component and comes back as a folder of the other class; and the other
    // tests' collections of its one principal come and go meanwhile.)
    let again = p.folder_sync(&key).await;
    let (added, _, _) = folder_changes(&again);
    let echoed = added.iter().any(|a| {
        created
            .iter()
            .any(|(_, name, kind)| *name == a.name && *kind == a.kind)
    });
    assert!(!echoed, "{}", eas_wbxml::to_xml(&again));
    if let Server::Radicale = server {
        let (added, updated, deleted) = folder_changes(&again);
        assert!(
            added.is_empty() && updated.is_empty() && deleted.is_empty(),
            "{added:?} {updated:?} {deleted:?} {again:?}"
        );
    }
    key = t(&again, f::SyncKey);

    // Renamed: PROPPATCH of the display name.
    let (calendar_id, _, _) = &created[0];
    let renamed_to = support::unique("Renamed");
    let renamed = p
        .send(
            "FolderUpdate",
            &format!(
                r#"<FolderUpdate xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{calendar_id}</ServerId><ParentId>0</ParentId><DisplayName>{renamed_to}</DisplayName></FolderUpdate>"#
            ),
        )
        .await
        .tree();
    assert_eq!(
        t(&renamed, f::Status),
        "1",
        "{}",
        eas_wbxml::to_xml(&renamed)
    );
    key = t(&renamed, f::SyncKey);
    assert!(named(&collections().await, &renamed_to).is_some());

    // The default calendar cannot be deleted, nor a task folder whose collection is also a
    // calendar folder with events (they would go with it).
    d.put(
        &shared.join("event.ics").unwrap(),
        "text/calendar; charset=utf-8",
        ics(&format!(
            "BEGIN:VEVENT\r\nUID:{}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\n\
             DURATION:PT1H\r\nSUMMARY:Keep me\r\nEND:VEVENT\r\n",
            support::unique("keep"),
            stamp(1, 9)
        )),
        Write::Create,
    )
    .await
    .unwrap();
    let (folders, _, _) = folder_changes(&fs);
    let default = folders.iter().find(|f| f.kind == 8).unwrap();
    let shared_tasks = folders
        .iter()
        .find(|f| f.name == shared_name && matches!(f.kind, 7 | 15))
        .unwrap_or_else(|| panic!("the shared task folder in {folders:?}"));
    for id in [&default.id, &shared_tasks.id] {
        let refused = p
            .send(
                "FolderDelete",
                &format!(
                    r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId></FolderDelete>"#
                ),
            )
            .await
            .tree();
        assert_eq!(
            t(&refused, f::Status),
            "3",
            "{}",
            eas_wbxml::to_xml(&refused)
        );
    }
    assert!(named(&collections().await, &shared_name).is_some());

    // The new ones can be deleted: DELETE of the collection (on Xandikos each also is an
    // empty folder of the other class, which goes with it).
    for (id, _, _) in &created {
        let gone = p
            .send(
                "FolderDelete",
                &format!(
                    r#"<FolderDelete xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey><ServerId>{id}</ServerId></FolderDelete>"#
                ),
            )
            .await
            .tree();
        assert_eq!(t(&gone, f::Status), "1", "{}", eas_wbxml::to_xml(&gone));
        key = t(&gone, f::SyncKey);
    }
    let left = collections().await;
    assert!(named(&left, &renamed_to).is_none());
    assert!(named(&left, &created[1].1).is_none());
}

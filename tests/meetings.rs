//! Meetings end to end: invitations delivered to the Inbox of the private Dovecot sync as
//! meeting requests, MeetingResponse from the Inbox and from the calendar sets the user's
//! PARTSTAT in the event on the private Radicale and Xandikos (read back straight from the
//! server), a 16.1 phone's SendResponse sends the iTIP REPLY through the private Postfix to the
//! organizer's Inbox (a COUNTER when it proposes a new time), an invitation found by Search is
//! answered by its LongId, cancellations show as such, bad requests get status 2 and a
//! calendar server that went away status 3. Also the invitation and cancellation fixtures
//! (fixtures/calendar/invitation.*, cancellation.*): the Email item rendered byte for byte.

mod eas;
mod support;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes};
use eas_gateway::calendar::{ical, meeting};
use eas_gateway::dav::{DavClient, Kind};
use eas_testbed::Radicale;
use eas_wbxml::tags::{
    airsync as a, airsyncbase as asb, email, meetingresponse as mr, resolverecipients as rr, search,
};
use eas_wbxml::{Element, Writer};
use support::dav::{Server, dav, radicale, xandikos};

const ORGANIZER: &str = "olivia";

fn invitation(method: &str, uid: &str, summary: &str, attendee: &str, extra: &str) -> String {
    let organizer = support::user(ORGANIZER).login;
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nMETHOD:{method}\r\n\
BEGIN:VEVENT\r\nUID:{uid}\r\nSEQUENCE:0\r\nDTSTAMP:20300501T080000Z\r\n\
DTSTART:20300610T090000Z\r\nDTEND:20300610T100000Z\r\nSUMMARY:{summary}\r\n\
LOCATION:Room 7\r\n{extra}ORGANIZER;CN=Olivia:mailto:{organizer}\r\n\
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{attendee}\r\n\
ATTENDEE;PARTSTAT=ACCEPTED:mailto:someone@example.org\r\n\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:x\r\nEND:VALARM\r\n\
END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// A mail carrying `calendar` as its `text/calendar` part (base64 when `base64`).
fn mail(to: &str, subject: &str, calendar: Option<(&str, &str)>, base64: bool) -> Vec<u8> {
    use base64::Engine;
    let from = support::user(ORGANIZER).login;
    let mut m = format!(
        "From: Olivia <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
Date: Wed, 01 May 2030 08:00:00 +0000\r\nMessage-ID: <{}@example.org>\r\nMIME-Version: 1.0\r\n",
        support::unique("m")
    );
    match calendar {
        None => m.push_str("Content-Type: text/plain\r\n\r\nJust a mail.\r\n"),
        Some((method, text)) => {
            let (cte, body) = if base64 {
                (
                    "base64",
                    base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                )
            } else {
                ("7bit", text.to_owned())
            };
            m.push_str(&format!(
                "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nYou are invited.\r\n--b1\r\n\
Content-Type: text/calendar; charset=utf-8; method={method}\r\n\
Content-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n--b1--\r\n"
            ));
        }
    }
    m.into_bytes()
}

/// The phone's Inbox and default calendar ids after FolderSync.
struct Folders {
    inbox: String,
    trash: String,
    calendars: Vec<String>,
}

async fn folders(p: &Phone) -> Folders {
    let fs = p.folder_sync("0").await;
    let (adds, _, _) = folder_changes(&fs);
    Folders {
        inbox: adds.iter().find(|f| f.kind == 2).expect("Inbox").id.clone(),
        trash: adds
            .iter()
            .find(|f| f.kind == 4)
            .expect("Deleted Items")
            .id
            .clone(),
        calendars: {
            let mut c: Vec<_> = adds
                .iter()
                .filter(|f| f.kind == 8 || f.kind == 13)
                .collect();
            c.sort_by_key(|f| f.kind);
            c.iter().map(|f| f.id.clone()).collect()
        },
    }
}

/// Every item of a mail or calendar folder, synced from key 0: (ServerId, ApplicationData).
async fn items(p: &Phone, coll: &str) -> Vec<(String, Element)> {
    items_and_key(p, coll).await.0
}

/// [`items`] and the SyncKey they leave the folder at.
async fn items_and_key(p: &Phone, coll: &str) -> (Vec<(String, Element)>, String) {
    let first = p
        .send(
            "Sync",
            &format!(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>0</SyncKey><CollectionId>{coll}</CollectionId></Collection></Collections></Sync>"#
            ),
        )
        .await
        .tree();
    let mut key = find_text(&first, a::SyncKey).expect("SyncKey");
    let mut out = Vec::new();
    loop {
        let t = p
            .send(
                "Sync",
                &format!(
                    r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><GetChanges/><WindowSize>100</WindowSize><Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>2000</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options></Collection></Collections></Sync>"#
                ),
            )
            .await
            .tree();
        let Some(c) = t.child(a::Collections).and_then(|c| c.child(a::Collection)) else {
            break;
        };
        key = find_text(c, a::SyncKey).expect("SyncKey");
        if let Some(cmds) = c.child(a::Commands) {
            for add in cmds.children_with(a::Add) {
                out.push((
                    find_text(add, a::ServerId).unwrap(),
                    add.child(a::ApplicationData).unwrap().clone(),
                ));
            }
        }
        if c.child(a::MoreAvailable).is_none() {
            break;
        }
    }
    (out, key)
}

/// One Sync of a folder carrying the phone's `commands`; the Status of each Response.
async fn sync_commands(p: &Phone, coll: &str, key: &str, commands: &str) -> Vec<String> {
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:" xmlns:calendar="Calendar:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId><Commands>{commands}</Commands></Collection></Collections></Sync>"#
    );
    let answer = p.send("Sync", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    let t = answer.tree();
    let c = t
        .child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .unwrap_or_else(|| panic!("{}", answer.xml()));
    assert_eq!(
        find_text(c, a::Status).as_deref(),
        Some("1"),
        "{}",
        answer.xml()
    );
    c.child(a::Responses)
        .map(|r| {
            r.children()
                .iter()
                .map(|x| find_text(x, a::Status).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn by_subject<'a>(items: &'a [(String, Element)], subject: &str) -> &'a (String, Element) {
    items
        .iter()
        .find(|(_, d)| find_text(d, email::Subject).as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no mail {subject:?}"))
}

/// One MeetingResponse request; returns (Status, CalendarId).
async fn respond(
    p: &Phone,
    response: u8,
    coll: &str,
    request_id: &str,
    extra: &str,
) -> (String, Option<String>) {
    let xml = format!(
        r#"<MeetingResponse xmlns="MeetingResponse:" xmlns:airsyncbase="AirSyncBase:"><Request><UserResponse>{response}</UserResponse><CollectionId>{coll}</CollectionId><RequestId>{request_id}</RequestId>{extra}</Request></MeetingResponse>"#
    );
    let answer = p.send("MeetingResponse", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    let t = answer.tree();
    let r = t
        .child(mr::Result)
        .unwrap_or_else(|| panic!("{}", answer.xml()));
    assert_eq!(find_text(r, mr::RequestId).as_deref(), Some(request_id));
    (
        find_text(r, mr::Status).unwrap(),
        find_text(r, mr::CalendarId),
    )
}

/// The user's PARTSTAT in the event with `uid`, read from the DAV server (None: not stored).
async fn stored_partstat(d: &DavClient, uid: &str, user: &str) -> Option<String> {
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    for c in disc.collections.iter().filter(|c| c.kind == Kind::Calendar) {
        if let Some(m) = d.find_by_uid(&c.url, uid).await.unwrap().first() {
            let ical = ical::parse(m.data.as_deref().unwrap()).unwrap();
            return meeting::partstat_of(&ical, &[user]);
        }
    }
    None
}

struct Setup {
    _g: Gateway,
    p: Phone,
    d: DavClient,
    f: Folders,
    login: String,
    name: &'static str,
    /// The collection of the phone's default calendar (when its name tells it).
    default_url: Option<reqwest::Url>,
}

async fn setup(server: Server, user: &'static str, version: &'static str) -> Setup {
    let (login, password) = support::credentials(user);
    let url = match server {
        Server::Radicale => radicale().url(),
        Server::Xandikos => xandikos().url(),
    };
    let d = dav(&url, &login, &password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let coll = disc.calendar_homes[0]
        .join(&format!("{}/", support::unique("mtg")))
        .unwrap();
    let display = support::unique("Meetings");
    d.make_collection(&coll, Kind::Calendar, &display, &["VEVENT"])
        .await
        .unwrap();
    let submission = support::postfix().submission_port();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = submission;
        c.smtp.security = "none".into();
        c.smtp.auth = "user".into();
        c.smtp.timeout_secs = 10;
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, &support::unique("dev"));
    p.version = version;
    p.provision().await;
    let fs = p.folder_sync("0").await;
    let (adds, _, _) = folder_changes(&fs);
    let default_name = adds
        .iter()
        .find(|f| f.kind == 8)
        .expect("a default calendar")
        .name
        .clone();
    let default_url = d
        .discover(&[Kind::Calendar])
        .await
        .unwrap()
        .collections
        .into_iter()
        .find(|c| c.display_name.as_deref() == Some(default_name.as_str()))
        .map(|c| c.url);
    let f = folders(&p).await;
    assert!(!f.calendars.is_empty(), "no calendar folder");
    Setup {
        _g: g,
        p,
        d,
        f,
        login,
        name: user,
        default_url,
    }
}

async fn invitations_answered_from_inbox_and_calendar(server: Server, user: &'static str) {
    let s = setup(server, user, "14.1").await;
    let uid = format!("{}@example.org", support::unique("inv"));
    let declined_uid = format!("{}@example.org", support::unique("dec"));
    let canceled_uid = format!("{}@example.org", support::unique("can"));
    for (subject, method, uid, b64) in [
        ("Planning", "REQUEST", &uid, false),
        ("Offsite", "REQUEST", &declined_uid, true),
        ("Gone", "CANCEL", &canceled_uid, true),
    ] {
        let text = invitation(method, uid, subject, &s.login, "");
        support::append(
            s.name,
            "INBOX",
            &[],
            &mail(&s.login, subject, Some((method, &text)), b64),
        )
        .await;
    }
    support::append(s.name, "INBOX", &[], &mail(&s.login, "Plain", None, false)).await;

    let inbox = items(&s.p, &s.f.inbox).await;
    let (invite_id, invite) = by_subject(&inbox, "Planning");
    assert_eq!(
        find_text(invite, email::MessageClass).as_deref(),
        Some("IPM.Schedule.Meeting.Request")
    );
    let mreq = invite
        .child(email::MeetingRequest)
        .unwrap_or_else(|| panic!("{}", eas_wbxml::to_xml(invite)));
    // The calendar part is the meeting, not also an `.ics` attachment (as with Exchange).
    assert!(
        invite.child(asb::Attachments).is_none(),
        "{}",
        eas_wbxml::to_xml(invite)
    );
    assert_eq!(
        find_text(mreq, email::StartTime).as_deref(),
        Some("20300610T090000Z")
    );
    assert_eq!(
        find_text(mreq, email::EndTime).as_deref(),
        Some("20300610T100000Z")
    );
    assert_eq!(find_text(mreq, email::Location).as_deref(), Some("Room 7"));
    assert_eq!(find_text(mreq, email::Reminder).as_deref(), Some("900"));
    assert_eq!(
        find_text(mreq, email::ResponseRequested).as_deref(),
        Some("1")
    );
    assert_eq!(
        find_text(mreq, email::GlobalObjId),
        Some(meeting::global_obj_id(&uid, None))
    );
    let (_, canceled) = by_subject(&inbox, "Gone");
    assert_eq!(
        find_text(canceled, email::MessageClass).as_deref(),
        Some("IPM.Schedule.Meeting.Canceled")
    );
    assert!(canceled.child(email::MeetingRequest).is_some());
    let (plain_id, plain) = by_subject(&inbox, "Plain");
    assert_eq!(
        find_text(plain, email::MessageClass).as_deref(),
        Some("IPM.Note")
    );
    assert!(plain.child(email::MeetingRequest).is_none());

    // Accept from the inbox: stored in the default calendar, the id names it.
    let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, invite_id, "").await;
    assert_eq!(status, "1");
    let cal_id = cal_id.expect("CalendarId");
    assert!(
        s.f.calendars
            .iter()
            .any(|c| cal_id.starts_with(&format!("{c}:"))),
        "{cal_id}"
    );
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("ACCEPTED")
    );
    // The calendar now holds it under the id MeetingResponse gave.
    let cal_folder = cal_id.split(':').next().unwrap().to_owned();
    let events = items(&s.p, &cal_folder).await;
    assert!(
        events.iter().any(|(id, _)| *id == cal_id),
        "{cal_id} not synced: {:?}",
        events.iter().map(|(id, _)| id).collect::<Vec<_>>()
    );

    // Tentative, then decline, from the calendar: the stored event follows.
    let (status, same) = respond(&s.p, 2, &cal_folder, &cal_id, "").await;
    assert_eq!(
        (status.as_str(), same.as_deref()),
        ("1", Some(cal_id.as_str()))
    );
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("TENTATIVE")
    );
    let (status, none) = respond(&s.p, 3, &cal_folder, &cal_id, "").await;
    assert_eq!((status.as_str(), none), ("1", None));
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("DECLINED")
    );
    // The answered invitation went to Deleted Items, as with Exchange; answering it again
    // from there finds the stored event (no second copy) and leaves the mail there.
    let inbox_now = items(&s.p, &s.f.inbox).await;
    assert!(
        !inbox_now
            .iter()
            .any(|(_, d)| find_text(d, email::Subject).as_deref() == Some("Planning")),
        "the answered invitation is still in the Inbox"
    );
    let trash = items(&s.p, &s.f.trash).await;
    let (trashed_id, _) = by_subject(&trash, "Planning");
    let (status, again) = respond(&s.p, 1, &s.f.trash, trashed_id, "").await;
    assert_eq!(
        (status.as_str(), again.as_deref()),
        ("1", Some(cal_id.as_str()))
    );
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("ACCEPTED")
    );

    // A declined invitation stays out of the calendar.
    let (decline_id, _) = by_subject(&inbox, "Offsite");
    let (status, none) = respond(&s.p, 3, &s.f.inbox, decline_id, "").await;
    assert_eq!((status.as_str(), none), ("1", None));
    assert_eq!(stored_partstat(&s.d, &declined_uid, &s.login).await, None);
    let trash = items(&s.p, &s.f.trash).await;
    by_subject(&trash, "Offsite");
    by_subject(&trash, "Planning");

    // Bad requests: status 2.
    let (cancel_id, _) = by_subject(&inbox, "Gone");
    let unknown = format!("{}:999999", s.f.inbox);
    for (response, coll, id) in [
        (1, s.f.inbox.as_str(), unknown.as_str()),
        (7, s.f.inbox.as_str(), invite_id.as_str()),
        (1, s.f.inbox.as_str(), plain_id.as_str()),
        (1, s.f.inbox.as_str(), cancel_id.as_str()),
        (1, "9999", "9999:1"),
        (1, cal_folder.as_str(), &format!("{cal_folder}:1")),
    ] {
        let (status, cal) = respond(&s.p, response, coll, id, "").await;
        assert_eq!(
            (status.as_str(), cal),
            ("2", None),
            "{response} {coll} {id}"
        );
    }
}

#[tokio::test]
async fn invitations_answered_from_inbox_and_calendar_on_radicale() {
    invitations_answered_from_inbox_and_calendar(Server::Radicale, "bob").await;
}

#[tokio::test]
async fn invitations_answered_from_inbox_and_calendar_on_xandikos() {
    invitations_answered_from_inbox_and_calendar(Server::Xandikos, "carol").await;
}

/// An event already in the default calendar under a name of another client's choosing: the
/// answer updates it (the server's UID check turns the PUT under `<UID>.ics` away, then the
/// query finds it), no second copy is made.
async fn an_event_stored_under_another_name_is_updated(server: Server, user: &'static str) {
    let s = setup(server, user, "14.1").await;
    let Some(coll) = s.default_url.clone() else {
        panic!("the default calendar's collection not found by name");
    };
    let uid = format!("{}@example.org", support::unique("other"));
    let text = invitation("REQUEST", &uid, "Elsewhere", &s.login, "");
    let stored = text.replace("METHOD:REQUEST\r\n", "");
    let other = coll
        .join(&format!("{}.ics", support::unique("client-name")))
        .unwrap();
    s.d.put(
        &other,
        "text/calendar; charset=utf-8",
        stored,
        eas_gateway::dav::Write::Create,
    )
    .await
    .unwrap();
    support::append(
        s.name,
        "INBOX",
        &[],
        &mail(&s.login, "Elsewhere", Some(("REQUEST", &text)), false),
    )
    .await;
    let inbox = items(&s.p, &s.f.inbox).await;
    let (id, _) = by_subject(&inbox, "Elsewhere");
    let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, id, "").await;
    assert_eq!(status, "1");
    assert!(cal_id.is_some());
    let found = s.d.find_by_uid(&coll, &uid).await.unwrap();
    assert_eq!(
        found.len(),
        1,
        "one copy: {:?}",
        found.iter().map(|m| m.url.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(found[0].url.path(), other.path());
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("ACCEPTED")
    );
}

#[tokio::test]
async fn an_event_stored_under_another_name_is_updated_on_radicale() {
    an_event_stored_under_another_name_is_updated(Server::Radicale, "frank").await;
}

#[tokio::test]
async fn an_event_stored_under_another_name_is_updated_on_xandikos() {
    an_event_stored_under_another_name_is_updated(Server::Xandikos, "grace").await;
}

/// Waits until `user`'s INBOX holds a message whose Subject contains `needle`.
async fn arrival(user: &str, needle: &str) -> Vec<u8> {
    arrival_in(user, "INBOX", needle).await
}

/// Waits until `user`'s `mailbox` holds a message whose Subject contains `needle`.
async fn arrival_in(user: &str, mailbox: &str, needle: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut s = support::session(user).await;
        s.select(mailbox).await.expect("SELECT");
        let found = s
            .uid_search(&eas_gateway::imap::SearchKey::Header(
                "Subject".into(),
                needle.into(),
            ))
            .await
            .expect("SEARCH")
            .uids;
        if let Some(uid) = found.iter().next() {
            let q = eas_gateway::imap::FetchQuery::new().body();
            let mut f = s
                .uid_fetch(&eas_gateway::imap::SequenceSet::single(uid), &q)
                .await
                .expect("FETCH");
            let raw = f[0]
                .take_section(&eas_gateway::imap::Section::Full)
                .expect("body");
            let _ = s.logout().await;
            return raw;
        }
        let _ = s.logout().await;
        assert!(
            Instant::now() < deadline,
            "{needle:?} did not arrive for {user}; Postfix log:\n{}",
            std::fs::read_to_string(support::postfix().log_path()).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The iTIP part of a mail, decoded.
fn calendar_of(raw: &[u8]) -> meeting::Invitation {
    let view = eas_gateway::mime::MessageView::parse(
        raw,
        eas_gateway::mime::MessageMeta {
            flags: vec![],
            internal_date: 0,
            size: raw.len() as u64,
        },
    );
    let part = view.calendar_part().expect("a calendar part");
    meeting::parse(&part.text, part.method.as_deref(), &[], 2030).unwrap()
}

#[tokio::test]
async fn a_16_1_phone_sends_the_reply_to_the_organizer() {
    let s = setup(Server::Radicale, "dave", "16.1").await;
    let summary = support::unique("Weekly");
    let uid = format!("{}@example.org", support::unique("rep"));
    let text = invitation(
        "REQUEST",
        &uid,
        &summary,
        &s.login,
        "RRULE:FREQ=WEEKLY;COUNT=4\r\n",
    );
    support::append(
        s.name,
        "INBOX",
        &[],
        &mail(&s.login, &summary, Some(("REQUEST", &text)), false),
    )
    .await;
    let inbox = items(&s.p, &s.f.inbox).await;
    let (id, item) = by_subject(&inbox, &summary);
    let mreq = item.child(email::MeetingRequest).unwrap();
    // 16.x: the location in airsyncbase; a weekly series as Recurrences.
    assert!(
        mreq.child(asb::Location).is_some(),
        "{}",
        eas_wbxml::to_xml(mreq)
    );
    assert_eq!(find_text(mreq, email::InstanceType).as_deref(), Some("1"));
    assert!(mreq.child(email::Recurrences).is_some());

    let send = "<SendResponse><airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Looking forward</airsyncbase:Data></airsyncbase:Body></SendResponse>";
    let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, id, send).await;
    assert_eq!(status, "1");
    let cal_id = cal_id.expect("CalendarId");
    let raw = arrival(ORGANIZER, &format!("Accepted: {summary}")).await;
    // The reply's copy is filed in the user's Sent, as SendMail files a sent mail.
    let copy = arrival_in(s.name, "Sent", &format!("Accepted: {summary}")).await;
    assert!(
        matches!(calendar_of(&copy).method, meeting::Method::Reply(3)),
        "the Sent copy carries the REPLY"
    );
    let reply = calendar_of(&raw);
    assert!(
        matches!(reply.method, meeting::Method::Reply(3)),
        "{:?}",
        reply.method
    );
    assert_eq!(reply.uid, uid);
    let written = ical::write(&reply.ical);
    assert!(
        written.contains(&format!("PARTSTAT=ACCEPTED:mailto:{}", s.login)),
        "{written}"
    );

    // One occurrence declined from the calendar (16.1 InstanceId): only it changes, and
    // the reply names it.
    let cal_folder = cal_id.split(':').next().unwrap().to_owned();
    let (status, _) = respond(
        &s.p,
        3,
        &cal_folder,
        &cal_id,
        &format!("<InstanceId>2030-06-17T09:00:00.000Z</InstanceId>{send}"),
    )
    .await;
    assert_eq!(status, "1");
    let raw = arrival(ORGANIZER, &format!("Declined: {summary}")).await;
    let reply = ical::write(&calendar_of(&raw).ical);
    assert!(reply.contains("RECURRENCE-ID:20300617T090000Z"), "{reply}");
    assert!(reply.contains("PARTSTAT=DECLINED"), "{reply}");
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("ACCEPTED"),
        "the series keeps its answer"
    );
    // The InstanceId of a mail is no occurrence: 2.
    let (status, _) = respond(
        &s.p,
        1,
        &s.f.inbox,
        id,
        "<InstanceId>2030-06-17T09:00:00.000Z</InstanceId>",
    )
    .await;
    assert_eq!(status, "2");
}

/// A cancellation is shown (MeetingResponse refuses it, as MS-ASCMD has it only for
/// requests); the phone's "Remove from calendar" is a Sync Delete of the event in the
/// calendar folder, which deletes it on the CalDAV server, and for one occurrence of a series
/// (RECURRENCE-ID in the CANCEL) a 16.x Delete with InstanceId, which makes it an EXDATE.
#[tokio::test]
async fn a_cancellation_removed_from_the_calendar_by_the_phone() {
    let s = setup(Server::Radicale, "rosa", "16.1").await;
    let single = format!("{}@example.org", support::unique("one"));
    let series = format!("{}@example.org", support::unique("ser"));
    let (one_subject, series_subject) = (support::unique("Review"), support::unique("Sync-up"));
    for (uid, subject, extra) in [
        (&single, &one_subject, ""),
        (&series, &series_subject, "RRULE:FREQ=WEEKLY;COUNT=4\r\n"),
    ] {
        let text = invitation("REQUEST", uid, subject, &s.login, extra);
        support::append(
            s.name,
            "INBOX",
            &[],
            &mail(&s.login, subject, Some(("REQUEST", &text)), false),
        )
        .await;
    }
    let inbox = items(&s.p, &s.f.inbox).await;
    let mut cal_ids = Vec::new();
    for subject in [&one_subject, &series_subject] {
        let (id, _) = by_subject(&inbox, subject);
        let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, id, "").await;
        assert_eq!(status, "1");
        cal_ids.push(cal_id.expect("CalendarId"));
    }
    let occurrence = "RECURRENCE-ID:20300617T090000Z\r\n";
    for (uid, subject, extra) in [
        (&single, format!("Canceled: {one_subject}"), ""),
        (&series, format!("Canceled: {series_subject}"), occurrence),
    ] {
        let text = invitation("CANCEL", uid, "x", &s.login, extra)
            .replace("SEQUENCE:0", "SEQUENCE:1\r\nSTATUS:CANCELLED");
        support::append(
            s.name,
            "INBOX",
            &[],
            &mail(&s.login, &subject, Some(("CANCEL", &text)), false),
        )
        .await;
    }
    let inbox = items(&s.p, &s.f.inbox).await;
    let (cancel_id, whole) = by_subject(&inbox, &format!("Canceled: {one_subject}"));
    assert_eq!(
        find_text(whole, email::MessageClass).as_deref(),
        Some("IPM.Schedule.Meeting.Canceled")
    );
    let (_, one) = by_subject(&inbox, &format!("Canceled: {series_subject}"));
    let mreq = one.child(email::MeetingRequest).expect("MeetingRequest");
    assert_eq!(find_text(mreq, email::InstanceType).as_deref(), Some("3"));
    // No MeetingResponse for a cancellation.
    let (status, _) = respond(&s.p, 1, &s.f.inbox, cancel_id, "").await;
    assert_eq!(status, "2");

    // "Remove from calendar": the event deleted, the one occurrence deleted by InstanceId.
    let cal_folder = cal_ids[0].split(':').next().unwrap().to_owned();
    assert!(cal_ids[1].starts_with(&format!("{cal_folder}:")));
    let (_, key) = items_and_key(&s.p, &cal_folder).await;
    let statuses = sync_commands(
        &s.p,
        &cal_folder,
        &key,
        &format!(
            "<Delete><ServerId>{}</ServerId></Delete><Delete><ServerId>{}</ServerId><airsyncbase:InstanceId>2030-06-17T09:00:00.000Z</airsyncbase:InstanceId></Delete>",
            cal_ids[0], cal_ids[1]
        ),
    )
    .await;
    assert!(statuses.iter().all(|s| s == "1"), "{statuses:?}");
    assert_eq!(stored_partstat(&s.d, &single, &s.login).await, None);
    let coll = s.default_url.clone().expect("the default calendar");
    let stored = s.d.find_by_uid(&coll, &series).await.unwrap();
    let text = stored[0].data.clone().unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("EXDATE") && l.contains("20300617")),
        "{text}"
    );
    assert!(text.contains("RRULE:FREQ=WEEKLY;COUNT=4"), "{text}");
}

/// The UIDs of `user`'s messages in `mailbox` whose Subject contains `needle` (none when the
/// mailbox does not exist).
async fn in_mailbox(user: &str, mailbox: &str, needle: &str) -> Vec<u32> {
    let mut s = support::session(user).await;
    if s.select(mailbox).await.is_err() {
        return Vec::new();
    }
    let found = s
        .uid_search(&eas_gateway::imap::SearchKey::Header(
            "Subject".into(),
            needle.into(),
        ))
        .await
        .expect("SEARCH")
        .uids;
    let _ = s.logout().await;
    found.iter().collect()
}

/// The trash the device knows was deleted on the server: the answer still counts, and the
/// invitation is never lost: it stays in the Inbox when the MOVE is refused, or is in a Trash
/// the server made again (the test Dovecot's Trash is `auto = subscribe`, so it does that).
#[tokio::test]
async fn an_invitation_is_kept_when_the_trash_is_gone() {
    let s = setup(Server::Radicale, "sam", "14.1").await;
    let subject = support::unique("Kept");
    let uid = format!("{}@example.org", support::unique("kept"));
    let text = invitation("REQUEST", &uid, &subject, &s.login, "");
    support::append(
        s.name,
        "INBOX",
        &[],
        &mail(&s.login, &subject, Some(("REQUEST", &text)), false),
    )
    .await;
    let inbox = items(&s.p, &s.f.inbox).await;
    let (id, _) = by_subject(&inbox, &subject);
    support::delete(s.name, "Trash").await;
    let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, id, "").await;
    assert_eq!(status, "1");
    assert!(cal_id.is_some());
    let kept = in_mailbox(s.name, "INBOX", &subject).await.len()
        + in_mailbox(s.name, "Trash", &subject).await.len();
    assert_eq!(kept, 1, "the invitation is lost or doubled");
}

#[tokio::test]
async fn a_calendar_server_that_went_away_is_a_retry() {
    let user = support::user("erin");
    let own = Radicale::start(std::slice::from_ref(&user)).expect("a Radicale");
    let d = dav(&own.url(), &user.login, &user.password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    d.make_collection(
        &disc.calendar_homes[0].join("cal/").unwrap(),
        Kind::Calendar,
        "Cal",
        &["VEVENT"],
    )
    .await
    .unwrap();
    let (login, password) = support::credentials("erin");
    let url = own.url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| c.dav.url = url).await;
    let mut p = Phone::new(&g, &login, &password, "gone-dav");
    p.provision().await;
    let f = folders(&p).await;
    assert_eq!(f.calendars.len(), 1);
    let uid = format!("{}@example.org", support::unique("away"));
    let text = invitation("REQUEST", &uid, "Away", &login, "");
    support::append(
        "erin",
        "INBOX",
        &[],
        &mail(&login, "Away", Some(("REQUEST", &text)), false),
    )
    .await;
    let inbox = items(&p, &f.inbox).await;
    let (id, _) = by_subject(&inbox, "Away");
    own.stop();
    let (status, cal) = respond(&p, 1, &f.inbox, id, "").await;
    assert_eq!((status.as_str(), cal), ("3", None));
}

// ---------------------------------------------------------------------------------------------
// Fixtures: the Email item of an invitation and of a cancellation, per version.

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/calendar")
}

fn render(raw: &[u8], version: eas_gateway::mime::Version) -> Vec<u8> {
    use eas_gateway::mime::{ItemOptions, MessageMeta, MessageView, body::BodyPreference};
    let view = MessageView::parse(
        raw,
        MessageMeta {
            flags: vec!["\\Seen".into()],
            internal_date: 1_904_000_000,
            size: raw.len() as u64,
        },
    );
    let prefs = [BodyPreference {
        truncation_size: Some(500),
        ..BodyPreference::new(eas_gateway::mime::BodyType::Plain)
    }];
    let opts = ItemOptions::new(version, &prefs, "10:1");
    let item = eas_gateway::backend::mail::meeting::of_in_year(&view, version, 2030);
    let mut w = Writer::new(Vec::new()).unwrap();
    w.start(a::ApplicationData).unwrap();
    eas_gateway::mime::write::write_application_data_with(
        &mut w,
        &view,
        &opts,
        item.as_ref().map(|m| m.as_meeting()).as_ref(),
    )
    .unwrap();
    w.end().unwrap();
    w.finish().unwrap()
}

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
}

#[test]
fn invitation_and_cancellation_fixtures() {
    use eas_gateway::mime::Version;
    for name in ["invitation", "cancellation"] {
        let raw = std::fs::read(fixtures().join(format!("{name}.eml"))).unwrap();
        for (v, label) in [
            (Version::V12_1, "12.1"),
            (Version::V14_1, "14.1"),
            (Version::V16_1, "16.1"),
        ] {
            check_fixture(&format!("{name}.{label}"), &render(&raw, v));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ResolveRecipients' Availability from the recipient's calendar on the same DAV server.

async fn availability(p: &Phone, to: &str) -> (String, Option<String>) {
    availability_on(p, to, "2030-06-10").await
}

async fn availability_on(p: &Phone, to: &str, day: &str) -> (String, Option<String>) {
    let xml = format!(
        r#"<ResolveRecipients xmlns="ResolveRecipients:"><To>{to}</To><Options><Availability><StartTime>{day}T08:00:00.000Z</StartTime><EndTime>{day}T12:00:00.000Z</EndTime></Availability></Options></ResolveRecipients>"#
    );
    let answer = p.send("ResolveRecipients", &xml).await;
    assert_eq!(answer.status, 200);
    let t = answer.tree();
    let a = t
        .child(rr::Response)
        .and_then(|r| r.child(rr::Recipient))
        .and_then(|r| r.child(rr::Availability))
        .unwrap_or_else(|| panic!("{}", answer.xml()));
    (
        find_text(a, rr::Status).unwrap(),
        find_text(a, rr::MergedFreeBusy),
    )
}

fn directory_file(names: &[&str]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{}.vcf", support::unique("fb-directory")));
    let mut text = String::new();
    for n in names {
        let login = support::user(n).login;
        text.push_str(&format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{n} Tester\r\nEMAIL:{login}\r\nEND:VCARD\r\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn free_busy_from_the_recipients_calendar() {
    let (asker, recipient) = ("heidi", "ivan");
    let users = [support::user(asker), support::user(recipient)];
    let own = Radicale::start_with_rights(&users, "authenticated").expect("a Radicale");
    let (login, password) = support::credentials(asker);
    let (r_login, r_password) = support::credentials(recipient);
    let d = dav(&own.url(), &r_login, &r_password);
    let home = d.discover(&[Kind::Calendar]).await.unwrap().calendar_homes[0].clone();
    let cal = home.join("cal/").unwrap();
    d.make_collection(&cal, Kind::Calendar, "Cal", &["VEVENT"])
        .await
        .unwrap();
    for (name, extra, start, end) in [
        ("busy", "", "090000", "100000"),
        ("tentative", "STATUS:TENTATIVE\r\n", "100000", "103000"),
        ("free", "TRANSP:TRANSPARENT\r\n", "110000", "120000"),
    ] {
        let text = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:fb-{name}\r\n\
DTSTAMP:20300101T000000Z\r\nDTSTART:20300610T{start}Z\r\nDTEND:20300610T{end}Z\r\n{extra}\
SUMMARY:{name}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        d.put(
            &cal.join(&format!("{name}.ics")).unwrap(),
            "text/calendar",
            text,
            eas_gateway::dav::Write::Create,
        )
        .await
        .unwrap();
    }
    // The asker's own home exists once asked for.
    dav(&own.url(), &login, &password)
        .discover(&[Kind::Calendar])
        .await
        .unwrap();
    let directory = directory_file(&[recipient]);
    let url = own.url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.directory.source = format!("vcard:{}", directory.display());
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, "freebusy");
    p.provision().await;
    // Half hours from 08:00: free, free, busy, busy, tentative, free, free (transparent), free.
    assert_eq!(
        availability(&p, &r_login).await,
        ("1".into(), Some("00221000".into()))
    );
    // The calendar server gone: ask again later.
    own.stop();
    assert_eq!(availability(&p, &r_login).await, ("162".into(), None));
}

#[tokio::test]
async fn free_busy_of_a_recipient_whose_calendar_is_not_readable() {
    // The shared Radicale gives each user their own collections only.
    let (asker, recipient) = ("judy", "kim");
    let (login, password) = support::credentials(asker);
    let (r_login, r_password) = support::credentials(recipient);
    let d = dav(&radicale().url(), &r_login, &r_password);
    let home = d.discover(&[Kind::Calendar]).await.unwrap().calendar_homes[0].clone();
    d.make_collection(
        &home.join("cal/").unwrap(),
        Kind::Calendar,
        "Cal",
        &["VEVENT"],
    )
    .await
    .unwrap();
    let directory = directory_file(&[recipient]);
    let url = radicale().url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.directory.source = format!("vcard:{}", directory.display());
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, "freebusy-denied");
    p.provision().await;
    assert_eq!(availability(&p, &r_login).await, ("163".into(), None));
}

/// Xandikos answers `free-busy-query` itself (its one principal is everyone's, so the asker's
/// own free/busy is what can be asked there).
#[tokio::test]
async fn free_busy_by_free_busy_query_on_xandikos() {
    let asker = "lena";
    let (login, password) = support::credentials(asker);
    let d = support::dav::client(Server::Xandikos, asker);
    let home = d.discover(&[Kind::Calendar]).await.unwrap().calendar_homes[0].clone();
    let cal = home.join(&format!("{}/", support::unique("fb"))).unwrap();
    d.make_collection(&cal, Kind::Calendar, "FB", &["VEVENT"])
        .await
        .unwrap();
    let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
UID:fb-xandikos\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300701T093000Z\r\n\
DTEND:20300701T103000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    d.put(
        &cal.join("fb.ics").unwrap(),
        "text/calendar",
        text.to_owned(),
        eas_gateway::dav::Write::Create,
    )
    .await
    .unwrap();
    let directory = directory_file(&[asker]);
    let url = xandikos().url();
    let g = Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.directory.source = format!("vcard:{}", directory.display());
    })
    .await;
    let mut p = Phone::new(&g, &login, &password, "freebusy-x");
    p.provision().await;
    assert_eq!(
        availability_on(&p, &login, "2030-07-01").await,
        ("1".into(), Some("00022000".into()))
    );
}

// ---------------------------------------------------------------------------------------------
// MeetingResponse by a Search result's LongId, and a 16.x proposal of another time.

/// One MeetingResponse request naming the invitation by LongId; (Status, CalendarId, whether
/// the Result carries a RequestId).
async fn respond_by_long_id(
    p: &Phone,
    response: u8,
    long_id: &str,
    extra: &str,
) -> (String, Option<String>, bool) {
    let xml = format!(
        r#"<MeetingResponse xmlns="MeetingResponse:" xmlns:search="Search:" xmlns:airsyncbase="AirSyncBase:"><Request><UserResponse>{response}</UserResponse><search:LongId>{long_id}</search:LongId>{extra}</Request></MeetingResponse>"#
    );
    let answer = p.send("MeetingResponse", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    let t = answer.tree();
    let r = t
        .child(mr::Result)
        .unwrap_or_else(|| panic!("{}", answer.xml()));
    (
        find_text(r, mr::Status).unwrap(),
        find_text(r, mr::CalendarId),
        r.child(mr::RequestId).is_some(),
    )
}

/// The LongIds a mailbox Search of the Inbox gives for `word`.
async fn search_long_ids(p: &Phone, inbox: &str, word: &str) -> Vec<String> {
    let xml = format!(
        r#"<Search xmlns="Search:" xmlns:airsync="AirSync:"><Store><Name>Mailbox</Name><Query><And><airsync:Class>Email</airsync:Class><airsync:CollectionId>{inbox}</airsync:CollectionId><FreeText>{word}</FreeText></And></Query><Options><Range>0-9</Range></Options></Store></Search>"#
    );
    let answer = p.send("Search", &xml).await;
    assert_eq!(answer.status, 200, "{}", answer.xml());
    let t = answer.tree();
    let mut out = Vec::new();
    let mut stack = vec![&t];
    while let Some(e) = stack.pop() {
        if e.tag == search::LongId {
            out.push(e.text().unwrap_or_default().to_owned());
        }
        stack.extend(e.children().iter());
    }
    out
}

/// An invitation found by Search is answered by its LongId as by its CollectionId +
/// RequestId: PARTSTAT in the CalDAV event, the REPLY at the organizer, the invitation in
/// Deleted Items; the Result has no RequestId. An unknown or malformed LongId is status 2.
#[tokio::test]
async fn an_invitation_found_by_search_is_answered_by_long_id() {
    let s = setup(Server::Radicale, "tina", "16.1").await;
    let summary = support::unique("Roadmap");
    let uid = format!("{}@example.org", support::unique("lid"));
    let text = invitation("REQUEST", &uid, &summary, &s.login, "");
    support::append(
        s.name,
        "INBOX",
        &[],
        &mail(&s.login, &summary, Some(("REQUEST", &text)), false),
    )
    .await;
    // The phone knows the folders but has never synced the Inbox: the mail comes from Search.
    let found = search_long_ids(&s.p, &s.f.inbox, &summary).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let send = "<SendResponse><airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Count me in</airsyncbase:Data></airsyncbase:Body></SendResponse>";
    let (status, cal_id, echoed) = respond_by_long_id(&s.p, 1, &found[0], send).await;
    assert_eq!(status, "1");
    assert!(!echoed, "a LongId is not echoed as a RequestId");
    let cal_id = cal_id.expect("CalendarId");
    assert!(
        s.f.calendars
            .iter()
            .any(|c| cal_id.starts_with(&format!("{c}:")))
    );
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("ACCEPTED")
    );
    let raw = arrival(ORGANIZER, &format!("Accepted: {summary}")).await;
    let reply = calendar_of(&raw);
    assert!(matches!(reply.method, meeting::Method::Reply(3)));
    assert_eq!(reply.uid, uid);
    assert!(in_mailbox(s.name, "INBOX", &summary).await.is_empty());
    assert_eq!(in_mailbox(s.name, "Trash", &summary).await.len(), 1);

    // Gone now (moved), unknown, of another form, or with a RequestId as well: 2.
    let unknown = format!("{}:1", s.f.inbox.parse::<u64>().unwrap() + 9999);
    let both = format!("<RequestId>{}</RequestId>", found[0]);
    for (long_id, extra) in [
        (found[0].as_str(), ""),
        (unknown.as_str(), ""),
        ("L10:3312", ""),
        ("", ""),
        (found[0].as_str(), both.as_str()),
    ] {
        let xml = format!(
            r#"<MeetingResponse xmlns="MeetingResponse:" xmlns:search="Search:"><Request><UserResponse>2</UserResponse><search:LongId>{long_id}</search:LongId>{extra}</Request></MeetingResponse>"#
        );
        let t = s.p.send("MeetingResponse", &xml).await.tree();
        let r = t.child(mr::Result).expect("Result");
        assert_eq!(
            find_text(r, mr::Status).as_deref(),
            Some("2"),
            "{long_id:?} {extra:?}"
        );
        assert!(r.child(mr::CalendarId).is_none());
    }
}

/// The text of an iTIP part's property lines starting with `name` (`DTSTART:` …).
fn lines_of(written: &str, name: &str) -> Vec<String> {
    written
        .lines()
        .filter(|l| l.starts_with(name))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// The iTIP part of a mail as text.
fn itip_text(raw: &[u8]) -> String {
    let view = eas_gateway::mime::MessageView::parse(
        raw,
        eas_gateway::mime::MessageMeta {
            flags: vec![],
            internal_date: 0,
            size: raw.len() as u64,
        },
    );
    let part = view.calendar_part().expect("a calendar part");
    assert_eq!(
        part.method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("COUNTER")
    );
    part.text.clone()
}

/// The stored event's text (None: not stored).
async fn stored_text(d: &DavClient, uid: &str) -> Option<String> {
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    for c in disc.collections.iter().filter(|c| c.kind == Kind::Calendar) {
        if let Some(m) = d.find_by_uid(&c.url, uid).await.unwrap().first() {
            return m.data.clone();
        }
    }
    None
}

/// A 16.1 phone proposes another time: the organizer gets an iTIP COUNTER with the proposed
/// DTSTART/DTEND (and the original as X-MS-OLK-ORIGINALSTART/END), from the Inbox and from
/// the calendar; the user's event keeps its time with the user's PARTSTAT; the Sent copy is
/// the COUNTER. A proposal ending before it starts, with an acceptance, from a 14.1 phone or
/// for a meeting that disallows it is status 2, and nothing is sent or stored.
#[tokio::test]
async fn a_16_1_phone_proposes_a_new_time() {
    let mut s = setup(Server::Radicale, "uma", "16.1").await;
    let summary = support::unique("Budget");
    let other = support::unique("Retro");
    let uid = format!("{}@example.org", support::unique("pro"));
    let other_uid = format!("{}@example.org", support::unique("pro"));
    let strict = support::unique("Strict");
    let strict_uid = format!("{}@example.org", support::unique("str"));
    for (subject, uid, extra) in [
        (&summary, &uid, ""),
        (&other, &other_uid, ""),
        (
            &strict,
            &strict_uid,
            "X-MICROSOFT-DISALLOW-COUNTER:TRUE\r\n",
        ),
    ] {
        let text = invitation("REQUEST", uid, subject, &s.login, extra);
        support::append(
            s.name,
            "INBOX",
            &[],
            &mail(&s.login, subject, Some(("REQUEST", &text)), false),
        )
        .await;
    }
    let inbox = items(&s.p, &s.f.inbox).await;
    let (id, _) = by_subject(&inbox, &summary);
    let propose = |start: &str, end: &str| {
        let end = if end.is_empty() {
            String::new()
        } else {
            format!("<ProposedEndTime>{end}</ProposedEndTime>")
        };
        format!(
            "<SendResponse><airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Later?</airsyncbase:Data></airsyncbase:Body><ProposedStartTime>{start}</ProposedStartTime>{end}</SendResponse>"
        )
    };

    // Refused: an end before the start, an acceptance, a meeting that disallows it.
    for (answer, id, send) in [
        (2, id, propose("20300610T113000Z", "20300610T103000Z")),
        (1, id, propose("20300610T113000Z", "20300610T123000Z")),
        (
            3,
            id,
            "<SendResponse><ProposedEndTime>20300610T123000Z</ProposedEndTime></SendResponse>"
                .to_owned(),
        ),
        (
            2,
            &by_subject(&inbox, &strict).0,
            propose("20300610T113000Z", ""),
        ),
    ] {
        let (status, cal_id) = respond(&s.p, answer, &s.f.inbox, id, &send).await;
        assert_eq!((status.as_str(), cal_id), ("2", None), "{send}");
    }
    // Below 16.0 there are no proposals.
    s.p.version = "14.1";
    let (status, _) = respond(
        &s.p,
        2,
        &s.f.inbox,
        id,
        &propose("20300610T113000Z", "20300610T123000Z"),
    )
    .await;
    assert_eq!(status, "2");
    s.p.version = "16.1";
    assert_eq!(stored_partstat(&s.d, &uid, &s.login).await, None);
    assert!(stored_partstat(&s.d, &strict_uid, &s.login).await.is_none());

    // From the Inbox, tentatively, 11:30 to 12:30 instead of 9 to 10.
    let (status, cal_id) = respond(
        &s.p,
        2,
        &s.f.inbox,
        id,
        &propose("20300610T113000Z", "20300610T123000Z"),
    )
    .await;
    assert_eq!(status, "1");
    assert!(cal_id.is_some());
    let raw = arrival(ORGANIZER, &format!("New Time Proposed: {summary}")).await;
    let counter = itip_text(&raw);
    assert_eq!(
        lines_of(&counter, "METHOD:"),
        ["METHOD:COUNTER"],
        "{counter}"
    );
    assert_eq!(
        lines_of(&counter, "DTSTART"),
        ["DTSTART:20300610T113000Z"],
        "{counter}"
    );
    assert_eq!(
        lines_of(&counter, "DTEND"),
        ["DTEND:20300610T123000Z"],
        "{counter}"
    );
    assert_eq!(
        lines_of(&counter, "X-MS-OLK-ORIGINALSTART"),
        ["X-MS-OLK-ORIGINALSTART:20300610T090000Z"]
    );
    assert!(counter.contains(&format!("UID:{uid}")), "{counter}");
    assert!(
        counter.contains(&format!("PARTSTAT=TENTATIVE:mailto:{}", s.login)),
        "{counter}"
    );
    // The user's event keeps the organizer's time, with the user's answer.
    let stored = stored_text(&s.d, &uid).await.expect("stored");
    assert!(stored.contains("DTSTART:20300610T090000Z"), "{stored}");
    assert_eq!(
        stored_partstat(&s.d, &uid, &s.login).await.as_deref(),
        Some("TENTATIVE")
    );
    let copy = arrival_in(s.name, "Sent", &format!("New Time Proposed: {summary}")).await;
    assert_eq!(
        lines_of(&itip_text(&copy), "DTSTART"),
        ["DTSTART:20300610T113000Z"]
    );

    // From the calendar, declining, with a start only: the meeting keeps its hour.
    let (oid, _) = by_subject(&inbox, &other);
    let (status, cal_id) = respond(&s.p, 1, &s.f.inbox, oid, "").await;
    assert_eq!(status, "1");
    let cal_id = cal_id.expect("CalendarId");
    let cal_folder = cal_id.split(':').next().unwrap().to_owned();
    let (status, _) = respond(
        &s.p,
        3,
        &cal_folder,
        &cal_id,
        &propose("2030-06-11T14:00:00.000Z", ""),
    )
    .await;
    assert_eq!(status, "1");
    let raw = arrival(ORGANIZER, &format!("New Time Proposed: {other}")).await;
    let counter = itip_text(&raw);
    assert_eq!(
        lines_of(&counter, "DTSTART"),
        ["DTSTART:20300611T140000Z"],
        "{counter}"
    );
    assert_eq!(
        lines_of(&counter, "DTEND"),
        ["DTEND:20300611T150000Z"],
        "{counter}"
    );
    assert!(counter.contains("PARTSTAT=DECLINED"), "{counter}");
    assert_eq!(
        stored_partstat(&s.d, &other_uid, &s.login).await.as_deref(),
        Some("DECLINED")
    );
    assert!(
        stored_text(&s.d, &other_uid)
            .await
            .unwrap()
            .contains("DTSTART:20300610T090000Z")
    );
}

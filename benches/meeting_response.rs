//! MeetingResponse (accept an invitation from the Inbox: the event stored in the default
//! calendar, the iTIP REPLY submitted) through the gateway, side by side with the DAV round
//! trips it needs made straight to the server, on a private Radicale (the default) or
//! Xandikos, Dovecot and Postfix.
//!
//! ```text
//! cargo bench --bench meeting_response -- [--rounds 40] [--events 200] [--xandikos]
//! ```
//!
//! Two calendars are measured in one run: an empty one and one holding `--events` events
//! (one user each; on Xandikos, which serves one principal, only the second). Every round appends a new invitation (a fresh UID) to the user's Inbox
//! over IMAP, then times one 16.1 MeetingResponse (UserResponse 1, CollectionId Inbox,
//! RequestId `<Inbox>:<UID>`, SendResponse) from the phone's request to its answer.
//!
//! References, straight to the server with the same HTTP client settings: the GET of
//! `<UID>.ics` (404) and the PUT of the new object (`If-None-Match: *`), which is what the
//! gateway asks of the DAV server for an invitation not stored yet; and the `calendar-query`
//! for the UID that finding the event by query alone would cost (the earlier design).

use std::time::{Duration, Instant};

use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::imap::Session;
use eas_gateway::secret::Secret;
use eas_testbed::{Dovecot, Gateway, Phone, Postfix, Radicale, TestUser, Xandikos, find_text};
use eas_wbxml::tags::{folderhierarchy as fh, meetingresponse as mr};
use reqwest::Url;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let p50 = quantile(&times, 0.5);
    println!(
        "  {name:<52} p50 {:>8.2} ms   p90 {:>8.2} ms   (n={})",
        ms(p50),
        ms(quantile(&times, 0.9)),
        times.len()
    );
    p50
}

const ORGANIZER: &str = "org@example.com";

fn invitation(uid: &str, attendee: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nMETHOD:REQUEST\r\n\
BEGIN:VEVENT\r\nUID:{uid}\r\nSEQUENCE:0\r\nDTSTAMP:20300501T080000Z\r\n\
DTSTART:20300610T090000Z\r\nDTEND:20300610T100000Z\r\nSUMMARY:Bench meeting\r\n\
LOCATION:Room 7\r\nORGANIZER;CN=Org:mailto:{ORGANIZER}\r\n\
ATTENDEE;PARTSTAT=NEEDS-ACTION;RSVP=TRUE:mailto:{attendee}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

fn mail(uid: &str, attendee: &str) -> Vec<u8> {
    format!(
        "From: Org <{ORGANIZER}>\r\nTo: {attendee}\r\nSubject: Invitation {uid}\r\n\
Message-ID: <{uid}>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
Please come.\r\n--b\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n{}\r\n--b--\r\n",
        invitation(uid, attendee)
    )
    .into_bytes()
}

fn event(i: usize) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n\
UID:bench-event-{i}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:2026{m:02}{d:02}T{h:02}0000Z\r\n\
DTEND:2026{m:02}{d:02}T{h2:02}0000Z\r\nSUMMARY:Meeting {i}\r\nLOCATION:Room {r}\r\n\
DESCRIPTION:Agenda: numbers\\, plans\\, questions.\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        m = i % 12 + 1,
        d = i % 28 + 1,
        h = 8 + i % 9,
        h2 = 9 + i % 9,
        r = i % 40
    )
}

struct Account {
    user: TestUser,
    /// The DAV user (Xandikos has one principal).
    dav_login: String,
    calendar: Url,
}

async fn prepare(
    user: TestUser,
    dav_login: &str,
    server_url: &str,
    name: &str,
    events: usize,
) -> Account {
    let dav = client(server_url, dav_login, &user.password);
    let disc = dav.discover(&[Kind::Calendar]).await.unwrap();
    let calendar = disc.calendar_homes[0].join(&format!("{name}/")).unwrap();
    dav.make_collection(&calendar, Kind::Calendar, name, &["VEVENT"])
        .await
        .unwrap();
    for chunk in (0..events).collect::<Vec<_>>().chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let member = calendar.join(&format!("bench-{i}.ics")).unwrap();
            let dav = dav.clone();
            set.spawn(async move {
                dav.put(&member, "text/calendar", event(i), Write::Create)
                    .await
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    }
    Account {
        user,
        dav_login: dav_login.to_owned(),
        calendar,
    }
}

fn client(url: &str, login: &str, password: &str) -> DavClient {
    let mut settings = DavSettings::new(Url::parse(url).unwrap());
    settings.timeout = Duration::from_secs(60);
    let settings = std::sync::Arc::new(settings);
    DavClient::new(
        http_client(&settings).unwrap(),
        settings,
        login,
        Secret::new(password.to_owned()),
    )
}

async fn append(dovecot: &Dovecot, user: &TestUser, message: &[u8]) -> u32 {
    let mut s = Session::connect(&dovecot.imap_config()).await.unwrap();
    s.login(&user.login, &user.password).await.unwrap();
    let uid = s
        .append("INBOX", &[], message)
        .await
        .unwrap()
        .expect("APPENDUID");
    let _ = s.logout().await;
    uid
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    label: &str,
    gw: &Gateway,
    dovecot: &Dovecot,
    server_url: &str,
    a: &Account,
    rounds: usize,
    device: &str,
) -> (Duration, Duration) {
    println!("\n{label}, {rounds} rounds");
    let mut phone = Phone::new(gw, &a.user.login, &a.user.password, device);
    phone.version = "16.1";
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let inbox = fs
        .child(fh::Changes)
        .unwrap()
        .children_with(fh::Add)
        .find(|f| find_text(f, fh::Type).as_deref() == Some("2"))
        .and_then(|f| find_text(f, fh::ServerId))
        .expect("Inbox");
    let dav = client(server_url, &a.dav_login, &a.user.password);
    let (mut gateway, mut direct, mut query) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 3 {
        // One warm-up round's worth per kind: pools, sessions, Radicale's caches.
        let warm = round < 3;
        let uid = format!("bench-{device}-{round}@example.org");
        let imap_uid = append(dovecot, &a.user, &mail(&uid, &a.user.login)).await;
        let request = format!(
            r#"<MeetingResponse xmlns="MeetingResponse:"><Request><UserResponse>1</UserResponse><CollectionId>{inbox}</CollectionId><RequestId>{inbox}:{imap_uid}</RequestId><SendResponse/></Request></MeetingResponse>"#
        );
        let t = Instant::now();
        let answer = phone.send("MeetingResponse", &request).await;
        let took = t.elapsed();
        let tree = answer.tree();
        let status = tree
            .child(mr::Result)
            .and_then(|r| find_text(r, mr::Status));
        assert_eq!(status.as_deref(), Some("1"), "{}", answer.xml());
        if !warm {
            gateway.push(took);
        }

        // The same round trips straight to the server, for another UID.
        let other = format!("direct-{device}-{round}@example.org");
        let url = a
            .calendar
            .join(&format!("{}.ics", other.replace('@', "%40")))
            .unwrap();
        let t = Instant::now();
        assert!(dav.get(&url).await.is_err());
        dav.put(
            &url,
            "text/calendar; charset=utf-8",
            invitation(&other, &a.user.login).replace("METHOD:REQUEST\r\n", ""),
            Write::Create,
        )
        .await
        .unwrap();
        if !warm {
            direct.push(t.elapsed());
        }
        let t = Instant::now();
        let found = dav.find_by_uid(&a.calendar, &other).await.unwrap();
        if !warm {
            query.push(t.elapsed());
        }
        assert_eq!(found.len(), 1);
    }
    let g = report(
        "gateway: MeetingResponse (accept, stored, REPLY sent)",
        gateway,
    );
    let d = report("direct: GET <UID>.ics (404) + PUT", direct);
    report("direct: calendar-query by UID (reference)", query);
    println!(
        "  gateway p50 - direct p50 = {:.2} ms (IMAP fetch, parse, SMTP submission, HTTP)",
        ms(g.saturating_sub(d))
    );
    (g, d)
}

#[tokio::main]
async fn main() {
    let rounds = arg("--rounds", 40);
    let events = arg("--events", 200);
    let on_xandikos = flag("--xandikos");

    let empty = TestUser::new("empty@example.com", "empty-Secret-1");
    let full = TestUser::new("full@example.com", "full-Secret-1");
    let organizer = TestUser::new(ORGANIZER, "org-Secret-1");
    let users = [empty.clone(), full.clone(), organizer];
    let dovecot = Dovecot::start(&users).expect("Dovecot");
    let postfix = Postfix::start(&dovecot, &["example.com"]).expect("Postfix");
    let (server_url, radicale, xandikos) = if on_xandikos {
        let x = Xandikos::start("bench").expect("Xandikos");
        (x.url(), None, Some(x))
    } else {
        let r = Radicale::start(&users).expect("Radicale");
        (r.url(), Some(r), None)
    };
    let login = |u: &TestUser| {
        if on_xandikos {
            "bench".to_owned()
        } else {
            u.login.clone()
        }
    };
    // Xandikos serves one principal: both accounts would share its calendars and the
    // default (the first by URL), so a Xandikos run measures the `--events` calendar only,
    // named to sort before Xandikos's own `calendar`.
    let a_empty = if on_xandikos {
        None
    } else {
        Some(prepare(empty.clone(), &login(&empty), &server_url, "empty", 0).await)
    };
    let t = Instant::now();
    let a_full = prepare(full.clone(), &login(&full), &server_url, "a-bench", events).await;
    println!(
        "seeded {events} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let submission = postfix.submission_port();
    let gw_url = server_url.clone();
    let gw = Gateway::start(dovecot.imap_config(), move |c| {
        c.dav.url = gw_url;
        if on_xandikos {
            c.dav.user_template = Some("bench".into());
        }
        c.smtp.host = "127.0.0.1".into();
        c.smtp.port = submission;
        c.smtp.security = "none".into();
        c.smtp.auth = "user".into();
    })
    .await;
    let server = if on_xandikos { "Xandikos" } else { "Radicale" };
    let g0 = match &a_empty {
        Some(a) => Some(
            measure(
                &format!("empty calendar on {server}"),
                &gw,
                &dovecot,
                &server_url,
                a,
                rounds,
                "empty",
            )
            .await
            .0,
        ),
        None => None,
    };
    let (g1, _) = measure(
        &format!("{events} events on {server}"),
        &gw,
        &dovecot,
        &server_url,
        &a_full,
        rounds,
        "full",
    )
    .await;
    match g0 {
        Some(g0) => println!(
            "\nMeetingResponse p50: {:.1} ms empty, {:.1} ms with {events} events (target <= 100 ms)",
            ms(g0),
            ms(g1)
        ),
        None => println!(
            "\nMeetingResponse p50: {:.1} ms with {events} events (target <= 100 ms)",
            ms(g1)
        ),
    }
    drop((radicale, xandikos));
}

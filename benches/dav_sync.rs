//! Contacts and calendars through the gateway against the same objects fetched from the DAV
//! server directly, side by side in one run, on a private Radicale (the default) or Xandikos.
//!
//! ```text
//! cargo bench --bench dav_sync -- [--contacts 5000] [--events 2000] [--rounds 3] [--idle 200]
//!                                 [--window 100] [--xandikos]
//! ```
//!
//! The address book holds `--contacts` realistic vCards (names, two e-mails, three numbers, an
//! address, company, title, birthday, a note; every tenth with a 12 KB photo); the calendar
//! `--events` events over two years, every tenth a weekly series, every fortieth of those
//! series with a moved and a cancelled occurrence (RECURRENCE-ID override and EXDATE).
//!
//! Initial sync. Direct: one `sync-collection` REPORT with no token (the hrefs), then the
//! objects with `addressbook-multiget` / `calendar-multiget` — once as one request for
//! everything (the fastest a client can ask) and once in batches of 100 (what a client
//! paging like a phone asks); the bodies are read, not parsed. Gateway: a new provisioned
//! phone's Sync pages from key 0 with WindowSize `--window` until no MoreAvailable, every
//! item parsed and re-encoded as EAS WBXML by the gateway. Each round is a new device.
//!
//! No-change Sync. Direct: `sync-collection` with the current token (the answer is empty).
//! Gateway: the phone's Sync with its current key, nothing changed (an empty answer).

use std::time::{Duration, Instant};

use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::secret::Secret;
use eas_testbed::{Dovecot, Gateway, Phone, Radicale, TestUser, Xandikos, find_text};
use eas_wbxml::tags::folderhierarchy as fh;
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
        "  {name:<46} p50 {:>9.3} ms   p90 {:>9.3} ms   (n={})",
        ms(p50),
        ms(quantile(&times, 0.9)),
        times.len()
    );
    p50
}

/// A photo-sized blob (not a real JPEG: the gateway passes photo bytes through unread).
fn photo(i: usize) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..12 * 1024)
        .map(|j| ((i * 31 + j * 7) % 251) as u8)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn vcard(i: usize) -> String {
    let mut v = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-{i}\r\nFN:Person{i} Lastname{i}\r\n\
         N:Lastname{i};Person{i};;;\r\nEMAIL;TYPE=INTERNET,WORK:person{i}@example.com\r\n\
         EMAIL;TYPE=INTERNET,HOME:p{i}@home.example.org\r\nTEL;TYPE=CELL:+1 555 {i:04}\r\n\
         TEL;TYPE=WORK:+1 556 {i:04}\r\nTEL;TYPE=HOME:+1 557 {i:04}\r\n\
         ADR;TYPE=WORK:;;{i} Main Street;Springfield;IL;62701;USA\r\nORG:Example Inc;Sales\r\n\
         TITLE:Account manager\r\nBDAY:1980-{m:02}-{d:02}\r\n\
         NOTE:Met at the conference in {y}. Prefers e-mail.\r\n",
        m = i % 12 + 1,
        d = i % 28 + 1,
        y = 2000 + i % 25
    );
    if i % 10 == 0 {
        v.push_str(&format!("PHOTO;ENCODING=b;TYPE=JPEG:{}\r\n", photo(i)));
    }
    v.push_str("END:VCARD\r\n");
    v
}

fn event(i: usize) -> String {
    // Spread over two years from 2026-01-05, office hours, in one named zone.
    let day = i % 700;
    let start = time::Date::from_calendar_date(2026, time::Month::January, 5).unwrap()
        + time::Duration::days(day as i64);
    let ymd = |d: time::Date| format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day());
    let hour = 8 + i % 9;
    let mut e = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//eas-gateway//bench//EN\r\n\
         BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
         RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
         END:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\n\
         RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
         END:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
         BEGIN:VEVENT\r\nUID:bench-event-{i}\r\nDTSTAMP:20260101T000000Z\r\n\
         DTSTART;TZID=Europe/Berlin:{s}T{hour:02}0000\r\nDTEND;TZID=Europe/Berlin:{s}T{h2:02}0000\r\n\
         SUMMARY:Meeting {i} about the quarterly numbers\r\nLOCATION:Room {r}\r\n\
         DESCRIPTION:Agenda: numbers\\, plans\\, questions.\r\n\
         BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:Reminder\r\nEND:VALARM\r\n",
        s = ymd(start),
        h2 = hour + 1,
        r = i % 40
    );
    let recurring = i % 10 == 0;
    let exceptions = recurring && i % 40 == 0;
    if recurring {
        e.push_str("RRULE:FREQ=WEEKLY;COUNT=20\r\n");
    }
    if exceptions {
        let cancelled = start + time::Duration::days(14);
        e.push_str(&format!(
            "EXDATE;TZID=Europe/Berlin:{}T{hour:02}0000\r\n",
            ymd(cancelled)
        ));
    }
    e.push_str("END:VEVENT\r\n");
    if exceptions {
        let moved = start + time::Duration::days(7);
        e.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:bench-event-{i}\r\nDTSTAMP:20260101T000000Z\r\n\
             RECURRENCE-ID;TZID=Europe/Berlin:{m}T{hour:02}0000\r\n\
             DTSTART;TZID=Europe/Berlin:{m}T{h3:02}0000\r\nDTEND;TZID=Europe/Berlin:{m}T{h4:02}0000\r\n\
             SUMMARY:Meeting {i} (moved)\r\nEND:VEVENT\r\n",
            m = ymd(moved),
            h3 = hour.min(15) + 2,
            h4 = hour.min(15) + 3
        ));
    }
    e.push_str("END:VCALENDAR\r\n");
    e
}

/// What the direct client and the seeding need of one collection.
struct Collection {
    url: Url,
    hrefs: Vec<String>,
    kind: Kind,
}

/// Makes the collection and fills it. `files`: Radicale's storage folder of the collection,
/// written directly (Radicale's file system store is meant to be; one PUT at a time takes
/// Radicale longer the fuller the collection gets, about 2 per second at 2,000 contacts);
/// without it every object is PUT.
async fn seed(
    dav: &DavClient,
    home: &Url,
    name: &str,
    kind: Kind,
    n: usize,
    make: fn(usize) -> String,
    files: Option<std::path::PathBuf>,
) -> Collection {
    let url = home.join(&format!("{name}/")).unwrap();
    dav.make_collection(&url, kind, name, &[]).await.unwrap();
    let (ext, ct) = match kind {
        Kind::AddressBook => ("vcf", "text/vcard; charset=utf-8"),
        Kind::Calendar => ("ics", "text/calendar; charset=utf-8"),
    };
    let mut hrefs = Vec::with_capacity(n);
    let t = Instant::now();
    if let Some(dir) = files {
        for i in 0..n {
            let file = format!("bench-{i}.{ext}");
            std::fs::write(dir.join(&file), make(i)).unwrap();
            hrefs.push(url.join(&file).unwrap().path().to_owned());
        }
        // Radicale reads and caches each new file once, at the first request that lists
        // them: done here, outside every measurement.
        let listed = dav.list(&url).await.unwrap();
        assert_eq!(listed.len(), n, "Radicale lists what was written");
        println!(
            "seeded {n} into {name} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        return Collection { url, hrefs, kind };
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let member = url.join(&format!("bench-{i}.{ext}")).unwrap();
            hrefs.push(member.path().to_owned());
            let dav = dav.clone();
            set.spawn(async move { dav.put(&member, ct, make(i), Write::Create).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    }
    println!(
        "seeded {n} into {name} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Collection { url, hrefs, kind }
}

const XML: &str = "application/xml; charset=utf-8";

fn sync_collection_body(token: Option<&str>) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#,
        token.unwrap_or("")
    )
}

fn multiget_body(kind: Kind, hrefs: &[String]) -> String {
    let (root, ns, data) = match kind {
        Kind::AddressBook => (
            "addressbook-multiget",
            "urn:ietf:params:xml:ns:carddav",
            "address-data",
        ),
        Kind::Calendar => (
            "calendar-multiget",
            "urn:ietf:params:xml:ns:caldav",
            "calendar-data",
        ),
    };
    let mut b = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><c:{root} xmlns:d="DAV:" xmlns:c="{ns}"><d:prop><d:getetag/><c:{data}/></d:prop>"#
    );
    for h in hrefs {
        b.push_str(&format!("<d:href>{h}</d:href>"));
    }
    b.push_str(&format!("</c:{root}>"));
    b
}

/// A REPORT straight to the server; the whole answer is read.
async fn report_raw(
    http: &reqwest::Client,
    url: &Url,
    auth: (&str, &str),
    depth: &str,
    body: String,
) -> Vec<u8> {
    let r = http
        .request(reqwest::Method::from_bytes(b"REPORT").unwrap(), url.clone())
        .basic_auth(auth.0, Some(auth.1))
        .header("Depth", depth)
        .header("Content-Type", XML)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().as_u16() == 207, "REPORT: {}", r.status());
    r.bytes().await.unwrap().to_vec()
}

fn token_in(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let start = text.find("sync-token>").expect("a sync-token") + "sync-token>".len();
    let end = text[start..].find('<').unwrap() + start;
    text[start..end].to_owned()
}

async fn direct(
    http: &reqwest::Client,
    c: &Collection,
    auth: (&str, &str),
    rounds: usize,
    idle: usize,
) -> (Duration, Duration, Duration) {
    let (mut all, mut batched, mut nothing) = (Vec::new(), Vec::new(), Vec::new());
    let mut token = String::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let listing = report_raw(http, &c.url, auth, "1", sync_collection_body(None)).await;
        let got = report_raw(http, &c.url, auth, "1", multiget_body(c.kind, &c.hrefs)).await;
        all.push(t.elapsed());
        assert!(got.len() > c.hrefs.len() * 100);
        token = token_in(&listing);

        let t = Instant::now();
        report_raw(http, &c.url, auth, "1", sync_collection_body(None)).await;
        for batch in c.hrefs.chunks(100) {
            report_raw(http, &c.url, auth, "1", multiget_body(c.kind, batch)).await;
        }
        batched.push(t.elapsed());
    }
    for _ in 0..idle {
        let t = Instant::now();
        let body = report_raw(http, &c.url, auth, "1", sync_collection_body(Some(&token))).await;
        nothing.push(t.elapsed());
        assert!(!String::from_utf8_lossy(&body).contains("<d:href>bench"));
    }
    (
        report("direct: sync-collection + one multiget", all),
        report("direct: sync-collection + multiget of 100s", batched),
        report("direct: sync-collection, nothing new", nothing),
    )
}

/// Sync `folder` from key 0 to the end as a new phone; returns the time and the final key.
async fn initial(phone: &Phone, folder: &str, options: &str, window: usize) -> (Duration, String) {
    let t = Instant::now();
    let first = phone.try_sync(folder, "0", "").await.unwrap();
    assert_eq!(first.status, "1", "initial Sync of {folder}");
    if std::env::var_os("DAV_BENCH_TRACE").is_some() {
        println!("    key 0: {:.1} ms", ms(t.elapsed()));
    }
    let mut key = first.key;
    let mut items = 0;
    let trace = std::env::var_os("DAV_BENCH_TRACE").is_some();
    loop {
        let asked = Instant::now();
        let page = phone
            .try_sync(
                folder,
                &key,
                &format!("<GetChanges/><WindowSize>{window}</WindowSize>{options}"),
            )
            .await
            .unwrap();
        assert!(page.empty || page.status == "1", "Sync page: {page:?}");
        items += page.added.len();
        if trace {
            println!(
                "    page: {} items, {:.1} ms",
                page.added.len(),
                ms(asked.elapsed())
            );
        }
        if page.empty || (!page.more && page.added.is_empty()) {
            break;
        }
        key = page.key;
        if !page.more {
            break;
        }
    }
    let took = t.elapsed();
    assert!(items > 0, "no items in {folder}");
    (took, key)
}

async fn through_gateway(
    gw: &Gateway,
    user: &TestUser,
    (kind, name): (u8, &str),
    options: &str,
    rounds: usize,
    idle: usize,
    window: usize,
) -> (Duration, Duration) {
    let (mut first, mut nothing) = (Vec::new(), Vec::new());
    let mut last = None;
    for r in 0..rounds {
        let mut phone = Phone::new(
            gw,
            &user.login,
            &user.password,
            &format!("DAVBENCH{kind}R{r}"),
        );
        phone.provision().await;
        let fs = phone.folder_sync("0").await;
        // The seeded collection by its name (a server may hold others: Xandikos makes a
        // default address book and calendar of its own), of the class asked for.
        let class = |t: Option<String>| match t.as_deref() {
            Some("9" | "14") => 9,
            Some("8" | "13") => 8,
            _ => 0,
        };
        let folder = fs
            .child(fh::Changes)
            .unwrap()
            .children_with(fh::Add)
            .find(|add| {
                class(find_text(add, fh::Type)) == kind
                    && find_text(add, fh::DisplayName).as_deref() == Some(name)
            })
            .and_then(|add| find_text(add, fh::ServerId))
            .expect("the folder in FolderSync");
        let (took, key) = initial(&phone, &folder, options, window).await;
        first.push(took);
        if std::env::var_os("DAV_BENCH_TRACE").is_some() {
            for line in gw.metrics().await.lines() {
                if line.starts_with("eas_dav_round_trip_seconds_sum")
                    || line.starts_with("eas_dav_round_trip_seconds_count")
                    || line.contains("read_ahead")
                {
                    println!("    {line}");
                }
            }
        }
        last = Some((phone, folder, key));
    }
    let (phone, folder, key) = last.unwrap();
    for _ in 0..idle {
        let t = Instant::now();
        let page = phone
            .try_sync(&folder, &key, &format!("<GetChanges/>{options}"))
            .await
            .unwrap();
        nothing.push(t.elapsed());
        assert!(page.empty || page.key == key, "something changed: {page:?}");
    }
    (
        report("gateway: Sync pages from key 0", first),
        report("gateway: Sync, nothing new", nothing),
    )
}

#[tokio::main]
async fn main() {
    let contacts = arg("--contacts", 5000);
    let events = arg("--events", 2000);
    let rounds = arg("--rounds", 3);
    let idle = arg("--idle", 200);
    let window = arg("--window", 100);
    let on_xandikos = flag("--xandikos");

    let user = TestUser::new("bench@example.com", "bench-Secret-1");
    let dovecot = Dovecot::start(std::slice::from_ref(&user)).expect("Dovecot");
    // Xandikos serves one principal and checks no password; the gateway still logs in to
    // IMAP with the user's.
    let (server_url, dav_login, radicale, _xandikos) = if on_xandikos {
        let x = Xandikos::start("bench").expect("Xandikos");
        (x.url(), "bench".to_owned(), None, Some(x))
    } else {
        let r = Radicale::start(std::slice::from_ref(&user)).expect("Radicale");
        (r.url(), user.login.clone(), Some(r), None)
    };
    let mut settings = DavSettings::new(Url::parse(&server_url).unwrap());
    settings.timeout = Duration::from_secs(1800);
    let settings = std::sync::Arc::new(settings);
    let dav = DavClient::new(
        http_client(&settings).unwrap(),
        settings,
        &dav_login,
        Secret::new(user.password.clone()),
    );
    let disc = dav
        .discover(&[Kind::AddressBook, Kind::Calendar])
        .await
        .unwrap();
    let storage = |name: &str| {
        radicale.as_ref().map(|r| {
            r.storage()
                .join("collection-root")
                .join(&user.login)
                .join(name)
        })
    };
    let book = seed(
        &dav,
        &disc.addressbook_homes[0],
        "contacts",
        Kind::AddressBook,
        contacts,
        vcard,
        storage("contacts"),
    )
    .await;
    let calendar = seed(
        &dav,
        &disc.calendar_homes[0],
        "calendar",
        Kind::Calendar,
        events,
        event,
        storage("calendar"),
    )
    .await;

    let gw_url = server_url.clone();
    let gw = Gateway::start(dovecot.imap_config(), move |c| {
        c.dav.url = gw_url;
        // Radicale answers slowly at this size; the bench measures, it does not give up.
        c.dav.timeout_secs = 600;
        if on_xandikos {
            c.dav.user_template = Some("bench".into());
        }
    })
    .await;
    let http = reqwest::Client::new();
    let auth = (dav_login.as_str(), user.password.as_str());
    let body = r#"<Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>32768</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>"#;
    let calendar_options = r#"<Options><FilterType>0</FilterType><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>32768</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>"#;
    let server = if on_xandikos { "Xandikos" } else { "Radicale" };

    if contacts > 0 {
        println!(
            "\n{contacts} contacts on {server}, {rounds} rounds, {idle} no-change Syncs, window {window}"
        );
        let (one, batched, none) = direct(&http, &book, auth, rounds, idle).await;
        let (gw_first, gw_none) =
            through_gateway(&gw, &user, (9, "contacts"), body, rounds, idle, window).await;
        ratios(one, batched, none, gw_first, gw_none);
    }
    if events == 0 {
        return;
    }

    println!(
        "\n{events} events on {server}, {rounds} rounds, {idle} no-change Syncs, window {window}"
    );
    let (one, batched, none) = direct(&http, &calendar, auth, rounds, idle).await;
    let (gw_first, gw_none) = through_gateway(
        &gw,
        &user,
        (8, "calendar"),
        calendar_options,
        rounds,
        idle,
        window,
    )
    .await;
    ratios(one, batched, none, gw_first, gw_none);
}

fn ratios(one: Duration, batched: Duration, none: Duration, gw_first: Duration, gw_none: Duration) {
    let r = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    println!(
        "  initial: gateway / one multiget {:.2}x, / multiget of 100s {:.2}x (target <= 1.5x); \
         no change: gateway / sync-collection {:.2}x (target <= 1.2x)",
        r(gw_first, one),
        r(gw_first, batched),
        r(gw_none, none)
    );
}

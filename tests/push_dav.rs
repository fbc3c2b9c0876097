//! Push for address books and calendars, end to end: a phone's Ping on a contacts or calendar
//! folder, the gateway in process, mail on the private Dovecot, the collections on a private
//! Radicale or Xandikos changed straight on the DAV server (as another client would). The
//! interval check wakes the Ping; Radicale's storage hook running the shipped
//! `contrib/radicale/eas-dav-hook` wakes it well under a second; nothing changed is answered at
//! the heartbeat; one watcher per user whatever the number of its devices; calendar and task
//! folders and a held Sync on an address book wake too; a DAV server that stops costs no error
//! and push resumes when it is back.

mod eas;
mod support;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes, sync_to_end};
use eas_gateway::dav::{DavClient, Kind, Write};
use eas_testbed::Radicale;
use eas_wbxml::Element;
use eas_wbxml::tags::ping as p;
use reqwest::Url;
use support::dav::{Server, dav, radicale, xandikos};

const VCARD: &str = "text/vcard; charset=utf-8";
const ICS: &str = "text/calendar; charset=utf-8";

fn card(uid: &str, name: &str) -> String {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n")
}

fn event(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
DTSTAMP:20250101T000000Z\r\nDTSTART:20300101T100000Z\r\nDTEND:20300101T110000Z\r\n\
SUMMARY:Pushed\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
}

/// The gateway on `url`, checking the collections every `check_secs`.
async fn gateway(url: String, check_secs: u64, user_template: Option<String>) -> Gateway {
    Gateway::start(support::dovecot().imap_config(), move |c| {
        c.dav.url = url;
        c.dav.user_template = user_template;
        c.dav.push_check_secs = check_secs;
        c.push.min_heartbeat_secs = 2;
        c.push.max_heartbeat_secs = 600;
        c.push.watcher_grace_secs = 2;
        c.sync.min_wait_secs = 1;
    })
    .await
}

/// A fresh address book (Radicale) or the one Xandikos has, with one contact.
async fn address_book(d: &DavClient, server: Server, name: &str) -> Url {
    let disc = d.discover(&[Kind::AddressBook]).await.unwrap();
    let book = match server {
        Server::Radicale => {
            let book = disc.addressbook_homes[0]
                .join(&format!("{}/", support::unique("book")))
                .unwrap();
            d.make_collection(&book, Kind::AddressBook, name, &[])
                .await
                .unwrap();
            book
        }
        Server::Xandikos => disc.addressbook_homes[0].join("addressbook/").unwrap(),
    };
    let uid = support::unique("first");
    d.put(
        &book.join(&format!("{uid}.vcf")).unwrap(),
        VCARD,
        card(&uid, "First"),
        Write::Create,
    )
    .await
    .unwrap();
    book
}

/// A provisioned phone that has synced the folder named `name` (of `kind`, or any DAV kind);
/// returns it with the folder's id.
async fn phone_on(
    g: &Gateway,
    user: &str,
    device: &str,
    pick: impl Fn(u8, &str) -> bool,
) -> (Phone, String) {
    let (login, password) = support::credentials(user);
    let mut ph = Phone::new(g, &login, &password, device);
    ph.provision().await;
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let f = folders
        .iter()
        .find(|f| pick(f.kind, &f.name))
        .unwrap_or_else(|| panic!("no such folder in {folders:?}"));
    sync_to_end(&ph, &f.id, "0").await;
    (ph, f.id.clone())
}

fn named(name: &str) -> impl Fn(u8, &str) -> bool + '_ {
    move |_, n| n == name
}

fn ping_xml(heartbeat: u64, folders: &[(&str, &str)]) -> String {
    let f: String = folders
        .iter()
        .map(|(id, class)| format!("<Folder><Id>{id}</Id><Class>{class}</Class></Folder>"))
        .collect();
    format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>{heartbeat}</HeartbeatInterval><Folders>{f}</Folders></Ping>"#
    )
}

/// Status and changed folders of a Ping answer.
fn outcome(tree: &Element) -> (String, Vec<String>) {
    let status = find_text(tree, p::Status).unwrap_or_default();
    let folders = tree
        .child(p::Folders)
        .map(|f| {
            f.children_with(p::Folder)
                .filter_map(|x| x.text().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status, folders)
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn waiting(g: &Gateway) -> usize {
    g.state.hub.counts().0
}

fn dav_watchers(g: &Gateway) -> (usize, u64) {
    let d = g.state.hub.dav().expect("DAV watchers");
    (
        d.watchers(),
        d.counters()
            .started
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// A contact added on the server wakes a Ping on its folder at the next check.
async fn interval_wakes_contacts(server: Server, user: &str) {
    let (login, password) = support::credentials(user);
    let (url, template) = match server {
        Server::Radicale => (radicale().url(), None),
        Server::Xandikos => (xandikos().url(), Some(xandikos().user().to_owned())),
    };
    let d = match server {
        Server::Radicale => dav(&url, &login, &password),
        Server::Xandikos => support::dav::client(server, user),
    };
    let name = support::unique("Friends");
    let book = address_book(&d, server, &name).await;
    let g = gateway(url, 1, template).await;
    // Xandikos has one address book, the default Contacts folder.
    let xandikos = matches!(server, Server::Xandikos);
    let (ph, coll) = phone_on(&g, user, "DAVPUSH1", |kind, n| {
        if xandikos { kind == 9 } else { n == name }
    })
    .await;
    let held_req = ping_xml(60, &[(&coll, "Contacts")]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        wait_for("the Ping to wait", || waiting(&g) == 1).await;
        // The registration's own check finds nothing new first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let uid = support::unique("new");
        d.put(
            &book.join(&format!("{uid}.vcf")).unwrap(),
            VCARD,
            card(&uid, "Pushed Person"),
            Write::Create,
        )
        .await
        .unwrap();
        Instant::now()
    };
    let (r, changed) = tokio::join!(held, act);
    let latency = changed.elapsed();
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![coll]), "{}", r.xml());
    // One check interval (1 s) plus a check and the answer.
    assert!(latency < Duration::from_secs(3), "{latency:?}");
}

#[tokio::test]
async fn a_change_on_radicale_wakes_a_contacts_ping_at_the_next_check() {
    interval_wakes_contacts(Server::Radicale, "lena").await;
}

#[tokio::test]
async fn a_change_on_xandikos_wakes_a_contacts_ping_at_the_next_check() {
    interval_wakes_contacts(Server::Xandikos, "max").await;
}

#[tokio::test]
async fn without_a_change_the_ping_is_answered_at_its_heartbeat() {
    let user = "nora";
    let (login, password) = support::credentials(user);
    let d = dav(&radicale().url(), &login, &password);
    let name = support::unique("Quiet");
    address_book(&d, Server::Radicale, &name).await;
    let g = gateway(radicale().url(), 1, None).await;
    let (ph, coll) = phone_on(&g, user, "DAVPUSH2", named(&name)).await;
    let started = Instant::now();
    let r = ph.send("Ping", &ping_xml(3, &[(&coll, "Contacts")])).await;
    let took = started.elapsed();
    assert_eq!(outcome(&r.tree()).0, "1", "{}", r.xml());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "heartbeat ±1 s: {took:?}"
    );
    // The phone's own Add reaches the server and its snapshot: no wake for it.
    let add = format!(
        r#"<Sync xmlns="AirSync:" xmlns:contacts="Contacts:"><Collections><Collection><SyncKey>{}</SyncKey><CollectionId>{coll}</CollectionId><Commands><Add><ClientId>c1</ClientId><ApplicationData><contacts:FirstName>Own</contacts:FirstName></ApplicationData></Add></Commands></Collection></Collections></Sync>"#,
        sync_to_end(&ph, &coll, "0").await
    );
    assert_eq!(ph.send("Sync", &add).await.status, 200);
    let key = sync_to_end(&ph, &coll, "0").await;
    let _ = key;
    let r = ph.send("Ping", &ping_xml(2, &[(&coll, "Contacts")])).await;
    assert_eq!(outcome(&r.tree()).0, "1", "{}", r.xml());
}

#[tokio::test]
async fn two_devices_of_one_user_share_one_watcher() {
    let user = "oscar";
    let (login, password) = support::credentials(user);
    let d = dav(&radicale().url(), &login, &password);
    let name = support::unique("Shared");
    let book = address_book(&d, Server::Radicale, &name).await;
    let g = gateway(radicale().url(), 1, None).await;
    let (ph1, coll1) = phone_on(&g, user, "DAVPUSH3A", named(&name)).await;
    let (ph2, coll2) = phone_on(&g, user, "DAVPUSH3B", named(&name)).await;
    assert_eq!(dav_watchers(&g), (0, 0));
    let r1 = ping_xml(60, &[(&coll1, "Contacts")]);
    let r2 = ping_xml(60, &[(&coll2, "Contacts")]);
    let held1 = ph1.send("Ping", &r1);
    let held2 = ph2.send("Ping", &r2);
    let act = async {
        wait_for("both Pings to wait", || waiting(&g) == 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(dav_watchers(&g), (1, 1), "(watchers, watchers started)");
        // Waiting on an address book alone holds no IMAP connection.
        assert_eq!(g.state.hub.counts(), (2, 0), "(waiting, IMAP connections)");
        let uid = support::unique("both");
        d.put(
            &book.join(&format!("{uid}.vcf")).unwrap(),
            VCARD,
            card(&uid, "For Both"),
            Write::Create,
        )
        .await
        .unwrap();
    };
    let (a, b, ()) = tokio::join!(held1, held2, act);
    assert_eq!(outcome(&a.tree()), ("2".into(), vec![coll1]));
    assert_eq!(outcome(&b.tree()), ("2".into(), vec![coll2]));
    // Nobody waits any more: the watcher ends at its next look.
    wait_for("the watcher to end", || dav_watchers(&g).0 == 0).await;
    assert!(
        g.metrics()
            .await
            .contains("eas_push_dav_watchers_started_total 1")
    );
}

#[tokio::test]
async fn a_calendar_folder_wakes_too() {
    let user = "pia";
    let (login, password) = support::credentials(user);
    let d = dav(&radicale().url(), &login, &password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let cal = disc.calendar_homes[0]
        .join(&format!("{}/", support::unique("cal")))
        .unwrap();
    let name = support::unique("Agenda");
    d.make_collection(&cal, Kind::Calendar, &name, &["VEVENT"])
        .await
        .unwrap();
    let g = gateway(radicale().url(), 1, None).await;
    let (ph, coll) = phone_on(&g, user, "DAVPUSH4", |kind, n| {
        n == name && matches!(kind, 8 | 13)
    })
    .await;
    let held_req = ping_xml(60, &[(&coll, "Calendar")]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        wait_for("the Ping to wait", || waiting(&g) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let uid = support::unique("ev");
        d.put(
            &cal.join(&format!("{uid}.ics")).unwrap(),
            ICS,
            event(&uid),
            Write::Create,
        )
        .await
        .unwrap();
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![coll]), "{}", r.xml());
}

/// The shipped hook, as Radicale runs it.
fn hook_script() -> String {
    format!(
        "{}/contrib/radicale/eas-dav-hook",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn radicales_hook_wakes_the_ping_well_under_a_second() {
    let user = "quinn";
    let (login, password) = support::credentials(user);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("push.secret");
    std::fs::write(&secret, "a secret shared with the hook\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let users: Vec<_> = support::USERS.iter().map(|u| support::user(u)).collect();
    let g_secret = secret.clone();
    // The hook is told where the gateway's listener will be: a free port.
    let listen = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    drop(listen);
    let hook = format!(
        "{} --target 127.0.0.1:{port} --secret {} %(user)s",
        hook_script(),
        secret.display()
    );
    let r = Radicale::start_with_hook(&users, Some(&hook)).unwrap();
    let g = Gateway::start(support::dovecot().imap_config(), {
        let url = r.url();
        move |c| {
            c.dav.url = url;
            c.dav.push_hook = true;
            c.dav.push_safety_check_secs = 900;
            c.push.min_heartbeat_secs = 2;
            // Mail keeps its IMAP watchers: the listener runs for the hook alone.
            c.push.events_listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.push.events_secret_file = g_secret;
        }
    })
    .await;
    let d = dav(&r.url(), &login, &password);
    let name = support::unique("Hooked");
    let book = address_book(&d, Server::Radicale, &name).await;
    let (ph, coll) = phone_on(&g, user, "DAVPUSH5", named(&name)).await;
    let mut latencies = Vec::new();
    for round in 0..3 {
        let held_req = ping_xml(60, &[(&coll, "Contacts")]);
        let held = ph.send("Ping", &held_req);
        let act = async {
            wait_for("the Ping to wait", || waiting(&g) == 1).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let uid = support::unique("hooked");
            let started = Instant::now();
            d.put(
                &book.join(&format!("{uid}.vcf")).unwrap(),
                VCARD,
                card(&uid, "Hooked"),
                Write::Create,
            )
            .await
            .unwrap();
            started
        };
        let (answer, started) = tokio::join!(held, act);
        latencies.push(started.elapsed());
        assert_eq!(
            outcome(&answer.tree()),
            ("2".into(), vec![coll.clone()]),
            "round {round}: {}",
            answer.xml()
        );
        sync_to_end(&ph, &coll, "0").await;
        wait_for("the Ping to end", || waiting(&g) == 0).await;
    }
    // From the PUT being sent (Radicale runs the hook before answering it) to the Ping's
    // answer: the issue's 1 s bound (measured ~0.1 s, docs/benchmarks.md); the safety check
    // is 900 s away, so only the hook can have woken it.
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(1)),
        "{latencies:?}"
    );
    let m = g.metrics().await;
    assert!(
        m.contains("eas_push_dav_hook_total{result=\"checked\"} 3"),
        "{m}"
    );
    r.stop();
}

#[tokio::test]
async fn a_stopped_dav_server_costs_no_error_and_push_resumes() {
    let user = "rosa";
    let (login, password) = support::credentials(user);
    let users: Vec<_> = support::USERS.iter().map(|u| support::user(u)).collect();
    let r = Radicale::start(&users).unwrap();
    let d = dav(&r.url(), &login, &password);
    let name = support::unique("Outage");
    let book = address_book(&d, Server::Radicale, &name).await;
    let g = gateway(r.url(), 1, None).await;
    let (ph, coll) = phone_on(&g, user, "DAVPUSH6", named(&name)).await;

    r.pause();
    let started = Instant::now();
    let a = ph.send("Ping", &ping_xml(3, &[(&coll, "Contacts")])).await;
    let took = started.elapsed();
    assert_eq!(a.status, 200);
    assert_eq!(outcome(&a.tree()).0, "1", "{}", a.xml());
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let failed = g
        .state
        .hub
        .dav()
        .unwrap()
        .counters()
        .failed
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failed >= 1, "the checks failed meanwhile");

    r.resume().unwrap();
    let held_req = ping_xml(60, &[(&coll, "Contacts")]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        wait_for("the Ping to wait", || waiting(&g) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let uid = support::unique("back");
        d.put(
            &book.join(&format!("{uid}.vcf")).unwrap(),
            VCARD,
            card(&uid, "Back Again"),
            Write::Create,
        )
        .await
        .unwrap();
    };
    let (b, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&b.tree()), ("2".into(), vec![coll]), "{}", b.xml());
    r.stop();
}

fn todo(uid: &str) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\nUID:{uid}\r\n\
DTSTAMP:20250101T000000Z\r\nSUMMARY:Pushed task\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"
    )
}

#[tokio::test]
async fn a_task_folder_wakes_too_and_a_held_sync_on_an_address_book() {
    let user = "sam";
    let (login, password) = support::credentials(user);
    let d = dav(&radicale().url(), &login, &password);
    let disc = d.discover(&[Kind::Calendar]).await.unwrap();
    let list = disc.calendar_homes[0]
        .join(&format!("{}/", support::unique("todo")))
        .unwrap();
    let name = support::unique("Chores");
    d.make_collection(&list, Kind::Calendar, &name, &["VTODO"])
        .await
        .unwrap();
    let book_name = support::unique("Held");
    let book = address_book(&d, Server::Radicale, &book_name).await;
    let g = gateway(radicale().url(), 1, None).await;
    let (ph, tasks) = phone_on(&g, user, "DAVPUSH7", |kind, n| {
        n == name && matches!(kind, 7 | 15)
    })
    .await;
    let held_req = ping_xml(60, &[(&tasks, "Tasks")]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        wait_for("the Ping to wait", || waiting(&g) == 1).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let uid = support::unique("task");
        d.put(
            &list.join(&format!("{uid}.ics")).unwrap(),
            ICS,
            todo(&uid),
            Write::Create,
        )
        .await
        .unwrap();
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![tasks]), "{}", r.xml());

    // A Sync held on the address book answers with the new contact.
    let (login, password) = support::credentials(user);
    let mut ph2 = Phone::new(&g, &login, &password, "DAVPUSH7S");
    ph2.provision().await;
    let (folders, _, _) = folder_changes(&ph2.folder_sync("0").await);
    let coll = folders
        .iter()
        .find(|f| f.name == book_name)
        .unwrap()
        .id
        .clone();
    let key = sync_to_end(&ph2, &coll, "0").await;
    let xml = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId></Collection></Collections><HeartbeatInterval>60</HeartbeatInterval></Sync>"#
    );
    let started = Instant::now();
    let held = ph2.send("Sync", &xml);
    let act = async {
        wait_for("the Sync to wait", || waiting(&g) == 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let uid = support::unique("held");
        d.put(
            &book.join(&format!("{uid}.vcf")).unwrap(),
            VCARD,
            card(&uid, "Held Sync"),
            Write::Create,
        )
        .await
        .unwrap();
    };
    let (answer, ()) = tokio::join!(held, act);
    assert_eq!(answer.status, 200);
    let tree = answer.tree();
    let adds = tree
        .child(eas_wbxml::tags::airsync::Collections)
        .and_then(|c| c.child(eas_wbxml::tags::airsync::Collection))
        .and_then(|c| c.child(eas_wbxml::tags::airsync::Commands))
        .map_or(0, |c| {
            c.children_with(eas_wbxml::tags::airsync::Add).count()
        });
    assert_eq!(adds, 1, "{}", answer.xml());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

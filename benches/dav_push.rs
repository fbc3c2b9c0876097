//! Push for address books: how fast a change made on the DAV server reaches a waiting phone,
//! and what the push check costs the DAV server.
//!
//! ```text
//! cargo bench --bench dav_push -- [--contacts 1000] [--checks 50] [--changes 50]
//!                                 [--interval 1] [--interval-changes 20]
//! ```
//!
//! 1. Cost of one check at `--contacts` contacts (realistic vCards, every tenth with a photo),
//!    on Radicale and Xandikos, `--checks` times each: the Depth-0 PROPFIND for the sync token
//!    alone (what the watcher sends), the same for sync token and CTag together (what it sent
//!    before), the CTag alone (the fallback), and the Depth-1 listing a server without either
//!    needs.
//! 2. Hook: a private Radicale whose `[storage] hook` runs the shipped
//!    `contrib/radicale/eas-dav-hook`, the gateway with `dav.push_hook` (safety interval 900 s,
//!    so only the hook can wake the phone in time). A phone Pings on the address book, a new
//!    vCard is PUT straight on Radicale, and the time from the PUT being sent to the Ping's
//!    answer is taken, `--changes` times (the phone syncs between two changes).
//! 3. Interval: the same without the hook, `dav.push_check_secs = --interval`, on Radicale and
//!    Xandikos; each change comes at a random moment within the interval.

use std::time::{Duration, Instant};

use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::secret::Secret;
use eas_testbed::{
    Dovecot, Gateway, Phone, Radicale, TestUser, Xandikos, find_text, folder_changes, sync_to_end,
};
use eas_wbxml::tags::ping as p;
use reqwest::Url;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "  {name:<52} p50 {:>8.1} ms   p90 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms   (n={})",
        ms(quantile(&times, 0.5)),
        ms(quantile(&times, 0.9)),
        ms(quantile(&times, 0.99)),
        ms(*times.last().unwrap()),
        times.len()
    );
}

fn vcard(i: usize) -> String {
    vcard_with(i, &format!("bench-{i}"))
}

fn vcard_with(i: usize, uid: &str) -> String {
    let mut v = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:Person{i} Lastname{i}\r\n\
         N:Lastname{i};Person{i};;;\r\nEMAIL;TYPE=INTERNET,WORK:person{i}@example.com\r\n\
         TEL;TYPE=CELL:+1 555 {i:04}\r\nTEL;TYPE=WORK:+1 556 {i:04}\r\n\
         ADR;TYPE=WORK:;;{i} Main Street;Springfield;IL;62701;USA\r\nORG:Example Inc;Sales\r\n\
         TITLE:Account manager\r\nNOTE:Met at the conference. Prefers e-mail.\r\n"
    );
    if i % 10 == 0 {
        use base64::Engine;
        let bytes: Vec<u8> = (0..12 * 1024)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect();
        v.push_str(&format!(
            "PHOTO;ENCODING=b;TYPE=JPEG:{}\r\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ));
    }
    v.push_str("END:VCARD\r\n");
    v
}

const VCARD: &str = "text/vcard; charset=utf-8";

fn client(url: &str, login: &str, password: &str) -> DavClient {
    let mut s = DavSettings::new(Url::parse(url).unwrap());
    s.timeout = Duration::from_secs(600);
    let s = std::sync::Arc::new(s);
    DavClient::new(
        http_client(&s).unwrap(),
        s,
        login,
        Secret::new(password.to_owned()),
    )
}

/// The address book with `n` contacts: written as files into Radicale's storage (then listed
/// once, so Radicale has read them before anything is measured), PUT on Xandikos.
async fn seed(dav: &DavClient, book: &Url, n: usize, files: Option<std::path::PathBuf>) {
    let t = Instant::now();
    if let Some(dir) = files {
        for i in 0..n {
            std::fs::write(dir.join(format!("bench-{i}.vcf")), vcard(i)).unwrap();
        }
        assert_eq!(dav.list(book).await.unwrap().len(), n);
    } else {
        for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
            let mut set = tokio::task::JoinSet::new();
            for &i in chunk {
                let (dav, member) = (dav.clone(), book.join(&format!("bench-{i}.vcf")).unwrap());
                set.spawn(async move { dav.put(&member, VCARD, vcard(i), Write::Create).await });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap().unwrap();
            }
        }
    }
    println!(
        "  seeded {n} contacts in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

const SYNC_TOKEN_ONLY: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>"#;
const TOKEN_AND_CTAG: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:sync-token/><cs:getctag/></d:prop></d:propfind>"#;
const CTAG_ONLY: &str = r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/"><d:prop><cs:getctag/></d:prop></d:propfind>"#;

async fn propfind0(http: &reqwest::Client, url: &Url, auth: (&str, &str), body: &str) {
    let r = http
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            url.clone(),
        )
        .basic_auth(auth.0, Some(auth.1))
        .header("Depth", "0")
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    r.bytes().await.unwrap();
}

/// Section 1: what one check costs the server.
async fn check_cost(server: &str, dav: &DavClient, book: &Url, auth: (&str, &str), n: usize) {
    println!("\none check on {server} (address book as seeded):");
    let http = reqwest::Client::new();
    // Warm both connections and the server's caches.
    for _ in 0..3 {
        dav.sync_token(book).await.unwrap();
        propfind0(&http, book, auth, TOKEN_AND_CTAG).await;
    }
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        assert!(dav.sync_token(book).await.unwrap().is_some());
        times.push(t.elapsed());
    }
    report("DavClient::sync_token (sync-token alone, Depth 0)", times);
    for (name, body) in [
        ("PROPFIND Depth 0: sync-token alone (raw)", SYNC_TOKEN_ONLY),
        (
            "PROPFIND Depth 0: sync-token + getctag (before)",
            TOKEN_AND_CTAG,
        ),
        ("PROPFIND Depth 0: getctag alone (fallback)", CTAG_ONLY),
    ] {
        let mut times = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            propfind0(&http, book, auth, body).await;
            times.push(t.elapsed());
        }
        report(name, times);
    }
    let mut times = Vec::new();
    for _ in 0..n.min(20) {
        let t = Instant::now();
        dav.listing(book).await.unwrap();
        times.push(t.elapsed());
    }
    report("PROPFIND Depth 1 listing (servers without either)", times);
}

fn ping_xml(heartbeat: u64, coll: &str) -> String {
    format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>{heartbeat}</HeartbeatInterval><Folders><Folder><Id>{coll}</Id><Class>Contacts</Class></Folder></Folders></Ping>"#
    )
}

/// Sections 2 and 3: `changes` times, a Ping held on the address book, a vCard PUT straight on
/// the server after `delay()`, the time from the PUT being sent to the Ping's answer (and from
/// the PUT's answer, after which Radicale has run its hook).
async fn wake_latency(
    name: &str,
    gw: &Gateway,
    user: &TestUser,
    dav: &DavClient,
    book: &Url,
    changes: usize,
    delay: impl Fn() -> Duration,
) {
    let mut ph = Phone::new(
        gw,
        &user.login,
        &user.password,
        &format!("BENCH{}", rand_tag()),
    );
    ph.provision().await;
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let coll = folders
        .iter()
        .find(|f| f.kind == 9)
        .expect("Contacts")
        .id
        .clone();
    let mut key = sync_to_end(&ph, &coll, "0").await;
    let (mut from_put, mut from_answer) = (Vec::new(), Vec::new());
    for i in 0..changes {
        let body = ping_xml(600, &coll);
        let held = async {
            let r = ph.send("Ping", &body).await;
            (r, Instant::now())
        };
        let act = async {
            while gw.state.hub.counts().0 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The registration's own check is over before the change.
            tokio::time::sleep(Duration::from_millis(200) + delay()).await;
            let uid = format!("push-{}-{i}", rand_tag());
            let member = book.join(&format!("{uid}.vcf")).unwrap();
            let sent = Instant::now();
            dav.put(&member, VCARD, vcard_with(i + 1, &uid), Write::Create)
                .await
                .unwrap();
            (sent, Instant::now())
        };
        let ((answer, at), (sent, answered)) = tokio::join!(held, act);
        assert_eq!(
            find_text(&answer.tree(), p::Status).as_deref(),
            Some("2"),
            "{}",
            answer.xml()
        );
        from_put.push(at - sent);
        from_answer.push(at.saturating_duration_since(answered));
        key = sync_to_end(&ph, &coll, &key).await;
        while gw.state.hub.counts().0 != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    report(&format!("{name}: PUT sent -> Ping answered"), from_put);
    report(
        &format!("{name}: PUT answered -> Ping answered"),
        from_answer,
    );
}

fn rand_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[tokio::main]
async fn main() {
    let contacts = arg("--contacts", 1000);
    let checks = arg("--checks", 50);
    let changes = arg("--changes", 50);
    let interval = arg("--interval", 1) as u64;
    let interval_changes = arg("--interval-changes", 20);

    let user = TestUser::new("bench@example.com", "bench-Secret-1");
    let dovecot = Dovecot::start(std::slice::from_ref(&user)).expect("Dovecot");
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("push.secret");
    std::fs::write(&secret, "bench secret\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!(
        "{}/contrib/radicale/eas-dav-hook --target 127.0.0.1:{port} --secret {} %(user)s",
        env!("CARGO_MANIFEST_DIR"),
        secret.display()
    );
    let radicale = Radicale::start_with_hook(std::slice::from_ref(&user), Some(&hook)).unwrap();
    let xandikos = Xandikos::start("bench").expect("Xandikos");

    let r_dav = client(&radicale.url(), &user.login, &user.password);
    let home = r_dav
        .discover(&[Kind::AddressBook])
        .await
        .unwrap()
        .addressbook_homes[0]
        .clone();
    let r_book = home.join("contacts/").unwrap();
    r_dav
        .make_collection(&r_book, Kind::AddressBook, "Contacts", &[])
        .await
        .unwrap();
    println!("Radicale:");
    let files = radicale
        .storage()
        .join("collection-root")
        .join(&user.login)
        .join("contacts");
    seed(&r_dav, &r_book, contacts, Some(files)).await;
    let x_dav = client(&xandikos.url(), "bench", "unused");
    let x_book = x_dav
        .discover(&[Kind::AddressBook])
        .await
        .unwrap()
        .addressbook_homes[0]
        .join("addressbook/")
        .unwrap();
    println!("Xandikos:");
    seed(&x_dav, &x_book, contacts, None).await;

    check_cost(
        "Radicale",
        &r_dav,
        &r_book,
        (&user.login, &user.password),
        checks,
    )
    .await;
    check_cost("Xandikos", &x_dav, &x_book, ("bench", "unused"), checks).await;

    println!("\nwake-ups ({contacts} contacts in the address book):");
    {
        let (url, secret) = (radicale.url(), secret.clone());
        let gw = Gateway::start(dovecot.imap_config(), move |c| {
            c.dav.url = url;
            c.dav.push_hook = true;
            c.dav.push_safety_check_secs = 900;
            c.push.events_listen = format!("127.0.0.1:{port}").parse().unwrap();
            c.push.events_secret_file = secret;
        })
        .await;
        wake_latency(
            "Radicale hook",
            &gw,
            &user,
            &r_dav,
            &r_book,
            changes,
            || Duration::ZERO,
        )
        .await;
    }
    let random_phase = || Duration::from_secs_f64(rand::random::<f64>() * interval as f64);
    for (name, url, template, dav, book) in [
        ("Radicale", radicale.url(), None, &r_dav, &r_book),
        (
            "Xandikos",
            xandikos.url(),
            Some("bench".to_owned()),
            &x_dav,
            &x_book,
        ),
    ] {
        let gw = Gateway::start(dovecot.imap_config(), move |c| {
            c.dav.url = url;
            c.dav.user_template = template;
            c.dav.push_check_secs = interval;
        })
        .await;
        wake_latency(
            &format!("{name} every {interval} s"),
            &gw,
            &user,
            dav,
            book,
            interval_changes,
            random_phase,
        )
        .await;
    }
}

//! The demo (`scripts/demo.sh`): a private Dovecot with a demo user and a few messages, a private
//! Radicale with a few contacts, events and tasks for the same user, and the gateway in front of
//! them on HTTPS with a self-signed certificate and the embedded state store. Prints what to type
//! into a phone; runs until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum_server::Handle;
use clap::Args;

use eas_gateway::config::{Config, PushSource};
use eas_gateway::dav::{DavClient, DavSettings, Kind, Write, http_client};
use eas_gateway::http::{self, AppState};
use eas_gateway::imap::Session;
use eas_gateway::secret::Secret;
use eas_testbed::{Dovecot, Postfix, Radicale, TestUser, Tuning};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the gateway listens.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Directory for Dovecot, the certificate and the state (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Host name or address phones use to reach this machine (default: its first non-loopback
    /// address).
    #[arg(long)]
    pub host: Option<String>,
    /// What wakes waiting phones: `imap` (NOTIFY/IDLE watchers), `dovecot-events` (the private
    /// Dovecot runs contrib/dovecot/eas-push.lua and sends its events) or `both`.
    #[arg(long, default_value = "imap", value_parser = ["imap", "dovecot-events", "both"])]
    pub push: String,
}

const DEMO_USER: &str = "demo@example.com";
const DEMO_PASSWORD: &str = "demo-password";

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("eas-demo-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let user = TestUser {
        login: DEMO_USER.into(),
        password: DEMO_PASSWORD.into(),
    };
    let dovecot_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dovecot_dir)?;
    let source = match args.push.as_str() {
        "dovecot-events" => PushSource::DovecotEvents,
        "both" => PushSource::Both,
        _ => PushSource::Imap,
    };
    let events_port = if source == PushSource::Imap {
        None
    } else {
        Some(
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    };
    let tuning = Tuning {
        events_port,
        ..Tuning::default()
    };
    let mut dovecot = Dovecot::start_in_tuned(&dovecot_dir, std::slice::from_ref(&user), &tuning)?;
    seed(&dovecot, &user).await?;

    let host = args
        .host
        .clone()
        .unwrap_or_else(|| guess_host().to_string());
    let (cert, key) = self_signed(&dir, &host)?;
    let mut config = Config::default();
    config.server.listen = args.listen;
    config.server.public_url = format!("https://{host}:{}", args.listen.port());
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(key);
    let imap = dovecot.imap_config();
    config.imap.host = imap.host.clone();
    config.imap.port = imap.port;
    config.imap.security = "none".into();
    config.state.url = format!("sqlite:{}", dir.join("state.db").display());
    // Sending works when a private Postfix can run next to Dovecot (Postfix installed, root);
    // it delivers only to the demo domain, over LMTP into the same Dovecot.
    let domain = DEMO_USER.rsplit('@').next().unwrap_or("example.com");
    let postfix = match Postfix::start(&dovecot, &[domain]) {
        Ok(p) => {
            config.smtp.host = "127.0.0.1".into();
            config.smtp.port = p.submission_port();
            config.smtp.security = "none".into();
            Some(p)
        }
        Err(e) => {
            println!("Sending is off in this demo: {e}");
            None
        }
    };
    // Contacts, calendars and tasks from a private Radicale, when it is installed.
    let radicale = match Radicale::start(std::slice::from_ref(&user)) {
        Ok(r) => match seed_dav(&r.url(), &user).await {
            Ok(()) => {
                config.dav.url = r.url();
                Some(r)
            }
            Err(e) => {
                println!("Contacts and calendars are off in this demo: Radicale: {e}");
                None
            }
        },
        Err(e) => {
            println!("Contacts and calendars are off in this demo: {e}");
            None
        }
    };
    config.push.source = source;
    if let (Some(port), Some(secret)) = (events_port, dovecot.events_secret_path()) {
        config.push.events_listen = SocketAddr::from(([127, 0, 0, 1], port));
        config.push.events_secret_file = secret;
    }
    config.validate()?;

    println!();
    println!("eas-gateway demo is running. On a phone, add an Exchange account:");
    println!("  email:     {DEMO_USER}");
    println!("  password:  {DEMO_PASSWORD}");
    println!("  server:    {host}:{}", args.listen.port());
    println!("  domain:    (leave empty)   SSL: on   accept the self-signed certificate");
    println!("  URL:       {}", config.activesync_url());
    println!(
        "Dovecot (IMAP, plain) for other clients: 127.0.0.1:{}",
        imap.port
    );
    if let Some(p) = &postfix {
        println!(
            "Postfix (submission, AUTH as the demo user) on 127.0.0.1:{}; mail to @{domain} \
             arrives in this Dovecot",
            p.submission_port()
        );
    }
    if let Some(r) = &radicale {
        println!(
            "Radicale (CardDAV/CalDAV, as the demo user) on {}: three contacts, three events \
             and two tasks the phone shows",
            r.url()
        );
    }
    match events_port {
        Some(port) => println!(
            "Push: Dovecot's own events (contrib/dovecot/eas-push.lua) to 127.0.0.1:{port}; \
             waiting phones hold no IMAP connection"
        ),
        None => {
            println!("Push: IMAP NOTIFY/IDLE watchers (--push dovecot-events for Dovecot's events)")
        }
    }
    println!("Files: {}   Stop with Ctrl-C.", dir.display());
    println!();

    let state = Arc::new(AppState::new(config)?);
    let handle = Handle::new();
    let stopper = handle.clone();
    let hub = state.hub.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        hub.shutdown();
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let served = http::serve(state, handle).await;
    if let Some(mut p) = postfix {
        p.stop();
    }
    if let Some(r) = radicale {
        r.stop();
    }
    dovecot.stop();
    served?;
    Ok(())
}

/// A handful of messages so the phone has something to show.
async fn seed(dovecot: &Dovecot, user: &TestUser) -> anyhow::Result<()> {
    let mut session = Session::connect(&dovecot.imap_config()).await?;
    session.login(&user.login, &user.password).await?;
    // A demo restarted with `--dir` keeps its mailbox; seeding again would duplicate it.
    if session.select("INBOX").await?.exists > 0 {
        let _ = session.logout().await;
        return Ok(());
    }
    let samples = [
        (
            "Alice Example <alice@example.org>",
            "Welcome to eas-gateway",
            "This message lives in a private Dovecot.\r\nChanges you make on the phone land there.",
        ),
        (
            "Bob Example <bob@example.org>",
            "Lunch on Friday?",
            "Shall we try the new place around the corner?",
        ),
        (
            "Carol Example <carol@example.org>",
            "Grüße aus Berlin",
            "Non-ASCII subjects and bodies work too: äöü ß €.",
        ),
    ];
    for (i, (from, subject, body)) in samples.iter().enumerate() {
        let message = format!(
            "From: {from}\r\nTo: {DEMO_USER}\r\nSubject: {subject}\r\nDate: Mon, 2{i} Nov 2026 09:0{i}:00 +0000\r\n\
             Message-ID: <demo-{i}@example.org>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
        );
        session.append("INBOX", &[], message.as_bytes()).await?;
    }
    let _ = session.logout().await;
    Ok(())
}

/// A few contacts, events and tasks in the demo user's Radicale, so a phone shows some.
async fn seed_dav(url: &str, user: &TestUser) -> anyhow::Result<()> {
    let settings = Arc::new(DavSettings::new(reqwest::Url::parse(url)?));
    let dav = DavClient::new(
        http_client(&settings)?,
        settings,
        &user.login,
        Secret::new(user.password.clone()),
    );
    let found = dav.discover(&[Kind::AddressBook, Kind::Calendar]).await?;
    let (Some(cards), Some(cals)) = (
        found.addressbook_homes.first(),
        found.calendar_homes.first(),
    ) else {
        anyhow::bail!("no address book or calendar home for {}", user.login);
    };
    let book = cards.join("contacts/")?;
    dav.make_collection(&book, Kind::AddressBook, "Contacts", &[])
        .await?;
    let calendar = cals.join("calendar/")?;
    dav.make_collection(&calendar, Kind::Calendar, "Calendar", &["VEVENT"])
        .await?;
    let tasks = cals.join("tasks/")?;
    dav.make_collection(&tasks, Kind::Calendar, "Tasks", &["VTODO"])
        .await?;
    let cards = [
        (
            "alice",
            "Alice;Example",
            "Alice Example",
            "alice@example.org",
            "+1 555 0101",
        ),
        (
            "bob",
            "Bob;Example",
            "Bob Example",
            "bob@example.org",
            "+1 555 0102",
        ),
        (
            "carol",
            "Carol;Example",
            "Carol Example",
            "carol@example.org",
            "+49 30 1234567",
        ),
    ];
    for (uid, n, fn_, email, tel) in cards {
        let (given, family) = n.split_once(';').unwrap_or((n, ""));
        let card = format!(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:demo-{uid}\r\nFN:{fn_}\r\nN:{family};{given};;;\r\n\
             EMAIL;TYPE=INTERNET:{email}\r\nTEL;TYPE=CELL:{tel}\r\nORG:Example\r\nEND:VCARD\r\n"
        );
        dav.put(
            &book.join(&format!("{uid}.vcf"))?,
            "text/vcard; charset=utf-8",
            card,
            Write::Create,
        )
        .await?;
    }
    // Events around today, so the phone's default window (two weeks back) shows them.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |offset: i64| {
        let d = today + time::Duration::days(offset);
        format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let events = [
        (
            "standup",
            "Stand-up",
            format!(
                "DTSTART:{}T080000Z\r\nDTEND:{}T081500Z\r\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR\r\n",
                day(-7),
                day(-7)
            ),
        ),
        (
            "lunch",
            "Lunch with Bob",
            format!(
                "DTSTART:{}T110000Z\r\nDTEND:{}T120000Z\r\nLOCATION:The new place\r\n",
                day(1),
                day(1)
            ),
        ),
        (
            "holiday",
            "Day off",
            format!(
                "DTSTART;VALUE=DATE:{}\r\nDTEND;VALUE=DATE:{}\r\n",
                day(3),
                day(4)
            ),
        ),
    ];
    for (uid, summary, when) in events {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//eas-gateway//demo//EN\r\nBEGIN:VEVENT\r\n\
             UID:demo-{uid}\r\nDTSTAMP:{}T000000Z\r\n{when}SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            day(0)
        );
        dav.put(
            &calendar.join(&format!("{uid}.ics"))?,
            "text/calendar; charset=utf-8",
            ics,
            Write::Create,
        )
        .await?;
    }
    for (uid, summary, due) in [
        ("report", "Send the report", 2),
        ("plants", "Water the plants", 0),
    ] {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//eas-gateway//demo//EN\r\nBEGIN:VTODO\r\n\
             UID:demo-{uid}\r\nDTSTAMP:{}T000000Z\r\nDUE;VALUE=DATE:{}\r\nSUMMARY:{summary}\r\n\
             END:VTODO\r\nEND:VCALENDAR\r\n",
            day(0),
            day(due)
        );
        dav.put(
            &tasks.join(&format!("{uid}.ics"))?,
            "text/calendar; charset=utf-8",
            ics,
            Write::Create,
        )
        .await?;
    }
    Ok(())
}

/// The first non-loopback address, found by asking the routing table (nothing is sent).
fn guess_host() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// A self-signed certificate for the host (and localhost), written as PEM files.
fn self_signed(dir: &std::path::Path, host: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let names = vec![host.to_owned(), "localhost".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
    Ok((cert_path, key_path))
}

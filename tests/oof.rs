//! Out of Office end to end: the phone's Settings Oof Get/Set through the real gateway over
//! HTTP, kept as a Sieve vacation section in the user's scripts on the test Dovecot's
//! ManageSieve (Pigeonhole), checked on the server (CHECKSCRIPT), around the user's own rules
//! (which come back byte for byte), and — with the test Postfix as Dovecot's submission
//! host — the reply a message delivered over LMTP gets, and stops getting.

mod eas;
mod support;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text};
use eas_gateway::sieve::managesieve::Client;
use eas_gateway::sieve::{SieveConfig, script};
use eas_testbed::{Dovecot, Tuning};
use eas_wbxml::Element;
use eas_wbxml::tags::settings as st;

fn dovecot() -> &'static Dovecot {
    let _ = support::TUNING.set(Tuning {
        sieve: true,
        ..Tuning::default()
    });
    support::dovecot()
}

fn sieve_config(port: u16) -> SieveConfig {
    SieveConfig {
        enabled: true,
        host: "127.0.0.1".into(),
        port,
        security: "none".into(),
        timeout_secs: 5,
        ..SieveConfig::default()
    }
}

async fn gateway() -> Gateway {
    let d = dovecot();
    let port = d.sieve_port().expect("Dovecot with ManageSieve");
    Gateway::start(d.imap_config(), |c| c.sieve = sieve_config(port)).await
}

async fn phone(g: &Gateway, user: &str, version: &'static str) -> Phone {
    let (login, password) = support::credentials(user);
    let mut p = Phone::new(g, &login, &password, &format!("OOF{}", user.to_uppercase()));
    p.version = version;
    p.provision().await;
    p
}

/// The user's own ManageSieve session, to look behind the gateway's back.
async fn sieve(user: &str) -> Client {
    let (login, password) = support::credentials(user);
    let port = dovecot().sieve_port().unwrap();
    Client::login(&sieve_config(port), &login, &password)
        .await
        .expect("ManageSieve login")
}

async fn active_script(user: &str) -> Option<(String, String)> {
    let mut c = sieve(user).await;
    let active = c.list().await.unwrap().into_iter().find(|(_, a)| *a);
    let out = match active {
        Some((name, _)) => Some((name.clone(), c.get(&name).await.unwrap())),
        None => None,
    };
    c.logout().await;
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn message_xml(audience: &str, enabled: bool, text: &str, body_type: &str) -> String {
    format!(
        "<OofMessage><{audience}/><Enabled>{}</Enabled><ReplyMessage>{}</ReplyMessage><BodyType>{body_type}</BodyType></OofMessage>",
        u8::from(enabled),
        xml_escape(text)
    )
}

async fn set(p: &Phone, inner: &str) -> String {
    let t = p
        .send(
            "Settings",
            &format!(r#"<Settings xmlns="Settings:"><Oof><Set>{inner}</Set></Oof></Settings>"#),
        )
        .await
        .tree();
    assert_eq!(find_text(&t, st::Status).as_deref(), Some("1"));
    find_text(t.child(st::Oof).unwrap(), st::Status).unwrap()
}

async fn get(p: &Phone, body_type: &str) -> Element {
    let t = p
        .send(
            "Settings",
            &format!(
                r#"<Settings xmlns="Settings:"><Oof><Get><BodyType>{body_type}</BodyType></Get></Oof></Settings>"#
            ),
        )
        .await
        .tree();
    let oof = t.child(st::Oof).unwrap().clone();
    assert_eq!(
        find_text(&oof, st::Status).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&t)
    );
    oof.child(st::Get).unwrap().clone()
}

/// `(audience tag, enabled, text)` of each OofMessage of a Get.
fn messages(get: &Element) -> Vec<(eas_wbxml::Tag, String, String)> {
    get.children_with(st::OofMessage)
        .map(|m| {
            let audience = m.children()[0].tag;
            (
                audience,
                find_text(m, st::Enabled).unwrap(),
                m.child(st::ReplyMessage)
                    .and_then(|r| r.text())
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

const USER_SCRIPT: &str = "require [\"fileinto\", \"imap4flags\"];\r\n\
# my own rules, with a comment and odd spacing\r\n\
if header :contains \"subject\" \"[list]\" {\r\n    fileinto \"Lists\";\r\n    stop;\r\n}\r\n\
/* flagged */ if address :is \"from\" \"boss@example.org\" { addflag \"\\\\Flagged\"; }\r\n";

#[tokio::test]
async fn set_get_set_off_keeps_the_users_own_rules_byte_for_byte() {
    let gw = gateway().await;
    let p = phone(&gw, "alice", "14.1").await;
    {
        let mut c = sieve("alice").await;
        c.put("mine", USER_SCRIPT).await.unwrap();
        c.set_active("mine").await.unwrap();
        c.logout().await;
    }
    let tricky = "Back on Monday.\n\"Quotes\", back\\slashes \\\" and ünïcödé ✈\n\n-- \nAlice";
    let status = set(
        &p,
        &format!(
            "<OofState>2</OofState><StartTime>2026-01-01T00:00:00.000Z</StartTime><EndTime>2099-12-31T23:00:00.000Z</EndTime>{}{}{}",
            message_xml("AppliesToInternal", true, tricky, "Text"),
            message_xml("AppliesToExternalKnown", true, "known", "Text"),
            message_xml("AppliesToExternalUnknown", true, "<p>Away &amp; out</p>", "HTML"),
        ),
    )
    .await;
    assert_eq!(status, "1");

    let (name, on_server) = active_script("alice").await.unwrap();
    assert_eq!(name, "mine", "the user's active script keeps its name");
    assert!(on_server.starts_with("require [\"fileinto\", \"imap4flags\"];\r\n# >>> eas-gateway"));
    assert_eq!(script::without_section(&on_server), USER_SCRIPT);
    let mut c = sieve("alice").await;
    c.check_script(&on_server)
        .await
        .expect("the server compiles it");
    c.logout().await;

    let g = get(&p, "Text").await;
    assert_eq!(find_text(&g, st::OofState).as_deref(), Some("2"));
    assert_eq!(
        find_text(&g, st::StartTime).as_deref(),
        Some("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(
        find_text(&g, st::EndTime).as_deref(),
        Some("2099-12-31T23:00:00.000Z")
    );
    let m = messages(&g);
    assert_eq!(m[0], (st::AppliesToInternal, "1".into(), tricky.into()));
    assert_eq!(
        m[1],
        (st::AppliesToExternalKnown, "1".into(), "known".into())
    );
    // Asked for text, the HTML message comes as its text.
    assert_eq!(
        m[2],
        (
            st::AppliesToExternalUnknown,
            "1".into(),
            "Away & out".into()
        )
    );
    let html = get(&p, "HTML").await;
    assert_eq!(messages(&html)[2].2, "<p>Away &amp; out</p>");

    // A second Set changes only what it names; the section is replaced in place.
    assert_eq!(set(&p, "<OofState>1</OofState>").await, "1");
    let g = get(&p, "Text").await;
    assert_eq!(find_text(&g, st::OofState).as_deref(), Some("1"));
    assert_eq!(messages(&g)[0].2, tricky);
    let (_, again) = active_script("alice").await.unwrap();
    assert_eq!(script::without_section(&again), USER_SCRIPT);

    // Off: the user's script is exactly what it was, still active.
    assert_eq!(set(&p, "<OofState>0</OofState>").await, "1");
    let (name, after) = active_script("alice").await.unwrap();
    assert_eq!(name, "mine");
    assert_eq!(after, USER_SCRIPT);
    let g = get(&p, "Text").await;
    assert_eq!(find_text(&g, st::OofState).as_deref(), Some("0"));
}

#[tokio::test]
async fn without_a_script_the_gateway_makes_one_and_takes_it_away_again() {
    let gw = gateway().await;
    let p = phone(&gw, "bob", "16.1").await;
    let status = set(
        &p,
        &format!(
            "<OofState>1</OofState>{}",
            message_xml("AppliesToExternalUnknown", true, "away", "Text")
        ),
    )
    .await;
    assert_eq!(status, "1");
    let (name, text) = active_script("bob").await.unwrap();
    assert_eq!(name, "eas-gateway");
    assert!(text.contains("vacation"));
    assert_eq!(set(&p, "<OofState>0</OofState>").await, "1");
    let mut c = sieve("bob").await;
    assert!(c.list().await.unwrap().is_empty(), "nothing left behind");
    c.logout().await;
}

#[tokio::test]
async fn a_vacation_rule_the_user_wrote_elsewhere_is_shown() {
    let gw = gateway().await;
    let p = phone(&gw, "carol", "12.1").await;
    let mut c = sieve("carol").await;
    c.put(
        "roundcube",
        "require [\"vacation\"];\nvacation :days 2 :subject \"Away\" \"I am away until May.\";\n",
    )
    .await
    .unwrap();
    c.set_active("roundcube").await.unwrap();
    c.logout().await;
    let g = get(&p, "Text").await;
    assert_eq!(find_text(&g, st::OofState).as_deref(), Some("1"));
    assert!(
        messages(&g)
            .iter()
            .all(|(_, on, text)| on == "1" && text == "I am away until May.")
    );
}

#[tokio::test]
async fn bad_requests_and_unreachable_servers_get_their_statuses() {
    let gw = gateway().await;
    let p = phone(&gw, "dave", "14.1").await;
    // Scheduled without times: invalid arguments; ending before it starts: conflicting.
    assert_eq!(set(&p, "<OofState>2</OofState>").await, "5");
    assert_eq!(
        set(
            &p,
            "<OofState>2</OofState><StartTime>2026-02-01T00:00:00.000Z</StartTime><EndTime>2026-01-01T00:00:00.000Z</EndTime>"
        )
        .await,
        "6"
    );
    assert_eq!(set(&p, "<OofState>9</OofState>").await, "5");
    assert_eq!(
        set(&p, "<OofState>2</OofState><StartTime>yesterday</StartTime><EndTime>2026-01-01T00:00:00.000Z</EndTime>").await,
        "5"
    );
    // Get without a BodyType is a protocol error.
    let t = p
        .send(
            "Settings",
            r#"<Settings xmlns="Settings:"><Oof><Get/></Oof></Settings>"#,
        )
        .await
        .tree();
    assert_eq!(
        find_text(t.child(st::Oof).unwrap(), st::Status).as_deref(),
        Some("2")
    );
    // Nothing was written by any of these.
    assert!(active_script("dave").await.is_none());

    // ManageSieve down: server unavailable (retry later). Not configured: denied by policy.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = Gateway::start(dovecot().imap_config(), |c| c.sieve = sieve_config(closed)).await;
    let p = phone(&down, "dave", "14.1").await;
    assert_eq!(set(&p, "<OofState>1</OofState>").await, "4");
    let off = Gateway::start(dovecot().imap_config(), |_| {}).await;
    let p = phone(&off, "dave", "14.1").await;
    assert_eq!(set(&p, "<OofState>1</OofState>").await, "7");
}

/// Waits until `user`'s INBOX has a message whose subject contains `needle`.
async fn arrived(user: &str, needle: &str, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    loop {
        let mut s = support::session(user).await;
        s.select("INBOX").await.expect("SELECT");
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
            let raw = f[0].take_section(&eas_gateway::imap::Section::Full);
            let _ = s.logout().await;
            return raw;
        }
        let _ = s.logout().await;
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn mail_to(login: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@{d}>\r\nTo: <{login}>\r\nSubject: {subject}\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@{d}>\r\n\r\nHello.\r\n",
        d = support::DOMAIN
    )
    .into_bytes()
}

#[tokio::test]
async fn a_delivered_message_gets_the_reply_until_the_phone_turns_it_off() {
    let d = dovecot();
    let postfix = support::postfix();
    d.send_replies_through(postfix.relay_port()).unwrap();
    // The replies go to the envelope sender of support::deliver, a user of its own here.
    support::credentials("sender");
    let gw = gateway().await;
    let p = phone(&gw, "erin", "14.1").await;
    let (erin, _) = support::credentials("erin");
    assert_eq!(
        set(
            &p,
            &format!(
                "<OofState>1</OofState>{}{}",
                message_xml("AppliesToInternal", true, "Erin is out (internal).", "Text"),
                message_xml("AppliesToExternalUnknown", true, "Erin is out.", "Text"),
            ),
        )
        .await,
        "1"
    );
    let first = support::unique("Ping");
    support::deliver("erin", &mail_to(&erin, &first)).await;
    let reply = arrived("sender", &first, Duration::from_secs(20))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no vacation reply; Postfix log:\n{}",
                std::fs::read_to_string(postfix.log_path()).unwrap_or_default()
            )
        });
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("Erin is out (internal)."), "{text}");

    // Off: the next message gets no reply.
    assert_eq!(set(&p, "<OofState>0</OofState>").await, "1");
    let second = support::unique("Ping");
    support::deliver("erin", &mail_to(&erin, &second)).await;
    // A past window is off too.
    assert_eq!(
        set(
            &p,
            "<OofState>2</OofState><StartTime>2020-01-01T00:00:00.000Z</StartTime><EndTime>2020-01-02T00:00:00.000Z</EndTime>"
        )
        .await,
        "1"
    );
    let third = support::unique("Ping");
    support::deliver("erin", &mail_to(&erin, &third)).await;
    assert!(
        arrived("sender", &second, Duration::from_secs(3))
            .await
            .is_none()
    );
    assert!(
        arrived("sender", &third, Duration::from_secs(1))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn check_says_why_out_of_office_is_off_or_lists_the_scripts() {
    let d = dovecot();
    let mut config = eas_gateway::config::Config::default();
    let mut out = Vec::new();
    eas_gateway::cli::check_directory::sieve(&config, None, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("out of office: off"), "{text}");

    config.sieve = sieve_config(d.sieve_port().unwrap());
    let (user, password) = support::credentials("frank");
    let login = eas_gateway::cli::check::Login { user, password };
    let mut out = Vec::new();
    eas_gateway::cli::check_directory::sieve(&config, Some(&login), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("ok: logged in as frank@example.com"),
        "{text}"
    );
    assert!(text.contains("ok: scripts: none"), "{text}");
    assert!(
        !text.contains("warning"),
        "vacation, date and relational are there: {text}"
    );
}

#[tokio::test]
async fn a_script_the_server_refuses_leaves_everything_as_it_was() {
    let gw = gateway().await;
    let p = phone(&gw, "grace", "14.1").await;
    // The test Dovecot takes scripts up to 64 KiB: the user's fits, with the reply it does not.
    let own = format!(
        "require \"fileinto\";\n# {}\nif true {{ keep; }}\n",
        "x".repeat(60 * 1024)
    );
    let mut c = sieve("grace").await;
    c.put("big", &own).await.unwrap();
    c.set_active("big").await.unwrap();
    c.logout().await;
    let status = set(
        &p,
        &format!(
            "<OofState>1</OofState>{}",
            message_xml("AppliesToInternal", true, &"y".repeat(8 * 1024), "Text")
        ),
    )
    .await;
    assert_eq!(status, "5", "a refused script is a failed Set");
    let (name, text) = active_script("grace").await.unwrap();
    assert_eq!((name.as_str(), text.as_str()), ("big", own.as_str()));
    assert_eq!(
        find_text(&get(&p, "Text").await, st::OofState).as_deref(),
        Some("0")
    );
}

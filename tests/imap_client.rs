//! The IMAP client against a real private Dovecot (never a mock): login, capabilities,
//! special-use folders, mailbox names in modified UTF-7, APPEND/SELECT/STORE/EXPUNGE, the
//! errors a caller has to tell apart, and the testbed itself.
//!
//! Every test uses a user of its own (see `support::USERS`), so they run in parallel on the
//! binary's one Dovecot.

mod support;

use std::time::Duration;

use eas_gateway::imap::{self, ImapConfig, ImapError, Security, Session, SpecialUse};
use eas_testbed::{Dovecot, TestUser};

fn names(mailboxes: &[imap::Mailbox]) -> Vec<&str> {
    mailboxes.iter().map(|m| m.name.as_str()).collect()
}

#[tokio::test]
async fn login_succeeds_and_a_wrong_password_is_rejected() {
    let cfg = support::dovecot().imap_config();
    let (login, password) = support::credentials("alice");
    imap::check_login(&cfg, &login, &password).await.unwrap();

    let wrong = imap::check_login(&cfg, &login, "not-the-password").await;
    assert!(matches!(wrong, Err(ImapError::LoginRejected)), "{wrong:?}");
    let unknown = imap::check_login(&cfg, "nobody@example.com", "x").await;
    assert!(
        matches!(unknown, Err(ImapError::LoginRejected)),
        "{unknown:?}"
    );

    // A rejected LOGIN leaves the session usable for another attempt.
    let mut s = Session::connect(&cfg).await.unwrap();
    assert!(matches!(
        s.login(&login, "nope").await,
        Err(ImapError::LoginRejected)
    ));
    s.login(&login, &password).await.unwrap();
    s.logout().await.unwrap();
}

#[tokio::test]
async fn passwords_that_need_quoting_or_a_literal() {
    let d = support::dovecot();
    let cfg = d.imap_config();
    let passwords = [
        "with space and \"quotes\" and \\backslash",
        "Pässwörd-日本",
        "(){}*%]",
    ];
    let login = |i| format!("quoting{i}@example.com");
    let users: Vec<_> = (0..passwords.len())
        .map(|i| TestUser::new(login(i), passwords[i]))
        .collect();
    d.add_users(&users).unwrap();
    for (i, password) in passwords.into_iter().enumerate() {
        let login = login(i);
        imap::check_login(&cfg, &login, password)
            .await
            .unwrap_or_else(|e| panic!("password {password:?}: {e}"));
        let wrong = imap::check_login(&cfg, &login, &password[1..]).await;
        assert!(matches!(wrong, Err(ImapError::LoginRejected)), "{wrong:?}");
    }
}

#[tokio::test]
async fn capabilities_before_and_after_login() {
    let (login, password) = support::credentials("bob");
    let mut s = Session::connect(&support::dovecot().imap_config())
        .await
        .unwrap();
    assert!(s.capabilities().has("IMAP4rev1"));
    // Dovecot announces the extensions only after login; the session must refresh them.
    assert!(!s.capabilities().has("NOTIFY"));
    s.login(&login, &password).await.unwrap();
    for cap in [
        "SPECIAL-USE",
        "CONDSTORE",
        "QRESYNC",
        "NOTIFY",
        "IDLE",
        "MOVE",
        "UIDPLUS",
        "LIST-STATUS",
        "LITERAL+",
    ] {
        assert!(s.capabilities().has(cap), "missing {cap}");
        assert!(s.capabilities().has(&cap.to_ascii_lowercase()));
    }
    s.logout().await.unwrap();
}

#[tokio::test]
async fn list_shows_inbox_and_the_special_use_folders() {
    let mut s = support::session("carol").await;
    let boxes = s.list().await.unwrap();
    let inbox = boxes.iter().find(|m| m.is_inbox()).expect("INBOX");
    assert_eq!(inbox.name, "INBOX");
    assert_eq!(inbox.special_use(), None);
    assert_eq!(inbox.delimiter, Some('/'));
    for (name, usage) in [
        ("Sent", SpecialUse::Sent),
        ("Drafts", SpecialUse::Drafts),
        ("Trash", SpecialUse::Trash),
        ("Junk", SpecialUse::Junk),
        ("Archive", SpecialUse::Archive),
    ] {
        let mb = boxes
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {:?}", names(&boxes)));
        assert_eq!(mb.special_use(), Some(usage), "{mb:?}");
        assert!(mb.is_selectable());
    }
    assert_eq!(boxes.len(), 6, "{:?}", names(&boxes));

    // The same list with UIDVALIDITY (LIST-STATUS), which matches what SELECT reports.
    let with_validity = s.list_with_uidvalidity().await.unwrap();
    assert_eq!(with_validity.len(), boxes.len());
    let (_, sent_validity) = with_validity
        .iter()
        .find(|(m, _)| m.name == "Sent")
        .unwrap();
    let selected = s.select("Sent").await.unwrap();
    assert_eq!(*sent_validity, Some(selected.uid_validity));
    s.logout().await.unwrap();
}

#[tokio::test]
async fn nested_non_ascii_folders_round_trip_through_list() {
    let mut s = support::session("dave").await;
    s.create("Projekte/Entwürfe").await.unwrap();
    s.subscribe("Projekte/Entwürfe").await.unwrap();
    let boxes = s.list().await.unwrap();
    let drafts = boxes
        .iter()
        .find(|m| m.name == "Projekte/Entwürfe")
        .unwrap_or_else(|| panic!("{:?}", names(&boxes)));
    assert_eq!(drafts.raw_name, "Projekte/Entw&APw-rfe");
    assert_eq!(drafts.delimiter, Some('/'));
    assert_eq!(drafts.special_use(), None);
    // The parent exists too (Dovecot creates it for the child).
    assert!(names(&boxes).contains(&"Projekte"), "{:?}", names(&boxes));

    // Rename to names that need escaping: `&`, CJK, a space.
    s.rename("Projekte/Entwürfe", "Projekte/日本 & Co")
        .await
        .unwrap();
    let boxes = s.list().await.unwrap();
    assert!(!names(&boxes).contains(&"Projekte/Entwürfe"));
    let renamed = boxes
        .iter()
        .find(|m| m.name == "Projekte/日本 & Co")
        .unwrap_or_else(|| panic!("{:?}", names(&boxes)));
    assert_eq!(renamed.raw_name, "Projekte/&ZeVnLA- &- Co");
    s.select("Projekte/日本 & Co").await.unwrap();
    // Dovecot ends the session (BYE) if the selected mailbox is deleted; select another.
    s.select("INBOX").await.unwrap();

    s.delete("Projekte/日本 & Co").await.unwrap();
    // With Dovecot's default maildir layout the parent is only implied by its child and goes
    // away with it; on other layouts it is a real mailbox to delete.
    if names(&s.list().await.unwrap()).contains(&"Projekte") {
        s.delete("Projekte").await.unwrap();
    }
    let boxes = s.list().await.unwrap();
    assert!(
        !names(&boxes).iter().any(|n| n.starts_with("Projekte")),
        "{:?}",
        names(&boxes)
    );
    s.logout().await.unwrap();
}

#[tokio::test]
async fn append_returns_uids_and_select_reports_the_mailbox_state() {
    let mut s = support::session("erin").await;
    let first = s
        .append("INBOX", &[], &support::message("one", "first"))
        .await
        .unwrap()
        .expect("APPENDUID");
    let second = s
        .append(
            "INBOX",
            &["\\Seen", "$Forwarded"],
            &support::message("two", "second"),
        )
        .await
        .unwrap()
        .expect("APPENDUID");
    assert!(second > first);

    let status = s.select("INBOX").await.unwrap();
    assert_eq!(status.exists, 2);
    assert!(status.uid_validity > 0);
    assert_eq!(status.uid_next, Some(second + 1));
    let modseq = status.highest_modseq.expect("HIGHESTMODSEQ with CONDSTORE");
    assert!(!status.read_only);
    assert!(status.flags.iter().any(|f| f == "\\Seen"), "{status:?}");

    // Flag changes and expunges move HIGHESTMODSEQ; UIDVALIDITY stays.
    s.uid_store(&first.to_string(), "+FLAGS.SILENT (\\Flagged)")
        .await
        .unwrap();
    s.uid_store(&format!("{first}:{second}"), "+FLAGS (\\Deleted)")
        .await
        .unwrap();
    s.expunge().await.unwrap();
    let after = s.select("INBOX").await.unwrap();
    assert_eq!(after.exists, 0);
    assert_eq!(after.uid_validity, status.uid_validity);
    assert!(after.highest_modseq.unwrap() > modseq);
    s.logout().await.unwrap();
}

#[tokio::test]
async fn a_large_message_with_binary_bytes_survives_append() {
    let mut s = support::session("frank").await;
    let mut message = support::message("big", "start");
    // Over a megabyte, with CRLFs and 8-bit bytes inside the literal.
    for i in 0..40_000u32 {
        message.extend_from_slice(format!("line {i} äöü \u{1F4EC}\r\n").as_bytes());
    }
    let uid = s.append("Archive", &[], &message).await.unwrap();
    assert!(uid.is_some());
    let status = s.select("Archive").await.unwrap();
    assert_eq!(status.exists, 1);
    let items = s.status("Archive", &["MESSAGES", "SIZE"]).await.unwrap();
    assert!(items.contains(&("MESSAGES".to_string(), 1)), "{items:?}");
    let size = items.iter().find(|(n, _)| n == "SIZE").map(|(_, v)| *v);
    assert_eq!(size, Some(message.len() as u64));
    s.logout().await.unwrap();
}

#[tokio::test]
async fn refused_commands_keep_the_session_usable() {
    let mut s = support::session("grace").await;

    let missing = s.select("Does/Not/Exist").await;
    assert!(matches!(missing, Err(ImapError::No { .. })), "{missing:?}");
    let folder = support::unique("Twice");
    s.create(&folder).await.unwrap();
    let exists = s.create(&folder).await;
    assert!(
        matches!(&exists, Err(ImapError::No { code: Some(c), .. }) if c == "ALREADYEXISTS"),
        "{exists:?}"
    );
    // A caller's CR/LF must not end the command and start another one.
    let injected = s
        .uid_store("1\r\nA999 DELETE INBOX", "+FLAGS (\\Seen)")
        .await;
    assert!(matches!(injected, Err(ImapError::InvalidArgument(_))));
    let injected = s.uid_store("1", "+FLAGS (\\Seen)\r\nA999 LOGOUT").await;
    assert!(matches!(injected, Err(ImapError::InvalidArgument(_))));
    let bad_flag = s.append("INBOX", &["\\Seen)"], b"x").await;
    assert!(matches!(bad_flag, Err(ImapError::InvalidArgument(_))));
    for e in [missing.unwrap_err(), exists.unwrap_err()] {
        assert!(!e.is_fatal() && !e.is_connection_failure(), "{e}");
    }

    // Still usable after all that.
    s.noop().await.unwrap();
    assert_eq!(s.select("INBOX").await.unwrap().exists, 0);
    s.logout().await.unwrap();
}

#[tokio::test]
async fn starttls_is_refused_when_the_server_does_not_offer_it() {
    // The testbed runs without TLS, so Dovecot does not advertise STARTTLS: asking for it must
    // fail instead of silently continuing in plaintext.
    let cfg = ImapConfig {
        security: Security::StartTls,
        ..support::dovecot().imap_config()
    };
    let r = Session::connect(&cfg).await;
    assert!(
        matches!(r, Err(ImapError::StartTlsUnavailable)),
        "{:?}",
        r.err()
    );
}

#[tokio::test]
async fn unreachable_and_silent_servers_are_connection_failures() {
    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ImapConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        tls_insecure: false,
        timeout: Duration::from_secs(2),
    };
    let e = imap::check_login(&cfg, "a", "b").await.unwrap_err();
    assert!(
        matches!(e, ImapError::Io(_)) && e.is_connection_failure(),
        "{e}"
    );

    // A server that accepts but never greets.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = ImapConfig {
        port: silent.local_addr().unwrap().port(),
        timeout: Duration::from_millis(300),
        ..cfg
    };
    let e = Session::connect(&cfg).await.err().unwrap();
    assert!(
        matches!(e, ImapError::Timeout(_)) && e.is_connection_failure(),
        "{e}"
    );
}

#[tokio::test]
async fn lmtp_delivery_reaches_the_inbox() {
    support::deliver("heidi", &support::message("hello", ".leading dot")).await;
    let mut s = support::session("heidi").await;
    assert_eq!(s.select("INBOX").await.unwrap().exists, 1);
    s.logout().await.unwrap();
}

#[tokio::test]
async fn helpers_change_the_mailbox_behind_a_session() {
    let user = "ivan";
    let folder = support::unique("Behind");
    support::create(user, &folder).await;
    let uid = support::append(user, &folder, &[], &support::message("s", "b")).await;
    support::store(user, &folder, &uid.to_string(), "+FLAGS (\\Seen)").await;
    let renamed = format!("{folder}-renamed");
    support::rename(user, &folder, &renamed).await;
    let mut s = support::session(user).await;
    assert_eq!(s.select(&renamed).await.unwrap().exists, 1);
    support::expunge(user, &renamed, &uid.to_string()).await;
    assert_eq!(s.select(&renamed).await.unwrap().exists, 0);
    s.logout().await.unwrap();
    support::delete(user, &renamed).await;
    let mut s = support::session(user).await;
    assert!(!names(&s.list().await.unwrap()).contains(&renamed.as_str()));
    s.logout().await.unwrap();
}

/// A second, private instance: it runs next to the shared one, and `stop` really ends the
/// process, frees the port and removes the directory.
#[tokio::test]
async fn a_testbed_instance_stops_completely() {
    let users = [TestUser::new("solo@example.com", "solo-pw")];
    let mut d = tokio::task::spawn_blocking(move || Dovecot::start(&users))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(d.imap_port(), support::dovecot().imap_port());
    imap::check_login(&d.imap_config(), "solo@example.com", "solo-pw")
        .await
        .unwrap();
    let (pid, dir, cfg) = (d.pid(), d.dir().to_owned(), d.imap_config());
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    let d = tokio::task::spawn_blocking(move || {
        d.stop();
        d
    })
    .await
    .unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "dovecot {pid} still running"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
    let e = Session::connect(&cfg).await.err().unwrap();
    assert!(e.is_connection_failure(), "{e}");
    drop(d);
}

/// Implicit TLS and STARTTLS against a TLS-enabled instance with a self-signed certificate.
#[tokio::test]
async fn tls_and_starttls() {
    let users = [TestUser::new("tls@example.com", "tls-pw")];
    let d = tokio::task::spawn_blocking(move || Dovecot::start_with_tls(&users))
        .await
        .unwrap()
        .unwrap();
    assert!(d.certificate_pem().unwrap().contains("BEGIN CERTIFICATE"));
    let plain = d.imap_config();

    let tls = ImapConfig {
        port: d.imaps_port().unwrap(),
        security: Security::Tls,
        tls_insecure: true,
        ..plain.clone()
    };
    let mut s = Session::connect(&tls).await.unwrap();
    s.login("tls@example.com", "tls-pw").await.unwrap();
    assert!(s.list().await.unwrap().iter().any(|m| m.is_inbox()));
    s.logout().await.unwrap();

    // The system's roots do not vouch for a self-signed certificate.
    let strict = ImapConfig {
        tls_insecure: false,
        ..tls.clone()
    };
    let e = Session::connect(&strict).await.err().unwrap();
    assert!(
        matches!(e, ImapError::Tls(_)) && e.is_connection_failure(),
        "{e}"
    );

    // STARTTLS on the plain port; the capabilities are asked for again over TLS, where
    // Dovecot no longer offers STARTTLS.
    let starttls = ImapConfig {
        security: Security::StartTls,
        tls_insecure: true,
        ..plain
    };
    let mut s = Session::connect(&starttls).await.unwrap();
    assert!(s.capabilities().has("IMAP4rev1"));
    assert!(!s.capabilities().has("STARTTLS"));
    s.login("tls@example.com", "tls-pw").await.unwrap();
    assert!(s.capabilities().has("SPECIAL-USE"));
    s.logout().await.unwrap();

    tokio::task::spawn_blocking(move || drop(d)).await.unwrap();
}

/// `start_in` (the demo's way): a directory inside a private (0700) temporary directory
/// works, survives a stop, and a restart in it finds the mail again.
#[tokio::test]
async fn an_instance_in_a_given_directory_keeps_its_mail() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("dovecot");
    let user = TestUser::new("demo@example.com", "demo-pw");
    let start = {
        let (dir, user) = (dir.clone(), user.clone());
        move || Dovecot::start_in(&dir, std::slice::from_ref(&user)).unwrap()
    };

    let d = tokio::task::spawn_blocking(start.clone()).await.unwrap();
    let mut s = Session::connect(&d.imap_config()).await.unwrap();
    s.login(&user.login, &user.password).await.unwrap();
    let uid = s.append("INBOX", &[], &support::message("kept", "x")).await;
    assert!(uid.unwrap().is_some());
    s.logout().await.unwrap();
    tokio::task::spawn_blocking(move || drop(d)).await.unwrap();
    assert!(
        dir.join("mail").exists(),
        "start_in must keep its directory"
    );

    let d = tokio::task::spawn_blocking(start).await.unwrap();
    let mut s = Session::connect(&d.imap_config()).await.unwrap();
    s.login(&user.login, &user.password).await.unwrap();
    assert_eq!(s.select("INBOX").await.unwrap().exists, 1);
    s.logout().await.unwrap();
    tokio::task::spawn_blocking(move || drop(d)).await.unwrap();
}

//! Shared helpers for the integration tests: one private Dovecot per test binary, its users,
//! and ways to change a mailbox behind the gateway's back.
//!
//! Include with `mod support;`. Tests in one binary run in parallel against the same Dovecot,
//! so each test uses a user of its own ([`credentials`] creates any user on first use) or
//! mailbox names from [`unique`].
//!
//! The Dovecot lives in a `static` and is never dropped, so it is handed to
//! [`Dovecot::leak_until_exit`]: an `atexit` hook stops it (and removes its temporary
//! directory) when the test binary exits, and because its master process is tied to a keeper
//! thread with `PR_SET_PDEATHSIG`, the kernel terminates it even if the binary is killed
//! (Ctrl-C, a timeout's SIGKILL) and no hook runs. See `eas_testbed` for details.
//!
//! If Dovecot is not installed, every test that asks for it fails (never skips) with the
//! command that installs it.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use eas_gateway::imap::Session;
use eas_testbed::{Dovecot, Postfix, TestUser, Tuning};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The domain of every test user.
pub const DOMAIN: &str = "example.com";

/// Users that exist from the start. Others are created by [`credentials`] on first use, but
/// that costs up to a second (Dovecot re-reads its passwd-file at most once per second).
/// Each test binary has its own Dovecot, so names only need to be unique within a binary.
pub mod dav;

pub const USERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "kim", "lena",
    "max", "nora", "oscar", "pia", "quinn", "rosa", "sam", "tina", "uma",
];

/// Options of the binary's Dovecot, set before its first use (tests/push_events.rs turns on
/// Dovecot's push events); the defaults otherwise.
pub static TUNING: OnceLock<Tuning> = OnceLock::new();

/// The test binary's Dovecot, started on first use. Panics with the reason (including the
/// install command when Dovecot is missing) if it cannot start.
pub fn dovecot() -> &'static Dovecot {
    static DOVECOT: OnceLock<Result<&'static Dovecot, String>> = OnceLock::new();
    let started = DOVECOT.get_or_init(|| {
        let users: Vec<TestUser> = USERS.iter().map(|name| user(name)).collect();
        Dovecot::start_tuned(&users, &TUNING.get().copied().unwrap_or_default())
            .map(Dovecot::leak_until_exit)
            .map_err(|e| e.to_string())
    });
    match started {
        Ok(dovecot) => dovecot,
        Err(e) => panic!("the test Dovecot could not be started: {e}"),
    }
}

/// The test binary's Postfix (submission and relay ports on loopback, delivering the test
/// domain to [`dovecot`] over LMTP), started on first use. Panics with the reason (including
/// the install command when Postfix is missing) if it cannot start.
pub fn postfix() -> &'static Postfix {
    static POSTFIX: OnceLock<Result<&'static Postfix, String>> = OnceLock::new();
    let started = POSTFIX.get_or_init(|| {
        Postfix::start(dovecot(), &[DOMAIN])
            .map(Postfix::leak_until_exit)
            .map_err(|e| e.to_string())
    });
    match started {
        Ok(postfix) => postfix,
        Err(e) => panic!("the test Postfix could not be started: {e}"),
    }
}

/// The account for a short name (`"alice"` → `alice@example.com`); a name with `@` is used
/// as the login as it is. The password is derived from the name.
pub fn user(name: &str) -> TestUser {
    let login = if name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}@{DOMAIN}")
    };
    let local = login.split('@').next().unwrap_or_default();
    TestUser::new(login.clone(), format!("{local}-Secret-1"))
}

/// `(login, password)` of a user, creating the user in Dovecot if it does not exist yet.
pub fn credentials(name: &str) -> (String, String) {
    let u = user(name);
    let d = dovecot();
    if !d.users().contains(&u) {
        d.add_user(&u).expect("adding a test user");
    }
    (u.login, u.password)
}

/// A name no other test in this process uses, e.g. `unique("Folder")` → `Folder-3-a1b2`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{n}-{:04x}", std::process::id() & 0xffff)
}

/// A logged-in IMAP session for the user (created if needed).
pub async fn session(name: &str) -> Session {
    let (login, password) = credentials(name);
    let mut s = Session::connect(&dovecot().imap_config())
        .await
        .expect("connecting to the test Dovecot");
    s.login(&login, &password)
        .await
        .unwrap_or_else(|e| panic!("logging in as {login}: {e}"));
    s
}

/// Appends a message to a mailbox of the user; returns its UID.
pub async fn append(name: &str, mailbox: &str, flags: &[&str], message: &[u8]) -> u32 {
    let mut s = session(name).await;
    let uid = s
        .append(mailbox, flags, message)
        .await
        .expect("APPEND")
        .expect("Dovecot reports APPENDUID");
    let _ = s.logout().await;
    uid
}

/// `UID STORE uids item` in a mailbox of the user (e.g. `"+FLAGS (\\Seen)"`).
pub async fn store(name: &str, mailbox: &str, uids: &str, item: &str) {
    let mut s = session(name).await;
    s.select(mailbox).await.expect("SELECT");
    s.uid_store(uids, item).await.expect("UID STORE");
    let _ = s.logout().await;
}

/// Flags the messages `\Deleted` and expunges them.
pub async fn expunge(name: &str, mailbox: &str, uids: &str) {
    let mut s = session(name).await;
    s.select(mailbox).await.expect("SELECT");
    s.uid_store(uids, "+FLAGS.SILENT (\\Deleted)")
        .await
        .expect("UID STORE \\Deleted");
    s.expunge().await.expect("EXPUNGE");
    let _ = s.logout().await;
}

pub async fn create(name: &str, mailbox: &str) {
    let mut s = session(name).await;
    s.create(mailbox).await.expect("CREATE");
    let _ = s.subscribe(mailbox).await;
    let _ = s.logout().await;
}

pub async fn rename(name: &str, from: &str, to: &str) {
    let mut s = session(name).await;
    s.rename(from, to).await.expect("RENAME");
    let _ = s.subscribe(to).await;
    let _ = s.logout().await;
}

pub async fn delete(name: &str, mailbox: &str) {
    let mut s = session(name).await;
    s.delete(mailbox).await.expect("DELETE");
    let _ = s.logout().await;
}

/// Delivers a message to the user's INBOX over LMTP, the way a mail server would (unlike
/// APPEND it runs Dovecot's delivery path, so it looks like newly arrived mail).
pub async fn deliver(name: &str, message: &[u8]) {
    let (login, _) = credentials(name);
    deliver_via(dovecot().lmtp_port(), &login, message).await;
}

/// [`deliver`] to any LMTP listener on 127.0.0.1 (another Dovecot than the binary's).
pub async fn deliver_via(lmtp_port: u16, login: &str, message: &[u8]) {
    let stream = TcpStream::connect(("127.0.0.1", lmtp_port))
        .await
        .expect("connecting to LMTP");
    let mut lmtp = BufReader::new(stream);
    expect_reply(&mut lmtp, "220").await;
    for (command, code) in [
        ("LHLO localhost".to_string(), "250"),
        (format!("MAIL FROM:<sender@{DOMAIN}>"), "250"),
        (format!("RCPT TO:<{login}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        lmtp.get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("writing to LMTP");
        expect_reply(&mut lmtp, code).await;
    }
    lmtp.get_mut()
        .write_all(&dot_stuff(message))
        .await
        .expect("writing to LMTP");
    expect_reply(&mut lmtp, "250").await;
    let _ = lmtp.get_mut().write_all(b"QUIT\r\n").await;
}

/// Reads a (possibly multi-line) SMTP/LMTP reply and checks its code.
async fn expect_reply(lmtp: &mut BufReader<TcpStream>, code: &str) {
    loop {
        let mut line = String::new();
        lmtp.read_line(&mut line).await.expect("reading from LMTP");
        assert!(
            line.starts_with(code),
            "LMTP: expected {code}, got {line:?}"
        );
        // `250-…` continues, `250 …` ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// The DATA payload: CRLF line ends, leading dots doubled, and the final `.` line.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = Vec::with_capacity(message.len() + 16);
    for line in text.lines() {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A small RFC 5322 message.
pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@{DOMAIN}>\r\n\
         To: Someone <someone@{DOMAIN}>\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 2 Mar 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@{DOMAIN}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         {body}\r\n",
        unique("msg")
    )
    .into_bytes()
}

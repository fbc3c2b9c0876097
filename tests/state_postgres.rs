//! The gateway on PostgreSQL, end to end: a phone over real HTTP against the private Dovecot,
//! with the state in a private PostgreSQL cluster (`eas_testbed::Postgres`).
//!
//! - Moving from SQLite to PostgreSQL with `eas-gateway state migrate` (the real binary): the
//!   phone goes on with the SyncKeys it has, no resync.
//! - The database stopped under a running gateway: requests get 503 with Retry-After, a held
//!   Ping is answered at its heartbeat, and once the database is back the phone goes on with
//!   the same keys, nothing lost or repeated.
//! - `devices` and `check` against PostgreSQL (the real binary).

mod eas;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes, sync_to_end};
use eas_testbed::Postgres;
use eas_wbxml::tags::ping as p;

const BIN: &str = env!("CARGO_BIN_EXE_eas-gateway");

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: b@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@example.com>\r\n\r\nbody of {subject}\r\n"
    )
    .into_bytes()
}

async fn gateway_on(url: &str) -> Gateway {
    let url = url.to_owned();
    Gateway::start(support::dovecot().imap_config(), move |c| {
        c.state.url = url;
        c.push.min_heartbeat_secs = 2;
    })
    .await
}

/// A provisioned phone of `user` that has done FolderSync: (phone, hierarchy key, inbox id).
async fn ready_phone(g: &Gateway, user: &str) -> (Phone, String, String) {
    let (login, password) = support::credentials(user);
    let mut phone = Phone::new(g, &login, &password, &format!("PG{}", user.to_uppercase()));
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let key = find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let (adds, _, _) = folder_changes(&fs);
    let inbox = adds
        .iter()
        .find(|f| f.name == "Inbox" || f.name == "INBOX")
        .unwrap_or_else(|| panic!("no Inbox in {adds:?}"))
        .id
        .clone();
    (phone, key, inbox)
}

/// The Adds of one Sync from `key` (which must be accepted: status 1 or an empty answer).
async fn sync_once(phone: &Phone, inbox: &str, key: &str) -> (String, Vec<String>) {
    let page = phone
        .try_sync(inbox, key, "<WindowSize>100</WindowSize>")
        .await
        .unwrap();
    assert!(
        page.empty || page.status == "1",
        "Sync from {key}: status {:?} (3 would be a full resync)",
        page.status
    );
    (page.key, page.added)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phone_continues_after_moving_to_postgres() {
    let user = "alice";
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("state.db").display());
    let g = gateway_on(&sqlite).await;
    let (mut phone, hierarchy_key, inbox) = ready_phone(&g, user).await;
    for i in 0..3 {
        support::append(user, "INBOX", &[], &message(&format!("before{i}"))).await;
    }
    let key = sync_to_end(&phone, &inbox, "0").await;
    drop(g);

    // The copy, by the real binary, into a fresh database.
    let pg = Postgres::shared();
    let url = pg.fresh_database().unwrap();
    let out = Command::new(BIN)
        .args(["state", "migrate", "--from", &sqlite, "--to", &url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("copied 1 devices"), "{stdout}");
    // A second copy into the same target is refused, not merged.
    let again = Command::new(BIN)
        .args(["state", "migrate", "--from", &sqlite, "--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds state"));

    // The same phone, same keys, now talking to a gateway on PostgreSQL.
    let g = gateway_on(&url).await;
    phone.base = g.base.clone();
    let fs = phone.folder_sync(&hierarchy_key).await;
    assert_eq!(
        find_text(&fs, eas_wbxml::tags::folderhierarchy::Status).as_deref(),
        Some("1"),
        "the hierarchy key is valid in the new store"
    );
    let (same, added) = sync_once(&phone, &inbox, &key).await;
    assert!(added.is_empty(), "nothing was sent again: {added:?}");
    support::append(user, "INBOX", &[], &message("after")).await;
    let (next, added) = sync_once(&phone, &inbox, &same).await;
    assert_eq!(added.len(), 1, "only the new message");
    assert_ne!(next, same);
    // The policy key the phone had is still the one the store knows (no re-provisioning).
    let policy = phone.policy_key;
    let answer = phone
        .send(
            "Ping",
            &format!(
                r#"<Ping xmlns="Ping:"><HeartbeatInterval>2</HeartbeatInterval><Folders><Folder><Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>"#
            ),
        )
        .await;
    assert_eq!(answer.status, 200, "a provisioned phone is not sent to 449");
    assert_eq!(phone.policy_key, policy);

    // `devices` and `check` see the device in PostgreSQL.
    let list = Command::new(BIN)
        .args(["devices", "--state", &url, "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(listed.contains("PGALICE"), "{listed}");
    let imap = support::dovecot().imap_config();
    let check = Command::new(BIN)
        .args(["check", "--state", &url, "--imap-host", &imap.host])
        .args(["--imap-port", &imap.port.to_string(), "--imap-tls", "none"])
        .args(["--public-url", "https://mail.example.com"])
        .output()
        .unwrap();
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        checked.contains(&format!("state store {url}: ok, 1 devices")),
        "{checked}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The database stops under a running gateway and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_database_restarting_under_a_running_gateway() {
    let user = "bob";
    // A cluster of its own: this test stops it.
    let pg = Postgres::start().unwrap();
    let url = pg.fresh_database().unwrap();
    let g = gateway_on(&url).await;
    let (phone, hierarchy_key, inbox) = ready_phone(&g, user).await;
    support::append(user, "INBOX", &[], &message("one")).await;
    let key = sync_to_end(&phone, &inbox, "0").await;

    // A Ping held with a 4 s heartbeat, then the database goes away under it.
    let held = {
        let phone = phone.clone();
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = phone
                .send(
                    "Ping",
                    &format!(
                        r#"<Ping xmlns="Ping:"><HeartbeatInterval>4</HeartbeatInterval><Folders><Folder><Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>"#
                    ),
                )
                .await;
            (answer, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| pg.stop());

    // Requests while it is away: a retryable answer, quickly, never an empty folder.
    let started = Instant::now();
    let answer = phone
        .post(
            "Sync",
            eas_wbxml::from_xml(&format!(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>"#
            ))
            .unwrap()
            .encode(),
        )
        .await;
    assert_eq!(answer.status, 503, "a Sync while the database is away");
    assert!(answer.headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
    let answer = phone
        .post(
            "FolderSync",
            eas_wbxml::from_xml(&format!(
                r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>{hierarchy_key}</SyncKey></FolderSync>"#
            ))
            .unwrap()
            .encode(),
        )
        .await;
    assert_eq!(
        answer.status, 503,
        "a FolderSync while the database is away"
    );

    // The held Ping is answered at its heartbeat ("no changes"), not with an error.
    let (answer, waited) = held.await.unwrap();
    assert_eq!(answer.status, 200, "the held Ping");
    assert_eq!(
        find_text(&answer.tree(), p::Status).as_deref(),
        Some("1"),
        "heartbeat ended without changes"
    );
    assert!(waited < Duration::from_secs(15), "{waited:?}");

    // Mail arrives while the database is away; then it comes back.
    support::append(user, "INBOX", &[], &message("during")).await;
    tokio::task::block_in_place(|| pg.restart()).unwrap();

    // Service resumes by itself (within the store's fail-fast window and a reconnect), with
    // the same keys: the phone gets exactly the new message.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        match phone
            .try_sync(&inbox, &key, "<WindowSize>100</WindowSize>")
            .await
        {
            Ok(page) if page.status == "1" => break page,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no service after the database came back: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        page.added.len(),
        1,
        "exactly the message that came meanwhile"
    );
    let fs = phone.folder_sync(&hierarchy_key).await;
    assert_eq!(
        find_text(&fs, eas_wbxml::tags::folderhierarchy::Status).as_deref(),
        Some("1")
    );
    drop(g);
}

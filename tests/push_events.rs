//! Ping with `push.source = "dovecot-events"` against a real Dovecot running the shipped
//! `contrib/dovecot/eas-push.lua` with the shipped `eas-push.conf`: APPEND, LMTP delivery, a
//! flag change and an expunge each wake the right Ping with no IMAP connection held while
//! waiting; the device's own change does not wake it; forged and replayed datagrams are
//! dropped and counted; with the gateway down a delivery is as fast as ever, and a gateway
//! started again hears the events again.
//!
//! The binary's one Dovecot sends its datagrams to a relay in this process, which copies each
//! to every gateway the tests started (each listens on a port of its own), so the tests can
//! run in parallel. The gateway-down test runs a Dovecot of its own.

mod eas;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes, sync_to_end};
use eas_gateway::config::PushSource;
use eas_gateway::push::dovecot_events::{MAGIC, escape, read_secret, sign};
use eas_testbed::{Dovecot, TestUser, Tuning};
use eas_wbxml::Element;
use eas_wbxml::tags::ping as p;

/// Copies every datagram of the binary's Dovecot to every registered gateway.
struct Relay {
    targets: Mutex<Vec<SocketAddr>>,
}

fn relay() -> &'static Relay {
    static RELAY: OnceLock<&'static Relay> = OnceLock::new();
    RELAY.get_or_init(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        support::TUNING
            .set(Tuning {
                events_port: Some(port),
                ..Tuning::default()
            })
            .expect("the relay is set up before the binary's Dovecot starts");
        let relay: &'static Relay = Box::leak(Box::new(Relay {
            targets: Mutex::new(Vec::new()),
        }));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, _)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                for t in relay.targets.lock().unwrap().iter() {
                    let _ = socket.send_to(&buf[..n], t);
                }
            }
        });
        support::dovecot();
        relay
    })
}

fn events_config(
    c: &mut eas_gateway::config::Config,
    listen: SocketAddr,
    secret: std::path::PathBuf,
) {
    c.push.min_heartbeat_secs = 2;
    c.push.max_heartbeat_secs = 600;
    c.push.max_folders = 3;
    c.push.watcher_grace_secs = 2;
    c.push.source = PushSource::DovecotEvents;
    c.push.events_listen = listen;
    c.push.events_secret_file = secret;
}

/// A gateway in events mode that hears the binary's Dovecot.
async fn gateway() -> Gateway {
    let relay = relay();
    let d = support::dovecot();
    let secret = d.events_secret_path().expect("Dovecot runs with events");
    let g = Gateway::start(d.imap_config(), |c| {
        events_config(c, "127.0.0.1:0".parse().unwrap(), secret)
    })
    .await;
    let addr = g.state.hub.events_addr().expect("events mode");
    relay.targets.lock().unwrap().push(addr);
    g
}

/// A provisioned phone that has synced its Inbox; returns it with the Inbox id and its key.
async fn phone_as(
    g: &Gateway,
    login: &str,
    password: &str,
    device: &str,
) -> (Phone, String, String) {
    let mut ph = Phone::new(g, login, password, device);
    ph.provision().await;
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    let key = sync_to_end(&ph, &inbox, "0").await;
    (ph, inbox, key)
}

async fn phone(g: &Gateway, user: &str, device: &str) -> (Phone, String, String) {
    let (login, password) = support::credentials(user);
    phone_as(g, &login, &password, device).await
}

fn ping_xml(heartbeat: u64, folders: &[&str]) -> String {
    let f: String = folders
        .iter()
        .map(|id| format!("<Folder><Id>{id}</Id><Class>Email</Class></Folder>"))
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

/// Waits until the hub has `waiting` devices and the event source holds no IMAP connection
/// (its look at registration is over).
async fn settled(g: &Gateway, waiting: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while g.state.hub.counts() != (waiting, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        g.state.hub.counts(),
        (waiting, 0),
        "(waiting devices, IMAP connections held by the source)"
    );
}

/// One counter of `eas_push_events_total`.
fn events_counter(g: &Gateway, result: &str) -> u64 {
    let text = g.state.hub.source_metrics();
    let prefix = format!("eas_push_events_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
}

#[tokio::test]
async fn append_wakes_the_ping_with_no_imap_connection_held() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "alice", "EV-A1").await;
    let (ph2, inbox2, _) = phone(&g, "alice", "EV-A2").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let held2_req = ping_xml(60, &[&inbox2]);
    let held2 = ph2.send("Ping", &held2_req);
    let act = async {
        settled(&g, 2).await;
        support::append("alice", "INBOX", &[], &support::message("Appended", "x")).await;
        Instant::now()
    };
    let (r1, r2, appended) = tokio::join!(held, held2, act);
    let latency = appended.elapsed();
    assert_eq!(outcome(&r1.tree()), ("2".into(), vec![inbox]));
    assert_eq!(outcome(&r2.tree()), ("2".into(), vec![inbox2]));
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(events_counter(&g, "accepted") >= 1);
    // The same counters on /metrics, with the IMAP connection gauges.
    let metrics = g.metrics().await;
    for name in [
        "eas_push_events_total{result=\"accepted\"}",
        "eas_push_events_total{result=\"bad_signature\"}",
        "eas_push_imap_connections 0",
        "eas_imap_pooled_sessions",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
}

#[tokio::test]
async fn lmtp_delivery_wakes_the_ping() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "bob", "EV-B").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::deliver("bob", &support::message("Delivered", "x")).await;
        Instant::now()
    };
    let (r, delivered) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
    assert!(delivered.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_flag_change_wakes_it_but_the_devices_own_change_does_not() {
    let g = gateway().await;
    let uid = support::append("carol", "INBOX", &[], &support::message("Flag me", "x")).await;
    let (ph, inbox, key) = phone(&g, "carol", "EV-C").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::store("carol", "INBOX", &uid.to_string(), "+FLAGS (\\Flagged)").await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox.clone()]));
    let key = sync_to_end(&ph, &inbox, &key).await;

    // The device marks it read itself: Dovecot reports the change, the device's snapshot
    // already has it, so its next Ping hears nothing.
    let accepted = events_counter(&g, "accepted");
    ph.send(
        "Sync",
        &format!(
            r#"<Sync xmlns="AirSync:" xmlns:email="Email:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId>
               <Commands><Change><ServerId>{inbox}:{uid}</ServerId><ApplicationData><email:Read>1</email:Read></ApplicationData></Change></Commands>
               </Collection></Collections></Sync>"#
        ),
    )
    .await
    .tree();
    let started = Instant::now();
    let r = ph.send("Ping", &ping_xml(3, &[&inbox])).await.tree();
    assert_eq!(outcome(&r).0, "1", "no news: {}", eas_wbxml::to_xml(&r));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        events_counter(&g, "accepted") > accepted,
        "Dovecot did report the device's own change"
    );
}

#[tokio::test]
async fn an_expunge_wakes_the_ping() {
    let g = gateway().await;
    let uid = support::append("dave", "INBOX", &[], &support::message("Delete me", "x")).await;
    let (ph, inbox, _) = phone(&g, "dave", "EV-D").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::expunge("dave", "INBOX", &uid.to_string()).await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
}

#[tokio::test]
async fn a_new_mailbox_answers_hierarchy_changed() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "erin", "EV-E").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::create("erin", &support::unique("Projects")).await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()).0, "7");
}

#[tokio::test]
async fn forged_and_replayed_datagrams_are_dropped_and_counted() {
    let g = gateway().await;
    let (login, _) = support::credentials("frank");
    let (ph, inbox, _) = phone(&g, "frank", "EV-F").await;
    let addr = g.state.hub.events_addr().unwrap();
    let secret = read_secret(&support::dovecot().events_secret_path().unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Counters no snapshot has: signed right, this would wake the Ping.
    let body = |sender: &str| {
        format!(
            "{MAGIC}\ns {sender} 1 {now}\nu {}\nm INBOX N 1 99999 99999 99999\n",
            escape(&login)
        )
    };
    let out = UdpSocket::bind("127.0.0.1:0").unwrap();

    let held_req = ping_xml(3, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        out.send_to(&sign(b"not the secret", &body("forger")), addr)
            .unwrap();
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()).0, "1", "a bad signature wakes nobody");
    assert_eq!(events_counter(&g, "bad_signature"), 1);

    // Signed right, sent twice (nobody waits now, so nothing wakes): the copy is refused.
    let accepted = events_counter(&g, "accepted");
    let datagram = sign(&secret, &body("replayer"));
    out.send_to(&datagram, addr).unwrap();
    out.send_to(&datagram, addr).unwrap();
    out.send_to(b"hello", addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while events_counter(&g, "malformed") < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events_counter(&g, "replayed"), 1);
    assert_eq!(events_counter(&g, "malformed"), 1);
    assert!(events_counter(&g, "accepted") > accepted);
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn with_the_gateway_down_delivery_stays_fast_and_a_restarted_gateway_hears_again() {
    // A Dovecot of its own, sending to a port nobody listens on yet.
    let port = free_udp_port();
    let user = TestUser::new("dora@example.com", "dora-Secret-1");
    let dovecot = Dovecot::start_tuned(
        std::slice::from_ref(&user),
        &Tuning {
            events_port: Some(port),
            ..Tuning::default()
        },
    )
    .unwrap();
    let secret = dovecot.events_secret_path().unwrap();
    let lmtp = dovecot.lmtp_port();
    let deliver = |subject: &'static str| {
        let login = user.login.clone();
        async move {
            let started = Instant::now();
            support::deliver_via(lmtp, &login, &support::message(subject, "x")).await;
            started.elapsed()
        }
    };
    // The first delivery creates the mailbox; the rest are what counts.
    deliver("first").await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        slowest = slowest.max(deliver("nobody listens").await);
    }
    // docs/benchmarks.md measures the difference with and without a gateway (well under
    // 50 ms); here only that nothing waits for the missing gateway.
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");

    for round in 0..2 {
        // Bind the port again as soon as the previous gateway let it go.
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let g = Gateway::start(dovecot.imap_config(), |c| {
            events_config(
                c,
                format!("127.0.0.1:{port}").parse().unwrap(),
                secret.clone(),
            )
        })
        .await;
        let (ph, inbox, _) =
            phone_as(&g, &user.login, &user.password, &format!("EV-DORA{round}")).await;
        let held_req = ping_xml(60, &[&inbox]);
        let held = ph.send("Ping", &held_req);
        let act = async {
            settled(&g, 1).await;
            deliver("heard").await;
        };
        let (r, ()) = tokio::join!(held, act);
        assert_eq!(
            outcome(&r.tree()),
            ("2".into(), vec![inbox]),
            "round {round}"
        );
        drop(ph);
        drop(g);
    }
}

/// `eas-gateway check` in events mode: with `--user` it APPENDs a probe and sees the event;
/// with another secret it says so.
#[tokio::test]
async fn check_sees_the_probe_event_and_names_a_wrong_secret() {
    let relay = relay();
    let d = support::dovecot();
    let (login, password) = support::credentials("grace");
    let port = free_udp_port();
    relay
        .targets
        .lock()
        .unwrap()
        .push(format!("127.0.0.1:{port}").parse().unwrap());
    let mut config = eas_gateway::config::Config::default();
    let imap = d.imap_config();
    config.imap.host = imap.host.clone();
    config.imap.port = imap.port;
    config.imap.security = "none".into();
    let dir = tempfile::tempdir().unwrap();
    config.state.url = format!("sqlite:{}", dir.path().join("state.db").display());
    events_config(
        &mut config,
        format!("127.0.0.1:{port}").parse().unwrap(),
        d.events_secret_path().unwrap(),
    );
    let user = eas_gateway::cli::check::Login {
        user: login,
        password,
    };
    let mut out = Vec::new();
    eas_gateway::cli::check_events::run(&config, Some(&user), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("ok: Dovecot's event arrived, signed with our secret"),
        "{text}"
    );
    assert!(text.contains("push.source = dovecot-events"), "{text}");
    println!("{text}");

    let wrong = dir.path().join("wrong.secret");
    std::fs::write(&wrong, "not the secret\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    config.push.events_secret_file = wrong.clone();
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check_events::run(&config, Some(&user), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert!(text.contains("signed with another secret"), "{text}");

    // A secret every local user can read is refused, by check and by the gateway.
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let err = read_secret(&wrong).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("0644"), "{err}");
}

/// `push.source = "both"`: when every datagram is lost (this gateway is not on the relay), the
/// slow look over IMAP still finds the news.
#[tokio::test]
async fn both_finds_the_news_over_imap_when_events_are_lost() {
    relay();
    let d = support::dovecot();
    let secret = d.events_secret_path().unwrap();
    let g = Gateway::start(d.imap_config(), |c| {
        events_config(c, "127.0.0.1:0".parse().unwrap(), secret);
        c.push.source = PushSource::Both;
        c.push.safety_check_secs = 10;
    })
    .await;
    let (ph, inbox, _) = phone(&g, "heidi", "EV-H").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::append("heidi", "INBOX", &[], &support::message("Lost", "x")).await;
        Instant::now()
    };
    let (r, appended) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
    assert!(
        appended.elapsed() < Duration::from_secs(20),
        "{:?}",
        appended.elapsed()
    );
    assert_eq!(events_counter(&g, "accepted"), 0, "no datagram reached it");
}

/// The same through a Unix datagram socket (`push.events_socket`, `eas_push_target =
/// unix:<path>`): a delivery wakes the Ping.
#[tokio::test]
async fn events_through_a_unix_socket() {
    let user = TestUser::new("una@example.com", "una-Secret-1");
    let dovecot = Dovecot::start_tuned(
        std::slice::from_ref(&user),
        &Tuning {
            events_unix: true,
            ..Tuning::default()
        },
    )
    .unwrap();
    let socket = dovecot.events_socket_path().unwrap();
    let secret = dovecot.events_secret_path().unwrap();
    let g = Gateway::start(dovecot.imap_config(), |c| {
        events_config(c, "127.0.0.1:0".parse().unwrap(), secret);
        c.push.events_socket = Some(socket.clone());
    })
    .await;
    assert_eq!(g.state.hub.events_addr(), None, "no UDP port");
    // Not writable by every local user: the owner and the directory's group (Dovecot's mail
    // user's, as the test bed sets it up) only.
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(&socket).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let dir = std::fs::metadata(socket.parent().unwrap()).unwrap();
        assert_eq!(meta.gid(), dir.gid());
    }
    let (ph, inbox, _) = phone_as(&g, &user.login, &user.password, "EV-UNIX").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        settled(&g, 1).await;
        support::deliver_via(
            dovecot.lmtp_port(),
            &user.login,
            &support::message("Via a Unix socket", "x"),
        )
        .await;
        Instant::now()
    };
    let (r, delivered) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
    assert!(delivered.elapsed() < Duration::from_secs(1));
    assert!(events_counter(&g, "accepted") >= 1);
}

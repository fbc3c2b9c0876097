//! Ping against the real Dovecot: mail arriving, flags changed by another client, the
//! device's own changes, supersession, hierarchy changes, parameters and their statuses, one
//! IMAP connection per user, and a watcher that survives the server dropping it.

mod eas;
mod support;

use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes, sync_to_end};
use eas_wbxml::Element;
use eas_wbxml::tags::ping as p;

async fn gateway() -> Gateway {
    Gateway::start(support::dovecot().imap_config(), |c| {
        c.push.min_heartbeat_secs = 2;
        c.push.max_heartbeat_secs = 600;
        c.push.max_folders = 3;
        c.push.watcher_grace_secs = 2;
    })
    .await
}

/// A provisioned phone that has synced its Inbox; returns it with the Inbox id.
async fn phone(g: &Gateway, user: &str, device: &str) -> (Phone, String, String) {
    let (login, password) = support::credentials(user);
    let mut ph = Phone::new(g, &login, &password, device);
    ph.provision().await;
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    let key = sync_to_end(&ph, &inbox, "0").await;
    (ph, inbox, key)
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

#[tokio::test]
async fn new_mail_wakes_a_held_ping_and_the_connection_is_per_user() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "alice", "PUSH-A1").await;
    let (ph2, inbox2, _) = phone(&g, "alice", "PUSH-A2").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let held2_req = ping_xml(60, &[&inbox2]);
    let held2 = ph2.send("Ping", &held2_req);
    let act = async {
        // Both devices wait on one IMAP connection.
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.state.hub.counts() != (2, 1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            g.state.hub.counts(),
            (2, 1),
            "(waiting devices, IMAP connections)"
        );
        support::deliver("alice", &support::message("Pushed", "x")).await;
        Instant::now()
    };
    let (r1, r2, delivered) = tokio::join!(held, held2, act);
    let latency = delivered.elapsed();
    assert_eq!(outcome(&r1.tree()), ("2".into(), vec![inbox]));
    assert_eq!(outcome(&r2.tree()), ("2".into(), vec![inbox2]));
    assert!(latency < Duration::from_secs(5), "{latency:?}");
}

#[tokio::test]
async fn a_flag_change_by_another_client_wakes_it_but_the_devices_own_change_does_not() {
    let g = gateway().await;
    let uid = support::append("bob", "INBOX", &[], &support::message("Flag me", "x")).await;
    let (ph, inbox, key) = phone(&g, "bob", "PUSH-B").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::store("bob", "INBOX", &uid.to_string(), "+FLAGS (\\Flagged)").await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox.clone()]));
    let key = sync_to_end(&ph, &inbox, &key).await;

    // The device marks it read itself; its next Ping must not report that back.
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
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(4),
        "heartbeat ±1 s: {took:?}"
    );
}

#[tokio::test]
async fn a_second_ping_or_a_sync_ends_the_first() {
    let g = gateway().await;
    let (ph, inbox, key) = phone(&g, "carol", "PUSH-C").await;
    let first_req = ping_xml(60, &[&inbox]);
    let first = ph.send("Ping", &first_req);
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let r = ph.send("Ping", &ping_xml(2, &[&inbox])).await;
        (r, t)
    };
    let (r1, (r2, t)) = tokio::join!(first, second);
    assert_eq!(outcome(&r1.tree()).0, "1");
    assert_eq!(outcome(&r2.tree()).0, "1");
    assert!(t.elapsed() >= Duration::from_secs(2));

    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let sync = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sync_to_end(&ph, &inbox, &key).await;
        Instant::now()
    };
    let (r, synced) = tokio::join!(held, sync);
    assert_eq!(outcome(&r.tree()).0, "1");
    assert!(synced.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn parameters_and_their_statuses() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "dave", "PUSH-D").await;
    // Nothing stored yet: an empty Ping lacks its parameters.
    assert_eq!(outcome(&ph.post("Ping", Vec::new()).await.tree()).0, "3");
    // Heartbeat out of bounds: 5 with the limit.
    let r = ph.send("Ping", &ping_xml(1, &[&inbox])).await.tree();
    assert_eq!(outcome(&r).0, "5");
    assert_eq!(find_text(&r, p::HeartbeatInterval).as_deref(), Some("2"));
    let r = ph.send("Ping", &ping_xml(100_000, &[&inbox])).await.tree();
    assert_eq!(find_text(&r, p::HeartbeatInterval).as_deref(), Some("600"));
    // Too many folders: 6 with the maximum.
    let r = ph
        .send("Ping", &ping_xml(2, &[&inbox, "2", "3", "4"]))
        .await
        .tree();
    assert_eq!(outcome(&r).0, "6");
    assert_eq!(find_text(&r, p::MaxFolders).as_deref(), Some("3"));
    // A folder the device does not know: its hierarchy is out of date.
    assert_eq!(
        outcome(&ph.send("Ping", &ping_xml(2, &["987"])).await.tree()).0,
        "7"
    );
    // Not a Ping document at all.
    assert_eq!(
        outcome(
            &ph.send(
                "Ping",
                "<Ping xmlns=\"Ping:\"><HeartbeatInterval>soon</HeartbeatInterval></Ping>"
            )
            .await
            .tree()
        )
        .0,
        "4"
    );

    // A full Ping is remembered; the empty one reuses its folders and heartbeat.
    assert_eq!(
        outcome(&ph.send("Ping", &ping_xml(2, &[&inbox])).await.tree()).0,
        "1"
    );
    let held = ph.post("Ping", Vec::new());
    let act = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::deliver("dave", &support::message("Via empty ping", "x")).await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
}

#[tokio::test]
async fn a_new_folder_means_the_hierarchy_changed() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "erin", "PUSH-E").await;
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        support::create("erin", &support::unique("Projects")).await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()).0, "7");
}

#[tokio::test]
async fn the_watcher_reconnects_when_the_server_drops_it() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "frank", "PUSH-F").await;
    let (login, _) = support::credentials("frank");
    let held_req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &held_req);
    let act = async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.state.hub.counts().1 < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Dovecot drops every connection of the user, the watcher's included.
        let conf = support::dovecot().dir().join("dovecot.conf");
        let out = std::process::Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["kick", &login])
            .output()
            .expect("running doveadm");
        assert!(
            out.status.success(),
            "doveadm kick: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains(&login),
            "the watcher's connection was kicked: {said}"
        );
        // Back and watching again, then mail arrives.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while g.state.hub.counts().1 < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        support::deliver("frank", &support::message("After the drop", "x")).await;
    };
    let (r, ()) = tokio::join!(held, act);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox]));
}

#[tokio::test]
async fn shutdown_answers_every_held_ping() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "grace", "PUSH-G").await;
    let req = ping_xml(60, &[&inbox]);
    let held = ph.send("Ping", &req);
    let stop = async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while g.state.hub.counts().0 < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        g.state.hub.shutdown();
        Instant::now()
    };
    let (r, stopped) = tokio::join!(held, stop);
    assert_eq!(outcome(&r.tree()).0, "1");
    assert!(stopped.elapsed() < Duration::from_secs(1));
}

/// Regressions found in review: mail arriving while the watcher is still connecting, and a
/// pinged folder deleted by another client.
#[tokio::test]
async fn mail_right_after_the_first_ping_and_a_deleted_folder() {
    let g = gateway().await;
    let name = support::unique("Gone");
    support::create("heidi", &name).await;
    let (ph, inbox, _) = phone(&g, "heidi", "PUSH-H").await;
    // No pause at all between the Ping and the delivery.
    let req = ping_xml(30, &[&inbox]);
    let held = ph.send("Ping", &req);
    let deliver = async {
        tokio::task::yield_now().await;
        support::deliver("heidi", &support::message("Instantly", "x")).await;
    };
    let (r, ()) = tokio::join!(held, deliver);
    assert_eq!(outcome(&r.tree()), ("2".into(), vec![inbox.clone()]));

    // A folder the phone pings is deleted elsewhere: status 7 (FolderSync), not an error.
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let gone = folders.iter().find(|f| f.name == name).unwrap().id.clone();
    support::delete("heidi", &name).await;
    let r = ph.send("Ping", &ping_xml(5, &[&gone])).await;
    assert_eq!(r.status, 200);
    assert_eq!(outcome(&r.tree()).0, "7");
}

#[tokio::test]
async fn news_already_there_answers_at_once_without_a_login_per_ping() {
    let g = gateway().await;
    let (ph, inbox, _) = phone(&g, "ivan", "PUSH-I").await;
    // A first Ping starts the watcher and ends at its heartbeat.
    assert_eq!(
        outcome(&ph.send("Ping", &ping_xml(2, &[&inbox])).await.tree()).0,
        "1"
    );
    // Mail arrives while the phone is between Pings: the next Ping answers at once.
    support::deliver("ivan", &support::message("Between pings", "x")).await;
    let started = Instant::now();
    let r = ph.send("Ping", &ping_xml(60, &[&inbox])).await.tree();
    assert_eq!(outcome(&r), ("2".into(), vec![inbox.clone()]));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The watcher stayed connected across the Pings: still one connection.
    assert_eq!(g.state.hub.counts().1, 1);
}

//! Email Sync against the real Dovecot through real HTTP, checking both sides: what the phone
//! is told, and what IMAP holds afterwards.

mod eas;
mod support;

use std::collections::BTreeSet;

use eas::{Gateway, Phone, find_text, folder_changes};
use eas_gateway::imap::{FetchQuery, SequenceSet};
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb, email as em};

/// Flags of one message, as IMAP has them.
async fn flags(user: &str, mailbox: &str, uid: u32) -> Vec<String> {
    let mut s = support::session(user).await;
    s.select(mailbox).await.unwrap();
    let f = s.uid_fetch_flags(&SequenceSet::single(uid)).await.unwrap();
    let _ = s.logout().await;
    f.into_iter()
        .next()
        .map(|m| m.flags.iter().map(|f| f.as_str().to_owned()).collect())
        .unwrap_or_default()
}

/// Every UID of a mailbox.
async fn uids(user: &str, mailbox: &str) -> Vec<u32> {
    let mut s = support::session(user).await;
    let st = s.select(mailbox).await.unwrap();
    let out = if st.exists == 0 {
        Vec::new()
    } else {
        let f = s.uid_fetch_flags(&SequenceSet::all()).await.unwrap();
        f.into_iter().map(|m| m.uid).collect()
    };
    let _ = s.logout().await;
    out
}

/// Subjects of every message of a mailbox (raw header values).
async fn subjects(user: &str, mailbox: &str) -> Vec<String> {
    let mut s = support::session(user).await;
    let st = s.select(mailbox).await.unwrap();
    let mut out = Vec::new();
    if st.exists > 0 {
        let q = FetchQuery::new().header();
        for f in s.uid_fetch(&SequenceSet::all(), &q).await.unwrap() {
            let h = String::from_utf8_lossy(f.header().unwrap_or_default()).into_owned();
            if let Some(line) = h.lines().find(|l| l.starts_with("Subject: ")) {
                out.push(line["Subject: ".len()..].trim().to_owned());
            }
        }
    }
    let _ = s.logout().await;
    out
}

/// The sample messages of `fixtures/mail/`.
fn mixed_mailbox() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mail");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

async fn gateway() -> Gateway {
    Gateway::start(support::dovecot().imap_config(), |_| {}).await
}

/// A provisioned phone that has done its FolderSync; returns it with (name → id) folders.
async fn phone(g: &Gateway, user: &str, version: &'static str) -> (Phone, Vec<eas::Folder>) {
    let (login, password) = support::credentials(user);
    let mut p = Phone::new(
        g,
        &login,
        &password,
        &format!("SYNC{}", user.to_uppercase()),
    );
    p.version = version;
    p.provision().await;
    let fs = p.folder_sync("0").await;
    let (adds, _, _) = folder_changes(&fs);
    (p, adds)
}

fn folder_id(folders: &[eas::Folder], name: &str) -> String {
    folders
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no folder {name} in {folders:?}"))
        .id
        .clone()
}

/// One collection of a Sync response.
#[derive(Debug, Default)]
struct Got {
    key: String,
    status: String,
    more: bool,
    adds: Vec<(String, Element)>,
    changes: Vec<(String, Element)>,
    deletes: Vec<String>,
    soft_deletes: Vec<String>,
    responses: Vec<Element>,
}

fn collection(tree: &Element) -> Got {
    let c = tree
        .child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .unwrap_or_else(|| panic!("no Collection in {}", eas_wbxml::to_xml(tree)));
    let text = |e: &Element, t| e.child(t).and_then(|x| x.text()).unwrap_or("").to_owned();
    let mut got = Got {
        key: text(c, a::SyncKey),
        status: text(c, a::Status),
        more: c.child(a::MoreAvailable).is_some(),
        ..Got::default()
    };
    if let Some(cmds) = c.child(a::Commands) {
        for cmd in cmds.children() {
            let sid = text(cmd, a::ServerId);
            let data = cmd
                .child(a::ApplicationData)
                .cloned()
                .unwrap_or_else(|| Element::new(a::ApplicationData));
            match cmd.tag {
                t if t == a::Add => got.adds.push((sid, data)),
                t if t == a::Change => got.changes.push((sid, data)),
                t if t == a::Delete => got.deletes.push(sid),
                t if t == a::SoftDelete => got.soft_deletes.push(sid),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    if let Some(r) = c.child(a::Responses) {
        got.responses = r.children().to_vec();
    }
    got
}

const PLAIN_BODY: &str = r#"<airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>200000</airsyncbase:TruncationSize></airsyncbase:BodyPreference>"#;

async fn sync(p: &Phone, key: &str, coll: &str, inner: &str) -> Got {
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:" xmlns:email="Email:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{coll}</CollectionId>{inner}
           </Collection></Collections></Sync>"#
    );
    let r = p.send("Sync", &xml).await;
    collection(&r.tree())
}

/// Initial key, then pages until MoreAvailable is gone; returns the final key and every Add.
async fn sync_all(p: &Phone, coll: &str, window: usize) -> (String, Vec<(String, Element)>) {
    let first = sync(p, "0", coll, "").await;
    assert_eq!(first.status, "1");
    assert!(first.adds.is_empty(), "SyncKey 0 answers with no items");
    let mut key = first.key;
    let mut all = Vec::new();
    loop {
        let got = sync(
            p,
            &key,
            coll,
            &format!("<DeletesAsMoves/><GetChanges/><WindowSize>{window}</WindowSize><Options>{PLAIN_BODY}</Options>"),
        )
        .await;
        assert_eq!(got.status, "1");
        assert!(got.adds.len() <= window);
        all.extend(got.adds);
        key = got.key;
        if !got.more {
            return (key, all);
        }
    }
}

fn subject(data: &Element) -> String {
    find_text(data, em::Subject).unwrap_or_default()
}

fn body_data(data: &Element) -> String {
    data.child(asb::Body)
        .and_then(|b| b.child(asb::Data))
        .and_then(|d| d.text())
        .unwrap_or("")
        .to_owned()
}

fn mail(subject: &str, body: &str) -> Vec<u8> {
    support::message(subject, body)
}

#[tokio::test]
async fn initial_sync_pages_newest_first_and_counts_match_the_estimate() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "alice", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let mut uids = Vec::new();
    for i in 0..7 {
        uids.push(support::append("alice", "INBOX", &[], &mail(&format!("Paging {i}"), "x")).await);
    }
    let first = sync(&p, "0", &inbox, "").await;
    let estimate = p
        .send(
            "GetItemEstimate",
            &format!(
                r#"<GetItemEstimate xmlns="GetItemEstimate:" xmlns:airsync="AirSync:"><Collections><Collection>
                     <airsync:SyncKey>{}</airsync:SyncKey><CollectionId>{inbox}</CollectionId>
                   </Collection></Collections></GetItemEstimate>"#,
                first.key
            ),
        )
        .await
        .tree();
    assert_eq!(
        find_text(&estimate, eas_wbxml::tags::getitemestimate::Estimate).as_deref(),
        Some("7"),
        "{}",
        eas_wbxml::to_xml(&estimate)
    );
    let mut key = first.key;
    let mut seen = Vec::new();
    loop {
        let got = sync(&p, &key, &inbox, "<WindowSize>3</WindowSize>").await;
        assert!(got.adds.len() <= 3);
        seen.extend(got.adds.iter().map(|(sid, d)| (sid.clone(), subject(d))));
        key = got.key;
        if !got.more {
            break;
        }
    }
    let expected: Vec<(String, String)> = (0..7)
        .rev()
        .map(|i| (format!("{inbox}:{}", uids[i]), format!("Paging {i}")))
        .collect();
    assert_eq!(seen, expected, "every message once, newest first");
    // The IMAP session is kept for the user's next request rather than logged out.
    assert!(!g.state.pool.is_empty());
    // Nothing new: same key, nothing sent.
    let again = sync(&p, &key, &inbox, "").await;
    assert_eq!((again.key.as_str(), again.adds.len()), (key.as_str(), 0));
}

#[tokio::test]
async fn a_message_arriving_between_pages_is_sent_once() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "bob", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    for i in 0..4 {
        support::append("bob", "INBOX", &[], &mail(&format!("Before {i}"), "x")).await;
    }
    let first = sync(&p, "0", &inbox, "").await;
    let page1 = sync(&p, &first.key, &inbox, "<WindowSize>2</WindowSize>").await;
    assert!(page1.more);
    let late = support::append("bob", "INBOX", &[], &mail("Late arrival", "x")).await;
    let mut key = page1.key;
    let mut ids: Vec<String> = page1.adds.iter().map(|a| a.0.clone()).collect();
    loop {
        let got = sync(&p, &key, &inbox, "<WindowSize>2</WindowSize>").await;
        ids.extend(got.adds.iter().map(|a| a.0.clone()));
        key = got.key;
        if !got.more {
            break;
        }
    }
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates: {ids:?}");
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&format!("{inbox}:{late}")));
}

/// Paging with read-ahead (pages computed before the phone asks) while another client adds,
/// expunges and flags messages between the pages: after the paging and the one Sync a push
/// would bring, the phone holds exactly the mailbox — every message once, with its flags —
/// and pages really were answered from read-ahead.
#[tokio::test]
async fn read_ahead_pages_stay_consistent_with_changes_between_pages() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "rahel", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let mut appended = Vec::new();
    for i in 0..12 {
        appended
            .push(support::append("rahel", "INBOX", &[], &mail(&format!("Page {i}"), "x")).await);
    }
    let used_before = g.state.read_ahead.counts().get()[2];
    let first = sync(&p, "0", &inbox, "").await;
    // The phone's model: ServerId -> Read.
    let mut held: std::collections::BTreeMap<String, String> = Default::default();
    let apply = |got: &Got, held: &mut std::collections::BTreeMap<String, String>| {
        for (sid, data) in &got.adds {
            let read = find_text(data, em::Read).unwrap_or_default();
            assert!(
                held.insert(sid.clone(), read).is_none(),
                "{sid} added twice"
            );
        }
        for (sid, data) in &got.changes {
            let read = find_text(data, em::Read).unwrap_or_default();
            assert!(
                held.insert(sid.clone(), read).is_some(),
                "change of unknown {sid}"
            );
        }
        for sid in &got.deletes {
            assert!(held.remove(sid).is_some(), "delete of unknown {sid}");
        }
    };
    let mut key = first.key;
    let mut page = 0;
    loop {
        let got = sync(&p, &key, &inbox, "<WindowSize>2</WindowSize>").await;
        apply(&got, &mut held);
        key = got.key;
        page += 1;
        // Give the pager time to compute the next page before the mailbox changes under it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        match page {
            1 => {
                // Not sent yet: flagged read, expunged, and a new arrival.
                support::store(
                    "rahel",
                    "INBOX",
                    &appended[2].to_string(),
                    "+FLAGS (\\Seen)",
                )
                .await;
                support::expunge("rahel", "INBOX", &appended[1].to_string()).await;
                appended.push(support::append("rahel", "INBOX", &[], &mail("Late", "x")).await);
            }
            3 => {
                // Already sent (newest first): read elsewhere, then expunged elsewhere.
                support::store(
                    "rahel",
                    "INBOX",
                    &appended[11].to_string(),
                    "+FLAGS (\\Seen)",
                )
                .await;
                support::expunge("rahel", "INBOX", &appended[10].to_string()).await;
            }
            _ => {}
        }
        if !got.more {
            break;
        }
    }
    // What a push would bring: one more Sync, until nothing is left.
    loop {
        let got = sync(&p, &key, &inbox, "<WindowSize>2</WindowSize>").await;
        apply(&got, &mut held);
        key = got.key;
        if !got.more {
            break;
        }
    }
    let mut want = std::collections::BTreeMap::new();
    for uid in uids("rahel", "INBOX").await {
        let read = flags("rahel", "INBOX", uid)
            .await
            .iter()
            .any(|f| f == "\\Seen");
        want.insert(
            format!("{inbox}:{uid}"),
            if read { "1" } else { "0" }.to_owned(),
        );
    }
    assert_eq!(held, want, "the phone holds the mailbox");
    assert!(
        g.state.read_ahead.counts().get()[2] > used_before,
        "pages were answered from read-ahead: {:?}",
        g.state.read_ahead.counts().get()
    );
    let metrics = g.metrics().await;
    let used: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eas_sync_read_ahead_total{event=\"page_used\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no read-ahead counter in {metrics}"));
    assert!(used > used_before);
}

#[tokio::test]
async fn flags_change_on_either_side_and_are_not_echoed() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "carol", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let uid = support::append("carol", "INBOX", &[], &mail("Flags", "x")).await;
    let (key, adds) = sync_all(&p, &inbox, 50).await;
    assert_eq!(find_text(&adds[0].1, em::Read).as_deref(), Some("0"));

    // Server side: another client reads and flags it.
    support::store(
        "carol",
        "INBOX",
        &uid.to_string(),
        "+FLAGS (\\Seen \\Flagged)",
    )
    .await;
    let got = sync(&p, &key, &inbox, "").await;
    assert_eq!(got.changes.len(), 1, "{got:?}");
    let (sid, data) = &got.changes[0];
    assert_eq!(sid, &format!("{inbox}:{uid}"));
    assert_eq!(find_text(data, em::Read).as_deref(), Some("1"));
    assert_eq!(find_text(data, em::Status).as_deref(), Some("2"), "flagged");

    // Phone side: marks it unread and clears the flag.
    let got2 = sync(
        &p,
        &got.key,
        &inbox,
        &format!(
            "<Commands><Change><ServerId>{sid}</ServerId><ApplicationData>\
             <email:Read>0</email:Read><email:Flag/></ApplicationData></Change></Commands>"
        ),
    )
    .await;
    assert_eq!(got2.status, "1");
    assert!(
        got2.changes.is_empty(),
        "the phone's own change is not echoed"
    );
    let flags = flags("carol", "INBOX", uid).await;
    assert!(
        !flags.iter().any(|f| f == "\\Seen" || f == "\\Flagged"),
        "{flags:?}"
    );
    let got3 = sync(&p, &got2.key, &inbox, "").await;
    assert!(got3.changes.is_empty() && got3.adds.is_empty(), "{got3:?}");
}

#[tokio::test]
async fn deletes_on_either_side() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "dave", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let gone = support::append("dave", "INBOX", &[], &mail("Expunged elsewhere", "x")).await;
    let trashed = support::append("dave", "INBOX", &[], &mail("Deleted on the phone", "x")).await;
    let (key, adds) = sync_all(&p, &inbox, 50).await;
    assert_eq!(adds.len(), 2);

    support::expunge("dave", "INBOX", &gone.to_string()).await;
    let got = sync(&p, &key, &inbox, "").await;
    assert_eq!(got.deletes, vec![format!("{inbox}:{gone}")]);

    let got2 = sync(
        &p,
        &got.key,
        &inbox,
        &format!("<DeletesAsMoves>1</DeletesAsMoves><Commands><Delete><ServerId>{inbox}:{trashed}</ServerId></Delete></Commands>"),
    )
    .await;
    assert_eq!(got2.status, "1");
    assert!(got2.deletes.is_empty(), "not echoed");
    assert!(uids("dave", "INBOX").await.is_empty());
    let trash = subjects("dave", "Trash").await;
    assert!(
        trash.contains(&"Deleted on the phone".to_owned()),
        "{trash:?}"
    );

    // Deleting an item the phone does not have: a per-item status, nothing else changes.
    let got3 = sync(
        &p,
        &got2.key,
        &inbox,
        &format!("<Commands><Delete><ServerId>{inbox}:999999</ServerId></Delete></Commands>"),
    )
    .await;
    assert_eq!(got3.status, "1");
    assert_eq!(
        find_text(&got3.responses[0], a::Status).as_deref(),
        Some("8")
    );
}

#[tokio::test]
async fn a_resent_sync_key_gets_the_same_answer_and_changes_nothing_twice() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "erin", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let a1 = support::append("erin", "INBOX", &[], &mail("One", "x")).await;
    let (key, _) = sync_all(&p, &inbox, 50).await;
    support::append("erin", "INBOX", &[], &mail("Two", "x")).await;
    let request = format!(
        "<Commands><Change><ServerId>{inbox}:{a1}</ServerId><ApplicationData><email:Read>1</email:Read></ApplicationData></Change></Commands>"
    );
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:email="Email:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId>{request}
           </Collection></Collections></Sync>"#
    );
    let first = p.send("Sync", &xml).await;
    // The response was lost; the phone sends the very same request again.
    support::append("erin", "INBOX", &[], &mail("Three", "x")).await;
    let again = p.send("Sync", &xml).await;
    assert_eq!(first.body, again.body, "identical answer");
    let got = collection(&again.tree());
    assert_eq!(got.adds.len(), 1);
    // Continuing from the new key brings the third message, once.
    let next = sync(&p, &got.key, &inbox, "").await;
    assert_eq!(next.adds.len(), 1);
    assert_eq!(subject(&next.adds[0].1), "Three");
    // The old key is void now.
    let stale = sync(&p, &key, &inbox, "").await;
    assert_eq!(stale.status, "3");
}

/// The kept answer to client commands holds message content, so it lives only for the resend
/// window: a retry after that is told to resync the folder (status 3), and its commands are
/// not applied a second time.
#[tokio::test]
async fn a_retry_after_the_resend_window_resyncs_and_applies_nothing_twice() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "resendwin", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let a1 = support::append("resendwin", "INBOX", &[], &mail("Kept secret", "x")).await;
    let (key, _) = sync_all(&p, &inbox, 50).await;
    support::append("resendwin", "INBOX", &[], &mail("Content", "the body")).await;
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:email="Email:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId><Commands><Change><ServerId>{inbox}:{a1}</ServerId><ApplicationData><email:Read>1</email:Read></ApplicationData></Change></Commands>
           </Collection></Collections></Sync>"#
    );
    let first = p.send("Sync", &xml).await;
    assert_eq!(collection(&first.tree()).adds.len(), 1);
    let device = eas_gateway::state::DeviceKey {
        user: p.login.to_lowercase(),
        device_id: p.device_id.clone(),
    };
    let kept = g
        .state
        .store
        .memo(&device, eas_gateway::eas::sync::MEMO_LAST_RESPONSE)
        .unwrap()
        .expect("the answer is kept for a retry");
    assert_eq!(kept, first.body);
    // The window passes (the gateway's sweep, run here with "now" an hour ahead).
    let later = eas_gateway::state::unix_now() + 3600;
    let gone = g
        .state
        .store
        .expire_memos(eas_gateway::eas::sync::MEMO_LAST_RESPONSE, later)
        .unwrap();
    assert!(gone >= 1);
    assert_eq!(
        g.state
            .store
            .memo(&device, eas_gateway::eas::sync::MEMO_LAST_RESPONSE)
            .unwrap(),
        None
    );
    // The late retry: resync, no second Add of what the first answer carried.
    let again = p.send("Sync", &xml).await;
    let got = collection(&again.tree());
    assert_eq!(got.status, "3", "{}", again.xml());
    assert!(got.adds.is_empty());
}

#[tokio::test]
async fn unknown_key_and_unknown_collection() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "frank", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    assert_eq!(sync(&p, "987654", &inbox, "").await.status, "3");
    assert_eq!(sync(&p, "garbage", &inbox, "").await.status, "3");
    assert_eq!(sync(&p, "0", "4242", "").await.status, "12");
    // A malformed Sync (no SyncKey) is status 4 at the top level.
    let r = p
        .send(
            "Sync",
            r#"<Sync xmlns="AirSync:"><Collections><Collection><CollectionId>1</CollectionId></Collection></Collections></Sync>"#,
        )
        .await
        .tree();
    assert_eq!(find_text(&r, a::Status).as_deref(), Some("4"));
}

#[tokio::test]
async fn uidvalidity_reset_restarts_the_folder() {
    let g = gateway().await;
    let name = support::unique("Projects");
    support::create("grace", &name).await;
    support::append("grace", &name, &[], &mail("In a folder", "x")).await;
    let (p, folders) = phone(&g, "grace", "14.1").await;
    let coll = folder_id(&folders, &name);
    let (key, adds) = sync_all(&p, &coll, 50).await;
    assert_eq!(adds.len(), 1);
    // Recreated behind our back: same name, new UIDVALIDITY, UIDs mean other messages now.
    support::delete("grace", &name).await;
    support::create("grace", &name).await;
    support::append("grace", &name, &[], &mail("Recreated", "x")).await;
    let got = sync(&p, &key, &coll, "").await;
    assert!(got.status == "3" || got.status == "12", "{got:?}");
}

#[tokio::test]
async fn truncation_and_all_or_none() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "heidi", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let long = "0123456789".repeat(100);
    support::append("heidi", "INBOX", &[], &mail("Long", &long)).await;
    let first = sync(&p, "0", &inbox, "").await;
    let got = sync(
        &p,
        &first.key,
        &inbox,
        "<Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type>\
         <airsyncbase:TruncationSize>20</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>",
    )
    .await;
    let data = &got.adds[0].1;
    let body = data.child(asb::Body).unwrap();
    assert_eq!(find_text(body, asb::Truncated).as_deref(), Some("1"));
    assert_eq!(body_data(data), long[..20]);
    let size: usize = find_text(body, asb::EstimatedDataSize)
        .unwrap()
        .parse()
        .unwrap();
    assert!(size >= long.len());

    // AllOrNone with a limit too small: no body data at all.
    let p2 = {
        let (mut p2, _) = phone(&g, "heidi", "14.1").await;
        p2.device_id = "SYNCHEIDI2".into();
        p2.provision().await;
        p2.folder_sync("0").await;
        p2
    };
    let first = sync(&p2, "0", &inbox, "").await;
    let got = sync(
        &p2,
        &first.key,
        &inbox,
        "<Options><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type>\
         <airsyncbase:TruncationSize>20</airsyncbase:TruncationSize><airsyncbase:AllOrNone>1</airsyncbase:AllOrNone></airsyncbase:BodyPreference></Options>",
    )
    .await;
    let body = got.adds[0].1.child(asb::Body).unwrap().clone();
    assert_eq!(find_text(&body, asb::Truncated).as_deref(), Some("1"));
    assert!(
        body.child(asb::Data)
            .is_none_or(|d| d.text().unwrap_or("").is_empty())
    );
}

#[tokio::test]
async fn a_mixed_mailbox_syncs_completely_in_every_version() {
    let g = gateway().await;
    for (user, version) in [("ivan", "12.1"), ("judy", "14.1"), ("mallory", "16.1")] {
        let mut expected = Vec::new();
        for file in mixed_mailbox() {
            let bytes = std::fs::read(&file).unwrap();
            support::append(user, "INBOX", &[], &bytes).await;
            expected.push(file);
        }
        let (p, folders) = phone(&g, user, version).await;
        let inbox = folder_id(&folders, "Inbox");
        let (_, adds) = sync_all(&p, &inbox, 4).await;
        assert_eq!(
            adds.len(),
            expected.len(),
            "{version}: every message, broken ones too"
        );
        let subjects: Vec<String> = adds.iter().map(|(_, d)| subject(d)).collect();
        for s in [
            "Grüße aus Köln",
            "日本語の件名",
            "HTML only",
            "With attachment",
        ] {
            assert!(
                subjects.iter().any(|x| x == s),
                "{version}: {s} in {subjects:?}"
            );
        }
        let latin1 = adds
            .iter()
            .find(|(_, d)| subject(d) == "Grüße aus Köln")
            .unwrap();
        assert!(
            body_data(&latin1.1).contains("Hauptstraße"),
            "{version}: charset decoded: {}",
            eas_wbxml::to_xml(&latin1.1)
        );
    }
}

/// APPEND with an explicit INTERNALDATE, spoken directly (our client does not offer it): the
/// only way to put "old" mail in a mailbox for FilterType tests.
async fn append_dated(user: &str, mailbox: &str, date: &str, message: &[u8]) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (login, password) = support::credentials(user);
    let port = support::dovecot().imap_port();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut io = BufReader::new(stream);
    let mut line = String::new();
    io.read_line(&mut line).await.unwrap();
    let mut send = async |cmd: Vec<u8>, tag: &str| {
        io.get_mut().write_all(&cmd).await.unwrap();
        loop {
            let mut l = String::new();
            io.read_line(&mut l).await.unwrap();
            if l.starts_with('+') || l.starts_with(tag) {
                assert!(
                    !l.starts_with(&format!("{tag} NO")) && !l.starts_with(&format!("{tag} BAD")),
                    "{l}"
                );
                return;
            }
        }
    };
    send(
        format!("a LOGIN \"{login}\" \"{password}\"\r\n").into_bytes(),
        "a",
    )
    .await;
    send(
        format!(
            "b APPEND \"{mailbox}\" \"{date}\" {{{}}}\r\n",
            message.len()
        )
        .into_bytes(),
        "+",
    )
    .await;
    let mut body = message.to_vec();
    body.extend_from_slice(b"\r\n");
    send(body, "b").await;
    send(b"c LOGOUT\r\n".to_vec(), "c").await;
}

#[tokio::test]
async fn filter_type_windows_and_soft_deletes() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "olivia", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    append_dated(
        "olivia",
        "INBOX",
        "01-Jan-2020 10:00:00 +0000",
        &mail("Ancient", "x"),
    )
    .await;
    support::append("olivia", "INBOX", &[], &mail("Fresh", "x")).await;
    let first = sync(
        &p,
        "0",
        &inbox,
        "<Options><FilterType>3</FilterType></Options>",
    )
    .await;
    let got = sync(
        &p,
        &first.key,
        &inbox,
        "<Options><FilterType>3</FilterType></Options>",
    )
    .await;
    let names: Vec<String> = got.adds.iter().map(|(_, d)| subject(d)).collect();
    assert_eq!(names, vec!["Fresh".to_owned()], "only the last week");
    // Widening the window to everything brings the old one too.
    let wide = sync(
        &p,
        &got.key,
        &inbox,
        "<Options><FilterType>0</FilterType></Options>",
    )
    .await;
    let names: Vec<String> = wide.adds.iter().map(|(_, d)| subject(d)).collect();
    assert_eq!(names, vec!["Ancient".to_owned()]);
    // Narrowing it again takes the old one away as a SoftDelete (it stays on the server).
    let narrow = sync(
        &p,
        &wide.key,
        &inbox,
        "<Options><FilterType>1</FilterType></Options>",
    )
    .await;
    assert_eq!(narrow.soft_deletes.len(), 1, "{narrow:?}");
    assert_eq!(uids("olivia", "INBOX").await.len(), 2);
}

#[tokio::test]
async fn an_empty_sync_repeats_the_cached_request() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "peggy", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    // Without a previous request there is nothing to repeat: status 13.
    let r = p.post("Sync", Vec::new()).await.tree();
    assert_eq!(find_text(&r, a::Status).as_deref(), Some("13"));
    let (key, _) = sync_all(&p, &inbox, 10).await;
    support::append("peggy", "INBOX", &[], &mail("Later", "x")).await;
    let got = collection(&p.post("Sync", Vec::new()).await.tree());
    assert_eq!(got.adds.len(), 1);
    assert_ne!(got.key, key);
}

#[tokio::test]
async fn a_held_sync_answers_when_mail_arrives() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "rupert", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let (key, _) = sync_all(&p, &inbox, 10).await;
    let xml = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId>
           </Collection></Collections><HeartbeatInterval>60</HeartbeatInterval></Sync>"#
    );
    let started = std::time::Instant::now();
    let held = p.send("Sync", &xml);
    let deliver = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        support::deliver("rupert", &mail("Pushed by Sync", "x")).await;
    };
    let (answer, ()) = tokio::join!(held, deliver);
    let got = collection(&answer.tree());
    assert_eq!(got.adds.len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // Out-of-range heartbeat: status 14 with the limit.
    let bad = p
        .send(
            "Sync",
            &xml.replace("<HeartbeatInterval>60", "<HeartbeatInterval>5"),
        )
        .await
        .tree();
    assert_eq!(find_text(&bad, a::Status).as_deref(), Some("14"));
    assert_eq!(find_text(&bad, a::Limit).as_deref(), Some("60"));
}

#[tokio::test]
async fn move_items_moves_in_imap_and_is_not_echoed() {
    use eas_wbxml::tags::moveitems as m;
    let g = gateway().await;
    let name = support::unique("Archive");
    support::create("sybil", &name).await;
    let uid = support::append("sybil", "INBOX", &[], &mail("Move me", "x")).await;
    let (p, folders) = phone(&g, "sybil", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let archive = folder_id(&folders, &name);
    let (inbox_key, _) = sync_all(&p, &inbox, 10).await;
    let (archive_key, _) = sync_all(&p, &archive, 10).await;
    let moved = p
        .send(
            "MoveItems",
            &format!(
                r#"<MoveItems xmlns="Move:">
                 <Move><SrcMsgId>{inbox}:{uid}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{archive}</DstFldId></Move>
                 <Move><SrcMsgId>{inbox}:999999</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{archive}</DstFldId></Move>
                 <Move><SrcMsgId>{inbox}:{uid}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{inbox}</DstFldId></Move>
                 <Move><SrcMsgId>{inbox}:{uid}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>777</DstFldId></Move>
                 <Move><SrcMsgId>777:1</SrcMsgId><SrcFldId>777</SrcFldId><DstFldId>{archive}</DstFldId></Move>
               </MoveItems>"#
            ),
        )
        .await
        .tree();
    let responses: Vec<&Element> = moved.children_with(m::Response).collect();
    let status = |r: &Element| find_text(r, m::Status).unwrap();
    assert_eq!(
        responses.iter().map(|r| status(r)).collect::<Vec<_>>(),
        vec!["3", "1", "4", "2", "1"]
    );
    let new_id = find_text(responses[0], m::DstMsgId).unwrap();
    assert!(new_id.starts_with(&format!("{archive}:")));
    assert!(uids("sybil", "INBOX").await.is_empty());
    assert_eq!(subjects("sybil", &name).await, vec!["Move me".to_owned()]);
    // Neither folder echoes the move.
    let a = sync(&p, &inbox_key, &inbox, "").await;
    assert!(a.deletes.is_empty(), "{a:?}");
    let b = sync(&p, &archive_key, &archive, "").await;
    assert!(b.adds.is_empty(), "{b:?}");
    // A move made by another client is seen as Delete + Add.
    let new_uid: u32 = new_id.split(':').nth(1).unwrap().parse().unwrap();
    let mut s = support::session("sybil").await;
    s.select(&name).await.unwrap();
    s.uid_move(&SequenceSet::single(new_uid), "INBOX")
        .await
        .unwrap();
    let _ = s.logout().await;
    let a2 = sync(&p, &a.key, &inbox, "").await;
    assert_eq!(a2.adds.len(), 1);
    let b2 = sync(&p, &b.key, &archive, "").await;
    assert_eq!(b2.deletes, vec![new_id]);
}

#[tokio::test]
async fn item_operations_fetch_items_attachments_and_empty_folders() {
    use base64::Engine as _;
    use eas_wbxml::tags::itemoperations as io;
    let g = gateway().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/mail");
    let raw = std::fs::read(dir.join("attachment.eml")).unwrap();
    let uid = support::append("trent", "INBOX", &[], &raw).await;
    let (p, folders) = phone(&g, "trent", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let (_, adds) = sync_all(&p, &inbox, 10).await;
    let refs: Vec<(String, String)> = adds[0]
        .1
        .child(asb::Attachments)
        .unwrap()
        .children()
        .iter()
        .map(|a| {
            (
                find_text(a, asb::DisplayName).unwrap(),
                find_text(a, asb::FileReference).unwrap(),
            )
        })
        .collect();
    let pdf_ref = &refs.iter().find(|(n, _)| n == "report.pdf").unwrap().1;
    let fetch = |body: String| {
        let p = &p;
        async move {
            p.send(
                "ItemOperations",
                &format!(
                    r#"<ItemOperations xmlns="ItemOperations:" xmlns:airsync="AirSync:" xmlns:airsyncbase="AirSyncBase:">{body}</ItemOperations>"#
                ),
            )
            .await
            .tree()
        }
    };
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsyncbase:FileReference>{pdf_ref}</airsyncbase:FileReference></Fetch>"
    ))
    .await;
    let data = find_text(&r, io::Data).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(
        bytes,
        std::fs::read(dir.join("report.pdf")).unwrap(),
        "identical bytes"
    );
    // A byte range.
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsyncbase:FileReference>{pdf_ref}</airsyncbase:FileReference><Options><Range>10-19</Range></Options></Fetch>"
    ))
    .await;
    let part = base64::engine::general_purpose::STANDARD
        .decode(find_text(&r, io::Data).unwrap())
        .unwrap();
    assert_eq!(part, bytes[10..20]);
    assert_eq!(find_text(&r, io::Total).as_deref(), Some("10240"));
    // Unknown attachment: 15; a range past the end: 8.
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsyncbase:FileReference>{inbox}:{uid}:9</airsyncbase:FileReference></Fetch>"
    ))
    .await;
    assert_eq!(
        find_text(&r.children()[1], io::Status).as_deref(),
        Some("15")
    );
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsyncbase:FileReference>{pdf_ref}</airsyncbase:FileReference><Options><Range>99999-100000</Range></Options></Fetch>"
    ))
    .await;
    assert_eq!(
        find_text(&r.children()[1], io::Status).as_deref(),
        Some("8")
    );
    // The whole item as MIME.
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsync:CollectionId>{inbox}</airsync:CollectionId><airsync:ServerId>{inbox}:{uid}</airsync:ServerId>\
         <Options><airsync:MIMESupport>2</airsync:MIMESupport><airsyncbase:BodyPreference><airsyncbase:Type>4</airsyncbase:Type></airsyncbase:BodyPreference></Options></Fetch>"
    ))
    .await;
    let mime = find_text(&r, asb::Data).unwrap();
    assert!(mime.contains("Subject: With attachment"), "{mime:.200}");
    // An item that does not exist: 6.
    let r = fetch(format!(
        "<Fetch><Store>Mailbox</Store><airsync:CollectionId>{inbox}</airsync:CollectionId><airsync:ServerId>{inbox}:424242</airsync:ServerId></Fetch>"
    ))
    .await;
    assert_eq!(
        find_text(&r.children()[1], io::Status).as_deref(),
        Some("6")
    );
    // EmptyFolderContents on Trash.
    support::append("trent", "Trash", &[], &mail("Old rubbish", "x")).await;
    let trash = folder_id(&folders, "Trash");
    let r = fetch(format!(
        "<EmptyFolderContents><airsync:CollectionId>{trash}</airsync:CollectionId></EmptyFolderContents>"
    ))
    .await;
    assert_eq!(
        find_text(&r.children()[1], io::Status).as_deref(),
        Some("1")
    );
    assert!(uids("trent", "Trash").await.is_empty());
}

#[tokio::test]
async fn drafts_added_by_a_16_phone_land_in_imap_and_others_are_refused() {
    let g = gateway().await;
    let (p, folders) = phone(&g, "victor", "16.1").await;
    let drafts = folder_id(&folders, "Drafts");
    let (key, _) = sync_all(&p, &drafts, 10).await;
    let add = r#"<Commands><Add><ClientId>c-1</ClientId><ApplicationData>
        <email:To>bob@example.org</email:To><email:Subject>Entwurf für Bob</email:Subject>
        <airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>Noch nicht fertig</airsyncbase:Data></airsyncbase:Body>
      </ApplicationData></Add></Commands>"#;
    let got = sync(&p, &key, &drafts, add).await;
    assert_eq!(got.status, "1");
    let r = &got.responses[0];
    assert_eq!(find_text(r, a::Status).as_deref(), Some("1"));
    let sid = find_text(r, a::ServerId).unwrap();
    let uid: u32 = sid.split(':').nth(1).unwrap().parse().unwrap();
    let f = flags("victor", "Drafts", uid).await;
    assert!(f.iter().any(|x| x == "\\Draft"), "{f:?}");
    // Not echoed; and the phone reading it back sees its own words.
    let next = sync(&p, &got.key, &drafts, "").await;
    assert!(next.adds.is_empty(), "{next:?}");
    let (_, all) = {
        let (mut p2, _) = phone(&g, "victor", "16.1").await;
        p2.device_id = "SYNCVICTOR2".into();
        p2.provision().await;
        let (adds, _, _) = folder_changes(&p2.folder_sync("0").await);
        sync_all(&p2, &folder_id(&adds, "Drafts"), 10).await
    };
    assert_eq!(subject(&all[0].1), "Entwurf für Bob");
    assert!(body_data(&all[0].1).contains("Noch nicht fertig"));

    // A 14.1 phone cannot add mail: per-item status 6, nothing stored.
    let (p14, folders) = phone(&g, "walter", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let (key, _) = sync_all(&p14, &inbox, 10).await;
    let got = sync(&p14, &key, &inbox, add).await;
    assert_eq!(
        find_text(&got.responses[0], a::Status).as_deref(),
        Some("6")
    );
    assert!(uids("walter", "INBOX").await.is_empty());
}

#[tokio::test]
async fn search_the_mailbox_newest_first_with_ranges_and_bounds() {
    use eas_wbxml::tags::search as s;
    let g = gateway().await;
    let name = support::unique("Reports");
    support::create("ursula", &name).await;
    append_dated(
        "ursula",
        "INBOX",
        "01-Jan-2020 10:00:00 +0000",
        &mail("Old budget", "x"),
    )
    .await;
    let dated = [
        (
            "INBOX",
            "01-Mar-2025 10:00:00 +0000",
            "Budget draft",
            "numbers",
        ),
        (
            name.as_str(),
            "02-Mar-2025 10:00:00 +0000",
            "Quarterly",
            "the budget is attached",
        ),
        (
            "INBOX",
            "03-Mar-2025 10:00:00 +0000",
            "Lunch",
            "nothing to see",
        ),
    ];
    for (mailbox, date, subject, body) in dated {
        append_dated("ursula", mailbox, date, &mail(subject, body)).await;
    }
    let (p, folders) = phone(&g, "ursula", "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let search = |query: String, range: &str| {
        let p = &p;
        let range = range.to_owned();
        async move {
            p.send(
                "Search",
                &format!(
                    r#"<Search xmlns="Search:" xmlns:airsync="AirSync:" xmlns:email="Email:" xmlns:airsyncbase="AirSyncBase:"><Store><Name>Mailbox</Name>
                     <Query><And><airsync:Class>Email</airsync:Class>{query}</And></Query>
                     <Options><Range>{range}</Range><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>100</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>
                   </Store></Search>"#
                ),
            )
            .await
            .tree()
        }
    };
    let subjects_of = |t: &Element| -> Vec<String> {
        let store = t.child(s::Response).unwrap().child(s::Store).unwrap();
        store
            .children_with(s::Result)
            .map(|r| find_text(r, em::Subject).unwrap_or_default())
            .collect()
    };
    // Every folder, newest first; the old one last.
    let r = search("<FreeText>budget</FreeText>".into(), "0-9").await;
    assert_eq!(
        subjects_of(&r),
        vec!["Quarterly", "Budget draft", "Old budget"],
        "{}",
        eas_wbxml::to_xml(&r)
    );
    assert_eq!(find_text(&r, s::Total).as_deref(), Some("3"));
    assert_eq!(find_text(&r, s::Range).as_deref(), Some("0-2"));
    // Paging.
    let r = search("<FreeText>budget</FreeText>".into(), "1-1").await;
    assert_eq!(subjects_of(&r), vec!["Budget draft"]);
    assert_eq!(find_text(&r, s::Range).as_deref(), Some("1-1"));
    assert_eq!(find_text(&r, s::Total).as_deref(), Some("3"));
    // One folder, and a date bound.
    let r = search(
        format!(
            "<airsync:CollectionId>{inbox}</airsync:CollectionId><FreeText>budget</FreeText>\
             <GreaterThan><email:DateReceived/><Value>2021-01-01T00:00:00.000Z</Value></GreaterThan>"
        ),
        "0-9",
    )
    .await;
    assert_eq!(subjects_of(&r), vec!["Budget draft"]);
    // The LongId fetches the whole item.
    let long_id = find_text(&r, s::LongId).unwrap();
    assert!(long_id.starts_with(&format!("{inbox}:")));
    // Nothing found: Total 0, no Result.
    let r = search("<FreeText>zebra</FreeText>".into(), "0-9").await;
    assert_eq!(find_text(&r, s::Total).as_deref(), Some("0"));
    assert!(subjects_of(&r).is_empty());
    // Unknown folder: FolderSync first (11); Or: too complex (8).
    let r = search(
        "<airsync:CollectionId>999</airsync:CollectionId><FreeText>x</FreeText>".into(),
        "0-9",
    )
    .await;
    let status = |t: &Element| {
        find_text(
            t.child(s::Response).unwrap().child(s::Store).unwrap(),
            s::Status,
        )
        .unwrap()
    };
    assert_eq!(status(&r), "11");
    // An Or of words is an IMAP OR; one over dates is more than the gateway maps.
    let r = search("<Or><FreeText>a</FreeText></Or>".into(), "0-9").await;
    assert_eq!(status(&r), "1");
    let r = search(
        "<Or><FreeText>a</FreeText><GreaterThan><email:DateReceived/><Value>2025-03-01T00:00:00.000Z</Value></GreaterThan></Or>".into(),
        "0-9",
    )
    .await;
    assert_eq!(status(&r), "8");
    // The GAL: no directory configured, no results.
    let gal = p
        .send(
            "Search",
            r#"<Search xmlns="Search:"><Store><Name>GAL</Name><Query>carol</Query><Options><Range>0-9</Range></Options></Store></Search>"#,
        )
        .await
        .tree();
    assert_eq!(status(&gal), "1");
    assert_eq!(find_text(&gal, s::Total).as_deref(), Some("0"));
}

/// Regressions found in review: repeated empty Syncs, windowed flag changes, FilterType keys,
/// conflicting changes, and a folder deleted behind the phone's back.
#[tokio::test]
async fn review_regressions_for_sync() {
    let g = gateway().await;
    let user = "xavier";
    for i in 0..6 {
        support::append(user, "INBOX", &[], &mail(&format!("R{i}"), "x")).await;
    }
    let name = support::unique("Doomed");
    support::create(user, &name).await;
    let (p, folders) = phone(&g, user, "14.1").await;
    let inbox = folder_id(&folders, "Inbox");
    let doomed = folder_id(&folders, &name);
    let (_, adds) = sync_all(&p, &inbox, 50).await;
    assert_eq!(adds.len(), 6);

    // M1: two empty Syncs in a row never resend what the first one sent.
    support::append(user, "INBOX", &[], &mail("E1", "x")).await;
    let e1 = collection(&p.post("Sync", Vec::new()).await.tree());
    assert_eq!(e1.adds.len(), 1);
    let e2 = p.post("Sync", Vec::new()).await;
    let again = if e2.body.is_empty() {
        Got::default()
    } else {
        collection(&e2.tree())
    };
    assert!(again.adds.is_empty(), "resent: {again:?}");
    let key = if again.key.is_empty() {
        e1.key.clone()
    } else {
        again.key.clone()
    };

    // M2: more flag changes than the window: every one arrives, over several Syncs.
    let all: Vec<String> = uids(user, "INBOX")
        .await
        .iter()
        .map(u32::to_string)
        .collect();
    support::store(user, "INBOX", &all.join(","), "+FLAGS (\\Seen)").await;
    let mut key = key;
    let mut changed = BTreeSet::new();
    for _ in 0..10 {
        let got = sync(&p, &key, &inbox, "<WindowSize>2</WindowSize>").await;
        changed.extend(got.changes.iter().map(|c| c.0.clone()));
        key = got.key;
        if !got.more {
            break;
        }
    }
    assert_eq!(changed.len(), 7, "{changed:?}");

    // M3: with a FilterType and nothing new, the key stays the same.
    let opts = "<Options><FilterType>5</FilterType></Options>";
    let f1 = sync(&p, &key, &inbox, opts).await;
    let f2 = sync(&p, &f1.key, &inbox, opts).await;
    let f3 = sync(&p, &f2.key, &inbox, opts).await;
    assert_eq!(f2.key, f3.key, "no change, no new key");
    let key = f3.key;

    // M4: the phone marks unread a message another client flagged meanwhile; the flag
    // still reaches the phone.
    let target = uids(user, "INBOX").await[0];
    support::store(user, "INBOX", &target.to_string(), "+FLAGS (\\Flagged)").await;
    let got = sync(
        &p,
        &key,
        &inbox,
        &format!(
            "{opts}<Commands><Change><ServerId>{inbox}:{target}</ServerId><ApplicationData><email:Read>0</email:Read></ApplicationData></Change></Commands>"
        ),
    )
    .await;
    let mut flagged = got.changes.iter().any(|(sid, d)| {
        *sid == format!("{inbox}:{target}") && find_text(d, em::Status).as_deref() == Some("2")
    });
    if !flagged {
        let next = sync(&p, &got.key, &inbox, opts).await;
        flagged = next.changes.iter().any(|(sid, d)| {
            *sid == format!("{inbox}:{target}") && find_text(d, em::Status).as_deref() == Some("2")
        });
    }
    assert!(flagged, "the other client's flag reaches the phone");

    // M6: a folder deleted by another client: Sync status 12, not an HTTP error.
    let (dkey, _) = sync_all(&p, &doomed, 10).await;
    support::delete(user, &name).await;
    assert_eq!(sync(&p, &dkey, &doomed, "").await.status, "12");
}

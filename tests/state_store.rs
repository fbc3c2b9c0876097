//! The `StateStore` contract, run against both stores: SQLite in a temporary file and
//! PostgreSQL in a private cluster (`eas_testbed::Postgres`, one per test binary, a database
//! per test). Each test is written once, over `&dyn StateStore`; the `both!` macro makes a
//! SQLite and a PostgreSQL test of it.
//!
//! Besides what one call does, it checks what several gateway nodes sharing a database rely
//! on: two stores on the same database (two nodes) claiming one ClientId, minting keys or
//! allocating folder ids at the same moment never both win.

use std::sync::{Arc, Barrier};

use eas_gateway::state::postgres::PgStore;
use eas_gateway::state::sqlite::SqliteStore;
use eas_gateway::state::{
    self, CLIENT_ID_RETENTION_SECS, Device, DeviceKey, FolderEntry, Saved, SendClaim, StateError,
    StateStore, Wants, WipeState,
};
use eas_testbed::Postgres;

/// Opens (and re-opens) one store: as a second node would, or after a restart.
struct Backend {
    open: Box<dyn Fn() -> Arc<dyn StateStore>>,
    _dir: Option<tempfile::TempDir>,
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Backend {
        open: Box::new(move || Arc::new(SqliteStore::open(&path).unwrap())),
        _dir: Some(dir),
    }
}

fn postgres() -> Backend {
    let url = Postgres::shared().fresh_database().unwrap();
    Backend {
        open: Box::new(move || Arc::new(PgStore::open(&url).unwrap())),
        _dir: None,
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test] fn $name() { super::$name(&super::sqlite()) })*
        }
        mod on_postgres {
            $(#[test] fn $name() { super::$name(&super::postgres()) })*
        }
    };
}

both!(
    devices_are_scoped_by_user,
    a_request_never_undoes_what_others_wrote_meanwhile,
    folder_ids_are_stable_and_per_device,
    hierarchy_keeps_current_and_previous_key,
    collection_keys_are_never_reused_and_only_two_snapshots_live,
    minting_a_key_stores_its_snapshot_with_it,
    client_ids_are_claimed_once_and_released_on_failure,
    a_dead_nodes_claim_is_taken_over_before_the_handover_only,
    waits_noted_on_other_nodes_are_found,
    memos_expire_by_age,
    a_load_reads_what_was_asked_in_one_call,
    memos_are_written_with_the_device_read,
    what_another_node_wrote_is_seen_by_the_next_request,
    an_export_imports_identically,
    two_nodes_never_both_win,
);

fn key(user: &str) -> DeviceKey {
    DeviceKey {
        user: user.into(),
        device_id: "dev1".into(),
    }
}

fn folder(id: u32, name: &str) -> FolderEntry {
    FolderEntry {
        id,
        parent: 0,
        display_name: name.into(),
        kind: 12,
        imap_name: name.into(),
        uidvalidity: u32::MAX,
    }
}

fn devices_are_scoped_by_user(b: &Backend) {
    let store = (b.open)();
    let mut d = Device::new(key("alice"), "iPhone");
    d.policy_key = Some(u32::MAX);
    d.wipe = WipeState::Requested { account_only: true };
    d.info.model = Some("Ünïcode ✓".into());
    assert!(store.insert_device(&d).unwrap());
    assert!(
        !store.insert_device(&d).unwrap(),
        "a second insert changes nothing"
    );
    d.version = 1;
    assert_eq!(store.device(&key("alice")).unwrap(), Some(d));
    assert_eq!(store.device(&key("bob")).unwrap(), None);
    assert_eq!(store.devices(Some("bob")).unwrap().len(), 0);
    store
        .insert_device(&Device::new(key("Zed"), "Android"))
        .unwrap();
    let all: Vec<String> = store
        .devices(None)
        .unwrap()
        .into_iter()
        .map(|d| d.key.user)
        .collect();
    // Byte order in both stores (upper case first).
    assert_eq!(all, ["Zed", "alice"]);
}

/// The lost-wipe race of issue 18: a request loads the device, the admin asks for a wipe
/// meanwhile, the request saves what it changed. The wipe must survive, and so must a policy
/// key another request of the device set; a removed device must stay removed. The admin is
/// another store on the same database (the CLI, or another node).
fn a_request_never_undoes_what_others_wrote_meanwhile(b: &Backend) {
    let store = (b.open)();
    let admin = (b.open)();
    let fresh = Device::new(key("alice"), "iPhone");
    let Saved::Stored { device: stored, .. } =
        state::save_device(store.as_ref(), &fresh, &fresh).unwrap()
    else {
        panic!("not stored")
    };
    assert_eq!(stored.version, 1);

    let ping_original = store.device(&key("alice")).unwrap().unwrap();
    let mut provisioned = ping_original.clone();
    provisioned.policy_key = Some(7);
    state::save_device(store.as_ref(), &ping_original, &provisioned).unwrap();
    let (seq0, _) = store.admin_changes(None).unwrap();
    assert!(
        admin
            .set_wipe(
                &key("alice"),
                WipeState::Requested {
                    account_only: false
                }
            )
            .unwrap()
    );
    let (seq1, changed) = store.admin_changes(Some(seq0)).unwrap();
    assert_eq!((seq1, changed), (seq0 + 1, vec![key("alice")]));
    let mut ping = ping_original.clone();
    ping.last_seen += 100;
    let Saved::Stored { device, raced } =
        state::save_device(store.as_ref(), &ping_original, &ping).unwrap()
    else {
        panic!("removed?")
    };
    assert!(raced);
    assert_eq!(
        device.wipe,
        WipeState::Requested {
            account_only: false
        }
    );
    assert_eq!(device.policy_key, Some(7));
    assert_eq!(device.last_seen, ping.last_seen);
    assert_eq!(store.device(&key("alice")).unwrap(), Some(*device.clone()));

    // A request that acknowledged a wipe the admin has since cancelled does not win.
    let before_ack = store.device(&key("alice")).unwrap().unwrap();
    admin.set_wipe(&key("alice"), WipeState::None).unwrap();
    let mut ack = before_ack.clone();
    ack.wipe = WipeState::Acknowledged {
        account_only: false,
        status: 1,
    };
    state::save_device(store.as_ref(), &before_ack, &ack).unwrap();
    assert_eq!(
        store.device(&key("alice")).unwrap().unwrap().wipe,
        WipeState::None
    );

    // Removed during the request: stays removed.
    let held = store.device(&key("alice")).unwrap().unwrap();
    assert!(admin.remove_device(&key("alice")).unwrap());
    assert_eq!(
        state::save_device(store.as_ref(), &held, &held).unwrap(),
        Saved::Removed
    );
    assert_eq!(store.device(&key("alice")).unwrap(), None);
    let (_, changed) = store.admin_changes(Some(seq1)).unwrap();
    assert_eq!(
        changed.len(),
        2,
        "the cancel and the removal were announced"
    );
    assert!(!admin.remove_device(&key("alice")).unwrap());
}

fn folder_ids_are_stable_and_per_device(b: &Backend) {
    let store = (b.open)();
    let a = store.folder_id(&key("alice"), "INBOX").unwrap();
    let s = store.folder_id(&key("alice"), "Sent").unwrap();
    assert_ne!(a, s);
    assert_eq!(store.folder_id(&key("alice"), "INBOX").unwrap(), a);
    assert_eq!(store.folder_id(&key("bob"), "Sent").unwrap(), 1);
    store
        .rename_folder_identity(&key("alice"), s, "Sent Items")
        .unwrap();
    assert_eq!(store.folder_id(&key("alice"), "Sent Items").unwrap(), s);
    assert_ne!(store.folder_id(&key("alice"), "Sent").unwrap(), s);
    // A rename onto an identity another id held takes it over.
    let old = store.folder_id(&key("alice"), "Old").unwrap();
    store
        .rename_folder_identity(&key("alice"), a, "Old")
        .unwrap();
    assert_eq!(store.folder_id(&key("alice"), "Old").unwrap(), a);
    assert_ne!(old, a);
}

fn hierarchy_keeps_current_and_previous_key(b: &Backend) {
    let store = (b.open)();
    let k = key("alice");
    store.put_hierarchy(&k, 1, &[folder(1, "INBOX")]).unwrap();
    store
        .put_hierarchy(&k, 2, &[folder(1, "INBOX"), folder(2, "A")])
        .unwrap();
    store.put_hierarchy(&k, 3, &[]).unwrap();
    assert_eq!(store.hierarchy(&k, 1).unwrap(), None);
    assert_eq!(
        store.hierarchy(&k, 2).unwrap().unwrap(),
        vec![folder(1, "INBOX"), folder(2, "A")]
    );
    assert_eq!(store.hierarchy(&k, 3).unwrap(), Some(vec![]));
    assert_eq!(store.latest_hierarchy_key(&k).unwrap(), Some(3));
    assert_eq!(store.latest_hierarchy_key(&key("bob")).unwrap(), None);
    // The same key written again (a FolderSync retried) replaces its snapshot.
    store.put_hierarchy(&k, 3, &[folder(5, "B")]).unwrap();
    assert_eq!(store.hierarchy(&k, 3).unwrap(), Some(vec![folder(5, "B")]));
    drop(store);
    // Survives reopening (and the migrations are not run twice).
    let store = (b.open)();
    assert_eq!(store.latest_hierarchy_key(&k).unwrap(), Some(3));
    store.reset_hierarchy(&k).unwrap();
    assert_eq!(store.latest_hierarchy_key(&k).unwrap(), None);
}

fn collection_keys_are_never_reused_and_only_two_snapshots_live(b: &Backend) {
    let store = (b.open)();
    let (a, bob) = (key("ann"), key("bob"));
    let k1 = store.next_collection_key(&a, 2).unwrap();
    store.put_collection_state(&a, 2, k1, None, b"one").unwrap();
    let k2 = store.next_collection_key(&a, 2).unwrap();
    store
        .put_collection_state(&a, 2, k2, Some(k1), b"two")
        .unwrap();
    assert_eq!(
        store.collection_state(&a, 2, k1).unwrap().as_deref(),
        Some(&b"one"[..])
    );
    let k3 = store.next_collection_key(&a, 2).unwrap();
    store
        .put_collection_state(&a, 2, k3, Some(k2), b"three")
        .unwrap();
    assert_eq!(store.collection_state(&a, 2, k1).unwrap(), None);
    assert_eq!(store.collection_keys(&a, 2).unwrap(), vec![k2, k3]);
    store.replace_collection_state(&a, 2, k2, b"2b").unwrap();
    assert_eq!(
        store.collection_state(&a, 2, k2).unwrap().as_deref(),
        Some(&b"2b"[..])
    );
    // Another user with the same device id and folder sees nothing.
    assert_eq!(store.collection_state(&bob, 2, k3).unwrap(), None);
    store.reset_collection(&a, 2).unwrap();
    assert_eq!(store.collection_state(&a, 2, k3).unwrap(), None);
    assert!(store.next_collection_key(&a, 2).unwrap() > k3);
    store.put_memo(&a, "sync", b"m").unwrap();
    store.put_memo(&a, "sync", b"m2").unwrap();
    assert_eq!(store.memo(&a, "sync").unwrap().as_deref(), Some(&b"m2"[..]));
    assert_eq!(store.memo(&bob, "sync").unwrap(), None);
    assert!(store.delete_device(&a).unwrap());
    assert_eq!(store.memo(&a, "sync").unwrap(), None);
    assert!(!store.delete_device(&a).unwrap());
}

fn minting_a_key_stores_its_snapshot_with_it(b: &Backend) {
    let store = (b.open)();
    let a = key("ann");
    let k1 = store.mint_collection_state(&a, 7, None, b"one").unwrap();
    let k2 = store
        .mint_collection_state(&a, 7, Some(k1), b"two")
        .unwrap();
    assert!(k2 > k1);
    assert_eq!(store.collection_keys(&a, 7).unwrap(), vec![k1, k2]);
    let k3 = store.mint_collection_state(&a, 7, Some(k2), b"3").unwrap();
    assert_eq!(store.collection_keys(&a, 7).unwrap(), vec![k2, k3]);
    // The two ways of making keys share one counter.
    assert!(store.next_collection_key(&a, 7).unwrap() > k3);
    // Both record when the folder last got a key, for `devices show`.
    let now = state::unix_now();
    let times = store.collection_key_times(&a).unwrap();
    assert_eq!(times.iter().map(|(f, _)| *f).collect::<Vec<_>>(), vec![7]);
    assert!(times.iter().all(|(_, at)| now - at < 60), "{times:?}");
    assert!(store.collection_key_times(&key("bob")).unwrap().is_empty());
    // A snapshot too large for nothing: a megabyte of bytes of every value.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let k = store.mint_collection_state(&a, 8, None, &big).unwrap();
    assert_eq!(store.collection_state(&a, 8, k).unwrap(), Some(big));
}

fn client_ids_are_claimed_once_and_released_on_failure(b: &Backend) {
    let store = (b.open)();
    let (a, bob) = (key("alice"), key("bob"));
    let claim = |k: &DeviceKey, now| store.claim_client_id(k, "c1", now, 120, "n1").unwrap();
    assert_eq!(claim(&a, 1000), SendClaim::Claimed);
    // A retry while the first submission runs must not submit again...
    assert_eq!(claim(&a, 1010), SendClaim::InProgress);
    // ...but a claim left behind by a crash expires.
    assert_eq!(claim(&a, 1200), SendClaim::Claimed);
    store.finish_client_id(&a, "c1", true, 1201, "n1").unwrap();
    assert_eq!(claim(&a, 5000), SendClaim::AlreadySent);
    // Other users' and devices' ClientIds are their own.
    assert_eq!(claim(&bob, 5000), SendClaim::Claimed);
    store
        .finish_client_id(&bob, "c1", false, 5001, "n1")
        .unwrap();
    assert_eq!(claim(&bob, 5002), SendClaim::Claimed);
    // Sent ClientIds are forgotten after the retention period.
    assert_eq!(
        claim(&a, 1201 + CLIENT_ID_RETENTION_SECS + 1),
        SendClaim::Claimed
    );
}

/// A claim whose node died before handing the message over is taken over by another node
/// (on PostgreSQL once the node has been silent for the lease; on SQLite, whose one gateway
/// is the only node, a claim of an earlier run at once); the dead node, should it be alive
/// after all, then finds its claim gone at the handover and does not send. A claim whose
/// message was being handed over is never taken over before it expires.
fn a_dead_nodes_claim_is_taken_over_before_the_handover_only(b: &Backend) {
    let store = (b.open)();
    let a = key("alice");
    let now = state::unix_now();
    let claim = |node: &str, id: &str, now| store.claim_client_id(&a, id, now, 300, node).unwrap();
    // A live node's claim stands (on PostgreSQL; on SQLite any other owner is an earlier run).
    store.node_alive("n1").unwrap();
    store.node_alive("n2").unwrap();
    assert_eq!(claim("n1", "c1", now), SendClaim::Claimed);
    if b._dir.is_none() {
        assert_eq!(claim("n2", "c1", now + 1), SendClaim::InProgress);
    }
    // A node not heard of within the lease (here: never) is dead: its claim is taken over.
    assert_eq!(claim("n0", "c2", now), SendClaim::Claimed);
    assert_eq!(claim("n2", "c2", now + 1), SendClaim::Claimed);
    // The dead node, alive after all, finds its claim gone at the handover, and its release
    // does not free the new owner's claim.
    assert!(!store.commit_client_id(&a, "c2", now + 1, "n0").unwrap());
    store
        .finish_client_id(&a, "c2", false, now + 1, "n0")
        .unwrap();
    assert!(store.commit_client_id(&a, "c2", now + 1, "n2").unwrap());
    // Handed over: nobody takes it over before it expires, alive or not.
    assert_eq!(claim("n3", "c2", now + 100), SendClaim::InProgress);
    store
        .finish_client_id(&a, "c2", true, now + 2, "n2")
        .unwrap();
    assert_eq!(claim("n3", "c2", now + 100), SendClaim::AlreadySent);
}

/// Several nodes: a node learns which devices' newest held request went to another node since
/// its last look (PostgreSQL); SQLite's one gateway has nothing to learn.
fn waits_noted_on_other_nodes_are_found(b: &Backend) {
    let store = (b.open)();
    let (alice, bob) = (key("alice"), key("bob"));
    let (since, none) = store.waits_elsewhere("A", None).unwrap();
    assert!(none.is_empty());
    store.note_wait(&alice, "A").unwrap();
    store.note_wait(&alice, "B").unwrap();
    store.note_wait(&bob, "A").unwrap();
    let (_, found) = store.waits_elsewhere("A", Some(since)).unwrap();
    let (_, on_b) = store.waits_elsewhere("B", Some(since)).unwrap();
    if b._dir.is_some() {
        assert!(found.is_empty() && on_b.is_empty());
    } else {
        // Alice's newest wait is on B; Bob's is A's own.
        assert_eq!(found, vec![alice]);
        assert_eq!(on_b, vec![bob]);
    }
}

fn memos_expire_by_age(b: &Backend) {
    let store = (b.open)();
    store.put_memo(&key("a"), "last", b"x").unwrap();
    store.put_memo(&key("a"), "other", b"y").unwrap();
    assert_eq!(store.expire_memos("last", 0).unwrap(), 0);
    assert_eq!(store.expire_memos("last", u64::MAX >> 2).unwrap(), 1);
    assert_eq!(store.memo(&key("a"), "last").unwrap(), None);
    assert!(store.memo(&key("a"), "other").unwrap().is_some());
}

/// `load` answers exactly what it was asked for, from one consistent view: the device, the
/// memos that exist of those named, the newest hierarchy key with its folders (none, or an
/// empty list), the snapshots that exist of the keys named; another user's state never.
fn a_load_reads_what_was_asked_in_one_call(b: &Backend) {
    let store = (b.open)();
    let (a, bob) = (key("alice"), key("bob"));
    let nothing = store.load(&a, &Wants::default()).unwrap();
    assert_eq!(nothing, Default::default());
    let all = Wants {
        device: true,
        memos: vec!["m1", "m2", "absent"],
        hierarchy: true,
        snapshots: vec![(2, 1), (3, 1), (2, 99)],
    };
    let empty = store.load(&a, &all).unwrap();
    assert_eq!(empty, Default::default(), "a device with no state");

    let mut d = Device::new(a.clone(), "iPhone");
    d.info.model = Some("Ünïcode ✓".into());
    d.policy_key = Some(u32::MAX);
    d.wipe = WipeState::Acknowledged {
        account_only: true,
        status: 2,
    };
    assert!(store.insert_device(&d).unwrap());
    d.version = 1;
    store.put_memo(&a, "m1", b"one").unwrap();
    store.put_memo(&a, "m2", b"").unwrap();
    store.put_memo(&a, "m3", b"not asked").unwrap();
    store.put_memo(&bob, "m1", b"bob's").unwrap();
    store.put_hierarchy(&a, 1, &[folder(9, "Old")]).unwrap();
    store
        .put_hierarchy(&a, 2, &[folder(3, "B"), folder(1, "INBOX"), folder(2, "A")])
        .unwrap();
    store.put_hierarchy(&bob, 7, &[folder(4, "Bob's")]).unwrap();
    let k = store.mint_collection_state(&a, 2, None, b"snap").unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let k3 = store.mint_collection_state(&a, 3, None, &big).unwrap();
    store.mint_collection_state(&bob, 2, None, b"bob").unwrap();
    let wants = Wants {
        snapshots: vec![(2, k), (3, k3), (2, k + 100), (4, k)],
        ..all.clone()
    };
    let mut got = store.load(&a, &wants).unwrap();
    got.memos.sort();
    got.snapshots.sort();
    assert_eq!(got.device, Some(d.clone()));
    assert_eq!(
        got.memos,
        vec![
            ("m1".to_owned(), b"one".to_vec()),
            ("m2".to_owned(), Vec::new())
        ]
    );
    assert_eq!(
        got.hierarchy,
        Some((2, vec![folder(1, "INBOX"), folder(2, "A"), folder(3, "B")])),
        "the newest key's folders, by id"
    );
    assert_eq!(
        got.snapshots,
        vec![(2, k, b"snap".to_vec()), (3, k3, big)],
        "the snapshots that exist"
    );
    // Only what is asked.
    let only = store
        .load(
            &a,
            &Wants {
                memos: vec!["m3"],
                ..Wants::default()
            },
        )
        .unwrap();
    assert_eq!(only.device, None);
    assert_eq!(only.memos, vec![("m3".to_owned(), b"not asked".to_vec())]);
    assert_eq!((only.hierarchy, only.snapshots.len()), (None, 0));
    // A newest key with no folders is a key, with an empty list.
    store.put_hierarchy(&a, 3, &[]).unwrap();
    let h = Wants {
        hierarchy: true,
        ..Wants::default()
    };
    assert_eq!(store.load(&a, &h).unwrap().hierarchy, Some((3, Vec::new())));
    assert_eq!(store.load(&bob, &h).unwrap().hierarchy.unwrap().0, 7);
}

/// A memo as `put_memos_and_read_device` takes it.
fn m<'a>(name: &'a str, value: &'a [u8]) -> (&'a str, &'a [u8]) {
    (name, value)
}

/// `put_memos_and_read_device` writes every memo (the last value of a name given twice), and
/// returns the device as it is; with no memos it is a read of the device.
fn memos_are_written_with_the_device_read(b: &Backend) {
    let store = (b.open)();
    let a = key("alice");
    assert_eq!(store.put_memos_and_read_device(&a, &[]).unwrap(), None);
    assert_eq!(
        store
            .put_memos_and_read_device(&a, &[m("x", b"1"), m("y", b"2"), m("x", b"3")])
            .unwrap(),
        None,
        "memos of a device without a record are written all the same"
    );
    assert_eq!(store.memo(&a, "x").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(store.memo(&a, "y").unwrap().as_deref(), Some(&b"2"[..]));
    let mut d = Device::new(a.clone(), "iPhone");
    store.insert_device(&d).unwrap();
    d.version = 1;
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 13) as u8).collect();
    assert_eq!(
        store
            .put_memos_and_read_device(&a, &[m("y", &big), m("z", b"")])
            .unwrap(),
        Some(d.clone())
    );
    assert_eq!(store.memo(&a, "y").unwrap(), Some(big));
    assert_eq!(store.memo(&a, "z").unwrap(), Some(Vec::new()));
    assert_eq!(store.memo(&a, "x").unwrap().as_deref(), Some(&b"3"[..]));
    // Written now: expiring by age finds them new.
    assert_eq!(store.expire_memos("z", state::unix_now() - 60).unwrap(), 0);
    assert_eq!(store.put_memos_and_read_device(&a, &[]).unwrap(), Some(d));
}

/// Two nodes on one database: what one writes between two requests of a device (memos, a
/// new folder list, a new key's snapshot, the admin's wipe) is what the other's next request
/// loads — nothing a node read for an earlier request answers a later one.
fn what_another_node_wrote_is_seen_by_the_next_request(b: &Backend) {
    let (node_a, node_b) = ((b.open)(), (b.open)());
    let k = key("alice");
    let fresh = Device::new(k.clone(), "iPhone");
    state::save_device(node_a.as_ref(), &fresh, &fresh).unwrap();
    node_a.put_hierarchy(&k, 1, &[folder(1, "INBOX")]).unwrap();
    let k1 = node_a.mint_collection_state(&k, 1, None, b"one").unwrap();
    let wants = Wants {
        device: true,
        memos: vec!["sync.collections", "sync.last"],
        hierarchy: true,
        snapshots: vec![(1, k1)],
    };
    // A request on node A ends: its memos written, the device read back.
    let first = node_a.load(&k, &wants).unwrap();
    let version = first.device.as_ref().unwrap().version;
    let seen = node_a
        .put_memos_and_read_device(&k, &[m("sync.collections", b"a"), m("sync.last", b"a")])
        .unwrap()
        .unwrap();
    assert_eq!(seen.version, version);

    // The device's next request goes to node B, which writes everything anew.
    let on_b = node_b.load(&k, &wants).unwrap();
    assert_eq!(on_b.memos.len(), 2);
    node_b
        .put_memos_and_read_device(&k, &[m("sync.collections", b"b")])
        .unwrap();
    node_b
        .put_hierarchy(&k, 2, &[folder(1, "INBOX"), folder(2, "New")])
        .unwrap();
    let k2 = node_b
        .mint_collection_state(&k, 1, Some(k1), b"two")
        .unwrap();
    assert!(
        node_b
            .set_wipe(
                &k,
                WipeState::Requested {
                    account_only: false
                }
            )
            .unwrap()
    );

    // And the next on node A sees all of it.
    let again = node_a
        .load(
            &k,
            &Wants {
                snapshots: vec![(1, k1), (1, k2)],
                ..wants.clone()
            },
        )
        .unwrap();
    let device = again.device.unwrap();
    assert!(device.version > version, "the admin's write is seen");
    assert_eq!(
        device.wipe,
        WipeState::Requested {
            account_only: false
        }
    );
    let mut memos = again.memos;
    memos.sort();
    assert_eq!(
        memos,
        vec![
            ("sync.collections".to_owned(), b"b".to_vec()),
            ("sync.last".to_owned(), b"a".to_vec())
        ]
    );
    assert_eq!(again.hierarchy.unwrap().0, 2);
    let mut snapshots = again.snapshots;
    snapshots.sort();
    assert_eq!(
        snapshots,
        vec![(1, k1, b"one".to_vec()), (1, k2, b"two".to_vec())]
    );
    // The end of a request on node A reads the record node B changed: its version moved,
    // so the request's compare-and-set cannot miss the wipe.
    let end = node_a.put_memos_and_read_device(&k, &[]).unwrap().unwrap();
    assert_eq!(end.version, device.version);
    assert_ne!(end.version, version);
}

/// Everything `state migrate` copies: written into one store, exported, imported into a
/// store of the other kind, exported again — the same.
fn an_export_imports_identically(b: &Backend) {
    let store = (b.open)();
    let k = key("alice");
    let mut d = Device::new(k.clone(), "iPhone");
    d.policy_key = Some(42);
    d.info.imei = Some("35".into());
    d.protocol_version = Some("16.1".into());
    state::save_device(store.as_ref(), &Device::new(k.clone(), "iPhone"), &d).unwrap();
    let mut stored = store.device(&k).unwrap().unwrap();
    let again = stored.clone();
    stored.last_seen += 5;
    state::save_device(store.as_ref(), &again, &stored).unwrap();
    store.folder_id(&k, "INBOX").unwrap();
    store.folder_id(&k, "Archive/2024").unwrap();
    store.put_hierarchy(&k, 4, &[folder(1, "INBOX")]).unwrap();
    store
        .put_hierarchy(&k, 5, &[folder(1, "INBOX"), folder(2, "Archive")])
        .unwrap();
    let k1 = store.mint_collection_state(&k, 1, None, b"s1").unwrap();
    store.mint_collection_state(&k, 1, Some(k1), b"s2").unwrap();
    store.put_memo(&k, "sync", &[0, 255, 7]).unwrap();
    store
        .claim_client_id(&k, "sent-one", 100, 60, "n1")
        .unwrap();
    store
        .finish_client_id(&k, "sent-one", true, 101, "n1")
        .unwrap();
    // State without a device record travels too.
    store.put_memo(&key("orphan"), "m", b"o").unwrap();

    let keys = store.device_keys().unwrap();
    assert_eq!(keys, vec![k.clone(), key("orphan")]);
    let export = store.export_device(&k).unwrap();
    assert_eq!(export.device.as_ref().unwrap().version, 2);
    assert_eq!(export.hierarchies.len(), 2);
    assert_eq!(export.collections.len(), 2);
    assert_eq!(
        export.device.as_ref().unwrap().protocol_version.as_deref(),
        Some("16.1")
    );
    assert!(export.collection_keys.iter().all(|(_, _, at)| *at > 0));

    // Into a store of the other kind, and back into this kind (a fresh database of it).
    let other = match export_target_kind(b) {
        Kind::Sqlite => sqlite(),
        Kind::Postgres => postgres(),
    };
    let target = (other.open)();
    assert!(target.import_device(&export).unwrap());
    assert!(
        !target.import_device(&export).unwrap(),
        "a device already there is not overwritten"
    );
    assert_eq!(target.export_device(&k).unwrap(), export);
    let orphan = store.export_device(&key("orphan")).unwrap();
    assert!(orphan.device.is_none());
    assert!(target.import_device(&orphan).unwrap());
    assert_eq!(target.device_keys().unwrap(), keys);
    // Keys go on from where they were: never one the phone saw before.
    assert!(target.next_collection_key(&k, 1).unwrap() > k1 + 1);
}

enum Kind {
    Sqlite,
    Postgres,
}

/// The other kind than the backend's (a backend with a directory is SQLite).
fn export_target_kind(b: &Backend) -> Kind {
    if b._dir.is_some() {
        Kind::Postgres
    } else {
        Kind::Sqlite
    }
}

/// Two nodes (two stores on one database), each with several threads, do the same thing at
/// the same moment: one ClientId is claimed once, keys are never handed out twice, one
/// mailbox gets one folder id.
fn two_nodes_never_both_win(b: &Backend) {
    let nodes = [(b.open)(), (b.open)()];
    let sqlite_file = b._dir.is_some();
    let k = key("alice");
    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let results: Vec<(SendClaim, Vec<u32>, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                let store = nodes[i % 2].clone();
                let barrier = barrier.clone();
                let k = k.clone();
                s.spawn(move || {
                    barrier.wait();
                    // SQLite's one gateway per file is one node, however many stores.
                    let node = if sqlite_file {
                        "n".into()
                    } else {
                        format!("n{}", i % 2)
                    };
                    store.node_alive(&node).unwrap();
                    let claim = store.claim_client_id(&k, "same", 1000, 300, &node).unwrap();
                    let keys: Vec<u32> = (0..5)
                        .map(|_| store.mint_collection_state(&k, 3, None, b"x").unwrap())
                        .collect();
                    let id = store.folder_id(&k, "New folder").unwrap();
                    (claim, keys, id)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let claimed = results.iter().filter(|r| r.0 == SendClaim::Claimed).count();
    assert_eq!(
        claimed,
        1,
        "{:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    let mut keys: Vec<u32> = results.iter().flat_map(|r| r.1.clone()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), THREADS * 5, "a key was handed out twice");
    assert!(results.iter().all(|r| r.2 == results[0].2));
}

// What only one of the stores has.

/// A new database on the shared cluster: the cluster, the database's URL and its name (what
/// `psql` takes).
fn fresh_pg() -> (&'static Postgres, String, String) {
    let pg = Postgres::shared();
    let url = pg.fresh_database().unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    (pg, url, name)
}

/// Runs `sql` with `psql` in a session of its own (one that takes a lock and sleeps, standing
/// for a stuck or slow node) and, once it has had time to take the lock, `f`; returns `f`'s
/// answer once both are done.
fn while_psql_runs<T: Send>(
    pg: &Postgres,
    name: &str,
    sql: &str,
    f: impl FnOnce() -> T + Send,
) -> T {
    std::thread::scope(|s| {
        let session = s.spawn(|| pg.psql(name, sql).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(700));
        let answer = f();
        session.join().unwrap();
        answer
    })
}

#[test]
fn postgres_refuses_a_newer_schema() {
    let (pg, url, name) = fresh_pg();
    let name = name.as_str();
    drop(PgStore::open(&url).unwrap());
    let version: usize = pg
        .psql(name, "SELECT version FROM schema_version")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(version, state::schema::VERSION);
    pg.psql(
        name,
        &format!("UPDATE schema_version SET version = {}", version + 1),
    )
    .unwrap();
    let err = PgStore::open(&url).err().expect("opened a newer schema");
    assert!(matches!(err, StateError::NewerSchema { .. }), "{err}");
}

/// Snapshots and memos are compressed with lz4 (Debian's server has it), set again at the
/// next start on a database made before (or set back by hand), without a schema version.
#[test]
fn postgres_compresses_snapshots_with_lz4() {
    let (pg, url, name) = fresh_pg();
    let name = name.as_str();
    let methods = || {
        pg.psql(
            name,
            "SELECT string_agg(attname || '=' || attcompression::text, ',' ORDER BY attname) \
             FROM pg_attribute WHERE (attrelid, attname) IN \
             (('collection_state'::regclass, 'snapshot'), ('device_memos'::regclass, 'value'))",
        )
        .unwrap()
    };
    let store = PgStore::open(&url).unwrap();
    assert_eq!(methods(), "snapshot=l,value=l");
    // Compressible and larger than the 2 KB at which PostgreSQL compresses a row.
    let snapshot: Vec<u8> = (0..40_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
    let k = key("lz4");
    store
        .insert_device(&Device::new(k.clone(), "iPhone"))
        .unwrap();
    let sync_key = store.mint_collection_state(&k, 3, None, &snapshot).unwrap();
    let stored = pg
        .psql(
            name,
            "SELECT pg_column_compression(snapshot), octet_length(snapshot) > \
             pg_column_size(snapshot) FROM collection_state",
        )
        .unwrap();
    assert_eq!(stored, "lz4|t");
    drop(store);

    // A database of before: pglz, and a value written with it, which still reads back.
    pg.psql(
        name,
        "ALTER TABLE collection_state ALTER COLUMN snapshot SET COMPRESSION pglz; \
         ALTER TABLE device_memos ALTER COLUMN value SET COMPRESSION pglz",
    )
    .unwrap();
    let store = PgStore::open(&url).unwrap();
    store.mint_collection_state(&k, 4, None, &snapshot).unwrap();
    drop(store);
    assert_eq!(
        pg.psql(
            name,
            "SELECT string_agg(pg_column_compression(snapshot), ',' ORDER BY folder) \
             FROM collection_state"
        )
        .unwrap(),
        "lz4,lz4",
        "the store set lz4 again before writing"
    );
    pg.psql(
        name,
        "ALTER TABLE collection_state ALTER COLUMN snapshot SET COMPRESSION pglz",
    )
    .unwrap();
    // An old-style value: rewritten while the column said pglz.
    pg.psql(
        name,
        "UPDATE collection_state SET snapshot = snapshot || ''::bytea WHERE folder = 3",
    )
    .unwrap();
    let version_before = pg.psql(name, "SELECT version FROM schema_version").unwrap();
    let store = PgStore::open(&url).unwrap();
    assert_eq!(methods(), "snapshot=l,value=l");
    assert_eq!(
        pg.psql(
            name,
            "SELECT pg_column_compression(snapshot) FROM collection_state WHERE folder = 3"
        )
        .unwrap(),
        "pglz"
    );
    assert_eq!(
        store.collection_state(&k, 3, sync_key).unwrap().as_deref(),
        Some(&snapshot[..]),
        "a pglz value reads back"
    );
    assert_eq!(
        pg.psql(name, "SELECT version FROM schema_version").unwrap(),
        version_before,
        "a storage setting is not a schema version"
    );
}

/// Where lz4 cannot be set (here: a role that may use the tables but does not own them, as
/// with a server without lz4 the statement fails), the store starts all the same and keeps
/// pglz.
#[test]
fn postgres_without_lz4_starts_with_pglz() {
    let (pg, url, name) = fresh_pg();
    let name = name.as_str();
    drop(PgStore::open(&url).unwrap());
    let role = format!("user_of_{name}");
    pg.psql(
        name,
        &format!(
            "ALTER TABLE collection_state ALTER COLUMN snapshot SET COMPRESSION pglz; \
             CREATE ROLE {role} LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO {role}; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; \
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}"
        ),
    )
    .unwrap();
    let url = url.replacen(&format!("{}@", Postgres::USER), &format!("{role}@"), 1);
    let store = PgStore::open(&url).unwrap();
    let k = key("pglz");
    store
        .insert_device(&Device::new(k.clone(), "iPhone"))
        .unwrap();
    let snapshot: Vec<u8> = (0..40_000u32).flat_map(|i| (i / 7).to_le_bytes()).collect();
    let sync_key = store.mint_collection_state(&k, 3, None, &snapshot).unwrap();
    assert_eq!(
        store.collection_state(&k, 3, sync_key).unwrap().as_deref(),
        Some(&snapshot[..])
    );
    assert_eq!(
        pg.psql(
            name,
            "SELECT pg_column_compression(snapshot) FROM collection_state"
        )
        .unwrap(),
        "pglz"
    );
}

/// A node starting while another holds the snapshot table (here a lock held by hand) does
/// not wait for it, nor make the other nodes' requests wait behind it, beyond a second a
/// table: it starts with pglz and sets lz4 at a later start.
#[test]
fn postgres_lz4_does_not_wait_for_a_busy_table() {
    let (pg, url, name) = fresh_pg();
    drop(PgStore::open(&url).unwrap());
    pg.psql(
        &name,
        "ALTER TABLE collection_state ALTER COLUMN snapshot SET COMPRESSION pglz",
    )
    .unwrap();
    let method = || {
        pg.psql(
            &name,
            "SELECT attcompression::text FROM pg_attribute \
             WHERE attrelid = 'collection_state'::regclass AND attname = 'snapshot'",
        )
        .unwrap()
    };
    let hold = "BEGIN; LOCK TABLE collection_state IN ACCESS SHARE MODE; \
                SELECT pg_sleep(6); COMMIT";
    while_psql_runs(pg, &name, hold, || {
        let started = std::time::Instant::now();
        drop(PgStore::open(&url).unwrap());
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(4), "{took:?}");
        assert_eq!(method(), "p", "left for a later start");
    });
    drop(PgStore::open(&url).unwrap());
    assert_eq!(method(), "l");
}

/// A node taken for dead while it is alive: its 'committing' is being written (here by hand,
/// in a transaction held open) when another node's retry looks at the claim. The retry waits
/// for that write and finds the claim in progress; it does not take it over and overwrite
/// it, which would have both nodes send the message.
#[test]
fn postgres_claim_does_not_overwrite_a_commit_in_flight() {
    let (pg, url, name) = fresh_pg();
    let store = PgStore::open(&url).unwrap();
    let k = key("inflight");
    let now = state::unix_now();
    // node-a never says it is alive: to node-b its 'sending' claim is a dead node's.
    assert_eq!(
        store
            .claim_client_id(&k, "cid", now, 600, "node-a")
            .unwrap(),
        SendClaim::Claimed
    );
    let commit = "BEGIN; UPDATE sent_client_ids SET state = 'committing' WHERE client_id = 'cid'; \
                  SELECT pg_sleep(2); COMMIT";
    let claim = while_psql_runs(pg, &name, commit, || {
        store
            .claim_client_id(&k, "cid", now, 600, "node-b")
            .unwrap()
    });
    assert_eq!(
        claim,
        SendClaim::InProgress,
        "node-b took over a claim whose commit was in flight"
    );
    assert_eq!(
        pg.psql(&name, "SELECT state || ' ' || owner FROM sent_client_ids")
            .unwrap(),
        "committing node-a"
    );
}

/// A session that holds a device's lock and does not let go (a node frozen in the middle of
/// a write): a write of that device elsewhere answers "unavailable" (a retry) once the
/// server's statement timeout ends its wait, leaves no session of its own waiting on the
/// server, and the node goes on serving other devices at once.
#[test]
fn postgres_a_stuck_device_lock_costs_one_device() {
    let (pg, url, name) = fresh_pg();
    let store = PgStore::open(&url).unwrap();
    let stuck = key("stuck");
    let other = key("other");
    let hold = "SELECT pg_advisory_lock(hashtextextended('stuck' || E'\\n' || 'dev1', 0)); \
                SELECT pg_sleep(14)";
    while_psql_runs(pg, &name, hold, || {
        let started = std::time::Instant::now();
        let err = store
            .mint_collection_state(&stuck, 1, None, b"snapshot")
            .expect_err("wrote past a held device lock");
        assert!(err.is_unavailable(), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the server ended the wait, not the client: {:?}",
            started.elapsed()
        );
        let waiting = pg
            .psql(
                &name,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'eas-gateway' AND wait_event_type = 'Lock'",
            )
            .unwrap();
        assert_eq!(
            waiting, "0",
            "a session of the store still waits on the server"
        );
        // Another device's write goes through at once: no node-wide "unavailable".
        store
            .mint_collection_state(&other, 1, None, b"snapshot")
            .unwrap();
    });
    store
        .mint_collection_state(&stuck, 1, None, b"snapshot")
        .unwrap();
}

/// Two nodes starting at the same moment on an empty database: one migrates, the other
/// waits for it and finds the schema done.
#[test]
fn postgres_nodes_starting_together_migrate_once() {
    let url = Postgres::shared().fresh_database().unwrap();
    let barrier = Barrier::new(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                PgStore::open(&url).unwrap();
            });
        }
    });
}

#[test]
fn a_database_that_is_not_there_is_unavailable() {
    // A port nothing listens on: the store does not start, and says why.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PgStore::open(&format!("postgres://eas@127.0.0.1:{port}/x"))
        .err()
        .expect("opened nothing");
    assert!(err.is_unavailable(), "{err}");
    assert!(matches!(
        state::open("mysql://x").err().unwrap(),
        StateError::UnsupportedUrl(_)
    ));
}

/// More calls at once than the store has connections: each waits for one given back, none
/// fails, and the database never sees more connections than the limit. A call that fails
/// (here a constraint the statement breaks) leaves the store as usable as before.
#[test]
fn postgres_calls_share_the_connection_limit() {
    let (pg, url, name) = fresh_pg();
    let store = PgStore::open_with(&url, 2).unwrap();
    let key = |i: usize| DeviceKey {
        user: "limit@example.com".into(),
        device_id: format!("D{i}"),
    };
    let barrier = Barrier::new(8);
    let most = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (store, barrier, most, name) = (&store, &barrier, &most, &name);
            s.spawn(move || {
                barrier.wait();
                for n in 0..40u32 {
                    let value = format!("{t}-{n}").into_bytes();
                    store.put_memo(&key(t), "m", &value).unwrap();
                    assert_eq!(store.memo(&key(t), "m").unwrap(), Some(value));
                    if t == 0 && n % 10 == 0 {
                        let open: usize = pg
                            .psql(
                                name,
                                &format!(
                                    "SELECT count(*) FROM pg_stat_activity \
                                     WHERE application_name = 'eas-gateway' AND datname = '{name}'"
                                ),
                            )
                            .unwrap()
                            .parse()
                            .unwrap();
                        most.fetch_max(open, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(
        most.load(std::sync::atomic::Ordering::Relaxed) <= 2,
        "more connections than the limit"
    );
    // A write the database refuses (a check constraint added behind the store's back; not a
    // dead connection): the error comes back, and the next calls work.
    let mut d = Device::new(key(0), "iPhone");
    d.device_type = "x".repeat(10);
    assert!(store.insert_device(&d).unwrap());
    pg.psql(
        &name,
        "ALTER TABLE devices ADD CONSTRAINT short_model CHECK (length(model) < 5)",
    )
    .unwrap();
    let mut long = store.device(&key(0)).unwrap().unwrap();
    long.info.model = Some("a model name too long".into());
    let err = store
        .update_device(&long)
        .expect_err("the check let it pass");
    assert!(!err.is_unavailable(), "{err}");
    for t in 0..8 {
        assert!(store.memo(&key(t), "m").unwrap().is_some());
    }
    assert_eq!(store.device(&key(0)).unwrap().unwrap().info.model, None);
}

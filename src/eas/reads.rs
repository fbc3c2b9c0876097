//! A request's reads and writes of its device's state, gathered into as few store calls as
//! possible: what its command will read is loaded with the device record when the request
//! starts ([`wants`], one [`StateStore::load`]), and the memos it keeps are written with the
//! device's check when it ends (`http`'s one [`StateStore::put_memos_and_read_device`]).
//!
//! On PostgreSQL every store call is a round trip; a no-change Sync made nine, one per read or
//! write, and spent most of its time waiting for them (docs/benchmarks.md, "State in
//! PostgreSQL against SQLite"). Now it makes one: the load, since a memo written back with
//! the value the store gave this request is dropped ([`Reads::take_pending`]) and a short
//! request that writes nothing ends without reading its device back (`http`'s
//! `save_unless_unchanged`); a Sync that changed a memo makes two.
//!
//! Nothing here outlives the request. Several nodes share the database, and another node (or
//! the admin) may change a device between two of its requests, so a node keeps no device
//! state across requests: each request reads afresh. Within a request, a value loaded at the
//! start answers the command's first read of it only (a later read, as a held Sync's next
//! look, goes to the store), which is what reading it then would have answered but for the
//! microseconds in between; and a memo the command wrote answers its own later reads.

use std::sync::Mutex;

use eas_wbxml::Element;

use crate::eas::version::Command;
use crate::state::{DeviceKey, FolderEntry, Loaded, StateError, StateStore, Wants};

/// What a command reads first, to be loaded with the device: Sync its memos, the newest folder
/// list and the snapshots of the keys its body presents; Ping its memo and the folder list.
/// Other commands read the device alone.
pub fn wants(command: Command, body: Option<&Element>) -> Wants {
    let mut wants = Wants {
        device: true,
        ..Wants::default()
    };
    match command {
        Command::Sync => {
            wants.memos = super::sync::MEMOS_READ_FIRST.to_vec();
            wants.hierarchy = true;
            wants.snapshots = body.map(super::sync::presented_keys).unwrap_or_default();
        }
        Command::Ping => {
            wants.memos = vec![super::ping::MEMO];
            wants.hierarchy = true;
        }
        _ => {}
    }
    wants
}

/// What the request loaded and has not read yet, and the memos it writes at its end.
#[derive(Default)]
pub struct Reads {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// What was asked and is still unread: a name, the hierarchy or a key is answered from
    /// `loaded` while it is listed here (absent from `loaded`: it does not exist).
    unread: Wants,
    loaded: Loaded,
    /// Memos to write when the request ends, in the order written.
    pending: Vec<(&'static str, Vec<u8>)>,
    /// Each memo's value as the store last answered it to this request, so that a memo
    /// written back unchanged is not written at all.
    answered: Vec<(&'static str, Option<Vec<u8>>)>,
    /// The command said it changed no state of the device but the memos it keeps.
    no_other_writes: bool,
}

impl Reads {
    /// `loaded` as answered for `wants` (the device taken out of it already).
    pub fn new(mut wants: Wants, loaded: Loaded) -> Reads {
        wants.device = false;
        // Each listed once: a second entry would answer "does not exist" after the first read.
        dedup(&mut wants.memos);
        dedup(&mut wants.snapshots);
        Reads {
            inner: Mutex::new(Inner {
                unread: wants,
                loaded,
                pending: Vec::new(),
                answered: Vec::new(),
                no_other_writes: false,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads in one store call whatever of `wants` is not loaded and unread already.
    pub fn load(
        &self,
        store: &dyn StateStore,
        key: &DeviceKey,
        wants: Wants,
    ) -> Result<(), StateError> {
        let mut missing = {
            let inner = self.inner();
            let unread = &inner.unread;
            Wants {
                device: false,
                memos: wants
                    .memos
                    .into_iter()
                    .filter(|m| !unread.memos.contains(m))
                    .collect(),
                hierarchy: wants.hierarchy && !unread.hierarchy,
                snapshots: wants
                    .snapshots
                    .into_iter()
                    .filter(|s| !unread.snapshots.contains(s))
                    .collect(),
            }
        };
        dedup(&mut missing.memos);
        dedup(&mut missing.snapshots);
        if missing.is_empty() {
            return Ok(());
        }
        let loaded = store.load(key, &missing)?;
        let mut inner = self.inner();
        let Inner {
            unread, loaded: l, ..
        } = &mut *inner;
        unread.memos.extend(missing.memos);
        l.memos.extend(loaded.memos);
        if missing.hierarchy {
            unread.hierarchy = true;
            l.hierarchy = loaded.hierarchy;
        }
        unread.snapshots.extend(missing.snapshots);
        l.snapshots.extend(loaded.snapshots);
        Ok(())
    }

    /// A memo: as this request wrote it, as loaded (once), or from the store.
    pub fn memo(
        &self,
        store: &dyn StateStore,
        key: &DeviceKey,
        name: &'static str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        {
            let mut inner = self.inner();
            if let Some((_, v)) = inner.pending.iter().rev().find(|(n, _)| *n == name) {
                return Ok(Some(v.clone()));
            }
            if let Some(i) = inner.unread.memos.iter().position(|m| *m == name) {
                inner.unread.memos.swap_remove(i);
                let found = inner.loaded.memos.iter().position(|(n, _)| n == name);
                let value = found.map(|i| inner.loaded.memos.swap_remove(i).1);
                inner.note_answered(name, &value);
                return Ok(value);
            }
        }
        let value = store.memo(key, name)?;
        self.inner().note_answered(name, &value);
        Ok(value)
    }

    /// Writes a memo when the request ends, with the device's check (one call for both).
    pub fn put_memo_later(&self, name: &'static str, value: Vec<u8>) {
        self.inner().pending.push((name, value));
    }

    /// The memos to write, taken: each name's last value, and none that is what the store
    /// answered this request (a no-change Sync keeps the same two memos it read). Rewriting
    /// an unchanged value would only restore it over what another request wrote meanwhile,
    /// which is newer.
    pub fn take_pending(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut inner = self.inner();
        let pending = std::mem::take(&mut inner.pending);
        let mut last: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(pending.len());
        for (name, value) in pending {
            last.retain(|(n, _)| *n != name);
            last.push((name, value));
        }
        last.retain(|(name, value)| {
            !inner
                .answered
                .iter()
                .any(|(n, v)| n == name && v.as_deref() == Some(value.as_slice()))
        });
        last
    }

    /// The command changed no state of the device in the store but the memos it keeps (a
    /// Sync that minted no key and applied nothing): with no memo to write either, the
    /// request's end need not touch the store (`http`).
    pub fn note_no_other_writes(&self) {
        self.inner().no_other_writes = true;
    }

    /// See [`Reads::note_no_other_writes`].
    pub fn no_other_writes(&self) -> bool {
        self.inner().no_other_writes
    }

    /// The newest folder list (empty when the device has none): as loaded (once), or from the
    /// store in one call.
    pub fn hierarchy(
        &self,
        store: &dyn StateStore,
        key: &DeviceKey,
    ) -> Result<Vec<FolderEntry>, StateError> {
        {
            let mut inner = self.inner();
            if inner.unread.hierarchy {
                inner.unread.hierarchy = false;
                return Ok(inner
                    .loaded
                    .hierarchy
                    .take()
                    .map(|(_, f)| f)
                    .unwrap_or_default());
            }
        }
        let wants = Wants {
            hierarchy: true,
            ..Wants::default()
        };
        Ok(store
            .load(key, &wants)?
            .hierarchy
            .map(|(_, f)| f)
            .unwrap_or_default())
    }

    /// The snapshot under a collection's key: as loaded (once), or from the store.
    pub fn collection_state(
        &self,
        store: &dyn StateStore,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
    ) -> Result<Option<Vec<u8>>, StateError> {
        {
            let mut inner = self.inner();
            let wanted = (folder, sync_key);
            if let Some(i) = inner.unread.snapshots.iter().position(|s| *s == wanted) {
                inner.unread.snapshots.swap_remove(i);
                let found = inner
                    .loaded
                    .snapshots
                    .iter()
                    .position(|(f, k, _)| (*f, *k) == wanted);
                return Ok(found.map(|i| inner.loaded.snapshots.swap_remove(i).2));
            }
        }
        store.collection_state(key, folder, sync_key)
    }
}

impl Inner {
    /// Keeps the store's latest answer for `name` to this request.
    fn note_answered(&mut self, name: &'static str, value: &Option<Vec<u8>>) {
        self.answered.retain(|(n, _)| *n != name);
        self.answered.push((name, value.clone()));
    }
}

/// Drops repeated entries, keeping the first of each.
fn dedup<T: PartialEq>(v: &mut Vec<T>) {
    let mut i = 0;
    while i < v.len() {
        if v[..i].contains(&v[i]) {
            v.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A SQLite store in a temporary directory (kept while the guard lives) and a device key.
    fn temp_store() -> (tempfile::TempDir, std::sync::Arc<dyn StateStore>, DeviceKey) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::state::open(&format!("sqlite:{}", dir.path().join("s.db").display())).unwrap();
        let key = DeviceKey {
            user: "u".into(),
            device_id: "d".into(),
        };
        (dir, store, key)
    }

    /// A value loaded at the start answers the first read only; the next read, and a read of
    /// what was not loaded, go to the store and see what others wrote meanwhile. A memo the
    /// request keeps answers its own later reads and is written only when taken.
    #[test]
    fn loaded_values_answer_once_and_are_never_kept() {
        let (_dir, store, key) = temp_store();
        let store = store.as_ref();
        store.put_memo(&key, "a", b"1").unwrap();
        store.put_hierarchy(&key, 1, &[]).unwrap();
        let k = store.mint_collection_state(&key, 5, None, b"s1").unwrap();
        let wants = Wants {
            device: true,
            memos: vec!["a", "b", "a"],
            hierarchy: true,
            snapshots: vec![(5, k), (5, k)],
        };
        let reads = Reads::new(wants.clone(), store.load(&key, &wants).unwrap());
        // Another writer, after the request loaded.
        store.put_memo(&key, "a", b"2").unwrap();
        store.put_memo(&key, "b", b"new").unwrap();
        store.replace_collection_state(&key, 5, k, b"s2").unwrap();
        store
            .put_hierarchy(
                &key,
                2,
                &[crate::state::FolderEntry {
                    id: 1,
                    parent: 0,
                    display_name: "INBOX".into(),
                    kind: 2,
                    imap_name: "INBOX".into(),
                    uidvalidity: 1,
                }],
            )
            .unwrap();

        assert_eq!(reads.memo(store, &key, "a").unwrap().unwrap(), b"1");
        assert_eq!(reads.memo(store, &key, "a").unwrap().unwrap(), b"2");
        assert_eq!(
            reads.memo(store, &key, "b").unwrap(),
            None,
            "absent when loaded"
        );
        assert_eq!(reads.memo(store, &key, "b").unwrap().unwrap(), b"new");
        assert_eq!(
            reads.collection_state(store, &key, 5, k).unwrap().unwrap(),
            b"s1"
        );
        assert_eq!(
            reads.collection_state(store, &key, 5, k).unwrap().unwrap(),
            b"s2",
            "a second look (a held Sync) reads afresh"
        );
        assert!(reads.hierarchy(store, &key).unwrap().is_empty());
        assert_eq!(reads.hierarchy(store, &key).unwrap().len(), 1);

        // Loading again reads only what is not loaded and unread.
        reads
            .load(
                store,
                &key,
                Wants {
                    memos: vec!["a"],
                    hierarchy: true,
                    ..Wants::default()
                },
            )
            .unwrap();
        store.put_memo(&key, "a", b"3").unwrap();
        assert_eq!(reads.memo(store, &key, "a").unwrap().unwrap(), b"2");
        assert_eq!(reads.hierarchy(store, &key).unwrap().len(), 1);

        reads.put_memo_later("c", b"mine".to_vec());
        reads.put_memo_later("c", b"mine too".to_vec());
        assert_eq!(reads.memo(store, &key, "c").unwrap().unwrap(), b"mine too");
        assert_eq!(store.memo(&key, "c").unwrap(), None, "not written yet");
        let pending = reads.take_pending();
        assert_eq!(
            pending,
            vec![("c", b"mine too".to_vec())],
            "the last value only"
        );
        assert!(reads.take_pending().is_empty());
    }

    /// A memo written back as the store answered it is not written; one that changed, or that
    /// the store did not have, is.
    #[test]
    fn unchanged_memos_are_not_written_back() {
        let (_dir, store, key) = temp_store();
        let store = store.as_ref();
        store.put_memo(&key, "same", b"1").unwrap();
        store.put_memo(&key, "reread", b"1").unwrap();
        store.put_memo(&key, "changed", b"1").unwrap();
        store.put_memo(&key, "read late", b"1").unwrap();
        let wants = Wants {
            device: true,
            memos: vec!["same", "reread", "changed", "new"],
            ..Wants::default()
        };
        let reads = Reads::new(wants.clone(), store.load(&key, &wants).unwrap());
        for name in ["same", "reread", "changed", "new", "read late"] {
            reads.memo(store, &key, name).unwrap();
        }
        // Another writer; the request reads the memo again and sees it.
        store.put_memo(&key, "reread", b"2").unwrap();
        assert_eq!(reads.memo(store, &key, "reread").unwrap().unwrap(), b"2");

        reads.put_memo_later("same", b"1".to_vec());
        reads.put_memo_later("reread", b"1".to_vec());
        reads.put_memo_later("changed", b"2".to_vec());
        reads.put_memo_later("new", b"1".to_vec());
        reads.put_memo_later("read late", b"1".to_vec());
        reads.put_memo_later("never read", b"1".to_vec());
        let mut names: Vec<_> = reads.take_pending().into_iter().map(|(n, _)| n).collect();
        names.sort_unstable();
        assert_eq!(names, ["changed", "never read", "new", "reread"]);

        // A value changed and changed back is as the store has it.
        reads.put_memo_later("changed", b"3".to_vec());
        reads.put_memo_later("changed", b"1".to_vec());
        assert!(reads.take_pending().is_empty());
        assert!(!reads.no_other_writes());
        reads.note_no_other_writes();
        assert!(reads.no_other_writes());
    }
}

//! Read-ahead: while a phone receives one page of a long Sync (MoreAvailable) and sends the
//! request for the next, the gateway already computes that next page.
//!
//! A page costs Dovecot most of its time in reading the messages, and the phone cannot ask for
//! the next page before it has the current one: without read-ahead, IMAP idles during every
//! round trip and the phone idles during every fetch. With it, the fetch of page n+1 runs
//! while page n travels (over a mobile network, a round trip is longer than the fetch, so the
//! phone gets pages as fast as it can take them).
//!
//! A page computed ahead is used only when it is exactly what the request would compute
//! (checked by the Sync command, [`super::collection`]): the same key, snapshot, options and
//! window, no client commands, and a folder state (UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT,
//! MESSAGES) equal to the one read before the page was listed — so no message arrived, went
//! or changed flags in between. Anything else discards it and the page is computed afresh.
//!
//! Owns the table of pages being computed ahead, one per device and folder, and its bounds
//! (at most [`MAX_PAGES`] at once, each dropped after [`TTL`] unused). Must not touch the
//! state store: the snapshot a page starts from is handed over in memory, and a page becomes
//! state only through the Sync command that uses it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::items::Rendered;
use super::request::Options;
use super::snapshot::{FlagState, Snapshot, Window};
use crate::eas::version::ProtocolVersion;
use crate::mailstore::FolderState;
use crate::state::DeviceKey;

/// Pages kept or being computed at once, over all devices; beyond it no read-ahead starts.
/// A page holds at most one window of rendered items (about 1 MB for 100 messages with 32 KB
/// bodies), so this bounds the memory read-ahead can take.
pub const MAX_PAGES: usize = 32;

/// A page the phone has not asked for within this time is dropped: it stopped paging.
pub const TTL: Duration = Duration::from_secs(30);

/// How long a request waits for the page it can use; past this it computes the page itself.
const WAIT: Duration = Duration::from_secs(30);

/// What a page depends on besides the snapshot and the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub options: Options,
    /// The window (WindowSize, after the request's overall budget).
    pub window: usize,
    pub version: ProtocolVersion,
    /// Start of the FilterType window.
    pub since: u64,
}

/// A page computed ahead: the Sync command's diff, window and fetched items.
pub struct Page {
    /// The snapshot the page was computed from (the one stored under the key).
    pub from: Snapshot,
    pub params: Params,
    /// The folder as read before anything was listed.
    pub state: FolderState,
    pub window: Window,
    /// Flag changes found in all (the window may hold only some).
    pub all_changes: usize,
    /// Flag states of the messages whose mod-sequence moved.
    pub states: HashMap<u32, FlagState>,
    /// Every UID in the folder, as ranges.
    pub all: Vec<(u32, u32)>,
    pub items: Rendered,
}

struct Entry {
    key: u32,
    started: Instant,
    task: JoinHandle<Option<Page>>,
}

/// The pages being computed ahead.
#[derive(Default)]
pub struct ReadAhead {
    table: Mutex<HashMap<(DeviceKey, u32), Entry>>,
    counts: Counts,
}

/// What became of the pages computed ahead, for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Counts {
    /// Started.
    pub started: AtomicU64,
    /// Not started: [`MAX_PAGES`] were under way.
    pub refused: AtomicU64,
    /// Sent as the answer to the request they were computed for.
    pub used: AtomicU64,
    /// Computed, but something they depend on had changed: computed again by the request.
    pub stale: AtomicU64,
    /// Never asked for (another key, client commands, too old, failed).
    pub dropped: AtomicU64,
}

impl Counts {
    /// (started, refused, used, stale, dropped).
    pub fn get(&self) -> [u64; 5] {
        [
            &self.started,
            &self.refused,
            &self.used,
            &self.stale,
            &self.dropped,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl ReadAhead {
    pub fn new() -> ReadAhead {
        ReadAhead::default()
    }

    /// Starts `job`, the page a device will ask for with `key` in `folder`, unless
    /// [`MAX_PAGES`] are already under way. An older page of the same folder is dropped.
    pub fn start(
        &self,
        device: DeviceKey,
        folder: u32,
        key: u32,
        job: impl Future<Output = Option<Page>> + Send + 'static,
    ) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = &self.counts.dropped;
        table.retain(|_, e| {
            let keep = e.started.elapsed() < TTL;
            if !keep {
                e.task.abort();
                bump(dropped);
            }
            keep
        });
        if let Some(old) = table.remove(&(device.clone(), folder)) {
            old.task.abort();
            bump(dropped);
        }
        if table.len() >= MAX_PAGES {
            bump(&self.counts.refused);
            return false;
        }
        bump(&self.counts.started);
        let entry = Entry {
            key,
            started: Instant::now(),
            task: tokio::spawn(job),
        };
        table.insert((device, folder), entry);
        true
    }

    /// Removes the read-ahead of a folder. When it is for `key` (None: the request cannot
    /// use one, e.g. it carries client commands), waits for it and returns the page.
    pub async fn take(&self, device: &DeviceKey, folder: u32, key: Option<u32>) -> Option<Page> {
        let entry = {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            table.remove(&(device.clone(), folder))?
        };
        if key != Some(entry.key) {
            entry.task.abort();
            bump(&self.counts.dropped);
            return None;
        }
        let abort = entry.task.abort_handle();
        let page = match tokio::time::timeout(WAIT, entry.task).await {
            Ok(Ok(page)) => page,
            Ok(Err(_)) => None,
            Err(_) => {
                abort.abort();
                None
            }
        };
        if page.is_none() {
            bump(&self.counts.dropped);
        }
        page
    }

    /// Records whether a page [`ReadAhead::take`] returned was the request's answer.
    pub fn note(&self, used: bool) {
        bump(if used {
            &self.counts.used
        } else {
            &self.counts.stale
        });
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Pages kept or under way.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(|e| e.into_inner());
        for e in table.values() {
            e.task.abort();
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn device(id: &str) -> DeviceKey {
        DeviceKey {
            user: "u".into(),
            device_id: id.into(),
        }
    }

    fn page() -> Page {
        Page {
            from: Snapshot::default(),
            params: Params {
                options: Options::default(),
                window: 100,
                version: ProtocolVersion::V14_1,
                since: 0,
            },
            state: FolderState::default(),
            window: Window::default(),
            all_changes: 0,
            states: HashMap::new(),
            all: Vec::new(),
            items: Rendered::default(),
        }
    }

    #[tokio::test]
    async fn a_page_is_taken_once_and_only_with_its_key() {
        let ra = ReadAhead::new();
        assert!(ra.start(device("a"), 2, 7, async { Some(page()) }));
        assert!(ra.take(&device("a"), 2, Some(7)).await.is_some());
        assert!(ra.take(&device("a"), 2, Some(7)).await.is_none());

        // Another key (a retried request) discards it; so does a request with commands.
        assert!(ra.start(device("a"), 2, 8, async { Some(page()) }));
        assert!(ra.take(&device("a"), 2, Some(7)).await.is_none());
        assert!(ra.is_empty());
        assert!(ra.start(device("a"), 2, 9, async { Some(page()) }));
        assert!(ra.take(&device("a"), 2, None).await.is_none());
        assert!(ra.is_empty());
    }

    #[tokio::test]
    async fn bounded_and_one_per_folder() {
        let ra = ReadAhead::new();
        for i in 0..MAX_PAGES {
            assert!(ra.start(device(&i.to_string()), 2, 1, std::future::pending()));
        }
        assert!(!ra.start(device("late"), 2, 1, async { Some(page()) }));
        // A newer page of the same folder replaces the older one.
        assert!(ra.start(device("0"), 2, 2, async { Some(page()) }));
        assert_eq!(ra.len(), MAX_PAGES);
        assert!(ra.take(&device("0"), 2, Some(2)).await.is_some());
    }
}

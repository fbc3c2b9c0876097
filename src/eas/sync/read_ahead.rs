//! Read-ahead: while a phone receives one page of a long Sync (MoreAvailable) and sends the
//! request for the next, the gateway already computes the pages that follow.
//!
//! A page costs Dovecot most of its time in reading the messages, and the phone cannot ask for
//! the next page before it has the current one: without read-ahead, IMAP idles during every
//! round trip and the phone idles during every fetch. With it, a *pager* per device and
//! folder lists the folder once and fetches page after page on one IMAP session (at most one
//! page waiting and one being built), so Dovecot reads messages without pause; a request whose
//! page is ready is answered without touching IMAP at all.
//!
//! A page computed ahead is used only when it continues exactly what the device was told: the
//! request's key holds the very snapshot bytes the page was computed from (the pager predicts
//! each next snapshot with the same code the Sync command stores it with), with the same
//! options and window and no client commands. The folder state every page records is the one
//! read before the pager's listing, so whatever changes during the paging is found by the Sync
//! after it — nothing is missed, at worst announced by the phone's next Ping; a store whose look
//! is cheap (mail: one STATUS) also checks the last page against a fresh look and computes it
//! afresh when anything moved, so the paging ends fresh (`engine::Store::CHECKS_LAST_PAGE`).
//! Anything else drops the pager and the request computes its page itself.
//!
//! Owns the table of pagers and their bounds (at most [`MAX_PAGERS`] at once, each ended
//! after [`TTL`] without a request). Must not touch the state store: the snapshot a pager
//! starts from is handed over in memory, and a page becomes state only through the Sync
//! command that uses it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::request::Options;
use crate::backend::Rendered;
use crate::eas::version::ProtocolVersion;
use crate::state::DeviceKey;

/// Pagers at once, over all devices; beyond it no read-ahead starts. A pager holds at most
/// two windows of rendered items (about 1 MB each for 100 messages with 32 KB bodies) and one
/// IMAP session, so this bounds what read-ahead can take.
pub const MAX_PAGERS: usize = 32;

/// A pager whose next page the phone has not asked for within this time ends: it stopped
/// paging.
pub const TTL: Duration = Duration::from_secs(30);

/// How long a request waits for the page being computed for it before computing it itself.
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

/// A page computed ahead.
pub struct Page {
    /// The snapshot it continues from, encoded: a request whose key stores these bytes is
    /// the one this page answers (a byte comparison, no decoding).
    pub from: Vec<u8>,
    /// The snapshot after this page, encoded, and the commands that lead there (computed
    /// with the Sync engine's own `advance`).
    pub next: Vec<u8>,
    pub(super) commands: Vec<super::ServerCommand>,
    pub params: Params,
    /// The head of the collection's token as read before the listing: the last page is used
    /// only while a fresh look reads the same.
    pub listed: Vec<u8>,
    /// Operations in the page, and whether more follow it.
    pub len: usize,
    pub more: bool,
    pub items: Rendered,
}

/// The work of a pager, started once the answer that told MoreAvailable is on its way.
pub type Job = Box<
    dyn FnOnce(mpsc::Sender<Page>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send,
>;

/// The pages of one device and folder, computed one after the other by a background task.
pub struct Pager {
    pages: mpsc::Receiver<Page>,
    task: JoinHandle<()>,
    touched: Instant,
}

impl Drop for Pager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A page taken for a request, and the pager that goes on computing the next ones.
pub struct Taken {
    pub page: Page,
    pub pager: Pager,
}

/// The pagers of all devices.
#[derive(Default)]
pub struct ReadAhead {
    table: Mutex<HashMap<(DeviceKey, u32), Pager>>,
    counts: Counts,
}

/// What became of read-ahead, for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct Counts {
    /// Pagers started.
    pub started: AtomicU64,
    /// Pagers not started: [`MAX_PAGERS`] were running.
    pub refused: AtomicU64,
    /// Pages sent as the answer to a request.
    pub used: AtomicU64,
    /// Pages that did not continue what the request presented (another key, other
    /// options): computed again by the request.
    pub stale: AtomicU64,
    /// Pagers ended before the folder was paged through (client commands, too old, the
    /// folder changed identity, failed).
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

    /// Starts a pager for a device's folder: `job` computes pages and sends each to the
    /// channel it is given, waiting while one is unclaimed. Not started when
    /// [`MAX_PAGERS`] are running; an older pager of the same folder ends.
    pub fn start<F, Fut>(&self, device: DeviceKey, folder: u32, job: F) -> bool
    where
        F: FnOnce(mpsc::Sender<Page>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut table = self.lock();
        self.sweep(&mut table);
        if table.remove(&(device.clone(), folder)).is_some() {
            bump(&self.counts.dropped);
        }
        if table.len() >= MAX_PAGERS {
            bump(&self.counts.refused);
            return false;
        }
        bump(&self.counts.started);
        let (tx, rx) = mpsc::channel(1);
        let pager = Pager {
            pages: rx,
            task: tokio::spawn(job(tx)),
            touched: Instant::now(),
        };
        table.insert((device, folder), pager);
        true
    }

    /// The next page of a folder's pager, waiting while it is being computed. The pager is
    /// the caller's now: [`ReadAhead::give_back`] when the page was used and more follow,
    /// else drop it (which ends it).
    pub async fn take(&self, device: &DeviceKey, folder: u32) -> Option<Taken> {
        let mut pager = self.lock().remove(&(device.clone(), folder))?;
        match tokio::time::timeout(WAIT, pager.pages.recv()).await {
            Ok(Some(page)) => Some(Taken { page, pager }),
            _ => {
                bump(&self.counts.dropped);
                None
            }
        }
    }

    /// Ends a folder's pager (the request changes the folder, or pages differently).
    pub fn cancel(&self, device: &DeviceKey, folder: u32) {
        if self.lock().remove(&(device.clone(), folder)).is_some() {
            bump(&self.counts.dropped);
        }
    }

    /// Returns a pager whose page was used; it goes on with the next.
    pub fn give_back(&self, device: DeviceKey, folder: u32, mut pager: Pager) {
        pager.touched = Instant::now();
        let mut table = self.lock();
        self.sweep(&mut table);
        table.insert((device, folder), pager);
    }

    /// Records whether a taken page answered the request.
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

    /// The counters and the running pagers in Prometheus' text format, for `/metrics`.
    pub fn metrics(&self) -> String {
        let [started, refused, used, stale, dropped] = self.counts.get();
        format!(
            "# HELP eas_sync_read_ahead_pagers Sync pagers computing pages ahead now.\n\
             # TYPE eas_sync_read_ahead_pagers gauge\n\
             eas_sync_read_ahead_pagers {}\n\
             # HELP eas_sync_read_ahead_total What became of Sync read-ahead.\n\
             # TYPE eas_sync_read_ahead_total counter\n\
             eas_sync_read_ahead_total{{event=\"started\"}} {started}\n\
             eas_sync_read_ahead_total{{event=\"refused\"}} {refused}\n\
             eas_sync_read_ahead_total{{event=\"page_used\"}} {used}\n\
             eas_sync_read_ahead_total{{event=\"page_stale\"}} {stale}\n\
             eas_sync_read_ahead_total{{event=\"dropped\"}} {dropped}\n",
            self.len()
        )
    }

    /// Pagers running or waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(DeviceKey, u32), Pager>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sweep(&self, table: &mut HashMap<(DeviceKey, u32), Pager>) {
        let before = table.len();
        table.retain(|_, p| p.touched.elapsed() < TTL);
        for _ in table.len()..before {
            bump(&self.counts.dropped);
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

    fn page(n: u32) -> Page {
        Page {
            from: n.to_le_bytes().to_vec(),
            next: Vec::new(),
            commands: Vec::new(),
            params: Params {
                options: Options::default(),
                window: 100,
                version: ProtocolVersion::V14_1,
                since: 0,
            },
            listed: Vec::new(),
            len: 0,
            more: true,
            items: Rendered::default(),
        }
    }

    /// A pager that sends pages 1..=n.
    fn pages(
        n: u32,
    ) -> impl FnOnce(mpsc::Sender<Page>) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        move |tx| {
            Box::pin(async move {
                for i in 1..=n {
                    if tx.send(page(i)).await.is_err() {
                        return;
                    }
                }
            })
        }
    }

    #[tokio::test]
    async fn pages_come_in_order_while_the_pager_is_given_back() {
        let ra = ReadAhead::new();
        assert!(ra.start(device("a"), 2, pages(3)));
        for want in 1..=3u32 {
            let t = ra.take(&device("a"), 2).await.expect("a page");
            assert_eq!(t.page.from, want.to_le_bytes());
            ra.give_back(device("a"), 2, t.pager);
        }
        // The pager ended after its last page.
        assert!(ra.take(&device("a"), 2).await.is_none());
        assert!(ra.is_empty());
        assert_eq!(ra.counts().get()[0], 1);
    }

    #[tokio::test]
    async fn a_pager_not_given_back_or_cancelled_is_gone() {
        let ra = ReadAhead::new();
        assert!(ra.start(device("a"), 2, pages(5)));
        let t = ra.take(&device("a"), 2).await.expect("a page");
        drop(t);
        assert!(ra.take(&device("a"), 2).await.is_none());
        assert!(ra.start(device("a"), 2, pages(5)));
        ra.cancel(&device("a"), 2);
        assert!(ra.take(&device("a"), 2).await.is_none());
    }

    #[tokio::test]
    async fn metrics_count_what_happened() {
        let ra = ReadAhead::new();
        assert!(ra.start(device("a"), 2, pages(2)));
        let t = ra.take(&device("a"), 2).await.expect("a page");
        ra.note(true);
        ra.give_back(device("a"), 2, t.pager);
        let text = ra.metrics();
        assert!(text.contains("eas_sync_read_ahead_pagers 1\n"), "{text}");
        assert!(
            text.contains("eas_sync_read_ahead_total{event=\"started\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("eas_sync_read_ahead_total{event=\"page_used\"} 1\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| !l.starts_with(' ')), "{text}");
    }

    #[tokio::test]
    async fn bounded_and_one_per_folder() {
        let ra = ReadAhead::new();
        for i in 0..MAX_PAGERS {
            assert!(
                ra.start(device(&i.to_string()), 2, |_tx| std::future::pending::<()>(
                ))
            );
        }
        assert!(!ra.start(device("late"), 2, pages(1)));
        // A newer pager of the same folder replaces the older one.
        assert!(ra.start(device("0"), 2, pages(1)));
        assert_eq!(ra.len(), MAX_PAGERS);
        assert!(ra.take(&device("0"), 2).await.is_some());
    }
}

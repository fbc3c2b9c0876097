//! Push: the hub of held Pings (and held Syncs) and the sources that wake them.
//!
//! Owns the in-memory registry of waiting devices and the per-user event sources. A waiting
//! device costs one small entry and one signal queue: no task, no connection, nothing per folder.
//! Sources ([`EventSource`]) only say "this user's mailbox may have changed"; the waiting
//! command decides against the device's own stored state whether it is news for that device,
//! so a lost, late or forged event can only cause an early or late wake-up, never wrong data.
//!
//! Sources ([`crate::config::PushSource`]): [`imap_watch`], one IMAP connection per *user*
//! with waiting devices (NOTIFY when the server has it, else IDLE on INBOX plus STATUS polling
//! of the other folders); [`dovecot_events`], Dovecot's own signed datagrams (no connection
//! held for waiting devices).
//!
//! Address books, calendars and task lists have their own source beside the mail one,
//! [`dav_watch`]: one watcher per user with devices waiting on DAV collections, checking their
//! sync tokens on an interval and at once when Radicale's hook says the user changed something
//! (a `d` line on the events listener).

pub mod dav_watch;
pub mod dovecot_events;
pub mod imap_watch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::imap::ImapConfig;
use crate::secret::Secret;

/// What wakes a waiting device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A mailbox of the user may have changed; with its STATUS when the source read it.
    Mailbox(String, Option<crate::mailstore::FolderState>),
    /// New messages arrived in a mailbox, the highest with this UID (Dovecot's events say so
    /// without reading the mailbox's counters).
    Arrived {
        mailbox: String,
        uidvalidity: u32,
        uid: u32,
    },
    /// The user's folder hierarchy changed (a mailbox created, deleted or renamed).
    Hierarchy(String),
    /// A DAV collection's sync token (or CTag) as the DAV watcher read it; `sync` None when
    /// the server gives neither (then the waiting device compares the listing itself), `gone`
    /// when the collection is no longer there.
    Collection {
        url: String,
        sync: Option<String>,
        gone: bool,
    },
    /// A newer request from the same device replaces this one.
    Superseded,
    /// The gateway is stopping: answer now.
    Shutdown,
    /// The event source lost the mail server and has not got it back yet.
    BackendDown,
    /// The event source is connected (again).
    BackendUp,
}

/// Something that reports mailbox changes to the hub (the IMAP watchers, Dovecot's events).
/// `watch` is called whenever a device of a user starts waiting; a source stops watching by
/// itself once [`Hub::is_watched`] has been false for [`Hub::grace`].
pub trait EventSource: Send + Sync {
    fn watch(&self, hub: &Arc<Hub>, user: &UserCredentials);
    /// Open connections to the mail server held by this source, for the load tool and
    /// `/metrics`.
    fn connections(&self) -> usize;
    /// More `/metrics` lines of this source (Prometheus text).
    fn metrics(&self) -> String {
        String::new()
    }
    /// Where this source receives events, if it does.
    fn events_addr(&self) -> Option<std::net::SocketAddr> {
        None
    }
}

/// How a source logs in as a user. The password lives only in memory.
#[derive(Clone, Debug)]
pub struct UserCredentials {
    pub key: String,
    pub login: String,
    pub password: Secret<String>,
}

struct Waiter {
    id: u64,
    mailboxes: HashSet<String>,
    /// DAV collection URLs (address books, calendars, task lists) the device waits on.
    collections: HashSet<String>,
    tx: SignalSender,
}

#[derive(Default)]
struct UserEntry {
    /// Waiting devices by DeviceId.
    waiters: HashMap<String, Waiter>,
}

/// The registry of waiting devices.
pub struct Hub {
    users: Mutex<HashMap<String, UserEntry>>,
    next_id: std::sync::atomic::AtomicU64,
    source: Box<dyn EventSource>,
    /// The DAV watchers (None without `[dav] url`).
    dav: Option<dav_watch::DavWatchers>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// Held back so a device that Pings again right away does not cost a reconnect.
    grace: Duration,
    /// This process among the nodes sharing a state database (random, per start).
    node: String,
    me: Weak<Hub>,
}

/// The signals on their way to one waiting device. A channel would do, but Tokio's allocates
/// a block of 32 slots up front (2 KiB and more per waiting device, tens of MiB at 10,000
/// phones) for the one or two signals a wait ever gets; this queue allocates on first use.
struct SignalQueue {
    /// Each signal with when it was queued (for the wake-up latency on `/metrics`).
    items: Mutex<std::collections::VecDeque<(std::time::Instant, Signal)>>,
    /// The sending side is gone: once the queue is drained, `recv` answers None.
    closed: std::sync::atomic::AtomicBool,
    notify: Notify,
}

fn signal_queue() -> (SignalSender, SignalReceiver) {
    let q = Arc::new(SignalQueue {
        items: Mutex::new(std::collections::VecDeque::new()),
        closed: std::sync::atomic::AtomicBool::new(false),
        notify: Notify::new(),
    });
    (SignalSender(q.clone()), SignalReceiver(q))
}

struct SignalSender(Arc<SignalQueue>);

impl SignalSender {
    fn send(&self, signal: Signal) {
        self.0
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((std::time::Instant::now(), signal));
        // Stores a permit when nobody waits yet, so a signal sent before `recv` is not missed.
        self.0.notify.notify_one();
    }
}

impl Drop for SignalSender {
    fn drop(&mut self) {
        self.0
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.notify.notify_one();
    }
}

/// The waiting device's end: [`SignalReceiver::recv`] is cancel-safe (signals stay queued).
pub struct SignalReceiver(Arc<SignalQueue>);

impl SignalReceiver {
    /// The next signal; None once the hub dropped this device and nothing is left.
    pub async fn recv(&mut self) -> Option<Signal> {
        self.recv_timed().await.map(|(_, s)| s)
    }

    /// [`SignalReceiver::recv`] with the moment the signal was queued.
    pub async fn recv_timed(&mut self) -> Option<(std::time::Instant, Signal)> {
        loop {
            if let Some(s) = self
                .0
                .items
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return Some(s);
            }
            if self.0.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            self.0.notify.notified().await;
        }
    }
}

/// A device's place in the hub; dropping it leaves the hub.
pub struct Registration {
    hub: Arc<Hub>,
    user: String,
    device: String,
    id: u64,
    pub signals: SignalReceiver,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.leave(&self.user, &self.device, self.id);
    }
}

impl Hub {
    /// A hub whose watchers log in to `imap`.
    pub fn new(imap: ImapConfig, grace: Duration) -> Arc<Hub> {
        Hub::with_source(Box::new(imap_watch::ImapWatchers::new(imap)), grace)
    }

    /// The hub for the configured `push.source`. With Dovecot's events this binds the
    /// events socket and starts the listener, so it must run inside a Tokio runtime.
    pub fn from_config(
        config: &crate::config::Config,
        pool: Arc<crate::mailstore::SessionPool>,
    ) -> std::io::Result<Arc<Hub>> {
        use crate::config::PushSource;
        let push = &config.push;
        let grace = Duration::from_secs(push.watcher_grace_secs);
        let dav = dav_watch::DavWatchers::from_config(config)?;
        // Radicale's hook reaches the events listener, so it runs with IMAP watchers too.
        if push.source == PushSource::Imap && !(dav.is_some() && config.dav.push_hook) {
            let hub = Hub::with_sources(
                Box::new(imap_watch::ImapWatchers::new(config.imap_config())),
                dav,
                grace,
            );
            return Ok(hub);
        }
        let secret = dovecot_events::read_secret(&push.events_secret_file).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "push.events_secret_file {}: {e}",
                    push.events_secret_file.display()
                ),
            )
        })?;
        let settings = dovecot_events::Settings {
            listen: push.events_listen,
            socket: push.events_socket.clone(),
            secret,
            max_skew: Duration::from_secs(push.events_max_skew_secs),
            safety_check: (push.source == PushSource::Both)
                .then(|| Duration::from_secs(push.safety_check_secs)),
            imap: config.imap_config(),
            pool,
            // With IMAP watchers for mail the listener only hears Radicale's hook.
            mail: push.source != PushSource::Imap,
        };
        let place = match &push.events_socket {
            Some(path) => format!("push.events_socket {}", path.display()),
            None => format!("push.events_listen {}", push.events_listen),
        };
        let mail = (push.source == PushSource::Imap)
            .then(|| Box::new(imap_watch::ImapWatchers::new(config.imap_config())) as _);
        dovecot_events::DovecotEvents::hub(settings, mail, dav, grace)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{place}: {e}")))
    }

    pub fn with_source(source: Box<dyn EventSource>, grace: Duration) -> Arc<Hub> {
        Hub::with_sources(source, None, grace)
    }

    /// A hub with a mail source and, for address books and calendars, the DAV watchers.
    pub fn with_sources(
        source: Box<dyn EventSource>,
        dav: Option<dav_watch::DavWatchers>,
        grace: Duration,
    ) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub {
            users: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
            source,
            dav,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            grace,
            node: format!("{:016x}", rand::random::<u64>()),
            me: me.clone(),
        })
    }

    /// This process's name among the nodes sharing a state database: where a device's newest
    /// wait is recorded to be (`StateStore::note_wait`). New at every start, so a restarted
    /// node is never mistaken for the one that died.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A mark for [`Hub::supersede_before`]: every registration after this call is newer.
    pub fn mark(&self) -> u64 {
        self.next_id.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserEntry>> {
        // Nothing in the critical sections can panic halfway through a change.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiting device for some mailboxes. A device has one place: an older
    /// registration of the same device is told [`Signal::Superseded`].
    pub fn register(
        &self,
        user: &UserCredentials,
        device: &str,
        mailboxes: impl IntoIterator<Item = String>,
    ) -> Registration {
        self.register_with(user, device, mailboxes, Vec::new())
    }

    /// [`Hub::register`] with DAV collections (their URLs) besides the mailboxes.
    pub fn register_with(
        &self,
        user: &UserCredentials,
        device: &str,
        mailboxes: impl IntoIterator<Item = String>,
        collections: Vec<String>,
    ) -> Registration {
        let watches_dav = !collections.is_empty();
        let mailboxes: HashSet<String> = mailboxes.into_iter().collect();
        // A device waiting on DAV folders alone (TbSync syncs nothing else) costs the mail
        // source nothing: no IMAP watcher, no STATUS look.
        let watches_mail = !mailboxes.is_empty() || !watches_dav;
        let (tx, rx) = signal_queue();
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hub = self
            .me
            .upgrade()
            .expect("the hub is alive while it is used");
        {
            let mut users = self.lock();
            // Checked under the lock `shutdown` takes too, so no registration slips between.
            if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
                tx.send(Signal::Shutdown);
            }
            let entry = users.entry(user.key.clone()).or_default();
            let old = entry.waiters.insert(
                device.to_owned(),
                Waiter {
                    id,
                    mailboxes,
                    collections: collections.into_iter().collect(),
                    tx,
                },
            );
            if let Some(old) = old {
                old.tx.send(Signal::Superseded);
            }
        }
        // Every time, not only for the first device: it also refreshes the credentials the
        // source logs in with (a changed password reaches the watcher with the next Ping).
        if watches_mail {
            self.source.watch(&hub, user);
        }
        if let (true, Some(dav)) = (watches_dav, &self.dav) {
            dav.watch(&hub, user);
        }
        Registration {
            hub,
            user: user.key.clone(),
            device: device.to_owned(),
            id,
            signals: rx,
        }
    }

    /// Ends a device's wait because a newer request of the same device arrived.
    pub fn supersede(&self, user: &str, device: &str) {
        let users = self.lock();
        if let Some(w) = users.get(user).and_then(|u| u.waiters.get(device)) {
            w.tx.send(Signal::Superseded);
        }
    }

    /// Ends a device's wait if it registered before `mark` ([`Hub::mark`]): a newer request
    /// of the device went to another node after the mark was taken, so only a wait that was
    /// already here then is the older one.
    pub fn supersede_before(&self, user: &str, device: &str, mark: u64) {
        let users = self.lock();
        if let Some(w) = users.get(user).and_then(|u| u.waiters.get(device)) {
            if w.id < mark {
                w.tx.send(Signal::Superseded);
            }
        }
    }

    fn leave(&self, user: &str, device: &str, id: u64) {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(user) else {
            return;
        };
        if entry.waiters.get(device).is_some_and(|w| w.id == id) {
            entry.waiters.remove(device);
        }
        if entry.waiters.is_empty() {
            users.remove(user);
        }
        // The user's watcher notices on its own and stops after the grace period.
    }

    /// A source's news about one user. Wakes only devices waiting on that mailbox (or, for
    /// hierarchy and backend news, every device of the user).
    pub fn publish(&self, user: &str, signal: Signal) {
        let users = self.lock();
        let Some(entry) = users.get(user) else {
            return;
        };
        for w in entry.waiters.values() {
            let relevant = match &signal {
                Signal::Mailbox(m, _) | Signal::Arrived { mailbox: m, .. } => {
                    w.mailboxes.contains(m)
                }
                Signal::Collection { url, .. } => w.collections.contains(url),
                _ => true,
            };
            if relevant {
                w.tx.send(signal.clone());
            }
        }
    }

    /// How long a source keeps watching a user with no waiting device: phones Ping again
    /// right after an answer, and a reconnect would cost more than the idle connection.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Whether a user has waiting devices (sources stop when not).
    pub fn is_watched(&self, user: &str) -> bool {
        self.lock().get(user).is_some_and(|e| !e.waiters.is_empty())
    }

    /// The DAV collections any waiting device of the user cares about.
    pub fn collections_of(&self, user: &str) -> Vec<String> {
        let users = self.lock();
        let mut all: HashSet<&String> = HashSet::new();
        if let Some(e) = users.get(user) {
            for w in e.waiters.values() {
                all.extend(w.collections.iter());
            }
        }
        all.into_iter().cloned().collect()
    }

    /// Radicale's hook says a DAV user changed something (in `collection` when known): that
    /// user's DAV watcher checks now instead of at its next interval.
    pub fn dav_changed(&self, dav_user: &str, collection: Option<&str>) -> bool {
        self.dav
            .as_ref()
            .is_some_and(|d| d.changed(dav_user, collection))
    }

    /// The DAV watchers, when `[dav]` is configured (for `/metrics` and the tests).
    pub fn dav(&self) -> Option<&dav_watch::DavWatchers> {
        self.dav.as_ref()
    }

    /// The mailboxes any waiting device of the user cares about.
    pub fn mailboxes_of(&self, user: &str) -> Vec<String> {
        let users = self.lock();
        let mut all: HashSet<&String> = HashSet::new();
        if let Some(e) = users.get(user) {
            for w in e.waiters.values() {
                all.extend(w.mailboxes.iter());
            }
        }
        all.into_iter().cloned().collect()
    }

    /// Tells every waiting device to answer now; later registrations are answered at once.
    pub fn shutdown(&self) {
        let users = self.lock();
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for entry in users.values() {
            for w in entry.waiters.values() {
                w.tx.send(Signal::Shutdown);
            }
        }
    }

    /// The source's own `/metrics` lines (and the DAV watchers').
    pub fn source_metrics(&self) -> String {
        let mut out = self.source.metrics();
        if let Some(d) = &self.dav {
            out.push_str(&d.metrics());
        }
        out
    }

    /// Where the source receives Dovecot's events (None for the IMAP watchers).
    pub fn events_addr(&self) -> Option<std::net::SocketAddr> {
        self.source.events_addr()
    }

    /// Waiting devices, and connections held by the sources.
    pub fn counts(&self) -> (usize, usize) {
        // DAV watchers hold no connection of their own (one HTTP pool for all users); they
        // are counted on `/metrics` as `eas_push_dav_watchers`.
        let waiting = self.lock().values().map(|e| e.waiters.len()).sum();
        (waiting, self.source.connections())
    }
}

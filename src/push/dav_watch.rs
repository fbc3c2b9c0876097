//! The DAV event source: address books, calendars and task lists a waiting device watches.
//!
//! Owns one watcher task per *user* whose waiting devices watch DAV collections (however many
//! devices, so the checks the DAV server sees grow with users, never devices). A watcher reads
//! each watched collection's sync token (RFC 6578; the CTag for servers without one) with one
//! Depth-0 PROPFIND asking for that property only, every `dav.push_check_secs`, and at once
//! when a device starts waiting (so news from before the Ping is found) or when Radicale's
//! storage hook says the user changed something ([`DavWatchers::changed`], a `d` line on the
//! events listener). With the hook, the interval is `dav.push_safety_check_secs`: only a lost
//! datagram waits for it. A server that gives neither token is listed (hrefs and ETags) and the
//! listing's fingerprint stands in for the token.
//!
//! The watcher publishes a collection's token ([`Signal::Collection`]) when it differs from
//! what the watcher read before, or for every collection when a device just registered; each
//! waiting device compares it with its own newest Sync snapshot through the item store's token
//! (as mail does with STATUS), so a change the device made itself wakes nothing. A DAV server
//! that is away costs a log line and a counter: waiting devices keep waiting (mail may still
//! push) and are answered at their heartbeat; the next successful check publishes what moved
//! meanwhile. The watcher ends at the first look that finds no device of its user waiting on a
//! collection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Hub, Signal, UserCredentials};
use crate::dav::{DavClient, DavError, DavSettings};

/// The DAV watchers of one hub.
pub struct DavWatchers {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Arc<DavSettings>,
    http: reqwest::Client,
    /// Between two checks of a user's collections when nothing asks for one sooner.
    interval: Duration,
    watchers: Mutex<Registry>,
    counters: Counters,
}

/// The running watchers by user key, and the keys by DAV user name (lower-cased), so a hook
/// line finds its watcher without looking at every user's.
#[derive(Default)]
struct Registry {
    by_key: HashMap<String, Watcher>,
    by_dav_user: HashMap<String, Vec<String>>,
}

impl Registry {
    fn remove(&mut self, key: &str) {
        let Some(w) = self.by_key.remove(key) else {
            return;
        };
        let dav_user = w.client.user().to_lowercase();
        if let Some(keys) = self.by_dav_user.get_mut(&dav_user) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_dav_user.remove(&dav_user);
            }
        }
    }
}

struct Watcher {
    client: DavClient,
    /// Wakes the task for a check now; permits coalesce.
    kick: Arc<Notify>,
    /// A device registered since the last check: publish every token, not only moved ones.
    publish_all: bool,
}

/// What the watchers did, for `/metrics` and the tests.
#[derive(Default)]
pub struct Counters {
    /// Watcher tasks started (one per user and waiting period).
    pub started: AtomicU64,
    /// Collection checks that read a token (or a listing).
    pub checks: AtomicU64,
    /// Checks the DAV server did not answer.
    pub failed: AtomicU64,
    /// Tokens that differed from the watcher's previous reading (a change on the server).
    pub changes: AtomicU64,
    /// Hook lines for a user with a watcher (a check now), and for one without.
    pub hook_checks: AtomicU64,
    pub hook_idle: AtomicU64,
}

/// What a check read of one collection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Token(String),
    /// No token: a hash of every member's href and ETag.
    Listing(u64),
    Gone,
}

impl DavWatchers {
    /// The watchers for `[dav]`; None when no DAV server is configured.
    pub fn from_config(config: &crate::config::Config) -> std::io::Result<Option<DavWatchers>> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let Some(settings) = config.dav_settings().map_err(|e| invalid(e.to_string()))? else {
            return Ok(None);
        };
        let http = crate::dav::http_client(&settings).map_err(|e| invalid(e.to_string()))?;
        let d = &config.dav;
        let every = if d.push_hook {
            d.push_safety_check_secs
        } else {
            d.push_check_secs
        };
        Ok(Some(DavWatchers::new(
            Arc::new(settings),
            http,
            Duration::from_secs(every),
        )))
    }

    pub fn new(settings: Arc<DavSettings>, http: reqwest::Client, interval: Duration) -> Self {
        DavWatchers {
            shared: Arc::new(Shared {
                settings,
                http,
                interval,
                watchers: Mutex::new(Registry::default()),
                counters: Counters::default(),
            }),
        }
    }

    /// A device of `user` started waiting on DAV collections: start the user's watcher, or
    /// have the running one check (and publish) every collection now.
    pub fn watch(&self, hub: &Arc<Hub>, user: &UserCredentials) {
        let s = &self.shared;
        let mut watchers = lock(&s.watchers);
        let client = DavClient::new(
            s.http.clone(),
            s.settings.clone(),
            &user.login,
            user.password.clone(),
        );
        if let Some(w) = watchers.by_key.get_mut(&user.key) {
            // The newest credentials: a changed password reaches the watcher with the Ping.
            w.client = client;
            w.publish_all = true;
            w.kick.notify_one();
            return;
        }
        let kick = Arc::new(Notify::new());
        watchers
            .by_dav_user
            .entry(client.user().to_lowercase())
            .or_default()
            .push(user.key.clone());
        watchers.by_key.insert(
            user.key.clone(),
            Watcher {
                client,
                kick: kick.clone(),
                publish_all: true,
            },
        );
        s.counters.started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run(
            Arc::downgrade(s),
            Arc::downgrade(hub),
            user.key.clone(),
            kick,
        ));
    }

    /// Radicale's hook: the DAV user `dav_user` changed something. True when a watcher of
    /// that user checks now. The collection, when the hook knows it, is not needed: a user
    /// watches a handful of collections and each check is one small PROPFIND.
    pub fn changed(&self, dav_user: &str, _collection: Option<&str>) -> bool {
        let s = &self.shared;
        let watchers = lock(&s.watchers);
        let mut any = false;
        for key in watchers
            .by_dav_user
            .get(&dav_user.to_lowercase())
            .into_iter()
            .flatten()
        {
            if let Some(w) = watchers.by_key.get(key) {
                w.kick.notify_one();
                any = true;
            }
        }
        let counter = if any {
            &s.counters.hook_checks
        } else {
            &s.counters.hook_idle
        };
        counter.fetch_add(1, Ordering::Relaxed);
        any
    }

    /// Users being watched now.
    pub fn watchers(&self) -> usize {
        lock(&self.shared.watchers).by_key.len()
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Prometheus text lines.
    pub fn metrics(&self) -> String {
        let c = &self.shared.counters;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP eas_push_dav_watchers Users whose waiting devices watch DAV collections.\n\
             # TYPE eas_push_dav_watchers gauge\n\
             eas_push_dav_watchers {}\n\
             # HELP eas_push_dav_watchers_started_total DAV watchers started (one per user and waiting period).\n\
             # TYPE eas_push_dav_watchers_started_total counter\n\
             eas_push_dav_watchers_started_total {}\n\
             # HELP eas_push_dav_checks_total Sync-token checks of DAV collections, by outcome.\n\
             # TYPE eas_push_dav_checks_total counter\n\
             eas_push_dav_checks_total{{result=\"ok\"}} {}\n\
             eas_push_dav_checks_total{{result=\"failed\"}} {}\n\
             # HELP eas_push_dav_changes_total DAV collections found changed by a check.\n\
             # TYPE eas_push_dav_changes_total counter\n\
             eas_push_dav_changes_total {}\n\
             # HELP eas_push_dav_hook_total Radicale hook lines, by whether a watcher checked.\n\
             # TYPE eas_push_dav_hook_total counter\n\
             eas_push_dav_hook_total{{result=\"checked\"}} {}\n\
             eas_push_dav_hook_total{{result=\"nobody_waiting\"}} {}\n",
            self.watchers(),
            get(&c.started),
            get(&c.checks),
            get(&c.failed),
            get(&c.changes),
            get(&c.hook_checks),
            get(&c.hook_idle),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One user's watcher: check, publish, wait for a kick or the interval; end when no device of
/// the user waits on a collection.
async fn run(shared: Weak<Shared>, hub: Weak<Hub>, key: String, kick: Arc<Notify>) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut down = false;
    loop {
        let (Some(s), Some(hub)) = (shared.upgrade(), hub.upgrade()) else {
            return;
        };
        let (client, publish_all, urls) = {
            let mut watchers = lock(&s.watchers);
            let urls = hub.collections_of(&key);
            // Decided under the watchers' lock, so a device registering now either finds
            // this watcher (and kicks it) or none (and starts a new one).
            if urls.is_empty() {
                watchers.remove(&key);
                return;
            }
            let Some(w) = watchers.by_key.get_mut(&key) else {
                return;
            };
            (w.client.clone(), std::mem::take(&mut w.publish_all), urls)
        };
        let mut failed = None;
        for url in &urls {
            let now = match check(&client, url).await {
                Ok(now) => now,
                Err(e) => {
                    s.counters.failed.fetch_add(1, Ordering::Relaxed);
                    failed = Some(e);
                    continue;
                }
            };
            s.counters.checks.fetch_add(1, Ordering::Relaxed);
            let before = seen.insert(url.clone(), now.clone());
            let moved = before.as_ref().is_some_and(|b| *b != now);
            if moved {
                s.counters.changes.fetch_add(1, Ordering::Relaxed);
            }
            if publish_all || moved || before.is_none() {
                let signal = match now {
                    Seen::Token(t) => Signal::Collection {
                        url: url.clone(),
                        sync: Some(t),
                        gone: false,
                    },
                    Seen::Listing(_) => Signal::Collection {
                        url: url.clone(),
                        sync: None,
                        gone: false,
                    },
                    Seen::Gone => Signal::Collection {
                        url: url.clone(),
                        sync: None,
                        gone: true,
                    },
                };
                hub.publish(&key, signal);
            }
        }
        seen.retain(|u, _| urls.contains(u));
        match failed {
            // Once per outage: a server away for hours must not write a line per check.
            Some(e) if !down => {
                tracing::info!(user = %key, error = %e, "DAV push check failed; devices keep waiting");
                down = true;
            }
            None if down => {
                tracing::info!(user = %key, "DAV push checks answered again");
                down = false;
            }
            _ => {}
        }
        let interval = s.interval;
        drop((s, hub));
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One collection's state: its sync token or CTag, else its listing's fingerprint.
async fn check(client: &DavClient, url: &str) -> Result<Seen, DavError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| DavError::Config(e.to_string()))?;
    match client.sync_token(&parsed).await {
        Ok(Some(t)) => Ok(Seen::Token(t)),
        Ok(None) => {
            let mut members: Vec<(String, String)> = client
                .list(&parsed)
                .await?
                .into_iter()
                .map(|m| (m.url.path().to_owned(), m.etag.unwrap_or_default()))
                .collect();
            members.sort_unstable();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hash::hash(&members, &mut h);
            Ok(Seen::Listing(std::hash::Hasher::finish(&h)))
        }
        Err(DavError::NotFound) => Ok(Seen::Gone),
        Err(e) => Err(e),
    }
}

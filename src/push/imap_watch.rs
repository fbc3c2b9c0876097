//! The IMAP event source: one connection per user with waiting devices, shared by all of
//! that user's devices and folders.
//!
//! With NOTIFY (RFC 5465) the connection hears about every mailbox of the user without
//! selecting any; without it, it IDLEs on INBOX and checks the other watched mailboxes with
//! STATUS every [`POLL_OTHERS`]. When the server goes away the watcher reconnects with
//! backoff; waiting devices keep waiting and are told [`Signal::BackendDown`] /
//! [`Signal::BackendUp`] so they can give up only if the outage outlasts their heartbeat.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{EventSource, Hub, Signal, UserCredentials};
use crate::imap::{IdleEnd, ImapConfig, ImapError, Notice, Session};

/// How long one IDLE lasts at most (servers may end an IDLE after 30 minutes).
const IDLE_MAX: Duration = Duration::from_secs(20 * 60);
/// Without NOTIFY: how often mailboxes other than INBOX are checked with STATUS.
const POLL_OTHERS: Duration = Duration::from_secs(30);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

struct Watcher {
    credentials: watch::Sender<UserCredentials>,
    /// "A device just started waiting: read every watched mailbox's STATUS now", so the
    /// device learns whether it already has news without logging in itself. Permits
    /// coalesce: many devices arriving at once cost one round of STATUS.
    look: Arc<tokio::sync::Notify>,
    looks: Arc<AtomicU64>,
}

/// One watcher task per user.
pub struct ImapWatchers {
    imap: ImapConfig,
    watchers: Arc<Mutex<HashMap<String, Watcher>>>,
    connections: Arc<AtomicUsize>,
}

impl ImapWatchers {
    pub fn new(imap: ImapConfig) -> ImapWatchers {
        ImapWatchers {
            imap,
            watchers: Arc::new(Mutex::new(HashMap::new())),
            connections: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl EventSource for ImapWatchers {
    fn watch(&self, hub: &Arc<Hub>, user: &UserCredentials) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = watchers.get(&user.key) {
            // Only a changed password is worth a new login; the same one is not news.
            let changed = w.credentials.borrow().password != user.password;
            if changed {
                w.credentials.send_replace(user.clone());
            }
            w.looks.fetch_add(1, Ordering::SeqCst);
            w.look.notify_one();
            return;
        }
        let (tx, rx) = watch::channel(user.clone());
        let look = Arc::new(tokio::sync::Notify::new());
        let looks = Arc::new(AtomicU64::new(0));
        watchers.insert(
            user.key.clone(),
            Watcher {
                credentials: tx,
                look: look.clone(),
                looks: looks.clone(),
            },
        );
        let task = Task {
            look,
            looks,
            hub: Arc::downgrade(hub),
            imap: self.imap.clone(),
            user: user.key.clone(),
            credentials: rx,
            watchers: self.watchers.clone(),
            connections: self.connections.clone(),
        };
        tokio::spawn(task.run());
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

struct Task {
    hub: std::sync::Weak<Hub>,
    imap: ImapConfig,
    user: String,
    credentials: watch::Receiver<UserCredentials>,
    look: Arc<tokio::sync::Notify>,
    /// Look requests made, and (in `watch`) how many were served: a request that raced with
    /// other news is still served after that news.
    looks: Arc<AtomicU64>,
    watchers: Arc<Mutex<HashMap<String, Watcher>>>,
    connections: Arc<AtomicUsize>,
}

/// Counts a live connection for as long as it exists.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(c: &Arc<AtomicUsize>) -> Counted {
        c.fetch_add(1, Ordering::Relaxed);
        Counted(c.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Task {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut down = false;
        loop {
            if self.should_stop() {
                return;
            }
            match self.session().await {
                Ok(mut session) => {
                    let _counted = Counted::new(&self.connections);
                    if down {
                        down = false;
                        self.publish(Signal::BackendUp);
                    }
                    let started = tokio::time::Instant::now();
                    match self.watch(&mut session).await {
                        Ok(()) => {
                            let _ = session.logout().await;
                            if self.should_stop() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::info!(user = %self.user, error = %e, "watcher lost the IMAP server");
                            down = true;
                            self.publish(Signal::BackendDown);
                            // A session that failed soon after login (a refused NOTIFY, say)
                            // must not turn into a reconnect loop against the server.
                            if started.elapsed() < BACKOFF_MAX {
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(BACKOFF_MAX);
                            } else {
                                backoff = BACKOFF_MIN;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(user = %self.user, error = %e, "watcher cannot log in");
                    if !down {
                        down = true;
                        self.publish(Signal::BackendDown);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.upgrade()
    }

    fn publish(&self, signal: Signal) {
        if let Some(h) = self.hub() {
            h.publish(&self.user, signal);
        }
    }

    /// Stops (and leaves the map) when nobody of this user waits any more. Checked under the
    /// map's lock, so a device registering at the same moment either keeps this watcher or
    /// starts a new one, never neither.
    fn should_stop(&self) -> bool {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let watched = self.hub().is_some_and(|h| h.is_watched(&self.user));
        if !watched {
            watchers.remove(&self.user);
        }
        !watched
    }

    async fn session(&mut self) -> Result<Session, ImapError> {
        let creds = self.credentials.borrow_and_update().clone();
        let mut s = Session::connect(&self.imap).await?;
        s.login(&creds.login, creds.password.expose()).await?;
        if s.capabilities().has("CONDSTORE") {
            // So NOTIFY's STATUS carries HIGHESTMODSEQ and flag changes are reported.
            s.enable_qresync().await?;
        }
        Ok(s)
    }

    /// Reads a mailbox's counters on the watcher's own connection and hands them to the hub,
    /// so a waiting device can compare them with what it knows without a connection of its
    /// own. Only mailboxes someone waits for are asked about.
    async fn changed(&self, session: &mut Session, mailbox: String) -> Result<(), ImapError> {
        let wanted = self
            .hub()
            .is_some_and(|h| h.mailboxes_of(&self.user).contains(&mailbox));
        if !wanted {
            return Ok(());
        }
        let mut items = vec!["UIDVALIDITY", "UIDNEXT", "MESSAGES"];
        if session.capabilities().has("CONDSTORE") {
            items.push("HIGHESTMODSEQ");
        }
        let state = match session.status(&mailbox, &items).await {
            Ok(found) => Some(crate::mailstore::FolderState::from_status(&found)),
            // A mailbox deleted meanwhile: the hierarchy news follows; wake without numbers.
            Err(ImapError::No { .. }) => None,
            Err(e) => return Err(e),
        };
        self.publish(Signal::Mailbox(mailbox, state));
        Ok(())
    }

    /// Publishes what unsolicited responses during our own commands said.
    async fn handle_events(
        &self,
        session: &mut Session,
        events: Vec<crate::imap::Event>,
    ) -> Result<(), ImapError> {
        use crate::imap::Event;
        let mut inbox = false;
        for e in events {
            match e {
                Event::MailboxStatus(name) => self.changed(session, name).await?,
                Event::MailboxList(name) => self.publish(Signal::Hierarchy(name)),
                Event::Overflow => {
                    for m in self
                        .hub()
                        .map(|h| h.mailboxes_of(&self.user))
                        .unwrap_or_default()
                    {
                        self.changed(session, m).await?;
                    }
                }
                // EXISTS/EXPUNGE/FETCH: the selected mailbox, INBOX when there is no NOTIFY.
                _ => inbox = true,
            }
        }
        if inbox {
            self.changed(session, "INBOX".into()).await?;
        }
        Ok(())
    }

    /// Watches until nobody waits for the grace period (Ok) or the connection fails (Err).
    async fn watch(&mut self, session: &mut Session) -> Result<(), ImapError> {
        let notify = session.has_notify();
        if notify {
            session.notify_personal().await?;
        } else {
            session.examine("INBOX").await?;
        }
        // The look below serves every request made before it starts.
        let mut served = self.looks.load(Ordering::SeqCst);
        // Whatever happened before the watch was set up (between a Ping's own look and now,
        // or while we were disconnected) is caught by one look at every watched mailbox.
        for m in self
            .hub()
            .map(|h| h.mailboxes_of(&self.user))
            .unwrap_or_default()
        {
            self.changed(session, m).await?;
        }
        let grace = self.hub().map_or(Duration::ZERO, |h| h.grace());
        let mut unwatched_since: Option<tokio::time::Instant> = None;
        let mut last_poll = tokio::time::Instant::now();
        loop {
            let max = if notify { IDLE_MAX } else { POLL_OTHERS };
            // Wake up now and then to notice that nobody waits any more.
            let max = max.min(grace.max(Duration::from_secs(1)));
            let mut creds = self.credentials.clone();
            let look = self.look.clone();
            let end = session
                .idle(max, async move {
                    tokio::select! {
                        _ = creds.changed() => {}
                        _ = look.notified() => {}
                    }
                })
                .await?;
            match end {
                IdleEnd::Notices(notices) => {
                    for n in notices {
                        match n {
                            Notice::Mailbox { name } => self.changed(session, name).await?,
                            Notice::Hierarchy { name } => self.publish(Signal::Hierarchy(name)),
                            Notice::Selected => self.changed(session, "INBOX".into()).await?,
                        }
                    }
                }
                IdleEnd::Stopped => {
                    if self.credentials.has_changed().unwrap_or(false) {
                        // New credentials: log in again with them.
                        return Ok(());
                    }
                }
                IdleEnd::Quiet => {}
            }
            let requested = self.looks.load(Ordering::SeqCst);
            if requested != served {
                served = requested;
                // A device started waiting: tell it how its mailboxes stand.
                for m in self
                    .hub()
                    .map(|h| h.mailboxes_of(&self.user))
                    .unwrap_or_default()
                {
                    self.changed(session, m).await?;
                }
            }
            if !notify && last_poll.elapsed() >= POLL_OTHERS {
                last_poll = tokio::time::Instant::now();
                // Without NOTIFY other mailboxes are only seen by asking; the waiting devices
                // compare with their own state, so an unchanged mailbox wakes nobody for long.
                for m in self
                    .hub()
                    .map(|h| h.mailboxes_of(&self.user))
                    .unwrap_or_default()
                {
                    if !m.eq_ignore_ascii_case("INBOX") {
                        self.changed(session, m).await?;
                    }
                }
            }
            // News that arrived during our own commands (STATUS) was kept as events; looking
            // at it can bring more, so drain until quiet.
            loop {
                let events = session.take_events();
                if events.is_empty() {
                    break;
                }
                self.handle_events(session, events).await?;
            }
            let watched = self.hub().is_some_and(|h| h.is_watched(&self.user));
            if watched {
                unwatched_since = None;
            } else {
                let since = *unwatched_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= grace {
                    return Ok(());
                }
            }
        }
    }
}

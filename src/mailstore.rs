//! The mail backend as the EAS commands need it: folder state, message listings, fetches,
//! flag changes, deletes and moves, over one IMAP session logged in as the user.
//!
//! This is the narrow interface between the commands and IMAP: commands speak of mailboxes,
//! UIDs and flag changes; this module decides which IMAP commands (STATUS vs SELECT,
//! CONDSTORE, MOVE vs COPY + EXPUNGE, UIDPLUS) do that cheapest on the server at hand. It
//! knows nothing of EAS ids, snapshots or WBXML.

use std::collections::HashMap;

use crate::imap::{FetchQuery, Section, Session, StoreMode};
// The IMAP vocabulary the commands put into their requests (what to search for, which UIDs,
// which flags, what a mailbox is) and the error they classify. Commands name them through
// this module, never through `imap`, so the backend stays the one place that talks IMAP.
pub use crate::imap::{Flag, ImapDate, ImapError, Mailbox, SearchKey, SequenceSet, SpecialUse};

/// The flag state of one message as the device last saw it, folded to 32 bits: the low bits
/// are `\Seen` and `\Flagged`, the rest a hash of the keywords shown as Categories. Only a
/// difference matters, never the value, so a hash is enough.
pub type FlagState = u32;

/// The bits of `\Seen` and `\Flagged` in a [`FlagState`].
pub const SEEN: u32 = 1;
pub const FLAGGED: u32 = 2;

/// Folds IMAP flags into a [`FlagState`]. Which keywords count as categories is decided by
/// [`crate::mime::FlagState`], the same code that writes them, so a keyword the phone never
/// sees never causes a Change.
pub fn flag_state<S: AsRef<str>>(flags: &[S]) -> FlagState {
    let seen = crate::mime::FlagState::from_imap(flags);
    let mut bits = 0;
    if seen.read {
        bits |= SEEN;
    }
    if seen.flagged {
        bits |= FLAGGED;
    }
    let mut keywords: Vec<&str> = seen.categories.iter().map(String::as_str).collect();
    keywords.sort_unstable();
    // FNV-1a over the sorted keywords.
    let mut h: u32 = 0x811c_9dc5;
    for k in keywords {
        for b in k.bytes().chain([0]) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    (h & !3) | bits
}

/// A message as IMAP has it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub uid: u32,
    pub state: FlagState,
    /// Inside the FilterType window.
    pub in_window: bool,
}

/// What STATUS says about a mailbox; enough to tell "nothing changed" without touching a
/// single message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FolderState {
    pub uidvalidity: u32,
    /// 0 when the server keeps no mod-sequences (no CONDSTORE).
    pub highest_modseq: u64,
    pub uid_next: u32,
    pub exists: u32,
}

impl FolderState {
    /// From the items of a STATUS response.
    pub fn from_status(items: &[(String, u64)]) -> FolderState {
        let mut state = FolderState::default();
        for (name, value) in items {
            match name.as_str() {
                "UIDVALIDITY" => state.uidvalidity = *value as u32,
                "UIDNEXT" => state.uid_next = *value as u32,
                "MESSAGES" => state.exists = *value as u32,
                "HIGHESTMODSEQ" => state.highest_modseq = *value,
                _ => {}
            }
        }
        state
    }
}

/// Every message of a mailbox with its flag state, sorted by UID.
pub struct Listing {
    pub state: FolderState,
    pub messages: Vec<Current>,
}

/// A mailbox's changes since a mod-sequence; see [`Mailstore::changes`].
pub struct Changes {
    pub state: FolderState,
    /// New or changed messages, with their flag state.
    pub changed: Vec<(u32, FlagState)>,
    /// Every UID in the mailbox.
    pub all: SequenceSet,
    /// UIDs inside the FilterType window (None: no window).
    pub window: Option<SequenceSet>,
}

/// One message, whole.
#[derive(Debug, Clone)]
pub struct Message {
    pub uid: u32,
    pub flags: Vec<String>,
    /// INTERNALDATE, unix seconds.
    pub internal_date: i64,
    pub size: u64,
    pub raw: Vec<u8>,
}

/// A flag change a phone asked for; None leaves that part alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagChange {
    pub seen: Option<bool>,
    pub flagged: Option<bool>,
    /// The complete new set of categories (user keywords).
    pub categories: Option<Vec<String>>,
}

/// The outcome of a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    NotFound,
    /// Moved; the new UID when the server reported it (UIDPLUS), and the flags it carries.
    To {
        uid: Option<u32>,
        flags: Vec<String>,
    },
}

/// How long a kept view is trusted to show the mailbox of its name after the probe (or a
/// SELECT) last confirmed it: the window in which a folder deleted and recreated by another
/// client while a phone pages through it goes unnoticed. Views are kept only while paging.
const VIEW_TRUST: std::time::Duration = std::time::Duration::from_secs(10);

/// How many messages one FETCH asks for at most: bounds the memory a listing or a batch of
/// whole messages can take.
const FETCH_BATCH: usize = 200;

/// Logged-in sessions kept between requests, per user: a new IMAP login costs Dovecot a
/// process start and a mailbox open (4–100 ms, growing with the mailbox), a kept session
/// answers STATUS in a tenth of a millisecond. Sessions idle longer than `max_idle` are
/// dropped; at most `per_user` are kept for one user.
///
/// A kept session may keep a mailbox selected (see [`Mailstore::close`]); one that has
/// nothing selected and never closed a mailbox serves as the *probe* that reads STATUS of a
/// mailbox another session has selected (see [`Mailstore::folder_state`]).
///
/// Sessions are kept per exact log-in name *and* password ([`SessionPool::key`]): an IMAP
/// server may tell `Alice` from `alice`, and a session logged in with a password that has
/// since changed must not serve a request that brings the new one (nor one still bringing
/// the old one, once IMAP would refuse it: that request logs in anew and learns so).
pub struct SessionPool {
    idle: std::sync::Mutex<HashMap<String, Vec<Pooled>>>,
    max_idle: std::time::Duration,
    per_user: usize,
    /// Salts the password part of the keys, which live in memory only.
    salt: [u8; 16],
}

struct Pooled {
    session: Session,
    /// The mailbox the session has selected, and the UIDVALIDITY its view was opened with.
    selected: Option<(String, u32)>,
    /// When that view was last confirmed to show the mailbox of its name.
    checked: Option<std::time::Instant>,
    condstore: bool,
    since: std::time::Instant,
    /// The session has closed a mailbox it had selected (UNSELECT, or SELECT of another).
    /// Dovecot then answers STATUS of that mailbox on the same session slowly, growing with
    /// the mailbox: 5.3 ms at 10,000 messages against 0.26 ms while it stays selected and
    /// 0.57 ms on a new session. So such a session is replaced by a fresh login in the
    /// background and only used until the replacement arrives.
    worn: bool,
}

/// What a request takes from the pool.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The session commands run on: best one that kept a mailbox selected, then a fresh one.
    Reader,
    /// Only a session with nothing selected that never closed a mailbox.
    Probe,
}

impl SessionPool {
    pub fn new(max_idle: std::time::Duration, per_user: usize) -> SessionPool {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut salt);
        SessionPool {
            idle: std::sync::Mutex::new(HashMap::new()),
            max_idle,
            per_user,
            salt,
        }
    }

    /// The key sessions logged in with these credentials are kept under.
    fn key(&self, login: &str, password: &str) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(self.salt)
            .chain_update(password.as_bytes())
            .finalize();
        let mut key = String::with_capacity(login.len() + 33);
        key.push_str(login);
        key.push('\0');
        for b in &digest[..16] {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }

    fn take(&self, user: &str, role: Role) -> Option<Pooled> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(user)?;
        list.retain(|p| p.since.elapsed() < self.max_idle);
        let fresh = |p: &Pooled| !p.worn && p.selected.is_none();
        let i = match role {
            Role::Reader => list
                .iter()
                .rposition(|p| !p.worn && p.selected.is_some())
                .or_else(|| list.iter().rposition(fresh))
                .or_else(|| list.len().checked_sub(1)),
            Role::Probe => list.iter().rposition(fresh),
        };
        let p = i.map(|i| list.remove(i));
        if list.is_empty() {
            idle.remove(user);
        }
        p
    }

    /// Puts a fresh session in place of a worn one of the same user.
    fn put_replacement(&self, user: &str, p: Pooled) {
        let worn = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.entry(user.to_owned()).or_default();
            let worn = list.iter().position(|p| p.worn).map(|i| list.remove(i));
            if list.len() < self.per_user {
                list.push(p);
            }
            worn
        };
        // Dropped outside the lock.
        drop(worn);
    }

    fn put(&self, user: &str, p: Pooled) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Forget what has gone stale everywhere, so users who never come back cost nothing.
        let max_idle = self.max_idle;
        idle.retain(|_, list| {
            list.retain(|p| p.since.elapsed() < max_idle);
            !list.is_empty()
        });
        let list = idle.entry(user.to_owned()).or_default();
        if list.len() < self.per_user {
            list.push(p);
        }
    }

    /// Closes the sessions idle longer than `max_idle` now, instead of at the next `put`, so
    /// a quiet gateway holds no IMAP connection (the Dovecot event source calls it).
    pub fn reap(&self) {
        let max_idle = self.max_idle;
        let stale: Vec<Pooled> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut stale = Vec::new();
            for list in idle.values_mut() {
                let (keep, old): (Vec<Pooled>, Vec<Pooled>) = std::mem::take(list)
                    .into_iter()
                    .partition(|p| p.since.elapsed() < max_idle);
                *list = keep;
                stale.extend(old);
            }
            idle.retain(|_, list| !list.is_empty());
            stale
        };
        // Dropped outside the lock: closing a socket is cheap, but not free.
        drop(stale);
    }

    /// Sessions kept, for tests and metrics.
    pub fn len(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limit broken, when `e` says the server sent a response longer than the session
/// accepts ([`FetchLimits::max_response`]). The session is then unusable; the caller drops it
/// and may go on with a fresh one.
pub fn response_too_large(e: &ImapError) -> Option<usize> {
    match e {
        ImapError::TooLarge { limit } => Some(*limit),
        _ => None,
    }
}

/// What one request may fetch, from the configuration: see [`Mailstore::limit_fetches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// The longest IMAP response accepted ([`crate::config::Config::imap_response_limit`]).
    pub max_response: usize,
    /// Messages rendered are fetched up to this many bytes (`limits.max_message_bytes`).
    pub max_message: u32,
    /// See [`Mailstore::attachment_limit`].
    pub attachment_limit: Option<u64>,
}

impl FetchLimits {
    pub fn of(config: &crate::config::Config) -> FetchLimits {
        let policy = &config.provision.policy;
        FetchLimits {
            max_response: config.imap_response_limit(),
            // Validated to at most 1 GiB.
            max_message: u32::try_from(config.limits.max_message_bytes).unwrap_or(u32::MAX),
            attachment_limit: if policy.allow_attachments {
                policy.max_attachment_bytes.map(u64::from)
            } else {
                Some(0)
            },
        }
    }
}

pub struct Mailstore {
    session: Session,
    /// Where the sessions go back to, and for whom.
    pool: Option<(std::sync::Arc<SessionPool>, String)>,
    /// The mailbox currently selected (read-write) and the UIDVALIDITY its view was opened
    /// with.
    selected: Option<(String, u32)>,
    condstore: bool,
    /// A mailbox has been closed on this session (see [`Pooled::worn`]).
    worn: bool,
    /// The selected mailbox's state as this request last read it, with the session's view
    /// synced after it; dropped by any command of ours that changes a mailbox. Saves the
    /// round trips a second look within the same request would cost.
    view: Option<FolderState>,
    /// A STATUS was read on the probe after the view was last synced (see
    /// [`Mailstore::sync_view`]).
    unsynced: bool,
    /// The selected mailbox was selected, or its kept view checked against the probe, in
    /// this request.
    validated: bool,
    /// When the kept view was last confirmed to show the mailbox of its name (SELECT, or the
    /// probe's UIDVALIDITY).
    checked: Option<std::time::Instant>,
    /// The last thing sent on the session was a NOOP and nothing of ours changed a mailbox
    /// since: the view is as synced as it gets.
    fresh_noop: bool,
    /// The caller's next request reads the selected mailbox again: keep it selected in the
    /// pool (see [`Mailstore::close`]).
    keep_view: bool,
    /// A second session for STATUS of the mailbox `session` has selected, taken when first
    /// needed; with its CONDSTORE.
    probe: Option<(Session, bool)>,
    /// Messages rendered from [`Mailstore::fetch_with`] are fetched up to this many bytes
    /// (`limits.max_message_bytes`); None fetches them whole.
    max_message: Option<u32>,
    /// See [`Mailstore::attachment_limit`].
    attachment_limit: Option<u64>,
    /// What a replacement login needs: server, login and password.
    relogin: (
        crate::imap::ImapConfig,
        String,
        crate::secret::Secret<String>,
    ),
}

impl Mailstore {
    /// A session for a user (`key` is the user's state key, `login` what IMAP LOGIN takes),
    /// bounded as the configuration says.
    pub async fn open(
        pool: &std::sync::Arc<SessionPool>,
        config: &crate::config::Config,
        key: &str,
        login: &str,
        password: &str,
    ) -> Result<Mailstore, ImapError> {
        let mut store =
            Mailstore::open_pooled(pool, &config.imap_config(), key, login, password).await?;
        store.limit_fetches(FetchLimits::of(config));
        Ok(store)
    }

    /// Applies the bounds on what this store fetches ([`Mailstore::open`] does; a store from
    /// [`Mailstore::open_pooled`] that renders items for a device must too).
    pub fn limit_fetches(&mut self, limits: FetchLimits) {
        // No command fetches more than the largest message in one response, so a longer one
        // is refused from its announcement instead of being buffered.
        self.session.set_max_response_bytes(limits.max_response);
        self.max_message = Some(limits.max_message);
        self.attachment_limit = limits.attachment_limit;
    }

    /// The largest attachment the device may be handed (the provisioning policy's; 0 when
    /// attachments are not allowed; None without a limit): for renderers of MIME bodies,
    /// which carry attachments inside.
    pub fn attachment_limit(&self) -> Option<u64> {
        self.attachment_limit
    }

    /// A session for a user outside a command (a push source looking at STATUS): a kept one
    /// from `pool`, else a new login. [`Mailstore::close`] gives it back to the pool.
    /// `_user_key` (the lower-cased login that names the user's state) does not choose the
    /// session: the exact credentials do (see [`SessionPool`]).
    pub async fn open_pooled(
        pool: &std::sync::Arc<SessionPool>,
        imap: &crate::imap::ImapConfig,
        _user_key: &str,
        login: &str,
        password: &str,
    ) -> Result<Mailstore, ImapError> {
        let user = pool.key(login, password);
        let relogin = (
            imap.clone(),
            login.to_owned(),
            crate::secret::Secret::new(password.to_owned()),
        );
        while let Some(mut p) = pool.take(&user, Role::Reader) {
            // A kept session may have been closed by the server meanwhile (autologout, a
            // restart, `doveadm kick`): one NOOP tells, and costs a round trip on loopback.
            if p.session.noop().await.is_ok() {
                return Ok(Mailstore {
                    session: p.session,
                    pool: Some((pool.clone(), user)),
                    selected: p.selected,
                    condstore: p.condstore,
                    worn: p.worn,
                    view: None,
                    unsynced: false,
                    keep_view: false,
                    validated: false,
                    checked: p.checked,
                    fresh_noop: true,
                    probe: None,
                    max_message: None,
                    attachment_limit: None,
                    relogin,
                });
            }
        }
        let (session, condstore) = Mailstore::login(imap, login, password).await?;
        Ok(Mailstore {
            session,
            pool: Some((pool.clone(), user)),
            selected: None,
            condstore,
            worn: false,
            view: None,
            unsynced: false,
            keep_view: false,
            validated: false,
            checked: None,
            fresh_noop: false,
            probe: None,
            max_message: None,
            attachment_limit: None,
            relogin,
        })
    }

    /// A new logged-in session, and whether it has CONDSTORE.
    async fn login(
        imap: &crate::imap::ImapConfig,
        login: &str,
        password: &str,
    ) -> Result<(Session, bool), ImapError> {
        let mut session = Session::connect(imap).await?;
        session.login(login, password).await?;
        let condstore = session.capabilities().has("CONDSTORE");
        if condstore {
            // ENABLE is only valid before a mailbox is selected; with QRESYNC on, CHANGEDSINCE
            // fetches also report expunges.
            session.enable_qresync().await?;
        }
        Ok((session, condstore))
    }

    /// Gives the sessions back to the pool for the user's next request.
    pub async fn close(mut self) {
        // A mailbox stays selected only when the caller said its next request reads it
        // ([`Mailstore::keep_view`]: a phone paging through a folder). Dovecot serves a kept
        // view far cheaper than a new one: at 10,000 messages, fetching 100 messages took
        // 5.4 ms on a session that kept INBOX selected, 16–21 ms right after a new SELECT
        // or on a new session (docs/benchmarks.md, "Initial sync"). But while a view is
        // kept open, STATUS of that mailbox from any other session of the user took ~4 ms
        // instead of 0.1 ms after a full sync, so a folder that is not being paged through
        // is closed again: a Sync with nothing new then costs one fast STATUS.
        if !self.keep_view && self.selected.is_some() {
            if self.session.unselect().await.is_err() {
                let _ = self.session.logout().await;
                if let Some((probe, _)) = self.probe.take() {
                    let _ = probe.logout().await;
                }
                return;
            }
            self.selected = None;
            self.worn = true;
        }
        let Some((pool, user)) = self.pool.take() else {
            let _ = self.session.logout().await;
            if let Some((probe, _)) = self.probe.take() {
                let _ = probe.logout().await;
            }
            return;
        };
        // A probe that read STATUS while the reader held the mailbox open answers STATUS
        // slowly afterwards too (3 ms instead of 0.1 ms at 10,000 messages, measured on the
        // no-change Sync after a full sync): once the paging is over, it is replaced like a
        // worn session.
        let mut replacements = 0;
        if let Some((session, condstore)) = self.probe.take() {
            let worn = !self.keep_view;
            replacements += usize::from(worn);
            pool.put(
                &user,
                Pooled {
                    session,
                    selected: None,
                    checked: None,
                    condstore,
                    since: std::time::Instant::now(),
                    worn,
                },
            );
        }
        replacements += usize::from(self.worn);
        pool.put(
            &user,
            Pooled {
                session: self.session,
                checked: self.selected.as_ref().and(self.checked),
                selected: self.selected,
                condstore: self.condstore,
                since: std::time::Instant::now(),
                worn: self.worn,
            },
        );
        if replacements > 0 {
            // Worn sessions stay until fresh ones replace them, so the next request never
            // waits for a login.
            let (imap, login, password) = self.relogin;
            tokio::spawn(async move {
                for _ in 0..replacements {
                    let Ok((session, condstore)) =
                        Mailstore::login(&imap, &login, password.expose()).await
                    else {
                        return;
                    };
                    let fresh = Pooled {
                        session,
                        selected: None,
                        checked: None,
                        condstore,
                        since: std::time::Instant::now(),
                        worn: false,
                    };
                    pool.put_replacement(&user, fresh);
                }
            });
        }
    }

    /// Keep the selected mailbox selected when the session goes back to the pool: the next
    /// request reads it again (the next page of a Sync with MoreAvailable).
    pub fn keep_view(&mut self, keep: bool) {
        self.keep_view = keep;
    }

    fn is_selected(&self, mailbox: &str) -> bool {
        self.selected.as_ref().is_some_and(|(m, _)| m == mailbox)
    }

    /// STATUS of a mailbox: one round trip, no message touched.
    ///
    /// STATUS of the selected mailbox would answer from the session's view, and a kept view
    /// can outlive its mailbox: Dovecot keeps showing the old mailbox to a session that has
    /// it selected after another client deleted it and created one of the same name, even
    /// after NOOP. So the state comes from a probe session that opens the mailbox afresh,
    /// and a UIDVALIDITY other than the view's means the view is dropped and the mailbox
    /// selected again. The view is synced (NOOP) after the STATUS, before it is next read
    /// ([`Mailstore::sync_view`]), so what this request lists is never older than the state
    /// it records.
    pub async fn folder_state(&mut self, mailbox: &str) -> Result<FolderState, ImapError> {
        if !self.is_selected(mailbox) {
            return status(&mut self.session, mailbox, self.condstore).await;
        }
        if let Some(state) = self.view {
            return Ok(state);
        }
        if self.checked.is_some_and(|t| t.elapsed() < VIEW_TRUST) {
            // Checked against the probe a moment ago (a phone paging): the view's own STATUS,
            // synced first. At 100,000 messages the probe's STATUS took 50-75 ms while the
            // view was open, the view's 0.1 ms.
            let noop = !self.fresh_noop;
            return self.view_status(mailbox, noop).await;
        }
        let probed = self.probe_status(mailbox).await;
        let view_uidvalidity = self.selected.as_ref().map_or(0, |(_, v)| *v);
        match probed {
            Ok(state) if state.uidvalidity == view_uidvalidity => {
                // Synced before anything is read from it, not now: a Sync that finds nothing
                // new reads nothing.
                self.unsynced = true;
                self.validated = true;
                self.checked = Some(std::time::Instant::now());
                self.view = Some(state);
                Ok(state)
            }
            other => {
                // Gone, or another mailbox under the same name: the view shows a mailbox
                // that is no more. The next read selects afresh.
                self.selected = None;
                self.worn = true;
                other
            }
        }
    }

    /// STATUS on the probe session: the pool's, or a new login; a probe that fails for any
    /// reason but the mailbox's (NO) is replaced once.
    async fn probe_status(&mut self, mailbox: &str) -> Result<FolderState, ImapError> {
        let mut retried = false;
        loop {
            let (mut probe, condstore) = match self.probe.take() {
                Some(p) => p,
                None => match self
                    .pool
                    .as_ref()
                    .and_then(|(pool, user)| pool.take(user, Role::Probe))
                {
                    Some(p) => (p.session, p.condstore),
                    None => {
                        let (imap, login, password) = &self.relogin;
                        Mailstore::login(imap, login, password.expose()).await?
                    }
                },
            };
            match status(&mut probe, mailbox, condstore).await {
                Err(e) if !retried && !matches!(e, ImapError::No { .. }) => {
                    retried = true;
                    tracing::debug!(error = %e, "probe session failed; logging in again");
                }
                result => {
                    self.probe = Some((probe, condstore));
                    return result;
                }
            }
        }
    }

    /// The state of a mailbox, selected afterwards, with the session's view of it up to
    /// date (see [`Mailstore::folder_state`]).
    async fn refresh(&mut self, mailbox: &str) -> Result<FolderState, ImapError> {
        if self.is_selected(mailbox) && self.view.is_none() && self.validated {
            // Our own commands changed the mailbox in this request, on this view, which was
            // selected or checked against the probe earlier in the request: synced, the view
            // itself answers, with no second session involved.
            return self.view_status(mailbox, true).await;
        }
        if self.is_selected(mailbox) {
            let state = self.folder_state(mailbox).await?;
            if self.is_selected(mailbox) {
                self.sync_view().await?;
                return Ok(state);
            }
        }
        self.select(mailbox).await
    }

    /// Brings the kept view up to date (NOOP) when a STATUS on the probe was read after it
    /// was last synced, so what is listed next is never older than the state recorded.
    async fn sync_view(&mut self) -> Result<(), ImapError> {
        if self.unsynced {
            if let Err(e) = self.session.noop().await {
                self.selected = None;
                return Err(e);
            }
            self.unsynced = false;
        }
        Ok(())
    }

    /// STATUS of the selected mailbox from the view itself, synced by a NOOP first when
    /// `noop`; remembered as this request's state of it. A failure leaves nothing selected.
    async fn view_status(&mut self, mailbox: &str, noop: bool) -> Result<FolderState, ImapError> {
        let synced = async {
            if noop {
                self.session.noop().await?;
            }
            status(&mut self.session, mailbox, self.condstore).await
        }
        .await;
        match synced {
            Ok(state) => {
                self.fresh_noop = true;
                self.unsynced = false;
                self.validated = true;
                self.view = Some(state);
                Ok(state)
            }
            Err(e) => {
                self.selected = None;
                Err(e)
            }
        }
    }

    /// Our own command changed a mailbox: what this request read before is out of date.
    fn dirty(&mut self) {
        self.view = None;
        self.fresh_noop = false;
    }

    async fn select(&mut self, mailbox: &str) -> Result<FolderState, ImapError> {
        // Selecting closes the mailbox selected before; a session that closed one answers
        // STATUS of it slowly afterwards (see [`Pooled::worn`]).
        if self.selected.take().is_some() {
            self.worn = true;
        }
        self.view = None;
        self.unsynced = false;
        // A failed SELECT leaves nothing selected (RFC 3501).
        let s = self.session.select(mailbox).await?;
        self.selected = Some((mailbox.to_owned(), s.uid_validity));
        self.validated = true;
        self.checked = Some(std::time::Instant::now());
        let state = FolderState {
            uidvalidity: s.uid_validity,
            highest_modseq: s.highest_modseq.unwrap_or(0),
            uid_next: s.uid_next.unwrap_or(0),
            exists: s.exists,
        };
        self.view = Some(state);
        Ok(state)
    }

    async fn ensure_selected(&mut self, mailbox: &str) -> Result<(), ImapError> {
        if self.is_selected(mailbox) {
            self.sync_view().await
        } else {
            self.select(mailbox).await.map(|_| ())
        }
    }

    /// Every message's UID and flag state, and which are inside the FilterType window
    /// (INTERNALDATE on or after `since`; 0 for all).
    pub async fn message_states(
        &mut self,
        mailbox: &str,
        since: u64,
    ) -> Result<Listing, ImapError> {
        let state = self.refresh(mailbox).await?;
        if state.exists == 0 {
            return Ok(Listing {
                state,
                messages: Vec::new(),
            });
        }
        let flags = self.session.uid_fetch_flags(&SequenceSet::all()).await?;
        let in_window = if since == 0 {
            None
        } else {
            let day = ImapDate::from_unix(since as i64);
            Some(self.session.uid_search(&SearchKey::Since(day)).await?.uids)
        };
        let mut messages: Vec<Current> = flags
            .into_iter()
            .map(|m| Current {
                uid: m.uid,
                state: flag_state(&strings(&m.flags)),
                in_window: in_window.as_ref().is_none_or(|w| w.contains(m.uid)),
            })
            .collect();
        messages.sort_unstable_by_key(|m| m.uid);
        messages.dedup_by_key(|m| m.uid);
        Ok(Listing { state, messages })
    }

    /// What changed in a mailbox since a mod-sequence (CONDSTORE), without listing every
    /// message: the messages whose flags changed or that are new (with their flag state),
    /// every UID that exists, and those inside the FilterType window. None when the server
    /// keeps no mod-sequences.
    ///
    /// `known_all`, the UIDs the mailbox had at `modseq`, saves asking for every UID: with
    /// QRESYNC the same FETCH reports what was expunged since (VANISHED), so the UIDs of now
    /// are those minus the expunged plus the new. `UID SEARCH ALL` cost Dovecot 3 ms at
    /// 10,000 messages, a third of fetching a page of 100. The result is checked against
    /// the message count of the state; any disagreement (a delivery racing with the
    /// listing, say) falls back to the search.
    pub async fn changes(
        &mut self,
        mailbox: &str,
        modseq: u64,
        since: u64,
        known_all: Option<&SequenceSet>,
    ) -> Result<Option<Changes>, ImapError> {
        if !self.condstore || modseq == 0 {
            return Ok(None);
        }
        let state = self.refresh(mailbox).await?;
        if state.highest_modseq == 0 {
            return Ok(None);
        }
        if state.exists == 0 {
            return Ok(Some(Changes {
                state,
                changed: Vec::new(),
                all: SequenceSet::new(),
                window: None,
            }));
        }
        // The mod-sequence has not moved since `modseq`: no flag changed, nothing arrived and
        // nothing was expunged (each moves it), so the UIDs are the ones known then. This is
        // every page of an initial sync; asking for CHANGEDSINCE anyway cost Dovecot a walk
        // over the whole folder's index per page.
        if let Some(known) = known_all
            .filter(|k| state.highest_modseq == modseq && k.len() == u64::from(state.exists))
        {
            return Ok(Some(Changes {
                state,
                changed: Vec::new(),
                all: known.clone(),
                window: self.window_uids(since).await?,
            }));
        }
        let fetched = self
            .session
            .uid_fetch_changes(&SequenceSet::all(), modseq)
            .await?;
        let derived = known_all
            .filter(|_| self.session.is_enabled("QRESYNC"))
            .map(|known| {
                let new: SequenceSet = fetched.changed.iter().map(|m| m.uid).collect();
                known.union(&new).difference(&fetched.vanished)
            })
            .filter(|all| all.len() == u64::from(state.exists));
        let changed = fetched
            .changed
            .into_iter()
            .map(|m| (m.uid, flag_state(&strings(&m.flags))))
            .collect();
        let all = match derived {
            Some(all) => all,
            None => self.session.uid_search(&SearchKey::All).await?.uids,
        };
        Ok(Some(Changes {
            state,
            changed,
            all,
            window: self.window_uids(since).await?,
        }))
    }

    /// UIDs inside the FilterType window starting at `since` (None for no window) of the
    /// selected mailbox.
    async fn window_uids(&mut self, since: u64) -> Result<Option<SequenceSet>, ImapError> {
        if since == 0 {
            return Ok(None);
        }
        let day = ImapDate::from_unix(since as i64);
        Ok(Some(
            self.session.uid_search(&SearchKey::Since(day)).await?.uids,
        ))
    }

    /// UIDs matching a search, and their INTERNALDATEs (unix seconds), for Search: the dates
    /// decide the newest-first order across folders. Only UIDs and dates are held, never
    /// message data, whatever the number of hits.
    pub async fn search_dates(
        &mut self,
        mailbox: &str,
        key: &SearchKey,
    ) -> Result<Vec<(u32, i64)>, ImapError> {
        let state = self.select(mailbox).await?;
        if state.exists == 0 {
            return Ok(Vec::new());
        }
        let hits = self.session.uid_search(key).await?.uids;
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let query = FetchQuery::new().internal_date();
        for chunk in hits.chunks(5000) {
            for f in self.session.uid_fetch(&chunk, &query).await? {
                out.push((f.uid, f.internal_date.unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// Matches of a search newest first (SORT by arrival, RFC 5256): how many there are, and
    /// the first `keep` of them with their INTERNALDATE — dates are fetched for those only.
    /// None when the server has no SORT.
    pub async fn search_newest(
        &mut self,
        mailbox: &str,
        key: &SearchKey,
        keep: usize,
    ) -> Result<Option<(usize, Vec<(u32, i64)>)>, ImapError> {
        let state = self.select(mailbox).await?;
        if state.exists == 0 {
            return Ok(Some((0, Vec::new())));
        }
        let Some(sorted) = self.session.uid_sort_newest_first(key).await? else {
            return Ok(None);
        };
        let top: Vec<u32> = sorted.iter().take(keep).copied().collect();
        let mut dates: HashMap<u32, i64> = HashMap::with_capacity(top.len());
        if !top.is_empty() {
            let set: SequenceSet = top.iter().copied().collect();
            let query = FetchQuery::new().internal_date();
            for f in self.session.uid_fetch(&set, &query).await? {
                dates.insert(f.uid, f.internal_date.unwrap_or(0));
            }
        }
        let newest = top
            .into_iter()
            .filter_map(|uid| dates.get(&uid).map(|&d| (uid, d)))
            .collect();
        Ok(Some((sorted.len(), newest)))
    }

    /// UIDs matching a search, lowest first.
    pub async fn search_uids(
        &mut self,
        mailbox: &str,
        key: &SearchKey,
    ) -> Result<Vec<u32>, ImapError> {
        let state = self.select(mailbox).await?;
        if state.exists == 0 {
            return Ok(Vec::new());
        }
        let mut uids: Vec<u32> = self.session.uid_search(key).await?.uids.iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Only the named header fields of some messages (one batch per call: the caller bounds
    /// the slice).
    pub async fn header_fields(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        fields: &[&str],
    ) -> Result<Vec<(u32, Vec<u8>)>, ImapError> {
        self.ensure_selected(mailbox).await?;
        let section = Section::HeaderFields(fields.iter().map(|f| f.to_string()).collect());
        let query = FetchQuery::new().section(section.clone());
        let set: SequenceSet = uids.iter().collect();
        let mut out = Vec::with_capacity(uids.len());
        for mut f in self.session.uid_fetch(&set, &query).await? {
            if let Some(h) = f.take_section(&section) {
                out.push((f.uid, h));
            }
        }
        Ok(out)
    }

    /// Whole messages, in batches; UIDs that no longer exist are left out. A message longer
    /// than the session accepts fails with [`ImapError::TooLarge`] (see
    /// [`Mailstore::message_size`] to ask first).
    pub async fn fetch(&mut self, mailbox: &str, uids: &[u32]) -> Result<Vec<Message>, ImapError> {
        let mut out = Vec::with_capacity(uids.len());
        self.fetch_messages(mailbox, uids, None, |m| out.push(m))
            .await?;
        Ok(out)
    }

    /// RFC822.SIZE of one message, or None when it does not exist.
    pub async fn message_size(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<u64>, ImapError> {
        self.ensure_selected(mailbox).await?;
        let mut size = None;
        self.session
            .uid_fetch_with(&SequenceSet::single(uid), &FetchQuery::new().size(), |f| {
                if f.uid == uid {
                    size = f.size;
                }
            })
            .await?;
        Ok(size)
    }

    /// Whole messages handed to `each` one by one as they are read, in the server's order:
    /// the caller's work on one message overlaps Dovecot reading and sending the next, and
    /// only one raw message is held at a time.
    ///
    /// For rendering: a message longer than `limits.max_message_bytes` comes cut to that
    /// length (its `size` says how long it is), so a Sync page shows it from what was read
    /// rather than failing on it again and again.
    pub async fn fetch_with(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        each: impl FnMut(Message) + Send,
    ) -> Result<(), ImapError> {
        self.fetch_messages(mailbox, uids, self.max_message, each)
            .await
    }

    /// Messages whole, or their first `cut` bytes.
    async fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        cut: Option<u32>,
        mut each: impl FnMut(Message) + Send,
    ) -> Result<(), ImapError> {
        self.ensure_selected(mailbox).await?;
        let query = FetchQuery::new().flags().internal_date().size();
        let query = match cut {
            Some(len) => query.partial(Section::Full, 0, len),
            None => query.body(),
        };
        for chunk in uids.chunks(FETCH_BATCH) {
            let set: SequenceSet = chunk.iter().collect();
            self.session
                .uid_fetch_with(&set, &query, |mut f| {
                    let raw = match cut {
                        Some(_) => f.take_partial(&Section::Full, 0),
                        None => f.take_section(&Section::Full),
                    };
                    let Some(raw) = raw else {
                        return;
                    };
                    each(Message {
                        uid: f.uid,
                        flags: strings(f.flags.as_deref().unwrap_or_default()),
                        internal_date: f.internal_date.unwrap_or(0),
                        size: f.size.map_or(raw.len() as u64, u64::from),
                        raw,
                    });
                })
                .await?;
        }
        Ok(())
    }

    /// Flags of some messages.
    pub async fn fetch_flags(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<(u32, Vec<String>)>, ImapError> {
        self.ensure_selected(mailbox).await?;
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(FETCH_BATCH) {
            let set: SequenceSet = chunk.iter().collect();
            for m in self.session.uid_fetch_flags(&set).await? {
                out.push((m.uid, strings(&m.flags)));
            }
        }
        Ok(out)
    }

    /// Applies a flag change; returns the message's flags afterwards, or None if it is gone.
    pub async fn change_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        change: &FlagChange,
    ) -> Result<Option<Vec<String>>, ImapError> {
        self.ensure_selected(mailbox).await?;
        // After the SELECT, which records the state as it was before this change.
        self.dirty();
        let one = SequenceSet::single(uid);
        let Some(current) = self.session.uid_fetch_flags(&one).await?.into_iter().next() else {
            return Ok(None);
        };
        let current = strings(&current.flags);
        let mut add: Vec<Flag> = Vec::new();
        let mut remove: Vec<Flag> = Vec::new();
        let mut toggle = |want: Option<bool>, flag: Flag| match want {
            Some(true) => add.push(flag),
            Some(false) => remove.push(flag),
            None => {}
        };
        toggle(change.seen, Flag::Seen);
        toggle(change.flagged, Flag::Flagged);
        if let Some(categories) = &change.categories {
            let shown = crate::mime::FlagState::from_imap(&current).categories;
            for old in shown.iter().filter(|c| !categories.contains(c)) {
                remove.push(Flag::Keyword(old.clone()));
            }
            for new in categories.iter().filter(|c| valid_keyword(c)) {
                if !shown.contains(new) {
                    add.push(Flag::Keyword(new.clone()));
                }
            }
        }
        if !add.is_empty() {
            self.session
                .uid_store_flags_silent(&one, StoreMode::Add, &add)
                .await?;
        }
        if !remove.is_empty() {
            self.session
                .uid_store_flags_silent(&one, StoreMode::Remove, &remove)
                .await?;
        }
        Ok(self
            .session
            .uid_fetch_flags(&one)
            .await?
            .into_iter()
            .next()
            .map(|m| strings(&m.flags)))
    }

    /// Deletes a message: moved to `trash` when given, expunged otherwise. False when it was
    /// already gone.
    pub async fn delete(
        &mut self,
        mailbox: &str,
        uid: u32,
        trash: Option<&str>,
    ) -> Result<bool, ImapError> {
        if let Some(trash) = trash {
            return Ok(matches!(
                self.move_to(mailbox, uid, trash).await?,
                Moved::To { .. }
            ));
        }
        if !self.add_flag(mailbox, uid, Flag::Deleted).await? {
            return Ok(false);
        }
        self.session.uid_expunge(&SequenceSet::single(uid)).await?;
        Ok(true)
    }

    /// Moves a message to another mailbox.
    pub async fn move_to(
        &mut self,
        mailbox: &str,
        uid: u32,
        dest: &str,
    ) -> Result<Moved, ImapError> {
        self.ensure_selected(mailbox).await?;
        // After the SELECT, which records the state as it was before this change.
        self.dirty();
        let one = SequenceSet::single(uid);
        let Some(found) = self.session.uid_fetch_flags(&one).await?.into_iter().next() else {
            return Ok(Moved::NotFound);
        };
        let new_uid = self
            .session
            .uid_move(&one, dest)
            .await?
            .and_then(|c| c.dest_of(uid));
        Ok(Moved::To {
            uid: new_uid,
            flags: strings(&found.flags),
        })
    }

    /// Stores a draft (`\Draft \Seen`); its UID and flags, when the server reports the UID
    /// (UIDPLUS), or None.
    pub async fn append_draft(
        &mut self,
        mailbox: &str,
        message: &[u8],
    ) -> Result<Option<(u32, Vec<String>)>, ImapError> {
        self.dirty();
        let flags = [Flag::Draft, Flag::Seen];
        let appended = self
            .session
            .append_message(mailbox, &flags, message)
            .await?;
        Ok(appended.map(|a| (a.uid, strings(&flags))))
    }

    /// Files a message that was sent: APPEND with `\Seen`. Its UID, when the server reports
    /// it (UIDPLUS).
    pub async fn append_sent(
        &mut self,
        mailbox: &str,
        message: &[u8],
    ) -> Result<Option<u32>, ImapError> {
        self.dirty();
        Ok(self
            .session
            .append_message(mailbox, &[Flag::Seen], message)
            .await?
            .map(|a| a.uid))
    }

    /// Adds one flag to a message (`\Answered` after a reply, `$Forwarded` after a forward).
    /// False when the message is gone.
    pub async fn add_flag(
        &mut self,
        mailbox: &str,
        uid: u32,
        flag: Flag,
    ) -> Result<bool, ImapError> {
        self.ensure_selected(mailbox).await?;
        // After the SELECT, which records the state as it was before this change.
        self.dirty();
        let one = SequenceSet::single(uid);
        if self.session.uid_fetch_flags(&one).await?.is_empty() {
            return Ok(false);
        }
        self.session
            .uid_store_flags_silent(&one, StoreMode::Add, &[flag])
            .await?;
        Ok(true)
    }

    /// Bytes the mailbox may still take under its quota; None when the server keeps none.
    pub async fn storage_room(&mut self, mailbox: &str) -> Result<Option<u64>, ImapError> {
        self.session.storage_room(mailbox).await
    }

    /// The mailbox the server marks with a special use (RFC 6154), if any.
    pub async fn special_use(
        &mut self,
        special: crate::imap::SpecialUse,
    ) -> Result<Option<String>, ImapError> {
        Ok(self
            .session
            .list()
            .await?
            .into_iter()
            .find(|m| m.special_use() == Some(special))
            .map(|m| m.name))
    }

    /// Removes every message of a mailbox.
    pub async fn empty(&mut self, mailbox: &str) -> Result<(), ImapError> {
        let state = self.select(mailbox).await?;
        if state.exists > 0 {
            self.session
                .uid_store("1:*", "+FLAGS.SILENT (\\Deleted)")
                .await?;
            self.session.expunge().await?;
            self.dirty();
        }
        Ok(())
    }

    /// Deletes a mailbox (EmptyFolderContents with DeleteSubFolders).
    pub async fn delete_mailbox(&mut self, mailbox: &str) -> Result<(), ImapError> {
        self.dirty();
        if self.is_selected(mailbox) {
            // Dovecot refuses to delete the selected mailbox on some versions; select another.
            self.select("INBOX").await?;
        }
        self.session.delete(mailbox).await
    }
}

/// STATUS of a mailbox on a session that does not have it selected.
async fn status(
    session: &mut Session,
    mailbox: &str,
    condstore: bool,
) -> Result<FolderState, ImapError> {
    let mut items = vec!["UIDVALIDITY", "UIDNEXT", "MESSAGES"];
    if condstore {
        items.push("HIGHESTMODSEQ");
    }
    Ok(FolderState::from_status(
        &session.status(mailbox, &items).await?,
    ))
}

fn strings(flags: &[Flag]) -> Vec<String> {
    flags.iter().map(|f| f.as_str().to_owned()).collect()
}

/// IMAP keywords are atoms: no spaces, parentheses, wildcards, quotes or backslashes. A
/// category that cannot be one is not stored rather than breaking the command.
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 100
        && k.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// The user's folder hierarchy: listing, creating, renaming and deleting mailboxes, on a
/// session of its own (not pooled: hierarchy changes are rare, and a pooled session's kept
/// view must not see a mailbox renamed under it).
pub struct Hierarchy {
    session: Session,
}

impl Hierarchy {
    /// Logs in as the user.
    pub async fn open(
        imap: &crate::imap::ImapConfig,
        login: &str,
        password: &str,
    ) -> Result<Hierarchy, ImapError> {
        let mut session = Session::connect(imap).await?;
        session.login(login, password).await?;
        Ok(Hierarchy { session })
    }

    pub async fn list(&mut self) -> Result<Vec<Mailbox>, ImapError> {
        self.session.list().await
    }

    /// Every mailbox with its UIDVALIDITY where the server tells it in the listing.
    pub async fn list_with_uidvalidity(
        &mut self,
    ) -> Result<Vec<(Mailbox, Option<u32>)>, ImapError> {
        self.session.list_with_uidvalidity().await
    }

    pub async fn create(&mut self, name: &str) -> Result<(), ImapError> {
        self.session.create(name).await
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), ImapError> {
        self.session.rename(from, to).await
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), ImapError> {
        self.session.delete(name).await
    }

    pub async fn subscribe(&mut self, name: &str) -> Result<(), ImapError> {
        self.session.subscribe(name).await
    }

    pub async fn logout(self) -> Result<(), ImapError> {
        self.session.logout().await
    }
}

#[cfg(test)]
mod pool_test {
    use super::SessionPool;

    #[test]
    fn sessions_are_kept_per_exact_login_and_password() {
        let pool = SessionPool::new(std::time::Duration::from_secs(60), 4);
        let alice = pool.key("alice", "secret-1");
        assert_eq!(alice, pool.key("alice", "secret-1"));
        assert_ne!(
            alice,
            pool.key("Alice", "secret-1"),
            "IMAP may tell them apart"
        );
        assert_ne!(alice, pool.key("alice", "secret-2"), "a changed password");
        assert!(!alice.contains("secret"));
        // Another pool (another process) salts differently.
        let other = SessionPool::new(std::time::Duration::from_secs(60), 4);
        assert_ne!(alice, other.key("alice", "secret-1"));
    }
}

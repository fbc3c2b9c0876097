//! HTTP Basic authentication checked against IMAP LOGIN, with a short-lived credential cache
//! and throttling of wrong passwords.
//!
//! Owns: parsing `Authorization: Basic`, normalising log-in names (`DOMAIN\user` → `user`),
//! the cache (salted SHA-256 of the password, in memory only, never written anywhere), and the
//! throttling: failure counts per user and per client network ([`Net`]), lock-outs, and the
//! number of IMAP LOGINs under way per user and per network. Passwords live in [`Secret`] and
//! are only exposed to the IMAP LOGIN and the hashes.
//!
//! The order of [`Authenticator::verify`] is the policy:
//!
//! 1. A password the cache holds is accepted at once: a phone whose password is right is
//!    never slowed down or locked out by what others do.
//! 2. A password IMAP refused for this login a minute ago is refused again without asking
//!    (a thousand identical guesses cost one LOGIN; a phone stuck on an old password does
//!    not count as guessing).
//! 3. Locked out: a network with `network_failures_before_lockout` distinct wrong passwords,
//!    or a user with `user_failures_before_lockout`, is answered 503 + Retry-After for
//!    `lockout_secs` without asking IMAP. A locked *user* is refused only from the networks
//!    the wrong passwords came from (or from everywhere once they came from too many), so
//!    the real user elsewhere whose cached password ran out still gets in.
//! 4. Otherwise the attempt waits its turn: one LOGIN at a time per user *and* network (a
//!    second device of the user, or a thousand guesses from one address, wait for the one
//!    under way), and at most `logins_in_flight_per_user` and `logins_in_flight_per_network`
//!    at once; guesses from one network thus never queue ahead of the user elsewhere. Waiting
//!    attempts look at 1–3 again after every LOGIN's verdict and leave if that settled them:
//!    a burst stops at the lock-out instead of reaching IMAP, and a second device finds the
//!    first one's password cached.
//! 5. The LOGIN runs in a task of its own, so a client that hangs up early is still counted.
//!
//! Wrong-password answers (401) are delayed a little once a key has had several
//! (`failures_before_delay`); the delay comes after the verdict, so it never holds up a right
//! password. Lock-out answers (503) are not delayed: holding their connections open would only
//! help fill the connection cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::{Net, log_safe};
use crate::config::AuthConfig;
use crate::imap::{self, ImapConfig, ImapError};
use crate::metrics::{self, AuthCounters};
use crate::secret::Secret;

/// How long refusals count towards the slow-down.
const DELAY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Upper bound on the slow-down of one refusal.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// How long a password IMAP refused is refused without asking again. Short, because an admin
/// may set that very password a moment later; long enough to absorb a burst.
const REJECTED_ANSWER: Duration = Duration::from_secs(60);
/// Wrong passwords remembered per login (the ones not to count twice).
const REJECTED_KEPT: usize = 8;
/// Networks remembered per locked user; beyond it the attack is spread wide and the lock-out
/// applies from everywhere.
const NETWORKS_PER_USER: usize = 64;
/// Entries kept before expired ones are swept, and the most any map holds: beyond it new
/// keys are not tracked (their network still is).
const SWEEP_AT: usize = 10_000;
const MAX_ENTRIES: usize = 200_000;
/// Longest log-in name accepted; longer ones are no user's.
const MAX_LOGIN: usize = 256;

/// What the client sent in `Authorization: Basic`.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The log-in name as IMAP should see it (`DOMAIN\` stripped).
    pub login: String,
    pub password: Secret<String>,
}

pub use crate::eas::request::AuthenticatedUser;

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Basic` header.
    #[error("no Basic credentials")]
    Missing,
    /// The IMAP server refused the user name or password (now, or a moment ago).
    #[error("credentials rejected")]
    Rejected,
    /// Not checked: too many wrong passwords for the user or from the client's network, or
    /// no turn to check within the IMAP timeout.
    #[error("log-in throttled ({reason})")]
    Throttled {
        reason: &'static str,
        retry_after: Duration,
    },
    /// The IMAP server could not be asked (down, unreachable, timed out).
    #[error("IMAP server unavailable: {0}")]
    Backend(ImapError),
}

/// Parses `Basic base64(user:password)`.
pub fn parse_basic(header: &str) -> Option<Credentials> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let login = normalize_login(user);
    // No mail account is named with control characters; refused here, such a name can reach
    // neither IMAP nor a log line.
    if login.is_empty()
        || password.is_empty()
        || login.len() > MAX_LOGIN
        || login.chars().any(char::is_control)
    {
        return None;
    }
    Some(Credentials {
        login,
        password: Secret::new(password.to_owned()),
    })
}

/// `DOMAIN\user` → `user`; `user@domain` and `user` are kept as typed.
pub fn normalize_login(user: &str) -> String {
    let user = user.trim();
    user.rsplit_once('\\')
        .map_or(user, |(_, u)| u)
        .trim()
        .to_owned()
}

/// The throttling settings of `[auth]`.
#[derive(Debug, Clone)]
pub struct Throttling {
    pub delay_after: u32,
    pub user_lockout_after: u32,
    pub network_lockout_after: u32,
    pub lockout: Duration,
    pub in_flight_per_user: usize,
    pub in_flight_per_network: usize,
}

impl Throttling {
    pub fn from_config(c: &AuthConfig) -> Throttling {
        Throttling {
            delay_after: c.failures_before_delay,
            user_lockout_after: c.user_failures_before_lockout.max(1),
            network_lockout_after: c.network_failures_before_lockout.max(1),
            lockout: Duration::from_secs(c.lockout_secs.max(1)),
            in_flight_per_user: c.logins_in_flight_per_user.max(1),
            in_flight_per_network: c.logins_in_flight_per_network.max(1),
        }
    }
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling::from_config(&AuthConfig::default())
    }
}

struct CacheEntry {
    salt: [u8; 16],
    hash: [u8; 32],
    expires: Instant,
}

/// A password IMAP refused for a login.
struct Rejected {
    hash: [u8; 32],
    at: Instant,
}

/// Failures of one user or one network.
struct Tally {
    /// Distinct wrong passwords since `since`: what locks out.
    wrong: u32,
    since: Instant,
    locked_until: Option<Instant>,
    /// Wrong-password answers since `last_refused` was within [`DELAY_WINDOW`]: what slows
    /// down.
    refused: u32,
    last_refused: Instant,
    /// Users only: the networks the wrong passwords came from.
    networks: Vec<Net>,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            wrong: 0,
            since: now,
            locked_until: None,
            refused: 0,
            last_refused: now,
            networks: Vec::new(),
        }
    }

    fn locked(&self, now: Instant) -> Option<Instant> {
        self.locked_until.filter(|&t| t > now)
    }

    /// Forgets what lies outside its window: a past lock-out, or failures older than one.
    fn age(&mut self, now: Instant, window: Duration) {
        let lock_over = self.locked_until.is_some_and(|t| t <= now);
        if lock_over || (self.locked_until.is_none() && now.duration_since(self.since) >= window) {
            self.wrong = 0;
            self.since = now;
            self.locked_until = None;
            self.networks.clear();
        }
        if now.duration_since(self.last_refused) >= DELAY_WINDOW {
            self.refused = 0;
        }
    }

    /// Nothing left worth keeping.
    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.locked(now).is_none()
            && now.duration_since(self.since) >= window
            && now.duration_since(self.last_refused) >= DELAY_WINDOW
    }

    /// Counts a distinct wrong password; true when that begins a lock-out.
    fn wrong_password(&mut self, now: Instant, threshold: u32, lockout: Duration) -> bool {
        self.wrong += 1;
        if self.wrong < threshold {
            return false;
        }
        let begins = self.locked(now).is_none();
        // Every further wrong password while locked keeps the lock on.
        self.locked_until = Some(now + lockout);
        begins
    }
}

#[derive(Default)]
struct Tallies {
    users: HashMap<String, Tally>,
    networks: HashMap<Net, Tally>,
}

/// What step 3 found.
enum Lock {
    Network(Instant),
    User(Instant),
}

/// Verifies credentials, remembering good ones for a while.
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    imap: ImapConfig,
    ttl: Duration,
    default_domain: Option<String>,
    throttling: Throttling,
    /// Keyed by the exact log-in name: IMAP servers may tell `Alice` from `alice`.
    cache: Mutex<HashMap<String, CacheEntry>>,
    rejected: Mutex<HashMap<String, Vec<Rejected>>>,
    /// Salts the hashes of refused passwords, which are compared, never stored elsewhere.
    pepper: [u8; 16],
    tallies: Mutex<Tallies>,
    /// Turns at IMAP LOGIN: one per user and network (`p:`), and per user (`u:`) and per
    /// network (`n:`) as configured.
    turns: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Told of every LOGIN's verdict: waiting attempts look again whether to wait on.
    verdicts: tokio::sync::Notify,
    counters: AuthCounters,
}

impl Authenticator {
    pub fn new(
        imap: ImapConfig,
        ttl: Duration,
        throttling: Throttling,
        default_domain: Option<String>,
    ) -> Authenticator {
        let mut pepper = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut pepper);
        Authenticator {
            inner: Arc::new(Inner {
                imap,
                ttl,
                default_domain,
                throttling,
                cache: Mutex::new(HashMap::new()),
                rejected: Mutex::new(HashMap::new()),
                pepper,
                tallies: Mutex::new(Tallies::default()),
                turns: Mutex::new(HashMap::new()),
                verdicts: tokio::sync::Notify::new(),
                counters: AuthCounters::default(),
            }),
        }
    }

    /// The authenticator `[imap]` and `[auth]` describe.
    pub fn from_config(config: &crate::config::Config) -> Authenticator {
        Authenticator::new(
            config.imap_config(),
            Duration::from_secs(config.auth.cache_ttl_secs),
            Throttling::from_config(&config.auth),
            config.auth.default_domain.clone(),
        )
    }

    /// The counters for `/metrics`.
    pub fn counters(&self) -> &AuthCounters {
        &self.inner.counters
    }

    /// Checks the credentials (see the module documentation for the order of the steps).
    pub async fn verify(
        &self,
        creds: &Credentials,
        client: IpAddr,
    ) -> Result<AuthenticatedUser, AuthError> {
        let user = self.inner.user(creds);
        if self.inner.cached(&creds.login, creds.password.expose()) {
            return Ok(user);
        }
        let net = Net::of(client);
        match self.inner.clone().check(creds, &user.key, net).await {
            Ok(()) => Ok(user),
            Err(AuthError::Rejected) => {
                let delay = self.inner.refused(&user.key, net);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Err(AuthError::Rejected)
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets the cached password of these credentials, if it is the one cached (the IMAP
    /// server refused it inside a command: changed since). True when something was forgotten.
    /// Only the holder of the cached password can evict it, so a stranger's failures never
    /// push the real user back to IMAP.
    pub fn forget(&self, login: &str, password: &str) -> bool {
        let inner = &self.inner;
        let mut cache = lock(&inner.cache);
        let matches = cache
            .get(login)
            .is_some_and(|e| constant_time_eq(&hash(&e.salt, password), &e.hash));
        if matches {
            cache.remove(login);
        }
        matches
    }
}

impl Inner {
    fn user(&self, creds: &Credentials) -> AuthenticatedUser {
        let key = creds.login.to_lowercase();
        let email = match (&self.default_domain, key.contains('@')) {
            (Some(domain), false) => format!("{key}@{domain}"),
            _ => key.clone(),
        };
        AuthenticatedUser {
            login: creds.login.clone(),
            key,
            email,
            password: creds.password.clone(),
        }
    }

    /// Steps 2 to 5.
    async fn check(
        self: Arc<Self>,
        creds: &Credentials,
        user_key: &str,
        net: Net,
    ) -> Result<(), AuthError> {
        let password = creds.password.expose();
        let turn = self.turn(user_key, net);
        tokio::pin!(turn);
        let give_up = tokio::time::sleep(self.imap.timeout);
        tokio::pin!(give_up);
        let permits = loop {
            // Listening before looking, so a verdict in between is not missed.
            let verdict = self.verdicts.notified();
            tokio::pin!(verdict);
            verdict.as_mut().enable();
            if self.cached(&creds.login, password) {
                return Ok(());
            }
            self.refuse_without_imap(&creds.login, password, user_key, net)?;
            tokio::select! {
                permits = &mut turn => break permits,
                () = &mut verdict => {}
                () = &mut give_up => {
                    metrics::inc(&self.counters.throttled_queue);
                    return Err(AuthError::Throttled {
                        reason: "no turn at IMAP in time",
                        retry_after: Duration::from_secs(super::limits::RETRY_AFTER_SECS),
                    });
                }
            }
        };
        // Whoever went before may have settled it: the same password accepted (a second
        // device of the user) or refused, or enough wrong ones for a lock-out.
        if self.cached(&creds.login, password) {
            return Ok(());
        }
        self.refuse_without_imap(&creds.login, password, user_key, net)?;
        let inner = self.clone();
        let creds = creds.clone();
        let user_key = user_key.to_owned();
        let login = tokio::spawn(async move {
            let _permits = permits;
            inner.login(&creds, &user_key, net).await
        });
        login.await.unwrap_or_else(|e| {
            Err(AuthError::Backend(ImapError::Io(std::io::Error::other(
                format!("log-in task: {e}"),
            ))))
        })
    }

    /// Step 5: one IMAP LOGIN, its verdict remembered.
    async fn login(&self, creds: &Credentials, user_key: &str, net: Net) -> Result<(), AuthError> {
        let password = creds.password.expose();
        metrics::inc(&self.counters.imap_logins);
        metrics::inc(&self.counters.imap_logins_in_flight);
        let result = imap::check_login(&self.imap, &creds.login, password).await;
        metrics::dec(&self.counters.imap_logins_in_flight);
        match result {
            Ok(()) => {
                self.remember(&creds.login, password);
                if let Some(t) = lock(&self.tallies).users.get_mut(user_key) {
                    t.refused = 0;
                }
                self.verdicts.notify_waiters();
                Ok(())
            }
            Err(ImapError::LoginRejected) => {
                metrics::inc(&self.counters.failures_imap);
                let new = self.note_rejected(&creds.login, password);
                if new {
                    self.wrong_password(user_key, net);
                }
                self.verdicts.notify_waiters();
                Err(AuthError::Rejected)
            }
            Err(e) => Err(AuthError::Backend(e)),
        }
    }

    /// Steps 2 and 3.
    fn refuse_without_imap(
        &self,
        login: &str,
        password: &str,
        user_key: &str,
        net: Net,
    ) -> Result<(), AuthError> {
        if self.recently_rejected(login, password) {
            metrics::inc(&self.counters.failures_repeated);
            return Err(AuthError::Rejected);
        }
        let now = Instant::now();
        let (reason, until) = match self.lock_for(user_key, net, now) {
            None => return Ok(()),
            Some(Lock::Network(until)) => {
                metrics::inc(&self.counters.throttled_network);
                ("network locked out", until)
            }
            Some(Lock::User(until)) => {
                metrics::inc(&self.counters.throttled_user);
                ("user locked out", until)
            }
        };
        Err(AuthError::Throttled {
            reason,
            retry_after: until.duration_since(now),
        })
    }

    fn lock_for(&self, user_key: &str, net: Net, now: Instant) -> Option<Lock> {
        let tallies = lock(&self.tallies);
        if let Some(until) = tallies.networks.get(&net).and_then(|t| t.locked(now)) {
            return Some(Lock::Network(until));
        }
        let user = tallies.users.get(user_key)?;
        let until = user.locked(now)?;
        let from_here = user.networks.contains(&net) || user.networks.len() >= NETWORKS_PER_USER;
        from_here.then_some(Lock::User(until))
    }

    /// Counts a distinct wrong password against the user and the network.
    fn wrong_password(&self, user_key: &str, net: Net) {
        let now = Instant::now();
        let window = self.throttling.lockout;
        let t = &self.throttling;
        let mut tallies = lock(&self.tallies);
        let tallies = &mut *tallies;
        if let Some(user) = entry(&mut tallies.users, user_key, now, window) {
            if !user.networks.contains(&net) && user.networks.len() < NETWORKS_PER_USER {
                user.networks.push(net);
            }
            if user.wrong_password(now, t.user_lockout_after, t.lockout) {
                metrics::inc(&self.counters.lockouts_user);
                tracing::warn!(
                    user = %log_safe(user_key, 80),
                    network = %net,
                    failures = user.wrong,
                    lockout_secs = t.lockout.as_secs(),
                    "wrong passwords: log-ins of this user from the failing networks are \
                     refused without asking IMAP"
                );
            }
        }
        let Some(network) = entry(&mut tallies.networks, &net, now, window) else {
            return;
        };
        if network.wrong_password(now, t.network_lockout_after, t.lockout) {
            metrics::inc(&self.counters.lockouts_network);
            tracing::warn!(
                network = %net,
                failures = network.wrong,
                lockout_secs = t.lockout.as_secs(),
                "wrong passwords: log-ins from this network are refused without asking IMAP \
                 (cached passwords still work)"
            );
        }
    }

    /// Counts a wrong-password answer for the slow-down; returns the delay it earns (from the
    /// ones before it: 250 ms doubling up to 8 s).
    fn refused(&self, user_key: &str, net: Net) -> Duration {
        let now = Instant::now();
        let window = self.throttling.lockout;
        let mut tallies = lock(&self.tallies);
        let tallies = &mut *tallies;
        let mut before = 0;
        let users = entry(&mut tallies.users, user_key, now, window);
        let networks = entry(&mut tallies.networks, &net, now, window);
        for t in [users, networks].into_iter().flatten() {
            before = before.max(t.refused);
            t.refused += 1;
            t.last_refused = now;
        }
        let threshold = self.throttling.delay_after;
        if before < threshold.max(1) {
            return Duration::ZERO;
        }
        let doublings = (before - threshold).min(6);
        (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_DELAY)
    }

    /// Step 4: a turn at IMAP LOGIN for the user from the network.
    async fn turn(&self, user_key: &str, net: Net) -> [OwnedSemaphorePermit; 3] {
        let (pair, user, network) = {
            let mut turns = lock(&self.turns);
            if turns.len() >= SWEEP_AT {
                // Held or awaited turns keep a second reference.
                turns.retain(|_, s| Arc::strong_count(s) > 1);
            }
            let mut get = |key: String, n: usize| {
                turns
                    .entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(n)))
                    .clone()
            };
            (
                get(format!("p:{user_key}\0{net}"), 1),
                get(format!("u:{user_key}"), self.throttling.in_flight_per_user),
                get(format!("n:{net}"), self.throttling.in_flight_per_network),
            )
        };
        // Always in this order: no two attempts wait for each other crosswise.
        let pair = pair.acquire_owned().await.expect("never closed");
        let user = user.acquire_owned().await.expect("never closed");
        let network = network.acquire_owned().await.expect("never closed");
        [pair, user, network]
    }

    /// Whether the cache holds this password for this login. The comparison takes the same
    /// time whether or not there is an entry, or it matches.
    fn cached(&self, login: &str, password: &str) -> bool {
        let cache = lock(&self.cache);
        let now = Instant::now();
        match cache.get(login) {
            Some(e) => {
                let same = constant_time_eq(&hash(&e.salt, password), &e.hash);
                same & (e.expires > now)
            }
            None => {
                let _ = constant_time_eq(&hash(&[0; 16], password), &[0; 32]);
                false
            }
        }
    }

    fn remember(&self, login: &str, password: &str) {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let entry = CacheEntry {
            salt,
            hash: hash(&salt, password),
            expires: Instant::now() + self.ttl,
        };
        let mut cache = lock(&self.cache);
        if cache.len() >= SWEEP_AT {
            let now = Instant::now();
            cache.retain(|_, e| e.expires > now);
        }
        cache.insert(login.to_owned(), entry);
        drop(cache);
        if let Some(list) = lock(&self.rejected).get_mut(login) {
            // An admin may have set a password IMAP refused a moment ago.
            let h = self.rejected_hash(login, password);
            list.retain(|r| r.hash != h);
        }
    }

    /// HMAC-SHA256 keyed by the process's random pepper over login and password.
    fn rejected_hash(&self, login: &str, password: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.pepper)
            .expect("HMAC takes a key of any length");
        mac.update(login.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn recently_rejected(&self, login: &str, password: &str) -> bool {
        let h = self.rejected_hash(login, password);
        let rejected = lock(&self.rejected);
        rejected.get(login).is_some_and(|list| {
            list.iter()
                .any(|r| r.at.elapsed() < REJECTED_ANSWER && constant_time_eq(&r.hash, &h))
        })
    }

    /// Remembers a password IMAP refused; false when it was refused already within the
    /// lock-out window (a repeat is no new guess).
    fn note_rejected(&self, login: &str, password: &str) -> bool {
        let h = self.rejected_hash(login, password);
        let window = self.throttling.lockout;
        let mut rejected = lock(&self.rejected);
        if rejected.len() >= SWEEP_AT {
            rejected.retain(|_, list| {
                list.retain(|r| r.at.elapsed() < window);
                !list.is_empty()
            });
        }
        if rejected.len() >= MAX_ENTRIES && !rejected.contains_key(login) {
            return true;
        }
        let list = rejected.entry(login.to_owned()).or_default();
        list.retain(|r| r.at.elapsed() < window);
        let seen = list.iter().position(|r| r.hash == h);
        if let Some(i) = seen {
            list.remove(i);
        } else if list.len() >= REJECTED_KEPT {
            list.remove(0);
        }
        list.push(Rejected {
            hash: h,
            at: Instant::now(),
        });
        seen.is_none()
    }
}

/// The tally for a key, aged; `None` when the map is full of live entries.
fn entry<'a, K, Q>(
    map: &'a mut HashMap<K, Tally>,
    key: &Q,
    now: Instant,
    window: Duration,
) -> Option<&'a mut Tally>
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    if !map.contains_key(key) {
        if map.len() >= SWEEP_AT {
            map.retain(|_, t| !t.idle(now, window));
        }
        if map.len() >= MAX_ENTRIES {
            return None;
        }
        map.insert(key.to_owned(), Tally::new(now));
    }
    let t = map.get_mut(key)?;
    t.age(now, window);
    Some(t)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariants a panic could break halfway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the cache keeps of a password: HMAC-SHA256 keyed by the entry's random salt.
fn hash(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes a key of any length");
    mac.update(password.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether two hashes are equal, in the same time whatever the first difference (a timing
/// must not tell how much of a guessed password's hash was right).
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod test {
    use super::*;

    fn unreachable_imap() -> ImapConfig {
        ImapConfig {
            host: "127.0.0.1".into(),
            port: 1,
            security: crate::imap::Security::None,
            tls_insecure: false,
            timeout: Duration::from_secs(1),
        }
    }

    fn authenticator(throttling: Throttling) -> Authenticator {
        Authenticator::new(
            unreachable_imap(),
            Duration::from_secs(60),
            throttling,
            Some("example.com".into()),
        )
    }

    fn creds(login: &str, password: &str) -> Credentials {
        Credentials {
            login: login.into(),
            password: Secret::new(password.into()),
        }
    }

    #[test]
    fn basic_header_forms() {
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let c = parse_basic(&enc("CORP\\jane:pa:ss")).unwrap();
        assert_eq!(c.login, "jane");
        assert_eq!(c.password.expose(), "pa:ss");
        assert_eq!(
            parse_basic(&enc("jane@example.com:x")).unwrap().login,
            "jane@example.com"
        );
        assert!(parse_basic(&enc("jane:")).is_none());
        assert!(parse_basic(&enc(":x")).is_none());
        assert!(parse_basic("Bearer abc").is_none());
        assert!(parse_basic("Basic !!!").is_none());
        // A name no account has, that would only serve to forge log lines.
        assert!(parse_basic(&enc("jane\nINFO admin logged in:x")).is_none());
        assert!(parse_basic(&enc(&format!("{}:x", "j".repeat(300)))).is_none());
    }

    #[test]
    fn cache_is_by_exact_login_and_forgotten_only_by_its_password() {
        let auth = authenticator(Throttling::default());
        let inner = &auth.inner;
        inner.remember("Jane", "right");
        assert!(inner.cached("Jane", "right"));
        assert!(!inner.cached("Jane", "wrong"));
        assert!(
            !inner.cached("jane", "right"),
            "IMAP may tell Jane from jane"
        );
        assert!(!auth.forget("Jane", "wrong"));
        assert!(inner.cached("Jane", "right"));
        assert!(auth.forget("Jane", "right"));
        assert!(!inner.cached("Jane", "right"));
        let user = inner.user(&creds("Jane", "x"));
        assert_eq!(
            (user.key.as_str(), user.email.as_str()),
            ("jane", "jane@example.com")
        );
    }

    #[test]
    fn slow_down_grows_with_refusals_like_before() {
        let auth = authenticator(Throttling {
            delay_after: 2,
            ..Throttling::default()
        });
        let net = Net::of("192.0.2.1".parse().unwrap());
        let delays: Vec<_> = (0..5).map(|_| auth.inner.refused("jane", net)).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, [ms(0), ms(0), ms(250), ms(500), ms(1000)]);
        // Another network and user are not slowed.
        let other = Net::of("192.0.2.2".parse().unwrap());
        assert_eq!(auth.inner.refused("bob", other), Duration::ZERO);
    }

    #[test]
    fn a_locked_user_is_refused_from_failing_networks_only() {
        let auth = authenticator(Throttling {
            user_lockout_after: 3,
            network_lockout_after: 5,
            ..Throttling::default()
        });
        let inner = &auth.inner;
        let bad = Net::of("198.51.100.7".parse().unwrap());
        let home = Net::of("2001:db8:1:2::5".parse().unwrap());
        for i in 0..3 {
            assert!(inner.lock_for("jane", bad, Instant::now()).is_none());
            assert!(inner.note_rejected("jane", &format!("guess{i}")));
            inner.wrong_password("jane", bad);
        }
        assert!(matches!(
            inner.lock_for("jane", bad, Instant::now()),
            Some(Lock::User(_))
        ));
        assert!(inner.lock_for("jane", home, Instant::now()).is_none());
        assert!(inner.lock_for("bob", bad, Instant::now()).is_none());
        // Two more against others: the network reaches its own limit.
        for user in ["bob", "carl"] {
            inner.wrong_password(user, bad);
        }
        assert!(matches!(
            inner.lock_for("dora", bad, Instant::now()),
            Some(Lock::Network(_))
        ));
        assert_eq!(auth.counters().lockouts_user.load(Ordering::Relaxed), 1);
        assert_eq!(auth.counters().lockouts_network.load(Ordering::Relaxed), 1);
        // Spread over many networks, the lock-out holds from everywhere.
        for i in 0..NETWORKS_PER_USER {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            inner.wrong_password("erin", Net::of(ip));
        }
        assert!(inner.lock_for("erin", home, Instant::now()).is_some());
        // The lock-out ends.
        let later = Instant::now() + Duration::from_secs(901);
        assert!(inner.lock_for("jane", bad, later).is_none());
    }

    #[test]
    fn a_repeated_wrong_password_is_no_new_guess() {
        let auth = authenticator(Throttling::default());
        let inner = &auth.inner;
        assert!(!inner.recently_rejected("jane", "old"));
        assert!(inner.note_rejected("jane", "old"));
        assert!(inner.recently_rejected("jane", "old"));
        assert!(!inner.recently_rejected("Jane", "old"));
        assert!(!inner.recently_rejected("jane", "other"));
        assert!(
            !inner.note_rejected("jane", "old"),
            "the same password again"
        );
        // Accepted later (the admin set it): no longer refused.
        inner.remember("jane", "old");
        assert!(!inner.recently_rejected("jane", "old"));
        for i in 0..REJECTED_KEPT + 3 {
            inner.note_rejected("jane", &format!("p{i}"));
        }
        assert_eq!(lock(&inner.rejected)["jane"].len(), REJECTED_KEPT);
    }

    /// The cache answers before anything else: a locked-out user and network do not slow
    /// down a password the cache holds.
    #[tokio::test]
    async fn a_cached_password_is_never_throttled() {
        let auth = authenticator(Throttling {
            delay_after: 1000,
            user_lockout_after: 1,
            network_lockout_after: 1,
            ..Throttling::default()
        });
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let net = Net::of(client);
        auth.inner.wrong_password("jane", net);
        for _ in 0..20 {
            auth.inner.refused("jane", net);
        }
        auth.inner.remember("jane", "right");
        let t = Instant::now();
        let user = auth.verify(&creds("jane", "right"), client).await.unwrap();
        assert_eq!(user.key, "jane");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        // The wrong password is refused without asking the (unreachable) IMAP server.
        let err = auth
            .verify(&creds("jane", "guess"), client)
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Throttled { .. }), "{err:?}");
        assert_eq!(auth.counters().imap_logins.load(Ordering::Relaxed), 0);
    }

    use std::sync::atomic::Ordering;
}

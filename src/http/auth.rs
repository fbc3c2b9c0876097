//! HTTP Basic authentication checked against IMAP LOGIN, with a short-lived credential cache
//! and a slow-down for repeated failures.
//!
//! Owns: parsing `Authorization: Basic`, normalising log-in names (`DOMAIN\user` → `user`),
//! the cache (salted SHA-256 of the password, in memory only, never written anywhere), and the
//! failure counters per user and per client address. Passwords live in [`Secret`] and are only
//! exposed to the IMAP LOGIN and the hash.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::imap::{self, ImapConfig, ImapError};
use crate::secret::Secret;

/// How long a failure counts towards the slow-down.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Upper bound on the slow-down of one response.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

/// What the client sent in `Authorization: Basic`.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The log-in name as IMAP should see it (`DOMAIN\` stripped).
    pub login: String,
    pub password: Secret<String>,
}

/// A user whose password the IMAP server accepted.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// The log-in name for IMAP.
    pub login: String,
    /// Lower-case log-in name: the key of all this user's state.
    pub key: String,
    /// The user's e-mail address.
    pub email: String,
    pub password: Secret<String>,
}

/// Why authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Basic` header.
    #[error("no Basic credentials")]
    Missing,
    /// The IMAP server refused the user name or password.
    #[error("credentials rejected")]
    Rejected,
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
    if login.is_empty() || password.is_empty() {
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

struct CacheEntry {
    salt: [u8; 16],
    hash: [u8; 32],
    expires: Instant,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Verifies credentials, remembering good ones for a while.
pub struct Authenticator {
    imap: ImapConfig,
    ttl: Duration,
    threshold: u32,
    default_domain: Option<String>,
    cache: Mutex<HashMap<String, CacheEntry>>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Authenticator {
    pub fn new(
        imap: ImapConfig,
        ttl: Duration,
        threshold: u32,
        default_domain: Option<String>,
    ) -> Authenticator {
        Authenticator {
            imap,
            ttl,
            threshold,
            default_domain,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the credentials: from the cache when a recent LOGIN accepted the same password,
    /// otherwise by an IMAP LOGIN. Repeated failures for the user or from the client address
    /// slow the answer down (before the check, so guessing gets no faster by hanging up).
    pub async fn verify(
        &self,
        creds: &Credentials,
        client: IpAddr,
    ) -> Result<AuthenticatedUser, AuthError> {
        let user_key = format!("user:{}", creds.login.to_lowercase());
        let ip_key = format!("ip:{client}");
        let delay = self.delay_for(&user_key).max(self.delay_for(&ip_key));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let user = self.user(creds);
        if self.cached(&user.key, creds.password.expose()) {
            return Ok(user);
        }
        match imap::check_login(&self.imap, &creds.login, creds.password.expose()).await {
            Ok(()) => {
                self.remember(&user.key, creds.password.expose());
                lock(&self.failures).remove(&user_key);
                Ok(user)
            }
            Err(ImapError::LoginRejected) => {
                self.record_failure(user_key);
                self.record_failure(ip_key);
                Err(AuthError::Rejected)
            }
            Err(e) => Err(AuthError::Backend(e)),
        }
    }

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

    fn cached(&self, key: &str, password: &str) -> bool {
        let cache = lock(&self.cache);
        cache.get(key).is_some_and(|e| {
            e.expires > Instant::now() && constant_time_eq(&hash(&e.salt, password), &e.hash)
        })
    }

    fn remember(&self, key: &str, password: &str) {
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
        cache.insert(key.to_owned(), entry);
    }

    /// Forgets a user's cached password (e.g. after the IMAP server rejected it later on).
    pub fn forget(&self, user_key: &str) {
        lock(&self.cache).remove(user_key);
    }

    fn delay_for(&self, key: &str) -> Duration {
        let failures = lock(&self.failures);
        match failures.get(key) {
            Some(f) if f.last.elapsed() < FAILURE_WINDOW && f.count >= self.threshold => {
                let doublings = (f.count - self.threshold).min(6);
                (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    fn record_failure(&self, key: String) {
        let mut failures = lock(&self.failures);
        let now = Instant::now();
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, f| f.last.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if entry.last.elapsed() >= FAILURE_WINDOW {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariants a panic could break halfway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hash(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod test {
    use super::*;

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
    }

    #[test]
    fn cache_and_slow_down() {
        let auth = Authenticator::new(
            ImapConfig {
                host: "127.0.0.1".into(),
                port: 1,
                security: crate::imap::Security::None,
                tls_insecure: false,
                timeout: Duration::from_secs(1),
            },
            Duration::from_secs(60),
            2,
            Some("example.com".into()),
        );
        auth.remember("jane", "right");
        assert!(auth.cached("jane", "right"));
        assert!(!auth.cached("jane", "wrong"));
        assert!(!auth.cached("bob", "right"));
        assert_eq!(auth.delay_for("user:jane"), Duration::ZERO);
        auth.record_failure("user:jane".into());
        auth.record_failure("user:jane".into());
        assert_eq!(auth.delay_for("user:jane"), Duration::from_millis(250));
        auth.record_failure("user:jane".into());
        assert_eq!(auth.delay_for("user:jane"), Duration::from_millis(500));
        let creds = Credentials {
            login: "Jane".into(),
            password: Secret::new("x".into()),
        };
        let user = auth.user(&creds);
        assert_eq!(
            (user.key.as_str(), user.email.as_str()),
            ("jane", "jane@example.com")
        );
    }
}

//! The CardDAV source: a shared address book on the DAV server (`[[directory.dav]]`), read
//! with a service account's credentials.
//!
//! Owns the cached copy of the address book and when it is read again. Lookups are answered
//! from memory, like the SQL source: at most once per `refresh_secs`, a lookup finding the
//! copy due starts a check in the background (one Depth-0 PROPFIND for the sync token, or the
//! CTag) and only a changed token costs a full read (listing, then multiget in batches). The
//! lookup itself never waits for the DAV server once a copy is there, so a slow server makes
//! no GAL search slow. A server that is down keeps the last good copy answering (never an
//! empty GAL); the failure is logged once, and its end once. Only a source that has never
//! loaded fails the lookup.
//!
//! Cards are read with the directory's vCard mapping ([`super::file::parse_vcards`], calcard),
//! so a card means the same here as in a vCard file: FN, N, EMAIL with PREF, TEL by type,
//! ORG, TITLE, NICKNAME, X-OFFICE, inline PHOTO (sent within the request's photo limits).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use super::{DirectoryError, Entries, Entry, file::parse_vcards};
use crate::dav::{DavClient, DavError, DavSettings, Kind};
use crate::secret::Secret;

/// `[[directory.dav]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DavDirectoryConfig {
    /// The address book collection itself, e.g.
    /// `https://dav.example.org/directory/shared-contacts/`.
    pub url: String,
    /// The service account's user name on the DAV server.
    pub user: String,
    /// A file whose first line is the service account's password (kept out of the
    /// configuration and the logs).
    pub password_file: PathBuf,
    /// Seconds between two checks of the address book's sync token.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// Per DAV request.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Accept any TLS certificate (self-signed test servers only).
    #[serde(default)]
    pub tls_insecure: bool,
}

fn default_refresh() -> u64 {
    300
}

fn default_timeout() -> u64 {
    30
}

/// How long to wait before asking a server that failed again (unless `refresh_secs` is
/// shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

/// A shared address book, cached. Cheap to share with the background refresh.
pub struct DavSource {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    collection: Url,
    client: DavClient,
    refresh: Duration,
    state: Mutex<State>,
    /// One read of the server at a time.
    reading: tokio::sync::Mutex<()>,
    /// Refreshes finished (whatever their outcome) and, of those, full reads of the book.
    refreshes: AtomicU64,
    reads: AtomicU64,
}

struct State {
    entries: Option<Arc<Entries>>,
    /// The sync token (or CTag) the cached copy was read at.
    token: Option<String>,
    next_check: Instant,
    /// A background check is running; lookups meanwhile do not start another.
    checking: bool,
    /// The last read failed (and was logged): the next failures stay quiet.
    failing: bool,
}

impl DavSource {
    /// Reads the settings and the password file without connecting (the DAV server may come
    /// up after the gateway).
    pub fn new(config: &DavDirectoryConfig) -> Result<DavSource, DirectoryError> {
        let bad = |message: String| DirectoryError::Config {
            name: format!("dav:{}", config.url),
            message,
        };
        let mut collection =
            Url::parse(&config.url).map_err(|e| bad(format!("url is not a URL: {e}")))?;
        if !matches!(collection.scheme(), "http" | "https") {
            return Err(bad("url must start with http:// or https://".into()));
        }
        if collection.password().is_some() {
            return Err(bad(
                "the password belongs in password_file, not in the URL".into()
            ));
        }
        // The collection's members are resolved against it: without the slash the last
        // segment would be replaced.
        if !collection.path().ends_with('/') {
            collection.set_path(&format!("{}/", collection.path()));
        }
        if config.user.is_empty() {
            return Err(bad("user (the service account) is empty".into()));
        }
        let text = std::fs::read_to_string(&config.password_file).map_err(|e| {
            bad(format!(
                "cannot read {}: {e}",
                config.password_file.display()
            ))
        })?;
        let password = Secret::new(text.lines().next().unwrap_or("").to_owned());
        let mut settings = DavSettings::new(collection.clone());
        settings.timeout = Duration::from_secs(config.timeout_secs.max(1));
        settings.tls_insecure = config.tls_insecure;
        let http = crate::dav::http_client(&settings).map_err(|e| bad(e.to_string()))?;
        let client = DavClient::new(http, Arc::new(settings), &config.user, password);
        Ok(DavSource {
            inner: Arc::new(Inner {
                name: format!("{collection} as {}", config.user),
                collection,
                client,
                refresh: Duration::from_secs(config.refresh_secs.max(1)),
                state: Mutex::new(State {
                    entries: None,
                    token: None,
                    next_check: Instant::now(),
                    checking: false,
                    failing: false,
                }),
                reading: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            }),
        })
    }

    pub fn name(&self) -> String {
        format!("dav:{}", self.inner.name)
    }

    /// How many refreshes have finished and how many of them read the whole book: a check
    /// that found the token unchanged reads nothing more.
    pub fn refreshes_and_reads(&self) -> (u64, u64) {
        (
            self.inner.refreshes.load(Ordering::Relaxed),
            self.inner.reads.load(Ordering::Relaxed),
        )
    }

    /// Every card, from the cached copy; a copy that is due is checked in the background.
    pub async fn entries(&self) -> Result<Arc<Entries>, DirectoryError> {
        let (cached, due) = {
            let mut s = self.inner.lock();
            let due = s.entries.is_some() && !s.checking && Instant::now() >= s.next_check;
            s.checking |= due;
            (s.entries.clone(), due)
        };
        match cached {
            Some(entries) => {
                if due {
                    let inner = self.inner.clone();
                    tokio::spawn(async move {
                        // The outcome is in the state (and the log); nobody waits for it.
                        let _ = inner.refresh().await;
                    });
                }
                Ok(entries)
            }
            None => self.inner.refresh().await,
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the token, reads the book again if it changed, and records the outcome.
    async fn refresh(&self) -> Result<Arc<Entries>, DirectoryError> {
        let _one = self.reading.lock().await;
        let (known, held) = {
            let s = self.lock();
            // A first load that waited for another one finished meanwhile.
            if let Some(e) = &s.entries
                && !s.checking
                && Instant::now() < s.next_check
            {
                return Ok(e.clone());
            }
            (s.token.clone(), s.entries.is_some())
        };
        let result = self.read(known.filter(|_| held)).await;
        let mut s = self.lock();
        s.checking = false;
        if matches!(result, Ok(Some(_))) {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        // Counted under the lock, so whoever sees the count sees the state it left.
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(read) => {
                if s.failing {
                    tracing::info!(source = %self.name, "CardDAV directory answers again");
                }
                s.failing = false;
                s.next_check = Instant::now() + self.refresh;
                if let Some((token, entries)) = read {
                    s.token = token;
                    s.entries = Some(Arc::new(Entries::new(entries)));
                }
                Ok(s.entries
                    .clone()
                    .unwrap_or_else(|| Arc::new(Entries::new(Vec::new()))))
            }
            Err(e) => {
                s.next_check = Instant::now() + RETRY_AFTER_FAILURE.min(self.refresh);
                if !s.failing {
                    tracing::warn!(source = %self.name, error = %e,
                        "CardDAV directory unavailable; answering from the last copy until it is back");
                }
                s.failing = true;
                s.entries.clone().ok_or(e)
            }
        }
    }

    /// The cards with the token they were read at; None when the token is still `known`.
    async fn read(
        &self,
        known: Option<String>,
    ) -> Result<Option<(Option<String>, Vec<Entry>)>, DirectoryError> {
        if let Some(known) = known {
            let now = self
                .client
                .sync_token(&self.collection)
                .await
                .map_err(|e| self.error(e))?;
            if now.as_deref() == Some(known.as_str()) {
                return Ok(None);
            }
        }
        let (token, members) = self
            .client
            .listing(&self.collection)
            .await
            .map_err(|e| self.error(e))?;
        let urls: Vec<Url> = members.into_iter().map(|m| m.url).collect();
        let mut cards = self
            .client
            .multiget(&self.collection, Kind::AddressBook, &urls)
            .await
            .map_err(|e| self.error(e))?;
        // The server's order is its own; the first of two cards naming one address wins the
        // merge, so the same book must give the same answer every time.
        cards.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
        let mut entries = Vec::with_capacity(cards.len());
        let mut unreadable = 0usize;
        for card in &cards {
            match parse_vcards(card.data.as_deref().unwrap_or("")) {
                Ok(found) => entries.extend(found),
                Err(_) => unreadable += 1,
            }
        }
        if unreadable > 0 {
            tracing::warn!(source = %self.name, unreadable, "CardDAV directory: cards that are no vCard were left out");
        }
        tracing::info!(source = %self.name, entries = entries.len(), "CardDAV directory loaded");
        Ok(Some((token, entries)))
    }

    fn error(&self, e: DavError) -> DirectoryError {
        DirectoryError::Dav {
            name: self.name.clone(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn config(dir: &std::path::Path, url: &str) -> DavDirectoryConfig {
        let password_file = dir.join("secret");
        std::fs::write(&password_file, "s3cret\n").unwrap();
        DavDirectoryConfig {
            url: url.into(),
            user: "gal".into(),
            password_file,
            refresh_secs: 60,
            timeout_secs: 5,
            tls_insecure: false,
        }
    }

    #[test]
    fn settings_are_checked_and_the_password_never_named() {
        let d = tempfile::tempdir().unwrap();
        let s = DavSource::new(&config(d.path(), "http://127.0.0.1:1/gal/book")).unwrap();
        assert_eq!(s.name(), "dav:http://127.0.0.1:1/gal/book/ as gal");
        assert!(!s.name().contains("s3cret"));
        assert!(DavSource::new(&config(d.path(), "ftp://h/x/")).is_err());
        assert!(DavSource::new(&config(d.path(), "http://u:pw@h/x/")).is_err());
        let mut c = config(d.path(), "http://h/x/");
        c.password_file = d.path().join("missing");
        assert!(DavSource::new(&c).is_err());
    }
}

//! The address book behind GAL search, Find's GAL part and ResolveRecipients, combined from
//! any number of sources: a vCard or CSV file ([`file`]), a SQL query against MySQL/MariaDB
//! or PostgreSQL ([`sql`]), LDAP directories ([`ldap`]) and shared CardDAV address books on
//! the DAV server ([`carddav`]).
//!
//! Owns the matching rules, which are the same whatever a source is: Exchange's ambiguous-name
//! resolution (every word of the query is the start of a name, an alias or an address), and
//! how the answers of several sources are merged (asked at once, each within one deadline;
//! the first source that names an address wins, so an entry is never shown twice). A source
//! that is down or slow is left out of the answer and logged; only when every source failed
//! is the lookup an error, which the commands turn into their retryable status.
//! Knows nothing of EAS elements, IMAP or HTTP.

pub mod carddav;
pub mod file;
pub mod ldap;
pub mod sql;

use std::sync::Arc;
use std::time::Duration;

pub use file::{Source, parse_csv, parse_vcards};

/// Why a source could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read directory file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("directory file {path}: {message}")]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("directory.source must be none, vcard:PATH or csv:PATH, not {0:?}")]
    Source(String),
    #[error("SQL directory {name}: {message}")]
    Sql { name: String, message: String },
    #[error("LDAP directory {name}: {message}")]
    Ldap { name: String, message: String },
    #[error("CardDAV directory {name}: {message}")]
    Dav { name: String, message: String },
    #[error("directory {0}: no answer within the deadline")]
    Timeout(String),
    #[error("directory source {name}: {message}")]
    Config { name: String, message: String },
}

/// One person (or shared mailbox) in the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub display_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The first address is the primary one.
    pub emails: Vec<String>,
    pub phone: Option<String>,
    pub mobile_phone: Option<String>,
    pub home_phone: Option<String>,
    pub office: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub alias: Option<String>,
    /// The photo's bytes (JPEG or PNG as given).
    pub photo: Option<Vec<u8>>,
    /// S/MIME certificates (DER X.509), for ResolveRecipients; only LDAP carries them.
    pub certificates: Vec<Vec<u8>>,
}

impl Entry {
    pub fn primary_email(&self) -> Option<&str> {
        self.emails.first().map(String::as_str)
    }

    /// The alias as given, else the local part of the primary address.
    pub fn alias_or_local_part(&self) -> Option<&str> {
        self.alias
            .as_deref()
            .or_else(|| self.primary_email().and_then(|e| e.split('@').next()))
    }

    /// Gives a card without a display name one (first and last name, else the address);
    /// false when there is nothing to show at all.
    pub(crate) fn complete(&mut self) -> bool {
        if self.display_name.is_empty() {
            let joined = [self.first_name.as_deref(), self.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            self.display_name = if joined.is_empty() {
                self.primary_email().unwrap_or("").to_owned()
            } else {
                joined
            };
        }
        !self.display_name.is_empty() || !self.emails.is_empty()
    }

    /// Lower-cased strings a query word may be the start of.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let mut add_words = |s: &str| {
            let lower = s.to_lowercase();
            keys.extend(lower.split_whitespace().map(str::to_owned));
        };
        add_words(&self.display_name);
        for s in [&self.first_name, &self.last_name, &self.alias]
            .into_iter()
            .flatten()
        {
            add_words(s);
        }
        for e in &self.emails {
            keys.push(e.to_lowercase());
        }
        keys
    }
}

/// A source's entries with their lower-cased match keys worked out once (per load, not per
/// search: a cached table is searched far more often than it is read).
pub struct Entries {
    pub list: Vec<Entry>,
    keys: Vec<Box<[String]>>,
}

impl Entries {
    pub fn new(list: Vec<Entry>) -> Entries {
        let keys = list.iter().map(|e| e.keys().into_boxed_slice()).collect();
        Entries { list, keys }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The entries every word is the start of a key of.
    fn matching<'a>(&'a self, words: &'a [String]) -> impl Iterator<Item = &'a Entry> + 'a {
        self.list
            .iter()
            .zip(&self.keys)
            .filter_map(move |(e, keys)| {
                words
                    .iter()
                    .all(|w| keys.iter().any(|k| k.starts_with(w.as_str())))
                    .then_some(e)
            })
    }
}

/// How one name given to ResolveRecipients turned out.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one entry.
    Resolved(Box<Entry>),
    /// Several candidates (all of them, best first); the caller shows at most its limit.
    Ambiguous(Vec<Entry>),
    NotFound,
}

/// Who is asking: LDAP sources configured to bind as the user need the phone's credentials.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    pub login: &'a str,
    pub password: &'a str,
}

/// What one lookup asks of the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Entries some of whose keys start with every word.
    Words(Vec<String>),
    /// Entries with exactly this address.
    Address(String),
}

/// The words of a GAL query, lower-cased.
pub fn query_words(query: &str) -> Vec<String> {
    query
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One configured source.
pub enum Backend {
    File(file::FileSource),
    Sql(sql::SqlSource),
    Ldap(Box<ldap::LdapSource>),
    Dav(carddav::DavSource),
}

impl Backend {
    /// How the source is named in logs and in `check`.
    pub fn name(&self) -> String {
        match self {
            Backend::File(f) => f.name(),
            Backend::Sql(s) => s.name(),
            Backend::Ldap(l) => l.name(),
            Backend::Dav(d) => d.name(),
        }
    }

    /// Candidates for the query; the caller applies the matching rules, so a source may
    /// return more than matches (the file, SQL and CardDAV sources return everything they
    /// hold).
    async fn candidates(
        &self,
        query: &Query,
        asker: Option<Asker<'_>>,
    ) -> Result<Arc<Entries>, DirectoryError> {
        match self {
            Backend::File(f) => f.entries(),
            Backend::Sql(s) => s.entries().await,
            Backend::Dav(d) => d.entries().await,
            Backend::Ldap(l) => l
                .search(query, asker)
                .await
                .map(|v| Arc::new(Entries::new(v))),
        }
    }

    /// What `eas-gateway check` shows: how many entries the source has (LDAP: in one page at
    /// most) and the first of them.
    pub async fn probe(
        &self,
        asker: Option<Asker<'_>>,
    ) -> Result<(usize, Option<Entry>), DirectoryError> {
        let all = match self {
            Backend::File(f) => f.entries()?,
            Backend::Sql(s) => s.entries().await?,
            Backend::Dav(d) => d.entries().await?,
            Backend::Ldap(l) => Arc::new(Entries::new(l.list(asker).await?)),
        };
        Ok((all.len(), all.list.first().cloned()))
    }
}

/// The combined address book.
pub struct Directory {
    sources: Vec<Backend>,
    /// How long one source may take to answer one lookup.
    deadline: Duration,
}

impl Directory {
    /// A directory with the one file source (or none), as `[directory] source` alone gives.
    pub fn new(source: Source) -> Directory {
        let sources = match source {
            Source::None => Vec::new(),
            other => vec![Backend::File(file::FileSource::new(other))],
        };
        Directory::with_sources(sources, Duration::from_secs(5))
    }

    /// Sources in the order their answers are preferred.
    pub fn with_sources(sources: Vec<Backend>, deadline: Duration) -> Directory {
        Directory { sources, deadline }
    }

    /// A directory with no source: every lookup finds nobody.
    pub fn none() -> Directory {
        Directory::with_sources(Vec::new(), Duration::from_secs(5))
    }

    pub fn is_configured(&self) -> bool {
        !self.sources.is_empty()
    }

    pub fn sources(&self) -> &[Backend] {
        &self.sources
    }

    /// Every source asked at once; the answers merged in source order, an address named by an
    /// earlier source hiding the later ones' entry for it. Sources that fail are left out;
    /// all of them failing is the error.
    async fn gather(
        &self,
        query: &Query,
        asker: Option<Asker<'_>>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let asks = self.sources.iter().map(|source| async move {
            match tokio::time::timeout(self.deadline, source.candidates(query, asker)).await {
                Ok(answer) => answer,
                Err(_) => Err(DirectoryError::Timeout(source.name())),
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut last_error = None;
        let mut answered = false;
        for answer in answers {
            match answer {
                Ok(entries) => {
                    answered = true;
                    let hits: Vec<&Entry> = match query {
                        Query::Words(words) => entries.matching(words).collect(),
                        Query::Address(a) => entries
                            .list
                            .iter()
                            .filter(|e| e.emails.iter().any(|m| m.eq_ignore_ascii_case(a)))
                            .collect(),
                    };
                    for e in hits {
                        let new = e.emails.is_empty()
                            || e.emails.iter().all(|m| !seen.contains(&m.to_lowercase()));
                        if new {
                            seen.extend(e.emails.iter().map(|m| m.to_lowercase()));
                            out.push(e.clone());
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "directory source unavailable");
                    last_error = Some(e);
                }
            }
        }
        match last_error {
            Some(e) if !answered => Err(e),
            _ => Ok(out),
        }
    }

    /// Entries matching a GAL query, ordered by display name. Every word of the query must be
    /// the start of one of the entry's names, its alias or one of its addresses.
    pub async fn search(
        &self,
        query: &str,
        asker: Option<Asker<'_>>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let words = query_words(query);
        if words.is_empty() || self.sources.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self.gather(&Query::Words(words), asker).await?;
        found.sort_by_cached_key(|e| e.display_name.to_lowercase());
        Ok(found)
    }

    /// Resolves one recipient as a phone typed it: an address (alone or as `Name <addr>`)
    /// must match one of an entry's addresses exactly; a name resolves when it names one
    /// entry exactly or only one entry matches it.
    pub async fn resolve(
        &self,
        to: &str,
        asker: Option<Asker<'_>>,
    ) -> Result<Resolution, DirectoryError> {
        let to = to.trim();
        if to.is_empty() || self.sources.is_empty() {
            return Ok(Resolution::NotFound);
        }
        if let Some(address) = address_in(to) {
            let found = self
                .gather(&Query::Address(address.to_owned()), asker)
                .await?;
            return Ok(match found.into_iter().next() {
                Some(e) => Resolution::Resolved(Box::new(e)),
                None => Resolution::NotFound,
            });
        }
        let found = self.search(to, asker).await?;
        Ok(pick(found, to))
    }
}

/// The resolution rules over the entries matching `to`.
fn pick(mut found: Vec<Entry>, to: &str) -> Resolution {
    let exact: Vec<usize> = found
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.display_name.eq_ignore_ascii_case(to)
                || e.alias
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(to))
        })
        .map(|(i, _)| i)
        .collect();
    match (found.len(), exact.as_slice()) {
        (0, _) => Resolution::NotFound,
        (1, _) => Resolution::Resolved(Box::new(found.remove(0))),
        (_, [only]) => Resolution::Resolved(Box::new(found.swap_remove(*only))),
        _ => Resolution::Ambiguous(found),
    }
}

/// The address in `addr`, `<addr>` or `Name <addr>`, if the text is one.
fn address_in(s: &str) -> Option<&str> {
    let inner = match (s.rfind('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b => &s[a + 1..b],
        _ => s,
    };
    let inner = inner.trim();
    let (local, domain) = inner.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !inner.contains(char::is_whitespace))
        .then_some(inner)
}

/// Splits a cell that may list several addresses (`a@x; b@x`).
pub(crate) fn split_addresses(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split([';', ','])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
}

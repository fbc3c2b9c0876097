//! The SQL source: one query against MySQL/MariaDB or PostgreSQL (through `sqlx`'s `Any`
//! driver, chosen by the URL's scheme), whose rows are the directory.
//!
//! Owns the connection pool, the column-name convention and the cached copy of the rows. The
//! whole result is kept in memory and read again every `refresh_secs`, so a GAL search costs
//! no round trip and the matching rules are the same as for the file source; a mail server's
//! user table is small. When the database is down, the last good copy keeps answering (and
//! the failure is logged); only a source that has never loaded fails the lookup.
//!
//! Columns are found by name (`AS` in the query): `email` (required; several addresses may be
//! listed separated by `,` or `;`), `display_name`, `first_name`, `last_name`, `phone`,
//! `mobile`, `home_phone`, `company`, `title`, `office`, `alias`, and `photo` (bytes). Other
//! columns are ignored; a missing one is simply empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::{Column, Row};

use super::{DirectoryError, Entries, Entry, split_addresses};
use crate::secret::Secret;

/// `[[directory.sql]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `mysql://user@host:3306/db` (MariaDB too) or `postgres://user@host/db`.
    pub url: String,
    /// A file whose first line is the database password (kept out of the URL and the logs).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// The query; see the module documentation for the column names.
    pub query: String,
    /// Seconds between two reads of the table.
    #[serde(default = "default_refresh")]
    pub refresh_secs: u64,
    /// Rows beyond this are ignored (and a warning logged).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
}

fn default_refresh() -> u64 {
    300
}

fn default_max_rows() -> usize {
    100_000
}

/// How long to wait before trying a database that failed again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

pub struct SqlSource {
    name: String,
    url: Secret<String>,
    query: String,
    refresh: Duration,
    max_rows: usize,
    cache: tokio::sync::Mutex<Cached>,
}

struct Cached {
    /// Made on first use, inside the runtime (a pool spawns tasks).
    pool: Option<sqlx::AnyPool>,
    entries: Option<Arc<Entries>>,
    next_load: Instant,
}

impl SqlSource {
    /// What `config.validate` asks: the settings are usable (nothing is connected).
    pub fn check_config(config: &SqlConfig) -> Result<(), DirectoryError> {
        let scheme = config.url.split("://").next().unwrap_or("");
        if !["mysql", "mariadb", "postgres", "postgresql"].contains(&scheme) {
            return Err(DirectoryError::Config {
                name: redacted(&config.url),
                message: "url must start with mysql:// or postgres://".into(),
            });
        }
        SqlSource::new(config).map(|_| ())
    }

    /// Reads the settings without connecting (the database may come up after the gateway).
    pub fn new(config: &SqlConfig) -> Result<SqlSource, DirectoryError> {
        let name = redacted(&config.url);
        let bad = |message: String| DirectoryError::Config {
            name: name.clone(),
            message,
        };
        let url = match &config.password_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                let password = Secret::new(text.lines().next().unwrap_or("").to_owned());
                with_password(&config.url, password.expose())
                    .ok_or_else(|| bad("the URL has no user name to give the password to".into()))?
            }
            None => Secret::new(config.url.clone()),
        };
        if config.query.trim().is_empty() {
            return Err(bad("the query is empty".into()));
        }
        let url = match url.expose().strip_prefix("mariadb://") {
            Some(rest) => Secret::new(format!("mysql://{rest}")),
            None => url,
        };
        Ok(SqlSource {
            name,
            url,
            query: config.query.clone(),
            refresh: Duration::from_secs(config.refresh_secs.max(1)),
            max_rows: config.max_rows,
            cache: tokio::sync::Mutex::new(Cached {
                pool: None,
                entries: None,
                next_load: Instant::now(),
            }),
        })
    }

    pub fn name(&self) -> String {
        format!("sql:{}", self.name)
    }

    /// Every row, from the cached copy while it is fresh.
    pub async fn entries(&self) -> Result<Arc<Entries>, DirectoryError> {
        let mut cache = self.cache.lock().await;
        if let Some(entries) = &cache.entries {
            if Instant::now() < cache.next_load {
                return Ok(entries.clone());
            }
        }
        if cache.pool.is_none() {
            sqlx::any::install_default_drivers();
            let pool = sqlx::pool::PoolOptions::<sqlx::Any>::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy(self.url.expose())
                .map_err(|e| DirectoryError::Sql {
                    name: self.name.clone(),
                    message: e.to_string(),
                })?;
            cache.pool = Some(pool);
        }
        let pool = cache.pool.clone().expect("just set");
        match self.load(&pool).await {
            Ok(entries) => {
                let entries = Arc::new(Entries::new(entries));
                cache.entries = Some(entries.clone());
                cache.next_load = Instant::now() + self.refresh;
                Ok(entries)
            }
            Err(e) => match cache.entries.clone() {
                Some(old) => {
                    tracing::warn!(error = %e, "SQL directory unavailable; answering from the last copy");
                    cache.next_load = Instant::now() + RETRY_AFTER_FAILURE;
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }

    async fn load(&self, pool: &sqlx::AnyPool) -> Result<Vec<Entry>, DirectoryError> {
        let err = |e: sqlx::Error| DirectoryError::Sql {
            name: self.name.clone(),
            message: e.to_string(),
        };
        let rows = sqlx::query(&self.query)
            .fetch_all(pool)
            .await
            .map_err(err)?;
        if rows.len() > self.max_rows {
            tracing::warn!(rows = rows.len(), max = self.max_rows, source = %self.name,
                "SQL directory has more rows than max_rows; the rest are ignored");
        }
        let mut out = Vec::with_capacity(rows.len().min(self.max_rows));
        for row in rows.iter().take(self.max_rows) {
            let mut e = Entry::default();
            for (i, column) in row.columns().iter().enumerate() {
                let name = column.name().to_ascii_lowercase();
                if name == "photo" {
                    e.photo = row.try_get::<Option<Vec<u8>>, _>(i).ok().flatten();
                    continue;
                }
                let Some(v) = text(row, i) else { continue };
                let some = || Some(v.clone());
                match name.as_str() {
                    "email" => e.emails.extend(split_addresses(&v)),
                    "display_name" => e.display_name = v.clone(),
                    "first_name" => e.first_name = some(),
                    "last_name" => e.last_name = some(),
                    "phone" => e.phone = some(),
                    "mobile" => e.mobile_phone = some(),
                    "home_phone" => e.home_phone = some(),
                    "company" => e.company = some(),
                    "title" => e.title = some(),
                    "office" => e.office = some(),
                    "alias" => e.alias = some(),
                    _ => {}
                }
            }
            if !e.emails.is_empty() && e.complete() {
                out.push(e);
            }
        }
        tracing::info!(source = %self.name, entries = out.len(), "SQL directory loaded");
        Ok(out)
    }
}

/// A column's value as trimmed text, whatever its SQL type; None when NULL or empty.
fn text(row: &sqlx::any::AnyRow, i: usize) -> Option<String> {
    let v = match row.try_get::<Option<String>, _>(i) {
        Ok(v) => v,
        Err(_) => match row.try_get::<Option<i64>, _>(i) {
            Ok(n) => n.map(|n| n.to_string()),
            Err(_) => row
                .try_get::<Option<Vec<u8>>, _>(i)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        },
    }?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// The URL without a password, for logs and `check`.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = match authority.rsplit_once('@') {
                Some((user, host)) => {
                    format!("{}@{host}", user.split(':').next().unwrap_or(""))
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Puts a password into `scheme://user@host…` (percent-encoded).
fn with_password(url: &str, password: &str) -> Option<Secret<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let at = rest[..rest.find('/').unwrap_or(rest.len())].rfind('@')?;
    let user = rest[..at].split(':').next()?;
    let mut encoded = String::new();
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Some(Secret::new(format!(
        "{scheme}://{user}:{encoded}{}",
        &rest[at..]
    )))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn passwords_go_into_the_url_and_never_into_its_name() {
        assert_eq!(
            with_password("mysql://mail@127.0.0.1:3306/db", "p@ss w/rd")
                .unwrap()
                .expose(),
            "mysql://mail:p%40ss%20w%2Frd@127.0.0.1:3306/db"
        );
        assert!(with_password("mysql://127.0.0.1/db", "x").is_none());
        assert_eq!(
            redacted("postgres://mail:secret@db.example/mail"),
            "postgres://mail@db.example/mail"
        );
        assert_eq!(redacted("mysql://db/mail"), "mysql://db/mail");
    }
}

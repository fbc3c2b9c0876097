//! The LDAP source: a search under a base with a filter, the attributes mapped onto directory
//! entries (defaults for `inetOrgPerson`), through `ldap3`.
//!
//! Owns the connection (plain, StartTLS or LDAPS), the bind (anonymous, a service account, or
//! as the phone's user through a DN template) and turning a query into a server-side filter.
//! Every lookup is a search on the server, so the server's access rules decide what a user may
//! see; the filter only narrows the candidates (each query word as the start of a name, an
//! alias or an address), the matching rules of [`super`] decide. Results come in pages
//! (RFC 2696 simple paged results) and stop at `max_entries`.
//!
//! With a service account (or anonymously) one connection is kept and reused; binding as the
//! user opens a connection per lookup, since binds are per connection.

use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use serde::Deserialize;

use super::{Asker, DirectoryError, Entry, Query};
use crate::secret::Secret;

/// `[[directory.ldap]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub starttls: bool,
    /// Accept any certificate (self-signed test servers only).
    #[serde(default)]
    pub tls_insecure: bool,
    /// Where the people are, e.g. `ou=people,dc=example,dc=org`.
    pub base: String,
    /// Which entries are people.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// `anonymous`, `service` (`bind_dn` + `bind_password_file`) or `user` (`user_dn` with
    /// `{user}` replaced by the log-in name and `{local}` by its part before `@`, and the
    /// phone's password).
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default)]
    pub bind_dn: String,
    #[serde(default)]
    pub bind_password_file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub user_dn: String,
    #[serde(default = "default_page")]
    pub page_size: i32,
    /// Most entries one lookup takes from the server.
    #[serde(default = "default_max")]
    pub max_entries: usize,
    #[serde(default)]
    pub attributes: Attributes,
}

/// Which LDAP attribute fills which field (the first one present of a comma-separated list).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attributes {
    pub display_name: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: String,
    pub mobile: String,
    pub home_phone: String,
    pub company: String,
    pub title: String,
    pub office: String,
    pub alias: String,
    pub photo: String,
    /// S/MIME certificates (DER); every value of every listed attribute is kept.
    pub certificate: String,
}

impl Default for Attributes {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        Attributes {
            display_name: s("displayName,cn"),
            first_name: s("givenName"),
            last_name: s("sn"),
            email: s("mail"),
            phone: s("telephoneNumber"),
            mobile: s("mobile"),
            home_phone: s("homePhone"),
            company: s("o"),
            title: s("title"),
            office: s("physicalDeliveryOfficeName,roomNumber"),
            alias: s("uid"),
            photo: s("jpegPhoto,thumbnailPhoto"),
            certificate: s("userCertificate;binary"),
        }
    }
}

fn default_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_bind() -> String {
    "anonymous".into()
}
fn default_page() -> i32 {
    200
}
fn default_max() -> usize {
    1000
}

fn list(attrs: &str) -> Vec<String> {
    attrs
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

enum Bind {
    Anonymous,
    Service {
        dn: String,
        password: Secret<String>,
    },
    User {
        template: String,
    },
}

pub struct LdapSource {
    config: LdapConfig,
    bind: Bind,
    /// The connection shared by lookups that do not bind as the user.
    shared: tokio::sync::Mutex<Option<Ldap>>,
}

impl LdapSource {
    pub fn new(config: &LdapConfig) -> Result<LdapSource, DirectoryError> {
        let bad = |message: String| DirectoryError::Config {
            name: format!("ldap:{}", config.url),
            message,
        };
        if !(config.url.starts_with("ldap://") || config.url.starts_with("ldaps://")) {
            return Err(bad("url must start with ldap:// or ldaps://".into()));
        }
        if config.page_size < 1 || config.max_entries == 0 {
            return Err(bad("page_size and max_entries must be at least 1".into()));
        }
        let bind = match config.bind.as_str() {
            "anonymous" => Bind::Anonymous,
            "service" => {
                let path = config
                    .bind_password_file
                    .as_ref()
                    .ok_or_else(|| bad("bind = \"service\" needs bind_password_file".into()))?;
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                if config.bind_dn.is_empty() {
                    return Err(bad("bind = \"service\" needs bind_dn".into()));
                }
                Bind::Service {
                    dn: config.bind_dn.clone(),
                    password: Secret::new(text.lines().next().unwrap_or("").to_owned()),
                }
            }
            "user" => {
                if !config.user_dn.contains("{user}") && !config.user_dn.contains("{local}") {
                    return Err(bad(
                        "bind = \"user\" needs user_dn with {user} or {local}".into()
                    ));
                }
                Bind::User {
                    template: config.user_dn.clone(),
                }
            }
            other => {
                return Err(bad(format!(
                    "bind must be anonymous, service or user, not {other:?}"
                )));
            }
        };
        Ok(LdapSource {
            config: config.clone(),
            bind,
            shared: tokio::sync::Mutex::new(None),
        })
    }

    pub fn name(&self) -> String {
        format!("ldap:{} {}", self.config.url, self.config.base)
    }

    fn err(&self, e: impl std::fmt::Display) -> DirectoryError {
        DirectoryError::Ldap {
            name: self.name(),
            message: e.to_string(),
        }
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(5))
            .set_starttls(self.config.starttls)
            .set_no_tls_verify(self.config.tls_insecure);
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| self.err(e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// A bound connection: the shared one, or a new one bound as the asking user.
    async fn bound(&self, asker: Option<Asker<'_>>) -> Result<(Ldap, bool), DirectoryError> {
        let (dn, password) = match &self.bind {
            Bind::User { template } => {
                let Some(a) = asker else {
                    return Err(self.err("binds as the user, and no user is asking"));
                };
                let local = a.login.split('@').next().unwrap_or(a.login);
                let dn = template
                    .replace("{user}", &ldap3::dn_escape(a.login))
                    .replace("{local}", &ldap3::dn_escape(local));
                let mut ldap = self.connect().await?;
                ldap.simple_bind(&dn, a.password)
                    .await
                    .and_then(|r| r.success())
                    .map_err(|e| self.err(format!("bind as {dn}: {e}")))?;
                return Ok((ldap, false));
            }
            Bind::Service { dn, password } => (dn.as_str(), password.expose().as_str()),
            Bind::Anonymous => ("", ""),
        };
        let mut shared = self.shared.lock().await;
        if let Some(ldap) = shared.as_mut() {
            if !ldap.is_closed() {
                return Ok((ldap.clone(), true));
            }
        }
        let mut ldap = self.connect().await?;
        if !dn.is_empty() {
            ldap.simple_bind(dn, password)
                .await
                .and_then(|r| r.success())
                .map_err(|e| self.err(format!("bind as {dn}: {e}")))?;
        }
        *shared = Some(ldap.clone());
        Ok((ldap, true))
    }

    /// Candidates for one lookup.
    pub async fn search(
        &self,
        query: &Query,
        asker: Option<Asker<'_>>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let filter = self.filter_for(query);
        self.run(&filter, asker).await
    }

    /// The first page of everyone (for `check`).
    pub async fn list(&self, asker: Option<Asker<'_>>) -> Result<Vec<Entry>, DirectoryError> {
        let filter = self.config.filter.clone();
        self.run(&filter, asker).await
    }

    async fn run(
        &self,
        filter: &str,
        asker: Option<Asker<'_>>,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let (mut ldap, shared) = self.bound(asker).await?;
        let result = self.paged(&mut ldap, filter).await;
        if result.is_err() && shared {
            // A shared connection that broke is dropped, so the next lookup reconnects.
            *self.shared.lock().await = None;
        }
        if !shared {
            let _ = ldap.unbind().await;
        }
        result
    }

    async fn paged(&self, ldap: &mut Ldap, filter: &str) -> Result<Vec<Entry>, DirectoryError> {
        let a = &self.config.attributes;
        let mut attrs: Vec<String> = Vec::new();
        for field in [
            &a.display_name,
            &a.first_name,
            &a.last_name,
            &a.email,
            &a.phone,
            &a.mobile,
            &a.home_phone,
            &a.company,
            &a.title,
            &a.office,
            &a.alias,
            &a.photo,
            &a.certificate,
        ] {
            attrs.extend(list(field));
        }
        let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.config.page_size)),
        ];
        let limit = i32::try_from(self.config.max_entries).unwrap_or(i32::MAX);
        let mut stream = ldap
            .with_search_options(ldap3::SearchOptions::new().sizelimit(limit))
            .streaming_search_with(adapters, &self.config.base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(raw) = stream.next().await.map_err(|e| self.err(e))? {
            if out.len() >= self.config.max_entries {
                // The server's size limit ends the search soon; the rest is read and dropped.
                continue;
            }
            let mut e = self.entry_of(SearchEntry::construct(raw));
            if e.complete() {
                out.push(e);
            }
        }
        let done = stream.finish().await;
        // 4: size limit exceeded (the server's own limit); what came is still good.
        if done.rc != 0 && done.rc != 4 && out.len() < self.config.max_entries {
            return Err(self.err(format!("search failed: {done}")));
        }
        Ok(out)
    }

    fn entry_of(&self, se: SearchEntry) -> Entry {
        let a = &self.config.attributes;
        let first = |names: &str| -> Option<String> {
            list(names).iter().find_map(|n| {
                se.attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(n))
                    .and_then(|(_, v)| v.iter().find(|s| !s.trim().is_empty()))
                    .map(|s| s.trim().to_owned())
            })
        };
        let mut emails = Vec::new();
        for n in list(&a.email) {
            for (k, vs) in &se.attrs {
                if k.eq_ignore_ascii_case(&n) {
                    emails.extend(
                        vs.iter()
                            .map(|v| v.trim().to_owned())
                            .filter(|v| !v.is_empty()),
                    );
                }
            }
        }
        let photo = list(&a.photo).iter().find_map(|n| {
            se.bin_attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .and_then(|(_, v)| v.first().cloned())
        });
        // The server names the attribute as asked (`userCertificate;binary`) or without the
        // transfer option, depending on the server; both are the same attribute.
        let base = |n: &str| n.split(';').next().unwrap_or("").to_ascii_lowercase();
        let mut certificates = Vec::new();
        for n in list(&a.certificate) {
            for (k, vs) in &se.bin_attrs {
                if base(k) == base(&n) {
                    certificates.extend(vs.iter().filter(|v| !v.is_empty()).cloned());
                }
            }
            // ldap3 files a value that happens to be valid UTF-8 under the text attributes.
            for (k, vs) in &se.attrs {
                if base(k) == base(&n) {
                    certificates.extend(
                        vs.iter()
                            .filter(|v| !v.is_empty())
                            .map(|v| v.as_bytes().to_vec()),
                    );
                }
            }
        }
        Entry {
            display_name: first(&a.display_name).unwrap_or_default(),
            first_name: first(&a.first_name),
            last_name: first(&a.last_name),
            emails,
            phone: first(&a.phone),
            mobile_phone: first(&a.mobile),
            home_phone: first(&a.home_phone),
            office: first(&a.office),
            title: first(&a.title),
            company: first(&a.company),
            alias: first(&a.alias),
            photo,
            certificates,
        }
    }

    /// The configured filter narrowed to the query: every word the start of a name, an alias
    /// or an address (or of a later word of the display name), or the address itself.
    fn filter_for(&self, query: &Query) -> String {
        let a = &self.config.attributes;
        match query {
            Query::Address(addr) => {
                let any: String = list(&a.email)
                    .iter()
                    .map(|n| format!("({n}={})", ldap3::ldap_escape(addr)))
                    .collect();
                format!("(&{}(|{any}))", self.config.filter)
            }
            Query::Words(words) => {
                let mut names = Vec::new();
                for field in [
                    &a.display_name,
                    &a.first_name,
                    &a.last_name,
                    &a.alias,
                    &a.email,
                ] {
                    names.extend(list(field));
                }
                let per_word: String = words
                    .iter()
                    .map(|w| {
                        let w = ldap3::ldap_escape(w);
                        let mut any = String::new();
                        for n in &names {
                            any.push_str(&format!("({n}={w}*)"));
                        }
                        for n in list(&a.display_name) {
                            any.push_str(&format!("({n}=* {w}*)"));
                        }
                        format!("(|{any})")
                    })
                    .collect();
                format!("(&{}{per_word})", self.config.filter)
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn query_words_become_an_escaped_prefix_filter() {
        let src = LdapSource::new(&LdapConfig {
            url: "ldap://127.0.0.1".into(),
            starttls: false,
            tls_insecure: false,
            base: "dc=x".into(),
            filter: default_filter(),
            bind: "anonymous".into(),
            bind_dn: String::new(),
            bind_password_file: None,
            user_dn: String::new(),
            page_size: 10,
            max_entries: 10,
            attributes: Attributes {
                display_name: "cn".into(),
                first_name: String::new(),
                last_name: String::new(),
                alias: String::new(),
                email: "mail".into(),
                ..Attributes::default()
            },
        })
        .unwrap();
        assert_eq!(
            src.filter_for(&Query::Words(vec!["a*(".into()])),
            "(&(objectClass=inetOrgPerson)(|(cn=a\\2a\\28*)(mail=a\\2a\\28*)(cn=* a\\2a\\28*)))"
        );
        assert_eq!(
            src.filter_for(&Query::Address("b@x.org".into())),
            "(&(objectClass=inetOrgPerson)(|(mail=b@x.org)))"
        );
    }
}

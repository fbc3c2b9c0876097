//! The WebDAV client behind contacts and calendars: CardDAV (RFC 6352) and CalDAV (RFC 4791)
//! discovery (RFC 6764), change listing by `sync-collection` (RFC 6578) or ETags, multiget,
//! and the writes (PUT/DELETE with preconditions, extended MKCOL, MKCALENDAR, PROPPATCH).
//!
//! Owns the HTTP conversation with the user's DAV server and the mapping of its answers to
//! [`DavError`]. The XML forms are in [`xml`] (pure). It knows nothing of EAS, vCard or
//! iCalendar content: bodies go in and out as strings. It must not use `eas`, `http` or
//! `imap`; the commands reach it through their backends.
//!
//! The user's credentials are the phone's (Basic auth), the user name optionally rewritten by
//! a template; the password stays a [`Secret`] and is never logged.

pub mod xml;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::secret::Secret;
pub use xml::Kind;
use xml::{Multistatus, Prop};

/// Why a DAV request failed. [`DavError::is_retryable`] tells the caller whether to answer
/// the phone "try again" (never an empty folder) or a definite refusal.
#[derive(Debug, thiserror::Error)]
pub enum DavError {
    /// No connection could be made (refused, DNS, TLS).
    #[error("DAV server unreachable: {0}")]
    Unreachable(String),
    /// The server did not answer within the configured time.
    #[error("DAV server did not answer in time")]
    Timeout,
    /// 401: the server refused the user's credentials.
    #[error("DAV server refused the credentials (401)")]
    Unauthorized,
    /// 403: the user may not do this here.
    #[error("DAV server forbids this (403)")]
    Forbidden,
    /// 404 (or 410): the resource or collection is not there.
    #[error("not found on the DAV server")]
    NotFound,
    /// 412: the ETag precondition failed; the resource changed (or exists) meanwhile.
    #[error("the resource changed on the DAV server (412)")]
    PreconditionFailed,
    /// 507: the server is out of space or quota.
    #[error("DAV server out of storage (507)")]
    InsufficientStorage,
    /// The sync token is no longer valid; list the collection again.
    #[error("the sync token is no longer valid")]
    InvalidSyncToken,
    /// 405 / 501: the server does not do this (e.g. no MKCOL for address books).
    #[error("DAV server does not allow {method} here ({status})")]
    NotAllowed { method: String, status: u16 },
    /// The body was not the XML it should be.
    #[error("DAV server answered bad XML: {0}")]
    BadXml(#[from] xml::XmlError),
    /// The answer was larger than the configured bound.
    #[error("DAV answer larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Any other status.
    #[error("DAV server answered {status} to {method}")]
    Status { method: String, status: u16 },
    /// Discovery found no principal or no home set.
    #[error("DAV discovery: {0}")]
    Discovery(String),
    /// The configuration (URL, template) cannot be used.
    #[error("DAV configuration: {0}")]
    Config(String),
}

impl DavError {
    /// Whether trying again later may succeed (server down, slow, or failing for now).
    pub fn is_retryable(&self) -> bool {
        match self {
            DavError::Unreachable(_) | DavError::Timeout | DavError::TooLarge { .. } => true,
            DavError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How to reach the DAV server (built from `[dav]` by `crate::config`).
#[derive(Debug, Clone)]
pub struct DavSettings {
    /// The server's URL: its root (discovery starts at `/.well-known/`) or a context path.
    pub url: Url,
    /// The DAV user name made from the login: `%u` the whole login, `%l` its local part,
    /// `%d` its domain. `None`: the login as is.
    pub user_template: Option<String>,
    /// Per request.
    pub timeout: Duration,
    /// The largest answer read; a larger one fails with [`DavError::TooLarge`].
    pub max_response_bytes: usize,
    /// Accept any TLS certificate (self-signed test servers only).
    pub tls_insecure: bool,
}

impl DavSettings {
    pub fn new(url: Url) -> DavSettings {
        DavSettings {
            url,
            user_template: None,
            timeout: Duration::from_secs(30),
            max_response_bytes: 64 << 20,
            tls_insecure: false,
        }
    }

    /// The DAV user name for `login`.
    pub fn user_name(&self, login: &str) -> String {
        let Some(t) = &self.user_template else {
            return login.to_owned();
        };
        let (local, domain) = login.split_once('@').unwrap_or((login, ""));
        t.replace("%u", login)
            .replace("%l", local)
            .replace("%d", domain)
    }
}

/// A collection found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub url: Url,
    pub kind: Kind,
    pub display_name: Option<String>,
    /// For calendars: the components it holds (`VEVENT`, `VTODO`); empty when unstated.
    pub components: Vec<String>,
    pub ctag: Option<String>,
    pub sync_token: Option<String>,
}

/// What discovery found for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    pub principal: Option<Url>,
    pub addressbook_homes: Vec<Url>,
    pub calendar_homes: Vec<Url>,
    pub collections: Vec<Collection>,
}

/// A member of a collection: where it is, its ETag and (from multiget or GET) its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: Url,
    pub etag: Option<String>,
    pub data: Option<String>,
}

/// What changed since a sync token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The token to store for the next call.
    pub token: Option<String>,
    /// Added or changed members (with their ETags, without data).
    pub changed: Vec<Member>,
    /// Members gone.
    pub removed: Vec<Url>,
    /// The server cut the listing short (507 on the request URL): ask again with `token`.
    pub truncated: bool,
}

/// The condition of a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write<'a> {
    /// Only if nothing is there yet (`If-None-Match: *`).
    Create,
    /// Only if the resource still has this ETag (`If-Match`).
    Replace(&'a str),
}

/// An answer read within the bound.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// One user's connection to the DAV server. Cheap to clone (the HTTP pool is shared).
#[derive(Clone)]
pub struct DavClient {
    http: reqwest::Client,
    settings: Arc<DavSettings>,
    user: String,
    password: Secret<String>,
}

impl std::fmt::Debug for DavClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DavClient")
            .field("url", &self.settings.url.as_str())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// How many redirects discovery follows (RFC 6764 allows a chain; loops end here).
const MAX_REDIRECTS: usize = 5;
/// Hrefs per multiget request, so one answer stays a moderate size.
pub const MULTIGET_BATCH: usize = 100;

/// The HTTP client all users share (one connection pool per process and TLS mode).
pub fn http_client(settings: &DavSettings) -> Result<reqwest::Client, DavError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("eas-gateway/", env!("CARGO_PKG_VERSION")));
    if settings.url.scheme() == "https" {
        if settings.tls_insecure {
            b = b.danger_accept_invalid_certs(true);
        } else {
            for cert in native_roots()? {
                b = b.add_root_certificate(cert.clone());
            }
        }
    }
    b.build().map_err(|e| DavError::Config(e.to_string()))
}

fn native_roots() -> Result<&'static [reqwest::Certificate], DavError> {
    static ROOTS: OnceLock<Result<Vec<reqwest::Certificate>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let certs: Vec<_> = found
                .certs
                .iter()
                .filter_map(|c| reqwest::Certificate::from_der(c.as_ref()).ok())
                .collect();
            if certs.is_empty() {
                Err("no trusted root certificates found (install ca-certificates)".into())
            } else {
                Ok(certs)
            }
        })
        .as_deref()
        .map_err(|e| DavError::Config(e.clone()))
}

impl DavClient {
    /// A client for `login` (the phone's user) with the password that passed IMAP LOGIN.
    pub fn new(
        http: reqwest::Client,
        settings: Arc<DavSettings>,
        login: &str,
        password: Secret<String>,
    ) -> DavClient {
        DavClient {
            user: settings.user_name(login),
            http,
            settings,
            password,
        }
    }

    /// The DAV user name in use.
    pub fn user(&self) -> &str {
        &self.user
    }

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).expect("a valid method name")
    }

    async fn send(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&'static str, String)],
        body: Option<String>,
    ) -> Result<Answer, DavError> {
        let started = std::time::Instant::now();
        let result = self.exchange(method, url, headers, body).await;
        // Failed requests count too: a slow or refusing server is what the histogram is for.
        crate::metrics::dav_round_trip(method, started.elapsed());
        tracing::debug!(
            method,
            path = url.path(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "DAV round trip"
        );
        result
    }

    /// One request and its whole (bounded) answer.
    async fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&'static str, String)],
        body: Option<String>,
    ) -> Result<Answer, DavError> {
        let mut req = self
            .http
            .request(Self::method(method), url.clone())
            .basic_auth(&self.user, Some(self.password.expose()));
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| DavError::Config(format!("bad {name} header value")))?;
            req = req.header(*name, value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let mut resp = req.send().await.map_err(transport)?;
        let limit = self.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(DavError::TooLarge { limit });
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > limit {
                return Err(DavError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// PROPFIND with `depth`; a multistatus or an error for the status.
    pub async fn propfind(
        &self,
        url: &Url,
        depth: u8,
        props: &[Prop],
    ) -> Result<Multistatus, DavError> {
        let a = self
            .send(
                "PROPFIND",
                url,
                &[("Depth", depth.to_string()), ("Content-Type", XML.into())],
                Some(xml::propfind(props)),
            )
            .await?;
        multistatus("PROPFIND", a)
    }

    /// RFC 6764 discovery of `kinds` (address books, calendars or both) for this user.
    pub async fn discover(&self, kinds: &[Kind]) -> Result<Discovery, DavError> {
        let principal = self.principal(kinds).await?;
        let mut found = Discovery {
            principal: Some(principal.clone()),
            ..Discovery::default()
        };
        let ms = self
            .propfind(
                &principal,
                0,
                &[xml::ADDRESSBOOK_HOME_SET, xml::CALENDAR_HOME_SET],
            )
            .await?;
        for r in &ms.responses {
            if let Some(p) = r.prop(xml::CARDDAV, "addressbook-home-set") {
                found
                    .addressbook_homes
                    .extend(self.join_all(&principal, &p.hrefs()));
            }
            if let Some(p) = r.prop(xml::CALDAV, "calendar-home-set") {
                found
                    .calendar_homes
                    .extend(self.join_all(&principal, &p.hrefs()));
            }
        }
        let mut homes = Vec::new();
        if kinds.contains(&Kind::AddressBook) {
            homes.extend(found.addressbook_homes.iter().cloned());
        }
        if kinds.contains(&Kind::Calendar) {
            homes.extend(found.calendar_homes.iter().cloned());
        }
        homes.dedup();
        if homes.is_empty() {
            return Err(DavError::Discovery(format!(
                "the principal {principal} names no home set"
            )));
        }
        for home in homes {
            for c in self.collections(&home).await? {
                if kinds.contains(&c.kind) && !found.collections.iter().any(|f| f.url == c.url) {
                    found.collections.push(c);
                }
            }
        }
        Ok(found)
    }

    /// The user's principal: from the configured URL when it has a path, else from
    /// `/.well-known/carddav` (or caldav), following redirects, else from the root.
    pub async fn principal(&self, kinds: &[Kind]) -> Result<Url, DavError> {
        let base = &self.settings.url;
        let mut starts = Vec::new();
        if base.path() != "/" && !base.path().is_empty() {
            starts.push(base.clone());
        }
        for k in kinds {
            let well_known = match k {
                Kind::AddressBook => "/.well-known/carddav",
                Kind::Calendar => "/.well-known/caldav",
            };
            starts.push(
                base.join(well_known)
                    .map_err(|e| DavError::Config(e.to_string()))?,
            );
        }
        starts.push(
            base.join("/")
                .map_err(|e| DavError::Config(e.to_string()))?,
        );
        let mut last = None;
        for start in starts {
            match self.principal_from(start).await {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e @ (DavError::NotFound | DavError::NotAllowed { .. })) => last = Some(e),
                Err(DavError::Status { .. } | DavError::BadXml(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(e) => DavError::Discovery(format!("no current-user-principal found ({e})")),
            None => DavError::Discovery("no current-user-principal found".into()),
        })
    }

    async fn principal_from(&self, start: Url) -> Result<Option<Url>, DavError> {
        let mut url = start;
        for _ in 0..=MAX_REDIRECTS {
            let a = self
                .send(
                    "PROPFIND",
                    &url,
                    &[("Depth", "0".into()), ("Content-Type", XML.into())],
                    Some(xml::propfind(&[xml::CURRENT_USER_PRINCIPAL])),
                )
                .await?;
            if a.status.is_redirection() {
                let location = a
                    .headers
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| DavError::Discovery("a redirect without Location".into()))?;
                url = url
                    .join(location)
                    .map_err(|e| DavError::Discovery(format!("bad redirect: {e}")))?;
                continue;
            }
            let ms = multistatus("PROPFIND", a)?;
            let href = ms
                .responses
                .iter()
                .filter_map(|r| r.prop(xml::DAV, "current-user-principal"))
                .flat_map(|p| p.hrefs())
                .next();
            return Ok(href.and_then(|h| url.join(&h).ok()));
        }
        Err(DavError::Discovery("too many redirects".into()))
    }

    fn join_all(&self, base: &Url, hrefs: &[String]) -> Vec<Url> {
        hrefs.iter().filter_map(|h| base.join(h).ok()).collect()
    }

    /// The address books and calendars directly below `home`.
    pub async fn collections(&self, home: &Url) -> Result<Vec<Collection>, DavError> {
        let ms = self
            .propfind(
                home,
                1,
                &[
                    xml::RESOURCETYPE,
                    xml::DISPLAYNAME,
                    xml::GETCTAG,
                    xml::SYNC_TOKEN,
                    xml::SUPPORTED_CALENDAR_COMPONENT_SET,
                ],
            )
            .await?;
        let mut out = Vec::new();
        for r in &ms.responses {
            let kind = if r.has_type(xml::CARDDAV, "addressbook") {
                Kind::AddressBook
            } else if r.has_type(xml::CALDAV, "calendar") {
                Kind::Calendar
            } else {
                continue;
            };
            let Ok(url) = home.join(&r.href) else {
                continue;
            };
            out.push(Collection {
                url,
                kind,
                display_name: r.text(xml::DAV, "displayname"),
                components: match kind {
                    Kind::Calendar => r
                        .prop(xml::CALDAV, "supported-calendar-component-set")
                        .map(xml::components)
                        .unwrap_or_default(),
                    Kind::AddressBook => Vec::new(),
                },
                ctag: r.text(xml::CALSERVER, "getctag"),
                sync_token: r.text(xml::DAV, "sync-token"),
            });
        }
        Ok(out)
    }

    /// The collection's current sync token, else its CTag: the "anything changed?" of a Sync
    /// and the push check. A Depth-0 PROPFIND for the sync token alone, and only when the
    /// server has none a second one for the CTag: Radicale computes each property it is asked
    /// for from every member, so asking for both made a check at 1,000 contacts about twice as
    /// slow (88–111 ms against 48–55 ms, docs/benchmarks.md "Push for address books").
    pub async fn sync_token(&self, collection: &Url) -> Result<Option<String>, DavError> {
        let ms = self.propfind(collection, 0, &[xml::SYNC_TOKEN]).await?;
        if let Some(t) = ms
            .responses
            .iter()
            .find_map(|r| r.text(xml::DAV, "sync-token"))
        {
            return Ok(Some(t));
        }
        let ms = self.propfind(collection, 0, &[xml::GETCTAG]).await?;
        Ok(ms
            .responses
            .iter()
            .find_map(|r| r.text(xml::CALSERVER, "getctag")))
    }

    /// `sync-collection` since `token` (`None`: everything). An expired token gives
    /// [`DavError::InvalidSyncToken`]; then [`DavClient::list`] and compare ETags.
    pub async fn sync_collection(
        &self,
        collection: &Url,
        token: Option<&str>,
    ) -> Result<Changes, DavError> {
        let a = self
            .send(
                "REPORT",
                collection,
                &[("Depth", "0".into()), ("Content-Type", XML.into())],
                Some(xml::sync_collection(token, &[xml::GETETAG])),
            )
            .await?;
        if token.is_some()
            && matches!(a.status.as_u16(), 403 | 409 | 412)
            && xml::names_precondition(&a.body, "valid-sync-token")
        {
            return Err(DavError::InvalidSyncToken);
        }
        let ms = multistatus("REPORT", a)?;
        let mut out = Changes {
            token: ms.sync_token.clone(),
            ..Changes::default()
        };
        for r in ms.responses {
            let Ok(url) = collection.join(&r.href) else {
                continue;
            };
            if url.path() == collection.path() {
                out.truncated |= r.status == Some(507);
                continue;
            }
            match r.status {
                Some(404 | 410) => out.removed.push(url),
                _ => out.changed.push(Member {
                    etag: r.etag(),
                    url,
                    data: None,
                }),
            }
        }
        Ok(out)
    }

    /// Every member with its ETag (Depth-1 PROPFIND): change detection for servers without
    /// sync-collection.
    pub async fn list(&self, collection: &Url) -> Result<Vec<Member>, DavError> {
        Ok(self.listing(collection).await?.1)
    }

    /// The collection's sync token (or CTag) and every member with its ETag, as of one
    /// moment: a `sync-collection` REPORT without a token where the server has it, else one
    /// Depth-1 PROPFIND.
    ///
    /// The REPORT first because it is what such a server answers fastest: Radicale 3.1.8
    /// lists 1,000 contacts in a fraction of the time its PROPFIND takes, which evaluates
    /// every property for every member (docs/benchmarks.md, "Contacts and calendars"). The
    /// token it returns is the collection's `sync-token` property, so it compares with
    /// [`DavClient::sync_token`]'s.
    pub async fn listing(
        &self,
        collection: &Url,
    ) -> Result<(Option<String>, Vec<Member>), DavError> {
        match self.sync_collection(collection, None).await {
            Ok(c) if c.token.is_some() && !c.truncated => {
                let members = c
                    .changed
                    .into_iter()
                    // Sub-collections are not members.
                    .filter(|m| !m.url.path().ends_with('/'))
                    .collect();
                return Ok((c.token, members));
            }
            // Cut short or tokenless: the PROPFIND gives the whole collection.
            Ok(_) => {}
            Err(
                e @ (DavError::Unreachable(_)
                | DavError::Timeout
                | DavError::Unauthorized
                | DavError::NotFound),
            ) => return Err(e),
            // Not supported here (403, 405, 501, a failure, a body that is no multistatus):
            // the listing below needs nothing but WebDAV, and tells a server that is down.
            Err(_) => {}
        }
        let ms = self
            .propfind(
                collection,
                1,
                &[
                    xml::GETETAG,
                    xml::RESOURCETYPE,
                    xml::SYNC_TOKEN,
                    xml::GETCTAG,
                ],
            )
            .await?;
        let mut token = None;
        let mut members = Vec::new();
        for r in ms.responses {
            let Ok(url) = collection.join(&r.href) else {
                continue;
            };
            if url.path() == collection.path() {
                token = r
                    .text(xml::DAV, "sync-token")
                    .or_else(|| r.text(xml::CALSERVER, "getctag"));
                continue;
            }
            // Sub-collections are not members.
            if r.prop(xml::DAV, "resourcetype")
                .is_some_and(|t| !t.children.is_empty())
            {
                continue;
            }
            members.push(Member {
                etag: r.etag(),
                url,
                data: None,
            });
        }
        Ok((token, members))
    }

    /// The data and ETags of `members` (addressbook-multiget or calendar-multiget), in
    /// batches of [`MULTIGET_BATCH`]. Members the server no longer has are left out.
    pub async fn multiget(
        &self,
        collection: &Url,
        kind: Kind,
        members: &[Url],
    ) -> Result<Vec<Member>, DavError> {
        let data_prop = match kind {
            Kind::AddressBook => (xml::CARDDAV, "address-data"),
            Kind::Calendar => (xml::CALDAV, "calendar-data"),
        };
        let mut out = Vec::with_capacity(members.len());
        for batch in members.chunks(MULTIGET_BATCH) {
            let hrefs: Vec<String> = batch.iter().map(|u| u.path().to_owned()).collect();
            let a = self
                .send(
                    "REPORT",
                    collection,
                    &[("Depth", "1".into()), ("Content-Type", XML.into())],
                    Some(xml::multiget(kind, &hrefs)),
                )
                .await?;
            let ms = multistatus("REPORT", a)?;
            for r in ms.responses {
                let Some(data) = r.prop(data_prop.0, data_prop.1).map(|d| d.text.clone()) else {
                    continue;
                };
                let Ok(url) = collection.join(&r.href) else {
                    continue;
                };
                out.push(Member {
                    etag: r.etag(),
                    url,
                    data: Some(data),
                });
            }
        }
        Ok(out)
    }

    /// The members of a calendar collection holding `component` (`VEVENT` or `VTODO`) with
    /// their ETags, and their data when `with_data` (one `calendar-query` REPORT).
    pub async fn calendar_query(
        &self,
        collection: &Url,
        component: &str,
        with_data: bool,
    ) -> Result<Vec<Member>, DavError> {
        let a = self
            .send(
                "REPORT",
                collection,
                &[("Depth", "1".into()), ("Content-Type", XML.into())],
                Some(xml::calendar_query(component, with_data)),
            )
            .await?;
        let ms = multistatus("REPORT", a)?;
        let mut out = Vec::with_capacity(ms.responses.len());
        for r in ms.responses {
            let Ok(url) = collection.join(&r.href) else {
                continue;
            };
            if url.path() == collection.path() || matches!(r.status, Some(404 | 410)) {
                continue;
            }
            let data = if with_data {
                r.prop(xml::CALDAV, "calendar-data").map(|d| d.text.clone())
            } else {
                None
            };
            out.push(Member {
                etag: r.etag(),
                url,
                data,
            });
        }
        Ok(out)
    }

    /// The VEVENT objects of a calendar collection whose UID is `uid`, with their data (one
    /// `calendar-query` REPORT; servers answer it by reading every object, so callers try
    /// the conventional `<UID>.ics` with [`DavClient::get`] first).
    pub async fn find_by_uid(&self, collection: &Url, uid: &str) -> Result<Vec<Member>, DavError> {
        let a = self
            .send(
                "REPORT",
                collection,
                &[("Depth", "1".into()), ("Content-Type", XML.into())],
                Some(xml::calendar_query_uid(uid)),
            )
            .await?;
        let ms = multistatus("REPORT", a)?;
        let mut out = Vec::new();
        for r in ms.responses {
            let Ok(url) = collection.join(&r.href) else {
                continue;
            };
            if url.path() == collection.path() || matches!(r.status, Some(404 | 410)) {
                continue;
            }
            let Some(data) = r.prop(xml::CALDAV, "calendar-data").map(|d| d.text.clone()) else {
                continue;
            };
            out.push(Member {
                etag: r.etag(),
                url,
                data: Some(data),
            });
        }
        Ok(out)
    }

    /// The busy time of a calendar collection in `[start, end)` as the server's VFREEBUSY
    /// (a `free-busy-query` REPORT, RFC 4791 §7.10); `None` when the server does not answer
    /// that report (Radicale 3.1 does not) or refuses it.
    pub async fn free_busy(
        &self,
        collection: &Url,
        start: &str,
        end: &str,
    ) -> Result<Option<String>, DavError> {
        let a = self
            .send(
                "REPORT",
                collection,
                &[("Depth", "1".into()), ("Content-Type", XML.into())],
                Some(xml::free_busy_query(start, end)),
            )
            .await?;
        match status_error("REPORT", a.status.as_u16()) {
            Ok(()) if a.status == StatusCode::OK => {
                Ok(Some(String::from_utf8_lossy(&a.body).into_owned()))
            }
            Ok(()) => Ok(None),
            Err(e) if e.is_retryable() => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The VEVENT objects of a calendar collection with an occurrence in `[start, end)`, with
    /// their data (a `calendar-query` with a time-range).
    pub async fn events_between(
        &self,
        collection: &Url,
        start: &str,
        end: &str,
    ) -> Result<Vec<Member>, DavError> {
        let a = self
            .send(
                "REPORT",
                collection,
                &[("Depth", "1".into()), ("Content-Type", XML.into())],
                Some(xml::calendar_query_range(start, end)),
            )
            .await?;
        let ms = multistatus("REPORT", a)?;
        let mut out = Vec::new();
        for r in ms.responses {
            let Ok(url) = collection.join(&r.href) else {
                continue;
            };
            let Some(data) = r.prop(xml::CALDAV, "calendar-data").map(|d| d.text.clone()) else {
                continue;
            };
            out.push(Member {
                etag: r.etag(),
                url,
                data: Some(data),
            });
        }
        Ok(out)
    }

    /// GET of one object.
    pub async fn get(&self, url: &Url) -> Result<Member, DavError> {
        let a = self.send("GET", url, &[], None).await?;
        check("GET", &a)?;
        Ok(Member {
            url: url.clone(),
            etag: etag(&a.headers),
            data: Some(String::from_utf8_lossy(&a.body).into_owned()),
        })
    }

    /// PUT of `body` under `condition`; the new ETag when the server tells it (some do not:
    /// then list or GET for it).
    pub async fn put(
        &self,
        url: &Url,
        content_type: &str,
        body: String,
        condition: Write<'_>,
    ) -> Result<Option<String>, DavError> {
        let cond = match condition {
            Write::Create => ("If-None-Match", "*".to_owned()),
            Write::Replace(etag) => ("If-Match", etag.to_owned()),
        };
        let a = self
            .send(
                "PUT",
                url,
                &[cond, ("Content-Type", content_type.to_owned())],
                Some(body),
            )
            .await?;
        check("PUT", &a)?;
        // Xandikos answers a failed precondition (no-uid-conflict) with a 207 holding 412.
        if a.status == StatusCode::MULTI_STATUS {
            let ms = xml::parse_multistatus(&a.body)?;
            if let Some(s) = ms
                .responses
                .iter()
                .filter_map(|r| r.status)
                .find(|s| !(200..300).contains(s))
            {
                status_error("PUT", s)?;
            }
        }
        Ok(etag(&a.headers))
    }

    /// DELETE, only if the ETag still matches when one is given.
    pub async fn delete(&self, url: &Url, if_match: Option<&str>) -> Result<(), DavError> {
        let headers: Vec<(&'static str, String)> = if_match
            .map(|e| vec![("If-Match", e.to_owned())])
            .unwrap_or_default();
        let a = self.send("DELETE", url, &headers, None).await?;
        check("DELETE", &a)
    }

    /// Creates an address book (extended MKCOL) or calendar (MKCALENDAR) at `url`.
    pub async fn make_collection(
        &self,
        url: &Url,
        kind: Kind,
        display_name: &str,
        components: &[&str],
    ) -> Result<(), DavError> {
        let method = match kind {
            Kind::AddressBook => "MKCOL",
            Kind::Calendar => "MKCALENDAR",
        };
        let a = self
            .send(
                method,
                url,
                &[("Content-Type", XML.into())],
                Some(xml::make_collection(kind, display_name, components)),
            )
            .await?;
        check(method, &a)
    }

    /// Renames a collection (PROPPATCH of `displayname`).
    pub async fn rename(&self, url: &Url, display_name: &str) -> Result<(), DavError> {
        let a = self
            .send(
                "PROPPATCH",
                url,
                &[("Content-Type", XML.into())],
                Some(xml::proppatch_displayname(display_name)),
            )
            .await?;
        check("PROPPATCH", &a)?;
        // A 207 may still refuse the property inside.
        if a.status == StatusCode::MULTI_STATUS {
            let ms = xml::parse_multistatus(&a.body)?;
            if ms.responses.iter().any(|r| !r.missing.is_empty()) {
                return Err(DavError::Forbidden);
            }
        }
        Ok(())
    }
}

const XML: &str = "application/xml; charset=utf-8";

fn transport(e: reqwest::Error) -> DavError {
    if e.is_timeout() {
        DavError::Timeout
    } else {
        // The URL is the server's, never the user's data; the error chain names the cause.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        DavError::Unreachable(text)
    }
}

fn etag(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The error a status means, or `Ok` for 2xx.
fn check(method: &str, a: &Answer) -> Result<(), DavError> {
    status_error(method, a.status.as_u16())
}

/// Maps a status to [`DavError`] (2xx → `Ok`).
pub fn status_error(method: &str, status: u16) -> Result<(), DavError> {
    Err(match status {
        200..=299 => return Ok(()),
        401 => DavError::Unauthorized,
        403 => DavError::Forbidden,
        404 | 410 => DavError::NotFound,
        405 | 501 => DavError::NotAllowed {
            method: method.to_owned(),
            status,
        },
        412 => DavError::PreconditionFailed,
        507 => DavError::InsufficientStorage,
        _ => DavError::Status {
            method: method.to_owned(),
            status,
        },
    })
}

fn multistatus(method: &str, a: Answer) -> Result<Multistatus, DavError> {
    check(method, &a)?;
    if a.status != StatusCode::MULTI_STATUS {
        return Err(DavError::Status {
            method: method.to_owned(),
            status: a.status.as_u16(),
        });
    }
    Ok(xml::parse_multistatus(&a.body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_name_templates() {
        let mut s = DavSettings::new(Url::parse("https://dav.example/").unwrap());
        assert_eq!(s.user_name("alice@example.com"), "alice@example.com");
        s.user_template = Some("%l".into());
        assert_eq!(s.user_name("alice@example.com"), "alice");
        s.user_template = Some("%d/%l".into());
        assert_eq!(s.user_name("alice@example.com"), "example.com/alice");
        assert_eq!(s.user_name("bob"), "/bob");
    }

    #[test]
    fn statuses_map_to_errors() {
        assert!(status_error("PUT", 201).is_ok());
        assert!(matches!(
            status_error("PUT", 412),
            Err(DavError::PreconditionFailed)
        ));
        assert!(matches!(
            status_error("MKCOL", 405),
            Err(DavError::NotAllowed { .. })
        ));
        assert!(status_error("GET", 503).unwrap_err().is_retryable());
        assert!(!status_error("GET", 401).unwrap_err().is_retryable());
        assert!(DavError::Timeout.is_retryable());
    }

    #[test]
    fn debug_hides_the_password() {
        let s = Arc::new(DavSettings::new(Url::parse("http://127.0.0.1:1/").unwrap()));
        let c = DavClient::new(
            http_client(&s).unwrap(),
            s,
            "alice",
            Secret::new("hunter2".into()),
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}

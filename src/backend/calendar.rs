//! Calendars (VEVENT) and task lists (VTODO) on a CalDAV server as an [`ItemStore`]: one
//! store type serves both, the folder's EAS type ([`kinds`]) telling which component a
//! collection is read for. The objects are rendered and merged by [`crate::calendar`], the
//! HTTP is [`crate::dav`]'s.
//!
//! - A collection's locator is its URL; the task folder of a collection adds the fragment
//!   `#tasks` ([`TASKS_FRAGMENT`]), so a collection holding both components is two folders with
//!   ids of their own. The [`CalendarToken`] holds a hash of the locator and of the sync token
//!   or CTag (one Depth-0 PROPFIND, what a Sync that finds nothing new costs).
//! - The listing is a `calendar-query` for the folder's component (hrefs and ETags); item ids
//!   are made from hrefs and folds from href + ETag exactly as for contacts
//!   ([`super::contacts::assign_ids`], [`super::contacts::fold_of`]).
//! - A FilterType window on a calendar selects by occurrence: [`crate::calendar::window`]
//!   decides, a recurring series included when any occurrence ends inside; the others are
//!   `in_window = false` (soft deletes). Decisions are remembered per (href, ETag, window
//!   start) for all requests, so only objects not decided yet are read (one
//!   calendar-multiget), and what was read is kept for the fetch of the same request.
//! - A phone's Change is merged into the stored object and PUT with `If-Match` (16.x
//!   InstanceId inside the ApplicationData: only that occurrence); Delete is a DELETE with
//!   `If-Match`; Add is a PUT of a new object with `If-None-Match: *` under a fresh UID when
//!   the phone sends none. A 412 or a moved fold: the server's version wins.
//! - A server that is down gives [`BackendError::Dav`] (retryable), never an empty listing.
//! - An object that does not parse is left out of the answer with a log line (the folder goes
//!   on); the server keeps it untouched.
//!
//! Times without a zone are read in UTC: the gateway knows no user zone yet.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDateTime};
use eas_wbxml::Element;

use super::davitems::{
    DavToken, added, assign_ids, delete_member, fnv64, fold_of, new_uid, refused_by_server,
};
use super::snapshot::{self, Snapshot};
use super::{
    AddContext, Added, BackendError, Changed, CollectionRef, Fold, ItemId, ItemStore, Listing,
    RenderOptions, Rendered,
};
use crate::backend::kinds::{self, Class};
use crate::calendar::event::{self, EventData, EventOptions, MergeOptions};
use crate::calendar::task::{self, TaskData, TaskOptions};
use crate::calendar::timezone::Zone;
use crate::calendar::{CalendarError, ical, window};
use crate::dav::{DavClient, DavError, Kind, Member, Write};
use crate::mailstore::Current;

/// The fragment that makes a collection's URL the locator of its task folder.
pub const TASKS_FRAGMENT: &str = "tasks";

/// A calendar's (or task list's) state: the DAV stores' token (the folder's locator — URL, and
/// `#tasks` for a task folder — and the sync token hashed).
pub type CalendarToken = DavToken;

/// Which component a folder is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Component {
    Event,
    Todo,
}

impl Component {
    fn of(kind: u8) -> Component {
        if Class::of(kind) == Class::Tasks {
            Component::Todo
        } else {
            Component::Event
        }
    }

    fn name(self) -> &'static str {
        match self {
            Component::Event => "VEVENT",
            Component::Todo => "VTODO",
        }
    }
}

/// The locator of a collection's folder of `kind`: its URL, with `#tasks` for task folders.
pub fn locator(collection: &reqwest::Url, kind: u8) -> String {
    let mut u = collection.clone();
    u.set_fragment(None);
    if Class::of(kind) == Class::Tasks {
        u.set_fragment(Some(TASKS_FRAGMENT));
    }
    u.to_string()
}

fn url_of(c: CollectionRef<'_>) -> Result<reqwest::Url, BackendError> {
    let mut u = reqwest::Url::parse(c.locator)
        .map_err(|e| BackendError::Internal(format!("bad collection URL {:?}: {e}", c.locator)))?;
    u.set_fragment(None);
    Ok(u)
}

/// One listing of a folder: every member by id.
#[derive(Debug, Clone)]
struct Listed {
    members: BTreeMap<ItemId, Member>,
    /// The collection's state as of the listing.
    token: CalendarToken,
}

/// The listings a request made, passed on to the pager it starts ([`CalendarItems::reuse`]).
#[derive(Debug, Default)]
pub struct Listings(HashMap<u32, Listed>);

impl Listed {
    fn new(members: Vec<Member>, token: CalendarToken) -> Listed {
        let by_href: HashMap<String, Member> = members
            .into_iter()
            .map(|m| (m.url.path().to_owned(), m))
            .collect();
        let ids = assign_ids(by_href.keys().map(String::as_str));
        let members = ids
            .into_iter()
            .filter_map(|(id, href)| by_href.get(href).map(|m| (id, m.clone())))
            .collect();
        Listed { members, token }
    }
}

/// The calendar and task store of one request (or one pager), for one user.
pub struct CalendarItems {
    dav: DavClient,
    /// The user's address: meetings they organize are told from invitations, and the
    /// ORGANIZER of a meeting made on the phone.
    email: String,
    /// The phone's protocol version (how a Change's all-day times are read).
    version: crate::mime::Version,
    /// The latest listing of each collection this request looked at.
    listed: HashMap<u32, Listed>,
    /// Collections whose listing in `listed` came from the request that started this pager
    /// ([`CalendarItems::reuse`]), for its first [`ItemStore::changes`].
    reusable: HashSet<u32>,
}

impl CalendarItems {
    /// The listings this store made, for the pager its request starts.
    pub fn listings(&self) -> Listings {
        Listings(self.listed.clone())
    }

    /// Takes over the listings of the request that started this pager: its first
    /// [`ItemStore::changes`] of each works from them instead of listing again. A listing a
    /// moment old is as good as a new one there: every page records the state the listing
    /// was made at, so what changed since reaches the phone at its next Sync.
    pub fn reuse(&mut self, listings: Listings) {
        self.reusable = listings.0.keys().copied().collect();
        self.listed = listings.0;
    }

    pub fn new(dav: DavClient, email: String, version: crate::mime::Version) -> CalendarItems {
        CalendarItems {
            dav,
            email,
            version,
            listed: HashMap::new(),
            reusable: HashSet::new(),
        }
    }

    /// Lists the folder now (hrefs and ETags), keeps the listing for the rest of the request.
    async fn list(
        &mut self,
        c: CollectionRef<'_>,
    ) -> Result<(CalendarToken, &Listed), BackendError> {
        let url = url_of(c)?;
        // The token first: a change between the two reads is found by the next Sync.
        let sync = self.dav.sync_token(&url).await?;
        let members = self
            .dav
            .calendar_query(&url, Component::of(c.kind).name(), false)
            .await?;
        let token = CalendarToken::of(c.locator, sync.as_deref());
        self.listed
            .insert(c.id, Listed::new(members, token.clone()));
        Ok((token, &self.listed[&c.id]))
    }

    /// Reads the data of the listed members whose window decision is not known yet (one
    /// calendar-multiget), keeping it for the fetch of this request.
    async fn read_undecided(
        &mut self,
        c: CollectionRef<'_>,
        since: u64,
    ) -> Result<(), BackendError> {
        let Some(listed) = self.listed.get(&c.id) else {
            return Ok(());
        };
        let undecided: Vec<reqwest::Url> = listed
            .members
            .values()
            .filter(|m| m.data.is_none() && decided(m, since).is_none())
            .map(|m| m.url.clone())
            .collect();
        if undecided.is_empty() {
            return Ok(());
        }
        let url = url_of(c)?;
        let fetched = self.dav.multiget(&url, Kind::Calendar, &undecided).await?;
        let mut by_path: HashMap<String, Member> = fetched
            .into_iter()
            .map(|m| (m.url.path().to_owned(), m))
            .collect();
        if let Some(listed) = self.listed.get_mut(&c.id) {
            for m in listed.members.values_mut() {
                if let Some(got) = by_path.remove(m.url.path()) {
                    // The version read (it may be newer than the listing): its fold too.
                    m.etag = got.etag.or(m.etag.take());
                    m.data = got.data;
                }
            }
        }
        Ok(())
    }

    async fn member(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
    ) -> Result<Option<Member>, BackendError> {
        if !self.listed.contains_key(&c.id) {
            self.list(c).await?;
        }
        Ok(self.listed[&c.id].members.get(&id).cloned())
    }

    fn user_emails(&self) -> [&str; 1] {
        [self.email.as_str()]
    }
}

fn now_utc(unix: i64) -> NaiveDateTime {
    DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .naive_utc()
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Renders one stored object for the folder's component.
fn render_member(
    text: &str,
    component: Component,
    render: &RenderOptions,
    user_emails: &[&str],
) -> Result<eas_wbxml::Fragment, CalendarError> {
    let zone = Zone::Utc;
    let year = now_utc(wall_clock()).year();
    match component {
        Component::Event => {
            let o = EventOptions {
                version: render.version,
                body_preferences: &render.body_preferences,
                user_zone: &zone,
                year,
                user_emails,
            };
            event::render_event(text, &o).map(|(f, _)| f)
        }
        Component::Todo => {
            let o = TaskOptions {
                version: render.version,
                body_preferences: &render.body_preferences,
                user_zone: &zone,
                year,
                now: now_utc(wall_clock()),
                new_uid: "",
            };
            task::render_task(text, &o).map(|(f, _)| f)
        }
    }
}

/// A phone's Change, or (16.x) its deletion of one occurrence: an InstanceId with
/// `calendar:Deleted` in the ApplicationData (`eas::sync::request` makes a Delete with an
/// InstanceId into that), which becomes an EXDATE while the series stays.
fn merge_or_delete_instance(
    stored: Option<&calcard::icalendar::ICalendar>,
    component: Component,
    data: &Element,
    version: crate::mime::Version,
    email: &str,
    new_uid: &str,
) -> Result<calcard::icalendar::ICalendar, CalendarError> {
    use eas_wbxml::tags::{airsyncbase as asb, calendar as cal};
    let deleted = data
        .child(cal::Deleted)
        .and_then(Element::text)
        .is_some_and(|t| t.trim() == "1");
    let instance = data
        .child(asb::InstanceId)
        .and_then(Element::text)
        .map(|t| crate::calendar::date::parse(t).ok_or(t));
    match (stored, component, deleted, instance) {
        (Some(s), Component::Event, true, Some(Ok(i))) => {
            let zone = Zone::Utc;
            let now = now_utc(wall_clock());
            let o = MergeOptions {
                version,
                user_zone: &zone,
                year: now.year(),
                now,
                new_uid,
                organizer: Some((email, email)),
            };
            event::delete_instance(s, i, &o)
        }
        (_, _, _, Some(Err(t))) => Err(CalendarError::InvalidItem(format!(
            "InstanceId {:?}",
            t.chars().take(40).collect::<String>()
        ))),
        // A deletion of one occurrence of something that is not a series event.
        (_, _, true, Some(Ok(_))) => Err(CalendarError::InvalidItem(
            "an occurrence deleted outside a series".into(),
        )),
        _ => merge(stored, component, data, version, email, new_uid),
    }
}

/// An object standing for one that does not parse: its file name as the subject.
fn placeholder(name: &str, component: Component) -> String {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, ',' | ';' | '\\'))
        .take(100)
        .collect();
    let body = match component {
        Component::Event => format!(
            "BEGIN:VEVENT\r\nUID:unreadable-{name}\r\nDTSTAMP:19700101T000000Z\r\n\
DTSTART:19700101T000000Z\r\nDTEND:19700101T010000Z\r\nSUMMARY:(unreadable) {name}\r\n\
END:VEVENT\r\n"
        ),
        Component::Todo => format!(
            "BEGIN:VTODO\r\nUID:unreadable-{name}\r\nDTSTAMP:19700101T000000Z\r\n\
SUMMARY:(unreadable) {name}\r\nEND:VTODO\r\n"
        ),
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//eas-gateway//EN\r\n{body}END:VCALENDAR\r\n"
    )
}

/// The phone's item merged into `stored` (None: a new object under `new_uid`).
fn merge(
    stored: Option<&calcard::icalendar::ICalendar>,
    component: Component,
    data: &Element,
    version: crate::mime::Version,
    email: &str,
    new_uid: &str,
) -> Result<calcard::icalendar::ICalendar, CalendarError> {
    let zone = Zone::Utc;
    let now = now_utc(wall_clock());
    match component {
        Component::Event => {
            let phone = EventData::from_element(data, version)?;
            let o = MergeOptions {
                version,
                user_zone: &zone,
                year: now.year(),
                now,
                new_uid,
                organizer: Some((email, email)),
            };
            match (stored, phone.instance_id) {
                // 16.x: one occurrence of a series changed.
                (Some(s), Some(i)) if phone.recurrence.is_none() => {
                    event::merge_instance(s, i, &phone, &o)
                }
                _ => event::merge_event(stored, &phone, &o),
            }
        }
        Component::Todo => {
            let phone = TaskData::from_element(data)?;
            let o = TaskOptions {
                version,
                body_preferences: &[],
                user_zone: &zone,
                year: now.year(),
                now,
                new_uid,
            };
            task::merge_task(stored, &phone, &o)
        }
    }
}

/// Window decisions made: hash of (href, ETag, window start) → inside. An ETag changes with
/// the object, so a decision never goes stale; the window start moves once a day. Shared by
/// all requests, so a Sync that finds one object changed reads and expands that one only.
static DECIDED: std::sync::Mutex<Option<HashMap<u64, bool>>> = std::sync::Mutex::new(None);
/// Decisions kept at most (about 16 bytes each); the table starts over when full.
const DECIDED_MAX: usize = 200_000;

fn decision_key(m: &Member, since: u64) -> Option<u64> {
    let etag = m.etag.as_deref()?;
    Some(fnv64(&[
        m.url.path().as_bytes(),
        etag.as_bytes(),
        &since.to_le_bytes(),
    ]))
}

fn decided(m: &Member, since: u64) -> Option<bool> {
    let key = decision_key(m, since)?;
    let table = DECIDED.lock().unwrap_or_else(|p| p.into_inner());
    table.as_ref()?.get(&key).copied()
}

/// Whether an object has an occurrence ending after `since` (unix seconds): from the table,
/// else from its data (then remembered). An object without data or that does not parse counts
/// as inside (never hidden silently).
fn decide(m: &Member, since: u64) -> bool {
    if let Some(d) = decided(m, since) {
        return d;
    }
    let Some(text) = m.data.as_deref() else {
        return true;
    };
    let inside = match ical::parse(text) {
        Ok(ical) => window::has_occurrence_in(&ical, now_utc(since as i64), None, &Zone::Utc),
        Err(_) => true,
    };
    if let Some(key) = decision_key(m, since) {
        let mut table = DECIDED.lock().unwrap_or_else(|p| p.into_inner());
        let t = table.get_or_insert_with(HashMap::new);
        if t.len() >= DECIDED_MAX {
            t.clear();
        }
        t.insert(key, inside);
    }
    inside
}

/// The token of the calendar or task folder at `locator` whose collection's sync token (or
/// CTag) is `sync`, made as [`ItemStore::state`] makes it: what a push source's reading is
/// compared with.
pub fn token_of(locator: &str, sync: Option<&str>) -> CalendarToken {
    CalendarToken::of(locator, sync)
}

impl ItemStore for CalendarItems {
    type Token = CalendarToken;

    async fn state(&mut self, c: CollectionRef<'_>) -> Result<Option<CalendarToken>, BackendError> {
        let url = url_of(c)?;
        match self.dav.sync_token(&url).await {
            Ok(t) => Ok(Some(CalendarToken::of(c.locator, t.as_deref()))),
            Err(DavError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A whole listing compared with what the phone holds; for a calendar with a window
    /// (`since` > 0) each object is read and kept when any occurrence ends inside it.
    /// From the locator alone: a new partnership costs the DAV server nothing, and the first
    /// page's listing finds a collection that is gone.
    async fn identity(
        &mut self,
        c: CollectionRef<'_>,
    ) -> Result<Option<CalendarToken>, BackendError> {
        Ok(Some(CalendarToken::of(c.locator, None)))
    }

    async fn changes(
        &mut self,
        c: CollectionRef<'_>,
        known: &Snapshot<CalendarToken>,
        since: u64,
    ) -> Result<Listing<CalendarToken>, BackendError> {
        let windowed = since > 0 && Component::of(c.kind) == Component::Event;
        let token = match self.listed.get(&c.id) {
            Some(l) if self.reusable.remove(&c.id) => l.token.clone(),
            _ => match self.list(c).await {
                Ok((token, _)) => token,
                Err(BackendError::Dav(DavError::NotFound)) => return Err(BackendError::Gone),
                Err(e) => return Err(e),
            },
        };
        if windowed {
            self.read_undecided(c, since).await?;
        }
        let listed = &self.listed[&c.id];
        let current: Vec<Current> = listed
            .members
            .iter()
            .map(|(&id, m)| Current {
                uid: id,
                state: fold_of(m.url.path(), m.etag.as_deref()),
                in_window: !windowed || decide(m, since),
            })
            .collect();
        let diff = snapshot::diff(&known.items, &current);
        let folds = current.iter().map(|c| (c.uid, c.state)).collect();
        Ok(Listing { diff, folds, token })
    }

    async fn fetch(
        &mut self,
        c: CollectionRef<'_>,
        wanted: &[ItemId],
        full: &[ItemId],
        render: &RenderOptions,
    ) -> Result<Rendered, BackendError> {
        let mut out = Rendered::default();
        if wanted.is_empty() {
            return Ok(out);
        }
        if !self.listed.contains_key(&c.id) {
            self.list(c).await?;
        }
        let listed = &self.listed[&c.id];
        let mut by_path: HashMap<String, ItemId> = HashMap::new();
        let mut have = Vec::new();
        let mut urls = Vec::new();
        for id in wanted {
            if let Some(m) = listed.members.get(id) {
                by_path.insert(m.url.path().to_owned(), *id);
                if m.data.is_some() {
                    // Read with the window's listing of this request: no second read.
                    have.push(m.clone());
                } else {
                    urls.push(m.url.clone());
                }
            }
        }
        let url = url_of(c)?;
        let mut fetched = if urls.is_empty() {
            Vec::new()
        } else {
            self.dav.multiget(&url, Kind::Calendar, &urls).await?
        };
        fetched.extend(have);
        let component = Component::of(c.kind);
        let emails = self.user_emails();
        for m in fetched {
            let Some(&id) = by_path.get(m.url.path()) else {
                continue;
            };
            let fold = fold_of(m.url.path(), m.etag.as_deref());
            let text = m.data.as_deref().unwrap_or("");
            let fragment = match render_member(text, component, render, &emails) {
                Ok(f) => f,
                Err(CalendarError::Encode(e)) => {
                    return Err(BackendError::Internal(format!("encoding an event: {e}")));
                }
                Err(e) => {
                    // Sent once as a placeholder named after the file, so the item is
                    // recorded (never listed again and again, never a stuck window); the
                    // server keeps the object untouched (a Change to it is refused).
                    tracing::warn!(href = %m.url.path(), error = %e, "unreadable calendar object sent as a placeholder");
                    let name = m
                        .url
                        .path_segments()
                        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
                        .unwrap_or("item");
                    render_member(&placeholder(name, component), component, render, &emails)
                        .map_err(|e| BackendError::Internal(format!("a placeholder: {e}")))?
                }
            };
            // An event's Change carries the whole event.
            if full.contains(&id) {
                out.insert_full(id, fold, fragment);
            } else {
                out.insert_change(id, fold, fragment);
            }
        }
        Ok(out)
    }

    async fn change(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        old: Fold,
        data: &Element,
    ) -> Result<Changed, BackendError> {
        let Some(m) = self.member(c, id).await? else {
            return Ok(Changed::Gone);
        };
        if fold_of(m.url.path(), m.etag.as_deref()) != old {
            // Changed on the server since the phone saw it: the server wins.
            return Ok(Changed::To(old));
        }
        // Not applied: the server's version goes back to the phone.
        let refused = Changed::To(old ^ 1);
        let stored = match self.dav.get(&m.url).await {
            Ok(s) => s,
            Err(DavError::NotFound) => return Ok(Changed::Gone),
            Err(e) => return Err(e.into()),
        };
        let Some(etag) = stored.etag.clone() else {
            return Ok(refused);
        };
        if fold_of(m.url.path(), Some(&etag)) != old {
            return Ok(Changed::To(old));
        }
        let Ok(object) = ical::parse(stored.data.as_deref().unwrap_or("")) else {
            // Nothing to merge into without losing what the server holds.
            return Ok(refused);
        };
        let version = self.version;
        let merged = match merge_or_delete_instance(
            Some(&object),
            Component::of(c.kind),
            data,
            version,
            &self.email,
            "",
        ) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(error = %e, "a phone's calendar change refused");
                return Ok(refused);
            }
        };
        match self
            .dav
            .put(
                &m.url,
                ICALENDAR,
                ical::write(&merged),
                Write::Replace(&etag),
            )
            .await
        {
            Ok(new_etag) => {
                let new_etag = match new_etag {
                    Some(e) => Some(e),
                    None => self.dav.get(&m.url).await?.etag,
                };
                let fold = fold_of(m.url.path(), new_etag.as_deref());
                if let Some(l) = self.listed.get_mut(&c.id)
                    && let Some(x) = l.members.get_mut(&id)
                {
                    x.etag = new_etag;
                    x.data = None;
                }
                Ok(Changed::To(fold))
            }
            Err(DavError::PreconditionFailed) => Ok(Changed::To(old)),
            Err(DavError::NotFound) => Ok(Changed::Gone),
            Err(e) if refused_by_server(&e) => Ok(refused),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        _as_move: bool,
    ) -> Result<(), BackendError> {
        let Some(m) = self.member(c, id).await? else {
            return Ok(());
        };
        delete_member(&self.dav, &m).await?;
        if let Some(l) = self.listed.get_mut(&c.id) {
            l.members.remove(&id);
        }
        Ok(())
    }

    async fn add(
        &mut self,
        c: CollectionRef<'_>,
        data: &Element,
        context: AddContext<'_>,
    ) -> Result<Added, BackendError> {
        let uid = new_uid();
        let object = match merge(
            None,
            Component::of(c.kind),
            data,
            context.version,
            &self.email,
            &uid,
        ) {
            Ok(o) => o,
            Err(e) => {
                tracing::info!(error = %e, "a phone's new calendar item refused");
                return Ok(Added::Refused);
            }
        };
        let base = url_of(c)?;
        // Our own name, whatever UID the phone chose (it may not be a safe path segment).
        let url = base
            .join(&format!("{uid}.ics"))
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let etag = match self
            .dav
            .put(&url, ICALENDAR, ical::write(&object), Write::Create)
            .await
        {
            Ok(e) => e,
            Err(e) if refused_by_server(&e) => return Ok(Added::Refused),
            Err(e) => return Err(e.into()),
        };
        // The id comes from the listing the new member is part of.
        let (_, listed) = self.list(c).await?;
        Ok(added(&listed.members, &url, etag))
    }

    async fn finish(self, _paging: bool) {}
}

const ICALENDAR: &str = "text/calendar; charset=utf-8";

/// Whether a DAV calendar collection holds `component` (an unstated set holds all).
pub fn holds(components: &[String], component: &str) -> bool {
    components.is_empty() || components.iter().any(|c| c.eq_ignore_ascii_case(component))
}

/// The EAS folder types of a collection: `(calendar?, tasks?)` as folder kinds, the first of
/// each the default type.
pub fn folder_kind(component_first: bool, tasks: bool) -> u8 {
    match (tasks, component_first) {
        (false, true) => kinds::CALENDAR,
        (false, false) => kinds::USER_CALENDAR,
        (true, true) => kinds::TASKS,
        (true, false) => kinds::USER_TASKS,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::Token;

    #[test]
    fn locators_and_tokens() {
        let u = reqwest::Url::parse("http://h/u/cal/").unwrap();
        assert_eq!(locator(&u, kinds::CALENDAR), "http://h/u/cal/");
        assert_eq!(locator(&u, kinds::USER_TASKS), "http://h/u/cal/#tasks");
        let a = CalendarToken::of(&locator(&u, kinds::CALENDAR), Some("t"));
        let b = CalendarToken::of(&locator(&u, kinds::TASKS), Some("t"));
        assert!(!a.same_collection(&b));
        assert!(a.unchanged(&a.clone()));
        let none = CalendarToken::of("x", None);
        assert!(!none.unchanged(&none));
        let mut bytes = Vec::new();
        a.encode_head(&mut bytes);
        assert_eq!(CalendarToken::decode_head(&mut bytes.as_slice()), Some(a));
        assert!(holds(&[], "VTODO") && holds(&["VEVENT".into()], "vevent"));
        assert!(!holds(&["VEVENT".into()], "VTODO"));
        assert_eq!(folder_kind(true, false), kinds::CALENDAR);
        assert_eq!(folder_kind(false, true), kinds::USER_TASKS);
    }

    #[test]
    fn placeholders_render() {
        let r = RenderOptions {
            version: crate::mime::Version::V14_1,
            body_preferences: vec![],
            mime_support: crate::mime::MimeSupport::Never,
            mime_truncation: None,
        };
        for c in [Component::Event, Component::Todo] {
            let text = placeholder("we;ird\\name\r\n.ics", c);
            assert!(render_member(&text, c, &r, &[]).is_ok(), "{text}");
        }
    }
}

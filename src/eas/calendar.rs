//! Opening the user's calendar and task store ([`CalendarItems`]) for the Sync engine (the
//! DAV client with the phone's credentials and the `[dav]` settings), and the user's CalDAV
//! collections as folders of FolderSync. The engine's dispatch (`eas::sync::Stores`) runs
//! calendar (8, 13) and task (7, 15) collections on it. Folder commands on these folders are
//! `davfolders`' (MKCALENDAR, PROPPATCH, DELETE).

use super::sync::engine::{self, BoxFuture, mime_version};
use super::{Context, EasError};
use crate::backend::calendar::{self as store, CalendarItems};
use crate::backend::kinds::Class;
use crate::dav::{DavClient, Kind};
use crate::state::FolderEntry;

impl engine::Store for CalendarItems {
    const CHECKS_LAST_PAGE: bool = false;
    const LISTING_READS_STATE: bool = true;

    async fn open(
        ctx: &Context<'_>,
        _hierarchy: &[FolderEntry],
    ) -> Result<CalendarItems, EasError> {
        let (settings, http) = super::contacts::shared(ctx)?;
        Ok(CalendarItems::new(
            DavClient::new(http, settings, &ctx.user.login, ctx.user.password.clone()),
            ctx.user.email.clone(),
            mime_version(ctx.version),
        ))
    }

    fn opener(
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<CalendarItems>> + Send + 'static {
        let shared = super::contacts::shared(ctx).ok();
        let login = ctx.user.login.clone();
        let password = ctx.user.password.clone();
        let email = ctx.user.email.clone();
        let version = mime_version(ctx.version);
        move || {
            Box::pin(async move {
                let (settings, http) = shared?;
                Some(CalendarItems::new(
                    DavClient::new(http, settings, &login, password),
                    email,
                    version,
                ))
            })
        }
    }

    fn pager_opener(
        &self,
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<CalendarItems>> + Send + 'static {
        let open = Self::opener(ctx);
        let listings = self.listings();
        move || {
            Box::pin(async move {
                let mut store = open().await?;
                store.reuse(listings);
                Some(store)
            })
        }
    }
}

/// The user's calendars and task lists as folders of the device's hierarchy. Collections
/// holding VEVENT are calendars (the default Calendar, type 8, the others 13); those holding
/// VTODO are task folders (the default Tasks, 7, the others 15) — the default being the one
/// the device knows as such, else the first by URL; a
/// collection holding both (or stating nothing) is both, the task folder's locator being the
/// URL with `#tasks`. Ids come from the state store like mailboxes' ids.
///
/// Without `[dav]` there are none. When the DAV server cannot be asked, the calendar and task
/// folders the device was told of (`known`) are kept: a folder missing from a FolderSync would
/// make the phone delete its events.
pub async fn folders(
    ctx: &Context<'_>,
    known: &[FolderEntry],
) -> Result<Vec<FolderEntry>, EasError> {
    if ctx.config.dav.url.trim().is_empty() {
        return Ok(Vec::new());
    }
    let (settings, http) = super::contacts::shared(ctx)?;
    let dav = DavClient::new(http, settings, &ctx.user.login, ctx.user.password.clone());
    let found = match dav.discover(&[Kind::Calendar]).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "calendars not listed; the known ones are kept");
            return Ok(known
                .iter()
                .filter(|f| matches!(Class::of(f.kind), Class::Calendar | Class::Tasks))
                .cloned()
                .collect());
        }
    };
    let device = &ctx.device.key;
    let mut out = Vec::new();
    let mut calendars: Vec<&crate::dav::Collection> = found
        .collections
        .iter()
        .filter(|c| c.kind == Kind::Calendar)
        .collect();
    // Discovery order is the server's and changes as collections come and go (Radicale's
    // does); the default folder must not move with it.
    calendars.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
    for (component, tasks) in [("VEVENT", false), ("VTODO", true)] {
        let holding: Vec<&crate::dav::Collection> = calendars
            .iter()
            .copied()
            .filter(|c| store::holds(&c.components, component))
            .collect();
        // The default stays the one the device knows as such; else the first by URL.
        let default_kind = store::folder_kind(true, tasks);
        let default = known
            .iter()
            .find(|f| f.kind == default_kind)
            .and_then(|k| {
                holding
                    .iter()
                    .find(|c| store::locator(&c.url, default_kind) == k.imap_name)
            })
            .or(holding.first())
            .map(|c| c.url.clone());
        for c in holding {
            let kind = store::folder_kind(default.as_ref() == Some(&c.url), tasks);
            let locator = store::locator(&c.url, kind);
            let name = c.display_name.clone().unwrap_or_else(|| {
                c.url
                    .path_segments()
                    .and_then(|mut s| s.rfind(|p| !p.is_empty()))
                    .unwrap_or(if tasks { "Tasks" } else { "Calendar" })
                    .to_owned()
            });
            out.push(FolderEntry {
                id: ctx.store.folder_id(device, &locator)?,
                parent: 0,
                display_name: name,
                kind,
                imap_name: locator,
                uidvalidity: 0,
            });
        }
    }
    Ok(out)
}

//! FolderCreate, FolderUpdate and FolderDelete of the folders that are DAV collections:
//! address books (MKCOL, extended), calendars and task lists (MKCALENDAR with the component
//! they hold), renamed by PROPPATCH of the display name and deleted by DELETE. The folder's
//! locator is the collection's URL (a task folder's with `#tasks`, see
//! [`crate::backend::calendar::locator`]).
//!
//! What a refusal means for the phone is decided in [`folder_status`]; a server that is down
//! is an error the phone retries, never a status that makes it drop the folder.

use super::status::FolderStatus;
use super::{Context, EasError};
use crate::backend::calendar as calendar_store;
use crate::backend::kinds::{self, Class};
use crate::dav::{DavClient, DavError, Kind};
use crate::state::FolderEntry;

/// What a DAV refusal of a folder command means for the phone.
fn folder_status(e: DavError) -> Result<FolderStatus, EasError> {
    if e.is_retryable() {
        return Err(EasError::Unavailable(e.to_string()));
    }
    Ok(match e {
        DavError::NotFound => FolderStatus::NotFound,
        DavError::PreconditionFailed => FolderStatus::AlreadyExists,
        _ => FolderStatus::ServerError,
    })
}

fn client(ctx: &Context<'_>) -> Result<DavClient, EasError> {
    let (settings, http) = super::contacts::shared(ctx)?;
    Ok(DavClient::new(
        http,
        settings,
        &ctx.user.login,
        ctx.user.password.clone(),
    ))
}

/// The collection a folder's locator names (a task folder's `#tasks` dropped).
fn collection_url(locator: &str) -> Result<reqwest::Url, EasError> {
    let mut url = reqwest::Url::parse(locator).map_err(|e| EasError::Internal(e.to_string()))?;
    url.set_fragment(None);
    Ok(url)
}

/// Whether folders of EAS type `kind` are DAV collections this module creates.
pub fn creates(kind: u8) -> bool {
    matches!(
        kind,
        kinds::USER_CONTACTS | kinds::USER_CALENDAR | kinds::USER_TASKS
    )
}

/// Whether a folder is a DAV collection (any of the contacts, calendar and task classes).
pub fn is_dav(kind: u8) -> bool {
    matches!(
        Class::of(kind),
        Class::Contacts | Class::Calendar | Class::Tasks
    )
}

/// Whether a DAV folder is a default one (Contacts, Calendar, Tasks), which the phone may
/// neither rename nor delete, like Inbox.
pub fn is_default(kind: u8) -> bool {
    matches!(kind, kinds::CONTACTS | kinds::CALENDAR | kinds::TASKS)
}

/// FolderCreate of a user contacts (14), calendar (13) or task (15) folder: a new collection
/// in the user's first address book or calendar home. Its locator, or the status to answer.
pub async fn create(
    ctx: &Context<'_>,
    kind: u8,
    name: &str,
) -> Result<Result<String, FolderStatus>, EasError> {
    if ctx.config.dav.url.trim().is_empty() {
        return Ok(Err(FolderStatus::Malformed));
    }
    let (dav_kind, components): (Kind, &[&str]) = match kind {
        kinds::USER_CONTACTS => (Kind::AddressBook, &[]),
        kinds::USER_CALENDAR => (Kind::Calendar, &["VEVENT"]),
        kinds::USER_TASKS => (Kind::Calendar, &["VTODO"]),
        _ => return Ok(Err(FolderStatus::Malformed)),
    };
    let dav = client(ctx)?;
    let home = match dav.discover(&[dav_kind]).await {
        Ok(d) => {
            let homes = match dav_kind {
                Kind::AddressBook => d.addressbook_homes,
                Kind::Calendar => d.calendar_homes,
            };
            match homes.into_iter().next() {
                Some(h) => h,
                None => return Ok(Err(FolderStatus::ServerError)),
            }
        }
        Err(e) => return folder_status(e).map(Err),
    };
    // A readable path with a random part: two folders of one name never collide, and a name
    // in any script still gives a valid URL.
    let slug: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    let suffix: u32 = rand::random();
    let url = home
        .join(&format!("{slug}-{suffix:08x}/"))
        .map_err(|e| EasError::Internal(e.to_string()))?;
    match dav.make_collection(&url, dav_kind, name, components).await {
        Ok(()) => Ok(Ok(match dav_kind {
            Kind::AddressBook => url.to_string(),
            Kind::Calendar => calendar_store::locator(&url, kind),
        })),
        Err(e) => folder_status(e).map(Err),
    }
}

/// FolderUpdate of a DAV folder: PROPPATCH of its display name (collections do not nest).
pub async fn rename(
    ctx: &Context<'_>,
    locator: &str,
    name: &str,
) -> Result<FolderStatus, EasError> {
    match client(ctx)?.rename(&collection_url(locator)?, name).await {
        Ok(()) => Ok(FolderStatus::Success),
        Err(e) => folder_status(e),
    }
}

/// The folders of `snapshot` other than `entry` that are the same collection (a calendar
/// folder and the task folder of one collection holding both).
pub fn twins<'a>(entry: &FolderEntry, snapshot: &'a [FolderEntry]) -> Vec<&'a FolderEntry> {
    let Ok(url) = collection_url(&entry.imap_name) else {
        return Vec::new();
    };
    snapshot
        .iter()
        .filter(|f| f.id != entry.id && is_dav(f.kind))
        .filter(|f| collection_url(&f.imap_name).is_ok_and(|u| u == url))
        .collect()
}

/// FolderDelete of a DAV folder: DELETE of the collection (gone already counts as done).
/// When the collection is also another folder of the device (`twins`: a calendar that holds
/// tasks too), it is deleted only if that other folder is empty — deleting a calendar must not
/// take the user's tasks with it; the phone is then told the folder cannot be deleted. On
/// success the twins are gone from the server too (the next FolderSync deletes them).
pub async fn delete(
    ctx: &Context<'_>,
    entry: &FolderEntry,
    twins: &[&FolderEntry],
) -> Result<FolderStatus, EasError> {
    let url = collection_url(&entry.imap_name)?;
    let dav = client(ctx)?;
    for twin in twins {
        let component = if Class::of(twin.kind) == Class::Tasks {
            "VTODO"
        } else {
            "VEVENT"
        };
        match dav.calendar_query(&url, component, false).await {
            Ok(members) if members.is_empty() => {}
            Ok(_) => return Ok(FolderStatus::SpecialFolder),
            Err(DavError::NotFound) => {}
            Err(e) => return folder_status(e),
        }
    }
    match dav.delete(&url, None).await {
        Ok(()) | Err(DavError::NotFound) => Ok(FolderStatus::Success),
        Err(e) => folder_status(e),
    }
}

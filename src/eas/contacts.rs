//! The user's address books for the commands: opening the contacts store ([`ContactItems`])
//! for the Sync engine (the DAV client with the phone's credentials and the `[dav]`
//! settings; `eas::sync::Stores` runs contacts collections, folder types 9 and 14, on it) and
//! the address books as FolderSync folders. Folder commands on them are `davfolders`'.

use std::sync::{Arc, Mutex};

use super::sync::engine::{self, BoxFuture};
use super::{Context, EasError};
use crate::backend::contacts::ContactItems;
use crate::backend::kinds::{self, Class};
use crate::dav::{DavClient, DavSettings, http_client};
use crate::secret::Secret;
use crate::state::FolderEntry;

/// The DAV settings and the HTTP client of one gateway (one connection pool for all its
/// users), made at first use and again when a reload changed `[dav]`. Held by the gateway,
/// not the process: a client's pooled connections belong to the runtime that opened them, and
/// the tests run gateways on several runtimes side by side (a process-wide client handed a
/// connection of a finished test's runtime to the next: "dispatch task is gone").
#[derive(Default)]
pub struct DavShared(Mutex<Option<(String, Made)>>);

type Made = (Arc<DavSettings>, reqwest::Client);

pub(super) fn shared(ctx: &Context<'_>) -> Result<Made, EasError> {
    let settings = ctx
        .config
        .dav_settings()
        .map_err(|e| EasError::Internal(e.to_string()))?
        .ok_or_else(|| EasError::Internal("no [dav] url configured".into()))?;
    let key = format!("{settings:?}");
    let mut made = ctx.dav.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((k, m)) = made.as_ref()
        && *k == key
    {
        return Ok(m.clone());
    }
    let http = http_client(&settings).map_err(|e| EasError::Internal(e.to_string()))?;
    let m = (Arc::new(settings), http);
    *made = Some((key, m.clone()));
    Ok(m)
}

fn open_with(
    settings: Arc<DavSettings>,
    http: reqwest::Client,
    login: &str,
    password: Secret<String>,
    picture_max_bytes: usize,
) -> ContactItems {
    ContactItems::new(
        DavClient::new(http, settings, login, password),
        picture_max_bytes,
    )
}

impl engine::Store for ContactItems {
    const CHECKS_LAST_PAGE: bool = false;
    const LISTING_READS_STATE: bool = true;

    async fn open(ctx: &Context<'_>, _hierarchy: &[FolderEntry]) -> Result<ContactItems, EasError> {
        let (settings, http) = shared(ctx)?;
        Ok(open_with(
            settings,
            http,
            &ctx.user.login,
            ctx.user.password.clone(),
            ctx.config.dav.photo_max_bytes,
        ))
    }

    fn opener(
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<ContactItems>> + Send + 'static {
        let shared = shared(ctx).ok();
        let login = ctx.user.login.clone();
        let password = ctx.user.password.clone();
        let picture = ctx.config.dav.photo_max_bytes;
        move || {
            Box::pin(async move {
                let (settings, http) = shared?;
                Some(open_with(settings, http, &login, password, picture))
            })
        }
    }

    fn pager_opener(
        &self,
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<ContactItems>> + Send + 'static {
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

/// The user's address books as folders of the device's hierarchy: one is the default Contacts
/// folder (type 9: the one the device knows as such, else the first by URL), the others user
/// contacts folders (type 14). Their
/// locator is the collection's URL; ids come from the state store like mailboxes' ids.
///
/// Without `[dav]` there are none. When the DAV server cannot be asked (down, slow), the
/// address books the device was told of (`known`) are kept as they were: a folder missing
/// from a FolderSync would make the phone delete its contacts.
pub async fn folders(
    ctx: &Context<'_>,
    known: &[FolderEntry],
) -> Result<Vec<FolderEntry>, EasError> {
    if ctx.config.dav.url.trim().is_empty() {
        return Ok(Vec::new());
    }
    let (settings, http) = shared(ctx)?;
    let dav = DavClient::new(http, settings, &ctx.user.login, ctx.user.password.clone());
    let found = match dav.discover(&[crate::dav::Kind::AddressBook]).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "address books not listed; the known ones are kept");
            return Ok(known
                .iter()
                .filter(|f| Class::of(f.kind) == Class::Contacts)
                .cloned()
                .collect());
        }
    };
    let device = &ctx.device.key;
    let mut books: Vec<&crate::dav::Collection> = found.collections.iter().collect();
    books.sort_by(|a, b| a.url.as_str().cmp(b.url.as_str()));
    // The default stays the one the device knows as such; a new device gets the first by URL
    // (discovery order is the server's and may change between two listings).
    let default = known
        .iter()
        .find(|f| f.kind == kinds::CONTACTS)
        .and_then(|k| books.iter().find(|b| b.url.as_str() == k.imap_name))
        .or(books.first())
        .map(|b| b.url.to_string());
    let mut out = Vec::new();
    for c in books {
        let locator = c.url.to_string();
        let name = c.display_name.clone().unwrap_or_else(|| {
            c.url
                .path_segments()
                .and_then(|mut s| s.rfind(|p| !p.is_empty()))
                .unwrap_or("Contacts")
                .to_owned()
        });
        let kind = if default.as_deref() == Some(locator.as_str()) {
            kinds::CONTACTS
        } else {
            kinds::USER_CONTACTS
        };
        out.push(FolderEntry {
            id: ctx.store.folder_id(device, &locator)?,
            parent: 0,
            display_name: name,
            kind,
            imap_name: locator,
            uidvalidity: 0,
        });
    }
    Ok(out)
}

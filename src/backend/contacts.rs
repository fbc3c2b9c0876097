//! Contacts on a CardDAV server as an [`ItemStore`]: one address book per collection, the
//! vCards rendered and merged by [`crate::contacts`], the HTTP by [`crate::dav`].
//!
//! - The collection's locator is its URL; its [`ContactsToken`] holds a hash of that URL (the
//!   same collection?) and of its sync token or CTag (anything changed?), read with one
//!   Depth-0 PROPFIND — what a Sync that finds nothing new costs.
//! - Item ids are numbers made from the member's href ([`assign_ids`]: a hash, with
//!   collisions moved to the next free number in href order), so no table is needed; a fold is
//!   a hash of href and ETag. Should a collision ever move an id to another href, the fold
//!   moves too, so the phone gets the right item as a Change, and a phone's Change made against
//!   the old fold is refused by the fold check rather than applied to the wrong contact.
//! - A phone's Change is merged into the stored vCard and PUT with `If-Match`; Delete is a
//!   DELETE with `If-Match`; Add is a PUT of a new vCard with `If-None-Match: *`. A 412 or a
//!   fold that moved means the server changed meanwhile: its version wins and reaches the phone.
//! - A server that is down gives [`BackendError::Dav`] (retryable), never an empty listing.

use std::collections::{BTreeMap, HashMap, HashSet};

use eas_wbxml::Element;

pub use super::davitems::{DavToken, assign_ids, fold_of};
use super::davitems::{added, delete_member, new_uid, refused_by_server};
use super::snapshot::{self, Snapshot};
use super::{
    AddContext, Added, BackendError, Changed, CollectionRef, Fold, ItemId, ItemStore, Listing,
    RenderOptions, Rendered,
};
use crate::contacts::{self, MergeOptions};
use crate::dav::{DavClient, DavError, Kind, Member, Write};
use crate::mailstore::Current;

/// An address book's state: the DAV stores' token (collection URL and sync token hashed).
pub type ContactsToken = DavToken;

/// One listing of an address book: every member by id.
#[derive(Debug, Clone)]
struct Listed {
    members: BTreeMap<ItemId, Member>,
    /// The collection's state as of the listing.
    token: ContactsToken,
}

/// The listings a request made, passed on to the pager it starts ([`ContactItems::reuse`]).
#[derive(Debug, Default)]
pub struct Listings(HashMap<u32, Listed>);

impl Listed {
    fn new(members: Vec<Member>, token: ContactsToken) -> Listed {
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

    fn fold(&self, id: ItemId) -> Option<Fold> {
        self.members
            .get(&id)
            .map(|m| fold_of(m.url.path(), m.etag.as_deref()))
    }
}

/// The contacts store of one request (or one pager), for one user.
pub struct ContactItems {
    dav: DavClient,
    /// Photos larger than this are not sent ([`crate::contacts::RenderOptions`]).
    picture_max_bytes: usize,
    /// The latest listing of each collection this request looked at.
    listed: HashMap<u32, Listed>,
    /// Collections whose listing in `listed` came from the request that started this pager
    /// ([`ContactItems::reuse`]), for its first [`ItemStore::changes`].
    reusable: HashSet<u32>,
}

impl From<DavError> for BackendError {
    fn from(e: DavError) -> BackendError {
        BackendError::Dav(e)
    }
}

fn url_of(c: CollectionRef<'_>) -> Result<reqwest::Url, BackendError> {
    reqwest::Url::parse(c.locator)
        .map_err(|e| BackendError::Internal(format!("bad collection URL {:?}: {e}", c.locator)))
}

impl ContactItems {
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

    pub fn new(dav: DavClient, picture_max_bytes: usize) -> ContactItems {
        ContactItems {
            dav,
            picture_max_bytes,
            listed: HashMap::new(),
            reusable: HashSet::new(),
        }
    }

    /// Lists the collection now, keeps the listing for the rest of the request.
    async fn list(
        &mut self,
        c: CollectionRef<'_>,
    ) -> Result<(ContactsToken, &Listed), BackendError> {
        let url = url_of(c)?;
        let (sync, members) = self.dav.listing(&url).await?;
        let token = ContactsToken::of(url.path(), sync.as_deref());
        self.listed
            .insert(c.id, Listed::new(members, token.clone()));
        Ok((token, &self.listed[&c.id]))
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

    fn render_options(&self, render: &RenderOptions) -> contacts::RenderOptions {
        contacts::RenderOptions {
            body_preferences: render.body_preferences.clone(),
            picture_max_bytes: self.picture_max_bytes,
        }
    }

    fn merge_options(&self) -> MergeOptions {
        MergeOptions {
            // The trait does not carry the phone's Supported list: everything is supported.
            supported: None,
            picture_max_bytes: self.picture_max_bytes,
            // Phones usually get notes truncated; one that does not send them back (or sends
            // the truncated part) must not shorten them.
            body_truncated: true,
        }
    }
}

/// Renders one stored vCard; an unreadable one becomes a contact named after its file, so the
/// phone gets an item (never a loop, never a blocked folder) and the server keeps the data.
fn render_member(
    m: &Member,
    opts: &contacts::RenderOptions,
) -> Result<eas_wbxml::Fragment, BackendError> {
    let text = m.data.as_deref().unwrap_or("");
    let contact = match contacts::parse_vcard(text) {
        Ok(card) => contacts::from_vcard(&card),
        Err(e) => {
            let name = m
                .url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or("contact")
                .to_owned();
            tracing::warn!(href = %m.url.path(), error = %e, "unreadable vCard sent as a bare name");
            let mut c = contacts::Contact::default();
            c.set(contacts::Field::FileAs, name);
            c
        }
    };
    contacts::render(&contact, opts)
        .map_err(|e| BackendError::Internal(format!("encoding a contact: {e}")))
}

/// The token of the address book at `locator` whose sync token (or CTag) is `sync`, made as
/// [`ItemStore::state`] makes it: what a push source's reading is compared with.
pub fn token_of(locator: &str, sync: Option<&str>) -> Option<ContactsToken> {
    let url = reqwest::Url::parse(locator).ok()?;
    Some(ContactsToken::of(url.path(), sync))
}

impl ItemStore for ContactItems {
    type Token = ContactsToken;

    async fn state(&mut self, c: CollectionRef<'_>) -> Result<Option<ContactsToken>, BackendError> {
        let url = url_of(c)?;
        match self.dav.sync_token(&url).await {
            Ok(t) => Ok(Some(ContactsToken::of(url.path(), t.as_deref()))),
            Err(DavError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A whole listing (hrefs and ETags) compared with what the phone holds; contacts have
    /// no dates to filter by, so `since` is ignored.
    /// From the locator alone: a new partnership costs the DAV server nothing, and the first
    /// page's listing finds a collection that is gone.
    async fn identity(
        &mut self,
        c: CollectionRef<'_>,
    ) -> Result<Option<ContactsToken>, BackendError> {
        Ok(Some(ContactsToken::of(url_of(c)?.path(), None)))
    }

    async fn changes(
        &mut self,
        c: CollectionRef<'_>,
        known: &Snapshot<ContactsToken>,
        _since: u64,
    ) -> Result<Listing<ContactsToken>, BackendError> {
        let token = match self.listed.get(&c.id) {
            Some(l) if self.reusable.remove(&c.id) => l.token.clone(),
            _ => match self.list(c).await {
                Ok((token, _)) => token,
                Err(BackendError::Dav(DavError::NotFound)) => return Err(BackendError::Gone),
                Err(e) => return Err(e),
            },
        };
        let listed = &self.listed[&c.id];
        let current: Vec<Current> = listed
            .members
            .keys()
            .map(|&id| Current {
                uid: id,
                state: listed.fold(id).unwrap_or(0),
                in_window: true,
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
        let mut urls = Vec::new();
        for id in wanted {
            if let Some(m) = listed.members.get(id) {
                by_path.insert(m.url.path().to_owned(), *id);
                urls.push(m.url.clone());
            }
        }
        let url = url_of(c)?;
        let fetched = self.dav.multiget(&url, Kind::AddressBook, &urls).await?;
        let opts = self.render_options(render);
        for m in fetched {
            let Some(&id) = by_path.get(m.url.path()) else {
                continue;
            };
            // The fold of the version fetched (it may be newer than the listing).
            let fold = fold_of(m.url.path(), m.etag.as_deref());
            let fragment = render_member(&m, &opts)?;
            // A contact's Change carries the whole contact.
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
            // Changed on the server since the phone saw it: the server wins (its version
            // differs from `old`, so it reaches the phone as a Change).
            return Ok(Changed::To(old));
        }
        // A malformed contact from the phone: the server's version goes back to it.
        let refused = Changed::To(old ^ 1);
        let Ok(phone) = contacts::parse_application_data(data) else {
            return Ok(refused);
        };
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
        let Ok(card) = contacts::parse_vcard(stored.data.as_deref().unwrap_or("")) else {
            // Nothing to merge into without losing what the server holds.
            return Ok(refused);
        };
        let merged = contacts::merge(&card, &phone, &self.merge_options());
        let body = contacts::to_text(&merged);
        match self
            .dav
            .put(&m.url, VCARD, body, Write::Replace(&etag))
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
                }
                Ok(Changed::To(fold))
            }
            Err(DavError::PreconditionFailed) => Ok(Changed::To(old)),
            Err(DavError::NotFound) => Ok(Changed::Gone),
            // Refused by the server (too large, forbidden, out of quota): its version stays.
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
        _context: AddContext<'_>,
    ) -> Result<Added, BackendError> {
        let Ok(phone) = contacts::parse_application_data(data) else {
            return Ok(Added::Refused);
        };
        let uid = new_uid();
        let card = contacts::new_vcard(&phone, &uid, &self.merge_options());
        let base = url_of(c)?;
        let url = base
            .join(&format!("{uid}.vcf"))
            .map_err(|e| BackendError::Internal(e.to_string()))?;
        let etag = match self
            .dav
            .put(&url, VCARD, contacts::to_text(&card), Write::Create)
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

const VCARD: &str = "text/vcard; charset=utf-8";

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::Token;

    #[test]
    fn ids_are_stable_and_distinct() {
        let hrefs: Vec<String> = (0..5000).map(|i| format!("/u/book/{i}.vcf")).collect();
        let a = assign_ids(hrefs.iter().map(String::as_str));
        assert_eq!(a.len(), 5000);
        assert!(a.keys().all(|&id| id != 0 && id <= 0x7fff_ffff));
        let b = assign_ids(hrefs.iter().rev().map(String::as_str));
        assert_eq!(a, b);
        // Adding one member leaves the others' ids alone (no collision here).
        let mut more = hrefs.clone();
        more.push("/u/book/new.vcf".into());
        let c = assign_ids(more.iter().map(String::as_str));
        for (id, href) in &a {
            assert_eq!(c.get(id), Some(href));
        }
    }

    #[test]
    fn tokens() {
        let a = ContactsToken::of("/u/book/", Some("t1"));
        let b = ContactsToken::of("/u/book/", Some("t2"));
        assert!(a.unchanged(&a) && !a.unchanged(&b) && a.stale(&b));
        assert!(a.same_collection(&b));
        assert!(!a.same_collection(&ContactsToken::of("/u/other/", Some("t1"))));
        // Without a token nothing can be told unchanged.
        let none = ContactsToken::of("/u/book/", None);
        assert!(!none.unchanged(&none));
        let mut bytes = Vec::new();
        a.encode_head(&mut bytes);
        assert_eq!(ContactsToken::decode_head(&mut bytes.as_slice()), Some(a));
        assert_ne!(fold_of("/a", Some("1")), fold_of("/a", Some("2")));
        assert!(new_uid().len() == 36);
    }
}

//! The item stores the Sync engine runs over. Every store of phone items — mail on IMAP,
//! contacts on CardDAV ([`contacts`]), calendars and tasks on CalDAV ([`calendar`]) —
//! implements one trait, [`ItemStore`]; the Sync command,
//! GetItemEstimate and read-ahead (`eas::sync`) are written once against it and pick the
//! implementation by the folder's class, so a new item class is a new implementation here
//! and one line in that dispatch, not a change to the engine.
//!
//! What a store offers, per collection:
//! - a cheap state [`Token`] ("has anything changed?"), which is also what push compares;
//! - the changes since a stored [`snapshot::Snapshot`] ([`Listing`]: adds, changes, deletes
//!   as item ids, with the [`Fold`] of what the phone sees of each);
//! - a window of items fetched and rendered as WBXML fragments ([`rendered::Rendered`]);
//! - a phone's Change, Delete and Add applied ([`Changed`], [`Added`]).
//!
//! Owns the trait and its vocabulary, the snapshot's byte form and the rendered-item
//! container. Must not import `eas` or `http`: item ids here are numbers per collection, and
//! turning them into ServerIds, statuses and responses is the command layer's job.

pub mod calendar;
pub mod contacts;
pub mod davitems;
pub mod kinds;
pub mod mail;
pub mod rendered;
pub mod snapshot;

use std::collections::HashMap;
use std::future::Future;

use eas_wbxml::Element;

pub use rendered::Rendered;
pub use snapshot::{Diff, Snapshot, Window};

/// An item's id within its collection (a UID for mail). A store whose own ids are not numbers
/// (DAV hrefs) keeps a map to numbers, so ServerIds stay `<collection>:<n>` for every class.
pub type ItemId = u32;

/// What the phone was told of one item, folded to 32 bits: only a difference matters (it
/// means "send a Change"), never the value, so a hash is enough.
pub type Fold = u32;

/// A collection's state as a store reads it cheaply, kept in every snapshot.
///
/// It is written in two parts around the snapshot's items: the fixed-size `head` first, so
/// "nothing changed" is decided by reading the first bytes of a stored snapshot without the
/// per-item part, and the bulk `tail` after the items.
pub trait Token: Clone + Default + PartialEq + Send + Sync + 'static {
    fn encode_head(&self, out: &mut Vec<u8>);
    fn decode_head(input: &mut &[u8]) -> Option<Self>;
    fn encode_tail(&self, out: &mut Vec<u8>);
    /// `format` is the snapshot's format byte (older formats may lack a tail).
    fn decode_tail(&mut self, input: &mut &[u8], format: u8) -> Option<()>;

    /// A token naming `now`'s collection and nothing of its content: a new partnership's,
    /// from which the first Sync lists everything.
    fn identity(now: &Self) -> Self;
    /// Whether `now` is still the collection this token was read from. When not, every id
    /// the phone holds is void and it must start over (Sync status 3).
    fn same_collection(&self, now: &Self) -> bool;
    /// Whether nothing changed since this token: a Sync answers without listing. A store
    /// that cannot tell answers false.
    fn unchanged(&self, now: &Self) -> bool;
    /// Whether a device holding this token has news (what Ping and a held Sync wait for).
    /// May be less strict than `!unchanged` where a difference would loop the phone.
    fn stale(&self, now: &Self) -> bool;
    /// The token a snapshot keeps after a page: `listed` was read before the listing the
    /// page came from; `complete` is false when changes were left for later pages (a store
    /// that finds changes *since* its token must then keep the old one).
    fn after_page(&self, listed: &Self, complete: bool) -> Self;
}

/// Where a collection is, for the store that holds it.
#[derive(Debug, Clone, Copy)]
pub struct CollectionRef<'a> {
    /// The collection's number (the CollectionId).
    pub id: u32,
    /// The store's name for it (an IMAP mailbox name, a DAV href).
    pub locator: &'a str,
    /// Its EAS folder type ([`kinds`]).
    pub kind: u8,
}

/// How items are rendered for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub version: crate::mime::Version,
    pub body_preferences: Vec<crate::mime::BodyPreference>,
    pub mime_support: crate::mime::MimeSupport,
    pub mime_truncation: Option<u8>,
}

/// What changed since a snapshot, listed once.
#[derive(Debug, Default)]
pub struct Listing<T> {
    pub diff: Diff,
    /// The fold of every item whose state moved (adds may be absent: their fold is taken
    /// from the fetched item).
    pub folds: HashMap<ItemId, Fold>,
    /// The collection as read before the listing.
    pub token: T,
}

/// What a phone's Change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Applied; the phone now holds this fold of the item.
    To(Fold),
    /// No such item any more (its deletion reaches the phone with the server's changes).
    Gone,
}

/// What a phone's Add did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// Stored as this item, which the phone holds with this fold.
    Created(ItemId, Fold),
    /// Not an item this collection can hold (Sync per-item status 6).
    Refused,
    /// The store took it but cannot say under which id (Sync per-item status 5).
    Unconfirmed,
}

/// What an Add needs besides the item.
#[derive(Debug, Clone, Copy)]
pub struct AddContext<'a> {
    pub version: crate::mime::Version,
    /// The user's address (a draft's From).
    pub email: &'a str,
    pub now_unix: i64,
}

/// Why a store could not answer. Every variant is retryable for the phone except
/// [`BackendError::Internal`]; mapped to EAS statuses in one place (`eas::EasError`).
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Imap(#[from] crate::mailstore::ImapError),
    /// The DAV server (contacts, calendars) failed; [`crate::dav::DavError::is_retryable`]
    /// tells whether trying again may help.
    #[error("DAV: {0}")]
    Dav(crate::dav::DavError),
    /// A bug on our side (an item we failed to encode).
    #[error("internal: {0}")]
    Internal(String),
    /// The collection is not there any more (deleted or renamed elsewhere): the phone must
    /// learn its folders again (Sync status 12).
    #[error("the collection is gone")]
    Gone,
}

/// A store of items of one class, on one session of the user's. Methods return `Send`
/// futures: read-ahead pages through a collection in a task of its own.
pub trait ItemStore: Send + Sized {
    type Token: Token;

    /// The collection's token now; None when it is gone (deleted or renamed elsewhere).
    fn state(
        &mut self,
        c: CollectionRef<'_>,
    ) -> impl Future<Output = Result<Option<Self::Token>, BackendError>> + Send;

    /// The identity a new partnership (SyncKey 0) keeps: [`Token::identity`] of the state
    /// now; None when the collection is gone. A store that can name its collection without
    /// asking the server answers from the locator alone, and its first listing reports a
    /// collection that is gone as [`BackendError::Gone`].
    fn identity(
        &mut self,
        c: CollectionRef<'_>,
    ) -> impl Future<Output = Result<Option<Self::Token>, BackendError>> + Send {
        async move { Ok(self.state(c).await?.map(|t| Self::Token::identity(&t))) }
    }

    /// What changed since `known`, for a phone that wants items from `since` (unix seconds,
    /// 0 for all) on.
    fn changes(
        &mut self,
        c: CollectionRef<'_>,
        known: &Snapshot<Self::Token>,
        since: u64,
    ) -> impl Future<Output = Result<Listing<Self::Token>, BackendError>> + Send;

    /// Fetches `wanted` items: rendered whole for those in `full`, as a change (what a
    /// Change carries) for the rest. Items that no longer exist are absent from the result.
    fn fetch(
        &mut self,
        c: CollectionRef<'_>,
        wanted: &[ItemId],
        full: &[ItemId],
        render: &RenderOptions,
    ) -> impl Future<Output = Result<Rendered, BackendError>> + Send;

    /// Applies a phone's Change (`data` is its ApplicationData) to an item it holds with
    /// fold `old`.
    fn change(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        old: Fold,
        data: &Element,
    ) -> impl Future<Output = Result<Changed, BackendError>> + Send;

    /// Deletes an item (moved to the store's wastebasket when `as_move` and it has one).
    fn delete(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        as_move: bool,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Stores a phone's new item.
    fn add(
        &mut self,
        c: CollectionRef<'_>,
        data: &Element,
        context: AddContext<'_>,
    ) -> impl Future<Output = Result<Added, BackendError>> + Send;

    /// Ends the store's use by one request. `paging`: the phone was told MoreAvailable and
    /// asks for the next page at once (a store may keep what makes that cheaper).
    fn finish(self, paging: bool) -> impl Future<Output = ()> + Send;
}

/// Whether `n` is in sorted, disjoint ranges (binary search: sets can have many holes).
pub fn member(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < n);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= n)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn membership_in_ranges() {
        let r = [(1, 3), (7, 7), (10, 20)];
        let inside: Vec<u32> = (0..25).filter(|&n| member(&r, n)).collect();
        let expected: Vec<u32> = [1, 2, 3, 7].into_iter().chain(10..=20).collect();
        assert_eq!(inside, expected);
        assert!(!member(&[], 1));
    }
}

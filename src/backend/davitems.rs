//! What the stores on a DAV server (contacts, calendars and tasks) share: the collection's
//! [`DavToken`], item ids made from hrefs ([`assign_ids`]) and folds from href and ETag
//! ([`fold_of`]). Hashes, so no table of ids is needed; FNV-1a so they are stable across
//! builds and machines (ids and folds are stored in snapshots).

use std::collections::BTreeMap;

use super::snapshot::{get, put};
use super::{Added, BackendError, Fold, ItemId, Token};
use crate::dav::{DavClient, DavError, Member};

/// 64-bit FNV-1a: stable across builds and machines (ids and folds are stored).
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn fold32(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

/// What the phone sees of a member: its href and ETag.
pub fn fold_of(href: &str, etag: Option<&str>) -> Fold {
    fold32(fnv64(&[href.as_bytes(), etag.unwrap_or("").as_bytes()]))
}

/// A DAV collection's state: which collection (the hash of its URL or locator) and its sync
/// token or CTag (hashed; 0 when the server gives neither, then every Sync lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DavToken {
    /// Hash of the collection's URL path.
    pub collection: u64,
    /// Hash of its sync token or CTag; 0 when the server gives neither (then every Sync lists).
    pub sync: u64,
}

impl DavToken {
    pub fn of(collection: &str, sync_token: Option<&str>) -> DavToken {
        DavToken {
            collection: fnv64(&[collection.as_bytes()]),
            sync: sync_token.map_or(0, |t| fnv64(&[t.as_bytes()]).max(1)),
        }
    }
}

impl Token for DavToken {
    fn encode_head(&self, out: &mut Vec<u8>) {
        put(out, self.collection);
        put(out, self.sync);
    }

    fn decode_head(input: &mut &[u8]) -> Option<DavToken> {
        Some(DavToken {
            collection: get(input)?,
            sync: get(input)?,
        })
    }

    fn encode_tail(&self, _out: &mut Vec<u8>) {}

    fn decode_tail(&mut self, _input: &mut &[u8], _format: u8) -> Option<()> {
        Some(())
    }

    fn identity(now: &DavToken) -> DavToken {
        DavToken {
            collection: now.collection,
            sync: 0,
        }
    }

    fn same_collection(&self, now: &DavToken) -> bool {
        self.collection == now.collection
    }

    fn unchanged(&self, now: &DavToken) -> bool {
        self.sync != 0 && self == now
    }

    fn stale(&self, now: &DavToken) -> bool {
        !self.unchanged(now)
    }

    /// Every listing is whole (all hrefs and ETags), so a page never needs an older token.
    fn after_page(&self, listed: &DavToken, _complete: bool) -> DavToken {
        listed.clone()
    }
}

/// Item ids for hrefs: a 31-bit hash of each href (never 0), a collision moved to the next free
/// number, in href order so the same set always gets the same ids.
pub fn assign_ids<'a>(hrefs: impl IntoIterator<Item = &'a str>) -> BTreeMap<ItemId, &'a str> {
    let mut sorted: Vec<&str> = hrefs.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = BTreeMap::new();
    for href in sorted {
        let mut id = (fold32(fnv64(&[href.as_bytes()])) & 0x7fff_ffff).max(1);
        while out.contains_key(&id) {
            id = if id >= 0x7fff_ffff { 1 } else { id + 1 };
        }
        out.insert(id, href);
    }
    out
}

/// What a phone's Add became, from the listing made after the PUT: the new member's id there,
/// and its fold with the listed ETag (or the one the PUT answered); `Unconfirmed` when the
/// listing does not hold it (Sync per-item status 5).
pub fn added(
    members: &BTreeMap<ItemId, Member>,
    url: &reqwest::Url,
    etag: Option<String>,
) -> Added {
    let found = members
        .iter()
        .find(|(_, m)| m.url.path() == url.path())
        .map(|(id, m)| (*id, m.etag.clone()));
    match found {
        Some((id, listed_etag)) => {
            Added::Created(id, fold_of(url.path(), listed_etag.or(etag).as_deref()))
        }
        None => Added::Unconfirmed,
    }
}

/// A fresh UID (and file name) for an item the phone added: 128 random bits as a UUID.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// A refusal by the server of a write (too large, forbidden, out of quota, invalid): the
/// server's version stays and the phone is told so per item, the folder goes on.
pub fn refused_by_server(e: &DavError) -> bool {
    matches!(
        e,
        DavError::Forbidden
            | DavError::InsufficientStorage
            | DavError::Status {
                status: 400..=499,
                ..
            }
    )
}

/// A phone's Delete of a listed member: DELETE with its ETag. Gone already, or changed
/// meanwhile (412), is no failure: a changed member stays and reaches the phone again as new.
pub async fn delete_member(dav: &DavClient, m: &Member) -> Result<(), BackendError> {
    match dav.delete(&m.url, m.etag.as_deref()).await {
        Ok(()) | Err(DavError::NotFound | DavError::PreconditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

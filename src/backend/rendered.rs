//! Items fetched for one answer, each already rendered into an encoded WBXML [`Fragment`]
//! (the store renders an item the moment it arrives, so nothing raw is kept), spliced into
//! the response later.
//!
//! Owns the container and how an item is written into `<ApplicationData>`; knows nothing of
//! item classes (the stores render) or of responses (the Sync command writes them). Holds at
//! most one window of items.

use std::collections::HashMap;
use std::io::Write;

use eas_wbxml::tags::airsync as a;
use eas_wbxml::{EncodeError, Fragment, Writer};

use super::{Fold, ItemId};

/// Rendered items of one collection, ready to be written.
#[derive(Default)]
pub struct Rendered {
    items: HashMap<ItemId, Entry>,
}

struct Entry {
    /// What the phone sees of the item as fetched.
    fold: Fold,
    /// The whole item (for Add and Fetch).
    full: Option<Fragment>,
    /// What a Change carries (for mail: the flags).
    change: Option<Fragment>,
}

impl Rendered {
    /// Adds a whole item.
    pub fn insert_full(&mut self, id: ItemId, fold: Fold, properties: Fragment) {
        self.items.insert(
            id,
            Entry {
                fold,
                full: Some(properties),
                change: None,
            },
        );
    }

    /// Adds an item rendered for a Change only.
    pub fn insert_change(&mut self, id: ItemId, fold: Fold, properties: Fragment) {
        self.items.insert(
            id,
            Entry {
                fold,
                full: None,
                change: Some(properties),
            },
        );
    }

    /// The encoded size of the whole items held.
    pub fn encoded_len(&self) -> usize {
        self.items
            .values()
            .filter_map(|e| e.full.as_ref())
            .map(|f| f.len() + 64)
            .sum()
    }

    pub fn contains(&self, id: ItemId) -> bool {
        self.items.contains_key(&id)
    }

    /// The fold of an item as it was fetched.
    pub fn fold_of(&self, id: ItemId) -> Option<Fold> {
        self.items.get(&id).map(|e| e.fold)
    }

    pub fn extend(&mut self, other: Rendered) {
        self.items.extend(other.items);
    }

    /// Writes `<ApplicationData>` for an item: the whole item, or what a Change carries.
    pub fn write<W: Write>(
        &self,
        w: &mut Writer<W>,
        id: ItemId,
        change_only: bool,
    ) -> Result<(), EncodeError> {
        w.start(a::ApplicationData)?;
        let entry = self.items.get(&id);
        let part = entry.and_then(|e| if change_only { &e.change } else { &e.full }.as_ref());
        if let Some(p) = part {
            w.splice(p)?;
        }
        w.end()?;
        Ok(())
    }

    /// The item's properties without a wrapper (ItemOperations puts them in `Properties`).
    pub fn write_properties<W: Write>(
        &self,
        w: &mut Writer<W>,
        id: ItemId,
    ) -> Result<(), EncodeError> {
        if let Some(p) = self.items.get(&id).and_then(|e| e.full.as_ref()) {
            w.splice(p)?;
        }
        Ok(())
    }
}

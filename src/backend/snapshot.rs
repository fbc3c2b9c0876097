//! What a device was told about one collection, under one SyncKey, and how the collection's
//! current state differs from it.
//!
//! Owns the snapshot's compact byte form (stored opaquely by the state store; the store's
//! [`Token`] writes its own part) and the diff that turns "what the device knows" plus "what
//! the store has now" into Add / Change / Delete / SoftDelete lists, and the windows a diff is
//! sent in. Pure: no I/O, no storage, no WBXML.
//!
//! The invariant the whole Sync command rests on: every id in `items` was announced to the
//! device and not yet announced deleted. An item therefore either stays, is changed, or is
//! deleted — it can never vanish silently or be announced twice.

use std::collections::BTreeMap;

use super::{Fold, ItemId, Token};
// A store's listing of what it holds now (item id, fold, inside the filter window): the
// mail store's `UID FETCH 1:*` row, the shape every store can give.
pub use crate::mailstore::Current;

/// A collection's state as of one SyncKey.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot<T> {
    /// The collection's state when the snapshot was taken.
    pub token: T,
    /// Start of the FilterType window (unix seconds) the snapshot was computed for; 0 for all.
    pub since: u64,
    /// True when changes were left for a later Sync (MoreAvailable): the collection may be
    /// unchanged while the device still has something to get.
    pub pending: bool,
    /// Every item the device knows, by id, with the fold it was told.
    pub items: BTreeMap<ItemId, Fold>,
}

/// What the device must be told, before windowing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// New to the device, newest (highest UID) first.
    pub adds: Vec<u32>,
    /// Known, with a different flag state.
    pub changes: Vec<u32>,
    /// Known and gone from the mailbox.
    pub deletes: Vec<u32>,
    /// Known, still in the mailbox, but now outside the FilterType window.
    pub soft_deletes: Vec<u32>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty()
            && self.changes.is_empty()
            && self.deletes.is_empty()
            && self.soft_deletes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.adds.len() + self.changes.len() + self.deletes.len() + self.soft_deletes.len()
    }
}

/// Compares what the device knows with the mailbox. `current` must be sorted by UID (as
/// `UID FETCH 1:*` returns it); a merge walk keeps this linear with no extra copies.
pub fn diff(known: &BTreeMap<ItemId, Fold>, current: &[Current]) -> Diff {
    let mut d = Diff::default();
    let mut k = known.iter().peekable();
    for c in current {
        while let Some(&(&uid, _)) = k.peek() {
            if uid >= c.uid {
                break;
            }
            d.deletes.push(uid);
            k.next();
        }
        match k.peek() {
            Some(&(&uid, &state)) if uid == c.uid => {
                k.next();
                if !c.in_window {
                    d.soft_deletes.push(uid);
                } else if state != c.state {
                    d.changes.push(uid);
                }
            }
            _ => {
                if c.in_window {
                    d.adds.push(c.uid);
                }
            }
        }
    }
    d.deletes.extend(k.map(|(&uid, _)| uid));
    d.adds.reverse();
    d
}

/// The diff from CONDSTORE changes instead of a full listing: `changed` holds only messages
/// whose mod-sequence moved (new ones included), `exists` says whether a UID is still in the
/// mailbox, `in_window` whether it is inside the FilterType window, and `all_desc` iterates
/// every UID, highest first (for messages the device has not been sent yet, e.g. while paging).
/// Gives the same answer as [`diff`] over a full listing.
pub fn diff_changes(
    known: &BTreeMap<ItemId, Fold>,
    changed: &[(ItemId, Fold)],
    all_desc: impl Iterator<Item = u32>,
    exists: impl Fn(u32) -> bool,
    in_window: impl Fn(u32) -> bool,
) -> Diff {
    let mut d = Diff::default();
    for &uid in known.keys() {
        if !exists(uid) {
            d.deletes.push(uid);
        } else if !in_window(uid) {
            d.soft_deletes.push(uid);
        }
    }
    for &(uid, state) in changed {
        if let Some(&old) = known.get(&uid) {
            if exists(uid) && in_window(uid) && old != state {
                d.changes.push(uid);
            }
        }
    }
    d.changes.sort_unstable();
    d.changes.dedup();
    // Both sides descend, so "known?" is a merge walk rather than a lookup per UID (which was
    // the largest part of a page's diff at 10,000 messages).
    let mut known_desc = known.keys().rev().peekable();
    d.adds = all_desc
        .filter(|&u| {
            while known_desc.next_if(|&&k| k > u).is_some() {}
            known_desc.peek() != Some(&&u) && in_window(u)
        })
        .collect();
    d
}

/// The part of a diff that fits in one response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub adds: Vec<u32>,
    pub changes: Vec<u32>,
    pub deletes: Vec<u32>,
    pub soft_deletes: Vec<u32>,
    /// Something was left out.
    pub more: bool,
}

/// [`window`] that leaves the rest in `d`: taking windows one after the other gives the pages
/// a diff is sent in, each what listing again after the previous ones would give while the
/// folder does not change.
pub fn take_window(d: &mut Diff, size: usize) -> Window {
    let mut left = size;
    let mut take = |v: &mut Vec<u32>| {
        let n = v.len().min(left);
        left -= n;
        v.drain(..n).collect::<Vec<u32>>()
    };
    let deletes = take(&mut d.deletes);
    let soft_deletes = take(&mut d.soft_deletes);
    let changes = take(&mut d.changes);
    let adds = take(&mut d.adds);
    Window {
        more: !d.is_empty(),
        adds,
        changes,
        deletes,
        soft_deletes,
    }
}

impl Window {
    /// Operations in the window.
    pub fn len(&self) -> usize {
        self.adds.len() + self.changes.len() + self.deletes.len() + self.soft_deletes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Takes at most `size` operations: deletions first (they free space on the phone and are
/// cheap), then flag changes, then the newest additions.
pub fn window(mut d: Diff, size: usize) -> Window {
    let total = d.len();
    let mut left = size;
    let mut take = |v: &mut Vec<u32>| {
        let n = v.len().min(left);
        left -= n;
        v.truncate(n);
        std::mem::take(v)
    };
    let deletes = take(&mut d.deletes);
    let soft_deletes = take(&mut d.soft_deletes);
    let changes = take(&mut d.changes);
    let adds = take(&mut d.adds);
    Window {
        more: total > size,
        adds,
        changes,
        deletes,
        soft_deletes,
    }
}

impl<T: Token> Snapshot<T> {
    /// The byte form the state store keeps: a format byte, the token's head, the filter
    /// window, the pending bit, the items (ids delta-encoded as varints, so 100,000 items
    /// take a few hundred kilobytes at most), the token's tail.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.items.len() * 6);
        out.push(2); // format version
        self.token.encode_head(&mut out);
        put(&mut out, self.since);
        out.push(u8::from(self.pending));
        put(&mut out, self.items.len() as u64);
        let mut prev = 0u32;
        for (&id, &fold) in &self.items {
            put(&mut out, u64::from(id - prev));
            put(&mut out, u64::from(fold));
            prev = id;
        }
        self.token.encode_tail(&mut out);
        out
    }

    /// Only the front of [`Snapshot::encode`]'s output (`items` left empty, the token without
    /// its tail): enough to tell that nothing changed, at a cost independent of the
    /// collection's size.
    pub fn decode_header(bytes: &[u8]) -> Option<Snapshot<T>> {
        Self::decode_front(bytes).map(|(_, snap, _)| snap)
    }

    fn decode_front(bytes: &[u8]) -> Option<(u8, Snapshot<T>, &[u8])> {
        let (&format, mut rest) = bytes.split_first()?;
        if format != 1 && format != 2 {
            return None;
        }
        let token = T::decode_head(&mut rest)?;
        let since = get(&mut rest)?;
        let (&pending, rest) = rest.split_first()?;
        let snap = Snapshot {
            token,
            since,
            pending: pending != 0,
            items: BTreeMap::new(),
        };
        Some((format, snap, rest))
    }

    /// Reads [`Snapshot::encode`]'s output; None for anything else.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot<T>> {
        let (format, mut snap, mut rest) = Self::decode_front(bytes)?;
        let count = get(&mut rest)?;
        // Ascending by construction: collected first, the map is built in one pass instead of
        // one insertion per item.
        let mut sorted = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut id = 0u32;
        for i in 0..count {
            let delta = u32::try_from(get(&mut rest)?).ok()?;
            if i > 0 && delta == 0 {
                return None;
            }
            id = id.checked_add(delta)?;
            let fold = u32::try_from(get(&mut rest)?).ok()?;
            sorted.push((id, fold));
        }
        snap.items = sorted.into_iter().collect();
        snap.token.decode_tail(&mut rest, format)?;
        rest.is_empty().then_some(snap)
    }
}

/// Writes a varint (7 bits a byte, low first): for tokens' fields too.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a [`put`] varint.
pub fn get(input: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::backend::mail::MailToken;
    use proptest::prelude::*;

    type Mail = Snapshot<MailToken>;

    fn cur(uid: u32, state: u32) -> Current {
        Current {
            uid,
            state,
            in_window: true,
        }
    }

    #[test]
    fn diff_finds_everything_once() {
        let known: BTreeMap<u32, u32> = [(1, 0), (2, 0), (4, 1), (6, 0), (9, 0)].into();
        let now = [
            cur(2, 1),
            cur(4, 1),
            Current {
                uid: 6,
                state: 0,
                in_window: false,
            },
            cur(7, 0),
            Current {
                uid: 8,
                state: 0,
                in_window: false,
            },
            cur(10, 0),
        ];
        let d = diff(&known, &now);
        assert_eq!(d.adds, vec![10, 7]);
        assert_eq!(d.changes, vec![2]);
        assert_eq!(d.deletes, vec![1, 9]);
        assert_eq!(d.soft_deletes, vec![6]);
    }

    proptest! {
        /// Taking windows one after the other: the first is [`window`]'s, and the next is
        /// [`window`] over what the first left.
        #[test]
        fn take_window_is_window_then_the_rest(
            deletes in proptest::collection::vec(any::<u32>(), 0..8),
            soft in proptest::collection::vec(any::<u32>(), 0..8),
            changes in proptest::collection::vec(any::<u32>(), 0..8),
            adds in proptest::collection::vec(any::<u32>(), 0..8),
            n in 1usize..10,
        ) {
            let d = || Diff {
                adds: adds.clone(),
                changes: changes.clone(),
                deletes: deletes.clone(),
                soft_deletes: soft.clone(),
            };
            let mut rest = d();
            let first = take_window(&mut rest, n);
            prop_assert_eq!(&first, &window(d(), n));
            let mut left = d();
            left.deletes.drain(..first.deletes.len());
            left.soft_deletes.drain(..first.soft_deletes.len());
            left.changes.drain(..first.changes.len());
            left.adds.drain(..first.adds.len());
            prop_assert_eq!(&rest, &left);
            let mut rest2 = rest;
            prop_assert_eq!(take_window(&mut rest2, n), window(left, n));
        }
    }

    #[test]
    fn windows_take_deletes_first_and_newest_adds() {
        let d = Diff {
            adds: vec![9, 8, 7],
            changes: vec![3],
            deletes: vec![1],
            soft_deletes: vec![],
        };
        let w = window(d, 3);
        assert_eq!(w.deletes, vec![1]);
        assert_eq!(w.changes, vec![3]);
        assert_eq!(w.adds, vec![9]);
        assert!(w.more);
    }

    #[test]
    fn garbage_is_not_a_snapshot() {
        assert_eq!(Mail::decode(&[]), None);
        assert_eq!(Mail::decode(&[2, 0, 0]), None);
        let mut b = Mail::default().encode();
        b.push(0);
        assert_eq!(Mail::decode(&b), None);
    }

    proptest! {
        #[test]
        fn snapshots_round_trip(
            uidvalidity in any::<u32>(),
            modseq in any::<u64>(),
            items in proptest::collection::btree_map(1u32.., any::<u32>(), 0..200),
            pending in any::<bool>(),
            all in proptest::option::of(proptest::collection::btree_set(1u32..1_000_000, 0..100)),
        ) {
            // Sorted, merged ranges: the runs of consecutive numbers.
            let all = all.map(|set| {
                let mut ranges: Vec<(u32, u32)> = Vec::new();
                for n in set {
                    match ranges.last_mut() {
                        Some(last) if n == last.1 + 1 => last.1 = n,
                        _ => ranges.push((n, n)),
                    }
                }
                ranges
            });
            let s = Mail {
                token: MailToken {
                    uidvalidity,
                    highest_modseq: modseq,
                    uid_next: 7,
                    exists: items.len() as u32,
                    all,
                },
                since: 1_700_000_000,
                pending,
                items,
            };
            let mut header = Mail { items: BTreeMap::new(), ..s.clone() };
            header.token.all = None;
            prop_assert_eq!(Mail::decode_header(&s.encode()), Some(header));
            prop_assert_eq!(Mail::decode(&s.encode()), Some(s));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Mail::decode(&bytes);
        }

        /// The CONDSTORE diff agrees with the full one when `changed` covers every message
        /// whose state moved.
        #[test]
        fn condstore_diff_agrees_with_the_full_diff(
            known in proptest::collection::btree_map(1u32..300, 0u32..4, 0..100),
            now in proptest::collection::btree_map(1u32..300, (0u32..4, any::<bool>()), 0..100),
            extra in proptest::collection::vec(1u32..300, 0..20),
        ) {
            let current: Vec<Current> = now
                .iter()
                .map(|(&uid, &(state, in_window))| Current { uid, state, in_window })
                .collect();
            let full = diff(&known, &current);
            // Changed: every message whose state differs or is new, plus some unchanged ones
            // (a mod-sequence moves on a no-op STORE too).
            let mut changed: Vec<(u32, u32)> = now
                .iter()
                .filter(|(u, (s, _))| known.get(u) != Some(s))
                .map(|(&u, &(s, _))| (u, s))
                .collect();
            changed.extend(extra.iter().filter_map(|u| now.get(u).map(|(s, _)| (*u, *s))));
            let cheap = diff_changes(
                &known,
                &changed,
                now.keys().rev().copied(),
                |u| now.contains_key(&u),
                |u| now.get(&u).is_some_and(|(_, w)| *w),
            );
            prop_assert_eq!(cheap, full);
        }

        /// Applying a diff to what the device knows yields exactly the mailbox (in window).
        #[test]
        fn applying_the_diff_reaches_the_mailbox(
            known in proptest::collection::btree_map(1u32..300, 0u32..4, 0..100),
            now in proptest::collection::btree_map(1u32..300, (0u32..4, any::<bool>()), 0..100),
        ) {
            let current: Vec<Current> = now
                .iter()
                .map(|(&uid, &(state, in_window))| Current { uid, state, in_window })
                .collect();
            let d = diff(&known, &current);
            let mut device = known.clone();
            for uid in d.deletes.iter().chain(&d.soft_deletes) {
                prop_assert!(device.remove(uid).is_some());
            }
            for uid in &d.changes {
                device.insert(*uid, now[uid].0);
            }
            for uid in &d.adds {
                prop_assert!(device.insert(*uid, now[uid].0).is_none());
            }
            let expected: BTreeMap<u32, u32> = now
                .iter()
                .filter(|(_, (_, w))| *w)
                .map(|(&u, &(s, _))| (u, s))
                .collect();
            prop_assert_eq!(device, expected);
            prop_assert!(d.adds.windows(2).all(|w| w[0] > w[1]));
        }
    }
}

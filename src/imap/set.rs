//! [`SequenceSet`]: UID and message-sequence sets (`1:5,7,9:*`, RFC 3501 `sequence-set`).
//!
//! Every command that names messages takes one, and COPYUID, APPENDUID, VANISHED and ESEARCH
//! answer with one. A set keeps its parts in the order they were written, because COPYUID
//! pairs source and destination UIDs by position; sets built from numbers
//! ([`SequenceSet::from_iter`], [`SequenceSet::insert`]) are kept sorted and merged, so they
//! render compactly.
//!
//! `*` ("the highest number in use") is stored as [`STAR`] (`u32::MAX`). A real UID of
//! 4294967295 would be indistinguishable from it; servers assign UIDs upwards from 1 and
//! change UIDVALIDITY long before that, so the ambiguity is accepted for a simpler type.

use std::fmt;
use std::str::FromStr;

/// `*` in a set: the highest UID (or sequence number) in the mailbox.
pub const STAR: u32 = u32::MAX;

/// Parsing a set from text failed; the text is not repeated (it may come from a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UID or sequence set")]
pub struct InvalidSet;

/// A set of UIDs or sequence numbers: inclusive ranges, each with `start <= end`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SequenceSet {
    ranges: Vec<(u32, u32)>,
}

impl SequenceSet {
    /// The empty set. It cannot be sent (IMAP has no empty set); commands given one do
    /// nothing and return an empty result without asking the server.
    pub fn new() -> Self {
        SequenceSet::default()
    }

    /// `1:*`: every message.
    pub fn all() -> Self {
        SequenceSet {
            ranges: vec![(1, STAR)],
        }
    }

    /// One number.
    pub fn single(n: u32) -> Self {
        Self::range(n, n)
    }

    /// `a:b` (in either order, as in IMAP). Zero is not a valid UID and is raised to 1.
    pub fn range(a: u32, b: u32) -> Self {
        let (lo, hi) = (a.min(b).max(1), a.max(b).max(1));
        SequenceSet {
            ranges: vec![(lo, hi)],
        }
    }

    /// Adds `n`, keeping a built set sorted and merged (`1:3` plus 4 is `1:4`).
    pub fn insert(&mut self, n: u32) {
        self.insert_range(n, n);
    }

    /// Adds `a:b`, keeping the set sorted and merged. A set that was parsed in another order
    /// is sorted first.
    pub fn insert_range(&mut self, a: u32, b: u32) {
        let (lo, hi) = (a.min(b).max(1), a.max(b).max(1));
        self.ranges.push((lo, hi));
        self.normalize();
    }

    /// The same numbers, sorted and with overlapping or adjacent ranges merged.
    pub fn normalized(mut self) -> Self {
        self.normalize();
        self
    }

    fn normalize(&mut self) {
        self.ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(self.ranges.len());
        for &(lo, hi) in &self.ranges {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        self.ranges = out;
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// A set of inclusive ranges (in any order; zero raised to 1), sorted and merged.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> Self {
        SequenceSet {
            ranges: ranges
                .into_iter()
                .map(|(a, b)| (a.min(b).max(1), a.max(b).max(1)))
                .collect(),
        }
        .normalized()
    }

    /// The numbers in either set, sorted and merged.
    pub fn union(&self, other: &SequenceSet) -> SequenceSet {
        let mut ranges = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        ranges.extend_from_slice(&self.ranges);
        ranges.extend_from_slice(&other.ranges);
        SequenceSet { ranges }.normalized()
    }

    /// The numbers of this set that are not in `other`, sorted and merged: a linear walk
    /// over both sorted range lists.
    pub fn difference(&self, other: &SequenceSet) -> SequenceSet {
        let a = self.clone().normalized();
        let b = other.clone().normalized();
        let mut out = Vec::with_capacity(a.ranges.len());
        let mut j = 0;
        for &(lo, hi) in &a.ranges {
            let mut lo = lo;
            // Ranges of `b` wholly below this one can be skipped for every later one too.
            while j < b.ranges.len() && b.ranges[j].1 < lo {
                j += 1;
            }
            let mut k = j;
            while lo <= hi {
                match b.ranges.get(k) {
                    Some(&(blo, bhi)) if blo <= hi => {
                        if blo > lo {
                            out.push((lo, blo - 1));
                        }
                        if bhi >= hi {
                            break;
                        }
                        lo = bhi + 1;
                        k += 1;
                    }
                    _ => {
                        out.push((lo, hi));
                        break;
                    }
                }
            }
        }
        SequenceSet { ranges: out }
    }

    /// How many numbers the set holds (counting `*` as one number, [`STAR`]).
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(lo, hi)| u64::from(hi - lo) + 1)
            .sum()
    }

    pub fn contains(&self, n: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= n && n <= hi)
    }

    /// Whether the set mentions `*`, whose meaning depends on the mailbox.
    pub fn has_star(&self) -> bool {
        self.ranges.iter().any(|&(_, hi)| hi == STAR)
    }

    /// The ranges, in the set's order.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// The numbers in the set's order, lazily (`1:*` would be four billion of them).
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// Splits the set into consecutive sets of at most `n` numbers each (at least 1), so a
    /// caller can FETCH a large set in batches of bounded memory.
    pub fn chunks(&self, n: usize) -> Vec<SequenceSet> {
        let n = n.max(1) as u64;
        let mut out = Vec::new();
        let mut current = SequenceSet::new();
        let mut room = n;
        for &(lo, hi) in &self.ranges {
            let mut lo = lo;
            loop {
                let take = (u64::from(hi - lo) + 1).min(room);
                // `take >= 1` and `lo + take - 1 <= hi`, so this stays within u32.
                let end = lo + (take - 1) as u32;
                current.ranges.push((lo, end));
                room -= take;
                if room == 0 {
                    out.push(std::mem::take(&mut current));
                    room = n;
                }
                if end == hi {
                    break;
                }
                lo = end + 1;
            }
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }
}

impl FromIterator<u32> for SequenceSet {
    /// A sorted, merged set of the numbers (zeros are ignored: no message has number 0).
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut nums: Vec<u32> = iter.into_iter().filter(|&n| n > 0).collect();
        nums.sort_unstable();
        nums.dedup();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for n in nums {
            match ranges.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(n) => last.1 = n,
                _ => ranges.push((n, n)),
            }
        }
        SequenceSet { ranges }
    }
}

impl<'a> FromIterator<&'a u32> for SequenceSet {
    fn from_iter<I: IntoIterator<Item = &'a u32>>(iter: I) -> Self {
        iter.into_iter().copied().collect()
    }
}

impl fmt::Display for SequenceSet {
    /// The wire form: `1:3,5,9:*`. The empty set renders as nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |f: &mut fmt::Formatter<'_>, n: u32| {
            if n == STAR {
                f.write_str("*")
            } else {
                write!(f, "{n}")
            }
        };
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            num(f, lo)?;
            if hi != lo {
                f.write_str(":")?;
                num(f, hi)?;
            }
        }
        Ok(())
    }
}

impl FromStr for SequenceSet {
    type Err = InvalidSet;

    /// Parses the wire form, keeping the order of its parts. `0` is refused, as are empty
    /// parts and anything but digits, `:`, `,` and `*`.
    fn from_str(s: &str) -> Result<Self, InvalidSet> {
        parse(s.as_bytes()).ok_or(InvalidSet)
    }
}

/// Parses a set from bytes (see [`FromStr`]); `None` if it is not one.
pub(crate) fn parse(s: &[u8]) -> Option<SequenceSet> {
    fn number(s: &[u8]) -> Option<u32> {
        if s == b"*" {
            return Some(STAR);
        }
        if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = s.iter().try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })?;
        (n > 0).then_some(n)
    }
    if s.is_empty() {
        return None;
    }
    let mut ranges = Vec::new();
    for part in s.split(|&b| b == b',') {
        let mut ends = part.splitn(2, |&b| b == b':');
        let a = number(ends.next()?)?;
        let b = match ends.next() {
            Some(b) => number(b)?,
            None => a,
        };
        ranges.push((a.min(b), a.max(b)));
    }
    Some(SequenceSet { ranges })
}

#[cfg(test)]
mod tests {
    #[test]
    fn union_and_difference_match_plain_sets() {
        use std::collections::BTreeSet;
        let sets = [
            vec![],
            vec![(1, 10)],
            vec![(3, 3), (5, 9), (20, 25)],
            vec![(1, 1), (10, 30)],
            vec![(2, 4), (6, 6), (8, 40)],
            vec![(1, 100)],
        ];
        let plain = |r: &[(u32, u32)]| -> BTreeSet<u32> {
            r.iter().flat_map(|&(lo, hi)| lo..=hi).collect()
        };
        for a in &sets {
            for b in &sets {
                let sa = SequenceSet { ranges: a.clone() };
                let sb = SequenceSet { ranges: b.clone() };
                let (pa, pb) = (plain(a), plain(b));
                let diff = sa.difference(&sb);
                assert_eq!(plain(diff.ranges()), &pa - &pb, "{a:?} - {b:?}");
                assert_eq!(diff, diff.clone().normalized());
                let union = sa.union(&sb);
                assert_eq!(plain(union.ranges()), &pa | &pb, "{a:?} | {b:?}");
            }
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn renders_compactly_and_parses_back() {
        let set: SequenceSet = [9, 1, 2, 3, 5, 10, 11, 12, 3].into_iter().collect();
        assert_eq!(set.to_string(), "1:3,5,9:12");
        assert_eq!("1:3,5,9:12".parse::<SequenceSet>(), Ok(set.clone()));
        assert_eq!(set.len(), 8);
        assert!(set.contains(10) && !set.contains(4));
        assert_eq!(SequenceSet::all().to_string(), "1:*");
        assert_eq!("*:4".parse::<SequenceSet>().unwrap().to_string(), "4:*");
        assert_eq!("7:3".parse::<SequenceSet>().unwrap().to_string(), "3:7");
        assert_eq!(SequenceSet::new().to_string(), "");
    }

    #[test]
    fn parsed_order_is_kept_until_normalized() {
        let set: SequenceSet = "9,1:2".parse().unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [9, 1, 2]);
        assert_eq!(set.clone().normalized().to_string(), "1:2,9");
        let mut built = set;
        built.insert(3);
        assert_eq!(built.to_string(), "1:3,9");
    }

    #[test]
    fn garbage_is_refused() {
        for bad in [
            "",
            "0",
            "1:0",
            ",",
            "1,",
            ":1",
            "1:2:3",
            "a",
            "1 2",
            "99999999999",
        ] {
            assert_eq!(bad.parse::<SequenceSet>(), Err(InvalidSet), "{bad:?}");
        }
    }

    #[test]
    fn chunks_split_ranges_without_expanding_them() {
        let set: SequenceSet = "1:5,8,10:11".parse().unwrap();
        let chunks: Vec<String> = set.chunks(3).iter().map(ToString::to_string).collect();
        assert_eq!(chunks, ["1:3", "4:5,8", "10:11"]);
        assert_eq!(SequenceSet::new().chunks(3), Vec::<SequenceSet>::new());
        let big = SequenceSet::range(1, 1_000_000_000);
        let chunks = big.chunks(400_000_000);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].to_string(), "800000001:1000000000");
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "[0-9:,*]{0,40}") {
            let _ = s.parse::<SequenceSet>();
        }

        #[test]
        fn built_sets_round_trip(nums in proptest::collection::vec(1u32..200, 0..60)) {
            let set: SequenceSet = nums.iter().collect();
            for n in &nums {
                prop_assert!(set.contains(*n));
            }
            let mut sorted = nums.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), sorted.clone());
            prop_assert_eq!(set.len(), sorted.len() as u64);
            if !set.is_empty() {
                prop_assert_eq!(set.to_string().parse::<SequenceSet>(), Ok(set.clone()));
            }
            let rejoined: Vec<u32> = set.chunks(7).iter().flat_map(|c| c.iter().collect::<Vec<_>>()).collect();
            prop_assert_eq!(rejoined, sorted);
        }
    }
}

//! The ids EAS carries as text, as checked types: [`SyncKey`], [`HierarchyKey`],
//! [`CollectionId`], [`ServerId`] and [`PolicyKey`].
//!
//! Owns how each id is read from the wire (`TryFrom<&str>`, failing with [`Malformed`]) and
//! written back (`Display`, which gives the form the gateway always wrote). A malformed id is
//! answered by each command with its own status, the same one it gives a well-formed id it
//! does not know (Sync 3 for a SyncKey, FolderSync 9, GetItemEstimate 2 for a collection, …):
//! reading an id never decides the answer, the command does.
//!
//! Where a command answers with the id as the device sent it (Sync echoes SyncKey and
//! CollectionId, MoveItems the SrcMsgId, ItemOperations the ServerId), it keeps a
//! [`Presented`]: the text, and the id it names if it names one. Phones match answers to
//! requests by that text, so even a malformed id goes back exactly as it came.

use std::fmt;
use std::num::NonZeroU32;

/// An id that is not of its type's form; the command answers it with its own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct Malformed(&'static str);

/// The SyncKey of a Sync collection (also presented to GetItemEstimate): 0 asks for a new
/// partnership, any other value names a snapshot the gateway minted for that folder.
///
/// Read as a number with surrounding white space ignored, as Sync always read it ("03" is key
/// 3). A zero written any other way than "0" names no snapshot (keys are minted from 1) and is
/// refused here rather than looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncKey(u32);

impl SyncKey {
    /// The key a device presents to start over.
    pub const INITIAL: SyncKey = SyncKey(0);

    /// A key the state store minted (its counters start at 1; 0 is [`SyncKey::INITIAL`]).
    pub const fn minted(key: u32) -> SyncKey {
        SyncKey(key)
    }

    pub const fn is_initial(self) -> bool {
        self.0 == 0
    }

    /// The minted key (the state store's counter); None for the initial key.
    pub fn stored(self) -> Option<u32> {
        (self.0 != 0).then_some(self.0)
    }
}

impl TryFrom<&str> for SyncKey {
    type Error = Malformed;

    fn try_from(text: &str) -> Result<SyncKey, Malformed> {
        let text = text.trim();
        match text.parse::<u32>() {
            Ok(0) if text == "0" => Ok(SyncKey::INITIAL),
            Ok(n) if n > 0 => Ok(SyncKey(n)),
            _ => Err(Malformed("SyncKey")),
        }
    }
}

impl fmt::Display for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The SyncKey of FolderSync, FolderCreate, FolderUpdate and FolderDelete: a counter of the
/// device's hierarchy snapshots, apart from the per-folder [`SyncKey`]s.
///
/// Read as the hierarchy commands always read it: a number of at most ten characters without a
/// leading zero (so no key but "0" can be written two ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HierarchyKey(u32);

impl HierarchyKey {
    /// The key a device presents to fetch the whole hierarchy.
    pub const INITIAL: HierarchyKey = HierarchyKey(0);

    /// A key the state store holds a snapshot under (its counters start at 1; 0 is
    /// [`HierarchyKey::INITIAL`]).
    pub const fn stored(key: u32) -> HierarchyKey {
        HierarchyKey(key)
    }

    pub const fn is_initial(self) -> bool {
        self.0 == 0
    }

    /// The state store's counter; None for the initial key.
    pub fn number(self) -> Option<u32> {
        (self.0 != 0).then_some(self.0)
    }
}

impl TryFrom<&str> for HierarchyKey {
    type Error = Malformed;

    fn try_from(text: &str) -> Result<HierarchyKey, Malformed> {
        if text == "0" {
            return Ok(HierarchyKey::INITIAL);
        }
        if text.len() > 10 || text.starts_with('0') {
            return Err(Malformed("hierarchy SyncKey"));
        }
        match text.parse::<u32>() {
            Ok(n) if n > 0 => Ok(HierarchyKey(n)),
            _ => Err(Malformed("hierarchy SyncKey")),
        }
    }
}

impl fmt::Display for HierarchyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A folder's id as the device names it (CollectionId, a folder's ServerId in the hierarchy
/// commands, Ping's folder Id, FolderId of a ComposeMail source): the folder's number in the
/// device's hierarchy.
///
/// `TryFrom` accepts exactly the decimal form the gateway writes, which is how Sync, Ping and
/// the other commands matched ids (as text against the folder list); the hierarchy commands
/// read a folder id as a number ([`CollectionId::parse_number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionId(u32);

impl CollectionId {
    /// The id of a folder in the device's folder list.
    pub const fn new(id: u32) -> CollectionId {
        CollectionId(id)
    }

    /// The folder's number in the device's folder list.
    pub const fn number(self) -> u32 {
        self.0
    }

    /// Reads any decimal the standard parser takes ("05", "+5"): how FolderCreate, FolderUpdate
    /// and FolderDelete read ServerId and ParentId.
    pub fn parse_number(text: &str) -> Result<CollectionId, Malformed> {
        text.parse()
            .map(CollectionId)
            .map_err(|_| Malformed("folder id"))
    }
}

impl TryFrom<&str> for CollectionId {
    type Error = Malformed;

    fn try_from(text: &str) -> Result<CollectionId, Malformed> {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        canonical
            .then(|| text.parse().ok())
            .flatten()
            .map(CollectionId)
            .ok_or(Malformed("CollectionId"))
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A mail item's id (Sync's ServerId, Search's LongId, MoveItems' SrcMsgId and DstMsgId):
/// `<folder>:<uid>`, the folder's [`CollectionId`] and the message's IMAP UID (never 0).
///
/// Both parts are read as the standard parser reads a number, as items were always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId {
    folder: CollectionId,
    uid: u32,
}

impl ServerId {
    /// The id of message `uid` (an IMAP UID, so never 0) in `folder`.
    pub const fn new(folder: CollectionId, uid: u32) -> ServerId {
        ServerId { folder, uid }
    }

    pub const fn folder(self) -> CollectionId {
        self.folder
    }

    /// The UID this id names in `folder`; None when it names an item of another folder.
    pub fn uid_in(self, folder: CollectionId) -> Option<u32> {
        (self.folder == folder).then_some(self.uid)
    }
}

impl TryFrom<&str> for ServerId {
    type Error = Malformed;

    fn try_from(text: &str) -> Result<ServerId, Malformed> {
        let malformed = Malformed("ServerId");
        let (folder, uid) = text.split_once(':').ok_or(malformed)?;
        let folder = CollectionId(folder.parse().map_err(|_| malformed)?);
        match uid.parse() {
            Ok(uid) if uid > 0 => Ok(ServerId { folder, uid }),
            _ => Err(malformed),
        }
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.folder, self.uid)
    }
}

/// A policy key (Provision's PolicyKey, the X-MS-PolicyKey header): a non-zero 32-bit
/// number, since 0 means "no key" to clients. Compared as numbers: "0123" and "123" are
/// the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyKey(NonZeroU32);

impl PolicyKey {
    /// A fresh random key.
    pub fn generate() -> PolicyKey {
        use rand::Rng;
        PolicyKey(NonZeroU32::new(rand::thread_rng().gen_range(1..=u32::MAX)).expect("from 1"))
    }

    /// The key a number names; None for 0, which clients send when they have none.
    pub fn from_number(n: u32) -> Option<PolicyKey> {
        NonZeroU32::new(n).map(PolicyKey)
    }

    /// The key as the device record stores it.
    pub const fn number(self) -> u32 {
        self.0.get()
    }
}

impl TryFrom<&str> for PolicyKey {
    type Error = Malformed;

    fn try_from(text: &str) -> Result<PolicyKey, Malformed> {
        text.parse()
            .map(PolicyKey)
            .map_err(|_| Malformed("PolicyKey"))
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An id as the device sent it, and the id it names when it is well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<T> {
    text: String,
    id: Option<T>,
}

impl<T> Presented<T> {
    /// `text` read with `read` (a `TryFrom`, or a reading of the command's own).
    pub fn read(text: &str, read: impl FnOnce(&str) -> Result<T, Malformed>) -> Presented<T> {
        Presented {
            text: text.to_owned(),
            id: read(text).ok(),
        }
    }

    /// The text as sent, for the answer.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl<T: Copy> Presented<T> {
    /// The id, or None when the text is not one.
    pub fn id(&self) -> Option<T> {
        self.id
    }
}

impl<T: fmt::Display> From<T> for Presented<T> {
    fn from(id: T) -> Presented<T> {
        Presented {
            text: id.to_string(),
            id: Some(id),
        }
    }
}

impl<T> Presented<T>
where
    T: for<'a> TryFrom<&'a str, Error = Malformed>,
{
    /// `text` read with the id's own `TryFrom`.
    pub fn new(text: &str) -> Presented<T> {
        Presented::read(text, |t| T::try_from(t))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sync_keys() {
        let key = |t| SyncKey::try_from(t);
        assert_eq!(key("0"), Ok(SyncKey::INITIAL));
        assert_eq!(key(" 7 ").map(SyncKey::stored), Ok(Some(7)));
        assert_eq!(key("07").map(SyncKey::stored), Ok(Some(7)));
        for bad in ["", "00", "x", "-1", "4294967296", "1.5"] {
            assert!(key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(key("42").unwrap().to_string(), "42");
    }

    #[test]
    fn hierarchy_keys() {
        let key = |t| HierarchyKey::try_from(t);
        assert_eq!(key("0"), Ok(HierarchyKey::INITIAL));
        assert_eq!(key("12").map(HierarchyKey::number), Ok(Some(12)));
        assert_eq!(key("+1").map(HierarchyKey::number), Ok(Some(1)));
        for bad in ["", "00", "012", " 1", "12345678901", "4294967296"] {
            assert!(key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn collection_ids_are_the_written_form() {
        let id = |t| CollectionId::try_from(t).map(CollectionId::number);
        assert_eq!(id("5"), Ok(5));
        assert_eq!(id("0"), Ok(0));
        for bad in ["", "05", "+5", " 5", "5 ", "x", "4294967296"] {
            assert!(id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(CollectionId::parse_number("05"), Ok(CollectionId::new(5)));
        assert!(CollectionId::parse_number(" 5").is_err());
    }

    #[test]
    fn server_ids() {
        let uid = |t, folder| {
            ServerId::try_from(t)
                .ok()
                .and_then(|s| s.uid_in(CollectionId::new(folder)))
        };
        assert_eq!(uid("5:42", 5), Some(42));
        assert_eq!(uid("5:42", 6), None);
        assert_eq!(uid("5:0", 5), None);
        assert_eq!(uid("5:x", 5), None);
        assert_eq!(uid("542", 5), None);
        assert_eq!(uid("05:42", 5), Some(42));
        assert_eq!(uid("5:42:1", 5), None);
        assert_eq!(ServerId::new(CollectionId::new(5), 42).to_string(), "5:42");
    }

    #[test]
    fn policy_keys() {
        assert_eq!(
            PolicyKey::try_from("0123"),
            Ok(PolicyKey::from_number(123).unwrap())
        );
        assert!(PolicyKey::try_from("0").is_err());
        assert!(PolicyKey::try_from("x").is_err());
        assert_eq!(PolicyKey::from_number(0), None);
        assert_ne!(PolicyKey::generate().number(), 0);
    }

    #[test]
    fn presented_ids_keep_their_text() {
        let p: Presented<CollectionId> = Presented::new("05");
        assert_eq!((p.text(), p.id()), ("05", None));
        let p: Presented<SyncKey> = SyncKey::INITIAL.into();
        assert_eq!((p.text(), p.id()), ("0", Some(SyncKey::INITIAL)));
    }
}

//! What the server tells us about mailboxes: [`Mailbox`] (one LIST entry), its
//! [`SpecialUse`] (RFC 6154), [`MailboxStatus`] (what SELECT reports) and [`StatusInfo`]
//! (what STATUS reports).

use super::utf7;

/// One mailbox as LIST reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The Unicode name (decoded from modified UTF-7). If the server sent a name that is not
    /// valid modified UTF-7, this is the wire name unchanged.
    pub name: String,
    /// The name exactly as on the wire.
    pub raw_name: String,
    /// The hierarchy separator, or `None` for a flat namespace (`NIL`).
    pub delimiter: Option<char>,
    /// Attributes as sent, e.g. `\HasNoChildren`, `\Sent`, `\Noselect`.
    pub attributes: Vec<String>,
}

/// The special uses of RFC 6154, announced as LIST attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    /// The attribute as written on the wire (`\Sent`).
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    const ALL: [SpecialUse; 7] = [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ];

    /// The special use an attribute names, if any (attributes are case-insensitive).
    pub fn from_attribute(attr: &str) -> Option<SpecialUse> {
        Self::ALL
            .into_iter()
            .find(|u| u.attribute().eq_ignore_ascii_case(attr))
    }
}

impl Mailbox {
    /// Builds the entry from what LIST sent. `raw_name` is the mailbox as on the wire.
    pub fn from_wire(raw_name: String, delimiter: Option<char>, attributes: Vec<String>) -> Self {
        let name = utf7::decode(&raw_name).unwrap_or_else(|_| raw_name.clone());
        Mailbox {
            name,
            raw_name,
            delimiter,
            attributes,
        }
    }

    /// The first special-use attribute, if the mailbox has one.
    pub fn special_use(&self) -> Option<SpecialUse> {
        self.attributes
            .iter()
            .find_map(|a| SpecialUse::from_attribute(a))
    }

    /// Whether the mailbox has this attribute (case-insensitive), e.g. `\Noselect`.
    pub fn has_attribute(&self, attr: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attr))
    }

    /// False for placeholders that only hold children (`\Noselect`) or do not exist
    /// (`\NonExistent`, RFC 5258).
    pub fn is_selectable(&self) -> bool {
        !self.has_attribute("\\Noselect") && !self.has_attribute("\\NonExistent")
    }

    /// True for the INBOX (its name is case-insensitive, RFC 3501 §5.1).
    pub fn is_inbox(&self) -> bool {
        self.raw_name.eq_ignore_ascii_case("INBOX")
    }
}

/// What SELECT reported about the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// Number of messages (`* n EXISTS`).
    pub exists: u32,
    /// `* n RECENT` (0 if the server did not say).
    pub recent: u32,
    /// `[UIDVALIDITY n]`: when it changes, every UID we knew for this mailbox is void.
    pub uid_validity: u32,
    /// `[UIDNEXT n]`: the UID the next new message will get at least, when reported.
    pub uid_next: Option<u32>,
    /// `[HIGHESTMODSEQ n]` (CONDSTORE), when the server keeps mod-sequences for the mailbox.
    pub highest_modseq: Option<u64>,
    /// `* FLAGS (…)`.
    pub flags: Vec<String>,
    /// `[PERMANENTFLAGS (…)]`.
    pub permanent_flags: Vec<String>,
    /// True when the server opened the mailbox `[READ-ONLY]`.
    pub read_only: bool,
}

/// What STATUS reported about a mailbox ([`super::Session::mailbox_status`]); enough to tell
/// "nothing changed" without selecting it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusInfo {
    pub messages: u32,
    pub uid_next: u32,
    pub uid_validity: u32,
    pub unseen: u32,
    /// `None` without CONDSTORE, or for a mailbox without mod-sequences.
    pub highest_modseq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_use_is_case_insensitive_and_first_wins() {
        let mb = Mailbox::from_wire(
            "Sent".into(),
            Some('/'),
            vec!["\\HasNoChildren".into(), "\\sent".into(), "\\Trash".into()],
        );
        assert_eq!(mb.special_use(), Some(SpecialUse::Sent));
        assert!(mb.is_selectable());
        let plain = Mailbox::from_wire("x".into(), None, vec!["\\Noselect".into()]);
        assert_eq!(plain.special_use(), None);
        assert!(!plain.is_selectable());
    }

    #[test]
    fn name_is_decoded_and_invalid_names_are_kept() {
        let mb = Mailbox::from_wire("Entw&APw-rfe".into(), Some('/'), vec![]);
        assert_eq!(mb.name, "Entwürfe");
        assert_eq!(mb.raw_name, "Entw&APw-rfe");
        let odd = Mailbox::from_wire("a&b".into(), Some('/'), vec![]);
        assert_eq!(odd.name, "a&b");
    }

    #[test]
    fn every_special_use_round_trips_through_its_attribute() {
        for u in SpecialUse::ALL {
            assert_eq!(SpecialUse::from_attribute(u.attribute()), Some(u));
        }
        assert_eq!(SpecialUse::from_attribute("\\Important"), None);
    }
}

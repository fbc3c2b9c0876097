//! From IMAP mailboxes to the EAS folder hierarchy: folder types, parents, display names and
//! stable ids.
//!
//! Owns the mapping rules: INBOX is the Inbox (type 2); Drafts, Deleted Items and Sent Items
//! (3, 4, 5) come from SPECIAL-USE attributes when the server has them, otherwise from common
//! names (`Sent`, `Sent Messages`, `Sent Items`, `Drafts`, `Trash`, `Deleted Messages` …);
//! everything else is a user mail folder (12). Phones insist on exactly one folder of each
//! default type, so a missing one is created. Servers that put every folder under `INBOX.`
//! (Courier style) get that prefix hidden, so Sent is a top-level folder, not a child of Inbox.
//!
//! Folder ids are small integers, allocated per device and kept in the state store under the
//! mailbox name, so they survive a FolderSync with key 0 and a rename made through EAS.

use std::collections::HashMap;

use crate::mailstore::{Hierarchy, Mailbox, SpecialUse};
use crate::state::{DeviceKey, FolderEntry, StateError, StateStore};

pub use crate::backend::kinds::{DELETED_ITEMS, DRAFTS, INBOX, SENT_ITEMS, USER_MAIL};

/// Whether a folder type is one of the defaults that cannot be renamed or deleted.
pub fn is_special(kind: u8) -> bool {
    (2..=6).contains(&kind)
}

/// Names that identify a default folder on servers without SPECIAL-USE, compared
/// case-insensitively with the last path component.
const DRAFTS_NAMES: &[&str] = &["drafts", "draft", "entwürfe", "brouillons"];
const TRASH_NAMES: &[&str] = &[
    "trash",
    "deleted messages",
    "deleted items",
    "deleted",
    "bin",
    "papierkorb",
    "corbeille",
];
const SENT_NAMES: &[&str] = &[
    "sent",
    "sent messages",
    "sent items",
    "sent mail",
    "gesendet",
    "gesendete objekte",
    "envoyés",
];

/// A folder as planned from the mailbox list, before ids are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFolder {
    pub imap_name: String,
    pub parent_imap: Option<String>,
    pub display_name: String,
    pub kind: u8,
}

/// How the server lays out its hierarchy.
#[derive(Debug, Clone)]
pub struct Layout {
    pub delimiter: Option<char>,
    /// `Some("INBOX.")` when every folder lives under INBOX (the prefix is hidden).
    pub hidden_prefix: Option<String>,
}

impl Layout {
    /// The IMAP name of a new folder under `parent` (None = top level).
    pub fn child_name(&self, parent: Option<&str>, display_name: &str) -> String {
        let delim = self.delimiter.unwrap_or('/');
        match parent {
            Some(p) => format!("{p}{delim}{display_name}"),
            None => format!(
                "{}{display_name}",
                self.hidden_prefix.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Works out the EAS view of a mailbox list.
pub fn plan(mailboxes: &[Mailbox]) -> (Layout, Vec<PlannedFolder>) {
    let usable: Vec<&Mailbox> = mailboxes
        .iter()
        .filter(|m| !has_attr(m, "\\NonExistent"))
        .collect();
    let delimiter = usable.iter().find_map(|m| m.delimiter);
    let hidden_prefix = delimiter.and_then(|d| {
        let prefix = format!("INBOX{d}");
        let others: Vec<_> = usable.iter().filter(|m| !is_inbox(&m.name)).collect();
        (!others.is_empty() && others.iter().all(|m| m.name.starts_with(&prefix))).then_some(prefix)
    });
    let layout = Layout {
        delimiter,
        hidden_prefix,
    };

    // Default types: SPECIAL-USE first, then names, first match in LIST order.
    let mut kinds: HashMap<&str, u8> = HashMap::new();
    for (kind, use_, names) in [
        (DRAFTS, SpecialUse::Drafts, DRAFTS_NAMES),
        (DELETED_ITEMS, SpecialUse::Trash, TRASH_NAMES),
        (SENT_ITEMS, SpecialUse::Sent, SENT_NAMES),
    ] {
        let by_attr = usable
            .iter()
            .find(|m| m.special_use() == Some(use_) && !kinds.contains_key(m.name.as_str()));
        let by_name = || {
            usable.iter().find(|m| {
                !is_inbox(&m.name)
                    && !kinds.contains_key(m.name.as_str())
                    && names.contains(&last_component(&m.name, &layout).to_lowercase().as_str())
            })
        };
        if let Some(m) = by_attr.or_else(by_name) {
            kinds.insert(m.name.as_str(), kind);
        }
    }

    let names: std::collections::HashSet<&str> = usable.iter().map(|m| m.name.as_str()).collect();
    let folders = usable
        .iter()
        .map(|m| {
            let inbox = is_inbox(&m.name);
            let kind = if inbox {
                INBOX
            } else {
                kinds.get(m.name.as_str()).copied().unwrap_or(USER_MAIL)
            };
            PlannedFolder {
                imap_name: if inbox {
                    "INBOX".into()
                } else {
                    m.name.clone()
                },
                parent_imap: parent_of(&m.name, &layout).filter(|p| names.contains(p.as_str())),
                display_name: if inbox {
                    "Inbox".into()
                } else {
                    last_component(&m.name, &layout).to_owned()
                },
                kind,
            }
        })
        .collect();
    (layout, folders)
}

/// The default folder types the plan lacks (phones want all four).
pub fn missing_defaults(folders: &[PlannedFolder]) -> Vec<(u8, &'static str)> {
    [
        (DRAFTS, "Drafts"),
        (DELETED_ITEMS, "Trash"),
        (SENT_ITEMS, "Sent"),
    ]
    .into_iter()
    .filter(|(kind, _)| !folders.iter().any(|f| f.kind == *kind))
    .collect()
}

/// Lists the mailboxes, creating missing default folders first, and returns the hierarchy
/// with ids assigned. `known` is what the device was last told: a mailbox that vanished from
/// it and reappears under another name with the same UIDVALIDITY was renamed, and keeps its id.
pub async fn current(
    session: &mut Hierarchy,
    store: &dyn StateStore,
    device: &DeviceKey,
    known: &[FolderEntry],
) -> Result<(Layout, Vec<FolderEntry>), CurrentError> {
    let mut listed = session.list_with_uidvalidity().await?;
    let (mut layout, mut planned) = plan(&mailboxes_of(&listed));
    let missing = missing_defaults(&planned);
    if !missing.is_empty() {
        for (_, name) in &missing {
            let full = layout.child_name(None, name);
            // Another client may create it at the same moment; the LIST below settles it.
            if let Err(e) = session.create(&full).await {
                tracing::warn!(folder = %full, error = %e, "could not create a default folder");
            }
            let _ = session.subscribe(&full).await;
        }
        listed = session.list_with_uidvalidity().await?;
        (layout, planned) = plan(&mailboxes_of(&listed));
    }
    let uidvalidity: HashMap<&str, u32> = listed
        .iter()
        .map(|(m, v)| (canonical(&m.name), v.unwrap_or(0)))
        .collect();
    let entries = assign_ids(&planned, &uidvalidity, store, device, known)?;
    Ok((layout, entries))
}

fn mailboxes_of(listed: &[(Mailbox, Option<u32>)]) -> Vec<Mailbox> {
    listed.iter().map(|(m, _)| m.clone()).collect()
}

/// INBOX is case-insensitive in IMAP; every other name is exact.
fn canonical(name: &str) -> &str {
    if is_inbox(name) { "INBOX" } else { name }
}

/// Turns a plan into hierarchy entries with stable ids, recognising renames made behind the
/// gateway's back by their UIDVALIDITY.
pub fn assign_ids(
    planned: &[PlannedFolder],
    uidvalidity: &HashMap<&str, u32>,
    store: &dyn StateStore,
    device: &DeviceKey,
    known: &[FolderEntry],
) -> Result<Vec<FolderEntry>, StateError> {
    let listed: std::collections::HashSet<&str> =
        planned.iter().map(|f| f.imap_name.as_str()).collect();
    let mut vanished: Vec<&FolderEntry> = known
        .iter()
        .filter(|k| !listed.contains(k.imap_name.as_str()) && k.uidvalidity != 0)
        .collect();
    for f in planned {
        let validity = uidvalidity.get(f.imap_name.as_str()).copied().unwrap_or(0);
        let is_new = !known.iter().any(|k| k.imap_name == f.imap_name);
        if let Some(pos) = vanished
            .iter()
            .position(|k| is_new && validity != 0 && k.uidvalidity == validity)
        {
            store.rename_folder_identity(device, vanished[pos].id, &f.imap_name)?;
            vanished.remove(pos);
        }
    }
    let mut ids = HashMap::new();
    for f in planned {
        ids.insert(f.imap_name.as_str(), store.folder_id(device, &f.imap_name)?);
    }
    Ok(planned
        .iter()
        .map(|f| FolderEntry {
            id: ids[f.imap_name.as_str()],
            parent: f
                .parent_imap
                .as_deref()
                .and_then(|p| ids.get(p).copied())
                .unwrap_or(0),
            display_name: f.display_name.clone(),
            kind: f.kind,
            imap_name: f.imap_name.clone(),
            uidvalidity: uidvalidity.get(f.imap_name.as_str()).copied().unwrap_or(0),
        })
        .collect())
}

/// Why the current hierarchy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CurrentError {
    #[error(transparent)]
    Imap(#[from] crate::mailstore::ImapError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<CurrentError> for super::EasError {
    fn from(e: CurrentError) -> Self {
        match e {
            CurrentError::Imap(e) => super::EasError::Imap(e),
            CurrentError::State(e) => super::EasError::State(e),
        }
    }
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

fn has_attr(m: &Mailbox, attr: &str) -> bool {
    m.attributes.iter().any(|a| a.eq_ignore_ascii_case(attr))
}

fn visible_name<'a>(name: &'a str, layout: &Layout) -> &'a str {
    match &layout.hidden_prefix {
        Some(prefix) => name.strip_prefix(prefix.as_str()).unwrap_or(name),
        None => name,
    }
}

fn last_component<'a>(name: &'a str, layout: &Layout) -> &'a str {
    let visible = visible_name(name, layout);
    match layout.delimiter {
        Some(d) => visible.rsplit(d).next().unwrap_or(visible),
        None => visible,
    }
}

fn parent_of(name: &str, layout: &Layout) -> Option<String> {
    let d = layout.delimiter?;
    let visible = visible_name(name, layout);
    let (parent, _) = visible.rsplit_once(d)?;
    Some(format!(
        "{}{parent}",
        if visible.len() < name.len() {
            layout.hidden_prefix.as_deref().unwrap_or("")
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    fn mb(name: &str, delim: char, attrs: &[&str]) -> Mailbox {
        Mailbox {
            name: name.into(),
            raw_name: name.into(),
            delimiter: Some(delim),
            attributes: attrs.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn kind_of(folders: &[PlannedFolder], name: &str) -> u8 {
        folders.iter().find(|f| f.imap_name == name).unwrap().kind
    }

    #[test]
    fn special_use_wins_over_names() {
        let (_, f) = plan(&[
            mb("INBOX", '/', &[]),
            mb("Sent", '/', &[]),
            mb("Gesendet", '/', &["\\Sent"]),
            mb("Drafts", '/', &["\\Drafts"]),
            mb("Trash", '/', &["\\Trash"]),
            mb("Junk", '/', &["\\Junk"]),
            mb("INBOX/Projects", '/', &[]),
        ]);
        assert_eq!(kind_of(&f, "INBOX"), INBOX);
        assert_eq!(kind_of(&f, "Gesendet"), SENT_ITEMS);
        assert_eq!(kind_of(&f, "Sent"), USER_MAIL);
        assert_eq!(kind_of(&f, "Junk"), USER_MAIL);
        let projects = f.iter().find(|x| x.imap_name == "INBOX/Projects").unwrap();
        assert_eq!(projects.parent_imap.as_deref(), Some("INBOX"));
        assert_eq!(projects.display_name, "Projects");
        assert!(missing_defaults(&f).is_empty());
    }

    #[test]
    fn names_without_special_use_and_the_inbox_prefix() {
        let (layout, f) = plan(&[
            mb("INBOX", '.', &[]),
            mb("INBOX.Sent Messages", '.', &[]),
            mb("INBOX.Deleted Messages", '.', &[]),
            mb("INBOX.Spam", '.', &[]),
            mb("INBOX.Work", '.', &[]),
            mb("INBOX.Work.2024", '.', &[]),
        ]);
        assert_eq!(layout.hidden_prefix.as_deref(), Some("INBOX."));
        assert_eq!(kind_of(&f, "INBOX.Sent Messages"), SENT_ITEMS);
        assert_eq!(kind_of(&f, "INBOX.Deleted Messages"), DELETED_ITEMS);
        let sent = f
            .iter()
            .find(|x| x.imap_name == "INBOX.Sent Messages")
            .unwrap();
        assert_eq!(
            (sent.parent_imap.as_deref(), sent.display_name.as_str()),
            (None, "Sent Messages")
        );
        let y = f.iter().find(|x| x.imap_name == "INBOX.Work.2024").unwrap();
        assert_eq!(y.parent_imap.as_deref(), Some("INBOX.Work"));
        assert_eq!(missing_defaults(&f), vec![(DRAFTS, "Drafts")]);
        assert_eq!(layout.child_name(None, "Drafts"), "INBOX.Drafts");
    }

    #[test]
    fn common_names() {
        for (name, kind) in [
            ("Sent Items", SENT_ITEMS),
            ("sent mail", SENT_ITEMS),
            ("Deleted Items", DELETED_ITEMS),
            ("Trash", DELETED_ITEMS),
            ("Draft", DRAFTS),
            ("Spam", USER_MAIL),
        ] {
            let (_, f) = plan(&[mb("INBOX", '/', &[]), mb(name, '/', &[])]);
            assert_eq!(kind_of(&f, name), kind, "{name}");
        }
    }
}

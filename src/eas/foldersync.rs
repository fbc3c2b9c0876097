//! FolderSync (MS-ASCMD 2.2.1.5): the folder hierarchy, whole on SyncKey 0 and as changes
//! against the snapshot of the presented key afterwards.
//!
//! ```xml
//! <FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>
//! ```
//! Every snapshot the device was told about is kept under its key, together with the previous
//! one, so a device that lost a response and presents the older key again gets the same changes
//! (under a new key) instead of status 9 and a full re-download.

use eas_wbxml::Element;
use eas_wbxml::tags::folderhierarchy as fh;

use super::ids::{CollectionId, HierarchyKey, Presented};
use super::status::FolderStatus;
use super::{Context, EasError, Reply, child_text, folders};
use crate::state::FolderEntry;

/// Changes between two hierarchy snapshots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<FolderEntry>,
    pub updated: Vec<FolderEntry>,
    pub deleted: Vec<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }
}

/// What the device must be told to go from `old` to `new`. Adds come parents first.
pub fn diff(old: &[FolderEntry], new: &[FolderEntry]) -> Changes {
    let mut changes = Changes::default();
    for f in new {
        match old.iter().find(|o| o.id == f.id) {
            None => changes.added.push(f.clone()),
            Some(o)
                if (o.parent, &o.display_name, o.kind) != (f.parent, &f.display_name, f.kind) =>
            {
                changes.updated.push(f.clone())
            }
            Some(_) => {}
        }
    }
    changes.deleted = old
        .iter()
        .filter(|o| !new.iter().any(|f| f.id == o.id))
        .map(|o| o.id)
        .collect();
    let depth = |f: &FolderEntry| {
        let mut d = 0;
        let mut parent = f.parent;
        while parent != 0 && d < 64 {
            parent = new.iter().find(|p| p.id == parent).map_or(0, |p| p.parent);
            d += 1;
        }
        d
    };
    changes.added.sort_by_key(|f| (depth(f), f.id));
    changes
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let Some(key) = child_text(body, fh::SyncKey)
        .map(str::trim)
        .map(Presented::<HierarchyKey>::new)
    else {
        return Ok(status(FolderStatus::Malformed));
    };
    let Some(presented) = key.id() else {
        return Ok(status(FolderStatus::InvalidSyncKey));
    };
    let device = ctx.device.key.clone();
    let base = match presented.number() {
        // A new partnership: forget what the device was told before.
        None => {
            ctx.store.reset_hierarchy(&device)?;
            Vec::new()
        }
        Some(k) => match ctx.store.hierarchy(&device, k)? {
            Some(snapshot) => snapshot,
            None => return Ok(status(FolderStatus::InvalidSyncKey)),
        },
    };

    let mut session = ctx.hierarchy().await?;
    let (_, mut current) = folders::current(&mut session, ctx.store, &device, &base).await?;
    let _ = session.logout().await;
    current.extend(super::contacts::folders(ctx, &base).await?);
    current.extend(super::calendar::folders(ctx, &base).await?);

    let changes = diff(&base, &current);
    let new_key = if presented.is_initial() || !changes.is_empty() {
        let next = ctx.store.latest_hierarchy_key(&device)?.unwrap_or(0) + 1;
        ctx.store.put_hierarchy(&device, next, &current)?;
        HierarchyKey::stored(next).into()
    } else {
        // Nothing the device needs to hear; keep its key, as it sent it (and refresh the
        // snapshot, in case an IMAP name changed under an unchanged folder).
        ctx.store
            .put_hierarchy(&device, presented.number().unwrap_or(0), &current)?;
        key
    };
    Ok(Reply::Document(response(new_key.text(), &changes)))
}

fn status(status: FolderStatus) -> Reply {
    Reply::Document(Element::with_children(
        fh::FolderSync,
        vec![Element::with_text(fh::Status, status.as_str())],
    ))
}

fn folder_element(tag: eas_wbxml::Tag, f: &FolderEntry) -> Element {
    Element::with_children(
        tag,
        vec![
            Element::with_text(fh::ServerId, CollectionId::new(f.id).to_string()),
            Element::with_text(fh::ParentId, CollectionId::new(f.parent).to_string()),
            Element::with_text(fh::DisplayName, f.display_name.as_str()),
            Element::with_text(fh::Type, f.kind.to_string()),
        ],
    )
}

fn response(key: &str, changes: &Changes) -> Element {
    let count = changes.added.len() + changes.updated.len() + changes.deleted.len();
    let mut list = vec![Element::with_text(fh::Count, count.to_string())];
    list.extend(
        changes
            .updated
            .iter()
            .map(|f| folder_element(fh::Update, f)),
    );
    list.extend(changes.deleted.iter().map(|id| {
        Element::with_children(
            fh::Delete,
            vec![Element::with_text(
                fh::ServerId,
                CollectionId::new(*id).to_string(),
            )],
        )
    }));
    list.extend(changes.added.iter().map(|f| folder_element(fh::Add, f)));
    Element::with_children(
        fh::FolderSync,
        vec![
            Element::with_text(fh::Status, FolderStatus::Success.as_str()),
            Element::with_text(fh::SyncKey, key),
            Element::with_children(fh::Changes, list),
        ],
    )
}

#[cfg(test)]
mod test {
    use super::*;

    fn f(id: u32, parent: u32, name: &str) -> FolderEntry {
        FolderEntry {
            id,
            parent,
            display_name: name.into(),
            kind: 12,
            imap_name: name.into(),
            uidvalidity: 0,
        }
    }

    #[test]
    fn diff_finds_adds_updates_deletes_parents_first() {
        let old = vec![f(1, 0, "INBOX"), f(2, 0, "A"), f(3, 0, "B")];
        let new = vec![
            f(1, 0, "INBOX"),
            f(5, 4, "child"),
            f(4, 0, "parent"),
            f(2, 0, "A2"),
        ];
        let c = diff(&old, &new);
        assert_eq!(c.added.iter().map(|x| x.id).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(c.updated, vec![f(2, 0, "A2")]);
        assert_eq!(c.deleted, vec![3]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn keys() {
        let stored = |t| {
            HierarchyKey::try_from(t)
                .ok()
                .and_then(HierarchyKey::number)
        };
        assert_eq!(stored("7"), Some(7));
        assert_eq!(stored("07"), None);
        assert_eq!(stored("0"), None);
        assert_eq!(stored("{abc}1"), None);
        assert_eq!(stored("99999999999"), None);
    }
}

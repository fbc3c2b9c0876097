//! FolderCreate, FolderUpdate and FolderDelete (MS-ASCMD 2.2.1.2–2.2.1.4): changes to the
//! hierarchy made on the phone, applied to IMAP with CREATE, RENAME and DELETE, and for
//! contacts, calendar and task folders to the DAV server (`davfolders`).
//!
//! ```xml
//! <FolderCreate xmlns="FolderHierarchy:">
//!   <SyncKey>3</SyncKey><ParentId>0</ParentId><DisplayName>Receipts</DisplayName><Type>12</Type>
//! </FolderCreate>
//! ```
//! Each carries the current hierarchy key and gets a new one whose snapshot already contains
//! the change, so the next FolderSync does not echo it back.

use eas_wbxml::tags::folderhierarchy as fh;
use eas_wbxml::{Element, Tag};

use super::davfolders;
use super::folders::{self, Layout, is_special};
use super::ids::{CollectionId, HierarchyKey};
use super::status::FolderStatus;
use super::{Context, EasError, Reply, child_text};
use crate::backend::kinds::Class;
use crate::mailstore::{Hierarchy, ImapError};
use crate::state::FolderEntry;

/// The hierarchy as the device knows it under its current key, or the status to answer.
async fn current_snapshot(
    ctx: &Context<'_>,
    body: &Element,
) -> Result<Result<(u32, Vec<FolderEntry>), FolderStatus>, EasError> {
    let device = &ctx.device.key;
    let Some(key) = child_text(body, fh::SyncKey).map(str::trim) else {
        return Ok(Err(FolderStatus::Malformed));
    };
    let presented = HierarchyKey::try_from(key)
        .ok()
        .and_then(HierarchyKey::number);
    let latest = ctx.store.latest_hierarchy_key(device)?;
    match (presented, latest) {
        (Some(k), Some(l)) if k == l => match ctx.store.hierarchy(device, k)? {
            Some(s) => Ok(Ok((k, s))),
            None => Ok(Err(FolderStatus::InvalidSyncKey)),
        },
        _ => Ok(Err(FolderStatus::InvalidSyncKey)),
    }
}

/// The IMAP session and the server's hierarchy layout.
async fn session(ctx: &Context<'_>) -> Result<(Hierarchy, Layout), EasError> {
    let mut session = ctx.hierarchy().await?;
    let mailboxes = session.list().await?;
    let (layout, _) = folders::plan(&mailboxes);
    Ok((session, layout))
}

fn reply(root: Tag, status: FolderStatus, extra: Vec<Element>) -> Reply {
    let mut children = vec![Element::with_text(fh::Status, status.as_str())];
    children.extend(extra);
    Reply::Document(Element::with_children(root, children))
}

/// Status for an IMAP failure of CREATE/RENAME/DELETE.
fn imap_status(e: &ImapError, missing: FolderStatus) -> Result<FolderStatus, EasError> {
    match e {
        ImapError::No { code, .. } => Ok(match code.as_deref().map(str::to_ascii_uppercase) {
            Some(c) if c.starts_with("ALREADYEXISTS") => FolderStatus::AlreadyExists,
            Some(c) if c.starts_with("NONEXISTENT") => missing,
            _ => FolderStatus::ServerError,
        }),
        // Connection-level failures are not the folder's fault: let the client retry.
        other => Err(EasError::Imap(clone_error(other))),
    }
}

fn clone_error(e: &ImapError) -> ImapError {
    ImapError::Protocol(e.to_string())
}

fn valid_name(name: &str, layout: &Layout) -> bool {
    !name.trim().is_empty()
        && name.len() <= 255
        && !layout.delimiter.is_some_and(|d| name.contains(d))
        && !name.chars().any(char::is_control)
}

/// Ids of `id` and everything below it.
fn subtree(folders: &[FolderEntry], id: u32) -> Vec<u32> {
    let mut out = vec![id];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(folders.iter().filter(|f| f.parent == parent).map(|f| f.id));
        i += 1;
        if out.len() > folders.len() {
            break; // a cycle in stored state must not loop forever
        }
    }
    out
}

fn name_taken(folders: &[FolderEntry], parent: u32, name: &str, except: Option<u32>) -> bool {
    folders.iter().any(|f| {
        f.parent == parent && Some(f.id) != except && f.display_name.eq_ignore_ascii_case(name)
    })
}

async fn commit(ctx: &Context<'_>, folders: &[FolderEntry]) -> Result<HierarchyKey, EasError> {
    let device = &ctx.device.key;
    let next = ctx.store.latest_hierarchy_key(device)?.unwrap_or(0) + 1;
    ctx.store.put_hierarchy(device, next, folders)?;
    Ok(HierarchyKey::stored(next))
}

/// A folder id as the hierarchy commands read ServerId and ParentId: any decimal number.
fn folder_id(text: &str) -> Option<u32> {
    CollectionId::parse_number(text)
        .ok()
        .map(CollectionId::number)
}

pub async fn create(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let root = fh::FolderCreate;
    let (_, mut snapshot) = match current_snapshot(ctx, body).await? {
        Ok(s) => s,
        Err(status) => return Ok(reply(root, status, vec![])),
    };
    let (Some(parent), Some(name), Some(kind)) = (
        child_text(body, fh::ParentId).map(str::trim),
        child_text(body, fh::DisplayName),
        child_text(body, fh::Type).and_then(|t| t.trim().parse::<u8>().ok()),
    ) else {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    };
    if davfolders::creates(kind) {
        return create_collection(ctx, root, snapshot, parent, name, kind).await;
    }
    // Only mail folders exist on an IMAP server.
    if kind != folders::USER_MAIL && kind != 1 {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    }
    let Some(parent_id) = folder_id(parent) else {
        return Ok(reply(root, FolderStatus::ParentNotFound, vec![]));
    };
    let parent_entry = snapshot.iter().find(|f| f.id == parent_id).cloned();
    if parent_id != 0 && parent_entry.is_none() {
        return Ok(reply(root, FolderStatus::ParentNotFound, vec![]));
    }
    let (mut session, layout) = session(ctx).await?;
    if !valid_name(name, &layout) {
        let _ = session.logout().await;
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    }
    if name_taken(&snapshot, parent_id, name, None) {
        let _ = session.logout().await;
        return Ok(reply(root, FolderStatus::AlreadyExists, vec![]));
    }
    let imap_name = layout.child_name(parent_entry.as_ref().map(|p| p.imap_name.as_str()), name);
    let created = session.create(&imap_name).await;
    if let Err(e) = created {
        let status = imap_status(&e, FolderStatus::ParentNotFound)?;
        let _ = session.logout().await;
        return Ok(reply(root, status, vec![]));
    }
    let _ = session.subscribe(&imap_name).await;
    let _ = session.logout().await;
    let id = ctx.store.folder_id(&ctx.device.key, &imap_name)?;
    snapshot.push(FolderEntry {
        id,
        parent: parent_id,
        display_name: name.to_owned(),
        kind: folders::USER_MAIL,
        imap_name,
        uidvalidity: 0,
    });
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![
            Element::with_text(fh::SyncKey, key.to_string()),
            Element::with_text(fh::ServerId, CollectionId::new(id).to_string()),
        ],
    ))
}

pub async fn update(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let root = fh::FolderUpdate;
    let (_, mut snapshot) = match current_snapshot(ctx, body).await? {
        Ok(s) => s,
        Err(status) => return Ok(reply(root, status, vec![])),
    };
    let (Some(server_id), Some(parent), Some(name)) = (
        child_text(body, fh::ServerId).map(str::trim),
        child_text(body, fh::ParentId).map(str::trim),
        child_text(body, fh::DisplayName),
    ) else {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    };
    let Some(entry) =
        folder_id(server_id).and_then(|id| snapshot.iter().find(|f| f.id == id).cloned())
    else {
        return Ok(reply(root, FolderStatus::NotFound, vec![]));
    };
    if davfolders::is_default(entry.kind) {
        // The default Contacts, Calendar and Tasks folders are default folders like Inbox.
        return Ok(reply(root, FolderStatus::SpecialFolder, vec![]));
    }
    if davfolders::is_dav(entry.kind) {
        return update_collection(ctx, root, snapshot, entry, name).await;
    }
    // Other classes are not IMAP mailboxes and have no store of their own yet.
    if is_special(entry.kind) || Class::of(entry.kind) != Class::Email {
        return Ok(reply(root, FolderStatus::SpecialFolder, vec![]));
    }
    let parent_id = folder_id(parent);
    let parent_entry = parent_id.and_then(|p| snapshot.iter().find(|f| f.id == p).cloned());
    let moved_below_itself = parent_id.is_some_and(|p| subtree(&snapshot, entry.id).contains(&p));
    if parent_id.is_none() || (parent_id != Some(0) && parent_entry.is_none()) || moved_below_itself
    {
        return Ok(reply(root, FolderStatus::ParentNotFound, vec![]));
    }
    let parent_id = parent_id.unwrap_or(0);
    let (mut session, layout) = session(ctx).await?;
    if !valid_name(name, &layout) {
        let _ = session.logout().await;
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    }
    if name_taken(&snapshot, parent_id, name, Some(entry.id)) {
        let _ = session.logout().await;
        return Ok(reply(root, FolderStatus::AlreadyExists, vec![]));
    }
    let new_name = layout.child_name(parent_entry.as_ref().map(|p| p.imap_name.as_str()), name);
    if new_name != entry.imap_name {
        if let Err(e) = session.rename(&entry.imap_name, &new_name).await {
            let status = imap_status(&e, FolderStatus::NotFound)?;
            let _ = session.logout().await;
            return Ok(reply(root, status, vec![]));
        }
        let _ = session.subscribe(&new_name).await;
    }
    let _ = session.logout().await;

    // IMAP renamed the children with it; keep their ids and follow their new names.
    let delim = layout.delimiter.unwrap_or('/');
    let old_prefix = format!("{}{delim}", entry.imap_name);
    let moved = subtree(&snapshot, entry.id);
    for f in snapshot.iter_mut().filter(|f| moved.contains(&f.id)) {
        if f.id == entry.id {
            f.imap_name = new_name.clone();
            f.parent = parent_id;
            f.display_name = name.to_owned();
        } else if let Some(rest) = f.imap_name.strip_prefix(&old_prefix) {
            f.imap_name = format!("{new_name}{delim}{rest}");
        }
        ctx.store
            .rename_folder_identity(&ctx.device.key, f.id, &f.imap_name)?;
    }
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![Element::with_text(fh::SyncKey, key.to_string())],
    ))
}

pub async fn delete(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let root = fh::FolderDelete;
    let (_, mut snapshot) = match current_snapshot(ctx, body).await? {
        Ok(s) => s,
        Err(status) => return Ok(reply(root, status, vec![])),
    };
    let Some(server_id) = child_text(body, fh::ServerId).map(str::trim) else {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    };
    let Some(entry) =
        folder_id(server_id).and_then(|id| snapshot.iter().find(|f| f.id == id).cloned())
    else {
        return Ok(reply(root, FolderStatus::NotFound, vec![]));
    };
    if davfolders::is_default(entry.kind) {
        return Ok(reply(root, FolderStatus::SpecialFolder, vec![]));
    }
    if davfolders::is_dav(entry.kind) {
        return delete_collection(ctx, root, snapshot, entry).await;
    }
    // Other classes are not IMAP mailboxes and have no store of their own yet.
    if is_special(entry.kind) || Class::of(entry.kind) != Class::Email {
        return Ok(reply(root, FolderStatus::SpecialFolder, vec![]));
    }
    let doomed = subtree(&snapshot, entry.id);
    let mut session = ctx.hierarchy().await?;
    // Children first: IMAP refuses to delete a mailbox that still has children.
    for id in doomed.iter().rev() {
        let Some(f) = snapshot.iter().find(|f| f.id == *id) else {
            continue;
        };
        if let Err(e) = session.delete(&f.imap_name).await {
            let status = imap_status(&e, FolderStatus::NotFound)?;
            if status != FolderStatus::NotFound {
                let _ = session.logout().await;
                return Ok(reply(root, status, vec![]));
            }
            // Already gone: deleting it is what the device asked for.
        }
    }
    let _ = session.logout().await;
    snapshot.retain(|f| !doomed.contains(&f.id));
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![Element::with_text(fh::SyncKey, key.to_string())],
    ))
}

/// FolderCreate of a user contacts, calendar or task folder (types 14, 13, 15): a new
/// address book or calendar collection, top level only.
async fn create_collection(
    ctx: &mut Context<'_>,
    root: Tag,
    mut snapshot: Vec<FolderEntry>,
    parent: &str,
    name: &str,
    kind: u8,
) -> Result<Reply, EasError> {
    if folder_id(parent) != Some(0) {
        return Ok(reply(root, FolderStatus::ParentNotFound, vec![]));
    }
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    }
    if name_taken(&snapshot, 0, name, None) {
        return Ok(reply(root, FolderStatus::AlreadyExists, vec![]));
    }
    let locator = match davfolders::create(ctx, kind, name).await? {
        Ok(l) => l,
        Err(status) => return Ok(reply(root, status, vec![])),
    };
    let id = ctx.store.folder_id(&ctx.device.key, &locator)?;
    snapshot.push(FolderEntry {
        id,
        parent: 0,
        display_name: name.to_owned(),
        kind,
        imap_name: locator,
        uidvalidity: 0,
    });
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![
            Element::with_text(fh::SyncKey, key.to_string()),
            Element::with_text(fh::ServerId, CollectionId::new(id).to_string()),
        ],
    ))
}

/// FolderUpdate of an address book, calendar or task list: a rename (collections do not nest).
async fn update_collection(
    ctx: &mut Context<'_>,
    root: Tag,
    mut snapshot: Vec<FolderEntry>,
    entry: FolderEntry,
    name: &str,
) -> Result<Reply, EasError> {
    if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Ok(reply(root, FolderStatus::Malformed, vec![]));
    }
    if name_taken(&snapshot, entry.parent, name, Some(entry.id)) {
        return Ok(reply(root, FolderStatus::AlreadyExists, vec![]));
    }
    let status = davfolders::rename(ctx, &entry.imap_name, name).await?;
    if status != FolderStatus::Success {
        return Ok(reply(root, status, vec![]));
    }
    for f in snapshot.iter_mut().filter(|f| f.id == entry.id) {
        f.display_name = name.to_owned();
    }
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![Element::with_text(fh::SyncKey, key.to_string())],
    ))
}

/// FolderDelete of a user address book, calendar or task list (the default ones are refused
/// like any default folder).
async fn delete_collection(
    ctx: &mut Context<'_>,
    root: Tag,
    mut snapshot: Vec<FolderEntry>,
    entry: FolderEntry,
) -> Result<Reply, EasError> {
    let twins = davfolders::twins(&entry, &snapshot);
    let status = davfolders::delete(ctx, &entry, &twins).await?;
    if status != FolderStatus::Success {
        return Ok(reply(root, status, vec![]));
    }
    // A twin (empty, or the delete was refused) stays in the snapshot: it is what the phone
    // holds, so the next FolderSync, not finding it on the server, tells the phone it is gone.
    snapshot.retain(|f| f.id != entry.id);
    let key = commit(ctx, &snapshot).await?;
    Ok(reply(
        root,
        FolderStatus::Success,
        vec![Element::with_text(fh::SyncKey, key.to_string())],
    ))
}

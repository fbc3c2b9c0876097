//! Ping (MS-ASCMD 2.2.1.13): the phone waits until one of its folders has something new, the
//! folder hierarchy changed, or the heartbeat passes.
//!
//! Owns the request's parameters (the empty Ping reuses the last folder set and heartbeat,
//! stored for the device), its statuses, and the decision "is this news for this device":
//! a folder is news when its counters differ from the device's newest Sync snapshot, so a
//! change the device made itself (already in its snapshot) never wakes it. Waiting costs no
//! IMAP connection of its own: the push hub wakes it with the counters its watcher read.
//! Address books, calendars and task lists are compared the same way, with the sync token
//! the user's DAV watcher read, turned into the item store's token.

use std::collections::BTreeSet;
use std::time::Duration;

use eas_wbxml::Element;
use eas_wbxml::tags::ping as p;

use super::ids::{CollectionId, Presented};
use super::status::PingStatus;
use super::{Context, EasError, Reply, child_text};
use crate::backend::kinds::Class;
use crate::eas::sync;
use crate::mailstore::FolderState;
use crate::push::Signal;
use crate::state::FolderEntry;

/// The last Ping's parameters, which an empty Ping repeats.
pub const MEMO: &str = "ping.last";

/// The parameters of a Ping, as sent or as remembered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Params {
    heartbeat: Option<u64>,
    /// Kept as sent: an id the device's hierarchy lacks is answered when the Ping runs, and
    /// an empty Ping repeats it.
    folders: Option<Vec<Presented<CollectionId>>>,
}

impl Params {
    fn parse(e: &Element) -> Result<Params, ()> {
        let heartbeat = match child_text(e, p::HeartbeatInterval) {
            Some(h) => Some(h.trim().parse().map_err(|_| ())?),
            None => None,
        };
        let folders = e.child(p::Folders).map(|f| {
            f.children_with(p::Folder)
                .filter_map(|x| child_text(x, p::Id).map(|s| Presented::new(s.trim())))
                .collect()
        });
        Ok(Params { heartbeat, folders })
    }

    fn encode(&self) -> Vec<u8> {
        let mut root = Element::new(p::Ping);
        if let Some(h) = self.heartbeat {
            root.push(Element::with_text(p::HeartbeatInterval, h.to_string()));
        }
        if let Some(folders) = &self.folders {
            let mut f = Element::new(p::Folders);
            for id in folders {
                f.push(Element::with_children(
                    p::Folder,
                    vec![
                        Element::with_text(p::Id, id.text()),
                        Element::with_text(p::Class, "Email"),
                    ],
                ));
            }
            root.push(f);
        }
        root.encode()
    }
}

fn answer(status: PingStatus, extra: Vec<Element>) -> Reply {
    let mut children = vec![Element::with_text(p::Status, status.as_str())];
    children.extend(extra);
    Reply::Document(Element::with_children(p::Ping, children))
}

fn changed(folders: &[&FolderEntry]) -> Reply {
    let list = folders
        .iter()
        .map(|f| Element::with_text(p::Folder, CollectionId::new(f.id).to_string()))
        .collect();
    answer(
        PingStatus::Changes,
        vec![Element::with_children(p::Folders, list)],
    )
}

/// Takes the request by value: it is parsed at once and not kept while the Ping waits.
pub async fn run(ctx: &mut Context<'_>, body: Option<Element>) -> Result<Reply, EasError> {
    let Watch { heartbeat, ids } = match read_params(ctx, body)? {
        Ok(watch) => watch,
        Err(refused) => return Ok(refused),
    };
    let hierarchy = ctx.folders()?;
    let device = &ctx.device.key;
    let Some(folders) = watched(&hierarchy, &ids) else {
        // A folder the device's hierarchy does not have: it must FolderSync first.
        return Ok(answer(PingStatus::FolderSyncRequired, Vec::new()));
    };
    // Another node holding an older Ping of the device ends it (several nodes).
    ctx.note_wait()?;
    // Registering makes the user's watcher read every watched mailbox's STATUS on its own
    // connection and publish it, so news that is already there wakes this Ping at once, and
    // a Ping costs no IMAP login of its own (at thousands of phones, logins were the cost).
    // The DAV watcher does the same for the collections with their sync tokens.
    let mailboxes: Vec<String> = folders
        .iter()
        .filter(|f| Class::of(f.kind) == Class::Email)
        .map(|f| f.imap_name.clone())
        .collect();
    let mut collections: Vec<String> = folders.iter().filter_map(|f| dav_url(f)).collect();
    collections.sort_unstable();
    collections.dedup();
    let mut reg = ctx.hub.register_with(
        &ctx.credentials(),
        &device.device_id,
        mailboxes,
        collections,
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(heartbeat);
    wait(ctx, &mut reg, &hierarchy, &folders, deadline).await
}

/// What a Ping watches, and for how long.
struct Watch {
    heartbeat: u64,
    ids: Vec<Presented<CollectionId>>,
}

/// The heartbeat and folders to watch: those sent, completed from the last Ping's (which
/// they then replace). `Err` is the answer to a Ping that cannot run.
fn read_params(ctx: &Context<'_>, body: Option<Element>) -> Result<Result<Watch, Reply>, EasError> {
    let device = &ctx.device.key;
    let remembered = ctx
        .memo(MEMO)?
        .and_then(|b| Element::decode(&b).ok())
        .and_then(|e| Params::parse(&e).ok())
        .unwrap_or_default();
    let sent = match body.as_ref().map(Params::parse) {
        Some(Ok(p)) => p,
        Some(Err(())) => return Ok(Err(answer(PingStatus::SyntaxError, Vec::new()))),
        None => Params::default(),
    };
    drop(body);
    let (Some(heartbeat), Some(ids)) = (
        sent.heartbeat.or(remembered.heartbeat),
        sent.folders.or(remembered.folders),
    ) else {
        return Ok(Err(answer(PingStatus::MissingParameters, Vec::new())));
    };
    if let Some(refused) = out_of_bounds(ctx, heartbeat, &ids) {
        return Ok(Err(refused));
    }
    let params = Params {
        heartbeat: Some(heartbeat),
        folders: Some(ids.clone()),
    };
    ctx.store.put_memo(device, MEMO, &params.encode())?;
    Ok(Ok(Watch { heartbeat, ids }))
}

/// The answer to a heartbeat or a folder list outside what the configuration allows.
fn out_of_bounds(
    ctx: &Context<'_>,
    heartbeat: u64,
    ids: &[Presented<CollectionId>],
) -> Option<Reply> {
    let push = &ctx.config.push;
    if heartbeat < push.min_heartbeat_secs || heartbeat > push.max_heartbeat_secs {
        let limit = heartbeat.clamp(push.min_heartbeat_secs, push.max_heartbeat_secs);
        return Some(answer(
            PingStatus::HeartbeatOutOfRange,
            vec![Element::with_text(p::HeartbeatInterval, limit.to_string())],
        ));
    }
    if ids.len() > push.max_folders {
        return Some(answer(
            PingStatus::TooManyFolders,
            vec![Element::with_text(
                p::MaxFolders,
                push.max_folders.to_string(),
            )],
        ));
    }
    if ids.is_empty() {
        return Some(answer(PingStatus::MissingParameters, Vec::new()));
    }
    None
}

/// The folders the ids name in the device's hierarchy; None when one names none.
fn watched<'h>(
    hierarchy: &'h [FolderEntry],
    ids: &[Presented<CollectionId>],
) -> Option<Vec<&'h FolderEntry>> {
    ids.iter()
        .map(|id| {
            let id = id.id()?;
            hierarchy.iter().find(|f| f.id == id.number())
        })
        .collect()
}

/// Waits for news about the watched folders until `deadline`, and answers.
async fn wait(
    ctx: &Context<'_>,
    reg: &mut crate::push::Registration,
    hierarchy: &[FolderEntry],
    folders: &[&FolderEntry],
    deadline: tokio::time::Instant,
) -> Result<Reply, EasError> {
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let (queued, signal) = tokio::select! {
            s = reg.signals.recv_timed() => match s {
                Some((at, s)) => (Some(at), Some(s)),
                None => (None, None),
            },
            _ = tokio::time::sleep_until(deadline) => {
                // The backend being away for the whole heartbeat is worth telling; a blip is not.
                let status = if down_since.is_some() { PingStatus::ServerError } else { PingStatus::NoChanges };
                return Ok(answer(status, Vec::new()));
            }
        };
        let answered = match signal {
            Some(Signal::Mailbox(mailbox, state)) => {
                let news = counters_changed(ctx, folders, &mailbox, state).await?;
                wakeup(ctx, queued, news.is_some());
                news
            }
            Some(Signal::Arrived {
                mailbox,
                uidvalidity,
                uid,
            }) => {
                let news = arrived(ctx, folders, &mailbox, uidvalidity, uid)?;
                wakeup(ctx, queued, news.is_some());
                news
            }
            Some(Signal::Collection { url, sync, gone }) => {
                let news = Box::pin(collection_changed(ctx, folders, &url, sync, gone)).await?;
                if let (Some(at), true) = (queued, news.is_some()) {
                    crate::metrics::push_wakeup("dav", at.elapsed());
                }
                news
            }
            Some(Signal::Hierarchy(name)) => {
                // News only if the device does not know the mailbox under that name.
                (!hierarchy.iter().any(|f| f.imap_name == name))
                    .then(|| answer(PingStatus::FolderSyncRequired, Vec::new()))
            }
            Some(Signal::BackendDown) => {
                down_since.get_or_insert_with(tokio::time::Instant::now);
                None
            }
            Some(Signal::BackendUp) => {
                down_since = None;
                None
            }
            Some(Signal::Superseded) | Some(Signal::Shutdown) | None => {
                Some(answer(PingStatus::NoChanges, Vec::new()))
            }
        };
        if let Some(reply) = answered {
            return Ok(reply);
        }
    }
}

/// Counts a wake-up with news on `/metrics`: from the hub having it to the answer.
fn wakeup(ctx: &Context<'_>, queued: Option<std::time::Instant>, news: bool) {
    if let (Some(at), true) = (queued, news) {
        let source = match ctx.config.push.source {
            crate::config::PushSource::Imap => "imap",
            crate::config::PushSource::DovecotEvents => "dovecot-events",
            crate::config::PushSource::Both => "both",
        };
        crate::metrics::push_wakeup(source, at.elapsed());
    }
}

/// A mailbox's counters changed (`state`, or read here when the source had none): the
/// answer when that is news for a watched folder the device has a snapshot of.
async fn counters_changed(
    ctx: &Context<'_>,
    folders: &[&FolderEntry],
    mailbox: &str,
    state: Option<FolderState>,
) -> Result<Option<Reply>, EasError> {
    let mut news: BTreeSet<u32> = BTreeSet::new();
    for f in folders.iter().filter(|f| f.imap_name == mailbox) {
        let state = match state {
            Some(s) => s,
            // Boxed: inline, the login's state would sit in every held Ping's future
            // although almost none ever gets here.
            None => match Box::pin(look(ctx, &f.imap_name)).await? {
                Some(s) => s,
                None => return Ok(Some(answer(PingStatus::FolderSyncRequired, Vec::new()))),
            },
        };
        if sync::is_stale(ctx, f.id, &state)? {
            news.insert(f.id);
        }
    }
    if news.is_empty() {
        return Ok(None);
    }
    let hit: Vec<&FolderEntry> = folders
        .iter()
        .copied()
        .filter(|f| news.contains(&f.id))
        .collect();
    Ok(Some(changed(&hit)))
}

/// A message arrived in a mailbox: the answer when that is news for a watched folder.
fn arrived(
    ctx: &Context<'_>,
    folders: &[&FolderEntry],
    mailbox: &str,
    uidvalidity: u32,
    uid: u32,
) -> Result<Option<Reply>, EasError> {
    let mut hit: Vec<&FolderEntry> = Vec::new();
    for f in folders.iter().copied().filter(|f| f.imap_name == mailbox) {
        if sync::is_new_arrival(ctx, f.id, uidvalidity, uid)? {
            hit.push(f);
        }
    }
    Ok((!hit.is_empty()).then(|| changed(&hit)))
}

/// The DAV collection a folder of an address book, calendar or task list is (its locator
/// without the `#tasks` of a task folder); None for mail folders.
fn dav_url(f: &FolderEntry) -> Option<String> {
    if !matches!(
        Class::of(f.kind),
        Class::Contacts | Class::Calendar | Class::Tasks
    ) {
        return None;
    }
    let mut u = reqwest::Url::parse(&f.imap_name).ok()?;
    u.set_fragment(None);
    Some(u.to_string())
}

/// A DAV collection's sync token as the watcher read it: the answer when that is news for a
/// watched folder of that collection (both folders of a collection holding events and tasks).
async fn collection_changed(
    ctx: &Context<'_>,
    folders: &[&FolderEntry],
    url: &str,
    sync: Option<String>,
    gone: bool,
) -> Result<Option<Reply>, EasError> {
    let mut hit: Vec<&FolderEntry> = Vec::new();
    for f in folders
        .iter()
        .copied()
        .filter(|f| dav_url(f).as_deref() == Some(url))
    {
        if gone {
            return Ok(Some(answer(PingStatus::FolderSyncRequired, Vec::new())));
        }
        let stale = match (&sync, Class::of(f.kind)) {
            (Some(t), Class::Contacts) => {
                match crate::backend::contacts::token_of(&f.imap_name, Some(t)) {
                    Some(token) => sync::engine::is_stale(ctx, f.id, &token)?,
                    None => false,
                }
            }
            (Some(t), _) => sync::engine::is_stale(
                ctx,
                f.id,
                &crate::backend::calendar::token_of(&f.imap_name, Some(t)),
            )?,
            // No token on this server: the listing against the snapshot.
            (None, _) => listing_differs(ctx, f).await,
        };
        if stale {
            hit.push(f);
        }
    }
    Ok((!hit.is_empty()).then(|| changed(&hit)))
}

/// For a DAV server without sync tokens or CTags: whether the collection's listing (hrefs and
/// ETags) differs from the device's newest snapshot. A server that cannot be asked is no news.
async fn listing_differs(ctx: &Context<'_>, f: &FolderEntry) -> bool {
    use crate::backend::ItemStore;
    use crate::backend::davitems::DavToken;
    use sync::engine::Store;
    let Ok(Some(snap)) = sync::engine::newest_snapshot::<DavToken>(ctx, f.id) else {
        return false;
    };
    if snap.pending {
        return true;
    }
    let c = crate::backend::CollectionRef {
        id: f.id,
        locator: &f.imap_name,
        kind: f.kind,
    };
    let listed = if Class::of(f.kind) == Class::Contacts {
        let Ok(mut store) = crate::backend::contacts::ContactItems::open(ctx, &[]).await else {
            return false;
        };
        store.changes(c, &snap, snap.since).await
    } else {
        let Ok(mut store) = crate::backend::calendar::CalendarItems::open(ctx, &[]).await else {
            return false;
        };
        store.changes(c, &snap, snap.since).await
    };
    listed.is_ok_and(|l| !l.diff.is_empty())
}

/// A mailbox's counters over a short connection of our own (when the source had none).
/// None when the mailbox is gone.
async fn look(ctx: &Context<'_>, mailbox: &str) -> Result<Option<FolderState>, EasError> {
    let mut store = ctx.mailstore().await?;
    let state = match store.folder_state(mailbox).await {
        Ok(s) => Some(s),
        Err(crate::mailstore::ImapError::No { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    store.close().await;
    Ok(state)
}

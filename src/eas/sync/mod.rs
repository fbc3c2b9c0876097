//! Sync for mail folders (MS-ASCMD 2.2.1.21): several collections per request, client
//! commands applied to IMAP first, then the server's changes in windows, newest first.
//!
//! Owns the command's flow and its statuses. What the device knows lives in
//! [`snapshot::Snapshot`]s stored per SyncKey; the request is read by [`request`]; items are
//! written by [`items`]; the mailbox is reached only through [`crate::mailstore::Mailstore`].
//!
//! Guarantees:
//! - a SyncKey names exactly one snapshot; the previous key stays valid until the device uses
//!   the new one, and an identical retry of the previous request gets the identical answer
//!   (a lost response changes nothing twice);
//! - a Sync with nothing new does one STATUS per collection and no per-message work
//!   (CONDSTORE's HIGHESTMODSEQ, UIDNEXT and MESSAGES all unchanged);
//! - a change the device made is applied to IMAP and folded into the snapshot, so it is
//!   never echoed back.

pub mod drafts;
pub mod items;
pub mod read_ahead;
pub mod request;
pub mod snapshot;

use std::time::Duration;

use eas_wbxml::tags::airsync as a;
use eas_wbxml::{Element, Writer};
use sha2::{Digest, Sha256};

use super::{Context, EasError, Reply};
use crate::eas::folders::{DELETED_ITEMS as TRASH, DRAFTS};
use crate::eas::ids::{CollectionId, Presented, ServerId, SyncKey};
use crate::eas::request::AuthenticatedUser;
use crate::eas::status::{GetItemEstimateStatus, SyncStatus};
use crate::eas::version::ProtocolVersion;
use crate::mailstore::SequenceSet;
use crate::mailstore::{FolderState, Mailstore};
use crate::state::{FolderEntry, unix_now};
use request::{ClientCommand, CollectionRequest, Options, RequestError, SyncRequest};
use snapshot::{FlagState, Snapshot, flag_state};
use std::collections::HashMap;

/// Memo names in the state store.
const MEMO_COLLECTIONS: &str = "sync.collections";
const MEMO_LAST: &str = "sync.last";
/// The bytes of the last answer to client commands, kept apart from [`MEMO_LAST`] because
/// they hold message content: the gateway deletes them [`RESEND_WINDOW_SECS`] after writing.
pub const MEMO_LAST_RESPONSE: &str = "sync.last.response";
/// How long the answer to client commands is kept for an identical retry. A phone that lost
/// an answer retries as soon as it has a connection again, normally within seconds; later, the
/// retry is answered "invalid SyncKey" (status 3, resync the folder) instead, which never
/// applies its commands twice. Message content thus lies in the state store for minutes at
/// most, not until the device's next Sync (which may be hours when it only Pings).
pub const RESEND_WINDOW_SECS: u64 = 10 * 60;

/// How often a held Sync (Wait / HeartbeatInterval) looks at its folders again even without
/// news from the push hub.
const WAIT_POLL: Duration = Duration::from_secs(60);

/// Runs a Sync. `body` is None for the empty request that reuses the cached collections.
pub async fn run(ctx: &mut Context<'_>, body: Option<&Element>) -> Result<Reply, EasError> {
    let device = ctx.device.key.clone();
    // A newer request from the device ends its held Ping or Sync.
    ctx.hub.supersede(&device.user, &device.device_id);
    let bounds = (ctx.config.sync.min_wait_secs, ctx.config.sync.max_wait_secs);
    let fingerprint = body.map(|b| Sha256::digest(b.encode()).to_vec());

    // A retried request whose answer was lost: answer it again, byte for byte.
    if let (Some(fp), Some(last)) = (&fingerprint, ctx.store.memo(&device, MEMO_LAST)?) {
        if let Some(replay) = LastAnswer::decode(&last).filter(|l| &l.fingerprint == fp) {
            if replay.still_latest(ctx)? {
                return Ok(match ctx.store.memo(&device, MEMO_LAST_RESPONSE)? {
                    Some(response) => {
                        tracing::info!("resending the answer to a retried Sync");
                        Reply::Bytes(response)
                    }
                    None => {
                        tracing::info!("retried Sync after its answer expired: resync");
                        replay.expired_answer()
                    }
                });
            }
        }
    }

    let mut req = match body {
        Some(b) => match request::parse(b, bounds) {
            Ok(r) => r,
            Err(RequestError::BadWait { limit_secs }) => return Ok(bad_wait(limit_secs)),
            Err(e) => {
                tracing::info!(error = %e, "malformed Sync");
                return Ok(top_status(SyncStatus::ProtocolError));
            }
        },
        None => SyncRequest::default(),
    };
    let cached = ctx
        .store
        .memo(&device, MEMO_COLLECTIONS)?
        .and_then(|b| Cached::decode(&b));
    if body.is_none() || req.partial {
        let Some(cached) = cached.clone() else {
            return Ok(top_status(SyncStatus::IncompleteRequest));
        };
        req = cached.merge(req);
    } else if let Some(c) = &cached {
        // Options and window sizes the device sent before stay in force when left out.
        c.fill_options(&mut req);
    }
    if req.collections.is_empty() {
        return Ok(top_status(SyncStatus::ProtocolError));
    }

    let hierarchy = match ctx.store.latest_hierarchy_key(&device)? {
        Some(k) => ctx.store.hierarchy(&device, k)?.unwrap_or_default(),
        None => Vec::new(),
    };
    // Pages computed ahead continue where the device's keys left off; a request that
    // carries commands for a folder changes it, so its pager ends.
    let mut ready = HashMap::new();
    for c in &req.collections {
        let Some(f) = folder_of(&hierarchy, &c.collection_id) else {
            continue;
        };
        if !c.commands.is_empty() {
            ctx.read_ahead.cancel(&device, f.id);
        } else if let Some(taken) = ctx.read_ahead.take(&device, f.id).await {
            ready.insert(f.id, taken);
        }
    }
    // Opened when first needed: a request answered from pages computed ahead needs none.
    let mut store: Option<Mailstore> = None;
    let window_total = req
        .window_size
        .unwrap_or(request::MAX_WINDOW)
        .clamp(1, request::MAX_WINDOW);
    // A request that carries client commands is answered at once: waiting would mean
    // applying them again on every look.
    let has_commands = req.collections.iter().any(|c| !c.commands.is_empty());
    let deadline = req
        .wait_secs
        .filter(|_| !has_commands)
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));

    // A held Sync waits in the push hub like a Ping, holding no IMAP connection.
    let mut registration = deadline.map(|_| {
        let mailboxes = req
            .collections
            .iter()
            .filter_map(|c| folder_of(&hierarchy, &c.collection_id))
            .map(|f| f.imap_name.clone());
        ctx.hub
            .register(&ctx.credentials(), &device.device_id, mailboxes)
    });
    let mut outcome;
    loop {
        outcome = Vec::with_capacity(req.collections.len());
        let mut budget = window_total;
        for c in &req.collections {
            let r = match folder_of(&hierarchy, &c.collection_id) {
                None => CollectionOutcome::status(c, SyncStatus::FolderHierarchyChanged),
                Some(f) => {
                    let taken = ready.remove(&f.id);
                    collection(ctx, &mut store, c, f, &mut budget, taken).await?
                }
            };
            outcome.push(r);
        }
        let anything = outcome.iter().any(CollectionOutcome::has_news);
        let (Some(d), Some(reg), false) = (deadline, registration.as_mut(), anything) else {
            break;
        };
        if let Some(s) = store.take() {
            s.close().await;
        }
        // Wake on the hub's news about these mailboxes; look again now and then anyway, in
        // case a source missed something.
        let woke = tokio::select! {
            s = reg.signals.recv() => s,
            _ = tokio::time::sleep(WAIT_POLL) => Some(crate::push::Signal::BackendUp),
            _ = tokio::time::sleep_until(d) => None,
        };
        match woke {
            Some(
                crate::push::Signal::Mailbox(..)
                | crate::push::Signal::Arrived { .. }
                | crate::push::Signal::Hierarchy(_)
                | crate::push::Signal::BackendUp
                | crate::push::Signal::BackendDown,
            ) => {}
            // Heartbeat over, superseded by a newer request, or shutting down: nothing
            // happened, which the spec answers with an empty response.
            _ => {
                remember_collections(ctx, &req)?;
                return Ok(Reply::Empty);
            }
        }
    }
    // A phone that was told MoreAvailable asks for the next page at once.
    if let Some(mut s) = store.take() {
        s.keep_view(outcome.iter().any(|o| o.more));
        s.close().await;
    }
    for o in &mut outcome {
        let Some(folder) = o.folder else { continue };
        if let Some(pager) = o.pager.take() {
            ctx.read_ahead
                .give_back(ctx.device.key.clone(), folder, pager);
        } else if let Some(ahead) = o.ahead.take() {
            start_read_ahead(ctx, folder, ahead);
        }
    }

    // An empty or partial Sync later continues from the keys of this answer, not from the
    // ones this request presented.
    for (c, o) in req.collections.iter_mut().zip(&outcome) {
        if o.status == SyncStatus::Success {
            c.sync_key = o.sync_key.clone();
        }
    }
    remember_collections(ctx, &req)?;
    let response = write_response(&outcome, ctx)?;
    if let Some(fp) = fingerprint {
        // Only an answer to client commands is kept whole: applying them again would not give
        // the same answer (a second Add, a Delete of what is gone). A retried request without
        // commands is answered afresh from its key's snapshot, which is still kept (the
        // previous key stays valid until the device uses the new one), with the same items;
        // storing every page (about 1 MB each during an initial sync) cost 3-10 ms a page.
        let last = if has_commands {
            // The content first: a memo naming keys without it would answer "resync".
            ctx.store.put_memo(&device, MEMO_LAST_RESPONSE, &response)?;
            LastAnswer {
                fingerprint: fp,
                keys: outcome
                    .iter()
                    .filter_map(|o| Some((o.folder?, o.new_key?)))
                    .collect(),
            }
        } else {
            // Replaces an older memo, which must not be replayed any more. (Its response, if
            // any, is never read again and expires with the window.)
            LastAnswer {
                fingerprint: fp,
                keys: Vec::new(),
            }
        };
        ctx.store.put_memo(&device, MEMO_LAST, &last.encode())?;
    }
    Ok(Reply::Bytes(response))
}

fn remember_collections(ctx: &Context<'_>, req: &SyncRequest) -> Result<(), EasError> {
    let cached = Cached::from_request(req);
    ctx.store
        .put_memo(&ctx.device.key, MEMO_COLLECTIONS, &cached.encode())?;
    Ok(())
}

/// What one collection answers.
struct CollectionOutcome {
    collection_id: Presented<CollectionId>,
    folder: Option<u32>,
    /// The key to answer with (the old one, as sent, when nothing changed).
    sync_key: Presented<SyncKey>,
    /// A newly minted key, when the snapshot advanced.
    new_key: Option<u32>,
    status: SyncStatus,
    more: bool,
    commands: Vec<ServerCommand>,
    responses: Vec<ItemResponse>,
    /// Written item data for Add (and Fetch responses), keyed by UID.
    messages: items::Rendered,
    /// What the next page starts from, when read-ahead should compute it.
    ahead: Option<Ahead>,
    /// The pager this answer's page came from, computing the next.
    pager: Option<read_ahead::Pager>,
}

/// The snapshot stored under a new key with MoreAvailable, the folder, and what the page
/// depends on: enough to compute the next page before the phone asks for it.
struct Ahead {
    snapshot: Snapshot,
    /// `snapshot`, encoded (as stored under the new key).
    encoded: Vec<u8>,
    imap_name: String,
    params: read_ahead::Params,
}

impl CollectionOutcome {
    fn status(c: &CollectionRequest, status: SyncStatus) -> CollectionOutcome {
        CollectionOutcome {
            collection_id: c.collection_id.clone(),
            folder: None,
            sync_key: c.sync_key.clone(),
            new_key: None,
            status,
            more: false,
            commands: Vec::new(),
            responses: Vec::new(),
            messages: items::Rendered::default(),
            ahead: None,
            pager: None,
        }
    }

    /// Whether a held Sync should answer now.
    fn has_news(&self) -> bool {
        // A new key alone (the counters moved without anything for the device) is not news:
        // a held Sync keeps waiting.
        self.status != SyncStatus::Success
            || !self.commands.is_empty()
            || !self.responses.is_empty()
            || self.more
    }
}

enum ServerCommand {
    Add(u32),
    Change(u32),
    Delete(u32),
    SoftDelete(u32),
}

enum ItemResponse {
    /// A client Change or Delete that failed (status per item).
    Failed {
        command: &'static str,
        server_id: Presented<ServerId>,
        status: SyncStatus,
    },
    Fetch {
        server_id: Presented<ServerId>,
        uid: Option<u32>,
    },
    Add {
        client_id: String,
        server_id: Option<ServerId>,
        status: SyncStatus,
    },
}

/// The session of a request, logged in (or taken from the pool) when first needed.
async fn opened<'s>(
    ctx: &Context<'_>,
    store: &'s mut Option<Mailstore>,
) -> Result<&'s mut Mailstore, EasError> {
    if store.is_none() {
        *store = Some(ctx.mailstore().await?);
    }
    Ok(store.as_mut().expect("opened above"))
}

async fn collection(
    ctx: &Context<'_>,
    lazy: &mut Option<Mailstore>,
    c: &CollectionRequest,
    folder: &FolderEntry,
    budget: &mut usize,
    ready: Option<read_ahead::Taken>,
) -> Result<CollectionOutcome, EasError> {
    let device = &ctx.device.key;
    let mut out = CollectionOutcome::status(c, SyncStatus::Success);
    out.folder = Some(folder.id);
    let options = c.options.clone().unwrap_or_default();
    let since = options.since(unix_now());

    if c.sync_key.id().is_some_and(SyncKey::is_initial) {
        // A new partnership for this folder: the device knows nothing.
        ctx.store.reset_collection(device, folder.id)?;
        let store = opened(ctx, lazy).await?;
        let Some(state) = folder_state(store, &folder.imap_name).await? else {
            out.status = SyncStatus::FolderHierarchyChanged;
            return Ok(out);
        };
        let snap = Snapshot {
            uidvalidity: state.uidvalidity,
            since,
            pending: true,
            ..Snapshot::default()
        };
        let key = ctx.store.next_collection_key(device, folder.id)?;
        ctx.store
            .put_collection_state(device, folder.id, key, None, &snap.encode())?;
        out.new_key = Some(key);
        out.sync_key = SyncKey::minted(key).into();
        return Ok(out);
    }
    let Some((old_key, bytes)) = c
        .sync_key
        .id()
        .and_then(SyncKey::stored)
        .map(|k| {
            ctx.store
                .collection_state(device, folder.id, k)
                .map(|b| b.map(|b| (k, b)))
        })
        .transpose()?
        .flatten()
    else {
        out.status = SyncStatus::InvalidSyncKey;
        return Ok(out);
    };
    let Some(header) = Snapshot::decode_header(&bytes) else {
        out.status = SyncStatus::InvalidSyncKey;
        return Ok(out);
    };
    let get_changes = c.get_changes.unwrap_or(true);
    let window = c
        .window_size
        .unwrap_or(request::DEFAULT_WINDOW)
        .clamp(1, request::MAX_WINDOW)
        .min(*budget);
    let params = read_ahead::Params {
        options: options.clone(),
        window,
        version: ctx.version,
        since,
    };
    if let Some(taken) = ready {
        // The page continues exactly what this key told the device (see `read_ahead`).
        let mut usable = c.commands.is_empty()
            && get_changes
            && taken.page.params == params
            && bytes == taken.page.from;
        if usable && !taken.page.computed.window.more {
            // The last page: the phone will not come back for the rest by itself, so it must
            // hold everything there is now. One STATUS (the pager closed its view before it
            // sent this page) tells that nothing arrived or changed since it was listed.
            let store = opened(ctx, lazy).await?;
            usable =
                folder_state(store, &folder.imap_name).await? == Some(taken.page.computed.state);
        }
        ctx.read_ahead.note(usable);
        if usable {
            let read_ahead::Taken { page, pager } = taken;
            *budget -= page.computed.window.len();
            out.commands = page.commands;
            out.more = page.computed.window.more;
            out.messages = page.computed.items;
            if !out.commands.is_empty() || page.next != bytes {
                let key = ctx.store.next_collection_key(device, folder.id)?;
                ctx.store.put_collection_state(
                    device,
                    folder.id,
                    key,
                    Some(old_key),
                    &page.next,
                )?;
                out.new_key = Some(key);
                out.sync_key = SyncKey::minted(key).into();
                if out.more {
                    out.pager = Some(pager);
                }
            }
            return Ok(out);
        }
    }

    let store = opened(ctx, lazy).await?;
    let Some(state) = folder_state(store, &folder.imap_name).await? else {
        out.status = SyncStatus::FolderHierarchyChanged;
        return Ok(out);
    };
    // The common case, a phone asking again with nothing new: decided from the snapshot's
    // header and one STATUS, without decoding the per-message part.
    if c.commands.is_empty()
        && get_changes
        && !header.pending
        && state.highest_modseq != 0
        && state.uidvalidity == header.uidvalidity
        && state.highest_modseq == header.highest_modseq
        && state.uid_next == header.uid_next
        && state.exists == header.exists
        && since == header.since
    {
        return Ok(out);
    }
    let Some(mut snap) = Snapshot::decode(&bytes) else {
        out.status = SyncStatus::InvalidSyncKey;
        return Ok(out);
    };
    if state.uidvalidity != snap.uidvalidity {
        // Every UID the device holds is void: it must start over with SyncKey 0.
        tracing::info!(
            folder = folder.id,
            "UIDVALIDITY changed; the device resyncs"
        );
        ctx.store.reset_collection(device, folder.id)?;
        out.status = SyncStatus::InvalidSyncKey;
        return Ok(out);
    }

    let mut changed = false;
    let trash = trash_of(ctx)?;
    for cmd in &c.commands {
        changed |= client_command(
            ctx.user,
            ctx.version,
            store,
            folder,
            cmd,
            c,
            &trash,
            &mut snap,
            &mut out,
        )
        .await?;
    }

    // The snapshot's bytes when they were already computed for the comparison below.
    let mut encoded = None;
    if get_changes && window > 0 {
        let unchanged = !snap.pending
            && !changed
            && state.highest_modseq != 0
            && state.highest_modseq == snap.highest_modseq
            && state.uid_next == snap.uid_next
            && state.exists == snap.exists
            && since == snap.since;
        if !unchanged {
            let Some(computed) =
                compute_page(store, &folder.imap_name, folder.id, &snap, &params).await?
            else {
                // Recreated between the STATUS and the listing: as above.
                ctx.store.reset_collection(device, folder.id)?;
                out.status = SyncStatus::InvalidSyncKey;
                out.commands.clear();
                out.responses.clear();
                return Ok(out);
            };
            *budget -= computed.window.len();
            out.commands.extend(advance(&mut snap, &computed, since));
            out.more = computed.window.more;
            out.messages = computed.items;
            // Client commands may have amended the stored snapshot; without them it is still
            // the bytes read above.
            let stored = if c.commands.is_empty() {
                bytes.clone()
            } else {
                snap_bytes_of(ctx, folder, old_key)?
            };
            let now = snap.encode();
            changed |= !out.commands.is_empty() || now != stored;
            encoded = Some(now);
        }
    }
    // Fetch responses need their items rendered too.
    let fetch_uids: Vec<u32> = out
        .responses
        .iter()
        .filter_map(|r| match r {
            ItemResponse::Fetch { uid: Some(u), .. } => Some(*u),
            _ => None,
        })
        .filter(|u| !out.messages.contains(*u))
        .collect();
    if !fetch_uids.is_empty() {
        let fetched = items::fetch_and_render(
            store,
            &folder.imap_name,
            folder.id,
            &fetch_uids,
            &fetch_uids,
            ctx.version,
            &options,
        )
        .await?;
        out.messages.extend(fetched);
    }

    if changed {
        let key = ctx.store.next_collection_key(device, folder.id)?;
        let encoded = encoded.unwrap_or_else(|| snap.encode());
        ctx.store
            .put_collection_state(device, folder.id, key, Some(old_key), &encoded)?;
        let encoded_for_ahead = encoded;
        out.new_key = Some(key);
        out.sync_key = SyncKey::minted(key).into();
        if out.more && get_changes && ctx.config.sync.read_ahead {
            out.ahead = Some(Ahead {
                snapshot: snap,
                encoded: encoded_for_ahead,
                imap_name: folder.imap_name.clone(),
                params,
            });
        }
    }
    Ok(out)
}

/// Fetches and renders a window's items: whole messages for the adds, flags for the changes.
async fn page_items(
    store: &mut Mailstore,
    mailbox: &str,
    folder: u32,
    w: &snapshot::Window,
    params: &read_ahead::Params,
) -> Result<items::Rendered, EasError> {
    let mut wanted: Vec<u32> = w.changes.clone();
    wanted.extend(&w.adds);
    items::fetch_and_render(
        store,
        mailbox,
        folder,
        &wanted,
        &w.adds,
        params.version,
        &params.options,
    )
    .await
}

/// Lists what changed since `snap` and fetches one window of it; None when the folder is not
/// the one the snapshot knows any more (UIDVALIDITY changed).
async fn compute_page(
    store: &mut Mailstore,
    mailbox: &str,
    folder: u32,
    snap: &Snapshot,
    params: &read_ahead::Params,
) -> Result<Option<read_ahead::Computed>, EasError> {
    let (d, states, state, all) = compute_diff(store, mailbox, snap, params.since).await?;
    if state.uidvalidity != snap.uidvalidity {
        return Ok(None);
    }
    let all_changes = d.changes.len();
    let window = snapshot::window(d, params.window);
    let items = page_items(store, mailbox, folder, &window, params).await?;
    Ok(Some(read_ahead::Computed {
        state,
        window,
        all_changes,
        states,
        all,
        items,
    }))
}

/// The commands a computed window sends, applied to the snapshot: what the device knows
/// after it. The Sync command and read-ahead both use this, so a pager predicts exactly the
/// snapshot the request stores.
fn advance(snap: &mut Snapshot, page: &read_ahead::Computed, since: u64) -> Vec<ServerCommand> {
    let w = &page.window;
    let mut commands = Vec::with_capacity(w.len());
    // Flag changes are found with CHANGEDSINCE the snapshot's HIGHESTMODSEQ; if some did not
    // fit in this window, the old mod-sequence must stay so they are found again. (Adds and
    // deletes are recomputed from every UID each time.)
    let changes_left = w.changes.len() < page.all_changes;
    for &uid in &w.deletes {
        snap.items.remove(&uid);
        commands.push(ServerCommand::Delete(uid));
    }
    for &uid in &w.soft_deletes {
        snap.items.remove(&uid);
        commands.push(ServerCommand::SoftDelete(uid));
    }
    for &uid in &w.changes {
        if let (true, Some(&state)) = (page.items.contains(uid), page.states.get(&uid)) {
            snap.items.insert(uid, state);
            commands.push(ServerCommand::Change(uid));
        }
    }
    for &uid in &w.adds {
        // A message expunged between the listing and the fetch is simply not added; the next
        // Sync does not know it either. Its state is what was fetched.
        if let Some(flags) = page.items.flags_of(uid) {
            snap.items.insert(uid, flag_state(flags));
            commands.push(ServerCommand::Add(uid));
        }
    }
    let now = page.state;
    snap.pending = w.more;
    snap.uidvalidity = now.uidvalidity;
    if !changes_left {
        snap.highest_modseq = now.highest_modseq;
    }
    snap.uid_next = now.uid_next;
    snap.exists = now.exists;
    snap.since = since;
    snap.all = Some(page.all.clone());
    commands
}

/// Starts a pager (see [`read_ahead`]) for the pages after `ahead.snapshot`, on a pooled
/// session of the user's: page after page, each from the snapshot the previous one leads
/// to, until the folder is paged through, the phone stops asking, or the folder changes
/// identity.
fn start_read_ahead(ctx: &Context<'_>, folder: u32, ahead: Ahead) {
    let pool = ctx.pool.clone();
    let imap = ctx.config.imap_config();
    let user = ctx.user.key.clone();
    let login = ctx.user.login.clone();
    let password = ctx.user.password.clone();
    let limits = crate::mailstore::FetchLimits::of(ctx.config);
    let job = move |pages: tokio::sync::mpsc::Sender<read_ahead::Page>| async move {
        let Ok(mut store) =
            Mailstore::open_pooled(&pool, &imap, &user, &login, password.expose()).await
        else {
            return;
        };
        // The pages go to the device: the same bounds as its own requests.
        store.limit_fetches(limits);
        let Ahead {
            mut snapshot,
            encoded: mut from,
            imap_name,
            params,
        } = ahead;
        // One listing for all the pages: each window is what the ones before it left, which
        // is what listing again from the snapshot they lead to would give while nothing
        // changes. Every page records the folder state read before this listing, so whatever
        // changes meanwhile is found by the Sync after the paging (the last page is checked
        // against a STATUS and computed afresh when anything moved); the round trips and the
        // walk over the folder a listing costs are saved on every page.
        let listed = compute_diff(&mut store, &imap_name, &snapshot, params.since).await;
        let (mut rest, states, state, all) = match listed {
            Ok(l) if l.2.uidvalidity == snapshot.uidvalidity => l,
            Ok(_) => {
                store.close().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "read-ahead failed; requests compute their pages");
                store.close().await;
                return;
            }
        };
        loop {
            let all_changes = rest.changes.len();
            let window = snapshot::take_window(&mut rest, params.window);
            let items = match page_items(&mut store, &imap_name, folder, &window, &params).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::debug!(error = %e, "read-ahead failed; requests compute their pages");
                    break;
                }
            };
            let computed = read_ahead::Computed {
                state,
                window,
                all_changes,
                states: states.clone(),
                all: all.clone(),
                items,
            };
            let commands = advance(&mut snapshot, &computed, params.since);
            let next = snapshot.encode();
            let more = computed.window.more;
            let page = read_ahead::Page {
                from: std::mem::replace(&mut from, next.clone()),
                next,
                commands,
                params: params.clone(),
                computed,
            };
            if !more {
                // Closed first: the request for the last page reads the folder's state, which
                // is slow while another session holds it open, and the session is back in the
                // pool for the phone's next request.
                store.close().await;
                let _ = tokio::time::timeout(read_ahead::TTL, pages.send(page)).await;
                return;
            }
            let sent = tokio::time::timeout(read_ahead::TTL, pages.send(page)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        store.close().await;
    };
    ctx.read_ahead.start(ctx.device.key.clone(), folder, job);
}

/// What the next Sync of a collection would send, counted without sending it: the answer to
/// GetItemEstimate. `Err(status)` carries GetItemEstimate's own status (unknown collection,
/// key 0 / not primed, unknown key).
pub async fn estimate(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    collection_id: &Presented<CollectionId>,
    sync_key: Option<SyncKey>,
    options: Option<Options>,
) -> Result<Result<usize, GetItemEstimateStatus>, EasError> {
    let device = &ctx.device.key;
    let Some(folder) = current_folder(ctx, collection_id.id())? else {
        return Ok(Err(GetItemEstimateStatus::InvalidCollection));
    };
    if sync_key.is_some_and(SyncKey::is_initial) {
        return Ok(Err(GetItemEstimateStatus::NotPrimed));
    }
    let Some(snap) = sync_key
        .and_then(SyncKey::stored)
        .map(|k| ctx.store.collection_state(device, folder.id, k))
        .transpose()?
        .flatten()
        .and_then(|b| Snapshot::decode(&b))
    else {
        return Ok(Err(GetItemEstimateStatus::InvalidSyncKey));
    };
    // Without options in the request, the ones the device last synced with apply.
    let options = match options {
        Some(o) => o,
        None => ctx
            .store
            .memo(device, MEMO_COLLECTIONS)?
            .and_then(|b| Cached::decode(&b))
            .and_then(|c| {
                c.collections
                    .into_iter()
                    .find(|c| c.collection_id.text() == collection_id.text())
                    .and_then(|c| c.options)
            })
            .unwrap_or_default(),
    };
    let since = options.since(unix_now());
    let Some(state) = folder_state(store, &folder.imap_name).await? else {
        return Ok(Err(GetItemEstimateStatus::InvalidCollection));
    };
    if state.uidvalidity != snap.uidvalidity {
        return Ok(Err(GetItemEstimateStatus::InvalidSyncKey));
    }
    if !snap.pending
        && state.highest_modseq != 0
        && state.highest_modseq == snap.highest_modseq
        && state.uid_next == snap.uid_next
        && state.exists == snap.exists
        && since == snap.since
    {
        return Ok(Ok(0));
    }
    let (d, _, _, _) = compute_diff(store, &folder.imap_name, &snap, since).await?;
    Ok(Ok(d.len()))
}

/// The diff between what the device knows and the mailbox, the current flag state of the
/// messages that changed, the mailbox state to record, and every UID the mailbox has (for
/// the next snapshot). With CONDSTORE only the messages whose mod-sequence moved are fetched;
/// otherwise every message's flags are listed.
async fn compute_diff(
    store: &mut Mailstore,
    mailbox: &str,
    snap: &Snapshot,
    since: u64,
) -> Result<
    (
        snapshot::Diff,
        HashMap<u32, FlagState>,
        FolderState,
        Vec<(u32, u32)>,
    ),
    EasError,
> {
    let known_all = snap
        .all
        .as_ref()
        .map(|ranges| SequenceSet::from_ranges(ranges.iter().copied()));
    if let Some(ch) = store
        .changes(mailbox, snap.highest_modseq, since, known_all.as_ref())
        .await?
    {
        let all = ch.all.normalized();
        let window = ch.window.map(|w| w.normalized());
        let d = snapshot::diff_changes(
            &snap.items,
            &ch.changed,
            all.ranges()
                .iter()
                .rev()
                .flat_map(|&(lo, hi)| (lo..=hi).rev()),
            |u| member(all.ranges(), u),
            |u| window.as_ref().is_none_or(|w| member(w.ranges(), u)),
        );
        return Ok((
            d,
            ch.changed.into_iter().collect(),
            ch.state,
            all.ranges().to_vec(),
        ));
    }
    let current = store.message_states(mailbox, since).await?;
    let d = snapshot::diff(&snap.items, &current.messages);
    let states = current.messages.iter().map(|m| (m.uid, m.state)).collect();
    let all: SequenceSet = current.messages.iter().map(|m| m.uid).collect();
    Ok((d, states, current.state, all.ranges().to_vec()))
}

/// Whether `n` is in sorted, disjoint ranges (binary search: sets can have many holes).
fn member(ranges: &[(u32, u32)], n: u32) -> bool {
    let i = ranges.partition_point(|&(_, hi)| hi < n);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= n)
}

/// The folder a CollectionId names in the device's newest folder list; a malformed id (None)
/// names none.
pub fn current_folder(
    ctx: &Context<'_>,
    collection_id: Option<CollectionId>,
) -> Result<Option<FolderEntry>, EasError> {
    let Some(id) = collection_id else {
        return Ok(None);
    };
    let device = &ctx.device.key;
    Ok(match ctx.store.latest_hierarchy_key(device)? {
        Some(k) => ctx
            .store
            .hierarchy(device, k)?
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.id == id.number()),
        None => None,
    })
}

/// Whether a folder's counters say the device's newest snapshot of it is out of date. A
/// folder the device never synced is not news (it has nothing to be out of date with).
pub fn is_stale(ctx: &Context<'_>, folder: u32, state: &FolderState) -> Result<bool, EasError> {
    let Some(snap) = newest_snapshot(ctx, folder)? else {
        return Ok(false);
    };
    Ok(snap.pending
        || snap.uidvalidity != state.uidvalidity
        || snap.uid_next != state.uid_next
        || snap.exists != state.exists
        // Flag changes show only in HIGHESTMODSEQ; a server without CONDSTORE has none, and
        // such changes then wait for the next new mail rather than loop the phone.
        || (snap.highest_modseq != 0
            && state.highest_modseq != 0
            && snap.highest_modseq != state.highest_modseq))
}

/// The device's newest Sync snapshot of a folder (None before its first Sync).
fn newest_snapshot(ctx: &Context<'_>, folder: u32) -> Result<Option<Snapshot>, EasError> {
    let device = &ctx.device.key;
    let Some(latest) = ctx.store.collection_keys(device, folder)?.into_iter().max() else {
        return Ok(None);
    };
    Ok(ctx
        .store
        .collection_state(device, folder, latest)?
        .and_then(|b| Snapshot::decode(&b)))
}

/// [`is_stale`] for news that only says "a message with this UID arrived" (Dovecot's events
/// for deliveries and APPENDs): news unless the device's newest snapshot already has that
/// message (its own APPEND, draft or move) or was taken after it arrived.
pub fn is_new_arrival(
    ctx: &Context<'_>,
    folder: u32,
    uidvalidity: u32,
    uid: u32,
) -> Result<bool, EasError> {
    let Some(snap) = newest_snapshot(ctx, folder)? else {
        return Ok(false);
    };
    Ok(snap.pending
        || snap.uidvalidity != uidvalidity
        || (uid >= snap.uid_next && !snap.items.contains_key(&uid)))
}

/// Every folder below `parent` in the device's newest folder list, deepest first (so they
/// can be deleted in order).
pub fn descendants(ctx: &Context<'_>, parent: u32) -> Result<Vec<FolderEntry>, EasError> {
    let device = &ctx.device.key;
    let all = match ctx.store.latest_hierarchy_key(device)? {
        Some(k) => ctx.store.hierarchy(device, k)?.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    let mut frontier = vec![parent];
    while let Some(p) = frontier.pop() {
        for f in all.iter().filter(|f| f.parent == p && f.id != p) {
            frontier.push(f.id);
            out.push(f.clone());
        }
    }
    out.reverse();
    Ok(out)
}

/// Edits every live snapshot of a collection in place, without minting a key: for commands
/// other than Sync (MoveItems, ItemOperations) that change what the device holds, so the
/// next Sync neither echoes their effect nor misses it.
pub fn amend_snapshots(
    ctx: &Context<'_>,
    folder: u32,
    edit: impl Fn(&mut Snapshot),
) -> Result<(), EasError> {
    let device = &ctx.device.key;
    for key in ctx.store.collection_keys(device, folder)? {
        if let Some(mut snap) = ctx
            .store
            .collection_state(device, folder, key)?
            .and_then(|b| Snapshot::decode(&b))
        {
            edit(&mut snap);
            ctx.store
                .replace_collection_state(device, folder, key, &snap.encode())?;
        }
    }
    Ok(())
}

fn snap_bytes_of(ctx: &Context<'_>, folder: &FolderEntry, key: u32) -> Result<Vec<u8>, EasError> {
    Ok(ctx
        .store
        .collection_state(&ctx.device.key, folder.id, key)?
        .unwrap_or_default())
}

/// STATUS of a collection's mailbox; None when the mailbox is gone (deleted or renamed by
/// another client), which the commands answer with their "folder hierarchy changed" status.
async fn folder_state(
    store: &mut Mailstore,
    mailbox: &str,
) -> Result<Option<FolderState>, EasError> {
    match store.folder_state(mailbox).await {
        Ok(s) => Ok(Some(s)),
        Err(crate::mailstore::ImapError::No { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The IMAP name of the user's Trash, from the device's folder list.
fn trash_of(ctx: &Context<'_>) -> Result<Option<String>, EasError> {
    let device = &ctx.device.key;
    Ok(match ctx.store.latest_hierarchy_key(device)? {
        Some(k) => ctx
            .store
            .hierarchy(device, k)?
            .unwrap_or_default()
            .into_iter()
            .find(|f| f.kind == TRASH)
            .map(|f| f.imap_name),
        None => None,
    })
}

/// The folder a collection names in the device's folder list.
fn folder_of<'h>(
    hierarchy: &'h [FolderEntry],
    id: &Presented<CollectionId>,
) -> Option<&'h FolderEntry> {
    let id = id.id()?;
    hierarchy.iter().find(|f| f.id == id.number())
}

/// The UID a client command's ServerId names in this folder.
fn uid_in(server_id: &Presented<ServerId>, folder: &FolderEntry) -> Option<u32> {
    server_id.id()?.uid_in(CollectionId::new(folder.id))
}

/// Applies one client command to IMAP and the snapshot. Returns whether the snapshot changed.
#[allow(clippy::too_many_arguments)]
async fn client_command(
    user: &AuthenticatedUser,
    version: ProtocolVersion,
    store: &mut Mailstore,
    folder: &FolderEntry,
    cmd: &ClientCommand,
    c: &CollectionRequest,
    trash: &Option<String>,
    snap: &mut Snapshot,
    out: &mut CollectionOutcome,
) -> Result<bool, EasError> {
    let mailbox = &folder.imap_name;
    match cmd {
        ClientCommand::Change {
            server_id,
            read,
            flag,
            categories,
        } => {
            let Some(uid) = uid_in(server_id, folder).filter(|u| snap.items.contains_key(u)) else {
                out.responses.push(ItemResponse::Failed {
                    command: "Change",
                    server_id: server_id.clone(),
                    status: SyncStatus::ObjectNotFound,
                });
                return Ok(false);
            };
            let change = crate::mailstore::FlagChange {
                seen: *read,
                flagged: flag.map(|f| f == Some(2)),
                categories: categories.clone(),
            };
            match store.change_flags(mailbox, uid, &change).await? {
                Some(_) => {
                    let old = snap.items.get(&uid).copied().unwrap_or(0);
                    let new = snapshot::with_client_change(
                        old,
                        change.seen,
                        change.flagged,
                        change.categories.as_deref(),
                    );
                    snap.items.insert(uid, new);
                    Ok(true)
                }
                None => {
                    // Gone on the server: the deletion reaches the device with the changes.
                    out.responses.push(ItemResponse::Failed {
                        command: "Change",
                        server_id: server_id.clone(),
                        status: SyncStatus::ObjectNotFound,
                    });
                    Ok(false)
                }
            }
        }
        ClientCommand::Delete { server_id } => {
            let Some(uid) = uid_in(server_id, folder).filter(|u| snap.items.contains_key(u)) else {
                out.responses.push(ItemResponse::Failed {
                    command: "Delete",
                    server_id: server_id.clone(),
                    status: SyncStatus::ObjectNotFound,
                });
                return Ok(false);
            };
            let as_move = c.deletes_as_moves.unwrap_or(true)
                && folder.kind != TRASH
                && trash.as_deref().is_some_and(|t| t != mailbox);
            let target = if as_move { trash.as_deref() } else { None };
            store.delete(mailbox, uid, target).await?;
            // Whether or not it was still there, the device no longer has it.
            snap.items.remove(&uid);
            Ok(true)
        }
        ClientCommand::Fetch { server_id } => {
            let uid = uid_in(server_id, folder);
            out.responses.push(ItemResponse::Fetch {
                server_id: server_id.clone(),
                uid,
            });
            Ok(false)
        }
        ClientCommand::Add { client_id, data } => {
            // Mail is created by SendMail; the only Add EAS allows for mail is a 16.x draft
            // in the Drafts folder. Anything else gets the spec's per-item status 6.
            let draft = (folder.kind == DRAFTS && version >= ProtocolVersion::V16_0)
                .then(|| {
                    let host = user.email.rsplit_once('@').map_or("localhost", |(_, h)| h);
                    drafts::message(data, &user.email, unix_now() as i64, host)
                })
                .flatten();
            let Some(bytes) = draft else {
                out.responses.push(ItemResponse::Add {
                    client_id: client_id.clone(),
                    server_id: None,
                    status: SyncStatus::ConversionError,
                });
                return Ok(false);
            };
            match store.append_draft(mailbox, &bytes).await? {
                Some((uid, flags)) => {
                    snap.items.insert(uid, flag_state(&flags));
                    out.responses.push(ItemResponse::Add {
                        client_id: client_id.clone(),
                        server_id: Some(ServerId::new(CollectionId::new(folder.id), uid)),
                        status: SyncStatus::Success,
                    });
                    Ok(true)
                }
                None => {
                    out.responses.push(ItemResponse::Add {
                        client_id: client_id.clone(),
                        server_id: None,
                        status: SyncStatus::ServerError,
                    });
                    Ok(false)
                }
            }
        }
    }
}

/// Writes the response with the streaming writer: item data is rendered once and copied in.
fn write_response(outcome: &[CollectionOutcome], ctx: &Context<'_>) -> Result<Vec<u8>, EasError> {
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    // Sized for the items up front: a page of 100 is about 1 MB, and growing to it by
    // doubling copied it several times over.
    let items: usize = outcome.iter().map(|o| o.messages.encoded_len()).sum();
    let mut w = Writer::new(Vec::with_capacity(4096 + items + items / 16)).map_err(enc)?;
    w.start(a::Sync).map_err(enc)?;
    w.start(a::Collections).map_err(enc)?;
    for o in outcome {
        w.start(a::Collection).map_err(enc)?;
        w.text_element(a::SyncKey, o.sync_key.text()).map_err(enc)?;
        w.text_element(a::CollectionId, o.collection_id.text())
            .map_err(enc)?;
        w.text_element(a::Status, o.status.as_str()).map_err(enc)?;
        if o.more {
            w.empty(a::MoreAvailable).map_err(enc)?;
        }
        if !o.commands.is_empty() {
            w.start(a::Commands).map_err(enc)?;
            for cmd in &o.commands {
                let folder = CollectionId::new(o.folder.unwrap_or(0));
                match cmd {
                    ServerCommand::Add(uid) | ServerCommand::Change(uid) => {
                        let tag = if matches!(cmd, ServerCommand::Add(_)) {
                            a::Add
                        } else {
                            a::Change
                        };
                        w.start(tag).map_err(enc)?;
                        w.text_element(a::ServerId, &ServerId::new(folder, *uid).to_string())
                            .map_err(enc)?;
                        o.messages
                            .write(&mut w, *uid, matches!(cmd, ServerCommand::Change(_)))?;
                        w.end().map_err(enc)?;
                    }
                    ServerCommand::Delete(uid) | ServerCommand::SoftDelete(uid) => {
                        let tag = if matches!(cmd, ServerCommand::Delete(_)) {
                            a::Delete
                        } else {
                            a::SoftDelete
                        };
                        w.start(tag).map_err(enc)?;
                        w.text_element(a::ServerId, &ServerId::new(folder, *uid).to_string())
                            .map_err(enc)?;
                        w.end().map_err(enc)?;
                    }
                }
            }
            w.end().map_err(enc)?;
        }
        if !o.responses.is_empty() {
            w.start(a::Responses).map_err(enc)?;
            for r in &o.responses {
                match r {
                    ItemResponse::Failed {
                        command,
                        server_id,
                        status,
                    } => {
                        w.start(if *command == "Change" {
                            a::Change
                        } else {
                            a::Delete
                        })
                        .map_err(enc)?;
                        w.text_element(a::ServerId, server_id.text()).map_err(enc)?;
                        w.text_element(a::Status, status.as_str()).map_err(enc)?;
                        w.end().map_err(enc)?;
                    }
                    ItemResponse::Fetch { server_id, uid } => {
                        w.start(a::Fetch).map_err(enc)?;
                        w.text_element(a::ServerId, server_id.text()).map_err(enc)?;
                        match uid.filter(|u| o.messages.contains(*u)) {
                            Some(uid) => {
                                w.text_element(a::Status, SyncStatus::Success.as_str())
                                    .map_err(enc)?;
                                o.messages.write(&mut w, uid, false)?;
                            }
                            None => {
                                w.text_element(a::Status, SyncStatus::ObjectNotFound.as_str())
                                    .map_err(enc)?;
                            }
                        }
                        w.end().map_err(enc)?;
                    }
                    ItemResponse::Add {
                        client_id,
                        server_id,
                        status,
                    } => {
                        w.start(a::Add).map_err(enc)?;
                        w.text_element(a::ClientId, client_id).map_err(enc)?;
                        if let Some(s) = server_id {
                            w.text_element(a::ServerId, &s.to_string()).map_err(enc)?;
                        }
                        w.text_element(a::Status, status.as_str()).map_err(enc)?;
                        w.end().map_err(enc)?;
                    }
                }
            }
            w.end().map_err(enc)?;
        }
        w.end().map_err(enc)?;
    }
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    let _ = ctx;
    w.finish().map_err(enc)
}

fn top_status(status: SyncStatus) -> Reply {
    Reply::Document(Element::with_children(
        a::Sync,
        vec![Element::with_text(a::Status, status.as_str())],
    ))
}

fn bad_wait(limit: u64) -> Reply {
    Reply::Document(Element::with_children(
        a::Sync,
        vec![
            Element::with_text(a::Status, SyncStatus::InvalidWaitOrHeartbeat.as_str()),
            Element::with_text(a::Limit, limit.to_string()),
        ],
    ))
}

/// The collections (with their options) of the last full request, for empty and partial
/// requests.
#[derive(Clone, Debug, Default)]
struct Cached {
    collections: Vec<CollectionRequest>,
    window_size: Option<usize>,
    wait_secs: Option<u64>,
}

impl Cached {
    fn from_request(req: &SyncRequest) -> Cached {
        Cached {
            collections: req
                .collections
                .iter()
                .map(|c| CollectionRequest {
                    commands: Vec::new(),
                    ..c.clone()
                })
                .collect(),
            window_size: req.window_size,
            wait_secs: req.wait_secs,
        }
    }

    /// An empty or partial request: cached collections, overridden by what the request names.
    fn merge(self, mut req: SyncRequest) -> SyncRequest {
        let mut merged = self.collections;
        for c in req.collections.drain(..) {
            match merged
                .iter_mut()
                .find(|m| m.collection_id.text() == c.collection_id.text())
            {
                Some(m) => {
                    let options = c.options.clone().or_else(|| m.options.clone());
                    *m = CollectionRequest { options, ..c };
                }
                None => merged.push(c),
            }
        }
        SyncRequest {
            collections: merged,
            wait_secs: req.wait_secs.or(self.wait_secs),
            window_size: req.window_size.or(self.window_size),
            partial: false,
        }
    }

    fn fill_options(&self, req: &mut SyncRequest) {
        for c in &mut req.collections {
            if c.options.is_none() {
                c.options = self
                    .collections
                    .iter()
                    .find(|m| m.collection_id.text() == c.collection_id.text())
                    .and_then(|m| m.options.clone());
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        // The cached request is kept as a Sync document of our own: the codec is already the
        // most tested serializer we have.
        let mut root = Element::new(a::Sync);
        let mut cols = Element::new(a::Collections);
        for c in &self.collections {
            let mut e = Element::new(a::Collection);
            e.push(Element::with_text(a::SyncKey, c.sync_key.text()));
            e.push(Element::with_text(a::CollectionId, c.collection_id.text()));
            if let Some(g) = c.get_changes {
                e.push(Element::with_text(a::GetChanges, if g { "1" } else { "0" }));
            }
            if let Some(n) = c.window_size {
                e.push(Element::with_text(a::WindowSize, n.to_string()));
            }
            if let Some(d) = c.deletes_as_moves {
                e.push(Element::with_text(
                    a::DeletesAsMoves,
                    if d { "1" } else { "0" },
                ));
            }
            if let Some(o) = &c.options {
                e.push(options_element(o));
            }
            cols.push(e);
        }
        root.push(cols);
        if let Some(n) = self.window_size {
            root.push(Element::with_text(a::WindowSize, n.to_string()));
        }
        if let Some(s) = self.wait_secs {
            root.push(Element::with_text(a::HeartbeatInterval, s.to_string()));
        }
        root.encode()
    }

    fn decode(bytes: &[u8]) -> Option<Cached> {
        let tree = Element::decode(bytes).ok()?;
        let req = request::parse(&tree, (0, u64::MAX)).ok()?;
        Some(Cached {
            collections: req.collections,
            window_size: req.window_size,
            wait_secs: req.wait_secs,
        })
    }
}

fn options_element(o: &Options) -> Element {
    use eas_wbxml::tags::airsyncbase as asb;
    let mut e = Element::new(a::Options);
    e.push(Element::with_text(a::FilterType, o.filter_type.to_string()));
    for p in &o.body_preferences {
        let mut b = Element::new(asb::BodyPreference);
        b.push(Element::with_text(asb::Type, p.kind.to_string()));
        if let Some(t) = p.truncation_size {
            b.push(Element::with_text(asb::TruncationSize, t.to_string()));
        }
        if p.all_or_none {
            b.push(Element::with_text(asb::AllOrNone, "1"));
        }
        if let Some(n) = p.preview {
            b.push(Element::with_text(asb::Preview, n.to_string()));
        }
        e.push(b);
    }
    e.push(Element::with_text(
        a::MIMESupport,
        o.mime_support.to_string(),
    ));
    if let Some(t) = o.mime_truncation {
        e.push(Element::with_text(a::MIMETruncation, t.to_string()));
    }
    if let Some(c) = o.conflict {
        e.push(Element::with_text(a::Conflict, c.to_string()));
    }
    e
}

/// The last request and the keys its answer minted, kept so a retried request gets the same
/// answer (whose bytes are the memo [`MEMO_LAST_RESPONSE`]).
struct LastAnswer {
    fingerprint: Vec<u8>,
    /// (folder, key minted by this answer).
    keys: Vec<(u32, u32)>,
}

impl LastAnswer {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.keys.len() * 8);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for (f, k) in &self.keys {
            out.extend_from_slice(&f.to_be_bytes());
            out.extend_from_slice(&k.to_be_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<LastAnswer> {
        let fingerprint = bytes.get(..32)?.to_vec();
        let n = u32::from_be_bytes(bytes.get(32..36)?.try_into().ok()?) as usize;
        let mut keys = Vec::with_capacity(n.min(1024));
        let mut at = 36;
        for _ in 0..n {
            let f = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
            let k = u32::from_be_bytes(bytes.get(at + 4..at + 8)?.try_into().ok()?);
            keys.push((f, k));
            at += 8;
        }
        // A memo written before the response moved out carries it here; it is not used.
        let _ = at;
        Some(LastAnswer { fingerprint, keys })
    }

    /// The answer to a retry that came after the kept response expired: every collection it
    /// touched starts over (status 3), since applying its commands again could add twice.
    fn expired_answer(&self) -> Reply {
        let collections = self
            .keys
            .iter()
            .map(|(folder, _)| {
                Element::with_children(
                    a::Collection,
                    vec![
                        Element::with_text(a::SyncKey, SyncKey::INITIAL.to_string()),
                        Element::with_text(a::CollectionId, CollectionId::new(*folder).to_string()),
                        Element::with_text(a::Status, SyncStatus::InvalidSyncKey.as_str()),
                    ],
                )
            })
            .collect();
        Reply::Document(Element::with_children(
            a::Sync,
            vec![Element::with_children(a::Collections, collections)],
        ))
    }

    /// The answer may be resent only when it minted keys and the device has used none of them:
    /// an identical request after a no-change answer is a new question.
    fn still_latest(&self, ctx: &Context<'_>) -> Result<bool, EasError> {
        if self.keys.is_empty() {
            return Ok(false);
        }
        for &(folder, key) in &self.keys {
            if ctx
                .store
                .collection_state(&ctx.device.key, folder, key)?
                .is_none()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn membership_in_ranges() {
        let r = [(1, 3), (7, 7), (10, 20)];
        let inside: Vec<u32> = (0..25).filter(|&n| member(&r, n)).collect();
        let expected: Vec<u32> = [1, 2, 3, 7].into_iter().chain(10..=20).collect();
        assert_eq!(inside, expected);
        assert!(!member(&[], 1));
    }
}

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
///
/// In steps: a retried request is answered again; the request is read (and completed from the
/// cached one); the request is planned (folders, pages computed ahead, item budget, how long
/// it may wait); each collection gets its client commands applied and the server's changes
/// (held until there are some, when the request may wait); the answer is written and
/// remembered.
pub async fn run(ctx: &mut Context<'_>, body: Option<&Element>) -> Result<Reply, EasError> {
    // A newer request from the device ends its held Ping or Sync.
    ctx.hub
        .supersede(&ctx.device.key.user, &ctx.device.key.device_id);
    let fingerprint = body.map(|b| Sha256::digest(b.encode()).to_vec());
    if let Some(replayed) = replay(ctx, fingerprint.as_deref())? {
        return Ok(replayed);
    }
    let mut req = match read_request(ctx, body)? {
        Ok(req) => req,
        Err(refused) => return Ok(refused),
    };
    let mut plan = RequestPlan::new(ctx, &req).await?;
    // A held Sync waits in the push hub like a Ping, holding no IMAP connection.
    let mut registration = plan.deadline.map(|_| register(ctx, &req, &plan.hierarchy));
    let Some(mut outcome) = answer(ctx, &req, &mut plan, registration.as_mut()).await? else {
        // Heartbeat over, superseded by a newer request, or shutting down: nothing happened,
        // which the spec answers with an empty response.
        remember_collections(ctx, &req)?;
        return Ok(Reply::Empty);
    };
    hand_over_pagers(ctx, &mut outcome);
    respond(ctx, &mut req, &outcome, fingerprint, plan.has_commands)
}

/// The answer again, byte for byte, when `fingerprint` is that of a retried request whose
/// answer was lost (or "start over" once the kept answer expired); None for any other request.
fn replay(ctx: &Context<'_>, fingerprint: Option<&[u8]>) -> Result<Option<Reply>, EasError> {
    let device = &ctx.device.key;
    let (Some(fp), Some(last)) = (fingerprint, ctx.store.memo(device, MEMO_LAST)?) else {
        return Ok(None);
    };
    let Some(last) = LastAnswer::decode(&last).filter(|l| l.fingerprint == fp) else {
        return Ok(None);
    };
    if !last.still_latest(ctx)? {
        return Ok(None);
    }
    Ok(Some(match ctx.store.memo(device, MEMO_LAST_RESPONSE)? {
        Some(response) => {
            tracing::info!("resending the answer to a retried Sync");
            Reply::Bytes(response)
        }
        None => {
            tracing::info!("retried Sync after its answer expired: resync");
            last.expired_answer()
        }
    }))
}

/// The request to run: the body read (none for an empty Sync) and completed from the
/// collections of the last full request. `Err` is the answer to a request that cannot run.
fn read_request(
    ctx: &Context<'_>,
    body: Option<&Element>,
) -> Result<Result<SyncRequest, Reply>, EasError> {
    let bounds = (ctx.config.sync.min_wait_secs, ctx.config.sync.max_wait_secs);
    let mut req = match body.map(|b| request::parse(b, bounds)) {
        Some(Ok(r)) => r,
        Some(Err(RequestError::BadWait { limit_secs })) => return Ok(Err(bad_wait(limit_secs))),
        Some(Err(e)) => {
            tracing::info!(error = %e, "malformed Sync");
            return Ok(Err(top_status(SyncStatus::ProtocolError)));
        }
        None => SyncRequest::default(),
    };
    let cached = ctx
        .store
        .memo(&ctx.device.key, MEMO_COLLECTIONS)?
        .and_then(|b| Cached::decode(&b));
    if body.is_none() || req.partial {
        let Some(cached) = cached else {
            return Ok(Err(top_status(SyncStatus::IncompleteRequest)));
        };
        req = cached.merge(req);
    } else if let Some(c) = &cached {
        // Options and window sizes the device sent before stay in force when left out.
        c.fill_options(&mut req);
    }
    if req.collections.is_empty() {
        return Ok(Err(top_status(SyncStatus::ProtocolError)));
    }
    Ok(Ok(req))
}

/// What a request's collections are answered from.
struct RequestPlan {
    /// The device's newest folder list.
    hierarchy: Vec<FolderEntry>,
    /// Pages computed ahead, by folder, for collections without client commands.
    ready: HashMap<u32, read_ahead::Taken>,
    /// Items one answer carries at most, over all its collections.
    window_total: usize,
    has_commands: bool,
    /// When a held Sync (Wait / HeartbeatInterval) answers at the latest; None: at once.
    deadline: Option<tokio::time::Instant>,
}

impl RequestPlan {
    async fn new(ctx: &Context<'_>, req: &SyncRequest) -> Result<RequestPlan, EasError> {
        let device = &ctx.device.key;
        let hierarchy = match ctx.store.latest_hierarchy_key(device)? {
            Some(k) => ctx.store.hierarchy(device, k)?.unwrap_or_default(),
            None => Vec::new(),
        };
        let ready = take_ready_pages(ctx, req, &hierarchy).await;
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
        Ok(RequestPlan {
            hierarchy,
            ready,
            window_total,
            has_commands,
            deadline,
        })
    }
}

/// Pages computed ahead continue where the device's keys left off; a request that carries
/// commands for a folder changes it, so its pager ends.
async fn take_ready_pages(
    ctx: &Context<'_>,
    req: &SyncRequest,
    hierarchy: &[FolderEntry],
) -> HashMap<u32, read_ahead::Taken> {
    let device = &ctx.device.key;
    let mut ready = HashMap::new();
    for c in &req.collections {
        let Some(f) = folder_of(hierarchy, &c.collection_id) else {
            continue;
        };
        if !c.commands.is_empty() {
            ctx.read_ahead.cancel(device, f.id);
        } else if let Some(taken) = ctx.read_ahead.take(device, f.id).await {
            ready.insert(f.id, taken);
        }
    }
    ready
}

/// Registers a held Sync's mailboxes with the push hub, which wakes it on news.
fn register(
    ctx: &Context<'_>,
    req: &SyncRequest,
    hierarchy: &[FolderEntry],
) -> crate::push::Registration {
    let mailboxes = req
        .collections
        .iter()
        .filter_map(|c| folder_of(hierarchy, &c.collection_id))
        .map(|f| f.imap_name.clone());
    ctx.hub
        .register(&ctx.credentials(), &ctx.device.key.device_id, mailboxes)
}

/// Every collection's answer: at once, or for a held Sync (`registration`) as soon as one has
/// news. None when a held Sync ends without news.
async fn answer(
    ctx: &Context<'_>,
    req: &SyncRequest,
    plan: &mut RequestPlan,
    mut registration: Option<&mut crate::push::Registration>,
) -> Result<Option<Vec<CollectionOutcome>>, EasError> {
    // Opened when first needed: a request answered from pages computed ahead needs none.
    let mut store: Option<Mailstore> = None;
    loop {
        let outcome = look(ctx, &mut store, req, plan).await?;
        let news = outcome.iter().any(CollectionOutcome::has_news);
        let (Some(deadline), Some(reg), false) = (plan.deadline, registration.as_deref_mut(), news)
        else {
            if let Some(mut s) = store.take() {
                // A phone that was told MoreAvailable asks for the next page at once.
                s.keep_view(outcome.iter().any(|o| o.more));
                s.close().await;
            }
            return Ok(Some(outcome));
        };
        if let Some(s) = store.take() {
            s.close().await;
        }
        if !wait_for_news(reg, deadline).await {
            return Ok(None);
        }
    }
}

/// One look at every collection: its answer as of now, within the request's item budget.
async fn look(
    ctx: &Context<'_>,
    store: &mut Option<Mailstore>,
    req: &SyncRequest,
    plan: &mut RequestPlan,
) -> Result<Vec<CollectionOutcome>, EasError> {
    let mut outcome = Vec::with_capacity(req.collections.len());
    let mut budget = plan.window_total;
    for c in &req.collections {
        outcome.push(match folder_of(&plan.hierarchy, &c.collection_id) {
            None => CollectionOutcome::status(c, SyncStatus::FolderHierarchyChanged),
            Some(f) => {
                let taken = plan.ready.remove(&f.id);
                collection(ctx, store, c, f, &mut budget, taken).await?
            }
        });
    }
    Ok(outcome)
}

/// Waits for the hub's news about a held Sync's mailboxes, looking again after a while
/// anyway in case a source missed something. False when the wait ends without news (the
/// deadline passed, a newer request superseded this one, or the server shuts down).
async fn wait_for_news(
    reg: &mut crate::push::Registration,
    deadline: tokio::time::Instant,
) -> bool {
    use crate::push::Signal;
    let woke = tokio::select! {
        s = reg.signals.recv() => s,
        _ = tokio::time::sleep(WAIT_POLL) => Some(Signal::BackendUp),
        _ = tokio::time::sleep_until(deadline) => None,
    };
    matches!(
        woke,
        Some(
            Signal::Mailbox(..)
                | Signal::Arrived { .. }
                | Signal::Hierarchy(_)
                | Signal::BackendUp
                | Signal::BackendDown,
        )
    )
}

/// Read-ahead after the answer: a pager whose page was sent goes on with the next, and an
/// answer computed here with MoreAvailable starts one.
fn hand_over_pagers(ctx: &Context<'_>, outcome: &mut [CollectionOutcome]) {
    for o in outcome {
        let Some(folder) = o.folder else { continue };
        if let Some(pager) = o.pager.take() {
            ctx.read_ahead
                .give_back(ctx.device.key.clone(), folder, pager);
        } else if let Some(ahead) = o.ahead.take() {
            start_read_ahead(ctx, folder, ahead);
        }
    }
}

/// Writes the answer and remembers what a later request builds on: the collections (for an
/// empty or partial Sync) and, for a retry, the answer itself.
fn respond(
    ctx: &Context<'_>,
    req: &mut SyncRequest,
    outcome: &[CollectionOutcome],
    fingerprint: Option<Vec<u8>>,
    has_commands: bool,
) -> Result<Reply, EasError> {
    // An empty or partial Sync later continues from the keys of this answer, not from the
    // ones this request presented.
    for (c, o) in req.collections.iter_mut().zip(outcome) {
        if o.status == SyncStatus::Success {
            c.sync_key = o.sync_key.clone();
        }
    }
    remember_collections(ctx, req)?;
    let response = write_response(outcome)?;
    if let Some(fp) = fingerprint {
        remember_answer(ctx, fp, outcome, &response, has_commands)?;
    }
    Ok(Reply::Bytes(response))
}

/// Keeps what an identical retry of this request is answered with.
fn remember_answer(
    ctx: &Context<'_>,
    fingerprint: Vec<u8>,
    outcome: &[CollectionOutcome],
    response: &[u8],
    has_commands: bool,
) -> Result<(), EasError> {
    let device = &ctx.device.key;
    // Only an answer to client commands is kept whole: applying them again would not give
    // the same answer (a second Add, a Delete of what is gone). A retried request without
    // commands is answered afresh from its key's snapshot, which is still kept (the
    // previous key stays valid until the device uses the new one), with the same items;
    // storing every page (about 1 MB each during an initial sync) cost 3-10 ms a page.
    let last = if has_commands {
        // The content first: a memo naming keys without it would answer "resync".
        ctx.store.put_memo(device, MEMO_LAST_RESPONSE, response)?;
        LastAnswer {
            fingerprint,
            keys: outcome
                .iter()
                .filter_map(|o| Some((o.folder?, o.new_key?)))
                .collect(),
        }
    } else {
        // Replaces an older memo, which must not be replayed any more. (Its response, if
        // any, is never read again and expires with the window.)
        LastAnswer {
            fingerprint,
            keys: Vec::new(),
        }
    };
    ctx.store.put_memo(device, MEMO_LAST, &last.encode())?;
    Ok(())
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

    fn with_status(mut self, status: SyncStatus) -> CollectionOutcome {
        self.status = status;
        self
    }

    /// The collection starts over (status 3): nothing else of this answer is sent.
    fn restart(mut self) -> CollectionOutcome {
        self.status = SyncStatus::InvalidSyncKey;
        self.commands.clear();
        self.responses.clear();
        self
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

/// One collection of a request, planned: what it asks for and what its page depends on.
struct CollectionPlan<'r> {
    request: &'r CollectionRequest,
    folder: &'r FolderEntry,
    get_changes: bool,
    /// The options, window, version and filter window a page is computed with; a page
    /// computed ahead is used only when it was computed with the same.
    params: read_ahead::Params,
}

impl<'r> CollectionPlan<'r> {
    /// `budget`: the items the request's earlier collections left for this one.
    fn new(
        ctx: &Context<'_>,
        request: &'r CollectionRequest,
        folder: &'r FolderEntry,
        budget: usize,
    ) -> CollectionPlan<'r> {
        let options = request.options.clone().unwrap_or_default();
        let since = options.since(unix_now());
        let window = request
            .window_size
            .unwrap_or(request::DEFAULT_WINDOW)
            .clamp(1, request::MAX_WINDOW)
            .min(budget);
        CollectionPlan {
            request,
            folder,
            get_changes: request.get_changes.unwrap_or(true),
            params: read_ahead::Params {
                options,
                window,
                version: ctx.version,
                since,
            },
        }
    }

    fn since(&self) -> u64 {
        self.params.since
    }
}

/// The snapshot the presented SyncKey names, as stored.
struct Known {
    key: u32,
    bytes: Vec<u8>,
    /// Its counters, read without decoding the per-message part.
    header: Snapshot,
}

/// A collection's answer while it is built on a known snapshot.
struct Draft {
    known: Known,
    /// What the device will know after this answer.
    snap: Snapshot,
    out: CollectionOutcome,
    /// Whether `snap` moved from the known snapshot, so the answer mints a key.
    changed: bool,
    /// `snap`, encoded, when the comparison with the stored bytes already did it.
    encoded: Option<Vec<u8>>,
}

/// A collection's answer: a new partnership, the page computed ahead, or the client's
/// commands applied and then the server's changes since the presented key.
async fn collection(
    ctx: &Context<'_>,
    lazy: &mut Option<Mailstore>,
    c: &CollectionRequest,
    folder: &FolderEntry,
    budget: &mut usize,
    ready: Option<read_ahead::Taken>,
) -> Result<CollectionOutcome, EasError> {
    let plan = CollectionPlan::new(ctx, c, folder, *budget);
    let mut out = CollectionOutcome::status(c, SyncStatus::Success);
    out.folder = Some(folder.id);
    if c.sync_key.id().is_some_and(SyncKey::is_initial) {
        return start_partnership(ctx, lazy, &plan, out).await;
    }
    let Some(known) = known_snapshot(ctx, &plan)? else {
        return Ok(out.with_status(SyncStatus::InvalidSyncKey));
    };
    if let Some(taken) = ready {
        if let Some(taken) = usable_page(ctx, lazy, &plan, &known, taken).await? {
            return serve_page(ctx, &plan, &known, taken, budget, out);
        }
    }
    let store = opened(ctx, lazy).await?;
    let Some(state) = folder_state(store, &folder.imap_name).await? else {
        return Ok(out.with_status(SyncStatus::FolderHierarchyChanged));
    };
    // The common case, a phone asking again with nothing new: decided from the snapshot's
    // header and one STATUS, without decoding the per-message part.
    if c.commands.is_empty()
        && plan.get_changes
        && !known.header.pending
        && counters_match(&known.header, &state, plan.since())
    {
        return Ok(out);
    }
    let Some(snap) = Snapshot::decode(&known.bytes) else {
        return Ok(out.with_status(SyncStatus::InvalidSyncKey));
    };
    if state.uidvalidity != snap.uidvalidity {
        // Every UID the device holds is void: it must start over with SyncKey 0.
        tracing::info!(
            folder = folder.id,
            "UIDVALIDITY changed; the device resyncs"
        );
        ctx.store.reset_collection(&ctx.device.key, folder.id)?;
        return Ok(out.with_status(SyncStatus::InvalidSyncKey));
    }
    let mut draft = Draft {
        known,
        snap,
        out,
        changed: false,
        encoded: None,
    };
    draft.changed = apply_commands(ctx, store, &plan, &mut draft.snap, &mut draft.out).await?;
    let wants_page = plan.get_changes
        && plan.params.window > 0
        && (draft.snap.pending
            || draft.changed
            || !counters_match(&draft.snap, &state, plan.since()));
    if wants_page && !server_changes(ctx, store, &plan, &mut draft, budget).await? {
        // Recreated between the STATUS and the listing: as above.
        ctx.store.reset_collection(&ctx.device.key, folder.id)?;
        return Ok(draft.out.restart());
    }
    render_fetches(ctx, store, &plan, &mut draft.out).await?;
    if draft.changed {
        mint(ctx, plan, draft)
    } else {
        Ok(draft.out)
    }
}

/// SyncKey 0, a new partnership for this folder: the device knows nothing, and its first key
/// names an empty snapshot still to be filled.
async fn start_partnership(
    ctx: &Context<'_>,
    lazy: &mut Option<Mailstore>,
    plan: &CollectionPlan<'_>,
    mut out: CollectionOutcome,
) -> Result<CollectionOutcome, EasError> {
    let device = &ctx.device.key;
    let folder = plan.folder;
    ctx.store.reset_collection(device, folder.id)?;
    let store = opened(ctx, lazy).await?;
    let Some(state) = folder_state(store, &folder.imap_name).await? else {
        return Ok(out.with_status(SyncStatus::FolderHierarchyChanged));
    };
    let snap = Snapshot {
        uidvalidity: state.uidvalidity,
        since: plan.since(),
        pending: true,
        ..Snapshot::default()
    };
    let key = ctx.store.next_collection_key(device, folder.id)?;
    ctx.store
        .put_collection_state(device, folder.id, key, None, &snap.encode())?;
    out.new_key = Some(key);
    out.sync_key = SyncKey::minted(key).into();
    Ok(out)
}

/// The stored snapshot the presented key names; None when it names none (a malformed key, an
/// unknown one, or one whose snapshot cannot be read).
fn known_snapshot(ctx: &Context<'_>, plan: &CollectionPlan<'_>) -> Result<Option<Known>, EasError> {
    let Some(key) = plan.request.sync_key.id().and_then(SyncKey::stored) else {
        return Ok(None);
    };
    let Some(bytes) = ctx
        .store
        .collection_state(&ctx.device.key, plan.folder.id, key)?
    else {
        return Ok(None);
    };
    Ok(Snapshot::decode_header(&bytes).map(|header| Known { key, bytes, header }))
}

/// The page computed ahead, when it is exactly the one this request would compute: no client
/// commands, the same parameters, from the snapshot this key told the device (see
/// `read_ahead`), and for the last page a folder unchanged since it was listed.
async fn usable_page(
    ctx: &Context<'_>,
    lazy: &mut Option<Mailstore>,
    plan: &CollectionPlan<'_>,
    known: &Known,
    taken: read_ahead::Taken,
) -> Result<Option<read_ahead::Taken>, EasError> {
    let page = &taken.page;
    let mut usable = plan.request.commands.is_empty()
        && plan.get_changes
        && page.params == plan.params
        && known.bytes == page.from;
    if usable && !page.computed.window.more {
        // The last page: the phone will not come back for the rest by itself, so it must
        // hold everything there is now. One STATUS (the pager closed its view before it
        // sent this page) tells that nothing arrived or changed since it was listed.
        let store = opened(ctx, lazy).await?;
        usable = folder_state(store, &plan.folder.imap_name).await? == Some(page.computed.state);
    }
    ctx.read_ahead.note(usable);
    Ok(usable.then_some(taken))
}

/// Answers with a page computed ahead: a new key when it moves the snapshot, and the pager
/// kept for the page after it when there is more.
fn serve_page(
    ctx: &Context<'_>,
    plan: &CollectionPlan<'_>,
    known: &Known,
    taken: read_ahead::Taken,
    budget: &mut usize,
    mut out: CollectionOutcome,
) -> Result<CollectionOutcome, EasError> {
    let read_ahead::Taken { page, pager } = taken;
    *budget -= page.computed.window.len();
    out.commands = page.commands;
    out.more = page.computed.window.more;
    out.messages = page.computed.items;
    if !out.commands.is_empty() || page.next != known.bytes {
        let device = &ctx.device.key;
        let key = ctx.store.next_collection_key(device, plan.folder.id)?;
        ctx.store
            .put_collection_state(device, plan.folder.id, key, Some(known.key), &page.next)?;
        out.new_key = Some(key);
        out.sync_key = SyncKey::minted(key).into();
        if out.more {
            out.pager = Some(pager);
        }
    }
    Ok(out)
}

/// Whether the mailbox's counters are the ones `snap` was taken at, for the same filter
/// window: then nothing changed since (a server without CONDSTORE cannot tell, so never).
fn counters_match(snap: &Snapshot, state: &FolderState, since: u64) -> bool {
    state.highest_modseq != 0
        && state.uidvalidity == snap.uidvalidity
        && state.highest_modseq == snap.highest_modseq
        && state.uid_next == snap.uid_next
        && state.exists == snap.exists
        && since == snap.since
}

/// The server's changes since the snapshot, one window of them, added to the answer and
/// folded into the snapshot. False when the mailbox is no longer the one the snapshot knows
/// (its UIDVALIDITY changed between the STATUS and the listing).
async fn server_changes(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    plan: &CollectionPlan<'_>,
    draft: &mut Draft,
    budget: &mut usize,
) -> Result<bool, EasError> {
    let folder = plan.folder;
    let Some(page) = compute_page(
        store,
        &folder.imap_name,
        folder.id,
        &draft.snap,
        &plan.params,
    )
    .await?
    else {
        return Ok(false);
    };
    *budget -= page.window.len();
    let out = &mut draft.out;
    out.commands
        .extend(advance(&mut draft.snap, &page, plan.since()));
    out.more = page.window.more;
    out.messages = page.items;
    let now = draft.snap.encode();
    // Client commands may have amended the stored snapshot; without them it is still the
    // bytes read before.
    let moved = if plan.request.commands.is_empty() {
        now != draft.known.bytes
    } else {
        now != snap_bytes_of(ctx, folder, draft.known.key)?
    };
    draft.changed |= !out.commands.is_empty() || moved;
    draft.encoded = Some(now);
    Ok(true)
}

/// Renders the items Fetch responses carry, unless the page already holds them.
async fn render_fetches(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    plan: &CollectionPlan<'_>,
    out: &mut CollectionOutcome,
) -> Result<(), EasError> {
    let fetch_uids: Vec<u32> = out
        .responses
        .iter()
        .filter_map(|r| match r {
            ItemResponse::Fetch { uid: Some(u), .. } => Some(*u),
            _ => None,
        })
        .filter(|u| !out.messages.contains(*u))
        .collect();
    if fetch_uids.is_empty() {
        return Ok(());
    }
    let folder = plan.folder;
    let fetched = items::fetch_and_render(
        store,
        &folder.imap_name,
        folder.id,
        &fetch_uids,
        &fetch_uids,
        ctx.version,
        &plan.params.options,
    )
    .await?;
    out.messages.extend(fetched);
    Ok(())
}

/// Stores the snapshot the answer leads to under a new key, and keeps what read-ahead needs
/// to compute the page after it when there is more.
fn mint(
    ctx: &Context<'_>,
    plan: CollectionPlan<'_>,
    draft: Draft,
) -> Result<CollectionOutcome, EasError> {
    let Draft {
        known,
        snap,
        mut out,
        encoded,
        ..
    } = draft;
    let device = &ctx.device.key;
    let folder = plan.folder;
    let key = ctx.store.next_collection_key(device, folder.id)?;
    let encoded = encoded.unwrap_or_else(|| snap.encode());
    ctx.store
        .put_collection_state(device, folder.id, key, Some(known.key), &encoded)?;
    out.new_key = Some(key);
    out.sync_key = SyncKey::minted(key).into();
    if out.more && plan.get_changes && ctx.config.sync.read_ahead {
        out.ahead = Some(Ahead {
            snapshot: snap,
            encoded,
            imap_name: folder.imap_name.clone(),
            params: plan.params,
        });
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
/// session of the user's.
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
        page_through(store, folder, ahead, pages).await;
    };
    ctx.read_ahead.start(ctx.device.key.clone(), folder, job);
}

/// A pager's work: page after page, each from the snapshot the previous one leads to, until
/// the folder is paged through, the phone stops asking, or the folder changes identity.
/// Closes the session when done.
async fn page_through(
    mut store: Mailstore,
    folder: u32,
    ahead: Ahead,
    pages: tokio::sync::mpsc::Sender<read_ahead::Page>,
) {
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
        let page = next_page(&mut snapshot, &mut from, computed, &params);
        if !page.computed.window.more {
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
}

/// The page a computed window makes, with `snapshot` advanced to what the device knows after
/// it and `from` (the encoded snapshot a page starts from) to the next page's start.
fn next_page(
    snapshot: &mut Snapshot,
    from: &mut Vec<u8>,
    computed: read_ahead::Computed,
    params: &read_ahead::Params,
) -> read_ahead::Page {
    let commands = advance(snapshot, &computed, params.since);
    let next = snapshot.encode();
    read_ahead::Page {
        from: std::mem::replace(from, next.clone()),
        next,
        commands,
        params: params.clone(),
        computed,
    }
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
    if !snap.pending && counters_match(&snap, &state, since) {
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

/// What one client command did: whether the snapshot changed, and its entry in Responses.
struct Applied {
    changed: bool,
    response: Option<ItemResponse>,
}

impl Applied {
    fn changed() -> Applied {
        Applied {
            changed: true,
            response: None,
        }
    }

    fn answered(response: ItemResponse) -> Applied {
        Applied {
            changed: false,
            response: Some(response),
        }
    }

    /// The item of a Change or Delete is not one the device may have.
    fn not_found(command: &'static str, server_id: &Presented<ServerId>) -> Applied {
        Applied::answered(ItemResponse::Failed {
            command,
            server_id: server_id.clone(),
            status: SyncStatus::ObjectNotFound,
        })
    }
}

/// Applies the client's commands to IMAP and the snapshot, adding the answers they get.
/// Returns whether the snapshot changed.
async fn apply_commands(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    plan: &CollectionPlan<'_>,
    snap: &mut Snapshot,
    out: &mut CollectionOutcome,
) -> Result<bool, EasError> {
    let trash = trash_of(ctx)?;
    let mut changed = false;
    for cmd in &plan.request.commands {
        let applied = client_command(ctx, store, plan, trash.as_deref(), snap, cmd).await?;
        changed |= applied.changed;
        out.responses.extend(applied.response);
    }
    Ok(changed)
}

/// Applies one client command to IMAP and the snapshot. `trash` is the user's Trash, where
/// deletes go when the device wants them as moves.
async fn client_command(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    plan: &CollectionPlan<'_>,
    trash: Option<&str>,
    snap: &mut Snapshot,
    cmd: &ClientCommand,
) -> Result<Applied, EasError> {
    let folder = plan.folder;
    match cmd {
        ClientCommand::Change {
            server_id,
            read,
            flag,
            categories,
        } => {
            let change = crate::mailstore::FlagChange {
                seen: *read,
                flagged: flag.map(|f| f == Some(2)),
                categories: categories.clone(),
            };
            change_flags(store, folder, snap, server_id, change).await
        }
        ClientCommand::Delete { server_id } => {
            let as_move = plan.request.deletes_as_moves.unwrap_or(true)
                && folder.kind != TRASH
                && trash.is_some_and(|t| t != folder.imap_name);
            let target = if as_move { trash } else { None };
            delete(store, folder, snap, server_id, target).await
        }
        ClientCommand::Fetch { server_id } => Ok(Applied::answered(ItemResponse::Fetch {
            server_id: server_id.clone(),
            uid: uid_in(server_id, folder),
        })),
        ClientCommand::Add { client_id, data } => {
            add_draft(ctx, store, folder, snap, client_id, data).await
        }
    }
}

/// A Change of Read, Flag or Categories, folded into the snapshot so it is not echoed.
async fn change_flags(
    store: &mut Mailstore,
    folder: &FolderEntry,
    snap: &mut Snapshot,
    server_id: &Presented<ServerId>,
    change: crate::mailstore::FlagChange,
) -> Result<Applied, EasError> {
    let Some(uid) = uid_in(server_id, folder).filter(|u| snap.items.contains_key(u)) else {
        return Ok(Applied::not_found("Change", server_id));
    };
    if store
        .change_flags(&folder.imap_name, uid, &change)
        .await?
        .is_none()
    {
        // Gone on the server: the deletion reaches the device with the changes.
        return Ok(Applied::not_found("Change", server_id));
    }
    let old = snap.items.get(&uid).copied().unwrap_or(0);
    let new = snapshot::with_client_change(
        old,
        change.seen,
        change.flagged,
        change.categories.as_deref(),
    );
    snap.items.insert(uid, new);
    Ok(Applied::changed())
}

/// A Delete: moved to `target` (Trash), or expunged when there is none.
async fn delete(
    store: &mut Mailstore,
    folder: &FolderEntry,
    snap: &mut Snapshot,
    server_id: &Presented<ServerId>,
    target: Option<&str>,
) -> Result<Applied, EasError> {
    let Some(uid) = uid_in(server_id, folder).filter(|u| snap.items.contains_key(u)) else {
        return Ok(Applied::not_found("Delete", server_id));
    };
    store.delete(&folder.imap_name, uid, target).await?;
    // Whether or not it was still there, the device no longer has it.
    snap.items.remove(&uid);
    Ok(Applied::changed())
}

/// An Add. Mail is created by SendMail; the only Add EAS allows for mail is a 16.x draft in
/// the Drafts folder. Anything else gets the spec's per-item status 6.
async fn add_draft(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    folder: &FolderEntry,
    snap: &mut Snapshot,
    client_id: &str,
    data: &Element,
) -> Result<Applied, EasError> {
    let answer = |server_id, status| ItemResponse::Add {
        client_id: client_id.to_owned(),
        server_id,
        status,
    };
    let email = &ctx.user.email;
    let draft = (folder.kind == DRAFTS && ctx.version >= ProtocolVersion::V16_0)
        .then(|| {
            let host = email.rsplit_once('@').map_or("localhost", |(_, h)| h);
            drafts::message(data, email, unix_now() as i64, host)
        })
        .flatten();
    let Some(bytes) = draft else {
        return Ok(Applied::answered(answer(None, SyncStatus::ConversionError)));
    };
    match store.append_draft(&folder.imap_name, &bytes).await? {
        Some((uid, flags)) => {
            snap.items.insert(uid, flag_state(&flags));
            let id = ServerId::new(CollectionId::new(folder.id), uid);
            Ok(Applied {
                changed: true,
                response: Some(answer(Some(id), SyncStatus::Success)),
            })
        }
        None => Ok(Applied::answered(answer(None, SyncStatus::ServerError))),
    }
}

/// Writes the response with the streaming writer: item data is rendered once and copied in.
fn write_response(outcome: &[CollectionOutcome]) -> Result<Vec<u8>, EasError> {
    // Sized for the items up front: a page of 100 is about 1 MB, and growing to it by
    // doubling copied it several times over.
    let items: usize = outcome.iter().map(|o| o.messages.encoded_len()).sum();
    let mut w = Writer::new(Vec::with_capacity(4096 + items + items / 16)).map_err(enc)?;
    w.start(a::Sync).map_err(enc)?;
    w.start(a::Collections).map_err(enc)?;
    for o in outcome {
        write_collection(&mut w, o)?;
    }
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    w.finish().map_err(enc)
}

fn enc(e: eas_wbxml::EncodeError) -> EasError {
    EasError::Internal(e.to_string())
}

/// One `<Collection>` of the response.
fn write_collection(w: &mut Writer<Vec<u8>>, o: &CollectionOutcome) -> Result<(), EasError> {
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
        let folder = CollectionId::new(o.folder.unwrap_or(0));
        for cmd in &o.commands {
            write_server_command(w, folder, &o.messages, cmd)?;
        }
        w.end().map_err(enc)?;
    }
    if !o.responses.is_empty() {
        w.start(a::Responses).map_err(enc)?;
        for r in &o.responses {
            write_item_response(w, &o.messages, r)?;
        }
        w.end().map_err(enc)?;
    }
    w.end().map_err(enc)?;
    Ok(())
}

/// An Add, Change, Delete or SoftDelete the server sends; Add and Change carry the item's
/// data from `messages`.
fn write_server_command(
    w: &mut Writer<Vec<u8>>,
    folder: CollectionId,
    messages: &items::Rendered,
    cmd: &ServerCommand,
) -> Result<(), EasError> {
    let (tag, uid, data) = match *cmd {
        ServerCommand::Add(uid) => (a::Add, uid, Some(false)),
        ServerCommand::Change(uid) => (a::Change, uid, Some(true)),
        ServerCommand::Delete(uid) => (a::Delete, uid, None),
        ServerCommand::SoftDelete(uid) => (a::SoftDelete, uid, None),
    };
    w.start(tag).map_err(enc)?;
    w.text_element(a::ServerId, &ServerId::new(folder, uid).to_string())
        .map_err(enc)?;
    if let Some(change_only) = data {
        messages.write(w, uid, change_only)?;
    }
    w.end().map_err(enc)?;
    Ok(())
}

/// The answer to one client command, in Responses.
fn write_item_response(
    w: &mut Writer<Vec<u8>>,
    messages: &items::Rendered,
    r: &ItemResponse,
) -> Result<(), EasError> {
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
        }
        ItemResponse::Fetch { server_id, uid } => {
            w.start(a::Fetch).map_err(enc)?;
            w.text_element(a::ServerId, server_id.text()).map_err(enc)?;
            match uid.filter(|u| messages.contains(*u)) {
                Some(uid) => {
                    w.text_element(a::Status, SyncStatus::Success.as_str())
                        .map_err(enc)?;
                    messages.write(w, uid, false)?;
                }
                None => {
                    w.text_element(a::Status, SyncStatus::ObjectNotFound.as_str())
                        .map_err(enc)?;
                }
            }
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
        }
    }
    w.end().map_err(enc)?;
    Ok(())
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

//! Sync (MS-ASCMD 2.2.1.21): several collections per request, each answered by the item store
//! of its class (client commands applied to the store first, then the store's changes in
//! windows, newest first).
//!
//! Owns the command's flow and its statuses: the retry memo, the request read and completed
//! from the cached one, the held Sync, the answer written and remembered, and [`Stores`], which
//! picks a collection's store by its folder class. One collection's answer is [`engine`]'s,
//! written once against [`crate::backend::ItemStore`]; the request is read by [`request`].
//!
//! Guarantees:
//! - a SyncKey names exactly one snapshot; the previous key stays valid until the device uses
//!   the new one, and an identical retry of the previous request gets the identical answer
//!   (a lost response changes nothing twice);
//! - a Sync with nothing new does one look at each collection's token and no per-item work
//!   (for mail one STATUS: CONDSTORE's HIGHESTMODSEQ, UIDNEXT and MESSAGES all unchanged);
//! - a change the device made is applied to the store and folded into the snapshot, so it is
//!   never echoed back.

pub mod engine;
pub mod read_ahead;
pub mod request;

use std::time::Duration;

use eas_wbxml::tags::airsync as a;
use eas_wbxml::{Element, Writer};
use sha2::{Digest, Sha256};

use super::{Context, EasError, Reply};
use crate::backend::kinds::{Class, DELETED_ITEMS as TRASH};
use crate::backend::mail::{MailItems, MailToken};
use crate::backend::{ItemId, ItemStore, Rendered};
use crate::eas::ids::{CollectionId, Presented, ServerId, SyncKey};
use crate::eas::status::{GetItemEstimateStatus, SyncStatus};
use crate::mailstore::{FolderState, Mailstore};
use crate::state::FolderEntry;
use request::{CollectionRequest, Options, RequestError, SyncRequest};
use std::collections::HashMap;

/// Memo names in the state store.
const MEMO_COLLECTIONS: &str = "sync.collections";
const MEMO_LAST: &str = "sync.last";
/// The bytes of the last answer to client commands, kept apart from [`MEMO_LAST`] because
/// they hold message content: the gateway deletes them [`RESEND_WINDOW_SECS`] after writing.
pub const MEMO_LAST_RESPONSE: &str = "sync.last.response";
/// The memos a Sync reads first, loaded with the device when the request starts.
pub const MEMOS_READ_FIRST: [&str; 2] = [MEMO_LAST, MEMO_COLLECTIONS];

/// The `(folder, key)` of every snapshot a Sync body presents a key for, loaded with the
/// device when the request starts. An empty or partial Sync takes the rest from its memo
/// (then loaded in one more call, [`RequestPlan::new`]).
pub fn presented_keys(body: &Element) -> Vec<(u32, u32)> {
    let Some(collections) = body.child(a::Collections) else {
        return Vec::new();
    };
    collections
        .children_with(a::Collection)
        .filter_map(|c| {
            let folder = CollectionId::try_from(super::child_text(c, a::CollectionId)?).ok()?;
            let key = SyncKey::try_from(super::child_text(c, a::SyncKey)?).ok()?;
            Some((folder.number(), key.stored()?))
        })
        .collect()
}

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
    if plan.deadline.is_some() {
        ctx.note_wait()?;
    }
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
    let (Some(fp), Some(last)) = (fingerprint, ctx.memo(MEMO_LAST)?) else {
        return Ok(None);
    };
    let Some(last) = LastAnswer::decode(&last).filter(|l| l.fingerprint == fp) else {
        return Ok(None);
    };
    if !last.still_latest(ctx)? {
        return Ok(None);
    }
    Ok(Some(match ctx.memo(MEMO_LAST_RESPONSE)? {
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
    let cached = ctx.memo(MEMO_COLLECTIONS)?.and_then(|b| Cached::decode(&b));
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
        // The folder list and the presented keys' snapshots in one store call; a Sync whose
        // body named them all had them loaded with its device already (no call here).
        ctx.load(crate::state::Wants {
            hierarchy: true,
            snapshots: req
                .collections
                .iter()
                .filter_map(|c| {
                    let folder = c.collection_id.id()?.number();
                    Some((folder, c.sync_key.id()?.stored()?))
                })
                .collect(),
            ..Default::default()
        })?;
        let hierarchy = ctx.folders()?;
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

/// Registers a held Sync's mailboxes and DAV collections with the push hub, which wakes it on
/// news (the Sync then looks again).
fn register(
    ctx: &Context<'_>,
    req: &SyncRequest,
    hierarchy: &[FolderEntry],
) -> crate::push::Registration {
    let watched: Vec<&FolderEntry> = req
        .collections
        .iter()
        .filter_map(|c| folder_of(hierarchy, &c.collection_id))
        .collect();
    let mailboxes = watched
        .iter()
        .filter(|f| Class::of(f.kind) == Class::Email)
        .map(|f| f.imap_name.clone());
    let mut collections: Vec<String> = watched
        .iter()
        .filter(|f| {
            matches!(
                Class::of(f.kind),
                Class::Contacts | Class::Calendar | Class::Tasks
            )
        })
        .filter_map(|f| reqwest::Url::parse(&f.imap_name).ok())
        .map(|mut u| {
            u.set_fragment(None);
            u.to_string()
        })
        .collect();
    collections.sort_unstable();
    collections.dedup();
    ctx.hub.register_with(
        &ctx.credentials(),
        &ctx.device.key.device_id,
        mailboxes,
        collections,
    )
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
    let mut stores = Stores::default();
    loop {
        let outcome = look(ctx, &mut stores, req, plan).await?;
        let news = outcome.iter().any(CollectionOutcome::has_news);
        let (Some(deadline), Some(reg), false) = (plan.deadline, registration.as_deref_mut(), news)
        else {
            // A phone that was told MoreAvailable asks for the next page at once.
            let paging = outcome.iter().any(|o| o.more);
            stores.finish(paging).await;
            return Ok(Some(outcome));
        };
        stores.finish(false).await;
        if !wait_for_news(reg, deadline).await {
            return Ok(None);
        }
    }
}

/// One look at every collection: its answer as of now, within the request's item budget.
async fn look(
    ctx: &Context<'_>,
    stores: &mut Stores,
    req: &SyncRequest,
    plan: &mut RequestPlan,
) -> Result<Vec<CollectionOutcome>, EasError> {
    let mut outcome = Vec::with_capacity(req.collections.len());
    let mut budget = plan.window_total;
    let hierarchy = &plan.hierarchy;
    for c in &req.collections {
        outcome.push(match folder_of(hierarchy, &c.collection_id) {
            None => CollectionOutcome::status(c, SyncStatus::FolderHierarchyChanged),
            Some(f) => {
                let taken = plan.ready.remove(&f.id);
                stores
                    .collection(ctx, hierarchy, c, f, &mut budget, taken)
                    .await?
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
                | Signal::Collection { .. }
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
        } else if let Some(job) = o.ahead.take() {
            ctx.read_ahead.start(ctx.device.key.clone(), folder, job);
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
    if !has_commands
        && outcome
            .iter()
            .all(|o| o.new_key.is_none() && o.status == SyncStatus::Success)
    {
        // No key minted or reused, no collection reset, nothing applied: the store holds
        // what it held (a no-change Sync). With its memos unchanged too, the request's end
        // need not reach the store at all.
        ctx.reads.note_no_other_writes();
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
    // Only an answer to client commands is kept whole: applying them again would not give
    // the same answer (a second Add, a Delete of what is gone). A retried request without
    // commands is answered afresh from its key's snapshot, which is still kept (the
    // previous key stays valid until the device uses the new one), with the same items;
    // storing every page (about 1 MB each during an initial sync) cost 3-10 ms a page.
    // Both written when the request ends, in one transaction.
    let last = if has_commands {
        ctx.put_memo_later(MEMO_LAST_RESPONSE, response.to_vec());
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
    ctx.put_memo_later(MEMO_LAST, last.encode());
    Ok(())
}

fn remember_collections(ctx: &Context<'_>, req: &SyncRequest) -> Result<(), EasError> {
    let cached = Cached::from_request(req);
    ctx.put_memo_later(MEMO_COLLECTIONS, cached.encode());
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
    /// Written item data for Add, Change (and Fetch responses), keyed by item id.
    messages: Rendered,
    /// The pager that computes the next page, to start once this answer is on its way.
    ahead: Option<read_ahead::Job>,
    /// The pager this answer's page came from, computing the next.
    pager: Option<read_ahead::Pager>,
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
            messages: Rendered::default(),
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
    Add(ItemId),
    Change(ItemId),
    Delete(ItemId),
    SoftDelete(ItemId),
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
        uid: Option<ItemId>,
    },
    Add {
        client_id: String,
        server_id: Option<ServerId>,
        status: SyncStatus,
    },
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
    Ok(ctx.folders()?.into_iter().find(|f| f.id == id.number()))
}

/// Every folder below `parent` in the device's newest folder list, deepest first (so they
/// can be deleted in order).
pub fn descendants(ctx: &Context<'_>, parent: u32) -> Result<Vec<FolderEntry>, EasError> {
    let all = ctx.folders()?;
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

/// The folder a collection names in the device's folder list.
fn folder_of<'h>(
    hierarchy: &'h [FolderEntry],
    id: &Presented<CollectionId>,
) -> Option<&'h FolderEntry> {
    let id = id.id()?;
    hierarchy.iter().find(|f| f.id == id.number())
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

/// Whether a mail folder's STATUS says the device's newest snapshot of it is out of date
/// (what Ping asks of the push sources' news).
pub fn is_stale(ctx: &Context<'_>, folder: u32, state: &FolderState) -> Result<bool, EasError> {
    engine::is_stale(ctx, folder, &MailToken::from(*state))
}

/// Whether news that only says "a message with this UID arrived" is news for the device
/// (see [`crate::backend::mail::is_new_arrival`]).
pub fn is_new_arrival(
    ctx: &Context<'_>,
    folder: u32,
    uidvalidity: u32,
    uid: u32,
) -> Result<bool, EasError> {
    Ok(engine::newest_snapshot::<MailToken>(ctx, folder)?
        .is_some_and(|s| crate::backend::mail::is_new_arrival(&s, uidvalidity, uid)))
}

/// The options a device last synced a collection with (for GetItemEstimate without any).
pub fn cached_options(
    ctx: &Context<'_>,
    collection_id: &Presented<CollectionId>,
) -> Result<Options, EasError> {
    Ok(ctx
        .memo(MEMO_COLLECTIONS)?
        .and_then(|b| Cached::decode(&b))
        .and_then(|c| {
            c.collections
                .into_iter()
                .find(|c| c.collection_id.text() == collection_id.text())
                .and_then(|c| c.options)
        })
        .unwrap_or_default())
}

/// The stores of one request, each opened when a collection of its class first needs it.
#[derive(Default)]
pub struct Stores {
    mail: Option<MailItems>,
    contacts: Option<crate::backend::contacts::ContactItems>,
    /// Calendars and task lists share one store (the folder's type picks the component).
    calendar: Option<crate::backend::calendar::CalendarItems>,
}

impl Stores {
    /// One collection's answer, from the store of its class.
    #[allow(clippy::too_many_arguments)]
    async fn collection(
        &mut self,
        ctx: &Context<'_>,
        hierarchy: &[FolderEntry],
        c: &CollectionRequest,
        folder: &FolderEntry,
        budget: &mut usize,
        ready: Option<read_ahead::Taken>,
    ) -> Result<CollectionOutcome, EasError> {
        match Class::of(folder.kind) {
            Class::Email => {
                engine::collection(ctx, &mut self.mail, hierarchy, c, folder, budget, ready).await
            }
            Class::Contacts => {
                engine::collection(ctx, &mut self.contacts, hierarchy, c, folder, budget, ready)
                    .await
            }
            Class::Calendar | Class::Tasks => {
                engine::collection(ctx, &mut self.calendar, hierarchy, c, folder, budget, ready)
                    .await
            }
            // No store holds other classes yet, so no folder list names one.
            _ => Ok(CollectionOutcome::status(
                c,
                SyncStatus::FolderHierarchyChanged,
            )),
        }
    }

    /// What the next Sync of a collection would send (GetItemEstimate).
    pub async fn estimate(
        &mut self,
        ctx: &Context<'_>,
        hierarchy: &[FolderEntry],
        folder: &FolderEntry,
        sync_key: Option<SyncKey>,
        options: &Options,
    ) -> Result<Result<usize, GetItemEstimateStatus>, EasError> {
        match Class::of(folder.kind) {
            Class::Email => {
                if self.mail.is_none() {
                    self.mail = Some(<MailItems as engine::Store>::open(ctx, hierarchy).await?);
                }
                let store = self.mail.as_mut().expect("opened above");
                engine::estimate(ctx, store, folder, sync_key, options).await
            }
            Class::Contacts => {
                if self.contacts.is_none() {
                    self.contacts = Some(
                        <crate::backend::contacts::ContactItems as engine::Store>::open(
                            ctx, hierarchy,
                        )
                        .await?,
                    );
                }
                let store = self.contacts.as_mut().expect("opened above");
                engine::estimate(ctx, store, folder, sync_key, options).await
            }
            Class::Calendar | Class::Tasks => {
                if self.calendar.is_none() {
                    self.calendar = Some(
                        <crate::backend::calendar::CalendarItems as engine::Store>::open(
                            ctx, hierarchy,
                        )
                        .await?,
                    );
                }
                let store = self.calendar.as_mut().expect("opened above");
                engine::estimate(ctx, store, folder, sync_key, options).await
            }
            _ => Ok(Err(GetItemEstimateStatus::InvalidCollection)),
        }
    }

    /// Ends every store's use by this request; `paging`: the phone asks for the next page at
    /// once.
    pub async fn finish(&mut self, paging: bool) {
        if let Some(s) = self.mail.take() {
            s.finish(paging).await;
        }
        if let Some(s) = self.contacts.take() {
            s.finish(paging).await;
        }
        if let Some(s) = self.calendar.take() {
            s.finish(paging).await;
        }
    }
}

impl engine::Store for MailItems {
    async fn open(ctx: &Context<'_>, hierarchy: &[FolderEntry]) -> Result<MailItems, EasError> {
        let trash = hierarchy
            .iter()
            .find(|f| f.kind == TRASH)
            .map(|f| f.imap_name.clone());
        Ok(MailItems::new(ctx.mailstore().await?, trash))
    }

    fn opener(
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> engine::BoxFuture<Option<MailItems>> + Send + 'static {
        let pool = ctx.pool.clone();
        let imap = ctx.config.imap_config();
        let user = ctx.user.key.clone();
        let login = ctx.user.login.clone();
        let password = ctx.user.password.clone();
        let limits = crate::mailstore::FetchLimits::of(ctx.config);
        move || {
            Box::pin(async move {
                let mut store =
                    Mailstore::open_pooled(&pool, &imap, &user, &login, password.expose())
                        .await
                        .ok()?;
                // The pages go to the device: the same bounds as its own requests.
                store.limit_fetches(limits);
                Some(MailItems::new(store, None))
            })
        }
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
    messages: &Rendered,
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
        messages.write(w, uid, change_only).map_err(enc)?;
    }
    w.end().map_err(enc)?;
    Ok(())
}

/// The answer to one client command, in Responses.
fn write_item_response(
    w: &mut Writer<Vec<u8>>,
    messages: &Rendered,
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
                    messages.write(w, uid, false).map_err(enc)?;
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

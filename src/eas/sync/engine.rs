//! The Sync engine, written once against [`ItemStore`]: one collection's answer from the
//! snapshot its SyncKey names — a new partnership, a page computed ahead, or the phone's
//! commands applied and then the store's changes in a window —, the read-ahead pager that
//! computes the pages after it, and GetItemEstimate's count.
//!
//! Owns SyncKeys and snapshots (minted, stored, reset), windows, the "nothing changed" fast
//! path, the conflict rule (the server wins: a phone's change is folded in as the phone sent
//! it, so a concurrent server change still differs and is sent), and what a page computed
//! ahead must match to be used. Knows no item class: which store answers a collection is
//! decided by [`super::Stores`], and everything about items is the store's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use super::read_ahead::{self, Page, Params};
use super::request::{ClientCommand, CollectionRequest, DEFAULT_WINDOW, MAX_WINDOW, Options};
use super::{Applied, CollectionOutcome, ItemResponse, ServerCommand};
use crate::backend::snapshot::{self, Snapshot, Window};
use crate::backend::{
    AddContext, Added, BackendError, Changed, CollectionRef, Fold, ItemId, ItemStore,
    RenderOptions, Rendered, Token,
};
use crate::eas::ids::{CollectionId, Presented, ServerId, SyncKey};
use crate::eas::status::{GetItemEstimateStatus, SyncStatus};
use crate::eas::{Context, EasError};
use crate::state::{FolderEntry, unix_now};

/// A store the engine can open for a request and, outside it, for a pager.
pub trait Store: ItemStore + 'static {
    /// The requesting user's store. `hierarchy` is the device's folder list (a mail store
    /// finds its Trash there).
    fn open(
        ctx: &Context<'_>,
        hierarchy: &[FolderEntry],
    ) -> impl Future<Output = Result<Self, EasError>> + Send;

    /// Whether the last page of a paging is checked against a fresh look at the collection
    /// before it is sent (and computed afresh when anything moved), so the phone ends its
    /// paging with what is there now. Every page records the state read before its listing,
    /// so a change made during the paging is found by the next Ping or Sync either way: the
    /// look only makes the end fresher. A store whose look costs as much as a listing (a DAV
    /// server computes its sync token from every member: 230 ms at 5,000 contacts on
    /// Radicale, on the path of every initial sync) leaves it to that next Ping or Sync.
    const CHECKS_LAST_PAGE: bool = true;

    /// Whether the listing reads the collection's state itself and finds a collection that
    /// is gone (a DAV `sync-collection` answers its token with the members, a 404 when the
    /// collection is not there): a Sync that must list anyway — its snapshot's token can never
    /// read as unchanged, as a new partnership's — then skips the separate look before it.
    const LISTING_READS_STATE: bool = false;

    /// Opens the same user's store later, in a pager's task; None when it cannot.
    fn opener(ctx: &Context<'_>) -> impl FnOnce() -> BoxFuture<Option<Self>> + Send + 'static;

    /// The opener of the pager this request's store starts. A store whose listing is what a
    /// page costs (a DAV collection: the server walks every member) passes the request's
    /// listing on, so the pager does not make it again; others open as [`Store::opener`].
    fn pager_opener(
        &self,
        ctx: &Context<'_>,
    ) -> impl FnOnce() -> BoxFuture<Option<Self>> + Send + 'static {
        Self::opener(ctx)
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One window of changes, listed and fetched: what the Sync command sends for it.
pub struct Computed<T> {
    /// The collection as read before anything was listed.
    pub token: T,
    pub window: Window,
    /// Changes found in all (the window may hold only some).
    pub all_changes: usize,
    /// Folds of the items whose state moved.
    pub folds: HashMap<ItemId, Fold>,
    pub items: Rendered,
}

/// One collection of a request, planned: what it asks for and what its page depends on.
pub struct CollectionPlan<'r> {
    request: &'r CollectionRequest,
    folder: &'r FolderEntry,
    get_changes: bool,
    /// The options, window, version and filter window a page is computed with; a page
    /// computed ahead is used only when it was computed with the same.
    params: Params,
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
            .unwrap_or(DEFAULT_WINDOW)
            .clamp(1, MAX_WINDOW)
            .min(budget);
        CollectionPlan {
            request,
            folder,
            get_changes: request.get_changes.unwrap_or(true),
            params: Params {
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

    fn at(&self) -> CollectionRef<'r> {
        collection_ref(self.folder)
    }
}

/// Where a folder of the device's list is, for its store.
pub fn collection_ref(folder: &FolderEntry) -> CollectionRef<'_> {
    CollectionRef {
        id: folder.id,
        locator: &folder.imap_name,
        kind: folder.kind,
    }
}

/// How items are rendered for a page computed with `params`.
pub fn render_options(params: &Params) -> RenderOptions {
    render_options_of(params.version, &params.options)
}

/// How items are rendered for a device of `version` with the collection's `options`.
pub fn render_options_of(
    version: crate::eas::version::ProtocolVersion,
    options: &Options,
) -> RenderOptions {
    RenderOptions {
        version: mime_version(version),
        body_preferences: options
            .body_preferences
            .iter()
            .filter_map(|p| {
                Some(crate::mime::BodyPreference {
                    kind: crate::mime::BodyType::from_code(p.kind)?,
                    truncation_size: p.truncation_size,
                    all_or_none: p.all_or_none,
                    preview: p.preview,
                })
            })
            .collect(),
        mime_support: crate::mime::MimeSupport::from_code(options.mime_support),
        mime_truncation: options.mime_truncation,
    }
}

pub fn mime_version(v: crate::eas::version::ProtocolVersion) -> crate::mime::Version {
    use crate::eas::version::ProtocolVersion as P;
    match v {
        P::V12_1 => crate::mime::Version::V12_1,
        P::V14_0 => crate::mime::Version::V14_0,
        P::V14_1 => crate::mime::Version::V14_1,
        P::V16_0 => crate::mime::Version::V16_0,
        P::V16_1 => crate::mime::Version::V16_1,
    }
}

/// The snapshot the presented SyncKey names, as stored.
struct Known<T> {
    key: u32,
    bytes: Vec<u8>,
    /// Its front, read without decoding the per-item part.
    header: Snapshot<T>,
}

/// A collection's answer while it is built on a known snapshot.
struct Draft<T> {
    known: Known<T>,
    /// What the device will know after this answer.
    snap: Snapshot<T>,
    out: CollectionOutcome,
    /// Whether `snap` moved from the known snapshot, so the answer mints a key.
    changed: bool,
    /// `snap`, encoded, when the comparison with the stored bytes already did it.
    encoded: Option<Vec<u8>>,
}

/// The request's store, opened when first needed: a request answered from pages computed
/// ahead needs none.
async fn opened<'s, B: Store>(
    ctx: &Context<'_>,
    lazy: &'s mut Option<B>,
    hierarchy: &[FolderEntry],
) -> Result<&'s mut B, EasError> {
    if lazy.is_none() {
        *lazy = Some(B::open(ctx, hierarchy).await?);
    }
    Ok(lazy.as_mut().expect("opened above"))
}

/// A collection's answer: a new partnership, the page computed ahead, or the client's
/// commands applied and then the server's changes since the presented key.
pub(super) async fn collection<B: Store>(
    ctx: &Context<'_>,
    lazy: &mut Option<B>,
    hierarchy: &[FolderEntry],
    c: &CollectionRequest,
    folder: &FolderEntry,
    budget: &mut usize,
    ready: Option<read_ahead::Taken>,
) -> Result<CollectionOutcome, EasError> {
    let plan = CollectionPlan::new(ctx, c, folder, *budget);
    let mut out = CollectionOutcome::status(c, SyncStatus::Success);
    out.folder = Some(folder.id);
    if c.sync_key.id().is_some_and(SyncKey::is_initial) {
        let store = opened(ctx, lazy, hierarchy).await?;
        return start_partnership(ctx, store, &plan, out).await;
    }
    let Some(known) = known_snapshot::<B::Token>(ctx, &plan)? else {
        return Ok(out.with_status(SyncStatus::InvalidSyncKey));
    };
    if let Some(taken) = ready {
        if let Some(taken) = usable_page(ctx, lazy, hierarchy, &plan, &known, taken).await? {
            return serve_page(ctx, &plan, &known, taken, budget, out);
        }
    }
    let store = opened(ctx, lazy, hierarchy).await?;
    let lists_anyway = B::LISTING_READS_STATE
        && never_unchanged(&known.header.token)
        && c.commands.is_empty()
        && plan.get_changes
        && plan.params.window > 0;
    let now = if lists_anyway {
        // The listing reads the state, finds a gone or replaced collection, and no look
        // could spare it: the token stands in for the look.
        known.header.token.clone()
    } else {
        match store.state(plan.at()).await? {
            Some(now) => now,
            None => return Ok(out.with_status(SyncStatus::FolderHierarchyChanged)),
        }
    };
    // The common case, a phone asking again with nothing new: decided from the snapshot's
    // front and one look at the store, without decoding the per-item part.
    if c.commands.is_empty()
        && plan.get_changes
        && !known.header.pending
        && unchanged(&known.header, &now, plan.since())
    {
        return Ok(out);
    }
    let Some(snap) = Snapshot::<B::Token>::decode(&known.bytes) else {
        return Ok(out.with_status(SyncStatus::InvalidSyncKey));
    };
    if !snap.token.same_collection(&now) {
        // Every id the device holds is void: it must start over with SyncKey 0.
        tracing::info!(
            folder = folder.id,
            "the collection was replaced (UIDVALIDITY changed); the device resyncs"
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
        && (lists_anyway
            || draft.snap.pending
            || draft.changed
            || !unchanged(&draft.snap, &now, plan.since()));
    if wants_page {
        match server_changes(ctx, store, &plan, &mut draft, budget).await? {
            Paged::Yes => {}
            Paged::Replaced => {
                // Replaced between the first look and the listing: as above.
                ctx.store.reset_collection(&ctx.device.key, folder.id)?;
                return Ok(draft.out.restart());
            }
            Paged::Gone => {
                return Ok(CollectionOutcome::status(
                    c,
                    SyncStatus::FolderHierarchyChanged,
                ));
            }
        }
    }
    render_fetches(store, &plan, &mut draft.out).await?;
    if draft.changed {
        mint(ctx, store, plan, draft)
    } else {
        Ok(draft.out)
    }
}

/// Whether no look at the store could ever find `token` unchanged (a new partnership's, or a
/// store that gives no token): a Sync from it lists in any case.
fn never_unchanged<T: Token>(token: &T) -> bool {
    !token.unchanged(token)
}

/// Whether nothing changed since `snap` for the same filter window.
fn unchanged<T: Token>(snap: &Snapshot<T>, now: &T, since: u64) -> bool {
    snap.token.unchanged(now) && since == snap.since
}

/// The head of a token, encoded: what a page computed ahead compares with a fresh look.
fn head<T: Token>(t: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    t.encode_head(&mut out);
    out
}

/// SyncKey 0, a new partnership for this folder: the device knows nothing, and its first key
/// names an empty snapshot still to be filled.
async fn start_partnership<B: Store>(
    ctx: &Context<'_>,
    store: &mut B,
    plan: &CollectionPlan<'_>,
    mut out: CollectionOutcome,
) -> Result<CollectionOutcome, EasError> {
    let device = &ctx.device.key;
    let folder = plan.folder;
    ctx.store.reset_collection(device, folder.id)?;
    // Only the collection's identity is kept: everything in it is still to be sent.
    let Some(identity) = store.identity(plan.at()).await? else {
        return Ok(out.with_status(SyncStatus::FolderHierarchyChanged));
    };
    let snap = Snapshot {
        token: identity,
        since: plan.since(),
        pending: true,
        items: Default::default(),
    };
    let key = ctx
        .store
        .mint_collection_state(device, folder.id, None, &snap.encode())?;
    out.new_key = Some(key);
    out.sync_key = SyncKey::minted(key).into();
    Ok(out)
}

/// The stored snapshot the presented key names; None when it names none (a malformed key, an
/// unknown one, or one whose snapshot cannot be read).
fn known_snapshot<T: Token>(
    ctx: &Context<'_>,
    plan: &CollectionPlan<'_>,
) -> Result<Option<Known<T>>, EasError> {
    let Some(key) = plan.request.sync_key.id().and_then(SyncKey::stored) else {
        return Ok(None);
    };
    let Some(bytes) = ctx.collection_state(plan.folder.id, key)? else {
        return Ok(None);
    };
    Ok(Snapshot::decode_header(&bytes).map(|header| Known { key, bytes, header }))
}

/// The page computed ahead, when it is exactly the one this request would compute: no client
/// commands, the same parameters, from the snapshot this key told the device (see
/// `read_ahead`), and for the last page a collection unchanged since it was listed.
async fn usable_page<B: Store>(
    ctx: &Context<'_>,
    lazy: &mut Option<B>,
    hierarchy: &[FolderEntry],
    plan: &CollectionPlan<'_>,
    known: &Known<B::Token>,
    taken: read_ahead::Taken,
) -> Result<Option<read_ahead::Taken>, EasError> {
    let page = &taken.page;
    let mut usable = plan.request.commands.is_empty()
        && plan.get_changes
        && page.params == plan.params
        && known.bytes == page.from;
    if usable && !page.more && B::CHECKS_LAST_PAGE {
        // The last page: the phone ends its paging with it, so it should hold everything
        // there is now. One look (the pager closed its view before it sent this page) tells
        // that nothing arrived or changed since it was listed.
        let store = opened(ctx, lazy, hierarchy).await?;
        usable = store.state(plan.at()).await?.map(|t| head(&t)) == Some(page.listed.clone());
    }
    ctx.read_ahead.note(usable);
    Ok(usable.then_some(taken))
}

/// Answers with a page computed ahead: a new key when it moves the snapshot, and the pager
/// kept for the page after it when there is more.
fn serve_page(
    ctx: &Context<'_>,
    plan: &CollectionPlan<'_>,
    known: &Known<impl Token>,
    taken: read_ahead::Taken,
    budget: &mut usize,
    mut out: CollectionOutcome,
) -> Result<CollectionOutcome, EasError> {
    let read_ahead::Taken { page, pager } = taken;
    *budget -= page.len;
    out.commands = page.commands;
    out.more = page.more;
    out.messages = page.items;
    if !out.commands.is_empty() || page.next != known.bytes {
        let device = &ctx.device.key;
        let key =
            ctx.store
                .mint_collection_state(device, plan.folder.id, Some(known.key), &page.next)?;
        out.new_key = Some(key);
        out.sync_key = SyncKey::minted(key).into();
        if out.more {
            out.pager = Some(pager);
        }
    }
    Ok(out)
}

/// Whether a page could be computed.
enum Paged {
    Yes,
    /// The collection is no longer the one the snapshot knows (replaced between the first
    /// look and the listing).
    Replaced,
    /// The collection is not there any more.
    Gone,
}

/// The server's changes since the snapshot, one window of them, added to the answer and
/// folded into the snapshot.
async fn server_changes<B: Store>(
    ctx: &Context<'_>,
    store: &mut B,
    plan: &CollectionPlan<'_>,
    draft: &mut Draft<B::Token>,
    budget: &mut usize,
) -> Result<Paged, EasError> {
    let page = match compute_page(store, plan.at(), &draft.snap, &plan.params).await? {
        Ok(page) => page,
        Err(not) => return Ok(not),
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
        now != snap_bytes_of(ctx, plan.folder, draft.known.key)?
    };
    draft.changed |= !out.commands.is_empty() || moved;
    draft.encoded = Some(now);
    Ok(Paged::Yes)
}

/// Renders the items Fetch responses carry, unless the page already holds them.
async fn render_fetches<B: Store>(
    store: &mut B,
    plan: &CollectionPlan<'_>,
    out: &mut CollectionOutcome,
) -> Result<(), EasError> {
    let fetch_ids: Vec<ItemId> = out
        .responses
        .iter()
        .filter_map(|r| match r {
            ItemResponse::Fetch { uid: Some(u), .. } => Some(*u),
            _ => None,
        })
        .filter(|u| !out.messages.contains(*u))
        .collect();
    if fetch_ids.is_empty() {
        return Ok(());
    }
    let render = render_options(&plan.params);
    let fetched = store
        .fetch(plan.at(), &fetch_ids, &fetch_ids, &render)
        .await?;
    out.messages.extend(fetched);
    Ok(())
}

/// Stores the snapshot the answer leads to under a new key, and readies the pager that
/// computes the page after it when there is more.
fn mint<B: Store>(
    ctx: &Context<'_>,
    store: &B,
    plan: CollectionPlan<'_>,
    draft: Draft<B::Token>,
) -> Result<CollectionOutcome, EasError> {
    let Draft {
        known,
        snap,
        mut out,
        encoded,
        ..
    } = draft;
    let folder = plan.folder;
    let encoded = encoded.unwrap_or_else(|| snap.encode());
    let key = key_for(ctx, &plan, known.key, &encoded)?;
    out.new_key = Some(key);
    out.sync_key = SyncKey::minted(key).into();
    if out.more && plan.get_changes && ctx.config.sync.read_ahead {
        let open = store.pager_opener(ctx);
        let folder = folder.clone();
        let params = plan.params;
        out.ahead = Some(Box::new(move |pages: mpsc::Sender<Page>| {
            Box::pin(async move {
                let Some(store) = open().await else {
                    return;
                };
                page_through(store, folder, snap, encoded, params, pages).await;
            }) as BoxFuture<()>
        }));
    }
    Ok(out)
}

/// The key an answer that moves the snapshot from `from` to `encoded` carries. Normally a new
/// one, minted with its snapshot in one transaction (with several nodes on one database no
/// request sees a key without its snapshot). A retry is the exception: a device presenting
/// the key before its newest lost the answer that minted the newest (the connection broke,
/// the node that sent it died), and when the answer computed again leads to exactly the
/// snapshot the newest key holds (nothing changed in between), the retry gets that key
/// again, so its answer is the lost one byte for byte, on whichever node computes it. A
/// request with client commands never gets here for that: its retry is answered from the
/// kept response (`super::replay`).
fn key_for(
    ctx: &Context<'_>,
    plan: &CollectionPlan<'_>,
    from: u32,
    encoded: &[u8],
) -> Result<u32, EasError> {
    let device = &ctx.device.key;
    let folder = plan.folder.id;
    if plan.request.commands.is_empty() {
        let newest = ctx.store.collection_keys(device, folder)?.into_iter().max();
        if let Some(newest) = newest.filter(|&k| k > from) {
            if ctx
                .store
                .collection_state(device, folder, newest)?
                .as_deref()
                == Some(encoded)
            {
                tracing::info!(folder, "a retried Sync page: answered with the key it lost");
                return Ok(newest);
            }
        }
    }
    Ok(ctx
        .store
        .mint_collection_state(device, folder, Some(from), encoded)?)
}

/// Fetches and renders a window's items: whole items for the adds, what a Change carries for
/// the changes.
async fn page_items<B: Store>(
    store: &mut B,
    at: CollectionRef<'_>,
    w: &Window,
    params: &Params,
) -> Result<Rendered, EasError> {
    let mut wanted: Vec<ItemId> = w.changes.clone();
    wanted.extend(&w.adds);
    Ok(store
        .fetch(at, &wanted, &w.adds, &render_options(params))
        .await?)
}

/// Lists what changed since `snap` and fetches one window of it, unless the collection is
/// not the one the snapshot knows any more.
async fn compute_page<B: Store>(
    store: &mut B,
    at: CollectionRef<'_>,
    snap: &Snapshot<B::Token>,
    params: &Params,
) -> Result<Result<Computed<B::Token>, Paged>, EasError> {
    let listing = match store.changes(at, snap, params.since).await {
        Ok(l) => l,
        Err(BackendError::Gone) => return Ok(Err(Paged::Gone)),
        Err(e) => return Err(e.into()),
    };
    if !snap.token.same_collection(&listing.token) {
        return Ok(Err(Paged::Replaced));
    }
    let all_changes = listing.diff.changes.len();
    let window = snapshot::window(listing.diff, params.window);
    let items = page_items(store, at, &window, params).await?;
    Ok(Ok(Computed {
        token: listing.token,
        window,
        all_changes,
        folds: listing.folds,
        items,
    }))
}

/// The commands a computed window sends, applied to the snapshot: what the device knows
/// after it. The Sync command and read-ahead both use this, so a pager predicts exactly the
/// snapshot the request stores.
fn advance<T: Token>(snap: &mut Snapshot<T>, page: &Computed<T>, since: u64) -> Vec<ServerCommand> {
    let w = &page.window;
    let mut commands = Vec::with_capacity(w.len());
    let changes_left = w.changes.len() < page.all_changes;
    for &id in &w.deletes {
        snap.items.remove(&id);
        commands.push(ServerCommand::Delete(id));
    }
    for &id in &w.soft_deletes {
        snap.items.remove(&id);
        commands.push(ServerCommand::SoftDelete(id));
    }
    for &id in &w.changes {
        if let (true, Some(&fold)) = (page.items.contains(id), page.folds.get(&id)) {
            snap.items.insert(id, fold);
            commands.push(ServerCommand::Change(id));
        }
    }
    for &id in &w.adds {
        // An item removed between the listing and the fetch is simply not added; the next
        // Sync does not know it either. Its fold is what was fetched.
        if let Some(fold) = page.items.fold_of(id) {
            snap.items.insert(id, fold);
            commands.push(ServerCommand::Add(id));
        }
    }
    snap.pending = w.more;
    snap.token = snap.token.after_page(&page.token, !changes_left);
    snap.since = since;
    commands
}

/// A pager's work: page after page, each from the snapshot the previous one leads to, until
/// the collection is paged through, the phone stops asking, or the collection is replaced.
/// Finishes with the store when done.
async fn page_through<B: Store>(
    mut store: B,
    folder: FolderEntry,
    mut snapshot: Snapshot<B::Token>,
    mut from: Vec<u8>,
    params: Params,
    pages: mpsc::Sender<Page>,
) {
    let at = collection_ref(&folder);
    // One listing for all the pages: each window is what the ones before it left, which
    // is what listing again from the snapshot they lead to would give while nothing
    // changes. Every page records the state read before this listing, so whatever
    // changes meanwhile is found by the Sync after the paging (the last page is checked
    // against a fresh look and computed afresh when anything moved); the round trips and
    // the walk over the collection a listing costs are saved on every page.
    let listing = match store.changes(at, &snapshot, params.since).await {
        Ok(l) if snapshot.token.same_collection(&l.token) => l,
        Ok(_) => {
            store.finish(false).await;
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "read-ahead failed; requests compute their pages");
            store.finish(false).await;
            return;
        }
    };
    let mut rest = listing.diff;
    loop {
        let all_changes = rest.changes.len();
        let window = snapshot::take_window(&mut rest, params.window);
        let items = match page_items(&mut store, at, &window, &params).await {
            Ok(items) => items,
            Err(e) => {
                tracing::debug!(error = %e, "read-ahead failed; requests compute their pages");
                break;
            }
        };
        let computed = Computed {
            token: listing.token.clone(),
            window,
            all_changes,
            folds: listing.folds.clone(),
            items,
        };
        let page = next_page(&mut snapshot, &mut from, computed, &params);
        if !page.more {
            // Finished first: the request for the last page reads the collection's state,
            // which is slow while another session holds it open, and the session is back in
            // the pool for the phone's next request.
            store.finish(false).await;
            let _ = tokio::time::timeout(read_ahead::TTL, pages.send(page)).await;
            return;
        }
        let sent = tokio::time::timeout(read_ahead::TTL, pages.send(page)).await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
    }
    store.finish(false).await;
}

/// The page a computed window makes, with `snapshot` advanced to what the device knows after
/// it and `from` (the encoded snapshot a page starts from) to the next page's start.
fn next_page<T: Token>(
    snapshot: &mut Snapshot<T>,
    from: &mut Vec<u8>,
    computed: Computed<T>,
    params: &Params,
) -> Page {
    let commands = advance(snapshot, &computed, params.since);
    let next = snapshot.encode();
    Page {
        from: std::mem::replace(from, next.clone()),
        next,
        commands,
        params: params.clone(),
        listed: head(&computed.token),
        len: computed.window.len(),
        more: computed.window.more,
        items: computed.items,
    }
}

/// What the next Sync of a collection would send, counted without sending it: the answer to
/// GetItemEstimate. `Err(status)` carries GetItemEstimate's own status (key 0 / not primed,
/// unknown key, collection gone).
pub async fn estimate<B: Store>(
    ctx: &Context<'_>,
    store: &mut B,
    folder: &FolderEntry,
    sync_key: Option<SyncKey>,
    options: &Options,
) -> Result<Result<usize, GetItemEstimateStatus>, EasError> {
    if sync_key.is_some_and(SyncKey::is_initial) {
        return Ok(Err(GetItemEstimateStatus::NotPrimed));
    }
    let Some(snap) = sync_key
        .and_then(SyncKey::stored)
        .map(|k| ctx.store.collection_state(&ctx.device.key, folder.id, k))
        .transpose()?
        .flatten()
        .and_then(|b| Snapshot::<B::Token>::decode(&b))
    else {
        return Ok(Err(GetItemEstimateStatus::InvalidSyncKey));
    };
    let since = options.since(unix_now());
    let at = collection_ref(folder);
    let Some(now) = store.state(at).await? else {
        return Ok(Err(GetItemEstimateStatus::InvalidCollection));
    };
    if !snap.token.same_collection(&now) {
        return Ok(Err(GetItemEstimateStatus::InvalidSyncKey));
    }
    if !snap.pending && unchanged(&snap, &now, since) {
        return Ok(Ok(0));
    }
    let listing = store.changes(at, &snap, since).await?;
    Ok(Ok(listing.diff.len()))
}

/// The device's newest snapshot of a collection (None before its first Sync).
pub fn newest_snapshot<T: Token>(
    ctx: &Context<'_>,
    folder: u32,
) -> Result<Option<Snapshot<T>>, EasError> {
    let device = &ctx.device.key;
    let Some(latest) = ctx.store.collection_keys(device, folder)?.into_iter().max() else {
        return Ok(None);
    };
    Ok(ctx
        .store
        .collection_state(device, folder, latest)?
        .and_then(|b| Snapshot::decode(&b)))
}

/// Whether a collection's token says the device's newest snapshot of it is out of date. A
/// collection the device never synced is not news (it has nothing to be out of date with).
pub fn is_stale<T: Token>(ctx: &Context<'_>, folder: u32, now: &T) -> Result<bool, EasError> {
    Ok(newest_snapshot::<T>(ctx, folder)?.is_some_and(|s| s.pending || s.token.stale(now)))
}

/// Edits every live snapshot of a collection in place, without minting a key: for commands
/// other than Sync (MoveItems, ItemOperations) that change what the device holds, so the
/// next Sync neither echoes their effect nor misses it.
pub fn amend_snapshots<T: Token>(
    ctx: &Context<'_>,
    folder: u32,
    edit: impl Fn(&mut Snapshot<T>),
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

/// The item a client command's ServerId names in this collection.
fn item_in(server_id: &Presented<ServerId>, folder: &FolderEntry) -> Option<ItemId> {
    server_id.id()?.uid_in(CollectionId::new(folder.id))
}

/// Applies the client's commands to the store and the snapshot, adding the answers they get.
/// Returns whether the snapshot changed.
async fn apply_commands<B: Store>(
    ctx: &Context<'_>,
    store: &mut B,
    plan: &CollectionPlan<'_>,
    snap: &mut Snapshot<B::Token>,
    out: &mut CollectionOutcome,
) -> Result<bool, EasError> {
    let mut changed = false;
    for cmd in &plan.request.commands {
        let applied = client_command(ctx, store, plan, snap, cmd).await?;
        changed |= applied.changed;
        out.responses.extend(applied.response);
    }
    Ok(changed)
}

/// Applies one client command to the store and the snapshot. A Change or Delete of an item
/// the device may not have is answered "not found" without touching the store.
async fn client_command<B: Store>(
    ctx: &Context<'_>,
    store: &mut B,
    plan: &CollectionPlan<'_>,
    snap: &mut Snapshot<B::Token>,
    cmd: &ClientCommand,
) -> Result<Applied, EasError> {
    let folder = plan.folder;
    let held = |server_id| item_in(server_id, folder).filter(|id| snap.items.contains_key(id));
    match cmd {
        ClientCommand::Change { server_id, data } => {
            let Some(id) = held(server_id) else {
                return Ok(Applied::not_found("Change", server_id));
            };
            let old = snap.items.get(&id).copied().unwrap_or(0);
            match store.change(plan.at(), id, old, data).await? {
                // Gone on the server: the deletion reaches the device with the changes.
                Changed::Gone => Ok(Applied::not_found("Change", server_id)),
                Changed::To(fold) => {
                    snap.items.insert(id, fold);
                    Ok(Applied::changed())
                }
            }
        }
        ClientCommand::Delete { server_id } => {
            let Some(id) = held(server_id) else {
                return Ok(Applied::not_found("Delete", server_id));
            };
            let as_move = plan.request.deletes_as_moves.unwrap_or(true);
            store.delete(plan.at(), id, as_move).await?;
            // Whether or not it was still there, the device no longer has it.
            snap.items.remove(&id);
            Ok(Applied::changed())
        }
        ClientCommand::Fetch { server_id } => Ok(Applied::answered(ItemResponse::Fetch {
            server_id: server_id.clone(),
            uid: item_in(server_id, folder),
        })),
        ClientCommand::Add { client_id, data } => {
            let answer = |server_id, status| ItemResponse::Add {
                client_id: client_id.to_owned(),
                server_id,
                status,
            };
            let context = AddContext {
                version: mime_version(ctx.version),
                email: &ctx.user.email,
                now_unix: unix_now() as i64,
            };
            Ok(match store.add(plan.at(), data, context).await? {
                Added::Created(id, fold) => {
                    snap.items.insert(id, fold);
                    let id = ServerId::new(CollectionId::new(folder.id), id);
                    Applied {
                        changed: true,
                        response: Some(answer(Some(id), SyncStatus::Success)),
                    }
                }
                Added::Refused => Applied::answered(answer(None, SyncStatus::ConversionError)),
                Added::Unconfirmed => Applied::answered(answer(None, SyncStatus::ServerError)),
            })
        }
    }
}

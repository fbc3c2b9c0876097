//! ItemOperations (MS-ASCMD 2.2.1.10) for mail: Fetch of an item (by CollectionId + ServerId
//! or by LongId, with body preferences or as MIME), Fetch of an attachment by FileReference
//! (with byte ranges), EmptyFolderContents, and Move (of a conversation) answered truthfully
//! as not supported.
//!
//! Attachment data goes out base64-encoded inside `Data` (the multipart response form is not
//! offered). Item properties are written by the same code as Sync's, into `Properties`.
//!
//! Memory per request is bounded (`[limits]`): operations past `item_operations_per_request`
//! get status 2 and are not run; a fetch whose data would take the response past
//! `item_operations_response_bytes` gets status 11 ("the requested data size is too large")
//! without being read, so a phone that batches asks again for the rest, each then fitting as
//! the first of its own request (the first item or attachment of a response is always served).
//! Fetches run one at a time and each one's buffers are gone before the next. The provisioning
//! policy is enforced here, not only announced: with `allow_attachments` off an attachment gets
//! status 6 (not found or access denied), and one larger than `max_attachment_bytes` (whole,
//! whatever the Range) or in a message longer than `limits.max_message_bytes` gets status 11.

use std::io::Write;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb, itemoperations as io, search};
use eas_wbxml::{Element, Writer};

use super::ids::{CollectionId, Presented, ServerId};
use super::status::ItemOperationsStatus;
use super::sync::{self, engine, request};
use super::{Context, EasError, Reply, child_text};
use crate::backend::Rendered;
use crate::backend::mail::{MailToken, render as items};
use crate::mailstore::Mailstore;

/// What an item or attachment adds to the response besides its data (status, ids, type).
const ENVELOPE_BYTES: usize = 256;

/// One operation of the request, planned.
enum Op {
    Item(ItemFetch),
    Attachment(AttachmentFetch),
    Empty(EmptyFolder),
    /// Answered without running: its whole answer.
    Status(Element),
}

/// A Fetch of an item, by CollectionId + ServerId or by LongId.
struct ItemFetch {
    server_id: Presented<ServerId>,
    folder: Option<crate::state::FolderEntry>,
    uid: Option<u32>,
    options: request::Options,
    long_id: bool,
}

/// A Fetch of an attachment by FileReference, whole or a byte range of it.
struct AttachmentFetch {
    reference: String,
    range: Option<(u64, u64)>,
    bad_range: bool,
}

/// An EmptyFolderContents.
struct EmptyFolder {
    collection_id: Presented<CollectionId>,
    folder: Option<crate::state::FolderEntry>,
    delete_subfolders: bool,
}

/// The response under construction. The writer's sink is shared with the code that streams
/// base64 into a `Data` element (see [`Response::data`]), and counts what the response holds.
struct Response<'o> {
    w: Writer<Sink<'o>>,
    out: &'o Mutex<Vec<u8>>,
    /// Bytes of item and attachment data this response may carry in all.
    budget: usize,
    /// An item or attachment has been written: from now on the budget applies.
    carrying: bool,
}

/// The response buffer as the writer's sink. A `Mutex` because the handler's future must be
/// `Send` while the writer holds a reference to the buffer; it is never contended.
struct Sink<'o>(&'o Mutex<Vec<u8>>);

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lock(out: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    out.lock().unwrap_or_else(PoisonError::into_inner)
}

fn enc(e: eas_wbxml::EncodeError) -> EasError {
    EasError::Internal(e.to_string())
}

impl Response<'_> {
    fn len(&self) -> usize {
        lock(self.out).len()
    }

    /// Whether `bytes` more of item or attachment data fit. The first item of a response
    /// always does: a phone that asks for one large attachment at a time must get it.
    fn fits(&self, bytes: usize) -> bool {
        !self.carrying || self.len().saturating_add(bytes) <= self.budget
    }

    /// Nothing more fits: later fetches are answered without being read.
    fn full(&self) -> bool {
        self.carrying && self.len() >= self.budget
    }

    /// `<Data>` with `bytes` base64-encoded, written straight into the response: no encoded
    /// copy is built first.
    fn data(&mut self, bytes: &[u8]) -> Result<(), EasError> {
        // The writer opens the element and writes an empty inline string (its STR_I and the
        // terminating NUL); the encoded text goes between the two. Base64 holds no NUL, so
        // the string stays one STR_I, which is what phones parse.
        self.w.start(io::Data).map_err(enc)?.text("").map_err(enc)?;
        {
            let mut out = lock(self.out);
            if out.pop() != Some(0) {
                return Err(EasError::Internal(
                    "the WBXML writer did not end an inline string as expected".into(),
                ));
            }
            let len = base64::encoded_len(bytes.len(), true)
                .ok_or_else(|| EasError::Internal("attachment too large to encode".into()))?;
            let start = out.len();
            if out.capacity() - start < len + 1 {
                // Room for the whole budget at once: growing an attachment at a time
                // reallocates, and each buffer left behind stays resident in the allocator
                // for a while (ten 2 MB attachments peaked 10 MB higher that way, and 20 MB
                // higher growing exactly). Pages not written to cost nothing.
                out.reserve_exact((len + 1).max(self.budget.saturating_sub(start)));
            }
            out.resize(start + len, 0);
            let written = base64::engine::general_purpose::STANDARD
                .encode_slice(bytes, &mut out[start..])
                .map_err(|e| EasError::Internal(e.to_string()))?;
            out.truncate(start + written);
            out.push(0);
        }
        self.w.end().map_err(enc)?;
        Ok(())
    }
}

/// The limits and policy that apply to this request's fetches.
struct Limits {
    operations: usize,
    response_bytes: usize,
    max_message: u64,
    /// None: attachments may not be downloaded at all.
    max_attachment: Option<u64>,
}

impl Limits {
    fn of(ctx: &Context<'_>) -> Limits {
        let l = &ctx.config.limits;
        let policy = &ctx.config.provision.policy;
        Limits {
            operations: l.item_operations_per_request,
            response_bytes: l.item_operations_response_bytes,
            max_message: l.max_message_bytes as u64,
            max_attachment: policy
                .allow_attachments
                .then(|| policy.max_attachment_bytes.map_or(u64::MAX, u64::from)),
        }
    }
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let limits = Limits::of(ctx);
    let mut ops = Vec::new();
    for (i, op) in body.children().iter().enumerate() {
        // Operations past the limit are answered without being planned or run: each could
        // be the fetch of a whole message.
        ops.push(if i < limits.operations {
            plan(ctx, op)?
        } else {
            refused(op, ItemOperationsStatus::ProtocolError)
        });
    }
    let mut store = ctx.mailstore().await?;
    let out = Mutex::new(Vec::with_capacity(4096));
    let mut r = Response {
        w: Writer::new(Sink(&out)).map_err(enc)?,
        out: &out,
        budget: limits.response_bytes,
        carrying: false,
    };
    r.w.start(io::ItemOperations).map_err(enc)?;
    r.w.text_element(io::Status, ItemOperationsStatus::Success.as_str())
        .map_err(enc)?;
    r.w.start(io::Response).map_err(enc)?;
    for op in ops {
        match op {
            Op::Status(e) => e.write(&mut r.w).map_err(enc)?,
            Op::Empty(empty) => empty_folder(ctx, &mut store, &mut r, empty).await?,
            Op::Item(item) => fetch_item(ctx, &mut store, &mut r, item).await?,
            Op::Attachment(fetch) => {
                fetch_attachment(ctx, &mut store, &mut r, &limits, fetch).await?;
            }
        }
    }
    r.w.end().map_err(enc)?;
    r.w.end().map_err(enc)?;
    store.close().await;
    r.w.finish().map_err(enc)?;
    Ok(Reply::Bytes(
        out.into_inner().unwrap_or_else(PoisonError::into_inner),
    ))
}

/// Runs an EmptyFolderContents: the folder's messages (and with DeleteSubFolders its
/// subfolders) deleted, and its snapshots emptied so Sync does not send the deletes again.
async fn empty_folder(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    r: &mut Response<'_>,
    empty: EmptyFolder,
) -> Result<(), EasError> {
    let status = match empty.folder {
        None => ItemOperationsStatus::NotFound,
        Some(f) => {
            store.empty(&f.imap_name).await?;
            engine::amend_snapshots::<MailToken>(ctx, f.id, |snap| snap.items.clear())?;
            if empty.delete_subfolders {
                for child in sync::descendants(ctx, f.id)? {
                    store.delete_mailbox(&child.imap_name).await?;
                }
            }
            ItemOperationsStatus::Success
        }
    };
    r.w.start(io::EmptyFolderContents).map_err(enc)?;
    r.w.text_element(io::Status, status.as_str()).map_err(enc)?;
    r.w.text_element(a::CollectionId, empty.collection_id.text())
        .map_err(enc)?;
    r.w.end().map_err(enc)?;
    Ok(())
}

/// Runs a Fetch of an item: rendered with the operation's options, if it exists and fits.
async fn fetch_item(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    r: &mut Response<'_>,
    item: ItemFetch,
) -> Result<(), EasError> {
    let rendered = match (&item.folder, item.uid) {
        (Some(_), Some(_)) if r.full() => Err(ItemOperationsStatus::DataTooLarge),
        (Some(f), Some(uid)) => render_item(ctx, store, f, uid, &item.options).await?,
        _ => Err(ItemOperationsStatus::NotFound),
    };
    let rendered = rendered.and_then(|rendered| {
        if r.fits(rendered.encoded_len() + ENVELOPE_BYTES) {
            Ok(rendered)
        } else {
            Err(ItemOperationsStatus::DataTooLarge)
        }
    });
    write_item(r, &item, rendered)
}

/// The item rendered, or the status of a fetch that failed (not there, or too large).
async fn render_item(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    folder: &crate::state::FolderEntry,
    uid: u32,
    options: &request::Options,
) -> Result<Result<Rendered, ItemOperationsStatus>, EasError> {
    let fetched = items::fetch_and_render(
        store,
        &folder.imap_name,
        folder.id,
        &[uid],
        &[uid],
        &engine::render_options_of(ctx.version, options),
    )
    .await;
    Ok(
        match recover(ctx, store, fetched.map_err(EasError::from)).await? {
            Err(status) => Err(status),
            Ok(r) if !r.contains(uid) => Err(ItemOperationsStatus::NotFound),
            Ok(rendered) => Ok(rendered),
        },
    )
}

/// The Fetch element of an item: its status and ids as the phone sent them, and its
/// properties when it was fetched.
fn write_item(
    r: &mut Response<'_>,
    item: &ItemFetch,
    rendered: Result<Rendered, ItemOperationsStatus>,
) -> Result<(), EasError> {
    r.w.start(io::Fetch).map_err(enc)?;
    let status = rendered
        .as_ref()
        .err()
        .copied()
        .unwrap_or(ItemOperationsStatus::Success);
    r.w.text_element(io::Status, status.as_str()).map_err(enc)?;
    if item.long_id {
        r.w.text_element(search::LongId, item.server_id.text())
            .map_err(enc)?;
    } else {
        if let Some(f) = &item.folder {
            r.w.text_element(a::CollectionId, &CollectionId::new(f.id).to_string())
                .map_err(enc)?;
        }
        r.w.text_element(a::ServerId, item.server_id.text())
            .map_err(enc)?;
    }
    if let (Ok(rendered), Some(uid)) = (rendered, item.uid) {
        r.w.text_element(a::Class, "Email").map_err(enc)?;
        r.w.start(io::Properties).map_err(enc)?;
        rendered.write_properties(&mut r.w, uid).map_err(enc)?;
        r.w.end().map_err(enc)?;
        r.carrying = true;
    }
    r.w.end().map_err(enc)?;
    Ok(())
}

/// Runs a Fetch of an attachment: decoded, checked against the policy and the response's
/// budget, and sent whole or the range asked for.
async fn fetch_attachment(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    r: &mut Response<'_>,
    limits: &Limits,
    fetch: AttachmentFetch,
) -> Result<(), EasError> {
    let found = match attachment_location(ctx, &fetch.reference)? {
        None => Err(ItemOperationsStatus::AttachmentInvalid),
        Some(_) if limits.max_attachment.is_none() => Err(ItemOperationsStatus::NotFound),
        Some(_) if r.full() => Err(ItemOperationsStatus::DataTooLarge),
        Some((folder, uid, part)) => {
            read_attachment(ctx, store, limits, &folder.imap_name, uid, &part).await?
        }
    };
    let checked = found.and_then(|found| slice_attachment(found, &fetch, limits, r));
    write_attachment(r, &fetch, checked)
}

/// The attachment decoded, or the status of a fetch that failed.
async fn read_attachment(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    limits: &Limits,
    mailbox: &str,
    uid: u32,
    part: &str,
) -> Result<Result<crate::mime::OwnedAttachment, ItemOperationsStatus>, EasError> {
    let fetched = items::attachment(store, mailbox, uid, part, limits.max_message).await;
    Ok(
        match recover(ctx, store, fetched.map_err(EasError::from)).await? {
            Err(status) => Err(status),
            Ok(items::AttachmentFetch::Missing) => Err(ItemOperationsStatus::AttachmentInvalid),
            Ok(items::AttachmentFetch::MessageTooLarge(size)) => {
                tracing::info!(
                    size,
                    limit = limits.max_message,
                    "attachment refused: its message is larger than limits.max_message_bytes"
                );
                Err(ItemOperationsStatus::DataTooLarge)
            }
            Ok(items::AttachmentFetch::Found(found)) => Ok(found),
        },
    )
}

/// The bytes of `found` to send: the range asked for (or all), when the policy allows that
/// size and the response has room for it.
fn slice_attachment(
    found: crate::mime::OwnedAttachment,
    fetch: &AttachmentFetch,
    limits: &Limits,
    r: &Response<'_>,
) -> Result<(crate::mime::OwnedAttachment, Range<usize>), ItemOperationsStatus> {
    let total = found.data.len() as u64;
    if total > limits.max_attachment.unwrap_or(0) {
        return Err(ItemOperationsStatus::DataTooLarge);
    }
    let range = fetch.range;
    if fetch.bad_range || range.is_some_and(|(from, _)| from >= total) {
        return Err(ItemOperationsStatus::InvalidRange);
    }
    let (from, end) = match range {
        Some((from, to)) => (from, to.saturating_add(1).min(total)),
        None => (0, total),
    };
    let sent = (end - from) as usize;
    let encoded = base64::encoded_len(sent, true).unwrap_or(usize::MAX);
    if !r.fits(encoded.saturating_add(ENVELOPE_BYTES)) {
        return Err(ItemOperationsStatus::DataTooLarge);
    }
    Ok((found, from as usize..end as usize))
}

/// The Fetch element of an attachment: its status and FileReference, and its data when it
/// was fetched.
fn write_attachment(
    r: &mut Response<'_>,
    fetch: &AttachmentFetch,
    checked: Result<(crate::mime::OwnedAttachment, Range<usize>), ItemOperationsStatus>,
) -> Result<(), EasError> {
    r.w.start(io::Fetch).map_err(enc)?;
    let status = checked
        .as_ref()
        .err()
        .copied()
        .unwrap_or(ItemOperationsStatus::Success);
    r.w.text_element(io::Status, status.as_str()).map_err(enc)?;
    r.w.text_element(asb::FileReference, &fetch.reference)
        .map_err(enc)?;
    if let Ok((found, sent)) = checked {
        r.w.start(io::Properties).map_err(enc)?;
        r.w.text_element(asb::ContentType, &found.content_type)
            .map_err(enc)?;
        if fetch.range.is_some() {
            let last = sent.end.saturating_sub(1);
            r.w.text_element(io::Range, &format!("{}-{last}", sent.start))
                .map_err(enc)?;
            r.w.text_element(io::Total, &found.data.len().to_string())
                .map_err(enc)?;
        }
        r.data(&found.data[sent])?;
        r.w.end().map_err(enc)?;
        r.carrying = true;
    }
    r.w.end().map_err(enc)?;
    Ok(())
}

/// A fetch that met a response longer than the IMAP client accepts becomes status 11 for
/// that operation; the session it broke is dropped and a fresh one serves the rest. Any
/// other failure fails the request as before.
async fn recover<T>(
    ctx: &Context<'_>,
    store: &mut Mailstore,
    fetched: Result<T, EasError>,
) -> Result<Result<T, ItemOperationsStatus>, EasError> {
    match fetched {
        Ok(v) => Ok(Ok(v)),
        Err(EasError::Imap(e)) => match crate::mailstore::response_too_large(&e) {
            Some(limit) => {
                tracing::warn!(
                    limit,
                    "IMAP response over the limit; the fetch answered status 11"
                );
                let fresh = ctx.mailstore().await?;
                // The broken session is dropped, not pooled: the rest of the response is
                // still on its wire.
                drop(std::mem::replace(store, fresh));
                Ok(Err(ItemOperationsStatus::DataTooLarge))
            }
            None => Err(EasError::Imap(e)),
        },
        Err(e) => Err(e),
    }
}

/// An operation answered with `status` and not run, with the ids the phone matches answers
/// by.
fn refused(op: &Element, status: ItemOperationsStatus) -> Op {
    let ids = [
        search::LongId,
        a::CollectionId,
        a::ServerId,
        asb::FileReference,
        io::ConversationId,
    ];
    let extra = op
        .children()
        .iter()
        .filter(|c| ids.contains(&c.tag))
        .cloned()
        .collect();
    status_element(op.tag, status, extra)
}

fn status_element(tag: eas_wbxml::Tag, status: ItemOperationsStatus, extra: Vec<Element>) -> Op {
    let mut children = vec![Element::with_text(io::Status, status.as_str())];
    children.extend(extra);
    Op::Status(Element::with_children(tag, children))
}

/// Reads one operation; item and attachment fetches are run later, the rest now or never.
fn plan(ctx: &Context<'_>, op: &Element) -> Result<Op, EasError> {
    if op.tag == io::Fetch {
        let store = child_text(op, io::Store).unwrap_or("");
        if !store.eq_ignore_ascii_case("Mailbox") {
            return Ok(status_element(
                io::Fetch,
                ItemOperationsStatus::UnknownStore,
                Vec::new(),
            ));
        }
        let options_el = op.child(io::Options);
        if let Some(reference) = child_text(op, asb::FileReference) {
            let (range, bad_range) = match options_el.and_then(|o| child_text(o, io::Range)) {
                None => (None, false),
                Some(r) => match parse_range(r) {
                    Some(r) => (Some(r), false),
                    None => (None, true),
                },
            };
            if reference.is_empty() {
                return Ok(status_element(
                    io::Fetch,
                    ItemOperationsStatus::AttachmentInvalid,
                    Vec::new(),
                ));
            }
            return Ok(Op::Attachment(AttachmentFetch {
                reference: reference.to_owned(),
                range,
                bad_range,
            }));
        }
        let options = options_el.map(item_options).unwrap_or_default();
        if let Some(long_id) = child_text(op, search::LongId) {
            // The folder is looked up by the text before the colon, as a CollectionId is.
            let folder_part = long_id.split(':').next().unwrap_or("");
            let folder = sync::current_folder(ctx, collection(folder_part))?;
            let server_id = Presented::new(long_id);
            let uid = folder.as_ref().and_then(|f| uid_in(&server_id, f));
            return Ok(Op::Item(ItemFetch {
                server_id,
                folder,
                uid,
                options,
                long_id: true,
            }));
        }
        let (Some(collection), Some(server_id)) =
            (child_text(op, a::CollectionId), child_text(op, a::ServerId))
        else {
            return Ok(status_element(
                io::Fetch,
                ItemOperationsStatus::ProtocolError,
                Vec::new(),
            ));
        };
        let folder = sync::current_folder(ctx, self::collection(collection))?;
        let server_id = Presented::new(server_id);
        let uid = folder.as_ref().and_then(|f| uid_in(&server_id, f));
        return Ok(Op::Item(ItemFetch {
            server_id,
            folder,
            uid,
            options,
            long_id: false,
        }));
    }
    if op.tag == io::EmptyFolderContents {
        let collection_id = Presented::read(child_text(op, a::CollectionId).unwrap_or(""), |t| {
            CollectionId::try_from(t.trim())
        });
        return Ok(Op::Empty(EmptyFolder {
            folder: sync::current_folder(ctx, collection_id.id())?,
            collection_id,
            delete_subfolders: op
                .child(io::Options)
                .is_some_and(|o| o.child(io::DeleteSubFolders).is_some()),
        }));
    }
    if op.tag == io::Move {
        let conversation = op.child(io::ConversationId).cloned();
        return Ok(status_element(
            io::Move,
            ItemOperationsStatus::ActionNotSupported,
            conversation.into_iter().collect(),
        ));
    }
    Ok(status_element(
        op.tag,
        ItemOperationsStatus::ProtocolError,
        Vec::new(),
    ))
}

/// The folder id a text names, white space around it ignored.
fn collection(text: &str) -> Option<CollectionId> {
    CollectionId::try_from(text.trim()).ok()
}

fn uid_in(server_id: &Presented<ServerId>, folder: &crate::state::FolderEntry) -> Option<u32> {
    server_id.id()?.uid_in(CollectionId::new(folder.id))
}

fn item_options(o: &Element) -> request::Options {
    let mut options = request::Options {
        mime_support: child_text(o, a::MIMESupport)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        ..request::Options::default()
    };
    for p in o.children_with(asb::BodyPreference) {
        let number = |t| child_text(p, t).and_then(|v: &str| v.trim().parse().ok());
        if let Some(kind) = number(asb::Type) {
            options.body_preferences.push(request::BodyPreference {
                kind: kind as u8,
                truncation_size: number(asb::TruncationSize),
                all_or_none: child_text(p, asb::AllOrNone).is_some_and(|v| v.trim() == "1"),
                preview: number(asb::Preview),
            });
        }
    }
    options
}

/// `m-n`, zero-based and inclusive, with m <= n.
fn parse_range(r: &str) -> Option<(u64, u64)> {
    let (from, to) = r.trim().split_once('-')?;
    let (from, to) = (from.trim().parse().ok()?, to.trim().parse().ok()?);
    (from <= to).then_some((from, to))
}

/// `<folder>:<uid>:<part>` → the folder, UID and MIME part path.
fn attachment_location(
    ctx: &Context<'_>,
    reference: &str,
) -> Result<Option<(crate::state::FolderEntry, u32, String)>, EasError> {
    let mut parts = reference.splitn(3, ':');
    let (Some(folder), Some(uid), Some(part)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let Some(uid) = uid.parse::<u32>().ok().filter(|&u| u > 0) else {
        return Ok(None);
    };
    Ok(sync::current_folder(ctx, collection(folder))?.map(|f| (f, uid, part.to_owned())))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn data_is_one_inline_string_of_base64() {
        let out = Mutex::new(Vec::new());
        let mut r = Response {
            w: Writer::new(Sink(&out)).unwrap(),
            out: &out,
            budget: 0,
            carrying: false,
        };
        r.w.start(io::ItemOperations).unwrap();
        r.w.start(io::Properties).unwrap();
        let bytes: Vec<u8> = (0..=255u8).cycle().take(100_001).collect();
        r.data(&bytes).unwrap();
        r.w.end().unwrap();
        r.w.end().unwrap();
        r.w.finish().unwrap();
        let doc = out.into_inner().unwrap();
        let tree = Element::decode(&doc).unwrap();
        let text = tree
            .child(io::Properties)
            .and_then(|p| p.child(io::Data))
            .and_then(Element::text)
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(decoded, bytes);
        // The header's version byte and a single STR_I: phones read Data as one string.
        assert_eq!(doc.iter().filter(|&&b| b == 0x03).count(), 2);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-99"), Some((0, 99)));
        assert_eq!(parse_range(" 5 - 5 "), Some((5, 5)));
        assert_eq!(parse_range("9-1"), None);
        assert_eq!(parse_range("x-1"), None);
        assert_eq!(parse_range("7"), None);
    }
}

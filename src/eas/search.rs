//! Search (MS-ASCMD 2.2.1.16) of the mailbox, translated to IMAP SEARCH, and of the GAL (the
//! configured directory file; none configured answers an honest empty result).
//!
//! The query's FreeText becomes `TEXT` terms (Dovecot uses its full-text index for them when
//! one is configured), DateReceived bounds become SINCE/BEFORE and are then applied exactly to
//! INTERNALDATE. Hits from every chosen folder are ordered newest first by INTERNALDATE; only
//! (folder, UID, date) triples are held, and only the requested Range is fetched and written,
//! with the same properties and ServerIds (as LongId) that Sync uses.

use eas_wbxml::tags::{airsync as a, email, search as s};
use eas_wbxml::{Element, Writer};

use super::ids::{CollectionId, ServerId};
use super::status::SearchStatus;
use super::sync::{self, engine, request::Options};
use super::{Context, EasError, Reply, child_text, gal};
use crate::backend::Rendered;
use crate::backend::mail::render as items;
use crate::mailstore::Mailstore;
use crate::mailstore::{ImapDate, SearchKey};
use crate::mime::{MessageMeta, MessageView};
use crate::state::FolderEntry;

/// At most this many results per response, as Exchange does.
pub(crate) const MAX_RANGE: usize = 100;

/// How long one mailbox search may take before it answers "timed out": phones give up on a
/// request after about a minute, and a search that long is better refined than waited for.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(45);

/// Newest messages whose thread headers are read per round while looking for a
/// ConversationId (headers only: a few hundred bytes each).
const CONVERSATION_BATCH: usize = 500;

/// A parsed mailbox query.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Query {
    /// The collections named, each None when its text is not a CollectionId (it names no
    /// folder, which is answered like an unknown one).
    pub collections: Vec<Option<CollectionId>>,
    /// IMAP text terms, all of which must match (FreeText words, Or groups).
    pub text: Vec<SearchKey>,
    /// DateReceived > after (unix seconds).
    pub after: Option<i64>,
    /// DateReceived < before.
    pub before: Option<i64>,
    /// Only messages of this conversation (email2:ConversationId as Sync sends it).
    pub conversation: Option<Vec<u8>>,
}

/// Why a query cannot be run.
#[derive(Debug, PartialEq)]
pub(crate) enum QueryError {
    Invalid(String),
    TooComplex(String),
}

/// One matching message: (INTERNALDATE, index into the searched folders, UID). Ordering
/// these descending gives newest first.
pub(crate) type Hit = (i64, u32, u32);

/// What running a query gave.
pub(crate) enum Found {
    Hits {
        folders: Vec<FolderEntry>,
        /// Newest first: at least the `keep` newest matches (all of them without SORT).
        hits: Vec<Hit>,
        /// How many messages match in all.
        total: usize,
        mailstore: Box<Mailstore>,
    },
    FolderSyncRequired,
    ServerError,
    TimedOut,
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let Some(store) = body.child(s::Store) else {
        return Ok(top(SearchStatus::InvalidRequest));
    };
    let name = child_text(store, s::Name)
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let options = store.child(s::Options);
    let range = match options.and_then(|o| child_text(o, s::Range)) {
        None => Some((0, MAX_RANGE - 1)),
        Some(r) => parse_range(r),
    };
    let Some((first, last)) = range else {
        return Ok(store_status(SearchStatus::InvalidRequest));
    };
    match name.as_str() {
        "gal" => return gal_search(ctx, store, options, first, last).await,
        "mailbox" => {}
        _ => return Ok(store_status(SearchStatus::InvalidRequest)),
    }
    let query = match mailbox_query(store) {
        Ok(q) => q,
        Err(status) => return Ok(store_status(status)),
    };
    // Results are never cached between requests, so RebuildResults needs nothing more, and
    // no message is ever rights-managed, so RightsManagementSupport changes nothing either.
    let deep = options.is_some_and(|o| o.child(s::DeepTraversal).is_some());
    let item_options = result_options(options);
    mailbox_search(ctx, &query, deep, &item_options, (first, last)).await
}

/// The mailbox query of a Store, or the status an unreadable one is answered with.
fn mailbox_query(store: &Element) -> Result<Query, SearchStatus> {
    match store.child(s::Query).map(parse_query) {
        Some(Ok(q)) => Ok(q),
        Some(Err(QueryError::TooComplex(why))) => {
            tracing::info!(%why, "search too complex");
            Err(SearchStatus::QueryTooComplex)
        }
        Some(Err(QueryError::Invalid(why))) => {
            tracing::info!(%why, "invalid search");
            Err(SearchStatus::InvalidRequest)
        }
        None => Err(SearchStatus::InvalidRequest),
    }
}

/// How results are rendered: Search carries the same BodyPreference elements as Sync's
/// Options.
fn result_options(options: Option<&Element>) -> Options {
    let Some(o) = options else {
        return Options::default();
    };
    let mut shaped = Element::new(a::Options);
    for c in o.children() {
        shaped.push(c.clone());
    }
    sync::request::parse_options_element(&shaped).unwrap_or_default()
}

/// Runs a mailbox query and answers with the results in `range` (first and last, 0-based).
async fn mailbox_search(
    ctx: &Context<'_>,
    query: &Query,
    deep: bool,
    item_options: &Options,
    (first, last): (usize, usize),
) -> Result<Reply, EasError> {
    let keep = last.min(first + MAX_RANGE - 1) + 1;
    let (folders, hits, total, mut mailstore) = match find(ctx, query, deep, keep).await? {
        Found::Hits {
            folders,
            hits,
            total,
            mailstore,
        } => (folders, hits, total, *mailstore),
        Found::FolderSyncRequired => return Ok(store_status(SearchStatus::FolderSyncRequired)),
        Found::ServerError => return Ok(store_status(SearchStatus::ServerError)),
        Found::TimedOut => return Ok(store_status(SearchStatus::TimedOut)),
    };
    if total == 0 || first >= total || first >= hits.len() {
        mailstore.close().await;
        return Ok(no_results(total));
    }
    let last = last
        .min(first + MAX_RANGE - 1)
        .min(total - 1)
        .min(hits.len() - 1);
    let page = &hits[first..=last];
    let rendered = render_results(ctx, &mut mailstore, &folders, page, item_options).await?;
    mailstore.close().await;
    write_results(&folders, page, &rendered, first, total)
}

/// The page's messages rendered, one fetch per folder: entry `i` holds those of `folders[i]`.
async fn render_results(
    ctx: &Context<'_>,
    mailstore: &mut Mailstore,
    folders: &[FolderEntry],
    page: &[Hit],
    item_options: &Options,
) -> Result<Vec<Rendered>, EasError> {
    let mut rendered: Vec<Rendered> = Vec::new();
    let render = engine::render_options_of(ctx.version, item_options);
    for (i, f) in folders.iter().enumerate() {
        let uids: Vec<u32> = page
            .iter()
            .filter(|h| h.1 as usize == i)
            .map(|h| h.2)
            .collect();
        let r = if uids.is_empty() {
            Rendered::default()
        } else {
            items::fetch_and_render(mailstore, &f.imap_name, f.id, &uids, &uids, &render).await?
        };
        rendered.push(r);
    }
    Ok(rendered)
}

/// The response: the page's results in its order (those expunged since the search left out),
/// the range they cover and the total.
fn write_results(
    folders: &[FolderEntry],
    page: &[Hit],
    rendered: &[Rendered],
    first: usize,
    total: usize,
) -> Result<Reply, EasError> {
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(8192)).map_err(enc)?;
    w.start(s::Search).map_err(enc)?;
    w.text_element(s::Status, SearchStatus::Success.as_str())
        .map_err(enc)?;
    w.start(s::Response).map_err(enc)?;
    w.start(s::Store).map_err(enc)?;
    w.text_element(s::Status, SearchStatus::Success.as_str())
        .map_err(enc)?;
    let mut written = 0;
    for &(_, i, uid) in page {
        let f = &folders[i as usize];
        let r = &rendered[i as usize];
        if !r.contains(uid) {
            continue; // expunged since the search
        }
        w.start(s::Result).map_err(enc)?;
        w.text_element(a::Class, "Email").map_err(enc)?;
        let collection = CollectionId::new(f.id);
        w.text_element(s::LongId, &ServerId::new(collection, uid).to_string())
            .map_err(enc)?;
        w.text_element(a::CollectionId, &collection.to_string())
            .map_err(enc)?;
        w.start(s::Properties).map_err(enc)?;
        r.write_properties(&mut w, uid).map_err(enc)?;
        w.end().map_err(enc)?;
        w.end().map_err(enc)?;
        written += 1;
    }
    let shown_last = first + written.max(1) - 1;
    w.text_element(s::Range, &format!("{first}-{shown_last}"))
        .map_err(enc)?;
    w.text_element(s::Total, &total.to_string()).map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

/// Runs a mailbox query over the chosen folders within the deadline. Only (date, folder,
/// UID) triples are held, whatever the folders' size.
pub(crate) async fn find(
    ctx: &Context<'_>,
    query: &Query,
    deep: bool,
    keep: usize,
) -> Result<Found, EasError> {
    let folders = match folders(ctx, query, deep)? {
        Some(f) => f,
        None => return Ok(Found::FolderSyncRequired),
    };
    let mut mailstore = ctx.mailstore().await?;
    let searched = tokio::time::timeout(
        DEADLINE,
        search_folders(&mut mailstore, &folders, query, keep),
    )
    .await;
    match searched {
        Err(_) => {
            // The session is mid-command: dropped, not returned to the pool.
            tracing::info!(folders = folders.len(), "search timed out");
            Ok(Found::TimedOut)
        }
        Ok(Err(crate::mailstore::ImapError::Timeout(_))) => {
            // Dovecot went quiet for the whole IMAP timeout (e.g. building its full-text
            // index for a big folder): to the phone that is a search that timed out.
            tracing::info!(folders = folders.len(), "IMAP search timed out");
            Ok(Found::TimedOut)
        }
        Ok(Err(
            crate::mailstore::ImapError::No { .. } | crate::mailstore::ImapError::Bad { .. },
        )) => {
            mailstore.close().await;
            Ok(Found::ServerError)
        }
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok((mut hits, total))) => {
            hits.sort_unstable_by(|x, y| y.cmp(x));
            Ok(Found::Hits {
                folders,
                hits,
                total,
                mailstore: Box::new(mailstore),
            })
        }
    }
}

/// The hits (at least the `keep` newest of each folder) and how many there are in all.
async fn search_folders(
    mailstore: &mut Mailstore,
    folders: &[FolderEntry],
    query: &Query,
    keep: usize,
) -> Result<(Vec<Hit>, usize), crate::mailstore::ImapError> {
    let mut key = imap_key(query);
    if let Some(id) = &query.conversation {
        match conversation_key(mailstore, folders, id).await? {
            Some(thread) => {
                if let SearchKey::And(keys) = &mut key {
                    keys.push(thread);
                }
            }
            None => return Ok((Vec::new(), 0)),
        }
    }
    let mut hits: Vec<Hit> = Vec::new();
    // Without exact date bounds or a conversation to confirm, the server orders the hits
    // (SORT by arrival) and only the newest `keep` of each folder need a date: the global
    // newest `keep` are among them.
    let sortable = query.after.is_none() && query.before.is_none() && query.conversation.is_none();
    let mut total = 0;
    for (i, f) in folders.iter().enumerate() {
        if sortable {
            if let Some((count, newest)) = mailstore.search_newest(&f.imap_name, &key, keep).await?
            {
                total += count;
                hits.extend(newest.into_iter().map(|(uid, date)| (date, i as u32, uid)));
                continue;
            }
        }
        let before = hits.len();
        for (uid, date) in mailstore.search_dates(&f.imap_name, &key).await? {
            // IMAP dates are whole days; the phone's bounds are instants.
            if query.after.is_some_and(|t| date <= t) || query.before.is_some_and(|t| date >= t) {
                continue;
            }
            hits.push((date, i as u32, uid));
        }
        total += hits.len() - before;
    }
    if let Some(id) = &query.conversation {
        // The thread key is wide (any mention of the root id): keep only messages whose own
        // ConversationId is the one asked for.
        let mut kept = Vec::with_capacity(hits.len());
        for (i, f) in folders.iter().enumerate() {
            let uids: Vec<u32> = hits
                .iter()
                .filter(|h| h.1 as usize == i)
                .map(|h| h.2)
                .collect();
            for chunk in uids.chunks(CONVERSATION_BATCH) {
                for (uid, header) in mailstore
                    .header_fields(&f.imap_name, chunk, THREAD_FIELDS)
                    .await?
                {
                    if conversation_of(&header).as_slice() == id.as_slice() {
                        kept.extend(hits.iter().filter(|h| h.1 as usize == i && h.2 == uid));
                    }
                }
            }
        }
        total = kept.len();
        hits = kept;
    }
    Ok((hits, total))
}

const THREAD_FIELDS: &[&str] = &["Message-ID", "References", "In-Reply-To"];

/// The ConversationId Sync gives a message with these header fields.
fn conversation_of(header: &[u8]) -> [u8; 16] {
    MessageView::parse(
        header,
        MessageMeta {
            flags: Vec::new(),
            internal_date: 0,
            size: header.len() as u64,
        },
    )
    .conversation_id()
}

/// An IMAP key for every message that mentions the thread root of conversation `id`. The id
/// is a hash, so the root is found by reading the thread headers of the newest messages
/// until one of them belongs to the conversation. None when no message does.
async fn conversation_key(
    mailstore: &mut Mailstore,
    folders: &[FolderEntry],
    id: &[u8],
) -> Result<Option<SearchKey>, crate::mailstore::ImapError> {
    for f in folders {
        let uids = mailstore.search_uids(&f.imap_name, &SearchKey::All).await?;
        for chunk in uids.rchunks(CONVERSATION_BATCH) {
            for (_, header) in mailstore
                .header_fields(&f.imap_name, chunk, THREAD_FIELDS)
                .await?
            {
                if conversation_of(&header).as_slice() != id {
                    continue;
                }
                let Some(root) = thread_root(&header) else {
                    continue;
                };
                let field = |name: &str| SearchKey::Header(name.into(), root.clone());
                return Ok(Some(SearchKey::or(
                    field("Message-ID"),
                    SearchKey::or(field("References"), field("In-Reply-To")),
                )));
            }
        }
    }
    Ok(None)
}

/// The thread root's Message-ID (without angle brackets), as `conversation_id` picks it.
fn thread_root(header: &[u8]) -> Option<String> {
    let msg = mail_parser::MessageParser::default().parse_headers(header)?;
    let first = |v: &mail_parser::HeaderValue<'_>| -> Option<String> {
        match v {
            mail_parser::HeaderValue::Text(t) => Some(t.to_string()),
            mail_parser::HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
            _ => None,
        }
    };
    first(msg.references())
        .or_else(|| first(msg.in_reply_to()))
        .or_else(|| msg.message_id().map(str::to_owned))
        .map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
        .filter(|id| !id.is_empty())
}

/// The folders to search: the named collections (with their subfolders for DeepTraversal),
/// or every mail folder. None when a named collection is unknown (FolderSync first).
fn folders(ctx: &Context<'_>, q: &Query, deep: bool) -> Result<Option<Vec<FolderEntry>>, EasError> {
    let device = &ctx.device.key;
    let all = match ctx.store.latest_hierarchy_key(device)? {
        Some(k) => ctx.store.hierarchy(device, k)?.unwrap_or_default(),
        None => return Ok(None),
    };
    if q.collections.is_empty() {
        return Ok(Some(all));
    }
    let mut out: Vec<FolderEntry> = Vec::new();
    for id in &q.collections {
        let Some(f) = id.and_then(|id| all.iter().find(|f| f.id == id.number())) else {
            return Ok(None);
        };
        if !out.iter().any(|o| o.id == f.id) {
            out.push(f.clone());
        }
        if deep {
            for d in sync::descendants(ctx, f.id)? {
                if !out.iter().any(|o| o.id == d.id) {
                    out.push(d);
                }
            }
        }
    }
    Ok(Some(out))
}

pub(crate) fn parse_query(q: &Element) -> Result<Query, QueryError> {
    let mut query = Query::default();
    for c in q.children() {
        term(c, &mut query, 0)?;
    }
    if query.text.is_empty()
        && query.after.is_none()
        && query.before.is_none()
        && query.conversation.is_none()
    {
        return Err(QueryError::Invalid("no search terms".into()));
    }
    Ok(query)
}

/// Words, not a phrase: "budget review" finds a mail with both words anywhere.
pub(crate) fn free_text(text: &str) -> Result<Vec<SearchKey>, QueryError> {
    let words: Vec<SearchKey> = text
        .split_whitespace()
        .map(|w| SearchKey::Text(w.to_owned()))
        .collect();
    if words.is_empty() {
        return Err(QueryError::Invalid("empty FreeText".into()));
    }
    Ok(words)
}

fn term(e: &Element, q: &mut Query, depth: usize) -> Result<(), QueryError> {
    if depth > 4 {
        return Err(QueryError::TooComplex("nested too deep".into()));
    }
    match e.tag {
        t if t == s::And => {
            for c in e.children() {
                term(c, q, depth + 1)?;
            }
        }
        t if t == s::Or => {
            // Alternatives of text only: dates and folders inside an Or have no IMAP-side
            // meaning the phone could rely on.
            let mut alternatives: Vec<SearchKey> = Vec::new();
            for c in e.children() {
                if c.tag != s::FreeText {
                    return Err(QueryError::TooComplex(format!("{:?} inside Or", c.tag)));
                }
                alternatives.push(SearchKey::And(free_text(c.text().unwrap_or(""))?));
            }
            let Some(mut key) = alternatives.pop() else {
                return Err(QueryError::Invalid("empty Or".into()));
            };
            while let Some(other) = alternatives.pop() {
                key = SearchKey::or(other, key);
            }
            q.text.push(key);
        }
        t if t == s::FreeText => {
            q.text.extend(free_text(e.text().unwrap_or("").trim())?);
        }
        t if t == a::Class => {
            if e.text().is_some_and(|c| c.trim() != "Email") {
                return Err(QueryError::Invalid("only Email can be searched".into()));
            }
        }
        t if t == a::CollectionId => {
            let text = e.text().unwrap_or("").trim();
            q.collections.push(CollectionId::try_from(text).ok());
        }
        t if t == s::GreaterThan || t == s::LessThan => {
            if e.child(email::DateReceived).is_none() {
                return Err(QueryError::Invalid(
                    "comparison on something else than DateReceived".into(),
                ));
            }
            let value = child_text(e, s::Value)
                .and_then(parse_eas_date)
                .ok_or_else(|| QueryError::Invalid("bad date".into()))?;
            if t == s::GreaterThan {
                q.after = Some(value);
            } else {
                q.before = Some(value);
            }
        }
        t if t == s::ConversationId => {
            let id = e
                .opaque()
                .map(<[u8]>::to_vec)
                .or_else(|| e.text().map(|t| t.as_bytes().to_vec()))
                .filter(|id| id.len() == 16)
                .ok_or_else(|| QueryError::Invalid("ConversationId is not 16 bytes".into()))?;
            q.conversation = Some(id);
        }
        other => return Err(QueryError::Invalid(format!("unexpected {other:?}"))),
    }
    Ok(())
}

/// The IMAP search for a query: every word somewhere in the message, within the date bounds
/// widened to whole days (refined on INTERNALDATE afterwards).
fn imap_key(q: &Query) -> SearchKey {
    let mut keys: Vec<SearchKey> = q.text.clone();
    if let Some(t) = q.after {
        keys.push(SearchKey::Since(ImapDate::from_unix(t)));
    }
    if let Some(t) = q.before {
        keys.push(SearchKey::Before(ImapDate::from_unix(t + 86_400)));
    }
    SearchKey::And(keys)
}

/// `2026-01-01T00:00:00.000Z` (milliseconds and `Z` optional) to unix seconds.
pub(crate) fn parse_eas_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let time = time.trim_end_matches('Z');
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let (hh, mm, ss): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next().unwrap_or("0").parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

pub(crate) fn parse_range(r: &str) -> Option<(usize, usize)> {
    let (a, b) = r.trim().split_once('-')?;
    let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

fn top(status: SearchStatus) -> Reply {
    Reply::Document(Element::with_children(
        s::Search,
        vec![Element::with_text(s::Status, status.as_str())],
    ))
}

fn store_status(status: SearchStatus) -> Reply {
    store_reply(vec![Element::with_text(s::Status, status.as_str())])
}

fn no_results(total: usize) -> Reply {
    store_reply(vec![
        Element::with_text(s::Status, SearchStatus::Success.as_str()),
        Element::with_text(s::Total, total.to_string()),
    ])
}

/// `<Search><Status>1</Status><Response><Store>…</Store></Response></Search>`.
fn store_reply(children: Vec<Element>) -> Reply {
    Reply::Document(Element::with_children(
        s::Search,
        vec![
            Element::with_text(s::Status, SearchStatus::Success.as_str()),
            Element::with_children(
                s::Response,
                vec![Element::with_children(s::Store, children)],
            ),
        ],
    ))
}

/// Store `GAL`: the Query's text matched against the directory (no directory configured:
/// nobody matches, which is the truthful answer).
async fn gal_search(
    ctx: &Context<'_>,
    store: &Element,
    options: Option<&Element>,
    first: usize,
    last: usize,
) -> Result<Reply, EasError> {
    let text = store.child(s::Query).and_then(|q| q.text()).unwrap_or("");
    if text.trim().is_empty() {
        return Ok(store_status(SearchStatus::InvalidRequest));
    }
    let found = match ctx
        .directory
        .search(text, Some(ctx.directory_asker()))
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "directory unavailable");
            return Ok(store_status(SearchStatus::ServerError));
        }
    };
    let Some((first, last)) = gal::window(first, last, found.len(), MAX_RANGE) else {
        return Ok(no_results(found.len()));
    };
    let pictures =
        gal::PictureRequest::from_options(options, s::Picture, s::MaxSize, s::MaxPictures);
    let mut budget = gal::PictureBudget::new(pictures);
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(4096)).map_err(enc)?;
    w.start(s::Search).map_err(enc)?;
    w.text_element(s::Status, SearchStatus::Success.as_str())
        .map_err(enc)?;
    w.start(s::Response).map_err(enc)?;
    w.start(s::Store).map_err(enc)?;
    w.text_element(s::Status, SearchStatus::Success.as_str())
        .map_err(enc)?;
    let tags = gal::ResultTags {
        result: s::Result,
        properties: s::Properties,
        range: s::Range,
        total: s::Total,
    };
    gal::write_results(
        &mut w,
        &tags,
        &found[first..=last],
        first,
        found.len(),
        &mut budget,
    )?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_eas_date("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_eas_date("2026-03-02T10:00:00.000Z"),
            Some(1_772_445_600)
        );
        assert_eq!(parse_eas_date("2026-03-02T10:00:00Z"), Some(1_772_445_600));
        assert_eq!(parse_eas_date("2026-13-02T10:00:00Z"), None);
        assert_eq!(parse_eas_date("yesterday"), None);
    }

    #[test]
    fn queries() {
        let q = eas_wbxml::from_xml(
            r#"<Query xmlns="Search:" xmlns:airsync="AirSync:" xmlns:email="Email:"><And>
                 <airsync:Class>Email</airsync:Class><airsync:CollectionId>10</airsync:CollectionId>
                 <FreeText>budget review</FreeText>
                 <GreaterThan><email:DateReceived/><Value>2025-01-01T00:00:00.000Z</Value></GreaterThan>
               </And></Query>"#,
        )
        .unwrap();
        let parsed = parse_query(&q).unwrap();
        assert_eq!(parsed.collections, vec![Some(CollectionId::new(10))]);
        assert_eq!(
            parsed.text,
            vec![
                SearchKey::Text("budget".into()),
                SearchKey::Text("review".into())
            ]
        );
        assert_eq!(parsed.after, Some(1_735_689_600));
        let or = eas_wbxml::from_xml(
            r#"<Query xmlns="Search:"><Or><FreeText>a</FreeText></Or></Query>"#,
        )
        .unwrap();
        assert_eq!(
            parse_query(&or).unwrap().text,
            vec![SearchKey::And(vec![SearchKey::Text("a".into())])]
        );
        let or_dates = eas_wbxml::from_xml(
            r#"<Query xmlns="Search:" xmlns:email="Email:"><Or><FreeText>a</FreeText><GreaterThan><email:DateReceived/><Value>2025-01-01T00:00:00Z</Value></GreaterThan></Or></Query>"#,
        )
        .unwrap();
        assert!(matches!(
            parse_query(&or_dates),
            Err(QueryError::TooComplex(_))
        ));
        let empty = eas_wbxml::from_xml(r#"<Query xmlns="Search:"><And/></Query>"#).unwrap();
        assert!(matches!(parse_query(&empty), Err(QueryError::Invalid(_))));
        assert_eq!(parse_range("0-24"), Some((0, 24)));
        assert_eq!(parse_range("5-1"), None);
    }
}

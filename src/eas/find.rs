//! Find (MS-ASCMD 2.2.1.2, protocol 16.1): the mailbox search of [`super::search`] and the
//! directory search of [`super::gal`] in Find's own request and response shape.
//!
//! A mailbox result carries the ServerId Sync uses (`<folder id>:<UID>`) and the short
//! property list Find defines (subject, dates, display names, preview, attachment flag), so a
//! phone can list hits without fetching them.

use eas_wbxml::tags::{airsync as a, email, email2, find as f, itemoperations as io};
use eas_wbxml::{Element, Writer};

use super::ids::{CollectionId, ServerId};
use super::search::{self, Found, Query, QueryError};
use super::status::FindStatus;
use super::{Context, EasError, Reply, child_text, gal};
use crate::mime::MessageView;
use crate::mime::body::preview;

/// Characters of body text in a result's Preview.
const PREVIEW_CHARS: u32 = 255;

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    if ctx.version < super::version::ProtocolVersion::V16_1 {
        // Find exists only in 16.1; an older request form cannot carry it.
        return Ok(status_only(FindStatus::InvalidRequest));
    }
    let Some(exec) = body.child(f::ExecuteSearch) else {
        return Ok(status_only(FindStatus::InvalidRequest));
    };
    if child_text(body, f::SearchId).is_none_or(|id| id.trim().is_empty()) {
        return Ok(status_only(FindStatus::InvalidRequest));
    }
    if let Some(criterion) = exec.child(f::MailBoxSearchCriterion) {
        return mailbox(ctx, criterion).await;
    }
    if let Some(criterion) = exec.child(f::GalSearchCriterion) {
        return gal_find(ctx, criterion).await;
    }
    Ok(status_only(FindStatus::InvalidRequest))
}

/// The criterion's Range: `0-n` (Find requires the first result to be 0).
fn range(criterion: &Element) -> Result<(usize, usize), FindStatus> {
    let options = criterion.child(f::Options);
    match options.and_then(|o| child_text(o, f::Range)) {
        None => Ok((0, search::MAX_RANGE - 1)),
        Some(r) => match search::parse_range(r) {
            Some((0, last)) => Ok((0, last)),
            Some(_) => Err(FindStatus::StartWithRangeZero),
            None => Err(FindStatus::InvalidRequest),
        },
    }
}

fn query_text(criterion: &Element) -> Option<&str> {
    let q = criterion.child(f::Query)?;
    child_text(q, f::FreeText)
        .or_else(|| q.text())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn mailbox(ctx: &Context<'_>, criterion: &Element) -> Result<Reply, EasError> {
    let (first, last) = match range(criterion) {
        Ok(r) => r,
        Err(status) => return Ok(response_status(status)),
    };
    let Some(q) = criterion.child(f::Query) else {
        return Ok(response_status(FindStatus::InvalidRequest));
    };
    if child_text(q, a::Class).is_some_and(|c| c.trim() != "Email") {
        return Ok(response_status(FindStatus::InvalidRequest));
    }
    let Some(text) = query_text(criterion) else {
        return Ok(response_status(FindStatus::InvalidRequest));
    };
    let words = match search::free_text(text) {
        Ok(w) => w,
        Err(QueryError::Invalid(_) | QueryError::TooComplex(_)) => {
            return Ok(response_status(FindStatus::InvalidRequest));
        }
    };
    let query = Query {
        collections: child_text(q, a::CollectionId)
            .map(|c| vec![CollectionId::try_from(c.trim()).ok()])
            .unwrap_or_default(),
        text: words,
        ..Query::default()
    };
    let deep = criterion
        .child(f::Options)
        .is_some_and(|o| o.child(f::DeepTraversal).is_some());
    let keep = last.min(search::MAX_RANGE - 1) + 1;
    let (folders, hits, total, mut mailstore) = match search::find(ctx, &query, deep, keep).await? {
        Found::Hits {
            folders,
            hits,
            total,
            mailstore,
        } => (folders, hits, total, *mailstore),
        Found::FolderSyncRequired => return Ok(response_status(FindStatus::FolderSyncRequired)),
        Found::ServerError | Found::TimedOut => {
            return Ok(status_only(FindStatus::ServerErrorRetryLater));
        }
    };
    let Some((first, last)) = gal::window(first, last, total.min(hits.len()), search::MAX_RANGE)
    else {
        mailstore.close().await;
        return Ok(no_results(total));
    };
    let page = &hits[first..=last];
    let mut fetched = Vec::new();
    for (i, folder) in folders.iter().enumerate() {
        let uids: Vec<u32> = page
            .iter()
            .filter(|h| h.1 as usize == i)
            .map(|h| h.2)
            .collect();
        if !uids.is_empty() {
            // Cut to `limits.max_message_bytes` like Sync's pages: a result shows a message's
            // headers and start, and a huge one must not fail the whole Find.
            mailstore
                .fetch_with(&folder.imap_name, &uids, |m| fetched.push((i as u32, m)))
                .await?;
        }
    }
    mailstore.close().await;

    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(8192)).map_err(enc)?;
    w.start(f::Find).map_err(enc)?;
    w.text_element(f::Status, FindStatus::Success.as_str())
        .map_err(enc)?;
    w.start(f::Response).map_err(enc)?;
    w.text_element(io::Store, "Mailbox").map_err(enc)?;
    w.text_element(f::Status, FindStatus::Success.as_str())
        .map_err(enc)?;
    let mut written = 0;
    for &(_, i, uid) in page {
        let Some((_, m)) = fetched.iter().find(|(fi, m)| *fi == i && m.uid == uid) else {
            continue; // expunged since the search
        };
        let folder = &folders[i as usize];
        let view = crate::backend::mail::render::view(m);
        w.start(f::Result).map_err(enc)?;
        w.text_element(a::Class, "Email").map_err(enc)?;
        let collection = CollectionId::new(folder.id);
        w.text_element(a::ServerId, &ServerId::new(collection, uid).to_string())
            .map_err(enc)?;
        w.text_element(a::CollectionId, &collection.to_string())
            .map_err(enc)?;
        w.start(f::Properties).map_err(enc)?;
        write_mail_properties(&mut w, &view).map_err(enc)?;
        w.end().map_err(enc)?;
        w.end().map_err(enc)?;
        written += 1;
    }
    w.text_element(f::Range, &format!("{first}-{}", first + written.max(1) - 1))
        .map_err(enc)?;
    w.text_element(f::Total, &total.to_string()).map_err(enc)?;
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

/// Find's property list for a mail result, in the schema's order.
fn write_mail_properties<W: std::io::Write>(
    w: &mut Writer<W>,
    view: &MessageView<'_>,
) -> Result<(), eas_wbxml::EncodeError> {
    if let Some(s) = view.subject() {
        w.text_element(email::Subject, &s)?;
    }
    w.text_element(email::DateReceived, &view.date_received())?;
    if let Some(to) = view.display_to() {
        w.text_element(email::DisplayTo, &to)?;
    }
    if let Some(cc) = view.display_cc() {
        w.text_element(f::DisplayCc, &cc)?;
    }
    if let Some(bcc) = view.display_bcc() {
        w.text_element(f::DisplayBcc, &bcc)?;
    }
    w.text_element(email::Importance, &(view.importance() as u8).to_string())?;
    let flags = view.flags();
    w.text_element(email::Read, if flags.read { "1" } else { "0" })?;
    w.text_element(email2::IsDraft, if flags.draft { "1" } else { "0" })?;
    let text = preview(view.plain_text(), PREVIEW_CHARS);
    if !text.is_empty() {
        w.text_element(f::Preview, &text)?;
    }
    let has_attachments = view.attachments().iter().any(|a| !a.is_inline);
    w.text_element(f::HasAttachments, if has_attachments { "1" } else { "0" })?;
    if let Some(from) = view.from() {
        w.text_element(email::From, &from)?;
    }
    Ok(())
}

async fn gal_find(ctx: &Context<'_>, criterion: &Element) -> Result<Reply, EasError> {
    let (first, last) = match range(criterion) {
        Ok(r) => r,
        Err(status) => return Ok(response_status(status)),
    };
    let Some(text) = query_text(criterion) else {
        return Ok(response_status(FindStatus::InvalidRequest));
    };
    let found = match ctx
        .directory
        .search(text, Some(ctx.directory_asker()))
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "directory unavailable");
            return Ok(status_only(FindStatus::ServerErrorRetryLater));
        }
    };
    let Some((first, last)) = gal::window(first, last, found.len(), search::MAX_RANGE) else {
        return Ok(no_results(found.len()));
    };
    let pictures = gal::PictureRequest::from_options(
        criterion.child(f::Options),
        f::Picture,
        f::MaxSize,
        f::MaxPictures,
    );
    let mut budget = gal::PictureBudget::new(pictures);
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(4096)).map_err(enc)?;
    w.start(f::Find).map_err(enc)?;
    w.text_element(f::Status, FindStatus::Success.as_str())
        .map_err(enc)?;
    w.start(f::Response).map_err(enc)?;
    w.text_element(io::Store, "GAL").map_err(enc)?;
    w.text_element(f::Status, FindStatus::Success.as_str())
        .map_err(enc)?;
    let tags = gal::ResultTags {
        result: f::Result,
        properties: f::Properties,
        range: f::Range,
        total: f::Total,
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
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

/// `<Find><Status>n</Status></Find>`: the request as a whole could not be run.
fn status_only(status: FindStatus) -> Reply {
    Reply::Document(Element::with_children(
        f::Find,
        vec![Element::with_text(f::Status, status.as_str())],
    ))
}

/// The request was understood; its one search failed with `status`.
fn response_status(status: FindStatus) -> Reply {
    response(vec![Element::with_text(f::Status, status.as_str())])
}

fn no_results(total: usize) -> Reply {
    response(vec![
        Element::with_text(f::Status, FindStatus::Success.as_str()),
        Element::with_text(f::Total, total.to_string()),
    ])
}

/// `<Find><Status>1</Status><Response>…</Response></Find>`.
fn response(children: Vec<Element>) -> Reply {
    Reply::Document(Element::with_children(
        f::Find,
        vec![
            Element::with_text(f::Status, FindStatus::Success.as_str()),
            Element::with_children(f::Response, children),
        ],
    ))
}

//! ItemOperations (MS-ASCMD 2.2.1.10) for mail: Fetch of an item (by CollectionId + ServerId
//! or by LongId, with body preferences or as MIME), Fetch of an attachment by FileReference
//! (with byte ranges), EmptyFolderContents, and Move (of a conversation) answered truthfully
//! as not supported.
//!
//! Attachment data goes out base64-encoded inside `Data` (the multipart response form is not
//! offered). Item properties are written by the same code as Sync's, into `Properties`.

use base64::Engine as _;
use eas_wbxml::tags::{airsync as a, airsyncbase as asb, itemoperations as io, search};
use eas_wbxml::{Element, Writer};

use super::sync::{self, items, parse_server_id, request};
use super::{Context, EasError, Reply, child_text};
use crate::mailstore::Mailstore;

const OK: u32 = 1;
const PROTOCOL_ERROR: u32 = 2;
const NOT_FOUND: u32 = 6;
const BAD_RANGE: u32 = 8;
const UNKNOWN_STORE: u32 = 9;
const ATTACHMENT_INVALID: u32 = 15;
/// MS-ASCMD common status: the operation is not supported by this server.
const NOT_SUPPORTED: u32 = 156;

enum Op {
    Item {
        server_id: String,
        folder: Option<crate::state::FolderEntry>,
        uid: Option<u32>,
        options: request::Options,
        long_id: bool,
    },
    Attachment {
        reference: String,
        range: Option<(u64, u64)>,
        bad_range: bool,
    },
    Empty {
        collection_id: String,
        folder: Option<crate::state::FolderEntry>,
        delete_subfolders: bool,
    },
    Status(Element),
}

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let mut ops = Vec::new();
    for op in body.children() {
        ops.push(plan(ctx, op)?);
    }
    let mut store = Mailstore::open(ctx).await?;
    let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
    let mut w = Writer::new(Vec::with_capacity(4096)).map_err(enc)?;
    w.start(io::ItemOperations).map_err(enc)?;
    w.text_element(io::Status, "1").map_err(enc)?;
    w.start(io::Response).map_err(enc)?;
    for op in ops {
        match op {
            Op::Status(e) => e.write(&mut w).map_err(enc)?,
            Op::Empty {
                collection_id,
                folder,
                delete_subfolders,
            } => {
                let status = match folder {
                    None => NOT_FOUND,
                    Some(f) => {
                        store.empty(&f.imap_name).await?;
                        sync::amend_snapshots(ctx, f.id, |snap| snap.items.clear())?;
                        if delete_subfolders {
                            for child in sync::descendants(ctx, f.id)? {
                                store.delete_mailbox(&child.imap_name).await?;
                            }
                        }
                        OK
                    }
                };
                w.start(io::EmptyFolderContents).map_err(enc)?;
                w.text_element(io::Status, &status.to_string())
                    .map_err(enc)?;
                w.text_element(a::CollectionId, &collection_id)
                    .map_err(enc)?;
                w.end().map_err(enc)?;
            }
            Op::Item {
                server_id,
                folder,
                uid,
                options,
                long_id,
            } => {
                w.start(io::Fetch).map_err(enc)?;
                let rendered = match (&folder, uid) {
                    (Some(f), Some(uid)) => Some(
                        items::fetch_and_render(
                            &mut store,
                            &f.imap_name,
                            f.id,
                            &[uid],
                            &[uid],
                            ctx.version,
                            &options,
                        )
                        .await?,
                    )
                    .filter(|r| r.contains(uid)),
                    _ => None,
                };
                let status = if rendered.is_some() { OK } else { NOT_FOUND };
                w.text_element(io::Status, &status.to_string())
                    .map_err(enc)?;
                if long_id {
                    w.text_element(search::LongId, &server_id).map_err(enc)?;
                } else {
                    if let Some(f) = &folder {
                        w.text_element(a::CollectionId, &f.id.to_string())
                            .map_err(enc)?;
                    }
                    w.text_element(a::ServerId, &server_id).map_err(enc)?;
                }
                if let (Some(r), Some(uid)) = (rendered, uid) {
                    w.text_element(a::Class, "Email").map_err(enc)?;
                    w.start(io::Properties).map_err(enc)?;
                    r.write_properties(&mut w, uid)?;
                    w.end().map_err(enc)?;
                }
                w.end().map_err(enc)?;
            }
            Op::Attachment {
                reference,
                range,
                bad_range,
            } => {
                w.start(io::Fetch).map_err(enc)?;
                let found = match attachment_location(ctx, &reference)? {
                    Some((folder, uid, part)) => {
                        items::attachment(&mut store, &folder.imap_name, uid, &part).await?
                    }
                    None => None,
                };
                let status = match (&found, bad_range) {
                    (None, _) => ATTACHMENT_INVALID,
                    (Some(_), true) => BAD_RANGE,
                    (Some((_, data)), false) => match range {
                        Some((from, _)) if from >= data.len() as u64 => BAD_RANGE,
                        _ => OK,
                    },
                };
                w.text_element(io::Status, &status.to_string())
                    .map_err(enc)?;
                w.text_element(asb::FileReference, &reference)
                    .map_err(enc)?;
                if let (OK, Some((content_type, data))) = (status, found) {
                    w.start(io::Properties).map_err(enc)?;
                    w.text_element(asb::ContentType, &content_type)
                        .map_err(enc)?;
                    let total = data.len() as u64;
                    let slice = match range {
                        Some((from, to)) => {
                            let end = to.saturating_add(1).min(total);
                            w.text_element(io::Range, &format!("{from}-{}", end.saturating_sub(1)))
                                .map_err(enc)?;
                            w.text_element(io::Total, &total.to_string()).map_err(enc)?;
                            data.get(from as usize..end as usize).unwrap_or_default()
                        }
                        None => &data[..],
                    };
                    let b64 = base64::engine::general_purpose::STANDARD.encode(slice);
                    w.text_element(io::Data, &b64).map_err(enc)?;
                    w.end().map_err(enc)?;
                }
                w.end().map_err(enc)?;
            }
        }
    }
    w.end().map_err(enc)?;
    w.end().map_err(enc)?;
    store.close().await;
    Ok(Reply::Bytes(w.finish().map_err(enc)?))
}

fn status_element(tag: eas_wbxml::Tag, status: u32, extra: Vec<Element>) -> Op {
    let mut children = vec![Element::with_text(io::Status, status.to_string())];
    children.extend(extra);
    Op::Status(Element::with_children(tag, children))
}

/// Reads one operation; item and attachment fetches are run later, the rest now or never.
fn plan(ctx: &Context<'_>, op: &Element) -> Result<Op, EasError> {
    if op.tag == io::Fetch {
        let store = child_text(op, io::Store).unwrap_or("");
        if !store.eq_ignore_ascii_case("Mailbox") {
            return Ok(status_element(io::Fetch, UNKNOWN_STORE, Vec::new()));
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
                return Ok(status_element(io::Fetch, ATTACHMENT_INVALID, Vec::new()));
            }
            return Ok(Op::Attachment {
                reference: reference.to_owned(),
                range,
                bad_range,
            });
        }
        let options = options_el.map(item_options).unwrap_or_default();
        if let Some(long_id) = child_text(op, search::LongId) {
            let folder_part = long_id.split(':').next().unwrap_or("");
            let folder = sync::current_folder(ctx, folder_part)?;
            let uid = folder.as_ref().and_then(|f| parse_server_id(long_id, f.id));
            return Ok(Op::Item {
                server_id: long_id.to_owned(),
                folder,
                uid,
                options,
                long_id: true,
            });
        }
        let (Some(collection), Some(server_id)) =
            (child_text(op, a::CollectionId), child_text(op, a::ServerId))
        else {
            return Ok(status_element(io::Fetch, PROTOCOL_ERROR, Vec::new()));
        };
        let folder = sync::current_folder(ctx, collection)?;
        let uid = folder
            .as_ref()
            .and_then(|f| parse_server_id(server_id, f.id));
        return Ok(Op::Item {
            server_id: server_id.to_owned(),
            folder,
            uid,
            options,
            long_id: false,
        });
    }
    if op.tag == io::EmptyFolderContents {
        let collection_id = child_text(op, a::CollectionId).unwrap_or("").to_owned();
        return Ok(Op::Empty {
            folder: sync::current_folder(ctx, &collection_id)?,
            collection_id,
            delete_subfolders: op
                .child(io::Options)
                .is_some_and(|o| o.child(io::DeleteSubFolders).is_some()),
        });
    }
    if op.tag == io::Move {
        let conversation = op.child(io::ConversationId).cloned();
        return Ok(status_element(
            io::Move,
            NOT_SUPPORTED,
            conversation.into_iter().collect(),
        ));
    }
    Ok(status_element(op.tag, PROTOCOL_ERROR, Vec::new()))
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
    Ok(sync::current_folder(ctx, folder)?.map(|f| (f, uid, part.to_owned())))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("0-99"), Some((0, 99)));
        assert_eq!(parse_range(" 5 - 5 "), Some((5, 5)));
        assert_eq!(parse_range("9-1"), None);
        assert_eq!(parse_range("x-1"), None);
        assert_eq!(parse_range("7"), None);
    }
}

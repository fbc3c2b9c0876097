//! MoveItems (MS-ASCMD 2.2.1.12): moves mail between folders with IMAP MOVE (or COPY +
//! EXPUNGE), answering each move with its own status and the item's new ServerId.
//!
//! Both folders' snapshots are amended in place, so the next Sync of either folder neither
//! echoes the move (a Delete in the source, an Add in the destination) nor loses the item.

use eas_wbxml::Element;
use eas_wbxml::tags::moveitems as m;

use super::ids::{CollectionId, Presented, ServerId};
use super::status::MoveItemsStatus;
use super::sync::{self, engine};
use super::{Context, EasError, Reply, child_text};
use crate::backend::mail::MailToken;
use crate::mailstore::flag_state;
use crate::mailstore::{Mailstore, Moved};

pub async fn run(ctx: &mut Context<'_>, body: &Element) -> Result<Reply, EasError> {
    let mut store: Option<Mailstore> = None;
    let mut responses = Vec::new();
    for mv in body.children_with(m::Move) {
        let src_msg: Presented<ServerId> =
            Presented::new(child_text(mv, m::SrcMsgId).unwrap_or(""));
        let folder = |tag| CollectionId::try_from(child_text(mv, tag).unwrap_or("").trim()).ok();
        let (src_fld, dst_fld) = (folder(m::SrcFldId), folder(m::DstFldId));
        let mut response = vec![Element::with_text(m::SrcMsgId, src_msg.text())];
        let (status, new_id) = match (
            sync::current_folder(ctx, src_fld)?,
            sync::current_folder(ctx, dst_fld)?,
        ) {
            (None, _) => (MoveItemsStatus::InvalidSource, None),
            (_, None) => (MoveItemsStatus::InvalidDestination, None),
            (Some(src), Some(dst)) if src.id == dst.id => (MoveItemsStatus::SameFolder, None),
            (Some(src), Some(dst)) => match src_msg
                .id()
                .and_then(|s| s.uid_in(CollectionId::new(src.id)))
            {
                None => (MoveItemsStatus::InvalidSource, None),
                Some(uid) => {
                    if store.is_none() {
                        store = Some(ctx.mailstore().await?);
                    }
                    let s = store.as_mut().expect("opened above");
                    match s.move_to(&src.imap_name, uid, &dst.imap_name).await? {
                        Moved::NotFound => (MoveItemsStatus::InvalidSource, None),
                        Moved::To {
                            uid: new_uid,
                            flags,
                        } => {
                            engine::amend_snapshots::<MailToken>(ctx, src.id, |snap| {
                                snap.items.remove(&uid);
                            })?;
                            if let Some(new_uid) = new_uid {
                                let state = flag_state(&flags);
                                engine::amend_snapshots::<MailToken>(ctx, dst.id, |snap| {
                                    snap.items.insert(new_uid, state);
                                })?;
                            }
                            match new_uid {
                                Some(n) => (
                                    MoveItemsStatus::Success,
                                    Some(ServerId::new(CollectionId::new(dst.id), n)),
                                ),
                                // Moved, but the server did not say where (no UIDPLUS): the
                                // destination's next Sync announces it.
                                None => (MoveItemsStatus::Failed, None),
                            }
                        }
                    }
                }
            },
        };
        response.push(Element::with_text(m::Status, status.as_str()));
        if let Some(id) = new_id {
            response.push(Element::with_text(m::DstMsgId, id.to_string()));
        }
        responses.push(Element::with_children(m::Response, response));
    }
    if let Some(s) = store {
        s.close().await;
    }
    Ok(Reply::Document(Element::with_children(
        m::MoveItems,
        responses,
    )))
}

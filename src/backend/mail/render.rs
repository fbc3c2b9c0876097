//! Mail items as Sync, ItemOperations and Search write them: each message is rendered by
//! [`crate::mime`] into an encoded WBXML fragment the moment IMAP delivers it (so the
//! rendering overlaps Dovecot reading the next message, and the raw message is dropped at
//! once), then spliced into the response.
//!
//! Owns the translation from [`RenderOptions`] to [`crate::mime::ItemOptions`], the
//! FileReference prefix (`<collection>:<uid>`, the ServerId's wire form) and attachment
//! fetches. A batch holds at most one window of rendered items and one raw message; nothing
//! here keeps a whole folder.

use eas_wbxml::Writer;

use super::super::{BackendError, RenderOptions, Rendered};
use crate::mailstore::{Mailstore, flag_state};
use crate::mime::{self, BodyType, ItemOptions, MessageMeta, MessageView, MimeSupport};

/// What rendering an item needs.
struct RenderContext<'a> {
    folder: u32,
    options: &'a RenderOptions,
    /// Attachments larger than this are left out of MIME bodies ([`Mailstore::attachment_limit`]).
    attachment_limit: Option<u64>,
}

impl RenderContext<'_> {
    /// Whether the body sent may be the whole message ([`mime::body::select`] can pick MIME).
    fn may_send_mime(&self) -> bool {
        self.options.mime_support != MimeSupport::Never
            || self
                .options
                .body_preferences
                .iter()
                .any(|p| p.kind == BodyType::Mime)
    }

    fn render(
        &self,
        m: &crate::mailstore::Message,
    ) -> Result<eas_wbxml::Fragment, eas_wbxml::EncodeError> {
        // Attachments are named below their item: `<ServerId>:<part>`.
        let prefix = file_reference_prefix(self.folder, m.uid);
        let options = ItemOptions {
            version: self.options.version,
            body_preferences: &self.options.body_preferences,
            mime_support: self.options.mime_support,
            mime_truncation: self.options.mime_truncation,
            file_reference_prefix: &prefix,
        };
        let mut w = Writer::fragment();
        // A MIME body carries the attachments inside: those the policy does not let the
        // device download are left out of it, as from an ItemOperations fetch.
        let allowed = self
            .attachment_limit
            .filter(|_| self.may_send_mime())
            .and_then(|limit| mime::skeleton::without_attachments_over(&m.raw, limit));
        let raw = allowed.as_deref().unwrap_or(&m.raw);
        // Attachment bytes are never part of an item: parse without them.
        let skeleton = mime::skeleton::skeleton(raw);
        let view = MessageView::parse_with_skeleton(raw, skeleton.as_deref(), meta(m));
        let meeting = super::meeting::of(&view, options.version);
        mime::write::write_application_data_with(
            &mut w,
            &view,
            &options,
            meeting.as_ref().map(|m| m.as_meeting()).as_ref(),
        )?;
        w.into_fragment()
    }
}

/// `<collection>:<uid>`: the ServerId of a message, which its attachments' FileReferences
/// extend. The command layer reads ServerIds in the same form (`eas::ids::ServerId`; a test
/// there checks the two agree).
pub fn file_reference_prefix(collection: u32, uid: u32) -> String {
    format!("{collection}:{uid}")
}

/// Fetches `uids` of a folder: whole messages for those in `full`, flags for the rest.
/// UIDs that no longer exist are simply absent from the result.
pub async fn fetch_and_render(
    store: &mut Mailstore,
    mailbox: &str,
    folder: u32,
    uids: &[u32],
    full: &[u32],
    options: &RenderOptions,
) -> Result<Rendered, BackendError> {
    let mut r = Rendered::default();
    if !full.is_empty() {
        // Each message is rendered as soon as it is read, while Dovecot goes on sending the
        // next ones into the socket. (Rendering on a separate blocking thread was slower on
        // two cores: 14 ms a page against 10 ms, docs/benchmarks.md.)
        let context = RenderContext {
            folder,
            options,
            attachment_limit: store.attachment_limit(),
        };
        let mut failed = None;
        let items = &mut r;
        store
            .fetch_with(mailbox, full, |m| match context.render(&m) {
                Ok(properties) => items.insert_full(m.uid, flag_state(&m.flags), properties),
                Err(e) => failed = Some(e),
            })
            .await?;
        if let Some(e) = failed {
            return Err(BackendError::Internal(e.to_string()));
        }
    }
    let flags_only: Vec<u32> = uids.iter().copied().filter(|u| !full.contains(u)).collect();
    if !flags_only.is_empty() {
        for (uid, flags) in store.fetch_flags(mailbox, &flags_only).await? {
            let mut w = Writer::fragment();
            mime::write_flag_change(&mut w, &mime::FlagState::from_imap(&flags), options.version)
                .and_then(|()| w.into_fragment())
                .map(|change| r.insert_change(uid, flag_state(&flags), change))
                .map_err(|e| BackendError::Internal(e.to_string()))?;
        }
    }
    Ok(r)
}

/// What looking for one attachment found.
#[derive(Debug)]
pub enum AttachmentFetch {
    /// No such message, or no attachment at that part.
    Missing,
    /// The message is longer than the gateway fetches whole (its size): not fetched.
    MessageTooLarge(u64),
    Found(mime::OwnedAttachment),
}

/// The decoded bytes and content type of one attachment (`part` is the FileReference's
/// part path). The message's size is asked first, so one longer than `max_message` is
/// refused without being read. Only the wanted attachment is decoded, and the raw message
/// is dropped before the caller gets the bytes.
pub async fn attachment(
    store: &mut Mailstore,
    mailbox: &str,
    uid: u32,
    part: &str,
    max_message: u64,
) -> Result<AttachmentFetch, BackendError> {
    let Ok(path) = part.parse::<mime::PartPath>() else {
        return Ok(AttachmentFetch::Missing);
    };
    match store.message_size(mailbox, uid).await? {
        None => return Ok(AttachmentFetch::Missing),
        Some(size) if size > max_message => return Ok(AttachmentFetch::MessageTooLarge(size)),
        Some(_) => {}
    }
    let Some(m) = store.fetch(mailbox, &[uid]).await?.into_iter().next() else {
        return Ok(AttachmentFetch::Missing);
    };
    // Every other attachment left out before parsing: the parser decodes all it sees.
    let skeleton = mime::skeleton::skeleton_keeping(&m.raw, &path);
    let view = MessageView::parse_with_skeleton(&m.raw, skeleton.as_deref(), meta(&m));
    Ok(match view.into_attachment(&path) {
        Ok(a) => AttachmentFetch::Found(a),
        Err(_) => AttachmentFetch::Missing,
    })
}

/// A fetched message as the MIME layer sees it, with the IMAP facts it needs.
pub(crate) fn view(m: &crate::mailstore::Message) -> MessageView<'_> {
    MessageView::parse(&m.raw, meta(m))
}

fn meta(m: &crate::mailstore::Message) -> MessageMeta {
    MessageMeta {
        flags: m.flags.clone(),
        internal_date: m.internal_date,
        size: m.size,
    }
}

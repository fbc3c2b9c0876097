//! Mail items as Sync, ItemOperations and Search write them: each message is rendered by
//! [`crate::mime`] into an encoded WBXML [`Fragment`] the moment IMAP delivers it (so the
//! rendering overlaps Dovecot reading the next message, and the raw message is dropped at
//! once), then spliced into the response.
//!
//! Owns the translation from the command layer's options to [`crate::mime::ItemOptions`] and
//! the ServerId/FileReference prefix (`<folder>:<uid>`). A batch holds at most one window of
//! rendered items and one raw message; nothing here keeps a whole folder.

use std::collections::HashMap;
use std::io::Write;

use eas_wbxml::tags::airsync as a;
use eas_wbxml::{Fragment, Writer};

use super::request::Options;
use crate::eas::EasError;
use crate::eas::ids::{CollectionId, ServerId};
use crate::eas::version::ProtocolVersion;
use crate::mailstore::Mailstore;
use crate::mime::{
    self, BodyPreference, BodyType, ItemOptions, MessageMeta, MessageView, MimeSupport,
};

/// Fetched messages of one folder, ready to be written.
#[derive(Default)]
pub struct Rendered {
    folder: u32,
    version: Option<mime::Version>,
    preferences: Vec<BodyPreference>,
    mime_support: MimeSupport,
    mime_truncation: Option<u8>,
    /// Whole messages (for Add and Fetch), already encoded.
    full: HashMap<u32, Item>,
    /// Flags only (for Change).
    flags: HashMap<u32, Vec<String>>,
}

/// What rendering an item needs.
struct RenderContext {
    folder: u32,
    version: mime::Version,
    preferences: Vec<BodyPreference>,
    mime_support: MimeSupport,
    mime_truncation: Option<u8>,
    /// Attachments larger than this are left out of MIME bodies ([`Mailstore::attachment_limit`]).
    attachment_limit: Option<u64>,
}

impl RenderContext {
    /// Whether the body sent may be the whole message ([`mime::body::select`] can pick MIME).
    fn may_send_mime(&self) -> bool {
        self.mime_support != MimeSupport::Never
            || self.preferences.iter().any(|p| p.kind == BodyType::Mime)
    }

    fn render(&self, m: crate::mailstore::Message) -> Result<Item, eas_wbxml::EncodeError> {
        // Attachments are named below their item: `<ServerId>:<part>`.
        let prefix = ServerId::new(CollectionId::new(self.folder), m.uid).to_string();
        let options = ItemOptions {
            version: self.version,
            body_preferences: &self.preferences,
            mime_support: self.mime_support,
            mime_truncation: self.mime_truncation,
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
        let view = MessageView::parse_with_skeleton(raw, skeleton.as_deref(), meta(&m));
        mime::write_application_data(&mut w, &view, &options)?;
        let properties = w.into_fragment()?;
        drop(view);
        Ok(Item {
            flags: m.flags,
            properties,
        })
    }
}

/// One message's flags as fetched and its properties, encoded.
struct Item {
    flags: Vec<String>,
    properties: Fragment,
}

pub fn mime_version(v: ProtocolVersion) -> mime::Version {
    match v {
        ProtocolVersion::V12_1 => mime::Version::V12_1,
        ProtocolVersion::V14_0 => mime::Version::V14_0,
        ProtocolVersion::V14_1 => mime::Version::V14_1,
        ProtocolVersion::V16_0 => mime::Version::V16_0,
        ProtocolVersion::V16_1 => mime::Version::V16_1,
    }
}

pub fn preferences(options: &Options) -> Vec<BodyPreference> {
    options
        .body_preferences
        .iter()
        .filter_map(|p| {
            Some(BodyPreference {
                kind: BodyType::from_code(p.kind)?,
                truncation_size: p.truncation_size,
                all_or_none: p.all_or_none,
                preview: p.preview,
            })
        })
        .collect()
}

/// Fetches `uids` of a folder: whole messages for those in `full`, flags for the rest.
/// UIDs that no longer exist are simply absent from the result.
pub async fn fetch_and_render(
    store: &mut Mailstore,
    mailbox: &str,
    folder: u32,
    uids: &[u32],
    full: &[u32],
    version: ProtocolVersion,
    options: &Options,
) -> Result<Rendered, EasError> {
    let mut r = Rendered {
        folder,
        version: Some(mime_version(version)),
        preferences: preferences(options),
        mime_support: MimeSupport::from_code(options.mime_support),
        mime_truncation: options.mime_truncation,
        ..Rendered::default()
    };
    if !full.is_empty() {
        // Each message is rendered as soon as it is read, while Dovecot goes on sending the
        // next ones into the socket. (Rendering on a separate blocking thread was slower on
        // two cores: 14 ms a page against 10 ms, docs/benchmarks.md.)
        let context = RenderContext {
            folder,
            version: r.version.unwrap_or(mime::Version::V14_1),
            preferences: r.preferences.clone(),
            mime_support: r.mime_support,
            mime_truncation: r.mime_truncation,
            attachment_limit: store.attachment_limit(),
        };
        let mut failed = None;
        let items = &mut r.full;
        store
            .fetch_with(mailbox, full, |m| {
                let uid = m.uid;
                match context.render(m) {
                    Ok(item) => {
                        items.insert(uid, item);
                    }
                    Err(e) => failed = Some(e),
                }
            })
            .await?;
        if let Some(e) = failed {
            return Err(EasError::Internal(e.to_string()));
        }
    }
    let flags_only: Vec<u32> = uids.iter().copied().filter(|u| !full.contains(u)).collect();
    if !flags_only.is_empty() {
        for (uid, flags) in store.fetch_flags(mailbox, &flags_only).await? {
            r.flags.insert(uid, flags);
        }
    }
    Ok(r)
}

impl Rendered {
    /// The encoded size of the whole items held.
    pub fn encoded_len(&self) -> usize {
        self.full.values().map(|i| i.properties.len() + 64).sum()
    }

    pub fn contains(&self, uid: u32) -> bool {
        self.full.contains_key(&uid) || self.flags.contains_key(&uid)
    }

    /// The flags a message had when it was fetched.
    pub fn flags_of(&self, uid: u32) -> Option<&[String]> {
        self.full
            .get(&uid)
            .map(|m| m.flags.as_slice())
            .or_else(|| self.flags.get(&uid).map(Vec::as_slice))
    }

    pub fn extend(&mut self, other: Rendered) {
        if self.version.is_none() {
            self.version = other.version;
            self.preferences = other.preferences;
            self.mime_support = other.mime_support;
            self.mime_truncation = other.mime_truncation;
            self.folder = other.folder;
        }
        self.full.extend(other.full);
        self.flags.extend(other.flags);
    }

    /// Writes `<ApplicationData>` for a message: its whole item, or for a Change only the flags.
    pub fn write<W: Write>(
        &self,
        w: &mut Writer<W>,
        uid: u32,
        change_only: bool,
    ) -> Result<(), EasError> {
        let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
        w.start(a::ApplicationData).map_err(enc)?;
        self.write_inner(w, uid, change_only)?;
        w.end().map_err(enc)?;
        Ok(())
    }

    /// The item's properties without a wrapper (ItemOperations puts them in `Properties`).
    pub fn write_properties<W: Write>(&self, w: &mut Writer<W>, uid: u32) -> Result<(), EasError> {
        self.write_inner(w, uid, false)
    }

    fn write_inner<W: Write>(
        &self,
        w: &mut Writer<W>,
        uid: u32,
        change_only: bool,
    ) -> Result<(), EasError> {
        let enc = |e: eas_wbxml::EncodeError| EasError::Internal(e.to_string());
        let version = self.version.unwrap_or(mime::Version::V14_1);
        if change_only {
            let flags = match (self.flags.get(&uid), self.full.get(&uid)) {
                (Some(f), _) => f.clone(),
                (None, Some(m)) => m.flags.clone(),
                (None, None) => return Ok(()),
            };
            mime::write_flag_change(w, &mime::FlagState::from_imap(&flags), version)
                .map_err(enc)?;
            return Ok(());
        }
        if let Some(item) = self.full.get(&uid) {
            w.splice(&item.properties).map_err(enc)?;
        }
        Ok(())
    }
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
) -> Result<AttachmentFetch, EasError> {
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

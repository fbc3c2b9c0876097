//! The WBXML of an Email item, per protocol version.
//!
//! Writes the elements *inside* `<ApplicationData>` (or ItemOperations/Search `<Properties>`),
//! in the order Exchange and z-push use, skipping elements that have no value:
//!
//! ```text
//! email:To Cc From Subject ReplyTo DateReceived DisplayTo ThreadTopic Importance Read
//! airsyncbase:Attachments airsyncbase:Body
//! email:MessageClass [MeetingRequest] InternetCPID Flag ContentClass
//! airsyncbase:NativeBodyType
//! email2:ConversationId ConversationIndex LastVerbExecuted Sender   (14.0+)
//! email:Categories                                                    (14.0+)
//! email2:IsDraft                                                      (16.0+)
//! ```
//!
//! 12.1 already uses the AirSyncBase body and attachments (the `email:Body`/`email:Attachments`
//! forms are 2.5-only, which the gateway does not speak); what 12.1 lacks is the `email2` page,
//! Categories and Preview.

use std::io::Write;

use eas_wbxml::tags::{airsyncbase as asb, email, email2};
use eas_wbxml::{EncodeError, Writer};

use crate::mime::Version;
use crate::mime::attachment::AttachmentInfo;
use crate::mime::body::{BodyOutput, BodyPreference, MimeSupport};
use crate::mime::flags::FlagState;
use crate::mime::view::MessageView;

/// UTF-8: every body is re-encoded, whatever the message's own charset was.
const INTERNET_CPID_UTF8: &str = "65001";
const CONTENT_CLASS: &str = "urn:content-classes:message";
/// The spec's commonest FlagType; clients show their own label for an active flag anyway.
const FLAG_TYPE: &str = "Flag for follow up";
/// Flag Status 2: an active follow-up flag. (1 is "complete", which IMAP cannot express.)
const FLAG_ACTIVE: &str = "2";

/// What a request says about how items are to be written.
#[derive(Debug, Clone, Copy)]
pub struct ItemOptions<'a> {
    /// The version the request was encoded in; the answer must be in the same.
    pub version: Version,
    /// The phone's BodyPreferences, in its order.
    pub body_preferences: &'a [BodyPreference],
    /// `MIMESupport`.
    pub mime_support: MimeSupport,
    /// 12.1 `MIMETruncation` code, used when MIME is forced without a Type 4 preference.
    pub mime_truncation: Option<u8>,
    /// The FileReference prefix, normally the item's ServerId.
    pub file_reference_prefix: &'a str,
}

impl<'a> ItemOptions<'a> {
    /// Options with `MIMESupport` 0 and no `MIMETruncation`.
    pub fn new(
        version: Version,
        body_preferences: &'a [BodyPreference],
        file_reference_prefix: &'a str,
    ) -> ItemOptions<'a> {
        ItemOptions {
            version,
            body_preferences,
            mime_support: MimeSupport::Never,
            mime_truncation: None,
            file_reference_prefix,
        }
    }
}

/// What a meeting mail (an iTIP invitation, cancellation or reply) changes in its item: the
/// MessageClass, the calendar ContentClass and, for invitations and cancellations, the
/// `email:MeetingRequest` element, written by the caller (the calendar mapping is not this
/// module's) and spliced in after MessageClass.
#[derive(Debug, Clone, Copy)]
pub struct Meeting<'a> {
    pub message_class: &'static str,
    pub content_class: &'static str,
    pub request: Option<&'a eas_wbxml::Fragment>,
}

/// Writes a whole Email item (the children of `<ApplicationData>`).
pub fn write_application_data<W: Write>(
    w: &mut Writer<W>,
    view: &MessageView<'_>,
    opts: &ItemOptions<'_>,
) -> Result<(), EncodeError> {
    write_application_data_with(w, view, opts, None)
}

/// [`write_application_data`] for a meeting mail.
pub fn write_application_data_with<W: Write>(
    w: &mut Writer<W>,
    view: &MessageView<'_>,
    opts: &ItemOptions<'_>,
    meeting: Option<&Meeting<'_>>,
) -> Result<(), EncodeError> {
    let v = opts.version;
    optional(w, email::To, view.to())?;
    optional(w, email::Cc, view.cc())?;
    optional(w, email::From, view.from())?;
    optional(w, email::Subject, view.subject())?;
    optional(w, email::ReplyTo, view.reply_to())?;
    w.text_element(email::DateReceived, &view.date_received())?;
    optional(w, email::DisplayTo, view.display_to())?;
    optional(w, email::ThreadTopic, view.thread_topic())?;
    // Always sent: old Android clients take a missing Importance for "low".
    w.text_element(email::Importance, digit(view.importance() as u8))?;
    w.text_element(email::Read, bool_str(view.flags().read))?;
    write_attachments(
        w,
        &view.listed_attachments(meeting.is_some()),
        opts.file_reference_prefix,
    )?;
    let body = view.body_for(
        opts.body_preferences,
        opts.mime_support,
        opts.mime_truncation,
        v,
    );
    write_body(w, &body)?;
    match meeting {
        Some(m) => {
            w.text_element(email::MessageClass, m.message_class)?;
            if let Some(request) = m.request {
                w.splice(request)?;
            }
        }
        None => {
            w.text_element(email::MessageClass, view.message_class())?;
        }
    }
    w.text_element(email::InternetCPID, INTERNET_CPID_UTF8)?;
    write_flag(w, view.flags())?;
    w.text_element(
        email::ContentClass,
        meeting.map_or(CONTENT_CLASS, |m| m.content_class),
    )?;
    w.text_element(asb::NativeBodyType, digit(view.native_body_type().code()))?;
    if v.has_email2() {
        w.opaque_element(email2::ConversationId, &view.conversation_id())?;
        w.opaque_element(email2::ConversationIndex, &view.conversation_index())?;
        if let Some(verb) = view.flags().last_verb() {
            w.text_element(email2::LastVerbExecuted, digit(verb))?;
        }
        optional(w, email2::Sender, view.sender())?;
        if !view.flags().categories.is_empty() {
            write_categories(w, &view.flags().categories)?;
        }
    }
    if v.has_drafts() {
        w.text_element(email2::IsDraft, bool_str(view.flags().draft))?;
    }
    Ok(())
}

/// Writes the children of `<ApplicationData>` for a Sync `<Change>` that only reports new
/// flags: Read, Flag and (14.0+) Categories. An unflagged message gets an empty `<Flag/>` and
/// one without keywords an empty `<Categories/>`, because in a Change an absent element means
/// "unchanged" and the phone would keep a flag or category the user removed elsewhere.
pub fn write_flag_change<W: Write>(
    w: &mut Writer<W>,
    flags: &FlagState,
    version: Version,
) -> Result<(), EncodeError> {
    w.text_element(email::Read, bool_str(flags.read))?;
    write_flag(w, flags)?;
    if version.has_email2() {
        write_categories(w, &flags.categories)?;
    }
    Ok(())
}

/// Writes `<airsyncbase:Body>`; also what ItemOperations Fetch of an item uses.
pub fn write_body<W: Write>(w: &mut Writer<W>, body: &BodyOutput<'_>) -> Result<(), EncodeError> {
    w.start(asb::Body)?;
    w.text_element(asb::Type, digit(body.kind.code()))?;
    w.text_element(asb::EstimatedDataSize, &body.estimated_size.to_string())?;
    if body.truncated {
        w.text_element(asb::Truncated, "1")?;
    }
    if let Some(data) = &body.data {
        w.text_element(asb::Data, data)?;
    }
    if let Some(preview) = &body.preview {
        w.text_element(asb::Preview, preview)?;
    }
    w.end()?;
    Ok(())
}

/// Writes `<airsyncbase:Attachments>`, or nothing when there are none.
pub fn write_attachments<W: Write>(
    w: &mut Writer<W>,
    attachments: &[AttachmentInfo],
    file_reference_prefix: &str,
) -> Result<(), EncodeError> {
    if attachments.is_empty() {
        return Ok(());
    }
    w.start(asb::Attachments)?;
    for a in attachments {
        w.start(asb::Attachment)?;
        w.text_element(asb::DisplayName, &a.display_name)?;
        w.text_element(asb::FileReference, &a.file_reference(file_reference_prefix))?;
        w.text_element(asb::Method, digit(a.method))?;
        w.text_element(asb::EstimatedDataSize, &a.size.to_string())?;
        if let Some(id) = &a.content_id {
            w.text_element(asb::ContentId, id)?;
        }
        if let Some(location) = &a.content_location {
            w.text_element(asb::ContentLocation, location)?;
        }
        if a.is_inline {
            w.text_element(asb::IsInline, "1")?;
        }
        w.end()?;
    }
    w.end()?;
    Ok(())
}

fn write_flag<W: Write>(w: &mut Writer<W>, flags: &FlagState) -> Result<(), EncodeError> {
    if flags.flagged {
        w.start(email::Flag)?;
        w.text_element(email::Status, FLAG_ACTIVE)?;
        w.text_element(email::FlagType, FLAG_TYPE)?;
        w.end()?;
    } else {
        w.empty(email::Flag)?;
    }
    Ok(())
}

fn write_categories<W: Write>(w: &mut Writer<W>, categories: &[String]) -> Result<(), EncodeError> {
    w.start(email::Categories)?;
    for c in categories {
        w.text_element(email::Category, c)?;
    }
    w.end()?;
    Ok(())
}

fn optional<W: Write>(
    w: &mut Writer<W>,
    tag: eas_wbxml::Tag,
    value: Option<String>,
) -> Result<(), EncodeError> {
    match value {
        Some(v) if !v.is_empty() => {
            w.text_element(tag, &v)?;
        }
        _ => {}
    }
    Ok(())
}

fn bool_str(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

fn digit(d: u8) -> &'static str {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    DIGITS.get(d as usize).copied().unwrap_or("0")
}

//! Meeting mails in the mail items: a message with an iTIP `text/calendar` part is sent with
//! the meeting MessageClass and, for an invitation or a cancellation, the
//! `email:MeetingRequest` element the phone needs to show Accept / Tentative / Decline or
//! "remove from calendar" ([`crate::calendar::meeting`] reads the part and writes the element).
//! A part that does not parse leaves the mail an ordinary one (logged once per rendering).

use chrono::Datelike;
use eas_wbxml::{Fragment, Writer};

use crate::calendar::meeting::{self, Method};
use crate::mime::{MessageView, Version, write::Meeting};

/// What a meeting mail's item carries besides an ordinary mail's.
pub struct MeetingItem {
    class: &'static str,
    request: Option<Fragment>,
}

impl MeetingItem {
    pub fn as_meeting(&self) -> Meeting<'_> {
        Meeting {
            message_class: self.class,
            content_class: meeting::CONTENT_CLASS,
            request: self.request.as_ref(),
        }
    }
}

fn current_year() -> i32 {
    chrono::Utc::now().year()
}

/// The meeting side of a mail, None for an ordinary one.
pub fn of(view: &MessageView<'_>, version: Version) -> Option<MeetingItem> {
    of_in_year(view, version, current_year())
}

/// [`of`] with the year whose zone rules the TimeZone blob carries given (fixtures).
pub fn of_in_year(view: &MessageView<'_>, version: Version, year: i32) -> Option<MeetingItem> {
    let part = view.calendar_part()?;
    let inv = match meeting::parse(&part.text, part.method.as_deref(), &[], year) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::info!(error = %e, "a calendar part that does not parse; sent as a plain mail");
            return None;
        }
    };
    let class = meeting::message_class(&inv.method)?;
    let request = match inv.method {
        Method::Request | Method::Cancel => {
            let mut w = Writer::fragment();
            match meeting::write_meeting_request(&mut w, &inv, version, year)
                .and_then(|()| w.into_fragment())
            {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "MeetingRequest not written");
                    return None;
                }
            }
        }
        _ => None,
    };
    Some(MeetingItem { class, request })
}

//! Calendar events and tasks as Exchange ActiveSync items (pure).
//!
//! Owns the mapping between iCalendar objects (as a CalDAV server stores them: one VCALENDAR
//! with a VEVENT or VTODO series and its RECURRENCE-ID overrides) and the `calendar:`
//! (code page 4) and `tasks:` (code page 9) properties inside `<ApplicationData>`, both ways:
//! written as a WBXML fragment for Sync/ItemOperations, and read from a phone's decoded tree and
//! *merged* into the stored object so nothing EAS does not carry is lost.
//!
//! It must not touch anything else: no I/O, no DAV, no IMAP, no state, no command layer. The
//! clock is passed in (the current year for time-zone rules, the FilterType window). Errors are
//! typed ([`CalendarError`]); what EAS cannot express is reported as a value
//! ([`recurrence::ToEas::CannotExpress`]), never silently changed.
//!
//! Module map:
//! - [`timezone`]: the 172-byte TimeZone blob ↔ IANA zones and VTIMEZONEs.
//! - [`recurrence`]: RRULE ↔ `Recurrence`, EXDATE/RECURRENCE-ID ↔ `Exceptions`.
//! - [`event`]: VEVENT ↔ Calendar ApplicationData per protocol version, and the merge.
//! - [`task`]: VTODO ↔ Tasks ApplicationData, and the merge.
//! - [`freebusy`]: busy periods (VFREEBUSY or events) as ResolveRecipients' MergedFreeBusy.
//! - [`meeting`]: iTIP invitations, cancellations and replies by mail (MeetingRequest,
//!   the user's PARTSTAT, the REPLY).
//! - [`window`]: whether an event (recurring series included) falls in a FilterType window.
//! - [`ical`]: helpers over `calcard`'s iCalendar model.
//! - [`date`]: the EAS date forms (compact and extended UTC).

pub mod date;
pub mod event;
pub mod freebusy;
pub mod ical;
pub mod meeting;
pub mod recurrence;
pub mod task;
pub mod timezone;
pub mod window;

pub use crate::mime::Version;

/// What can go wrong turning one object or one phone item into the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// The stored object is not iCalendar (the caller skips it once with a log line).
    #[error("iCalendar does not parse: {0}")]
    Parse(String),
    /// The object holds no VEVENT/VTODO to map.
    #[error("no {0} in the object")]
    NoComponent(&'static str),
    /// A phone's item is malformed (the command answers Status 6 for it).
    #[error("invalid item from the phone: {0}")]
    InvalidItem(String),
    /// Writing WBXML failed.
    #[error("encoding: {0}")]
    Encode(String),
}

impl From<eas_wbxml::EncodeError> for CalendarError {
    fn from(e: eas_wbxml::EncodeError) -> CalendarError {
        CalendarError::Encode(e.to_string())
    }
}

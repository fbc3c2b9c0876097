//! Who is asking and what the request line says, as the commands see them.
//!
//! Owns the request and identity types of [`super::Context`]. The HTTP layer builds them (it
//! parses the query string and checks the password); the commands never see an HTTP type, so
//! they could be driven by something else, and `eas` never imports `http`.

use super::version::{Command, ProtocolVersion};
use crate::secret::Secret;

/// What the query string says about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub command: Command,
    /// `User=` as the client typed it; informational only (identity comes from Authorization).
    pub user: Option<String>,
    pub device_id: String,
    pub device_type: String,
    /// Only the base64 form carries these; the plain form sends headers instead.
    pub version: Option<ProtocolVersion>,
    /// None also for a presented 0, which clients send when they have no key.
    pub policy_key: Option<super::ids::PolicyKey>,
    pub locale: Option<u16>,
    pub params: CommandParams,
}

/// Command parameters of the query (used by SendMail/SmartReply/SmartForward in 12.x,
/// GetAttachment, and the ItemOperations multipart option).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandParams {
    pub attachment_name: Option<String>,
    pub collection_id: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub occurrence: Option<String>,
    pub save_in_sent: bool,
    pub accept_multipart: bool,
}

/// A user whose password the IMAP server accepted.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// The log-in name for IMAP.
    pub login: String,
    /// Lower-case log-in name: the key of all this user's state.
    pub key: String,
    /// The user's e-mail address.
    pub email: String,
    pub password: Secret<String>,
}

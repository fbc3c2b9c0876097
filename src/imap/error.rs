//! [`ImapError`]: every way an IMAP operation can fail, one variant per situation.
//!
//! The variants are chosen so a caller can decide what to do without reading text: a
//! [`ImapError::LoginRejected`] is "ask the user again" (HTTP 401), a
//! [`ImapError::Timeout`], [`ImapError::Io`] or [`ImapError::Bye`] is "the server is away, try
//! later", a [`ImapError::No`] is "the server refused this one command" and the connection is
//! still usable. Messages never contain passwords or message contents.

use std::time::Duration;

/// Why an IMAP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// Connecting, reading or writing the socket failed, or the server closed the connection
    /// without saying BYE first. The session is unusable afterwards.
    #[error("IMAP connection failed: {0}")]
    Io(#[from] std::io::Error),

    /// TLS could not be set up: no trusted root certificates, the server's certificate is not
    /// trusted or does not name the host, or the handshake failed. The session is unusable.
    #[error("IMAP TLS failed: {0}")]
    Tls(String),

    /// The server neither sent nor accepted a byte for the configured timeout (an inactivity
    /// limit, so long transfers that keep moving are not cut off). The session is unusable.
    #[error("IMAP server did not respond within {0:?}")]
    Timeout(Duration),

    /// The server sent something that is not IMAP we can parse (or a response larger than we
    /// are willing to buffer). The text says what and where, never the offending content.
    /// The session is unusable: we can no longer tell where the next response starts.
    #[error("IMAP protocol error: {0}")]
    Protocol(String),

    /// The server announced a response longer than the session accepts (`limit` bytes: a
    /// message larger than the caller ever asks for whole). Refused from the announcement,
    /// so none of it was buffered; the rest of it is still on the wire, so the session is
    /// unusable.
    #[error("IMAP response larger than the {limit} bytes accepted")]
    TooLarge { limit: usize },

    /// The server closed the connection with an untagged BYE (shutdown, idle timeout, too many
    /// connections, greeting refused). The text is the server's reason.
    #[error("IMAP server closed the connection: {text}")]
    Bye { text: String },

    /// The server refused a command with a tagged NO (mailbox does not exist, already exists,
    /// quota, …). `code` is the response code's name (e.g. `TRYCREATE`, `ALREADYEXISTS`,
    /// `NONEXISTENT`, RFC 5530) when the server gave one. The session stays usable.
    #[error("IMAP server refused the command: {}{text}", code.as_deref().map(|c| format!("[{c}] ")).unwrap_or_default())]
    No { code: Option<String>, text: String },

    /// The server rejected a command as invalid with a tagged BAD (wrong state, e.g. EXPUNGE
    /// with no mailbox selected, or an extension it does not support).
    #[error("IMAP server rejected the command as invalid: {text}")]
    Bad { text: String },

    /// LOGIN was answered with NO: the user name or password is wrong (or the account is
    /// disabled or expired). Temporary server trouble (`[UNAVAILABLE]`, `[SERVERBUG]`,
    /// `[LIMIT]`, `[INUSE]`) is reported as [`ImapError::No`] instead, so it is not mistaken
    /// for bad credentials.
    #[error("IMAP login rejected: wrong user name or password")]
    LoginRejected,

    /// The server advertises LOGINDISABLED on this connection: it will not accept a plaintext
    /// password here. Configure `StartTls` or `Tls`.
    #[error("IMAP server does not allow LOGIN on this connection (LOGINDISABLED); use TLS")]
    LoginDisabled,

    /// `Security::StartTls` was configured but the server does not advertise STARTTLS.
    #[error("IMAP server does not offer STARTTLS")]
    StartTlsUnavailable,

    /// The command needs an extension the server does not advertise (named here, e.g.
    /// `QRESYNC`, `UIDPLUS`). Nothing was sent; the session stays usable.
    #[error("IMAP server lacks the {0} extension")]
    Unsupported(&'static str),

    /// The caller passed an argument that cannot be sent safely (a CR or LF in a mailbox name
    /// or flag, a malformed UID set). Nothing was sent; the session stays usable.
    #[error("invalid IMAP argument: {0}")]
    InvalidArgument(String),
}

impl ImapError {
    /// True when the server could not be reached or went away (connect failed, TLS failed,
    /// timeout, BYE): "try again later" (HTTP 503), as opposed to a refused command or a bug.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            ImapError::Io(_) | ImapError::Tls(_) | ImapError::Timeout(_) | ImapError::Bye { .. }
        )
    }

    /// True when the connection can no longer be used after this error (the caller should
    /// drop the session rather than send more commands on it).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            ImapError::No { .. }
                | ImapError::Bad { .. }
                | ImapError::LoginRejected
                | ImapError::InvalidArgument(_)
                | ImapError::Unsupported(_)
        )
    }
}

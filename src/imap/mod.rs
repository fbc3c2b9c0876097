//! A narrow async IMAP4rev1 client (RFC 3501 and the extensions the gateway needs).
//!
//! Knows nothing of EAS: it connects, logs in, lists, creates, renames and deletes
//! mailboxes; selects them with CONDSTORE/QRESYNC change detection; fetches, searches,
//! flags, copies, moves, expunges and appends messages by UID; keeps what the server reports
//! unsolicited as events; and reports what went wrong as an [`ImapError`].
//!
//! Module map, from the bytes up:
//! - [`frame`]: where one response ends in a byte buffer (lines and `{n}` literals). Pure.
//! - [`parse`]: one framed response to a [`Response`]; never panics on any input. Pure.
//! - [`response`]: the parsed response types ([`Response`], [`Untagged`], [`Code`],
//!   [`Value`]), general enough for FETCH, IDLE and NOTIFY to be added on top.
//! - `command`: writing command arguments (atom, quoted, literal) and checking verbatim
//!   ones, so no caller input can inject a command.
//! - [`utf7`]: modified UTF-7 mailbox names (`Entwürfe` ⇄ `Entw&APw-rfe`).
//! - `connection`: the TCP/TLS stream, read buffer and inactivity timeout.
//! - `tls`: rustls client configurations (system roots, or accept-anything for tests).
//! - `session`: [`Session`], the tag/continuation/completion logic, and the connection and
//!   mailbox commands (LOGIN, LIST, ENABLE, SELECT/EXAMINE with QRESYNC, STATUS).
//! - [`set`]: [`SequenceSet`], the UID sets every message command takes.
//! - [`fetch`]: UID FETCH: [`FetchQuery`] in, typed [`Fetched`] / [`MessageFlags`] out.
//! - [`search`]: UID SEARCH: [`SearchKey`] in, [`SearchResult`] out (ESEARCH when offered).
//! - [`store`]: UID STORE, COPY, MOVE, EXPUNGE and APPEND with their UIDPLUS answers.
//! - [`event`]: [`Event`], unsolicited changes (EXISTS, EXPUNGE, VANISHED, FETCH) kept
//!   for the caller.
//! - [`mailbox`], [`capability`]: what the server tells us about mailboxes and itself.
//! - [`error`]: the error type, [`ImapError`].
//!
//! Mailbox names in this API are Unicode; the client encodes and decodes modified UTF-7.
//! Passwords and message contents are never logged: only command names and tags are.
//!
//! Why a client of our own: the gateway relies on NOTIFY (RFC 5465: one watcher per user
//! instead of one IDLE per folder), ESEARCH (RFC 4731: a large result as a compact UID set),
//! SELECT with QRESYNC and `UID FETCH … (CHANGEDSINCE m VANISHED)` (RFC 7162: the per-Sync
//! diff), messages handed over one by one as their FETCH responses arrive, a response refused
//! as soon as a literal's announced size is over a cap (nothing of it buffered), and an IDLE
//! that ends on a stop future or a deadline and always finishes with DONE over cancel-safe
//! reads, so the session goes back to the pool. What the maintained crates' docs.rs pages
//! show: `async-imap` (0.11, 0.12) has IDLE, QUOTA, ID and COMPRESS as extensions, no NOTIFY,
//! no ESEARCH and no CONDSTORE/QRESYNC API that we found, and types its unsolicited responses
//! only for STATUS, RECENT, EXISTS and EXPUNGE (the rest, VANISHED too, as untyped `Other`).
//! `imap-codec` is a codec (with `imap-next`, a sans-I/O layer for literals, AUTHENTICATE and
//! IDLE); it has CONDSTORE/QRESYNC behind its `ext_condstore_qresync` feature (how completely,
//! we did not check), but no NOTIFY or ESEARCH among the extension modules of 2.0.0-alpha.8
//! (1.0 is the stable release), and the session on top (tags, typed commands, what the responses mean to
//! us) would still be ours to write. Either crate would need forking or wrapping.
//!
//! The client stays in this tree (not a workspace crate beside `wbxml/`, which issue 13
//! asked about): it uses nothing of the gateway (no `crate::` path outside `imap`), so moving
//! it would change only the packaging, not a dependency.

pub mod capability;
mod command;
mod connection;
pub mod error;
pub mod event;
pub mod fetch;
pub mod frame;
pub mod idle;
pub mod mailbox;
pub mod parse;
mod quota;
pub mod response;
pub mod search;
mod session;
pub mod set;
pub mod store;
mod tls;
/// The same TLS setup for the other clients of the mail server (ManageSieve).
pub(crate) use tls::handshake as tls_handshake;
pub mod utf7;

use std::time::Duration;

pub use capability::Capabilities;
pub use error::ImapError;
pub use event::{Event, FetchUpdate};
pub use fetch::{Changes, FetchQuery, Fetched, Flag, MessageFlags, Section, SectionData};
pub use idle::{IdleEnd, Notice};
pub use mailbox::{Mailbox, MailboxStatus, SpecialUse, StatusInfo};
pub use response::{Code, ESearch, Response, Status, Tagged, Untagged, Value};
pub use search::{ImapDate, SearchKey, SearchResult};
pub use session::{Qresync, Resync, Session, observe_round_trips};
pub use set::SequenceSet;
pub use store::{AppendUid, CopyUid, StoreMode};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plaintext (loopback, or a trusted network).
    None,
    /// Plaintext connect, then STARTTLS before anything else (usually port 143).
    StartTls,
    /// TLS from the first byte ("implicit TLS", usually port 993).
    Tls,
}

/// Where the IMAP server is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Accept any server certificate (self-signed test and demo servers). Never in
    /// production: it makes TLS useless against an active attacker.
    pub tls_insecure: bool,
    /// The longest we wait for the server to send or accept the next bytes (connecting and
    /// the TLS handshake included). It is an inactivity limit, not a limit per command.
    pub timeout: Duration,
}

impl ImapConfig {
    /// A sensible timeout for a server on the same network.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Checks credentials: connect, LOGIN, LOGOUT. Wrong credentials give
/// [`ImapError::LoginRejected`]; anything else means the server could not be asked.
pub async fn check_login(cfg: &ImapConfig, user: &str, password: &str) -> Result<(), ImapError> {
    let mut session = Session::connect(cfg).await?;
    session.login(user, password).await?;
    // The verdict is in; a failing LOGOUT does not change it.
    if let Err(e) = session.logout().await {
        tracing::debug!(error = %e, "LOGOUT after a successful check failed");
    }
    Ok(())
}

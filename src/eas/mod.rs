//! EAS commands: one module per command, each reading its request tree into a typed request,
//! running it against a [`Context`], and building its response.
//!
//! Owns the command dispatch (one `match`), the provisioning gate every command but Provision
//! passes, and the typed [`EasError`] the HTTP layer maps to a status in one place. Knows nothing
//! of HTTP itself: the request arrives as a decoded tree plus the request line.

pub mod calendar;
pub mod contacts;
pub mod davfolders;
pub mod find;
pub mod folderchange;
pub mod folders;
pub mod foldersync;
pub mod freebusy;
pub mod gal;
pub mod getitemestimate;
pub mod ids;
pub mod itemoperations;
pub mod meetingresponse;
pub mod moveitems;
pub mod ping;
pub mod provision;
pub mod reads;
pub mod request;
pub mod resolverecipients;
pub mod search;
pub mod send;
pub mod settings;
pub mod status;
pub mod sync;
pub mod version;

use eas_wbxml::{Element, Tag, tags};

use crate::config::Config;
use crate::mailstore::ImapError;
use crate::state::{Device, DeviceKey, StateError, StateStore, WipeState};
pub use request::{AuthenticatedUser, RequestLine};
use status::{Common, ComposeMailStatus, StatusCode};
use version::{Command, ProtocolVersion};

/// The commands this build implements; `OPTIONS` advertises exactly these.
pub const IMPLEMENTED: &[Command] = &[
    Command::Provision,
    Command::Settings,
    Command::FolderSync,
    Command::FolderCreate,
    Command::FolderUpdate,
    Command::FolderDelete,
    Command::Sync,
    Command::GetItemEstimate,
    Command::MoveItems,
    Command::ItemOperations,
    Command::Ping,
    Command::Search,
    Command::ResolveRecipients,
    Command::Find,
    Command::MeetingResponse,
    Command::SendMail,
    Command::SmartReply,
    Command::SmartForward,
];

/// Why a command could not be answered with a document of its own.
#[derive(Debug, thiserror::Error)]
pub enum EasError {
    /// The body is not a document this command accepts (wrong root element, a required
    /// element missing, a value of the wrong form).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The command exists in EAS but this server does not implement it.
    #[error("command {0:?} is not implemented")]
    NotImplemented(Command),
    /// A 12.x device must provision first; 14.0+ devices get a status in the body instead.
    #[error("device must provision")]
    NeedsProvisioning,
    /// A 12.x device the admin cut off (it acknowledged a wipe, or cannot receive the
    /// account-only wipe asked for); 14.0+ devices get status 129 in the body instead.
    #[error("device is blocked")]
    Blocked,
    /// The per-device state could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The IMAP server could not be reached or failed in a way the command cannot express.
    #[error("IMAP: {0}")]
    Imap(#[from] ImapError),
    /// A 12.x SendMail, SmartReply or SmartForward failed. 12.x has no Status element, so the
    /// HTTP status says it: 503 when trying again later may succeed (`retry`), else 500.
    #[error("message not sent (status {status})")]
    NotSent {
        status: ComposeMailStatus,
        retry: bool,
    },
    /// A backend other than IMAP (the DAV server) is down or failing for now: try again.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// A bug on our side (a response we failed to encode).
    #[error("internal: {0}")]
    Internal(String),
}

/// What a command answers.
#[derive(Debug)]
pub enum Reply {
    /// A WBXML document.
    Document(Element),
    /// HTTP 200 with no body.
    Empty,
    /// A WBXML document already encoded (large responses are streamed into bytes, not built
    /// as a tree).
    Bytes(Vec<u8>),
}

/// Everything a command runs against. The device record is loaded before the command and
/// saved after it, so handlers change it in place.
pub struct Context<'a> {
    pub user: &'a AuthenticatedUser,
    pub line: &'a RequestLine,
    pub version: ProtocolVersion,
    /// The policy key the request presented (header or base64 query).
    pub policy_key: Option<ids::PolicyKey>,
    pub device: Device,
    pub store: &'a dyn StateStore,
    pub config: &'a Config,
    pub hub: &'a std::sync::Arc<crate::push::Hub>,
    pub pool: &'a std::sync::Arc<crate::mailstore::SessionPool>,
    pub directory: &'a crate::directory::Directory,
    pub read_ahead: &'a crate::eas::sync::read_ahead::ReadAhead,
    pub dav: &'a contacts::DavShared,
    /// What the request loaded with its device and has not read yet, and the memos it writes
    /// when it ends ([`reads`]). Boxed: a held Ping keeps its context for minutes.
    pub reads: Box<reads::Reads>,
}

impl Context<'_> {
    pub fn device_key(&self) -> &DeviceKey {
        &self.device.key
    }

    /// Who asks the directory (LDAP sources may bind as the user).
    pub fn directory_asker(&self) -> crate::directory::Asker<'_> {
        crate::directory::Asker {
            login: &self.user.login,
            password: self.user.password.expose(),
        }
    }

    /// Records, before the request starts waiting (Ping, held Sync), that the device's newest
    /// wait is on this node: with several nodes on one database, a node holding an older
    /// wait of the device then ends it (`http`'s poll of `StateStore::waits_elsewhere`).
    pub fn note_wait(&self) -> Result<(), EasError> {
        self.store.note_wait(&self.device.key, self.hub.node())?;
        Ok(())
    }

    /// A memo of the device: as this request wrote it, as loaded at its start, or from the
    /// store.
    pub fn memo(&self, name: &'static str) -> Result<Option<Vec<u8>>, StateError> {
        self.reads.memo(self.store, &self.device.key, name)
    }

    /// Keeps a memo for the device, written when the request ends (with the device record's
    /// check, in one store call); an error then fails the request.
    pub fn put_memo_later(&self, name: &'static str, value: Vec<u8>) {
        self.reads.put_memo_later(name, value);
    }

    /// The device's newest folder list (empty when it has none).
    pub fn folders(&self) -> Result<Vec<crate::state::FolderEntry>, StateError> {
        self.reads.hierarchy(self.store, &self.device.key)
    }

    /// The snapshot a collection's SyncKey names.
    pub fn collection_state(
        &self,
        folder: u32,
        sync_key: u32,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.reads
            .collection_state(self.store, &self.device.key, folder, sync_key)
    }

    /// Loads what the command will read next in one store call (what is loaded and unread
    /// already is not read again).
    pub fn load(&self, wants: crate::state::Wants) -> Result<(), StateError> {
        self.reads.load(self.store, &self.device.key, wants)
    }

    /// What the push sources need to watch this user's mailboxes.
    pub fn credentials(&self) -> crate::push::UserCredentials {
        crate::push::UserCredentials {
            key: self.user.key.clone(),
            login: self.user.login.clone(),
            password: self.user.password.clone(),
        }
    }

    /// The requesting user's mail, over a pooled session.
    pub async fn mailstore(&self) -> Result<crate::mailstore::Mailstore, ImapError> {
        crate::mailstore::Mailstore::open(
            self.pool,
            self.config,
            &self.user.key,
            &self.user.login,
            self.user.password.expose(),
        )
        .await
    }

    /// The requesting user's folder hierarchy, on a session of its own.
    pub async fn hierarchy(&self) -> Result<crate::mailstore::Hierarchy, ImapError> {
        crate::mailstore::Hierarchy::open(
            &self.config.imap_config(),
            &self.user.login,
            self.user.password.expose(),
        )
        .await
    }
}

/// Runs one command. `body` is the decoded request (None for an empty body).
pub async fn dispatch(ctx: &mut Context<'_>, body: Option<Element>) -> Result<Reply, EasError> {
    let command = ctx.line.command;
    if !IMPLEMENTED.contains(&command) {
        return Err(EasError::NotImplemented(command));
    }
    if let Some(refusal) = gate(
        command,
        ctx.version,
        &ctx.device,
        ctx.config,
        ctx.policy_key,
    ) {
        return refusal;
    }
    if command == Command::Ping {
        // An empty Ping is legal too: it repeats the previous one.
        if let Some(b) = &body {
            if b.tag != tags::ping::Ping {
                return Err(EasError::Malformed(format!(
                    "Ping request starts with {:?}",
                    b.tag
                )));
            }
        }
        // Boxed: a held Ping lives for minutes, and inline it would carry the size of the
        // largest command's future (thousands of held Pings, each that size).
        return Box::pin(ping::run(ctx, body)).await;
    }
    if command == Command::Sync {
        // An empty Sync is legal: it repeats the previous request's collections.
        if let Some(b) = &body {
            if b.tag != tags::airsync::Sync {
                return Err(EasError::Malformed(format!(
                    "Sync request starts with {:?}",
                    b.tag
                )));
            }
        }
        return Box::pin(sync::run(ctx, body.as_ref())).await;
    }
    if matches!(
        command,
        Command::SendMail | Command::SmartReply | Command::SmartForward
    ) {
        // A 12.x body is the message itself (see `send`), not a ComposeMail document.
        return Box::pin(send::run(ctx, body)).await;
    }
    let body = match body {
        Some(body) => body,
        None => return Err(EasError::Malformed("empty body".into())),
    };
    if Some(body.tag) != root_tag(command) {
        return Err(EasError::Malformed(format!(
            "{} request starts with {:?}",
            command.name(),
            body.tag
        )));
    }
    match command {
        Command::Provision => Box::pin(provision::run(ctx, &body)).await,
        Command::Settings => Box::pin(settings::run(ctx, &body)).await,
        Command::FolderSync => Box::pin(foldersync::run(ctx, &body)).await,
        Command::FolderCreate => Box::pin(folderchange::create(ctx, &body)).await,
        Command::FolderUpdate => Box::pin(folderchange::update(ctx, &body)).await,
        Command::FolderDelete => Box::pin(folderchange::delete(ctx, &body)).await,
        Command::GetItemEstimate => Box::pin(getitemestimate::run(ctx, &body)).await,
        Command::MoveItems => Box::pin(moveitems::run(ctx, &body)).await,
        Command::ItemOperations => Box::pin(itemoperations::run(ctx, &body)).await,
        Command::Search => Box::pin(search::run(ctx, &body)).await,
        Command::ResolveRecipients => Box::pin(resolverecipients::run(ctx, &body)).await,
        Command::Find => Box::pin(find::run(ctx, &body)).await,
        Command::MeetingResponse => Box::pin(meetingresponse::run(ctx, &body)).await,
        other => Err(EasError::NotImplemented(other)),
    }
}

/// The answer a request gets instead of running, when the device record says it may not run:
/// it must provision first, or an admin blocked it. `None`: go ahead. The HTTP layer asks
/// again after a command that ran while the admin changed the device (a held Ping learns of
/// a wipe at once, not at its next request).
pub fn gate(
    command: Command,
    version: ProtocolVersion,
    device: &Device,
    config: &Config,
    presented_key: Option<ids::PolicyKey>,
) -> Option<Result<Reply, EasError>> {
    // A wipe the device acknowledged, or an account-only wipe a pre-16.1 device cannot
    // receive (we never escalate it to a whole-device wipe): every command, Provision
    // included, is refused until an admin removes the device. No 142 → Provision loop.
    let (status, twelve) = if device.wipe_blocks(version >= ProtocolVersion::V16_1) {
        (Common::DeviceIsBlockedForThisUser, EasError::Blocked)
    } else if command == Command::Provision {
        return None;
    } else {
        let status = provisioning_status(device, config, presented_key)?;
        (status, EasError::NeedsProvisioning)
    };
    // 12.x has no status in the body: the HTTP status says it (403, 449).
    Some(if version.has_body_status() {
        Ok(Reply::Document(status_document(command, status)))
    } else {
        Err(twelve)
    })
}

/// `Some(status)` when the request may not run until the device provisions (MS-ASPROV's
/// reasons to send a device to Provision, as the 14.0+ common statuses).
fn provisioning_status(
    device: &Device,
    config: &Config,
    presented: Option<ids::PolicyKey>,
) -> Option<Common> {
    if matches!(device.wipe, WipeState::Requested { .. }) {
        // Only Provision can deliver the wipe directive, so every other command sends the
        // device there, whatever the configuration says.
        return Some(Common::DeviceNotProvisioned);
    }
    if !config.provision.required {
        return None;
    }
    let Some(current) = device.policy_key else {
        return Some(Common::DeviceNotProvisioned);
    };
    match presented {
        None => Some(Common::DeviceNotProvisioned),
        Some(k) if k.number() != current => Some(Common::InvalidPolicyKey),
        Some(_) => {
            let fingerprint = config.provision.policy.fingerprint();
            (device.policy_hash.as_deref() != Some(fingerprint.as_str()))
                .then_some(Common::PolicyRefresh)
        }
    }
}

/// The element a command's request and response start with.
pub fn root_tag(command: Command) -> Option<Tag> {
    Some(match command {
        Command::Sync => tags::airsync::Sync,
        Command::SendMail => tags::composemail::SendMail,
        Command::SmartForward => tags::composemail::SmartForward,
        Command::SmartReply => tags::composemail::SmartReply,
        Command::FolderSync => tags::folderhierarchy::FolderSync,
        Command::FolderCreate => tags::folderhierarchy::FolderCreate,
        Command::FolderDelete => tags::folderhierarchy::FolderDelete,
        Command::FolderUpdate => tags::folderhierarchy::FolderUpdate,
        Command::MoveItems => tags::moveitems::MoveItems,
        Command::GetItemEstimate => tags::getitemestimate::GetItemEstimate,
        Command::MeetingResponse => tags::meetingresponse::MeetingResponse,
        Command::Search => tags::search::Search,
        Command::Settings => tags::settings::Settings,
        Command::Ping => tags::ping::Ping,
        Command::ItemOperations => tags::itemoperations::ItemOperations,
        Command::Provision => tags::provision::Provision,
        Command::ResolveRecipients => tags::resolverecipients::ResolveRecipients,
        Command::ValidateCert => tags::validatecert::ValidateCert,
        Command::Find => tags::find::Find,
        _ => return None,
    })
}

/// The top-level Status element of a command's response.
fn status_tag(command: Command) -> Option<Tag> {
    Some(match command {
        Command::Sync => tags::airsync::Status,
        Command::SendMail | Command::SmartForward | Command::SmartReply => {
            tags::composemail::Status
        }
        Command::FolderSync
        | Command::FolderCreate
        | Command::FolderDelete
        | Command::FolderUpdate => tags::folderhierarchy::Status,
        Command::MoveItems => tags::moveitems::Status,
        Command::GetItemEstimate => tags::getitemestimate::Status,
        Command::MeetingResponse => tags::meetingresponse::Status,
        Command::Search => tags::search::Status,
        Command::Settings => tags::settings::Status,
        Command::Ping => tags::ping::Status,
        Command::ItemOperations => tags::itemoperations::Status,
        Command::Provision => tags::provision::Status,
        Command::ResolveRecipients => tags::resolverecipients::Status,
        Command::ValidateCert => tags::validatecert::Status,
        Command::Find => tags::find::Status,
        _ => return None,
    })
}

/// `<Command><Status>n</Status></Command>`: how 14.0+ reports a command-wide failure. The
/// status is the command family's own or a [`Common`] one.
pub fn status_document(command: Command, status: impl StatusCode) -> Element {
    let (Some(root), Some(tag)) = (root_tag(command), status_tag(command)) else {
        // Only the pre-12 commands lack these, and they never reach dispatch.
        return Element::with_text(tags::folderhierarchy::Status, status.as_str());
    };
    Element::with_children(root, vec![Element::with_text(tag, status.as_str())])
}

/// The text of a child element, if present.
impl From<crate::backend::BackendError> for EasError {
    fn from(e: crate::backend::BackendError) -> EasError {
        match e {
            crate::backend::BackendError::Imap(e) => EasError::Imap(e),
            crate::backend::BackendError::Dav(e) if e.is_retryable() => {
                EasError::Unavailable(e.to_string())
            }
            crate::backend::BackendError::Dav(e) => EasError::Internal(format!("DAV: {e}")),
            crate::backend::BackendError::Internal(s) => EasError::Internal(s),
            // The Sync engine answers this one itself (status 12); elsewhere it is a bug.
            crate::backend::BackendError::Gone => EasError::Internal("collection gone".to_owned()),
        }
    }
}

pub(crate) fn child_text(e: &Element, tag: Tag) -> Option<&str> {
    e.child(tag).and_then(|c| c.text())
}

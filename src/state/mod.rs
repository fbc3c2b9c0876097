//! Per-device sync state: devices, policy keys, wipe requests, folder ids and hierarchy
//! snapshots.
//!
//! Owns the [`StateStore`] trait and its implementations ([`sqlite`] is the embedded default,
//! [`postgres`] the shared one several gateway nodes use), and the one schema both apply
//! ([`schema`]).
//! Knows nothing of IMAP or HTTP. Every method is scoped by a [`DeviceKey`] whose `user` is the
//! *authenticated* user, so one user can never name another user's device, whatever the query
//! string says.
//!
//! Calls are short single-row or single-key transactions. Both stores move a call that must
//! wait off the async worker (`block_in_place` on a multi-threaded runtime), so a slow disk, a
//! lock held by the CLI or a slow database stalls one request, never the other connections on
//! that worker. What must not be seen half done is one transaction in either store: minting a
//! SyncKey with its snapshot ([`StateStore::mint_collection_state`]), claiming a ClientId, a
//! FolderSync's hierarchy, forgetting a device.
//!
//! The device record is shared by the phone's requests (which may be held for up to an hour)
//! and the admin (`eas-gateway devices`, another process). It is therefore never written back
//! whole: every row carries a version, a request's changes are written by compare-and-set, and
//! [`save_device`] merges what a request changed into what others changed meanwhile, so a held
//! Ping can neither undo a wipe nor revert a policy key nor bring back a removed device.

pub mod postgres;
pub mod schema;
pub mod sqlite;

use std::time::{SystemTime, UNIX_EPOCH};

/// Whose state: the authenticated user (normalised, lower case) and the device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    pub user: String,
    pub device_id: String,
}

/// What a device told us about itself (Settings or Provision DeviceInformation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub model: Option<String>,
    pub imei: Option<String>,
    pub friendly_name: Option<String>,
    pub os: Option<String>,
    pub os_language: Option<String>,
    pub phone_number: Option<String>,
    pub user_agent: Option<String>,
    pub mobile_operator: Option<String>,
    pub enable_outbound_sms: Option<String>,
}

/// Remote wipe, as an admin asked for it and as the device went through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeState {
    /// No wipe asked for.
    None,
    /// An admin asked; the next Provision carries the directive.
    Requested { account_only: bool },
    /// The device acknowledged the directive (status 1 wiped, 2 failed).
    Acknowledged { account_only: bool, status: u8 },
}

/// A device as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub key: DeviceKey,
    pub device_type: String,
    pub info: DeviceInfo,
    /// The final policy key the device acknowledged; requests must present it.
    pub policy_key: Option<u32>,
    /// The temporary key handed out in Provision phase 1, awaiting acknowledgement.
    pub pending_policy_key: Option<u32>,
    /// Fingerprint of the policy the final key was issued for; a changed policy means the
    /// device must provision again (status 143).
    pub policy_hash: Option<String>,
    pub wipe: WipeState,
    pub first_seen: u64,
    pub last_seen: u64,
    /// The EAS version of the device's last request (`MS-ASProtocolVersion`), for the admin.
    pub protocol_version: Option<String>,
    /// Bumped by every write of the row; 0 for a device not stored yet. Writes compare it
    /// (see [`save_device`]).
    pub version: u64,
}

impl Device {
    /// A device seen for the first time.
    pub fn new(key: DeviceKey, device_type: &str) -> Device {
        let now = unix_now();
        Device {
            key,
            device_type: device_type.to_owned(),
            info: DeviceInfo::default(),
            policy_key: None,
            pending_policy_key: None,
            policy_hash: None,
            wipe: WipeState::None,
            first_seen: now,
            last_seen: now,
            protocol_version: None,
            version: 0,
        }
    }

    /// Whether an admin has cut this device off: a wipe it acknowledged, or an account-only
    /// wipe it cannot receive. Only `devices remove` lifts it.
    pub fn wipe_blocks(&self, can_receive_account_only: bool) -> bool {
        match self.wipe {
            WipeState::None => false,
            WipeState::Requested { account_only } => account_only && !can_receive_account_only,
            WipeState::Acknowledged { .. } => true,
        }
    }
}

/// What became of a request's device changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Written; the record as it now is. `raced` says that someone else (the admin, another
    /// request of the device) wrote it while the request ran, so the caller should look at
    /// the record again before answering.
    Stored { device: Box<Device>, raced: bool },
    /// The device was removed while the request ran; nothing was written back.
    Removed,
}

/// Writes a request's changes to its device: `original` is the record as the request loaded
/// it (version 0: it was not stored yet), `updated` what the request made of it. Fields the
/// request did not change keep whatever the store has now; a wipe someone else set or
/// cleared meanwhile always wins over the request's view of it.
pub fn save_device(
    store: &dyn StateStore,
    original: &Device,
    updated: &Device,
) -> Result<Saved, StateError> {
    let mut raced = false;
    if original.version == 0 {
        if store.insert_device(updated)? {
            let mut device = Box::new(updated.clone());
            device.version = 1;
            return Ok(Saved::Stored { device, raced });
        }
    } else {
        let mut first = updated.clone();
        first.version = original.version;
        if store.update_device(&first)? {
            first.version += 1;
            return Ok(Saved::Stored {
                device: Box::new(first),
                raced,
            });
        }
    }
    // Somebody else wrote the row: merge and try again on what they wrote. A handful of
    // rounds is plenty; only a writer looping on the same device could exhaust them.
    for _ in 0..8 {
        raced = true;
        let Some(current) = store.device(&updated.key)? else {
            return Ok(Saved::Removed);
        };
        let mut merged = merge(original, updated, &current);
        if store.update_device(&merged)? {
            merged.version += 1;
            return Ok(Saved::Stored {
                device: Box::new(merged),
                raced,
            });
        }
    }
    Err(StateError::Database(format!(
        "device {} of {} kept changing under a write",
        updated.key.device_id, updated.key.user
    )))
}

/// `current` with the fields `updated` changed relative to `original` (a three-way merge).
fn merge(original: &Device, updated: &Device, current: &Device) -> Device {
    fn pick<T: PartialEq + Clone>(original: &T, updated: &T, current: &T) -> T {
        if updated != original {
            updated.clone()
        } else {
            current.clone()
        }
    }
    Device {
        key: current.key.clone(),
        device_type: pick(
            &original.device_type,
            &updated.device_type,
            &current.device_type,
        ),
        info: pick(&original.info, &updated.info, &current.info),
        policy_key: pick(
            &original.policy_key,
            &updated.policy_key,
            &current.policy_key,
        ),
        pending_policy_key: pick(
            &original.pending_policy_key,
            &updated.pending_policy_key,
            &current.pending_policy_key,
        ),
        policy_hash: pick(
            &original.policy_hash,
            &updated.policy_hash,
            &current.policy_hash,
        ),
        // The admin's word on wiping is final: a request that acknowledged a wipe did so
        // against the record it loaded, which the admin has since changed.
        wipe: if current.wipe != original.wipe {
            current.wipe
        } else {
            updated.wipe
        },
        first_seen: current.first_seen.min(updated.first_seen),
        last_seen: current.last_seen.max(updated.last_seen),
        protocol_version: pick(
            &original.protocol_version,
            &updated.protocol_version,
            &current.protocol_version,
        ),
        version: current.version,
    }
}

/// One folder of a hierarchy snapshot, as the device was told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderEntry {
    /// The EAS ServerId (a small integer, stable for this device).
    pub id: u32,
    /// Parent ServerId; 0 for top level.
    pub parent: u32,
    pub display_name: String,
    /// EAS folder type (2 Inbox, 3 Drafts, 4 Deleted Items, 5 Sent, 12 user mail …).
    pub kind: u8,
    /// The IMAP mailbox name (decoded).
    pub imap_name: String,
    /// The mailbox's UIDVALIDITY when it was listed (0 if unknown). A mailbox renamed behind
    /// the gateway's back keeps it, which is how the rename is recognised.
    pub uidvalidity: u32,
}

/// Why the store failed. Always a server-side problem: the command answers with its "server
/// error" status and the client retries.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database reported an error.
    #[error("state database: {0}")]
    Database(String),
    /// The database cannot be reached (down, restarting, no free connection in time). Passes
    /// by itself: the request answers with a retryable status (HTTP 503 with Retry-After).
    #[error("state database unavailable: {0}")]
    Unavailable(String),
    /// The state URL in the configuration is not one we know.
    #[error("unsupported state store {0:?} (use sqlite:PATH or postgres://…)")]
    UnsupportedUrl(String),
    /// The database was written by a newer gateway; this one would misread it.
    #[error(
        "state database has schema version {found}, newer than this gateway knows ({known}); \
         run the newer eas-gateway or restore a backup"
    )]
    NewerSchema { found: usize, known: usize },
}

impl StateError {
    /// Whether asking again later may succeed without anyone doing anything (the database is
    /// restarting or unreachable), as opposed to an error that will repeat.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StateError::Unavailable(_))
    }
}

/// How long a sent ClientId is remembered. Phones retry within minutes; a month is generous.
pub const CLIENT_ID_RETENTION_SECS: u64 = 30 * 24 * 3600;

/// How long an admin change is kept for the gateway's poll (which runs every second).
pub const ADMIN_CHANGE_RETENTION_SECS: u64 = 24 * 3600;

/// Everything a store keeps for one device, as `eas-gateway state migrate` copies it from one
/// store to another. The admin-change log is not part of it (it only matters to gateways
/// running at the time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceExport {
    pub key: DeviceKey,
    /// The device record with its version; `None` for state whose device row was never
    /// written (its first request failed after the command had stored something).
    pub device: Option<Device>,
    /// `(folder id, mailbox identity)`.
    pub folder_ids: Vec<(u32, String)>,
    /// Every live hierarchy key with its snapshot (possibly empty).
    pub hierarchies: Vec<(u32, Vec<FolderEntry>)>,
    /// `(folder, last key handed out, when)`: kept so keys are never reused after the move
    /// either.
    pub collection_keys: Vec<(u32, u32, u64)>,
    /// `(folder, sync key, snapshot)`.
    pub collections: Vec<(u32, u32, Vec<u8>)>,
    /// `(name, value, written at)`.
    pub memos: Vec<(String, Vec<u8>, u64)>,
    /// `(client id, "sending" | "sent", at)`.
    pub client_ids: Vec<(String, String, u64)>,
}

/// What a request reads of its device's state in one call ([`StateStore::load`]): the
/// commands ask for what they will read, so that a request starts with one round trip to a
/// shared database instead of one per read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    /// The device record.
    pub device: bool,
    /// Memos by name.
    pub memos: Vec<&'static str>,
    /// The newest hierarchy key with its snapshot.
    pub hierarchy: bool,
    /// Collection snapshots by `(folder, sync key)`.
    pub snapshots: Vec<(u32, u32)>,
}

impl Wants {
    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        !self.device && self.memos.is_empty() && !self.hierarchy && self.snapshots.is_empty()
    }
}

/// The answer to [`StateStore::load`]: what was asked for and exists, all read in one
/// transaction (one consistent view of the device's state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    pub device: Option<Device>,
    /// `(name, value)` of the asked memos that exist.
    pub memos: Vec<(String, Vec<u8>)>,
    /// The newest hierarchy key and its folders (by id), when asked and there is one.
    pub hierarchy: Option<(u32, Vec<FolderEntry>)>,
    /// `(folder, sync key, snapshot)` of the asked snapshots that exist.
    pub snapshots: Vec<(u32, u32, Vec<u8>)>,
}

/// Where per-device state lives.
pub trait StateStore: Send + Sync {
    /// Several reads of one device in one call: on PostgreSQL one statement (one round
    /// trip), on SQLite one read transaction. What a request starts from (the device, the
    /// memos and snapshots its command reads) comes from here, read afresh for every request:
    /// with several nodes on one database nothing read here may be kept for a later request.
    fn load(&self, key: &DeviceKey, wants: &Wants) -> Result<Loaded, StateError>;
    /// Writes memos (all or none; a name given twice keeps its last value) and returns the
    /// device record as it is after them, in one call (PostgreSQL: one statement). What a
    /// request ends with: the memos its command keeps, and the record to compare with the
    /// one the request started from (see `save_device`'s compare-and-set).
    fn put_memos_and_read_device(
        &self,
        key: &DeviceKey,
        memos: &[(&str, &[u8])],
    ) -> Result<Option<Device>, StateError>;

    /// The device, if it was seen before.
    fn device(&self, key: &DeviceKey) -> Result<Option<Device>, StateError>;
    /// Stores a device seen for the first time (version 1). False, writing nothing, when the
    /// device exists already.
    fn insert_device(&self, device: &Device) -> Result<bool, StateError>;
    /// Writes every column of the device if its stored version is still `device.version`,
    /// and bumps the version. False, writing nothing, when the row changed or is gone. Use
    /// [`save_device`], which merges and retries.
    fn update_device(&self, device: &Device) -> Result<bool, StateError>;
    /// The admin asks for (or, with [`WipeState::None`], cancels) a remote wipe: written by
    /// column, bumping the version, and announced as an [`StateStore::admin_changes`].
    /// False when there is no such device.
    fn set_wipe(&self, key: &DeviceKey, wipe: WipeState) -> Result<bool, StateError>;
    /// Devices of one user, or of everyone.
    fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StateError>;
    /// Forgets a device and all its state. Returns whether it existed. Not announced: the
    /// gateway uses it to sweep up after a removed device; admins use
    /// [`StateStore::remove_device`].
    fn delete_device(&self, key: &DeviceKey) -> Result<bool, StateError>;
    /// The admin forgets a device: [`StateStore::delete_device`], announced as an admin
    /// change so a request the device holds ends now.
    fn remove_device(&self, key: &DeviceKey) -> Result<bool, StateError>;
    /// Devices an admin changed (wipe, removal) after sequence number `after`, and the newest
    /// sequence number. The gateway polls this to end those devices' held requests at once;
    /// `after = None` asks only for the newest number.
    fn admin_changes(&self, after: Option<u64>) -> Result<(u64, Vec<DeviceKey>), StateError>;

    /// Several nodes: the device's newest held request (Ping, waiting Sync) now waits on
    /// `node`, so another node holding an older one ends it ([`StateStore::waits_elsewhere`]).
    /// Written before the request starts waiting. A no-op on SQLite, whose one gateway's
    /// push hub already ends the older request itself.
    fn note_wait(&self, key: &DeviceKey, node: &str) -> Result<(), StateError>;
    /// Devices whose newest held request was noted on another node than `node` since the
    /// look that answered `since` (None: only the answer), and what to pass next time. The
    /// store's own clock (the database's) dates both, so the nodes' clocks need not agree.
    /// Any wait of those devices that `node` held when this look began is older, and ends.
    fn waits_elsewhere(
        &self,
        node: &str,
        since: Option<u64>,
    ) -> Result<(u64, Vec<DeviceKey>), StateError>;

    /// The stable folder id for a mailbox identity, allocating one on first sight.
    fn folder_id(&self, key: &DeviceKey, mailbox: &str) -> Result<u32, StateError>;
    /// Moves an existing folder id to a new mailbox identity (a rename).
    fn rename_folder_identity(
        &self,
        key: &DeviceKey,
        id: u32,
        mailbox: &str,
    ) -> Result<(), StateError>;

    /// The hierarchy snapshot stored under `sync_key`.
    fn hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
    ) -> Result<Option<Vec<FolderEntry>>, StateError>;
    /// The newest hierarchy sync key, if any.
    fn latest_hierarchy_key(&self, key: &DeviceKey) -> Result<Option<u32>, StateError>;
    /// Stores a snapshot under `sync_key` and drops snapshots older than `sync_key - 1`, in one
    /// transaction (the previous key stays valid so a lost response can be retried).
    fn put_hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
        folders: &[FolderEntry],
    ) -> Result<(), StateError>;
    /// Forgets every hierarchy snapshot (FolderSync with SyncKey 0).
    fn reset_hierarchy(&self, key: &DeviceKey) -> Result<(), StateError>;

    /// A fresh SyncKey number for a collection: larger than every key it had, even across
    /// resets, so a key from before a reset can never name state from after it.
    fn next_collection_key(&self, key: &DeviceKey, folder: u32) -> Result<u32, StateError>;
    /// The collection snapshot stored under `sync_key` (opaque bytes, encoded by the Sync
    /// command).
    fn collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
    ) -> Result<Option<Vec<u8>>, StateError>;
    /// Stores a snapshot under `sync_key` and, in the same transaction, drops every other
    /// snapshot of the collection except `keep` (the key the device presented, which stays
    /// valid so a lost response can be asked for again).
    fn put_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
        keep: Option<u32>,
        snapshot: &[u8],
    ) -> Result<(), StateError>;
    /// [`StateStore::next_collection_key`] and [`StateStore::put_collection_state`] in one
    /// transaction: the new key exists with its snapshot or not at all (with several nodes on
    /// one database, no other request sees a key without its snapshot).
    fn mint_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        keep: Option<u32>,
        snapshot: &[u8],
    ) -> Result<u32, StateError>;
    /// The keys under which the collection has snapshots (at most two).
    fn collection_keys(&self, key: &DeviceKey, folder: u32) -> Result<Vec<u32>, StateError>;
    /// When each folder of the device last got a new SyncKey (unix seconds; 0 when that was
    /// before the gateway recorded it), by folder.
    fn collection_key_times(&self, key: &DeviceKey) -> Result<Vec<(u32, u64)>, StateError>;
    /// Overwrites an existing snapshot, leaving the others alone.
    fn replace_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
        snapshot: &[u8],
    ) -> Result<(), StateError>;
    /// Forgets a collection's snapshots (SyncKey 0, or the folder is gone).
    fn reset_collection(&self, key: &DeviceKey, folder: u32) -> Result<(), StateError>;

    /// A small named record a command keeps for the device (opaque bytes).
    fn memo(&self, key: &DeviceKey, name: &str) -> Result<Option<Vec<u8>>, StateError>;
    fn put_memo(&self, key: &DeviceKey, name: &str, value: &[u8]) -> Result<(), StateError>;
    /// Forgets every device's memo `name` written before `written_before` (Unix seconds).
    /// Returns how many went.
    fn expire_memos(&self, name: &str, written_before: u64) -> Result<usize, StateError>;

    /// Claims a SendMail ClientId for `node` before submitting: [`SendClaim::Claimed`] records
    /// it as being sent (at `now`). A ClientId already sent is not claimed again, nor one
    /// claimed less than `stale_after` seconds ago by a submission that may still be running;
    /// a claim whose node died before handing the message over ([`claim_decision`]) is taken
    /// over at once.
    fn claim_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        now: u64,
        stale_after: u64,
        node: &str,
    ) -> Result<SendClaim, StateError>;
    /// The moment before the message's data goes to the SMTP server: the claim of `node`
    /// becomes "committing", after which no other node takes it over. False when the claim
    /// is no longer this node's (another node took it over): the message must not go out.
    fn commit_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        now: u64,
        node: &str,
    ) -> Result<bool, StateError>;
    /// Ends `node`'s claim: `sent` records the ClientId as sent; otherwise it is forgotten, so
    /// the phone's retry is sent.
    fn finish_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        sent: bool,
        now: u64,
        node: &str,
    ) -> Result<(), StateError>;
    /// `node` is alive (the gateway says so every second), by the store's own clock. Claims of
    /// a node silent for [`NODE_LEASE_SECS`] are those of a dead one. A no-op on SQLite, where
    /// the one gateway is the only node and any other owner is an earlier run of it.
    fn node_alive(&self, node: &str) -> Result<(), StateError>;

    /// Every device that has any state, with or without a device record (`state migrate`).
    fn device_keys(&self) -> Result<Vec<DeviceKey>, StateError>;
    /// Everything kept for one device (`state migrate`).
    fn export_device(&self, key: &DeviceKey) -> Result<DeviceExport, StateError>;
    /// Writes an exported device in one transaction, versions and keys as they were. False,
    /// writing nothing, when this store has any state for the device already.
    fn import_device(&self, export: &DeviceExport) -> Result<bool, StateError>;
}

/// How long a node may be silent before its claims count as a dead node's. Generous against a
/// busy node's late heartbeat; a node taken for dead while alive loses nothing either, since
/// its [`StateStore::commit_client_id`] then fails and it does not send.
pub const NODE_LEASE_SECS: u64 = 10;

/// A ClientId claim as stored: its state (`sending`, `committing`, `sent`), when it was
/// written and by which node (None for claims from before nodes were recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClaim {
    pub state: String,
    pub at: u64,
    pub owner: Option<String>,
}

/// What a claim finds, decided the same way by both stores; `owner_alive` is whether the
/// claim's node is alive. A claim whose node died while `sending` (before the message's data
/// went out: it cannot have been accepted) is taken over now rather than after
/// `stale_after`; one `committing` may have been accepted, so it waits for `stale_after`
/// like any claim, and a retry after that may send a second copy (the window the SMTP
/// handover leaves open: data sent, the server's acceptance not yet recorded).
pub fn claim_decision(
    found: Option<&StoredClaim>,
    owner_alive: bool,
    node: &str,
    now: u64,
    stale_after: u64,
) -> SendClaim {
    match found {
        None => SendClaim::Claimed,
        Some(c) if c.state == "sent" => SendClaim::AlreadySent,
        Some(c) if c.at.saturating_add(stale_after) <= now => SendClaim::Claimed,
        Some(c)
            if c.state == "sending"
                && c.owner.as_deref().is_some_and(|o| o != node)
                && !owner_alive =>
        {
            SendClaim::Claimed
        }
        Some(_) => SendClaim::InProgress,
    }
}

/// The answer to [`StateStore::claim_client_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendClaim {
    /// Nobody sent this ClientId: go ahead.
    Claimed,
    /// A message with this ClientId was accepted by the SMTP server before.
    AlreadySent,
    /// Another request with this ClientId is being submitted right now.
    InProgress,
}

/// Opens the store named by a state URL (`sqlite:PATH` or `postgres://…`), bringing its
/// schema up to date.
pub fn open(url: &str) -> Result<std::sync::Arc<dyn StateStore>, StateError> {
    match url.split_once(':') {
        Some(("sqlite", path)) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?)),
        Some(("postgres" | "postgresql", _)) => {
            Ok(std::sync::Arc::new(postgres::PgStore::open(url)?))
        }
        _ => Err(StateError::UnsupportedUrl(url.to_owned())),
    }
}

/// Whether `url` names a store [`open`] knows (the configuration checks it before starting).
pub fn is_supported_url(url: &str) -> bool {
    matches!(
        url.split_once(':'),
        Some(("sqlite" | "postgres" | "postgresql", _))
    )
}

/// The URL as it may be printed: a password in it replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod test {
    #[test]
    fn passwords_in_urls_are_not_printed() {
        assert_eq!(
            super::redacted_url("postgres://eas:s3cret@db.example.com:5432/eas?sslmode=require"),
            "postgres://eas:***@db.example.com:5432/eas?sslmode=require"
        );
        assert_eq!(
            super::redacted_url("postgres://eas@db/eas"),
            "postgres://eas@db/eas"
        );
        assert_eq!(super::redacted_url("sqlite:/x/y.db"), "sqlite:/x/y.db");
    }
}

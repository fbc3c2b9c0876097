//! The one schema of the state stores: a list of migrations that SQLite and PostgreSQL both
//! apply, in order, when a store opens.
//!
//! Owns the table layout and its version number; knows nothing of how a store connects or
//! runs statements. The SQL is written once, with three type words that differ between the
//! two (`{INT}` a 64-bit integer, `{BLOB}` bytes, `{SERIAL}` an increasing key), rendered by
//! [`migrations`]. For SQLite the rendering is what the entries said before PostgreSQL came
//! (`INTEGER`, `BLOB`, `INTEGER PRIMARY KEY AUTOINCREMENT`), so a database written by an
//! older gateway is the same schema at the same version. `"user"` is quoted because
//! PostgreSQL reserves the word; SQLite reads the quoted name as the same column.
//!
//! Each entry upgrades the schema by one version; never change what an entry that has
//! shipped creates: add an entry.

/// Which SQL the migrations are rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE devices (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        device_type TEXT NOT NULL,
        model TEXT, imei TEXT, friendly_name TEXT, os TEXT, os_language TEXT,
        phone_number TEXT, user_agent TEXT, mobile_operator TEXT, enable_outbound_sms TEXT,
        policy_key {INT},
        pending_policy_key {INT},
        policy_hash TEXT,
        wipe TEXT NOT NULL DEFAULT 'none',
        wipe_status {INT},
        first_seen {INT} NOT NULL,
        last_seen {INT} NOT NULL,
        PRIMARY KEY ("user", device_id)
    );
    CREATE TABLE folder_ids (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        id {INT} NOT NULL,
        mailbox TEXT NOT NULL,
        PRIMARY KEY ("user", device_id, id),
        UNIQUE ("user", device_id, mailbox)
    );
    CREATE TABLE hierarchy (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        sync_key {INT} NOT NULL,
        id {INT} NOT NULL,
        parent {INT} NOT NULL,
        display_name TEXT NOT NULL,
        kind {INT} NOT NULL,
        imap_name TEXT NOT NULL,
        uidvalidity {INT} NOT NULL DEFAULT 0,
        PRIMARY KEY ("user", device_id, sync_key, id)
    );
    -- A snapshot may be empty; this row records that the key exists.
    CREATE TABLE hierarchy_keys (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        sync_key {INT} NOT NULL,
        PRIMARY KEY ("user", device_id, sync_key)
    );
"#,
    r#"
    -- Per-collection Sync snapshots: what the device was told, under each live SyncKey.
    CREATE TABLE collection_state (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        folder {INT} NOT NULL,
        sync_key {INT} NOT NULL,
        snapshot {BLOB} NOT NULL,
        PRIMARY KEY ("user", device_id, folder, sync_key)
    );
    -- Keys are never reused, not even after a reset, so a stale key can never match new state.
    CREATE TABLE collection_keys (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        folder {INT} NOT NULL,
        last_key {INT} NOT NULL,
        PRIMARY KEY ("user", device_id, folder)
    );
    -- Small per-device records the commands keep (cached Sync collections, the last answer).
    CREATE TABLE device_memos (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value {BLOB} NOT NULL,
        PRIMARY KEY ("user", device_id, name)
    );
"#,
    r#"
    -- SendMail/SmartReply/SmartForward ClientIds: 'sending' while a submission runs, 'sent'
    -- once the SMTP server accepted it, so a retried request is not sent twice.
    CREATE TABLE sent_client_ids (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        state TEXT NOT NULL,
        at {INT} NOT NULL,
        PRIMARY KEY ("user", device_id, client_id)
    );
"#,
    r#"
    -- Every write of a device row bumps its version; writers compare it, so a request that
    -- loaded the row an hour ago cannot overwrite what the admin or another request wrote.
    ALTER TABLE devices ADD COLUMN version {INT} NOT NULL DEFAULT 1;
    -- When a memo was written, so that the ones holding message content (the Sync resend
    -- memo) can be expired.
    ALTER TABLE device_memos ADD COLUMN at {INT} NOT NULL DEFAULT 0;
    -- Wipes and removals by the admin (another process), polled by the gateway so that the
    -- device's held request ends at once rather than at its heartbeat.
    CREATE TABLE admin_changes (
        seq {SERIAL},
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        at {INT} NOT NULL
    );
"#,
    r#"
    -- What `devices list` and `devices show` tell an admin: the EAS version a device speaks,
    -- and when each folder last got a new SyncKey (the last Sync that brought or sent news).
    ALTER TABLE devices ADD COLUMN protocol_version TEXT;
    ALTER TABLE collection_keys ADD COLUMN last_key_at {INT} NOT NULL DEFAULT 0;
"#,
    r#"
    -- Several nodes on one database: the newest held request (Ping, waiting Sync) of each
    -- device and the node it waits on. A node holding an older one of the device ends it,
    -- as one node's push hub does when the newer request comes to it. Only the shared store
    -- writes it; SQLite's single gateway knows every wait in memory.
    CREATE TABLE waits (
        "user" TEXT NOT NULL,
        device_id TEXT NOT NULL,
        node TEXT NOT NULL,
        at {INT} NOT NULL,
        PRIMARY KEY ("user", device_id)
    );
    CREATE INDEX waits_at ON waits (at);
    -- The gateway processes on this database, each saying every second that it is alive, and
    -- which of them holds a ClientId it is sending: a retry may take over the claim of a
    -- node that died before the message's data went out ('sending'), never of one that was
    -- handing it over ('committing'). (The stores' liveness: see StateStore::node_alive.)
    CREATE TABLE nodes (
        node TEXT PRIMARY KEY,
        alive_at {INT} NOT NULL
    );
    ALTER TABLE sent_client_ids ADD COLUMN owner TEXT;
"#,
];

/// The schema version this binary writes: the number of migrations.
pub const VERSION: usize = MIGRATIONS.len();

/// Every migration rendered for `dialect`; entry `i` brings version `i` to `i + 1`.
pub fn migrations(dialect: Dialect) -> Vec<String> {
    let (int, blob, serial) = match dialect {
        Dialect::Sqlite => ("INTEGER", "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        Dialect::Postgres => ("BIGINT", "BYTEA", "BIGSERIAL PRIMARY KEY"),
    };
    MIGRATIONS
        .iter()
        .map(|m| {
            m.replace("{INT}", int)
                .replace("{BLOB}", blob)
                .replace("{SERIAL}", serial)
        })
        .collect()
}

/// Refuses a database whose schema is newer than this binary's: its tables may have columns
/// or meanings this binary does not know, and writing to them could corrupt what the newer
/// gateway keeps.
pub fn check_version(found: usize) -> Result<(), super::StateError> {
    if found > VERSION {
        return Err(super::StateError::NewerSchema {
            found,
            known: VERSION,
        });
    }
    Ok(())
}

/// The tables that hold a device's state, keyed by `("user", device_id)`: what deleting,
/// exporting or listing a device's state goes through. `admin_changes` is not one (a log).
pub const DEVICE_TABLES: [&str; 8] = [
    "devices",
    "folder_ids",
    "hierarchy",
    "hierarchy_keys",
    "collection_state",
    "collection_keys",
    "device_memos",
    "sent_client_ids",
];

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn every_placeholder_is_rendered() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let all = migrations(dialect);
            assert_eq!(all.len(), VERSION);
            for m in all {
                assert!(!m.contains('{'), "{dialect:?}: {m}");
            }
        }
        assert!(check_version(VERSION).is_ok());
        assert!(check_version(VERSION + 1).is_err());
    }
}

//! The embedded [`StateStore`]: one SQLite file in WAL mode, schema ([`schema`]) versioned
//! with `PRAGMA user_version`.
//!
//! A transaction that writes begins `IMMEDIATE`, taking the write lock before its first read:
//! a deferred one that read first and another process (the CLI) wrote meanwhile cannot
//! upgrade its stale read to a write and fails at once with "database is locked", without
//! waiting out the busy timeout. The read-only ones (`load`, `export_device`) stay deferred.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema::{self, DEVICE_TABLES, Dialect};
use super::{
    ADMIN_CHANGE_RETENTION_SECS, CLIENT_ID_RETENTION_SECS, Device, DeviceExport, DeviceInfo,
    DeviceKey, FolderEntry, SendClaim, StateError, StateStore, StoredClaim, WipeState,
    claim_decision,
};

/// SQLite-backed state. One connection behind a mutex: every call is a short transaction.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StateError {
    StateError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StateError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StateError::Database(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        // Every statement is prepared once and kept (`prepare_cached`): parsing the SQL again
        // on each call was ~2.5 % of the gateway's CPU in an initial sync. Room for all of them.
        conn.set_prepared_statement_cache_capacity(64);
        Self::migrate(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn migrate(conn: &Connection) -> Result<(), StateError> {
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db)?;
        schema::check_version(version)?;
        for (i, sql) in schema::migrations(Dialect::Sqlite)
            .iter()
            .enumerate()
            .skip(version)
        {
            conn.execute_batch(&format!(
                "BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .map_err(db)?;
        }
        Ok(())
    }

    fn with<T>(
        &self,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        // The common case costs nothing extra: the connection is free and SQLite (WAL)
        // answers in microseconds, so the call runs right here, told not to wait for a lock
        // held by another process. Only when it would wait — another request holds the
        // connection, or the CLI holds the database (SQLITE_BUSY) — does it move off the
        // async worker (`block_in_place`) and wait there, up to the busy timeout, while the
        // worker's other requests go on. (Handing every call to a blocking thread cost ~20 %
        // of a no-change Sync's 0.3 ms.) A transaction that met BUSY was rolled back when its
        // `Transaction` dropped, so running it again is safe.
        if let Ok(mut conn) = self.conn.try_lock() {
            conn.busy_timeout(Duration::ZERO).map_err(db)?;
            let first = f(&mut conn);
            conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
            match first {
                Err(e) if is_busy(&e) => {}
                other => return other.map_err(db),
            }
        }
        let mut run = || {
            // A panic while holding the lock cannot leave a half-done transaction behind
            // (SQLite rolls it back), so a poisoned mutex is still safe to use.
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(db)
        };
        // A current-thread runtime (unit tests, the CLI) has no other worker to hand off to.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }
}

/// How long a call waits for another process's lock on the database (the CLI's writes).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code: rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                ..
            },
            _
        )
    )
}

fn wipe_to_row(w: WipeState) -> (&'static str, Option<u8>) {
    match w {
        WipeState::None => ("none", None),
        WipeState::Requested {
            account_only: false,
        } => ("requested", None),
        WipeState::Requested { account_only: true } => ("requested-account", None),
        WipeState::Acknowledged {
            account_only: false,
            status,
        } => ("acknowledged", Some(status)),
        WipeState::Acknowledged {
            account_only: true,
            status,
        } => ("acknowledged-account", Some(status)),
    }
}

fn wipe_from_row(kind: &str, status: Option<u8>) -> WipeState {
    let status = status.unwrap_or(0);
    match kind {
        "requested" => WipeState::Requested {
            account_only: false,
        },
        "requested-account" => WipeState::Requested { account_only: true },
        "acknowledged" => WipeState::Acknowledged {
            account_only: false,
            status,
        },
        "acknowledged-account" => WipeState::Acknowledged {
            account_only: true,
            status,
        },
        _ => WipeState::None,
    }
}

const DEVICE_COLUMNS: &str = "user, device_id, device_type, model, imei, friendly_name, os, \
     os_language, phone_number, user_agent, mobile_operator, enable_outbound_sms, policy_key, \
     pending_policy_key, policy_hash, wipe, wipe_status, first_seen, last_seen, protocol_version, \
     version";

fn device_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    let wipe: String = r.get(15)?;
    Ok(Device {
        key: DeviceKey {
            user: r.get(0)?,
            device_id: r.get(1)?,
        },
        device_type: r.get(2)?,
        info: DeviceInfo {
            model: r.get(3)?,
            imei: r.get(4)?,
            friendly_name: r.get(5)?,
            os: r.get(6)?,
            os_language: r.get(7)?,
            phone_number: r.get(8)?,
            user_agent: r.get(9)?,
            mobile_operator: r.get(10)?,
            enable_outbound_sms: r.get(11)?,
        },
        policy_key: r.get(12)?,
        pending_policy_key: r.get(13)?,
        policy_hash: r.get(14)?,
        wipe: wipe_from_row(&wipe, r.get(16)?),
        first_seen: r.get(17)?,
        last_seen: r.get(18)?,
        protocol_version: r.get(19)?,
        version: r.get(20)?,
    })
}

/// Runs `f` with the device's columns as parameters ?1..?20 in [`DEVICE_COLUMNS`] order
/// (the version left out), and `extra` as ?21.
fn with_device_params<T>(
    d: &Device,
    extra: Option<u64>,
    f: impl FnOnce(&[&dyn rusqlite::ToSql]) -> T,
) -> T {
    let (wipe, wipe_status) = wipe_to_row(d.wipe);
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![
        &d.key.user,
        &d.key.device_id,
        &d.device_type,
        &d.info.model,
        &d.info.imei,
        &d.info.friendly_name,
        &d.info.os,
        &d.info.os_language,
        &d.info.phone_number,
        &d.info.user_agent,
        &d.info.mobile_operator,
        &d.info.enable_outbound_sms,
        &d.policy_key,
        &d.pending_policy_key,
        &d.policy_hash,
        &wipe,
        &wipe_status,
        &d.first_seen,
        &d.last_seen,
        &d.protocol_version,
    ];
    if let Some(extra) = &extra {
        p.push(extra);
    }
    f(&p)
}

fn record_admin_change(tx: &rusqlite::Transaction<'_>, key: &DeviceKey) -> rusqlite::Result<()> {
    let now = super::unix_now();
    tx.prepare_cached("DELETE FROM admin_changes WHERE at < ?1")?
        .execute(params![
            now.saturating_sub(ADMIN_CHANGE_RETENTION_SECS) as i64
        ])?;
    tx.prepare_cached("INSERT INTO admin_changes (user, device_id, at) VALUES (?1, ?2, ?3)")?
        .execute(params![key.user, key.device_id, now as i64])?;
    Ok(())
}

/// Keeps the last value of a memo name given twice (the order a caller wrote them in).
fn last_of_each<'a>(memos: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
    let mut out: Vec<(&str, &[u8])> = Vec::with_capacity(memos.len());
    for &(name, value) in memos.iter().rev() {
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, value));
        }
    }
    out.reverse();
    out
}

fn folder_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FolderEntry> {
    Ok(FolderEntry {
        id: r.get(0)?,
        parent: r.get(1)?,
        display_name: r.get(2)?,
        kind: r.get(3)?,
        imap_name: r.get(4)?,
        uidvalidity: r.get(5)?,
    })
}

impl StateStore for SqliteStore {
    fn load(&self, key: &DeviceKey, wants: &super::Wants) -> Result<super::Loaded, StateError> {
        // Several statements, one read transaction: the same consistent view PostgreSQL's one
        // statement gives (each call costs SQLite microseconds, so nothing is gained by
        // folding them further).
        self.with(|c| {
            let tx = c.transaction()?;
            let mut loaded = super::Loaded::default();
            if wants.device {
                loaded.device = tx
                    .prepare_cached(&format!(
                        "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 AND device_id = ?2"
                    ))?
                    .query_row(params![key.user, key.device_id], device_from_row)
                    .optional()?;
            }
            for name in &wants.memos {
                let value: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT value FROM device_memos \
                         WHERE user = ?1 AND device_id = ?2 AND name = ?3",
                    )?
                    .query_row(params![key.user, key.device_id, name], |r| r.get(0))
                    .optional()?;
                if let Some(value) = value {
                    if !loaded.memos.iter().any(|(n, _)| n == name) {
                        loaded.memos.push(((*name).to_owned(), value));
                    }
                }
            }
            if wants.hierarchy {
                let newest: Option<u32> = tx
                    .prepare_cached(
                        "SELECT MAX(sync_key) FROM hierarchy_keys WHERE user = ?1 AND device_id = ?2",
                    )?
                    .query_row(params![key.user, key.device_id], |r| r.get(0))?;
                if let Some(k) = newest {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, parent, display_name, kind, imap_name, uidvalidity \
                         FROM hierarchy WHERE user = ?1 AND device_id = ?2 AND sync_key = ?3 \
                         ORDER BY id",
                    )?;
                    let folders = stmt
                        .query_map(params![key.user, key.device_id, k], folder_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    loaded.hierarchy = Some((k, folders));
                }
            }
            for &(folder, sync_key) in &wants.snapshots {
                if loaded
                    .snapshots
                    .iter()
                    .any(|(f, k, _)| (*f, *k) == (folder, sync_key))
                {
                    continue;
                }
                let snapshot: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "SELECT snapshot FROM collection_state \
                         WHERE user = ?1 AND device_id = ?2 AND folder = ?3 AND sync_key = ?4",
                    )?
                    .query_row(params![key.user, key.device_id, folder, sync_key], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let Some(snapshot) = snapshot {
                    loaded.snapshots.push((folder, sync_key, snapshot));
                }
            }
            tx.commit()?;
            Ok(loaded)
        })
    }

    fn put_memos_and_read_device(
        &self,
        key: &DeviceKey,
        memos: &[(&str, &[u8])],
    ) -> Result<Option<Device>, StateError> {
        let memos = last_of_each(memos);
        let now = super::unix_now() as i64;
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (name, value) in &memos {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO device_memos (user, device_id, name, value, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![key.user, key.device_id, name, value, now])?;
            }
            let device = tx
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 AND device_id = ?2"
                ))?
                .query_row(params![key.user, key.device_id], device_from_row)
                .optional()?;
            tx.commit()?;
            Ok(device)
        })
    }

    fn device(&self, key: &DeviceKey) -> Result<Option<Device>, StateError> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 AND device_id = ?2"
            ))?
            .query_row(params![key.user, key.device_id], device_from_row)
            .optional()
        })
    }

    fn insert_device(&self, d: &Device) -> Result<bool, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                     ?17, ?18, ?19, ?20, 1) ON CONFLICT (user, device_id) DO NOTHING"
            ))?;
            with_device_params(d, None, |p| stmt.execute(p)).map(|n| n == 1)
        })
    }

    fn update_device(&self, d: &Device) -> Result<bool, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "UPDATE devices SET device_type = ?3, model = ?4, imei = ?5, \
                 friendly_name = ?6, os = ?7, os_language = ?8, phone_number = ?9, \
                 user_agent = ?10, mobile_operator = ?11, enable_outbound_sms = ?12, \
                 policy_key = ?13, pending_policy_key = ?14, policy_hash = ?15, wipe = ?16, \
                 wipe_status = ?17, first_seen = ?18, last_seen = ?19, protocol_version = ?20, \
                 version = version + 1 WHERE user = ?1 AND device_id = ?2 AND version = ?21",
            )?;
            with_device_params(d, Some(d.version), |p| stmt.execute(p)).map(|n| n == 1)
        })
    }

    fn set_wipe(&self, key: &DeviceKey, wipe: WipeState) -> Result<bool, StateError> {
        let (kind, status) = wipe_to_row(wipe);
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx
                .prepare_cached(
                    "UPDATE devices SET wipe = ?3, wipe_status = ?4, version = version + 1 \
                     WHERE user = ?1 AND device_id = ?2",
                )?
                .execute(params![key.user, key.device_id, kind, status])?;
            if n == 1 {
                record_admin_change(&tx, key)?;
            }
            tx.commit()?;
            Ok(n == 1)
        })
    }

    fn remove_device(&self, key: &DeviceKey) -> Result<bool, StateError> {
        let existed = self.delete_device(key)?;
        if existed {
            self.with(|c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                record_admin_change(&tx, key)?;
                tx.commit()
            })?;
        }
        Ok(existed)
    }

    fn admin_changes(&self, after: Option<u64>) -> Result<(u64, Vec<DeviceKey>), StateError> {
        self.with(|c| {
            let newest: u64 = c
                .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM admin_changes")?
                .query_row([], |r| r.get(0))?;
            let Some(after) = after else {
                return Ok((newest, Vec::new()));
            };
            let mut stmt = c.prepare_cached(
                "SELECT user, device_id FROM admin_changes WHERE seq > ?1 AND seq <= ?2 \
                 ORDER BY seq",
            )?;
            let keys = stmt
                .query_map(params![after as i64, newest as i64], |r| {
                    Ok(DeviceKey {
                        user: r.get(0)?,
                        device_id: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((newest, keys))
        })
    }

    fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE ?1 IS NULL OR user = ?1 \
                 ORDER BY user, device_id"
            ))?;
            stmt.query_map(params![user], device_from_row)?.collect()
        })
    }

    fn delete_device(&self, key: &DeviceKey) -> Result<bool, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            for table in DEVICE_TABLES {
                n += tx
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE user = ?1 AND device_id = ?2"
                    ))?
                    .execute(params![key.user, key.device_id])?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
    }

    fn folder_id(&self, key: &DeviceKey, mailbox: &str) -> Result<u32, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing: Option<u32> = tx
                .prepare_cached(
                    "SELECT id FROM folder_ids WHERE user = ?1 AND device_id = ?2 AND mailbox = ?3",
                )?
                .query_row(params![key.user, key.device_id, mailbox], |r| r.get(0))
                .optional()?;
            let id = match existing {
                Some(id) => id,
                None => {
                    let next: u32 = tx
                        .prepare_cached(
                            "SELECT COALESCE(MAX(id), 0) + 1 FROM folder_ids \
                         WHERE user = ?1 AND device_id = ?2",
                        )?
                        .query_row(params![key.user, key.device_id], |r| r.get(0))?;
                    tx.prepare_cached(
                        "INSERT INTO folder_ids (user, device_id, id, mailbox) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        key.user,
                        key.device_id,
                        next,
                        mailbox
                    ])?;
                    next
                }
            };
            tx.commit()?;
            Ok(id)
        })
    }

    fn rename_folder_identity(
        &self,
        key: &DeviceKey,
        id: u32,
        mailbox: &str,
    ) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Whatever held the new identity before (a folder deleted earlier) gives it up.
            tx.prepare_cached(
                "DELETE FROM folder_ids WHERE user = ?1 AND device_id = ?2 AND mailbox = ?3 \
                 AND id != ?4",
            )?
            .execute(params![key.user, key.device_id, mailbox, id])?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO folder_ids (user, device_id, id, mailbox) \
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![key.user, key.device_id, id, mailbox])?;
            tx.commit()
        })
    }

    fn hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
    ) -> Result<Option<Vec<FolderEntry>>, StateError> {
        self.with(|c| {
            let exists: Option<u32> = c
                .prepare_cached(
                    "SELECT sync_key FROM hierarchy_keys \
                     WHERE user = ?1 AND device_id = ?2 AND sync_key = ?3",
                )?
                .query_row(params![key.user, key.device_id, sync_key], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            let mut stmt = c.prepare_cached(
                "SELECT id, parent, display_name, kind, imap_name, uidvalidity FROM hierarchy \
                 WHERE user = ?1 AND device_id = ?2 AND sync_key = ?3 ORDER BY id",
            )?;
            let rows =
                stmt.query_map(params![key.user, key.device_id, sync_key], folder_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
        })
    }

    fn latest_hierarchy_key(&self, key: &DeviceKey) -> Result<Option<u32>, StateError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT MAX(sync_key) FROM hierarchy_keys WHERE user = ?1 AND device_id = ?2",
            )?
            .query_row(params![key.user, key.device_id], |r| r.get(0))
        })
    }

    fn put_hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
        folders: &[FolderEntry],
    ) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let keep_from = sync_key.saturating_sub(1);
            for table in ["hierarchy", "hierarchy_keys"] {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE user = ?1 AND device_id = ?2 \
                         AND (sync_key < ?3 OR sync_key = ?4)"
                ))?
                .execute(params![
                    key.user,
                    key.device_id,
                    keep_from,
                    sync_key
                ])?;
            }
            tx.prepare_cached(
                "INSERT INTO hierarchy_keys (user, device_id, sync_key) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![key.user, key.device_id, sync_key])?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO hierarchy (user, device_id, sync_key, id, parent, display_name, \
                     kind, imap_name, uidvalidity) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for f in folders {
                    insert.execute(params![
                        key.user,
                        key.device_id,
                        sync_key,
                        f.id,
                        f.parent,
                        f.display_name,
                        f.kind,
                        f.imap_name,
                        f.uidvalidity
                    ])?;
                }
            }
            tx.commit()
        })
    }

    fn next_collection_key(&self, key: &DeviceKey, folder: u32) -> Result<u32, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO collection_keys (user, device_id, folder, last_key, last_key_at) \
                 VALUES (?1, ?2, ?3, 1, ?4) ON CONFLICT (user, device_id, folder) \
                 DO UPDATE SET last_key = last_key + 1, last_key_at = ?4",
            )?
            .execute(params![
                key.user,
                key.device_id,
                folder,
                super::unix_now() as i64
            ])?;
            let k: u32 = tx
                .prepare_cached(
                    "SELECT last_key FROM collection_keys \
                 WHERE user = ?1 AND device_id = ?2 AND folder = ?3",
                )?
                .query_row(params![key.user, key.device_id, folder], |r| r.get(0))?;
            tx.commit()?;
            Ok(k)
        })
    }

    fn collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT snapshot FROM collection_state \
                 WHERE user = ?1 AND device_id = ?2 AND folder = ?3 AND sync_key = ?4",
            )?
            .query_row(params![key.user, key.device_id, folder, sync_key], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    fn put_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
        keep: Option<u32>,
        snapshot: &[u8],
    ) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "DELETE FROM collection_state WHERE user = ?1 AND device_id = ?2 \
                 AND folder = ?3 AND sync_key != ?4",
            )?
            .execute(params![key.user, key.device_id, folder, keep.unwrap_or(0)])?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO collection_state \
                 (user, device_id, folder, sync_key, snapshot) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![key.user, key.device_id, folder, sync_key, snapshot])?;
            tx.commit()
        })
    }

    fn collection_keys(&self, key: &DeviceKey, folder: u32) -> Result<Vec<u32>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT sync_key FROM collection_state \
                 WHERE user = ?1 AND device_id = ?2 AND folder = ?3 ORDER BY sync_key",
            )?;
            let rows = stmt.query_map(params![key.user, key.device_id, folder], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn collection_key_times(&self, key: &DeviceKey) -> Result<Vec<(u32, u64)>, StateError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT folder, last_key_at FROM collection_keys \
                 WHERE user = ?1 AND device_id = ?2 ORDER BY folder",
            )?;
            let rows = stmt.query_map(params![key.user, key.device_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            rows.collect()
        })
    }

    fn replace_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
        snapshot: &[u8],
    ) -> Result<(), StateError> {
        self.with(|c| {
            c.prepare_cached(
                "UPDATE collection_state SET snapshot = ?5 \
                 WHERE user = ?1 AND device_id = ?2 AND folder = ?3 AND sync_key = ?4",
            )?
            .execute(params![key.user, key.device_id, folder, sync_key, snapshot])
            .map(|_| ())
        })
    }

    fn reset_collection(&self, key: &DeviceKey, folder: u32) -> Result<(), StateError> {
        self.with(|c| {
            c.prepare_cached(
                "DELETE FROM collection_state WHERE user = ?1 AND device_id = ?2 AND folder = ?3",
            )?
            .execute(params![key.user, key.device_id, folder])
            .map(|_| ())
        })
    }

    fn memo(&self, key: &DeviceKey, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT value FROM device_memos WHERE user = ?1 AND device_id = ?2 AND name = ?3",
            )?
            .query_row(params![key.user, key.device_id, name], |r| r.get(0))
            .optional()
        })
    }

    fn put_memo(&self, key: &DeviceKey, name: &str, value: &[u8]) -> Result<(), StateError> {
        self.with(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO device_memos (user, device_id, name, value, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key.user,
                key.device_id,
                name,
                value,
                super::unix_now() as i64
            ])
            .map(|_| ())
        })
    }

    fn note_wait(&self, _key: &DeviceKey, _node: &str) -> Result<(), StateError> {
        // One gateway per SQLite file: its hub ends a device's older wait by itself.
        Ok(())
    }

    fn waits_elsewhere(
        &self,
        _node: &str,
        _since: Option<u64>,
    ) -> Result<(u64, Vec<DeviceKey>), StateError> {
        Ok((0, Vec::new()))
    }

    fn expire_memos(&self, name: &str, written_before: u64) -> Result<usize, StateError> {
        self.with(|c| {
            c.prepare_cached("DELETE FROM device_memos WHERE name = ?1 AND at < ?2")?
                .execute(params![name, written_before as i64])
        })
    }

    fn claim_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        now: u64,
        stale_after: u64,
        node: &str,
    ) -> Result<SendClaim, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM sent_client_ids WHERE user = ?1 AND device_id = ?2 AND at < ?3")?.execute(
                params![
                    key.user,
                    key.device_id,
                    now.saturating_sub(CLIENT_ID_RETENTION_SECS) as i64
                ],
            )?;
            let found: Option<StoredClaim> = tx
                .prepare_cached("SELECT state, at, owner FROM sent_client_ids \
                     WHERE user = ?1 AND device_id = ?2 AND client_id = ?3")?.query_row(
                    params![key.user, key.device_id, client_id],
                    |r| Ok(StoredClaim { state: r.get(0)?, at: r.get::<_, i64>(1)? as u64, owner: r.get(2)? }),
                )
                .optional()?;
            // One gateway per SQLite file: a claim of another node is an earlier run's, which
            // is gone.
            let owner_alive = found.as_ref().is_some_and(|f| f.owner.as_deref() == Some(node));
            let claim = claim_decision(found.as_ref(), owner_alive, node, now, stale_after);
            if claim == SendClaim::Claimed {
                tx.prepare_cached("INSERT OR REPLACE INTO sent_client_ids \
                     (user, device_id, client_id, state, at, owner) VALUES (?1, ?2, ?3, 'sending', ?4, ?5)")?.execute(
                    params![key.user, key.device_id, client_id, now as i64, node],
                )?;
            }
            tx.commit()?;
            Ok(claim)
        })
    }

    fn commit_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        now: u64,
        node: &str,
    ) -> Result<bool, StateError> {
        self.with(|c| {
            c.prepare_cached("UPDATE sent_client_ids SET state = 'committing', at = ?4 \
                 WHERE user = ?1 AND device_id = ?2 AND client_id = ?3 AND state = 'sending' AND owner = ?5")?
                .execute(params![key.user, key.device_id, client_id, now as i64, node])
                .map(|n| n == 1)
        })
    }

    fn finish_client_id(
        &self,
        key: &DeviceKey,
        client_id: &str,
        sent: bool,
        now: u64,
        node: &str,
    ) -> Result<(), StateError> {
        self.with(|c| {
            if sent {
                c.prepare_cached("UPDATE sent_client_ids SET state = 'sent', at = ?4 \
                     WHERE user = ?1 AND device_id = ?2 AND client_id = ?3 AND owner = ?5")?.execute(
                    params![key.user, key.device_id, client_id, now as i64, node],
                )
            } else {
                c.prepare_cached("DELETE FROM sent_client_ids WHERE user = ?1 AND device_id = ?2 AND client_id = ?3 \
                     AND owner = ?4 AND state <> 'sent'")?.execute(
                    params![key.user, key.device_id, client_id, node],
                )
            }
            .map(|_| ())
        })
    }

    fn node_alive(&self, _node: &str) -> Result<(), StateError> {
        Ok(())
    }

    fn mint_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        keep: Option<u32>,
        snapshot: &[u8],
    ) -> Result<u32, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let sync_key: u32 = tx
                .prepare_cached(
                    "INSERT INTO collection_keys (user, device_id, folder, last_key, \
                     last_key_at) VALUES (?1, ?2, ?3, 1, ?4) \
                     ON CONFLICT (user, device_id, folder) \
                     DO UPDATE SET last_key = last_key + 1, last_key_at = ?4 RETURNING last_key",
                )?
                .query_row(
                    params![key.user, key.device_id, folder, super::unix_now() as i64],
                    |r| r.get(0),
                )?;
            tx.prepare_cached(
                "DELETE FROM collection_state WHERE user = ?1 AND device_id = ?2 \
                 AND folder = ?3 AND sync_key != ?4",
            )?
            .execute(params![key.user, key.device_id, folder, keep.unwrap_or(0)])?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO collection_state \
                 (user, device_id, folder, sync_key, snapshot) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![key.user, key.device_id, folder, sync_key, snapshot])?;
            tx.commit()?;
            Ok(sync_key)
        })
    }

    fn device_keys(&self) -> Result<Vec<DeviceKey>, StateError> {
        let union = DEVICE_TABLES
            .iter()
            .map(|t| format!("SELECT user, device_id FROM {t}"))
            .collect::<Vec<_>>()
            .join(" UNION ");
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{union} ORDER BY 1, 2"))?;
            stmt.query_map([], |r| {
                Ok(DeviceKey {
                    user: r.get(0)?,
                    device_id: r.get(1)?,
                })
            })?
            .collect()
        })
    }

    fn export_device(&self, key: &DeviceKey) -> Result<DeviceExport, StateError> {
        self.with(|c| {
            // One read transaction: a consistent picture even if the gateway still runs.
            let tx = c.transaction()?;
            let k = params![key.user, key.device_id];
            let device = tx
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 AND device_id = ?2"
                ))?
                .query_row(k, device_from_row)
                .optional()?;
            let folder_ids = tx
                .prepare(
                    "SELECT id, mailbox FROM folder_ids WHERE user = ?1 AND device_id = ?2 \
                     ORDER BY id",
                )?
                .query_map(k, |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let hierarchy_keys = tx
                .prepare(
                    "SELECT sync_key FROM hierarchy_keys WHERE user = ?1 AND device_id = ?2 \
                     ORDER BY sync_key",
                )?
                .query_map(k, |r| r.get::<_, u32>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut hierarchies = Vec::new();
            for sync_key in hierarchy_keys {
                let folders = tx
                    .prepare(
                        "SELECT id, parent, display_name, kind, imap_name, uidvalidity \
                         FROM hierarchy WHERE user = ?1 AND device_id = ?2 AND sync_key = ?3 \
                         ORDER BY id",
                    )?
                    .query_map(params![key.user, key.device_id, sync_key], folder_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                hierarchies.push((sync_key, folders));
            }
            let collection_keys = tx
                .prepare(
                    "SELECT folder, last_key, last_key_at FROM collection_keys \
                     WHERE user = ?1 AND device_id = ?2 ORDER BY folder",
                )?
                .query_map(k, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let collections = tx
                .prepare(
                    "SELECT folder, sync_key, snapshot FROM collection_state \
                     WHERE user = ?1 AND device_id = ?2 ORDER BY folder, sync_key",
                )?
                .query_map(k, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let memos = tx
                .prepare(
                    "SELECT name, value, at FROM device_memos \
                     WHERE user = ?1 AND device_id = ?2 ORDER BY name",
                )?
                .query_map(k, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let client_ids = tx
                .prepare(
                    "SELECT client_id, state, at FROM sent_client_ids \
                     WHERE user = ?1 AND device_id = ?2 ORDER BY client_id",
                )?
                .query_map(k, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.commit()?;
            Ok(DeviceExport {
                key: key.clone(),
                device,
                folder_ids,
                hierarchies,
                collection_keys,
                collections,
                memos,
                client_ids,
            })
        })
    }

    fn import_device(&self, e: &DeviceExport) -> Result<bool, StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let k = params![e.key.user, e.key.device_id];
            for table in DEVICE_TABLES {
                let exists: Option<i64> = tx
                    .prepare(&format!(
                        "SELECT 1 FROM {table} WHERE user = ?1 AND device_id = ?2 LIMIT 1"
                    ))?
                    .query_row(k, |r| r.get(0))
                    .optional()?;
                if exists.is_some() {
                    return Ok(false);
                }
            }
            if let Some(d) = &e.device {
                let mut stmt = tx.prepare(&format!(
                    "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                     ?17, ?18, ?19, ?20, ?21)"
                ))?;
                with_device_params(d, Some(d.version), |p| stmt.execute(p))?;
            }
            let (user, dev) = (&e.key.user, &e.key.device_id);
            for (id, mailbox) in &e.folder_ids {
                tx.execute(
                    "INSERT INTO folder_ids (user, device_id, id, mailbox) VALUES (?1, ?2, ?3, ?4)",
                    params![user, dev, id, mailbox],
                )?;
            }
            for (sync_key, folders) in &e.hierarchies {
                tx.execute(
                    "INSERT INTO hierarchy_keys (user, device_id, sync_key) VALUES (?1, ?2, ?3)",
                    params![user, dev, sync_key],
                )?;
                for f in folders {
                    tx.execute(
                        "INSERT INTO hierarchy (user, device_id, sync_key, id, parent, \
                         display_name, kind, imap_name, uidvalidity) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            user,
                            dev,
                            sync_key,
                            f.id,
                            f.parent,
                            f.display_name,
                            f.kind,
                            f.imap_name,
                            f.uidvalidity
                        ],
                    )?;
                }
            }
            for (folder, last_key, at) in &e.collection_keys {
                tx.execute(
                    "INSERT INTO collection_keys (user, device_id, folder, last_key, last_key_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user, dev, folder, last_key, at],
                )?;
            }
            for (folder, sync_key, snapshot) in &e.collections {
                tx.execute(
                    "INSERT INTO collection_state (user, device_id, folder, sync_key, snapshot) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user, dev, folder, sync_key, snapshot],
                )?;
            }
            for (name, value, at) in &e.memos {
                tx.execute(
                    "INSERT INTO device_memos (user, device_id, name, value, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user, dev, name, value, *at as i64],
                )?;
            }
            for (client_id, state, at) in &e.client_ids {
                tx.execute(
                    "INSERT INTO sent_client_ids (user, device_id, client_id, state, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![user, dev, client_id, state, *at as i64],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
    }

    fn reset_hierarchy(&self, key: &DeviceKey) -> Result<(), StateError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in ["hierarchy", "hierarchy_keys"] {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE user = ?1 AND device_id = ?2"
                ))?
                .execute(params![key.user, key.device_id])?;
            }
            tx.commit()
        })
    }
}

#[cfg(test)]
mod test {
    //! What only SQLite has; the store contract both stores keep is tests/state_store.rs.
    use super::*;

    fn key(user: &str) -> DeviceKey {
        DeviceKey {
            user: user.into(),
            device_id: "dev1".into(),
        }
    }

    /// The CLI (another connection) holds the database: a gateway call neither fails at once
    /// nor blocks its async worker; it waits off the worker and succeeds when the lock goes.
    #[test]
    fn a_call_waits_for_another_process_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = std::sync::Arc::new(SqliteStore::open(&path).unwrap());
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "BEGIN IMMEDIATE; \
                 INSERT INTO admin_changes (user, device_id, at) VALUES ('x', 'y', 0);",
            )
            .unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let inserted = runtime.block_on(async {
            let s = store.clone();
            let call =
                tokio::spawn(async move { s.insert_device(&Device::new(key("alice"), "iPhone")) });
            // The other worker keeps serving meanwhile.
            let other_task = tokio::spawn(async { 42 });
            assert_eq!(other_task.await.unwrap(), 42);
            call.await.unwrap()
        });
        release.join().unwrap();
        assert!(inserted.unwrap());
        assert!(started.elapsed() >= std::time::Duration::from_millis(250));
        // Uncontended, the fast path is taken again and still works.
        assert!(store.device(&key("alice")).unwrap().is_some());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", schema::VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(&path)
            .err()
            .expect("opened a newer schema");
        assert!(matches!(err, StateError::NewerSchema { .. }), "{err}");
    }
}

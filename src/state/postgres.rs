//! The shared [`StateStore`]: PostgreSQL through `sqlx`, for several gateway nodes on one
//! database (`state.url = "postgres://…"`).
//!
//! Owns the store's connections, the translation of each store call into statements, and
//! what a call does when the database is away. Knows nothing of EAS beyond the trait; the
//! schema is [`schema`]'s, the same list SQLite applies, versioned in the one-row table
//! `schema_version`.
//!
//! **Sync calls on an async driver.** The trait is synchronous (the SQLite store answers in
//! microseconds), the driver async. Each connection lives on a current-thread runtime of its
//! own, and a call drives that runtime on the calling thread (`block_in_place` first on a
//! multi-threaded runtime, so the worker's other requests go on meanwhile; a scoped thread
//! on a current-thread runtime; directly on a plain thread such as the CLI's): the
//! database's answer wakes the caller itself. The store keeps its connections (up to
//! [`MAX_CONNECTIONS`]) rather than using sqlx's pool, which pings every connection given
//! back to it. Both cost a no-change Sync about half its time (docs/benchmarks.md, "State in
//! PostgreSQL against SQLite").
//!
//! **Concurrency between nodes.** Two nodes may run requests of the same device at once (a
//! phone's Ping on one, its Sync on another after a failover). Every multi-statement write
//! takes a transaction-scoped advisory lock on the device first, so such writes of one device
//! run one after the other, as they do on SQLite's single connection; single statements are
//! atomic by themselves (`INSERT … ON CONFLICT … RETURNING` for new keys). Admin changes take
//! a global advisory lock so their sequence numbers become visible in order (a poller that
//! saw number 10 never later finds a 9 committed behind it).
//!
//! **The database away.** Connection failures, no free connection in time and the server's
//! shutdown and start-up errors become [`StateError::Unavailable`], which requests answer
//! with HTTP 503 and Retry-After. A call that met a dead kept connection (the server
//! restarted since it was opened) is tried again on another one (the dead one is dropped);
//! such an error means the statement never reached a live server, except when the server
//! died in the very moment it committed, where the retry can repeat a write (a key counter
//! bumped twice, which is harmless; a ClientId claim found "in progress", which makes the
//! phone retry after the claim expires, never a second send). After a failure the store
//! answers "unavailable" at once for [`FAIL_FAST`] instead of making every request wait for
//! a connection's timeout; then the next call tries again, so service resumes by itself. An
//! error of one call alone (a deadlock, a device lock held too long by a stuck session) is
//! "unavailable" to its request but does not start that window. The server is told to end
//! what a stuck or gone node leaves behind ([`SESSION_SETTINGS`]), so a device whose writer
//! froze mid-transaction is free again within seconds, not when TCP notices.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{Connection, Row, Transaction};

use super::schema::{self, DEVICE_TABLES, Dialect};
use super::{
    ADMIN_CHANGE_RETENTION_SECS, CLIENT_ID_RETENTION_SECS, Device, DeviceExport, DeviceInfo,
    DeviceKey, FolderEntry, NODE_LEASE_SECS, SendClaim, StateError, StateStore, StoredClaim,
    WipeState, claim_decision,
};

/// Set on every connection, so that the server itself ends what a gone or stuck node left:
/// without them a session whose client gave up (a call's timeout, a node's host lost in the
/// middle of a transaction) keeps waiting, or keeps the device's advisory lock, until TCP
/// notices, by default hours later, and every other node's writes of that device wait for it.
/// - `statement_timeout` below [`CALL_TIMEOUT`]: the server cancels a statement the caller
///   is about to give up on (a lock held elsewhere), answered as "unavailable" (a retry).
/// - `idle_in_transaction_session_timeout`: a transaction nobody drives any more (its node
///   frozen or cut off) is rolled back and its locks released; ours never pause.
/// - TCP keepalives: a session of a host that vanished is closed within about 2 minutes.
const SESSION_SETTINGS: [(&str, &str); 5] = [
    ("statement_timeout", "9s"),
    ("idle_in_transaction_session_timeout", "15s"),
    ("tcp_keepalives_idle", "60"),
    ("tcp_keepalives_interval", "10"),
    ("tcp_keepalives_count", "6"),
];

/// Connections a gateway keeps to the database at most. Calls are short (one or a few round
/// trips), so a few connections serve thousands of phones; PostgreSQL's default allows 100
/// in total, which several nodes must share.
pub const MAX_CONNECTIONS: u32 = 16;
/// How long a call waits for a free connection (or for one to be opened) before answering
/// "unavailable".
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The most a whole call may take, retries included; a database that stopped answering
/// (network partition, a stopped process) must not hold a request forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// After the database was found away, calls within this time fail at once.
pub const FAIL_FAST: Duration = Duration::from_millis(500);

/// First key of the two-key advisory locks this store takes (`'easg'`); the second says which.
const LOCK_CLASS: i32 = 0x6561_7367;
const LOCK_MIGRATE: i32 = 1;
const LOCK_ADMIN_CHANGES: i32 = 2;

type Tx<'c> = Transaction<'c, sqlx::Postgres>;
/// A free connection unused for this long is closed.
const KEPT_IDLE: Duration = Duration::from_secs(600);

/// The database's clock in Unix seconds: what dates the nodes' heartbeats and waits, so the
/// nodes' own clocks need not agree.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()))::BIGINT";

/// PostgreSQL-backed state.
pub struct PgStore {
    options: PgConnectOptions,
    max_connections: usize,
    /// The connections, with how many are open (idle or in a call).
    conns: Mutex<Conns>,
    /// Signalled when a connection becomes free or one fewer is open.
    freed: Condvar,
    /// When the database was last found away (see [`FAIL_FAST`]).
    down_since: Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Conns {
    /// Free connections, most recently used last.
    idle: Vec<Slot>,
    /// Idle, in a call, or being opened.
    open: usize,
}

/// One connection and the current-thread runtime its socket is registered with. A call
/// drives that runtime itself (`block_on` on the calling thread), so the database's answer
/// wakes the caller directly: one thread wake-up per round trip, where a shared runtime of
/// the store's took two (its I/O thread, then the caller), and a pool that pings every
/// connection given back to it a second round trip per call.
struct Slot {
    /// `None` only while dropping (the connection goes before its runtime).
    conn: Option<PgConnection>,
    runtime: Option<tokio::runtime::Runtime>,
    /// When it was last given back.
    used: Instant,
}

impl Slot {
    fn open(options: &PgConnectOptions, deadline: Instant) -> Result<Slot, StateError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StateError::Database(format!("starting a database runtime: {e}")))?;
        let left = deadline.saturating_duration_since(Instant::now());
        // Timers are made inside the future: only there is this runtime current.
        let conn = runtime
            .block_on(async {
                tokio::time::timeout(
                    left.min(ACQUIRE_TIMEOUT),
                    PgConnection::connect_with(options),
                )
                .await
            })
            .map_err(|_| {
                StateError::Unavailable(format!(
                    "no connection to the database within {ACQUIRE_TIMEOUT:?}"
                ))
            })?
            .map_err(db)?;
        Ok(Slot {
            conn: Some(conn),
            runtime: Some(runtime),
            used: Instant::now(),
        })
    }

    /// Runs `fut` made from the connection to completion, within `left`; None when it took
    /// longer (the connection is then in an unknown state).
    fn run<T, F>(&mut self, left: Duration, op: F) -> Option<T>
    where
        F: AsyncFnOnce(&mut PgConnection) -> T,
    {
        let (Some(runtime), Some(conn)) = (&self.runtime, &mut self.conn) else {
            unreachable!("a slot has both until dropped");
        };
        runtime
            .block_on(async { tokio::time::timeout(left, op(conn)).await })
            .ok()
    }

    /// Says goodbye to the server (no "connection reset" in its log), briefly.
    fn close(mut self) {
        if let (Some(conn), Some(runtime)) = (self.conn.take(), &self.runtime) {
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), conn.close()).await
            });
        }
    }
}

/// A call's error, and whether it says the database is away (so that the next calls answer
/// at once for [`FAIL_FAST`]) rather than that this call alone failed.
struct Failed {
    error: StateError,
    away: bool,
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Failed {
        Failed {
            away: is_unavailable(&e) && !is_contention(&e),
            error: db(e),
        }
    }
}

/// A connection out of the store for a call: discarded when dropped, unless given back.
struct Lent<'a>(&'a PgStore, Option<Slot>);

impl Lent<'_> {
    fn give_back(mut self) {
        if let Some(slot) = self.1.take() {
            self.0.checkin(slot);
        }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.1.take() {
            self.0.discard(slot);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.conn.take());
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which is refused inside an async context.
            runtime.shutdown_background();
        }
    }
}

fn db(e: sqlx::Error) -> StateError {
    if is_unavailable(&e) {
        StateError::Unavailable(e.to_string())
    } else {
        StateError::Database(e.to_string())
    }
}

/// Errors that pass by themselves: the server is away, restarting or full.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: admin shutdown, crash shutdown, cannot
            // connect now (starting up); 57P05: idle session timeout; 53300: too many
            // connections; 25006: read-only (a standby, during a database failover); and
            // what concerns this call alone (see `is_contention`).
            c.starts_with("08")
                || matches!(
                    &*c,
                    "57P01" | "57P02" | "57P03" | "57P05" | "53300" | "25006"
                )
                || is_contention(e)
        }),
        // A connection the server closed under us reads as a protocol error in some paths.
        sqlx::Error::Protocol(m) => m.contains("closed") || m.contains("EOF"),
        _ => false,
    }
}

/// An error of this call alone, which a retry resolves while the database serves others: a
/// serialization failure or deadlock (40001, 40P01), a lock not had in time (55P03), a
/// statement cancelled by `statement_timeout` (57014, mostly a device lock held by a stuck
/// session). It does not make the node answer every call "unavailable" for [`FAIL_FAST`].
fn is_contention(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().is_some_and(|c| matches!(&*c, "40001" | "40P01" | "55P03" | "57014")))
}

/// A dead kept connection: the call never reached the server, so running it again on a
/// fresh connection is safe. (57P05: the server closed a session idle for its
/// `idle_session_timeout`.)
fn is_dead_connection(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_))
        || matches!(e, sqlx::Error::Protocol(m) if m.contains("closed") || m.contains("EOF"))
        || matches!(e, sqlx::Error::Database(d)
            if d.code().is_some_and(|c| matches!(&*c, "57P01" | "57P02" | "57P05")))
}

fn decode_err(what: &str, v: i64) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} {v} out of range").into())
}

fn get_u32(r: &PgRow, i: usize) -> Result<u32, sqlx::Error> {
    let v: i64 = r.try_get(i)?;
    u32::try_from(v).map_err(|_| decode_err("value", v))
}

fn get_opt_u32(r: &PgRow, i: usize) -> Result<Option<u32>, sqlx::Error> {
    let v: Option<i64> = r.try_get(i)?;
    v.map(|v| u32::try_from(v).map_err(|_| decode_err("value", v)))
        .transpose()
}

fn get_u64(r: &PgRow, i: usize) -> Result<u64, sqlx::Error> {
    let v: i64 = r.try_get(i)?;
    u64::try_from(v).map_err(|_| decode_err("value", v))
}

fn get_u8(r: &PgRow, i: usize) -> Result<u8, sqlx::Error> {
    let v: i64 = r.try_get(i)?;
    u8::try_from(v).map_err(|_| decode_err("value", v))
}

impl PgStore {
    /// Connects to the database named by `url` and brings its schema up to date (refusing a
    /// newer one). Fails when the database cannot be reached: a gateway should not start on
    /// a store it cannot check.
    pub fn open(url: &str) -> Result<PgStore, StateError> {
        Self::open_with(url, MAX_CONNECTIONS)
    }

    /// [`PgStore::open`] with another connection limit.
    pub fn open_with(url: &str, max_connections: u32) -> Result<PgStore, StateError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StateError::Database(format!("state.url: {e}")))?;
        // Prepared statements are cached per connection by sqlx; the application name shows
        // in pg_stat_activity, so an operator sees which connections are the gateway's.
        let options = options
            .application_name("eas-gateway")
            .options(SESSION_SETTINGS);
        let store = PgStore {
            options,
            max_connections: max_connections.max(1) as usize,
            conns: Mutex::new(Conns::default()),
            freed: Condvar::new(),
            down_since: Mutex::new(None),
        };
        match store.call(async |c| migrate(c).await) {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) | Err(e) => Err(e),
        }
    }

    /// Runs `f` where it may block: off the async worker (`block_in_place`, so the worker's
    /// other requests go on meanwhile), on a thread of our own from a current-thread runtime
    /// (which cannot block in place, and inside which no runtime may be driven), or right
    /// here on a plain thread such as the CLI's.
    fn blocking<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
            Ok(_) => std::thread::scope(|s| {
                s.spawn(f)
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }),
            Err(_) => f(),
        }
    }

    /// One store call: `op` run on a connection (once more on another if it met a dead
    /// one), bounded by [`CALL_TIMEOUT`], its error sorted into unavailable or not.
    fn call<T, F>(&self, op: F) -> Result<T, StateError>
    where
        T: Send,
        F: AsyncFn(&mut PgConnection) -> Result<T, sqlx::Error> + Sync,
    {
        {
            let down = lock(&self.down_since);
            if down.is_some_and(|at| at.elapsed() < FAIL_FAST) {
                return Err(StateError::Unavailable(
                    "the database was unreachable a moment ago".into(),
                ));
            }
        }
        let result = self.blocking(|| self.attempt(&op));
        let mut down = lock(&self.down_since);
        match result {
            Ok(v) => {
                *down = None;
                Ok(v)
            }
            Err(Failed { error, away }) => {
                *down = away.then(Instant::now);
                Err(error)
            }
        }
    }

    fn attempt<T, F>(&self, op: &F) -> Result<T, Failed>
    where
        F: AsyncFn(&mut PgConnection) -> Result<T, sqlx::Error>,
    {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let timed_out = || Failed {
            error: StateError::Unavailable(format!(
                "no answer from the database within {CALL_TIMEOUT:?}"
            )),
            away: true,
        };
        // After a restart of the server every idle connection is dead, and each is found
        // out only by using it: go on until a live one answers.
        let tries = self.max_connections + 1;
        let mut tried = 1;
        loop {
            // Dropped unless given back: a connection in an unknown state (a timeout, an
            // error, a panic) is never used again.
            let slot = self.checkout(deadline).map_err(|error| Failed {
                away: error.is_unavailable(),
                error,
            })?;
            let mut lent = Lent(self, Some(slot));
            let slot = lent.1.as_mut().expect("lent until given back");
            let left = deadline.saturating_duration_since(Instant::now());
            match slot.run(left, async |c| op(c).await) {
                None => return Err(timed_out()),
                Some(Ok(v)) => {
                    lent.give_back();
                    return Ok(v);
                }
                Some(Err(e)) if is_dead_connection(&e) => {
                    drop(lent);
                    if tried >= tries {
                        return Err(Failed::from(e));
                    }
                    tried += 1;
                }
                Some(Err(e)) => {
                    // Kept only if it still answers (a transaction the error left open is
                    // rolled back on the way, as sqlx queued that when it was dropped).
                    let ping = async |c: &mut PgConnection| c.ping().await;
                    if let Some(Ok(())) = slot.run(Duration::from_secs(1), ping) {
                        lent.give_back();
                    }
                    return Err(Failed::from(e));
                }
            }
        }
    }

    /// A free connection, a new one if fewer than the limit are open, or the next one
    /// given back within [`ACQUIRE_TIMEOUT`].
    fn checkout(&self, deadline: Instant) -> Result<Slot, StateError> {
        let waited_until = (Instant::now() + ACQUIRE_TIMEOUT).min(deadline);
        let mut conns = lock(&self.conns);
        loop {
            // Ones unused for long are closed; the oldest are at the front.
            let stale = conns
                .idle
                .iter()
                .take_while(|s| s.used.elapsed() > KEPT_IDLE)
                .count();
            if stale > 0 {
                let stale: Vec<Slot> = conns.idle.drain(..stale).collect();
                conns.open -= stale.len();
                drop(conns);
                stale.into_iter().for_each(Slot::close);
                conns = lock(&self.conns);
                continue;
            }
            if let Some(slot) = conns.idle.pop() {
                return Ok(slot);
            }
            if conns.open < self.max_connections {
                conns.open += 1;
                drop(conns);
                return Slot::open(&self.options, deadline).inspect_err(|_| {
                    lock(&self.conns).open -= 1;
                    self.freed.notify_one();
                });
            }
            let left = waited_until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StateError::Unavailable(format!(
                    "no free database connection within {ACQUIRE_TIMEOUT:?}"
                )));
            }
            conns = self
                .freed
                .wait_timeout(conns, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn checkin(&self, mut slot: Slot) {
        slot.used = Instant::now();
        lock(&self.conns).idle.push(slot);
        self.freed.notify_one();
    }

    /// Drops a connection that failed or is in an unknown state.
    fn discard(&self, slot: Slot) {
        lock(&self.conns).open -= 1;
        self.freed.notify_one();
        drop(slot);
    }

    /// Closes the free connections (one in a call is dropped when it ends, as the store is
    /// then gone).
    fn shutdown(&mut self) {
        let idle = std::mem::take(&mut lock(&self.conns).idle);
        if !idle.is_empty() {
            self.blocking(|| idle.into_iter().for_each(Slot::close));
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies the migrations this database lacks, in one transaction, under a lock so that two
/// nodes starting at once do not both migrate.
async fn migrate(c: &mut PgConnection) -> Result<Result<(), StateError>, sqlx::Error> {
    let mut tx = c.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_MIGRATE)
        .execute(&mut *tx)
        .await?;
    sqlx::Executor::execute(
        &mut *tx,
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
    )
    .await?;
    let found: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_version")
        .fetch_optional(&mut *tx)
        .await?;
    let found = match found {
        Some(v) => match usize::try_from(v) {
            Ok(v) => v,
            Err(_) => {
                return Ok(Err(StateError::Database(format!(
                    "schema version {v} is not one"
                ))));
            }
        },
        None => {
            sqlx::query("INSERT INTO schema_version (version) VALUES (0)")
                .execute(&mut *tx)
                .await?;
            0
        }
    };
    if let Err(e) = schema::check_version(found) {
        return Ok(Err(e));
    }
    for (i, sql) in schema::migrations(Dialect::Postgres)
        .iter()
        .enumerate()
        .skip(found)
    {
        // A plain string runs as a simple query, which may hold several statements.
        sqlx::Executor::execute(&mut *tx, sql.as_str()).await?;
        sqlx::query("UPDATE schema_version SET version = $1")
            .bind((i + 1) as i64)
            .execute(&mut *tx)
            .await?;
    }
    compress_with_lz4(&mut tx).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// The columns that grow with a mailbox — a page's snapshot (up to tens of KB) and the memos a
/// Sync keeps — compressed with lz4 rather than the default pglz: minting a key, which writes
/// one snapshot and deletes the one before, takes the server half as long
/// (docs/benchmarks.md, "State in PostgreSQL against SQLite").
///
/// A storage setting, not a schema step: it changes how values are kept, not what the tables
/// mean, and a gateway that does not know of it reads them the same, so it does not raise
/// the schema version (which would stop an older node of a cluster being upgraded from
/// starting again). Set at every start where missing, so databases made before it get it too;
/// values written before keep pglz until rewritten. A server without lz4 (built without it,
/// or older than 14) or a role that does not own the tables keeps pglz and works the same: an
/// optimisation must not stop a gateway from starting. `EXECUTE`, so that even the
/// statement's parsing happens inside the handler.
async fn compress_with_lz4(tx: &mut Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    // Looked up first, so that a start where both are set takes no table lock; inside the
    // block, as `attcompression` exists only from PostgreSQL 14 on. Setting the default
    // first finds a server without lz4 before any table is locked. Each ALTER waits for the
    // other nodes' transactions on its table and makes their next ones wait behind it: at
    // most 1 s a table, then this start leaves it to the next one.
    sqlx::Executor::execute(
        &mut **tx,
        "DO $$ DECLARE missing bigint; BEGIN \
         EXECUTE 'SELECT count(*) FROM pg_attribute WHERE (attrelid, attname) IN \
         ((''collection_state''::regclass, ''snapshot''), (''device_memos''::regclass, ''value'')) \
         AND attcompression IS DISTINCT FROM ''l''' INTO missing; \
         IF missing > 0 THEN \
         EXECUTE 'SET LOCAL default_toast_compression = ''lz4'''; \
         EXECUTE 'SET LOCAL lock_timeout = ''1s'''; \
         EXECUTE 'ALTER TABLE collection_state ALTER COLUMN snapshot SET COMPRESSION lz4'; \
         EXECUTE 'ALTER TABLE device_memos ALTER COLUMN value SET COMPRESSION lz4'; \
         END IF; \
         EXCEPTION WHEN OTHERS THEN \
         RAISE NOTICE 'snapshots stay compressed with pglz: %', SQLERRM; \
         END $$",
    )
    .await?;
    Ok(())
}

/// Serialises the multi-statement writes of one device across connections and nodes.
async fn lock_device(tx: &mut Tx<'_>, key: &DeviceKey) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || E'\\n' || $2, 0))")
        .bind(&key.user)
        .bind(&key.device_id)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

fn wipe_to_row(w: WipeState) -> (&'static str, Option<i64>) {
    match w {
        WipeState::None => ("none", None),
        WipeState::Requested {
            account_only: false,
        } => ("requested", None),
        WipeState::Requested { account_only: true } => ("requested-account", None),
        WipeState::Acknowledged {
            account_only: false,
            status,
        } => ("acknowledged", Some(status.into())),
        WipeState::Acknowledged {
            account_only: true,
            status,
        } => ("acknowledged-account", Some(status.into())),
    }
}

fn wipe_from_row(kind: &str, status: Option<i64>) -> WipeState {
    let status = status.and_then(|s| u8::try_from(s).ok()).unwrap_or(0);
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

const DEVICE_COLUMNS: &str = "\"user\", device_id, device_type, model, imei, friendly_name, os, \
     os_language, phone_number, user_agent, mobile_operator, enable_outbound_sms, policy_key, \
     pending_policy_key, policy_hash, wipe, wipe_status, first_seen, last_seen, protocol_version, \
     version";

fn device_from_row(r: &PgRow) -> Result<Device, sqlx::Error> {
    device_at(r, 0)
}

/// The device whose [`DEVICE_COLUMNS`] start at column `at`.
fn device_at(r: &PgRow, at: usize) -> Result<Device, sqlx::Error> {
    let wipe: String = r.try_get(at + 15)?;
    Ok(Device {
        key: DeviceKey {
            user: r.try_get(at)?,
            device_id: r.try_get(at + 1)?,
        },
        device_type: r.try_get(at + 2)?,
        info: DeviceInfo {
            model: r.try_get(at + 3)?,
            imei: r.try_get(at + 4)?,
            friendly_name: r.try_get(at + 5)?,
            os: r.try_get(at + 6)?,
            os_language: r.try_get(at + 7)?,
            phone_number: r.try_get(at + 8)?,
            user_agent: r.try_get(at + 9)?,
            mobile_operator: r.try_get(at + 10)?,
            enable_outbound_sms: r.try_get(at + 11)?,
        },
        policy_key: get_opt_u32(r, at + 12)?,
        pending_policy_key: get_opt_u32(r, at + 13)?,
        policy_hash: r.try_get(at + 14)?,
        wipe: wipe_from_row(&wipe, r.try_get(at + 16)?),
        first_seen: get_u64(r, at + 17)?,
        last_seen: get_u64(r, at + 18)?,
        protocol_version: r.try_get(at + 19)?,
        version: get_u64(r, at + 20)?,
    })
}

/// [`DEVICE_COLUMNS`] as typed NULLs, for the rows of [`LOAD`] that are not the device.
const NO_DEVICE: &str = "NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
     NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text, \
     NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::bigint, NULL::bigint, \
     NULL::bigint, NULL::text, NULL::bigint";

/// [`StateStore::load`] as one statement, so a request's reads cost one round trip: every
/// part is a branch of one `UNION ALL`, its rows of one shape — the part (0 device, 1 memo,
/// 2 hierarchy, 3 snapshot), the device's columns (1–21), five numbers (22–26), two texts
/// (27, 28) and bytes (29). $1 user, $2 device, $3 memo names, $4/$5 snapshots' folders and
/// keys, $6 the device asked for, $7 the hierarchy asked for. One text whatever is asked, so
/// the server plans it once per connection.
fn load_sql() -> String {
    format!(
        "SELECT 0::bigint, {DEVICE_COLUMNS}, NULL::bigint, NULL::bigint, NULL::bigint, \
         NULL::bigint, NULL::bigint, NULL::text, NULL::text, NULL::bytea \
         FROM devices WHERE $6 AND \"user\" = $1 AND device_id = $2 \
         UNION ALL \
         SELECT 1, {NO_DEVICE}, NULL, NULL, NULL, NULL, NULL, name, NULL, value \
         FROM device_memos WHERE \"user\" = $1 AND device_id = $2 AND name = ANY($3::text[]) \
         UNION ALL \
         SELECT 2, {NO_DEVICE}, k.sync_key, h.id, h.parent, h.kind, h.uidvalidity, \
         h.display_name, h.imap_name, NULL \
         FROM hierarchy_keys k LEFT JOIN hierarchy h ON h.\"user\" = k.\"user\" \
         AND h.device_id = k.device_id AND h.sync_key = k.sync_key \
         WHERE $7 AND k.\"user\" = $1 AND k.device_id = $2 AND k.sync_key = \
         (SELECT MAX(sync_key) FROM hierarchy_keys WHERE \"user\" = $1 AND device_id = $2) \
         UNION ALL \
         SELECT 3, {NO_DEVICE}, s.folder, s.sync_key, NULL, NULL, NULL, NULL, NULL, s.snapshot \
         FROM collection_state s \
         WHERE s.\"user\" = $1 AND s.device_id = $2 AND (s.folder, s.sync_key) IN \
         (SELECT * FROM UNNEST($4::bigint[], $5::bigint[]))"
    )
}

/// Reads the rows of [`load_sql`] into what was asked for.
fn loaded_from_rows(rows: &[PgRow]) -> Result<super::Loaded, sqlx::Error> {
    let mut loaded = super::Loaded::default();
    let mut hierarchy: Option<(u32, Vec<FolderEntry>)> = None;
    for r in rows {
        let part: i64 = r.try_get(0)?;
        match part {
            0 => loaded.device = Some(device_at(r, 1)?),
            1 => loaded.memos.push((r.try_get(27)?, r.try_get(29)?)),
            2 => {
                let key = get_u32(r, 22)?;
                let folders = &mut hierarchy.get_or_insert_with(|| (key, Vec::new())).1;
                // A key without folders gives one row of NULLs.
                if r.try_get::<Option<i64>, _>(23)?.is_some() {
                    folders.push(FolderEntry {
                        id: get_u32(r, 23)?,
                        parent: get_u32(r, 24)?,
                        kind: get_u8(r, 25)?,
                        uidvalidity: get_u32(r, 26)?,
                        display_name: r.try_get(27)?,
                        imap_name: r.try_get(28)?,
                    });
                }
            }
            _ => loaded
                .snapshots
                .push((get_u32(r, 22)?, get_u32(r, 23)?, r.try_get(29)?)),
        }
    }
    if let Some((_, folders)) = &mut hierarchy {
        folders.sort_by_key(|f| f.id);
    }
    loaded.hierarchy = hierarchy;
    Ok(loaded)
}

/// Binds the device's columns as $1..$20 in [`DEVICE_COLUMNS`] order (the version left out).
fn bind_device<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    d: &'q Device,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let (wipe, wipe_status) = wipe_to_row(d.wipe);
    q.bind(&d.key.user)
        .bind(&d.key.device_id)
        .bind(&d.device_type)
        .bind(&d.info.model)
        .bind(&d.info.imei)
        .bind(&d.info.friendly_name)
        .bind(&d.info.os)
        .bind(&d.info.os_language)
        .bind(&d.info.phone_number)
        .bind(&d.info.user_agent)
        .bind(&d.info.mobile_operator)
        .bind(&d.info.enable_outbound_sms)
        .bind(d.policy_key.map(i64::from))
        .bind(d.pending_policy_key.map(i64::from))
        .bind(&d.policy_hash)
        .bind(wipe)
        .bind(wipe_status)
        .bind(d.first_seen as i64)
        .bind(d.last_seen as i64)
        .bind(&d.protocol_version)
}

async fn record_admin_change(tx: &mut Tx<'_>, key: &DeviceKey) -> Result<(), sqlx::Error> {
    // Held to the commit: numbers are handed out and become visible in the same order.
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(LOCK_ADMIN_CHANGES)
        .execute(&mut **tx)
        .await?;
    let now = super::unix_now();
    sqlx::query("DELETE FROM admin_changes WHERE at < $1")
        .bind(now.saturating_sub(ADMIN_CHANGE_RETENTION_SECS) as i64)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO admin_changes (\"user\", device_id, at) VALUES ($1, $2, $3)")
        .bind(&key.user)
        .bind(&key.device_id)
        .bind(now as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn delete_device_in(tx: &mut Tx<'_>, key: &DeviceKey) -> Result<u64, sqlx::Error> {
    lock_device(tx, key).await?;
    let mut n = 0;
    for table in DEVICE_TABLES {
        n += sqlx::query(&format!(
            "DELETE FROM {table} WHERE \"user\" = $1 AND device_id = $2"
        ))
        .bind(&key.user)
        .bind(&key.device_id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(n)
}

async fn put_collection_in(
    tx: &mut Tx<'_>,
    key: &DeviceKey,
    folder: u32,
    sync_key: u32,
    keep: Option<u32>,
    snapshot: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM collection_state WHERE \"user\" = $1 AND device_id = $2 \
         AND folder = $3 AND sync_key != $4",
    )
    .bind(&key.user)
    .bind(&key.device_id)
    .bind(i64::from(folder))
    .bind(i64::from(keep.unwrap_or(0)))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO collection_state (\"user\", device_id, folder, sync_key, snapshot) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (\"user\", device_id, folder, sync_key) \
         DO UPDATE SET snapshot = EXCLUDED.snapshot",
    )
    .bind(&key.user)
    .bind(&key.device_id)
    .bind(i64::from(folder))
    .bind(i64::from(sync_key))
    .bind(snapshot)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn next_key_in<'e, E>(executor: E, key: &DeviceKey, folder: u32) -> Result<u32, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let k: i64 = sqlx::query_scalar(
        "INSERT INTO collection_keys (\"user\", device_id, folder, last_key, last_key_at) \
         VALUES ($1, $2, $3, 1, $4) ON CONFLICT (\"user\", device_id, folder) \
         DO UPDATE SET last_key = collection_keys.last_key + 1, last_key_at = $4 \
         RETURNING last_key",
    )
    .bind(&key.user)
    .bind(&key.device_id)
    .bind(i64::from(folder))
    .bind(super::unix_now() as i64)
    .fetch_one(executor)
    .await?;
    u32::try_from(k).map_err(|_| decode_err("sync key", k))
}

fn folder_from_row(r: &PgRow) -> Result<FolderEntry, sqlx::Error> {
    Ok(FolderEntry {
        id: get_u32(r, 0)?,
        parent: get_u32(r, 1)?,
        display_name: r.try_get(2)?,
        kind: get_u8(r, 3)?,
        imap_name: r.try_get(4)?,
        uidvalidity: get_u32(r, 5)?,
    })
}

async fn insert_hierarchy(
    tx: &mut Tx<'_>,
    key: &DeviceKey,
    sync_key: u32,
    folders: &[FolderEntry],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO hierarchy_keys (\"user\", device_id, sync_key) VALUES ($1, $2, $3)")
        .bind(&key.user)
        .bind(&key.device_id)
        .bind(i64::from(sync_key))
        .execute(&mut **tx)
        .await?;
    if folders.is_empty() {
        return Ok(());
    }
    // One statement for the whole list: a hierarchy of 200 folders is one round trip.
    let ids: Vec<i64> = folders.iter().map(|f| f.id.into()).collect();
    let parents: Vec<i64> = folders.iter().map(|f| f.parent.into()).collect();
    let names: Vec<&str> = folders.iter().map(|f| f.display_name.as_str()).collect();
    let kinds: Vec<i64> = folders.iter().map(|f| f.kind.into()).collect();
    let imap: Vec<&str> = folders.iter().map(|f| f.imap_name.as_str()).collect();
    let validity: Vec<i64> = folders.iter().map(|f| f.uidvalidity.into()).collect();
    sqlx::query(
        "INSERT INTO hierarchy (\"user\", device_id, sync_key, id, parent, display_name, kind, \
         imap_name, uidvalidity) SELECT $1, $2, $3, * FROM \
         UNNEST($4::bigint[], $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::bigint[])",
    )
    .bind(&key.user)
    .bind(&key.device_id)
    .bind(i64::from(sync_key))
    .bind(ids)
    .bind(parents)
    .bind(names)
    .bind(kinds)
    .bind(imap)
    .bind(validity)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl StateStore for PgStore {
    fn load(&self, key: &DeviceKey, wants: &super::Wants) -> Result<super::Loaded, StateError> {
        if wants.is_empty() {
            return Ok(super::Loaded::default());
        }
        let sql = load_sql();
        let folders: Vec<i64> = wants.snapshots.iter().map(|s| s.0.into()).collect();
        let keys: Vec<i64> = wants.snapshots.iter().map(|s| s.1.into()).collect();
        self.call(async |c| {
            let rows = sqlx::query(&sql)
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(&wants.memos)
                .bind(&folders)
                .bind(&keys)
                .bind(wants.device)
                .bind(wants.hierarchy)
                .fetch_all(&mut *c)
                .await?;
            loaded_from_rows(&rows)
        })
    }

    fn put_memos_and_read_device(
        &self,
        key: &DeviceKey,
        memos: &[(&str, &[u8])],
    ) -> Result<Option<Device>, StateError> {
        // A name twice in one INSERT … ON CONFLICT would be refused ("cannot affect row a
        // second time"): the last value wins, as it would written one after the other.
        let mut names: Vec<&str> = Vec::with_capacity(memos.len());
        let mut values: Vec<&[u8]> = Vec::with_capacity(memos.len());
        for &(name, value) in memos.iter().rev() {
            if !names.contains(&name) {
                names.push(name);
                values.push(value);
            }
        }
        // One statement, so one round trip: the memos written by a data-modifying WITH (run
        // to completion whether or not the query reads it), the device read after. The read
        // sees the database as the statement began, like a read right before the writes: the
        // compare-and-set on its version that follows is what guards the record.
        let sql = format!(
            "WITH written AS (INSERT INTO device_memos (\"user\", device_id, name, value, at) \
             SELECT $1, $2, m.name, m.value, $5 FROM UNNEST($3::text[], $4::bytea[]) AS m(name, value) \
             ON CONFLICT (\"user\", device_id, name) \
             DO UPDATE SET value = EXCLUDED.value, at = EXCLUDED.at) \
             SELECT {DEVICE_COLUMNS} FROM devices WHERE \"user\" = $1 AND device_id = $2"
        );
        let now = super::unix_now() as i64;
        self.call(async |c| {
            sqlx::query(&sql)
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(&names)
                .bind(&values)
                .bind(now)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| device_from_row(&r))
                .transpose()
        })
    }

    fn device(&self, key: &DeviceKey) -> Result<Option<Device>, StateError> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE \"user\" = $1 AND device_id = $2");
        self.call(async |c| {
            sqlx::query(&sql)
                .bind(&key.user)
                .bind(&key.device_id)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| device_from_row(&r))
                .transpose()
        })
    }

    fn insert_device(&self, d: &Device) -> Result<bool, StateError> {
        let sql = format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, 1) \
             ON CONFLICT (\"user\", device_id) DO NOTHING"
        );
        self.call(async |c| {
            let r = bind_device(sqlx::query(&sql), d).execute(&mut *c).await?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn update_device(&self, d: &Device) -> Result<bool, StateError> {
        self.call(async |c| {
            let r = bind_device(
                sqlx::query(
                    "UPDATE devices SET device_type = $3, model = $4, imei = $5, \
                     friendly_name = $6, os = $7, os_language = $8, phone_number = $9, \
                     user_agent = $10, mobile_operator = $11, enable_outbound_sms = $12, \
                     policy_key = $13, pending_policy_key = $14, policy_hash = $15, wipe = $16, \
                     wipe_status = $17, first_seen = $18, last_seen = $19, protocol_version = $20, \
                     version = version + 1 \
                     WHERE \"user\" = $1 AND device_id = $2 AND version = $21",
                ),
                d,
            )
            .bind(d.version as i64)
            .execute(&mut *c)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn set_wipe(&self, key: &DeviceKey, wipe: WipeState) -> Result<bool, StateError> {
        let (kind, status) = wipe_to_row(wipe);
        self.call(async |c| {
            let mut tx = c.begin().await?;
            let n = sqlx::query(
                "UPDATE devices SET wipe = $3, wipe_status = $4, version = version + 1 \
                 WHERE \"user\" = $1 AND device_id = $2",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(kind)
            .bind(status)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                record_admin_change(&mut tx, key).await?;
            }
            tx.commit().await?;
            Ok(n == 1)
        })
    }

    fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StateError> {
        // Byte order, as SQLite sorts, whatever collation the database was created with.
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE $1::text IS NULL OR \"user\" = $1 \
             ORDER BY \"user\" COLLATE \"C\", device_id COLLATE \"C\""
        );
        self.call(async |c| {
            sqlx::query(&sql)
                .bind(user)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(device_from_row)
                .collect()
        })
    }

    fn delete_device(&self, key: &DeviceKey) -> Result<bool, StateError> {
        self.call(async |c| {
            let mut tx = c.begin().await?;
            let n = delete_device_in(&mut tx, key).await?;
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    fn remove_device(&self, key: &DeviceKey) -> Result<bool, StateError> {
        self.call(async |c| {
            let mut tx = c.begin().await?;
            let existed = delete_device_in(&mut tx, key).await? > 0;
            if existed {
                record_admin_change(&mut tx, key).await?;
            }
            tx.commit().await?;
            Ok(existed)
        })
    }

    fn admin_changes(&self, after: Option<u64>) -> Result<(u64, Vec<DeviceKey>), StateError> {
        self.call(async |c| {
            let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM admin_changes")
                .fetch_one(&mut *c)
                .await?;
            let newest = u64::try_from(newest).map_err(|_| decode_err("sequence", newest))?;
            let Some(after) = after else {
                return Ok((newest, Vec::new()));
            };
            let keys = sqlx::query(
                "SELECT \"user\", device_id FROM admin_changes WHERE seq > $1 AND seq <= $2 \
                 ORDER BY seq",
            )
            .bind(after as i64)
            .bind(newest as i64)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| {
                Ok(DeviceKey {
                    user: r.try_get(0)?,
                    device_id: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok((newest, keys))
        })
    }

    fn folder_id(&self, key: &DeviceKey, mailbox: &str) -> Result<u32, StateError> {
        self.call(async |c| {
            let select = "SELECT id FROM folder_ids \
                          WHERE \"user\" = $1 AND device_id = $2 AND mailbox = $3";
            // Most calls find the id: one statement, no lock.
            let found: Option<i64> = sqlx::query_scalar(select)
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(mailbox)
                .fetch_optional(&mut *c)
                .await?;
            let id = match found {
                Some(id) => id,
                None => {
                    let mut tx = c.begin().await?;
                    lock_device(&mut tx, key).await?;
                    let again: Option<i64> = sqlx::query_scalar(select)
                        .bind(&key.user)
                        .bind(&key.device_id)
                        .bind(mailbox)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let id = match again {
                        Some(id) => id,
                        None => {
                            sqlx::query_scalar(
                                "INSERT INTO folder_ids (\"user\", device_id, id, mailbox) \
                                 SELECT $1, $2, COALESCE(MAX(id), 0) + 1, $3 FROM folder_ids \
                                 WHERE \"user\" = $1 AND device_id = $2 RETURNING id",
                            )
                            .bind(&key.user)
                            .bind(&key.device_id)
                            .bind(mailbox)
                            .fetch_one(&mut *tx)
                            .await?
                        }
                    };
                    tx.commit().await?;
                    id
                }
            };
            u32::try_from(id).map_err(|_| decode_err("folder id", id))
        })
    }

    fn rename_folder_identity(
        &self,
        key: &DeviceKey,
        id: u32,
        mailbox: &str,
    ) -> Result<(), StateError> {
        self.call(async |c| {
            let mut tx = c.begin().await?;
            lock_device(&mut tx, key).await?;
            // Whatever held the new identity before (a folder deleted earlier) gives it up.
            sqlx::query(
                "DELETE FROM folder_ids WHERE \"user\" = $1 AND device_id = $2 AND mailbox = $3 \
                 AND id != $4",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(mailbox)
            .bind(i64::from(id))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO folder_ids (\"user\", device_id, id, mailbox) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (\"user\", device_id, id) DO UPDATE SET mailbox = EXCLUDED.mailbox",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(id))
            .bind(mailbox)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
    }

    fn hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
    ) -> Result<Option<Vec<FolderEntry>>, StateError> {
        self.call(async |c| {
            // The key row and the folders in one statement (one round trip): a key with no
            // folders gives one row of NULLs.
            let rows = sqlx::query(
                "SELECT h.id, h.parent, h.display_name, h.kind, h.imap_name, h.uidvalidity \
                 FROM hierarchy_keys k LEFT JOIN hierarchy h ON h.\"user\" = k.\"user\" \
                 AND h.device_id = k.device_id AND h.sync_key = k.sync_key \
                 WHERE k.\"user\" = $1 AND k.device_id = $2 AND k.sync_key = $3 ORDER BY h.id",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(sync_key))
            .fetch_all(&mut *c)
            .await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let mut folders = Vec::with_capacity(rows.len());
            for r in &rows {
                if r.try_get::<Option<i64>, _>(0)?.is_some() {
                    folders.push(folder_from_row(r)?);
                }
            }
            Ok(Some(folders))
        })
    }

    fn latest_hierarchy_key(&self, key: &DeviceKey) -> Result<Option<u32>, StateError> {
        self.call(async |c| {
            let k: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(sync_key) FROM hierarchy_keys WHERE \"user\" = $1 AND device_id = $2",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .fetch_one(&mut *c)
            .await?;
            k.map(|k| u32::try_from(k).map_err(|_| decode_err("sync key", k)))
                .transpose()
        })
    }

    fn put_hierarchy(
        &self,
        key: &DeviceKey,
        sync_key: u32,
        folders: &[FolderEntry],
    ) -> Result<(), StateError> {
        self.call(async |c| {
            let mut tx = c.begin().await?;
            lock_device(&mut tx, key).await?;
            let keep_from = sync_key.saturating_sub(1);
            for table in ["hierarchy", "hierarchy_keys"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE \"user\" = $1 AND device_id = $2 \
                     AND (sync_key < $3 OR sync_key = $4)"
                ))
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(i64::from(keep_from))
                .bind(i64::from(sync_key))
                .execute(&mut *tx)
                .await?;
            }
            insert_hierarchy(&mut tx, key, sync_key, folders).await?;
            tx.commit().await
        })
    }

    fn reset_hierarchy(&self, key: &DeviceKey) -> Result<(), StateError> {
        self.call(async |c| {
            let mut tx = c.begin().await?;
            lock_device(&mut tx, key).await?;
            for table in ["hierarchy", "hierarchy_keys"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE \"user\" = $1 AND device_id = $2"
                ))
                .bind(&key.user)
                .bind(&key.device_id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })
    }

    fn next_collection_key(&self, key: &DeviceKey, folder: u32) -> Result<u32, StateError> {
        self.call(async |c| next_key_in(&mut *c, key, folder).await)
    }

    fn collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.call(async |c| {
            sqlx::query_scalar(
                "SELECT snapshot FROM collection_state \
                 WHERE \"user\" = $1 AND device_id = $2 AND folder = $3 AND sync_key = $4",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(folder))
            .bind(i64::from(sync_key))
            .fetch_optional(&mut *c)
            .await
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
        self.call(async |c| {
            let mut tx = c.begin().await?;
            lock_device(&mut tx, key).await?;
            put_collection_in(&mut tx, key, folder, sync_key, keep, snapshot).await?;
            tx.commit().await
        })
    }

    fn mint_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        keep: Option<u32>,
        snapshot: &[u8],
    ) -> Result<u32, StateError> {
        // One statement (one round trip, where BEGIN, the lock, the key, the old snapshots'
        // delete, the snapshot and COMMIT took six each page of an initial sync): atomic by
        // itself, so no request sees the key without its snapshot. The device's lock is
        // taken first (the key's insert reads from it), so the statement still runs after,
        // never amid, another request's multi-statement write of the device. Its other parts
        // see the database as the statement began: a snapshot another request minted while
        // this one waited is not deleted here but by the folder's next mint.
        let now = super::unix_now() as i64;
        self.call(async |c| {
            let k: i64 = sqlx::query_scalar(
                "WITH locked AS (SELECT pg_advisory_xact_lock(\
                 hashtextextended($1 || E'\\n' || $2, 0))), \
                 k AS (INSERT INTO collection_keys (\"user\", device_id, folder, last_key, last_key_at) \
                 SELECT $1, $2, $3, 1, $4 FROM locked ON CONFLICT (\"user\", device_id, folder) \
                 DO UPDATE SET last_key = collection_keys.last_key + 1, last_key_at = $4 \
                 RETURNING last_key), \
                 gone AS (DELETE FROM collection_state WHERE \"user\" = $1 AND device_id = $2 \
                 AND folder = $3 AND sync_key != $5 AND sync_key NOT IN (SELECT last_key FROM k)), \
                 put AS (INSERT INTO collection_state (\"user\", device_id, folder, sync_key, snapshot) \
                 SELECT $1, $2, $3, last_key, $6 FROM k \
                 ON CONFLICT (\"user\", device_id, folder, sync_key) \
                 DO UPDATE SET snapshot = EXCLUDED.snapshot) \
                 SELECT last_key FROM k",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(folder))
            .bind(now)
            .bind(i64::from(keep.unwrap_or(0)))
            .bind(snapshot)
            .fetch_one(&mut *c)
            .await?;
            u32::try_from(k).map_err(|_| decode_err("sync key", k))
        })
    }

    fn collection_keys(&self, key: &DeviceKey, folder: u32) -> Result<Vec<u32>, StateError> {
        self.call(async |c| {
            let keys: Vec<i64> = sqlx::query_scalar(
                "SELECT sync_key FROM collection_state \
                 WHERE \"user\" = $1 AND device_id = $2 AND folder = $3 ORDER BY sync_key",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(folder))
            .fetch_all(&mut *c)
            .await?;
            keys.into_iter()
                .map(|k| u32::try_from(k).map_err(|_| decode_err("sync key", k)))
                .collect()
        })
    }

    fn collection_key_times(&self, key: &DeviceKey) -> Result<Vec<(u32, u64)>, StateError> {
        self.call(async |c| {
            sqlx::query(
                "SELECT folder, last_key_at FROM collection_keys \
                 WHERE \"user\" = $1 AND device_id = $2 ORDER BY folder",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| Ok((get_u32(r, 0)?, get_u64(r, 1)?)))
            .collect()
        })
    }

    fn replace_collection_state(
        &self,
        key: &DeviceKey,
        folder: u32,
        sync_key: u32,
        snapshot: &[u8],
    ) -> Result<(), StateError> {
        self.call(async |c| {
            sqlx::query(
                "UPDATE collection_state SET snapshot = $5 \
                 WHERE \"user\" = $1 AND device_id = $2 AND folder = $3 AND sync_key = $4",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(folder))
            .bind(i64::from(sync_key))
            .bind(snapshot)
            .execute(&mut *c)
            .await
            .map(|_| ())
        })
    }

    fn reset_collection(&self, key: &DeviceKey, folder: u32) -> Result<(), StateError> {
        self.call(async |c| {
            sqlx::query(
                "DELETE FROM collection_state WHERE \"user\" = $1 AND device_id = $2 \
                 AND folder = $3",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(i64::from(folder))
            .execute(&mut *c)
            .await
            .map(|_| ())
        })
    }

    fn memo(&self, key: &DeviceKey, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.call(async |c| {
            sqlx::query_scalar(
                "SELECT value FROM device_memos \
                 WHERE \"user\" = $1 AND device_id = $2 AND name = $3",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(name)
            .fetch_optional(&mut *c)
            .await
        })
    }

    fn put_memo(&self, key: &DeviceKey, name: &str, value: &[u8]) -> Result<(), StateError> {
        self.call(async |c| {
            sqlx::query(
                "INSERT INTO device_memos (\"user\", device_id, name, value, at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (\"user\", device_id, name) \
                 DO UPDATE SET value = EXCLUDED.value, at = EXCLUDED.at",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(name)
            .bind(value)
            .bind(super::unix_now() as i64)
            .execute(&mut *c)
            .await
            .map(|_| ())
        })
    }

    fn note_wait(&self, key: &DeviceKey, node: &str) -> Result<(), StateError> {
        self.call(async |c| {
            sqlx::query(&format!(
                "INSERT INTO waits (\"user\", device_id, node, at) VALUES ($1, $2, $3, {DB_NOW}) \
                 ON CONFLICT (\"user\", device_id) DO UPDATE SET node = EXCLUDED.node, at = EXCLUDED.at"
            ))
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(node)
            .execute(&mut *c)
            .await
            .map(|_| ())
        })
    }

    fn waits_elsewhere(
        &self,
        node: &str,
        since: Option<u64>,
    ) -> Result<(u64, Vec<DeviceKey>), StateError> {
        self.call(async |c| {
            let now: i64 = sqlx::query_scalar(&format!("SELECT {DB_NOW}"))
                .fetch_one(&mut *c)
                .await?;
            let now = u64::try_from(now).map_err(|_| decode_err("time", now))?;
            let Some(since) = since else {
                return Ok((now, Vec::new()));
            };
            // A second of overlap: `at` is in whole seconds, and a row seen twice is harmless.
            let keys =
                sqlx::query("SELECT \"user\", device_id FROM waits WHERE at >= $1 AND node <> $2")
                    .bind(since.saturating_sub(1) as i64)
                    .bind(node)
                    .fetch_all(&mut *c)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(DeviceKey {
                            user: r.try_get(0)?,
                            device_id: r.try_get(1)?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok((now, keys))
        })
    }

    fn expire_memos(&self, name: &str, written_before: u64) -> Result<usize, StateError> {
        self.call(async |c| {
            let n = sqlx::query("DELETE FROM device_memos WHERE name = $1 AND at < $2")
                .bind(name)
                .bind(written_before as i64)
                .execute(&mut *c)
                .await?
                .rows_affected();
            Ok(n as usize)
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
        self.call(async |c| {
            let mut tx = c.begin().await?;
            // Two nodes given the same retried SendMail decide one after the other.
            lock_device(&mut tx, key).await?;
            sqlx::query(
                "DELETE FROM sent_client_ids WHERE \"user\" = $1 AND device_id = $2 AND at < $3",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(now.saturating_sub(CLIENT_ID_RETENTION_SECS) as i64)
            .execute(&mut *tx)
            .await?;
            // With whether the claim's node said it was alive within the lease. The row is
            // locked and read as last committed: `commit_client_id` and `finish_client_id`
            // take no device lock, so a plain read could see 'sending' while the owner's
            // 'committing' is being written, and the upsert below would then overwrite it
            // (a node taken for dead while alive, both sending).
            let found = sqlx::query(
                &format!(
                    "SELECT c.state, c.at, c.owner, \
                     COALESCE(n.alive_at >= {DB_NOW} - $4, false) FROM sent_client_ids c \
                     LEFT JOIN nodes n ON n.node = c.owner \
                     WHERE c.\"user\" = $1 AND c.device_id = $2 AND c.client_id = $3 \
                     FOR UPDATE OF c"
                ),
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(client_id)
            .bind(NODE_LEASE_SECS as i64)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    StoredClaim {
                        state: r.try_get(0)?,
                        at: get_u64(&r, 1)?,
                        owner: r.try_get(2)?,
                    },
                    r.try_get::<bool, _>(3)?,
                ))
            })
            .transpose()?;
            let owner_alive = found.as_ref().is_some_and(|(_, alive)| *alive);
            let found = found.map(|(c, _)| c);
            let claim = claim_decision(found.as_ref(), owner_alive, node, now, stale_after);
            if claim == SendClaim::Claimed {
                sqlx::query(
                    "INSERT INTO sent_client_ids (\"user\", device_id, client_id, state, at, owner) \
                     VALUES ($1, $2, $3, 'sending', $4, $5) \
                     ON CONFLICT (\"user\", device_id, client_id) \
                     DO UPDATE SET state = 'sending', at = EXCLUDED.at, owner = EXCLUDED.owner",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(client_id)
                .bind(now as i64)
                .bind(node)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
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
        self.call(async |c| {
            let n = sqlx::query(
                "UPDATE sent_client_ids SET state = 'committing', at = $4 \
                 WHERE \"user\" = $1 AND device_id = $2 AND client_id = $3 \
                 AND state = 'sending' AND owner = $5",
            )
            .bind(&key.user)
            .bind(&key.device_id)
            .bind(client_id)
            .bind(now as i64)
            .bind(node)
            .execute(&mut *c)
            .await?
            .rows_affected();
            Ok(n == 1)
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
        self.call(async |c| {
            if sent {
                sqlx::query(
                    "UPDATE sent_client_ids SET state = 'sent', at = $4 \
                     WHERE \"user\" = $1 AND device_id = $2 AND client_id = $3 AND owner = $5",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(client_id)
                .bind(now as i64)
                .bind(node)
                .execute(&mut *c)
                .await?;
            } else {
                sqlx::query(
                    "DELETE FROM sent_client_ids \
                     WHERE \"user\" = $1 AND device_id = $2 AND client_id = $3 \
                     AND owner = $4 AND state <> 'sent'",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(client_id)
                .bind(node)
                .execute(&mut *c)
                .await?;
            }
            Ok(())
        })
    }

    fn node_alive(&self, node: &str) -> Result<(), StateError> {
        self.call(async |c| {
            sqlx::query(&format!(
                "INSERT INTO nodes (node, alive_at) VALUES ($1, {DB_NOW}) \
                 ON CONFLICT (node) DO UPDATE SET alive_at = EXCLUDED.alive_at"
            ))
            .bind(node)
            .execute(&mut *c)
            .await?;
            // Nodes gone for a day are forgotten (their claims expired long before).
            sqlx::query(&format!(
                "DELETE FROM nodes WHERE alive_at < {DB_NOW} - 86400"
            ))
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    fn device_keys(&self) -> Result<Vec<DeviceKey>, StateError> {
        let union = DEVICE_TABLES
            .iter()
            .map(|t| format!("SELECT \"user\", device_id FROM {t}"))
            .collect::<Vec<_>>()
            .join(" UNION ");
        let sql = format!(
            "SELECT * FROM ({union}) k ORDER BY \"user\" COLLATE \"C\", device_id COLLATE \"C\""
        );
        self.call(async |c| {
            sqlx::query(&sql)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| {
                    Ok(DeviceKey {
                        user: r.try_get(0)?,
                        device_id: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }

    fn export_device(&self, key: &DeviceKey) -> Result<DeviceExport, StateError> {
        let device_sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE \"user\" = $1 AND device_id = $2");
        self.call(async |c| {
            // One snapshot of the database for all the reads.
            let mut tx = c.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            let rows = |sql: &'static str| sqlx::query(sql).bind(&key.user).bind(&key.device_id);
            let device = rows_opt_device(&mut tx, &device_sql, key).await?;
            let folder_ids = rows(
                "SELECT id, mailbox FROM folder_ids WHERE \"user\" = $1 AND device_id = $2 \
                 ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((get_u32(r, 0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let hierarchy_keys = rows(
                "SELECT sync_key FROM hierarchy_keys WHERE \"user\" = $1 AND device_id = $2 \
                 ORDER BY sync_key",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| get_u32(r, 0))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let mut hierarchies = Vec::new();
            for sync_key in hierarchy_keys {
                let folders = rows(
                    "SELECT id, parent, display_name, kind, imap_name, uidvalidity \
                     FROM hierarchy WHERE \"user\" = $1 AND device_id = $2 \
                     AND sync_key = $3 ORDER BY id",
                )
                .bind(i64::from(sync_key))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(folder_from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
                hierarchies.push((sync_key, folders));
            }
            let collection_keys = rows(
                "SELECT folder, last_key, last_key_at FROM collection_keys \
                 WHERE \"user\" = $1 AND device_id = $2 ORDER BY folder",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((get_u32(r, 0)?, get_u32(r, 1)?, get_u64(r, 2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let collections = rows(
                "SELECT folder, sync_key, snapshot FROM collection_state \
                 WHERE \"user\" = $1 AND device_id = $2 ORDER BY folder, sync_key",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((get_u32(r, 0)?, get_u32(r, 1)?, r.try_get(2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let memos = rows(
                "SELECT name, value, at FROM device_memos \
                 WHERE \"user\" = $1 AND device_id = $2 ORDER BY name COLLATE \"C\"",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, get_u64(r, 2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let client_ids = rows(
                "SELECT client_id, state, at FROM sent_client_ids \
                 WHERE \"user\" = $1 AND device_id = $2 ORDER BY client_id COLLATE \"C\"",
            )
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, get_u64(r, 2)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            tx.commit().await?;
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
        let device_sql = format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        );
        self.call(async |c| {
            let key = &e.key;
            let mut tx = c.begin().await?;
            lock_device(&mut tx, key).await?;
            for table in DEVICE_TABLES {
                let exists: Option<i32> = sqlx::query_scalar(&format!(
                    "SELECT 1 FROM {table} WHERE \"user\" = $1 AND device_id = $2 LIMIT 1"
                ))
                .bind(&key.user)
                .bind(&key.device_id)
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_some() {
                    return Ok(false);
                }
            }
            if let Some(d) = &e.device {
                bind_device(sqlx::query(&device_sql), d)
                    .bind(d.version as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            for (id, mailbox) in &e.folder_ids {
                sqlx::query(
                    "INSERT INTO folder_ids (\"user\", device_id, id, mailbox) \
                         VALUES ($1, $2, $3, $4)",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(i64::from(*id))
                .bind(mailbox)
                .execute(&mut *tx)
                .await?;
            }
            for (sync_key, folders) in &e.hierarchies {
                insert_hierarchy(&mut tx, key, *sync_key, folders).await?;
            }
            for (folder, last_key, at) in &e.collection_keys {
                sqlx::query(
                    "INSERT INTO collection_keys (\"user\", device_id, folder, last_key, \
                         last_key_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(i64::from(*folder))
                .bind(i64::from(*last_key))
                .bind(*at as i64)
                .execute(&mut *tx)
                .await?;
            }
            for (folder, sync_key, snapshot) in &e.collections {
                sqlx::query(
                    "INSERT INTO collection_state \
                         (\"user\", device_id, folder, sync_key, snapshot) \
                         VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(i64::from(*folder))
                .bind(i64::from(*sync_key))
                .bind(snapshot)
                .execute(&mut *tx)
                .await?;
            }
            for (name, value, at) in &e.memos {
                sqlx::query(
                    "INSERT INTO device_memos (\"user\", device_id, name, value, at) \
                         VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(name)
                .bind(value)
                .bind(*at as i64)
                .execute(&mut *tx)
                .await?;
            }
            for (client_id, state, at) in &e.client_ids {
                sqlx::query(
                    "INSERT INTO sent_client_ids (\"user\", device_id, client_id, state, at) \
                         VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.user)
                .bind(&key.device_id)
                .bind(client_id)
                .bind(state)
                .bind(*at as i64)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }
}

async fn rows_opt_device(
    tx: &mut Tx<'_>,
    sql: &str,
    key: &DeviceKey,
) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query(sql)
        .bind(&key.user)
        .bind(&key.device_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| device_from_row(&r))
        .transpose()
}

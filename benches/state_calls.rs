//! What one [`StateStore`] call costs, SQLite against PostgreSQL on loopback, called the way
//! the gateway calls it: from a worker of a multi-threaded tokio runtime (the PostgreSQL
//! store then blocks in place), and from a plain thread (no hand-off of the worker), so the
//! two can be told apart.
//!
//! `cargo bench --bench state_calls -- [--iterations N]`
//!
//! PostgreSQL is reached over loopback TCP, and also through its Unix socket.
//!
//! The calls are the ones a no-change Sync makes, in its order (see docs/benchmarks.md,
//! "State in PostgreSQL against SQLite"), each timed alone, then the whole sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eas_gateway::state::{self, Device, DeviceKey, FolderEntry, StateStore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MEMO_SMALL: &str = "bench-collections";
const MEMO_LAST: &str = "bench-last";

/// One call of the sequence: its name and what it does.
type Call = (&'static str, fn(&dyn StateStore, &Fixture) -> Result<()>);

struct Fixture {
    key: DeviceKey,
    folder: u32,
    sync_key: u32,
    snapshot: Vec<u8>,
}

fn device(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.device(&f.key)?.ok_or("no device")?;
    Ok(())
}

fn memo(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.memo(&f.key, MEMO_SMALL)?.ok_or("no memo")?;
    Ok(())
}

fn latest_hierarchy_key(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.latest_hierarchy_key(&f.key)?.ok_or("no hierarchy")?;
    Ok(())
}

fn hierarchy(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.hierarchy(&f.key, 1)?.ok_or("no hierarchy")?;
    Ok(())
}

fn collection_state(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.collection_state(&f.key, f.folder, f.sync_key)?
        .ok_or("no snapshot")?;
    Ok(())
}

fn put_memo(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    s.put_memo(&f.key, MEMO_LAST, b"a fingerprint and no keys")?;
    Ok(())
}

fn update_device(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    let mut d = s.device(&f.key)?.ok_or("no device")?;
    d.last_seen += 1;
    if !s.update_device(&d)? {
        return Err("update_device lost a race nobody runs".into());
    }
    Ok(())
}

/// What a Sync request loads first since the reads were gathered (one statement on
/// PostgreSQL): the device, its two memos, the newest folder list and one key's snapshot.
fn load_for_sync(s: &dyn StateStore, f: &Fixture) -> Result<()> {
    let loaded = s.load(
        &f.key,
        &state::Wants {
            device: true,
            memos: vec![MEMO_SMALL, MEMO_LAST],
            hierarchy: true,
            snapshots: vec![(f.folder, f.sync_key)],
        },
    )?;
    if loaded.device.is_none() || loaded.snapshots.len() != 1 {
        return Err("load missed the device or the snapshot".into());
    }
    Ok(())
}

const CALLS: [Call; 8] = [
    ("load (a Sync's)", load_for_sync),
    ("device", device),
    ("memo", memo),
    ("latest_hierarchy_key", latest_hierarchy_key),
    ("hierarchy", hierarchy),
    ("collection_state", collection_state),
    ("put_memo", put_memo),
    ("device + update_device", update_device),
];

fn setup(s: &dyn StateStore) -> Result<Fixture> {
    let key = DeviceKey {
        user: "bench@example.org".into(),
        device_id: "BENCH0001".into(),
    };
    s.insert_device(&Device::new(key.clone(), "iPhone"))?;
    let folders: Vec<FolderEntry> = (1..=12)
        .map(|id| FolderEntry {
            id,
            parent: 0,
            display_name: format!("Folder {id}"),
            kind: if id == 1 { 2 } else { 12 },
            imap_name: if id == 1 {
                "INBOX".into()
            } else {
                format!("Folder {id}")
            },
            uidvalidity: 1,
        })
        .collect();
    s.put_hierarchy(&key, 1, &folders)?;
    s.put_memo(&key, MEMO_SMALL, &[7u8; 200])?;
    // About what a snapshot of 1,000 messages weighs.
    let snapshot = vec![3u8; 6_000];
    let sync_key = s.mint_collection_state(&key, 1, None, &snapshot)?;
    Ok(Fixture {
        key,
        folder: 1,
        sync_key,
        snapshot,
    })
}

/// p50 of each call and of the whole sequence, in microseconds.
fn measure(s: &dyn StateStore, f: &Fixture, iterations: usize) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for (_, call) in CALLS {
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations + 50 {
            let started = Instant::now();
            call(s, f)?;
            if i >= 50 {
                times.push(started.elapsed());
            }
        }
        out.push(p50(&mut times));
    }
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations + 50 {
        let started = Instant::now();
        for (_, call) in CALLS {
            call(s, f)?;
        }
        if i >= 50 {
            times.push(started.elapsed());
        }
    }
    out.push(p50(&mut times));
    debug_assert!(!f.snapshot.is_empty());
    Ok(out)
}

fn p50(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times[times.len() / 2].as_secs_f64() * 1e6
}

fn main() -> Result<()> {
    let mut iterations = 2_000;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {}
            "--iterations" => {
                iterations = it.next().ok_or("--iterations needs a value")?.parse()?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}\nusage: cargo bench --bench state_calls -- \
                     [--iterations N]"
                )
                .into());
            }
        }
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("state_calls: {cpus} CPUs, {iterations} iterations; p50 in µs");
    let dir = tempfile::tempdir()?;
    let pg = eas_testbed::Postgres::start()?;
    let stores: Vec<(&str, Arc<dyn StateStore>)> = vec![
        (
            "SQLite",
            state::open(&format!(
                "sqlite:{}",
                dir.path().join("state.sqlite").display()
            ))?,
        ),
        ("PostgreSQL", state::open(&pg.fresh_database()?)?),
        // The same server through its Unix socket (in the cluster's directory), as a
        // gateway on the database's machine could reach it.
        ("PostgreSQL, Unix socket", {
            let url = pg.fresh_database()?;
            let dir = pg.log_path();
            let dir = dir.parent().ok_or("the cluster has no directory")?;
            state::open(&format!("{url}?host={}", dir.display()))?
        }),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, store) in &stores {
        let fixture = Arc::new(setup(store.as_ref())?);
        // As the gateway calls it: on a runtime worker.
        let (s, f) = (store.clone(), fixture.clone());
        let on_worker = runtime.block_on(async move {
            tokio::spawn(async move { measure(s.as_ref(), &f, iterations) })
                .await
                .map_err(|e| e.to_string())?
        })?;
        rows.push((format!("{name}, runtime worker"), on_worker));
        let plain = measure(store.as_ref(), &fixture, iterations)?;
        rows.push((format!("{name}, plain thread"), plain));
    }
    print!("{:<40}", "");
    for (call, _) in CALLS {
        print!(" | {call}");
    }
    println!(" | the sequence");
    for (name, row) in rows {
        print!("{name:<40}");
        for v in row {
            print!(" | {v:.0}");
        }
        println!();
    }
    drop(stores);
    apart(&runtime, &pg, iterations)?;
    drop(runtime);
    Ok(())
}

/// The same read as the `memo` call, with sqlx alone, taken apart: through the pool (which
/// pings every connection it gets back), on one connection kept out of the pool, and that
/// connection driven from another thread as the store drives its runtime.
fn apart(runtime: &tokio::runtime::Runtime, pg: &eas_testbed::Postgres, n: usize) -> Result<()> {
    use sqlx::Connection;
    let url = pg.fresh_database()?;
    let sql = "SELECT value FROM t WHERE k = $1";
    let results = runtime.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect(&url)
            .await?;
        sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY, value BYTEA)")
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO t VALUES ('a', '\\x00')")
            .execute(&pool)
            .await?;
        let mut times = Vec::new();
        for i in 0..n + 50 {
            let started = Instant::now();
            sqlx::query(sql).bind("a").fetch_optional(&pool).await?;
            if i >= 50 {
                times.push(started.elapsed());
            }
        }
        let via_pool = p50(&mut times);
        let mut conn = pool.acquire().await?;
        let mut times = Vec::new();
        for i in 0..n + 50 {
            let started = Instant::now();
            sqlx::query(sql)
                .bind("a")
                .fetch_optional(&mut *conn)
                .await?;
            if i >= 50 {
                times.push(started.elapsed());
            }
        }
        let kept = p50(&mut times);
        let mut times = Vec::new();
        for i in 0..n + 50 {
            let started = Instant::now();
            conn.ping().await?;
            if i >= 50 {
                times.push(started.elapsed());
            }
        }
        let ping = p50(&mut times);
        drop(conn);
        pool.close().await;
        Ok::<_, sqlx::Error>([via_pool, kept, ping])
    })?;
    // A connection on a runtime of its own, driven from a plain thread by block_on (the
    // store's path) against one owned by a current-thread runtime that the calling thread
    // drives itself.
    let store_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut conn = store_rt.block_on(sqlx::PgConnection::connect(&url))?;
    let mut times = Vec::new();
    for i in 0..n + 50 {
        let started = Instant::now();
        store_rt
            .handle()
            .block_on(sqlx::query(sql).bind("a").fetch_optional(&mut conn))?;
        if i >= 50 {
            times.push(started.elapsed());
        }
    }
    let handed = p50(&mut times);
    store_rt.block_on(conn.close())?;
    drop(store_rt);
    let own_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut conn = own_rt.block_on(sqlx::PgConnection::connect(&url))?;
    let mut times = Vec::new();
    for i in 0..n + 50 {
        let started = Instant::now();
        own_rt.block_on(sqlx::query(sql).bind("a").fetch_optional(&mut conn))?;
        if i >= 50 {
            times.push(started.elapsed());
        }
    }
    let driven = p50(&mut times);
    own_rt.block_on(conn.close())?;
    println!(
        "one SELECT by key, sqlx alone (µs): through the pool {:.0}; on a kept connection {:.0} \
         (a ping alone {:.0}); kept connection on another runtime, block_on from a plain \
         thread {handed:.0}; on a current-thread runtime the caller drives {driven:.0}",
        results[0], results[1], results[2]
    );
    Ok(())
}

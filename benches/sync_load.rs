//! Load benchmarks for email Sync: a private Dovecot (`eas_testbed`), the gateway
//! in process on plain HTTP over loopback (SQLite state in a temporary directory,
//! `eas_testbed::Gateway`), and a simulated iPhone speaking WBXML with reqwest (the tests'
//! `eas_testbed::Phone`; the timed Syncs are sent and read by this file, see [`timed_post`]
//! and [`read_page`]).
//!
//! ```text
//! cargo bench --bench sync_load -- [initial] [idle] [memory] [flags]
//! ```
//!
//! Phases (all three when none is named):
//! - `initial`: the initial sync of an INBOX of `--messages` (10,000) realistic messages
//!   through the gateway (Provision, FolderSync, Sync key 0, then pages of WindowSize 100 with
//!   HTML TruncationSize 32768 until MoreAvailable is gone), against fetching the same
//!   messages straight from Dovecot with our IMAP client (SELECT, `UID FETCH 1:* (UID
//!   FLAGS)`, then `UID FETCH` in batches of 100 of `(FLAGS INTERNALDATE RFC822.SIZE
//!   BODY.PEEK[])`).
//! - `idle`: for each of `--idle-sizes` (1000,10000), a device syncs the whole mailbox once
//!   (windows of `--setup-window`, 512), then sends `--iterations` (500) identical Syncs with
//!   nothing new; the loopback round trip of each is recorded (p50/p95/p99).
//! - `memory`: a device pages through an INBOX of `--memory-messages` (20,000) with
//!   WindowSize 100 while a thread samples this process's VmRSS every 5 ms; RSS is reported
//!   after every tenth of the folder, plus VmHWM.
//!
//! - `search`: for each of `--search-sizes` (10,000 and 100,000), three mailbox Searches
//!   (a word in nearly every message, a sender's name in about a tenth, a subject tag in
//!   one or a few) with Range 0-24 and a 256-byte plain-text body, `--search-iterations`
//!   times each, against the same work straight over IMAP on one logged-in session: SELECT,
//!   `UID SORT (REVERSE ARRIVAL) UTF-8 TEXT …`, `UID FETCH` of the 25 newest (dates, then
//!   whole), UNSELECT. The bare `SELECT` + `UID SEARCH` is reported too (Dovecot's own share).
//!
//! Mailboxes are filled by writing Maildir files straight into the testbed's maildir before
//! Dovecot first opens the mailbox (`--fill append` uses IMAP APPEND over one connection
//! instead); a SELECT then indexes them, outside every timing. Messages are generated
//! deterministically (see [`Generator`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eas_gateway::imap::{FetchQuery, ImapConfig, SequenceSet, Session};
use eas_testbed::{Dovecot, Gateway, Phone, TestUser, find_text};
use eas_wbxml::Element;
use eas_wbxml::tags::airsync as a;

#[path = "common/mailgen.rs"]
mod mailgen;

// The gateway runs in this process: measure it with the allocator the `eas-gateway` binary
// ships with (src/main.rs), not the system's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use mailgen::Generator;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const DOMAIN: &str = "example.com";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Maildir,
    Append,
}

#[derive(Debug, Clone)]
struct Args {
    initial: bool,
    idle: bool,
    memory: bool,
    search: bool,
    messages: usize,
    rounds: usize,
    idle_sizes: Vec<usize>,
    iterations: usize,
    setup_window: usize,
    memory_messages: usize,
    fill: Fill,
    search_sizes: Vec<usize>,
    search_iterations: usize,
    fts: bool,
    probe: bool,
    read_ahead: bool,
    postgres: bool,
    pg_socket: bool,
    pg_sql: Vec<String>,
    pg_trace: usize,
}

const USAGE: &str = "\
usage: cargo bench --bench sync_load -- [initial] [idle] [memory] [search] [options]
  --messages N          initial: INBOX size (10000)
  --rounds N            initial: timed rounds of (raw IMAP, gateway) (1)
  --probe               initial: also time each IMAP step of a page on kept, fresh and
                        re-selecting sessions
  --no-read-ahead       the gateway computes each page only when asked ([sync] read_ahead
                        = false)
  --postgres            state in a private PostgreSQL cluster (eas_testbed::Postgres, on
                        loopback) instead of SQLite in a temporary directory
  --pg-socket           with --postgres: reach it through its Unix socket, not loopback TCP
  --pg-sql STATEMENT    with --postgres: run it on the state database once the gateway has
                        created its tables (a storage setting to try); may be repeated
  --pg-trace N          with --postgres; idle: after the timed Syncs, N more with every
                        statement logged with its duration, and that log printed; initial:
                        one more initial sync so logged, summed by statement (N > 0)
  --idle-sizes A,B,..   idle: mailbox sizes (1000,10000)
  --iterations N        idle: no-change Syncs per size (500)
  --setup-window N      idle: WindowSize of the one-off full sync before measuring (512)
  --memory-messages N   memory: INBOX size paged with WindowSize 100 (20000)
  --fill maildir|append how mailboxes are filled (maildir)
  --search-sizes A,B,.. search: mailbox sizes (10000,100000)
  --search-iterations N search: timed repetitions of each query (20)
  --fts                 Dovecot with its full-text index (fts_xapian; apt-get install -y
                        dovecot-fts-xapian)";

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            initial: false,
            idle: false,
            memory: false,
            search: false,
            messages: 10_000,
            rounds: 1,
            idle_sizes: vec![1_000, 10_000],
            iterations: 500,
            setup_window: 512,
            memory_messages: 20_000,
            fill: Fill::Maildir,
            search_sizes: vec![10_000, 100_000],
            search_iterations: 20,
            fts: false,
            probe: false,
            read_ahead: true,
            postgres: false,
            pg_socket: false,
            pg_sql: Vec::new(),
            pg_trace: 0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "initial" => args.initial = true,
                "idle" => args.idle = true,
                "memory" => args.memory = true,
                "search" => args.search = true,
                "--fts" => args.fts = true,
                "--probe" => args.probe = true,
                "--no-read-ahead" => args.read_ahead = false,
                "--postgres" => args.postgres = true,
                "--pg-socket" => args.pg_socket = true,
                "--pg-sql" => args.pg_sql.push(value()?),
                "--pg-trace" => args.pg_trace = value()?.parse()?,
                "--search-sizes" => {
                    args.search_sizes = value()?
                        .split(',')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()?
                }
                "--search-iterations" => args.search_iterations = value()?.parse::<usize>()?.max(1),
                "--messages" => args.messages = value()?.parse()?,
                "--rounds" => args.rounds = value()?.parse::<usize>()?.max(1),
                "--idle-sizes" => {
                    args.idle_sizes = value()?
                        .split(',')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()?
                }
                "--iterations" => args.iterations = value()?.parse::<usize>()?.max(1),
                "--setup-window" => args.setup_window = value()?.parse()?,
                "--memory-messages" => args.memory_messages = value()?.parse()?,
                "--fill" => {
                    args.fill = match value()?.as_str() {
                        "maildir" => Fill::Maildir,
                        "append" => Fill::Append,
                        other => return Err(format!("unknown fill {other:?}").into()),
                    }
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        if !(args.initial || args.idle || args.memory || args.search) {
            args.initial = true;
            args.idle = true;
            args.memory = true;
        }
        Ok(args)
    }
}

// ---------------------------------------------------------------------------------------------
// Filling a mailbox

struct FillReport {
    bytes: u64,
    write: Duration,
    index: Duration,
}

/// Fills the INBOX of `login` (which Dovecot must not have opened yet for `Fill::Maildir`)
/// with messages `0..n`, then SELECTs it once so Dovecot has indexed everything.
async fn fill(dovecot: &Dovecot, user: &TestUser, n: usize, how: Fill) -> Result<FillReport> {
    let started = Instant::now();
    let bytes = match how {
        Fill::Maildir => tokio::task::block_in_place(|| {
            dovecot.write_inbox(
                &user.login,
                (0..n).map(|i| {
                    let m = Generator::message(i);
                    eas_testbed::MaildirMessage {
                        raw: m.raw,
                        date: m.date,
                        seen: m.seen,
                        flagged: m.flagged,
                    }
                }),
            )
        })?,
        Fill::Append => {
            let mut s = login(&dovecot.imap_config(), user).await?;
            let mut bytes = 0u64;
            for i in 0..n {
                let m = Generator::message(i);
                let mut flags = Vec::new();
                if m.seen {
                    flags.push("\\Seen");
                }
                if m.flagged {
                    flags.push("\\Flagged");
                }
                bytes += m.raw.len() as u64;
                s.append("INBOX", &flags, &m.raw).await?;
            }
            let _ = s.logout().await;
            bytes
        }
    };
    let write = started.elapsed();
    let started = Instant::now();
    let mut s = login(&dovecot.imap_config(), user).await?;
    let st = s.select("INBOX").await?;
    let _ = s.logout().await;
    if st.exists as usize != n {
        return Err(format!("INBOX holds {} messages, expected {n}", st.exists).into());
    }
    Ok(FillReport {
        bytes,
        write,
        index: started.elapsed(),
    })
}

async fn login(cfg: &ImapConfig, user: &TestUser) -> Result<Session> {
    let mut s = Session::connect(cfg).await?;
    s.login(&user.login, &user.password).await?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// The raw IMAP baseline

struct RawReport {
    wall: Duration,
    messages: usize,
    bytes: u64,
}

/// What the gateway needs, fetched straight from Dovecot on one connection.
async fn raw_imap(cfg: &ImapConfig, user: &TestUser) -> Result<RawReport> {
    let started = Instant::now();
    let mut s = login(cfg, user).await?;
    s.select("INBOX").await?;
    let listing = s.uid_fetch_flags(&SequenceSet::all()).await?;
    let mut uids: Vec<u32> = listing.iter().map(|m| m.uid).collect();
    // Newest first, as the gateway pages.
    uids.sort_unstable_by(|a, b| b.cmp(a));
    let query = FetchQuery::new().flags().internal_date().size().body();
    let (mut messages, mut bytes) = (0, 0u64);
    for chunk in uids.chunks(100) {
        let set: SequenceSet = chunk.iter().collect();
        for f in s.uid_fetch(&set, &query).await? {
            messages += 1;
            bytes += f.body().map_or(0, |b| b.len() as u64);
        }
    }
    let _ = s.logout().await;
    Ok(RawReport {
        wall: started.elapsed(),
        messages,
        bytes,
    })
}

/// The same fetches with a new IMAP session (connect, LOGIN, ENABLE QRESYNC, SELECT, the
/// batch, LOGOUT) per batch of 100: what the gateway's one-session-per-request costs Dovecot.
async fn raw_imap_session_per_batch(cfg: &ImapConfig, user: &TestUser) -> Result<RawReport> {
    let started = Instant::now();
    let mut s = login(cfg, user).await?;
    s.select("INBOX").await?;
    let listing = s.uid_fetch_flags(&SequenceSet::all()).await?;
    let _ = s.logout().await;
    let mut uids: Vec<u32> = listing.iter().map(|m| m.uid).collect();
    uids.sort_unstable_by(|a, b| b.cmp(a));
    let query = FetchQuery::new().flags().internal_date().size().body();
    let (mut messages, mut bytes) = (0, 0u64);
    for chunk in uids.chunks(100) {
        let mut s = login(cfg, user).await?;
        s.enable_qresync().await?;
        s.select("INBOX").await?;
        let set: SequenceSet = chunk.iter().collect();
        for f in s.uid_fetch(&set, &query).await? {
            messages += 1;
            bytes += f.body().map_or(0, |b| b.len() as u64);
        }
        let _ = s.logout().await;
    }
    Ok(RawReport {
        wall: started.elapsed(),
        messages,
        bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// The gateway and the phone

/// The gateway in this process ([`Gateway`], shared with the tests) as the phases need it.
async fn start_gateway(
    imap: ImapConfig,
    read_ahead: bool,
    state_url: Option<String>,
) -> Result<Gateway> {
    Ok(Gateway::try_start(imap, |config| {
        if let Some(url) = state_url {
            config.state.url = url;
        }
        // Searches of big folders without a full-text index keep Dovecot silent for long:
        // let the Search deadline (45 s, status 10) decide, not the IMAP inactivity timeout.
        config.imap.timeout_secs = 120;
        config.sync.read_ahead = read_ahead;
    })
    .await?)
}

/// One collection of a Sync answer.
#[derive(Debug, Default)]
struct Page {
    key: String,
    status: String,
    more: bool,
    adds: usize,
    commands: usize,
}

/// POSTs an encoded command with the shared [`Phone`]; the body and the round trip (from
/// sending the request to the last byte of the answer; building it and decoding the answer
/// are left out). Local rather than `Phone::try_post` because the timed span must hold no
/// more than the exchange, and the body stays the `Bytes` reqwest hands out (no copy of a
/// 1 MB page).
async fn timed_post(phone: &Phone, cmd: &str, body: Vec<u8>) -> Result<(bytes::Bytes, Duration)> {
    let req = phone.request(cmd, body);
    let started = Instant::now();
    let r = req.send().await?;
    let status = r.status();
    let bytes = r.bytes().await?;
    let took = started.elapsed();
    if !status.is_success() {
        return Err(format!("{cmd}: HTTP {status}").into());
    }
    Ok((bytes, took))
}

/// The Sync request an iPhone sends for a mail folder (its own rather than
/// `Phone::try_sync`: the bench encodes it once and POSTs the same bytes again and again, and
/// reads the answer with [`read_page`]).
fn sync_request(key: &str, collection: &str, window: usize) -> Vec<u8> {
    let options = if key == "0" {
        String::new()
    } else {
        format!(
            "<DeletesAsMoves>1</DeletesAsMoves><GetChanges>1</GetChanges>\
             <WindowSize>{window}</WindowSize><Options><FilterType>0</FilterType>\
             <airsyncbase:BodyPreference><airsyncbase:Type>2</airsyncbase:Type>\
             <airsyncbase:TruncationSize>32768</airsyncbase:TruncationSize>\
             </airsyncbase:BodyPreference></Options>"
        )
    };
    let xml = format!(
        r#"<Sync xmlns="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{collection}</CollectionId>{options}</Collection></Collections></Sync>"#
    );
    eas_wbxml::from_xml(&xml)
        .expect("the Sync request is well formed")
        .encode()
}

/// The parts of a Sync answer the phone acts on, read with the streaming decoder: building
/// the whole tree of a 1 MB page cost this process (which shares the machine's cores with
/// the gateway and Dovecot) ~1 ms a page. Every token is still decoded, so a malformed
/// answer fails here as it would in the tree decoder.
fn read_page(body: &[u8]) -> Result<Page> {
    use eas_wbxml::reader::{Event, Reader};
    let mut r = Reader::new(body)?;
    let mut path: Vec<eas_wbxml::Tag> = Vec::new();
    let mut page = Page::default();
    let mut collections = 0;
    let in_collection = |path: &[eas_wbxml::Tag]| {
        path.len() >= 3 && path[path.len() - 1] == a::Collection && path[1] == a::Collections
    };
    while let Some(event) = r.next()? {
        match event {
            Event::Start(tag) | Event::Empty(tag) => {
                if tag == a::Collection && path.last() == Some(&a::Collections) {
                    collections += 1;
                }
                if in_collection(&path) && tag == a::MoreAvailable {
                    page.more = true;
                }
                if path.len() >= 2
                    && path[path.len() - 1] == a::Commands
                    && path[path.len() - 2] == a::Collection
                {
                    page.commands += 1;
                    page.adds += usize::from(tag == a::Add);
                }
                if matches!(event, Event::Start(_)) {
                    path.push(tag);
                }
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let n = path.len();
                if n >= 2 && in_collection(&path[..n - 1]) {
                    match path[n - 1] {
                        t_ if t_ == a::SyncKey => page.key.push_str(t),
                        t_ if t_ == a::Status => page.status.push_str(t),
                        _ => {}
                    }
                }
            }
            Event::Opaque(_) => {}
        }
    }
    if collections != 1 {
        return Err(format!(
            "{collections} Collections in {}",
            eas_wbxml::to_xml(&Element::decode(body)?)
        )
        .into());
    }
    Ok(page)
}

/// What one full initial sync took.
struct SyncReport {
    wall: Duration,
    /// Sum of the Sync round trips (the phone's decoding left out).
    server: Duration,
    pages: usize,
    adds: usize,
    bytes: u64,
    key: String,
}

/// Sync key 0, then pages of `window` until MoreAvailable is gone. `each_page(adds so far,
/// the page's round trip)` runs after every page.
async fn sync_all(
    phone: &Phone,
    collection: &str,
    window: usize,
    mut each_page: impl FnMut(usize, Duration),
) -> Result<SyncReport> {
    let started = Instant::now();
    let (body, mut server) =
        timed_post(phone, "Sync", sync_request("0", collection, window)).await?;
    let first = read_page(&body)?;
    if first.status != "1" {
        return Err(format!("Sync key 0: status {}", first.status).into());
    }
    let (mut key, mut pages, mut adds, mut bytes) = (first.key, 0, 0, 0u64);
    loop {
        let (body, took) =
            timed_post(phone, "Sync", sync_request(&key, collection, window)).await?;
        server += took;
        bytes += body.len() as u64;
        let page = read_page(&body)?;
        if page.status != "1" {
            return Err(format!("Sync page {pages}: status {}", page.status).into());
        }
        pages += 1;
        adds += page.adds;
        key = page.key;
        each_page(adds, took);
        if !page.more {
            break;
        }
    }
    Ok(SyncReport {
        wall: started.elapsed(),
        server,
        pages,
        adds,
        bytes,
        key,
    })
}

// ---------------------------------------------------------------------------------------------
// Memory

/// VmRSS or VmHWM of this process, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A thread sampling VmRSS every 5 ms; remembers the maximum since the last reset.
struct RssSampler {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let max = Arc::new(AtomicU64::new(status_kib("VmRSS:")));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                m.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        RssSampler {
            max,
            stop,
            thread: Some(thread),
        }
    }

    fn max_kib(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// The phases

struct Bench {
    dovecot: Dovecot,
    gateway: Gateway,
    args: Args,
    devices: usize,
    /// With --postgres: the cluster and the state database's name. After the gateway, so it
    /// is dropped after it.
    postgres: Option<(eas_testbed::Postgres, String)>,
}

impl Bench {
    /// A new user (Dovecot re-reads its passwd-file within a second).
    fn user(&self, name: &str) -> Result<TestUser> {
        let u = TestUser::new(format!("{name}@{DOMAIN}"), format!("{name}-Bench-1"));
        self.dovecot.add_user(&u)?;
        Ok(u)
    }

    async fn filled_user(&self, name: &str, n: usize) -> Result<TestUser> {
        let u = self.user(name)?;
        let f = fill(&self.dovecot, &u, n, self.args.fill).await?;
        println!(
            "  filled {name}: {n} messages, {:.1} MB, {:?} in {:.1} s; Dovecot indexed them in \
             {:.1} s (first SELECT, not timed below)",
            f.bytes as f64 / 1e6,
            self.args.fill,
            f.write.as_secs_f64(),
            f.index.as_secs_f64()
        );
        Ok(u)
    }

    /// A provisioned phone that has done its FolderSync; with the INBOX's CollectionId.
    async fn phone(&mut self, user: &TestUser) -> Result<(Phone, String)> {
        self.devices += 1;
        let device = format!("BENCH{:04}", self.devices);
        let mut p = Phone::new(&self.gateway, &user.login, &user.password, &device);
        p.try_provision().await?;
        let inbox = p.try_inbox().await?;
        Ok((p, inbox))
    }

    async fn initial(&mut self) -> Result<()> {
        let n = self.args.messages;
        println!("\n== initial: INBOX of {n} messages, WindowSize 100, HTML TruncationSize 32768");
        let user = self.filled_user("initial", n).await?;
        let cfg = self.dovecot.imap_config();
        let warm = raw_imap(&cfg, &user).await?;
        println!(
            "  warm-up raw IMAP pass (untimed): {} messages, {:.1} MB in {:.2} s",
            warm.messages,
            warm.bytes as f64 / 1e6,
            warm.wall.as_secs_f64()
        );
        let (mut ratios, mut gateway_times, mut raw_times) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=self.args.rounds {
            if self.args.probe && round == 1 {
                raw_probe(&cfg, &user).await?;
            }
            let raw = raw_imap(&cfg, &user).await?;
            let before = self.gateway.state.read_ahead.counts().get();
            let started = Instant::now();
            let (phone, inbox) = self.phone(&user).await?;
            let setup = started.elapsed();
            let s = sync_all(&phone, &inbox, 100, |_, _| {}).await?;
            let total = setup + s.wall;
            if s.adds != n || raw.messages != n {
                return Err(format!(
                    "gateway sent {} Adds, raw IMAP fetched {}; expected {n}",
                    s.adds, raw.messages
                )
                .into());
            }
            let after = self.gateway.state.read_ahead.counts().get();
            let [started_, refused, used, stale, dropped] =
                std::array::from_fn(|i| after[i] - before[i]);
            println!(
                "  round {round}: pages read ahead: {started_} started, {used} used, {stale} \
                 stale, {dropped} dropped, {refused} refused"
            );
            let per_batch = raw_imap_session_per_batch(&cfg, &user).await?;
            let ratio = total.as_secs_f64() / raw.wall.as_secs_f64();
            ratios.push(ratio);
            gateway_times.push(total.as_secs_f64());
            raw_times.push(raw.wall.as_secs_f64());
            println!(
                "  round {round}: raw IMAP {:.2} s ({:.1} MB of messages) | gateway {:.2} s \
                 (Provision+FolderSync {:.0} ms, {} Sync pages, Sync round trips {:.2} s, \
                 {:.1} MB of WBXML) | ratio {:.2}x",
                raw.wall.as_secs_f64(),
                raw.bytes as f64 / 1e6,
                total.as_secs_f64(),
                setup.as_secs_f64() * 1e3,
                s.pages,
                s.server.as_secs_f64(),
                s.bytes as f64 / 1e6,
                ratio
            );
            println!(
                "  round {round}: raw IMAP with a new session per batch of 100 (as the gateway \
                 does per request): {:.2} s ({:.2}x the one-session figure)",
                per_batch.wall.as_secs_f64(),
                per_batch.wall.as_secs_f64() / raw.wall.as_secs_f64()
            );
        }
        if self.args.pg_trace > 0 {
            self.pg_trace_initial(&user).await?;
        }
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        // On a shared machine a round can be slowed by neighbours; the fastest round of each
        // side is the least disturbed estimate of its cost, reported next to the median.
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "  RESULT initial: gateway / raw IMAP = {median:.2}x (median of {} rounds; best \
             round of each: {:.2} s / {:.2} s = {:.2}x) (target <= 1.5x): {}",
            ratios.len(),
            best(&gateway_times),
            best(&raw_times),
            best(&gateway_times) / best(&raw_times),
            if median <= 1.5 { "met" } else { "NOT met" }
        );
        Ok(())
    }

    async fn idle(&mut self) -> Result<()> {
        let sizes = self.args.idle_sizes.clone();
        for n in sizes {
            println!(
                "\n== idle: no-change Sync, INBOX of {n} messages, {} iterations",
                self.args.iterations
            );
            let user = self.filled_user(&format!("idle{n}"), n).await?;
            let (phone, inbox) = self.phone(&user).await?;
            let window = self.args.setup_window;
            let s = sync_all(&phone, &inbox, window, |_, _| {}).await?;
            println!(
                "  one-off full sync with WindowSize {window}: {} Adds in {} pages, {:.1} s",
                s.adds,
                s.pages,
                s.wall.as_secs_f64()
            );
            if s.adds != n {
                return Err(format!("full sync sent {} Adds, expected {n}", s.adds).into());
            }
            let request = sync_request(&s.key, &inbox, 100);
            let mut times = Vec::with_capacity(self.args.iterations);
            for i in 0..self.args.iterations + 20 {
                let (body, took) = timed_post(&phone, "Sync", request.clone()).await?;
                let page = read_page(&body)?;
                if page.status != "1" || page.commands != 0 || page.key != s.key {
                    return Err(format!(
                        "no-change Sync answered status {} with {} commands, key {}",
                        page.status, page.commands, page.key
                    )
                    .into());
                }
                // The first 20 warm up connections and caches.
                if i >= 20 {
                    times.push(took);
                }
            }
            if self.args.pg_trace > 0 {
                self.pg_trace(&phone, &request).await?;
            }
            let (floor, kept) = imap_floor(&self.dovecot.imap_config(), &user).await?;
            let [p50, p95, p99] = percentiles(&mut times);
            println!(
                "  RESULT idle {n}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
                 (target p50 <= 2 ms)",
                ms(p50),
                ms(p95),
                ms(p99),
                ms(*times.last().unwrap_or(&Duration::ZERO))
            );
            println!(
                "  for comparison, p50 of IMAP connect + LOGIN + STATUS + LOGOUT: {:.2} ms; of \
                 STATUS on a session kept open: {:.2} ms; of decoding a stored snapshot of {n} \
                 items (done on every Sync): {:.2} ms",
                ms(floor),
                ms(kept),
                ms(snapshot_decode(n))
            );
        }
        Ok(())
    }

    /// The cluster and the state database's name, which `--pg-trace` needs.
    fn pg(&self) -> Result<(&eas_testbed::Postgres, &str)> {
        match &self.postgres {
            Some((pg, db)) => Ok((pg, db)),
            None => Err("--pg-trace needs --postgres".into()),
        }
    }

    /// Turns statement logging on (`log_min_duration_statement = 0`) and returns where the
    /// server's log stands, for [`Bench::pg_log_end`].
    fn pg_log_start(&self) -> Result<u64> {
        self.pg_log_set("0")?;
        Ok(std::fs::metadata(self.pg()?.0.log_path())?.len())
    }

    /// Turns statement logging off and returns what the server logged since `from`.
    fn pg_log_end(&self, from: u64) -> Result<String> {
        let log = std::fs::read(self.pg()?.0.log_path())?;
        self.pg_log_set("-1")?;
        Ok(String::from_utf8_lossy(&log[from as usize..]).into_owned())
    }

    fn pg_log_set(&self, value: &str) -> Result<()> {
        let (pg, db) = self.pg()?;
        // ALTER SYSTEM refuses to run in a transaction block: one statement per psql.
        pg.psql(
            db,
            &format!("ALTER SYSTEM SET log_min_duration_statement = {value}"),
        )?;
        pg.psql(db, "SELECT pg_reload_conf()")?;
        // Backends read the reloaded file at their next command; give the signal time.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Logs every statement of `--pg-trace` more no-change Syncs, with its duration, and
    /// prints that log: which calls a Sync makes, and what the server spends on each.
    async fn pg_trace(&self, phone: &Phone, request: &[u8]) -> Result<()> {
        let from = self.pg_log_start()?;
        let started = Instant::now();
        for _ in 0..self.args.pg_trace {
            timed_post(phone, "Sync", request.to_vec()).await?;
        }
        let wall = started.elapsed();
        let trace = PgTrace::parse(&self.pg_log_end(from)?);
        let n = self.args.pg_trace;
        println!(
            "  pg-trace: server time a Sync by step: {}",
            trace.steps_per(n)
        );
        println!(
            "  pg-trace: {n} no-change Syncs in {:.2} ms (logging slows them): {} statements \
             ({:.1} a Sync), server time {:.3} ms a Sync (parse + bind + execute); the last \
             Sync's:",
            ms(wall),
            trace.statements.len(),
            trace.statements.len() as f64 / n as f64,
            trace.server_ms / n as f64
        );
        let per = trace.statements.len() / n.max(1);
        for (sql, _) in &trace.statements[trace.statements.len() - per..] {
            println!("    {sql}");
        }
        Ok(())
    }

    /// One more initial sync (not timed against raw IMAP) with every statement logged: what
    /// the server spends a page, by statement.
    async fn pg_trace_initial(&mut self, user: &TestUser) -> Result<()> {
        let from = self.pg_log_start()?;
        let started = Instant::now();
        let (phone, inbox) = self.phone(user).await?;
        let s = sync_all(&phone, &inbox, 100, |_, _| {}).await?;
        let wall = started.elapsed();
        let trace = PgTrace::parse(&self.pg_log_end(from)?);
        let pages = s.pages.max(1);
        println!(
            "  pg-trace: one more initial sync, {} pages in {:.2} s (logging slows it): {} \
             statements ({:.1} a page), server time {:.3} ms a page; by step: {}",
            s.pages,
            wall.as_secs_f64(),
            trace.statements.len(),
            trace.statements.len() as f64 / pages as f64,
            trace.server_ms / pages as f64,
            trace.steps_per(pages)
        );
        println!("  pg-trace: execute time by statement, a page (count a page, ms a page):");
        for (sql, count, total) in trace.by_statement() {
            println!(
                "    {:5.2} x {:7.3} ms  {sql}",
                count as f64 / pages as f64,
                total / pages as f64
            );
        }
        Ok(())
    }

    async fn memory(&mut self) -> Result<()> {
        let n = self.args.memory_messages;
        println!("\n== memory: paging an INBOX of {n} messages with WindowSize 100");
        if self.args.initial || self.args.idle {
            println!("  (run `memory` alone for a clean baseline: earlier phases grew the heap)");
        }
        let user = self.filled_user("memory", n).await?;
        let (phone, inbox) = self.phone(&user).await?;
        let before = status_kib("VmRSS:");
        let hwm_before = status_kib("VmHWM:");
        let sampler = RssSampler::start();
        // (messages so far, VmRSS, sampled peak, mean page round trip in this tenth)
        let mut marks: Vec<(usize, u64, u64, Duration)> = Vec::new();
        let step = (n / 10).max(1);
        let mut next = step;
        let (mut tenth, mut tenth_pages) = (Duration::ZERO, 0u32);
        let s = sync_all(&phone, &inbox, 100, |adds, took| {
            tenth += took;
            tenth_pages += 1;
            if adds >= next {
                let mean = tenth / tenth_pages.max(1);
                marks.push((adds, status_kib("VmRSS:"), sampler.max_kib(), mean));
                (tenth, tenth_pages) = (Duration::ZERO, 0);
                next += step;
            }
        })
        .await?;
        let peak = sampler.max_kib();
        drop(sampler);
        println!(
            "  paged {} Adds in {} pages in {:.1} s (Sync round trips {:.1} s)",
            s.adds,
            s.pages,
            s.wall.as_secs_f64(),
            s.server.as_secs_f64()
        );
        println!(
            "  VmRSS before paging {:.1} MiB (VmHWM {:.1} MiB)",
            mib(before),
            mib(hwm_before)
        );
        for (adds, rss, max, mean) in &marks {
            println!(
                "  after {adds:>7} messages: VmRSS {:.1} MiB ({:+.1}), sampled peak so far \
                 {:.1} MiB; mean page round trip in this tenth {:.1} ms",
                mib(*rss),
                mib(*rss) - mib(before),
                mib(*max),
                ms(*mean)
            );
        }
        println!(
            "  RESULT memory {n}: sampled peak VmRSS {:.1} MiB, VmHWM {:.1} MiB, VmRSS at the \
             end {:.1} MiB",
            mib(peak),
            mib(status_kib("VmHWM:")),
            mib(status_kib("VmRSS:"))
        );
        Ok(())
    }
}

impl Bench {
    async fn search(&mut self) -> Result<()> {
        let sizes = self.args.search_sizes.clone();
        let iterations = self.args.search_iterations;
        for n in sizes {
            println!(
                "\n== search: INBOX of {n} messages, Range 0-24, {iterations} iterations per query, {}",
                if self.args.fts {
                    "Dovecot full-text index (fts_xapian)"
                } else {
                    "no full-text index"
                }
            );
            let user = self.filled_user(&format!("search{n}"), n).await?;
            let (phone, inbox) = self.phone(&user).await?;
            if self.args.fts {
                // Messages written as files are indexed on first search; build the index
                // first (untimed), as fts_autoindex would have done on delivery.
                let started = Instant::now();
                let out = std::process::Command::new("doveadm")
                    .arg("-c")
                    .arg(self.dovecot.dir().join("dovecot.conf"))
                    .args(["index", "-u", &user.login, "INBOX"])
                    .output()?;
                if !out.status.success() {
                    return Err(format!(
                        "doveadm index failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                    .into());
                }
                println!(
                    "  full-text index of {n} messages built in {:.1} s (doveadm index, untimed)",
                    started.elapsed().as_secs_f64()
                );
            }
            let mut cfg = self.dovecot.imap_config();
            cfg.timeout = Duration::from_secs(600);
            let mut raw = login(&cfg, &user).await?;
            let queries = [
                ("common word", "budget".to_string()),
                ("sender name", "okafor".to_string()),
                ("subject tag", format!("#{}", n / 2 + 7)),
            ];
            for (label, word) in &queries {
                let request = eas_wbxml::from_xml(&format!(
                    r#"<Search xmlns="Search:" xmlns:airsync="AirSync:" xmlns:airsyncbase="AirSyncBase:"><Store><Name>Mailbox</Name>
                       <Query><And><airsync:Class>Email</airsync:Class><airsync:CollectionId>{inbox}</airsync:CollectionId><FreeText>{word}</FreeText></And></Query>
                       <Options><Range>0-24</Range><airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:TruncationSize>256</airsyncbase:TruncationSize></airsyncbase:BodyPreference></Options>
                     </Store></Search>"#
                ))?
                .encode();
                let key = eas_gateway::imap::SearchKey::Text(word.clone());
                let (mut gw, mut full, mut bare) = (Vec::new(), Vec::new(), Vec::new());
                let mut totals = (String::new(), 0usize);
                // One untimed round of each warms Dovecot's caches for both sides alike (and,
                // with the full-text index, builds it for messages written as files).
                let warm = Instant::now();
                for i in 0..=iterations {
                    if i == 1 {
                        println!(
                            "  {label}: first (untimed) round took {:.1} s",
                            warm.elapsed().as_secs_f64()
                        );
                    }
                    let (body, took) = timed_post(&phone, "Search", request.clone()).await?;
                    let tree = Element::decode(&body)?;
                    let store_status = tree
                        .child(eas_wbxml::tags::search::Response)
                        .and_then(|r| r.child(eas_wbxml::tags::search::Store))
                        .and_then(|s| find_text(s, eas_wbxml::tags::search::Status))
                        .unwrap_or_default();
                    if store_status == "10" {
                        let started = Instant::now();
                        raw.select("INBOX").await?;
                        let hits = raw.uid_search(&key).await?.uids.len();
                        raw.unselect().await?;
                        println!(
                            "  RESULT search {n} {label} ({word:?}): the gateway answered \
                             status 10 (timed out) after {:.1} s; the bare SELECT+SEARCH takes \
                             {:.1} s for {hits} hits",
                            took.as_secs_f64(),
                            started.elapsed().as_secs_f64()
                        );
                        gw.clear();
                        break;
                    }
                    let total =
                        find_text(&tree, eas_wbxml::tags::search::Total).unwrap_or_default();
                    let started = Instant::now();
                    let hits = raw_search(&mut raw, &key, 25).await?;
                    let raw_took = started.elapsed();
                    let started = Instant::now();
                    raw.select("INBOX").await?;
                    let bare_hits = raw.uid_search(&key).await?.uids.len();
                    raw.unselect().await?;
                    let bare_took = started.elapsed();
                    if total != hits.to_string() || bare_hits as usize != hits {
                        return Err(format!(
                            "{label}: the gateway found {total}, raw IMAP {hits} / {bare_hits}"
                        )
                        .into());
                    }
                    totals = (total, hits);
                    if i > 0 {
                        gw.push(took);
                        full.push(raw_took);
                        bare.push(bare_took);
                    }
                }
                if gw.is_empty() {
                    continue;
                }
                let [g50, g95, _] = percentiles(&mut gw);
                let [f50, f95, _] = percentiles(&mut full);
                let [b50, b95, _] = percentiles(&mut bare);
                let ratio = g50.as_secs_f64() / f50.as_secs_f64();
                println!(
                    "  RESULT search {n} {label} ({:?}, {} hits): gateway p50 {:.1} ms p95 {:.1} ms | \
                     raw IMAP (sort + 25 dates and bodies) p50 {:.1} ms p95 {:.1} ms | \
                     bare SELECT+SEARCH p50 {:.1} ms p95 {:.1} ms | ratio {ratio:.2}x (target <= 1.3x): {}",
                    word,
                    totals.1,
                    ms(g50),
                    ms(g95),
                    ms(f50),
                    ms(f95),
                    ms(b50),
                    ms(b95),
                    if ratio <= 1.3 { "met" } else { "NOT met" }
                );
            }
            let _ = raw.logout().await;
        }
        Ok(())
    }
}

/// What the gateway asks of Dovecot for one Search page, on a kept session: the hits newest
/// first (`UID SORT (REVERSE ARRIVAL)`), the page's dates and its messages whole. Returns the
/// hit count.
async fn raw_search(
    s: &mut Session,
    key: &eas_gateway::imap::SearchKey,
    page: usize,
) -> Result<usize> {
    s.select("INBOX").await?;
    let sorted = s
        .uid_sort_newest_first(key)
        .await?
        .ok_or("the server has no SORT")?;
    let top: SequenceSet = sorted.iter().take(page).copied().collect();
    if !top.is_empty() {
        std::hint::black_box(
            s.uid_fetch(&top, &FetchQuery::new().internal_date())
                .await?,
        );
        let q = FetchQuery::new().flags().internal_date().size().body();
        std::hint::black_box(s.uid_fetch(&top, &q).await?);
    }
    s.unselect().await?;
    Ok(sorted.len())
}

const STATUS_ITEMS: [&str; 4] = ["UIDVALIDITY", "UIDNEXT", "MESSAGES", "HIGHESTMODSEQ"];

/// p50 of the bare IMAP work a no-change Sync does (connect, LOGIN, STATUS, LOGOUT), and
/// p50 of the STATUS alone on a session that stays logged in.
async fn imap_floor(cfg: &ImapConfig, user: &TestUser) -> Result<(Duration, Duration)> {
    let mut fresh = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let mut s = login(cfg, user).await?;
        s.status("INBOX", &STATUS_ITEMS).await?;
        let _ = s.logout().await;
        fresh.push(started.elapsed());
    }
    let mut kept = Vec::new();
    let mut s = login(cfg, user).await?;
    for _ in 0..100 {
        let started = Instant::now();
        s.status("INBOX", &STATUS_ITEMS).await?;
        kept.push(started.elapsed());
    }
    let _ = s.logout().await;
    Ok((percentiles(&mut fresh)[0], percentiles(&mut kept)[0]))
}

/// Median time to decode the stored snapshot of an `n`-message collection, which every Sync
/// does before it can tell that nothing changed.
fn snapshot_decode(n: usize) -> Duration {
    use eas_gateway::backend::Snapshot;
    use eas_gateway::backend::mail::MailToken;
    let snap = Snapshot {
        token: MailToken {
            uidvalidity: 1,
            highest_modseq: 2 * n as u64,
            uid_next: n as u32 + 1,
            exists: n as u32,
            all: None,
        },
        items: (1..=n as u32).map(|u| (u, u & 3)).collect(),
        ..Snapshot::default()
    };
    let bytes = snap.encode();
    let mut times: Vec<Duration> = (0..21)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(Snapshot::<MailToken>::decode(std::hint::black_box(&bytes)));
            started.elapsed()
        })
        .collect();
    percentiles(&mut times)[0]
}

fn percentiles(times: &mut [Duration]) -> [Duration; 3] {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    [at(0.50), at(0.95), at(0.99)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!("sync_load: {cpus} CPUs, args {args:?}");
        let tuning = eas_testbed::Tuning {
            fts_xapian: args.fts,
            ..Default::default()
        };
        let dovecot = Dovecot::start_tuned(&[], &tuning)?;
        // Kept alive for the whole run (in `bench`, dropped after the gateway).
        let postgres = if args.postgres {
            Some(eas_testbed::Postgres::start()?)
        } else {
            None
        };
        let state_url = match &postgres {
            Some(pg) if args.pg_socket => {
                // The socket is in the cluster's directory, next to its log.
                let log = pg.log_path();
                let dir = log.parent().ok_or("the cluster has no directory")?;
                Some(format!("{}?host={}", pg.fresh_database()?, dir.display()))
            }
            Some(pg) => Some(pg.fresh_database()?),
            None => None,
        };
        let gateway =
            start_gateway(dovecot.imap_config(), args.read_ahead, state_url.clone()).await?;
        let mut bench = Bench {
            dovecot,
            gateway,
            args: args.clone(),
            devices: 0,
            postgres: postgres.zip(state_url.and_then(|u| {
                let path = u.split('?').next()?;
                path.rsplit('/').next().map(str::to_owned)
            })),
        };
        for sql in &args.pg_sql {
            let (pg, db) = bench.pg().map_err(|_| "--pg-sql needs --postgres")?;
            pg.psql(db, sql)?;
            println!("  pg-sql: {sql}");
        }
        if args.initial {
            bench.initial().await?;
        }
        if args.idle {
            bench.idle().await?;
        }
        if args.memory {
            bench.memory().await?;
        }
        if args.search {
            bench.search().await?;
        }
        Ok(())
    })
}

/// What each IMAP step of a gateway page costs Dovecot, per batch of 100 (30 batches each):
/// A, one kept session that UNSELECTs between batches; B, a new session per batch; C, one
/// session that keeps INBOX selected; D, one session that SELECTs INBOX again per batch.
async fn raw_probe(cfg: &ImapConfig, user: &TestUser) -> Result<()> {
    const BATCHES: usize = 30;
    const STEPS: [&str; 8] = [
        "STATUS",
        "SELECT",
        "FETCH CHANGEDSINCE",
        "UID SEARCH ALL",
        "UID FETCH 100 bodies",
        "UNSELECT",
        "NOOP",
        "connect+LOGIN+ENABLE",
    ];
    let mut s = login(cfg, user).await?;
    s.enable_qresync().await?;
    let modseq = s.select("INBOX").await?.highest_modseq.unwrap_or(1);
    let mut uids: Vec<u32> = s
        .uid_fetch_flags(&SequenceSet::all())
        .await?
        .iter()
        .map(|m| m.uid)
        .collect();
    uids.sort_unstable_by(|a, b| b.cmp(a));
    s.unselect().await?;
    let query = FetchQuery::new().flags().internal_date().size().body();
    let items = ["UIDVALIDITY", "UIDNEXT", "MESSAGES", "HIGHESTMODSEQ"];
    let all = eas_gateway::imap::SearchKey::All;
    let report = |name: &str, t: &[Duration; 8]| {
        println!("  probe {name} (ms per batch of 100):");
        for (step, d) in STEPS.iter().zip(t) {
            if !d.is_zero() {
                println!(
                    "    {step:<22} {:.2}",
                    d.as_secs_f64() * 1e3 / BATCHES as f64
                );
            }
        }
    };
    fn lap(t: &mut [Duration; 8], i: usize, mark: &mut Instant) {
        t[i] += mark.elapsed();
        *mark = Instant::now();
    }

    let mut t = [Duration::ZERO; 8];
    for chunk in uids.chunks(100).take(BATCHES) {
        let set: SequenceSet = chunk.iter().collect();
        let mut m = Instant::now();
        s.noop().await?;
        lap(&mut t, 6, &mut m);
        s.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
        s.select("INBOX").await?;
        lap(&mut t, 1, &mut m);
        s.uid_fetch_changes(&SequenceSet::all(), modseq).await?;
        lap(&mut t, 2, &mut m);
        s.uid_search(&all).await?;
        lap(&mut t, 3, &mut m);
        s.uid_fetch(&set, &query).await?;
        lap(&mut t, 4, &mut m);
        s.unselect().await?;
        lap(&mut t, 5, &mut m);
    }
    report("A: kept session, UNSELECT after each batch", &t);

    let mut t = [Duration::ZERO; 8];
    for chunk in uids.chunks(100).take(BATCHES) {
        let set: SequenceSet = chunk.iter().collect();
        let mut m = Instant::now();
        let mut n = login(cfg, user).await?;
        n.enable_qresync().await?;
        lap(&mut t, 7, &mut m);
        n.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
        n.select("INBOX").await?;
        lap(&mut t, 1, &mut m);
        n.uid_fetch_changes(&SequenceSet::all(), modseq).await?;
        lap(&mut t, 2, &mut m);
        n.uid_search(&all).await?;
        lap(&mut t, 3, &mut m);
        n.uid_fetch(&set, &query).await?;
        lap(&mut t, 4, &mut m);
        let _ = n.logout().await;
    }
    report("B: a new session per batch", &t);

    s.select("INBOX").await?;
    let mut t = [Duration::ZERO; 8];
    for chunk in uids.chunks(100).take(BATCHES) {
        let set: SequenceSet = chunk.iter().collect();
        let mut m = Instant::now();
        s.noop().await?;
        lap(&mut t, 6, &mut m);
        s.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
        s.uid_fetch_changes(&SequenceSet::all(), modseq).await?;
        lap(&mut t, 2, &mut m);
        s.uid_search(&all).await?;
        lap(&mut t, 3, &mut m);
        s.uid_fetch(&set, &query).await?;
        lap(&mut t, 4, &mut m);
    }
    report("C: kept session, INBOX stays selected", &t);

    let mut t = [Duration::ZERO; 8];
    for chunk in uids.chunks(100).take(BATCHES) {
        let set: SequenceSet = chunk.iter().collect();
        let mut m = Instant::now();
        s.select("INBOX").await?;
        lap(&mut t, 1, &mut m);
        s.uid_fetch(&set, &query).await?;
        lap(&mut t, 4, &mut m);
    }
    report("D: kept session, INBOX selected again per batch", &t);

    // E: a second session reads STATUS while this one keeps INBOX selected (NOOP between).
    let mut p = login(cfg, user).await?;
    p.enable_qresync().await?;
    let mut t = [Duration::ZERO; 8];
    for _ in 0..BATCHES {
        let mut m = Instant::now();
        s.noop().await?;
        lap(&mut t, 6, &mut m);
        p.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
    }
    report(
        "E: STATUS on a second session while INBOX stays selected here",
        &t,
    );
    // F: the same with nothing selected anywhere.
    s.unselect().await?;
    let mut q = login(cfg, user).await?;
    q.enable_qresync().await?;
    let mut t = [Duration::ZERO; 8];
    for _ in 0..BATCHES {
        let mut m = Instant::now();
        q.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
    }
    report("F: STATUS on a fresh session, INBOX selected nowhere", &t);
    let mut t = [Duration::ZERO; 8];
    for _ in 0..BATCHES {
        let mut m = Instant::now();
        p.status("INBOX", &items).await?;
        lap(&mut t, 0, &mut m);
    }
    report(
        "G: STATUS on the second session of E, INBOX selected nowhere",
        &t,
    );
    let _ = p.logout().await;
    let _ = q.logout().await;
    let _ = s.logout().await;
    Ok(())
}

/// A PostgreSQL log with `log_min_duration_statement = 0`, taken apart.
struct PgTrace {
    /// Every logged protocol step's duration, summed.
    server_ms: f64,
    /// Each statement's text (first 90 characters) and its execute step's duration.
    statements: Vec<(String, f64)>,
    /// Time by protocol step (parse, bind, execute), summed.
    steps: Vec<(String, f64)>,
}

impl PgTrace {
    /// Lines as "duration: 0.019 ms  execute sqlx_s_2: SELECT …": one a protocol step; a
    /// statement is its execute step.
    fn parse(log: &str) -> PgTrace {
        let mut t = PgTrace {
            server_ms: 0.0,
            statements: Vec::new(),
            steps: Vec::new(),
        };
        for line in log.lines() {
            let Some((_, rest)) = line.split_once("duration: ") else {
                continue;
            };
            let Some((d, step)) = rest.split_once(" ms  ") else {
                continue;
            };
            let d = d.parse::<f64>().unwrap_or(0.0);
            t.server_ms += d;
            let kind = step.split_whitespace().next().unwrap_or("").to_owned();
            match t.steps.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, sum)) => *sum += d,
                None => t.steps.push((kind, d)),
            }
            if let Some(sql) = step.strip_prefix("execute ") {
                let sql = sql.split_once(": ").map_or(sql, |(_, s)| s);
                t.statements.push((sql.chars().take(90).collect(), d));
            }
        }
        t
    }

    fn steps_per(&self, n: usize) -> String {
        let per: Vec<String> = self
            .steps
            .iter()
            .map(|(k, ms)| format!("{k} {:.3} ms", ms / n.max(1) as f64))
            .collect();
        per.join(", ")
    }

    /// (statement, how many, execute ms in all), the costliest first.
    fn by_statement(&self) -> Vec<(String, usize, f64)> {
        let mut by: Vec<(String, usize, f64)> = Vec::new();
        for (sql, d) in &self.statements {
            match by.iter_mut().find(|(s, _, _)| s == sql) {
                Some((_, n, sum)) => {
                    *n += 1;
                    *sum += d;
                }
                None => by.push((sql.clone(), 1, *d)),
            }
        }
        by.sort_by(|a, b| b.2.total_cmp(&a.2));
        by
    }
}

//! Push load: many phones holding a Ping while mail arrives, against the floor Dovecot sets.
//!
//! ```text
//! cargo bench --bench push_load -- --devices 1000 --users 250 --rate 10 --duration 60
//! cargo bench --bench push_load -- --source imap,events      # both modes, one after the other
//! ```
//!
//! `--source` picks what tells the gateway about new mail: `imap` (the NOTIFY/IDLE watchers,
//! one IMAP connection per user with waiting devices), `events` (`push.source =
//! "dovecot-events"`: Dovecot runs the shipped `contrib/dovecot/eas-push.lua` and sends signed
//! datagrams; no IMAP connection is held for waiting phones) or `both`. Several, separated by
//! commas, run one after the other against the same Dovecot (which then always runs the
//! script), each with users of its own, and end with a table of the figures side by side.
//!
//! What one run does:
//! 1. Raises this process's file-descriptor limit (Dovecot, started by us, inherits it) and
//!    starts a private Dovecot ([`Dovecot::start_tuned`]) whose process, client and per-user
//!    connection limits fit the run; `--mode idle` turns `mailbox_list_index` off, so Dovecot
//!    offers no NOTIFY and the gateway's watchers fall back to IDLE.
//! 2. Starts the gateway in this process: plain HTTP on 127.0.0.1, SQLite state in a temporary
//!    directory, `push.min_heartbeat_secs = 10`.
//! 3. Sets up `--devices` simulated iPhones spread round-robin over `--users` users (device
//!    `i` belongs to user `i % users`): Provision, FolderSync, Sync of the Inbox to the end.
//!    Device `i` connects from loopback address `127.0.0.(1 + i % --source-addrs)`, bound
//!    before connecting: one address gives at most the ephemeral port range's worth of
//!    connections to the gateway (about 28,000 on Debian), so past that the tool picks more
//!    addresses by itself. A run the open-file limits cannot hold (ours, or the child
//!    gateway's, which lowers its connection cap to half its limit) is refused before setup
//!    with the reason, and Pings the gateway answers 503 end the run with the limit that
//!    refused them instead of waiting.
//! 4. Starts the floor: for each of the first `--floor-users` users, a bare IDLE-on-INBOX
//!    client and (with NOTIFY) a bare NOTIFY client, both our own [`Session`].
//! 5. Holds a Ping (`--heartbeat`, Inbox) on every device. After every answer the device
//!    does what a phone does: on status 2 it Syncs the Inbox to the end, then Pings again.
//! 6. For `--duration` seconds APPENDs one small message every `1/--rate` s to a random user
//!    (a fresh IMAP connection as that user, like a delivery), then waits up to `--drain`
//!    seconds for the last answers and ends the held Pings with the hub's shutdown.
//!
//! Latency is measured from the APPEND's tagged OK to (a) the Ping answer (status 2) of each
//! of that user's devices, attributed through the Sync that follows (the message's UID, from
//! `APPENDUID`, comes back as ServerId `<inbox>:<uid>`), and (b) the moment each bare client's
//! `idle()` returns with the news (after its DONE round trip, as for the gateway's watcher).
//! A device whose Sync picked a message up before a Ping of its own could announce it (the
//! message arrived while the device was syncing an earlier one) counts as "carried"; a
//! message no Ping ever announced counts as "missed".
//!
//! RSS is this process's (VmRSS sampled every 200 ms, VmHWM at the end): the gateway *and*
//! the simulated phones and bare clients, so the gateway's own share is below it. IMAP
//! connections are the push source's (`AppState.hub.counts()`: the watchers, or the events
//! source's looks in progress) and, separately, the logged-in sessions the gateway keeps in its
//! pool for the next request (`eas_imap_pooled_sessions`); sampled when all Pings are held,
//! at rest (events: after the pool's idle minute, up to 75 s) and during the APPEND phase.
//! With events the Ping may be answered before the APPEND's tagged OK reaches the client
//! (Dovecot sends the datagram while it finishes the command), so latencies can be negative.

#[path = "common/procfs.rs"]
mod procfs;
use procfs::mib;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eas_gateway::config::{Config, PushSource};
use eas_gateway::imap::{IdleEnd, ImapConfig, Notice, Session};
use eas_testbed::nginx::{Nginx, NginxTuning};
use eas_testbed::{ChildGateway, Dovecot, Gateway, Phone, Placement, Postgres, TestUser, Tuning};
use eas_wbxml::Element;
use eas_wbxml::tags::ping as pg;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{Semaphore, watch};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const DOMAIN: &str = "example.com";

// ---------------------------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Dovecot with `mailbox_list_index = yes`: NOTIFY offered, the watchers use it.
    Notify,
    /// Without the list index: no NOTIFY, the watchers IDLE on INBOX.
    Idle,
}

/// What tells the gateway about changes (`push.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Imap,
    Events,
    Both,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Imap => "imap",
            Source::Events => "events",
            Source::Both => "both",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Source::Imap => "imap",
            Source::Events => "dovecot-events",
            Source::Both => "both",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    sources: Vec<Source>,
    devices: usize,
    users: usize,
    rate: f64,
    duration: u64,
    mode: Mode,
    heartbeat: u64,
    floor_users: usize,
    setup_concurrency: usize,
    drain: u64,
    /// Seconds to wait between all Pings held and the first APPEND.
    settle: u64,
    seed: u64,
    /// First Pings started per second (0: all at once).
    ramp: u64,
    /// Run the gateway as a child process (`eas-gateway serve`) instead of in this one.
    separate: bool,
    /// Loopback addresses the phones connect from (127.0.0.1, .2, …); 0: as many as the
    /// ephemeral port range needs.
    source_addrs: usize,
    /// Child gateways on one PostgreSQL database behind a private nginx (the shipped
    /// several-nodes recipe); 0: one gateway, SQLite, phones straight to it.
    nodes: usize,
    /// One child gateway without nginx, but on a private PostgreSQL database (what a node of
    /// `--nodes` stores its state in), to tell the store's cost from nginx's.
    postgres: bool,
}

const USAGE: &str = "\
usage: cargo bench --bench push_load -- [options]
  --devices N            simulated phones, each holding a Ping (1000)
  --users M              users the phones are spread over (250)
  --rate R               APPENDs per second, to random users (10)
  --duration S           seconds of APPENDs (60)
  --mode notify|idle     Dovecot with NOTIFY, or IDLE only (notify)
  --heartbeat S          HeartbeatInterval of the held Pings (300)
  --floor-users K        users with a bare IDLE and a bare NOTIFY client (250)
  --setup-concurrency C  devices set up at once (64)
  --drain S              seconds to wait for the last answers after the APPENDs (10)
  --settle S             seconds to wait once all Pings are held (and, with events, at
                         rest) before the first APPEND, so that the answers are not timed
                         on a machine still busy with 10,000 TLS handshakes (0)
  --seed X               random seed for the choice of users (1)
  --ramp P               first Pings started per second; 0 starts all at once, like phones
                         after a gateway restart (500)
  --gateway inproc|process  the gateway in this process (reads the hub directly), or
                         `eas-gateway serve` as a child (own RSS and file descriptors; counts
                         from /metrics) (inproc)
  --source imap|events|both[,...]  push.source: IMAP watchers, Dovecot's events, or both;
                         several run one after the other and are compared (imap)
  --source-addrs N       loopback addresses the phones connect from (127.0.0.1, 127.0.0.2,
                         ...), each phone bound to one before connecting; 0 picks as many as
                         the ephemeral port range (net.ipv4.ip_local_port_range) needs (0)
  --nodes N              with --gateway process: N gateways sharing a private PostgreSQL
                         database behind a private nginx running docs/deploy/nginx.conf with
                         the upstream block of docs/deploy/nginx-nodes.conf (users hashed to
                         nodes by their Authorization header); phones connect to nginx over
                         TLS. 1 is one node behind the same nginx. 0: no nginx (0)
  --state sqlite|postgres  with --gateway process and no --nodes: the one gateway's state
                         in SQLite, or in a private PostgreSQL like the nodes' (sqlite)";

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            sources: vec![Source::Imap],
            devices: 1_000,
            users: 250,
            rate: 10.0,
            duration: 60,
            mode: Mode::Notify,
            heartbeat: 300,
            floor_users: 250,
            setup_concurrency: 64,
            drain: 10,
            settle: 0,
            seed: 1,
            separate: false,
            ramp: 500,
            source_addrs: 0,
            nodes: 0,
            postgres: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" => {}
                "--devices" => args.devices = value()?.parse()?,
                "--users" => args.users = value()?.parse()?,
                "--rate" => args.rate = value()?.parse()?,
                "--duration" => args.duration = value()?.parse()?,
                "--mode" => {
                    args.mode = match value()?.as_str() {
                        "notify" => Mode::Notify,
                        "idle" => Mode::Idle,
                        other => return Err(format!("unknown mode {other:?}").into()),
                    }
                }
                "--heartbeat" => args.heartbeat = value()?.parse()?,
                "--source" => {
                    args.sources = value()?
                        .split(',')
                        .map(|s| match s.trim() {
                            "imap" => Ok(Source::Imap),
                            "events" | "dovecot-events" => Ok(Source::Events),
                            "both" => Ok(Source::Both),
                            other => Err(format!("unknown source {other:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--floor-users" => args.floor_users = value()?.parse()?,
                "--setup-concurrency" => args.setup_concurrency = value()?.parse()?,
                "--drain" => args.drain = value()?.parse()?,
                "--settle" => args.settle = value()?.parse()?,
                "--seed" => args.seed = value()?.parse()?,
                "--ramp" => args.ramp = value()?.parse()?,
                "--source-addrs" => args.source_addrs = value()?.parse()?,
                "--nodes" => args.nodes = value()?.parse()?,
                "--state" => {
                    args.postgres = match value()?.as_str() {
                        "sqlite" => false,
                        "postgres" => true,
                        other => return Err(format!("unknown state {other:?}").into()),
                    }
                }
                "--gateway" => {
                    args.separate = match value()?.as_str() {
                        "inproc" => false,
                        "process" => true,
                        other => return Err(format!("unknown gateway {other:?}").into()),
                    }
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        if args.users == 0 || args.devices < args.users {
            return Err("need at least one user and at least as many devices as users".into());
        }
        if args.rate <= 0.0 || args.setup_concurrency == 0 {
            return Err("--rate and --setup-concurrency must be positive".into());
        }
        args.floor_users = args.floor_users.min(args.users);
        if (args.nodes > 0 || args.postgres) && !args.separate {
            return Err("--nodes and --state need --gateway process".into());
        }
        if args.source_addrs > 250 {
            return Err("--source-addrs: at most 250 (127.0.0.1 to 127.0.0.250)".into());
        }
        if args.source_addrs == 0 {
            // Every phone keeps one connection, bound to its source address before connecting,
            // so each address gives it at most the ephemeral range's ports; keep a tenth spare
            // for the short connections of setup and re-Pings.
            let ports = ephemeral_ports();
            let per_addr = (ports - ports / 10).max(1);
            args.source_addrs = (args.devices + 200).div_ceil(per_addr).clamp(1, 250);
        }
        Ok(args)
    }
}

// ---------------------------------------------------------------------------------------------
// Process limits and memory

/// Raises RLIMIT_NOFILE to `want` (the hard limit too when we may, i.e. as root), or to the
/// hard limit. Returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let want = want.min(nr_open);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            // Not allowed to raise the hard limit: take what it allows.
            let soft = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Ports in net.ipv4.ip_local_port_range: how many connections one source address can bind
/// to one destination.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map_or(28_232, |r| r.count())
}

/// The soft RLIMIT_NOFILE of a process, from /proc/<pid>/limits.
fn nofile_of(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The loopback address phones of source `i` connect from: 127.0.0.1, 127.0.0.2, …
fn source_addr(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1 + (i % 250) as u8])
}

/// A field of /proc/self/status in KiB (VmRSS, VmHWM).
fn status_kib(field: &str) -> u64 {
    procfs::status_kib("self", field)
}

/// A field of /proc/<pid>/status in KiB.
fn proc_status_kib(pid: &str, field: &str) -> u64 {
    procfs::status_kib(pid, field)
}

/// Dovecot processes (the master and its children), and their summed RSS in KiB.
fn dovecot_processes(master: u32) -> (usize, u64) {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut rss: HashMap<u32, u64> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let Some(ppid) = field("PPid:") {
            children.entry(ppid as u32).or_default().push(pid);
        }
        rss.insert(pid, field("VmRSS:").unwrap_or(0));
    }
    let (mut count, mut total) = (0, 0);
    let mut stack = vec![master];
    while let Some(pid) = stack.pop() {
        count += 1;
        total += rss.get(&pid).copied().unwrap_or(0);
        stack.extend(children.get(&pid).into_iter().flatten());
    }
    (count, total)
}

// ---------------------------------------------------------------------------------------------
// The gateway and the phones

/// `push.source` and, with events, where they arrive and the secret.
#[derive(Clone)]
struct PushSetup {
    source: Source,
    events_port: u16,
    secret: std::path::PathBuf,
}

impl PushSetup {
    fn apply(&self, config: &mut Config) {
        config.push.source = match self.source {
            Source::Imap => PushSource::Imap,
            Source::Events => PushSource::DovecotEvents,
            Source::Both => PushSource::Both,
        };
        config.push.events_listen = SocketAddr::from(([127, 0, 0, 1], self.events_port));
        config.push.events_secret_file = self.secret.clone();
    }

    fn toml(&self) -> String {
        format!(
            "source = \"{}\"\nevents_listen = \"127.0.0.1:{}\"\nevents_secret_file = \"{}\"\n",
            self.source.config(),
            self.events_port,
            self.secret.display()
        )
    }
}

/// The gateway in this process ([`Gateway`], shared with the tests), set up for the run.
async fn start_gateway(imap: ImapConfig, heartbeat: u64, push: &PushSetup) -> Result<Gateway> {
    Ok(Gateway::try_start(imap, |config| {
        config.push.min_heartbeat_secs = 10;
        config.push.max_heartbeat_secs = config.push.max_heartbeat_secs.max(heartbeat);
        // Every simulated phone comes from 127.0.0.1: the per-address cap on held requests
        // and the connection cap would stop the load long before the gateway does.
        config.limits.held_requests_per_address = usize::MAX / 2;
        config.limits.max_connections = usize::MAX / 2;
        push.apply(config);
    })
    .await?)
}

/// `eas-gateway serve` as a child process, with the same settings as [`start_gateway`].
async fn child_gateway(
    imap: ImapConfig,
    heartbeat: u64,
    push: &PushSetup,
    at: Placement,
) -> Result<ChildGateway> {
    let extra = format!(
        "[limits]\nheld_requests_per_address = 100000000\nmax_connections = 100000000\n\
         [push]\nmin_heartbeat_secs = 10\nmax_heartbeat_secs = {}\n{}",
        heartbeat.max(3540),
        push.toml()
    );
    // PUSH_LOAD_WRAP (e.g. "heaptrack -o /tmp/gw") runs the gateway under a profiler; RSS is
    // then the wrapper's, not the gateway's.
    let wrap = std::env::var("PUSH_LOAD_WRAP").unwrap_or_default();
    let words: Vec<&str> = wrap.split_whitespace().collect();
    Ok(
        ChildGateway::start_at(env!("CARGO_BIN_EXE_eas-gateway"), &words, &imap, &extra, at)
            .await?,
    )
}

/// `--nodes N`: child gateways sharing one PostgreSQL database, behind one nginx.
struct Cluster {
    nodes: Vec<ChildGateway>,
    nginx: Nginx,
    /// nginx's URL, where the phones go.
    base: String,
    client: reqwest::Client,
    /// Declared last, so dropped last: the nodes stop before their database does.
    _postgres: Postgres,
}

/// nginx's settings for `devices` held Pings: every one is two connections in a worker (the
/// phone's and the upstream one), each an open file, and a worker may open no more than the
/// hard limit of the process that starts nginx (20,000 here), so the workers share them out
/// (`reuseport` spreads new connections over them).
fn nginx_tuning(nofile: u64) -> NginxTuning {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2) as u32;
    NginxTuning {
        worker_processes: workers,
        worker_connections: nofile.saturating_sub(100).clamp(1024, 1 << 20) as u32,
        worker_rlimit_nofile: Some(nofile),
        reuseport: true,
    }
}

/// Starts a private PostgreSQL with a fresh database, `n` child gateways on it and nginx in
/// front of them.
async fn start_cluster(
    args: &Args,
    imap: ImapConfig,
    push: &PushSetup,
    nofile: u64,
) -> Result<Cluster> {
    let postgres = tokio::task::block_in_place(Postgres::start)?;
    let url = postgres.fresh_database()?;
    let mut nodes = Vec::new();
    for _ in 0..args.nodes {
        let at = Placement {
            state_url: Some(url.clone()),
            port: None,
        };
        nodes.push(child_gateway(imap.clone(), args.heartbeat, push, at).await?);
    }
    let addrs: Vec<SocketAddr> = nodes
        .iter()
        .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)))
        .collect();
    let tuning = nginx_tuning(nofile);
    // nginx is tied to the thread that starts it (PR_SET_PDEATHSIG): this one, block_on's.
    let nginx = tokio::task::block_in_place(|| Nginx::start_tuned(&addrs, &tuning, true));
    println!(
        "cluster: {} gateway(s) on ports {:?}, state {url}; nginx {} ({} workers, \
         worker_connections {}, worker_rlimit_nofile {:?}, reuseport)",
        nodes.len(),
        nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
        nginx.base(),
        tuning.worker_processes,
        tuning.worker_connections,
        tuning.worker_rlimit_nofile
    );
    Ok(Cluster {
        base: nginx.base(),
        nodes,
        nginx,
        client: reqwest::Client::new(),
        _postgres: postgres,
    })
}

/// The /metrics gauges the tool reads: (waiting devices, push-source IMAP connections, pooled
/// IMAP sessions); usize::MAX for one it could not read.
async fn node_counts(client: &reqwest::Client, base: &str) -> (usize, usize, usize) {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(usize::MAX, |v| v as usize)
    };
    (
        gauge("eas_push_waiting"),
        gauge("eas_push_imap_connections"),
        gauge("eas_imap_pooled_sessions"),
    )
}

/// The refusals by limit a node's /metrics reports.
async fn node_refusals(client: &reqwest::Client, base: &str) -> Vec<String> {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("eas_limit_refusals_total{limit=\""))
        .map(|l| l.replacen("\"} ", " ", 1))
        .collect()
}

/// The gateway under test, wherever it runs.
enum Target {
    InProcess(Gateway),
    Child(ChildGateway, reqwest::Client),
    Cluster(Box<Cluster>),
}

impl Target {
    fn base(&self) -> &str {
        match self {
            Target::InProcess(g) => &g.base,
            Target::Child(g, _) => &g.base,
            Target::Cluster(c) => &c.base,
        }
    }

    /// (waiting devices, IMAP connections held by the push source, pooled IMAP sessions),
    /// summed over the nodes.
    async fn counts(&self) -> (usize, usize, usize) {
        let per = self.per_node().await;
        let sum = |f: fn(&(usize, usize, usize)) -> usize| {
            per.iter()
                .map(f)
                .try_fold(0usize, |a, v| (v != usize::MAX).then_some(a + v))
                .unwrap_or(usize::MAX)
        };
        (sum(|c| c.0), sum(|c| c.1), sum(|c| c.2))
    }

    /// [`Target::counts`] of each node (one for a single gateway).
    async fn per_node(&self) -> Vec<(usize, usize, usize)> {
        match self {
            Target::InProcess(g) => {
                let (w, c) = g.state.hub.counts();
                vec![(w, c, g.state.pool.len())]
            }
            Target::Child(g, client) => vec![node_counts(client, &g.base).await],
            Target::Cluster(c) => {
                let mut out = Vec::new();
                for n in &c.nodes {
                    out.push(node_counts(&c.client, &n.base).await);
                }
                out
            }
        }
    }

    /// VmRSS or VmHWM of the process the gateway runs in (summed over the nodes).
    fn kib(&self, field: &str) -> u64 {
        self.node_kib(field).iter().sum()
    }

    /// VmRSS or VmHWM of each node's process.
    fn node_kib(&self, field: &str) -> Vec<u64> {
        match self {
            Target::InProcess(_) => vec![status_kib(field)],
            Target::Child(g, _) => vec![proc_status_kib(&g.pid().to_string(), field)],
            Target::Cluster(c) => c
                .nodes
                .iter()
                .map(|n| proc_status_kib(&n.pid().to_string(), field))
                .collect(),
        }
    }

    /// nginx's VmRSS (master and workers summed), in KiB; 0 without nginx.
    fn nginx_kib(&self) -> u64 {
        match self {
            Target::Cluster(c) => {
                let mut pids: Vec<u32> = c.nginx.pid().into_iter().collect();
                pids.extend(c.nginx.worker_pids());
                pids.iter()
                    .map(|p| proc_status_kib(&p.to_string(), "VmRSS:"))
                    .sum()
            }
            _ => 0,
        }
    }

    fn shutdown(&self) {
        match self {
            Target::InProcess(g) => g.state.hub.shutdown(),
            Target::Child(g, _) => g.terminate(),
            Target::Cluster(c) => c.nodes.iter().for_each(ChildGateway::terminate),
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Target::InProcess(_) => "this process: the gateway, the phones and the bare clients",
            Target::Child(..) => "the gateway's own process (eas-gateway serve)",
            Target::Cluster(_) => "the gateways' own processes, summed over the nodes",
        }
    }

    /// The child processes, for their logs and open-file limits.
    fn children(&self) -> Vec<&ChildGateway> {
        match self {
            Target::InProcess(_) => Vec::new(),
            Target::Child(g, _) => vec![g],
            Target::Cluster(c) => c.nodes.iter().collect(),
        }
    }
}

/// Why the gateway answered Pings 503, for the error that ends the run: its connection cap
/// (`limits.max_connections`, lowered at start to half its open-file limit) or the
/// held-request caps, with the figures that decide it.
async fn refusal(gateway: &Target, refused: u64, waiting: usize, devices: usize) -> String {
    let mut why = format!(
        "the gateway refused {refused} Pings with 503 while {waiting} of {devices} were held; \
         the run cannot hold them all"
    );
    // Which limit: the gateway's own counters.
    let (pid, by_limit) = match gateway {
        Target::InProcess(g) => {
            let c = &g.state.limits.counters;
            let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (
                "self".to_string(),
                vec![
                    format!("connections {}", n(&c.refused_connections)),
                    format!("held_requests_per_user {}", n(&c.refused_held_user)),
                    format!("held_requests_per_address {}", n(&c.refused_held_address)),
                ],
            )
        }
        Target::Child(g, client) => (g.pid().to_string(), node_refusals(client, &g.base).await),
        Target::Cluster(c) => {
            let mut lines = Vec::new();
            for (i, n) in c.nodes.iter().enumerate() {
                for l in node_refusals(&c.client, &n.base).await {
                    lines.push(format!("node {i} {l}"));
                }
            }
            (c.nodes[0].pid().to_string(), lines)
        }
    };
    if !by_limit.is_empty() {
        why += &format!(" (refused by limit: {})", by_limit.join(", "));
    }
    let connections_cap = by_limit
        .iter()
        .any(|l| l.contains("connections ") && !l.ends_with("connections 0"));
    if let Some(files) = nofile_of(&pid).filter(|_| connections_cap || by_limit.is_empty()) {
        why += &format!(
            ". Its open-file limit is {files}, and it lowers limits.max_connections to half of \
             that ({}; src/http/serve.rs) so the other half stays for IMAP sessions: {devices} \
             held Pings need an open-file limit of at least {} (raise the hard limit as root, \
             or LimitNOFILE= under systemd), or run with --devices below {}",
            files / 2,
            2 * (devices as u64 + 10),
            files / 2 - 10
        );
    }
    for g in gateway.children() {
        let log = std::fs::read_to_string(g.log_path()).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("max_connections")) {
            why += &format!("\ngateway log: {}", line.trim());
        }
    }
    if let Target::Cluster(c) = gateway {
        why += &format!(
            "\nnginx {}",
            c.nginx
                .error_log()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    why
}

/// What a phone sends when it syncs the Inbox after a Ping: from key 0 bare, then changes
/// with WindowSize 100 and 512 bytes of plain text.
const SYNC_OPTIONS: &str = "<GetChanges>1</GetChanges><WindowSize>100</WindowSize><Options>\
     <airsyncbase:BodyPreference><airsyncbase:Type>1</airsyncbase:Type>\
     <airsyncbase:TruncationSize>512</airsyncbase:TruncationSize>\
     </airsyncbase:BodyPreference></Options>";

/// Syncs the Inbox from `key` like a phone after a Ping: until a page comes without
/// MoreAvailable (after the key-0 round trip); the new key and the ServerIds added on the way.
/// Not the tests' `eas_testbed::sync_to_end`, which sends no options and adds a round that
/// confirms nothing changed: here each announcement costs the Syncs a phone would send, no
/// more.
async fn sync_to_end(phone: &Phone, inbox: &str, key: &str) -> Result<(String, Vec<String>)> {
    let mut key = key.to_owned();
    let mut added = Vec::new();
    loop {
        let first = key == "0";
        let options = if first { "" } else { SYNC_OPTIONS };
        let page = phone.try_sync(inbox, &key, options).await?;
        if page.empty {
            // Nothing changed: the key stays.
            return Ok((key, added));
        }
        if page.status != "1" {
            return Err(format!("Sync: status {}", page.status).into());
        }
        if page.key.is_empty() {
            return Err("Sync answer without SyncKey".into());
        }
        key = page.key;
        added.extend(page.added);
        if !first && !page.more {
            return Ok((key, added));
        }
    }
}

fn ping_body(heartbeat: u64, inbox: &str) -> Vec<u8> {
    let xml = format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>{heartbeat}</HeartbeatInterval><Folders><Folder><Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>"#
    );
    eas_wbxml::from_xml(&xml)
        .expect("the Ping request is well formed")
        .encode()
}

// ---------------------------------------------------------------------------------------------
// What the run records

/// One device's Ping answer with status 2 that announced a message (found by the Sync after
/// it).
struct Seen {
    user: usize,
    uid: u32,
    device: usize,
    at: Instant,
}

/// One APPEND.
struct Appended {
    user: usize,
    uid: u32,
    sent: Instant,
    ok: Instant,
}

#[derive(Default)]
struct Counters {
    status2: AtomicU64,
    status1: AtomicU64,
    /// Status 2 whose Sync found nothing new.
    spurious: AtomicU64,
    failed: AtomicU64,
    /// Failures of any kind once the APPENDs began.
    failed_measured: AtomicU64,
    sync_failed: AtomicU64,
    append_failed: AtomicU64,
    /// Pings answered 503: the gateway's connection or held-request limits refused them.
    refused: AtomicU64,
}

struct Shared {
    counters: Counters,
    failures: Mutex<BTreeMap<String, u64>>,
    seen: Mutex<Vec<Seen>>,
    appended: Mutex<Vec<Appended>>,
    stopping: AtomicBool,
    /// Set when the APPENDs begin: failures before are the ramp's, after are measured.
    measuring: AtomicBool,
}

impl Shared {
    fn fail(&self, counter: &AtomicU64, why: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let phase = if self.measuring.load(Ordering::Relaxed) {
            self.counters
                .failed_measured
                .fetch_add(1, Ordering::Relaxed);
            "measured"
        } else {
            "before the APPENDs"
        };
        *lock(&self.failures)
            .entry(format!("{phase}: {why}"))
            .or_default() += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A set-up device.
struct Device {
    index: usize,
    user: usize,
    phone: Phone,
    inbox: String,
    key: String,
}

async fn set_up(mut d: Device) -> Result<Device> {
    d.phone.try_provision().await?;
    d.inbox = d.phone.try_inbox().await?;
    let (key, _) = sync_to_end(&d.phone, &d.inbox, "0").await?;
    d.key = key;
    Ok(d)
}

/// Holds a Ping, answers it like a phone, again, until the run stops.
async fn device_loop(mut d: Device, heartbeat: u64, shared: Arc<Shared>) {
    let body = ping_body(heartbeat, &d.inbox);
    let prefix = format!("{}:", d.inbox);
    let pause = Duration::from_millis(500);
    while !shared.stopping.load(Ordering::Relaxed) {
        let r = d.phone.try_post("Ping", body.clone()).await;
        let at = Instant::now();
        if shared.stopping.load(Ordering::Relaxed) {
            break;
        }
        let c = &shared.counters;
        let tree = match r {
            Ok(answer) if answer.status == 200 => match Element::decode(&answer.body) {
                Ok(t) => t,
                Err(e) => {
                    shared.fail(&c.failed, format!("Ping: undecodable answer ({e})"));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
            Ok(answer) => {
                if answer.status == 503 {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                }
                shared.fail(&c.failed, format!("Ping: HTTP {}", answer.status));
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                // Without the URL, so failures of different devices count as one kind.
                shared.fail(&c.failed, format!("Ping: {}", e.without_url()));
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        match tree.child(pg::Status).and_then(|s| s.text()).unwrap_or("") {
            "1" => {
                c.status1.fetch_add(1, Ordering::Relaxed);
            }
            "2" => {
                c.status2.fetch_add(1, Ordering::Relaxed);
                match sync_to_end(&d.phone, &d.inbox, &d.key).await {
                    Ok((key, added)) => {
                        d.key = key;
                        if added.is_empty() {
                            c.spurious.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut seen = lock(&shared.seen);
                        for id in added {
                            if let Some(uid) = id.strip_prefix(&prefix).and_then(|u| u.parse().ok())
                            {
                                seen.push(Seen {
                                    user: d.user,
                                    uid,
                                    device: d.index,
                                    at,
                                });
                            }
                        }
                    }
                    Err(e) => {
                        shared.fail(&c.sync_failed, format!("Sync after Ping: {e}"));
                        tokio::time::sleep(pause).await;
                    }
                }
            }
            other => {
                shared.fail(&c.failed, format!("Ping: status {other}"));
                tokio::time::sleep(pause).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The floor: bare IMAP clients

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bare {
    Idle,
    Notify,
}

/// When a bare client's `idle()` came back with news about INBOX, and the INBOX's UIDNEXT
/// read right after (which tells the APPENDs the news covered).
type NoticeLog = Arc<Mutex<Vec<(Instant, u32)>>>;

async fn bare_connect(cfg: &ImapConfig, user: &TestUser, kind: Bare) -> Result<Session> {
    let mut s = Session::connect(cfg).await?;
    s.login(&user.login, &user.password).await?;
    if s.capabilities().has("CONDSTORE") {
        s.enable_qresync().await?;
    }
    match kind {
        Bare::Idle => {
            s.examine("INBOX").await?;
        }
        Bare::Notify => s.notify_personal().await?,
    }
    Ok(s)
}

async fn bare_loop(
    mut s: Session,
    kind: Bare,
    log: NoticeLog,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        let mut stop2 = stop.clone();
        let end = s
            .idle(Duration::from_secs(600), async move {
                let _ = stop2.wait_for(|s| *s).await;
            })
            .await?;
        let at = Instant::now();
        match end {
            IdleEnd::Notices(notices) => {
                let inbox = notices.iter().any(|n| match (kind, n) {
                    (Bare::Idle, Notice::Selected) => true,
                    (Bare::Notify, Notice::Mailbox { name }) => name == "INBOX",
                    _ => false,
                });
                if inbox {
                    // The time is the notice's; the STATUS only says which UIDs it covers.
                    let found = s.status("INBOX", &["UIDNEXT"]).await?;
                    let _ = s.take_events();
                    let uidnext = found
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("UIDNEXT"))
                        .map_or(0, |(_, v)| *v as u32);
                    lock(&log).push((at, uidnext));
                }
            }
            IdleEnd::Stopped => break,
            IdleEnd::Quiet => {}
        }
        if *stop.borrow_and_update() {
            break;
        }
    }
    let _ = s.logout().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Signed milliseconds from `from` to `to`.
fn ms_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

/// (n, p50, p95, p99, max) of values in ms.
fn summary(values: &mut [f64]) -> Option<(usize, f64, f64, f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let at = |q: f64| values[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    Some((n, at(0.50), at(0.95), at(0.99), values[n - 1]))
}

fn row(name: &str, values: &mut [f64]) -> Option<(usize, f64, f64, f64, f64)> {
    let s = summary(values);
    match s {
        Some((n, p50, p95, p99, max)) => {
            println!("  {name:<34} {n:>7} {p50:>9.1} {p95:>9.1} {p99:>9.1} {max:>9.1}")
        }
        None => println!("  {name:<34} {:>7}", 0),
    }
    s
}

/// For each APPEND to a user with a bare client: the first notice that covers its UID (UIDNEXT
/// above it), minus the APPEND's tagged OK.
fn floor_latencies(appended: &[Appended], logs: &[NoticeLog]) -> (Vec<Option<f64>>, usize) {
    let mut missed = 0;
    let out = appended
        .iter()
        .map(|ap| {
            let log = logs.get(ap.user)?;
            let log = lock(log);
            let first = log
                .iter()
                .filter(|(_, uidnext)| *uidnext > ap.uid)
                .map(|(t, _)| *t)
                .min();
            if first.is_none() {
                missed += 1;
            }
            first.map(|t| ms_between(ap.ok, t))
        })
        .collect();
    (out, missed)
}

// ---------------------------------------------------------------------------------------------
// The run

fn main() -> Result<()> {
    let args = Args::parse()?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Our sockets: two per device (phone and gateway ends), the watchers, the bare clients,
    // the short connections of setup and re-Pings; Dovecot inherits the limit.
    let want_fds = (args.devices * 3 + args.users * 2 + args.floor_users * 4 + 20_000) as u64;
    let nofile = raise_nofile(want_fds);
    preflight(&args, nofile)?;
    // Users of their own for each run, so every run starts from the same mailboxes.
    let runs = args.sources.len();
    let users_of_run: Vec<Vec<TestUser>> = (0..runs)
        .map(|r| {
            (0..args.users)
                .map(|i| {
                    let login = if runs == 1 {
                        format!("load{i:05}@{DOMAIN}")
                    } else {
                        format!("load{r}x{i:05}@{DOMAIN}")
                    };
                    TestUser::new(login, format!("pw-{i}"))
                })
                .collect()
        })
        .collect();
    let users: Vec<TestUser> = users_of_run.iter().flatten().cloned().collect();
    let events = args.sources.iter().any(|s| *s != Source::Imap);
    let events_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let bare_per_user = if args.mode == Mode::Notify { 2 } else { 1 };
    let connections = args.users
        + args.floor_users * bare_per_user
        + args.setup_concurrency * 2
        + args.devices / 2
        + 200;
    let tuning = Tuning {
        notify: args.mode == Mode::Notify,
        events_port: events.then_some(events_port),
        ..Tuning::for_connections(connections as u32)
    };
    println!(
        "push_load: {cpus} CPUs; sources {:?}; {} devices over {} users; mode {:?}; {} APPEND/s \
         for {} s; heartbeat {} s; bare clients on {} users; RLIMIT_NOFILE {nofile}; phones \
         from {} loopback address(es) (127.0.0.1..{}); Dovecot {:?}",
        args.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
        args.devices,
        args.users,
        args.mode,
        args.rate,
        args.duration,
        args.heartbeat,
        args.floor_users,
        args.source_addrs,
        source_addr(args.source_addrs - 1),
        tuning
    );
    // Every IDLE or NOTIFY connection is an imap process with an inotify instance of its own,
    // all of them as Dovecot's one mail user; past the kernel's per-user limit Dovecot falls
    // back to checking every `mailbox_idle_check_interval` (30 s) without a word in its log.
    let idlers = (args.users + args.floor_users * bare_per_user) as u64;
    let inotify = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_instances")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if inotify < idlers + 100 {
        println!(
            "WARNING: fs.inotify.max_user_instances is {inotify}, below the {idlers} IDLE/NOTIFY \
             connections of this run: Dovecot will see most changes only every 30 s. Run \
             `sysctl -w fs.inotify.max_user_instances={}` (benches/push-load.sh does).",
            (idlers + 1000).next_power_of_two()
        );
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let baseline_kib = status_kib("VmRSS:");
    let dovecot = Dovecot::start_tuned(&users, &tuning)?;
    let mut summaries = Vec::new();
    for (r, &source) in args.sources.iter().enumerate() {
        println!("\n======== source {} ========", source.name());
        let push = PushSetup {
            source,
            events_port,
            secret: dovecot
                .events_secret_path()
                .unwrap_or_else(|| "/nonexistent".into()),
        };
        // A runtime per run: whatever still runs (held requests, watchers, bare clients) goes
        // with it, so the next run starts from nothing.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let result = runtime.block_on(run(&args, &push, &dovecot, &users_of_run[r], baseline_kib));
        runtime.shutdown_timeout(Duration::from_secs(5));
        match result {
            Ok(s) => summaries.push(s),
            Err(e) => {
                eprintln!("Dovecot log: {}", dovecot.log_path().display());
                return Err(e);
            }
        }
    }
    if summaries.len() > 1 {
        compare(&summaries);
    }
    Ok(())
}

/// Refuses, before the long setup, a run this machine's open-file limit cannot hold, with the
/// reason. Our own sockets: one per phone, the bare clients, setup and APPENDs; with the
/// gateway in this process also its end of every connection and its IMAP sessions. A child
/// gateway inherits our limit and takes half of it for connections (`limits.max_connections`
/// is lowered to that at start), so it refuses Pings past that.
///
/// Why the phones are not spread over several processes when one cannot hold them: a held
/// Ping costs the gateway two open files' worth of limit (its connection, and the half kept
/// for IMAP sessions) against the phones' one, so on one machine, where both live under the
/// same hard limit, the gateway's cap binds first; a hard limit high enough for the gateway
/// is high enough for this process too.
fn preflight(args: &Args, nofile: u64) -> Result<()> {
    let per_user = if args.mode == Mode::Notify { 2 } else { 1 };
    let mut own = args.devices + args.floor_users * per_user + args.setup_concurrency * 2 + 1_000;
    if !args.separate {
        // The gateway's end of each connection, its watchers and pooled sessions.
        own += args.devices + 2 * args.users;
    }
    let hard = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        lim.rlim_max
    };
    if (nofile as usize) < own {
        return Err(format!(
            "this process may open {nofile} files (hard limit {hard}) but the run needs about \
             {own}: one socket per phone, the bare IMAP clients, setup and APPENDs{}. Raise \
             the hard limit (as root: `ulimit -Hn`, prlimit, LimitNOFILE=) or run fewer \
             --devices{}",
            if args.separate {
                ""
            } else {
                ", and the in-process gateway's end of each connection and its IMAP sessions"
            },
            if args.separate {
                ""
            } else {
                " (or --gateway process)"
            }
        )
        .into());
    }
    let gateway_cap = nofile / 2;
    if args.nodes > 0 {
        // nginx: two connections per held Ping, shared over its workers, each worker under
        // the same limit; the nodes: their share of the users' devices (the hash is not
        // exact, so a tenth spare), each under its own cap.
        let workers = nginx_tuning(nofile).worker_processes as u64;
        let nginx_files = 2 * args.devices as u64 + 200;
        if nginx_files > workers * nofile.saturating_sub(100) {
            return Err(format!(
                "nginx needs two connections per held Ping ({nginx_files} in all) and its \
                 {workers} workers may each open {nofile} files (worker_rlimit_nofile cannot \
                 exceed the hard limit {hard}): run fewer --devices"
            )
            .into());
        }
        let per_node = (args.devices as u64).div_ceil(args.nodes as u64) * 11 / 10;
        if per_node + 1 > gateway_cap {
            return Err(format!(
                "each node starts with the open-file limit {nofile} and lowers \
                 limits.max_connections to half of it, {gateway_cap}; about {per_node} held \
                 Pings per node over {} nodes would not fit: more --nodes or fewer --devices",
                args.nodes
            )
            .into());
        }
    } else if args.separate && (args.devices as u64) + 1 > gateway_cap {
        return Err(format!(
            "the gateway will start with this process's open-file limit, {nofile} (hard limit \
             {hard}), and lower limits.max_connections to half of it, {gateway_cap} \
             (src/http/serve.rs), so it would refuse Pings past that: {} held Pings (and this \
             tool's /metrics connection) need a limit of at least {}. Raise the hard limit (as \
             root: `ulimit -Hn`, prlimit, LimitNOFILE=) or run with --devices {} or fewer",
            args.devices,
            2 * (args.devices as u64 + 1),
            gateway_cap - 1
        )
        .into());
    }
    Ok(())
}

/// The figures of one run, for the comparison at the end.
struct RunSummary {
    source: Source,
    gateway: Option<(usize, f64, f64, f64, f64)>,
    notify: Option<(usize, f64, f64, f64, f64)>,
    /// IMAP connections of the push source and pooled sessions: all Pings held, at rest,
    /// during the APPENDs (min..max).
    held: (usize, usize),
    rest: Option<(usize, usize)>,
    during: (usize, usize, usize, usize),
    spurious: u64,
    missed: usize,
    failed: u64,
    rss_held_mib: f64,
}

fn compare(runs: &[RunSummary]) {
    let fmt = |s: Option<(usize, f64, f64, f64, f64)>| match s {
        Some((n, p50, _, p99, max)) => format!("{p50:>7.1} {p99:>7.1} {max:>7.1} (n={n})"),
        None => "-".into(),
    };
    println!("\n======== comparison (same Dovecot, users of their own per run) ========");
    println!(
        "{:<7} {:<34} {:<34} {:>13} {:>13} {:>17} {:>9} {:>7} {:>7} {:>9}",
        "source",
        "Ping answered: p50 p99 max ms",
        "bare NOTIFY: p50 p99 max ms",
        "IMAP held",
        "IMAP at rest",
        "IMAP during",
        "spurious",
        "missed",
        "failed",
        "RSS MiB"
    );
    for r in runs {
        let rest = r.rest.map_or("-".to_string(), |(c, p)| format!("{c}+{p}"));
        println!(
            "{:<7} {:<34} {:<34} {:>13} {:>13} {:>17} {:>9} {:>7} {:>7} {:>9.1}",
            r.source.name(),
            fmt(r.gateway),
            fmt(r.notify),
            format!("{}+{}", r.held.0, r.held.1),
            rest,
            format!(
                "{}..{}+{}..{}",
                r.during.0, r.during.1, r.during.2, r.during.3
            ),
            r.spurious,
            r.missed,
            r.failed,
            r.rss_held_mib
        );
    }
    println!(
        "(IMAP columns: connections of the push source + logged-in sessions pooled for the next \
         request)"
    );
}

async fn run(
    args: &Args,
    push: &PushSetup,
    dovecot: &Dovecot,
    users: &[TestUser],
    baseline_kib: u64,
) -> Result<RunSummary> {
    let imap = dovecot.imap_config();
    {
        // NOTIFY is among the capabilities after LOGIN only.
        let mut probe = Session::connect(&imap).await?;
        probe.login(&users[0].login, &users[0].password).await?;
        let has_notify = probe.has_notify();
        let _ = probe.logout().await;
        if has_notify != (args.mode == Mode::Notify) {
            return Err(
                format!("Dovecot offers NOTIFY: {has_notify}, mode {:?}", args.mode).into(),
            );
        }
    }
    // Declared before the gateway, so dropped after it.
    let mut _postgres = None;
    let gateway = if args.nodes > 0 {
        let nofile = nofile_of("self").unwrap_or(1024);
        Target::Cluster(Box::new(
            start_cluster(args, imap.clone(), push, nofile).await?,
        ))
    } else if args.separate {
        let mut at = Placement::default();
        if args.postgres {
            let pg = tokio::task::block_in_place(Postgres::start)?;
            at.state_url = Some(pg.fresh_database()?);
            _postgres = Some(pg);
        }
        Target::Child(
            child_gateway(imap.clone(), args.heartbeat, push, at).await?,
            reqwest::Client::new(),
        )
    } else {
        Target::InProcess(start_gateway(imap.clone(), args.heartbeat, push).await?)
    };
    // One client (and connection pool) per source address; phone `i` uses address
    // `i % source_addrs`, so each address carries devices / source_addrs connections.
    let clients = (0..args.source_addrs)
        .map(|i| {
            let builder = match &gateway {
                // TLS to nginx, trusting its certificate.
                Target::Cluster(c) => c.nginx.client_builder(Some(source_addr(i))),
                _ => reqwest::Client::builder().local_address(source_addr(i)),
            };
            builder
                .timeout(Duration::from_secs(args.heartbeat + 120))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared {
        counters: Counters::default(),
        failures: Mutex::new(BTreeMap::new()),
        seen: Mutex::new(Vec::new()),
        appended: Mutex::new(Vec::new()),
        stopping: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
    });

    // Setup: Provision, FolderSync, Sync to the end, `setup_concurrency` devices at a time.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.setup_concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.devices {
        let user = index % args.users;
        let device = Device {
            index,
            user,
            phone: Phone::with_client(
                clients[index % clients.len()].clone(),
                gateway.base(),
                &users[user].login,
                &users[user].password,
                &format!("LOAD{index:06}"),
            ),
            inbox: String::new(),
            key: String::new(),
        };
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            set_up(device).await
        });
    }
    let mut devices = Vec::with_capacity(args.devices);
    while let Some(done) = tasks.join_next().await {
        devices.push(done??);
    }
    let setup = started.elapsed();
    println!(
        "setup: {} devices provisioned, FolderSynced and Synced in {:.1} s ({:.1} ms each at \
         concurrency {})",
        devices.len(),
        setup.as_secs_f64(),
        setup.as_secs_f64() * 1e3 / devices.len() as f64 * args.setup_concurrency as f64,
        args.setup_concurrency
    );

    // The floor: bare clients on the first `floor_users` users.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut kinds = vec![Bare::Idle];
    if args.mode == Mode::Notify {
        kinds.push(Bare::Notify);
    }
    let mut logs: HashMap<Bare, Vec<NoticeLog>> = HashMap::new();
    let mut bare_tasks = tokio::task::JoinSet::new();
    for &kind in &kinds {
        let mut sessions = tokio::task::JoinSet::new();
        for (i, user) in users.iter().take(args.floor_users).enumerate() {
            let (imap, user, gate) = (imap.clone(), user.clone(), gate.clone());
            sessions.spawn(async move {
                let _permit = gate.acquire_owned().await;
                bare_connect(&imap, &user, kind).await.map(|s| (i, s))
            });
        }
        let mut by_user: Vec<Option<Session>> = (0..args.floor_users).map(|_| None).collect();
        while let Some(done) = sessions.join_next().await {
            let (i, s) = done??;
            by_user[i] = Some(s);
        }
        let kind_logs: Vec<NoticeLog> = (0..args.floor_users)
            .map(|_| Arc::new(Mutex::new(Vec::new())))
            .collect();
        for (s, log) in by_user.into_iter().zip(&kind_logs) {
            let s = s.expect("every bare client connected");
            bare_tasks.spawn(bare_loop(s, kind, log.clone(), stop_rx.clone()));
        }
        logs.insert(kind, kind_logs);
    }

    // Hold a Ping on every device.
    let started = Instant::now();
    let mut device_tasks = tokio::task::JoinSet::new();
    for (i, d) in devices.into_iter().enumerate() {
        if args.ramp > 0 {
            let at = started + Duration::from_secs_f64(i as f64 / args.ramp as f64);
            tokio::time::sleep_until(at.into()).await;
        }
        device_tasks.spawn(device_loop(d, args.heartbeat, shared.clone()));
    }
    let gateway = Arc::new(gateway);
    // The watchers hold one connection per user; the event source none once its looks at
    // registration are over.
    let watchers = if push.source == Source::Imap {
        args.users
    } else {
        0
    };
    let want = (args.devices, watchers);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (w, c, _) = gateway.counts().await;
        // Several nodes: a user whose devices were split over two nodes would have a watcher
        // on each, so the sum would stay above the users and the run end here, saying so.
        if (w, c) == want {
            break;
        }
        let refused = shared.counters.refused.load(Ordering::Relaxed);
        if refused > 0 {
            // Refused Pings come back every 500 ms and are refused again: waiting longer
            // would only hang. Say which limit it was.
            shared.stopping.store(true, Ordering::Relaxed);
            return Err(refusal(&gateway, refused, w, args.devices).await.into());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after 300 s: (waiting devices, IMAP connections) = {:?}, want {want:?}; per \
                 node (waiting, push-source IMAP, pooled): {:?}",
                (w, c),
                gateway.per_node().await
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held_after = started.elapsed();
    let (_, held_conns, held_pooled) = gateway.counts().await;
    let held_kib = gateway.kib("VmRSS:");
    let (dc_procs, dc_kib) = dovecot_processes(dovecot.pid());
    println!(
        "held: {} Pings waiting on {} IMAP connections after {:.1} s; VmRSS {:.1} MiB ({}; \
         this process before Dovecot and the gateway: {:.1} MiB); Dovecot {dc_procs} \
         processes, {:.0} MiB RSS summed",
        want.0,
        want.1,
        held_after.as_secs_f64(),
        mib(held_kib),
        gateway.what(),
        mib(baseline_kib),
        mib(dc_kib)
    );
    println!(
        "IMAP connections held by the gateway with all Pings waiting: {held_conns} (push source) \
         + {held_pooled} (sessions pooled for the next request, closed after 60 s idle)"
    );
    let held_nodes = gateway.per_node().await;
    let held_node_kib = gateway.node_kib("VmRSS:");
    if let Target::Cluster(_) = &*gateway {
        for (i, ((w, c, p), kib)) in held_nodes.iter().zip(&held_node_kib).enumerate() {
            println!(
                "  node {i}: {w} Pings waiting, {c} push-source IMAP connections, {p} pooled; \
                 VmRSS {:.1} MiB",
                mib(*kib)
            );
        }
        println!(
            "  nginx (master + workers): VmRSS {:.1} MiB",
            mib(gateway.nginx_kib())
        );
    }
    // With events nothing needs IMAP while phones wait: once the pool's idle minute is over
    // the gateway holds no IMAP connection at all.
    let rest = if push.source == Source::Imap {
        None
    } else {
        let deadline = Instant::now() + Duration::from_secs(75);
        let mut now = gateway.counts().await;
        while (now.1, now.2) != (0, 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            now = gateway.counts().await;
        }
        // Without the pooled sessions: what the waiting phones alone cost.
        println!(
            "at rest ({:.0} s after all Pings were held): {} Pings waiting, IMAP connections {} \
             (push source) + {} (pooled); VmRSS {:.1} MiB",
            started.elapsed().as_secs_f64(),
            now.0,
            now.1,
            now.2,
            mib(gateway.kib("VmRSS:"))
        );
        Some((now.1, now.2))
    };

    if args.settle > 0 {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
    }
    println!(
        "APPENDs start {:.0} s after all Pings were held; load average {}",
        started.elapsed().saturating_sub(held_after).as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Sample the hub and our memory while mail arrives.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (gateway, sampling) = (gateway.clone(), sampling.clone());
        tokio::spawn(async move {
            let (mut wmin, mut wmax, mut cmin, mut cmax, mut rss) =
                (usize::MAX, 0, usize::MAX, 0, 0u64);
            let (mut pmin, mut pmax) = (usize::MAX, 0);
            // Per node: (waiting min, max, push-source IMAP min, max, VmRSS max).
            let mut nodes: Vec<(usize, usize, usize, usize, u64)> = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let per = gateway.per_node().await;
                let kib = gateway.node_kib("VmRSS:");
                nodes.resize(per.len(), (usize::MAX, 0, usize::MAX, 0, 0));
                for ((n, (w, c, _)), k) in nodes.iter_mut().zip(&per).zip(&kib) {
                    *n = (
                        n.0.min(*w),
                        n.1.max(*w),
                        n.2.min(*c),
                        n.3.max(*c),
                        n.4.max(*k),
                    );
                }
                let sum = |f: fn(&(usize, usize, usize)) -> usize| {
                    per.iter().map(f).fold(0usize, |a, v| a.saturating_add(v))
                };
                let (w, c, p) = (sum(|x| x.0), sum(|x| x.1), sum(|x| x.2));
                (wmin, wmax, cmin, cmax) = (wmin.min(w), wmax.max(w), cmin.min(c), cmax.max(c));
                (pmin, pmax) = (pmin.min(p), pmax.max(p));
                rss = rss.max(kib.iter().sum());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (wmin, wmax, cmin, cmax, rss, pmin, pmax, nodes)
        })
    };

    // APPENDs at the rate, to random users.
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let total = (args.rate * args.duration as f64).round() as u64;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut appends = tokio::task::JoinSet::new();
    shared.measuring.store(true, Ordering::Relaxed);
    let phase = Instant::now();
    for seq in 0..total {
        tokio::time::sleep_until((phase + period * seq as u32).into()).await;
        let user = rng.gen_range(0..args.users);
        let (imap, login, shared) = (imap.clone(), users[user].clone(), shared.clone());
        appends.spawn(async move {
            let message = format!(
                "From: Load <load@{DOMAIN}>\r\nTo: {}\r\nSubject: push-load {seq}\r\n\
                 Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <load-{seq}@{DOMAIN}>\r\n\
                 MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                 Message {seq} of the push load test.\r\n",
                login.login
            );
            let attempt = async {
                let mut s = Session::connect(&imap).await?;
                s.login(&login.login, &login.password).await?;
                let sent = Instant::now();
                let uid = s.append("INBOX", &[], message.as_bytes()).await?;
                let ok = Instant::now();
                let _ = s.logout().await;
                let uid = uid.ok_or("APPEND without APPENDUID")?;
                Ok::<_, Error>(Appended {
                    user,
                    uid,
                    sent,
                    ok,
                })
            };
            match attempt.await {
                Ok(ap) => lock(&shared.appended).push(ap),
                Err(e) => shared.fail(&shared.counters.append_failed, format!("APPEND: {e}")),
            }
        });
    }
    while appends.join_next().await.is_some() {}
    let phase = phase.elapsed();

    // Wait for the last answers.
    let expected: usize = {
        let per_user = |u: usize| (args.devices - u).div_ceil(args.users);
        lock(&shared.appended)
            .iter()
            .map(|ap| per_user(ap.user))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    while lock(&shared.seen).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000).min(Duration::from_secs(args.drain))).await;
    sampling.store(false, Ordering::Relaxed);
    let (wmin, wmax, cmin, cmax, rss_max, pmin, pmax, node_samples) = sampler.await?;
    let (dc_procs, dc_kib) = dovecot_processes(dovecot.pid());

    // Stop: the hub answers the held Pings, the bare clients end their IDLE.
    shared.stopping.store(true, Ordering::Relaxed);
    // Read before the stop: a child gateway exits after answering.
    let hwm = gateway.kib("VmHWM:");
    let node_hwm = gateway.node_kib("VmHWM:");
    let nginx_kib = gateway.nginx_kib();
    let nginx_errors = match &*gateway {
        Target::Cluster(c) => {
            let log =
                std::fs::read_to_string(c.nginx.dir.path().join("error.log")).unwrap_or_default();
            let bad: Vec<String> = log
                .lines()
                .filter(|l| l.contains("[error]") || l.contains("[alert]") || l.contains("[crit]"))
                .map(str::to_owned)
                .collect();
            Some(bad)
        }
        _ => None,
    };
    gateway.shutdown();
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while device_tasks.join_next().await.is_some() {}
        while bare_tasks.join_next().await.is_some() {}
    })
    .await;
    let what = gateway.what();
    {
        // Dovecot's complaints (limits reached, refused logins), most frequent first.
        let text = std::fs::read_to_string(dovecot.log_path()).unwrap_or_default();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for l in text
            .lines()
            .filter(|l| l.contains("Warning:") || l.contains("Error:") || l.contains("Fatal:"))
        {
            // Without the timestamp and the per-connection details after the first comma.
            let l = l.split_once(": ").map_or(l, |(_, rest)| rest);
            let l = l.split(", ").next().unwrap_or(l);
            *kinds.entry(l.chars().take(160).collect()).or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        println!(
            "Dovecot log: {} warnings/errors",
            kinds.iter().map(|k| k.1).sum::<usize>()
        );
        for (l, n) in kinds.iter().take(5) {
            println!("  x{n}: {l}");
        }
    }
    for (i, g) in gateway.children().into_iter().enumerate() {
        let (n, first) = g.log_summary();
        println!("gateway log (node {i}): {n} WARN/ERROR lines");
        for l in first {
            println!("  {l}");
        }
    }
    if let Some(bad) = &nginx_errors {
        println!("nginx error log: {} error/alert/crit lines", bad.len());
        for l in bad.iter().take(5) {
            println!("  {l}");
        }
    }
    drop(gateway);

    // Attribution.
    let appended = std::mem::take(&mut *lock(&shared.appended));
    let seen = std::mem::take(&mut *lock(&shared.seen));
    let mut by_message: HashMap<(usize, u32), Vec<(usize, Instant)>> = HashMap::new();
    for s in &seen {
        by_message
            .entry((s.user, s.uid))
            .or_default()
            .push((s.device, s.at));
    }
    let mut gateway_ms = Vec::new();
    let mut gateway_sampled_ms = Vec::new();
    let mut per_append_slowest: Vec<Option<f64>> = Vec::new();
    let (mut carried, mut missed) = (0usize, 0usize);
    for ap in &appended {
        let devices_of_user = (ap.user..args.devices).step_by(args.users);
        let got = by_message.get(&(ap.user, ap.uid));
        let mut mine = Vec::new();
        for d in devices_of_user {
            match got.and_then(|g| g.iter().find(|(dev, _)| *dev == d)) {
                Some((_, at)) if *at >= ap.sent => mine.push(ms_between(ap.ok, *at)),
                Some(_) => carried += 1,
                None => missed += 1,
            }
        }
        if ap.user < args.floor_users {
            gateway_sampled_ms.extend(mine.iter().copied());
        }
        // The slowest device of this APPEND, for the pairing with the bare clients.
        per_append_slowest.push(mine.iter().copied().reduce(f64::max));
        gateway_ms.extend(mine);
    }

    let c = &shared.counters;
    println!(
        "\nAPPENDs: {} in {:.1} s ({:.2}/s), {} failed",
        appended.len(),
        phase.as_secs_f64(),
        appended.len() as f64 / phase.as_secs_f64(),
        c.append_failed.load(Ordering::Relaxed)
    );
    println!(
        "\nlatency, ms from the APPEND's tagged OK    {:>7} {:>9} {:>9} {:>9} {:>9}",
        "n", "p50", "p95", "p99", "max"
    );
    let gw = row("gateway: Ping answered (status 2)", &mut gateway_ms);
    row(
        "gateway, users with bare clients",
        &mut gateway_sampled_ms.clone(),
    );
    let mut floor = HashMap::new();
    for &kind in &kinds {
        let (lat, floor_missed) = floor_latencies(&appended, &logs[&kind]);
        let mut values: Vec<f64> = lat.iter().flatten().copied().collect();
        let name = match kind {
            Bare::Idle => "bare IDLE client (INBOX)",
            Bare::Notify => "bare NOTIFY client",
        };
        let s = row(name, &mut values);
        if floor_missed > 0 {
            println!("    ({floor_missed} APPENDs to its users never seen by it)");
        }
        // Paired: the slowest device of an APPEND against this client on the same APPEND.
        let mut diff: Vec<f64> = lat
            .iter()
            .zip(&per_append_slowest)
            .filter_map(|(f, g)| Some((*g)? - (*f)?))
            .collect();
        row(&format!("  slowest device minus {kind:?}"), &mut diff);
        // PUSH_LOAD_DEBUG=1: every APPEND with both latencies, to study the pairs.
        if std::env::var_os("PUSH_LOAD_DEBUG").is_some() {
            for ((f, g), ap) in lat.iter().zip(&per_append_slowest).zip(&appended) {
                println!(
                    "DEBUG {kind:?} user {} uid {} at +{:.1} ms: bare {f:?} gateway {g:?}",
                    ap.user,
                    ap.uid,
                    ms_between(appended[0].sent, ap.sent)
                );
            }
        }
        floor.insert(kind, s);
    }
    let failures = lock(&shared.failures).clone();
    println!(
        "\nPings: {} answered with 2 ({} spurious: the Sync found nothing), {} with 1; \
         {} failed; Syncs failed {}; failures once the APPENDs began: {}",
        c.status2.load(Ordering::Relaxed),
        c.spurious.load(Ordering::Relaxed),
        c.status1.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
        c.sync_failed.load(Ordering::Relaxed),
        c.failed_measured.load(Ordering::Relaxed)
    );
    println!(
        "deliveries: {} expected (APPEND x devices of its user), {} announced by a Ping, \
         {carried} carried by an in-flight Sync, {missed} missed",
        expected,
        gateway_ms.len()
    );
    for (why, n) in &failures {
        println!("  failure x{n}: {why}");
    }
    println!(
        "gateway IMAP connections during APPENDs: push source {cmin}..{cmax} for {} users, \
         pooled sessions {pmin}..{pmax}; waiting devices {wmin}..{wmax} of {}",
        args.users, args.devices
    );
    println!(
        "memory ({}): VmRSS all held {:.1} MiB, max during APPENDs {:.1} MiB, VmHWM \
         {:.1} MiB; this process's VmHWM {:.1} MiB",
        what,
        mib(held_kib),
        mib(rss_max),
        mib(hwm),
        mib(status_kib("VmHWM:"))
    );
    println!(
        "Dovecot: {dc_procs} processes, {:.0} MiB RSS summed",
        mib(dc_kib)
    );
    if args.nodes > 0 {
        println!(
            "\nnodes (behind nginx; users hashed by Authorization): sum of watchers with all \
             Pings held {held_conns} for {} users",
            args.users
        );
        println!(
            "  {:<5} {:>12} {:>12} {:>16} {:>16} {:>10} {:>10} {:>10}",
            "node",
            "held Pings",
            "held IMAP",
            "waiting during",
            "IMAP during",
            "RSS held",
            "RSS max",
            "VmHWM"
        );
        for (i, (((w, c, _), kib), s)) in held_nodes
            .iter()
            .zip(&held_node_kib)
            .zip(&node_samples)
            .enumerate()
        {
            println!(
                "  {i:<5} {w:>12} {c:>12} {:>16} {:>16} {:>10.1} {:>10.1} {:>10.1}",
                format!("{}..{}", s.0, s.1),
                format!("{}..{}", s.2, s.3),
                mib(*kib),
                mib(s.4),
                mib(node_hwm.get(i).copied().unwrap_or(0))
            );
        }
        println!(
            "  nginx (master + workers) VmRSS before the stop: {:.1} MiB",
            mib(nginx_kib)
        );
    }
    let notify = floor.get(&Bare::Notify).copied().flatten();
    if let (Some(g), Some(n)) = (gw, notify) {
        println!(
            "\nRESULT {}{}: gateway p50 {:.1} / p99 {:.1} ms; NOTIFY p50 {:.1} / p99 {:.1} ms; \
             gateway - NOTIFY: p50 {:+.1} ms, p99 {:+.1} ms",
            push.source.name(),
            if args.nodes > 0 {
                format!(" ({} node(s) behind nginx)", args.nodes)
            } else {
                String::new()
            },
            g.1,
            g.3,
            n.1,
            n.3,
            g.1 - n.1,
            g.3 - n.3
        );
    }
    Ok(RunSummary {
        source: push.source,
        gateway: gw,
        notify,
        held: (held_conns, held_pooled),
        rest,
        during: (cmin, cmax, pmin, pmax),
        spurious: c.spurious.load(Ordering::Relaxed),
        missed,
        failed: c.failed_measured.load(Ordering::Relaxed),
        rss_held_mib: mib(held_kib),
    })
}

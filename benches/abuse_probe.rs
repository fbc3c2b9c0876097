//! The WBXML amplification probe of issue 18 against a real `eas-gateway serve` process and a
//! private Dovecot: N authenticated phones POST a string-table amplification document at once
//! (one large string-table entry referenced over and over; see `wbxml/examples/amplification.rs`)
//! while another phone keeps syncing. Reports the gateway process's RSS at rest and its peak
//! during the attack (sampled every 10 ms, plus VmHWM), what the attackers were answered, and
//! the other phone's latencies.
//!
//! `cargo bench --bench abuse_probe -- [--posts N] [--entry BYTES] [--refs N] [--bin PATH]…`
//!
//! Each `--bin` runs the same probe against another gateway binary in the same run (e.g. one
//! built from an older commit, for a before/after table); the default is this build's. Keep
//! `--posts` at 1 for a binary without the decoding budget: each POST then asks it for
//! `entry × refs` bytes.

use std::time::{Duration, Instant};

use eas_testbed::{ChildGateway, Dovecot, TestUser};
use procfs::mib;

#[path = "common/amplification.rs"]
mod amplification;
#[path = "common/procfs.rs"]
mod procfs;
use amplification::amplification;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    posts: usize,
    entry: usize,
    refs: usize,
    bins: Vec<String>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            posts: 100,
            entry: 60_000,
            refs: 30_000,
            bins: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--posts" => args.posts = value()?.parse()?,
                "--entry" => args.entry = value()?.parse()?,
                "--refs" => args.refs = value()?.parse()?,
                "--bin" => args.bins.push(value()?),
                // cargo bench passes --bench; criterion-style filters are not used here.
                "--bench" => {}
                other => return Err(format!("unknown argument {other}").into()),
            }
        }
        if args.bins.is_empty() {
            args.bins.push(env!("CARGO_BIN_EXE_eas-gateway").to_owned());
        }
        Ok(args)
    }
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    procfs::status_kib(&pid.to_string(), field)
}

async fn start_gateway(bin: &str, dovecot: &Dovecot) -> Result<ChildGateway> {
    let extra = "[provision]\nrequired = false\n";
    Ok(ChildGateway::start(bin, &[], &dovecot.imap_config(), extra).await?)
}

fn post(
    client: &reqwest::Client,
    base: &str,
    user: &TestUser,
    device: &str,
    cmd: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    client
        .post(format!(
            "{base}/Microsoft-Server-ActiveSync?Cmd={cmd}&User={}&DeviceId={device}&DeviceType=iPhone",
            user.login
        ))
        .basic_auth(&user.login, Some(&user.password))
        .header("MS-ASProtocolVersion", "14.1")
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .body(body)
}

fn folder_sync() -> Vec<u8> {
    eas_wbxml::from_xml(r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>0</SyncKey></FolderSync>"#)
        .expect("FolderSync XML")
        .encode()
}

async fn probe(bin: &str, args: &Args, dovecot: &Dovecot, users: &[TestUser]) -> Result<()> {
    let gateway = start_gateway(bin, dovecot).await?;
    let pid = gateway.pid();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()?;
    let (attacker, victim) = (&users[0], &users[1]);
    // Warm up: both users logged in (cache), a FolderSync each, then let the allocator settle.
    for (u, d) in [(attacker, "ATTACK0"), (victim, "VICTIM")] {
        let r = post(&client, &gateway.base, u, d, "FolderSync", folder_sync())
            .send()
            .await?;
        if r.status() != 200 {
            return Err(format!("warm-up FolderSync: HTTP {}", r.status()).into());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = proc_kib(pid, "VmRSS:");

    let doc = amplification(args.entry, args.refs);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(proc_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak
        })
    };
    let victim_task = {
        let client = client.clone();
        let base = gateway.base.clone();
        let victim = victim.clone();
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                match post(
                    &client,
                    &base,
                    &victim,
                    "VICTIM",
                    "FolderSync",
                    folder_sync(),
                )
                .send()
                .await
                {
                    Ok(r) if r.status() == 200 => latencies.push(t.elapsed()),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        })
    };
    let started = Instant::now();
    let attacks: Vec<_> = (0..args.posts)
        .map(|i| {
            let req = post(
                &client,
                &gateway.base,
                attacker,
                &format!("ATTACK{i}"),
                // Not Sync: the per-user cap on Pings and Syncs under way would refuse some
                // before their body is read, and every body is to be decoded here.
                "FolderSync",
                doc.clone(),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let status = match req.send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                (status, t.elapsed())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for a in attacks {
        let (status, took) = a.await?;
        *statuses.entry(status).or_insert(0usize) += 1;
        slowest = slowest.max(took);
    }
    let attack_time = started.elapsed();
    // A little longer, so a late spike is seen and the other phone had turns after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await?;
    let (mut latencies, failures) = victim_task.await?;
    let hwm = proc_kib(pid, "VmHWM:");
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{bin}\n  {} POSTs of {} bytes (would decode to {:.1} GB each) answered {:?} in {:.0} ms \
         (slowest {:.0} ms)\n  gateway VmRSS idle {:.1} MiB, peak {:.1} MiB (+{:.1} MiB), VmHWM \
         {:.1} MiB\n  other phone meanwhile: {} FolderSyncs, p50 {:.1} ms, max {:.1} ms, {} \
         failed",
        args.posts,
        doc.len(),
        (args.entry as f64 * args.refs as f64) / 1e9,
        statuses,
        attack_time.as_secs_f64() * 1000.0,
        slowest.as_secs_f64() * 1000.0,
        mib(idle),
        mib(peak),
        mib(peak.saturating_sub(idle)),
        mib(hwm),
        latencies.len(),
        pct(0.5),
        pct(1.0),
        failures,
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse()?;
    let users = vec![
        TestUser::new("attacker@example.com", "attacker-pw-1"),
        TestUser::new("victim@example.com", "victim-pw-1"),
    ];
    let dovecot = Dovecot::start(&users)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "abuse_probe: {} parallel amplification POSTs per binary, entry {} bytes × {} references",
        args.posts, args.entry, args.refs
    );
    for bin in &args.bins {
        runtime.block_on(probe(bin, &args, &dovecot, &users))?;
    }
    Ok(())
}

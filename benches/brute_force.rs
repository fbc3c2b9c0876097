//! A brute-force storm against one user: how many IMAP LOGINs reach Dovecot, and what the
//! real user and bystanders see meanwhile.
//!
//! ```text
//! cargo bench --bench brute_force -- [--attempts 1000]
//! ```
//!
//! A private Dovecot (the testbed: no `auth_failure_delay`, so Dovecot answers a wrong
//! password at once, the attacker's best case) and a gateway in this process with the default
//! `[auth]` settings. The victim's phone has logged in (its password is cached). Then
//! `--attempts` OPTIONS requests with distinct wrong passwords start at once, each on its own
//! connection from 127.0.0.1, while, from the same address:
//!
//! - the victim's phone sends OPTIONS every 20 ms (cached password);
//! - 100 ms in, the victim's cached password is dropped and the victim logs in from another
//!   address (127.0.0.2): an uncached right password during the storm;
//! - another user of the same address logs in (uncached).
//!
//! Prints the answers, the LOGINs (the gateway's counter and Dovecot's log), and latencies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eas_gateway::config::Config;
use eas_gateway::http::{AppState, serve};
use eas_testbed::{Dovecot, TestUser};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn options(
    client: &reqwest::Client,
    url: &str,
    login: &str,
    password: &str,
) -> Result<(u16, Duration), Error> {
    let t = Instant::now();
    let r = client
        .request(reqwest::Method::OPTIONS, url)
        .basic_auth(login, Some(password))
        .send()
        .await?;
    Ok((r.status().as_u16(), t.elapsed()))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut attempts = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--attempts" {
            attempts = args.next().ok_or("--attempts N")?.parse()?;
        }
    }
    let victim = TestUser::new("victim@example.com", "victim-Right-1");
    let bystander = TestUser::new("bystander@example.com", "bystander-Right-1");
    let dovecot = Dovecot::start(&[victim.clone(), bystander.clone()])?;

    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.public_url = "https://mail.example.com".into();
    config.imap.host = "127.0.0.1".into();
    config.imap.port = dovecot.imap_port();
    config.imap.security = "none".into();
    config.state.url = format!("sqlite:{}", dir.path().join("state.db").display());
    config.validate()?;
    let state = Arc::new(AppState::new(config)?);
    let handle = axum_server::Handle::new();
    tokio::spawn(serve(state.clone(), handle.clone()));
    let addr = handle.listening().await.ok_or("gateway did not start")?;
    let url = format!(
        "http://127.0.0.1:{}/Microsoft-Server-ActiveSync",
        addr.port()
    );
    let metrics_url = format!("http://127.0.0.1:{}/metrics", addr.port());

    let phone = reqwest::Client::new();
    let (status, _) = options(&phone, &url, &victim.login, &victim.password).await?;
    assert_eq!(status, 200, "the victim logs in");
    let mut quiet = Vec::new();
    for _ in 0..50 {
        quiet.push(
            options(&phone, &url, &victim.login, &victim.password)
                .await?
                .1,
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    quiet.sort();
    let before = reqwest::get(&metrics_url).await?.text().await?;
    let failed_logins = || {
        std::fs::read_to_string(dovecot.log_path())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&victim.login) && l.contains("auth failed"))
            .count()
    };
    let dovecot_before = failed_logins();

    let attacker = reqwest::Client::new();
    let started = Instant::now();
    let storm: Vec<_> = (0..attempts)
        .map(|i| {
            let (client, url, login) = (attacker.clone(), url.clone(), victim.login.clone());
            tokio::spawn(async move {
                options(&client, &url, &login, &format!("guess-{i}"))
                    .await
                    .unwrap_or((0, Duration::ZERO))
            })
        })
        .collect();

    let elsewhere = {
        let (url, victim, state) = (url.clone(), victim.clone(), state.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            state.auth.forget(&victim.login, &victim.password);
            let client = reqwest::Client::builder()
                .local_address(IpAddr::from([127, 0, 0, 2]))
                .build()
                .expect("client");
            options(&client, &url, &victim.login, &victim.password).await
        })
    };
    let neighbour = {
        let (url, bystander) = (url.clone(), bystander.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let client = reqwest::Client::new();
            options(&client, &url, &bystander.login, &bystander.password).await
        })
    };

    let locked_at = {
        let metrics_url = metrics_url.clone();
        tokio::spawn(async move {
            loop {
                let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
                if metric(&text, "eas_auth_lockouts_total{key=\"user\"}") > 0 {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut real = Vec::new();
    let mut real_statuses = BTreeMap::<u16, usize>::new();
    while !storm.iter().all(|t| t.is_finished()) {
        // The cached password is dropped 100 ms in; until the log-in from elsewhere caches it
        // again, this phone is an uncached right password from the attacker's address.
        let (s, t) = options(&phone, &url, &victim.login, &victim.password).await?;
        *real_statuses.entry(s).or_default() += 1;
        if s == 200 {
            real.push(t);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answers = BTreeMap::<u16, usize>::new();
    let mut storm_latency = Vec::new();
    for t in storm {
        let (s, d) = t.await?;
        *answers.entry(s).or_default() += 1;
        storm_latency.push(d);
    }
    let storm_took = started.elapsed();
    let (elsewhere_status, elsewhere_took) = elsewhere.await??;
    let (neighbour_status, neighbour_took) = neighbour.await??;
    let locked_at = locked_at.await?.ok_or("metrics")?;
    // One wrong password straight to Dovecot, for scale.
    let imap = eas_gateway::imap::ImapConfig {
        host: "127.0.0.1".into(),
        port: dovecot.imap_port(),
        security: eas_gateway::imap::Security::None,
        tls_insecure: false,
        timeout: Duration::from_secs(30),
    };
    let t = Instant::now();
    let direct = eas_gateway::imap::check_login(&imap, &victim.login, "one-more-guess").await;
    let direct_took = t.elapsed();
    let after = reqwest::get(&metrics_url).await?.text().await?;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);

    real.sort();
    storm_latency.sort();
    println!("brute force: {attempts} wrong passwords at once against one user");
    println!("  storm answered in {storm_took:.2?}: {answers:?}");
    println!(
        "  attacker latency p50 {:.2?}, max {:.2?} (401s are slowed down, 503s are not)",
        quantile(&storm_latency, 0.5),
        quantile(&storm_latency, 1.0)
    );
    println!(
        "  IMAP LOGINs: {} by the gateway's counter, {} failures in Dovecot's log",
        delta("eas_auth_imap_logins_total"),
        failed_logins() - dovecot_before - 1
    );
    println!(
        "  the user was locked out {locked_at:.2?} after the storm began (one wrong LOGIN \
         straight to Dovecot: {direct_took:.2?}, {})",
        if direct.is_err() {
            "refused"
        } else {
            "accepted?!"
        }
    );
    println!(
        "  refused without IMAP: user {}, network {}, queue {}; repeated {}",
        delta("eas_auth_throttled_total{reason=\"user\"}"),
        delta("eas_auth_throttled_total{reason=\"network\"}"),
        delta("eas_auth_throttled_total{reason=\"queue\"}"),
        delta("eas_auth_failures_total{source=\"repeated\"}"),
    );
    println!(
        "  victim, cached password, same address: {} answers {:?}; latency p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        real.len(),
        real_statuses,
        quantile(&real, 0.5),
        quantile(&real, 0.99),
        quantile(&real, 1.0)
    );
    println!(
        "  the same before the storm: p50 {:.2?}, max {:.2?}",
        quantile(&quiet, 0.5),
        quantile(&quiet, 1.0)
    );
    println!(
        "  victim, uncached right password, other address: {elsewhere_status} in {elsewhere_took:.2?}"
    );
    println!(
        "  another user, uncached, the attacker's address: {neighbour_status} in {neighbour_took:.2?}"
    );
    handle.shutdown();
    Ok(())
}

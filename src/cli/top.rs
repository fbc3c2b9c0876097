//! `eas-gateway top`: a live view of a running gateway, like z-push-top — held Pings, requests
//! per second by command with their p50/p99 latency, IMAP connections, log-ins and errors —
//! read from its `/metrics` once a second.
//!
//! Owns the reading of the exposition (the few lines it needs) and the screen; the numbers
//! are the gateway's. `/metrics` answers loopback clients only, so `top` runs on the
//! gateway's host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::Config;

/// One sample: the metric name and its labels.
type Key = (String, BTreeMap<String, String>);

/// One scrape: every sample line's value, and when it was read.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    samples: BTreeMap<Key, f64>,
    at: Option<Instant>,
}

impl Scrape {
    /// Reads the sample lines of a text exposition; comments and lines it cannot read are
    /// skipped (`top` shows what it understands).
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((key, value)) = sample(line) {
                samples.insert(key, value);
            }
        }
        Scrape {
            samples,
            at: Some(Instant::now()),
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, l), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The values of one label among a metric's samples.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| l.get(label).cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// (upper bound, cumulative count) of a command's latency histogram.
    fn buckets(&self, command: &str) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|((n, l), _)| {
                n == "eas_request_duration_seconds_bucket"
                    && l.get("command").map(String::as_str) == Some(command)
            })
            .filter_map(|((_, l), v)| {
                let le = l.get("le")?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// `name{a="b",c="d"} value` (label values with `\\`, `\"` and `\n` escapes).
fn sample(line: &str) -> Option<(Key, f64)> {
    let (series, value) = line.trim().rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some(((series.to_owned(), BTreeMap::new()), value));
    };
    let rest = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut v = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                '"' => break,
                c => v.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), v);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(((name.to_owned(), labels), value))
}

/// The latency below which `q` of the requests fell, from cumulative bucket counts (as
/// Prometheus' `histogram_quantile`: linear within the bucket). None without requests.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let share = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * share);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) if s < 100.0 => format!("{s:.1}s"),
        Some(s) => format!("{s:.0}s"),
    }
}

/// A command's line: name, requests per second, p50, p99, total.
type Row = (String, f64, Option<f64>, Option<f64>, f64);

/// One screen from two scrapes: rates over the time between them, latencies from the
/// requests answered between them (all since the start when none were).
pub fn render(url: &str, before: &Scrape, now: &Scrape) -> String {
    let dt = match (before.at, now.at) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 1.0,
    };
    let rate = |name: &str, labels: &[(&str, &str)]| {
        ((now.get(name, labels) - before.get(name, labels)) / dt).max(0.0)
    };
    let mut out = String::new();
    let _ = writeln!(out, "eas-gateway top - {url}  (Ctrl-C to quit)\n");
    let _ = writeln!(
        out,
        "held Pings/Syncs {:>6}   client connections {:>6}   IMAP: push {:>4}, pooled {:>4}",
        now.get("eas_push_waiting", &[]),
        now.get("eas_connections_open", &[]),
        now.get("eas_push_imap_connections", &[]),
        now.get("eas_imap_pooled_sessions", &[]),
    );
    let _ = writeln!(
        out,
        "log-ins/s   ok {:>6.1}   bad password {:>6.1}   throttled {:>6.1}   IMAP down {:>6.1}",
        rate("eas_auth_attempts_total", &[("outcome", "ok")]),
        rate("eas_auth_attempts_total", &[("outcome", "bad_password")]),
        rate("eas_auth_attempts_total", &[("outcome", "throttled")]),
        rate("eas_auth_attempts_total", &[("outcome", "backend_down")]),
    );
    let errors: f64 = now
        .label_values("eas_requests_total", "status")
        .iter()
        .filter(|s| s.starts_with('5'))
        .map(|s| rate("eas_requests_total", &[("status", s)]))
        .sum();
    let _ = writeln!(
        out,
        "errors/s (5xx) {:>6.1}   refused by limits/s {:>6.1}   timeouts/s {:>6.1}\n",
        errors,
        rate("eas_limit_refusals_total", &[]),
        rate("eas_timeouts_total", &[]),
    );
    let _ = writeln!(
        out,
        "{:<20}{:>9}{:>10}{:>10}{:>11}",
        "COMMAND", "REQ/S", "p50", "p99", "TOTAL"
    );
    let mut rows: Vec<Row> = now
        .label_values("eas_requests_total", "command")
        .into_iter()
        .map(|command| {
            let c = command.as_str();
            let (b, n) = (before.buckets(c), now.buckets(c));
            // The requests of this interval: cumulative counts minus those of the last scrape.
            let recent: Vec<(f64, f64)> = n
                .iter()
                .map(|&(le, count)| {
                    let was = b.iter().find(|(l, _)| *l == le).map_or(0.0, |x| x.1);
                    (le, count - was)
                })
                .collect();
            let counts = if recent.last().is_some_and(|x| x.1 > 0.0) {
                &recent
            } else {
                &n
            };
            (
                command.clone(),
                rate("eas_requests_total", &[("command", c)]),
                quantile(0.5, counts),
                quantile(0.99, counts),
                now.get("eas_requests_total", &[("command", c)]),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.4.total_cmp(&a.4)));
    for (command, per_sec, p50, p99, total) in rows {
        let _ = writeln!(
            out,
            "{command:<20}{per_sec:>9.1}{:>10}{:>10}{total:>11}",
            seconds(p50),
            seconds(p99)
        );
    }
    out
}

/// Where the gateway of `config` answers `/metrics`: its listening port on loopback.
pub fn metrics_url(config: &Config) -> String {
    let listen = config.server.listen;
    let host = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let scheme = if config.server.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}:{}/metrics", listen.port())
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<Scrape> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read {url}: {e} (is the gateway running?)"))?;
    if !response.status().is_success() {
        anyhow::bail!(
            "{url} answered {} (it answers loopback clients only)",
            response.status()
        );
    }
    Ok(Scrape::parse(&response.text().await?))
}

/// Refreshes the screen every `every` until interrupted; with `frames`, stops after that many.
pub async fn run(
    url: &str,
    every: Duration,
    frames: Option<u64>,
    out: &mut dyn Write,
    clear: bool,
) -> anyhow::Result<()> {
    // The gateway's own certificate names its public host, not 127.0.0.1; this client only
    // ever reads the loopback /metrics, which carries no secrets.
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut before = scrape(&client, url).await?;
    let mut shown = 0;
    loop {
        tokio::time::sleep(every).await;
        let now = scrape(&client, url).await?;
        if clear {
            // Home and clear: one screen, redrawn in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        write!(out, "{}", render(url, &before, &now))?;
        out.flush()?;
        before = now;
        shown += 1;
        if frames.is_some_and(|f| shown >= f) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn samples_with_labels_and_escapes() {
        let s = Scrape::parse("# HELP x y\nplain 3\nwith{a=\"1\",b=\"q\\\"uote\"} 2.5\nbad line\n");
        assert_eq!(s.get("plain", &[]), 3.0);
        assert_eq!(s.get("with", &[("b", "q\"uote")]), 2.5);
        assert_eq!(s.get("with", &[("a", "1")]), 2.5);
        assert_eq!(s.get("missing", &[]), 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [(0.1, 50.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
        assert!((quantile(0.5, &b).unwrap() - 0.1).abs() < 1e-9);
        assert!((quantile(0.75, &b).unwrap() - 0.55).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[(1.0, 0.0)]), None);
    }

    #[test]
    fn a_screen_shows_rates_and_latencies() {
        let mut before = Scrape::parse(
            "eas_requests_total{command=\"Sync\",status=\"200\"} 10\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"0.1\"} 10\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"1.0\"} 10\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"+Inf\"} 10\n",
        );
        let mut now = Scrape::parse(
            "eas_push_waiting 7\n\
             eas_requests_total{command=\"Sync\",status=\"200\"} 30\n\
             eas_requests_total{command=\"Sync\",status=\"503\"} 2\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"0.1\"} 10\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"1.0\"} 32\n\
             eas_request_duration_seconds_bucket{command=\"Sync\",le=\"+Inf\"} 32\n",
        );
        let t = Instant::now();
        before.at = Some(t);
        now.at = Some(t + Duration::from_secs(2));
        let screen = render("http://127.0.0.1:8080/metrics", &before, &now);
        assert!(screen.contains("held Pings/Syncs      7"), "{screen}");
        assert!(screen.contains("errors/s (5xx)    1.0"), "{screen}");
        // 22 requests in 2 s, all between 0.1 and 1 s: p50 at 0.55 s.
        let row = screen.lines().find(|l| l.starts_with("Sync")).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["Sync", "11.0", "550ms", "991ms", "32"]
        );
    }
}

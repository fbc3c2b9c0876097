//! What `/metrics` shows, in the Prometheus text format (0.0.4), on `prometheus-client`.
//!
//! Owns the request counters and latency histograms (requests, IMAP and DAV round trips, push
//! wake-ups), the authentication outcomes, and the authenticator's and connection limits'
//! counters; the HTTP layer records into them and asks for the exposition. It must not learn
//! label values from clients: every label value is a `&'static str` chosen by the caller from
//! a fixed set (the EAS command names, HTTP methods, DAV methods, a few reasons), so no request
//! can create a new series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::exposition`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds of the latency buckets, in seconds: from a cached FolderSync (milliseconds) to
/// a held Ping or Sync (a heartbeat of up to an hour).
const LATENCY_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    command: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// How a log-in attempt ended, for `eas_auth_attempts_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    Ok,
    /// No usable `Authorization` header (a phone's first, unauthenticated try is one).
    Missing,
    /// The IMAP server refused the password, now or a moment ago.
    BadPassword,
    /// Refused without asking IMAP: a lock-out or no turn in time.
    Throttled,
    /// The IMAP server could not be asked.
    BackendDown,
}

impl AuthOutcome {
    const ALL: [AuthOutcome; 5] = [
        AuthOutcome::Ok,
        AuthOutcome::Missing,
        AuthOutcome::BadPassword,
        AuthOutcome::Throttled,
        AuthOutcome::BackendDown,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthOutcome::Ok => "ok",
            AuthOutcome::Missing => "missing",
            AuthOutcome::BadPassword => "bad_password",
            AuthOutcome::Throttled => "throttled",
            AuthOutcome::BackendDown => "backend_down",
        }
    }
}

/// IMAP round trips by command, for the whole process: the IMAP client reports to a plain
/// function (it must not know of metrics), so the histogram cannot live in [`Metrics`].
static IMAP_ROUND_TRIPS: std::sync::LazyLock<Family<CommandLabel, Histogram>> =
    std::sync::LazyLock::new(|| {
        Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS.iter().copied()))
    });

fn observe_imap(command: &'static str, elapsed: Duration) {
    IMAP_ROUND_TRIPS
        .get_or_create(&CommandLabel { command })
        .observe(elapsed.as_secs_f64());
}

/// DAV round trips by method, from sending the request to the end of its answer (failed
/// ones included), for the whole process like [`IMAP_ROUND_TRIPS`].
static DAV_ROUND_TRIPS: std::sync::LazyLock<Family<MethodLabel, Histogram>> =
    std::sync::LazyLock::new(|| {
        Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS.iter().copied()))
    });

/// The methods a DAV round trip is counted under; anything else is `other`, so a new
/// method in the client cannot make a series of its own. All exist (empty) from the start,
/// so dashboards find them before the first contacts or calendar Sync.
const DAV_METHODS: [&str; 8] = [
    "PROPFIND",
    "REPORT",
    "GET",
    "PUT",
    "DELETE",
    "MKCOL",
    "MKCALENDAR",
    "PROPPATCH",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: &'static str,
}

/// One request of the DAV client took `elapsed`.
pub fn dav_round_trip(method: &str, elapsed: Duration) {
    let method = DAV_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    DAV_ROUND_TRIPS
        .get_or_create(&MethodLabel { method })
        .observe(elapsed.as_secs_f64());
}

/// Push wake-ups: from the news (a Dovecot event, an IMAP notice) reaching the hub to the
/// Ping or held Sync answering with it, by where the news came from.
static PUSH_WAKEUPS: std::sync::LazyLock<Family<SourceLabel, Histogram>> =
    std::sync::LazyLock::new(|| {
        Family::new_with_constructor(|| Histogram::new(WAKEUP_BUCKETS.iter().copied()))
    });

/// Upper bounds for push wake-ups, in seconds: Dovecot's events take milliseconds, a look
/// over IMAP tens of them.
const WAKEUP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// A waiting device was answered with news `elapsed` after the hub had it; `source` is the
/// mail source (`imap`, `dovecot-events`, `both`) or `dav` (the DAV watchers' sync tokens).
pub fn push_wakeup(source: &'static str, elapsed: Duration) {
    PUSH_WAKEUPS
        .get_or_create(&SourceLabel { source })
        .observe(elapsed.as_secs_f64());
}

/// Requests, their latency, and log-in outcomes.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<CommandLabel, Histogram>,
    auth: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let auth = Family::<OutcomeLabel, Counter>::default();
        // Every outcome from the start, so a rate over the first failures is not a gap.
        for o in AuthOutcome::ALL {
            let _ = auth.get_or_create(&OutcomeLabel { outcome: o.label() });
        }
        crate::imap::observe_round_trips(observe_imap);
        // The wake-up series exist from the start (empty), so dashboards find them.
        for source in ["imap", "dovecot-events", "both", "dav"] {
            let _ = PUSH_WAKEUPS.get_or_create(&SourceLabel { source });
        }
        for method in DAV_METHODS.into_iter().chain(["other"]) {
            let _ = DAV_ROUND_TRIPS.get_or_create(&MethodLabel { method });
        }
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(LATENCY_BUCKETS.iter().copied())
            }),
            auth,
        }
    }
}

/// Values read at scrape time from the parts that keep their own counts.
pub struct Snapshot<'a> {
    /// Devices waiting in Ping or a held Sync, and IMAP connections held by the push sources.
    pub push: (usize, usize),
    pub pooled_imap_sessions: usize,
    pub auth: &'a AuthCounters,
    pub limits: &'a LimitCounters,
    /// Sections other modules render themselves (push sources, Sync read-ahead), already in
    /// the text format; appended as they are.
    pub extra: &'a [String],
}

impl Metrics {
    /// One answered request. `command` is an EAS command name or one of a fixed few words
    /// (`OPTIONS`, `invalid`, an HTTP method, `other`): never text from the request.
    pub fn record(&self, command: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { command, status })
            .inc();
        self.latency
            .get_or_create(&CommandLabel { command })
            .observe(elapsed.as_secs_f64());
    }

    /// How one log-in attempt ended.
    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth
            .get_or_create(&OutcomeLabel {
                outcome: outcome.label(),
            })
            .inc();
    }

    /// The whole exposition text.
    pub fn exposition(&self, snapshot: &Snapshot<'_>) -> String {
        let mut registry = Registry::default();
        // Families are shared handles: the registry reads the same counts the requests write.
        registry.register(
            "eas_requests",
            "Requests answered, by command and HTTP status",
            self.requests.clone(),
        );
        registry.register(
            "eas_request_duration_seconds",
            "Time from the request to its answer, by command (held Pings and Syncs included)",
            self.latency.clone(),
        );
        registry.register(
            "eas_auth_attempts",
            "Log-in attempts by outcome: ok, missing credentials, bad_password, throttled, \
             backend_down",
            self.auth.clone(),
        );
        registry.register(
            "eas_imap_round_trip_seconds",
            "Time from sending an IMAP command to its completion, by command",
            IMAP_ROUND_TRIPS.clone(),
        );
        registry.register(
            "eas_dav_round_trip_seconds",
            "Time from sending a request to the CardDAV/CalDAV server to the end of its answer, \
             by method",
            DAV_ROUND_TRIPS.clone(),
        );
        registry.register(
            "eas_push_wakeup_seconds",
            "Time from news reaching the push hub to the waiting Ping or Sync answering, by \
             source of the news",
            PUSH_WAKEUPS.clone(),
        );
        registry.register_collector(Box::new(Counts::new(snapshot)));
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        for section in snapshot.extra {
            out.push_str(section);
            if !section.is_empty() && !section.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// One family read at scrape time: (name, help, type, [(label name, label value, value)]).
type Sampled = (
    &'static str,
    &'static str,
    MetricType,
    Vec<(&'static str, &'static str, u64)>,
);

/// The counters kept as atomics by their owners, copied at scrape time.
#[derive(Debug)]
struct Counts {
    families: Vec<Sampled>,
}

impl Counts {
    fn new(s: &Snapshot<'_>) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (a, l) = (s.auth, s.limits);
        let one = |v: u64| vec![("", "", v)];
        Counts {
            families: vec![
                (
                    "eas_push_waiting",
                    "Devices waiting in Ping or a held Sync",
                    MetricType::Gauge,
                    one(s.push.0 as u64),
                ),
                (
                    "eas_push_imap_connections",
                    "IMAP connections held by push watchers",
                    MetricType::Gauge,
                    one(s.push.1 as u64),
                ),
                (
                    "eas_imap_pooled_sessions",
                    "Logged-in IMAP sessions kept for the next request",
                    MetricType::Gauge,
                    one(s.pooled_imap_sessions as u64),
                ),
                (
                    "eas_auth_failures",
                    "Wrong passwords, by how they were known",
                    MetricType::Counter,
                    vec![
                        ("source", "imap", get(&a.failures_imap)),
                        ("source", "repeated", get(&a.failures_repeated)),
                    ],
                ),
                (
                    "eas_auth_throttled",
                    "Log-ins refused without asking IMAP, by reason",
                    MetricType::Counter,
                    vec![
                        ("reason", "user", get(&a.throttled_user)),
                        ("reason", "network", get(&a.throttled_network)),
                        ("reason", "queue", get(&a.throttled_queue)),
                    ],
                ),
                (
                    "eas_auth_lockouts",
                    "Lock-outs begun, per user or per client network",
                    MetricType::Counter,
                    vec![
                        ("key", "user", get(&a.lockouts_user)),
                        ("key", "network", get(&a.lockouts_network)),
                    ],
                ),
                (
                    "eas_auth_imap_logins",
                    "IMAP LOGINs sent to check a password",
                    MetricType::Counter,
                    one(get(&a.imap_logins)),
                ),
                (
                    "eas_auth_imap_logins_in_flight",
                    "IMAP LOGINs checking a password right now",
                    MetricType::Gauge,
                    one(get(&a.imap_logins_in_flight)),
                ),
                (
                    "eas_connections_open",
                    "Client connections open",
                    MetricType::Gauge,
                    one(get(&l.connections_open)),
                ),
                (
                    "eas_limit_refusals",
                    "Connections and requests refused by a limit",
                    MetricType::Counter,
                    vec![
                        ("limit", "connections", get(&l.refused_connections)),
                        ("limit", "held_requests_per_user", get(&l.refused_held_user)),
                        (
                            "limit",
                            "held_requests_per_address",
                            get(&l.refused_held_address),
                        ),
                        ("limit", "devices_per_user", get(&l.refused_devices)),
                    ],
                ),
                (
                    "eas_timeouts",
                    "Connections closed or requests ended by a timeout, by what was awaited",
                    MetricType::Counter,
                    vec![
                        ("awaiting", "header", get(&l.timeout_header)),
                        ("awaiting", "idle", get(&l.timeout_idle)),
                        ("awaiting", "body", get(&l.timeout_body)),
                    ],
                ),
            ],
        }
    }
}

impl Collector for Counts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, samples) in &self.families {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            for &(label, value, n) in samples {
                let labels: Vec<(&str, &str)> = if label.is_empty() {
                    Vec::new()
                } else {
                    vec![(label, value)]
                };
                let sample = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(n).encode(sample)?,
                    _ => ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// The authenticator's counters (see `http::auth`).
#[derive(Default)]
pub struct AuthCounters {
    /// Wrong passwords: told by IMAP, or a repeat of one IMAP refused a moment ago.
    pub failures_imap: AtomicU64,
    pub failures_repeated: AtomicU64,
    /// Refused without asking IMAP: a locked user, a locked network, no turn in time.
    pub throttled_user: AtomicU64,
    pub throttled_network: AtomicU64,
    pub throttled_queue: AtomicU64,
    /// Lock-outs begun.
    pub lockouts_user: AtomicU64,
    pub lockouts_network: AtomicU64,
    /// IMAP LOGINs sent to check a password, and how many are under way.
    pub imap_logins: AtomicU64,
    pub imap_logins_in_flight: AtomicU64,
}

/// The connection and request limits' counters (see `http::limits`, `http::serve`).
#[derive(Default)]
pub struct LimitCounters {
    pub connections_open: AtomicU64,
    /// Refusals, by limit.
    pub refused_connections: AtomicU64,
    pub refused_held_user: AtomicU64,
    pub refused_held_address: AtomicU64,
    pub refused_devices: AtomicU64,
    /// Connections closed or requests cut off by a timeout, by what was awaited.
    pub timeout_header: AtomicU64,
    pub timeout_idle: AtomicU64,
    pub timeout_body: AtomicU64,
}

/// One more of a counter or gauge.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One less of a gauge.
pub fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

/// A quick reading of the exposition for `eas-gateway top`: the value of each sample line,
/// by its name with labels as written (`name{a="b"}`). Comments and malformed lines are
/// skipped.
pub fn parse_samples(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let sample = line
            .rsplit_once(' ')
            .and_then(|(name, value)| Some((name.to_owned(), value.parse::<f64>().ok()?)));
        out.extend(sample);
    }
    out
}

/// The sample lines of an exposition (no comments).
#[cfg(test)]
fn sample_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[cfg(test)]
mod test {
    use super::*;

    fn exposition(m: &Metrics) -> String {
        let (auth, limits) = (AuthCounters::default(), LimitCounters::default());
        inc(&auth.failures_imap);
        m.exposition(&Snapshot {
            push: (3, 1),
            pooled_imap_sessions: 2,
            auth: &auth,
            limits: &limits,
            extra: &["# HELP eas_x An extra section.\n# TYPE eas_x gauge\neas_x 7\n".into()],
        })
    }

    /// Prometheus reads `# HELP`/`# TYPE` only at the start of a line; every sample line is
    /// `name{labels} value`.
    #[test]
    fn exposition_lines_are_well_formed() {
        let m = Metrics::default();
        m.record("Sync", 200, Duration::from_millis(30));
        dav_round_trip("REPORT", Duration::from_millis(20));
        dav_round_trip("SEARCH", Duration::from_millis(20));
        m.auth(AuthOutcome::BadPassword);
        let text = exposition(&m);
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP eas_") || line.starts_with("# TYPE eas_"),
                    "{line:?}"
                );
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("eas_") && !name.contains(' '), "{line:?}");
            value.parse::<f64>().unwrap();
        }
        let samples = sample_lines(&text);
        for want in [
            "eas_push_waiting 3",
            "eas_requests_total{command=\"Sync\",status=\"200\"} 1",
            "eas_request_duration_seconds_bucket{command=\"Sync\",le=\"0.05\"} 1",
            "eas_request_duration_seconds_bucket{command=\"Sync\",le=\"0.025\"} 0",
            "eas_request_duration_seconds_count{command=\"Sync\"} 1",
            "eas_auth_attempts_total{outcome=\"bad_password\"} 1",
            "eas_auth_attempts_total{outcome=\"ok\"} 0",
            "eas_auth_failures_total{source=\"imap\"} 1",
            "eas_imap_pooled_sessions 2",
            "eas_x 7",
        ] {
            assert!(samples.contains(&want), "{want} missing in\n{text}");
        }
        assert!(text.contains("# TYPE eas_dav_round_trip_seconds histogram"));
        assert!(!text.contains("SEARCH"), "methods come from a fixed set");
        // The histogram is process-wide: other tests may have added to it.
        for series in [
            "eas_dav_round_trip_seconds_bucket{method=\"REPORT\",le=\"0.025\"} ",
            "eas_dav_round_trip_seconds_count{method=\"other\"} ",
        ] {
            assert!(
                samples
                    .iter()
                    .any(|l| l.starts_with(series) && !l.ends_with(" 0")),
                "{series} missing in\n{text}"
            );
        }
        let parsed = parse_samples(&text);
        assert!(parsed.contains(&("eas_push_imap_connections".into(), 1.0)));
    }
}

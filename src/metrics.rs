//! Request counters for `/metrics` (Prometheus text format).
//!
//! Owns the counters only; the HTTP layer records one entry per answered request, the
//! authenticator and the connection limits count into their own sets.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests by (command, HTTP status).
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub fn record(&self, command: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((command.to_owned(), status)).or_default() += 1;
    }

    /// The exposition text, with the push hub's gauges: (waiting devices, IMAP connections
    /// held by the push sources).
    pub fn render_with(&self, push: (usize, usize)) -> String {
        let mut out = self.render();
        let _ = write!(
            out,
            "# HELP eas_push_waiting Devices waiting in Ping or a held Sync.
# TYPE eas_push_waiting gauge
eas_push_waiting {}
# HELP eas_push_imap_connections IMAP connections held by push watchers.
# TYPE eas_push_imap_connections gauge
eas_push_imap_connections {}
",
            push.0, push.1
        );
        out
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP eas_requests_total Requests answered, by command and HTTP status.\n\
             # TYPE eas_requests_total counter\n",
        );
        for ((command, status), n) in map.iter() {
            let _ = writeln!(
                out,
                "eas_requests_total{{command=\"{command}\",status=\"{status}\"}} {n}"
            );
        }
        out
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

impl AuthCounters {
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP eas_auth_failures_total Wrong passwords, by how they were known.
# TYPE eas_auth_failures_total counter
eas_auth_failures_total{{source=\"imap\"}} {}
eas_auth_failures_total{{source=\"repeated\"}} {}
# HELP eas_auth_throttled_total Log-ins refused without asking IMAP, by reason.
# TYPE eas_auth_throttled_total counter
eas_auth_throttled_total{{reason=\"user\"}} {}
eas_auth_throttled_total{{reason=\"network\"}} {}
eas_auth_throttled_total{{reason=\"queue\"}} {}
# HELP eas_auth_lockouts_total Lock-outs begun, per user or per client network.
# TYPE eas_auth_lockouts_total counter
eas_auth_lockouts_total{{key=\"user\"}} {}
eas_auth_lockouts_total{{key=\"network\"}} {}
# HELP eas_auth_imap_logins_total IMAP LOGINs sent to check a password.
# TYPE eas_auth_imap_logins_total counter
eas_auth_imap_logins_total {}
# HELP eas_auth_imap_logins_in_flight IMAP LOGINs checking a password right now.
# TYPE eas_auth_imap_logins_in_flight gauge
eas_auth_imap_logins_in_flight {}
",
            get(&self.failures_imap),
            get(&self.failures_repeated),
            get(&self.throttled_user),
            get(&self.throttled_network),
            get(&self.throttled_queue),
            get(&self.lockouts_user),
            get(&self.lockouts_network),
            get(&self.imap_logins),
            get(&self.imap_logins_in_flight),
        )
    }
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

impl LimitCounters {
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP eas_connections_open Client connections open.
# TYPE eas_connections_open gauge
eas_connections_open {}
# HELP eas_limit_refusals_total Connections and requests refused by a limit.
# TYPE eas_limit_refusals_total counter
eas_limit_refusals_total{{limit=\"connections\"}} {}
eas_limit_refusals_total{{limit=\"held_requests_per_user\"}} {}
eas_limit_refusals_total{{limit=\"held_requests_per_address\"}} {}
eas_limit_refusals_total{{limit=\"devices_per_user\"}} {}
# HELP eas_timeouts_total Connections closed or requests ended by a timeout, by what was awaited.
# TYPE eas_timeouts_total counter
eas_timeouts_total{{awaiting=\"header\"}} {}
eas_timeouts_total{{awaiting=\"idle\"}} {}
eas_timeouts_total{{awaiting=\"body\"}} {}
",
            get(&self.connections_open),
            get(&self.refused_connections),
            get(&self.refused_held_user),
            get(&self.refused_held_address),
            get(&self.refused_devices),
            get(&self.timeout_header),
            get(&self.timeout_idle),
            get(&self.timeout_body),
        )
    }
}

/// One more of a counter or gauge.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One less of a gauge.
pub fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(test)]
mod test {
    use super::*;

    /// Prometheus reads `# HELP`/`# TYPE` only at the start of a line; every sample line is
    /// `name{labels} value`.
    #[test]
    fn exposition_lines_are_well_formed() {
        let m = Metrics::default();
        m.record("Sync", 200);
        let mut text = m.render_with((3, 1));
        text.push_str(&AuthCounters::default().render());
        text.push_str(&LimitCounters::default().render());
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
        assert!(text.contains("\neas_push_waiting 3\n"));
    }
}

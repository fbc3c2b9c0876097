//! Request counters for `/metrics` (Prometheus text format).
//!
//! Owns the counters only; the HTTP layer records one entry per answered request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

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

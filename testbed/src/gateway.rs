//! The gateway in this process, listening on a random loopback port with a state database of
//! its own: what the integration tests and the in-process benchmarks talk to with a
//! [`Phone`](crate::Phone).

use std::net::SocketAddr;
use std::sync::Arc;

use axum_server::Handle;
use eas_gateway::config::Config;
use eas_gateway::http::{AppState, serve};
use eas_gateway::imap::ImapConfig;

/// A gateway listening on a random loopback port, with its own state database (SQLite in a
/// temporary directory). Stopped on drop.
pub struct Gateway {
    /// `http://127.0.0.1:<port>` (`https://` when the configuration has a certificate).
    pub base: String,
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: Handle,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts a gateway in front of `imap` (plain IMAP), after `tweak` has had its say on the
    /// configuration. Panics when it does not start (tests).
    pub async fn start(imap: ImapConfig, tweak: impl FnOnce(&mut Config)) -> Gateway {
        Gateway::try_start(imap, tweak)
            .await
            .unwrap_or_else(|e| panic!("the gateway did not start: {e:#}"))
    }

    /// [`Gateway::start`] with the reason as an error (benchmarks).
    pub async fn try_start(
        imap: ImapConfig,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let mut config = Config::default();
        config.server.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.server.public_url = "https://mail.example.com".into();
        config.imap.host = imap.host.clone();
        config.imap.port = imap.port;
        config.imap.security = "none".into();
        config.state.url = format!("sqlite:{}", dir.path().join("state.db").display());
        tweak(&mut config);
        config.validate()?;
        let state = Arc::new(AppState::new(config)?);
        let handle = Handle::new();
        tokio::spawn(serve(state.clone(), handle.clone()));
        let addr = handle
            .listening()
            .await
            .ok_or_else(|| anyhow::anyhow!("gateway did not start"))?;
        let scheme = if state.config.server.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(Gateway {
            base: format!("{scheme}://127.0.0.1:{}", addr.port()),
            addr,
            state,
            handle,
            dir,
        })
    }

    /// The `/metrics` text (answered to loopback clients).
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The state database as it is on disk, write-ahead log included.
    pub fn state_db_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for name in ["state.db", "state.db-wal"] {
            if let Ok(b) = std::fs::read(self.dir.path().join(name)) {
                bytes.extend_from_slice(&b);
            }
        }
        bytes
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

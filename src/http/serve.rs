//! Running the router on a socket: plain HTTP (behind a TLS-terminating proxy) or HTTPS with
//! rustls, whose certificate is re-read when the PEM files change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use super::{AppState, app};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key could not be read or do not fit together.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listening socket failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds a rustls server configuration from PEM files.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{}: no certificate",
            cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{}: no private key", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves until `handle` is told to shut down. Returns the bound address through `handle`.
pub async fn serve(state: Arc<AppState>, handle: Handle) -> Result<(), ServeError> {
    let addr = state.config.server.listen;
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    match (&state.config.server.tls_cert, &state.config.server.tls_key) {
        (Some(cert), Some(key)) => {
            let rustls = RustlsConfig::from_config(Arc::new(tls_config(cert, key)?));
            let every = Duration::from_secs(state.config.server.tls_reload_secs.max(1));
            let reload = tokio::spawn(reload_on_change(
                rustls.clone(),
                cert.clone(),
                key.clone(),
                every,
            ));
            // The watcher lives as long as the server, not longer.
            let _stop = AbortOnDrop(reload);
            let mut server = axum_server::bind_rustls(addr, rustls);
            server.http_builder().http1().max_buf_size(HTTP1_MAX_BUF);
            server.handle(handle).serve(service).await?;
        }
        _ => {
            let mut server = axum_server::bind(addr);
            server.http_builder().http1().max_buf_size(HTTP1_MAX_BUF);
            server.handle(handle).serve(service).await?;
        }
    }
    Ok(())
}

/// hyper's smallest buffer limit (its initial buffer size). A held Ping keeps its
/// connection's read buffer for minutes; uncapped, hyper grew it to 16 KiB on most phone
/// connections (measured with heaptrack over 2,000 held Pings; 8 KiB with the cap, the
/// request dropped before waiting, see `http::run_command`). Bodies are read in 8 KiB
/// pieces; a request head above 8 KiB is refused with 431.
const HTTP1_MAX_BUF: usize = 8192;

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Re-reads the certificate when either file changes, so a renewed certificate (certbot)
/// needs no restart. A broken new pair is logged and the old one stays in use.
async fn reload_on_change(rustls: RustlsConfig, cert: PathBuf, key: PathBuf, every: Duration) {
    let mut seen = (modified(&cert), modified(&key));
    loop {
        tokio::time::sleep(every).await;
        let now = (modified(&cert), modified(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match tls_config(&cert, &key) {
            Ok(config) => {
                rustls.reload_from_config(Arc::new(config));
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "new TLS certificate not loaded; keeping the old one")
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! Running the gateway as a service: state, listener, and a graceful stop on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;

use crate::config::Config;
use crate::http::{self, AppState};

/// Serves until SIGINT or SIGTERM.
pub async fn run_server(config: Config) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(config)?);
    let handle = Handle::new();
    tokio::spawn(stop_on_signal(handle.clone(), state.hub.clone()));
    let listen = state.config.server.listen;
    let tls = state.config.server.tls_cert.is_some();
    tracing::info!(%listen, tls, url = %state.config.activesync_url(), "serving");
    http::serve(state, handle).await?;
    Ok(())
}

async fn stop_on_signal(handle: Handle, hub: Arc<crate::push::Hub>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("stopping");
    // Held Pings and Syncs answer now, so the phones re-Ping the next process at once
    // instead of waiting out their heartbeat on a dead connection.
    hub.shutdown();
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
}

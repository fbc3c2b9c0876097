//! Running the gateway as a service: state, listener, `systemctl reload` (SIGHUP) and a
//! graceful stop on SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;

use crate::config::Config;
use crate::http::{self, AppState};

/// Reads the configuration again, as at start (same file, same flags).
pub type Reload = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// Serves until SIGINT or SIGTERM. On SIGHUP, `reload` is called: see [`reload_on_hangup`].
pub async fn run_server(config: Config, reload: Reload) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(config)?);
    let handle = Handle::new();
    tokio::spawn(stop_on_signal(handle.clone(), state.hub.clone()));
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(state.clone(), reload));
    #[cfg(not(unix))]
    drop(reload);
    let listen = state.config.server.listen;
    let tls = state.config.server.tls_cert.is_some();
    tracing::info!(%listen, tls, url = %state.config.activesync_url(), "serving");
    http::serve(state, handle).await?;
    Ok(())
}

/// `systemctl reload`: the certificate is re-read at once (held Pings keep their connections),
/// and the configuration file is read and checked again. A broken file is logged with the
/// reason and the running configuration stays. Sections that changed are named: they take
/// effect at the next restart, since the running requests were set up with the old ones.
#[cfg(unix)]
async fn reload_on_hangup(state: Arc<AppState>, reload: Reload) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        state.tls_reload.notify_one();
        match reload() {
            Err(e) => tracing::error!(
                error = %e,
                "reload: the configuration is not valid; keeping the running one"
            ),
            Ok(new) => {
                let changed = changed_sections(&state.config, &new);
                if changed.is_empty() {
                    tracing::info!("reload: certificate re-read; configuration unchanged");
                } else {
                    tracing::warn!(
                        sections = %changed.join(", "),
                        "reload: certificate re-read; the configuration is valid, but changes \
                         in these sections take effect at the next restart \
                         (systemctl restart eas-gateway; phones reconnect on their own)"
                    );
                }
            }
        }
    }
}

/// The `[sections]` whose values differ.
pub fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    // Compared through Debug: every section derives it, and a reload is rare.
    let differ =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let sections: [(&'static str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 11] = [
        ("server", &old.server, &new.server),
        ("imap", &old.imap, &new.imap),
        ("state", &old.state, &new.state),
        ("auth", &old.auth, &new.auth),
        ("provision", &old.provision, &new.provision),
        ("sync", &old.sync, &new.sync),
        ("push", &old.push, &new.push),
        ("directory", &old.directory, &new.directory),
        ("smtp", &old.smtp, &new.smtp),
        ("limits", &old.limits, &new.limits),
        ("log", &old.log, &new.log),
    ];
    for (name, a, b) in sections {
        if differ(a, b) {
            out.push(name);
        }
    }
    out
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

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn changed_sections_are_named() {
        let old = Config::default();
        let mut new = old.clone();
        assert!(changed_sections(&old, &new).is_empty());
        new.imap.port = 1143;
        new.log.format = crate::config::LogFormat::Json;
        assert_eq!(changed_sections(&old, &new), ["imap", "log"]);
    }
}

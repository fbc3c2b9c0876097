//! Log output for `serve`: readable lines or JSON objects on standard output (the journal
//! under systemd), colour only where a person reads them.
//!
//! Owns the choice of format and colour; what is logged, and that no password or message
//! content ever is, belongs to the modules that log.

use std::io::IsTerminal;

use crate::config::{LogColor, LogConfig, LogFormat};

/// Whether lines get ANSI colour: `always`, `never`, or on a terminal unless `NO_COLOR` is
/// set (<https://no-color.org>). A file or the journal would store the escapes as text.
pub fn use_color(color: LogColor, is_terminal: bool, no_color_env: bool) -> bool {
    match color {
        LogColor::Always => true,
        LogColor::Never => false,
        LogColor::Auto => is_terminal && !no_color_env,
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over `log.level`; without either, `info`.
pub fn init(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::try_new(config.level.as_deref().unwrap_or("info"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match config.format {
        LogFormat::Text => {
            let ansi = use_color(
                config.color,
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            );
            builder.with_ansi(ansi).init();
        }
        // One object per line; the request's span (command, user, device) is kept in `span`.
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_color(LogColor::Auto, true, false));
        assert!(!use_color(LogColor::Auto, false, false));
        assert!(!use_color(LogColor::Auto, true, true));
        assert!(use_color(LogColor::Always, false, true));
        assert!(!use_color(LogColor::Never, true, false));
    }
}

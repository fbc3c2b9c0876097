//! What the command-line subcommands run: `serve` ([`server`]), `check` ([`check`], with
//! [`check_events`] for Dovecot's push events and [`check_dav`] for the DAV server),
//! `devices`, `state migrate` ([`state`]: one state store copied into another), the log output
//! of `serve` ([`logging`]), the live view `top` ([`top`]) and the offline `wbxml
//! decode|encode` ([`tools`]). The demo is not here: it needs the test bed, so it is the
//! `eas-demo` binary of the dev-only `eas-testbed` crate.
//!
//! Owns the operator's side: reading a configuration, starting or probing the service,
//! printing for a terminal. Sits on top of everything else; nothing below imports it
//! (`tests/architecture.rs`).

pub mod check;
pub mod check_dav;
pub mod check_directory;
pub mod check_events;
pub mod devices;
pub mod logging;
pub mod server;
pub mod state;
pub mod tools;
pub mod top;

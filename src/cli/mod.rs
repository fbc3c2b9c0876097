//! What the command-line subcommands run: `serve` ([`server`]), `check` ([`check`], with
//! [`check_events`] for Dovecot's push events), `devices`, `demo` and the offline `wbxml
//! decode|encode` ([`tools`]).
//!
//! Owns the operator's side: reading a configuration, starting or probing the service,
//! printing for a terminal. Sits on top of everything else; nothing below imports it
//! (`tests/architecture.rs`).

pub mod check;
pub mod check_events;
pub mod demo;
pub mod devices;
pub mod server;
pub mod tools;

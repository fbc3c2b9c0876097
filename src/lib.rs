//! `eas-gateway`: an Exchange ActiveSync server in front of an IMAP (Dovecot) mailbox.
//!
//! Module map (`docs/ARCHITECTURE.md` has the picture and the direction of dependencies):
//! - [`config`]: the TOML configuration and command-line overrides, validated once.
//! - [`http`]: the HTTP service — routing, request line, Basic auth against IMAP, Autodiscover,
//!   TLS, and the one place errors become HTTP statuses.
//! - [`eas`]: one module per EAS command (parse, run against a context, build the response),
//!   the command dispatch and the provisioning gate.
//! - [`imap`]: the IMAP client the gateway uses to authenticate users and read/change folders.
//!   Knows nothing of EAS.
//! - [`mailstore`]: the narrow mail backend the commands use (folder state, listings,
//!   fetches, flag changes, deletes, moves) over one IMAP session.
//! - [`dav`]: the WebDAV/CardDAV/CalDAV client (discovery, sync-collection, multiget, writes)
//!   that contacts and calendars use. Knows nothing of EAS.
//! - [`contacts`]: vCards as EAS Contacts items and back, merging phone edits into the stored
//!   vCard (pure).
//! - [`directory`]: the address book behind GAL search and ResolveRecipients, combined from
//!   vCard/CSV files, SQL (MySQL/MariaDB, PostgreSQL) and LDAP.
//! - [`sieve`]: Out of Office as a Sieve vacation section, kept over ManageSieve.
//! - [`mime`]: RFC 5322 messages as EAS Email items (pure).
//! - [`calendar`]: iCalendar events and tasks as EAS Calendar/Tasks items and back (pure).
//! - [`push`]: the hub of waiting devices (Ping, held Sync) and the sources that wake them.
//! - [`state`]: per-device state behind the `StateStore` trait (SQLite embedded, or PostgreSQL
//!   shared by several nodes).
//! - [`metrics`]: request counters for `/metrics`.
//! - [`secret`]: the wrapper that keeps passwords out of logs.
//! - [`smtp`]: submission of sent mail over SMTP (lettre), as the user or through a relay.
//! - [`cli`]: what the CLI's `serve`, `check` (and its check of Dovecot's push events),
//!   `devices` and `wbxml decode|encode` run.
//!
//! The WBXML codec itself is the separate crate `eas-wbxml` (`wbxml/`), usable on its own. The
//! test bed (a private Dovecot and Postfix on loopback) and the demo are the dev-only crate
//! `eas-testbed` (`testbed/`): tests and benches get it as a dev-dependency, so none of it is
//! in the shipped binary.

pub mod backend;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod contacts;
pub mod dav;
pub mod directory;
pub mod eas;
pub mod http;
pub mod imap;
pub mod mailstore;
pub mod metrics;
pub mod mime;
pub mod push;
pub mod secret;
pub mod sieve;
pub mod smtp;
pub mod state;

pub use cli::server::run_server;

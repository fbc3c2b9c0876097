//! `eas-gateway`: an Exchange ActiveSync server in front of an IMAP (Dovecot) mailbox.
//!
//! Module map (what exists today; `docs/ARCHITECTURE.md` has the intended whole):
//! - [`tools`]: the offline tool commands behind `eas-gateway wbxml …` (codec CLI). Pure
//!   functions over bytes so they are tested without spawning the binary.
//! - [`imap`]: the IMAP client the gateway uses to authenticate users and read/change folders.
//!   Knows nothing of EAS.
//! - [`testbed`]: starting a private Dovecot on loopback, for the test harness and the demo.
//!
//! The WBXML codec itself is the separate crate `eas-wbxml` (`wbxml/`), usable on its own.

pub mod eas;
pub mod http;
pub mod imap;
pub mod state;
pub mod testbed;
pub mod tools;

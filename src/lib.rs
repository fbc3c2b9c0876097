//! `eas-gateway`: an Exchange ActiveSync server in front of an IMAP (Dovecot) mailbox.
//!
//! Module map (what exists today; `docs/ARCHITECTURE.md` has the intended whole):
//! - [`tools`]: the offline tool commands behind `eas-gateway wbxml …` (codec CLI). Pure
//!   functions over bytes so they are tested without spawning the binary.
//!
//! The WBXML codec itself is the separate crate `eas-wbxml` (`wbxml/`), usable on its own.

pub mod tools;

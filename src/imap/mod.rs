//! The IMAP backend client (owned by the IMAP work; see docs/ARCHITECTURE.md).

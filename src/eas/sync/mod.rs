//! Sync for mail folders.

pub mod request;
pub mod snapshot;

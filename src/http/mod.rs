//! The HTTP service.
pub mod query;

//! EAS commands: one module per command, each parsing its request tree, running it against a
//! [`Context`], and encoding its response.
pub mod version;

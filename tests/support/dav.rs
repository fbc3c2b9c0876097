//! The private DAV servers of a test binary (one Radicale with the Dovecot test users, one
//! Xandikos with its single principal), started on first use and stopped at exit, and DAV
//! clients on them as the gateway makes them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eas_gateway::dav::{DavClient, DavSettings, http_client};
use eas_gateway::secret::Secret;
use eas_testbed::{Radicale, Xandikos};
use reqwest::Url;

pub fn radicale() -> &'static Radicale {
    static R: OnceLock<Result<&'static Radicale, String>> = OnceLock::new();
    let users: Vec<_> = super::USERS.iter().map(|u| super::user(u)).collect();
    match R.get_or_init(|| {
        Radicale::start(&users)
            .map(Radicale::leak_until_exit)
            .map_err(|e| e.to_string())
    }) {
        Ok(r) => r,
        Err(e) => panic!("the test Radicale could not be started: {e}"),
    }
}

pub fn xandikos() -> &'static Xandikos {
    static X: OnceLock<Result<&'static Xandikos, String>> = OnceLock::new();
    match X.get_or_init(|| {
        Xandikos::start("alice")
            .map(Xandikos::leak_until_exit)
            .map_err(|e| e.to_string())
    }) {
        Ok(x) => x,
        Err(e) => panic!("the test Xandikos could not be started: {e}"),
    }
}

/// Which server a test runs against (the contract tests run on both).
#[derive(Clone, Copy, Debug)]
pub enum Server {
    Radicale,
    Xandikos,
}

/// A DAV client for `url` as `login`.
pub fn dav(url: &str, login: &str, password: &str) -> DavClient {
    let mut s = DavSettings::new(Url::parse(url).unwrap());
    s.timeout = Duration::from_secs(10);
    let s = Arc::new(s);
    DavClient::new(
        http_client(&s).unwrap(),
        s,
        login,
        Secret::new(password.to_owned()),
    )
}

/// A DAV client on `server` as the test user `name`.
pub fn client(server: Server, name: &str) -> DavClient {
    let u = super::user(name);
    match server {
        Server::Radicale => dav(&radicale().url(), &u.login, &u.password),
        // Xandikos serves one principal and checks no password.
        Server::Xandikos => dav(&xandikos().url(), "alice", "unused"),
    }
}

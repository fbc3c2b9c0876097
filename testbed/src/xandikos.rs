//! A private Xandikos (Debian `xandikos`) on a loopback port: the second, independent DAV
//! server the contract tests run against. Xandikos has no authentication of its own (it is
//! meant to sit behind a proxy that does it), so it serves one principal, `/<user>/`, with
//! the default address book and calendar, and ignores the credentials the client sends.

use std::process::Command;

use crate::radicale::{DavServer, require, temp_dir};
use crate::{TestbedError, free_ports, process};

/// Where Debian installs Xandikos.
pub const XANDIKOS_BIN: &str = "/usr/bin/xandikos";
/// The command that installs it.
pub const XANDIKOS_INSTALL_HINT: &str = "apt-get install -y xandikos";

/// A running private Xandikos; stopped on drop or at exit ([`Xandikos::leak_until_exit`]).
pub struct Xandikos {
    server: DavServer,
    user: String,
}

impl Xandikos {
    /// Starts Xandikos for the single principal `/<user>/` with its default address book
    /// (`/<user>/contacts/addressbook/`) and calendar (`/<user>/calendars/calendar/`).
    pub fn start(user: &str) -> Result<Xandikos, TestbedError> {
        require(XANDIKOS_BIN, XANDIKOS_INSTALL_HINT)?;
        if user.is_empty() || user.contains('/') {
            return Err(TestbedError::Invalid(format!(
                "{user:?} cannot be a principal"
            )));
        }
        let temp = temp_dir("easgw-xandikos-")?;
        let [port] = free_ports()?;
        let mut cmd = Command::new(XANDIKOS_BIN);
        cmd.arg("-d")
            .arg(temp.path().join("data"))
            .arg("--defaults")
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .arg("--current-user-principal")
            .arg(format!("/{user}/"));
        let server = DavServer::spawn(cmd, temp, port, "Xandikos")?;
        Ok(Xandikos {
            server,
            user: user.to_owned(),
        })
    }

    /// The server's root URL (`http://127.0.0.1:<port>/`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The one principal's name.
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn stop(&self) {
        self.server.shutdown();
    }

    /// Keeps the server for the rest of the process and stops it at exit.
    pub fn leak_until_exit(self) -> &'static Xandikos {
        let leaked: &'static Xandikos = Box::leak(Box::new(self));
        process::stop_at_exit(&leaked.server);
        leaked
    }
}

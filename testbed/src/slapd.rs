//! A private OpenLDAP `slapd` on loopback: a generated `slapd.conf` (the Debian schema files
//! core, cosine and inetorgperson; one `mdb` database) in a fresh directory, the entries
//! loaded offline with `slapadd`, then `slapd -d 0` (in the foreground) on a free 127.0.0.1
//! port. The system's slapd and its `cn=config` are never read or touched.
//!
//! Access: everyone may read everything but passwords; a user may bind with their own
//! `userPassword` (stored in clear text, this is a test bed); the admin DN
//! [`Slapd::admin_dn`] with [`Slapd::admin_password`] may do anything.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::process::{StopAtExit, Supervisor, stop_at_exit};
use super::{TestbedError, free_ports};

const SLAPD_BIN: &str = "/usr/sbin/slapd";
const SLAPADD_BIN: &str = "/usr/sbin/slapadd";
const SCHEMA_DIR: &str = "/etc/ldap/schema";
/// The command that installs what this needs.
pub const SLAPD_INSTALL_HINT: &str = "apt-get install -y slapd";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const ADMIN_PASSWORD: &str = "testbed-admin";

/// A running private slapd; stopped on drop (or at exit, see [`Slapd::leak_until_exit`]).
pub struct Slapd {
    dir: PathBuf,
    port: u16,
    suffix: String,
    supervisor: Supervisor,
    temp: Mutex<Option<tempfile::TempDir>>,
}

impl Slapd {
    /// Starts a server for `suffix` (e.g. `dc=example,dc=com`) holding the entries of `ldif`
    /// (the suffix entry itself included).
    pub fn start(suffix: &str, ldif: &str) -> Result<Slapd, TestbedError> {
        for bin in [SLAPD_BIN, SLAPADD_BIN] {
            if !Path::new(bin).exists() {
                return Err(TestbedError::ServerNotInstalled {
                    what: "OpenLDAP slapd",
                    missing: bin.into(),
                    hint: SLAPD_INSTALL_HINT,
                });
            }
        }
        let temp = tempfile::Builder::new()
            .prefix("easgw-slapd-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        let io = |what: &str, e| TestbedError::io(format!("{what} in {}", dir.display()), e);
        std::fs::create_dir(dir.join("db")).map_err(|e| io("creating db", e))?;
        let conf = dir.join("slapd.conf");
        std::fs::write(&conf, config(&dir, suffix)).map_err(|e| io("writing slapd.conf", e))?;
        let data = dir.join("data.ldif");
        std::fs::write(&data, ldif).map_err(|e| io("writing data.ldif", e))?;
        let out = Command::new(SLAPADD_BIN)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| TestbedError::io(format!("running {SLAPADD_BIN}"), e))?;
        if !out.status.success() {
            return Err(TestbedError::ServerFailed {
                what: "slapd",
                reason: format!("slapadd: {}", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let [port] = free_ports()?;
        let log = std::fs::File::create(dir.join("slapd.log"))
            .map_err(|e| io("creating slapd.log", e))?;
        let mut cmd = Command::new(SLAPD_BIN);
        cmd.arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            // A debug level keeps slapd in the foreground, as our child; 0 logs nothing more.
            .arg("-d")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let supervisor = Supervisor::spawn(cmd)
            .map_err(|e| TestbedError::io(format!("starting {SLAPD_BIN}"), e))?;
        let server = Slapd {
            dir,
            port,
            suffix: suffix.to_owned(),
            supervisor,
            temp: Mutex::new(Some(temp)),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), TestbedError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.supervisor.exited() {
                return Err(self.failed(format!("slapd exited ({status})")));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "not listening on 127.0.0.1:{} within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failed(&self, reason: String) -> TestbedError {
        let text = std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        TestbedError::ServerFailed {
            what: "slapd",
            reason,
            log_tail: lines[lines.len().saturating_sub(30)..].join("\n"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn admin_dn(&self) -> String {
        format!("cn=admin,{}", self.suffix)
    }

    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// Stops the server and removes its directory.
    pub fn stop(&self) {
        self.supervisor.stop();
        drop(super::lock(&self.temp).take());
    }

    /// Keeps the server for the rest of the process (one per test binary), stopped at exit.
    pub fn leak_until_exit(self) -> &'static Slapd {
        let leaked: &'static Slapd = Box::leak(Box::new(self));
        stop_at_exit(leaked);
        leaked
    }
}

impl StopAtExit for Slapd {
    fn stop_now(&self) {
        self.stop();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(dir: &Path, suffix: &str) -> String {
    let dir = dir.display();
    format!(
        r#"# Generated by eas-gateway's testbed.
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "{suffix}"
rootdn "cn=admin,{suffix}"
rootpw {ADMIN_PASSWORD}
directory {dir}/db
access to attrs=userPassword
  by anonymous auth
  by self read
  by * none
access to *
  by * read
"#
    )
}

//! A private MariaDB on loopback: `mariadb-install-db` into a fresh directory, then
//! `mariadbd` on a free 127.0.0.1 port with its own socket, no option file of the system's
//! read (`--no-defaults`). The system's MariaDB, if any, is never touched.
//!
//! [`MariaDb::execute`] runs SQL as the private root over the socket (with the `mariadb`
//! client), so a test can create the seed guides' `mailserver` schema and a user for the
//! gateway; the gateway itself connects over TCP like it would to a real server. The server
//! also offers TLS with a certificate for 127.0.0.1 from a CA of its own ([`MariaDb::ca_path`]),
//! so a test can make a user that may only connect over TLS (`REQUIRE SSL`).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::process::{StopAtExit, Supervisor, euid, stop_at_exit};
use super::{TestbedError, free_ports};

const SERVER_BIN: &str = "/usr/sbin/mariadbd";
const INSTALL_BIN: &str = "/usr/bin/mariadb-install-db";
const CLIENT_BIN: &str = "/usr/bin/mariadb";
/// The command that installs what this needs.
pub const MARIADB_INSTALL_HINT: &str = "apt-get install -y mariadb-server";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running private MariaDB; stopped on drop (or at exit, see [`MariaDb::leak_until_exit`]).
pub struct MariaDb {
    dir: PathBuf,
    port: u16,
    supervisor: Supervisor,
    temp: Mutex<Option<tempfile::TempDir>>,
}

impl MariaDb {
    /// Initialises a data directory and starts the server (root without a password, over the
    /// socket only).
    pub fn start() -> Result<MariaDb, TestbedError> {
        for bin in [SERVER_BIN, INSTALL_BIN, CLIENT_BIN] {
            if !Path::new(bin).exists() {
                return Err(TestbedError::ServerNotInstalled {
                    what: "MariaDB",
                    missing: bin.into(),
                    hint: MARIADB_INSTALL_HINT,
                });
            }
        }
        let temp = tempfile::Builder::new()
            .prefix("easgw-mariadb-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        let data = dir.join("data");
        let as_root = euid() == 0;
        let mut install = Command::new(INSTALL_BIN);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if as_root {
            // mariadbd refuses to run as root unless told to; the files are then root's.
            install.arg("--user=root");
        }
        let out = install
            .output()
            .map_err(|e| TestbedError::io(format!("running {INSTALL_BIN}"), e))?;
        if !out.status.success() {
            return Err(TestbedError::ServerFailed {
                what: "MariaDB",
                reason: format!("mariadb-install-db: {}", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        write_tls_files(&dir)?;
        let [port] = free_ports()?;
        let mut cmd = Command::new(SERVER_BIN);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket(&dir).display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", log(&dir).display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--skip-log-bin")
            .arg(format!("--ssl-ca={}", dir.join(CA_FILE).display()))
            .arg(format!("--ssl-cert={}", dir.join(CERT_FILE).display()))
            .arg(format!("--ssl-key={}", dir.join(KEY_FILE).display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_root {
            cmd.arg("--user=root");
        }
        let supervisor = Supervisor::spawn(cmd)
            .map_err(|e| TestbedError::io(format!("starting {SERVER_BIN}"), e))?;
        let db = MariaDb {
            dir,
            port,
            supervisor,
            temp: Mutex::new(Some(temp)),
        };
        db.wait_ready()?;
        Ok(db)
    }

    fn wait_ready(&self) -> Result<(), TestbedError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = self.supervisor.exited() {
                return Err(self.failed(format!("mariadbd exited ({status})")));
            }
            if socket(&self.dir).exists()
                && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "not listening on 127.0.0.1:{} within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn failed(&self, reason: String) -> TestbedError {
        let text = std::fs::read_to_string(log(&self.dir)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        TestbedError::ServerFailed {
            what: "MariaDB",
            reason,
            log_tail: lines[lines.len().saturating_sub(30)..].join("\n"),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server's TLS certificate (for 127.0.0.1 and
    /// localhost): what a client verifying the server is given.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    /// A `mysql://` URL for the gateway (user and password as created with [`Self::execute`]).
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "mysql://{user}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Runs SQL statements as root over the private socket.
    pub fn execute(&self, sql: &str) -> Result<(), TestbedError> {
        use std::io::Write;
        let mut child = Command::new(CLIENT_BIN)
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket(&self.dir).display()))
            .arg("--user=root")
            .arg("--batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| TestbedError::io(format!("running {CLIENT_BIN}"), e))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(sql.as_bytes())
            .map_err(|e| TestbedError::io("writing SQL to the mariadb client".into(), e))?;
        let out = child
            .wait_with_output()
            .map_err(|e| TestbedError::io("waiting for the mariadb client".into(), e))?;
        if !out.status.success() {
            return Err(TestbedError::ServerFailed {
                what: "MariaDB",
                reason: "a statement failed".into(),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Stops the server and removes its directory.
    pub fn stop(&self) {
        self.supervisor.stop();
        drop(super::lock(&self.temp).take());
    }

    /// Keeps the server for the rest of the process (one per test binary), stopped at exit.
    pub fn leak_until_exit(self) -> &'static MariaDb {
        let leaked: &'static MariaDb = Box::leak(Box::new(self));
        stop_at_exit(leaked);
        leaked
    }
}

impl StopAtExit for MariaDb {
    fn stop_now(&self) {
        self.stop();
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

const CA_FILE: &str = "tls-ca.pem";
const CERT_FILE: &str = "tls-server.pem";
const KEY_FILE: &str = "tls-server.key";

/// A CA and a server certificate it signed: verifying clients need a real chain (a
/// self-signed end-entity certificate is not accepted as its own CA).
fn write_tls_files(dir: &Path) -> Result<(), TestbedError> {
    let bad = |e: rcgen::Error| TestbedError::Invalid(format!("generating a certificate: {e}"));
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "eas-testbed MariaDB CA");
    let ca_key = rcgen::KeyPair::generate().map_err(bad)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;
    let server =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(bad)?;
    let server_key = rcgen::KeyPair::generate().map_err(bad)?;
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(bad)?;
    for (name, text) in [
        (CA_FILE, ca_cert.pem()),
        (CERT_FILE, server_cert.pem()),
        (KEY_FILE, server_key.serialize_pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

fn socket(dir: &Path) -> PathBuf {
    dir.join("mysqld.sock")
}

fn log(dir: &Path) -> PathBuf {
    dir.join("error.log")
}

//! A private PostgreSQL cluster on loopback, for the tests of the PostgreSQL state store (and
//! of anything else that needs a database).
//!
//! [`Postgres::start`] runs `initdb` into a fresh temporary directory and starts `postgres`
//! from the Debian package's bin directory (`/usr/lib/postgresql/<version>/bin`) in the
//! foreground, as our child, on a free 127.0.0.1 port, with its socket in that directory. It
//! never touches the machine's own cluster (`pg_ctlcluster`, port 5432), which may run at the
//! same time. The server is on the same leash as Dovecot (`process`): it cannot outlive the
//! test binary. Authentication is `trust` for the superuser [`Postgres::USER`]; nothing but
//! loopback can reach it.
//!
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` account
//! the package creates (or the test bed's own unprivileged mail user).
//!
//! Tests share one server per binary ([`Postgres::shared`]) and take a database each
//! ([`Postgres::fresh_database`]); a fault test that stops and restarts the server
//! ([`Postgres::stop`], [`Postgres::restart`]) starts its own.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::account::{self, Account};
use super::process::{self, Supervisor};
use super::{TestbedError, free_ports, lock};

/// The command that installs what [`Postgres`] needs.
pub const POSTGRES_INSTALL_HINT: &str = "apt-get install -y postgresql";
/// Where the Debian packages put the server binaries, one directory per major version.
const PG_ROOT: &str = "/usr/lib/postgresql";
/// How long the server may take until it accepts connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with a fresh port when another process took ours between probe and bind.
const PORT_ATTEMPTS: usize = 3;

/// A running private PostgreSQL. Stopped, and its directory removed, on drop (or at exit for
/// [`Postgres::shared`]).
pub struct Postgres {
    dir: PathBuf,
    temp: Mutex<Option<tempfile::TempDir>>,
    bin: PathBuf,
    port: u16,
    /// The account the server runs as when we are root.
    run_as: Option<Account>,
    server: Mutex<Option<Supervisor>>,
    databases: AtomicUsize,
}

impl Postgres {
    /// The superuser every URL names.
    pub const USER: &'static str = "eas";

    /// Creates a cluster in a new temporary directory and starts it.
    pub fn start() -> Result<Postgres, TestbedError> {
        let bin = bin_dir()?;
        let temp = tempfile::Builder::new()
            .prefix("easgw-pg-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        let run_as = if process::euid() == 0 {
            Some(server_account()?)
        } else {
            None
        };
        if let Some(a) = &run_as {
            std::os::unix::fs::chown(&dir, Some(a.uid), Some(a.gid))
                .map_err(|e| TestbedError::io(format!("chown {}", dir.display()), e))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                Self::USER,
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
            ])
            .arg("--no-sync");
        let out = run_as_account(initdb, run_as.as_ref())
            .output()
            .map_err(|e| TestbedError::io("running initdb".into(), e))?;
        if !out.status.success() {
            return Err(TestbedError::PostgresFailed {
                reason: format!("initdb failed ({})", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let [port] = free_ports()?;
            let pg = Postgres {
                dir: dir.clone(),
                temp: Mutex::new(None),
                bin: bin.clone(),
                port,
                run_as: run_as.clone(),
                server: Mutex::new(None),
                databases: AtomicUsize::new(0),
            };
            match pg.launch() {
                Ok(()) => {
                    *lock(&pg.temp) = Some(temp);
                    return Ok(pg);
                }
                Err(e) => {
                    let port_taken = matches!(&e, TestbedError::PostgresFailed { log_tail, .. }
                        if log_tail.contains("already in use"));
                    last_error = Some(e);
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// One server for the whole test binary, started at first use and stopped when the
    /// process exits. Panics (with the install command) when it cannot start: for tests.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<&'static Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start()
                .unwrap_or_else(|e| panic!("the private PostgreSQL did not start: {e}"));
            let leaked: &'static Postgres = Box::leak(Box::new(pg));
            process::stop_at_exit(leaked);
            leaked
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the database `name` (which [`Postgres::create_database`] makes).
    pub fn url_of(&self, name: &str) -> String {
        format!("postgres://{}@127.0.0.1:{}/{name}", Self::USER, self.port)
    }

    /// The URL of the database `postgres` that `initdb` creates.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, TestbedError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(TestbedError::Invalid(format!(
                "database name {name:?}: lower-case letters, digits and _ only"
            )));
        }
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                Self::USER,
            ])
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestbedError::io("running createdb".into(), e))?;
        if !out.status.success() {
            return Err(TestbedError::PostgresFailed {
                reason: format!("createdb {name} failed ({})", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(self.url_of(name))
    }

    /// Runs SQL with `psql` on the database `name` and returns what it printed (unaligned,
    /// tuples only): for tests that look at or tamper with tables behind a store's back.
    pub fn psql(&self, name: &str, sql: &str) -> Result<String, TestbedError> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                Self::USER,
            ])
            .args([
                "-d",
                name,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| TestbedError::io("running psql".into(), e))?;
        if !out.status.success() {
            return Err(TestbedError::PostgresFailed {
                reason: format!("psql failed ({})", out.status),
                log_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A new empty database with a name of its own (one per test), and its URL.
    pub fn fresh_database(&self) -> Result<String, TestbedError> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        self.create_database(&format!("t{n}"))
    }

    /// Stops the server as an operator's fast shutdown does (clients disconnected, in-flight
    /// transactions rolled back), keeping its data; [`Postgres::restart`] starts it again.
    /// Returns once it has exited.
    pub fn stop(&self) {
        let Some(server) = lock(&self.server).take() else {
            return;
        };
        // SIGINT is PostgreSQL's "fast" shutdown; the supervisor's SIGTERM would be the
        // "smart" one, which waits for every client to leave.
        // SAFETY: kill only sends a signal; the pid is our child's, which we have not reaped.
        unsafe {
            libc::kill(server.pid() as i32, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop();
    }

    /// Starts a stopped server again on the same port and data.
    pub fn restart(&self) -> Result<(), TestbedError> {
        if lock(&self.server).is_some() {
            return Ok(());
        }
        self.launch()
    }

    /// Whether the server is running (not stopped by [`Postgres::stop`]).
    pub fn is_running(&self) -> bool {
        lock(&self.server).is_some()
    }

    /// The server's log (what it wrote to stderr), for tests that show it on failure.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn launch(&self) -> Result<(), TestbedError> {
        let log_path = self.log_path();
        let log_start = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TestbedError::io(format!("opening {}", log_path.display()), e))?;
        if let Some(a) = &self.run_as {
            std::os::unix::fs::chown(&log_path, Some(a.uid), Some(a.gid))
                .map_err(|e| TestbedError::io(format!("chown {}", log_path.display()), e))?;
        }
        let err = log
            .try_clone()
            .map_err(|e| TestbedError::io(format!("opening {}", log_path.display()), e))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // A test database: durability is not what is tested, and fsync per commit on a
            // shared disk would make every test slow.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let cmd = run_as_account(cmd, self.run_as.as_ref());
        let server = Supervisor::spawn(cmd)
            .map_err(|e| TestbedError::io(format!("starting {}", self.bin.display()), e))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        let reason = loop {
            if let Some(status) = server.exited() {
                break format!("postgres exited ({status})");
            }
            if self.accepts_queries() {
                *lock(&self.server) = Some(server);
                return Ok(());
            }
            if Instant::now() > deadline {
                server.stop();
                break format!("not ready within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Err(TestbedError::PostgresFailed {
            reason,
            log_tail: log_since(&log_path, log_start),
        })
    }

    /// `pg_isready` answers 0 only once the server accepts connections (not while it
    /// starts up or recovers).
    fn accepts_queries(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return false;
        }
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", Self::USER])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn shutdown(&self) {
        self.stop();
        drop(lock(&self.temp).take());
    }
}

impl process::StopAtExit for Postgres {
    fn stop_now(&self) {
        self.shutdown();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish()
    }
}

/// The newest installed server's bin directory.
fn bin_dir() -> Result<PathBuf, TestbedError> {
    let missing = || TestbedError::PostgresNotInstalled {
        missing: Path::new(PG_ROOT).join("<version>/bin/initdb"),
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(PG_ROOT)
        .map_err(|_| missing())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

/// As root: the package's `postgres` account, else the test bed's mail user.
fn server_account() -> Result<Account, TestbedError> {
    if let Some(a) = account::lookup("postgres")? {
        return Ok(a);
    }
    account::Accounts::for_this_process().map(|a| a.mail)
}

fn run_as_account(mut cmd: Command, account: Option<&Account>) -> Command {
    use std::os::unix::process::CommandExt;
    if let Some(a) = account {
        cmd.uid(a.uid).gid(a.gid);
        // Its home may be elsewhere; the server and initdb need no environment of ours.
        cmd.env("HOME", "/");
    }
    cmd
}

fn log_since(path: &Path, start: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = usize::try_from(start).unwrap_or(0).min(text.len());
    let tail = String::from_utf8_lossy(&text[from..]).into_owned();
    let lines: Vec<&str> = tail.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

//! `eas-testbed`: private Dovecot (and Postfix) instances on loopback, for the integration
//! tests, the benchmarks and the demo (`eas-demo`, which `scripts/demo.sh` runs).
//!
//! A dev-only workspace crate (`publish = false`): `eas-gateway` has it as a dev-dependency
//! only, so the shipped binary carries none of it. The Dovecot and Postfix side uses nothing
//! of the gateway but [`ImapConfig`] (what it hands to tests) and the lua-socket path the
//! gateway's `check` also looks for.
//!
//! The other side of the gateway lives here too: [`Gateway`] starts one in this process on a
//! loopback port, and [`Phone`] is the one simulated phone that the integration tests
//! (`tests/eas`) and the load benchmarks (`benches/sync_load.rs`, `benches/push_load.rs`)
//! speak EAS with over real HTTP.
//!
//! [`Dovecot::start`] writes a self-contained configuration into a fresh directory (users in
//! a passwd-file, maildirs, sockets, state and log all inside it), starts `dovecot -F` on two
//! free 127.0.0.1 ports (IMAP and LMTP) and returns once both greet. It never reads or
//! touches the system's Dovecot, which may be running on port 143 at the same time.
//!
//! [`Postfix::start`] runs a private Postfix next to it (submission with SASL checked by this
//! Dovecot, delivery to its LMTP port), so sent mail travels the path it does in production.
//!
//! [`Radicale`] and [`Xandikos`] are private CardDAV/CalDAV servers on loopback for the
//! contacts and calendar tests (Radicale with the Dovecot users' logins and passwords).
//!
//! [`Postgres::start`] runs a private PostgreSQL cluster (`initdb` into a temporary directory,
//! `postgres` on a free loopback port) for the PostgreSQL state store's tests.
//!
//! Submodules: `config` renders `dovecot.conf`; `postfix` runs Postfix; `postgres` runs
//! PostgreSQL; `nginx` runs nginx with the shipped configuration in front of gateways;
//! `radicale` and `xandikos` run the DAV servers; `gateway` and `phone`
//! are the gateway in process and the simulated phone; `account` decides which OS users Dovecot
//! runs as (an unprivileged `easgw-mail` owns the mail when we are root; the current user
//! when we are not); `process` keeps the master process tied to us so it cannot outlive the
//! program (see there for how).

mod account;
mod child;
mod config;
mod gateway;
pub mod logs;
mod maildir;
pub mod mariadb;
pub mod nginx;
mod phone;
mod postfix;
pub mod postgres;
mod process;
mod radicale;
pub mod slapd;
mod xandikos;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eas_gateway::cli::check_events::LUA_SOCKET;
use eas_gateway::imap::{ImapConfig, Security};

use account::Accounts;
pub use child::{ChildGateway, Placement};
pub use config::Tuning;
pub use gateway::Gateway;
pub use maildir::MaildirMessage;
pub use phone::{
    Answer, Folder, Phone, PhoneError, QueryForm, SyncPage, find_text, folder_changes, policy_key,
    sync_to_end,
};
pub use postfix::{POSTFIX_INSTALL_HINT, Postfix};
pub use postgres::{POSTGRES_INSTALL_HINT, Postgres};
use process::Supervisor;
pub use radicale::{RADICALE_INSTALL_HINT, Radicale};
pub use xandikos::{XANDIKOS_INSTALL_HINT, Xandikos};

/// Where Debian installs the Dovecot master binary.
pub const DOVECOT_BIN: &str = "/usr/sbin/dovecot";
/// The protocol binaries we need besides the master (`dovecot-imapd`, `dovecot-lmtpd`).
const PROTOCOL_BINS: [&str; 2] = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/lmtp"];
/// What [`Tuning::sieve`] needs: ManageSieve and the Sieve plugin.
const SIEVE_FILES: [&str; 2] = [
    "/usr/lib/dovecot/managesieve",
    "/usr/lib/dovecot/modules/lib90_sieve_plugin.so",
];
/// The command that installs them.
pub const SIEVE_INSTALL_HINT: &str = "apt-get install -y dovecot-managesieved dovecot-sieve";
/// The command that installs everything the testbed needs.
pub const INSTALL_HINT: &str = "apt-get install -y dovecot-imapd dovecot-lmtpd";
/// How long Dovecot may take until both listeners greet.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when another process took a port between our probe and
/// Dovecot's bind.
const PORT_ATTEMPTS: usize = 3;

/// Why a private Dovecot could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A server another test bed part needs (MariaDB, slapd) is not installed.
    #[error(
        "{what} is not installed ({missing} is missing). Install it with `{hint}` (scripts/test.sh does this)."
    )]
    ServerNotInstalled {
        what: &'static str,
        missing: PathBuf,
        hint: &'static str,
    },

    /// A server another test bed part runs (MariaDB, slapd) did not start or refused a step.
    #[error("{what} did not start: {reason}\n--- last lines of its log ---\n{log_tail}")]
    ServerFailed {
        what: &'static str,
        reason: String,
        log_tail: String,
    },

    /// Dovecot's Sieve or ManageSieve is not installed (only [`Tuning::sieve`] needs it).
    #[error(
        "Dovecot's Sieve is not installed ({missing} is missing). Install it with \
         `{SIEVE_INSTALL_HINT}` (scripts/test.sh does this)."
    )]
    SieveNotInstalled { missing: PathBuf },

    /// The Dovecot binaries are not installed on this machine.
    #[error(
        "Dovecot is not installed ({missing} is missing). Install it with \
         `{INSTALL_HINT}` (scripts/test.sh does this)."
    )]
    NotInstalled { missing: PathBuf },

    /// Postfix is not installed (only the tests of sending need it).
    #[error(
        "Postfix is not installed ({missing} is missing). Install it with \
         `{POSTFIX_INSTALL_HINT}` (scripts/test.sh does this)."
    )]
    PostfixNotInstalled { missing: PathBuf },

    /// A DAV server (Radicale, Xandikos) is not installed (the contacts/calendar tests need it).
    #[error("{missing} is not installed. Install it with `{hint}` (scripts/test.sh does this).")]
    DavNotInstalled { missing: PathBuf, hint: String },

    /// The private Postfix did not start; `log_tail` holds the end of its log.
    #[error("Postfix did not start: {reason}\n--- last lines of the Postfix log ---\n{log_tail}")]
    PostfixFailed { reason: String, log_tail: String },

    /// PostgreSQL's server binaries are not installed (the state store's tests need them).
    #[error(
        "PostgreSQL is not installed ({missing} is missing). Install it with \
         `{POSTGRES_INSTALL_HINT}` (scripts/test.sh does this)."
    )]
    PostgresNotInstalled { missing: PathBuf },

    /// The private PostgreSQL did not start (or a client tool failed); `log_tail` says why.
    #[error("PostgreSQL: {reason}\n--- last lines of its output ---\n{log_tail}")]
    PostgresFailed { reason: String, log_tail: String },

    /// A file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// As root: the unprivileged user that must own the mail could not be found or created.
    #[error("no unprivileged user for Dovecot's mail: {0}")]
    MailUser(String),

    /// A test user cannot be written to the passwd-file (empty, or contains `:` or a line
    /// break), or the directory cannot be used (see the message).
    #[error("invalid testbed setup: {0}")]
    Invalid(String),

    /// Dovecot exited, or did not greet on its ports in time. `log_tail` holds the last lines
    /// of its log and of what it printed, which name the cause.
    #[error("Dovecot did not start: {reason}\n--- last lines of the Dovecot log ---\n{log_tail}")]
    Failed { reason: String, log_tail: String },
}

impl TestbedError {
    fn io(context: String, source: std::io::Error) -> Self {
        TestbedError::Io { context, source }
    }
}

/// A mail account in the private Dovecot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestUser {
    /// The login, e.g. `alice@example.com` (the maildir is `mail/<domain>/<local part>`).
    pub login: String,
    pub password: String,
}

impl TestUser {
    pub fn new(login: impl Into<String>, password: impl Into<String>) -> Self {
        TestUser {
            login: login.into(),
            password: password.into(),
        }
    }
}

/// A running private Dovecot. Stopped by [`Dovecot::stop`] or on drop; see
/// [`Dovecot::leak_until_exit`] for one kept in a `static`.
pub struct Dovecot {
    dir: PathBuf,
    /// The temporary directory, removed after Dovecot stops (`None` for [`Dovecot::start_in`]).
    temp: Mutex<Option<tempfile::TempDir>>,
    imap_port: u16,
    lmtp_port: u16,
    imaps_port: Option<u16>,
    certificate_pem: Option<String>,
    supervisor: Supervisor,
    users: Mutex<Vec<TestUser>>,
    events_port: Option<u16>,
    events_unix: bool,
    sieve_port: Option<u16>,
}

impl Dovecot {
    /// Starts Dovecot in a new temporary directory (removed when it stops).
    pub fn start(users: &[TestUser]) -> Result<Dovecot, TestbedError> {
        check_installed()?;
        let temp = tempfile::Builder::new()
            .prefix("easgw-dovecot-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        Self::launch(&dir, users, Some(temp), false, &Tuning::default())
    }

    /// Like [`Dovecot::start`], with other limits (see [`Tuning`]): for load tests with
    /// thousands of connections, or (`notify: false`) a server without NOTIFY. The caller's
    /// file-descriptor limit is Dovecot's too, so raise it first for many connections.
    pub fn start_tuned(users: &[TestUser], tuning: &Tuning) -> Result<Dovecot, TestbedError> {
        check_installed()?;
        let temp = tempfile::Builder::new()
            .prefix("easgw-dovecot-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        Self::launch(&dir, users, Some(temp), false, tuning)
    }

    /// [`Dovecot::start_in`] with a [`Tuning`] (the demo with Dovecot's push events).
    pub fn start_in_tuned(
        dir: &Path,
        users: &[TestUser],
        tuning: &Tuning,
    ) -> Result<Dovecot, TestbedError> {
        check_installed()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| TestbedError::io(format!("creating {}", dir.display()), e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| TestbedError::io(format!("resolving {}", dir.display()), e))?;
        Self::launch(&dir, users, None, false, tuning)
    }

    /// Like [`Dovecot::start`], with TLS: a self-signed certificate for `localhost` and
    /// `127.0.0.1`, an implicit-TLS listener ([`Dovecot::imaps_port`]) and STARTTLS on the
    /// plain port. Clients must accept the certificate (`tls_insecure`) or trust
    /// [`Dovecot::certificate_pem`].
    pub fn start_with_tls(users: &[TestUser]) -> Result<Dovecot, TestbedError> {
        check_installed()?;
        let temp = tempfile::Builder::new()
            .prefix("easgw-dovecot-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        Self::launch(&dir, users, Some(temp), true, &Tuning::default())
    }

    /// Starts Dovecot in `dir` (created if missing; kept afterwards, mail included, so a demo
    /// can be restarted with its messages).
    pub fn start_in(dir: &Path, users: &[TestUser]) -> Result<Dovecot, TestbedError> {
        check_installed()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| TestbedError::io(format!("creating {}", dir.display()), e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| TestbedError::io(format!("resolving {}", dir.display()), e))?;
        Self::launch(&dir, users, None, false, &Tuning::default())
    }

    fn launch(
        dir: &Path,
        users: &[TestUser],
        temp: Option<tempfile::TempDir>,
        tls: bool,
        tuning: &Tuning,
    ) -> Result<Dovecot, TestbedError> {
        check_dir_name(dir)?;
        if tuning.sieve {
            for file in SIEVE_FILES {
                if !Path::new(file).exists() {
                    return Err(TestbedError::SieveNotInstalled {
                        missing: file.into(),
                    });
                }
            }
        }
        for u in users {
            check_user(u)?;
        }
        let accounts = Accounts::for_this_process()?;
        prepare_dir(dir, &accounts)?;
        write_passwd(dir, users)?;
        if tuning.events_port.is_some() || tuning.events_unix {
            write_events_files(dir, &accounts)?;
        }
        let certificate_pem = if tls {
            Some(write_certificate(dir)?)
        } else {
            None
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let log_start = file_len(&config::log_path(dir));
            let [imap_port, lmtp_port, imaps_port, sieve_port] = free_ports()?;
            let imaps_port = tls.then_some(imaps_port);
            let sieve_port = tuning.sieve.then_some(sieve_port);
            let conf = config::render_tuned(
                &config::Settings {
                    dir,
                    imap_port,
                    lmtp_port,
                    imaps_port,
                    sieve_port,
                    accounts: &accounts,
                },
                tuning,
            );
            let conf_path = dir.join("dovecot.conf");
            std::fs::write(&conf_path, conf)
                .map_err(|e| TestbedError::io(format!("writing {}", conf_path.display()), e))?;
            let supervisor = spawn(dir, &conf_path)?;
            let ready = wait_ready(&supervisor, imap_port, lmtp_port, imaps_port)
                .and_then(|()| sieve_port.map_or(Ok(()), |p| wait_listening(&supervisor, p)));
            match ready {
                Ok(()) => {
                    return Ok(Dovecot {
                        dir: dir.to_owned(),
                        temp: Mutex::new(temp),
                        imap_port,
                        lmtp_port,
                        imaps_port,
                        certificate_pem,
                        supervisor,
                        users: Mutex::new(users.to_vec()),
                        events_port: tuning.events_port,
                        events_unix: tuning.events_unix,
                        sieve_port,
                    });
                }
                Err(reason) => {
                    supervisor.stop();
                    let log_tail = log_tail(dir, log_start);
                    let port_taken = log_tail.contains("Address already in use");
                    last_error = Some(TestbedError::Failed { reason, log_tail });
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// With [`Tuning::sieve`]: the ManageSieve port (plain; PLAIN login allowed on loopback).
    pub fn sieve_port(&self) -> Option<u16> {
        self.sieve_port
    }

    /// With [`Tuning::sieve`]: Sieve's replies (vacation, redirect) go out through this SMTP
    /// port from now on (e.g. a private Postfix's [`Postfix::relay_port`]); Dovecot reloads.
    pub fn send_replies_through(&self, smtp_port: u16) -> Result<(), TestbedError> {
        let path = config::submission_conf_path(&self.dir);
        std::fs::write(&path, format!("submission_host = 127.0.0.1:{smtp_port}\n"))
            .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))?;
        let status = Command::new("/usr/bin/doveadm")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .arg("reload")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| TestbedError::io("running doveadm reload".into(), e))?;
        if !status.success() {
            return Err(TestbedError::Invalid(format!("doveadm reload: {status}")));
        }
        Ok(())
    }

    /// The SASL socket (`smtpd_sasl_type = dovecot`) a private Postfix checks passwords on.
    pub fn auth_socket_path(&self) -> PathBuf {
        config::auth_socket_path(&self.dir)
    }

    /// The implicit-TLS port, for an instance started with [`Dovecot::start_with_tls`].
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// The self-signed certificate (PEM) of an instance started with TLS.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// How to reach the IMAP listener: 127.0.0.1, plaintext.
    pub fn imap_config(&self) -> ImapConfig {
        ImapConfig {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: self.imap_port,
            security: Security::None,
            tls_insecure: false,
            timeout: Duration::from_secs(10),
        }
    }

    /// With push events ([`Tuning::events_port`]): the secret the datagrams are signed with,
    /// for the gateway's `push.events_secret_file`.
    pub fn events_secret_path(&self) -> Option<PathBuf> {
        (self.events_port.is_some() || self.events_unix)
            .then(|| config::events_secret_path(&self.dir))
    }

    /// With [`Tuning::events_unix`]: the Unix datagram socket the script sends to, for the
    /// gateway's `push.events_socket`.
    pub fn events_socket_path(&self) -> Option<PathBuf> {
        self.events_unix
            .then(|| config::events_socket_path(&self.dir))
    }

    /// Where this instance sends its push events, if it does.
    pub fn events_port(&self) -> Option<u16> {
        self.events_port
    }

    /// The instance directory (config, passwd-file, `mail/`, `run/`, `dovecot.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Dovecot's log file, for tests that want to show it on failure.
    pub fn log_path(&self) -> PathBuf {
        config::log_path(&self.dir)
    }

    /// The master process id.
    pub fn pid(&self) -> u32 {
        self.supervisor.pid()
    }

    /// The users in the passwd-file.
    pub fn users(&self) -> Vec<TestUser> {
        lock(&self.users).clone()
    }

    /// Adds a user (or changes the password of an existing login) while Dovecot runs.
    /// Returns once Dovecot will see the change, which can take up to a second.
    pub fn add_user(&self, user: &TestUser) -> Result<(), TestbedError> {
        self.add_users(std::slice::from_ref(user))
    }

    /// Adds several users at once (one wait for Dovecot instead of one per user).
    pub fn add_users(&self, new: &[TestUser]) -> Result<(), TestbedError> {
        for user in new {
            check_user(user)?;
        }
        {
            let mut users = lock(&self.users);
            users.retain(|u| !new.iter().any(|n| n.login == u.login));
            users.extend_from_slice(new);
            write_passwd(&self.dir, &users)?;
        }
        // Dovecot's passwd-file driver stats the file at most once per second (its cached
        // clock, `ioloop_time`, has whole seconds) and reloads it when size or mtime changed.
        // `write_passwd` always changes the size, so any lookup in a later second than the
        // write sees the new file: wait for the next second to begin.
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let rest_of_second = Duration::from_secs(1)
            .saturating_sub(Duration::from_nanos(u64::from(since_epoch.subsec_nanos())));
        std::thread::sleep(rest_of_second + Duration::from_millis(5));
        Ok(())
    }

    /// Stops Dovecot and waits until it is gone (bounded); removes the temporary directory.
    /// Idempotent. Also happens on drop.
    pub fn stop(&mut self) {
        self.shutdown();
    }

    fn shutdown(&self) {
        self.supervisor.stop();
        drop(lock(&self.temp).take());
    }

    /// Moves this instance into a `static` slot for the rest of the process (for a test
    /// binary's shared Dovecot, which no destructor would ever stop) and arranges for it to
    /// be stopped, and its directory removed, when the process exits. If the process is
    /// killed instead, Dovecot still gets SIGTERM from the kernel (see `process`).
    pub fn leak_until_exit(self) -> &'static Dovecot {
        let leaked: &'static Dovecot = Box::leak(Box::new(self));
        process::stop_at_exit(leaked);
        leaked
    }
}

impl process::StopAtExit for Dovecot {
    fn stop_now(&self) {
        self.shutdown();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("dir", &self.dir)
            .field("imap_port", &self.imap_port)
            .field("lmtp_port", &self.lmtp_port)
            .field("pid", &self.supervisor.pid())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check_installed() -> Result<(), TestbedError> {
    for bin in std::iter::once(DOVECOT_BIN).chain(PROTOCOL_BINS) {
        if !Path::new(bin).exists() {
            return Err(TestbedError::NotInstalled {
                missing: bin.into(),
            });
        }
    }
    Ok(())
}

/// The shipped push script, and a secret (kept across restarts of the same directory) that
/// Dovecot's mail user can read.
fn write_events_files(dir: &Path, accounts: &Accounts) -> Result<(), TestbedError> {
    use std::os::unix::fs::PermissionsExt;

    if !Path::new(LUA_SOCKET).exists() {
        return Err(TestbedError::NotInstalled {
            missing: format!("{LUA_SOCKET} (apt-get install -y lua-socket)").into(),
        });
    }
    let script = config::events_script_path(dir);
    std::fs::write(&script, config::EVENTS_SCRIPT)
        .map_err(|e| TestbedError::io(format!("writing {}", script.display()), e))?;
    let secret = config::events_secret_path(dir);
    if !secret.exists() {
        use rand::Rng as _;
        let bytes: [u8; 32] = rand::thread_rng().r#gen();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(&secret, hex + "\n")
            .map_err(|e| TestbedError::io(format!("writing {}", secret.display()), e))?;
    }
    if !accounts.rootless {
        std::os::unix::fs::chown(&secret, Some(accounts.mail.uid), Some(accounts.mail.gid))
            .map_err(|e| TestbedError::io(format!("chown {}", secret.display()), e))?;
        // The gateway gives its events socket (mode 0660) the group of the directory it is
        // in; Dovecot's mail user writes to it.
        std::os::unix::fs::chown(dir, None, Some(accounts.mail.gid))
            .map_err(|e| TestbedError::io(format!("chown {}", dir.display()), e))?;
    }
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| TestbedError::io(format!("chmod {}", secret.display()), e))
}

/// The directory ends up in `dovecot.conf` unquoted, and its sockets must fit `sun_path`.
fn check_dir_name(dir: &Path) -> Result<(), TestbedError> {
    let s = dir.to_string_lossy();
    if s.chars()
        .any(|c| c.is_whitespace() || "\"'#$%{}\\;".contains(c))
    {
        return Err(TestbedError::Invalid(format!(
            "directory {s:?} contains characters dovecot.conf cannot hold unquoted"
        )));
    }
    // The longest socket Dovecot creates is about 30 bytes below base_dir; sun_path is 108.
    if s.len() > 70 {
        return Err(TestbedError::Invalid(format!(
            "directory {s:?} is too long for Dovecot's socket paths (70 bytes at most)"
        )));
    }
    Ok(())
}

fn check_user(u: &TestUser) -> Result<(), TestbedError> {
    let bad = |s: &str| s.is_empty() || s.contains([':', '\n', '\r']);
    if bad(&u.login) || bad(&u.password) || u.login.contains(char::is_whitespace) {
        return Err(TestbedError::Invalid(format!(
            "user {:?}: login and password must be non-empty, without `:` or line breaks",
            u.login
        )));
    }
    Ok(())
}

/// Creates `mail/` owned by the mail account and makes the directory reachable for
/// Dovecot's unprivileged processes (auth reads the passwd-file, imap the maildirs).
fn prepare_dir(dir: &Path, accounts: &Accounts) -> Result<(), TestbedError> {
    use std::os::unix::fs::PermissionsExt;

    let mail = config::mail_dir(dir);
    std::fs::create_dir_all(&mail)
        .map_err(|e| TestbedError::io(format!("creating {}", mail.display()), e))?;
    let _ = std::fs::remove_file(config::passwd_path(dir).with_extension("tmp"));
    remove_stale_pid_file(dir)?;
    if accounts.rootless {
        return Ok(());
    }
    let set_mode = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| TestbedError::io(format!("chmod {}", p.display()), e))
    };
    set_mode(dir, 0o755)?;
    chown_tree(&mail, accounts.mail.uid, accounts.mail.gid)?;
    make_ancestors_traversable(dir)
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), TestbedError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| TestbedError::io(format!("chown {}", path.display()), e))?;
    if path.is_dir() && !path.is_symlink() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| TestbedError::io(format!("reading {}", path.display()), e))?;
        for entry in entries.flatten() {
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Dovecot's unprivileged users must be able to walk down to the directory. A temporary
/// directory the caller made (mode 0700, e.g. the demo's) gets the search bit (`o+x`, not
/// read); anything outside the temporary directory is left alone and reported instead.
fn make_ancestors_traversable(dir: &Path) -> Result<(), TestbedError> {
    use std::os::unix::fs::PermissionsExt;

    let temp_root = std::env::temp_dir().canonicalize().ok();
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor)
            .map_err(|e| TestbedError::io(format!("inspecting {}", ancestor.display()), e))?;
        let mode = meta.permissions().mode();
        if mode & 0o001 != 0 {
            continue;
        }
        let inside_temp = temp_root
            .as_deref()
            .is_some_and(|t| ancestor.starts_with(t) && ancestor != t);
        if !inside_temp {
            return Err(TestbedError::Invalid(format!(
                "{} is not searchable by other users, so Dovecot's unprivileged processes \
                 cannot reach {}; choose another directory or `chmod o+x` it",
                ancestor.display(),
                dir.display()
            )));
        }
        std::fs::set_permissions(ancestor, std::fs::Permissions::from_mode(mode | 0o001))
            .map_err(|e| TestbedError::io(format!("chmod o+x {}", ancestor.display()), e))?;
    }
    Ok(())
}

/// A previous run killed without cleanup leaves `run/master.pid`; Dovecot would refuse to
/// start if that pid now belongs to another process. A live Dovecot there is an error.
fn remove_stale_pid_file(dir: &Path) -> Result<(), TestbedError> {
    let pid_file = dir.join("run").join("master.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return Ok(());
    };
    if let Ok(pid) = text.trim().parse::<u32>() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "dovecot" {
            return Err(TestbedError::Invalid(format!(
                "a Dovecot (pid {pid}) is already running in {}",
                dir.display()
            )));
        }
    }
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// Writes the passwd-file atomically (write, then rename), so Dovecot never reads half of it.
/// The new file never has the size of the old one (a comment line pads it if needed), so
/// Dovecot notices the change even within the same second of mtime.
fn write_passwd(dir: &Path, users: &[TestUser]) -> Result<(), TestbedError> {
    use std::os::unix::fs::OpenOptionsExt;

    let path = config::passwd_path(dir);
    let tmp = path.with_extension("tmp");
    let mut text = String::new();
    for u in users {
        let _ = writeln!(text, "{}:{{PLAIN}}{}", u.login, u.password);
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == text.len() as u64) {
        text.push_str("#\n");
    }
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // Readable by Dovecot's auth process, which does not run as us. These are
            // throw-away test passwords.
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
}

/// Distinct free ports: bind all to port 0 at once, note the numbers, release them.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], TestbedError> {
    let io = |e| TestbedError::io("finding a free port".into(), e);
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().map_err(io)?.port();
    }
    Ok(ports)
}

/// Writes a fresh self-signed certificate and key; returns the certificate PEM.
fn write_certificate(dir: &Path) -> Result<String, TestbedError> {
    use std::os::unix::fs::OpenOptionsExt;

    let names = vec!["localhost".to_string(), Ipv4Addr::LOCALHOST.to_string()];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TestbedError::Invalid(format!("generating a certificate: {e}")))?;
    let cert = certified.cert.pem();
    let write = |path: PathBuf, text: &str, mode: u32| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
    };
    write(config::cert_path(dir), &cert, 0o644)?;
    // Read by Dovecot's config process, which runs as root (or as us, rootless).
    write(
        config::key_path(dir),
        &certified.key_pair.serialize_pem(),
        0o600,
    )?;
    Ok(cert)
}

fn spawn(dir: &Path, conf: &Path) -> Result<Supervisor, TestbedError> {
    let out_path = dir.join("dovecot.out");
    let out = std::fs::File::create(&out_path)
        .map_err(|e| TestbedError::io(format!("creating {}", out_path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| TestbedError::io(format!("opening {}", out_path.display()), e))?;
    let mut cmd = Command::new(DOVECOT_BIN);
    cmd.arg("-F")
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    Supervisor::spawn(cmd).map_err(|e| TestbedError::io(format!("starting {DOVECOT_BIN}"), e))
}

/// Waits until IMAP greets with `* OK` and LMTP with `220` (and the TLS port accepts
/// connections), or Dovecot exits, or time is up.
/// Waits until `port` accepts connections (ManageSieve greets with capabilities, not a
/// fixed prefix).
fn wait_listening(supervisor: &Supervisor, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = supervisor.exited() {
            return Err(format!("dovecot exited ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no ManageSieve on 127.0.0.1:{port} within {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_ready(
    supervisor: &Supervisor,
    imap_port: u16,
    lmtp_port: u16,
    imaps_port: Option<u16>,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let listening = |port| {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    };
    loop {
        if let Some(status) = supervisor.exited() {
            return Err(format!("dovecot exited ({status})"));
        }
        if greets(imap_port, b"* OK")
            && greets(lmtp_port, b"220 ")
            && imaps_port.is_none_or(listening)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no greeting on 127.0.0.1:{imap_port} (IMAP) and 127.0.0.1:{lmtp_port} (LMTP) \
                 within {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn greets(port: u16, prefix: &[u8]) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = Vec::new();
    let mut byte = [0u8; 256];
    while got.len() < prefix.len() {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&byte[..n]),
        }
    }
    got.starts_with(prefix)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The last lines Dovecot logged since `from`, and what it printed on stdout/stderr (where
/// configuration errors go before the log is open).
fn log_tail(dir: &Path, from: u64) -> String {
    const LINES: usize = 30;
    let mut out = String::new();
    for (path, skip) in [(config::log_path(dir), from), (dir.join("dovecot.out"), 0)] {
        let text = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(skip as usize..).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(LINES)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(nothing logged)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_not_installed_error_says_how_to_install() {
        let e = TestbedError::NotInstalled {
            missing: DOVECOT_BIN.into(),
        };
        let text = e.to_string();
        assert!(
            text.contains("apt-get install -y dovecot-imapd dovecot-lmtpd"),
            "{text}"
        );
        assert!(text.contains(DOVECOT_BIN), "{text}");
    }

    #[test]
    fn users_that_would_break_the_passwd_file_are_refused() {
        for (login, password) in [
            ("a@b", ""),
            ("", "x"),
            ("a:b@c", "x"),
            ("a b@c", "x"),
            ("a@b", "x:y"),
            ("a@b", "x\ny"),
        ] {
            assert!(
                check_user(&TestUser::new(login, password)).is_err(),
                "{login:?}"
            );
        }
        assert!(check_user(&TestUser::new("a@b", "spaces and \"quotes\" ok")).is_ok());
    }

    #[test]
    fn directories_dovecot_conf_cannot_hold_are_refused() {
        assert!(check_dir_name(Path::new("/tmp/easgw-dovecot-AbC123")).is_ok());
        assert!(check_dir_name(Path::new("/tmp/with space")).is_err());
        assert!(check_dir_name(Path::new("/tmp/a#b")).is_err());
        assert!(check_dir_name(&Path::new("/tmp").join("x".repeat(80))).is_err());
    }
}

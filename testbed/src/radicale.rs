//! A private Radicale (Debian `radicale`) on a loopback port: CardDAV and CalDAV with htpasswd
//! users (the same logins and passwords as the test bed's Dovecot users), its own storage
//! folder, rights `owner_only`. Also the small pieces the DAV servers share (start, wait).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::process::{self, Supervisor};
use crate::{TestUser, TestbedError, free_ports};

/// Where Debian installs Radicale.
pub const RADICALE_BIN: &str = "/usr/bin/radicale";
/// The command that installs it.
pub const RADICALE_INSTALL_HINT: &str = "apt-get install -y radicale";
/// How long a DAV server may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running private Radicale; stopped on drop or at exit ([`Radicale::leak_until_exit`]).
pub struct Radicale {
    server: DavServer,
}

impl Radicale {
    /// Starts Radicale in a new temporary directory with `users` in its htpasswd file.
    pub fn start(users: &[TestUser]) -> Result<Radicale, TestbedError> {
        Radicale::start_with(users, "owner_only", None)
    }

    /// [`Radicale::start`] with a `[storage] hook`: the command Radicale runs after every
    /// change (`%(user)s` is the user who made it), as a deployment configures it.
    pub fn start_with_hook(
        users: &[TestUser],
        hook: Option<&str>,
    ) -> Result<Radicale, TestbedError> {
        Radicale::start_with(users, "owner_only", hook)
    }

    /// [`Radicale::start`] with another `[rights] type` (`authenticated`: every user may read
    /// and write every collection, as for shared calendars and free/busy look-ups).
    pub fn start_with_rights(users: &[TestUser], rights: &str) -> Result<Radicale, TestbedError> {
        Radicale::start_with(users, rights, None)
    }

    fn start_with(
        users: &[TestUser],
        rights: &str,
        hook: Option<&str>,
    ) -> Result<Radicale, TestbedError> {
        require(RADICALE_BIN, RADICALE_INSTALL_HINT)?;
        let temp = temp_dir("easgw-radicale-")?;
        let dir = temp.path().to_owned();
        let mut htpasswd = String::new();
        for u in users {
            if u.login.contains(':') || u.login.contains('\n') || u.password.contains('\n') {
                return Err(TestbedError::Invalid(format!(
                    "user {:?} cannot be written to htpasswd",
                    u.login
                )));
            }
            let _ = writeln!(htpasswd, "{}:{}", u.login, u.password);
        }
        write(&dir.join("users"), &htpasswd)?;
        let [port] = free_ports()?;
        // configparser interpolates `%`: the hook's `%(user)s` stays, any other `%` doubles.
        let hook = hook.map_or(String::new(), |h| {
            format!(
                "hook = {}\n",
                h.replace('%', "%%").replace("%%(user)s", "%(user)s")
            )
        });
        let config = format!(
            "[server]\nhosts = 127.0.0.1:{port}\n\
             [auth]\ntype = htpasswd\nhtpasswd_filename = {users}\nhtpasswd_encryption = plain\n\
             # No delay after a wrong password: the tests try one on purpose.\ndelay = 0\n\
             [storage]\nfilesystem_folder = {storage}\n{hook}\
             [rights]\ntype = {rights}\n\
             [web]\ntype = none\n\
             [logging]\nlevel = warning\n",
            users = dir.join("users").display(),
            storage = dir.join("collections").display(),
        );
        write(&dir.join("config"), &config)?;
        let mut cmd = Command::new(RADICALE_BIN);
        cmd.arg("--config").arg(dir.join("config"));
        let server = DavServer::spawn(cmd, temp, port, "Radicale")?;
        Ok(Radicale { server })
    }

    /// The server's root URL (`http://127.0.0.1:<port>/`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Where the collections are stored (one folder per user).
    pub fn storage(&self) -> PathBuf {
        self.server.dir.join("collections")
    }

    pub fn stop(&self) {
        self.server.shutdown();
    }

    /// Stops the process but keeps its data and port: [`Radicale::resume`] starts it again
    /// (a DAV server going away and coming back, for the outage tests).
    pub fn pause(&self) {
        self.server.pause();
    }

    /// Starts a paused Radicale again on the same port with the same data.
    pub fn resume(&self) -> Result<(), TestbedError> {
        self.server.resume()
    }

    /// Keeps the server for the rest of the process and stops it at exit.
    pub fn leak_until_exit(self) -> &'static Radicale {
        let leaked: &'static Radicale = Box::leak(Box::new(self));
        process::stop_at_exit(&leaked.server);
        leaked
    }
}

/// A DAV server child process with its temporary directory.
pub(crate) struct DavServer {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    temp: Mutex<Option<tempfile::TempDir>>,
    supervisor: Mutex<Supervisor>,
    /// The program and its arguments, to start it again after [`DavServer::pause`].
    argv: Vec<std::ffi::OsString>,
    name: String,
}

impl DavServer {
    /// Spawns `cmd` (output to `<dir>/server.log`) and waits until `port` accepts.
    pub(crate) fn spawn(
        cmd: Command,
        temp: tempfile::TempDir,
        port: u16,
        name: &str,
    ) -> Result<DavServer, TestbedError> {
        let dir = temp.path().to_owned();
        let argv: Vec<std::ffi::OsString> = std::iter::once(cmd.get_program().to_owned())
            .chain(cmd.get_args().map(|a| a.to_owned()))
            .collect();
        let supervisor = start_and_wait(cmd, &dir, port, name)?;
        Ok(DavServer {
            dir,
            port,
            temp: Mutex::new(Some(temp)),
            supervisor: Mutex::new(supervisor),
            argv,
            name: name.to_owned(),
        })
    }

    pub(crate) fn pause(&self) {
        self.supervisor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop();
    }

    pub(crate) fn resume(&self) -> Result<(), TestbedError> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        let s = start_and_wait(cmd, &self.dir, self.port, &self.name)?;
        *self.supervisor.lock().unwrap_or_else(|p| p.into_inner()) = s;
        Ok(())
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn shutdown(&self) {
        self.pause();
        drop(self.temp.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

impl Drop for DavServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl process::StopAtExit for DavServer {
    fn stop_now(&self) {
        self.shutdown();
    }
}

/// Starts `cmd` in `dir` (output appended to `server.log`) and waits until `port` accepts.
fn start_and_wait(
    mut cmd: Command,
    dir: &Path,
    port: u16,
    name: &str,
) -> Result<Supervisor, TestbedError> {
    let log = dir.join("server.log");
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| TestbedError::io(format!("creating {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| TestbedError::io(format!("opening {}", log.display()), e))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let supervisor =
        Supervisor::spawn(cmd).map_err(|e| TestbedError::io(format!("starting {name}"), e))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(supervisor);
        }
        let failed = supervisor.exited().map(|s| format!("{name} exited ({s})"));
        let failed = failed.or_else(|| {
            (Instant::now() > deadline).then(|| format!("{name} did not listen on {port}"))
        });
        if let Some(reason) = failed {
            let log_tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(TestbedError::Failed { reason, log_tail });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn require(bin: &str, hint: &str) -> Result<(), TestbedError> {
    if Path::new(bin).exists() {
        Ok(())
    } else {
        Err(TestbedError::DavNotInstalled {
            missing: bin.into(),
            hint: hint.into(),
        })
    }
}

pub(crate) fn temp_dir(prefix: &str) -> Result<tempfile::TempDir, TestbedError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))
}

fn write(path: &Path, text: &str) -> Result<(), TestbedError> {
    std::fs::write(path, text)
        .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
}

//! `eas-gateway serve` as a process of its own, for the load tools and measurements that read
//! the gateway's own memory (`/proc/<pid>/status`) or compare two builds of it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eas_gateway::imap::ImapConfig;

/// A gateway process on a free loopback port, plain HTTP, SQLite state in a temporary
/// directory (or the state and port [`ChildGateway::start_at`] names). SIGTERM (and, after
/// 15 s, SIGKILL) when dropped.
pub struct ChildGateway {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The loopback port it listens on.
    pub port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

/// Where [`ChildGateway::start_at`] puts a gateway: its state store and its port.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// `state.url`; None: SQLite in the process's temporary directory.
    pub state_url: Option<String>,
    /// The port to listen on (a node restarted where nginx expects it); None: a free one.
    pub port: Option<u16>,
}

impl ChildGateway {
    /// Starts `bin serve` against `imap`, with `extra` appended to the configuration (whole
    /// TOML sections after `[server]`, `[imap]` and `[state]`), under `wrap` (a profiler's
    /// command words, e.g. `heaptrack -o /tmp/gw`; none to run it directly). Waits until it
    /// listens (10 s at most).
    pub async fn start(
        bin: &str,
        wrap: &[&str],
        imap: &ImapConfig,
        extra: &str,
    ) -> std::io::Result<ChildGateway> {
        ChildGateway::start_at(bin, wrap, imap, extra, Placement::default()).await
    }

    /// [`ChildGateway::start`] with the state store and port of `at`: several processes on
    /// one PostgreSQL database are the nodes of a cluster.
    pub async fn start_at(
        bin: &str,
        wrap: &[&str],
        imap: &ImapConfig,
        extra: &str,
        at: Placement,
    ) -> std::io::Result<ChildGateway> {
        let dir = tempfile::tempdir()?;
        let port = match at.port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        };
        let state_url = at
            .state_url
            .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("state.db").display()));
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://mail.example.com\"\n\
             [imap]\nhost = \"{}\"\nport = {}\nsecurity = \"none\"\n\
             [state]\nurl = \"{state_url}\"\n{extra}",
            imap.host, imap.port,
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("gateway.log"))?;
        let mut command = match wrap.split_first() {
            Some((tool, args)) => {
                let mut c = std::process::Command::new(tool);
                c.args(args).arg(bin);
                c
            }
            None => std::process::Command::new(bin),
        };
        let child = command
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut gateway = ChildGateway {
            base: format!("http://127.0.0.1:{port}"),
            port,
            child,
            dir,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "{bin} serve exited ({status}):\n{}",
                    std::fs::read_to_string(gateway.log_path()).unwrap_or_default()
                )));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{bin} serve did not listen within 10 s"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(gateway)
    }

    /// The process id (of the wrapper, when there is one).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the process's output goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("gateway.log")
    }

    /// Warnings and errors the process logged: their number and the first few.
    pub fn log_summary(&self) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        (
            bad.len(),
            bad.iter().take(5).map(|l| l.to_string()).collect(),
        )
    }

    /// SIGKILL, and waits until the process is gone: a node that dies without a word (its
    /// held requests unanswered, nothing flushed), as in a crash or the OOM killer.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The whole log the process wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM: the gateway answers every held Ping, then stops.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        // A child already reaped (killed) may have passed its pid on to another process.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

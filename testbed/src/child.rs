//! `eas-gateway serve` as a process of its own, for the load tools and measurements that read
//! the gateway's own memory (`/proc/<pid>/status`) or compare two builds of it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use eas_gateway::imap::ImapConfig;

/// A gateway process on a free loopback port, plain HTTP, SQLite state in a temporary
/// directory. SIGTERM (and, after 15 s, SIGKILL) when dropped.
pub struct ChildGateway {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    child: std::process::Child,
    dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://mail.example.com\"\n\
             [imap]\nhost = \"{}\"\nport = {}\nsecurity = \"none\"\n\
             [state]\nurl = \"sqlite:{}\"\n{extra}",
            imap.host,
            imap.port,
            dir.path().join("state.db").display(),
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
        let gateway = ChildGateway {
            base: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
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

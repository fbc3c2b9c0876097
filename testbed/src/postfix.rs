//! A private Postfix on loopback, next to a private [`Dovecot`]: the same stack the users run,
//! so tests of sending see what production sees.
//!
//! [`Postfix::start`] writes `main.cf` and a trimmed `master.cf` into a fresh directory (its
//! `config_directory`, `queue_directory`, `data_directory` and log all inside it), lets
//! `postfix check` create the queue, and runs the `master` daemon in the foreground under the
//! same supervisor as Dovecot (so it never outlives the program). It listens on two free
//! 127.0.0.1 ports:
//! - **submission**: AUTH required, checked by the Dovecot's SASL socket
//!   (`smtpd_sasl_type = dovecot`), as a real submission port on 587 is;
//! - **relay**: no AUTH, trusted because the client is on loopback (`mynetworks`), as a
//!   relay that trusts the gateway's address is.
//!
//! Mail for the given domains is delivered to Dovecot's LMTP port (`virtual_transport =
//! lmtp:inet:...`); nothing leaves the machine (no DNS, no other destination). The system's
//! Postfix (`/etc/postfix`) is neither read nor touched. Postfix needs root: its daemons drop
//! to the `postfix` user the Debian package creates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::process::{self, Supervisor};
use super::{Dovecot, TestbedError, check_dir_name, file_len, free_ports, greets, lock};

/// The Postfix command and its master daemon, as Debian installs them.
pub const POSTFIX_BIN: &str = "/usr/sbin/postfix";
const MASTER_BIN: &str = "/usr/lib/postfix/sbin/master";
/// The command that installs Postfix without asking questions.
pub const POSTFIX_INSTALL_HINT: &str = "echo 'postfix postfix/main_mailer_type select No \
     configuration' | debconf-set-selections && DEBIAN_FRONTEND=noninteractive apt-get install \
     -y postfix";
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const PORT_ATTEMPTS: usize = 3;

/// A running private Postfix. Stopped by [`Postfix::stop`] or on drop.
pub struct Postfix {
    dir: PathBuf,
    temp: Mutex<Option<tempfile::TempDir>>,
    submission_port: u16,
    relay_port: u16,
    supervisor: Supervisor,
}

impl Postfix {
    /// Starts Postfix in a new temporary directory, delivering mail for `domains` to
    /// `dovecot`'s LMTP port and checking submission passwords against its users.
    pub fn start(dovecot: &Dovecot, domains: &[&str]) -> Result<Postfix, TestbedError> {
        for bin in [POSTFIX_BIN, MASTER_BIN] {
            if !Path::new(bin).exists() {
                return Err(TestbedError::PostfixNotInstalled {
                    missing: bin.into(),
                });
            }
        }
        if process::euid() != 0 {
            return Err(TestbedError::Invalid(
                "a private Postfix needs root (its daemons switch to the `postfix` user)".into(),
            ));
        }
        let owner = super::account::lookup("postfix")?.ok_or_else(|| {
            TestbedError::Invalid("no `postfix` user: is the postfix package installed?".into())
        })?;
        let temp = tempfile::Builder::new()
            .prefix("easgw-postfix-")
            .tempdir()
            .map_err(|e| TestbedError::io("creating a temporary directory".into(), e))?;
        let dir = temp.path().to_owned();
        check_dir_name(&dir)?;
        prepare(&dir, owner.uid, owner.gid)?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let log_start = file_len(&log_path(&dir));
            let [submission_port, relay_port] = free_ports()?;
            let settings = Settings {
                dir: &dir,
                submission_port,
                relay_port,
                lmtp_port: dovecot.lmtp_port(),
                sasl_socket: &dovecot.auth_socket_path(),
                domains,
            };
            write(&dir.join("main.cf"), &main_cf(&settings))?;
            write(&dir.join("master.cf"), &master_cf(&settings))?;
            postfix_check(&dir, log_start)?;
            let supervisor = spawn(&dir)?;
            match wait_ready(&supervisor, &[submission_port, relay_port]) {
                Ok(()) => {
                    return Ok(Postfix {
                        dir,
                        temp: Mutex::new(Some(temp)),
                        submission_port,
                        relay_port,
                        supervisor,
                    });
                }
                Err(reason) => {
                    supervisor.stop();
                    let log_tail = log_tail(&dir, log_start);
                    let port_taken = log_tail.contains("ddress already in use");
                    last_error = Some(TestbedError::PostfixFailed { reason, log_tail });
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// The submission port: AUTH (PLAIN, LOGIN) with a Dovecot user's password required.
    pub fn submission_port(&self) -> u16 {
        self.submission_port
    }

    /// The relay port: no AUTH, loopback clients are trusted.
    pub fn relay_port(&self) -> u16 {
        self.relay_port
    }

    /// The instance directory (`main.cf`, `master.cf`, `queue/`, `postfix.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Postfix's log (`maillog_file`), for tests that want to show it on failure.
    pub fn log_path(&self) -> PathBuf {
        log_path(&self.dir)
    }

    /// Stops Postfix and waits until it is gone (bounded); removes the directory. Idempotent.
    pub fn stop(&mut self) {
        self.shutdown();
    }

    fn shutdown(&self) {
        self.supervisor.stop();
        drop(lock(&self.temp).take());
    }

    /// Keeps this instance for the rest of the process and stops it at exit (see
    /// [`Dovecot::leak_until_exit`]).
    pub fn leak_until_exit(self) -> &'static Postfix {
        let leaked: &'static Postfix = Box::leak(Box::new(self));
        process::stop_at_exit(leaked);
        leaked
    }
}

impl process::StopAtExit for Postfix {
    fn stop_now(&self) {
        self.shutdown();
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Postfix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postfix")
            .field("dir", &self.dir)
            .field("submission_port", &self.submission_port)
            .field("relay_port", &self.relay_port)
            .field("pid", &self.supervisor.pid())
            .finish()
    }
}

/// What varies between instances.
struct Settings<'a> {
    dir: &'a Path,
    submission_port: u16,
    relay_port: u16,
    lmtp_port: u16,
    sasl_socket: &'a Path,
    domains: &'a [&'a str],
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("postfix.log")
}

fn main_cf(s: &Settings<'_>) -> String {
    let dir = s.dir.display();
    format!(
        r#"# Generated by eas-gateway's testbed; rewritten on every start.
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = {dir}
maillog_file = {log}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.easgw-testbed.invalid
mydomain = easgw-testbed.invalid
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
delay_warning_time = 0
# Every test domain is delivered to the private Dovecot over LMTP; nothing else is routed.
virtual_mailbox_domains = {domains}
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
default_transport = error:this test Postfix delivers only to {domains}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl}
smtpd_sasl_auth_enable = no
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
"#,
        log = log_path(s.dir).display(),
        domains = s.domains.join(" "),
        lmtp = s.lmtp_port,
        sasl = s.sasl_socket.display(),
    )
}

/// Only the services a loopback submission-to-LMTP path needs; none chrooted.
fn master_cf(s: &Settings<'_>) -> String {
    format!(
        r#"# Generated by eas-gateway's testbed; rewritten on every start.
127.0.0.1:{sub} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:{relay} inet n - n - - smtpd
  -o syslog_name=postfix/relay
  -o smtpd_client_restrictions=permit_mynetworks,reject
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"#,
        sub = s.submission_port,
        relay = s.relay_port,
    )
}

fn write(path: &Path, text: &str) -> Result<(), TestbedError> {
    std::fs::write(path, text)
        .map_err(|e| TestbedError::io(format!("writing {}", path.display()), e))
}

/// The instance directory is root's (Postfix insists), readable by all; `data/` is the
/// `postfix` user's.
fn prepare(dir: &Path, uid: u32, gid: u32) -> Result<(), TestbedError> {
    use std::os::unix::fs::PermissionsExt;

    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| TestbedError::io(format!("chmod {}", dir.display()), e))?;
    for sub in ["queue", "data"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p)
            .map_err(|e| TestbedError::io(format!("creating {}", p.display()), e))?;
    }
    let data = dir.join("data");
    std::os::unix::fs::chown(&data, Some(uid), Some(gid))
        .map_err(|e| TestbedError::io(format!("chown {}", data.display()), e))
}

/// `postfix check` validates the configuration and creates the queue directories.
fn postfix_check(dir: &Path, log_start: u64) -> Result<(), TestbedError> {
    let out = Command::new(POSTFIX_BIN)
        .arg("-c")
        .arg(dir)
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TestbedError::io(format!("running {POSTFIX_BIN} check"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TestbedError::PostfixFailed {
        reason: format!(
            "`postfix -c {} check` failed ({})",
            dir.display(),
            out.status
        ),
        log_tail: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(dir, log_start)
        ),
    })
}

fn spawn(dir: &Path) -> Result<Supervisor, TestbedError> {
    let out_path = dir.join("master.out");
    let out = std::fs::File::create(&out_path)
        .map_err(|e| TestbedError::io(format!("creating {}", out_path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| TestbedError::io(format!("opening {}", out_path.display()), e))?;
    // `master -d` stays in the foreground, but it cannot be the supervised process itself:
    // it changes its effective ids while starting, and Linux then clears the parent-death
    // signal, so it would outlive a killed test binary. A shell that keeps root's ids holds
    // that signal instead and passes any termination on to the master.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(
            r#""$0" -c "$1" -d & pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 0' TERM INT HUP
wait $pid"#,
        )
        .arg(MASTER_BIN)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    Supervisor::spawn(cmd).map_err(|e| TestbedError::io(format!("starting {MASTER_BIN}"), e))
}

fn wait_ready(supervisor: &Supervisor, ports: &[u16]) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = supervisor.exited() {
            return Err(format!("the Postfix master exited ({status})"));
        }
        if ports.iter().all(|&p| greets(p, b"220 ")) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no SMTP greeting on 127.0.0.1 ports {ports:?} within {READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(dir: &Path, from: u64) -> String {
    const LINES: usize = 30;
    let mut out = String::new();
    for (path, skip) in [(log_path(dir), from), (dir.join("master.out"), 0)] {
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
    fn configuration_names_ports_domains_and_the_sasl_socket() {
        let s = Settings {
            dir: Path::new("/tmp/p"),
            submission_port: 10587,
            relay_port: 10025,
            lmtp_port: 10024,
            sasl_socket: Path::new("/tmp/d/run/auth-postfix"),
            domains: &["example.com", "example.org"],
        };
        let main = main_cf(&s);
        for line in [
            "queue_directory = /tmp/p/queue",
            "inet_interfaces = loopback-only",
            "virtual_mailbox_domains = example.com example.org",
            "virtual_transport = lmtp:inet:127.0.0.1:10024",
            "smtpd_sasl_path = /tmp/d/run/auth-postfix",
        ] {
            assert!(main.lines().any(|l| l == line), "missing {line:?}");
        }
        let master = master_cf(&s);
        assert!(master.contains("127.0.0.1:10587 inet n - n - - smtpd"));
        assert!(master.contains("127.0.0.1:10025 inet n - n - - smtpd"));
        assert!(master.contains("smtpd_client_restrictions=permit_sasl_authenticated,reject"));
    }

    #[test]
    fn the_not_installed_error_says_how_to_install() {
        let text = TestbedError::PostfixNotInstalled {
            missing: POSTFIX_BIN.into(),
        }
        .to_string();
        assert!(text.contains("apt-get install -y postfix"), "{text}");
        assert!(text.contains("main_mailer_type"), "{text}");
    }
}

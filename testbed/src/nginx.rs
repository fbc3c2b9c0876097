//! A private nginx running the configuration we ship (`docs/deploy/nginx.conf`, and for several
//! nodes its upstream block swapped for `docs/deploy/nginx-nodes.conf`'s) in front of one or more
//! gateways, for the nginx tests (`tests/nginx.rs`) and the several-node push load
//! (`benches/push_load.rs --nodes N`).
//!
//! The configuration is generated *from* the shipped file: only the listen ports, the
//! upstream addresses, the certificate and the log/ACME paths are substituted (each on the
//! exact line the file has, so a change to those lines fails here rather than going
//! untested). Each instance runs `/usr/sbin/nginx` (Debian package `nginx`) in a private
//! directory on free loopback ports; it is stopped when dropped, and tied to the thread that
//! started it with `PR_SET_PDEATHSIG` so that not even a killed program leaves it behind.
//! Panics, naming the install command, when nginx is missing or does not start: callers are
//! tests and benchmarks.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy/nginx.conf");
const SHIPPED_NODES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../docs/deploy/nginx-nodes.conf"
);

// ---------------------------------------------------------------------------------------------
// A private nginx
// ---------------------------------------------------------------------------------------------

/// An nginx master process running the shipped configuration in front of the gateways.
pub struct Nginx {
    /// The private directory: configuration, certificate, logs, temporary files.
    pub dir: tempfile::TempDir,
    /// The TLS port (the shipped `listen 443 ssl`).
    pub https: u16,
    /// The plain port (the shipped `listen 80`: ACME and the redirect).
    pub http: u16,
    /// The self-signed certificate nginx presents, for the client's trust store.
    pub cert_pem: String,
    child: Option<Child>,
}

/// What Debian's main `nginx.conf` decides around the site file, sized for the run. The
/// default suits a test: one worker, 512 connections.
#[derive(Debug, Clone)]
pub struct NginxTuning {
    /// `worker_processes`.
    pub worker_processes: u32,
    /// `worker_connections`: per worker, client *and* upstream connections (a proxied held
    /// request takes two).
    pub worker_connections: u32,
    /// `worker_rlimit_nofile`; None leaves the workers the limit they inherit. Cannot exceed
    /// the hard limit of the process that starts nginx.
    pub worker_rlimit_nofile: Option<u64>,
    /// `reuseport` on the listeners: the kernel spreads new connections over the workers.
    /// Without it one worker may accept most of a burst and run out of connections while
    /// the others idle.
    pub reuseport: bool,
}

impl Default for NginxTuning {
    fn default() -> Self {
        NginxTuning {
            worker_processes: 1,
            worker_connections: 512,
            worker_rlimit_nofile: None,
            reuseport: false,
        }
    }
}

impl Nginx {
    /// Starts nginx proxying to `upstream`; panics with nginx's own words if it cannot start.
    pub fn start(upstream: SocketAddr) -> Nginx {
        Nginx::start_site(&[upstream])
    }

    /// With several upstreams: the shipped site with its upstream block replaced by the
    /// shipped several-nodes block (docs/deploy/nginx-nodes.conf), one `server` per node.
    pub fn start_site(upstreams: &[SocketAddr]) -> Nginx {
        Nginx::start_tuned(upstreams, &NginxTuning::default(), false)
    }

    /// [`Nginx::start_site`] with the worker settings of `tuning`; `nodes_block` uses the
    /// several-nodes block even for one upstream (a one-node "cluster", to compare with two).
    pub fn start_tuned(upstreams: &[SocketAddr], tuning: &NginxTuning, nodes_block: bool) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} not found: these tests run a real nginx. Install it with \
             `apt-get install -y nginx` (scripts/test.sh does this)"
        );
        let shipped =
            std::fs::read_to_string(SHIPPED).unwrap_or_else(|e| panic!("reading {SHIPPED}: {e}"));
        let mut last_error = String::new();
        // Free ports are found by binding port 0 and letting go; another process may take one
        // in between, so a failed start is retried with fresh ports.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let (https, http) = (free_port(), free_port());
            let cert =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .unwrap();
            let paths = Paths::new(dir.path());
            std::fs::write(&paths.cert, cert.cert.pem()).unwrap();
            std::fs::write(&paths.key, cert.key_pair.serialize_pem()).unwrap();
            std::fs::create_dir_all(dir.path().join("acme")).unwrap();
            std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
            // nginx's workers drop root privileges (to `nobody`) and must still reach the
            // temporary directories under here.
            use std::os::unix::fs::PermissionsExt;
            for d in [dir.path().to_path_buf(), dir.path().join("tmp")] {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let listen = Listen {
                https,
                http,
                reuseport: tuning.reuseport,
            };
            let site = match upstreams {
                [one] if !nodes_block => render(&shipped, Some(*one), &listen, &paths),
                several => render(&with_nodes(&shipped, several), None, &listen, &paths),
            };
            std::fs::write(dir.path().join("eas-gateway.conf"), &site).unwrap();
            std::fs::write(
                dir.path().join("nginx.conf"),
                main_config(dir.path(), tuning),
            )
            .unwrap();

            let child = spawn_tied_to_this_thread(
                Command::new(NGINX)
                    .arg("-p")
                    .arg(format!("{}/", dir.path().display()))
                    .arg("-c")
                    .arg(dir.path().join("nginx.conf"))
                    .arg("-e")
                    .arg(dir.path().join("error.log"))
                    .args(["-g", "daemon off; master_process on;"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            );
            let mut nginx = Nginx {
                dir,
                https,
                http,
                cert_pem: cert.cert.pem(),
                child: Some(child),
            };
            match nginx.wait_until_listening() {
                Ok(()) => return nginx,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not start:\n{last_error}");
    }

    /// Waits until both ports accept connections, or reports why nginx ended.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                self.child = None;
                return Err(format!(
                    "nginx exited ({status}): {stderr}\n{}",
                    self.error_log()
                ));
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.https) && up(self.http) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx not listening after 10 s\n{}",
                    self.error_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `https://localhost:PORT`: what the phone is told to use.
    pub fn base(&self) -> String {
        format!("https://localhost:{}", self.https)
    }

    /// A client that trusts nginx's certificate, resolves `localhost` to 127.0.0.1 and does
    /// not follow redirects; with `from`, its connections leave from that loopback address
    /// (any of 127.0.0.0/8 works on Linux), so nginx sees a client that is not itself.
    pub fn client(&self, from: Option<IpAddr>) -> reqwest::Client {
        self.client_builder(from).build().unwrap()
    }

    /// What [`Nginx::client`] builds, for callers that set more (timeouts).
    pub fn client_builder(&self, from: Option<IpAddr>) -> reqwest::ClientBuilder {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            // Port 0: the port of the URL is used (the HTTPS or the plain one).
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = from {
            b = b.local_address(ip);
        }
        b
    }

    /// The master's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The worker processes' ids (the master's children).
    pub fn worker_pids(&self) -> Vec<u32> {
        let Some(master) = self.pid() else {
            return Vec::new();
        };
        let list = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        list.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The error log, headed by its path, for failure messages.
    pub fn error_log(&self) -> String {
        let path = self.dir.path().join("error.log");
        format!(
            "--- {}:\n{}",
            path.display(),
            std::fs::read_to_string(&path).unwrap_or_default()
        )
    }

    /// The access log.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// SIGTERM (nginx's fast shutdown: the master stops its workers), then SIGKILL to the
    /// whole process group if it has not ended within five seconds.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        sys::signal(pid, sys::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sys::signal(-pid, sys::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The listen ports and how.
struct Listen {
    https: u16,
    http: u16,
    reuseport: bool,
}

/// Where the substituted paths point, inside the private directory.
struct Paths {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_path_buf(),
            cert: dir.join("fullchain.pem"),
            key: dir.join("privkey.pem"),
        }
    }
}

/// The shipped site configuration with the deployment-specific lines replaced. Every rule
/// must match exactly one line of the file.
fn render(shipped: &str, upstream: Option<SocketAddr>, l: &Listen, p: &Paths) -> String {
    let d = p.dir.display();
    let (https, http) = (l.https, l.http);
    let reuse = if l.reuseport { " reuseport" } else { "" };
    let mut rules: Vec<(&str, String)> = vec![
        (
            "listen 443 ssl;",
            format!("listen 127.0.0.1:{https} ssl{reuse};"),
        ),
        // The test listens on IPv4 loopback only (IPv6 may be off in containers).
        ("listen [::]:443 ssl;", "# (IPv6 listener left out)".into()),
        ("listen 80;", format!("listen 127.0.0.1:{http}{reuse};")),
        ("listen [::]:80;", "# (IPv6 listener left out)".into()),
        (
            "ssl_certificate /etc/letsencrypt/live/mail.example.com/fullchain.pem;",
            format!("ssl_certificate {};", p.cert.display()),
        ),
        (
            "ssl_certificate_key /etc/letsencrypt/live/mail.example.com/privkey.pem;",
            format!("ssl_certificate_key {};", p.key.display()),
        ),
        ("root /var/www/letsencrypt;", format!("root {d}/acme;")),
        (
            "access_log /var/log/nginx/eas-gateway.access.log;",
            format!("access_log {d}/access.log;"),
        ),
        (
            "error_log /var/log/nginx/eas-gateway.error.log;",
            format!("error_log {d}/error.log;"),
        ),
    ];
    if let Some(upstream) = upstream {
        rules.push(("server 127.0.0.1:8080;", format!("server {upstream};")));
    }
    let mut hits = vec![0; rules.len()];
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        match rules.iter().position(|(from, _)| *from == trimmed) {
            Some(i) => {
                hits[i] += 1;
                out.push_str(indent);
                out.push_str(&rules[i].1);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for ((from, _), n) in rules.iter().zip(hits) {
        assert_eq!(
            n, 1,
            "{SHIPPED} must contain the line `{from}` exactly once (the test substitutes it)"
        );
    }
    for line in out.lines() {
        let code = line.split('#').next().unwrap_or_default();
        assert!(
            !code.contains("/etc/") && !code.contains("/var/") && !code.contains(":8080"),
            "a deployment path or port the test does not substitute: {line}"
        );
    }
    out
}

/// The shipped site with its `upstream eas_gateway { … }` block swapped for the shipped
/// several-nodes block, whose `server ADDRESS PARAMETERS;` lines become one per node (the
/// parameters of the first line kept).
fn with_nodes(shipped: &str, nodes: &[SocketAddr]) -> String {
    let block =
        std::fs::read_to_string(SHIPPED_NODES).unwrap_or_else(|e| panic!("{SHIPPED_NODES}: {e}"));
    // (At the start of a line: the comments name the block too.)
    let start = 1 + block
        .find("\nupstream eas_gateway {")
        .expect("the nodes file has the upstream block");
    let mut upstream = String::new();
    let mut params = None;
    for line in block[start..].lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("server ") {
            let (_, p) = rest.split_once(' ').expect("server ADDRESS PARAMETERS;");
            if params.is_none() {
                params = Some(p.to_owned());
                for node in nodes {
                    upstream.push_str(&format!("    server {node} {p}\n"));
                }
            }
            continue;
        }
        upstream.push_str(line);
        upstream.push('\n');
    }
    assert!(params.is_some(), "{SHIPPED_NODES} has no `server` line");
    let from = 1 + shipped
        .find("\nupstream eas_gateway {")
        .expect("nginx.conf has the upstream block");
    let to = from
        + shipped[from..]
            .find("\n}\n")
            .expect("end of the upstream block")
        + 3;
    format!("{}{}{}", &shipped[..from], upstream, &shipped[to..])
}

/// What Debian's /etc/nginx/nginx.conf provides around a site file, kept in the private
/// directory.
fn main_config(dir: &Path, t: &NginxTuning) -> String {
    let d = dir.display();
    let rlimit = t
        .worker_rlimit_nofile
        .map_or(String::new(), |n| format!("worker_rlimit_nofile {n};\n"));
    format!(
        "worker_processes {};\n\
         {rlimit}\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections {}; }}\n\
         http {{\n\
         \x20   client_body_temp_path {d}/tmp/client_body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   access_log {d}/access.log;\n\
         \x20   include {d}/eas-gateway.conf;\n\
         }}\n",
        t.worker_processes, t.worker_connections
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns the command in its own process group with `PR_SET_PDEATHSIG = SIGTERM`: when the
/// thread that forked it ends (the test's thread — or every thread, when the binary is
/// killed), the kernel sends nginx SIGTERM, and nginx stops its workers.
fn spawn_tied_to_this_thread(cmd: &mut Command) -> Child {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: runs between fork and exec; prctl and getppid are async-signal-safe and
    // nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if sys::prctl(sys::PR_SET_PDEATHSIG, sys::SIGTERM as std::ffi::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if sys::getppid() != parent {
                return Err(std::io::Error::other("the test exited during spawn"));
            }
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {NGINX}: {e} (apt-get install -y nginx)"))
}

/// The few libc calls, declared directly (std links libc already).
mod sys {
    use std::ffi::c_int;

    pub const SIGTERM: c_int = 15;
    pub const SIGKILL: c_int = 9;
    pub const PR_SET_PDEATHSIG: c_int = 1;

    unsafe extern "C" {
        fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn getppid() -> c_int;
        pub fn prctl(option: c_int, ...) -> c_int;
    }

    pub fn signal(pid: c_int, sig: c_int) {
        // SAFETY: kill only sends a signal; a stale pid gives ESRCH, which is fine.
        unsafe {
            kill(pid, sig);
        }
    }
}

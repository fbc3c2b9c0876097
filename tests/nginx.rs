//! The gateway behind a real nginx configured by the file we ship, `docs/deploy/nginx.conf`:
//! nginx terminates TLS and proxies to the gateway's plain-HTTP listener, and a phone sets up
//! its account, syncs, sends a large body, waits in a long poll and fails to log in through
//! it.
//!
//! The nginx configuration is generated *from* the shipped file: only the listen ports, the
//! upstream address, the certificate and the log/ACME paths are substituted (each on the exact
//! line the file has, so a change to those lines fails here rather than going untested). Each
//! test starts its own nginx (`/usr/sbin/nginx`, Debian package `nginx`) in a private
//! directory on free loopback ports; it is stopped when the test ends, and tied to the test
//! thread with `PR_SET_PDEATHSIG` so that not even a killed test binary leaves it behind. If
//! nginx is not installed the tests fail, naming the command that installs it.

mod eas;
mod support;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use eas::{Gateway, Phone, find_text, folder_changes};
use eas_wbxml::Element;
use eas_wbxml::tags::{airsync as a, folderhierarchy as fh};

const NGINX: &str = "/usr/sbin/nginx";
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/nginx.conf");
const SHIPPED_NODES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/nginx-nodes.conf");

// ---------------------------------------------------------------------------------------------
// A private nginx
// ---------------------------------------------------------------------------------------------

/// An nginx master process running the shipped configuration in front of one gateway.
struct Nginx {
    dir: tempfile::TempDir,
    /// The TLS port (the shipped `listen 443 ssl`).
    https: u16,
    /// The plain port (the shipped `listen 80`: ACME and the redirect).
    http: u16,
    /// The self-signed certificate nginx presents, for the client's trust store.
    cert_pem: String,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx proxying to `upstream`; panics with nginx's own words if it cannot start.
    fn start(upstream: SocketAddr) -> Nginx {
        Nginx::start_site(&[upstream])
    }

    /// With several upstreams: the shipped site with its upstream block replaced by the
    /// shipped several-nodes block (docs/deploy/nginx-nodes.conf), one `server` per node.
    fn start_site(upstreams: &[SocketAddr]) -> Nginx {
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
            let site = match upstreams {
                [one] => render(&shipped, Some(*one), https, http, &paths),
                several => render(&with_nodes(&shipped, several), None, https, http, &paths),
            };
            std::fs::write(dir.path().join("eas-gateway.conf"), &site).unwrap();
            std::fs::write(dir.path().join("nginx.conf"), main_config(dir.path())).unwrap();

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
    fn base(&self) -> String {
        format!("https://localhost:{}", self.https)
    }

    /// A client that trusts nginx's certificate, resolves `localhost` to 127.0.0.1 and does
    /// not follow redirects; with `from`, its connections leave from that loopback address
    /// (any of 127.0.0.0/8 works on Linux), so nginx sees a client that is not itself.
    fn client(&self, from: Option<IpAddr>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.cert_pem.as_bytes()).unwrap())
            // Port 0: the port of the URL is used (the HTTPS or the plain one).
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = from {
            b = b.local_address(ip);
        }
        b.build().unwrap()
    }

    /// A phone that talks to the gateway through this nginx.
    fn phone(&self, g: &Gateway, user: &str, device: &str) -> Phone {
        let (login, password) = support::credentials(user);
        let mut p = Phone::new(g, &login, &password, device);
        p.base = self.base();
        p.client = self.client(None);
        p
    }

    fn error_log(&self) -> String {
        let path = self.dir.path().join("error.log");
        format!(
            "--- {}:\n{}",
            path.display(),
            std::fs::read_to_string(&path).unwrap_or_default()
        )
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// SIGTERM (nginx's fast shutdown: the master stops its workers), then SIGKILL to the
    /// whole process group if it has not ended within five seconds.
    fn stop(&mut self) {
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
fn render(shipped: &str, upstream: Option<SocketAddr>, https: u16, http: u16, p: &Paths) -> String {
    let d = p.dir.display();
    let mut rules: Vec<(&str, String)> = vec![
        ("listen 443 ssl;", format!("listen 127.0.0.1:{https} ssl;")),
        // The test listens on IPv4 loopback only (IPv6 may be off in containers).
        ("listen [::]:443 ssl;", "# (IPv6 listener left out)".into()),
        ("listen 80;", format!("listen 127.0.0.1:{http};")),
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
fn main_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         \x20   client_body_temp_path {d}/tmp/client_body;\n\
         \x20   proxy_temp_path {d}/tmp/proxy;\n\
         \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
         \x20   scgi_temp_path {d}/tmp/scgi;\n\
         \x20   access_log {d}/access.log;\n\
         \x20   include {d}/eas-gateway.conf;\n\
         }}\n"
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

// ---------------------------------------------------------------------------------------------
// What the gateway logs, to see which client address it believed
// ---------------------------------------------------------------------------------------------

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the gateway's log lines (INFO and up) of this test binary to [`logged`].
fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init();
    });
}

/// The captured log lines that contain `needle`.
fn logged(needle: &str) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// EAS helpers
// ---------------------------------------------------------------------------------------------

const AUTODISCOVER: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006">
  <Request>
    <EMailAddress>EMAIL</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

/// Provision and FolderSync; returns the id of the folder called `name`.
async fn set_up(phone: &mut Phone, name: &str) -> String {
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    assert_eq!(find_text(&fs, fh::Status).as_deref(), Some("1"));
    let (adds, _, _) = folder_changes(&fs);
    adds.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {adds:?}"))
        .id
        .clone()
}

/// One collection's answer: (new key, added items).
fn sync_answer(tree: &Element) -> (String, Vec<Element>) {
    let c = tree
        .child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .unwrap_or_else(|| panic!("no Collection in {}", eas_wbxml::to_xml(tree)));
    assert_eq!(
        c.child(a::Status).and_then(|s| s.text()),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(tree)
    );
    let key = c.child(a::SyncKey).unwrap().text().unwrap().to_owned();
    let adds = c
        .child(a::Commands)
        .map(|cmds| cmds.children_with(a::Add).cloned().collect())
        .unwrap_or_default();
    (key, adds)
}

fn sync_xml(key: &str, folder: &str, extra: &str) -> String {
    format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{folder}</CollectionId>{extra}
           </Collection></Collections></Sync>"#
    )
}

/// Syncs a folder from key 0 until nothing more is available; returns the key and the items.
async fn sync_all(phone: &Phone, folder: &str) -> (String, Vec<Element>) {
    let first = phone.send("Sync", &sync_xml("0", folder, "")).await.tree();
    let (mut key, _) = sync_answer(&first);
    let mut items = Vec::new();
    loop {
        let r = phone
            .send("Sync", &sync_xml(&key, folder, "<GetChanges/>"))
            .await
            .tree();
        let (next, adds) = sync_answer(&r);
        let done = adds.is_empty();
        items.extend(adds);
        key = next;
        if done {
            return (key, items);
        }
    }
}

fn ping_xml(folder: &str, heartbeat: u32) -> String {
    format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>{heartbeat}</HeartbeatInterval><Folders><Folder>
             <Id>{folder}</Id><Class>Email</Class></Folder></Folders></Ping>"#
    )
}

fn subject(item: &Element) -> String {
    find_text(item, eas_wbxml::tags::email::Subject).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The iOS account set-up through nginx: Autodiscover (mixed-case path), OPTIONS, Provision
/// (both phases), FolderSync and a Sync of the Inbox that sees a message APPENDed to Dovecot.
#[tokio::test]
async fn account_setup_through_nginx() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let nginx = Nginx::start(g.addr);
    let mut phone = nginx.phone(&g, "alice", "nginxsetup");

    // iOS spells the path /AutoDiscover/AutoDiscover.xml; the location matches any case.
    let r = phone
        .client
        .post(format!("{}/AutoDiscover/AutoDiscover.xml", nginx.base()))
        .basic_auth(&phone.login, Some(&phone.password))
        .body(AUTODISCOVER.replace("EMAIL", &phone.login))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", nginx.error_log());
    assert!(
        r.headers()["server"].to_str().unwrap().starts_with("nginx"),
        "answered by nginx"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("<Url>https://mail.example.com/Microsoft-Server-ActiveSync</Url>"),
        "{text}"
    );

    let o = phone.options().await;
    assert_eq!(o.status, 200);
    assert_eq!(
        o.headers["MS-ASProtocolVersions"],
        "12.1,14.0,14.1,16.0,16.1"
    );
    let commands = o.headers["MS-ASProtocolCommands"].to_str().unwrap();
    assert!(commands.split(',').any(|c| c == "Sync"), "{commands}");
    assert!(
        o.headers["Strict-Transport-Security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="),
        "nginx adds HSTS"
    );

    let inbox = set_up(&mut phone, "Inbox").await;
    let (key, before) = sync_all(&phone, &inbox).await;
    assert!(before.is_empty(), "a fresh user's Inbox is empty");
    support::append(
        "alice",
        "INBOX",
        &[],
        &support::message("Through nginx", "hello via the proxy"),
    )
    .await;
    let r = phone
        .send("Sync", &sync_xml(&key, &inbox, "<GetChanges/>"))
        .await
        .tree();
    let (_, adds) = sync_answer(&r);
    assert_eq!(
        adds.iter().map(subject).collect::<Vec<_>>(),
        vec!["Through nginx".to_owned()]
    );

    // Everything else on the host is not the gateway's: nginx answers 404 itself.
    let r = phone
        .client
        .get(format!("{}/metrics", nginx.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Plain HTTP redirects to HTTPS (and serves the ACME challenge directory).
    let r = phone
        .client
        .get(format!(
            "http://localhost:{}/Microsoft-Server-ActiveSync?Cmd=Sync",
            nginx.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        "https://localhost/Microsoft-Server-ActiveSync?Cmd=Sync"
    );
    let challenge = nginx.dir.path().join("acme/.well-known/acme-challenge");
    std::fs::create_dir_all(&challenge).unwrap();
    std::fs::write(challenge.join("token123"), "token123.thumbprint").unwrap();
    let r = phone
        .client
        .get(format!(
            "http://localhost:{}/.well-known/acme-challenge/token123",
            nginx.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", nginx.error_log());
    assert_eq!(r.text().await.unwrap(), "token123.thumbprint");
}

/// A held Sync (HeartbeatInterval 60) answers through nginx as soon as the gateway notices new
/// mail — nginx neither buffers the answer nor gives up on the held request — and a 5 MB
/// request body (a 16.1 draft) reaches the gateway whole, while one above the 50 MiB limit is
/// refused by nginx itself.
#[tokio::test]
async fn long_poll_and_large_body_pass_through() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let nginx = Nginx::start(g.addr);

    let mut phone = nginx.phone(&g, "bob", "nginxheld");
    let inbox = set_up(&mut phone, "Inbox").await;
    let (key, _) = sync_all(&phone, &inbox).await;
    let wait = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId>
           </Collection></Collections><HeartbeatInterval>60</HeartbeatInterval></Sync>"#
    );
    let held = phone.send("Sync", &wait);
    let started = Instant::now();
    let deliver = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        support::deliver("bob", &support::message("While you waited", "x")).await;
    };
    let (answer, ()) = tokio::join!(held, deliver);
    let waited = started.elapsed();
    let (_, adds) = sync_answer(&answer.tree());
    assert_eq!(
        adds.iter().map(subject).collect::<Vec<_>>(),
        vec!["While you waited".to_owned()]
    );
    // Held until the mail came (it was delivered after 2 s), answered within one re-check
    // (every 5 s) of it.
    assert!(waited >= Duration::from_millis(1900), "held: {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "answered late: {waited:?}"
    );

    // A draft with a 5 MB body: the whole request passes nginx and the gateway stores it.
    let mut drafter = nginx.phone(&g, "carol", "nginxbig");
    drafter.version = "16.1";
    let drafts = set_up(&mut drafter, "Drafts").await;
    let (key, _) = sync_all(&drafter, &drafts).await;
    let line = "The quick brown fox jumps over the lazy dog, again and again.\n";
    let body = line.repeat(5_000_000 / line.len() + 1);
    let add = format!(
        r#"<Sync xmlns="AirSync:" xmlns:email="Email:" xmlns:airsyncbase="AirSyncBase:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{drafts}</CollectionId>
             <Commands><Add><ClientId>big-1</ClientId><ApplicationData>
               <email:To>bob@example.com</email:To><email:Subject>Big draft</email:Subject>
               <airsyncbase:Body><airsyncbase:Type>1</airsyncbase:Type><airsyncbase:Data>{body}</airsyncbase:Data></airsyncbase:Body>
             </ApplicationData></Add></Commands>
           </Collection></Collections></Sync>"#
    );
    let wbxml = eas_wbxml::from_xml(&add).unwrap().encode();
    assert!(wbxml.len() > 5_000_000, "{} bytes", wbxml.len());
    let r = drafter.post("Sync", wbxml).await.tree();
    let responses = r
        .child(a::Collections)
        .and_then(|c| c.child(a::Collection))
        .and_then(|c| c.child(a::Responses))
        .unwrap_or_else(|| panic!("{}", eas_wbxml::to_xml(&r)));
    assert_eq!(find_text(responses, a::Status).as_deref(), Some("1"));
    let sid = find_text(responses, a::ServerId).unwrap();
    let uid: u32 = sid.split(':').nth(1).unwrap().parse().unwrap();
    let mut s = support::session("carol").await;
    s.select("Drafts").await.unwrap();
    let f = s
        .uid_fetch(
            &eas_gateway::imap::SequenceSet::single(uid),
            &eas_gateway::imap::FetchQuery::new().size(),
        )
        .await
        .unwrap();
    let _ = s.logout().await;
    let size = f[0].size.unwrap();
    // Base64 makes the stored body 4/3 of the text.
    assert!(size > 5_000_000 * 4 / 3, "stored {size} bytes");

    // Above client_max_body_size (50 MiB, = the gateway's max_body_bytes): nginx says 413
    // before the gateway sees a byte.
    let r = drafter
        .client
        .post(format!(
            "{}/Microsoft-Server-ActiveSync?Cmd=Sync&User=x&DeviceId=nginxbig&DeviceType=iPhone",
            nginx.base()
        ))
        .basic_auth(&drafter.login, Some(&drafter.password))
        .header("MS-ASProtocolVersion", "16.1")
        .body(vec![0u8; 50 * 1024 * 1024 + 1])
        .send()
        .await;
    match r {
        Ok(r) => {
            assert_eq!(r.status(), 413);
            assert!(
                !r.headers().contains_key("MS-Server-ActiveSync"),
                "not the gateway's"
            );
        }
        // nginx may close the connection before the client has finished sending.
        Err(e) => assert!(
            nginx
                .error_log()
                .contains("client intended to send too large body"),
            "{e}"
        ),
    }
}

/// A held Sync and a Ping longer than nginx's default `proxy_read_timeout` (60 s) are still
/// answered by the gateway at the end of their heartbeat, not cut by nginx with 504: the
/// shipped timeouts are in effect. Takes ~75 s (both wait at the same time).
#[tokio::test]
async fn long_polls_outlive_nginx_default_timeout() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let nginx = Nginx::start(g.addr);
    let mut syncer = nginx.phone(&g, "dave", "nginxlongsync");
    let mut pinger = nginx.phone(&g, "frank", "nginxlongping");
    let inbox = set_up(&mut syncer, "Inbox").await;
    let (key, _) = sync_all(&syncer, &inbox).await;
    let ping_inbox = set_up(&mut pinger, "Inbox").await;
    sync_all(&pinger, &ping_inbox).await;

    let wait = format!(
        r#"<Sync xmlns="AirSync:"><Collections><Collection>
             <SyncKey>{key}</SyncKey><CollectionId>{inbox}</CollectionId>
           </Collection></Collections><HeartbeatInterval>75</HeartbeatInterval></Sync>"#
    );
    let ping = ping_xml(&ping_inbox, 75);
    let timed = |answer| async move {
        let started = Instant::now();
        let a: eas::Answer = answer.await;
        (a, started.elapsed())
    };
    let ((sync, sync_waited), (ping, ping_waited)) = tokio::join!(
        timed(syncer.send("Sync", &wait)),
        timed(pinger.send("Ping", &ping)),
    );
    // Nothing arrived: the Sync's empty answer, the Ping's status 1, near the heartbeat.
    assert_eq!(
        sync.status,
        200,
        "Sync after {sync_waited:?}\n{}",
        nginx.error_log()
    );
    assert!(sync.body.is_empty());
    assert!(
        sync_waited > Duration::from_secs(62),
        "held {sync_waited:?}"
    );
    assert_eq!(
        ping.status,
        200,
        "Ping after {ping_waited:?}\n{}",
        nginx.error_log()
    );
    let tree = ping.tree();
    assert_eq!(
        find_text(&tree, eas_wbxml::tags::ping::Status).as_deref(),
        Some("1"),
        "{}",
        eas_wbxml::to_xml(&tree)
    );
    assert!(
        ping_waited > Duration::from_secs(62),
        "held {ping_waited:?}"
    );
}

/// The gateway sees the phone's address (nginx's X-Forwarded-For), not nginx's 127.0.0.1 and
/// not what the phone itself wrote into X-Forwarded-For. Observable two ways: the address in
/// the gateway's request log, and the failed-login slow-down, which counts per client address.
#[tokio::test]
async fn the_gateway_sees_the_phone_address_not_nginx_or_a_forged_one() {
    capture_logs();
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.auth.failures_before_delay = 2;
    })
    .await;
    let nginx = Nginx::start(g.addr);
    let phone_ip: IpAddr = [127, 0, 0, 77].into();
    let other_ip: IpAddr = [127, 0, 0, 78].into();
    let from_phone = nginx.client(Some(phone_ip));
    let from_other = nginx.client(Some(other_ip));
    let options = |client: &reqwest::Client, user: String, forged: String| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/Microsoft-Server-ActiveSync", nginx.base()),
            )
            .basic_auth(user, Some("wrong password"))
            .header("X-Forwarded-For", forged)
            .send()
    };
    // Six failed log-ins from the phone, each for another user and each claiming another
    // origin. Only if the gateway counts them against the real address do they add up.
    // (Dovecot answers each failed LOGIN after about 0.5 s, so the slow-down is driven up to
    // a clearly larger 4 s.)
    for n in 1..=6 {
        let r = options(
            &from_phone,
            format!("nobody{n}@example.com"),
            format!("203.0.113.{n}"),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Six failures, two allowed: the next answer from that address comes after 4 s.
    let started = Instant::now();
    let r = options(
        &from_phone,
        "nobody7@example.com".into(),
        "203.0.113.7".into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let slowed = started.elapsed();
    assert!(
        slowed >= Duration::from_millis(3900),
        "the phone's failures were not counted against its address: answered in {slowed:?}"
    );
    // Another client, even one claiming to be the phone, is not slowed down (it would be, had
    // the gateway counted everything against nginx's 127.0.0.1 or believed the claim).
    let started = Instant::now();
    let r = options(
        &from_other,
        "nobody8@example.com".into(),
        phone_ip.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    let quick = started.elapsed();
    assert!(
        quick < Duration::from_secs(2),
        "another client was slowed down too: {quick:?}"
    );

    // The request log names the real addresses, never a forged one or nginx's.
    let mine = logged("client=127.0.0.77");
    assert!(
        mine.iter().filter(|l| l.contains("answered")).count() >= 7,
        "{mine:#?}"
    );
    assert!(
        logged("client=127.0.0.78")
            .iter()
            .any(|l| l.contains("answered"))
    );
    assert!(
        logged("client=203.0.113.").is_empty(),
        "a forged address was believed"
    );
    // nginx itself logged the phone's address.
    assert!(nginx.access_log().contains("127.0.0.77 "));
}

/// Ping through nginx: a Ping held with HeartbeatInterval 60 on the Inbox answers
/// `<Ping><Status>2</Status><Folders><Folder>{inbox}</Folder></Folders></Ping>` when a message
/// is delivered 2 s later.
#[tokio::test]
async fn ping_through_nginx() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let nginx = Nginx::start(g.addr);
    let mut phone = nginx.phone(&g, "erin", "nginxping");
    let inbox = set_up(&mut phone, "Inbox").await;
    sync_all(&phone, &inbox).await;
    let announced = phone.options().await.headers["MS-ASProtocolCommands"]
        .to_str()
        .unwrap()
        .split(',')
        .any(|c| c == "Ping");
    assert!(announced, "OPTIONS does not announce Ping");
    let started = Instant::now();
    let ping = ping_xml(&inbox, 60);
    let held = phone.send("Ping", &ping);
    let deliver = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        support::deliver("erin", &support::message("Ping me", "x")).await;
    };
    let (answer, ()) = tokio::join!(held, deliver);
    let waited = started.elapsed();
    let tree = answer.tree();
    let xml = eas_wbxml::to_xml(&tree);
    use eas_wbxml::tags::ping as p;
    assert_eq!(find_text(&tree, p::Status).as_deref(), Some("2"), "{xml}");
    let folders: Vec<String> = tree
        .child(p::Folders)
        .map(|f| {
            f.children_with(p::Folder)
                .filter_map(|x| x.text().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(folders, vec![inbox], "{xml}");
    assert!(waited >= Duration::from_millis(1900), "held: {waited:?}");
    assert!(
        waited < Duration::from_secs(15),
        "answered late: {waited:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Several nodes
// ---------------------------------------------------------------------------------------------

/// Requests a gateway answered (all commands, all statuses), from its /metrics.
async fn answered(g: &Gateway) -> u64 {
    g.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with("eas_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The shipped several-nodes recipe (docs/deploy/nginx-nodes.conf) with two gateways on one
/// PostgreSQL: all of a user's phones land on one node; when that node dies, the next
/// request goes to the other one, which answers the phone's current SyncKey as its own (no
/// resync, nothing sent twice), within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_nodes_one_user_one_node_and_failover() {
    let url = eas_testbed::Postgres::shared().fresh_database().unwrap();
    let start = |url: String| {
        Gateway::start(support::dovecot().imap_config(), move |c| {
            c.state.url = url;
            c.server.public_url = "https://localhost".into();
        })
    };
    let nodes = vec![start(url.clone()).await, start(url.clone()).await];
    let nginx = tokio::task::block_in_place(|| {
        Nginx::start_site(&nodes.iter().map(|g| g.addr).collect::<Vec<_>>())
    });
    let user = "walter";
    let mut phone = nginx.phone(&nodes[0], user, "NODESPHONE");
    let inbox = set_up(&mut phone, "Inbox").await;
    let hierarchy_key = find_text(&phone.folder_sync("0").await, fh::SyncKey).unwrap();
    support::append(user, "INBOX", &[], b"Subject: one\r\n\r\nfirst\r\n").await;
    let (key, items) = sync_all(&phone, &inbox).await;
    assert_eq!(items.len(), 1);
    // A second phone of the same user goes to the same node.
    let mut tablet = nginx.phone(&nodes[0], user, "NODESTABLET");
    set_up(&mut tablet, "Inbox").await;
    let counts = [answered(&nodes[0]).await, answered(&nodes[1]).await];
    let serving = usize::from(counts[1] > 0);
    assert_eq!(
        counts[1 - serving],
        0,
        "one user's requests all went to one node: {counts:?}"
    );

    // The serving node dies.
    let mut nodes = nodes;
    let survivor = nodes.remove(1 - serving);
    drop(nodes);
    tokio::time::sleep(Duration::from_millis(100)).await;
    support::append(user, "INBOX", &[], b"Subject: two\r\n\r\nsecond\r\n").await;
    let started = Instant::now();
    let r = phone
        .send("Sync", &sync_xml(&key, &inbox, "<GetChanges/>"))
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    let (_, adds) = sync_answer(&r.tree());
    assert_eq!(
        adds.iter().map(subject).collect::<Vec<_>>(),
        ["two"],
        "the other node takes the same SyncKey and sends only what is new"
    );
    assert!(took < Duration::from_secs(1), "failover took {took:?}");
    assert!(answered(&survivor).await > 0);
    // The hierarchy key the phone has is valid there too.
    let fs = phone.folder_sync(&hierarchy_key).await;
    assert_eq!(find_text(&fs, fh::Status).as_deref(), Some("1"));
}

//! The Debian package, built from this build's binary and installed on this machine: its
//! contents, its systemd unit (`systemd-analyze verify`), the user and group its maintainer
//! scripts create, the packaged binary started with the packaged configuration as the
//! packaged user against the test Dovecot (HTTPS, a phone, `/metrics` read by Python's
//! `prometheus_client` parser, `systemctl reload`'s SIGHUP with a Ping held), then the purge.
//!
//! Installs with dpkg, so it runs as root (as `scripts/test.sh` and CI do). Without systemd as
//! PID 1 nothing starts the unit; the test starts the binary the way the unit would (same user,
//! same configuration, the state directory systemd would make).

mod eas;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eas::{Phone, folder_changes, sync_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_eas-gateway");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn need(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: apt-get install -y {package}"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh(script: &str) -> String {
    run(Command::new("sh").arg("-c").arg(script))
}

/// Builds the .deb from the test's own (debug) binary; a release build takes minutes.
fn build_deb(out: &Path) -> PathBuf {
    let stdout = run(Command::new(format!("{ROOT}/scripts/build-deb.sh"))
        .arg("--from")
        .arg(BIN)
        .env("DEB_OUT", out));
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("the script names the .deb")
            .trim(),
    )
}

/// Sends a signal to a process.
fn signal(pid: u32, sig: &str) {
    run(Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string()));
}

fn https_client(cert_pem: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// The metric families and their types, as Python's `prometheus_client` parser reads them.
fn parse_with_python(text: &str, dir: &Path) -> Vec<(String, String)> {
    need(
        "/usr/lib/python3/dist-packages/prometheus_client/parser.py",
        "python3-prometheus-client",
    );
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = run(Command::new("/usr/bin/python3").arg("-c").arg(format!(
        "from prometheus_client.parser import text_string_to_metric_families as p\n\
         for f in p(open({:?}).read()):\n    print(f.name, f.type, len(f.samples))",
        file.display().to_string()
    )));
    out.lines()
        .map(|l| {
            let mut w = l.split(' ');
            (w.next().unwrap().to_owned(), w.next().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_package_builds_installs_runs_as_its_user_reloads_and_purges() {
    need("/usr/bin/dpkg-deb", "dpkg");
    need("/usr/bin/systemd-analyze", "systemd");
    need("/usr/bin/setpriv", "util-linux");
    assert_eq!(
        sh("id -u").trim(),
        "0",
        "installs a package: run as root (scripts/test.sh in CI is)"
    );
    let work = tempfile::tempdir().unwrap();
    let deb = build_deb(work.path());

    // What the package holds.
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/eas-gateway",
        "./etc/eas-gateway/eas-gateway.toml",
        "./usr/lib/systemd/system/eas-gateway.service",
        "./usr/share/eas-gateway/dovecot/eas-push.lua",
        "./usr/share/eas-gateway/dovecot/eas-push.conf",
        "./usr/share/eas-gateway/radicale/eas-dav-hook",
        "./usr/share/doc/eas-gateway/deploy/radicale-hook.md",
        "./usr/share/eas-gateway/grafana/eas-gateway.json",
        "./usr/share/doc/eas-gateway/deploy/README.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }
    // Radicale runs the hook as a command: it must be executable.
    assert!(
        contents
            .lines()
            .any(|l| l.ends_with("/radicale/eas-dav-hook") && l.starts_with("-rwxr-xr-x")),
        "the Radicale hook is not executable:\n{contents}"
    );
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(info.contains("Package: eas-gateway"), "{info}");
    assert!(info.contains("Section: mail"), "{info}");
    let control = work.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/eas-gateway/eas-gateway.toml"
    );

    // Install: a clean start even if an earlier run stopped halfway.
    let _ = Command::new("dpkg")
        .args(["--purge", "eas-gateway"])
        .output();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let installed = Installed;
    assert!(sh("getent group eas-gateway").starts_with("eas-gateway:"));
    let passwd = sh("getent passwd eas-gateway");
    assert!(
        passwd.contains(":/var/lib/eas-gateway:/usr/sbin/nologin"),
        "{passwd}"
    );
    assert_eq!(
        sh("stat -c '%U:%G %a' /etc/eas-gateway /etc/eas-gateway/eas-gateway.toml"),
        "root:eas-gateway 750\nroot:eas-gateway 640\n"
    );
    // The unit as installed, against this machine's systemd (no PID 1 needed).
    run(Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/eas-gateway.service"]));

    // Run it as the unit would: the packaged user, configuration and state directory, and a
    // certificate readable through the group (as with ssl-cert for Let's Encrypt keys).
    sh("install -d -o eas-gateway -g eas-gateway -m 0750 /var/lib/eas-gateway");
    let tls = tempfile::tempdir().unwrap();
    let first = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (tls.path().join("cert.pem"), tls.path().join("key.pem"));
    std::fs::write(&cert, first.cert.pem()).unwrap();
    std::fs::write(&key, first.key_pair.serialize_pem()).unwrap();
    sh(&format!(
        "chmod 0755 {d} && chgrp eas-gateway {k} && chmod 0640 {k}",
        d = tls.path().display(),
        k = key.display()
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dovecot = support::dovecot();
    let log_path = work.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=eas-gateway",
            "--regid=eas-gateway",
            "--init-groups",
            "--",
            "/usr/bin/eas-gateway",
            "serve",
            "--config",
            "/etc/eas-gateway/eas-gateway.toml",
        ])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--imap-host=127.0.0.1")
        .arg(format!("--imap-port={}", dovecot.imap_port()))
        .arg("--imap-tls=none")
        .arg("--public-url=https://localhost")
        .arg(format!("--tls-cert={}", cert.display()))
        .arg(format!("--tls-key={}", key.display()))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(15) && child.try_wait().unwrap().is_none(),
            "the packaged gateway did not start:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sh(&format!("stat -c %U /proc/{pid}")).trim(),
        "eas-gateway",
        "runs as the packaged user"
    );

    // A phone over HTTPS: provisioned, folders, Inbox synced.
    let base = format!("https://localhost:{port}");
    let (login, password) = support::credentials("alice");
    let mut phone = Phone::with_client(
        https_client(&first.cert.pem(), port),
        &base,
        &login,
        &password,
        "DEBPKG1",
    );
    if let Err(e) = phone.try_provision().await {
        panic!(
            "Provision through the packaged gateway: {e}\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let (folders, _, _) = folder_changes(&phone.folder_sync("0").await);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    sync_to_end(&phone, &inbox, "0").await;
    // An unauthenticated client naming a command of its own makes no series of its own.
    let probe = https_client(&first.cert.pem(), port)
        .post(format!(
            "{base}/Microsoft-Server-ActiveSync?Cmd=MadeUpCmd42&User=x&DeviceId=y&DeviceType=z"
        ))
        .send()
        .await
        .unwrap();
    assert_ne!(probe.status(), 200, "an unknown command was accepted");

    // /metrics, read by an independent parser.
    let metrics = https_client(&first.cert.pem(), port)
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = parse_with_python(&metrics, work.path());
    for (name, kind) in [
        ("eas_requests", "counter"),
        ("eas_request_duration_seconds", "histogram"),
        ("eas_auth_attempts", "counter"),
        ("eas_push_waiting", "gauge"),
        ("eas_limit_refusals", "counter"),
    ] {
        assert!(
            families.iter().any(|(n, k)| n == name && k == kind),
            "{name} ({kind}) not parsed from:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("eas_request_duration_seconds_count{command=\"Provision\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("eas_auth_attempts_total{outcome=\"ok\"}"));
    assert!(!metrics.contains("MadeUpCmd42"), "{metrics}");
    assert!(metrics.contains("command=\"invalid\""), "{metrics}");

    // `systemctl reload` with a Ping held: a renewed certificate is served at once (the file
    // poll is 30 s in the packaged configuration), and the Ping stays held.
    let held_phone = phone.clone();
    let held_inbox = inbox.clone();
    let held = tokio::spawn(async move {
        let ping = format!(
            r#"<Ping xmlns="Ping:"><HeartbeatInterval>120</HeartbeatInterval><Folders><Folder><Id>{held_inbox}</Id><Class>Email</Class></Folder></Folders></Ping>"#
        );
        held_phone.send("Ping", &ping).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let renewed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&key, renewed.key_pair.serialize_pem()).unwrap();
    std::fs::write(&cert, renewed.cert.pem()).unwrap();
    signal(pid, "HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = https_client(&renewed.cert.pem(), port)
            .get(format!("{base}/metrics"))
            .send()
            .await;
        if r.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "certificate not reloaded on SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the gateway"
    );
    assert!(
        !held.is_finished(),
        "the held Ping was answered by the reload"
    );
    // New mail wakes it: the connection survived.
    support::deliver("alice", &support::message("after reload", "body")).await;
    let answer = tokio::time::timeout(Duration::from_secs(20), held)
        .await
        .expect("the held Ping answers the new mail")
        .unwrap();
    let tree = answer.tree();
    assert_eq!(
        eas::find_text(&tree, eas_wbxml::tags::ping::Status).as_deref(),
        Some("2"),
        "{}",
        eas_wbxml::to_xml(&tree)
    );

    // The wake-up and the IMAP round trips behind it are on /metrics too.
    let metrics = https_client(&renewed.cert.pem(), port)
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let families = parse_with_python(&metrics, work.path());
    for name in ["eas_push_wakeup_seconds", "eas_imap_round_trip_seconds"] {
        assert!(
            families.iter().any(|(n, k)| n == name && k == "histogram"),
            "{name} not parsed from:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("eas_push_wakeup_seconds_count{source=\"imap\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eas_imap_round_trip_seconds_count{command=\"LOGIN\"}"),
        "{metrics}"
    );

    signal(pid, "TERM");
    let status = wait(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let log_text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log_text.contains("reload: certificate re-read"),
        "{log_text}"
    );
    assert!(log_text.contains("TLS certificate reloaded"), "{log_text}");
    // A file is no terminal: no colour escapes.
    assert!(
        !log_text.contains('\u{1b}'),
        "ANSI escapes in a log file:\n{log_text}"
    );
    assert!(!log_text.contains(&password), "a password reached the log");

    drop(installed);
    assert!(!Path::new("/usr/bin/eas-gateway").exists());
    assert!(!Path::new("/etc/eas-gateway").exists());
    assert!(!Path::new("/var/lib/eas-gateway").exists());
}

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg")
            .args(["--purge", "eas-gateway"])
            .output()
            .unwrap();
        if !std::thread::panicking() {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn wait(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

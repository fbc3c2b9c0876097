//! The admin commands as an operator runs them, the binary against the test Dovecot and a
//! gateway's own state store: `check` writes nothing and speaks plain words, `devices`
//! lists, shows, resyncs (the phone's next request starts afresh), `serve` logs JSON when
//! asked and refuses a broken configuration in one line.

mod eas;
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use eas::{Gateway, Phone, folder_changes, sync_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_eas-gateway");

fn gateway_bin(args: &[&str], home: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn check_without_a_configuration_writes_no_state_and_prints_words() {
    let home = tempfile::tempdir().unwrap();
    let default_db = Path::new("/var/lib/eas-gateway/state.db");
    let existed = default_db.exists();
    let port = support::dovecot().imap_port().to_string();
    let out = gateway_bin(
        &[
            "check",
            "--imap-host",
            "127.0.0.1",
            "--imap-port",
            &port,
            "--imap-tls",
            "none",
        ],
        home.path(),
    );
    let said = text(&out);
    assert_eq!(default_db.exists(), existed, "check created {default_db:?}");
    assert!(
        said.contains(&format!("IMAP server 127.0.0.1:{port} (plain text)")),
        "{said}"
    );
    assert!(said.contains("ok: reachable"), "{said}");
    assert!(
        said.contains("(STARTTLS, logging in as the sending user)"),
        "{said}"
    );
    for debug in ["(None)", "StartTls", "User)", "Some("] {
        assert!(!said.contains(debug), "a Rust name {debug:?} in:\n{said}");
    }

    // A state file in a directory that exists: said to be created at the first start, and
    // not created now.
    let db = home.path().join("state.db");
    let url = format!("sqlite:{}", db.display());
    let said = text(&gateway_bin(
        &[
            "check",
            "--imap-host",
            "127.0.0.1",
            "--imap-port",
            &port,
            "--imap-tls",
            "none",
            "--state",
            &url,
        ],
        home.path(),
    ));
    assert!(!db.exists(), "check created {db:?}");
    assert!(
        said.contains("not created yet; the gateway creates it at its first start"),
        "{said}"
    );
    assert!(
        std::fs::read_dir(home.path()).unwrap().next().is_none(),
        "check wrote into HOME"
    );
}

/// `check` warns about a certificate that expires within 14 days.
#[test]
fn check_warns_about_a_certificate_about_to_expire() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::dovecot().imap_port().to_string();
    let state = format!("sqlite:{}", dir.path().join("state.db").display());
    for (days, expect) in [(5, "warning: it expires on"), (90, ": ok, valid until")] {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        params.not_after = time::OffsetDateTime::from_unix_timestamp(now + days * 86_400).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let said = text(&gateway_bin(
            &[
                "check",
                "--imap-host",
                "127.0.0.1",
                "--imap-port",
                &port,
                "--imap-tls",
                "none",
                "--state",
                &state,
                "--tls-cert",
                c.to_str().unwrap(),
                "--tls-key",
                k.to_str().unwrap(),
            ],
            dir.path(),
        ));
        let line = said
            .lines()
            .find(|l| l.starts_with("TLS certificate"))
            .unwrap_or_else(|| panic!("{said}"));
        assert!(line.contains(expect), "{days} days: {line}");
    }
}

#[test]
fn devices_list_on_an_empty_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("state.db").display());
    let out = gateway_bin(&["devices", "--state", &url, "list"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no devices yet: a phone appears here after its first request\n"
    );
    let out = gateway_bin(
        &[
            "devices",
            "--state",
            &url,
            "list",
            "--user",
            "Nobody@Example.com",
        ],
        dir.path(),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no devices for nobody@example.com\n"
    );
    let out = gateway_bin(&["devices", "--state", &url, "list", "--json"], dir.path());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}

#[tokio::test]
async fn devices_list_show_and_resync_against_a_running_gateway() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let url = g.state.config.state.url.clone();
    let (login, password) = support::credentials("carol");
    let mut phone = Phone::new(&g, &login, &password, "ADMINCLI1");
    phone.provision().await;
    let fs = phone.folder_sync("0").await;
    let key = eas::find_text(&fs, eas_wbxml::tags::folderhierarchy::SyncKey).unwrap();
    let (folders, _, _) = folder_changes(&fs);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    let sync_key = sync_to_end(&phone, &inbox, "0").await;
    let home = tempfile::tempdir().unwrap();

    let list = gateway_bin(
        &["devices", "--state", &url, "list", "--user", &login],
        home.path(),
    );
    let said = text(&list);
    assert!(list.status.success(), "{said}");
    assert!(said.starts_with("USER\tDEVICE ID\t"), "{said}");
    assert!(said.contains("\tADMINCLI1\tiPhone\t"), "{said}");
    assert!(said.contains("\tprovisioned\tnone\n"), "{said}");

    let json = gateway_bin(&["devices", "--state", &url, "list", "--json"], home.path());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let me = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "ADMINCLI1")
        .expect("the device in the JSON list");
    assert_eq!(me["user"], login.to_lowercase());
    assert_eq!(me["provisioned"], true);
    assert_eq!(me["wipe"], "none");
    let spoken = me["protocol_version"]
        .as_str()
        .expect("the EAS version the phone speaks");
    assert!(
        ["12.1", "14.0", "14.1", "16.0", "16.1"].contains(&spoken),
        "{spoken}"
    );
    assert!(said.contains(&format!("\t{spoken}\t")), "{said}");

    let show = gateway_bin(
        &[
            "devices",
            "--state",
            &url,
            "show",
            &login,
            "ADMINCLI1",
            "--json",
        ],
        home.path(),
    );
    let v: serde_json::Value =
        serde_json::from_slice(&show.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&show)));
    let folder = v["folders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["server_id"].as_u64().map(|n| n.to_string()) == Some(inbox.clone()))
        .expect("the Inbox in show");
    let keys: Vec<String> = folder["sync_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert!(keys.contains(&sync_key), "{keys:?} lacks {sync_key}");
    // The Inbox got its key during this test: its time is within the last minutes.
    let at = folder["last_new_key"]
        .as_u64()
        .expect("when the Inbox last got a key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now - at < 600, "last new key {at}, now {now}");
    let plain = text(&gateway_bin(
        &["devices", "--state", &url, "show", &login, "ADMINCLI1"],
        home.path(),
    ));
    assert!(plain.contains("policy         provisioned"), "{plain}");
    assert!(
        plain.contains(&format!("EAS version    {spoken}")),
        "{plain}"
    );

    // Resync one folder: the phone's key for it is gone, so its next Sync is told to start
    // over (status 3), while the folder list stays.
    let out = gateway_bin(
        &[
            "devices",
            "--state",
            &url,
            "resync",
            &login,
            "ADMINCLI1",
            "--folder",
            &inbox,
        ],
        home.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let r = phone
        .send(
            "Sync",
            &format!(
                r#"<Sync xmlns="AirSync:"><Collections><Collection><SyncKey>{sync_key}</SyncKey><CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>"#
            ),
        )
        .await
        .tree();
    assert_eq!(
        eas::find_text(&r, eas_wbxml::tags::airsync::Status).as_deref(),
        Some("3"),
        "{}",
        eas_wbxml::to_xml(&r)
    );
    let folder_sync = |key: String| {
        let phone = phone.clone();
        async move {
            let r = phone
                .send(
                    "FolderSync",
                    &format!(r#"<FolderSync xmlns="FolderHierarchy:"><SyncKey>{key}</SyncKey></FolderSync>"#),
                )
                .await
                .tree();
            eas::find_text(&r, eas_wbxml::tags::folderhierarchy::Status).unwrap_or_default()
        }
    };
    assert_eq!(folder_sync(key.clone()).await, "1", "the folder list stays");

    // Resync everything: the folder list too (FolderSync status 9 with the old key).
    let out = gateway_bin(
        &["devices", "--state", &url, "resync", &login, "ADMINCLI1"],
        home.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(folder_sync(key.clone()).await, "9");

    let missing = gateway_bin(
        &["devices", "--state", &url, "show", &login, "NOSUCH"],
        home.path(),
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("no device NOSUCH for"),
        "{}",
        text(&missing)
    );
}

/// `top` against a running gateway: a screen with the held Pings and the commands phones
/// sent, with their rates and latencies.
#[tokio::test]
async fn top_shows_a_running_gateway() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let (login, password) = support::credentials("carol");
    let mut phone = Phone::new(&g, &login, &password, "TOPVIEW1");
    phone.provision().await;
    phone.folder_sync("0").await;
    let home = tempfile::tempdir().unwrap();
    let url = format!("{}/metrics", g.base);
    // The binary runs while this runtime keeps serving.
    let out = tokio::task::spawn_blocking(move || {
        gateway_bin(
            &["top", "--url", &url, "--frames", "2", "--interval", "1"],
            home.path(),
        )
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phone.folder_sync("0").await;
    let out = out.await.unwrap();
    let screen = text(&out);
    assert!(out.status.success(), "{screen}");
    assert_eq!(screen.matches("eas-gateway top - ").count(), 2, "{screen}");
    assert!(
        !screen.contains('\u{1b}'),
        "no screen control codes when not a terminal"
    );
    assert!(screen.contains("held Pings/Syncs"), "{screen}");
    assert!(screen.contains("\nCOMMAND "), "{screen}");
    let row = screen
        .lines()
        .rev()
        .find(|l| l.starts_with("FolderSync "))
        .unwrap_or_else(|| panic!("no FolderSync row: {screen}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.len(), 5, "{row}");
    assert!(cols[4].parse::<f64>().unwrap() >= 2.0, "{row}");
    assert!(cols[2].ends_with("ms") || cols[2].ends_with('s'), "{row}");

    // The shipped Grafana dashboard asks only for series this gateway exposes.
    let metrics = g.metrics().await;
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/grafana/eas-gateway.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("eas_") {
                    asked += 1;
                    // A histogram nothing was observed in yet has only its TYPE line.
                    let family = word.trim_end_matches("_bucket");
                    assert!(
                        metrics
                            .lines()
                            .any(|l| l.starts_with(word) && l[word.len()..].starts_with(['{', ' ']))
                            || metrics.contains(&format!("# TYPE {family} ")),
                        "the dashboard asks for {word}, which /metrics does not have"
                    );
                }
            }
        }
    }
    assert!(asked >= 10, "{asked}");

    let down = gateway_bin(
        &[
            "top",
            "--url",
            "http://127.0.0.1:1/metrics",
            "--frames",
            "1",
        ],
        Path::new("/"),
    );
    assert!(!down.status.success());
    assert!(
        text(&down).contains("is the gateway running?"),
        "{}",
        text(&down)
    );
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The smallest `serve` configuration: listening on `port`, the test Dovecot, state in `dir`.
fn serve_config(dir: &std::path::Path, port: u16) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[imap]\nhost = \"127.0.0.1\"\nport = {}\n\
         security = \"none\"\n[state]\nurl = \"sqlite:{}\"\n",
        support::dovecot().imap_port(),
        dir.join("state.db").display()
    )
}

/// Waits until a started `serve` accepts connections on `port` (at most 10 s).
async fn listening(port: u16) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Started from a shell whose soft open-file limit is low (1,024 allows 512 phones), the
/// gateway raises it to the hard limit, as systemd's `LimitNOFILE=` would set both.
#[tokio::test]
async fn serve_raises_its_soft_open_file_limit_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, serve_config(dir.path(), port)).unwrap();
    let limits = |pid: u32| -> (String, String) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_owned();
        let mut v = line["Max open files".len()..].split_whitespace();
        (v.next().unwrap().into(), v.next().unwrap().into())
    };
    let (_, hard) = limits(std::process::id());
    assert_ne!(hard, "1024", "this test needs a hard limit above 1,024");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 1024 && exec {BIN} serve --config {}",
            config.display()
        ))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    listening(port).await;
    let (soft, child_hard) = limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(child_hard, hard);
    assert_eq!(soft, hard, "the soft limit raised to the hard one");
}

/// `systemctl reload` (SIGHUP) with a broken file keeps the running configuration and says
/// why; with a valid, changed file it names what waits for a restart.
#[tokio::test]
async fn reload_with_a_broken_configuration_keeps_the_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("gateway.toml");
    let good = serve_config(dir.path(), port);
    std::fs::write(&config, &good).unwrap();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    listening(port).await;
    let hup = |pid: u32| {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGHUP);
        }
    };
    let log_has = |needle: &'static str| {
        let log_path = log_path.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if text.contains(needle) {
                    return text;
                }
                assert!(Instant::now() < deadline, "{needle:?} not logged:\n{text}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    std::fs::write(&config, format!("{good}[imap]\nport = \"many\"\n")).unwrap();
    hup(child.id());
    let text = log_has("keeping the running one").await;
    assert!(text.contains("gateway.toml"), "{text}");
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200, "still serving after a broken reload");

    std::fs::write(
        &config,
        good.replace("[imap]", "[auth]\ncache_ttl_secs = 60\n[imap]"),
    )
    .unwrap();
    hup(child.id());
    let text = log_has("take effect at the next restart").await;
    assert!(text.contains("sections=auth"), "{text}");
    assert!(child.try_wait().unwrap().is_none());
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    child.wait().unwrap();
}

/// `--log-format json`: one JSON object per line, the request's fields in `span`, no colour.
#[tokio::test]
async fn serve_logs_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--imap-host",
            "127.0.0.1",
            "--imap-tls",
            "none",
            "--log-format",
            "json",
        ])
        .arg(format!("--imap-port={}", support::dovecot().imap_port()))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!(
            "--state=sqlite:{}",
            dir.path().join("state.db").display()
        ))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    listening(port).await;
    let (login, password) = support::credentials("carol");
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
        )
        .basic_auth(&login, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!text.contains(&password));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "serving"),
        "{text}"
    );
    let answered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "answered")
        .unwrap_or_else(|| panic!("no request logged: {text}"));
    assert_eq!(answered["span"]["cmd"], "OPTIONS", "{answered}");
    assert_eq!(answered["span"]["status"], 200, "{answered}");
}

/// A configuration with an unknown key, a wrong type or an unreadable certificate stops the
/// start with one line naming the file and what is wrong.
#[test]
fn a_broken_configuration_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            "line 3, server.lisen: unknown field",
        ),
        (
            "[imap]\nport = \"many\"\n",
            "line 2, imap.port: invalid type",
        ),
        (
            "[server]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
            "/nonexistent/cert.pem",
        ),
    ];
    for (i, (toml, names)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let state = format!("--state=sqlite:{}", dir.path().join("s.db").display());
        let out = gateway_bin(
            &[
                "serve",
                "--config",
                path.to_str().unwrap(),
                &state,
                "--listen",
                "127.0.0.1:0",
            ],
            dir.path(),
        );
        assert!(!out.status.success(), "{toml:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{toml:?}: {err}");
        assert!(lines[0].starts_with("eas-gateway: "), "{err}");
        assert!(lines[0].contains(names), "{toml:?}: {err}");
        if !names.starts_with('/') {
            assert!(lines[0].contains(&path.display().to_string()), "{err}");
        }
    }
}

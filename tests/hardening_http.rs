//! The HTTP edge under abuse, against the real gateway and Dovecot: a brute-force storm
//! against one user (a handful of IMAP LOGINs, the real user unaffected), a password changed
//! while cached, the exact log-in name, the connection timeouts and cap, held requests and
//! new devices per user, a trickling body, and log lines a client cannot forge.

mod eas;
mod support;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use eas::{Gateway, Phone, find_text, folder_changes};
use eas_gateway::http::auth::parse_basic;
use eas_testbed::TestUser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A counter or gauge from the `/metrics` text (0 when absent).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// A provisioned phone that has listed its folders; returns it with its Inbox id.
async fn phone_with_inbox(g: &Gateway, user: &str, device: &str) -> (Phone, String) {
    let (login, password) = support::credentials(user);
    let mut ph = Phone::new(g, &login, &password, device);
    ph.provision().await;
    let (folders, _, _) = folder_changes(&ph.folder_sync("0").await);
    let inbox = folders.iter().find(|f| f.kind == 2).unwrap().id.clone();
    (ph, inbox)
}

fn ping_xml(heartbeat: u64, folder: &str) -> String {
    format!(
        r#"<Ping xmlns="Ping:"><HeartbeatInterval>{heartbeat}</HeartbeatInterval><Folders><Folder><Id>{folder}</Id><Class>Email</Class></Folder></Folders></Ping>"#
    )
}

/// A client whose connections come from another loopback address: another client network
/// for the gateway.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// Dovecot's log lines about failed log-ins of `login`: the IMAP server's own count.
fn dovecot_auth_failures(login: &str) -> usize {
    let log = std::fs::read_to_string(support::dovecot().log_path()).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(login) && l.contains("auth failed"))
        .count()
}

/// A thousand wrong passwords at once against one user reach Dovecot a handful of times;
/// meanwhile the real user, from the same address, is answered from the cache at once.
#[tokio::test]
async fn a_brute_force_storm_costs_a_handful_of_logins_and_not_the_real_user() {
    const STORM: usize = 1000;
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let (login, password) = support::credentials("frank");
    let real = Phone::new(&g, &login, &password, "REAL");
    assert_eq!(real.options().await.status, 200, "the real user logs in");
    let before = g.metrics().await;
    let dovecot_before = dovecot_auth_failures(&login);

    let attacker = Phone::new(&g, &login, "", "ATTACK");
    let storm: Vec<_> = (0..STORM)
        .map(|i| {
            let mut a = attacker.clone();
            a.password = format!("guess-{i}");
            tokio::spawn(async move { a.options().await.status })
        })
        .collect();
    // Meanwhile the user's cached password runs out and the user logs in from elsewhere.
    let creds = parse_basic(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"))
    ))
    .unwrap();
    let from_elsewhere = {
        let mut elsewhere = real.clone();
        elsewhere.client = client_from([127, 0, 0, 3]);
        let state = g.state.clone();
        let creds = creds.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            state.auth.forget(&creds.login, creds.password.expose());
            let t = Instant::now();
            (elsewhere.options().await.status, t.elapsed())
        })
    };
    // The real user keeps working while the storm runs.
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while !storm.iter().all(|t| t.is_finished()) {
        let t = Instant::now();
        assert_eq!(
            real.options().await.status,
            200,
            "the real user was refused"
        );
        slowest = slowest.max(t.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in storm {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    let (elsewhere_status, elsewhere_took) = from_elsewhere.await.unwrap();
    let after = g.metrics().await;
    // One of them the user's own from elsewhere.
    let logins = metric(&after, "eas_auth_imap_logins_total")
        - metric(&before, "eas_auth_imap_logins_total")
        - 1;
    let dovecot = dovecot_auth_failures(&login) - dovecot_before;
    eprintln!(
        "{STORM} wrong passwords: answers {statuses:?}; IMAP LOGINs {logins} (Dovecot logged \
         {dovecot} failures); the real user answered {answered} times, slowest {slowest:?}; \
         uncached from elsewhere: {elsewhere_status} in {elsewhere_took:?}"
    );
    assert_eq!(elsewhere_status, 200);
    assert!(
        elsewhere_took < Duration::from_secs(3),
        "{elsewhere_took:?}"
    );
    assert!(
        statuses.keys().all(|s| [401, 503].contains(s)),
        "{statuses:?}"
    );
    // Five distinct wrong passwords lock the user out; one LOGIN at a time per network.
    assert!(logins <= 6, "{logins} IMAP LOGINs");
    assert!(dovecot <= 6, "Dovecot saw {dovecot} failed log-ins");
    assert!(answered >= 1);
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(metric(&after, "eas_auth_throttled_total{reason=\"user\"}") >= 900);
    assert_eq!(metric(&after, "eas_auth_lockouts_total{key=\"user\"}"), 1);

    // Once its cached password is gone, the real user is refused from the attacker's
    // address (503 + Retry-After, so the phone retries later rather than asking for the
    // password) but gets in from anywhere else.
    assert!(g.state.auth.forget(&creds.login, creds.password.expose()));
    let r = real.options().await;
    assert_eq!(r.status, 503);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((800..=900).contains(&retry), "Retry-After {retry}");
    let mut elsewhere = real.clone();
    elsewhere.client = client_from([127, 0, 0, 2]);
    assert_eq!(elsewhere.options().await.status, 200);
    // ...and the password is cached again for everyone.
    assert_eq!(real.options().await.status, 200);
}

/// Devices of one user logging in at once with the right password cost one LOGIN: the
/// others wait for it and find the password cached.
#[tokio::test]
async fn simultaneous_log_ins_of_one_user_cost_one_imap_login() {
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let (login, password) = support::credentials("mallory");
    let before = g.metrics().await;
    let devices: Vec<_> = (0..20)
        .map(|i| {
            let ph = Phone::new(&g, &login, &password, &format!("SAME-{i}"));
            tokio::spawn(async move { ph.options().await.status })
        })
        .collect();
    for d in devices {
        assert_eq!(d.await.unwrap(), 200);
    }
    let after = g.metrics().await;
    assert_eq!(
        metric(&after, "eas_auth_imap_logins_total")
            - metric(&before, "eas_auth_imap_logins_total"),
        1
    );
}

/// The password changes while the gateway still has the old one cached: the command's own
/// IMAP LOGIN is refused, the phone gets 401 (not 500), and the cached password is dropped,
/// so the next request asks IMAP again. Sessions are also kept per exact log-in name.
#[tokio::test]
async fn a_password_changed_while_cached_gets_401_and_is_forgotten() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.provision.required = false;
    })
    .await;
    let (login, old) = support::credentials("hardening-pw");
    let ph = Phone::new(&g, &login, &old, "PWCHANGE");
    // Log-in checked and cached; no IMAP session opened yet.
    assert_eq!(ph.options().await.status, 200);
    let new = "hardening-pw-New-2";
    support::dovecot()
        .add_user(&TestUser::new(login.clone(), new))
        .unwrap();
    let before = g.metrics().await;
    assert_eq!(ph.folder_sync_raw_status().await, 401);
    let after = g.metrics().await;
    assert_eq!(
        metric(&after, "eas_auth_imap_logins_total"),
        metric(&before, "eas_auth_imap_logins_total"),
        "the first 401 came from inside the command"
    );
    // The old password is no longer taken from the cache: IMAP is asked, and refuses.
    assert_eq!(ph.options().await.status, 401);
    let later = g.metrics().await;
    assert_eq!(
        metric(&later, "eas_auth_failures_total{source=\"imap\"}"),
        metric(&after, "eas_auth_failures_total{source=\"imap\"}") + 1
    );
    let mut ph = ph;
    ph.password = new.into();
    let tree = ph.folder_sync("0").await;
    assert_eq!(
        find_text(&tree, eas_wbxml::tags::folderhierarchy::Status).as_deref(),
        Some("1")
    );
}

/// `Dave` is not `dave` to the cache or the session pool: IMAP decides for each spelling.
#[tokio::test]
async fn the_exact_login_is_checked_not_its_lower_case() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.provision.required = false;
    })
    .await;
    let (login, password) = support::credentials("dave");
    let ph = Phone::new(&g, &login, &password, "CASE1");
    ph.folder_sync("0").await;
    let shouted = login.replacen('d', "D", 1);
    let dovecot_says =
        eas_gateway::imap::check_login(&support::dovecot().imap_config(), &shouted, &password)
            .await;
    let before = g.metrics().await;
    let other = Phone::new(&g, &shouted, &password, "CASE2");
    let status = other.folder_sync_raw_status().await;
    let after = g.metrics().await;
    assert_eq!(
        metric(&after, "eas_auth_imap_logins_total"),
        metric(&before, "eas_auth_imap_logins_total") + 1,
        "the other spelling was checked with IMAP, not taken from dave's cache entry"
    );
    eprintln!("Dovecot on {shouted:?}: {dovecot_says:?}; the gateway answered {status}");
    assert_eq!(status, if dovecot_says.is_ok() { 200 } else { 401 });
}

/// Read until the peer closes (or 15 s); returns what was read and how long after `t` it
/// closed.
async fn until_closed(stream: &mut TcpStream, t: Instant) -> (Vec<u8>, Duration) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (data, t.elapsed()),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after 15 s"),
        }
    }
}

#[tokio::test]
async fn slow_heads_and_idle_connections_are_closed_held_pings_are_not() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.limits.header_timeout_secs = 1;
        c.limits.idle_timeout_secs = 3;
        c.push.min_heartbeat_secs = 2;
    })
    .await;
    let t = Instant::now();
    // Half a request head.
    let mut half = TcpStream::connect(g.addr).await.unwrap();
    half.write_all(b"OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all.
    let mut silent = TcpStream::connect(g.addr).await.unwrap();
    // A request answered, then nothing: idle.
    let mut idle = TcpStream::connect(g.addr).await.unwrap();
    idle.write_all(b"OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A Ping held longer than both timeouts.
    let (ph, inbox) = phone_with_inbox(&g, "grace", "HELDPING").await;
    let ping_req = ping_xml(5, &inbox);
    let held = ph.send("Ping", &ping_req);
    let started = Instant::now();
    let (ping, (_, half_after), (_, silent_after), (answer, idle_after)) = tokio::join!(
        held,
        until_closed(&mut half, t),
        until_closed(&mut silent, t),
        until_closed(&mut idle, t)
    );
    let ping_took = started.elapsed();
    eprintln!(
        "closed after: half head {half_after:?}, silent {silent_after:?}, idle {idle_after:?}; Ping answered after {ping_took:?}"
    );
    assert!(half_after < Duration::from_secs(4), "{half_after:?}");
    assert!(silent_after < Duration::from_secs(4), "{silent_after:?}");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Idle is not the header timeout: kept past 1 s, closed by about 3 s.
    assert!(
        idle_after >= Duration::from_millis(2500) && idle_after < Duration::from_secs(8),
        "{idle_after:?}"
    );
    assert_eq!(
        find_text(&ping.tree(), eas_wbxml::tags::ping::Status).as_deref(),
        Some("1"),
        "the held Ping ran its heartbeat"
    );
    assert!(ping_took >= Duration::from_secs(5), "{ping_took:?}");
    let m = g.metrics().await;
    assert!(
        metric(&m, "eas_timeouts_total{awaiting=\"header\"}") >= 2,
        "{m}"
    );
    assert!(
        metric(&m, "eas_timeouts_total{awaiting=\"idle\"}") >= 1,
        "{m}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_answered_503() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.limits.max_connections = 3;
    })
    .await;
    let mut hogs = Vec::new();
    for _ in 0..3 {
        hogs.push(TcpStream::connect(g.addr).await.unwrap());
    }
    let url = format!("{}/Microsoft-Server-ActiveSync", g.base);
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let r = fresh()
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap();
        if r.status() == 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "60");
    // A connection closes: the next one is served.
    hogs.pop();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = fresh()
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .unwrap()
            .status();
        if s != 503 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 401, "served once a slot was free");
    drop(hogs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = g.metrics().await;
    assert!(
        metric(&m, "eas_limit_refusals_total{limit=\"connections\"}") >= 1,
        "{m}"
    );
}

/// Over TLS the refusal comes after the handshake, so the phone reads a 503 too.
#[tokio::test]
async fn connections_over_the_cap_are_answered_503_over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.server.tls_cert = Some(cert_path.clone());
        c.server.tls_key = Some(key_path.clone());
        c.limits.max_connections = 1;
    })
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!(
        "https://localhost:{}/Microsoft-Server-ActiveSync",
        g.addr.port()
    );
    let options = || client.request(reqwest::Method::OPTIONS, &url).send();
    assert_eq!(options().await.unwrap().status(), 401, "served over TLS");
    let _hog = TcpStream::connect(g.addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let s = options().await.unwrap().status();
        if s == 503 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503);
}

#[tokio::test]
async fn held_requests_are_capped_per_user_and_per_address() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.limits.held_requests_per_user = 2;
        c.limits.held_requests_per_address = 3;
        c.push.min_heartbeat_secs = 2;
    })
    .await;
    let (a1, inbox_a1) = phone_with_inbox(&g, "heidi", "HELD-A1").await;
    let (a2, inbox_a2) = phone_with_inbox(&g, "heidi", "HELD-A2").await;
    let (a3, inbox_a3) = phone_with_inbox(&g, "heidi", "HELD-A3").await;
    let (b1, inbox_b1) = phone_with_inbox(&g, "ivan", "HELD-B1").await;
    let (b2, inbox_b2) = phone_with_inbox(&g, "ivan", "HELD-B2").await;
    let hold = |ph: Phone, inbox: String| {
        tokio::spawn(async move { ph.send("Ping", &ping_xml(4, &inbox)).await.status })
    };
    let held = [hold(a1, inbox_a1), hold(a2, inbox_a2), hold(b1, inbox_b1)];
    let deadline = Instant::now() + Duration::from_secs(3);
    while g.state.hub.counts().0 < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(g.state.hub.counts().0, 3, "three Pings held");
    let third_of_user = a3.send("Ping", &ping_xml(4, &inbox_a3)).await;
    assert_eq!(third_of_user.status, 503);
    assert_eq!(third_of_user.headers["retry-after"], "60");
    let fourth_of_address = b2.send("Ping", &ping_xml(4, &inbox_b2)).await;
    assert_eq!(fourth_of_address.status, 503);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    // The held ones ended: room again.
    assert_eq!(a3.send("Ping", &ping_xml(2, &inbox_a3)).await.status, 200);
    let m = g.metrics().await;
    assert_eq!(
        metric(
            &m,
            "eas_limit_refusals_total{limit=\"held_requests_per_user\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &m,
            "eas_limit_refusals_total{limit=\"held_requests_per_address\"}"
        ),
        1
    );
}

#[tokio::test]
async fn new_device_ids_are_capped_per_user() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.limits.devices_per_user = 2;
    })
    .await;
    let (login, password) = support::credentials("judy");
    let mut first = Phone::new(&g, &login, &password, "DEV-1");
    first.provision().await;
    Phone::new(&g, &login, &password, "DEV-2").provision().await;
    // A third DeviceId: 14.x is told why in the body, 12.x gets 403.
    let third = Phone::new(&g, &login, &password, "DEV-3");
    let r = third
        .send(
            "Provision",
            r#"<Provision xmlns="Provision:"><Policies><Policy><PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>"#,
        )
        .await;
    assert_eq!(
        find_text(&r.tree(), eas_wbxml::tags::provision::Status).as_deref(),
        Some("177"),
        "MaximumDevicesReached"
    );
    let mut old = Phone::new(&g, &login, &password, "DEV-4");
    old.version = "12.1";
    assert_eq!(old.folder_sync_raw_status().await, 403);
    // Known devices go on; other users are not affected.
    first.folder_sync("0").await;
    let (other, other_pw) = support::credentials("kim");
    Phone::new(&g, &other, &other_pw, "DEV-3").provision().await;
    let m = g.metrics().await;
    assert_eq!(
        metric(&m, "eas_limit_refusals_total{limit=\"devices_per_user\"}"),
        2
    );
}

#[tokio::test]
async fn a_trickling_body_gets_408() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.limits.body_timeout_secs = 1;
        c.provision.required = false;
    })
    .await;
    let (login, password) = support::credentials("lena");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    let mut s = TcpStream::connect(g.addr).await.unwrap();
    let head = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=FolderSync&User=lena&DeviceId=SLOWBODY&DeviceType=iPhone HTTP/1.1\r\n\
         Host: x\r\nAuthorization: Basic {auth}\r\nMS-ASProtocolVersion: 14.1\r\n\
         Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: 1000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[3, 1, 106, 0]).await.unwrap();
    let (answer, after) = until_closed(&mut s, Instant::now()).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after < Duration::from_secs(6), "{after:?}");
    let m = g.metrics().await;
    assert!(
        m.contains("eas_requests_total{command=\"FolderSync\",status=\"408\"} 1"),
        "{m}"
    );
}

/// Everything this binary logs at INFO and above.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    eas_testbed::logs::capture(eas_testbed::logs::LevelFilter::INFO)
}

/// What a client puts in the request line or the log-in name cannot start a log line of its
/// own.
#[tokio::test]
async fn clients_cannot_forge_log_lines() {
    let logs = captured_logs();
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let forged = "FORGED INFO eas: answered user=\"admin\" status=200";
    let client = reqwest::Client::new();
    let url = format!(
        "{}/Microsoft-Server-ActiveSync?Cmd=Sync%0A{}&User=x&DeviceId=LOGS&DeviceType=iPhone",
        g.base,
        forged
            .replace(' ', "%20")
            .replace('"', "%22")
            .replace('=', "%3D")
    );
    let r = client.post(&url).body(Vec::new()).send().await.unwrap();
    assert_eq!(r.status(), 501);
    // A log-in name with a line break in it.
    let r = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/Microsoft-Server-ActiveSync", g.base),
        )
        .basic_auth(format!("x\n{forged}"), Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("Sync\\nFORGED"),
        "the attempt was logged: {text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "a forged line: {text}"
    );
}

//! How credentials travel and where they must never end up: IMAP LOGIN over STARTTLS and
//! implicit TLS, the per-user and per-address slow-down after failures, and a check that no
//! password reaches a log line or the state database, with every log level switched on.

mod eas;
mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use eas::{Gateway, Phone};
use eas_gateway::imap::ImapConfig;
use eas_testbed::{Dovecot, TestUser};

/// Everything any span or event of this process writes, at TRACE level.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    eas_testbed::logs::capture(eas_testbed::logs::LevelFilter::TRACE)
}

/// One Dovecot with TLS for this binary (the shared one in `support` is plaintext).
fn tls_dovecot() -> &'static Dovecot {
    static D: OnceLock<&'static Dovecot> = OnceLock::new();
    D.get_or_init(|| {
        let users = [TestUser::new("tina@example.com", "tina-secret-7q")];
        Dovecot::start_with_tls(&users)
            .unwrap_or_else(|e| panic!("{e}"))
            .leak_until_exit()
    })
}

async fn tls_gateway(imap: ImapConfig, security: &'static str) -> Gateway {
    Gateway::start(imap, move |c| {
        c.imap.security = security.into();
        c.imap.tls_insecure = true;
    })
    .await
}

#[tokio::test]
async fn login_over_starttls_and_implicit_tls() {
    let d = tokio::task::spawn_blocking(tls_dovecot).await.unwrap();
    let plain = d.imap_config();
    let implicit = ImapConfig {
        port: d.imaps_port().unwrap(),
        ..plain.clone()
    };
    for (imap, security) in [(plain, "starttls"), (implicit, "tls")] {
        let g = tls_gateway(imap, security).await;
        let mut phone = Phone::new(&g, "tina@example.com", "tina-secret-7q", "TLSPHONE");
        assert_eq!(phone.options().await.status, 200, "{security}");
        phone.password = "wrong".into();
        assert_eq!(phone.options().await.status, 401, "{security}");
    }
}

#[tokio::test]
async fn repeated_failures_are_slowed_down_per_user() {
    let g = Gateway::start(support::dovecot().imap_config(), |c| {
        c.auth.failures_before_delay = 2;
    })
    .await;
    let (login, password) = support::credentials("victor");
    let mut phone = Phone::new(&g, &login, "guess", "SLOWDOWN");
    let mut last = Duration::ZERO;
    for _ in 0..4 {
        let t = Instant::now();
        assert_eq!(phone.options().await.status, 401);
        last = t.elapsed();
    }
    assert!(
        last >= Duration::from_millis(500),
        "the fourth failure in a row should be delayed, took {last:?}"
    );
    // The right password still works, and quickly once verified.
    phone.password = password;
    assert_eq!(phone.options().await.status, 200);
}

#[tokio::test]
async fn passwords_reach_neither_logs_nor_disk() {
    let logs = captured_logs();
    let (login, password) = support::credentials("walter");
    let g = Gateway::start(support::dovecot().imap_config(), |_| {}).await;
    let mut phone = Phone::new(&g, &login, &password, "NOSECRETS");
    phone.provision().await;
    phone.folder_sync("0").await;
    let wrong = "Wr0ng-but-also-secret";
    let mut bad = Phone::new(&g, &login, wrong, "NOSECRETS2");
    assert_eq!(bad.options().await.status, 401);
    bad.password = wrong.into();
    assert_eq!(bad.folder_sync_raw_status().await, 401);

    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("answered"), "logging was captured: {text}");
    for secret in [password.as_str(), wrong] {
        assert!(!text.contains(secret), "a password was logged");
    }
    let db = g.state_db_bytes();
    assert!(!db.is_empty());
    for secret in [password.as_bytes(), wrong.as_bytes()] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret),
            "a password reached the state database"
        );
    }
}

#[tokio::test]
async fn check_reports_what_the_gateway_will_see() {
    let d = support::dovecot();
    let (user, password) = support::credentials("alice");
    let dir = tempfile::tempdir().unwrap();
    let mut config = eas_gateway::config::Config::default();
    let imap = d.imap_config();
    config.imap.host = imap.host.clone();
    config.imap.port = imap.port;
    config.imap.security = "none".into();
    config.state.url = format!("sqlite:{}", dir.path().join("s.db").display());
    let login = eas_gateway::cli::check::Login { user, password };
    let mut out = Vec::new();
    let ok = eas_gateway::cli::check::run(&config, Some(&login), &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(ok, "{text}");
    for cap in [
        "NOTIFY",
        "CONDSTORE",
        "QRESYNC",
        "SPECIAL-USE",
        "MOVE",
        "UIDPLUS",
    ] {
        assert!(text.contains(&format!("ok: {cap}\n")), "{cap}: {text}");
    }
    assert!(!text.contains(&login.password));

    let wrong = eas_gateway::cli::check::Login {
        user: login.user.clone(),
        password: "wrong".into(),
    };
    let mut out = Vec::new();
    assert!(
        !eas_gateway::cli::check::run(&config, Some(&wrong), &mut out)
            .await
            .unwrap()
    );
    assert!(String::from_utf8(out).unwrap().contains("problem: LOGIN"));

    config.imap.port = 1;
    let mut out = Vec::new();
    assert!(
        !eas_gateway::cli::check::run(&config, None, &mut out)
            .await
            .unwrap()
    );
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("problem: cannot talk to the IMAP server"),
        "{text}"
    );
}

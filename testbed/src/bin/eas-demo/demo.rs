//! The demo (`scripts/demo.sh`): a private Dovecot with a demo user and a few messages, and the gateway
//! in front of it on HTTPS with a self-signed certificate and the embedded state store. Prints
//! what to type into a phone; runs until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum_server::Handle;
use clap::Args;

use eas_gateway::config::{Config, PushSource};
use eas_gateway::http::{self, AppState};
use eas_gateway::imap::Session;
use eas_testbed::{Dovecot, Postfix, TestUser, Tuning};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the gateway listens.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Directory for Dovecot, the certificate and the state (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Host name or address phones use to reach this machine (default: its first non-loopback
    /// address).
    #[arg(long)]
    pub host: Option<String>,
    /// What wakes waiting phones: `imap` (NOTIFY/IDLE watchers), `dovecot-events` (the private
    /// Dovecot runs contrib/dovecot/eas-push.lua and sends its events) or `both`.
    #[arg(long, default_value = "imap", value_parser = ["imap", "dovecot-events", "both"])]
    pub push: String,
}

const DEMO_USER: &str = "demo@example.com";
const DEMO_PASSWORD: &str = "demo-password";

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let temp = tempfile::Builder::new().prefix("eas-demo-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let user = TestUser {
        login: DEMO_USER.into(),
        password: DEMO_PASSWORD.into(),
    };
    let dovecot_dir = dir.join("dovecot");
    std::fs::create_dir_all(&dovecot_dir)?;
    let source = match args.push.as_str() {
        "dovecot-events" => PushSource::DovecotEvents,
        "both" => PushSource::Both,
        _ => PushSource::Imap,
    };
    let events_port = if source == PushSource::Imap {
        None
    } else {
        Some(
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        )
    };
    let tuning = Tuning {
        events_port,
        ..Tuning::default()
    };
    let mut dovecot = Dovecot::start_in_tuned(&dovecot_dir, std::slice::from_ref(&user), &tuning)?;
    seed(&dovecot, &user).await?;

    let host = args
        .host
        .clone()
        .unwrap_or_else(|| guess_host().to_string());
    let (cert, key) = self_signed(&dir, &host)?;
    let mut config = Config::default();
    config.server.listen = args.listen;
    config.server.public_url = format!("https://{host}:{}", args.listen.port());
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(key);
    let imap = dovecot.imap_config();
    config.imap.host = imap.host.clone();
    config.imap.port = imap.port;
    config.imap.security = "none".into();
    config.state.url = format!("sqlite:{}", dir.join("state.db").display());
    // Sending works when a private Postfix can run next to Dovecot (Postfix installed, root);
    // it delivers only to the demo domain, over LMTP into the same Dovecot.
    let domain = DEMO_USER.rsplit('@').next().unwrap_or("example.com");
    let postfix = match Postfix::start(&dovecot, &[domain]) {
        Ok(p) => {
            config.smtp.host = "127.0.0.1".into();
            config.smtp.port = p.submission_port();
            config.smtp.security = "none".into();
            Some(p)
        }
        Err(e) => {
            println!("Sending is off in this demo: {e}");
            None
        }
    };
    config.push.source = source;
    if let (Some(port), Some(secret)) = (events_port, dovecot.events_secret_path()) {
        config.push.events_listen = SocketAddr::from(([127, 0, 0, 1], port));
        config.push.events_secret_file = secret;
    }
    config.validate()?;

    println!();
    println!("eas-gateway demo is running. On a phone, add an Exchange account:");
    println!("  email:     {DEMO_USER}");
    println!("  password:  {DEMO_PASSWORD}");
    println!("  server:    {host}:{}", args.listen.port());
    println!("  domain:    (leave empty)   SSL: on   accept the self-signed certificate");
    println!("  URL:       {}", config.activesync_url());
    println!(
        "Dovecot (IMAP, plain) for other clients: 127.0.0.1:{}",
        imap.port
    );
    if let Some(p) = &postfix {
        println!(
            "Postfix (submission, AUTH as the demo user) on 127.0.0.1:{}; mail to @{domain} \
             arrives in this Dovecot",
            p.submission_port()
        );
    }
    match events_port {
        Some(port) => println!(
            "Push: Dovecot's own events (contrib/dovecot/eas-push.lua) to 127.0.0.1:{port}; \
             waiting phones hold no IMAP connection"
        ),
        None => {
            println!("Push: IMAP NOTIFY/IDLE watchers (--push dovecot-events for Dovecot's events)")
        }
    }
    println!("Files: {}   Stop with Ctrl-C.", dir.display());
    println!();

    let state = Arc::new(AppState::new(config)?);
    let handle = Handle::new();
    let stopper = handle.clone();
    let hub = state.hub.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        hub.shutdown();
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let served = http::serve(state, handle).await;
    if let Some(mut p) = postfix {
        p.stop();
    }
    dovecot.stop();
    served?;
    Ok(())
}

/// A handful of messages so the phone has something to show.
async fn seed(dovecot: &Dovecot, user: &TestUser) -> anyhow::Result<()> {
    let mut session = Session::connect(&dovecot.imap_config()).await?;
    session.login(&user.login, &user.password).await?;
    // A demo restarted with `--dir` keeps its mailbox; seeding again would duplicate it.
    if session.select("INBOX").await?.exists > 0 {
        let _ = session.logout().await;
        return Ok(());
    }
    let samples = [
        (
            "Alice Example <alice@example.org>",
            "Welcome to eas-gateway",
            "This message lives in a private Dovecot.\r\nChanges you make on the phone land there.",
        ),
        (
            "Bob Example <bob@example.org>",
            "Lunch on Friday?",
            "Shall we try the new place around the corner?",
        ),
        (
            "Carol Example <carol@example.org>",
            "Grüße aus Berlin",
            "Non-ASCII subjects and bodies work too: äöü ß €.",
        ),
    ];
    for (i, (from, subject, body)) in samples.iter().enumerate() {
        let message = format!(
            "From: {from}\r\nTo: {DEMO_USER}\r\nSubject: {subject}\r\nDate: Mon, 2{i} Nov 2026 09:0{i}:00 +0000\r\n\
             Message-ID: <demo-{i}@example.org>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
        );
        session.append("INBOX", &[], message.as_bytes()).await?;
    }
    let _ = session.logout().await;
    Ok(())
}

/// The first non-loopback address, found by asking the routing table (nothing is sent).
fn guess_host() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// A self-signed certificate for the host (and localhost), written as PEM files.
fn self_signed(dir: &std::path::Path, host: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let names = vec![host.to_owned(), "localhost".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names)?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
    Ok((cert_path, key_path))
}

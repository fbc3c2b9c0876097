//! What Dovecot's push events cost a delivery, and whether a stopped or stuck gateway slows
//! Dovecot down.
//!
//! ```text
//! cargo bench --bench lmtp_delivery -- --messages 300 [--prefill 5000]
//! ```
//!
//! `--prefill N` delivers N messages to each Dovecot first (not timed), so the INBOX is a
//! maildir with N messages in `new/`: reopening such a mailbox costs time growing with N, which
//! is why the script never reads a mailbox's counters for a delivery.
//!
//! Delivers `--messages` small messages over one LMTP connection (as Postfix does: MAIL, RCPT,
//! DATA per message, the connection kept) and times each from MAIL FROM to the final 250, in
//! four conditions:
//!
//! - `no script`: a private Dovecot without the push plugins (the floor);
//! - `gateway running`: Dovecot with `contrib/dovecot/eas-push.lua` and `eas-push.conf`, and a
//!   gateway in this process with `push.source = "dovecot-events"` on the events port;
//! - `gateway stopped`: the same Dovecot, nothing listening on the port;
//! - `gateway stuck`: the port bound by a socket nobody reads (its receive queue fills up and
//!   the kernel drops what follows).
//!
//! The four alternate in blocks of 25 messages (two Dovecots run side by side), so drift and
//! the machine's other load (page cache, maildir growth, other processes) are shared among
//! them.

use std::time::{Duration, Instant};

use eas_gateway::config::{Config, PushSource};
use eas_gateway::http::{AppState, serve};
use eas_testbed::{Dovecot, TestUser, Tuning};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const BLOCK: usize = 25;

struct Lmtp {
    conn: BufReader<TcpStream>,
    to: String,
    n: usize,
}

impl Lmtp {
    async fn connect(port: u16, to: &str) -> Result<Lmtp> {
        let mut l = Lmtp {
            conn: BufReader::new(TcpStream::connect(("127.0.0.1", port)).await?),
            to: to.to_owned(),
            n: 0,
        };
        l.reply("220").await?;
        l.command("LHLO bench.example.com", "250").await?;
        Ok(l)
    }

    async fn reply(&mut self, code: &str) -> Result<()> {
        loop {
            let mut line = String::new();
            self.conn.read_line(&mut line).await?;
            if !line.starts_with(code) {
                return Err(format!("LMTP: expected {code}, got {line:?}").into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    async fn command(&mut self, command: &str, code: &str) -> Result<()> {
        self.conn
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await?;
        self.reply(code).await
    }

    /// One delivery, timed from MAIL FROM to the final 250.
    async fn deliver(&mut self) -> Result<Duration> {
        self.n += 1;
        let message = format!(
            "From: Bench <bench@example.com>\r\nTo: {to}\r\nSubject: delivery {n}\r\n\
             Date: Mon, 1 Jan 2024 12:00:00 +0000\r\nMessage-ID: <lmtp-{n}-{pid}@example.com>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             A small message to time deliveries with.\r\n.\r\n",
            to = self.to,
            n = self.n,
            pid = std::process::id()
        );
        let started = Instant::now();
        self.command("MAIL FROM:<bench@example.com>", "250").await?;
        let rcpt = format!("RCPT TO:<{}>", self.to);
        self.command(&rcpt, "250").await?;
        self.command("DATA", "354").await?;
        self.conn.get_mut().write_all(message.as_bytes()).await?;
        self.reply("250").await?;
        Ok(started.elapsed())
    }
}

fn row(name: &str, v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let at = |q: f64| v[((n as f64 * q).ceil() as usize).clamp(1, n) - 1];
    println!(
        "  {name:<18} {n:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        at(0.5),
        at(0.95),
        at(0.99),
        v[n - 1]
    );
    at(0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut messages = 300usize;
    let mut prefill = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--messages" => messages = args.next().ok_or("--messages N")?.parse()?,
            "--prefill" => prefill = args.next().ok_or("--prefill N")?.parse()?,
            other => {
                return Err(
                    format!("unknown argument {other:?} (--messages N, --prefill N)").into(),
                );
            }
        }
    }
    let user = TestUser::new("lmtp@example.com", "lmtp-Secret-1");
    let users = std::slice::from_ref(&user);

    // The floor: no push plugins at all.
    let mut floor = Vec::new();
    let plain = Dovecot::start(users)?;
    let mut plain_lmtp = Lmtp::connect(plain.lmtp_port(), &user.login).await?;
    for _ in 0..=prefill {
        plain_lmtp.deliver().await?;
    }

    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dovecot = Dovecot::start_tuned(
        users,
        &Tuning {
            events_port: Some(port),
            ..Tuning::default()
        },
    )?;
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse()?;
    config.server.public_url = "https://mail.example.com".into();
    config.imap.host = "127.0.0.1".into();
    config.imap.port = dovecot.imap_port();
    config.imap.security = "none".into();
    config.state.url = format!("sqlite:{}", dir.path().join("state.db").display());
    config.push.source = PushSource::DovecotEvents;
    config.push.events_listen = format!("127.0.0.1:{port}").parse()?;
    config.push.events_secret_file = dovecot.events_secret_path().ok_or("no secret")?;
    config.validate()?;

    let mut lmtp = Lmtp::connect(dovecot.lmtp_port(), &user.login).await?;
    for _ in 0..=prefill {
        lmtp.deliver().await?;
    }
    let (mut running, mut stopped, mut stuck) = (Vec::new(), Vec::new(), Vec::new());
    let mut accepted_before = 0;
    let mut accepted = 0;
    while running.len() < messages {
        for _ in 0..BLOCK {
            floor.push(ms(plain_lmtp.deliver().await?));
        }
        // Gateway running.
        {
            let state = std::sync::Arc::new(AppState::new(config.clone())?);
            let handle = axum_server::Handle::new();
            tokio::spawn(serve(state.clone(), handle.clone()));
            handle.listening().await.ok_or("gateway did not start")?;
            for _ in 0..BLOCK {
                running.push(ms(lmtp.deliver().await?));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let text = state.hub.source_metrics();
            accepted += text
                .lines()
                .find_map(|l| l.strip_prefix("eas_push_events_total{result=\"accepted\"} "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            accepted_before += BLOCK as u64;
            handle.shutdown();
            drop(state);
        }
        // Gateway stopped: wait until the port is free again, then deliver.
        let deadline = Instant::now() + Duration::from_secs(5);
        let stuck_socket = loop {
            match std::net::UdpSocket::bind(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => return Err(format!("the gateway kept port {port}: {e}").into()),
            }
        };
        // Stuck: bound, never read.
        for _ in 0..BLOCK {
            stuck.push(ms(lmtp.deliver().await?));
        }
        drop(stuck_socket);
        for _ in 0..BLOCK {
            stopped.push(ms(lmtp.deliver().await?));
        }
    }

    println!(
        "LMTP deliveries, ms from MAIL FROM to the final 250 (one connection, {messages} per \
         condition, {prefill} messages delivered before)"
    );
    println!(
        "  {:<18} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "condition", "n", "p50", "p95", "p99", "max"
    );
    let f = row("no script", &mut floor);
    let r = row("gateway running", &mut running);
    let s = row("gateway stopped", &mut stopped);
    let k = row("gateway stuck", &mut stuck);
    println!(
        "p50 differences: script with gateway running {:+.2} ms vs no script; gateway stopped \
         {:+.2} ms and stuck {:+.2} ms vs running",
        r - f,
        s - r,
        k - r
    );
    println!(
        "datagrams accepted by the running gateway: {accepted} for {accepted_before} deliveries"
    );
    Ok(())
}

//! `eas-gateway check` with `push.source = "dovecot-events"` or `"both"`: do Dovecot's events
//! arrive, signed with our secret, naming users as the gateway does? And, when Dovecot runs on
//! this host, what its configuration lacks.
//!
//! The check listens on `push.events_listen` itself (so the gateway must be stopped, or the
//! check says how to verify through `/metrics` instead), then APPENDs a probe message to a
//! mailbox of its own (`--user`), or asks the admin to make any change, and waits for the
//! datagram.

use std::io::Write;
use std::time::Duration;

use crate::cli::check::Login;
use crate::config::{Config, PushConfig};
use crate::imap::Session;
use crate::push::dovecot_events::{Change, Listener, Rejected, read_secret, verify};

/// The mailbox the probe message goes to; deleted afterwards.
const PROBE_MAILBOX: &str = "eas-gateway-check";
/// How long to wait for the probe's event, and for the admin's change without `--user`.
const WAIT_PROBE: Duration = Duration::from_secs(3);
const WAIT_ADMIN: Duration = Duration::from_secs(30);
/// The plugins both protocols need.
const PLUGINS: [&str; 4] = [
    "mail_lua",
    "notify",
    "push_notification",
    "push_notification_lua",
];
/// Where Debian's `lua-socket` puts the module the push script needs (Dovecot links Lua 5.4).
/// The test bed (`eas-testbed`) checks the same path before it starts a Dovecot with events.
pub const LUA_SOCKET: &str = "/usr/share/lua/5.4/socket.lua";

/// What the datagrams that arrived said.
#[derive(Default)]
struct Heard {
    good: usize,
    /// A verified datagram about the probe (or, without a probe, about anything).
    matched: Option<Duration>,
    bad_signature: usize,
    malformed: usize,
    /// User names in verified datagrams that did not match the probe's user.
    other_users: Vec<String>,
}

/// Runs the events checks; returns whether the essential ones passed.
pub async fn run(
    config: &Config,
    login: Option<&Login>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let push = &config.push;
    let source = match push.source {
        crate::config::PushSource::Imap => "imap",
        crate::config::PushSource::DovecotEvents => "dovecot-events",
        crate::config::PushSource::Both => "both",
    };
    writeln!(
        out,
        "Dovecot push events (push.source = {source}, listening on {})",
        push.events_listen
    )?;
    let mut ok = true;
    let secret = match read_secret(&push.events_secret_file) {
        Ok(s) => {
            writeln!(
                out,
                "  ok: secret {} readable",
                push.events_secret_file.display()
            )?;
            Some(s)
        }
        Err(e) => {
            ok = false;
            writeln!(
                out,
                "  problem: push.events_secret_file {}: {e} (create it with `openssl rand -hex 32`; \
                 Dovecot's eas_push_secret_file must hold the same bytes)",
                push.events_secret_file.display()
            )?;
            None
        }
    };
    dovecot_side(push, out)?;

    let place = match &push.events_socket {
        Some(p) => p.display().to_string(),
        None => push.events_listen.to_string(),
    };
    let socket = match Listener::bind(push.events_listen, push.events_socket.as_deref()) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            writeln!(
                out,
                "  note: {place} is in use (a running gateway?). Stop it to let check listen, or \
                 compare eas_push_events_total on the gateway's /metrics before and after a \
                 delivery"
            )?;
            return Ok(ok);
        }
        Err(e) => {
            writeln!(out, "  problem: cannot listen on {place}: {e}")?;
            return Ok(false);
        }
    };

    // Make a change Dovecot reports.
    let mut probe: Option<Session> = None;
    let wait = match login {
        Some(l) => match append_probe(config, l).await {
            Ok(s) => {
                probe = Some(s);
                writeln!(
                    out,
                    "  APPENDed a probe message to {PROBE_MAILBOX} as {}",
                    l.user
                )?;
                WAIT_PROBE
            }
            Err(e) => {
                writeln!(out, "  problem: could not APPEND the probe message: {e}")?;
                return Ok(false);
            }
        },
        None => {
            writeln!(
                out,
                "  waiting {} s for any event: deliver or APPEND a message, or flag one, now \
                 (with --user, check APPENDs a probe message itself)",
                WAIT_ADMIN.as_secs()
            )?;
            out.flush()?;
            WAIT_ADMIN
        }
    };
    let heard = listen(&socket, secret.as_deref(), login, wait).await;
    drop(socket);
    if let Some(p) = &push.events_socket {
        let _ = std::fs::remove_file(p);
    }
    if let Some(mut s) = probe {
        // The probe mailbox goes, with its message; that is an event too, and harmless.
        let _ = s.delete(PROBE_MAILBOX).await;
        let _ = s.logout().await;
    }

    match heard.matched {
        Some(after) => writeln!(
            out,
            "  ok: Dovecot's event arrived, signed with our secret, {:.1} ms after the change",
            after.as_secs_f64() * 1e3
        )?,
        None => {
            ok = false;
            if heard.bad_signature > 0 {
                writeln!(
                    out,
                    "  problem: {} datagram(s) arrived signed with another secret: Dovecot's \
                     eas_push_secret_file and push.events_secret_file ({}) must hold the same bytes",
                    heard.bad_signature,
                    push.events_secret_file.display()
                )?;
            } else if !heard.other_users.is_empty() {
                writeln!(
                    out,
                    "  problem: events arrived for {:?}, not for the probe's user: Dovecot names \
                     users differently from the log-in the gateway uses (auth_username_format), \
                     so phones would not be woken",
                    heard.other_users
                )?;
            } else if heard.malformed > 0 {
                writeln!(
                    out,
                    "  problem: {} datagram(s) arrived that are not the shipped script's: install \
                     contrib/dovecot/eas-push.lua of this version",
                    heard.malformed
                )?;
            } else {
                writeln!(
                    out,
                    "  problem: no event arrived within {} s. On the Dovecot host, check:\n\
                     \x20   - protocol imap {{ }} and protocol lmtp {{ }}: mail_plugins = $mail_plugins \
                     mail_lua notify push_notification push_notification_lua\n\
                     \x20   - plugin {{ push_notification_driver = lua:file=/etc/dovecot/eas-push.lua \
                     }} (the script from contrib/dovecot/)\n\
                     \x20   - plugin {{ eas_push_target = <address of this host>:{} }} and \
                     eas_push_secret_file readable by the user Dovecot stores mail as\n\
                     \x20   - apt-get install lua-socket; then `doveadm reload` and look for \
                     \"lua\" or \"eas-push\" in Dovecot's log\n\
                     \x20   - a firewall between Dovecot and {} lets UDP through\n\
                     \x20 (docs/deploy/dovecot-events.md walks through it step by step)",
                    wait.as_secs(),
                    push.events_listen.port(),
                    push.events_listen
                )?;
            }
        }
    }
    if heard.good > 0 && heard.matched.is_none() && heard.other_users.is_empty() {
        writeln!(
            out,
            "  note: {} signed event(s) arrived, none about the probe",
            heard.good
        )?;
    }
    Ok(ok)
}

async fn append_probe(config: &Config, l: &Login) -> Result<Session, crate::imap::ImapError> {
    let mut s = Session::connect(&config.imap_config()).await?;
    s.login(&l.user, &l.password).await?;
    // It may be left over from an interrupted check.
    let _ = s.create(PROBE_MAILBOX).await;
    let message = format!(
        "From: eas-gateway check <postmaster@localhost>\r\nTo: {}\r\n\
         Subject: eas-gateway check probe (deleted right away)\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         This message tests that Dovecot's push events reach eas-gateway.\r\n",
        l.user
    );
    s.append(PROBE_MAILBOX, &[], message.as_bytes()).await?;
    Ok(s)
}

/// Reads datagrams until the wanted one arrives or `wait` passes.
async fn listen(
    socket: &Listener,
    secret: Option<&[u8]>,
    login: Option<&Login>,
    wait: Duration,
) -> Heard {
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut heard = Heard::default();
    let mut buf = vec![0u8; 65_536];
    while heard.matched.is_none() {
        let n = tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(_) => continue,
            },
            _ = tokio::time::sleep_until(deadline) => break,
        };
        let Some(secret) = secret else {
            heard.bad_signature += 1;
            continue;
        };
        match verify(secret, &buf[..n]) {
            Ok(d) => {
                heard.good += 1;
                let about_probe = match login {
                    None => true,
                    Some(l) => {
                        if !d.user.eq_ignore_ascii_case(&l.user) {
                            if !heard.other_users.contains(&d.user) {
                                heard.other_users.push(d.user.clone());
                            }
                            false
                        } else {
                            d.changes.iter().any(|c| match c {
                                Change::Messages { mailbox, .. }
                                | Change::Arrived { mailbox, .. } => mailbox == PROBE_MAILBOX,
                                _ => false,
                            })
                        }
                    }
                };
                if about_probe {
                    heard.matched = Some(started.elapsed());
                }
            }
            Err(Rejected::BadSignature) => heard.bad_signature += 1,
            Err(_) => heard.malformed += 1,
        }
    }
    heard
}

/// When Dovecot is configured on this host: what its configuration lacks (warnings only; the
/// probe decides).
fn dovecot_side(push: &PushConfig, out: &mut dyn Write) -> std::io::Result<()> {
    let doveconf = |args: &[&str]| -> Option<String> {
        let o = std::process::Command::new("doveconf")
            .args(args)
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(_) = doveconf(&["-h", "protocols"]) else {
        writeln!(
            out,
            "  note: no Dovecot configuration readable here (doveconf); only the probe checks \
             the Dovecot side"
        )?;
        return Ok(());
    };
    writeln!(
        out,
        "  reading this host's Dovecot configuration (doveconf); if the gateway talks to a \
         Dovecot elsewhere, its (doveconf) lines do not apply"
    )?;
    let mut fine = true;
    for protocol in ["imap", "lmtp"] {
        let plugins = doveconf(&["-h", "-f", &format!("protocol={protocol}"), "mail_plugins"])
            .unwrap_or_default();
        let missing: Vec<&str> = PLUGINS
            .iter()
            .copied()
            .filter(|p| !plugins.split_whitespace().any(|x| x == *p))
            .collect();
        if !missing.is_empty() {
            fine = false;
            writeln!(
                out,
                "  warning (doveconf): protocol {protocol} lacks mail_plugins {} \
                 (contrib/dovecot/eas-push.conf)",
                missing.join(" ")
            )?;
        }
    }
    let driver = doveconf(&["-h", "plugin/push_notification_driver"]).unwrap_or_default();
    match driver.strip_prefix("lua:file=") {
        Some(path) => {
            let path = path.split_whitespace().next().unwrap_or_default();
            if !std::path::Path::new(path).exists() {
                fine = false;
                writeln!(
                    out,
                    "  warning (doveconf): push_notification_driver names {path}, which does not exist"
                )?;
            }
        }
        None => {
            fine = false;
            writeln!(
                out,
                "  warning (doveconf): no plugin {{ push_notification_driver = \
                 lua:file=/etc/dovecot/eas-push.lua }}"
            )?;
        }
    }
    let target = doveconf(&["-h", "plugin/eas_push_target"]).unwrap_or_default();
    let ours = match &push.events_socket {
        Some(p) => format!("unix:{}", p.display()),
        None => format!(":{}", push.events_listen.port()),
    };
    if !target.split_whitespace().any(|t| t.ends_with(&ours)) {
        fine = false;
        writeln!(
            out,
            "  warning (doveconf): eas_push_target is {target:?}; none of it is {ours} of the \
             gateway's push.events_listen or push.events_socket"
        )?;
    }
    let secret_file = doveconf(&["-h", "plugin/eas_push_secret_file"]).unwrap_or_default();
    if secret_file.is_empty() {
        fine = false;
        writeln!(out, "  warning (doveconf): no eas_push_secret_file")?;
    } else if let (Ok(theirs), Ok(ours)) = (
        read_secret(std::path::Path::new(&secret_file)),
        read_secret(&push.events_secret_file),
    ) {
        if theirs != ours {
            fine = false;
            writeln!(
                out,
                "  warning (doveconf): {secret_file} (Dovecot) and {} (gateway) hold different secrets",
                push.events_secret_file.display()
            )?;
        }
    }
    if !std::path::Path::new(LUA_SOCKET).exists() {
        fine = false;
        writeln!(
            out,
            "  warning: lua-socket is not installed here (apt-get install lua-socket)"
        )?;
    }
    if fine {
        writeln!(
            out,
            "  ok: Dovecot's configuration here loads the push script (doveconf)"
        )?;
    }
    Ok(())
}

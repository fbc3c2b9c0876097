//! `eas-gateway check`: tries what the gateway will need and says in plain words what is wrong.

use std::io::Write;

use crate::config::Config;
use crate::imap::Session;

/// Capabilities the gateway uses, and what is lost without each.
const WANTED: &[(&str, &str)] = &[
    ("IDLE", "push falls back to polling STATUS"),
    (
        "NOTIFY",
        "push watches only INBOX instantly, other folders every 30 s \
         (Dovecot offers NOTIFY with mailbox_list_index = yes)",
    ),
    ("CONDSTORE", "every Sync compares all flags"),
    ("QRESYNC", "expunges are found by comparing UID lists"),
    (
        "SPECIAL-USE",
        "Sent/Drafts/Trash are guessed from folder names",
    ),
    ("MOVE", "moves are done as COPY + EXPUNGE"),
    (
        "UIDPLUS",
        "moved and appended messages need a search to find their new UID",
    ),
];

/// A mailbox to log in to, so the capabilities checked are the ones the gateway will see:
/// Dovecot announces NOTIFY, CONDSTORE, QRESYNC and the rest only after LOGIN.
pub struct Login {
    pub user: String,
    pub password: String,
}

/// Runs every check, writing one line each; returns whether all essential ones passed.
pub async fn run(
    config: &Config,
    login: Option<&Login>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut ok = true;
    let imap = config.imap_config();
    writeln!(
        out,
        "IMAP server {}:{} ({:?})",
        imap.host, imap.port, imap.security
    )?;
    match Session::connect(&imap).await {
        Ok(mut session) => {
            writeln!(out, "  ok: reachable, greeting and capabilities read")?;
            match login {
                Some(l) => match session.login(&l.user, &l.password).await {
                    Ok(()) => writeln!(out, "  ok: LOGIN as {}", l.user)?,
                    Err(e) => {
                        ok = false;
                        writeln!(out, "  problem: LOGIN as {} failed: {e}", l.user)?;
                    }
                },
                None => writeln!(
                    out,
                    "  note: not logged in, so these are the capabilities before LOGIN; pass \
                     --user and set EAS_CHECK_PASSWORD to see the ones the gateway will use"
                )?,
            }
            for (cap, loss) in WANTED {
                if session.capabilities().has(cap) {
                    writeln!(out, "  ok: {cap}")?;
                } else {
                    writeln!(out, "  warning: no {cap}: {loss}")?;
                }
            }
            let _ = session.logout().await;
        }
        Err(e) => {
            ok = false;
            writeln!(out, "  problem: cannot talk to the IMAP server: {e}")?;
            writeln!(
                out,
                "  (check imap.host, imap.port and imap.security in the configuration)"
            )?;
        }
    }

    if config.push.source != crate::config::PushSource::Imap {
        ok &= crate::cli::check_events::run(config, login, out).await?;
    }

    match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => match crate::http::serve::tls_config(cert, key) {
            Ok(_) => writeln!(out, "TLS certificate {}: ok", cert.display())?,
            Err(e) => {
                ok = false;
                writeln!(out, "TLS certificate: problem: {e}")?;
            }
        },
        _ => writeln!(
            out,
            "TLS: none configured; the gateway speaks plain HTTP and expects a reverse proxy \
             to terminate TLS"
        )?,
    }

    if let Ok(smtp) = config.smtp_config() {
        writeln!(
            out,
            "SMTP submission {}:{} ({:?}, auth {:?})",
            smtp.host, smtp.port, smtp.security, smtp.auth
        )?;
        match crate::smtp::check(&smtp).await {
            Ok(()) => writeln!(out, "  ok: reachable, EHLO answered")?,
            // Sync and push work without it, so this is a warning, not a failed check.
            Err(e) => {
                writeln!(out, "  warning: phones cannot send mail: {e}")?;
                writeln!(
                    out,
                    "  (check smtp.host, smtp.port and smtp.security in the configuration)"
                )?;
            }
        }
    }

    match crate::state::open(&config.state.url) {
        Ok(_) => writeln!(out, "state store {}: ok", config.state.url)?,
        Err(e) => {
            ok = false;
            writeln!(out, "state store: problem: {e}")?;
        }
    }
    ok &= crate::cli::check_dav::run(config, login, out).await?;
    match crate::directory::Source::parse(&config.directory.source) {
        Ok(crate::directory::Source::None) => writeln!(
            out,
            "directory: none configured; GAL search and ResolveRecipients find nobody"
        )?,
        Ok(source) => match crate::directory::Directory::new(source).entries() {
            Ok(entries) => writeln!(
                out,
                "directory {}: ok, {} entries",
                config.directory.source,
                entries.len()
            )?,
            Err(e) => {
                ok = false;
                writeln!(out, "directory: problem: {e}")?;
            }
        },
        Err(e) => {
            ok = false;
            writeln!(out, "directory: problem: {e}")?;
        }
    }
    writeln!(
        out,
        "phones will use {} (server.public_url)",
        config.activesync_url()
    )?;
    writeln!(
        out,
        "{}",
        if ok {
            "all essential checks passed"
        } else {
            "problems found"
        }
    )?;
    Ok(ok)
}

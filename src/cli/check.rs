//! `eas-gateway check`: tries what the gateway will need and says in plain words what is wrong.

use std::io::Write;

use std::path::Path;

use crate::config::Config;
use crate::imap::{Security, Session};
use crate::smtp::{SmtpAuth, SmtpSecurity};

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
        "IMAP server {}:{} ({})",
        imap.host,
        imap.port,
        imap_security(imap.security)
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
            Ok(_) => match certificate_expiry(cert) {
                Some(expires) => {
                    let left = expires - time::OffsetDateTime::now_utc();
                    let day = crate::mime::date::eas_date(expires.unix_timestamp());
                    if left < EXPIRY_WARNING {
                        writeln!(
                            out,
                            "TLS certificate {}: warning: it expires on {} ({} days left); \
                             renew it (certbot renew), the gateway picks up the new files \
                             by itself",
                            cert.display(),
                            &day[..10],
                            left.whole_days().max(0)
                        )?
                    } else {
                        writeln!(
                            out,
                            "TLS certificate {}: ok, valid until {}",
                            cert.display(),
                            &day[..10]
                        )?
                    }
                }
                None => writeln!(out, "TLS certificate {}: ok", cert.display())?,
            },
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
            "SMTP submission {}:{} ({}, {})",
            smtp.host,
            smtp.port,
            match smtp.security {
                SmtpSecurity::None => "plain text",
                SmtpSecurity::StartTls => "STARTTLS",
                SmtpSecurity::Tls => "implicit TLS",
            },
            match smtp.auth {
                SmtpAuth::User => "logging in as the sending user",
                SmtpAuth::Relay => "relaying without logging in",
            }
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

    ok &= check_state(&config.state.url, out)?;
    ok &= crate::cli::check_dav::run(config, login, out).await?;
    ok &= crate::cli::check_directory::directory(config, login, out).await?;
    crate::cli::check_directory::sieve(config, login, out).await?;
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

/// A certificate that expires sooner than this gets a warning.
const EXPIRY_WARNING: time::Duration = time::Duration::days(14);

/// When the first certificate in a PEM file stops being valid (its `notAfter`).
pub fn certificate_expiry(path: &Path) -> Option<time::OffsetDateTime> {
    let pem = std::fs::read(path).ok()?;
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next()?.ok()?;
    not_after(&der)
}

/// `notAfter` of an X.509 certificate (RFC 5280 section 4.1): Certificate ::= SEQUENCE {
/// tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity SEQUENCE { notBefore, notAfter }, … }, … }.
fn not_after(der: &[u8]) -> Option<time::OffsetDateTime> {
    use yasna::{ASN1Result, BERReader, BERReaderSeq, Tag};
    fn time(r: BERReader<'_, '_>) -> ASN1Result<time::OffsetDateTime> {
        if r.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
            Ok(*r.read_utctime()?.datetime())
        } else {
            Ok(*r.read_generalized_time()?.datetime())
        }
    }
    // The fields after the ones read, taken as raw DER and ignored.
    fn skip_rest(r: &mut BERReaderSeq<'_, '_>) -> ASN1Result<()> {
        while r.read_optional(|r| r.read_der())?.is_some() {}
        Ok(())
    }
    yasna::parse_der(der, |r| {
        r.read_sequence(|r| {
            let not_after = r.next().read_sequence(|tbs| {
                // version [0] EXPLICIT: absent in version 1 certificates.
                tbs.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_der()))?;
                for _ in 0..3 {
                    // serialNumber, signature, issuer
                    tbs.next().read_der()?;
                }
                let not_after = tbs.next().read_sequence(|v| {
                    time(v.next())?;
                    time(v.next())
                })?;
                skip_rest(tbs)?;
                Ok(not_after)
            })?;
            skip_rest(r)?;
            Ok(not_after)
        })
    })
    .ok()
}

fn imap_security(s: Security) -> &'static str {
    match s {
        Security::None => "plain text",
        Security::StartTls => "STARTTLS",
        Security::Tls => "implicit TLS",
    }
}

/// The state store, looked at without writing: `check` may run as another user than the
/// service, or before the first start, and must not leave a database behind. A SQLite file
/// that does not exist yet is fine when its directory is there for the gateway to create it.
fn check_state(url: &str, out: &mut dyn Write) -> std::io::Result<bool> {
    let Some(path) = url.strip_prefix("sqlite:") else {
        // PostgreSQL: the database exists already (the operator created it); opening it
        // applies the schema as the gateway's start would, and refuses a newer one.
        let shown = crate::state::redacted_url(url);
        return match crate::state::open(url).and_then(|store| store.devices(None)) {
            Ok(devices) => {
                writeln!(out, "state store {shown}: ok, {} devices", devices.len())?;
                Ok(true)
            }
            Err(e) => {
                writeln!(out, "state store {shown}: problem: {e}")?;
                Ok(false)
            }
        };
    };
    let path = Path::new(path);
    if path.exists() {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opened = rusqlite::Connection::open_with_flags(path, flags).and_then(|c| {
            c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            })
        });
        return match opened {
            Ok(_) => {
                writeln!(out, "state store {}: ok, readable", path.display())?;
                Ok(true)
            }
            Err(e) => {
                writeln!(out, "state store {}: problem: {e}", path.display())?;
                Ok(false)
            }
        };
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if dir.is_dir() {
        writeln!(
            out,
            "state store {}: not created yet; the gateway creates it at its first start (in \
             {}, which must be writable by the user it runs as)",
            path.display(),
            dir.display()
        )?;
        Ok(true)
    } else {
        writeln!(
            out,
            "state store {}: problem: the directory {} does not exist (the Debian package's \
             systemd unit creates /var/lib/eas-gateway; elsewhere create it, owned by the \
             gateway's user, or set state.url)",
            path.display(),
            dir.display()
        )?;
        Ok(false)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_certificate_expiry_is_read() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.clone().self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()).map(|t| t.unix_timestamp()),
            Some(1_900_000_000)
        );
        // UTCTime before 2050, GeneralizedTime after (RFC 5280 section 4.1.2.5).
        params.not_after = time::OffsetDateTime::from_unix_timestamp(2_600_000_000).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()).map(|t| t.unix_timestamp()),
            Some(2_600_000_000)
        );
        assert_eq!(not_after(b"not DER"), None);
    }
}

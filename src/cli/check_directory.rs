//! `eas-gateway check`'s part for the address book and Out of Office: asks each configured
//! directory source (connects, runs the query or search, shows how many entries and one
//! sample) and logs in to ManageSieve as `--user` to list the scripts.

use std::io::Write;

use super::check::Login;
use crate::config::Config;
use crate::directory::{Asker, Entry};

fn sample(e: &Entry) -> String {
    format!(
        "{} <{}>",
        e.display_name,
        e.primary_email().unwrap_or("no address")
    )
}

/// One line per source; false when a configured source cannot be used.
pub async fn directory(
    config: &Config,
    login: Option<&Login>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let directory = match config.directory.build() {
        Ok(d) => d,
        Err(e) => {
            writeln!(out, "directory: problem: {e}")?;
            return Ok(false);
        }
    };
    if !directory.is_configured() {
        writeln!(
            out,
            "directory: none configured; GAL search and ResolveRecipients find nobody"
        )?;
        return Ok(true);
    }
    let asker = login.map(|l| Asker {
        login: &l.user,
        password: &l.password,
    });
    let mut ok = true;
    for source in directory.sources() {
        let name = source.name();
        match source.probe(asker).await {
            Ok((0, _)) => writeln!(out, "directory {name}: ok, but no entries")?,
            Ok((n, first)) => writeln!(
                out,
                "directory {name}: ok, {n} entries, e.g. {}",
                first.as_ref().map(sample).unwrap_or_default()
            )?,
            Err(e) => {
                ok = false;
                writeln!(out, "directory {name}: problem: {e}")?;
            }
        }
    }
    Ok(ok)
}

/// Out of Office: off and why, or whether the user can log in to ManageSieve. Never fails
/// the whole check: mail works without it.
pub async fn sieve(
    config: &Config,
    login: Option<&Login>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let s = &config.sieve;
    if !s.enabled {
        return writeln!(
            out,
            "out of office: off ([sieve] enabled = false); phones' automatic replies get \
             status 7"
        );
    }
    writeln!(out, "ManageSieve {}:{} ({})", s.host, s.port, s.security)?;
    let Some(l) = login else {
        return writeln!(
            out,
            "  note: pass --user and set EAS_CHECK_PASSWORD to log in and list the scripts"
        );
    };
    match crate::sieve::managesieve::Client::login(s, &l.user, &l.password).await {
        Ok(mut client) => {
            writeln!(out, "  ok: logged in as {}", l.user)?;
            for needed in ["vacation", "date", "relational"] {
                if !client.extensions.iter().any(|e| e == needed) {
                    writeln!(
                        out,
                        "  warning: the server's Sieve has no {needed:?}; out of office \
                         {}",
                        if needed == "vacation" {
                            "cannot work"
                        } else {
                            "with a start and end time cannot work"
                        }
                    )?;
                }
            }
            match client.list().await {
                Ok(scripts) => {
                    let names: Vec<String> = scripts
                        .iter()
                        .map(|(n, a)| {
                            if *a {
                                format!("{n} (active)")
                            } else {
                                n.clone()
                            }
                        })
                        .collect();
                    writeln!(
                        out,
                        "  ok: scripts: {}",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    )?;
                }
                Err(e) => writeln!(out, "  problem: LISTSCRIPTS: {e}")?,
            }
            client.logout().await;
        }
        Err(e) => writeln!(
            out,
            "  problem: {e} (phones' automatic replies will fail; check [sieve] host, port \
             and security)"
        )?,
    }
    Ok(())
}

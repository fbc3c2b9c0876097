//! `eas-gateway check` with `[dav] url` set: is the DAV server there, and what does discovery
//! find for the user (`--user`): the principal, the home sets and the address books and
//! calendars the phone will see.

use std::io::Write;
use std::sync::Arc;

use crate::cli::check::Login;
use crate::config::Config;
use crate::dav::{DavClient, DavError, Kind, http_client};
use crate::secret::Secret;

/// Writes what the check found; returns whether it passed (true when no DAV is configured).
pub async fn run(
    config: &Config,
    login: Option<&Login>,
    out: &mut dyn Write,
) -> std::io::Result<bool> {
    let settings = match config.dav_settings() {
        Ok(Some(s)) => Arc::new(s),
        Ok(None) => {
            writeln!(
                out,
                "DAV: none configured; phones get mail only (no contacts)"
            )?;
            return Ok(true);
        }
        Err(e) => {
            writeln!(out, "DAV: problem: {e}")?;
            return Ok(false);
        }
    };
    writeln!(out, "DAV server {}", settings.url)?;
    let http = match http_client(&settings) {
        Ok(h) => h,
        Err(e) => {
            writeln!(out, "  problem: {e}")?;
            return Ok(false);
        }
    };
    let Some(l) = login else {
        // Without credentials only reachability can be shown: any HTTP answer will do.
        let client = DavClient::new(http, settings, "", Secret::new(String::new()));
        return match client.principal(&[Kind::AddressBook]).await {
            Err(e @ (DavError::Unreachable(_) | DavError::Timeout)) => {
                writeln!(out, "  problem: {e}")?;
                Ok(false)
            }
            _ => {
                writeln!(
                    out,
                    "  ok: reachable; pass --user and set EAS_CHECK_PASSWORD to see what \
                     discovery finds"
                )?;
                Ok(true)
            }
        };
    };
    let client = DavClient::new(http, settings, &l.user, Secret::new(l.password.clone()));
    match client.discover(&[Kind::AddressBook, Kind::Calendar]).await {
        Ok(found) => {
            writeln!(out, "  ok: logged in as {}", client.user())?;
            if let Some(p) = &found.principal {
                writeln!(out, "  principal {p}")?;
            }
            for h in &found.addressbook_homes {
                writeln!(out, "  address book home {h}")?;
            }
            for h in &found.calendar_homes {
                writeln!(out, "  calendar home {h}")?;
            }
            let books = found
                .collections
                .iter()
                .filter(|c| c.kind == Kind::AddressBook);
            let mut n = 0;
            for c in books {
                n += 1;
                writeln!(
                    out,
                    "  address book {:?} at {}{}",
                    c.display_name.as_deref().unwrap_or(""),
                    c.url,
                    if c.sync_token.is_some() {
                        " (sync-collection)"
                    } else {
                        " (ETag listing)"
                    }
                )?;
            }
            for c in found
                .collections
                .iter()
                .filter(|c| c.kind == Kind::Calendar)
            {
                writeln!(
                    out,
                    "  calendar {:?} at {} ({})",
                    c.display_name.as_deref().unwrap_or(""),
                    c.url,
                    c.components.join(", ")
                )?;
            }
            if n == 0 {
                writeln!(out, "  warning: no address book found for this user")?;
            }
            Ok(true)
        }
        Err(e) => {
            writeln!(
                out,
                "  problem: discovery for {} failed: {e}",
                client.user()
            )?;
            Ok(false)
        }
    }
}

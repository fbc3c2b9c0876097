//! Which operating-system accounts the private Dovecot runs as.
//!
//! As root, Dovecot refuses to store mail as root, so mail belongs to an unprivileged system
//! user ([`MAIL_USER`], created on first use), and Dovecot's own processes use the
//! `dovecot`/`dovenull` users the Debian package creates. Not as root, everything runs as the
//! current user (Dovecot's "rootless" mode).

use std::path::Path;
use std::process::Command;

use super::TestbedError;
use super::process;

/// The unprivileged user that owns the mail when we run as root.
pub const MAIL_USER: &str = "easgw-mail";

/// An entry of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The name of the primary group (from `/etc/group`; the number if it has no entry).
    pub group: String,
}

/// The accounts a Dovecot instance uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Owns the maildirs (`mail_uid`, the static userdb).
    pub mail: Account,
    /// `default_internal_user` (auth, stats, anvil).
    pub internal: Account,
    /// `default_login_user` (imap-login).
    pub login: Account,
    /// True when not root: no chroots, one user for everything.
    pub rootless: bool,
}

impl Accounts {
    /// Finds (as root: creates, if missing) the accounts to run Dovecot as.
    pub fn for_this_process() -> Result<Accounts, TestbedError> {
        let euid = process::euid();
        if euid != 0 {
            let me = match lookup_uid(euid)? {
                Some(me) => me,
                // No passwd entry (e.g. an arbitrary container uid): try with numbers.
                None => Account {
                    name: euid.to_string(),
                    uid: euid,
                    gid: process::egid(),
                    group: group_name(process::egid())?,
                },
            };
            return Ok(Accounts {
                mail: me.clone(),
                internal: me.clone(),
                login: me,
                rootless: true,
            });
        }
        let mail = ensure_system_user(MAIL_USER)?;
        // The Debian package creates these; without them, the mail user serves every role.
        let internal = lookup_name("dovecot")?.unwrap_or_else(|| mail.clone());
        let login = lookup_name("dovenull")?.unwrap_or_else(|| mail.clone());
        Ok(Accounts {
            mail,
            internal,
            login,
            rootless: false,
        })
    }
}

fn ensure_system_user(name: &str) -> Result<Account, TestbedError> {
    if let Some(account) = lookup_name(name)? {
        return Ok(account);
    }
    let out = Command::new("useradd")
        .args(["-r", "-M", "-s", "/usr/sbin/nologin", name])
        .output()
        .map_err(|e| TestbedError::io(format!("running useradd to create {name}"), e))?;
    // Another test binary may have created it at the same moment: look again either way.
    match lookup_name(name)? {
        Some(account) => Ok(account),
        None => Err(TestbedError::MailUser(format!(
            "`useradd -r -M -s /usr/sbin/nologin {name}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The account of a user name, if it exists.
pub(crate) fn lookup(name: &str) -> Result<Option<Account>, TestbedError> {
    lookup_name(name)
}

fn lookup_name(name: &str) -> Result<Option<Account>, TestbedError> {
    find_account(|a| a.name == name)
}

fn lookup_uid(uid: u32) -> Result<Option<Account>, TestbedError> {
    find_account(|a| a.uid == uid)
}

fn find_account(pred: impl Fn(&Account) -> bool) -> Result<Option<Account>, TestbedError> {
    let Some(mut account) = parse_passwd(&read("/etc/passwd")?).into_iter().find(pred) else {
        return Ok(None);
    };
    account.group = group_name(account.gid)?;
    Ok(Some(account))
}

fn group_name(gid: u32) -> Result<String, TestbedError> {
    Ok(parse_group(&read("/etc/group")?)
        .into_iter()
        .find(|(_, g)| *g == gid)
        .map_or_else(|| gid.to_string(), |(name, _)| name))
}

fn read(path: &str) -> Result<String, TestbedError> {
    std::fs::read_to_string(Path::new(path))
        .map_err(|e| TestbedError::io(format!("reading {path}"), e))
}

/// `name:x:uid:gid:gecos:home:shell` lines; malformed lines are skipped. The group name is
/// filled in separately.
fn parse_passwd(text: &str) -> Vec<Account> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            let gid: u32 = f.next()?.parse().ok()?;
            Some(Account {
                name: name.to_owned(),
                uid,
                gid,
                group: gid.to_string(),
            })
        })
        .collect()
}

/// `name:x:gid:members` lines.
fn parse_group(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let gid = f.nth(1)?.parse().ok()?;
            Some((name.to_owned(), gid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let accounts = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n\
             dovecot:x:102:105:Dovecot mail server,,,:/usr/lib/dovecot:/usr/sbin/nologin\n\
             broken line\n\
             easgw-mail:x:999:995::/home/easgw-mail:/usr/sbin/nologin\n",
        );
        assert_eq!(accounts.len(), 3);
        assert_eq!(
            accounts[2],
            Account {
                name: "easgw-mail".into(),
                uid: 999,
                gid: 995,
                group: "995".into(),
            }
        );
        assert_eq!(
            parse_group("root:x:0:\neasgw-mail:x:995:\n"),
            [("root".to_string(), 0), ("easgw-mail".to_string(), 995)]
        );
    }
}

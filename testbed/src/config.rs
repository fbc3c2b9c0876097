//! The `dovecot.conf` of a private instance, as a pure function of its settings.
//!
//! Everything lives under one directory (`base_dir`, state, log, maildirs, the passwd-file),
//! listeners are on 127.0.0.1 only, and no file of the system's Dovecot is read, so the
//! instance runs next to a system Dovecot on port 143 without touching it.

use std::path::Path;

use super::account::Accounts;

/// What varies between instances.
pub(crate) struct Settings<'a> {
    pub dir: &'a Path,
    pub imap_port: u16,
    pub lmtp_port: u16,
    /// With TLS: the implicit-TLS port; STARTTLS is then offered on the plain port too.
    pub imaps_port: Option<u16>,
    /// With [`Tuning::sieve`]: the ManageSieve port.
    pub sieve_port: Option<u16>,
    pub accounts: &'a Accounts,
}

/// Limits of a private Dovecot. The default is what [`super::Dovecot::start`] has always
/// used (fine for tests and the demo); load tests raise them with [`Tuning::for_connections`]
/// and [`super::Dovecot::start_tuned`], so they measure the gateway, not Dovecot's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// `default_process_limit` and `service imap { process_limit }`: Dovecot runs one `imap`
    /// process per connection, so this is the most IMAP connections at once.
    pub process_limit: u32,
    /// `default_client_limit` and `service imap-login { client_limit }`; `auth` and `anvil`,
    /// which every imap process talks to, get half as much again.
    pub client_limit: u32,
    /// `mail_max_userip_connections`: connections of one user from one address (127.0.0.1).
    pub max_userip_connections: u32,
    /// `mailbox_list_index`: Dovecot advertises NOTIFY only with it. `false` makes a server
    /// that offers IDLE alone.
    pub notify: bool,
    /// Dovecot's full-text index through the `fts_xapian` plugin (Debian package
    /// `dovecot-fts-xapian`), kept up to date as mail arrives: SEARCH TEXT/BODY then reads
    /// the index instead of every message.
    pub fts_xapian: bool,
    /// A STORAGE quota for every user, in KiB (the `quota` and `imap_quota` plugins, maildir
    /// backend); `None`: no quota.
    pub storage_quota_kib: Option<u64>,
    /// Dovecot's push events: load the shipped `contrib/dovecot/eas-push.lua` with the shipped
    /// `eas-push.conf` (imap and lmtp), sending to `127.0.0.1:<port>`, signed with the secret
    /// at [`super::Dovecot::events_secret_path`].
    pub events_port: Option<u16>,
    /// With push events: send them to the Unix datagram socket
    /// [`super::Dovecot::events_socket_path`] instead of `events_port`.
    pub events_unix: bool,
    /// Sieve for delivered mail (LMTP with Pigeonhole) and a ManageSieve listener
    /// ([`super::Dovecot::sieve_port`]); Debian packages `dovecot-sieve` and
    /// `dovecot-managesieved`.
    pub sieve: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            process_limit: 1000,
            client_limit: 4000,
            max_userip_connections: 1000,
            notify: true,
            fts_xapian: false,
            storage_quota_kib: None,
            events_port: None,
            events_unix: false,
            sieve: false,
        }
    }
}

impl Tuning {
    /// Limits for about `connections` simultaneous IMAP connections (never below the
    /// defaults).
    pub fn for_connections(connections: u32) -> Tuning {
        let d = Tuning::default();
        let process_limit = connections.saturating_add(500).max(d.process_limit);
        Tuning {
            process_limit,
            client_limit: process_limit.saturating_mul(2).max(d.client_limit),
            max_userip_connections: d.max_userip_connections,
            notify: true,
            fts_xapian: false,
            storage_quota_kib: None,
            events_port: None,
            events_unix: false,
            sieve: false,
        }
    }
}

/// Paths inside the instance directory.
pub(crate) fn passwd_path(dir: &Path) -> std::path::PathBuf {
    dir.join("passwd")
}

pub(crate) fn log_path(dir: &Path) -> std::path::PathBuf {
    dir.join("dovecot.log")
}

pub(crate) fn mail_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("mail")
}

/// The SASL socket Postfix authenticates submission against (under `base_dir`).
pub(crate) fn auth_socket_path(dir: &Path) -> std::path::PathBuf {
    dir.join("run").join("auth-postfix")
}

pub(crate) fn cert_path(dir: &Path) -> std::path::PathBuf {
    dir.join("tls-cert.pem")
}

pub(crate) fn key_path(dir: &Path) -> std::path::PathBuf {
    dir.join("tls-key.pem")
}

/// The shipped Lua script and configuration snippet for Dovecot's push events.
pub(crate) const EVENTS_SCRIPT: &str = include_str!("../../contrib/dovecot/eas-push.lua");
pub(crate) const EVENTS_CONF: &str = include_str!("../../contrib/dovecot/eas-push.conf");

pub(crate) fn events_script_path(dir: &Path) -> std::path::PathBuf {
    dir.join("eas-push.lua")
}

pub(crate) fn events_secret_path(dir: &Path) -> std::path::PathBuf {
    dir.join("eas-push.secret")
}

pub(crate) fn events_socket_path(dir: &Path) -> std::path::PathBuf {
    dir.join("eas-events.sock")
}

/// The shipped snippet with this instance's paths and target instead of the Debian defaults.
pub(crate) fn events_conf(dir: &Path, target: &str) -> String {
    EVENTS_CONF
        .replace(
            "/etc/dovecot/eas-push.lua",
            &events_script_path(dir).display().to_string(),
        )
        .replace(
            "/etc/dovecot/eas-push.secret",
            &events_secret_path(dir).display().to_string(),
        )
        .replace("127.0.0.1:5829", target)
}

/// The configuration with the default [`Tuning`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn render(s: &Settings<'_>) -> String {
    render_tuned(s, &Tuning::default())
}

pub(crate) fn render_tuned(s: &Settings<'_>, t: &Tuning) -> String {
    let dir = s.dir.display();
    let passwd = passwd_path(s.dir);
    let passwd = passwd.display();
    let log = log_path(s.dir);
    let log = log.display();
    let mail = mail_dir(s.dir);
    let mail = mail.display();
    let a = s.accounts;
    let (uid, gid) = (a.mail.uid, a.mail.gid);
    // Rootless Dovecot cannot chroot its login and anvil processes (HowTo.Rootless).
    let chroot = if a.rootless { "\n  chroot =" } else { "" };
    // Plaintext LOGIN stays allowed on the plain port either way (disable_plaintext_auth).
    let (ssl, imaps) = match s.imaps_port {
        None => ("ssl = no".to_string(), "port = 0".to_string()),
        Some(port) => (
            format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\nssl_min_protocol = TLSv1.2",
                cert_path(s.dir).display(),
                key_path(s.dir).display()
            ),
            format!("address = 127.0.0.1\n    port = {port}"),
        ),
    };
    let list_index = if t.notify { "yes" } else { "no" };
    let process_limit = t.process_limit;
    let client_limit = t.client_limit;
    let max_userip = t.max_userip_connections;
    let service_client_limit = t.client_limit.saturating_add(t.client_limit / 2);
    let quota = match t.storage_quota_kib {
        None => String::new(),
        Some(kib) => format!(
            "mail_plugins = $mail_plugins quota\n\
             protocol imap {{\n  mail_plugins = $mail_plugins imap_quota\n}}\n\
             plugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={kib}K\n}}\n"
        ),
    };
    let mut conf = format!(
        r#"# Generated by eas-gateway's testbed; rewritten on every start.
protocols = imap lmtp
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/run/state
instance_name = easgw-testbed
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
# Dovecot normally answers a failed login after 2 s to slow down guessing; on loopback that
# only slows down the tests that check wrong passwords. (See also anvil-auth-penalty below.)
auth_failure_delay = 0
log_path = {log}
info_log_path = {log}
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
mail_location = maildir:{mail}/%d/%n
# Keeps a list index; Dovecot advertises NOTIFY only with it.
mailbox_list_index = {list_index}
mail_max_userip_connections = {max_userip}
default_process_limit = {process_limit}
default_client_limit = {client_limit}
default_vsz_limit = 512M
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = subscribe
  }}
  mailbox Junk {{
    special_use = \Junk
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \Archive
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    {imaps}
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = {client_limit}{chroot}
}}
service imap {{
  process_limit = {process_limit}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  client_limit = {service_client_limit}{chroot}
  # Without this socket, auth cannot ask anvil for penalties and skips them. Otherwise every
  # failed login from 127.0.0.1 (tests check wrong passwords on purpose) would delay all
  # later logins from there by up to 15 s (Authentication.Penalty in Dovecot's wiki).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{quota}service auth {{
  client_limit = {service_client_limit}
  # SASL for the test Postfix (smtpd_sasl_type = dovecot): its smtpd checks passwords here.
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"#,
        internal = a.internal.name,
        internal_group = a.internal.group,
        login = a.login.name,
        imap_port = s.imap_port,
        lmtp_port = s.lmtp_port,
    );
    if t.fts_xapian {
        conf.push_str(FTS_XAPIAN);
    }
    if let Some(port) = s.sieve_port {
        conf.push_str(&sieve_conf(s.dir, port));
    }
    conf + &events_target(s.dir, t)
        .map(|target| events_conf(s.dir, &target))
        .unwrap_or_default()
}

/// Where the push script sends, if it runs.
pub(crate) fn events_target(dir: &Path, t: &Tuning) -> Option<String> {
    if t.events_unix {
        Some(format!("unix:{}", events_socket_path(dir).display()))
    } else {
        t.events_port.map(|p| format!("127.0.0.1:{p}"))
    }
}

/// Where [`super::Dovecot::send_replies_through`] writes `submission_host`.
pub(crate) fn submission_conf_path(dir: &Path) -> std::path::PathBuf {
    dir.join("submission.conf")
}

/// Pigeonhole: each user's scripts under their home, a ManageSieve listener, Sieve run on
/// LMTP delivery. Vacation replies go out through `submission_host`, written by
/// [`super::Dovecot::send_replies_through`] once a Postfix runs.
fn sieve_conf(dir: &Path, port: u16) -> String {
    let submission = submission_conf_path(dir);
    let submission = submission.display();
    format!(
        r#"protocols = $protocols sieve
!include_try {submission}
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {port}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  # Tests send several messages from one sender; the default would answer only the first
  # in a week.
  sieve_vacation_min_period = 0
  sieve_vacation_default_period = 0
  # Small, so a test can make the server refuse a script that grew too large.
  sieve_max_script_size = 64K
}}
"#
    )
}

/// The full-text index: words of 3 to 20 characters, indexed when mail is saved.
const FTS_XAPIAN: &str = r#"mail_plugins = $mail_plugins fts fts_xapian
plugin {
  fts = xapian
  fts_xapian = partial=3 full=20 verbose=0
  fts_autoindex = yes
  fts_enforced = yes
}
"#;

#[cfg(test)]
mod tests {
    use super::super::account::Account;
    use super::*;

    fn accounts(rootless: bool) -> Accounts {
        let user = |name: &str, uid| Account {
            name: name.into(),
            uid,
            gid: uid + 1,
            group: name.into(),
        };
        Accounts {
            mail: user("easgw-mail", 999),
            internal: user("dovecot", 102),
            login: user("dovenull", 103),
            rootless,
        }
    }

    #[test]
    fn renders_ports_paths_and_users() {
        let acc = accounts(false);
        let conf = render(&Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 10143,
            lmtp_port: 10024,
            imaps_port: None,
            sieve_port: None,
            accounts: &acc,
        });
        for line in [
            "base_dir = /tmp/x/run",
            "log_path = /tmp/x/dovecot.log",
            "mail_uid = 999",
            "mail_gid = 1000",
            "first_valid_uid = 999",
            "default_internal_user = dovecot",
            "default_login_user = dovenull",
            "default_internal_group = dovecot",
            "mail_location = maildir:/tmp/x/mail/%d/%n",
            "  args = scheme=PLAIN username_format=%u /tmp/x/passwd",
            "  args = uid=999 gid=1000 home=/tmp/x/mail/%d/%n",
            "    port = 10143",
            "    port = 10024",
            "mailbox_list_index = yes",
            "    special_use = \\Archive",
            "ssl = no",
            "    port = 0",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
        assert!(!conf.contains("chroot"));
    }

    #[test]
    fn rootless_drops_chroots() {
        let acc = accounts(true);
        let conf = render(&Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 1,
            lmtp_port: 2,
            imaps_port: None,
            sieve_port: None,
            accounts: &acc,
        });
        assert_eq!(conf.matches("  chroot =").count(), 2);
    }

    #[test]
    fn tls_adds_the_certificate_and_the_imaps_listener() {
        let acc = accounts(false);
        let conf = render(&Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 1,
            lmtp_port: 2,
            imaps_port: Some(3),
            sieve_port: None,
            accounts: &acc,
        });
        for line in [
            "ssl = yes",
            "ssl_cert = </tmp/x/tls-cert.pem",
            "ssl_key = </tmp/x/tls-key.pem",
            "    address = 127.0.0.1",
            "    port = 3",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
        assert!(!conf.contains("ssl = no"));
    }

    #[test]
    fn the_default_tuning_renders_what_render_always_did() {
        let acc = accounts(false);
        let settings = Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 1,
            lmtp_port: 2,
            imaps_port: None,
            sieve_port: None,
            accounts: &acc,
        };
        let conf = render(&settings);
        assert_eq!(conf, render_tuned(&settings, &Tuning::default()));
        for line in [
            "mailbox_list_index = yes",
            "mail_max_userip_connections = 1000",
            "default_process_limit = 1000",
            "default_client_limit = 4000",
            "  client_limit = 4000",
            "  process_limit = 1000",
            "  client_limit = 6000",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?}");
        }
    }

    #[test]
    fn tuning_raises_the_limits_and_can_turn_notify_off() {
        let acc = accounts(false);
        let settings = Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 1,
            lmtp_port: 2,
            imaps_port: None,
            sieve_port: None,
            accounts: &acc,
        };
        let tuning = Tuning {
            notify: false,
            ..Tuning::for_connections(10_000)
        };
        assert_eq!(tuning.process_limit, 10_500);
        assert_eq!(tuning.client_limit, 21_000);
        let conf = render_tuned(&settings, &tuning);
        for line in [
            "mailbox_list_index = no",
            "default_process_limit = 10500",
            "default_client_limit = 21000",
            "  client_limit = 21000",
            "  process_limit = 10500",
            "  client_limit = 31500",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?}");
        }
        assert_eq!(Tuning::for_connections(10), Tuning::default());
        assert!(!conf.contains("quota"));
        let quota = render_tuned(
            &settings,
            &Tuning {
                storage_quota_kib: Some(64),
                ..Tuning::default()
            },
        );
        assert!(quota.lines().any(|l| l == "  quota_rule = *:storage=64K"));
        assert!(
            quota
                .lines()
                .any(|l| l == "  mail_plugins = $mail_plugins imap_quota")
        );
        assert!(!conf.contains("push_notification"));
    }

    #[test]
    fn events_load_the_shipped_script_with_our_paths() {
        let acc = accounts(false);
        let settings = Settings {
            dir: Path::new("/tmp/x"),
            imap_port: 1,
            lmtp_port: 2,
            imaps_port: None,
            sieve_port: None,
            accounts: &acc,
        };
        let tuning = Tuning {
            events_port: Some(4242),
            ..Tuning::default()
        };
        let conf = render_tuned(&settings, &tuning);
        for line in [
            "  mail_plugins = $mail_plugins mail_lua notify push_notification push_notification_lua",
            "  push_notification_driver = lua:file=/tmp/x/eas-push.lua",
            "  eas_push_target = 127.0.0.1:4242",
            "  eas_push_secret_file = /tmp/x/eas-push.secret",
        ] {
            assert!(conf.lines().any(|l| l == line), "missing {line:?}");
        }
        assert_eq!(
            conf.matches("push_notification_lua").count(),
            2,
            "imap and lmtp"
        );
        let unix = render_tuned(
            &settings,
            &Tuning {
                events_unix: true,
                ..Tuning::default()
            },
        );
        assert!(
            unix.lines()
                .any(|l| l == "  eas_push_target = unix:/tmp/x/eas-events.sock")
        );
    }
}

//! Configuration: one typed struct per subsystem, all defaults in one place, read from TOML,
//! overridden by command-line flags, validated once at start.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::imap::{ImapConfig, Security};

/// Why the configuration cannot be used; printed as one line by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub imap: ImapSection,
    pub state: StateConfig,
    pub auth: AuthConfig,
    pub provision: ProvisionConfig,
    pub sync: SyncConfig,
    pub push: PushConfig,
    pub directory: DirectoryConfig,
    pub dav: DavSection,
    /// `[sieve]`: Out of Office over ManageSieve.
    pub sieve: crate::sieve::SieveConfig,
    pub smtp: SmtpSection,
    pub limits: LimitsConfig,
    pub log: LogConfig,
}

/// `[log]`: how log lines are written (to standard output: the journal under systemd).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (one readable line per event) or `json` (one object per line, for journald
    /// field extraction, Loki and the like).
    pub format: LogFormat,
    /// `auto` (colour only when standard output is a terminal and `NO_COLOR` is unset),
    /// `always` or `never`.
    pub color: LogColor,
    /// The filter when `RUST_LOG` is not set, e.g. `info` or `info,eas_gateway::push=debug`.
    pub level: Option<String>,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `log.color`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogColor {
    #[default]
    Auto,
    Always,
    Never,
}

/// `[limits]`: what one connection, client address or user may take of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open client connections; more are answered 503 and closed. Lowered at start to half
    /// the open-file limit (the other half is for IMAP connections and files).
    pub max_connections: usize,
    /// Seconds a new connection, or a request head once begun, may take to arrive.
    pub header_timeout_secs: u64,
    /// Seconds a connection with no request under way stays open (held Pings are under way).
    pub idle_timeout_secs: u64,
    /// Seconds a request body may pause; the whole body must also average 8 KiB/s after it.
    pub body_timeout_secs: u64,
    /// Pings and Syncs under way at once (held ones wait up to an hour) per user, and per
    /// client address (IPv6: per /64); more get 503 with Retry-After.
    pub held_requests_per_user: usize,
    pub held_requests_per_address: usize,
    /// Devices a user may have in the state store; a further new DeviceId is refused
    /// (status 177, 403 before 14.0) until an admin removes one.
    pub devices_per_user: usize,
    /// Operations one ItemOperations request may hold; the ones after are answered with
    /// status 2 and not run.
    pub item_operations_per_request: usize,
    /// Bytes of fetched items and attachments one ItemOperations response may carry; a
    /// fetch that would take it past this gets status 11 (the phone asks for it again on
    /// its own). The first fetch of a request is served whatever its size.
    pub item_operations_response_bytes: usize,
    /// The largest message fetched whole from IMAP. Longer ones are shown from their first
    /// this many bytes and their attachments are refused (status 11); the IMAP client
    /// refuses any response longer than this plus 8 MiB.
    pub max_message_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 20_000,
            header_timeout_secs: 30,
            idle_timeout_secs: 120,
            body_timeout_secs: 60,
            held_requests_per_user: 50,
            held_requests_per_address: 5_000,
            devices_per_user: 100,
            item_operations_per_request: 32,
            item_operations_response_bytes: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `[directory]`: the address book for GAL search, Find and ResolveRecipients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryConfig {
    /// `none` (nobody is found), `vcard:PATH` or `csv:PATH`; the file is re-read when it changes.
    pub source: String,
    /// `[[directory.sql]]`: queries against MySQL/MariaDB or PostgreSQL.
    pub sql: Vec<crate::directory::sql::SqlConfig>,
    /// `[[directory.ldap]]`: LDAP searches.
    pub ldap: Vec<crate::directory::ldap::LdapConfig>,
    /// `[[directory.dav]]`: shared address books on the DAV server, read as a service account.
    pub dav: Vec<crate::directory::carddav::DavDirectoryConfig>,
    /// Seconds one source may take to answer one lookup; a slower one is left out of the answer.
    pub timeout_secs: u64,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            source: "none".into(),
            sql: Vec::new(),
            ldap: Vec::new(),
            dav: Vec::new(),
            timeout_secs: 5,
        }
    }
}

/// `[dav]`: the user's CardDAV/CalDAV server (contacts, later calendars).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DavSection {
    /// The server's URL (its root, where `/.well-known/carddav` answers, or a context path);
    /// empty: no DAV server, the phone gets mail only.
    pub url: String,
    /// The DAV user name made from the phone's login: `%u` the login, `%l` its local part,
    /// `%d` its domain (e.g. `"%l"` when the DAV server knows users without their domain).
    pub user_template: Option<String>,
    /// Photos larger than this are left out of the contacts sent to phones (EAS allows 48 KB
    /// of base64, about 36 KB of image).
    pub photo_max_bytes: usize,
    pub timeout_secs: u64,
    /// The largest DAV answer read (one multiget batch, one vCard).
    pub max_response_bytes: usize,
    /// Accept any certificate (self-signed test servers only).
    pub tls_insecure: bool,
    /// Push: how often the collections a waiting phone watches have their sync token read
    /// (one Depth-0 PROPFIND each, per user however many phones wait). The cost to the DAV
    /// server is in docs/benchmarks.md ("DAV push").
    pub push_check_secs: u64,
    /// Radicale's storage hook (`contrib/radicale/eas-dav-hook`) tells the gateway of every
    /// change on the events listener (`push.events_listen`/`events_socket`, the secret of
    /// `push.events_secret_file`); the interval check becomes a safety net.
    pub push_hook: bool,
    /// With `push_hook`: the interval of that safety net.
    pub push_safety_check_secs: u64,
}

impl Default for DavSection {
    fn default() -> Self {
        DavSection {
            url: String::new(),
            user_template: None,
            photo_max_bytes: crate::contacts::DEFAULT_PICTURE_MAX_BYTES,
            timeout_secs: 30,
            max_response_bytes: 64 << 20,
            tls_insecure: false,
            push_check_secs: 120,
            push_hook: false,
            push_safety_check_secs: 900,
        }
    }
}

impl DirectoryConfig {
    /// The combined directory: the file first, then the SQL sources, then the LDAP ones, then
    /// the CardDAV ones, each in the order written (an earlier source's entry for an address wins).
    pub fn build(&self) -> Result<crate::directory::Directory, crate::directory::DirectoryError> {
        use crate::directory::{
            Backend, Source, carddav::DavSource, file::FileSource, ldap::LdapSource, sql::SqlSource,
        };
        let mut sources = Vec::new();
        match Source::parse(&self.source)? {
            Source::None => {}
            file => sources.push(Backend::File(FileSource::new(file))),
        }
        for sql in &self.sql {
            sources.push(Backend::Sql(SqlSource::new(sql)?));
        }
        for ldap in &self.ldap {
            sources.push(Backend::Ldap(Box::new(LdapSource::new(ldap)?)));
        }
        for dav in &self.dav {
            sources.push(Backend::Dav(DavSource::new(dav)?));
        }
        Ok(crate::directory::Directory::with_sources(
            sources,
            Duration::from_secs(self.timeout_secs.max(1)),
        ))
    }
}

/// `[smtp]`: where sent mail is submitted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    pub host: String,
    pub port: u16,
    /// `none` (plain, for loopback), `starttls` or `tls` (implicit TLS, usually port 465).
    pub security: String,
    /// Accept any certificate (self-signed test servers only).
    pub tls_insecure: bool,
    /// `user`: AUTH with the phone's own credentials (a submission port, e.g. Postfix on 587
    /// with Dovecot SASL). `relay`: no AUTH; the server trusts the gateway's address
    /// (`mynetworks`) and takes the envelope sender the gateway sets.
    pub auth: String,
    pub timeout_secs: u64,
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            host: "127.0.0.1".into(),
            port: 587,
            security: "starttls".into(),
            tls_insecure: false,
            auth: "user".into(),
            timeout_secs: 60,
        }
    }
}

/// `[push]`: Ping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Allowed HeartbeatInterval, in seconds; outside it a Ping gets status 5 and the limit.
    pub min_heartbeat_secs: u64,
    pub max_heartbeat_secs: u64,
    /// Most folders one Ping may watch (status 6 above it).
    pub max_folders: usize,
    /// How long a user's IMAP watcher stays connected with no waiting device.
    pub watcher_grace_secs: u64,
    /// Where news of mailbox changes comes from (see [`PushSource`]).
    pub source: PushSource,
    /// `dovecot-events`/`both`: where the datagrams of `contrib/dovecot/eas-push.lua` arrive
    /// (UDP; keep it on loopback or a private network).
    pub events_listen: SocketAddr,
    /// `dovecot-events`/`both`: a Unix datagram socket to listen on *instead of*
    /// `events_listen` (Dovecot side: `eas_push_target = unix:<path>`). Created mode 0666:
    /// Dovecot's mail user must be able to write to it, and the signature guards it.
    pub events_socket: Option<PathBuf>,
    /// The shared secret the datagrams are signed with (HMAC-SHA256); the same file is named
    /// in Dovecot's `eas_push_secret_file`. Trailing white space is not part of the secret.
    pub events_secret_file: PathBuf,
    /// Datagrams stamped further than this from our clock are dropped (replay window).
    pub events_max_skew_secs: u64,
    /// `both`: how often every user with waiting devices is looked at over IMAP anyway.
    pub safety_check_secs: u64,
}

/// `push.source`: what tells the hub that a mailbox changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushSource {
    /// One IMAP connection per user with waiting devices (NOTIFY, else IDLE): any server.
    Imap,
    /// Dovecot's own events (push_notification + Lua): no IMAP connection is held for
    /// waiting phones.
    DovecotEvents,
    /// Dovecot's events first, and a slow safety look over IMAP every `safety_check_secs`.
    Both,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            min_heartbeat_secs: 60,
            max_heartbeat_secs: 3540,
            max_folders: 300,
            watcher_grace_secs: 120,
            source: PushSource::Imap,
            events_listen: "127.0.0.1:5829".parse().expect("literal"),
            events_socket: None,
            events_secret_file: "/etc/eas-gateway/push.secret".into(),
            events_max_skew_secs: 30,
            safety_check_secs: 300,
        }
    }
}

/// `[sync]`: limits of the Sync command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// Bounds for a held Sync (Wait / HeartbeatInterval), in seconds; outside them the device
    /// gets status 14 with the limit.
    pub min_wait_secs: u64,
    pub max_wait_secs: u64,
    /// While a phone pages through a folder (MoreAvailable), compute the next page before it
    /// asks; used only when nothing changed in between.
    pub read_ahead: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            min_wait_secs: 60,
            max_wait_secs: 3540,
            read_ahead: true,
        }
    }
}

/// `[server]`: where and how the HTTP service listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The URL phones reach us at (without the path); Autodiscover hands it out.
    pub public_url: String,
    /// PEM certificate chain and key. Both or neither: without them the service speaks plain
    /// HTTP, for a reverse proxy that terminates TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How often, in seconds, the PEM files are checked for a renewed certificate.
    pub tls_reload_secs: u64,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest request body accepted, in bytes (a SendMail carries the whole message).
    pub max_body_bytes: usize,
}

/// `[imap]`: the mail server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapSection {
    pub host: String,
    pub port: u16,
    /// `none` (plain, for loopback), `starttls` or `tls` (implicit TLS).
    pub security: String,
    /// Accept any certificate (self-signed test servers only).
    pub tls_insecure: bool,
    pub timeout_secs: u64,
}

/// `[state]`: where per-device state is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `sqlite:PATH` (one node), or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]`
    /// (several nodes sharing one database; docs/deploy.md "Several nodes").
    pub url: String,
}

/// `[auth]`: credential checking.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a verified password is remembered (as a salted hash, in memory only).
    pub cache_ttl_secs: u64,
    /// Domain appended to log-in names without one, to form the user's e-mail address.
    pub default_domain: Option<String>,
    /// Failed log-ins (per user, and per client address) before responses are slowed down.
    pub failures_before_delay: u32,
    /// Distinct wrong passwords for one user, and from one client network (an IPv4 address,
    /// an IPv6 /64), within `lockout_secs` before log-ins are refused without asking IMAP
    /// for `lockout_secs`. A locked user is refused only from the networks that failed.
    pub user_failures_before_lockout: u32,
    pub network_failures_before_lockout: u32,
    pub lockout_secs: u64,
    /// IMAP LOGINs checking a password at once, per user and per client network; further
    /// attempts wait their turn.
    pub logins_in_flight_per_user: usize,
    pub logins_in_flight_per_network: usize,
}

/// `[provision]`: device policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionConfig {
    /// Demand the Provision exchange before other commands (449 / status 142).
    pub required: bool,
    pub policy: Policy,
}

/// The device security policy sent in Provision. The defaults are permissive, as common
/// self-hosted setups are: phones accept it without asking the user for anything.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub require_password: bool,
    pub alphanumeric_password: bool,
    pub min_password_length: u32,
    pub max_inactivity_secs: u32,
    pub max_failed_attempts: u32,
    pub require_encryption: bool,
    pub allow_attachments: bool,
    /// Largest attachment the phone may download; none means unlimited.
    pub max_attachment_bytes: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:8443".parse().expect("literal"),
            public_url: "https://localhost:8443".into(),
            tls_cert: None,
            tls_key: None,
            tls_reload_secs: 30,
            trusted_proxies: vec![
                "127.0.0.1".parse().expect("literal"),
                "::1".parse().expect("literal"),
            ],
            max_body_bytes: 50 * 1024 * 1024,
        }
    }
}

impl Default for ImapSection {
    fn default() -> Self {
        ImapSection {
            host: "127.0.0.1".into(),
            port: 143,
            security: "none".into(),
            tls_insecure: false,
            timeout_secs: 30,
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            url: "sqlite:/var/lib/eas-gateway/state.db".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            cache_ttl_secs: 300,
            default_domain: None,
            failures_before_delay: 3,
            user_failures_before_lockout: 5,
            network_failures_before_lockout: 100,
            lockout_secs: 900,
            logins_in_flight_per_user: 2,
            logins_in_flight_per_network: 8,
        }
    }
}

impl Default for ProvisionConfig {
    fn default() -> Self {
        ProvisionConfig {
            required: true,
            policy: Policy::default(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            require_password: false,
            alphanumeric_password: false,
            min_password_length: 4,
            max_inactivity_secs: 900,
            max_failed_attempts: 8,
            require_encryption: false,
            allow_attachments: true,
            max_attachment_bytes: None,
        }
    }
}

impl Policy {
    /// A short fingerprint: a device provisioned under another policy must provision again.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = format!("{self:?}");
        let digest = Sha256::digest(text.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Command-line values that replace what the file says.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub imap_host: Option<String>,
    pub imap_port: Option<u16>,
    pub imap_tls: Option<String>,
    pub state: Option<String>,
    pub public_url: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

/// `line 3, imap.port: invalid type…`: where in the file the parser stopped, and the key
/// written on that line with its `[section]`, so the message names what to fix.
fn with_place(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    let message = message.trim().replace('\n', " ");
    let Some(span) = span else {
        return message;
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default().trim();
    let section = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    match (section, key) {
        (Some(s), Some(k)) => format!("line {line_no}, {s}.{k}: {message}"),
        (None, Some(k)) => format!("line {line_no}, {k}: {message}"),
        _ => format!("line {line_no}: {message}"),
    }
}

impl Config {
    /// Reads the file (when given), applies the overrides and validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: with_place(&text, e.span(), e.message()),
                })?
            }
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = o.listen {
            self.server.listen = v;
        }
        if let Some(v) = &o.imap_host {
            self.imap.host = v.clone();
        }
        if let Some(v) = o.imap_port {
            self.imap.port = v;
        }
        if let Some(v) = &o.imap_tls {
            self.imap.security = v.clone();
        }
        if let Some(v) = &o.state {
            self.state.url = v.clone();
        }
        if let Some(v) = &o.public_url {
            self.server.public_url = v.clone();
        }
        if let Some(v) = &o.tls_cert {
            self.server.tls_cert = Some(v.clone());
        }
        if let Some(v) = &o.tls_key {
            self.server.tls_key = Some(v.clone());
        }
        if let Some(v) = o.log_format {
            self.log.format = v;
        }
    }

    /// Checks what a type cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let url = self.server.public_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            return bad(format!(
                "server.public_url must be an http(s) URL, not {:?}",
                self.server.public_url
            ));
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return bad("server.tls_cert and server.tls_key go together".into());
        }
        let imap_security = self.imap_security()?;
        if self.imap.host.is_empty() {
            return bad("imap.host is empty".into());
        }
        // Every phone's password goes to the IMAP server in its LOGIN, as for SMTP.
        if imap_security == Security::None && !is_loopback_host(&self.imap.host) {
            return bad(format!(
                "imap.security = \"none\" would send users' passwords in clear to {}; use \
                 starttls or tls (plain is only for loopback)",
                self.imap.host
            ));
        }
        if !crate::state::is_supported_url(&self.state.url) {
            return bad(format!(
                "state.url {:?} is not supported (use sqlite:PATH or postgres://USER@HOST/DB)",
                crate::state::redacted_url(&self.state.url)
            ));
        }
        if self.push.min_heartbeat_secs > self.push.max_heartbeat_secs {
            return bad("push.min_heartbeat_secs is above push.max_heartbeat_secs".into());
        }
        if self.push.source != PushSource::Imap && self.push.safety_check_secs < 10 {
            return bad("push.safety_check_secs below 10 would keep IMAP busy".into());
        }
        if self.sync.min_wait_secs > self.sync.max_wait_secs {
            return bad("sync.min_wait_secs is above sync.max_wait_secs".into());
        }
        if let Err(e) = crate::directory::Source::parse(&self.directory.source) {
            return bad(e.to_string());
        }
        for sql in &self.directory.sql {
            if let Err(e) = crate::directory::sql::SqlSource::check_config(sql) {
                return bad(e.to_string());
            }
        }
        if let Err(e) = self.sieve.validate() {
            return bad(e);
        }
        for ldap in &self.directory.ldap {
            if let Err(e) = crate::directory::ldap::LdapSource::new(ldap) {
                return bad(e.to_string());
            }
        }
        for dav in &self.directory.dav {
            if let Err(e) = crate::directory::carddav::DavSource::new(dav) {
                return bad(e.to_string());
            }
        }
        self.smtp_config()?;
        self.dav_settings()?;
        if self.server.max_body_bytes < 64 * 1024 {
            return bad("server.max_body_bytes below 64 KiB would refuse ordinary mail".into());
        }
        self.check_limits()?;
        self.check_fetch_limits()?;
        Ok(())
    }

    /// The sizes a request may fetch: large enough for ordinary mail, small enough that an
    /// IMAP partial fetch (a 32-bit length) can ask for them.
    fn check_fetch_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.item_operations_per_request == 0 {
            return Err(ConfigError::Invalid(
                "limits.item_operations_per_request must be at least 1".into(),
            ));
        }
        if l.item_operations_response_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "limits.item_operations_response_bytes below 64 KiB would refuse most fetches"
                    .into(),
            ));
        }
        if !(1024 * 1024..=1024 * 1024 * 1024).contains(&l.max_message_bytes) {
            return Err(ConfigError::Invalid(
                "limits.max_message_bytes must be between 1 MiB and 1 GiB".into(),
            ));
        }
        Ok(())
    }

    /// The longest IMAP response accepted: the largest message fetched whole, and room for
    /// what comes with it (flags, dates) or in other long responses (a SEARCH of a million
    /// UIDs is about 7 MB).
    pub fn imap_response_limit(&self) -> usize {
        self.limits.max_message_bytes + 8 * 1024 * 1024
    }

    /// `[limits]` and the throttling part of `[auth]`: zero would turn a limit into a ban.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let (a, l) = (&self.auth, &self.limits);
        let count = |n: usize| n as u64;
        let zero = [
            (
                "auth.user_failures_before_lockout",
                u64::from(a.user_failures_before_lockout),
            ),
            ("auth.lockout_secs", a.lockout_secs),
            (
                "auth.logins_in_flight_per_user",
                count(a.logins_in_flight_per_user),
            ),
            (
                "auth.logins_in_flight_per_network",
                count(a.logins_in_flight_per_network),
            ),
            ("limits.max_connections", count(l.max_connections)),
            ("limits.header_timeout_secs", l.header_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.body_timeout_secs", l.body_timeout_secs),
            (
                "limits.held_requests_per_user",
                count(l.held_requests_per_user),
            ),
            (
                "limits.held_requests_per_address",
                count(l.held_requests_per_address),
            ),
            ("limits.devices_per_user", count(l.devices_per_user)),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
        }
        // Many phones of a company share one NAT address: a network must be allowed more
        // failures than any one of its users.
        if a.network_failures_before_lockout < a.user_failures_before_lockout {
            return Err(ConfigError::Invalid(
                "auth.network_failures_before_lockout is below auth.user_failures_before_lockout"
                    .into(),
            ));
        }
        Ok(())
    }

    fn imap_security(&self) -> Result<Security, ConfigError> {
        match self.imap.security.to_ascii_lowercase().as_str() {
            "none" | "plain" => Ok(Security::None),
            "starttls" => Ok(Security::StartTls),
            "tls" | "ssl" | "implicit" => Ok(Security::Tls),
            other => Err(ConfigError::Invalid(format!(
                "imap.security must be none, starttls or tls, not {other:?}"
            ))),
        }
    }

    /// The IMAP client settings.
    /// The DAV client's settings; `None` when no DAV server is configured.
    pub fn dav_settings(&self) -> Result<Option<crate::dav::DavSettings>, ConfigError> {
        let d = &self.dav;
        let url = d.url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
            _ => return bad(format!("dav.url must be an http(s) URL, not {url:?}")),
        };
        // The phone's password goes to the DAV server in every request.
        if parsed.scheme() == "http" && !is_loopback_host(parsed.host_str().unwrap_or("")) {
            return bad(format!(
                "dav.url {url:?} would send users' passwords in clear; use https (http is only \
                 for loopback)"
            ));
        }
        if d.timeout_secs == 0 || d.max_response_bytes < 64 * 1024 {
            return bad(
                "dav.timeout_secs must be above 0 and dav.max_response_bytes at least 64 KiB"
                    .into(),
            );
        }
        if d.photo_max_bytes > crate::contacts::DEFAULT_PICTURE_MAX_BYTES {
            return bad(format!(
                "dav.photo_max_bytes above {} cannot be sent (EAS allows 48 KB of base64)",
                crate::contacts::DEFAULT_PICTURE_MAX_BYTES
            ));
        }
        if d.push_check_secs == 0 || d.push_safety_check_secs == 0 {
            return bad(
                "dav.push_check_secs and dav.push_safety_check_secs must be above 0".into(),
            );
        }
        let mut s = crate::dav::DavSettings::new(parsed);
        s.user_template = d.user_template.clone().filter(|t| !t.is_empty());
        s.timeout = Duration::from_secs(d.timeout_secs);
        s.max_response_bytes = d.max_response_bytes;
        s.tls_insecure = d.tls_insecure;
        Ok(Some(s))
    }

    pub fn imap_config(&self) -> ImapConfig {
        ImapConfig {
            host: self.imap.host.clone(),
            port: self.imap.port,
            security: self.imap_security().unwrap_or(Security::None),
            tls_insecure: self.imap.tls_insecure,
            timeout: Duration::from_secs(self.imap.timeout_secs.max(1)),
        }
    }

    /// The SMTP submission settings.
    pub fn smtp_config(&self) -> Result<crate::smtp::SmtpConfig, ConfigError> {
        use crate::smtp::{SmtpAuth, SmtpSecurity};
        let s = &self.smtp;
        let security = match s.security.to_ascii_lowercase().as_str() {
            "none" | "plain" => SmtpSecurity::None,
            "starttls" => SmtpSecurity::StartTls,
            "tls" | "ssl" | "implicit" => SmtpSecurity::Tls,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "smtp.security must be none, starttls or tls, not {other:?}"
                )));
            }
        };
        let auth = match s.auth.to_ascii_lowercase().as_str() {
            "user" => SmtpAuth::User,
            "relay" | "none" => SmtpAuth::Relay,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "smtp.auth must be user or relay, not {other:?}"
                )));
            }
        };
        if s.host.is_empty() {
            return Err(ConfigError::Invalid("smtp.host is empty".into()));
        }
        if auth == SmtpAuth::User && security == SmtpSecurity::None && !is_loopback_host(&s.host) {
            return Err(ConfigError::Invalid(format!(
                "smtp.security = \"none\" would send users' passwords in clear to {}; use \
                 starttls or tls (plain is only for loopback)",
                s.host
            )));
        }
        Ok(crate::smtp::SmtpConfig {
            host: s.host.clone(),
            port: s.port,
            security,
            tls_insecure: s.tls_insecure,
            auth,
            timeout: Duration::from_secs(s.timeout_secs.max(1)),
            hello_name: self.hello_name(),
        })
    }

    /// The name the gateway greets SMTP servers with: the host of `server.public_url`.
    fn hello_name(&self) -> String {
        let url = self.server.public_url.trim_end_matches('/');
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        let host = host.split(['/', ':']).next().unwrap_or("");
        if host.is_empty() {
            "localhost".into()
        } else {
            host.to_owned()
        }
    }

    /// The ActiveSync endpoint URL handed out by Autodiscover.
    pub fn activesync_url(&self) -> String {
        format!(
            "{}/Microsoft-Server-ActiveSync",
            self.server.public_url.trim_end_matches('/')
        )
    }
}

/// A host name that can only mean this machine.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/eas-gateway.example.toml");
        let config = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(config.imap.security, "starttls");
        assert!(config.provision.required);
    }

    #[test]
    fn overrides_win_and_mistakes_are_named() {
        let o = Overrides {
            imap_port: Some(1143),
            imap_tls: Some("tls".into()),
            ..Overrides::default()
        };
        let c = Config::load(None, &o).unwrap();
        assert_eq!(c.imap.port, 1143);
        assert!(matches!(c.imap_config().security, Security::Tls));

        let o = Overrides {
            imap_tls: Some("maybe".into()),
            ..Overrides::default()
        };
        let err = Config::load(None, &o).unwrap_err().to_string();
        assert!(err.contains("imap.security"), "{err}");

        let o = Overrides {
            tls_cert: Some("c.pem".into()),
            ..Overrides::default()
        };
        assert!(Config::load(None, &o).is_err());
    }

    #[test]
    fn dav_settings_are_checked() {
        let mut c = Config::default();
        assert!(c.dav_settings().unwrap().is_none());
        c.dav.url = "http://dav.example.com/".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("in clear"), "{err}");
        c.dav.url = "http://127.0.0.1:5232/".into();
        c.dav.user_template = Some("%l".into());
        let s = c.dav_settings().unwrap().unwrap();
        assert_eq!(s.user_name("alice@example.com"), "alice");
        c.dav.url = "https://dav.example.com/dav/".into();
        c.dav.photo_max_bytes = 1 << 20;
        assert!(c.dav_settings().is_err());
        c.dav.photo_max_bytes = 1000;
        c.dav.url = "dav.example.com".into();
        assert!(c.dav_settings().is_err());
    }

    #[test]
    fn smtp_settings_are_checked() {
        let mut c = Config::default();
        let smtp = c.smtp_config().unwrap();
        assert_eq!(
            (smtp.port, smtp.security),
            (587, crate::smtp::SmtpSecurity::StartTls)
        );
        assert_eq!(smtp.hello_name, "localhost");
        c.server.public_url = "https://mail.example.com:8443/".into();
        assert_eq!(c.smtp_config().unwrap().hello_name, "mail.example.com");
        c.smtp.security = "none".into();
        assert!(c.validate().is_ok(), "plain is fine on loopback");
        c.smtp.host = "smtp.example.com".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("in clear"), "{err}");
        c.smtp.auth = "relay".into();
        assert!(c.validate().is_ok(), "a relay gets no password");
        c.smtp.auth = "maybe".into();
        assert!(c.validate().unwrap_err().to_string().contains("smtp.auth"));
    }

    #[test]
    fn plaintext_imap_only_on_loopback() {
        let mut c = Config::default();
        c.imap.security = "none".into();
        for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
            c.imap.host = host.into();
            assert!(c.validate().is_ok(), "{host}");
        }
        c.imap.host = "imap.example.com".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("in clear") && err.contains("imap.security"),
            "{err}"
        );
        c.imap.security = "starttls".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn push_source_names() {
        let c: Config = toml::from_str("[push]\nsource = \"dovecot-events\"\n").unwrap();
        assert_eq!(c.push.source, PushSource::DovecotEvents);
        let c: Config = toml::from_str("[push]\nsource = \"both\"\n").unwrap();
        assert_eq!(c.push.source, PushSource::Both);
        assert_eq!(Config::default().push.source, PushSource::Imap);
        assert!(toml::from_str::<Config>("[push]\nsource = \"lua\"\n").is_err());
    }

    #[test]
    fn limits_that_would_ban_everyone_are_refused() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.limits.held_requests_per_user = 0;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("limits.held_requests_per_user"), "{err}");
        let mut c = Config::default();
        c.auth.network_failures_before_lockout = 3;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("network_failures_before_lockout"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let c: Result<Config, _> = toml::from_str("[server]\nlisten_on = \"x\"\n");
        assert!(c.is_err());
    }

    #[test]
    fn fetch_limits_are_checked() {
        let mut c = Config::default();
        assert_eq!(c.imap_response_limit(), 72 * 1024 * 1024);
        c.limits.max_message_bytes = 1024;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_message_bytes")
        );
        c.limits.max_message_bytes = 2 * 1024 * 1024 * 1024;
        assert!(
            c.validate().is_err(),
            "more than a partial FETCH can ask for"
        );
        c.limits.max_message_bytes = 1024 * 1024;
        c.limits.item_operations_per_request = 0;
        assert!(c.validate().is_err());
        c.limits.item_operations_per_request = 1;
        c.limits.item_operations_response_bytes = 1000;
        assert!(c.validate().is_err());
        c.limits.item_operations_response_bytes = 64 * 1024;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn policy_fingerprint_changes_with_the_policy() {
        let a = Policy::default();
        let b = Policy {
            require_password: true,
            ..Policy::default()
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Policy::default().fingerprint());
    }
}

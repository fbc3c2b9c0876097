//! Out of Office as a Sieve vacation rule, kept on the mail server over ManageSieve
//! (RFC 5804; Dovecot Pigeonhole's `managesieve` service), logged in as the user.
//!
//! Owns the ManageSieve client ([`managesieve`]), the gateway's section of the user's active
//! script ([`script`]: written, found, replaced and removed without touching a byte of the
//! user's own rules) and the two operations the Settings command needs: [`get`] and [`set`].
//! Knows nothing of EAS elements or HTTP: the settings come in as an [`OutOfOffice`]. Must not
//! touch any script but the active one, or the one it creates when the user has none.
//!
//! `set` changes the server in one PUTSCRIPT of the whole script, after a CHECKSCRIPT, so a
//! refusal (syntax, quota) leaves the old script in place: nothing is ever half-written.

pub mod managesieve;
pub mod script;

use serde::Deserialize;

/// `[sieve]`: where Out of Office is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SieveConfig {
    /// Off: Settings' Oof answers status 7 ("denied by policy"), as before.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// `none` (plain, for loopback), `starttls` or `tls`.
    pub security: String,
    /// Accept any certificate (self-signed test servers only).
    pub tls_insecure: bool,
    pub timeout_secs: u64,
    /// The script created (and made active) for a user who has no active script.
    pub script_name: String,
    /// Sender domains that count as "internal"; empty: the user's own address's domain.
    pub internal_domains: Vec<String>,
}

impl Default for SieveConfig {
    fn default() -> Self {
        SieveConfig {
            enabled: false,
            host: "127.0.0.1".into(),
            port: 4190,
            security: "starttls".into(),
            tls_insecure: false,
            timeout_secs: 10,
            script_name: "eas-gateway".into(),
            internal_domains: Vec::new(),
        }
    }
}

impl SieveConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !["none", "starttls", "tls"].contains(&self.security.as_str()) {
            return Err(format!(
                "sieve.security must be none, starttls or tls, not {:?}",
                self.security
            ));
        }
        if self.script_name.is_empty() || self.script_name.contains(['/', '\r', '\n']) {
            return Err("sieve.script_name must be a plain name".into());
        }
        Ok(())
    }
}

/// Why the out-of-office rule could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SieveError {
    #[error("cannot connect to ManageSieve: {0}")]
    Connect(std::io::Error),
    #[error("ManageSieve connection: {0}")]
    Io(std::io::Error),
    #[error("ManageSieve TLS: {0}")]
    Tls(String),
    #[error("ManageSieve did not answer in time")]
    Timeout,
    #[error("ManageSieve refused the log-in: {0}")]
    Auth(String),
    #[error("ManageSieve answered something unexpected: {0}")]
    Protocol(String),
    /// The server would not take the script (its text says why).
    #[error("ManageSieve refused: {0}")]
    Refused(String),
    #[error("the Sieve storage is full: {0}")]
    Quota(String),
    #[error("the Sieve script cannot be read: {0}")]
    Script(String),
    #[error("the server's Sieve has no {0:?} extension")]
    Unsupported(String),
}

impl SieveError {
    /// The server could not be reached or did not answer: worth retrying later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            SieveError::Connect(_) | SieveError::Io(_) | SieveError::Timeout | SieveError::Tls(_)
        )
    }
}

/// When replies go out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Disabled,
    Global,
    /// UTC, `YYYY-MM-DDTHH:MM:SS`; replies from `start` until before `end`.
    Scheduled {
        start: String,
        end: String,
    },
}

/// One audience's reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub enabled: bool,
    pub html: bool,
    pub text: String,
}

/// Out-of-office settings, one message per audience as Exchange has them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutOfOffice {
    pub state: State,
    /// Senders of the user's own domain(s).
    pub internal: Message,
    /// Other senders in the user's contacts: Sieve cannot tell them apart, so this message is
    /// kept for Get but never sent (see docs/directory-and-oof.md).
    pub known_external: Message,
    /// Every other sender.
    pub unknown_external: Message,
}

/// What a Set changes: the parts left `None` keep what is active now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub state: Option<State>,
    pub internal: Option<Message>,
    pub known_external: Option<Message>,
    pub unknown_external: Option<Message>,
}

impl Update {
    fn apply(&self, mut current: OutOfOffice) -> OutOfOffice {
        if let Some(s) = &self.state {
            current.state = s.clone();
        }
        for (new, slot) in [
            (&self.internal, &mut current.internal),
            (&self.known_external, &mut current.known_external),
            (&self.unknown_external, &mut current.unknown_external),
        ] {
            if let Some(m) = new {
                *slot = m.clone();
            }
        }
        current
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, the only time form the section writes.
pub fn is_plain_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// The user's address and login, as far as out-of-office needs them.
pub struct Account<'a> {
    pub login: &'a str,
    pub password: &'a str,
    pub email: &'a str,
}

/// What is active now: the gateway's section, else a vacation rule of the user's own, else
/// off.
pub async fn get(config: &SieveConfig, account: &Account<'_>) -> Result<OutOfOffice, SieveError> {
    let mut client = managesieve::Client::login(config, account.login, account.password).await?;
    let result = async {
        let scripts = client.list().await?;
        match scripts.into_iter().find(|(_, active)| *active) {
            Some((name, _)) => script::read(&client.get(&name).await?),
            None => Ok(OutOfOffice::default()),
        }
    }
    .await;
    client.logout().await;
    result
}

/// Writes the settings into the active script (creating and activating `script_name` when
/// there is none). Turning it off removes the section, and the script the gateway created
/// is deactivated and deleted again once nothing of the user's is in it.
pub async fn set(
    config: &SieveConfig,
    account: &Account<'_>,
    update: &Update,
) -> Result<(), SieveError> {
    if let Some(State::Scheduled { start, end }) = &update.state {
        if !is_plain_utc(start) || !is_plain_utc(end) {
            return Err(SieveError::Script(
                "start and end must be UTC date-times".into(),
            ));
        }
    }
    let mut client = managesieve::Client::login(config, account.login, account.password).await?;
    let result = write(&mut client, config, account, update).await;
    client.logout().await;
    result
}

async fn write(
    client: &mut managesieve::Client,
    config: &SieveConfig,
    account: &Account<'_>,
    update: &Update,
) -> Result<(), SieveError> {
    let scripts = client.list().await?;
    let active = scripts.iter().find(|(_, a)| *a).map(|(n, _)| n.clone());
    let old = match &active {
        Some(name) => Some(client.get(name).await?),
        None => None,
    };
    let current = old
        .as_deref()
        .filter(|s| script::find_section(s).is_some())
        .and_then(|s| script::read(s).ok())
        .unwrap_or_default();
    let oof = &update.apply(current);
    let mut needed = vec!["vacation"];
    if matches!(oof.state, State::Scheduled { .. }) {
        needed.extend(["date", "relational"]);
    }
    if oof.state != State::Disabled {
        if let Some(missing) = needed
            .iter()
            .find(|x| !client.extensions.is_empty() && !client.extensions.iter().any(|e| e == *x))
        {
            return Err(SieveError::Unsupported((*missing).to_owned()));
        }
    }
    let domains = if config.internal_domains.is_empty() {
        account
            .email
            .rsplit_once('@')
            .map(|(_, d)| vec![d.to_ascii_lowercase()])
            .unwrap_or_default()
    } else {
        config.internal_domains.clone()
    };
    let mut addresses = vec![account.email.to_owned()];
    if account.login.contains('@') && !account.login.eq_ignore_ascii_case(account.email) {
        addresses.push(account.login.to_owned());
    }
    let section = script::section(oof, &domains, &addresses);
    match (active, old) {
        (Some(name), Some(old)) => {
            let new = script::with_section(&old, &section);
            if new == old {
                return Ok(());
            }
            let ours_alone = name == config.script_name && new.trim().is_empty();
            if ours_alone {
                client.set_active("").await?;
                return client.delete(&name).await;
            }
            client.check_script(&new).await?;
            client.put(&name, &new).await
        }
        _ if section.is_empty() => Ok(()),
        _ => {
            client.check_script(&section).await?;
            // A script of that name that is not active is the user's: keep its rules.
            let existing = scripts.iter().any(|(n, _)| *n == config.script_name);
            let base = if existing {
                client.get(&config.script_name).await?
            } else {
                String::new()
            };
            let new = script::with_section(&base, &section);
            client.put(&config.script_name, &new).await?;
            client.set_active(&config.script_name).await
        }
    }
}

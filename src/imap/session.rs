//! [`Session`]: one authenticated-or-not IMAP connection and the commands we send on it.
//!
//! Every command goes through [`Session::run`], which tags it, sends it (waiting for the
//! server's `+` before a synchronizing literal), collects the untagged responses until the
//! tagged completion, and turns NO/BAD into [`ImapError`]. The command methods then read
//! what they need from the collected responses. Untagged responses the command does not ask
//! for (a concurrent delivery's `* 5 EXISTS`) are dropped for now; change detection will
//! collect them.

use tracing::{debug, trace};

use super::capability::Capabilities;
use super::command::{self, Command, Part};
use super::connection::Connection;
use super::error::ImapError;
use super::mailbox::{Mailbox, MailboxStatus};
use super::response::{Code, Response, Status, Untagged};
use super::{ImapConfig, Security};

/// One connection to the IMAP server. Commands run one at a time (`&mut self`).
pub struct Session {
    conn: Connection,
    caps: Capabilities,
    next_tag: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("capabilities", &self.caps)
            .field("next_tag", &self.next_tag)
            .finish_non_exhaustive()
    }
}

/// What a successful command left behind.
struct Done {
    untagged: Vec<Untagged>,
    code: Option<Code>,
}

fn uid_validity_of(items: &[(String, u64)]) -> Option<u32> {
    items
        .iter()
        .find(|(name, _)| name == "UIDVALIDITY")
        .and_then(|(_, v)| u32::try_from(*v).ok())
}

/// NO codes after LOGIN that mean "server trouble", not "wrong password" (RFC 5530).
const TEMPORARY_LOGIN_FAILURES: [&str; 4] = ["UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE"];

impl Session {
    /// Connects, reads the greeting, upgrades with STARTTLS if configured, and learns the
    /// capabilities (from the greeting's `[CAPABILITY]` code, else with CAPABILITY).
    pub async fn connect(cfg: &ImapConfig) -> Result<Session, ImapError> {
        let conn = Connection::open(
            &cfg.host,
            cfg.port,
            cfg.security == Security::Tls,
            cfg.tls_insecure,
            cfg.timeout,
        )
        .await?;
        let mut session = Session {
            conn,
            caps: Capabilities::default(),
            next_tag: 1,
        };
        match session.conn.read_response().await? {
            Response::Untagged(Untagged::Status {
                status: Status::Ok,
                code,
                ..
            })
            | Response::Untagged(Untagged::PreAuth { code, .. }) => {
                if let Some(Code::Capability(caps)) = code {
                    session.caps = Capabilities::new(caps);
                }
            }
            Response::Untagged(Untagged::Bye { text, .. }) => return Err(ImapError::Bye { text }),
            _ => return Err(ImapError::Protocol("unexpected greeting".into())),
        }
        if cfg.security == Security::StartTls {
            if session.caps.is_empty() {
                session.refresh_capabilities().await?;
            }
            if !session.caps.has("STARTTLS") {
                return Err(ImapError::StartTlsUnavailable);
            }
            session.run(Command::new("STARTTLS")).await?;
            session.conn.start_tls(&cfg.host, cfg.tls_insecure).await?;
            // Capabilities seen before TLS may have been forged; ask again (RFC 3501 §6.2.1).
            session.caps = Capabilities::default();
        }
        if session.caps.is_empty() {
            session.refresh_capabilities().await?;
        }
        Ok(session)
    }

    /// What the server currently says it supports.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// LOGIN with the user's password, sent as an atom, quoted string or literal as needed.
    /// Wrong credentials are [`ImapError::LoginRejected`]. Afterwards the capabilities are
    /// the post-login ones.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ImapError> {
        if self.caps.has("LOGINDISABLED") {
            return Err(ImapError::LoginDisabled);
        }
        let cmd = Command::new("LOGIN")
            .astring(user.as_bytes())
            .astring(password.as_bytes());
        let before = self.caps.clone();
        self.caps = Capabilities::default();
        match self.run(cmd).await {
            Ok(_) => {
                if self.caps.is_empty() {
                    self.refresh_capabilities().await?;
                }
                Ok(())
            }
            Err(ImapError::No { code, text }) => {
                self.caps = before;
                match code {
                    Some(c) if TEMPORARY_LOGIN_FAILURES.contains(&c.as_str()) => {
                        Err(ImapError::No {
                            code: Some(c),
                            text,
                        })
                    }
                    code => {
                        debug!(?code, "LOGIN rejected");
                        Err(ImapError::LoginRejected)
                    }
                }
            }
            Err(e) => {
                self.caps = before;
                Err(e)
            }
        }
    }

    /// All mailboxes (`LIST "" "*"`), with special-use attributes when the server has
    /// SPECIAL-USE (RFC 6154).
    pub async fn list(&mut self) -> Result<Vec<Mailbox>, ImapError> {
        let mut cmd = Command::new("LIST").mailbox("").raw("*");
        if self.caps.has("SPECIAL-USE") {
            cmd = cmd.raw("RETURN (SPECIAL-USE)");
        }
        let done = self.run(cmd).await?;
        Ok(done
            .untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::List(mb) => Some(mb),
                _ => None,
            })
            .collect())
    }

    /// All mailboxes, each with its UIDVALIDITY (`None` for mailboxes that cannot be
    /// selected, or whose status the server would not give). One command with LIST-STATUS
    /// (RFC 5819), else LIST followed by one STATUS per selectable mailbox.
    pub async fn list_with_uidvalidity(
        &mut self,
    ) -> Result<Vec<(Mailbox, Option<u32>)>, ImapError> {
        if !self.caps.has("LIST-STATUS") {
            let mut out = Vec::new();
            for mb in self.list().await? {
                let validity = if mb.is_selectable() {
                    match self.status(&mb.name, &["UIDVALIDITY"]).await {
                        Ok(items) => uid_validity_of(&items),
                        // Gone since LIST, or not accessible: report it without one.
                        Err(ImapError::No { .. }) => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
                out.push((mb, validity));
            }
            return Ok(out);
        }
        let mut cmd = Command::new("LIST").mailbox("").raw("*");
        cmd = if self.caps.has("SPECIAL-USE") {
            cmd.raw("RETURN (SPECIAL-USE STATUS (UIDVALIDITY))")
        } else {
            cmd.raw("RETURN (STATUS (UIDVALIDITY))")
        };
        let done = self.run(cmd).await?;
        let mut mailboxes = Vec::new();
        let mut validity = std::collections::HashMap::new();
        for u in done.untagged {
            match u {
                Untagged::List(mb) => mailboxes.push(mb),
                Untagged::MailboxStatus {
                    raw_name, items, ..
                } => {
                    validity.insert(raw_name, uid_validity_of(&items));
                }
                _ => {}
            }
        }
        Ok(mailboxes
            .into_iter()
            .map(|mb| {
                let v = validity.get(&mb.raw_name).copied().flatten();
                (mb, v)
            })
            .collect())
    }

    /// `STATUS mailbox (items…)`, e.g. `status("INBOX", &["UIDNEXT", "HIGHESTMODSEQ"])`;
    /// returns the items the server reported, names in upper case.
    pub async fn status(
        &mut self,
        mailbox: &str,
        items: &[&str],
    ) -> Result<Vec<(String, u64)>, ImapError> {
        for item in items {
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(ImapError::InvalidArgument(format!(
                    "not a STATUS item: {item:?}"
                )));
            }
        }
        let cmd = Command::new("STATUS")
            .mailbox(mailbox)
            .raw(&format!("({})", items.join(" ")));
        let done = self.run(cmd).await?;
        Ok(done
            .untagged
            .into_iter()
            .find_map(|u| match u {
                Untagged::MailboxStatus { items, .. } => Some(items),
                _ => None,
            })
            .unwrap_or_default())
    }

    pub async fn create(&mut self, name: &str) -> Result<(), ImapError> {
        self.run(Command::new("CREATE").mailbox(name)).await?;
        Ok(())
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), ImapError> {
        self.run(Command::new("RENAME").mailbox(from).mailbox(to))
            .await?;
        Ok(())
    }

    pub async fn delete(&mut self, name: &str) -> Result<(), ImapError> {
        self.run(Command::new("DELETE").mailbox(name)).await?;
        Ok(())
    }

    pub async fn subscribe(&mut self, name: &str) -> Result<(), ImapError> {
        self.run(Command::new("SUBSCRIBE").mailbox(name)).await?;
        Ok(())
    }

    /// Stores `message` in `mailbox` with `flags` (e.g. `["\\Seen"]`). Returns its UID when
    /// the server reports it (UIDPLUS `[APPENDUID]`).
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<Option<u32>, ImapError> {
        let flags = flags
            .iter()
            .map(|f| command::check_flag(f))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cmd = Command::new("APPEND").mailbox(mailbox);
        if !flags.is_empty() {
            cmd = cmd.raw(&format!("({})", flags.join(" ")));
        }
        let done = self.run(cmd.literal(message)).await?;
        Ok(match done.code {
            Some(Code::AppendUid { uids, .. }) => uids.parse().ok(),
            _ => None,
        })
    }

    /// Opens `mailbox` read-write. With CONDSTORE the server is asked for HIGHESTMODSEQ
    /// (`SELECT … (CONDSTORE)`), which also makes later FETCHes report MODSEQ.
    pub async fn select(&mut self, mailbox: &str) -> Result<MailboxStatus, ImapError> {
        let mut cmd = Command::new("SELECT").mailbox(mailbox);
        if self.caps.has("CONDSTORE") {
            cmd = cmd.raw("(CONDSTORE)");
        }
        let done = self.run(cmd).await?;
        let mut status = MailboxStatus {
            exists: 0,
            recent: 0,
            uid_validity: 0,
            uid_next: None,
            highest_modseq: None,
            flags: Vec::new(),
            permanent_flags: Vec::new(),
            read_only: matches!(done.code, Some(Code::ReadOnly)),
        };
        let mut uid_validity = None;
        for u in done.untagged {
            match u {
                Untagged::Exists(n) => status.exists = n,
                Untagged::Recent(n) => status.recent = n,
                Untagged::Flags(f) => status.flags = f,
                Untagged::Status {
                    code: Some(code), ..
                } => match code {
                    Code::UidValidity(v) => uid_validity = Some(v),
                    Code::UidNext(n) => status.uid_next = Some(n),
                    Code::HighestModSeq(m) => status.highest_modseq = Some(m),
                    Code::NoModSeq => status.highest_modseq = None,
                    Code::PermanentFlags(f) => status.permanent_flags = f,
                    _ => {}
                },
                _ => {}
            }
        }
        // Without UIDVALIDITY no UID we store could ever be trusted (RFC 3501 requires it).
        status.uid_validity = uid_validity
            .ok_or_else(|| ImapError::Protocol("SELECT did not report UIDVALIDITY".into()))?;
        Ok(status)
    }

    /// `UID STORE uids item`, e.g. `uid_store("4:7", "+FLAGS.SILENT (\\Seen)")`.
    pub async fn uid_store(&mut self, uids: &str, item: &str) -> Result<(), ImapError> {
        let cmd = Command::new("UID STORE")
            .raw(command::check_set(uids)?)
            .raw(command::check_verbatim("STORE item", item)?);
        self.run(cmd).await?;
        Ok(())
    }

    /// Removes the messages flagged `\Deleted` from the selected mailbox.
    pub async fn expunge(&mut self) -> Result<(), ImapError> {
        self.run(Command::new("EXPUNGE")).await?;
        Ok(())
    }

    /// Does nothing but gives the server a chance to report changes; checks the connection.
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        self.run(Command::new("NOOP")).await?;
        Ok(())
    }

    /// Ends the session politely (LOGOUT, then closes the connection).
    pub async fn logout(mut self) -> Result<(), ImapError> {
        let result = match self.run(Command::new("LOGOUT")).await {
            // The server says BYE before completing LOGOUT; closing right after it is fine.
            Ok(_) | Err(ImapError::Bye { .. }) => Ok(()),
            Err(e) => Err(e),
        };
        self.conn.shutdown().await;
        result
    }

    async fn refresh_capabilities(&mut self) -> Result<(), ImapError> {
        // `run` replaces the capabilities when it sees `* CAPABILITY`.
        self.run(Command::new("CAPABILITY")).await?;
        Ok(())
    }

    fn tag(&mut self) -> String {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        tag
    }

    /// Sends `cmd` and reads responses until its tagged completion.
    async fn run(&mut self, cmd: Command<'_>) -> Result<Done, ImapError> {
        let tag = self.tag();
        // Only the command name and tag are logged: arguments can be passwords or names.
        debug!(tag, cmd = cmd.name, "imap command");
        let mut untagged = Vec::new();
        let mut bye = None;
        let result = self.exchange(&tag, cmd, &mut untagged, &mut bye).await;
        match result {
            Ok((status, code, text)) => {
                trace!(tag, ?status, "imap completion");
                match status {
                    Status::Ok => Ok(Done { untagged, code }),
                    Status::No => Err(ImapError::No {
                        code: code.map(|c| c.name().to_owned()),
                        text,
                    }),
                    Status::Bad => Err(ImapError::Bad { text }),
                }
            }
            // The connection ended after a BYE: report the server's reason, not the EOF.
            Err(ImapError::Io(_)) if bye.is_some() => Err(ImapError::Bye {
                text: bye.unwrap_or_default(),
            }),
            Err(e) => Err(e),
        }
    }

    async fn exchange(
        &mut self,
        tag: &str,
        cmd: Command<'_>,
        untagged: &mut Vec<Untagged>,
        bye: &mut Option<String>,
    ) -> Result<(Status, Option<Code>, String), ImapError> {
        let mut out = format!("{tag} ").into_bytes();
        for part in cmd.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(&t),
                Part::Literal(data) => {
                    // LITERAL+ (RFC 7888) lets us send the data without waiting for `+`.
                    let non_sync = self.caps.has("LITERAL+")
                        || (self.caps.has("LITERAL-") && data.len() <= 4096);
                    let plus = if non_sync { "+" } else { "" };
                    out.extend_from_slice(format!("{{{}{plus}}}\r\n", data.len()).as_bytes());
                    self.conn.write(&out).await?;
                    out.clear();
                    // Without LITERAL+, the server must say `+` first; it may refuse instead.
                    if !non_sync && let Some(done) = self.await_continue(tag, untagged, bye).await?
                    {
                        return Ok(done);
                    }
                    self.conn.write(&data).await?;
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        self.conn.write(&out).await?;
        loop {
            match self.conn.read_response().await? {
                Response::Tagged(t) if t.tag == tag => {
                    if let Some(Code::Capability(caps)) = &t.code {
                        self.caps = Capabilities::new(caps.clone());
                    }
                    return Ok((t.status, t.code, t.text));
                }
                Response::Tagged(_) => {
                    return Err(ImapError::Protocol(
                        "completion for a command we did not send".into(),
                    ));
                }
                Response::Continue { .. } => {
                    return Err(ImapError::Protocol(
                        "continuation request where none was expected".into(),
                    ));
                }
                Response::Untagged(u) => self.note(u, untagged, bye),
            }
        }
    }

    /// Reads until the server's `+` for a synchronizing literal. Returns the completion if
    /// the server ends the command instead.
    async fn await_continue(
        &mut self,
        tag: &str,
        untagged: &mut Vec<Untagged>,
        bye: &mut Option<String>,
    ) -> Result<Option<(Status, Option<Code>, String)>, ImapError> {
        loop {
            match self.conn.read_response().await? {
                Response::Continue { .. } => return Ok(None),
                Response::Tagged(t) if t.tag == tag => return Ok(Some((t.status, t.code, t.text))),
                Response::Tagged(_) => {
                    return Err(ImapError::Protocol(
                        "completion for a command we did not send".into(),
                    ));
                }
                Response::Untagged(u) => self.note(u, untagged, bye),
            }
        }
    }

    fn note(&mut self, u: Untagged, untagged: &mut Vec<Untagged>, bye: &mut Option<String>) {
        match &u {
            Untagged::Capability(caps) => self.caps = Capabilities::new(caps.clone()),
            Untagged::Bye { text, .. } => *bye = Some(text.clone()),
            _ => {}
        }
        untagged.push(u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sessions_can_be_shared_between_tasks() {
        assert_send_sync::<Session>();
        assert_send_sync::<ImapError>();
    }

    /// The HTTP layer awaits these inside axum handlers, whose futures must be `Send`.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn futures_are_send(s: &mut Session, cfg: &ImapConfig) {
        assert_send(Session::connect(cfg));
        assert_send(s.login("u", "p"));
        assert_send(s.list());
        assert_send(s.list_with_uidvalidity());
        assert_send(s.append("INBOX", &[], b""));
        assert_send(s.select("INBOX"));
        assert_send(super::super::check_login(cfg, "u", "p"));
    }
}

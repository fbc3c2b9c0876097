//! [`Session`]: one authenticated-or-not IMAP connection, the core of every command, and
//! the commands about the connection and whole mailboxes (LOGIN, LIST, ENABLE, SELECT,
//! EXAMINE, STATUS). Message commands live next to their types: [`super::fetch`],
//! [`super::search`], [`super::store`].
//!
//! Every command goes through [`Session::run_with`], which tags it, sends it (waiting for the
//! server's `+` before a synchronizing literal), hands each untagged response to the
//! command's handler as it arrives, and turns NO/BAD into [`ImapError`]. A handler takes the
//! responses that answer its command (so a FETCH of many messages is turned into typed
//! results one response at a time, never held as a whole response tree) and gives back the
//! rest, which become [`Event`]s for [`Session::take_events`].

use tracing::{debug, trace};

use super::capability::Capabilities;
use super::command::{self, Command, Part};
use super::connection::Connection;
use super::error::ImapError;
use super::event::{self, Event};
use super::fetch::{FetchData, MessageFlags};
use super::mailbox::{Mailbox, MailboxStatus, StatusInfo};
use super::response::{Code, Response, Status, Untagged};
use super::set::SequenceSet;
use super::{ImapConfig, Security};

/// Told each command's name and the time from sending it to its completion (`/metrics`
/// installs it; this module knows nothing of metrics).
static ROUND_TRIP_OBSERVER: std::sync::OnceLock<fn(&'static str, std::time::Duration)> =
    std::sync::OnceLock::new();

/// Installs the round-trip observer; the first one stays.
pub fn observe_round_trips(observer: fn(&'static str, std::time::Duration)) {
    let _ = ROUND_TRIP_OBSERVER.set(observer);
}

/// One connection to the IMAP server. Commands run one at a time (`&mut self`).
pub struct Session {
    pub(super) conn: Connection,
    pub(super) caps: Capabilities,
    next_tag: u32,
    /// Extensions turned on with ENABLE (upper case).
    enabled: Vec<String>,
    /// Unsolicited changes not yet taken by the caller.
    events: Vec<Event>,
}

/// What a command's handler does with one untagged response: `None` when it took it,
/// `Some` to give it back (it then becomes an [`Event`] if it is one).
pub(super) type Handler<'h> = dyn FnMut(Untagged) -> Option<Untagged> + Send + 'h;

/// QRESYNC parameters for [`Session::select_qresync`]: what the caller knew of the mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    /// The UIDVALIDITY the caller's state belongs to. If the mailbox has another one now,
    /// the server ignores the rest and the caller must start over.
    pub uid_validity: u32,
    /// The HIGHESTMODSEQ the caller last saw.
    pub modseq: u64,
    /// The UIDs the caller knows (lets the server limit VANISHED to those); `None` for all.
    pub known_uids: Option<SequenceSet>,
}

/// What a QRESYNC SELECT reported as changed since the caller's mod-sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resync {
    /// UIDs expunged since then (`* VANISHED (EARLIER)`), possibly including UIDs the caller
    /// never knew.
    pub vanished: SequenceSet,
    /// Messages whose flags changed (or that are new) since then.
    pub changed: Vec<MessageFlags>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("capabilities", &self.caps)
            .field("next_tag", &self.next_tag)
            .finish_non_exhaustive()
    }
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
            enabled: Vec::new(),
            events: Vec::new(),
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

    /// Refuse any response longer than `bytes` with [`ImapError::TooLarge`] (the default is
    /// [`super::frame::MAX_RESPONSE_BYTES`]). A caller that never fetches more than N bytes
    /// in one response sets a little over N, so a server cannot make it buffer more.
    pub fn set_max_response_bytes(&mut self, bytes: usize) {
        self.conn.set_max_response(bytes);
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
        let mut out = Vec::new();
        self.run_with(cmd, &mut |u| match u {
            Untagged::List(mb) => {
                out.push(mb);
                None
            }
            u => Some(u),
        })
        .await?;
        Ok(out)
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
        let mut mailboxes = Vec::new();
        let mut validity = std::collections::HashMap::new();
        self.run_with(cmd, &mut |u| match u {
            Untagged::List(mb) => {
                mailboxes.push(mb);
                None
            }
            Untagged::MailboxStatus {
                raw_name, items, ..
            } => {
                validity.insert(raw_name, uid_validity_of(&items));
                None
            }
            u => Some(u),
        })
        .await?;
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
        let mut found = None;
        // With NOTIFY, STATUS responses about other mailboxes can arrive in the middle; only
        // the one naming this mailbox answers (the others become events).
        let wanted = |name: &str| {
            name == mailbox
                || (name.eq_ignore_ascii_case("INBOX") && mailbox.eq_ignore_ascii_case("INBOX"))
        };
        self.run_with(cmd, &mut |u| match u {
            Untagged::MailboxStatus { name, items, .. } if found.is_none() && wanted(&name) => {
                found = Some(items);
                None
            }
            u => Some(u),
        })
        .await?;
        Ok(found.unwrap_or_default())
    }

    /// STATUS with the items a sync needs (MESSAGES, UIDNEXT, UIDVALIDITY, UNSEEN, and
    /// HIGHESTMODSEQ with CONDSTORE): tells "nothing changed" without selecting.
    pub async fn mailbox_status(&mut self, mailbox: &str) -> Result<StatusInfo, ImapError> {
        let mut items = vec!["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"];
        let condstore = self.caps.has("CONDSTORE");
        if condstore {
            items.push("HIGHESTMODSEQ");
        }
        let mut info = StatusInfo::default();
        for (name, value) in self.status(mailbox, &items).await? {
            let small = u32::try_from(value).unwrap_or(u32::MAX);
            match name.as_str() {
                "MESSAGES" => info.messages = small,
                "UIDNEXT" => info.uid_next = small,
                "UIDVALIDITY" => info.uid_validity = small,
                "UNSEEN" => info.unseen = small,
                // 0 is what servers report for a mailbox without mod-sequences.
                "HIGHESTMODSEQ" => info.highest_modseq = (value > 0).then_some(value),
                _ => {}
            }
        }
        Ok(info)
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
        let code = self.run(cmd.literal(message)).await?;
        Ok(match code {
            Some(Code::AppendUid { uids, .. }) if uids.len() == 1 => uids.iter().next(),
            _ => None,
        })
    }

    /// ENABLE (RFC 5161) the named extensions; returns the ones the server turned on. Only
    /// advertised ones are asked for, so an unknown name is skipped rather than refused.
    pub async fn enable(&mut self, extensions: &[&str]) -> Result<Vec<String>, ImapError> {
        let wanted: Vec<&str> = extensions
            .iter()
            .copied()
            .filter(|e| self.caps.has(e) && !self.is_enabled(e))
            .collect();
        if wanted.is_empty() || !self.caps.has("ENABLE") {
            return Ok(Vec::new());
        }
        for e in &wanted {
            command::check_flag(e)?;
        }
        let mut newly = Vec::new();
        self.run_with(
            Command::new("ENABLE").raw(&wanted.join(" ")),
            &mut |u| match u {
                Untagged::Enabled(names) => {
                    newly.extend(names);
                    None
                }
                u => Some(u),
            },
        )
        .await?;
        for n in &newly {
            let upper = n.to_ascii_uppercase();
            if !self.enabled.contains(&upper) {
                self.enabled.push(upper);
            }
        }
        // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
        if self.is_enabled("QRESYNC") && !self.is_enabled("CONDSTORE") {
            self.enabled.push("CONDSTORE".into());
        }
        Ok(newly)
    }

    /// Turns on CONDSTORE and QRESYNC when the server has them; true when QRESYNC is on.
    /// Once it is, expunges arrive as VANISHED (UIDs) rather than EXPUNGE (sequence
    /// numbers), and every FETCH carries the UID.
    pub async fn enable_qresync(&mut self) -> Result<bool, ImapError> {
        self.enable(&["CONDSTORE", "QRESYNC"]).await?;
        Ok(self.is_enabled("QRESYNC"))
    }

    /// Whether ENABLE turned `extension` on in this session.
    pub fn is_enabled(&self, extension: &str) -> bool {
        self.enabled
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension))
    }

    /// Opens `mailbox` read-write. With CONDSTORE the server is asked for HIGHESTMODSEQ
    /// (`SELECT … (CONDSTORE)`), which also makes later FETCHes report MODSEQ.
    pub async fn select(&mut self, mailbox: &str) -> Result<MailboxStatus, ImapError> {
        let params = self.caps.has("CONDSTORE").then(|| "(CONDSTORE)".to_owned());
        Ok(self.open("SELECT", mailbox, params).await?.0)
    }

    /// Opens `mailbox` read-only (EXAMINE): nothing the session does changes it, not even
    /// `\Seen` by fetching a body.
    pub async fn examine(&mut self, mailbox: &str) -> Result<MailboxStatus, ImapError> {
        let params = self.caps.has("CONDSTORE").then(|| "(CONDSTORE)".to_owned());
        Ok(self.open("EXAMINE", mailbox, params).await?.0)
    }

    /// SELECT with QRESYNC (RFC 7162 §3.2.5): opens `mailbox` and, in the same round trip,
    /// learns what changed since `known`: the UIDs expunged since then and the messages
    /// whose flags changed. Enables QRESYNC first if needed.
    ///
    /// If the mailbox's UIDVALIDITY is not `known.uid_validity` any more, the server ignores
    /// the parameters: the returned [`Resync`] is empty and the status shows the new
    /// UIDVALIDITY, so the caller must compare it and start over.
    pub async fn select_qresync(
        &mut self,
        mailbox: &str,
        known: &Qresync,
    ) -> Result<(MailboxStatus, Resync), ImapError> {
        if !self.enable_qresync().await? {
            return Err(ImapError::Unsupported("QRESYNC"));
        }
        let mut params = format!("(QRESYNC ({} {}", known.uid_validity, known.modseq);
        if let Some(uids) = known.known_uids.as_ref().filter(|u| !u.is_empty()) {
            params.push_str(&format!(" {uids}"));
        }
        params.push_str("))");
        self.open("SELECT", mailbox, Some(params)).await
    }

    async fn open(
        &mut self,
        verb: &'static str,
        mailbox: &str,
        params: Option<String>,
    ) -> Result<(MailboxStatus, Resync), ImapError> {
        let mut cmd = Command::new(verb).mailbox(mailbox);
        if let Some(p) = &params {
            cmd = cmd.raw(p);
        }
        let mut status = MailboxStatus {
            exists: 0,
            recent: 0,
            uid_validity: 0,
            uid_next: None,
            highest_modseq: None,
            flags: Vec::new(),
            permanent_flags: Vec::new(),
            read_only: false,
        };
        let mut uid_validity = None;
        let mut resync = Resync::default();
        let code = self
            .run_with(cmd, &mut |u| {
                match u {
                    Untagged::Exists(n) => status.exists = n,
                    Untagged::Recent(n) => status.recent = n,
                    Untagged::Flags(f) => status.flags = f,
                    Untagged::Vanished { uids, .. } => {
                        for (lo, hi) in uids.ranges() {
                            resync.vanished.insert_range(*lo, *hi);
                        }
                    }
                    Untagged::Fetch { seq, items } => {
                        match MessageFlags::from_data(FetchData::from_items(seq, items)) {
                            Some(m) => resync.changed.push(m),
                            None => return None,
                        }
                    }
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
                    u => return Some(u),
                }
                None
            })
            .await?;
        status.read_only = matches!(code, Some(Code::ReadOnly));
        // Without UIDVALIDITY no UID we store could ever be trusted (RFC 3501 requires it).
        status.uid_validity = uid_validity
            .ok_or_else(|| ImapError::Protocol(format!("{verb} did not report UIDVALIDITY")))?;
        // Events from the mailbox we left are meaningless now.
        self.events.clear();
        Ok((status, resync))
    }

    /// `UID STORE uids item`, e.g. `uid_store("4:7", "+FLAGS.SILENT (\\Seen)")`. See
    /// [`Session::uid_store_flags`] for the typed form.
    pub async fn uid_store(&mut self, uids: &str, item: &str) -> Result<(), ImapError> {
        let cmd = Command::new("UID STORE")
            .raw(command::check_set(uids)?)
            .raw(command::check_verbatim("STORE item", item)?);
        self.run(cmd).await?;
        Ok(())
    }

    /// Leaves the selected mailbox without expunging (UNSELECT, RFC 3691), so a kept session
    /// holds no mailbox view that could go stale.
    pub async fn unselect(&mut self) -> Result<(), ImapError> {
        if !self.caps.has("UNSELECT") {
            return Err(ImapError::Unsupported("UNSELECT"));
        }
        self.run(Command::new("UNSELECT")).await?;
        Ok(())
    }

    /// Removes the messages flagged `\Deleted` from the selected mailbox.
    pub async fn expunge(&mut self) -> Result<(), ImapError> {
        self.run(Command::new("EXPUNGE")).await?;
        Ok(())
    }

    /// Does nothing but gives the server a chance to report changes (they become
    /// [`Event`]s); checks the connection.
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        self.run(Command::new("NOOP")).await?;
        Ok(())
    }

    /// The unsolicited changes reported since the last call, oldest first (see
    /// [`super::event`]). Selecting a mailbox discards those of the one before.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub(super) fn note_event(&mut self, e: Event) {
        event::push(&mut self.events, e);
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

    pub(super) fn tag(&mut self) -> String {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        tag
    }

    /// Runs a command whose untagged responses all become events; returns the completion's
    /// response code.
    pub(super) async fn run(&mut self, cmd: Command<'_>) -> Result<Option<Code>, ImapError> {
        self.run_with(cmd, &mut Some).await
    }

    /// Sends `cmd`, passes each untagged response to `on_data` until the tagged completion,
    /// and returns the completion's response code.
    pub(super) async fn run_with(
        &mut self,
        cmd: Command<'_>,
        on_data: &mut Handler<'_>,
    ) -> Result<Option<Code>, ImapError> {
        let tag = self.tag();
        // Only the command name and tag are logged: arguments can be passwords or names.
        debug!(tag, cmd = cmd.name, "imap command");
        let mut bye = None;
        let (name, started) = (cmd.name, std::time::Instant::now());
        let result = self.exchange(&tag, cmd, on_data, &mut bye).await;
        if let Some(observe) = ROUND_TRIP_OBSERVER.get() {
            observe(name, started.elapsed());
        }
        match result {
            Ok((status, code, text)) => {
                trace!(tag, ?status, "imap completion");
                match status {
                    Status::Ok => Ok(code),
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
        on_data: &mut Handler<'_>,
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
                    if !non_sync && let Some(done) = self.await_continue(tag, on_data, bye).await? {
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
                Response::Untagged(u) => self.note(u, on_data, bye),
            }
        }
    }

    /// Reads until the server's `+` for a synchronizing literal. Returns the completion if
    /// the server ends the command instead.
    async fn await_continue(
        &mut self,
        tag: &str,
        on_data: &mut Handler<'_>,
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
                Response::Untagged(u) => self.note(u, on_data, bye),
            }
        }
    }

    fn note(&mut self, u: Untagged, on_data: &mut Handler<'_>, bye: &mut Option<String>) {
        match &u {
            Untagged::Capability(caps) => self.caps = Capabilities::new(caps.clone()),
            Untagged::Bye { text, .. } => *bye = Some(text.clone()),
            _ => {}
        }
        if let Some(rest) = on_data(u)
            && let Some(e) = event::from_untagged(rest)
        {
            event::push(&mut self.events, e);
        }
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
        let all = SequenceSet::all();
        let q = super::super::FetchQuery::new().flags();
        assert_send(s.uid_fetch(&all, &q));
        assert_send(s.uid_fetch_with(&all, &q, |_| {}));
        assert_send(s.uid_fetch_changes(&all, 1));
        assert_send(s.uid_search(&super::super::SearchKey::All));
        assert_send(s.uid_move(&all, "Trash"));
        assert_send(s.select_qresync(
            "INBOX",
            &Qresync {
                uid_validity: 1,
                modseq: 1,
                known_uids: None,
            },
        ));
        assert_send(super::super::check_login(cfg, "u", "p"));
    }
}

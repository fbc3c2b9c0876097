//! Waiting for the server to report changes: NOTIFY (RFC 5465) for every mailbox of the user,
//! and IDLE (RFC 2177), which is how both deliver their news promptly.
//!
//! Owns the IDLE exchange (`IDLE`, `+`, notices, `DONE`, completion). What a notice means for
//! a phone is the push hub's business, not this module's.

use std::future::Future;
use std::time::Duration;

use super::ImapError;
use super::command::Command;
use super::response::{Response, Status, Untagged};
use super::session::Session;

/// Something the server reported while we were idle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A mailbox's counters moved (NOTIFY's STATUS for a mailbox other than the selected
    /// one): mail arrived, was expunged, or (with CONDSTORE) flags changed.
    Mailbox { name: String },
    /// A mailbox was created, deleted or renamed (NOTIFY MailboxName); `name` is its new name.
    Hierarchy { name: String },
    /// The selected mailbox changed (EXISTS, EXPUNGE, VANISHED, FETCH while IDLE).
    Selected,
}

/// How an IDLE ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleEnd {
    /// The server reported something.
    Notices(Vec<Notice>),
    /// `max` passed with nothing to report (re-IDLE before servers' 30-minute limit).
    Quiet,
    /// The caller's `stop` future completed.
    Stopped,
}

impl Session {
    /// Whether the server offers NOTIFY (Dovecot: only with `mailbox_list_index = yes`).
    pub fn has_notify(&self) -> bool {
        self.caps.has("NOTIFY")
    }

    /// `NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName))`: news about
    /// every mailbox of the user, without selecting any. With CONDSTORE enabled, flag changes
    /// in other mailboxes arrive as STATUS with a new HIGHESTMODSEQ.
    pub async fn notify_personal(&mut self) -> Result<(), ImapError> {
        if !self.has_notify() {
            return Err(ImapError::Unsupported("NOTIFY"));
        }
        let cmd = Command::new("NOTIFY")
            .raw("SET (personal (MessageNew MessageExpunge FlagChange MailboxName))");
        self.run(cmd).await?;
        Ok(())
    }

    /// IDLE until the server reports something, `max` passes, or `stop` completes. Returns
    /// after the IDLE is properly ended (DONE and its completion), so the session is ready for
    /// the next command.
    pub async fn idle<S: Future<Output = ()>>(
        &mut self,
        max: Duration,
        stop: S,
    ) -> Result<IdleEnd, ImapError> {
        if !self.caps.has("IDLE") {
            return Err(ImapError::Unsupported("IDLE"));
        }
        let tag = self.tag();
        self.conn
            .write(format!("{tag} IDLE\r\n").as_bytes())
            .await?;
        let mut notices = Vec::new();
        // Until the `+`, anything untagged is news too.
        loop {
            match self.conn.read_response().await? {
                Response::Continue { .. } => break,
                Response::Untagged(u) => collect(u, &mut notices),
                Response::Tagged(t) if t.tag == tag => {
                    return Err(match t.status {
                        Status::Ok => ImapError::Protocol("IDLE completed without waiting".into()),
                        _ => ImapError::Bad { text: t.text },
                    });
                }
                Response::Tagged(_) => {
                    return Err(ImapError::Protocol(
                        "completion for a command we did not send".into(),
                    ));
                }
            }
        }
        let mut end = IdleEnd::Quiet;
        if notices.is_empty() {
            tokio::pin!(stop);
            let deadline = tokio::time::Instant::now() + max;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    r = self.conn.read_response_within(left) => match r {
                        Ok(Response::Untagged(u)) => {
                            collect(u, &mut notices);
                            if !notices.is_empty() {
                                break;
                            }
                        }
                        Ok(_) => return Err(ImapError::Protocol("unexpected response during IDLE".into())),
                        Err(ImapError::Timeout(_)) => break,
                        Err(e) => return Err(e),
                    },
                    _ = &mut stop => {
                        end = IdleEnd::Stopped;
                        break;
                    }
                }
            }
        }
        self.conn.write(b"DONE\r\n").await?;
        loop {
            match self.conn.read_response().await? {
                Response::Tagged(t) if t.tag == tag => break,
                Response::Untagged(u) => collect(u, &mut notices),
                _ => {
                    return Err(ImapError::Protocol(
                        "unexpected response ending IDLE".into(),
                    ));
                }
            }
        }
        if !notices.is_empty() {
            return Ok(IdleEnd::Notices(notices));
        }
        Ok(end)
    }
}

fn collect(u: Untagged, notices: &mut Vec<Notice>) {
    let notice = match u {
        Untagged::MailboxStatus { name, .. } => Notice::Mailbox { name },
        Untagged::List(mb) => Notice::Hierarchy { name: mb.name },
        Untagged::Exists(_)
        | Untagged::Expunge(_)
        | Untagged::Vanished { earlier: false, .. }
        | Untagged::Fetch { .. } => Notice::Selected,
        Untagged::Bye { .. } => return,
        _ => return,
    };
    if !notices.contains(&notice) {
        notices.push(notice);
    }
}

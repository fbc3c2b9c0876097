//! Changing messages: UID STORE (flags), UID COPY, UID MOVE, UID EXPUNGE and APPEND, with the
//! UIDPLUS answers ([`CopyUid`], [`AppendUid`]) that tell where messages ended up.
//!
//! MOVE (RFC 6851) is used when the server has it; otherwise a move is COPY, `\Deleted` and
//! UID EXPUNGE of exactly those UIDs (UIDPLUS), never a plain EXPUNGE, which would also
//! remove messages someone else flagged `\Deleted`.

use super::command::Command;
use super::error::ImapError;
use super::fetch::{FetchData, Flag, MessageFlags, flag_list};
use super::response::{Code, Status, Untagged};
use super::session::Session;
use super::set::SequenceSet;

/// How UID STORE combines the given flags with a message's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `+FLAGS`: add them.
    Add,
    /// `-FLAGS`: remove them.
    Remove,
    /// `FLAGS`: the message gets exactly these.
    Replace,
}

impl StoreMode {
    fn item(self) -> &'static str {
        match self {
            StoreMode::Add => "+FLAGS",
            StoreMode::Remove => "-FLAGS",
            StoreMode::Replace => "FLAGS",
        }
    }
}

/// `[COPYUID validity source dest]`: where COPY or MOVE put the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyUid {
    /// The destination mailbox's UIDVALIDITY.
    pub uid_validity: u32,
    /// The source UIDs that were copied, in the server's order.
    pub source: SequenceSet,
    /// Their new UIDs in the destination, in the same order.
    pub dest: SequenceSet,
}

impl CopyUid {
    /// (source UID, destination UID) pairs. Empty if the server's two sets differ in size,
    /// which would make any pairing a guess.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let consistent = self.source.len() == self.dest.len();
        self.source
            .iter()
            .zip(self.dest.iter())
            .take_while(move |_| consistent)
    }

    /// The destination UID of one source UID.
    pub fn dest_of(&self, source_uid: u32) -> Option<u32> {
        self.pairs().find(|(s, _)| *s == source_uid).map(|(_, d)| d)
    }
}

/// `[APPENDUID validity uid]`: where APPEND stored the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendUid {
    pub uid_validity: u32,
    pub uid: u32,
}

impl Session {
    /// `UID STORE uids ±FLAGS (flags)`: returns each changed message's flags afterwards
    /// (and MODSEQ with CONDSTORE), as the server reported them.
    pub async fn uid_store_flags(
        &mut self,
        uids: &SequenceSet,
        mode: StoreMode,
        flags: &[Flag],
    ) -> Result<Vec<MessageFlags>, ImapError> {
        self.store(uids, mode, flags, false).await
    }

    /// `UID STORE uids ±FLAGS.SILENT (flags)`: the same without the server echoing the
    /// result (cheaper for large sets).
    pub async fn uid_store_flags_silent(
        &mut self,
        uids: &SequenceSet,
        mode: StoreMode,
        flags: &[Flag],
    ) -> Result<(), ImapError> {
        self.store(uids, mode, flags, true).await.map(drop)
    }

    async fn store(
        &mut self,
        uids: &SequenceSet,
        mode: StoreMode,
        flags: &[Flag],
        silent: bool,
    ) -> Result<Vec<MessageFlags>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let silent = if silent { ".SILENT" } else { "" };
        let cmd = Command::new("UID STORE")
            .raw(&uids.to_string())
            .raw(&format!("{}{silent} {}", mode.item(), flag_list(flags)?));
        let mut out = Vec::new();
        self.run_with(cmd, &mut |u| match u {
            Untagged::Fetch { seq, items } => {
                let data = FetchData::from_items(seq, items);
                match data.uid {
                    Some(uid) if uids.contains(uid) && data.flags.is_some() => {
                        out.extend(MessageFlags::from_data(data));
                        None
                    }
                    _ => Some(Untagged::Fetch {
                        seq,
                        items: data.into_items(),
                    }),
                }
            }
            u => Some(u),
        })
        .await?;
        Ok(out)
    }

    /// `UID COPY uids mailbox`. The [`CopyUid`] is there when the server has UIDPLUS.
    pub async fn uid_copy(
        &mut self,
        uids: &SequenceSet,
        mailbox: &str,
    ) -> Result<Option<CopyUid>, ImapError> {
        if uids.is_empty() {
            return Ok(None);
        }
        let cmd = Command::new("UID COPY")
            .raw(&uids.to_string())
            .mailbox(mailbox);
        self.copy_or_move(cmd).await
    }

    /// Moves messages to `mailbox`: UID MOVE when the server has MOVE, else UID COPY, then
    /// `\Deleted` and UID EXPUNGE of exactly these UIDs (needs UIDPLUS; without either
    /// extension this is [`ImapError::Unsupported`] and nothing is changed). The expunges
    /// come back as events ([`super::Event::Expunge`] or `Vanished`).
    pub async fn uid_move(
        &mut self,
        uids: &SequenceSet,
        mailbox: &str,
    ) -> Result<Option<CopyUid>, ImapError> {
        if uids.is_empty() {
            return Ok(None);
        }
        if self.caps.has("MOVE") {
            let cmd = Command::new("UID MOVE")
                .raw(&uids.to_string())
                .mailbox(mailbox);
            return self.copy_or_move(cmd).await;
        }
        if !self.caps.has("UIDPLUS") {
            return Err(ImapError::Unsupported("MOVE"));
        }
        self.move_by_copy(uids, mailbox).await
    }

    /// The fallback of [`Session::uid_move`], public so it can be tested against a server
    /// that does have MOVE.
    pub async fn move_by_copy(
        &mut self,
        uids: &SequenceSet,
        mailbox: &str,
    ) -> Result<Option<CopyUid>, ImapError> {
        let copied = self.uid_copy(uids, mailbox).await?;
        self.uid_store_flags_silent(uids, StoreMode::Add, &[Flag::Deleted])
            .await?;
        self.uid_expunge(uids).await?;
        Ok(copied)
    }

    async fn copy_or_move(&mut self, cmd: Command<'_>) -> Result<Option<CopyUid>, ImapError> {
        let mut copy_uid = None;
        // MOVE reports COPYUID in an untagged OK before the expunges (RFC 6851 §4.3), COPY
        // in its completion.
        let code = self
            .run_with(cmd, &mut |u| match u {
                Untagged::Status {
                    status: Status::Ok,
                    code:
                        Some(Code::CopyUid {
                            uid_validity,
                            from,
                            to,
                        }),
                    ..
                } => {
                    copy_uid = Some(CopyUid {
                        uid_validity,
                        source: from,
                        dest: to,
                    });
                    None
                }
                u => Some(u),
            })
            .await?;
        if let Some(Code::CopyUid {
            uid_validity,
            from,
            to,
        }) = code
        {
            copy_uid = Some(CopyUid {
                uid_validity,
                source: from,
                dest: to,
            });
        }
        Ok(copy_uid)
    }

    /// `UID EXPUNGE uids` (UIDPLUS): removes those of `uids` that are flagged `\Deleted`,
    /// and no others.
    pub async fn uid_expunge(&mut self, uids: &SequenceSet) -> Result<(), ImapError> {
        if uids.is_empty() {
            return Ok(());
        }
        if !self.caps.has("UIDPLUS") {
            return Err(ImapError::Unsupported("UIDPLUS"));
        }
        self.run(Command::new("UID EXPUNGE").raw(&uids.to_string()))
            .await?;
        Ok(())
    }

    /// APPEND with typed flags; the [`AppendUid`] is there when the server has UIDPLUS.
    pub async fn append_message(
        &mut self,
        mailbox: &str,
        flags: &[Flag],
        message: &[u8],
    ) -> Result<Option<AppendUid>, ImapError> {
        let mut cmd = Command::new("APPEND").mailbox(mailbox);
        if !flags.is_empty() {
            cmd = cmd.raw(&flag_list(flags)?);
        }
        let code = self.run(cmd.literal(message)).await?;
        Ok(match code {
            Some(Code::AppendUid { uid_validity, uids }) if uids.len() == 1 => uids
                .iter()
                .next()
                .map(|uid| AppendUid { uid_validity, uid }),
            _ => None,
        })
    }
}

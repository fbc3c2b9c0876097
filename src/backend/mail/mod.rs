//! Mail on IMAP as an [`ItemStore`]: the first store the Sync engine runs over.
//!
//! Item ids are UIDs; a collection's token is its STATUS (UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT,
//! MESSAGES) plus every UID it held ([`MailToken`]); a fold is the flag state the phone sees
//! ([`crate::mailstore::flag_state`]). The IMAP work — pooled sessions, kept views, the
//! CONDSTORE/QRESYNC diff — is [`Mailstore`]'s; this module turns it into the trait's terms:
//! listings, rendered windows ([`render`]), a phone's flag changes, deletes (to Trash when
//! the phone wants moves) and 16.x draft Adds ([`drafts`]).

pub mod drafts;
pub mod meeting;
pub mod render;

use eas_wbxml::Element;
use eas_wbxml::tags::email;

use super::snapshot::{self, Snapshot, get, put};
use super::{
    AddContext, Added, BackendError, Changed, CollectionRef, Fold, ItemId, ItemStore, Listing,
    RenderOptions, Rendered, Token, kinds, member,
};
use crate::mailstore::{
    FLAGGED, FlagChange, FlagState, FolderState, ImapError, Mailstore, SEEN, SequenceSet,
    flag_state,
};

/// A mailbox's state: its STATUS counters, and every UID it held (with the expunges and new
/// messages since HIGHESTMODSEQ, that gives the UIDs of now without asking for all of them;
/// None when not known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailToken {
    pub uidvalidity: u32,
    /// HIGHESTMODSEQ (0: the server keeps none, no CONDSTORE).
    pub highest_modseq: u64,
    pub uid_next: u32,
    pub exists: u32,
    /// Sorted, merged UID ranges.
    pub all: Option<Vec<(u32, u32)>>,
}

impl From<FolderState> for MailToken {
    fn from(s: FolderState) -> MailToken {
        MailToken {
            uidvalidity: s.uidvalidity,
            highest_modseq: s.highest_modseq,
            uid_next: s.uid_next,
            exists: s.exists,
            all: None,
        }
    }
}

impl Token for MailToken {
    fn encode_head(&self, out: &mut Vec<u8>) {
        put(out, u64::from(self.uidvalidity));
        put(out, self.highest_modseq);
        put(out, u64::from(self.uid_next));
        put(out, u64::from(self.exists));
    }

    fn decode_head(input: &mut &[u8]) -> Option<MailToken> {
        Some(MailToken {
            uidvalidity: u32::try_from(get(input)?).ok()?,
            highest_modseq: get(input)?,
            uid_next: u32::try_from(get(input)?).ok()?,
            exists: u32::try_from(get(input)?).ok()?,
            all: None,
        })
    }

    fn encode_tail(&self, out: &mut Vec<u8>) {
        match &self.all {
            None => out.push(0),
            Some(ranges) => {
                out.push(1);
                put(out, ranges.len() as u64);
                let mut prev = 0u32;
                // Sorted and disjoint by construction (a normalized UID set).
                for &(lo, hi) in ranges {
                    put(out, u64::from(lo.saturating_sub(prev)));
                    put(out, u64::from(hi.saturating_sub(lo)));
                    prev = hi;
                }
            }
        }
    }

    fn decode_tail(&mut self, input: &mut &[u8], format: u8) -> Option<()> {
        // Format 1 had no UID ranges.
        if format == 1 {
            return Some(());
        }
        let (&known, rest) = input.split_first()?;
        *input = rest;
        if known == 1 {
            let count = get(input)?;
            let mut ranges = Vec::with_capacity(count.min(1 << 16) as usize);
            let mut prev = 0u32;
            for _ in 0..count {
                let lo = prev.checked_add(u32::try_from(get(input)?).ok()?)?;
                let hi = lo.checked_add(u32::try_from(get(input)?).ok()?)?;
                ranges.push((lo, hi));
                prev = hi;
            }
            self.all = Some(ranges);
        }
        Some(())
    }

    fn identity(now: &MailToken) -> MailToken {
        MailToken {
            uidvalidity: now.uidvalidity,
            ..MailToken::default()
        }
    }

    fn same_collection(&self, now: &MailToken) -> bool {
        self.uidvalidity == now.uidvalidity
    }

    /// The counters are the ones the snapshot was taken at (a server without CONDSTORE
    /// cannot tell a flag change, so never).
    fn unchanged(&self, now: &MailToken) -> bool {
        now.highest_modseq != 0
            && now.uidvalidity == self.uidvalidity
            && now.highest_modseq == self.highest_modseq
            && now.uid_next == self.uid_next
            && now.exists == self.exists
    }

    fn stale(&self, now: &MailToken) -> bool {
        self.uidvalidity != now.uidvalidity
            || self.uid_next != now.uid_next
            || self.exists != now.exists
            // Flag changes show only in HIGHESTMODSEQ; a server without CONDSTORE has none,
            // and such changes then wait for the next new mail rather than loop the phone.
            || (self.highest_modseq != 0
                && now.highest_modseq != 0
                && self.highest_modseq != now.highest_modseq)
    }

    /// Flag changes are found with CHANGEDSINCE the snapshot's HIGHESTMODSEQ; if some did not
    /// fit in the page, the old mod-sequence must stay so they are found again. (Adds and
    /// deletes are recomputed from every UID each time.)
    fn after_page(&self, listed: &MailToken, complete: bool) -> MailToken {
        MailToken {
            highest_modseq: if complete {
                listed.highest_modseq
            } else {
                self.highest_modseq
            },
            ..listed.clone()
        }
    }
}

/// Whether news that only says "a message with this UID arrived" (Dovecot's events for
/// deliveries and APPENDs) is news for a device whose newest snapshot is `snap`: not when
/// the snapshot already has that message (its own APPEND, draft or move) or was taken after
/// it arrived.
pub fn is_new_arrival(snap: &Snapshot<MailToken>, uidvalidity: u32, uid: u32) -> bool {
    snap.pending
        || snap.token.uidvalidity != uidvalidity
        || (uid >= snap.token.uid_next && !snap.items.contains_key(&uid))
}

/// The flag state the device has after it changed some flags itself: its old state with only
/// the parts it sent replaced. A change another client made meanwhile therefore still differs
/// from the server's state and reaches the device as a Change (the server wins, the spec's
/// default conflict resolution), instead of being absorbed by the device's own Change.
pub fn with_client_change(
    old: FlagState,
    seen: Option<bool>,
    flagged: Option<bool>,
    categories: Option<&[String]>,
) -> FlagState {
    let mut state = old;
    if let Some(s) = seen {
        state = if s { state | SEEN } else { state & !SEEN };
    }
    if let Some(f) = flagged {
        state = if f { state | FLAGGED } else { state & !FLAGGED };
    }
    if let Some(c) = categories {
        state = (state & 3) | (flag_state(c) & !3);
    }
    state
}

/// What a phone's Change of a message asks for: Read, Flag (set when its Status is 2, cleared
/// when it is empty or anything else) and Categories (the whole new set). The rest of a
/// message cannot be changed from the phone.
pub fn flag_change(data: &Element) -> FlagChange {
    fn text(e: &Element, tag: eas_wbxml::Tag) -> Option<&str> {
        e.child(tag).and_then(|c| c.text())
    }
    FlagChange {
        seen: text(data, email::Read).map(|v| v.trim() == "1"),
        flagged: data
            .child(email::Flag)
            .map(|f| text(f, email::Status).and_then(|s| s.trim().parse::<u8>().ok()) == Some(2)),
        categories: data.child(email::Categories).map(|c| {
            c.children_with(email::Category)
                .filter_map(|x| x.text().map(str::to_owned))
                .collect()
        }),
    }
}

/// The mail store of one request (or one pager): a session of the user's, and the Trash
/// that deletes go to when the phone wants them as moves.
pub struct MailItems {
    store: Mailstore,
    trash: Option<String>,
}

impl MailItems {
    pub fn new(store: Mailstore, trash: Option<String>) -> MailItems {
        MailItems { store, trash }
    }

    /// The session, for the mail-only commands (ItemOperations, MoveItems, Search).
    pub fn mailstore(&mut self) -> &mut Mailstore {
        &mut self.store
    }
}

impl ItemStore for MailItems {
    type Token = MailToken;

    async fn state(&mut self, c: CollectionRef<'_>) -> Result<Option<MailToken>, BackendError> {
        match self.store.folder_state(c.locator).await {
            Ok(s) => Ok(Some(s.into())),
            // The mailbox is gone (deleted or renamed by another client).
            Err(ImapError::No { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// With CONDSTORE only the messages whose mod-sequence moved are fetched; otherwise every
    /// message's flags are listed.
    async fn changes(
        &mut self,
        c: CollectionRef<'_>,
        known: &Snapshot<MailToken>,
        since: u64,
    ) -> Result<Listing<MailToken>, BackendError> {
        let mailbox = c.locator;
        let known_all = known
            .token
            .all
            .as_ref()
            .map(|ranges| SequenceSet::from_ranges(ranges.iter().copied()));
        if let Some(ch) = self
            .store
            .changes(
                mailbox,
                known.token.highest_modseq,
                since,
                known_all.as_ref(),
            )
            .await?
        {
            let all = ch.all.normalized();
            let window = ch.window.map(|w| w.normalized());
            let diff = snapshot::diff_changes(
                &known.items,
                &ch.changed,
                all.ranges()
                    .iter()
                    .rev()
                    .flat_map(|&(lo, hi)| (lo..=hi).rev()),
                |u| member(all.ranges(), u),
                |u| window.as_ref().is_none_or(|w| member(w.ranges(), u)),
            );
            let token = MailToken {
                all: Some(all.ranges().to_vec()),
                ..ch.state.into()
            };
            return Ok(Listing {
                diff,
                folds: ch.changed.into_iter().collect(),
                token,
            });
        }
        let current = self.store.message_states(mailbox, since).await?;
        let diff = snapshot::diff(&known.items, &current.messages);
        let folds = current.messages.iter().map(|m| (m.uid, m.state)).collect();
        let all: SequenceSet = current.messages.iter().map(|m| m.uid).collect();
        let token = MailToken {
            all: Some(all.ranges().to_vec()),
            ..current.state.into()
        };
        Ok(Listing { diff, folds, token })
    }

    async fn fetch(
        &mut self,
        c: CollectionRef<'_>,
        wanted: &[ItemId],
        full: &[ItemId],
        render: &RenderOptions,
    ) -> Result<Rendered, BackendError> {
        render::fetch_and_render(&mut self.store, c.locator, c.id, wanted, full, render).await
    }

    async fn change(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        old: Fold,
        data: &Element,
    ) -> Result<Changed, BackendError> {
        let change = flag_change(data);
        if self
            .store
            .change_flags(c.locator, id, &change)
            .await?
            .is_none()
        {
            return Ok(Changed::Gone);
        }
        Ok(Changed::To(with_client_change(
            old,
            change.seen,
            change.flagged,
            change.categories.as_deref(),
        )))
    }

    async fn delete(
        &mut self,
        c: CollectionRef<'_>,
        id: ItemId,
        as_move: bool,
    ) -> Result<(), BackendError> {
        let target = self
            .trash
            .as_deref()
            .filter(|t| as_move && c.kind != kinds::DELETED_ITEMS && *t != c.locator);
        self.store.delete(c.locator, id, target).await?;
        Ok(())
    }

    /// Mail is created by SendMail; the only Add EAS allows for mail is a 16.x draft in the
    /// Drafts folder.
    async fn add(
        &mut self,
        c: CollectionRef<'_>,
        data: &Element,
        context: AddContext<'_>,
    ) -> Result<Added, BackendError> {
        let email = context.email;
        let draft = (c.kind == kinds::DRAFTS && context.version >= crate::mime::Version::V16_0)
            .then(|| {
                let host = email.rsplit_once('@').map_or("localhost", |(_, h)| h);
                drafts::message(data, email, context.now_unix, host)
            })
            .flatten();
        let Some(bytes) = draft else {
            return Ok(Added::Refused);
        };
        Ok(match self.store.append_draft(c.locator, &bytes).await? {
            Some((uid, flags)) => Added::Created(uid, flag_state(&flags)),
            None => Added::Unconfirmed,
        })
    }

    async fn finish(mut self, paging: bool) {
        // A phone that was told MoreAvailable asks for the next page at once.
        self.store.keep_view(paging);
        self.store.close().await;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn flag_states() {
        assert_eq!(flag_state::<&str>(&[]) & 3, 0);
        assert_eq!(flag_state(&["\\Seen"]) & 3, 1);
        assert_eq!(flag_state(&["\\seen", "\\Flagged"]) & 3, 3);
        // Machinery flags do not change what the phone sees; labels do.
        assert_eq!(
            flag_state(&["\\Seen", "$Forwarded", "\\Answered"]),
            flag_state(&["\\Seen"])
        );
        assert_ne!(flag_state(&["\\Seen", "Work"]), flag_state(&["\\Seen"]));
        assert_eq!(flag_state(&["b", "a"]), flag_state(&["a", "b", "a"]));
    }

    /// The bytes snapshots were stored in before the store trait existed: phones keep their
    /// SyncKeys across the upgrade only while this holds.
    #[test]
    fn snapshot_bytes_are_the_format_phones_hold_keys_for() {
        let snap = Snapshot {
            token: MailToken {
                uidvalidity: 5,
                highest_modseq: 300,
                uid_next: 10,
                exists: 2,
                all: Some(vec![(3, 3), (7, 7)]),
            },
            since: 0,
            pending: false,
            items: [(3, 1), (7, 0)].into(),
        };
        let bytes = [
            2, 5, 0xac, 0x02, 10, 2, 0, 0, 2, 3, 1, 4, 0, 1, 2, 3, 0, 4, 0,
        ];
        assert_eq!(snap.encode(), bytes);
        assert_eq!(Snapshot::decode(&bytes), Some(snap));
        // Format 1 had no UID ranges.
        let v1 = [1, 5, 0xac, 0x02, 10, 2, 0, 1, 1, 3, 1];
        let old = Snapshot::<MailToken>::decode(&v1).expect("a format-1 snapshot");
        assert_eq!(old.token.all, None);
        assert!(old.pending);
    }

    #[test]
    fn a_change_names_read_flag_and_categories() {
        let data = eas_wbxml::from_xml(
            r#"<ApplicationData xmlns="AirSync:" xmlns:E="Email:"><E:Read>1</E:Read><E:Flag/></ApplicationData>"#,
        )
        .unwrap();
        let c = flag_change(&data);
        assert_eq!(c.seen, Some(true));
        assert_eq!(c.flagged, Some(false));
        assert_eq!(c.categories, None);
    }
}

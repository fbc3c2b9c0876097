//! [`Event`]: what the server told us that no command asked for.
//!
//! IMAP servers report changes to the selected mailbox whenever they like: a delivery's
//! `* 5 EXISTS` in the middle of a FETCH, another client's flag change as `* 3 FETCH
//! (FLAGS …)`, an expunge as `* 2 EXPUNGE` or (with QRESYNC) `* VANISHED 9`. Commands take
//! only the responses that answer them; the session keeps these others as events for the
//! caller to drain ([`super::Session::take_events`]), which is what IDLE and NOTIFY build on.

use super::fetch::{FetchData, Flag};
use super::response::Untagged;
use super::set::SequenceSet;

/// One unsolicited change to the selected mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `* n EXISTS`: the mailbox now has `n` messages (new mail when it grows).
    Exists(u32),
    /// `* n RECENT`.
    Recent(u32),
    /// `* n EXPUNGE`: sequence number `n` is gone; later numbers moved down by one.
    Expunge(u32),
    /// `* VANISHED uids` (QRESYNC): these UIDs are gone.
    Vanished(SequenceSet),
    /// `* n FETCH (…)`: a message's flags (or mod-sequence) changed.
    Fetch(FetchUpdate),
    /// `* STATUS mailbox (…)` nobody asked for (NOTIFY news about another mailbox that
    /// arrived during a command).
    MailboxStatus(String),
    /// `* LIST …` nobody asked for (NOTIFY MailboxName news during a command).
    MailboxList(String),
    /// More events arrived than the session keeps ([`MAX_EVENTS`]); the ones before were
    /// dropped, so the caller must look at the mailbox afresh.
    Overflow,
}

/// The parts of an unsolicited FETCH that describe a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchUpdate {
    pub seq: u32,
    /// Present when the server includes it (always once QRESYNC is enabled).
    pub uid: Option<u32>,
    pub flags: Option<Vec<Flag>>,
    pub modseq: Option<u64>,
}

/// How many events a session keeps before it gives up on them (see [`Event::Overflow`]);
/// bounds the memory of a session whose caller never drains.
pub const MAX_EVENTS: usize = 10_000;

/// The event an untagged response stands for, if it is one.
pub(crate) fn from_untagged(u: Untagged) -> Option<Event> {
    Some(match u {
        Untagged::Exists(n) => Event::Exists(n),
        Untagged::Recent(n) => Event::Recent(n),
        Untagged::Expunge(n) => Event::Expunge(n),
        Untagged::Vanished { uids, .. } => Event::Vanished(uids),
        Untagged::MailboxStatus { name, .. } => Event::MailboxStatus(name),
        Untagged::List(mb) => Event::MailboxList(mb.name),
        Untagged::Fetch { seq, items } => {
            let f = FetchData::from_items(seq, items);
            Event::Fetch(FetchUpdate {
                seq: f.seq,
                uid: f.uid,
                flags: f.flags,
                modseq: f.modseq,
            })
        }
        _ => return None,
    })
}

/// Appends `e`, or collapses the queue into one [`Event::Overflow`] when it is full.
pub(crate) fn push(queue: &mut Vec<Event>, e: Event) {
    if queue.last() == Some(&Event::Overflow) {
        return;
    }
    if queue.len() >= MAX_EVENTS {
        queue.clear();
        queue.push(Event::Overflow);
        return;
    }
    queue.push(e);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_collapses_into_overflow() {
        let mut q = Vec::new();
        for n in 0..MAX_EVENTS as u32 + 5 {
            push(&mut q, Event::Exists(n));
        }
        assert_eq!(q, vec![Event::Overflow]);
    }
}

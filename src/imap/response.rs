//! The parsed form of one server response (RFC 3501 §7), independent of any command.
//!
//! [`super::parse::response`] turns the bytes of one framed response into a [`Response`]; the
//! session then decides what the response means for the command in flight. Responses we do
//! not interpret yet keep their bytes ([`Untagged::Other`]) and FETCH keeps a generic
//! [`Value`] tree, so FETCH, IDLE and NOTIFY support can be added by interpreting these types
//! rather than by changing how bytes are read.

use super::mailbox::Mailbox;
use super::set::SequenceSet;

/// One complete server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `+ text`: the server waits for the rest of a command (a literal, IDLE's `DONE`, SASL).
    Continue { text: String },
    /// `tag OK|NO|BAD [code] text`: the command with that tag is finished.
    Tagged(Tagged),
    /// `* …`: data or status, possibly not about the command in flight.
    Untagged(Untagged),
}

/// The completion of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub tag: String,
    pub status: Status,
    pub code: Option<Code>,
    pub text: String,
}

/// The outcome word of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The command (or the server, untagged) succeeded.
    Ok,
    /// The server understood the command and refused it.
    No,
    /// The server did not understand the command or it is not valid now.
    Bad,
}

/// An untagged response (`* …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK|NO|BAD [code] text`: status information (SELECT sends its UIDVALIDITY this way).
    Status {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `* PREAUTH …`: a greeting meaning "already authenticated".
    PreAuth { code: Option<Code>, text: String },
    /// `* BYE …`: the server is about to close the connection.
    Bye { code: Option<Code>, text: String },
    /// `* CAPABILITY …`: the full list, replacing what we knew.
    Capability(Vec<String>),
    /// `* LIST (attributes) delimiter name`.
    List(Mailbox),
    /// `* LSUB (attributes) delimiter name`.
    Lsub(Mailbox),
    /// `* FLAGS (…)`: the flags defined in the selected mailbox.
    Flags(Vec<String>),
    /// `* n EXISTS`: the selected mailbox now has `n` messages.
    Exists(u32),
    /// `* n RECENT`.
    Recent(u32),
    /// `* n EXPUNGE`: message sequence number `n` is gone; later numbers shift down by one.
    Expunge(u32),
    /// `* SEARCH n…` with the CONDSTORE `(MODSEQ m)` suffix when present.
    Search { ids: Vec<u32>, modseq: Option<u64> },
    /// `* SORT n…` (RFC 5256): the numbers in the requested order.
    Sort(Vec<u32>),
    /// `* STATUS mailbox (name value …)`: the answer to STATUS, or to LIST's
    /// `RETURN (STATUS (…))` (LIST-STATUS, RFC 5819). Item names are upper case.
    MailboxStatus {
        /// The mailbox name decoded from modified UTF-7 (the wire name if it is not valid).
        name: String,
        raw_name: String,
        items: Vec<(String, u64)>,
    },
    /// `* ESEARCH …` (RFC 4731): the answer to `SEARCH RETURN (…)`.
    ESearch(ESearch),
    /// `* VANISHED [(EARLIER)] uids` (QRESYNC): these UIDs are gone. `earlier` marks the
    /// answer to a QRESYNC SELECT or `VANISHED` FETCH (old news), as opposed to an expunge
    /// happening now, which replaces `* n EXPUNGE` once QRESYNC is enabled.
    Vanished { earlier: bool, uids: SequenceSet },
    /// `* ENABLED …` (RFC 5161).
    Enabled(Vec<String>),
    /// `* n FETCH (name value …)`: the attribute list as alternating names and values, e.g.
    /// `[Atom("UID"), Number(7), Atom("FLAGS"), List([Atom("\\Seen")])]`. Section names keep
    /// their brackets: `Atom("BODY[HEADER.FIELDS (FROM)]")`.
    Fetch { seq: u32, items: Vec<Value> },
    /// Anything else (`* NAMESPACE`, `* ID`, …): the keyword, the
    /// leading number if there was one, and the bytes after the keyword (without CRLF).
    Other {
        name: String,
        number: Option<u32>,
        rest: Vec<u8>,
    },
}

/// A response code: the bracketed part of a status response (RFC 3501 §7.1 and extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    Alert,
    Parse,
    ReadOnly,
    ReadWrite,
    TryCreate,
    /// `[CAPABILITY …]` in a greeting or LOGIN completion: the full capability list.
    Capability(Vec<String>),
    PermanentFlags(Vec<String>),
    UidNext(u32),
    UidValidity(u32),
    Unseen(u32),
    /// CONDSTORE (RFC 7162).
    HighestModSeq(u64),
    /// CONDSTORE: the mailbox has no mod-sequences.
    NoModSeq,
    /// UIDPLUS (RFC 4315): the UIDVALIDITY and UID(s) of an appended message.
    AppendUid {
        uid_validity: u32,
        uids: SequenceSet,
    },
    /// UIDPLUS: where COPY/MOVE put the messages; `from` and `to` pair up by position.
    CopyUid {
        uid_validity: u32,
        from: SequenceSet,
        to: SequenceSet,
    },
    /// QRESYNC: the previously selected mailbox is now closed.
    Closed,
    /// Any other code, with its arguments as text (e.g. `AUTHENTICATIONFAILED`,
    /// `ALREADYEXISTS`, `NONEXISTENT`, `OVERQUOTA`).
    Other {
        name: String,
        args: Option<String>,
    },
}

impl Code {
    /// The code's keyword as the server wrote it (upper case for the known ones).
    pub fn name(&self) -> &str {
        match self {
            Code::Alert => "ALERT",
            Code::Parse => "PARSE",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::TryCreate => "TRYCREATE",
            Code::Capability(_) => "CAPABILITY",
            Code::PermanentFlags(_) => "PERMANENTFLAGS",
            Code::UidNext(_) => "UIDNEXT",
            Code::UidValidity(_) => "UIDVALIDITY",
            Code::Unseen(_) => "UNSEEN",
            Code::HighestModSeq(_) => "HIGHESTMODSEQ",
            Code::NoModSeq => "NOMODSEQ",
            Code::AppendUid { .. } => "APPENDUID",
            Code::CopyUid { .. } => "COPYUID",
            Code::Closed => "CLOSED",
            Code::Other { name, .. } => name,
        }
    }
}

/// A generic IMAP data item, as found in FETCH responses and extension data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `NIL`.
    Nil,
    /// A number (up to 63 bits, enough for mod-sequences).
    Number(u64),
    /// An atom or flag (`UID`, `\Seen`, `BODY[1.MIME]<0>`).
    Atom(String),
    /// A quoted string or literal, as raw bytes (message data is not necessarily UTF-8).
    String(Vec<u8>),
    /// A parenthesized list.
    List(Vec<Value>),
}

/// The data of one `* ESEARCH` response; items the server did not return are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ESearch {
    /// The tag of the command this answers (`(TAG "A5")`).
    pub tag: Option<String>,
    /// True when the numbers are UIDs (the answer to `UID SEARCH`).
    pub uid: bool,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub count: Option<u32>,
    pub all: Option<SequenceSet>,
    /// CONDSTORE: the highest mod-sequence of the matching messages.
    pub modseq: Option<u64>,
}

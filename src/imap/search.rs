//! UID SEARCH: a typed query ([`SearchKey`], [`ImapDate`]) and its answer
//! ([`SearchResult`]), with ESEARCH (RFC 4731) when the server has it.
//!
//! Search strings go out as atoms, quoted strings or literals, whichever carries them
//! exactly (see [`super::command`]); a query with non-ASCII text is sent with
//! `CHARSET UTF-8`. Nothing a caller puts in a string can end the command early.

use super::command::{self, Command};
use super::error::ImapError;
use super::fetch::{civil_from_days, days_in_month, month_name};
use super::response::Untagged;
use super::session::Session;
use super::set::SequenceSet;

impl Session {
    /// `UID SEARCH key` in the selected mailbox. With ESEARCH the server answers with a
    /// compact set and the count, min and max (`RETURN (ALL COUNT MIN MAX)`), so a large
    /// result costs a few bytes; otherwise they are computed from the plain list.
    pub async fn uid_search(&mut self, key: &SearchKey) -> Result<SearchResult, ImapError> {
        let esearch = self.caps.has("ESEARCH");
        let cmd = key.command(esearch)?;
        let mut result = SearchResult::default();
        let mut found = Vec::new();
        self.run_with(cmd, &mut |u| match u {
            Untagged::ESearch(e) if e.uid => {
                result = SearchResult {
                    uids: e.all.unwrap_or_default().normalized(),
                    count: e.count.unwrap_or(0),
                    min: e.min,
                    max: e.max,
                    modseq: e.modseq,
                };
                None
            }
            Untagged::Search { ids, modseq } if !esearch => {
                found.extend(ids);
                result.modseq = result.modseq.max(modseq);
                None
            }
            u => Some(u),
        })
        .await?;
        if !esearch {
            result.uids = found.into_iter().collect();
            result.count = u32::try_from(result.uids.len()).unwrap_or(u32::MAX);
            result.min = result.uids.iter().next();
            result.max = result.uids.ranges().last().map(|r| r.1);
        }
        Ok(result)
    }
}

impl Session {
    /// `UID SORT (REVERSE ARRIVAL) UTF-8 key` (RFC 5256): the matching UIDs, the latest
    /// INTERNALDATE first, without fetching a date per hit. None when the server has no SORT.
    pub async fn uid_sort_newest_first(
        &mut self,
        key: &SearchKey,
    ) -> Result<Option<Vec<u32>>, ImapError> {
        if !self.caps.has("SORT") {
            return Ok(None);
        }
        let cmd = key.render(
            Command::new("UID SORT")
                .raw("(REVERSE ARRIVAL)")
                .raw("UTF-8"),
            0,
        )?;
        let mut uids = Vec::new();
        self.run_with(cmd, &mut |u| match u {
            Untagged::Sort(ids) => {
                uids.extend(ids);
                None
            }
            u => Some(u),
        })
        .await?;
        Ok(Some(uids))
    }
}

/// A calendar date as SEARCH compares them (`SINCE 2-Mar-2026`). The server compares it
/// with the date part of INTERNALDATE (or of the Date header for `SENT*`), in its own time
/// zone, so it is day-granular.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImapDate {
    year: u16,
    month: u8,
    day: u8,
}

impl ImapDate {
    /// A valid date between years 1 and 9999, or `None`.
    pub fn new(year: u16, month: u8, day: u8) -> Option<ImapDate> {
        let valid = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && u32::from(day) <= days_in_month(i64::from(year), u32::from(month));
        valid.then_some(ImapDate { year, month, day })
    }

    /// The UTC date of a unix time (clamped to years 1..=9999).
    pub fn from_unix(secs: i64) -> ImapDate {
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        match u16::try_from(y) {
            Ok(year) if (1..=9999).contains(&year) => ImapDate {
                year,
                month: m as u8,
                day: d as u8,
            },
            _ if y < 1 => ImapDate {
                year: 1,
                month: 1,
                day: 1,
            },
            _ => ImapDate {
                year: 9999,
                month: 12,
                day: 31,
            },
        }
    }
}

impl std::fmt::Display for ImapDate {
    /// `2-Mar-2026`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}-{:04}",
            self.day,
            month_name(u32::from(self.month)),
            self.year
        )
    }
}

/// One search criterion (RFC 3501 §6.4.4). Several criteria in [`SearchKey::And`] must all
/// match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    /// Messages with these UIDs.
    Uid(SequenceSet),
    /// INTERNALDATE on or after the date.
    Since(ImapDate),
    /// INTERNALDATE before the date.
    Before(ImapDate),
    /// INTERNALDATE on the date.
    On(ImapDate),
    /// Date header on or after the date.
    SentSince(ImapDate),
    /// Date header before the date.
    SentBefore(ImapDate),
    /// The text anywhere in the header or body.
    Text(String),
    Body(String),
    Subject(String),
    From(String),
    To(String),
    Cc(String),
    Bcc(String),
    /// A header field (by name) containing the text; an empty text matches any message
    /// that has the field.
    Header(String, String),
    Keyword(String),
    Unkeyword(String),
    Seen,
    Unseen,
    Flagged,
    Unflagged,
    Answered,
    Unanswered,
    Deleted,
    Undeleted,
    Draft,
    Undraft,
    /// RFC822.SIZE larger than this many bytes.
    Larger(u32),
    Smaller(u32),
    /// CONDSTORE: mod-sequence at least this.
    ModSeq(u64),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// All of these (an empty list matches everything).
    And(Vec<SearchKey>),
}

impl SearchKey {
    pub fn or(a: SearchKey, b: SearchKey) -> SearchKey {
        SearchKey::Or(Box::new(a), Box::new(b))
    }

    /// Whether any string in the query is not 7-bit (the command then needs a CHARSET).
    fn needs_utf8(&self) -> bool {
        match self {
            SearchKey::Text(s)
            | SearchKey::Body(s)
            | SearchKey::Subject(s)
            | SearchKey::From(s)
            | SearchKey::To(s)
            | SearchKey::Cc(s)
            | SearchKey::Bcc(s) => !s.is_ascii(),
            SearchKey::Header(n, v) => !n.is_ascii() || !v.is_ascii(),
            SearchKey::Not(k) => k.needs_utf8(),
            SearchKey::Or(a, b) => a.needs_utf8() || b.needs_utf8(),
            SearchKey::And(keys) => keys.iter().any(SearchKey::needs_utf8),
            _ => false,
        }
    }

    /// `UID SEARCH [RETURN (…)] [CHARSET UTF-8] key`.
    pub(crate) fn command<'a>(&'a self, esearch: bool) -> Result<Command<'a>, ImapError> {
        let mut cmd = Command::new("UID SEARCH");
        if esearch {
            cmd = cmd.raw("RETURN (ALL COUNT MIN MAX)");
        }
        if self.needs_utf8() {
            cmd = cmd.raw("CHARSET UTF-8");
        }
        self.render(cmd, 0)
    }

    fn render<'a>(&'a self, cmd: Command<'a>, depth: usize) -> Result<Command<'a>, ImapError> {
        // Deeper queries are a caller bug, and servers refuse them anyway.
        if depth > 32 {
            return Err(ImapError::InvalidArgument(
                "search query nested too deeply".into(),
            ));
        }
        let keyword = |k: &str| -> Result<String, ImapError> {
            if k.starts_with('\\') {
                return Err(ImapError::InvalidArgument(format!("not a keyword: {k:?}")));
            }
            command::check_flag(k).map(str::to_owned)
        };
        Ok(match self {
            SearchKey::All => cmd.raw("ALL"),
            SearchKey::Uid(set) if set.is_empty() => {
                return Err(ImapError::InvalidArgument("empty UID set".into()));
            }
            SearchKey::Uid(set) => cmd.raw(&format!("UID {set}")),
            SearchKey::Since(d) => cmd.raw(&format!("SINCE {d}")),
            SearchKey::Before(d) => cmd.raw(&format!("BEFORE {d}")),
            SearchKey::On(d) => cmd.raw(&format!("ON {d}")),
            SearchKey::SentSince(d) => cmd.raw(&format!("SENTSINCE {d}")),
            SearchKey::SentBefore(d) => cmd.raw(&format!("SENTBEFORE {d}")),
            SearchKey::Text(s) => cmd.raw("TEXT").astring(s.as_bytes()),
            SearchKey::Body(s) => cmd.raw("BODY").astring(s.as_bytes()),
            SearchKey::Subject(s) => cmd.raw("SUBJECT").astring(s.as_bytes()),
            SearchKey::From(s) => cmd.raw("FROM").astring(s.as_bytes()),
            SearchKey::To(s) => cmd.raw("TO").astring(s.as_bytes()),
            SearchKey::Cc(s) => cmd.raw("CC").astring(s.as_bytes()),
            SearchKey::Bcc(s) => cmd.raw("BCC").astring(s.as_bytes()),
            SearchKey::Header(n, v) => cmd
                .raw("HEADER")
                .astring(n.as_bytes())
                .astring(v.as_bytes()),
            SearchKey::Keyword(k) => cmd.raw(&format!("KEYWORD {}", keyword(k)?)),
            SearchKey::Unkeyword(k) => cmd.raw(&format!("UNKEYWORD {}", keyword(k)?)),
            SearchKey::Seen => cmd.raw("SEEN"),
            SearchKey::Unseen => cmd.raw("UNSEEN"),
            SearchKey::Flagged => cmd.raw("FLAGGED"),
            SearchKey::Unflagged => cmd.raw("UNFLAGGED"),
            SearchKey::Answered => cmd.raw("ANSWERED"),
            SearchKey::Unanswered => cmd.raw("UNANSWERED"),
            SearchKey::Deleted => cmd.raw("DELETED"),
            SearchKey::Undeleted => cmd.raw("UNDELETED"),
            SearchKey::Draft => cmd.raw("DRAFT"),
            SearchKey::Undraft => cmd.raw("UNDRAFT"),
            SearchKey::Larger(n) => cmd.raw(&format!("LARGER {n}")),
            SearchKey::Smaller(n) => cmd.raw(&format!("SMALLER {n}")),
            SearchKey::ModSeq(m) => cmd.raw(&format!("MODSEQ {m}")),
            SearchKey::Not(k) => k.render(cmd.raw("NOT"), depth + 1)?,
            SearchKey::Or(a, b) => {
                let cmd = a.render(cmd.raw("OR"), depth + 1)?;
                b.render(cmd, depth + 1)?
            }
            SearchKey::And(keys) if keys.is_empty() => cmd.raw("ALL"),
            SearchKey::And(keys) => {
                let mut cmd = cmd.open_paren();
                for k in keys {
                    cmd = k.render(cmd, depth + 1)?;
                }
                cmd.close_paren()
            }
        })
    }
}

impl std::ops::Not for SearchKey {
    type Output = SearchKey;

    /// `!SearchKey::Seen` is `NOT SEEN`.
    fn not(self) -> SearchKey {
        SearchKey::Not(Box::new(self))
    }
}

/// What UID SEARCH found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchResult {
    /// The matching UIDs, sorted and compact.
    pub uids: SequenceSet,
    pub count: u32,
    pub min: Option<u32>,
    pub max: Option<u32>,
    /// CONDSTORE: the highest mod-sequence among the matches, when the query used MODSEQ.
    pub modseq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::Part;

    fn wire(key: &SearchKey, esearch: bool) -> String {
        let cmd = key.command(esearch).unwrap();
        let mut out = Vec::new();
        for p in &cmd.parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Literal(l) => {
                    out.extend_from_slice(format!("{{{}}}\r\n", l.len()).as_bytes());
                    out.extend_from_slice(l);
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn queries_render_safely() {
        let d = ImapDate::new(2026, 3, 2).unwrap();
        let q = SearchKey::And(vec![
            SearchKey::Since(d),
            SearchKey::Before(ImapDate::from_unix(1_800_000_000)),
            SearchKey::Uid("1:5,7".parse().unwrap()),
            SearchKey::or(
                SearchKey::Subject("hello world".into()),
                SearchKey::From("a\"b".into()),
            ),
            !SearchKey::Deleted,
            SearchKey::Keyword("$Forwarded".into()),
        ]);
        assert_eq!(
            wire(&q, true),
            "UID SEARCH RETURN (ALL COUNT MIN MAX) (SINCE 2-Mar-2026 BEFORE 15-Jan-2027 \
             UID 1:5,7 OR SUBJECT \"hello world\" FROM \"a\\\"b\" NOT DELETED KEYWORD $Forwarded)"
        );
        assert_eq!(
            wire(&SearchKey::Text("Grüße\r\nA1 LOGOUT".into()), false),
            "UID SEARCH CHARSET UTF-8 TEXT {18}\r\nGrüße\r\nA1 LOGOUT"
        );
        assert_eq!(wire(&SearchKey::And(vec![]), false), "UID SEARCH ALL");
        assert_eq!(
            wire(&SearchKey::And(vec![SearchKey::Seen]), false),
            "UID SEARCH (SEEN)"
        );
        for bad in [
            SearchKey::Keyword("a b".into()),
            SearchKey::Keyword("\\Seen".into()),
            SearchKey::Uid(SequenceSet::new()),
        ] {
            assert!(bad.command(false).is_err(), "{bad:?}");
        }
        let mut deep = SearchKey::All;
        for _ in 0..40 {
            deep = !deep;
        }
        assert!(deep.command(false).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(
            ImapDate::new(2024, 2, 29).unwrap().to_string(),
            "29-Feb-2024"
        );
        assert!(ImapDate::new(2023, 2, 29).is_none());
        assert!(ImapDate::new(2023, 13, 1).is_none());
        assert!(ImapDate::new(0, 1, 1).is_none());
        assert_eq!(ImapDate::from_unix(0).to_string(), "1-Jan-1970");
        assert_eq!(ImapDate::from_unix(-1).to_string(), "31-Dec-1969");
        assert_eq!(ImapDate::from_unix(i64::MIN / 2).to_string(), "1-Jan-0001");
        assert_eq!(ImapDate::from_unix(i64::MAX / 2).to_string(), "31-Dec-9999");
    }
}

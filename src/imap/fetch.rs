//! UID FETCH: what to ask for ([`FetchQuery`], [`Section`]) and what came back
//! ([`Fetched`], [`Flag`]), plus the typed reading of a FETCH response's attribute list.
//!
//! The parser ([`super::parse`]) leaves FETCH data as a generic [`Value`] list; this module
//! turns it into typed fields. Message bytes are moved out of the parsed response, never
//! copied again: the only copy is the one from the read buffer into the literal's `Vec`.
//! Items we did not ask for, or that are malformed, are ignored rather than failing the
//! command: the response was framed correctly, so the session stays in step either way.

use super::command::{self, Command};
use super::error::ImapError;
use super::response::{Untagged, Value};
use super::session::Session;
use super::set::SequenceSet;

impl Session {
    /// `UID FETCH uids (query)`: one [`Fetched`] per message, in the server's order. UIDs
    /// that no longer exist are simply missing. All results are held at once, so batch large
    /// sets ([`SequenceSet::chunks`]) or use [`Session::uid_fetch_with`]. With
    /// [`FetchQuery::vanished`], the vanished UIDs become [`super::Event::Vanished`]; use
    /// [`Session::uid_fetch_with`] or [`Session::uid_fetch_changes`] to get them directly.
    pub async fn uid_fetch(
        &mut self,
        uids: &SequenceSet,
        query: &FetchQuery,
    ) -> Result<Vec<Fetched>, ImapError> {
        let mut out = Vec::new();
        let vanished = self.uid_fetch_with(uids, query, |f| out.push(f)).await?;
        if !vanished.is_empty() {
            self.note_event(super::Event::Vanished(vanished));
        }
        Ok(out)
    }

    /// `UID FETCH`, handing each message to `each` as soon as its response is read, so a
    /// caller can process (encode, write out) messages one by one and never hold more than
    /// one. Returns the UIDs reported as VANISHED (empty unless the query asked for them).
    pub async fn uid_fetch_with(
        &mut self,
        uids: &SequenceSet,
        query: &FetchQuery,
        mut each: impl FnMut(Fetched) + Send,
    ) -> Result<SequenceSet, ImapError> {
        let mut vanished = SequenceSet::new();
        if uids.is_empty() {
            return Ok(vanished);
        }
        if query.wants_vanished() && !self.is_enabled("QRESYNC") && !self.enable_qresync().await? {
            return Err(ImapError::Unsupported("QRESYNC"));
        }
        let cmd = query.command(uids)?;
        let wants_vanished = query.wants_vanished();
        self.run_with(cmd, &mut |u| match u {
            Untagged::Fetch { seq, items } => {
                let data = FetchData::from_items(seq, items);
                match data.uid {
                    // Ours. A FETCH without UID, or for a UID we did not ask for, is another
                    // client's change reported in passing.
                    Some(uid) if uids.contains(uid) => {
                        if let Some(f) = data.into_fetched() {
                            each(f);
                        }
                        None
                    }
                    _ => Some(Untagged::Fetch {
                        seq,
                        items: data.into_items(),
                    }),
                }
            }
            Untagged::Vanished {
                earlier,
                uids: gone,
            } if wants_vanished => {
                for (lo, hi) in gone.ranges() {
                    vanished.insert_range(*lo, *hi);
                }
                // An expunge happening now also shifts sequence numbers: an event as well.
                (!earlier).then_some(Untagged::Vanished {
                    earlier,
                    uids: gone,
                })
            }
            u => Some(u),
        })
        .await?;
        Ok(vanished)
    }

    /// `UID FETCH uids (UID FLAGS [MODSEQ])`: the cheap listing a sync compares with what it
    /// knows. `uids` may be [`SequenceSet::all`] (each message costs a few dozen bytes).
    pub async fn uid_fetch_flags(
        &mut self,
        uids: &SequenceSet,
    ) -> Result<Vec<MessageFlags>, ImapError> {
        let mut query = FetchQuery::new().flags();
        if self.caps.has("CONDSTORE") {
            query = query.modseq();
        }
        let mut out = Vec::new();
        self.uid_fetch_with(uids, &query, |f| {
            if let Some(m) = MessageFlags::from_fetched(f) {
                out.push(m);
            }
        })
        .await?;
        Ok(out)
    }

    /// What changed among `uids` since mod-sequence `since` (CONDSTORE `CHANGEDSINCE`): the
    /// messages whose flags changed or that are new, and, when QRESYNC is available, the
    /// UIDs expunged since then.
    pub async fn uid_fetch_changes(
        &mut self,
        uids: &SequenceSet,
        since: u64,
    ) -> Result<Changes, ImapError> {
        if !self.caps.has("CONDSTORE") {
            return Err(ImapError::Unsupported("CONDSTORE"));
        }
        let mut query = FetchQuery::new().flags().modseq().changed_since(since);
        if self.is_enabled("QRESYNC") || self.enable_qresync().await? {
            query = query.vanished();
        }
        let mut changed = Vec::new();
        let vanished = self
            .uid_fetch_with(uids, &query, |f| {
                if let Some(m) = MessageFlags::from_fetched(f) {
                    changed.push(m);
                }
            })
            .await?;
        Ok(Changes { changed, vanished })
    }
}

/// A message's UID, flags and mod-sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags {
    pub uid: u32,
    pub flags: Vec<Flag>,
    /// With CONDSTORE.
    pub modseq: Option<u64>,
}

impl MessageFlags {
    pub(crate) fn from_data(d: FetchData) -> Option<MessageFlags> {
        Some(MessageFlags {
            uid: d.uid?,
            flags: d.flags?,
            modseq: d.modseq,
        })
    }

    fn from_fetched(f: Fetched) -> Option<MessageFlags> {
        Some(MessageFlags {
            uid: f.uid,
            flags: f.flags?,
            modseq: f.modseq,
        })
    }

    pub fn has(&self, flag: &Flag) -> bool {
        self.flags.contains(flag)
    }
}

/// The answer to [`Session::uid_fetch_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Messages changed (or added) since the mod-sequence, with their current flags.
    pub changed: Vec<MessageFlags>,
    /// UIDs expunged since then (QRESYNC only; may include UIDs the caller never saw). An
    /// expunge racing with the command can list a UID here and in `changed`; it is gone.
    pub vanished: SequenceSet,
}

/// A message flag: one of the system flags, or a keyword (`$Forwarded`, `$label1`).
///
/// `\Recent` is not among them: it describes the session that first saw a message, not
/// the message (two sessions disagree on it, and IMAP4rev2 dropped it), so FETCH results
/// leave it out rather than let it look like a flag change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    /// A keyword, or a backslash flag this client does not know, as the server wrote it.
    Keyword(String),
}

impl Flag {
    /// Reads a flag as the server sent it; system flags are case-insensitive.
    pub fn parse(s: &str) -> Flag {
        const SYSTEM: [(&str, Flag); 5] = [
            ("\\Seen", Flag::Seen),
            ("\\Answered", Flag::Answered),
            ("\\Flagged", Flag::Flagged),
            ("\\Deleted", Flag::Deleted),
            ("\\Draft", Flag::Draft),
        ];
        SYSTEM
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map_or_else(|| Flag::Keyword(s.to_owned()), |(_, f)| f)
    }

    /// The wire form (`\Seen`, `$Forwarded`).
    pub fn as_str(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        }
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(flag flag …)` for a command, every flag checked so none can break out of the list.
pub(crate) fn flag_list(flags: &[Flag]) -> Result<String, ImapError> {
    let mut out = String::from("(");
    for (i, f) in flags.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(command::check_flag(f.as_str())?);
    }
    out.push(')');
    Ok(out)
}

/// A body section (RFC 3501 §6.4.5), as in `BODY.PEEK[section]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Section {
    /// `[]`: the whole message, header and body.
    Full,
    /// `[HEADER]`: the message header, including the blank line after it.
    Header,
    /// `[TEXT]`: the message body without the header.
    Text,
    /// `[HEADER.FIELDS (A B)]`: only these header fields.
    HeaderFields(Vec<String>),
    /// `[1.2]`: one MIME part's content, by its part numbers.
    Part(Vec<u32>),
    /// `[1.2.MIME]`: the MIME header of a part.
    PartMime(Vec<u32>),
    /// `[1.2.HEADER]`: the header of a `message/rfc822` part.
    PartHeader(Vec<u32>),
    /// `[1.2.TEXT]`: the body of a `message/rfc822` part.
    PartText(Vec<u32>),
}

impl Section {
    /// The text between the brackets, checked so it cannot smuggle protocol syntax.
    fn wire(&self) -> Result<String, ImapError> {
        fn part(nums: &[u32], suffix: &str) -> Result<String, ImapError> {
            if nums.is_empty() || nums.contains(&0) {
                return Err(ImapError::InvalidArgument(
                    "a part number list must be non-empty and without 0".into(),
                ));
            }
            let mut s = nums
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            s.push_str(suffix);
            Ok(s)
        }
        Ok(match self {
            Section::Full => String::new(),
            Section::Header => "HEADER".into(),
            Section::Text => "TEXT".into(),
            Section::HeaderFields(names) => {
                let ok = !names.is_empty()
                    && names.iter().all(|n| {
                        !n.is_empty()
                            && n.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                    });
                if !ok {
                    return Err(ImapError::InvalidArgument(
                        "header field names must be letters, digits, `-`, `_` or `.`".into(),
                    ));
                }
                format!("HEADER.FIELDS ({})", names.join(" ").to_ascii_uppercase())
            }
            Section::Part(n) => part(n, "")?,
            Section::PartMime(n) => part(n, ".MIME")?,
            Section::PartHeader(n) => part(n, ".HEADER")?,
            Section::PartText(n) => part(n, ".TEXT")?,
        })
    }
}

/// What a UID FETCH asks for. The UID is always fetched. Build it with the methods:
/// `FetchQuery::new().flags().modseq().body()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchQuery {
    flags: bool,
    internal_date: bool,
    size: bool,
    modseq: bool,
    sections: Vec<(Section, Option<(u32, u32)>)>,
    changed_since: Option<u64>,
    vanished: bool,
}

impl FetchQuery {
    pub fn new() -> Self {
        Self::default()
    }

    /// `FLAGS`.
    pub fn flags(mut self) -> Self {
        self.flags = true;
        self
    }

    /// `INTERNALDATE`, reported as unix seconds.
    pub fn internal_date(mut self) -> Self {
        self.internal_date = true;
        self
    }

    /// `RFC822.SIZE`.
    pub fn size(mut self) -> Self {
        self.size = true;
        self
    }

    /// `MODSEQ` (CONDSTORE).
    pub fn modseq(mut self) -> Self {
        self.modseq = true;
        self
    }

    /// `BODY.PEEK[]`: the whole message (PEEK: fetching does not set `\Seen`).
    pub fn body(self) -> Self {
        self.section(Section::Full)
    }

    /// `BODY.PEEK[HEADER]`.
    pub fn header(self) -> Self {
        self.section(Section::Header)
    }

    /// `BODY.PEEK[section]`.
    pub fn section(mut self, section: Section) -> Self {
        self.sections.push((section, None));
        self
    }

    /// `BODY.PEEK[section]<start.len>`: at most `len` bytes from byte `start`.
    pub fn partial(mut self, section: Section, start: u32, len: u32) -> Self {
        self.sections.push((section, Some((start, len))));
        self
    }

    /// `(CHANGEDSINCE modseq)` (CONDSTORE): only messages whose mod-sequence is higher.
    pub fn changed_since(mut self, modseq: u64) -> Self {
        self.changed_since = Some(modseq);
        self
    }

    /// `VANISHED` (QRESYNC, with [`FetchQuery::changed_since`]): also report the UIDs of the
    /// set expunged since that mod-sequence.
    pub fn vanished(mut self) -> Self {
        self.vanished = true;
        self
    }

    pub(crate) fn wants_vanished(&self) -> bool {
        self.vanished
    }

    /// `UID FETCH set (items) [(modifiers)]`.
    pub(crate) fn command(&self, set: &SequenceSet) -> Result<Command<'static>, ImapError> {
        if self.vanished && self.changed_since.is_none() {
            return Err(ImapError::InvalidArgument(
                "VANISHED needs CHANGEDSINCE".into(),
            ));
        }
        let mut items = vec!["UID".to_owned()];
        for (on, name) in [
            (self.flags, "FLAGS"),
            (self.internal_date, "INTERNALDATE"),
            (self.size, "RFC822.SIZE"),
            (self.modseq, "MODSEQ"),
        ] {
            if on {
                items.push(name.into());
            }
        }
        for (section, partial) in &self.sections {
            let mut item = format!("BODY.PEEK[{}]", section.wire()?);
            if let Some((start, len)) = partial {
                item.push_str(&format!("<{start}.{len}>"));
            }
            items.push(item);
        }
        let mut cmd = Command::new("UID FETCH")
            .raw(&set.to_string())
            .raw(&format!("({})", items.join(" ")));
        if let Some(m) = self.changed_since {
            let vanished = if self.vanished { " VANISHED" } else { "" };
            cmd = cmd.raw(&format!("(CHANGEDSINCE {m}{vanished})"));
        }
        Ok(cmd)
    }
}

/// One message's answer to a UID FETCH. Fields are `None` when not asked for (or when the
/// server left them out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub uid: u32,
    /// The message sequence number at the time of the response.
    pub seq: u32,
    pub flags: Option<Vec<Flag>>,
    /// INTERNALDATE (when the server received the message) as unix seconds.
    pub internal_date: Option<i64>,
    /// RFC822.SIZE in bytes.
    pub size: Option<u64>,
    pub modseq: Option<u64>,
    /// Body sections, in the order the server sent them.
    pub sections: Vec<SectionData>,
}

/// One `BODY[section]<origin>` of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionData {
    /// The section text between the brackets, upper case (`""`, `HEADER`, `1.2.MIME`).
    pub section: String,
    /// For a partial fetch, the first byte's offset.
    pub origin: Option<u32>,
    /// The bytes, or `None` when the server said NIL (the section does not exist).
    pub data: Option<Vec<u8>>,
}

impl Fetched {
    /// The bytes of `section` (a plain, not partial, fetch of it).
    pub fn section(&self, section: &Section) -> Option<&[u8]> {
        self.find(section, None)
    }

    /// The bytes of a partial fetch of `section` that started at `start`.
    pub fn partial(&self, section: &Section, start: u32) -> Option<&[u8]> {
        self.find(section, Some(start))
    }

    /// `BODY[]`: the whole message.
    pub fn body(&self) -> Option<&[u8]> {
        self.section(&Section::Full)
    }

    /// `BODY[HEADER]`.
    pub fn header(&self) -> Option<&[u8]> {
        self.section(&Section::Header)
    }

    /// Moves the bytes of `section` out (no copy), e.g. to hand a whole message to a parser.
    pub fn take_section(&mut self, section: &Section) -> Option<Vec<u8>> {
        self.take(section, None)
    }

    /// Moves the bytes of a partial fetch of `section` that started at `start` out.
    pub fn take_partial(&mut self, section: &Section, start: u32) -> Option<Vec<u8>> {
        self.take(section, Some(start))
    }

    fn take(&mut self, section: &Section, origin: Option<u32>) -> Option<Vec<u8>> {
        let key = section.wire().ok()?;
        self.sections
            .iter_mut()
            .find(|d| d.origin == origin && d.section == key)
            .and_then(|d| d.data.take())
    }

    fn find(&self, section: &Section, origin: Option<u32>) -> Option<&[u8]> {
        let key = section.wire().ok()?;
        self.sections
            .iter()
            .find(|d| d.origin == origin && d.section == key)
            .and_then(|d| d.data.as_deref())
    }
}

/// The typed fields of one FETCH response; `uid` is `None` when the server left it out (an
/// unsolicited flag change without QRESYNC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchData {
    pub seq: u32,
    pub uid: Option<u32>,
    pub flags: Option<Vec<Flag>>,
    pub internal_date: Option<i64>,
    pub size: Option<u64>,
    pub modseq: Option<u64>,
    pub sections: Vec<SectionData>,
}

impl FetchData {
    /// Reads the alternating name/value list of `* seq FETCH (…)`. Never fails: unknown or
    /// malformed items are skipped.
    pub fn from_items(seq: u32, items: Vec<Value>) -> FetchData {
        let mut out = FetchData {
            seq,
            uid: None,
            flags: None,
            internal_date: None,
            size: None,
            modseq: None,
            sections: Vec::new(),
        };
        let mut it = items.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            let Value::Atom(name) = name else { continue };
            let upper = name.to_ascii_uppercase();
            match (upper.as_str(), value) {
                ("UID", Value::Number(n)) => out.uid = u32::try_from(n).ok(),
                ("RFC822.SIZE", Value::Number(n)) => out.size = Some(n),
                ("FLAGS", Value::List(flags)) => {
                    out.flags = Some(
                        flags
                            .into_iter()
                            .filter_map(|f| match f {
                                Value::Atom(a) if !a.eq_ignore_ascii_case("\\Recent") => {
                                    Some(Flag::parse(&a))
                                }
                                _ => None,
                            })
                            .collect(),
                    );
                }
                ("MODSEQ", Value::List(l)) => {
                    if let [Value::Number(m)] = l.as_slice() {
                        out.modseq = Some(*m);
                    }
                }
                ("INTERNALDATE", Value::String(s)) => out.internal_date = internal_date(&s),
                (_, data @ (Value::String(_) | Value::Nil)) => {
                    if let Some((section, origin)) = section_key(&upper) {
                        out.sections.push(SectionData {
                            section,
                            origin,
                            data: match data {
                                Value::String(s) => Some(s),
                                _ => None,
                            },
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Back to the generic form, for a response that turned out not to be ours (it then
    /// becomes an event, which only reads UID, FLAGS and MODSEQ).
    pub fn into_items(self) -> Vec<Value> {
        let mut items = Vec::new();
        if let Some(uid) = self.uid {
            items.extend([Value::Atom("UID".into()), Value::Number(u64::from(uid))]);
        }
        if let Some(flags) = self.flags {
            items.push(Value::Atom("FLAGS".into()));
            items.push(Value::List(
                flags
                    .iter()
                    .map(|f| Value::Atom(f.as_str().to_owned()))
                    .collect(),
            ));
        }
        if let Some(m) = self.modseq {
            items.extend([
                Value::Atom("MODSEQ".into()),
                Value::List(vec![Value::Number(m)]),
            ]);
        }
        items
    }

    pub fn into_fetched(self) -> Option<Fetched> {
        Some(Fetched {
            uid: self.uid?,
            seq: self.seq,
            flags: self.flags,
            internal_date: self.internal_date,
            size: self.size,
            modseq: self.modseq,
            sections: self.sections,
        })
    }
}

/// `BODY[1.MIME]<0>` → (`1.MIME`, Some(0)); RFC822 forms map to their BODY sections.
fn section_key(name: &str) -> Option<(String, Option<u32>)> {
    match name {
        "RFC822" => return Some((String::new(), None)),
        "RFC822.HEADER" => return Some(("HEADER".into(), None)),
        "RFC822.TEXT" => return Some(("TEXT".into(), None)),
        _ => {}
    }
    let rest = name.strip_prefix("BODY[")?;
    let close = rest.rfind(']')?;
    let section = rest.get(..close)?.to_owned();
    let after = rest.get(close + 1..)?;
    let origin = if after.is_empty() {
        None
    } else {
        let digits = after.strip_prefix('<')?.strip_suffix('>')?;
        Some(digits.parse().ok()?)
    };
    Some((section, origin))
}

/// Parses an INTERNALDATE, `"17-Jul-1996 02:44:25 -0700"` (the day may be space-padded),
/// to unix seconds. `None` if it is not one.
pub fn internal_date(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.trim_start();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.split_once(' ')?;
    let mut d = date.split('-');
    let day: u32 = d.next()?.parse().ok()?;
    let month = month_number(d.next()?)?;
    let year_s = d.next()?;
    if d.next().is_some() || year_s.len() != 4 {
        return None;
    }
    let year: i64 = year_s.parse().ok()?;
    let mut t = time.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let f = t.next()?;
        if f.len() != 2 {
            return None;
        }
        let v: i64 = f.parse().ok()?;
        (v <= max).then_some(v)
    };
    let (h, m, sec) = (field(23)?, field(59)?, field(60)?);
    let zb = zone.as_bytes();
    if zb.len() != 5 || !matches!(zb[0], b'+' | b'-') || !zb[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let zh: i64 = zone[1..3].parse().ok()?;
    let zm: i64 = zone[3..5].parse().ok()?;
    let offset = (zh * 60 + zm) * 60 * if zb[0] == b'-' { -1 } else { 1 };
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + m * 60 + sec - offset)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(crate) fn month_number(name: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

pub(crate) fn month_name(month: u32) -> &'static str {
    MONTHS[(month.clamp(1, 12) - 1) as usize]
}

pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    let month = time::Month::try_from(month.clamp(1, 12) as u8).unwrap_or(time::Month::January);
    u32::from(time::util::days_in_month(
        month,
        year.clamp(-9999, 9999) as i32,
    ))
}

/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// Days since 1970-01-01 of a proleptic Gregorian date. The caller has checked the day
/// against [`days_in_month`]; a year outside the `time` crate's range (±9999) counts as the
/// nearest it can hold.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year.clamp(-9999, 9999) as i32;
    let month = time::Month::try_from(month.clamp(1, 12) as u8).unwrap_or(time::Month::January);
    let day = day.clamp(1, u32::from(time::util::days_in_month(month, year))) as u8;
    time::Date::from_calendar_date(year, month, day)
        .map(|d| i64::from(d.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY)
        .unwrap_or(0)
}

/// The inverse of [`days_from_civil`]: (year, month, day), clamped to the years ±9999.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let jd = days.saturating_add(UNIX_EPOCH_JULIAN_DAY);
    let jd = jd.clamp(
        i64::from(time::Date::MIN.to_julian_day()),
        i64::from(time::Date::MAX.to_julian_day()),
    ) as i32;
    let d = time::Date::from_julian_day(jd).unwrap_or(time::Date::MIN);
    (
        i64::from(d.year()),
        u32::from(u8::from(d.month())),
        u32::from(d.day()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::parse;
    use crate::imap::response::{Response, Untagged};
    use proptest::prelude::*;

    fn fetch(bytes: &[u8]) -> FetchData {
        match parse::response(bytes).unwrap() {
            Response::Untagged(Untagged::Fetch { seq, items }) => FetchData::from_items(seq, items),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_fetch_response_is_typed() {
        let f = fetch(
            b"* 3 FETCH (UID 17 FLAGS (\\Seen \\flagged \\Recent $Forwarded) MODSEQ (42) \
              INTERNALDATE \" 2-Mar-2026 10:00:00 +0100\" RFC822.SIZE 11 \
              BODY[] {12}\r\nSubject: x\r\n BODY[HEADER] {3}\r\nh\r\n \
              BODY[1.2]<4> {2}\r\nab BODY[2] NIL)\r\n",
        );
        let f = f.into_fetched().unwrap();
        assert_eq!((f.seq, f.uid), (3, 17));
        assert_eq!(
            f.flags.as_deref(),
            Some(
                &[
                    Flag::Seen,
                    Flag::Flagged,
                    Flag::Keyword("$Forwarded".into())
                ][..]
            )
        );
        assert_eq!(f.modseq, Some(42));
        assert_eq!(f.size, Some(11));
        // 2026-03-02 09:00:00 UTC.
        assert_eq!(f.internal_date, Some(1_772_442_000));
        assert_eq!(f.body(), Some(&b"Subject: x\r\n"[..]));
        assert_eq!(f.header(), Some(&b"h\r\n"[..]));
        assert_eq!(f.partial(&Section::Part(vec![1, 2]), 4), Some(&b"ab"[..]));
        assert_eq!(f.section(&Section::Part(vec![1, 2])), None);
        assert_eq!(f.section(&Section::Part(vec![2])), None);
        assert_eq!(f.sections.len(), 4);
        let mut f = f;
        assert_eq!(f.take_partial(&Section::Part(vec![1, 2]), 0), None);
        assert_eq!(
            f.take_partial(&Section::Part(vec![1, 2]), 4).as_deref(),
            Some(&b"ab"[..])
        );
        assert_eq!(f.partial(&Section::Part(vec![1, 2]), 4), None, "moved out");
    }

    #[test]
    fn a_fetch_without_uid_is_not_a_message() {
        let f = fetch(b"* 1 FETCH (FLAGS (\\Deleted))\r\n");
        assert_eq!(f.flags, Some(vec![Flag::Deleted]));
        assert!(f.into_fetched().is_none());
    }

    #[test]
    fn queries_render_with_modifiers() {
        let set: SequenceSet = "1:4,9".parse().unwrap();
        let q = FetchQuery::new()
            .flags()
            .modseq()
            .internal_date()
            .size()
            .body()
            .partial(Section::Part(vec![1, 2]), 0, 100)
            .section(Section::HeaderFields(vec!["From".into(), "Subject".into()]))
            .changed_since(7)
            .vanished();
        let cmd = q.command(&set).unwrap();
        let text: Vec<u8> = cmd
            .parts
            .iter()
            .flat_map(|p| match p {
                crate::imap::command::Part::Text(t) => t.clone(),
                crate::imap::command::Part::Literal(_) => panic!("no literal expected"),
            })
            .collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "UID FETCH 1:4,9 (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ BODY.PEEK[] \
             BODY.PEEK[1.2]<0.100> BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]) \
             (CHANGEDSINCE 7 VANISHED)"
        );
        for bad in [
            Section::Part(vec![]),
            Section::PartMime(vec![1, 0]),
            Section::HeaderFields(vec!["Sub ject)".into()]),
            Section::HeaderFields(vec![]),
        ] {
            assert!(FetchQuery::new().section(bad).command(&set).is_err());
        }
        assert!(FetchQuery::new().vanished().command(&set).is_err());
    }

    #[test]
    fn internal_dates() {
        let cases: &[(&str, Option<i64>)] = &[
            ("01-Jan-1970 00:00:00 +0000", Some(0)),
            ("17-Jul-1996 02:44:25 -0700", Some(837_596_665)),
            (" 1-Mar-2000 00:00:00 +0000", Some(951_868_800)),
            ("29-Feb-2024 23:59:59 +1400", Some(1_709_200_799)),
            ("29-Feb-2023 00:00:00 +0000", None),
            ("32-Jan-2020 00:00:00 +0000", None),
            ("01-Foo-2020 00:00:00 +0000", None),
            ("01-Jan-2020 24:00:00 +0000", None),
            ("01-Jan-2020 00:00:00 0000", None),
            ("01-Jan-2020 00:00 +0000", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(internal_date(s.as_bytes()), *want, "{s:?}");
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000i64, -1, 0, 59, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    proptest! {
        #[test]
        fn internal_date_never_panics(s in "[ 0-9A-Za-z:+-]{0,30}") {
            let _ = internal_date(s.as_bytes());
        }

        #[test]
        fn section_keys_never_panic(s in "[A-Z0-9.\\[\\]<>() ]{0,30}") {
            let _ = section_key(&s);
        }

        #[test]
        fn fetch_items_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut b = b"* 1 FETCH (".to_vec();
            b.extend_from_slice(&bytes);
            b.extend_from_slice(b")\r\n");
            if let Ok(Response::Untagged(Untagged::Fetch { seq, items })) = parse::response(&b) {
                let _ = FetchData::from_items(seq, items).into_fetched();
            }
        }
    }
}

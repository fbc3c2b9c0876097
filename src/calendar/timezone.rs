//! The EAS `TimeZone` value (MS-ASCAL 2.2.2.39): base64 of a 172-byte Windows
//! `TIME_ZONE_INFORMATION`, made from an IANA zone or a VTIMEZONE and turned back into one.
//!
//! The blob describes one year's rule only: a standard offset (`Bias`, minutes *west* of UTC),
//! and optionally the two yearly transitions as "n-th weekday of a month at a local time"
//! (`wYear` 0, `wDay` 1–4 or 5 for the last). Zones are taken from the IANA database that
//! `chrono-tz` ships; no offsets are tabulated here.
//!
//! Going back is many-to-one: dozens of IANA zones share each rule (Europe/Berlin, Paris,
//! Rome…). [`TimeZoneInfo::to_iana`] keeps, in this order: a zone the caller hints (the zone
//! the stored event already had, then the user's own zone) when its rule for that year is the
//! same; a zone named by the blob's StandardName/DaylightName (an IANA name as this module
//! writes it, or a Windows zone name, resolved by `calcard`); for a fixed whole-hour offset
//! with no name, `UTC` or `Etc/GMT±N`; otherwise the alphabetically first zone of a continent
//! or ocean area with that rule. A blob no zone matches (a phone's invented rule) becomes a
//! VTIMEZONE of its own ([`TimeZoneInfo::add_vtimezone`]), so nothing is guessed.

use std::str::FromStr;

use base64::Engine;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarDay, ICalendarEntry,
    ICalendarFrequency, ICalendarMonth, ICalendarProperty, ICalendarRecurrenceRule, ICalendarValue,
    ICalendarWeekday,
};
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc,
    Weekday,
};
use chrono_tz::{OffsetComponents, Tz};

/// Bytes of a `TIME_ZONE_INFORMATION`.
pub const BLOB_LEN: usize = 172;

/// Why a TimeZone value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeZoneError {
    #[error("TimeZone is not base64")]
    Base64,
    #[error("TimeZone is {0} bytes, not 172")]
    Length(usize),
    #[error("TimeZone has an impossible transition date")]
    BadDate,
}

/// A Windows `SYSTEMTIME` as the transition dates use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SystemTime {
    /// 0 for a yearly rule (the only form phones send); else an absolute date.
    pub year: u16,
    /// 1–12; 0 means "no transition" (no daylight saving time).
    pub month: u16,
    /// 0 = Sunday … 6 = Saturday.
    pub day_of_week: u16,
    /// For a yearly rule the week: 1–4, or 5 for the last one in the month.
    pub day: u16,
    pub hour: u16,
    pub minute: u16,
    pub second: u16,
    pub milliseconds: u16,
}

/// One decoded TimeZone value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeZoneInfo {
    /// Minutes to add to local standard time to get UTC (Berlin: -60).
    pub bias: i32,
    pub standard_name: String,
    pub standard_date: SystemTime,
    pub standard_bias: i32,
    pub daylight_name: String,
    pub daylight_date: SystemTime,
    /// Added to `bias` during daylight saving time (usually -60).
    pub daylight_bias: i32,
}

impl TimeZoneInfo {
    /// UTC, the value for events without a zone and all-day events of phones that want one.
    pub fn utc() -> TimeZoneInfo {
        TimeZoneInfo {
            standard_name: "UTC".into(),
            daylight_name: "UTC".into(),
            ..TimeZoneInfo::default()
        }
    }

    /// The 172 bytes, little-endian as Windows lays them out.
    pub fn to_bytes(&self) -> [u8; BLOB_LEN] {
        let mut out = [0u8; BLOB_LEN];
        out[0..4].copy_from_slice(&self.bias.to_le_bytes());
        put_name(&mut out[4..68], &self.standard_name);
        put_systemtime(&mut out[68..84], &self.standard_date);
        out[84..88].copy_from_slice(&self.standard_bias.to_le_bytes());
        put_name(&mut out[88..152], &self.daylight_name);
        put_systemtime(&mut out[152..168], &self.daylight_date);
        out[168..172].copy_from_slice(&self.daylight_bias.to_le_bytes());
        out
    }

    /// Reads the 172 bytes. Names are UTF-16 up to the first NUL; broken surrogates become
    /// U+FFFD rather than an error, since the names are informational.
    pub fn from_bytes(b: &[u8]) -> Result<TimeZoneInfo, TimeZoneError> {
        if b.len() != BLOB_LEN {
            return Err(TimeZoneError::Length(b.len()));
        }
        let i32_at = |at: usize| i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let info = TimeZoneInfo {
            bias: i32_at(0),
            standard_name: get_name(&b[4..68]),
            standard_date: get_systemtime(&b[68..84]),
            standard_bias: i32_at(84),
            daylight_name: get_name(&b[88..152]),
            daylight_date: get_systemtime(&b[152..168]),
            daylight_bias: i32_at(168),
        };
        for st in [&info.standard_date, &info.daylight_date] {
            let bad = st.month > 12
                || (st.month != 0
                    && (st.day_of_week > 6 || st.hour > 23 || st.minute > 59)
                    && !(st.hour == 24 && st.minute == 0));
            if bad {
                return Err(TimeZoneError::BadDate);
            }
        }
        // Biases beyond a day are garbage that would overflow date arithmetic later.
        if [info.bias, info.standard_bias, info.daylight_bias]
            .iter()
            .any(|b| b.abs() > 24 * 60)
        {
            return Err(TimeZoneError::BadDate);
        }
        Ok(info)
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.to_bytes())
    }

    pub fn from_base64(s: &str) -> Result<TimeZoneInfo, TimeZoneError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| TimeZoneError::Base64)?;
        TimeZoneInfo::from_bytes(&bytes)
    }

    /// Whether the value has daylight saving time.
    pub fn has_dst(&self) -> bool {
        self.standard_date.month != 0 && self.daylight_date.month != 0
    }

    /// The rule of `tz` in `year`, read from the IANA database by finding the year's
    /// transitions. A zone that changed its standard offset for good during the year is given
    /// the offset it ends the year with.
    pub fn from_iana(tz: Tz, year: i32) -> TimeZoneInfo {
        // Finding a year's transitions walks it a day at a time (about 50 µs), and every
        // event of a calendar asks for its zone's value: most of a Sync page's own work
        // before this was kept. Zones × years in use are few; the bound only guards memory.
        static KNOWN: std::sync::LazyLock<
            std::sync::Mutex<std::collections::HashMap<(Tz, i32), TimeZoneInfo>>,
        > = std::sync::LazyLock::new(Default::default);
        const MAX_KNOWN: usize = 4096;
        let key = (tz, year);
        if let Some(info) = KNOWN.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return info;
        }
        let info = Self::read_iana(tz, year);
        if let Ok(mut known) = KNOWN.lock() {
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(key, info.clone());
        }
        info
    }

    fn read_iana(tz: Tz, year: i32) -> TimeZoneInfo {
        let name = tz.name();
        let transitions = transitions_in(tz, year);
        let dst_pair = transitions.iter().find_map(|t| {
            let to_dst = !t.after_dst.is_zero();
            let from_dst = !t.before_dst.is_zero();
            (to_dst != from_dst).then_some(())
        });
        let end = tz.from_utc_datetime(&end_of_year(year));
        let mut info = TimeZoneInfo {
            bias: -(end.offset().base_utc_offset().num_minutes() as i32),
            standard_name: truncate_name(name),
            daylight_name: truncate_name(name),
            ..TimeZoneInfo::default()
        };
        if dst_pair.is_none() {
            // Within a DST period all year long (permanent "DST") the offset is what counts.
            info.bias = -(end.offset().fix().local_minus_utc() / 60);
            return info;
        }
        for t in &transitions {
            let to_dst = !t.after_dst.is_zero();
            if to_dst != t.before_dst.is_zero() {
                continue;
            }
            // Windows states the transition in the local time in force *before* it.
            let local_before = t.at + Duration::seconds(t.before_total as i64);
            let st = rule_date(tz, year, local_before, to_dst);
            if to_dst {
                info.daylight_date = st;
                info.daylight_bias = -(t.after_dst.num_minutes() as i32);
                info.bias = -(t.after_base / 60);
            } else {
                info.standard_date = st;
                info.bias = -(t.after_total / 60);
            }
        }
        if !info.has_dst() {
            info.standard_date = SystemTime::default();
            info.daylight_date = SystemTime::default();
            info.daylight_bias = 0;
        }
        info
    }

    /// The UTC offset in seconds (local − UTC) in force at a UTC instant.
    pub fn utc_offset_at(&self, utc: NaiveDateTime) -> i32 {
        let standard = -(self.bias + self.standard_bias) * 60;
        if !self.has_dst() {
            return standard;
        }
        let daylight = -(self.bias + self.daylight_bias) * 60;
        let year = utc.year();
        // Transition instants in UTC: DST starts at a local standard time, ends at a local
        // daylight time.
        let (Some(start), Some(end)) = (
            self.daylight_date.resolve(year),
            self.standard_date.resolve(year),
        ) else {
            return standard;
        };
        let start = start - Duration::seconds(standard as i64);
        let end = end - Duration::seconds(daylight as i64);
        let in_dst = if start < end {
            utc >= start && utc < end
        } else {
            // Southern hemisphere: daylight time spans the new year.
            utc >= start || utc < end
        };
        if in_dst { daylight } else { standard }
    }

    /// The local time of a UTC instant in this zone.
    pub fn to_local(&self, utc: NaiveDateTime) -> NaiveDateTime {
        utc + Duration::seconds(self.utc_offset_at(utc) as i64)
    }

    /// The UTC instant of a local time; in the hour a spring-forward skips, the time is read
    /// with the offset before the change (as Windows does); in the repeated hour, the first.
    pub fn to_utc(&self, local: NaiveDateTime) -> NaiveDateTime {
        let standard = -(self.bias + self.standard_bias) * 60;
        let daylight = -(self.bias + self.daylight_bias) * 60;
        let mut valid: Vec<NaiveDateTime> = [standard, daylight]
            .into_iter()
            .map(|o| local - Duration::seconds(o as i64))
            .filter(|utc| self.to_local(*utc) == local)
            .collect();
        valid.sort();
        valid.first().copied().unwrap_or_else(|| {
            // In the skipped hour: the offset of the day before.
            let before = self.utc_offset_at(local - Duration::days(1));
            local - Duration::seconds(before as i64)
        })
    }

    /// Whether two values describe the same clock in `year` and the next (names ignored).
    pub fn same_rule(&self, other: &TimeZoneInfo, year: i32) -> bool {
        if self.has_dst() != other.has_dst() {
            return false;
        }
        let offsets = |t: &TimeZoneInfo| {
            (
                t.bias + t.standard_bias,
                if t.has_dst() {
                    t.bias + t.daylight_bias
                } else {
                    0
                },
            )
        };
        if offsets(self) != offsets(other) {
            return false;
        }
        if !self.has_dst() {
            return true;
        }
        (year..=year + 1).all(|y| {
            self.daylight_date.resolve(y) == other.daylight_date.resolve(y)
                && self.standard_date.resolve(y) == other.standard_date.resolve(y)
        })
    }

    /// The best IANA zone with this rule in `year` (ambiguity rules in the module docs), or
    /// `None` when no zone in the database has it.
    pub fn to_iana(&self, year: i32, hints: &[&str]) -> Option<Tz> {
        let fits = |tz: Tz| TimeZoneInfo::from_iana(tz, year).same_rule(self, year);
        for hint in hints {
            if let Ok(tz) = Tz::from_str(hint)
                && fits(tz)
            {
                return Some(tz);
            }
        }
        for name in [&self.standard_name, &self.daylight_name] {
            if let Some(tz) = zone_by_name(name)
                && fits(tz)
            {
                return Some(tz);
            }
        }
        if !self.has_dst() {
            let minutes = -(self.bias + self.standard_bias);
            if minutes == 0 {
                return Some(Tz::UTC);
            }
            if minutes % 60 == 0 && (-12..=14).contains(&(minutes / 60)) {
                // POSIX-style names have the sign inverted: Etc/GMT-1 is UTC+1.
                let name = format!("Etc/GMT{:+}", -(minutes / 60));
                if let Ok(tz) = Tz::from_str(&name) {
                    return Some(tz);
                }
            }
        }
        // Cheap test first: the offsets in January and July must match.
        let probes = [
            NaiveDate::from_ymd_opt(year, 1, 15)?.and_hms_opt(12, 0, 0)?,
            NaiveDate::from_ymd_opt(year, 7, 15)?.and_hms_opt(12, 0, 0)?,
        ];
        let want: Vec<i32> = probes.iter().map(|p| self.utc_offset_at(*p)).collect();
        let mut best: Option<Tz> = None;
        for tz in chrono_tz::TZ_VARIANTS {
            if !is_geographic(tz.name()) {
                continue;
            }
            let got = probes
                .iter()
                .map(|p| tz.offset_from_utc_datetime(p).fix().local_minus_utc());
            if !got.eq(want.iter().copied()) || !fits(tz) {
                continue;
            }
            if best.is_none_or(|b| tz.name() < b.name()) {
                best = Some(tz);
            }
        }
        best
    }

    /// Adds a VTIMEZONE with this rule under `tzid` to `ical` (for a blob no IANA zone
    /// matches). The blob states one rule with no start, so the observances start in 1970 and
    /// hold for every year; `_year` is kept for symmetry with [`TimeZoneInfo::from_iana`].
    pub fn add_vtimezone(&self, ical: &mut ICalendar, tzid: &str, _year: i32) -> Option<u32> {
        let year = 1970;
        let root = ical.components.first()?;
        if root.component_type != ICalendarComponentType::VCalendar {
            return None;
        }
        let standard = -(self.bias + self.standard_bias);
        let daylight = -(self.bias + self.daylight_bias);
        let mut observances = Vec::new();
        if self.has_dst() {
            observances.push(observance(
                ICalendarComponentType::Standard,
                &self.standard_date,
                year,
                daylight,
                standard,
            ));
            observances.push(observance(
                ICalendarComponentType::Daylight,
                &self.daylight_date,
                year,
                standard,
                daylight,
            ));
        } else {
            let mut c = ICalendarComponent::new(ICalendarComponentType::Standard);
            c.entries
                .push(ICalendarEntry::new(ICalendarProperty::Dtstart).with_value(
                    crate::calendar::ical::local_value(
                        NaiveDate::from_ymd_opt(1970, 1, 1)?.and_hms_opt(0, 0, 0)?,
                    ),
                ));
            c.entries
                .push(offset_entry(ICalendarProperty::Tzoffsetfrom, standard));
            c.entries
                .push(offset_entry(ICalendarProperty::Tzoffsetto, standard));
            observances.push(c);
        }
        let id = ical.components.len() as u32;
        let mut vtz = ICalendarComponent::new(ICalendarComponentType::VTimezone);
        vtz.entries
            .push(ICalendarEntry::new(ICalendarProperty::Tzid).with_value(tzid.to_string()));
        vtz.component_ids = (id + 1..id + 1 + observances.len() as u32).collect();
        ical.components.push(vtz);
        ical.components.extend(observances);
        ical.components[0].component_ids.insert(0, id);
        Some(id)
    }

    /// The rule of a VTIMEZONE component (with its STANDARD/DAYLIGHT children in `ical`) for
    /// `year`. A TZID the IANA database knows wins (the database is kept current; the
    /// VTIMEZONE may be a stale copy); otherwise the yearly RRULEs of the observances in force
    /// that year are read. `None` when neither works (e.g. observances by RDATE only).
    pub fn from_vtimezone(
        ical: &ICalendar,
        vtimezone: &ICalendarComponent,
        year: i32,
    ) -> Option<TimeZoneInfo> {
        if let Some((_, calcard::common::timezone::Tz::Tz(tz))) = vtimezone.timezone() {
            return Some(TimeZoneInfo::from_iana(tz, year));
        }
        let tzid = vtimezone
            .property(&ICalendarProperty::Tzid)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            .unwrap_or_default();
        let mut standard: Option<(NaiveDateTime, i32, Option<SystemTime>)> = None;
        let mut daylight: Option<(NaiveDateTime, i32, Option<SystemTime>)> = None;
        let year_end = end_of_year(year);
        for id in &vtimezone.component_ids {
            let c = ical.components.get(*id as usize)?;
            let is_dst = match c.component_type {
                ICalendarComponentType::Standard => false,
                ICalendarComponentType::Daylight => true,
                _ => continue,
            };
            let start = c
                .property(&ICalendarProperty::Dtstart)
                .and_then(|e| e.values.first())
                .and_then(|v| v.as_partial_date_time())
                .and_then(|d| d.to_date_time())
                .map(|d| d.date_time)?;
            let to = c
                .property(&ICalendarProperty::Tzoffsetto)
                .and_then(|e| e.values.first())
                .and_then(utc_offset_seconds)?;
            if start > year_end {
                continue;
            }
            let rule = c
                .property(&ICalendarProperty::Rrule)
                .and_then(|e| e.values.first())
                .and_then(|v| match v {
                    ICalendarValue::RecurrenceRule(r) => Some(r),
                    _ => None,
                });
            let rule = match rule {
                Some(r) => {
                    let ended = r
                        .until
                        .as_ref()
                        .and_then(|u| u.to_date_time())
                        .is_some_and(|u| u.date_time.year() < year);
                    if ended {
                        continue;
                    }
                    Some(rule_from_rrule(r, start)?)
                }
                // An observance without RRULE holds from its start, unless a later one with a
                // rule replaces it.
                None => None,
            };
            let slot = if is_dst { &mut daylight } else { &mut standard };
            if slot.as_ref().is_none_or(|(s, _, _)| *s <= start) {
                *slot = Some((start, to / 60, rule));
            }
        }
        let (_, std_offset, std_rule) = standard.or(daylight)?;
        let mut info = TimeZoneInfo {
            bias: -std_offset,
            standard_name: truncate_name(tzid),
            daylight_name: truncate_name(tzid),
            ..TimeZoneInfo::default()
        };
        if let (Some(std_rule), Some((_, dst_offset, Some(dst_rule)))) = (std_rule, daylight) {
            info.standard_date = std_rule;
            info.daylight_date = dst_rule;
            info.daylight_bias = std_offset - dst_offset;
        }
        Some(info)
    }
}

/// The zone an item's local times are in: an IANA zone (the normal case), a rule of its own
/// (a VTIMEZONE or blob no IANA zone matches), or UTC.
#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    Utc,
    Iana(Tz),
    Rules { tzid: String, info: TimeZoneInfo },
}

impl Zone {
    /// The UTC instant of a local time (the earlier one in a repeated hour; in a skipped hour,
    /// read with the offset before the change).
    pub fn to_utc(&self, local: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Utc => local,
            Zone::Iana(tz) => match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) => t.naive_utc(),
                chrono::LocalResult::Ambiguous(a, _) => a.naive_utc(),
                chrono::LocalResult::None => {
                    let before = tz
                        .offset_from_utc_datetime(&(local - Duration::days(1)))
                        .fix()
                        .local_minus_utc();
                    local - Duration::seconds(before as i64)
                }
            },
            Zone::Rules { info, .. } => info.to_utc(local),
        }
    }

    pub fn to_local(&self, utc: NaiveDateTime) -> NaiveDateTime {
        match self {
            Zone::Utc => utc,
            Zone::Iana(tz) => tz.from_utc_datetime(&utc).naive_local(),
            Zone::Rules { info, .. } => info.to_local(utc),
        }
    }

    /// The TimeZone value for `year`.
    pub fn blob(&self, year: i32) -> TimeZoneInfo {
        match self {
            Zone::Utc => TimeZoneInfo::utc(),
            Zone::Iana(tz) => TimeZoneInfo::from_iana(*tz, year),
            Zone::Rules { info, .. } => info.clone(),
        }
    }

    /// The TZID to write (`None` for UTC, written with `Z`).
    pub fn tzid(&self) -> Option<&str> {
        match self {
            Zone::Utc => None,
            Zone::Iana(tz) => Some(tz.name()),
            Zone::Rules { tzid, .. } => Some(tzid),
        }
    }

    /// The zone of a phone's TimeZone value (see [`TimeZoneInfo::to_iana`] for the choice).
    pub fn from_blob(info: &TimeZoneInfo, year: i32, hints: &[&str]) -> Zone {
        match info.to_iana(year, hints) {
            Some(Tz::UTC) | Some(Tz::Etc__UTC) => Zone::Utc,
            Some(tz) => Zone::Iana(tz),
            None => {
                // A TZID that needs no quoting: the standard offset, as TZOFFSETTO spells it.
                let minutes = -info.bias;
                let name = format!(
                    "EAS{}{:02}{:02}",
                    if minutes < 0 { '-' } else { '+' },
                    minutes.abs() / 60,
                    minutes.abs() % 60
                );
                Zone::Rules {
                    tzid: name,
                    info: info.clone(),
                }
            }
        }
    }

    /// The zone of a TZID in an object: its VTIMEZONE (resolved to IANA when calcard knows
    /// the name, else its rules), else the name itself; `None` when nothing resolves.
    pub fn from_tzid(ical: &ICalendar, tzid: &str, year: i32) -> Option<Zone> {
        let vtz = ical.timezones().find(|c| {
            c.property(&ICalendarProperty::Tzid)
                .and_then(|e| e.values.first())
                .and_then(|v| v.as_text())
                == Some(tzid)
        });
        if let Some(vtz) = vtz {
            if let Some((_, calcard::common::timezone::Tz::Tz(tz))) = vtz.timezone() {
                return Some(Zone::Iana(tz));
            }
            if let Some(info) = TimeZoneInfo::from_vtimezone(ical, vtz, year) {
                return Some(Zone::Rules {
                    tzid: tzid.to_owned(),
                    info,
                });
            }
        }
        match calcard::common::timezone::Tz::from_str(tzid) {
            Ok(calcard::common::timezone::Tz::Tz(tz)) => Some(Zone::Iana(tz)),
            _ => None,
        }
    }
}

impl SystemTime {
    /// The local date and time this rule gives in `year`.
    pub fn resolve(&self, year: i32) -> Option<NaiveDateTime> {
        if self.month == 0 {
            return None;
        }
        let time = |d: NaiveDate| {
            // 24:00 (seen in some zones' rules) is midnight of the next day.
            d.and_hms_opt(0, 0, 0).map(|t| {
                t + Duration::hours(self.hour as i64)
                    + Duration::minutes(self.minute as i64)
                    + Duration::seconds(self.second.min(59) as i64)
            })
        };
        if self.year != 0 {
            return time(NaiveDate::from_ymd_opt(
                self.year as i32,
                self.month as u32,
                self.day as u32,
            )?);
        }
        let weekday = weekday_from_sunday0(self.day_of_week)?;
        let date = nth_weekday(
            year,
            self.month as u32,
            weekday,
            self.day.clamp(1, 5) as i32,
        )?;
        time(date)
    }
}

/// The `n`-th (1–4, 5 = last) `weekday` of a month.
pub(crate) fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: i32) -> Option<NaiveDate> {
    if n >= 5 {
        let next = if month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, month + 1, 1)?
        };
        let last = next.pred_opt()?;
        let back = (last.weekday().num_days_from_sunday() + 7 - weekday.num_days_from_sunday()) % 7;
        return last.checked_sub_signed(Duration::days(back as i64));
    }
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n.max(1) as u8)
}

pub(crate) fn weekday_from_sunday0(d: u16) -> Option<Weekday> {
    Some(match d {
        0 => Weekday::Sun,
        1 => Weekday::Mon,
        2 => Weekday::Tue,
        3 => Weekday::Wed,
        4 => Weekday::Thu,
        5 => Weekday::Fri,
        6 => Weekday::Sat,
        _ => return None,
    })
}

/// An IANA zone named by a blob's name field: an IANA name as this module writes it, or a
/// Windows zone name ("W. Europe Standard Time") as Windows phones do.
fn zone_by_name(name: &str) -> Option<Tz> {
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    if let Ok(tz) = Tz::from_str(name) {
        return Some(tz);
    }
    match calcard::common::timezone::Tz::from_str(name) {
        Ok(calcard::common::timezone::Tz::Tz(tz)) => Some(tz),
        _ => None,
    }
}

fn is_geographic(name: &str) -> bool {
    const AREAS: &[&str] = &[
        "Africa/",
        "America/",
        "Antarctica/",
        "Asia/",
        "Atlantic/",
        "Australia/",
        "Europe/",
        "Indian/",
        "Pacific/",
    ];
    AREAS.iter().any(|a| name.starts_with(a))
}

/// One change of offset: the UTC instant and the offsets around it (seconds).
struct Transition {
    at: NaiveDateTime,
    before_total: i32,
    before_dst: Duration,
    after_total: i32,
    after_base: i32,
    after_dst: Duration,
}

fn end_of_year(year: i32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(year, 12, 31)
        .and_then(|d| d.and_hms_opt(23, 59, 59))
        .unwrap_or_default()
}

/// The transitions of `tz` in a calendar year, found by stepping a day at a time and then
/// narrowing to the minute: chrono-tz does not expose its transition table.
fn transitions_in(tz: Tz, year: i32) -> Vec<Transition> {
    let Some(start) = NaiveDate::from_ymd_opt(year, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0))
    else {
        return Vec::new();
    };
    let total = |t: NaiveDateTime| tz.offset_from_utc_datetime(&t).fix().local_minus_utc();
    let mut out = Vec::new();
    let mut prev = start;
    let mut prev_off = total(prev);
    let days = if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
        366
    } else {
        365
    };
    for day in 1..=days {
        let next = start + Duration::days(day);
        let off = total(next);
        if off != prev_off {
            // Binary search down to the minute for the first instant with the new offset.
            let (mut lo, mut hi) = (prev, next);
            while hi - lo > Duration::minutes(1) {
                let mid = lo + (hi - lo) / 2;
                if total(mid) == prev_off {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let before = tz.offset_from_utc_datetime(&lo);
            let after = tz.offset_from_utc_datetime(&hi);
            out.push(Transition {
                at: hi,
                before_total: before.fix().local_minus_utc(),
                before_dst: before.dst_offset(),
                after_total: after.fix().local_minus_utc(),
                after_base: after.base_utc_offset().num_seconds() as i32,
                after_dst: after.dst_offset(),
            });
        }
        prev = next;
        prev_off = off;
    }
    out
}

/// The yearly rule of a transition at local time `local`: "the n-th weekday", or "the last"
/// when that is what it is in this year and the next two (a 4th Sunday that is also the last
/// is ambiguous in one year alone).
fn rule_date(tz: Tz, year: i32, local: NaiveDateTime, to_dst: bool) -> SystemTime {
    let date = local.date();
    let n = (date.day() as i32 - 1) / 7 + 1;
    let is_last = |d: NaiveDate| d.day() + 7 > days_in_month(d.year(), d.month());
    let mut week = n as u16;
    if is_last(date) {
        let later_last = (1..=2).all(|k| {
            transitions_in(tz, year + k)
                .iter()
                .map(|t| (t.at + Duration::seconds(t.before_total as i64), t))
                .find(|(l, t)| l.month() == local.month() && t.after_dst.is_zero() != to_dst)
                .is_none_or(|(l, _)| is_last(l.date()))
        });
        if later_last || n >= 5 {
            week = 5;
        }
    }
    SystemTime {
        year: 0,
        month: local.month() as u16,
        day_of_week: local.weekday().num_days_from_sunday() as u16,
        day: week,
        hour: local.hour() as u16,
        minute: local.minute() as u16,
        second: 0,
        milliseconds: 0,
    }
}

pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|d| d.pred_opt()).map_or(31, |d| d.day())
}

/// A VTIMEZONE observance's yearly RRULE (`FREQ=YEARLY;BYMONTH=m;BYDAY=nDD`) as a rule.
fn rule_from_rrule(r: &ICalendarRecurrenceRule, start: NaiveDateTime) -> Option<SystemTime> {
    if r.freq != ICalendarFrequency::Yearly || r.bymonth.len() != 1 || r.byday.len() != 1 {
        return None;
    }
    let month = r.bymonth[0].month() as u16;
    let day = r.byday[0];
    let week = match day.ordwk {
        Some(n) if (1..=4).contains(&n) => n as u16,
        Some(-1) | Some(5) => 5,
        // "Sunday on or after the 8th" (BYMONTHDAY=8..14) is the 2nd Sunday.
        None => {
            let first = *r.bymonthday.iter().min()?;
            if first < 1 || (first - 1) % 7 != 0 {
                return None;
            }
            ((first - 1) / 7 + 1) as u16
        }
        _ => return None,
    };
    Some(SystemTime {
        year: 0,
        month,
        day_of_week: weekday_index(day.weekday),
        day: week,
        hour: start.hour() as u16,
        minute: start.minute() as u16,
        second: 0,
        milliseconds: 0,
    })
}

pub(crate) fn weekday_index(d: ICalendarWeekday) -> u16 {
    match d {
        ICalendarWeekday::Sunday => 0,
        ICalendarWeekday::Monday => 1,
        ICalendarWeekday::Tuesday => 2,
        ICalendarWeekday::Wednesday => 3,
        ICalendarWeekday::Thursday => 4,
        ICalendarWeekday::Friday => 5,
        ICalendarWeekday::Saturday => 6,
    }
}

pub(crate) fn ical_weekday(i: u16) -> ICalendarWeekday {
    match i {
        0 => ICalendarWeekday::Sunday,
        1 => ICalendarWeekday::Monday,
        2 => ICalendarWeekday::Tuesday,
        3 => ICalendarWeekday::Wednesday,
        4 => ICalendarWeekday::Thursday,
        5 => ICalendarWeekday::Friday,
        _ => ICalendarWeekday::Saturday,
    }
}

fn utc_offset_seconds(v: &ICalendarValue) -> Option<i32> {
    let p = v.as_partial_date_time()?;
    let secs = p.tz_hour? as i32 * 3600 + p.tz_minute.unwrap_or(0) as i32 * 60;
    Some(if p.tz_minus { -secs } else { secs })
}

fn offset_entry(name: ICalendarProperty, minutes: i32) -> ICalendarEntry {
    let abs = minutes.unsigned_abs();
    ICalendarEntry::new(name).with_value(calcard::common::PartialDateTime {
        tz_hour: Some((abs / 60) as u8),
        tz_minute: Some((abs % 60) as u8),
        tz_minus: minutes < 0,
        ..Default::default()
    })
}

fn observance(
    kind: ICalendarComponentType,
    rule: &SystemTime,
    year: i32,
    from: i32,
    to: i32,
) -> ICalendarComponent {
    let start = rule
        .resolve(year)
        .or_else(|| NaiveDate::from_ymd_opt(year, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)))
        .unwrap_or_default();
    let mut c = ICalendarComponent::new(kind);
    c.entries.push(
        ICalendarEntry::new(ICalendarProperty::Dtstart)
            .with_value(crate::calendar::ical::local_value(start)),
    );
    c.entries
        .push(offset_entry(ICalendarProperty::Tzoffsetfrom, from));
    c.entries
        .push(offset_entry(ICalendarProperty::Tzoffsetto, to));
    if rule.year == 0 {
        let ordwk = if rule.day >= 5 { -1 } else { rule.day as i16 };
        let rrule = ICalendarRecurrenceRule {
            freq: ICalendarFrequency::Yearly,
            bymonth: vec![ICalendarMonth::new(rule.month as u8, false)],
            byday: vec![ICalendarDay {
                ordwk: Some(ordwk),
                weekday: ical_weekday(rule.day_of_week),
            }],
            ..Default::default()
        };
        c.entries.push(
            ICalendarEntry::new(ICalendarProperty::Rrule)
                .with_value(ICalendarValue::RecurrenceRule(Box::new(rrule))),
        );
    }
    c
}

fn truncate_name(name: &str) -> String {
    // 32 UTF-16 units including the terminating NUL.
    let mut out = String::new();
    let mut units = 0;
    for c in name.chars() {
        units += c.len_utf16();
        if units > 31 {
            break;
        }
        out.push(c);
    }
    out
}

fn put_name(out: &mut [u8], name: &str) {
    for (i, unit) in name.encode_utf16().take(31).enumerate() {
        out[i * 2..i * 2 + 2].copy_from_slice(&unit.to_le_bytes());
    }
}

fn get_name(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

fn put_systemtime(out: &mut [u8], st: &SystemTime) {
    let fields = [
        st.year,
        st.month,
        st.day_of_week,
        st.day,
        st.hour,
        st.minute,
        st.second,
        st.milliseconds,
    ];
    for (i, f) in fields.iter().enumerate() {
        out[i * 2..i * 2 + 2].copy_from_slice(&f.to_le_bytes());
    }
}

fn get_systemtime(b: &[u8]) -> SystemTime {
    let f = |i: usize| u16::from_le_bytes([b[i * 2], b[i * 2 + 1]]);
    SystemTime {
        year: f(0),
        month: f(1),
        day_of_week: f(2),
        day: f(3),
        hour: f(4),
        minute: f(5),
        second: f(6),
        milliseconds: f(7),
    }
}

/// A UTC instant as chrono's type, for callers working in `DateTime<Utc>`.
pub fn utc(dt: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&dt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(month: u16, dow: u16, day: u16, hour: u16) -> SystemTime {
        SystemTime {
            month,
            day_of_week: dow,
            day,
            hour,
            ..SystemTime::default()
        }
    }

    #[test]
    fn berlin() {
        let info = TimeZoneInfo::from_iana(chrono_tz::Europe::Berlin, 2026);
        assert_eq!(info.bias, -60);
        assert_eq!(info.daylight_bias, -60);
        assert_eq!(info.daylight_date, st(3, 0, 5, 2));
        assert_eq!(info.standard_date, st(10, 0, 5, 3));
        let back = TimeZoneInfo::from_base64(&info.to_base64()).unwrap();
        assert_eq!(back, info);
        assert_eq!(back.to_iana(2026, &[]), Some(chrono_tz::Europe::Berlin));
        // A hint with the same rule is kept; one with another rule is not.
        assert_eq!(
            back.to_iana(2026, &["America/New_York", "Europe/Paris"]),
            Some(chrono_tz::Europe::Paris)
        );
    }

    #[test]
    fn new_york() {
        let info = TimeZoneInfo::from_iana(chrono_tz::America::New_York, 2026);
        assert_eq!(info.bias, 300);
        assert_eq!(info.daylight_date, st(3, 0, 2, 2));
        assert_eq!(info.standard_date, st(11, 0, 1, 2));
    }

    #[test]
    fn sydney_southern_hemisphere() {
        let info = TimeZoneInfo::from_iana(chrono_tz::Australia::Sydney, 2026);
        assert_eq!(info.bias, -600);
        assert_eq!(info.daylight_date, st(10, 0, 1, 2));
        assert_eq!(info.standard_date, st(4, 0, 1, 3));
        let jan = NaiveDate::from_ymd_opt(2026, 1, 10)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(info.utc_offset_at(jan), 11 * 3600);
        let jul = NaiveDate::from_ymd_opt(2026, 7, 10)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        assert_eq!(info.utc_offset_at(jul), 10 * 3600);
    }

    #[test]
    fn kolkata_and_utc() {
        let info = TimeZoneInfo::from_iana(chrono_tz::Asia::Kolkata, 2026);
        assert_eq!(info.bias, -330);
        assert!(!info.has_dst());
        let back = info.to_iana(2026, &[]).unwrap();
        assert_eq!(back, chrono_tz::Asia::Kolkata, "named in the blob");
        let utc = TimeZoneInfo::from_iana(chrono_tz::UTC, 2026);
        assert_eq!(utc.bias, 0);
        assert_eq!(TimeZoneInfo::utc().to_iana(2026, &[]), Some(Tz::UTC));
    }

    #[test]
    fn anonymous_blob_picks_a_zone_with_the_same_rule() {
        let mut info = TimeZoneInfo::from_iana(chrono_tz::America::New_York, 2026);
        info.standard_name.clear();
        info.daylight_name.clear();
        let tz = info.to_iana(2026, &[]).unwrap();
        assert!(TimeZoneInfo::from_iana(tz, 2026).same_rule(&info, 2026));
        // Windows names resolve through calcard's table.
        info.standard_name = "Eastern Standard Time".into();
        assert_eq!(info.to_iana(2026, &[]), Some(chrono_tz::America::New_York));
    }

    #[test]
    fn bad_blobs() {
        assert_eq!(TimeZoneInfo::from_base64("!!"), Err(TimeZoneError::Base64));
        assert_eq!(
            TimeZoneInfo::from_base64("AAAA"),
            Err(TimeZoneError::Length(3))
        );
        let mut b = TimeZoneInfo::utc().to_bytes();
        b[70] = 13; // StandardDate.wMonth
        assert_eq!(TimeZoneInfo::from_bytes(&b), Err(TimeZoneError::BadDate));
    }

    #[test]
    fn local_utc_round_trip() {
        let info = TimeZoneInfo::from_iana(chrono_tz::Europe::Berlin, 2026);
        let local = NaiveDate::from_ymd_opt(2026, 7, 1)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let utc = info.to_utc(local);
        assert_eq!(utc.hour(), 8);
        assert_eq!(info.to_local(utc), local);
    }

    #[test]
    fn vtimezone_rules_are_read() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VTIMEZONE\r\nTZID:My Custom Zone\r\n\
BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n";
        let ical = crate::calendar::ical::parse(text).unwrap();
        let vtz = ical.timezones().next().unwrap();
        let info = TimeZoneInfo::from_vtimezone(&ical, vtz, 2026).unwrap();
        let berlin = TimeZoneInfo::from_iana(chrono_tz::Europe::Berlin, 2026);
        assert!(info.same_rule(&berlin, 2026), "{info:?}");
        // And back: a VTIMEZONE of our own reads as the same rule.
        let mut out = crate::calendar::ical::parse("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").unwrap();
        let id = info.add_vtimezone(&mut out, "X", 2026).unwrap();
        let again = TimeZoneInfo::from_vtimezone(&out, &out.components[id as usize], 2026).unwrap();
        assert!(again.same_rule(&berlin, 2026), "{again:?}");
    }
}

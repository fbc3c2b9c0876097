//! RRULE ↔ EAS `Recurrence` (MS-ASCAL 2.2.2.37, MS-ASTASK 2.2.2.19).
//!
//! EAS knows six patterns: 0 daily, 1 weekly on a set of days, 2 monthly on a day of the month,
//! 3 monthly on the n-th (5 = last) weekday or set of days, 5 yearly on a date, 6 yearly on the
//! n-th weekday of a month; each with an interval and an end (Until or Occurrences). A rule that
//! gives the *same occurrences* in another shape is translated (FREQ=DAILY;BYDAY=MO,FR is a
//! weekly pattern; BYMONTHDAY=-1 is "the last day", Type 3 with all seven days and week 5).
//! What no pattern gives — BYSETPOS lists, several month days or months, hourly rules, BYYEARDAY,
//! BYWEEKNO, a 5th-weekday rule, RDATE — comes back as [`ToEas::CannotExpress`] with the
//! reason, and a pattern whose occurrences EAS clients compute differently (the 29th–31st of a
//! month and 29 February, which Outlook-style clients move to the month's last day where
//! iCalendar skips the month) as [`ToEas::Approximate`]. The caller decides what to send; this
//! module never changes a rule silently.

use std::io::Write;

use calcard::common::CalendarScale;
use calcard::icalendar::{
    ICalendarDay, ICalendarFrequency, ICalendarMonth, ICalendarRecurrenceRule,
};
use chrono::{Datelike, NaiveDateTime, Timelike};

use eas_wbxml::codepage::Tag;
use eas_wbxml::tags::{calendar as cal, tasks};
use eas_wbxml::{Element, EncodeError, Writer};

use super::timezone::{Zone, days_in_month, ical_weekday, weekday_index};
use super::{CalendarError, Version, date};

/// `Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Daily = 0,
    Weekly = 1,
    Monthly = 2,
    MonthlyNth = 3,
    Yearly = 5,
    YearlyNth = 6,
}

impl Pattern {
    pub fn from_code(c: u8) -> Option<Pattern> {
        Some(match c {
            0 => Pattern::Daily,
            1 => Pattern::Weekly,
            2 => Pattern::Monthly,
            3 => Pattern::MonthlyNth,
            5 => Pattern::Yearly,
            6 => Pattern::YearlyNth,
            _ => return None,
        })
    }
}

/// One EAS Recurrence as on the wire (times in UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence {
    pub pattern: Pattern,
    pub interval: u16,
    pub until: Option<NaiveDateTime>,
    pub occurrences: Option<u32>,
    /// Bit 0 Sunday … bit 6 Saturday.
    pub day_of_week: Option<u8>,
    pub day_of_month: Option<u8>,
    /// 1–4, 5 = last.
    pub week_of_month: Option<u8>,
    pub month_of_year: Option<u8>,
    /// 14.0+: 0 default/Gregorian; 6 Hijri, 8 Hebrew lunar, 15 Chinese lunar (RSCALE).
    pub calendar_type: Option<u8>,
    pub is_leap_month: bool,
    /// 14.1+: 0 Sunday … 6 Saturday (WKST).
    pub first_day_of_week: Option<u8>,
}

/// What an RRULE becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToEas {
    /// The same occurrences.
    Exact(Recurrence),
    /// The closest pattern; EAS clients compute some occurrences differently.
    Approximate {
        recurrence: Recurrence,
        reason: Unsupported,
    },
    /// No pattern expresses it.
    CannotExpress(Unsupported),
}

/// Why a rule is not (exactly) expressible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("FREQ={0} has no EAS pattern")]
    Frequency(&'static str),
    #[error("{0} is not expressible in EAS")]
    Part(&'static str),
    #[error("month day {0}: EAS clients use the month's last day where iCalendar skips the month")]
    MonthEnd(i8),
    #[error("29 February: EAS clients use 28 February in common years")]
    LeapDay,
    #[error("RDATE adds occurrences EAS cannot carry")]
    Rdate,
    #[error("calendar scale {0} has no EAS CalendarType")]
    Scale(String),
}

const ALL_DAYS: u8 = 0x7f;

fn mask_of(days: &[ICalendarDay]) -> u8 {
    days.iter()
        .fold(0, |m, d| m | (1 << weekday_index(d.weekday)))
}

fn days_of(mask: u8) -> Vec<ICalendarDay> {
    (0..7)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| ICalendarDay {
            ordwk: None,
            weekday: ical_weekday(i),
        })
        .collect()
}

fn scale_to_type(s: &CalendarScale) -> Result<Option<u8>, Unsupported> {
    Ok(match s {
        CalendarScale::Gregorian => None,
        CalendarScale::Chinese => Some(15),
        CalendarScale::Hebrew => Some(8),
        CalendarScale::IslamicCivil => Some(6),
        other => return Err(Unsupported::Scale(format!("{other:?}"))),
    })
}

fn type_to_scale(t: u8) -> Option<CalendarScale> {
    match t {
        15 => Some(CalendarScale::Chinese),
        8 => Some(CalendarScale::Hebrew),
        6 => Some(CalendarScale::IslamicCivil),
        _ => None,
    }
}

/// Translates a rule. `start` is the series' DTSTART in its zone; `zone` turns UNTIL into UTC
/// (a DATE UNTIL means "through that day", so the last occurrence's start on that day).
pub fn to_eas(rule: &ICalendarRecurrenceRule, start: NaiveDateTime, zone: &Zone) -> ToEas {
    match to_eas_inner(rule, start, zone) {
        Ok((r, None)) => ToEas::Exact(r),
        Ok((r, Some(reason))) => ToEas::Approximate {
            recurrence: r,
            reason,
        },
        Err(e) => ToEas::CannotExpress(e),
    }
}

fn to_eas_inner(
    rule: &ICalendarRecurrenceRule,
    start: NaiveDateTime,
    zone: &Zone,
) -> Result<(Recurrence, Option<Unsupported>), Unsupported> {
    use Unsupported::Part;
    let no_op_time =
        |v: &[u8], actual: u32| v.is_empty() || (v.len() == 1 && v[0] as u32 == actual);
    if !no_op_time(&rule.byhour, start.hour())
        || !no_op_time(&rule.byminute, start.minute())
        || !no_op_time(&rule.bysecond, start.second())
    {
        return Err(Part("BYHOUR/BYMINUTE/BYSECOND"));
    }
    if !rule.byyearday.is_empty() {
        return Err(Part("BYYEARDAY"));
    }
    if !rule.byweekno.is_empty() {
        return Err(Part("BYWEEKNO"));
    }
    if rule.bysetpos.len() > 1 {
        return Err(Part("a BYSETPOS list"));
    }
    if rule.bymonthday.len() > 1 {
        return Err(Part("several BYMONTHDAY values"));
    }
    if rule.bymonth.len() > 1 {
        return Err(Part("several BYMONTH values"));
    }
    if rule.skip.is_some() {
        return Err(Part("SKIP"));
    }
    let calendar_type = match &rule.rscale {
        Some(s) => scale_to_type(s)?,
        None => None,
    };
    let until = rule.until.as_ref().and_then(|u| {
        let r = u.to_date_time()?;
        Some(if !u.has_time() {
            // Through that day: the start time of an occurrence on it.
            zone.to_utc(r.date_time.date().and_time(start.time()))
        } else if let Some(off) = r.offset {
            r.date_time - chrono::Duration::seconds(off.local_minus_utc() as i64)
        } else {
            zone.to_utc(r.date_time)
        })
    });
    let mut rec = Recurrence {
        pattern: Pattern::Daily,
        interval: rule.interval.unwrap_or(1).max(1),
        until,
        occurrences: rule.count,
        day_of_week: None,
        day_of_month: None,
        week_of_month: None,
        month_of_year: None,
        calendar_type,
        is_leap_month: rule.bymonth.first().is_some_and(|m| m.is_leap()),
        first_day_of_week: rule.wkst.map(|d| weekday_index(d) as u8),
    };
    let ordinals = rule.byday.iter().any(|d| d.ordwk.is_some());
    let setpos = rule.bysetpos.first().copied();
    let mut note = None;
    // n-th (1–4) or last (-1 → 5) as EAS weeks.
    let week = |n: i32| -> Result<u8, Unsupported> {
        match n {
            1..=4 => Ok(n as u8),
            -1 => Ok(5),
            _ => Err(Part(
                "a 5th or counted-from-the-end weekday other than the last",
            )),
        }
    };
    match rule.freq {
        ICalendarFrequency::Daily => {
            if setpos.is_some() || !rule.bymonthday.is_empty() || !rule.bymonth.is_empty() {
                return Err(Part("BYMONTH/BYMONTHDAY/BYSETPOS on a daily rule"));
            }
            if !rule.byday.is_empty() {
                if ordinals || rec.interval != 1 {
                    return Err(Part("BYDAY on a daily rule with an interval"));
                }
                // Every listed day, every week: the weekly pattern gives the same days.
                rec.pattern = Pattern::Weekly;
                rec.day_of_week = Some(mask_of(&rule.byday));
            }
        }
        ICalendarFrequency::Weekly => {
            if ordinals
                || setpos.is_some()
                || !rule.bymonthday.is_empty()
                || !rule.bymonth.is_empty()
            {
                return Err(Part("BYMONTH/BYMONTHDAY/BYSETPOS on a weekly rule"));
            }
            rec.pattern = Pattern::Weekly;
            rec.day_of_week = Some(if rule.byday.is_empty() {
                1 << start.weekday().num_days_from_sunday()
            } else {
                mask_of(&rule.byday)
            });
        }
        ICalendarFrequency::Monthly | ICalendarFrequency::Yearly => {
            let yearly = rule.freq == ICalendarFrequency::Yearly;
            if yearly {
                rec.month_of_year = Some(
                    rule.bymonth
                        .first()
                        .map_or(start.month() as u8, |m| m.month()),
                );
            } else if !rule.bymonth.is_empty() {
                return Err(Part("BYMONTH on a monthly rule"));
            }
            if yearly && !rule.byday.is_empty() && rule.bymonth.is_empty() {
                return Err(Part("a weekday of the year without BYMONTH"));
            }
            match (rule.byday.as_slice(), rule.bymonthday.first(), setpos) {
                ([], day, None) => {
                    let day = day.copied().unwrap_or(start.day() as i8);
                    if day == -1 {
                        rec.pattern = if yearly {
                            Pattern::YearlyNth
                        } else {
                            Pattern::MonthlyNth
                        };
                        rec.day_of_week = Some(ALL_DAYS);
                        rec.week_of_month = Some(5);
                    } else if day < 1 {
                        return Err(Part("a month day counted from the end"));
                    } else {
                        rec.pattern = if yearly {
                            Pattern::Yearly
                        } else {
                            Pattern::Monthly
                        };
                        rec.day_of_month = Some(day as u8);
                        let month = rec.month_of_year.unwrap_or(1) as u32;
                        if yearly && month == 2 && day == 29 {
                            note = Some(Unsupported::LeapDay);
                        } else if day > 28
                            && (!yearly || day as u32 > days_in_month(2001, month).min(30))
                        {
                            note = Some(Unsupported::MonthEnd(day));
                        }
                    }
                }
                ([one], None, None) if one.ordwk.is_some() => {
                    rec.pattern = if yearly {
                        Pattern::YearlyNth
                    } else {
                        Pattern::MonthlyNth
                    };
                    rec.week_of_month = Some(week(one.ordwk.unwrap_or(1) as i32)?);
                    rec.day_of_week = Some(mask_of(&rule.byday));
                }
                (days, None, Some(pos)) if !days.is_empty() && !ordinals => {
                    rec.pattern = if yearly {
                        Pattern::YearlyNth
                    } else {
                        Pattern::MonthlyNth
                    };
                    rec.week_of_month = Some(week(pos)?);
                    rec.day_of_week = Some(mask_of(days));
                }
                (days, None, None)
                    if !days.is_empty() && !ordinals && !yearly && rec.interval == 1 =>
                {
                    // Every listed weekday of every month is a weekly rule.
                    rec.pattern = Pattern::Weekly;
                    rec.day_of_week = Some(mask_of(days));
                }
                _ => return Err(Part("this BYDAY/BYMONTHDAY/BYSETPOS combination")),
            }
        }
        ICalendarFrequency::Hourly => return Err(Unsupported::Frequency("HOURLY")),
        ICalendarFrequency::Minutely => return Err(Unsupported::Frequency("MINUTELY")),
        ICalendarFrequency::Secondly => return Err(Unsupported::Frequency("SECONDLY")),
    }
    Ok((rec, note))
}

/// The RRULE of an EAS Recurrence. `all_day` writes UNTIL as a DATE (the local date of the
/// Until instant); otherwise UNTIL is UTC, as RFC 5545 requires for zoned DTSTARTs.
pub fn from_eas(rec: &Recurrence, zone: &Zone, all_day: bool) -> ICalendarRecurrenceRule {
    let mut r = ICalendarRecurrenceRule {
        interval: (rec.interval > 1).then_some(rec.interval),
        count: rec.occurrences.filter(|_| rec.until.is_none()),
        // Monday is the RFC 5545 default: written only when it differs.
        wkst: rec
            .first_day_of_week
            .filter(|d| *d != 1)
            .map(|d| ical_weekday(d as u16)),
        rscale: rec.calendar_type.and_then(type_to_scale),
        ..Default::default()
    };
    r.until = rec.until.map(|u| {
        if all_day {
            super::ical::date_value(zone.to_local(u).date())
        } else {
            super::ical::utc_value(u)
        }
    });
    let mask = rec.day_of_week.unwrap_or(0) & ALL_DAYS;
    let week = rec.week_of_month.unwrap_or(1).clamp(1, 5);
    let ord = if week == 5 { -1 } else { week as i16 };
    let month = || {
        ICalendarMonth::new(
            rec.month_of_year.unwrap_or(1).clamp(1, 13),
            rec.is_leap_month,
        )
    };
    match rec.pattern {
        Pattern::Daily => {
            r.freq = ICalendarFrequency::Daily;
            if mask != 0 {
                r.byday = days_of(mask);
            }
        }
        Pattern::Weekly => {
            r.freq = ICalendarFrequency::Weekly;
            r.byday = days_of(if mask == 0 { 1 } else { mask });
        }
        Pattern::Monthly => {
            r.freq = ICalendarFrequency::Monthly;
            r.bymonthday = vec![rec.day_of_month.unwrap_or(1).clamp(1, 31) as i8];
        }
        Pattern::Yearly => {
            r.freq = ICalendarFrequency::Yearly;
            r.bymonth = vec![month()];
            r.bymonthday = vec![rec.day_of_month.unwrap_or(1).clamp(1, 31) as i8];
        }
        Pattern::MonthlyNth | Pattern::YearlyNth => {
            r.freq = if rec.pattern == Pattern::YearlyNth {
                r.bymonth = vec![month()];
                ICalendarFrequency::Yearly
            } else {
                ICalendarFrequency::Monthly
            };
            if mask == ALL_DAYS {
                // "The n-th / last day of the month".
                r.bymonthday = vec![if week == 5 { -1 } else { week as i8 }];
            } else if mask.count_ones() == 1 {
                r.byday = days_of(mask)
                    .into_iter()
                    .map(|d| ICalendarDay {
                        ordwk: Some(ord),
                        ..d
                    })
                    .collect();
            } else {
                r.byday = days_of(if mask == 0 { 1 } else { mask });
                r.bysetpos = vec![ord as i32];
            }
        }
    }
    r
}

/// The occurrences (UTC starts) an EAS client computes from a Recurrence, the way Outlook-style
/// clients read the patterns: a day of the month past the month's end is its last day, weeks
/// start on FirstDayOfWeek (Monday when absent, as this gateway sends it), Type 3/6 pick the
/// n-th (5 = last) day of the month whose weekday is in DayOfWeek. `start` is the series'
/// first start in `zone`; at most `max` occurrences up to `horizon` (UTC) are returned.
///
/// This is what the differential tests hold the RRULE translation to: for a rule
/// [`to_eas`] calls exact, these are the RRULE's own occurrences.
pub fn expand(
    rec: &Recurrence,
    start: NaiveDateTime,
    zone: &Zone,
    horizon: NaiveDateTime,
    max: usize,
) -> Vec<NaiveDateTime> {
    use chrono::{Duration, NaiveDate};
    let mut out = Vec::new();
    let time = start.time();
    let interval = rec.interval.max(1) as i64;
    let mask = rec.day_of_week.unwrap_or(0) & ALL_DAYS;
    let limit = rec.occurrences.map_or(max, |o| (o as usize).min(max));
    let push = |d: NaiveDate, out: &mut Vec<NaiveDateTime>| -> bool {
        let local = d.and_time(time);
        if local < start {
            return true;
        }
        let utc = zone.to_utc(local);
        if utc > horizon || rec.until.is_some_and(|u| utc > u) || out.len() >= limit {
            return false;
        }
        out.push(utc);
        true
    };
    let in_mask = |d: NaiveDate| mask & (1 << d.weekday().num_days_from_sunday()) != 0;
    // The n-th (5 = last) day of a month whose weekday is in the mask.
    let nth = |y: i32, m: u32| -> Option<NaiveDate> {
        let days: Vec<NaiveDate> = (1..=days_in_month(y, m))
            .filter_map(|d| NaiveDate::from_ymd_opt(y, m, d))
            .filter(|d| in_mask(*d))
            .collect();
        match rec.week_of_month.unwrap_or(1).clamp(1, 5) {
            5 => days.last().copied(),
            n => days.get(n as usize - 1).copied(),
        }
    };
    let clamp_day = |y: i32, m: u32, d: u8| {
        NaiveDate::from_ymd_opt(y, m, (d as u32).min(days_in_month(y, m)).max(1))
    };
    let first = start.date();
    // Enough periods to pass any horizon a caller uses; each loop also stops at the limits.
    let periods = 20_000i64;
    match rec.pattern {
        Pattern::Daily if mask != 0 => {
            for k in 0..periods * 7 {
                let d = first + Duration::days(k);
                if in_mask(d) && !push(d, &mut out) {
                    break;
                }
            }
        }
        Pattern::Daily => {
            for k in 0..periods {
                if !push(first + Duration::days(k * interval), &mut out) {
                    break;
                }
            }
        }
        Pattern::Weekly => {
            let wkst = rec.first_day_of_week.unwrap_or(1) as u32;
            let back = (first.weekday().num_days_from_sunday() + 7 - wkst) % 7;
            let week0 = first - Duration::days(back as i64);
            'weeks: for k in 0..periods {
                let week = week0 + Duration::weeks(k * interval);
                for i in 0..7 {
                    let d = week + Duration::days(i);
                    if in_mask(d) && !push(d, &mut out) {
                        break 'weeks;
                    }
                }
            }
        }
        Pattern::Monthly | Pattern::MonthlyNth | Pattern::Yearly | Pattern::YearlyNth => {
            let yearly = matches!(rec.pattern, Pattern::Yearly | Pattern::YearlyNth);
            let step = if yearly { 12 * interval } else { interval };
            let base = first.year() as i64 * 12 + first.month0() as i64;
            let base = if yearly {
                first.year() as i64 * 12
                    + rec
                        .month_of_year
                        .unwrap_or(first.month() as u8)
                        .clamp(1, 12) as i64
                    - 1
            } else {
                base
            };
            for k in 0..periods {
                let ym = base + k * step;
                let (y, m) = ((ym / 12) as i32, (ym % 12) as u32 + 1);
                let day = match rec.pattern {
                    Pattern::Monthly | Pattern::Yearly => {
                        clamp_day(y, m, rec.day_of_month.unwrap_or(1))
                    }
                    _ => nth(y, m),
                };
                if let Some(d) = day
                    && !push(d, &mut out)
                {
                    break;
                }
                if NaiveDate::from_ymd_opt(y, m, 1)
                    .is_none_or(|d| zone.to_utc(d.and_time(time)) > horizon)
                {
                    break;
                }
            }
        }
    }
    out
}

/// The tags of the two code pages that carry a Recurrence.
#[derive(Clone, Copy)]
pub struct Tags {
    pub recurrence: Tag,
    pub kind: Tag,
    pub interval: Tag,
    pub until: Tag,
    pub occurrences: Tag,
    pub day_of_week: Tag,
    pub day_of_month: Tag,
    pub week_of_month: Tag,
    pub month_of_year: Tag,
    pub calendar_type: Tag,
    pub is_leap_month: Tag,
    pub first_day_of_week: Tag,
}

pub const CALENDAR_TAGS: Tags = Tags {
    recurrence: cal::Recurrence,
    kind: cal::Type,
    interval: cal::Interval,
    until: cal::Until,
    occurrences: cal::Occurrences,
    day_of_week: cal::DayOfWeek,
    day_of_month: cal::DayOfMonth,
    week_of_month: cal::WeekOfMonth,
    month_of_year: cal::MonthOfYear,
    calendar_type: cal::CalendarType,
    is_leap_month: cal::IsLeapMonth,
    first_day_of_week: cal::FirstDayOfWeek,
};

pub const TASK_TAGS: Tags = Tags {
    recurrence: tasks::Recurrence,
    kind: tasks::Type,
    interval: tasks::Interval,
    until: tasks::Until,
    occurrences: tasks::Occurrences,
    day_of_week: tasks::DayOfWeek,
    day_of_month: tasks::DayOfMonth,
    week_of_month: tasks::WeekOfMonth,
    month_of_year: tasks::MonthOfYear,
    calendar_type: tasks::CalendarType,
    is_leap_month: tasks::IsLeapMonth,
    first_day_of_week: tasks::FirstDayOfWeek,
};

impl Recurrence {
    /// Writes the children of `<Recurrence>` (the caller opens and closes it: tasks add
    /// Start/Regenerate/DeadOccur inside). Element order follows the spec's schema.
    pub fn write_children<W: Write>(
        &self,
        w: &mut Writer<W>,
        tags: &Tags,
        version: Version,
        until_extended: bool,
    ) -> Result<(), EncodeError> {
        w.text_element(tags.kind, &(self.pattern as u8).to_string())?;
        if let Some(o) = self.occurrences.filter(|_| self.until.is_none()) {
            w.text_element(tags.occurrences, &o.to_string())?;
        }
        w.text_element(tags.interval, &self.interval.max(1).to_string())?;
        if let Some(v) = self.week_of_month {
            w.text_element(tags.week_of_month, &v.to_string())?;
        }
        if let Some(v) = self.day_of_week {
            w.text_element(tags.day_of_week, &v.to_string())?;
        }
        if let Some(v) = self.month_of_year {
            w.text_element(tags.month_of_year, &v.to_string())?;
        }
        if let Some(u) = self.until {
            let s = if until_extended {
                date::extended(u)
            } else {
                date::compact(u)
            };
            w.text_element(tags.until, &s)?;
        }
        if let Some(v) = self.day_of_month {
            w.text_element(tags.day_of_month, &v.to_string())?;
        }
        if version >= Version::V14_0 {
            w.text_element(
                tags.calendar_type,
                &self.calendar_type.unwrap_or(0).to_string(),
            )?;
            if matches!(self.pattern, Pattern::Yearly | Pattern::YearlyNth) {
                w.text_element(
                    tags.is_leap_month,
                    if self.is_leap_month { "1" } else { "0" },
                )?;
            }
        }
        if version >= Version::V14_1 {
            w.text_element(
                tags.first_day_of_week,
                &self.first_day_of_week.unwrap_or(1).to_string(),
            )?;
        }
        Ok(())
    }

    /// Writes `<Recurrence>…</Recurrence>`.
    pub fn write<W: Write>(
        &self,
        w: &mut Writer<W>,
        tags: &Tags,
        version: Version,
    ) -> Result<(), EncodeError> {
        w.start(tags.recurrence)?;
        self.write_children(w, tags, version, false)?;
        w.end()?;
        Ok(())
    }

    /// Reads a phone's `<Recurrence>` element.
    pub fn from_element(e: &Element, tags: &Tags) -> Result<Recurrence, CalendarError> {
        let bad = |what: &str| CalendarError::InvalidItem(format!("Recurrence {what}"));
        let num = |tag: Tag| -> Result<Option<u32>, CalendarError> {
            e.child(tag)
                .and_then(|c| c.text())
                .map(|t| t.trim().parse::<u32>().map_err(|_| bad(tag.name())))
                .transpose()
        };
        let small = |tag: Tag, max: u32| -> Result<Option<u8>, CalendarError> {
            match num(tag)? {
                Some(v) if v > max => Err(bad(tag.name())),
                v => Ok(v.map(|v| v as u8)),
            }
        };
        let pattern = num(tags.kind)?
            .and_then(|c| u8::try_from(c).ok())
            .and_then(Pattern::from_code)
            .ok_or_else(|| bad("Type"))?;
        let until = match e.child(tags.until).and_then(|c| c.text()) {
            Some(t) => Some(date::parse(t).ok_or_else(|| bad("Until"))?),
            None => None,
        };
        let interval = num(tags.interval)?.unwrap_or(1);
        if interval > 999 {
            return Err(bad("Interval"));
        }
        Ok(Recurrence {
            pattern,
            interval: interval.max(1) as u16,
            until,
            occurrences: num(tags.occurrences)?.filter(|o| *o > 0),
            day_of_week: small(tags.day_of_week, 127)?,
            day_of_month: small(tags.day_of_month, 31)?,
            week_of_month: small(tags.week_of_month, 5)?,
            month_of_year: small(tags.month_of_year, 13)?,
            calendar_type: small(tags.calendar_type, 255)?.filter(|t| *t != 0 && *t != 1),
            is_leap_month: num(tags.is_leap_month)? == Some(1),
            first_day_of_week: small(tags.first_day_of_week, 6)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::icalendar::{ICalendarProperty, ICalendarValue};

    fn rule(text: &str) -> ICalendarRecurrenceRule {
        let ics = format!(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20260105T090000\r\nRRULE:{text}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        let ical = crate::calendar::ical::parse(&ics).unwrap();
        match ical.components[1]
            .property(&ICalendarProperty::Rrule)
            .and_then(|e| e.values.first())
        {
            Some(ICalendarValue::RecurrenceRule(r)) => (**r).clone(),
            other => panic!("{text}: {other:?}"),
        }
    }

    fn start() -> NaiveDateTime {
        // Monday 5 January 2026, 09:00.
        chrono::NaiveDate::from_ymd_opt(2026, 1, 5)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
    }

    fn exact(text: &str) -> Recurrence {
        match to_eas(&rule(text), start(), &Zone::Iana(chrono_tz::Europe::Berlin)) {
            ToEas::Exact(r) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// RRULE → EAS → RRULE gives the rule back (in its canonical spelling).
    fn round_trip(text: &str, canonical: &str) {
        let zone = Zone::Iana(chrono_tz::Europe::Berlin);
        let rec = exact(text);
        let back = from_eas(&rec, &zone, false);
        assert_eq!(back.to_string(), canonical, "{text} via {rec:?}");
    }

    #[test]
    fn patterns() {
        round_trip("FREQ=DAILY", "FREQ=DAILY");
        round_trip(
            "FREQ=DAILY;INTERVAL=3;COUNT=10",
            "FREQ=DAILY;COUNT=10;INTERVAL=3",
        );
        round_trip("FREQ=WEEKLY", "FREQ=WEEKLY;BYDAY=MO");
        round_trip(
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;WKST=SU",
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;WKST=SU",
        );
        round_trip(
            "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
        );
        round_trip("FREQ=MONTHLY;BYMONTHDAY=15", "FREQ=MONTHLY;BYMONTHDAY=15");
        round_trip("FREQ=MONTHLY;BYDAY=2TU", "FREQ=MONTHLY;BYDAY=2TU");
        round_trip("FREQ=MONTHLY;BYDAY=-1FR", "FREQ=MONTHLY;BYDAY=-1FR");
        round_trip("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHLY;BYMONTHDAY=-1");
        round_trip(
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
        );
        round_trip("FREQ=YEARLY", "FREQ=YEARLY;BYMONTHDAY=5;BYMONTH=1");
        round_trip(
            "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
            "FREQ=YEARLY;BYDAY=4TH;BYMONTH=11",
        );
        round_trip(
            "FREQ=WEEKLY;UNTIL=20261231T080000Z",
            "FREQ=WEEKLY;UNTIL=20261231T080000Z;BYDAY=MO",
        );
    }

    #[test]
    fn eas_values() {
        let r = exact("FREQ=MONTHLY;BYDAY=-1FR");
        assert_eq!(
            (r.pattern, r.week_of_month, r.day_of_week),
            (Pattern::MonthlyNth, Some(5), Some(32))
        );
        let r = exact("FREQ=WEEKLY;BYDAY=SU,SA");
        assert_eq!(r.day_of_week, Some(65));
        // A floating UNTIL is read in the event's zone: 10:00 Berlin is 09:00 UTC.
        let r = exact("FREQ=DAILY;UNTIL=20260110T100000");
        assert_eq!(r.until.unwrap().hour(), 9);
        // A DATE UNTIL includes that day's occurrence.
        let r = exact("FREQ=DAILY;UNTIL=20260110");
        assert_eq!(
            crate::calendar::date::compact(r.until.unwrap()),
            "20260110T080000Z"
        );
    }

    #[test]
    fn cannot_express() {
        let zone = Zone::Utc;
        for text in [
            "FREQ=HOURLY",
            "FREQ=MONTHLY;BYMONTHDAY=1,15",
            "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=1,-1",
            "FREQ=YEARLY;BYYEARDAY=100",
            "FREQ=YEARLY;BYWEEKNO=20",
            "FREQ=YEARLY;BYMONTH=1,7",
            "FREQ=MONTHLY;BYDAY=5FR",
            "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO",
            "FREQ=DAILY;BYHOUR=9,17",
        ] {
            assert!(
                matches!(to_eas(&rule(text), start(), &zone), ToEas::CannotExpress(_)),
                "{text}"
            );
        }
        assert!(matches!(
            to_eas(&rule("FREQ=MONTHLY;BYMONTHDAY=31"), start(), &zone),
            ToEas::Approximate {
                reason: Unsupported::MonthEnd(31),
                ..
            }
        ));
        assert!(matches!(
            to_eas(&rule("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"), start(), &zone),
            ToEas::Approximate {
                reason: Unsupported::LeapDay,
                ..
            }
        ));
    }

    #[test]
    fn wbxml_round_trip() {
        for version in [Version::V12_1, Version::V14_1, Version::V16_1] {
            let rec = exact("FREQ=MONTHLY;INTERVAL=2;BYDAY=3WE;COUNT=5");
            let mut w = Writer::fragment();
            rec.write(&mut w, &CALENDAR_TAGS, version).unwrap();
            let mut doc = Writer::new(Vec::new()).unwrap();
            doc.start(eas_wbxml::tags::airsync::ApplicationData)
                .unwrap();
            doc.splice(&w.into_fragment().unwrap()).unwrap();
            doc.end().unwrap();
            let tree = Element::decode(&doc.finish().unwrap()).unwrap();
            let rec_el = tree.child(cal::Recurrence).unwrap();
            let back = Recurrence::from_element(rec_el, &CALENDAR_TAGS).unwrap();
            let mut want = rec.clone();
            if version < Version::V14_1 {
                want.first_day_of_week = None;
            } else {
                want.first_day_of_week = Some(1);
            }
            assert_eq!(back, want, "{version}");
        }
    }
}

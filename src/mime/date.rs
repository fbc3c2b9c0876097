//! Dates as the gateway writes them: EAS dates and RFC 5322 `Date:` fields, from unix
//! seconds, with the calendar arithmetic of the `time` crate.
//!
//! Email dates (DateReceived, LastVerbExecutionTime) use the extended form with milliseconds
//! and `Z`; iOS is reported to mishandle items whose date lacks either. Conversation indexes
//! carry a Windows FILETIME.

use time::OffsetDateTime;

/// 9999-12-31T23:59:59Z, the last instant a four-digit year can write.
const MAX: i64 = 253_402_300_799;

/// The UTC date and time of a unix time, clamped to 1970..=9999: out-of-range times only come
/// from broken INTERNALDATEs or clocks, and a valid date keeps the item usable.
fn utc(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds.clamp(0, MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `2026-11-22T10:00:00.000Z` for a unix time in seconds (clamped to 1970..=9999).
pub fn eas_date(unix_seconds: i64) -> String {
    let t = utc(unix_seconds);
    // Written by hand from the crate's fields: a page of items writes thousands of these,
    // and `format!` is several times faster than a format description.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `Mon, 2 Mar 2026 10:00:00 +0000` (RFC 5322 section 3.3), for a unix time in seconds
/// (clamped to 1970..=9999).
pub fn rfc5322_date(unix_seconds: i64) -> String {
    let t = utc(unix_seconds);
    let weekday = t.weekday().to_string();
    let month = t.month().to_string();
    format!(
        "{}, {} {} {:04} {:02}:{:02}:{:02} +0000",
        &weekday[..3],
        t.day(),
        &month[..3],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// 100-nanosecond intervals since 1601-01-01, the clock MAPI's conversation index uses.
pub fn filetime(unix_seconds: i64) -> u64 {
    const EPOCH_DIFF: i64 = 11_644_473_600;
    let s = unix_seconds.saturating_add(EPOCH_DIFF).max(0) as u64;
    s.saturating_mul(10_000_000)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(eas_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(eas_date(1_704_103_200), "2024-01-01T10:00:00.000Z");
        assert_eq!(eas_date(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(eas_date(1_795_341_600), "2026-11-22T10:00:00.000Z");
        assert_eq!(eas_date(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(eas_date(i64::MAX), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn rfc5322_dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_772_445_600),
            "Mon, 2 Mar 2026 10:00:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322_date(-1), "Thu, 1 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn filetime_epoch() {
        assert_eq!(filetime(0), 116_444_736_000_000_000);
        assert_eq!(filetime(i64::MIN), 0);
    }
}

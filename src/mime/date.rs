//! Dates as EAS writes them, computed from unix seconds without a calendar library.
//!
//! Email dates (DateReceived, LastVerbExecutionTime) use the extended form with milliseconds
//! and `Z`; iOS is reported to mishandle items whose date lacks either. Conversation indexes
//! carry a Windows FILETIME.

/// `2026-11-22T10:00:00.000Z` for a unix time in seconds. Times before 1970 or after 9999 are
/// clamped: they only come from broken INTERNALDATEs, and a valid date keeps the item usable.
pub fn eas_date(unix_seconds: i64) -> String {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let t = unix_seconds.clamp(0, MAX);
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// 100-nanosecond intervals since 1601-01-01, the clock MAPI's conversation index uses.
pub fn filetime(unix_seconds: i64) -> u64 {
    const EPOCH_DIFF: i64 = 11_644_473_600;
    let s = unix_seconds.saturating_add(EPOCH_DIFF).max(0) as u64;
    s.saturating_mul(10_000_000)
}

/// Howard Hinnant's days-to-civil: exact for the whole proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    fn filetime_epoch() {
        assert_eq!(filetime(0), 116_444_736_000_000_000);
        assert_eq!(filetime(i64::MIN), 0);
    }
}

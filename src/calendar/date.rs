//! The date forms of calendar and task items.
//!
//! Calendar properties (StartTime, EndTime, DtStamp, Until, ExceptionStartTime) use the compact
//! basic form `20261122T100000Z`; task dates and 16.x also accept and send the extended form
//! `2026-11-22T10:00:00.000Z`. Both are read; each element is written in the form its spec
//! table shows.

use chrono::{NaiveDate, NaiveDateTime};

/// `20261122T100000Z`.
pub fn compact(dt: NaiveDateTime) -> String {
    dt.format("%Y%m%dT%H%M%SZ").to_string()
}

/// `2026-11-22T10:00:00.000Z`.
pub fn extended(dt: NaiveDateTime) -> String {
    dt.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Reads either form (the `Z` optional, as some phones drop it; fractions ignored), or a
/// bare date (midnight). Years outside 1601–9999 (the FILETIME range Windows clients use) are
/// refused, so later zone arithmetic cannot overflow.
pub fn parse(s: &str) -> Option<NaiveDateTime> {
    parse_any(s).filter(|d| (1601..=9999).contains(&chrono::Datelike::year(d)))
}

fn parse_any(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let s = s.split('.').next().unwrap_or(s);
    for fmt in [
        "%Y%m%dT%H%M%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y%m%dT%H%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt);
        }
    }
    for fmt in ["%Y%m%d", "%Y-%m-%d"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, fmt) {
            return d.and_hms_opt(0, 0, 0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let dt = parse("20261122T100000Z").unwrap();
        assert_eq!(compact(dt), "20261122T100000Z");
        assert_eq!(extended(dt), "2026-11-22T10:00:00.000Z");
        assert_eq!(parse("2026-11-22T10:00:00.000Z"), Some(dt));
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("+262143-12-31T23:59:59Z"), None);
        assert_eq!(parse("00010101T000000Z"), None);
    }
}

//! Timestamp formats the dialects print.

use nimbus_model::time::Timestamp;

/// Nova `utils.isotime`: `2012-08-20T21:11:09Z`.
pub fn isotime(t: &Timestamp) -> String {
    // Fixed-width fields written directly: a listing formats thousands of these, and
    // chrono's `format` re-parses its pattern on every call.
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// oslo `to_primitive` of a naive datetime: `2013-09-23T13:53:12.774549` (always six
/// fractional digits, no zone) — Nova's `OS-SRV-USG:*` and instance-action times.
pub fn perfect(t: &Timestamp) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        // A leap second shows as :60 in chrono's seconds; keep the fraction below 1 s.
        t.nanosecond() % 1_000_000_000 / 1_000
    )
}

/// Parse an ISO 8601 timestamp as Nova's `changes-since` accepts it (with or without zone
/// or fraction; naive times are UTC).
pub fn parse_iso(s: &str) -> Option<Timestamp> {
    use chrono::{DateTime, NaiveDateTime, Utc};
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(n.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    // `2020-01-01T00:00:00+0000` (no colon in the offset).
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats() {
        let t = chrono::Utc
            .with_ymd_and_hms(2013, 9, 23, 13, 53, 12)
            .unwrap();
        assert_eq!(isotime(&t), "2013-09-23T13:53:12Z");
        assert_eq!(perfect(&t), "2013-09-23T13:53:12.000000");
        let frac = t + chrono::Duration::microseconds(774_549);
        assert_eq!(isotime(&frac), "2013-09-23T13:53:12Z");
        assert_eq!(perfect(&frac), "2013-09-23T13:53:12.774549");
        let early = chrono::Utc.with_ymd_and_hms(987, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(isotime(&early), "0987-01-02T03:04:05Z");
        for s in [
            "2013-09-23T13:53:12Z",
            "2013-09-23T13:53:12+00:00",
            "2013-09-23T13:53:12",
            "2013-09-23T13:53:12.000000",
            "2013-09-23T13:53:12+0000",
        ] {
            assert_eq!(parse_iso(s), Some(t), "{s}");
        }
        assert!(parse_iso("yesterday").is_none());
    }
}

//! Time is UTC `NaiveDateTime` at microsecond precision, so SQLite and PostgreSQL agree.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Made from whole microseconds rather than truncated from nanoseconds: it runs twice on every
/// validated call, and truncating went through chrono's date arithmetic.
pub fn now() -> NaiveDateTime {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let micros = i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_micros(micros).map_or_else(|| Utc::now().naive_utc(), |t| t.naive_utc())
}

/// "just now", "5 minutes ago", "3 days ago", "in 2 hours".
pub fn relative(at: NaiveDateTime, now: NaiveDateTime) -> String {
    let secs = (now - at).num_seconds();
    let (future, secs) = if secs < 0 { (true, -secs) } else { (false, secs) };
    let phrase = match secs {
        0..=59 => return if future { "in less than a minute".into() } else { "just now".into() },
        60..=3599 => plural(secs / 60, "minute"),
        3600..=86399 => plural(secs / 3600, "hour"),
        86400..=2_591_999 => plural(secs / 86400, "day"),
        2_592_000..=31_535_999 => plural(secs / 2_592_000, "month"),
        _ => plural(secs / 31_536_000, "year"),
    };
    if future {
        format!("in {phrase}")
    } else {
        format!("{phrase} ago")
    }
}

pub fn exact(at: NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The exact time as a person in `zone` reads it: "3 Dec 2026, 14:05 CET".
pub fn exact_in(at: NaiveDateTime, zone: chrono_tz::Tz) -> String {
    at.and_utc().with_timezone(&zone).format("%-d %b %Y, %H:%M %Z").to_string()
}

/// A time zone named as browsers name it ("Europe/Berlin"); `None` for anything else.
pub fn zone_named(name: &str) -> Option<chrono_tz::Tz> {
    name.trim().parse().ok()
}

pub fn to_unix(at: NaiveDateTime) -> i64 {
    at.and_utc().timestamp()
}

pub fn from_unix(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|d| d.naive_utc())
}

#[cfg(test)]
mod zone_tests {
    use super::*;

    #[test]
    fn exact_times_read_in_the_viewers_zone() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap().and_hms_opt(13, 5, 0).unwrap();
        assert_eq!(exact_in(at, zone_named("Europe/Berlin").unwrap()), "3 Dec 2026, 14:05 CET");
        assert_eq!(exact_in(at, zone_named("America/New_York").unwrap()), "3 Dec 2026, 08:05 EST");
        assert_eq!(exact_in(at, chrono_tz::UTC), "3 Dec 2026, 13:05 UTC");
        assert!(zone_named("Mars/Olympus").is_none() && zone_named("").is_none());
    }
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn relative_wording() {
        let now = now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - Duration::minutes(5), now), "5 minutes ago");
        assert_eq!(relative(now - Duration::days(1), now), "1 day ago");
        assert_eq!(relative(now - Duration::days(3), now), "3 days ago");
        assert_eq!(relative(now + Duration::hours(2), now), "in 2 hours");
    }

    #[test]
    fn now_is_the_current_time_in_whole_microseconds() {
        use chrono::Timelike;
        let before = Utc::now().naive_utc() - Duration::microseconds(1);
        let at = now();
        let after = Utc::now().naive_utc();
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
        assert_eq!(at.nanosecond() % 1_000, 0, "the databases keep microseconds");
    }
}

//! Durations and times as users write them: durations `500ms`, `1s`, `5m`, `2h`, `90d`
//! (`csm run`'s flags and config); times `-24h`, `now`, a date or RFC 3339 (the readers of
//! the tree: `csm-plot`, `csm report`).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The hour (hours since the epoch) a timestamp falls into.
pub fn hour_of(ts_us: i64) -> i64 {
    ts_us.div_euclid(MICROS_PER_HOUR)
}

/// Parses a positive duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let shown = quote(text);
    let parsed = humantime::parse_duration(text.trim()).map_err(|err| {
        let why = err.to_string();
        let why = clip(&why);
        format!("invalid duration {shown} ({why}); use a number and a unit, like 500ms, 1s, 5m, 2h or 90d")
    })?;
    if parsed.is_zero() {
        return Err(format!("invalid duration {shown}: must be more than zero"));
    }
    Ok(parsed)
}

/// RFC 3339, a date (UTC midnight), `now`, or a negative duration from now.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(text, Utc::now())
}

pub fn parse_time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(now);
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = parse_duration(ago)?;
        let ago =
            chrono::Duration::from_std(ago).map_err(|_| format!("{text:?} is too long ago"))?;
        return Ok(now - ago);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "invalid time {text:?}; use RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25), \
         a negative duration (-24h) or now"
    ))
}

/// A duration as people say it: `12 s`, `4 min 30 s`, `15 min`, `2 h 5 min`, `3 d 4 h`
/// (rounded to the second; the two largest units).
pub fn duration_words(us: i64) -> String {
    let s = (us.max(0) + 500_000) / 1_000_000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a} {ua}")
        } else {
            format!("{a} {ua} {b} {ub}")
        }
    };
    match () {
        _ if d > 0 => pair(d, "d", h, "h"),
        _ if h > 0 => pair(h, "h", m, "min"),
        _ if m > 0 => pair(m, "min", sec, "s"),
        _ => format!("{sec} s"),
    }
}

/// Most characters of a user's value an error message repeats.
pub const MAX_QUOTED_CHARS: usize = 80;

/// A user's value as an error message shows it: in quotes, control characters escaped,
/// at most [`MAX_QUOTED_CHARS`] characters of it (a 50 MB config line is not echoed).
pub fn quote(text: &str) -> String {
    let mut quoted = format!("{:?}", clip(text));
    if text.chars().count() > MAX_QUOTED_CHARS {
        quoted.push('…');
    }
    quoted
}

/// The first [`MAX_QUOTED_CHARS`] characters.
pub fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_read_in_every_documented_form() {
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(parse_time_at("-24h", now), Ok(at("2026-11-24T12:00:00Z")));
        assert_eq!(parse_time_at("-90m", now), Ok(at("2026-11-25T10:30:00Z")));
        assert_eq!(
            parse_time_at("2026-11-20", now),
            Ok(at("2026-11-20T00:00:00Z"))
        );
        assert_eq!(
            parse_time_at("2026-11-20T08:30:00+01:00", now),
            Ok(at("2026-11-20T07:30:00Z"))
        );
        assert_eq!(parse_time_at("now", now), Ok(now));
        assert!(parse_time_at("yesterday", now)
            .unwrap_err()
            .contains("\"yesterday\""));
    }

    #[test]
    fn durations_read_in_seconds_minutes_hours_and_days() {
        assert_eq!(duration_words(12_000_000), "12 s");
        assert_eq!(duration_words(11_600_000), "12 s");
        assert_eq!(duration_words(270_000_000), "4 min 30 s");
        assert_eq!(duration_words(900_000_000), "15 min");
        assert_eq!(duration_words(7_500_000_000), "2 h 5 min");
        assert_eq!(
            duration_words(3 * 86_400_000_000 + 4 * 3_600_000_000),
            "3 d 4 h"
        );
    }

    #[test]
    fn accepts_the_documented_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
    }

    #[test]
    fn a_huge_bad_value_is_quoted_short_and_escaped() {
        let huge = "x".repeat(50_000_000);
        let err = parse_duration(&huge).unwrap_err();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert!(err.starts_with(&format!("invalid duration \"{}\"…", "x".repeat(80))));
        let err = parse_duration("1\u{1b}[2Js").unwrap_err();
        assert!(err.contains("\\u{1b}"), "{err}");
        assert!(
            !err.contains('\u{1b}'),
            "no raw escape reaches the terminal: {err}"
        );
    }

    #[test]
    fn rejects_garbage_and_zero() {
        assert!(parse_duration("fast").unwrap_err().contains("\"fast\""));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

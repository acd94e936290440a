//! Durations as users write them: `500ms`, `1s`, `5m`, `2h`, `90d`; shared by `csm run`'s
//! flags and config and by the readers of the tree (`csm-plot`).

use std::time::Duration;

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

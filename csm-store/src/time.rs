//! Durations as users write them: `500ms`, `1s`, `5m`, `2h`, `90d`; shared by `csm run`'s
//! flags and config and by the readers of the tree (`csm-plot`).

use std::time::Duration;

/// Parses a positive duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|err| {
        format!("invalid duration {text:?} ({err}); use a number and a unit, like 500ms, 1s, 5m, 2h or 90d")
    })?;
    if parsed.is_zero() {
        return Err(format!("invalid duration {text:?}: must be more than zero"));
    }
    Ok(parsed)
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
    fn rejects_garbage_and_zero() {
        assert!(parse_duration("fast").unwrap_err().contains("\"fast\""));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}

//! The time zone a reader shows times in (`csm-plot --tz`, `csm report --tz`): UTC, a
//! fixed offset, or a named zone of the tz database (`Europe/Berlin`) whose offset follows
//! daylight saving time, instant by instant. [`parse_zone`] reads the flag.

use chrono::{DateTime, FixedOffset, Utc};
use jiff::tz::TimeZone;

/// A zone and the name readers write for it.
#[derive(Clone, Debug)]
pub struct Zone {
    tz: TimeZone,
    /// `UTC`, `UTC+02:00`, or the tz database name.
    name: String,
    /// Fixed offsets are named by their offset: the name does not change with the time.
    fixed: bool,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Zone {
    pub fn utc() -> Zone {
        Zone::fixed(0).expect("0 is a valid offset")
    }

    /// A fixed offset east of UTC, in seconds; `None` beyond ±24 h.
    pub fn fixed(seconds: i32) -> Option<Zone> {
        let chrono_offset = FixedOffset::east_opt(seconds)?;
        let offset = jiff::tz::Offset::from_seconds(seconds).ok()?;
        let name = if seconds == 0 {
            "UTC".to_string()
        } else {
            format!("UTC{chrono_offset}")
        };
        Some(Zone {
            tz: TimeZone::fixed(offset),
            name,
            fixed: true,
        })
    }

    /// A zone of the tz database by name (`Europe/Berlin`); the error names it.
    pub fn named(name: &str) -> Result<Zone, String> {
        let tz = TimeZone::get(name).map_err(|err| format!("unknown time zone {name:?}: {err}"))?;
        Ok(Zone {
            tz,
            name: name.to_string(),
            fixed: false,
        })
    }

    /// This machine's zone (its tz database name when it has one).
    pub fn system() -> Zone {
        let tz = TimeZone::system();
        let name = tz.iana_name().unwrap_or("local").to_string();
        Zone {
            tz,
            name,
            fixed: false,
        }
    }

    /// The offset in force at an instant.
    pub fn offset_at(&self, ts_us: i64) -> FixedOffset {
        let seconds = jiff::Timestamp::from_microsecond(ts_us)
            .map(|t| self.tz.to_offset(t).seconds())
            .unwrap_or(0);
        FixedOffset::east_opt(seconds).unwrap_or(FixedOffset::east_opt(0).expect("UTC"))
    }

    /// The time at an instant in this zone.
    pub fn local(&self, ts_us: i64) -> DateTime<FixedOffset> {
        let utc = DateTime::<Utc>::from_timestamp_micros(ts_us).unwrap_or_default();
        utc.with_timezone(&self.offset_at(ts_us))
    }

    /// What charts call the zone: `UTC`, `UTC+02:00`, `Europe/Berlin`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn is_fixed(&self) -> bool {
        self.fixed
    }
}

/// `utc`, `local`, a tz database name (`Europe/Berlin`), or an offset: `+02:00`, `-0530`,
/// `+2`.
pub fn parse_zone(text: &str) -> Result<Zone, String> {
    let bad = || {
        format!(
            "invalid time zone {text:?}; use utc, local, a name like Europe/Berlin or an offset \
             like +02:00"
        )
    };
    match text.trim() {
        "utc" | "UTC" | "Z" => return Ok(Zone::utc()),
        "local" => return Ok(Zone::system()),
        name if name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
            return Zone::named(name).map_err(|err| format!("{err}; {}", bad()));
        }
        _ => {}
    }
    let (sign, rest) = match text.trim().split_at_checked(1).ok_or_else(bad)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().map_err(|_| bad())?, 0),
        4 => (
            digits[..2].parse::<i32>().map_err(|_| bad())?,
            digits[2..].parse::<i32>().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Zone::fixed(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_read_as_names_or_offsets() {
        let offset = |text: &str| parse_zone(text).map(|z| z.offset_at(0));
        let east = |s| chrono::FixedOffset::east_opt(s).unwrap();
        assert_eq!(offset("utc"), Ok(east(0)));
        assert_eq!(offset("+02:00"), Ok(east(7200)));
        assert_eq!(offset("-0530"), Ok(east(-19800)));
        assert_eq!(offset("+2"), Ok(east(7200)));
        assert!(parse_zone("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
        assert!(parse_zone("+25:00").is_err());
        // A named zone: Berlin is +01:00 in January and +02:00 in July.
        let berlin = parse_zone("Europe/Berlin").unwrap();
        assert_eq!(berlin.offset_at(1_767_225_600_000_000), east(3600));
        assert_eq!(berlin.offset_at(1_782_864_000_000_000), east(7200));
    }

    const HOUR_US: i64 = 3_600_000_000;
    /// 2026-03-29 01:00 UTC: Europe/Berlin moves from +01:00 to +02:00.
    const SPRING_FORWARD_US: i64 = 1_774_746_000_000_000;

    #[test]
    fn a_named_zone_follows_daylight_saving_time() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let before = berlin.local(SPRING_FORWARD_US - HOUR_US);
        let after = berlin.local(SPRING_FORWARD_US);
        assert_eq!(before.format("%H:%M %:z").to_string(), "01:00 +01:00");
        assert_eq!(after.format("%H:%M %:z").to_string(), "03:00 +02:00");
        assert_eq!(berlin.name(), "Europe/Berlin");
    }

    #[test]
    fn fixed_offsets_are_named_by_their_offset() {
        assert_eq!(Zone::utc().name(), "UTC");
        assert_eq!(Zone::fixed(7200).unwrap().name(), "UTC+02:00");
        assert_eq!(
            Zone::fixed(-19800).unwrap().offset_at(0),
            FixedOffset::west_opt(19800).unwrap()
        );
        assert!(Zone::named("Mars/Olympus")
            .unwrap_err()
            .contains("Mars/Olympus"));
    }
}

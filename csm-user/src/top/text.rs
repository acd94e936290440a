//! Names other users choose (user names, interface names, ping targets) reach the
//! terminal only through [`printable`]: a control character in them could move the
//! cursor, retitle the window or worse.

/// `text` with every control character replaced by `?`.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A round-trip time: three decimals below 1 ms (loopback answers in microseconds).
pub fn rtt(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A byte count per second as people read it: `0`, `512 B/s`, `1.5 KiB/s`, `12 MiB/s`.
pub fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", bytes(bytes_per_s))
}

/// A byte count with a binary unit, three significant figures.
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = value.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[0])
    } else if v < 10.0 {
        format!("{v:.2} {}", UNITS[unit])
    } else if v < 100.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(printable("eve\x1b]0;pwned\x07"), "eve?]0;pwned?");
        assert_eq!(printable("a\nb\tc\u{9b}d"), "a?b?c?d");
        assert_eq!(printable("zoë"), "zoë");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(50.0 * 1024.0 * 1024.0), "50.0 MiB");
        assert_eq!(rtt(0.0042), "0.004 ms");
        assert_eq!(rtt(12.345), "12.35 ms");
        assert_eq!(rate(300.0 * 1024.0 * 1024.0 * 1024.0), "300 GiB/s");
    }
}

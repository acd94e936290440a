//! Human units, defined once for `csm report`, `csm top` and the charts' notes, as vnStat
//! writes them: binary byte units (KiB, MiB, GiB) to three significant digits, rates per
//! second, CPU time and durations in the two largest units, percentages, RTTs.

/// `512 B`, `1.50 KiB`, `23.4 MiB`, `1.21 GiB`, `3.00 TiB`: three significant digits.
pub fn bytes(value: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{value} B");
    }
    format!("{} {}", three_digits(scaled), UNITS[unit])
}

/// [`bytes`] of an amount measured as a float (rates, means), rounded to the byte.
pub fn bytes_f64(value: f64) -> String {
    bytes(value.round() as i64)
}

/// A rate in bytes per second: `12.3 MiB/s`.
pub fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", bytes(bytes_per_s.round() as i64))
}

/// `9.87`, `98.7`, `987`.
fn three_digits(value: f64) -> String {
    match value.abs() {
        v if v < 10.0 => format!("{value:.2}"),
        v if v < 100.0 => format!("{value:.1}"),
        _ => format!("{value:.0}"),
    }
}

/// CPU time: `1.00 ms`, `0.25 s`, `42.1 s`, `12 min 5 s`, `3 h 12 min`, `2 d 4 h`.
pub fn cpu_time(ns: i64) -> String {
    let seconds = ns as f64 / 1e9;
    if seconds < 0.01 {
        return format!("{} ms", three_digits(ns as f64 / 1e6));
    }
    if seconds < 100.0 {
        return format!("{} s", three_digits(seconds));
    }
    duration(ns / 1000)
}

/// A duration as people say it (`12 s`, `4 min 30 s`): the charts' words.
pub use crate::time::duration_words as duration;

/// `37.5 %`.
pub fn pct(value: f64) -> String {
    format!("{value:.1} %")
}

/// An RTT in ms with the precision it needs: `0.042 ms`, `1.25 ms`, `12.3 ms`, `250 ms`.
pub fn rtt(ms: f64) -> String {
    match ms {
        v if v < 1.0 => format!("{v:.3} ms"),
        v => format!("{} ms", three_digits(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_like_vnstat() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(50_000_000), "47.7 MiB");
        assert_eq!(bytes(3 << 40), "3.00 TiB");
        assert_eq!(bytes_f64(1535.6), "1.50 KiB");
        assert_eq!(bytes(-2048), "-2.00 KiB");
        assert_eq!(rate(1_048_576.0), "1.00 MiB/s");
        assert_eq!(cpu_time(10_020_000_000), "10.0 s");
        assert_eq!(cpu_time(250_000_000), "0.25 s");
        assert_eq!(cpu_time(1_000_000), "1.00 ms");
        assert_eq!(cpu_time(3_725_000_000_000), "1 h 2 min");
        assert_eq!(duration(20_400_000), "20 s");
        assert_eq!(duration(270_000_000), "4 min 30 s");
        assert_eq!(rtt(0.0423), "0.042 ms");
        assert_eq!(rtt(12.34), "12.3 ms");
    }
}

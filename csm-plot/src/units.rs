//! Numbers as people read them: bytes in binary units (KiB, MiB, GiB; csm-store's one
//! definition), rates in bits/s with decimal prefixes (kbit/s, Mbit/s), as network people
//! quote them.

/// A byte amount, three significant digits (`600 MiB`, `1.50 GiB`): csm's one byte
/// formatting, shared with `csm report` and `csm top`.
pub fn bytes(amount: f64) -> String {
    csm_store::units::bytes_f64(amount)
}

/// One unit for a whole axis, chosen by its largest value, so tick labels compare.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisUnit {
    pub divisor: f64,
    pub name: &'static str,
}

impl AxisUnit {
    /// bits/s for a maximum given in bytes/s.
    pub fn bits_per_s(max_bytes_per_s: f64) -> AxisUnit {
        let bits = max_bytes_per_s.abs() * 8.0;
        let (divisor, name) = [(1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")]
            .into_iter()
            .find(|(d, _)| bits >= *d)
            .unwrap_or((1.0, "bit/s"));
        AxisUnit {
            divisor: divisor / 8.0,
            name,
        }
    }

    /// KiB/MiB/GiB for a maximum in bytes.
    pub fn binary_bytes(max_bytes: f64) -> AxisUnit {
        let (divisor, name) = [
            (1024f64.powi(4), "TiB"),
            (1024f64.powi(3), "GiB"),
            (1024f64.powi(2), "MiB"),
            (1024.0, "KiB"),
        ]
        .into_iter()
        .find(|(d, _)| max_bytes.abs() >= *d)
        .unwrap_or((1.0, "B"));
        AxisUnit { divisor, name }
    }

    /// `value` (in the base unit) in this unit, trimmed: `12.5`, `300`, `0.25`.
    pub fn number(&self, value: f64) -> String {
        let scaled = value / self.divisor;
        let text = if scaled.abs() >= 100.0 || scaled == scaled.round() {
            format!("{scaled:.0}")
        } else if scaled.abs() >= 10.0 {
            format!("{scaled:.1}")
        } else {
            format!("{scaled:.2}")
        };
        if text == "-0" {
            "0".to_string()
        } else {
            text
        }
    }

    pub fn with_unit(&self, value: f64) -> String {
        format!("{} {}", self.number(value), self.name)
    }
}

/// Ticks of a memory axis from 0 to `limit` bytes at round binary values: multiples of a
/// power of two of the axis unit (64, 128, 192 MiB; 0.5, 1, 1.5 GiB), at most `max` + 1.
pub fn binary_ticks(limit: f64, max: usize) -> Vec<(f64, String)> {
    let unit = AxisUnit::binary_bytes(limit);
    let scaled = limit / unit.divisor;
    // Steps of 2^-decimals exactly need `decimals` digits: 0.25 → "0.75", 32 → "96".
    let (mut step, mut decimals) = (1.0 / 1024.0, 10usize);
    while scaled / step > max as f64 {
        step *= 2.0;
        decimals = decimals.saturating_sub(1);
    }
    (0..)
        .map(|k| f64::from(k) * step)
        .take_while(|v| *v <= scaled)
        .map(|v| (v * unit.divisor, format!("{v:.decimals$}")))
        .collect()
}

/// A rate in bytes/s as bits/s in its own best unit: `96.0 Mbit/s`.
pub fn rate(bytes_per_s: f64) -> String {
    let unit = AxisUnit::bits_per_s(bytes_per_s);
    format!("{:.1} {}", bytes_per_s / unit.divisor, unit.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(600.0 * 1024.0 * 1024.0), "600 MiB");
        assert_eq!(bytes(1.5 * 1024f64.powi(3)), "1.50 GiB");
        assert_eq!(bytes(-2048.0), "-2.00 KiB");
    }

    #[test]
    fn memory_ticks_fall_on_round_binary_values() {
        let mib = 1024.0 * 1024.0;
        // 155 MiB used to tick at 47.7, 95.4, 143 MiB.
        let labels: Vec<String> = binary_ticks(155.0 * mib, 7)
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(labels, ["0", "32", "64", "96", "128"]);
        let gib: Vec<f64> = binary_ticks(3.5 * 1024.0 * mib, 7)
            .into_iter()
            .map(|(v, _)| v / (1024.0 * mib))
            .collect();
        assert_eq!(gib, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
    }

    #[test]
    fn rates_are_bits_per_second() {
        assert_eq!(rate(12_000_000.0), "96.0 Mbit/s");
        assert_eq!(rate(100.0), "800.0 bit/s");
        let unit = AxisUnit::bits_per_s(1_250_000.0);
        assert_eq!(unit.name, "Mbit/s");
        assert_eq!(unit.number(625_000.0), "5");
        assert_eq!(unit.number(-62_500.0), "-0.50");
    }
}

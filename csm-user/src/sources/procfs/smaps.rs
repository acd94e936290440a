//! `/proc/<pid>/smaps_rollup` (Linux 4.14+): the process's mappings summed by the kernel.
//! PSS shares each page among the processes that map it, so per-user sums do not count
//! shared libraries once per process as RSS does.

use super::pid::kb_value;
use super::LineWarning;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    pub rss_bytes: Option<u64>,
    pub pss_bytes: Option<u64>,
    pub swap_bytes: Option<u64>,
}

pub fn parse_smaps_rollup(text: &str) -> (Rollup, Vec<LineWarning>) {
    let mut rollup = Rollup::default();
    let mut warnings = Vec::new();
    // Line 1 is the `[rollup]` pseudo-mapping header; its address contains no `:`-key.
    for (i, line) in text.lines().enumerate().skip(1) {
        let Some((key, value)) = line.split_once(':') else {
            warnings.push(LineWarning::new(i + 1, "no `key: value`"));
            continue;
        };
        let slot = match key {
            "Rss" => &mut rollup.rss_bytes,
            "Pss" => &mut rollup.pss_bytes,
            "Swap" => &mut rollup.swap_bytes,
            _ => continue,
        };
        match kb_value(value) {
            Ok(bytes) => *slot = Some(bytes),
            Err(message) => warnings.push(LineWarning::new(i + 1, format!("{key}: {message}"))),
        }
    }
    (rollup, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_fields() {
        let text = "55d0a0e2e000-7ffc2b1f9000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:                3920 kB\nPss:                 812 kB\n\
                    Pss_Anon:            460 kB\nSwap:                  8 kB\nSwapPss:               8 kB\n";
        let (r, w) = parse_smaps_rollup(text);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(r.rss_bytes, Some(3920 * 1024));
        assert_eq!(r.pss_bytes, Some(812 * 1024));
        assert_eq!(r.swap_bytes, Some(8 * 1024));
    }

    #[test]
    fn bad_line_is_named() {
        let (r, w) = parse_smaps_rollup("header [rollup]\nRss: 1 kB\nPss: x kB\n");
        assert_eq!(r.rss_bytes, Some(1024));
        assert_eq!(r.pss_bytes, None);
        assert_eq!(w[0].line, 3);
    }
}

//! Names other users choose (user names, interface names, ping targets) reach the
//! terminal only through [`printable`]: a control character in them could move the
//! cursor, retitle the window or worse, and a bidirectional override could make one name
//! read as another. Numbers use csm's one set of human units (csm-store's `units`).

use csm_store::names::safe_text;

pub use csm_store::units::{rate, rtt};

/// `text` with every control character and bidirectional mark shown as a visible escape
/// (csm-store's one rule, as `csm report` and the charts show names).
pub fn printable(text: &str) -> String {
    safe_text(text).into_owned()
}

/// A byte count with a binary unit, three significant figures (never below zero).
pub fn bytes(value: f64) -> String {
    csm_store::units::bytes_f64(value.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_overrides_never_reach_the_terminal() {
        assert_eq!(printable("eve\x1b]0;pwned\x07"), "eve\\u{1b}]0;pwned\\u{7}");
        assert_eq!(printable("a\nb\tc\u{9b}d"), "a\\u{a}b\\u{9}c\\u{9b}d");
        assert_eq!(printable("evil\u{202e}gnp"), "evil\\u{202e}gnp");
        assert_eq!(printable("zoë"), "zoë");
    }

    #[test]
    fn units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(bytes(50.0 * 1024.0 * 1024.0), "50.0 MiB");
        assert_eq!(rtt(0.0042), "0.004 ms");
        assert_eq!(rtt(12.345), "12.3 ms");
        assert_eq!(rate(300.0 * 1024.0 * 1024.0 * 1024.0), "300 GiB/s");
    }
}

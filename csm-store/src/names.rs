//! Names other users choose (interface names in their own network namespace, user names,
//! ping targets, host folders) made safe once, where they are shown: control characters
//! and the invisible bidirectional overrides become visible escapes (`\u{1b}`), so that a
//! name can neither break an SVG's XML nor move a terminal's cursor or rewrite a log line.
//! A backslash is doubled, so two distinct names never show the same.

use std::borrow::Cow;

/// Whether `c` must not be shown as itself: C0/C1 controls (including newline and tab,
/// which would split or shift a log line) and the bidirectional embedding, override and
/// isolate marks (which reorder what follows them).
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `name` with every unsafe character written as `\u{…}` and `\` as `\\`; borrowed when
/// nothing had to change.
pub fn safe_text(name: &str) -> Cow<'_, str> {
    if !name.chars().any(|c| is_unsafe_char(c) || c == '\\') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A short, stable hash of a name (FNV-1a, 32 bits, as 8 hex digits): the suffix that keeps
/// file names apart when sanitising made two names alike.
pub fn short_hash(name: &str) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides_become_visible_and_plain_names_stay() {
        assert!(matches!(safe_text("eth0"), Cow::Borrowed("eth0")));
        assert_eq!(safe_text("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe_text("x\ny"), "x\\u{a}y");
        assert_eq!(safe_text("evil\u{202e}gnp"), "evil\\u{202e}gnp");
        // Distinct names stay distinct: a literal `\u{1}` is not the control character.
        assert_ne!(safe_text("a\\u{1}"), safe_text("a\u{1}"));
    }

    #[test]
    fn hashes_are_short_and_stable() {
        assert_eq!(short_hash(""), "811c9dc5");
        assert_eq!(short_hash("a").len(), 8);
        assert_ne!(short_hash("eth:0"), short_hash("eth/0"));
    }
}

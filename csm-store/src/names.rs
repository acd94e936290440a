//! Names other users choose (interface names in their own network namespace, user names,
//! ping targets, host folders) made safe once, where they are shown: control characters
//! and the invisible bidirectional overrides become visible escapes (`\u{1b}`), so that a
//! name can neither break an SVG's XML nor move a terminal's cursor or rewrite a log line.
//! A backslash is doubled, so two distinct names never show the same. CSV gets its own
//! rule ([`csv_text_cell`]): the bytes stay exact, but a cell a spreadsheet would run as a
//! formula is defused.

use std::borrow::Cow;

/// Whether `c` must not be shown as itself: C0/C1 controls (including newline and tab,
/// which would split or shift a log line), the bidirectional embedding, override and
/// isolate marks (U+202A–U+202E, U+2066–U+2069, which reorder what follows them) and the
/// invisible direction marks (U+200E, U+200F, U+061C), which can make a name look like
/// another.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
}

/// The first characters by which a spreadsheet takes a cell for a formula (OWASP's CSV
/// injection advice: `=`, `+`, `-`, `@`, tab and carriage return).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A CSV text cell (never a number: `-3` read from a number column stays `-3`) that a
/// spreadsheet cannot run: one starting like a formula gets a leading `'`, as OWASP
/// advises. The CSV writer quotes it per RFC 4180 where it holds `"`, `,` or a line break.
pub fn csv_text_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(FORMULA_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
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
        for mark in [
            '\u{200e}', '\u{200f}', '\u{061c}', '\u{2066}', '\u{2069}', '\u{202a}',
        ] {
            let shown = safe_text(&format!("a{mark}b")).into_owned();
            assert!(!shown.contains(mark), "{mark:?} shown raw: {shown}");
        }
        // Distinct names stay distinct: a literal `\u{1}` is not the control character.
        assert_ne!(safe_text("a\\u{1}"), safe_text("a\u{1}"));
    }

    #[test]
    fn csv_cells_that_start_like_formulas_are_defused_and_others_kept() {
        assert_eq!(csv_text_cell("=1+2*cmd|x"), "'=1+2*cmd|x");
        for start in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_text_cell(start), format!("'{start}"));
        }
        assert!(matches!(csv_text_cell("eth0"), Cow::Borrowed("eth0")));
        assert_eq!(csv_text_cell("a=b"), "a=b");
    }

    #[test]
    fn hashes_are_short_and_stable() {
        assert_eq!(short_hash(""), "811c9dc5");
        assert_eq!(short_hash("a").len(), 8);
        assert_ne!(short_hash("eth:0"), short_hash("eth/0"));
    }
}

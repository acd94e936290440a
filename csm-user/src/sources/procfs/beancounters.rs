//! `/proc/user_beancounters` (OpenVZ), format version 2.5:
//!
//! ```text
//! Version: 2.5
//!        uid  resource                     held              maxheld              barrier                limit              failcnt
//!       101:  kmemsize                  2752214              3192320             14372700             14790164                    0
//!             lockedpages                     0                    0                  256                  256                    0
//! ```
//! A line starting with `<ctid>:` opens a container's block; the following lines belong to
//! it. Inside a container only its own block is shown; on the hardware node, every
//! container's and `0:` for the node itself. Unlimited is `9223372036854775807`.

use super::{clip, LineWarning, Parsed};
use crate::model::ubc::Beancounter;

pub fn parse_user_beancounters(text: &str) -> Parsed<Vec<Beancounter>> {
    let mut out = Parsed::<Vec<Beancounter>>::default();
    let mut ctid: Option<u64> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(version) = trimmed.strip_prefix("Version:") {
            if version.trim() != "2.5" {
                out.warnings.push(LineWarning::new(
                    n,
                    format!("version `{}`, read as 2.5", clip(version.trim())),
                ));
            }
            continue;
        }
        if trimmed.starts_with("uid") {
            continue; // the column header
        }
        match parse_line(trimmed, &mut ctid) {
            Ok(counter) => out.value.push(counter),
            Err(message) => out.warnings.push(LineWarning::new(n, message)),
        }
    }
    out
}

fn parse_line(line: &str, ctid: &mut Option<u64>) -> Result<Beancounter, String> {
    let mut rest = line;
    if let Some((id, after)) = line.split_once(':') {
        let id = id.trim();
        *ctid = Some(
            id.parse()
                .map_err(|_| format!("container id `{}` is not a number", clip(id)))?,
        );
        rest = after;
    }
    let ctid = ctid.ok_or("a resource line before any `<ctid>:` line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "{}: {} fields, 6 expected (resource held maxheld barrier limit failcnt)",
            clip(fields.first().copied().unwrap_or("")),
            fields.len()
        ));
    }
    let resource = fields[0];
    let value = |i: usize, name: &str| -> Result<i64, String> {
        let v: u64 = fields[i]
            .parse()
            .map_err(|_| format!("{resource} {name}: `{}` is not a number", clip(fields[i])))?;
        // Unlimited is LONG_MAX; anything wider saturates (INT64 columns).
        Ok(i64::try_from(v).unwrap_or(i64::MAX))
    };
    Ok(Beancounter {
        ctid,
        resource: resource.to_string(),
        held: value(1, "held")?,
        maxheld: value(2, "maxheld")?,
        barrier: value(3, "barrier")?,
        limit: value(4, "limit")?,
        failcnt: value(5, "failcnt")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Version: 2.5
       uid  resource                     held              maxheld              barrier                limit              failcnt
      101:  kmemsize                  2752214              3192320             14372700             14790164                    0
            lockedpages                     0                    0                  256                  256                    0
            privvmpages                 71232                84608               262144               292912                   17
            dummy                           0                    0                    0                    0                    0
      102:  kmemsize                   100000               200000  9223372036854775807  9223372036854775807                    0
";

    #[test]
    fn every_resource_of_every_container() {
        let p = parse_user_beancounters(TEXT);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.value.len(), 5);
        assert_eq!(
            p.value[2],
            Beancounter {
                ctid: 101,
                resource: "privvmpages".into(),
                held: 71232,
                maxheld: 84608,
                barrier: 262144,
                limit: 292912,
                failcnt: 17
            }
        );
        assert_eq!(p.value[4].ctid, 102);
        assert_eq!(p.value[4].barrier, i64::MAX);
    }

    #[test]
    fn truncated_line_is_named_and_the_rest_survives() {
        let text = TEXT.replace(
            "lockedpages                     0                    0                  256",
            "lockedpages 0 0",
        );
        let cut = &text[..text.len() - 20];
        let p = parse_user_beancounters(cut);
        let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![4, 7]);
        assert_eq!(p.value.len(), 3);
    }

    #[test]
    fn resource_before_any_container_is_a_warning() {
        let p = parse_user_beancounters("kmemsize 1 2 3 4 5\n");
        assert!(p.value.is_empty());
        assert_eq!(p.warnings[0].line, 1);
    }
}

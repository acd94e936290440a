//! `[[alert]]` rules: the config section as written, and the checked [`Rule`]s.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use csm_store::time::parse_duration;

/// How long a `run` command may take before it is killed, unless `timeout` says.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `overflow` stays firing after the last overflow event, unless `window` says.
pub const DEFAULT_OVERFLOW_QUIET: Duration = Duration::from_secs(600);
/// The most rules: each is evaluated at every interval.
pub const MAX_RULES: usize = 256;

/// One `[[alert]]` table as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    pub name: Spanned<String>,
    /// `outage`, `loss`, `cpu`, `rate` or `daemon`.
    pub kind: Spanned<String>,
    pub target: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub interface: Option<Spanned<String>>,
    /// `rx`, `tx` or `both` (rate; default both).
    pub direction: Option<Spanned<String>>,
    /// `write_error`, `overflow` or `fallback` (daemon).
    pub trouble: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub window: Option<Spanned<String>>,
    pub above: Option<Spanned<f64>>,
    pub run: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
}

/// A checked rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub kind: Kind,
    /// The command and its arguments, run without a shell at each transition.
    pub run: Option<Vec<String>>,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// The target has been in an outage (`csm report`'s definition) for at least `for_`.
    Outage { target: String, for_: Duration },
    /// Of the echoes sent to the target in the last `window`, more than `above_pct` % lost.
    Loss {
        target: String,
        window: Duration,
        above_pct: f64,
    },
    /// A user's CPU (100 = one core) above `above_pct` for at least `for_`; every user
    /// when `user` is not given.
    Cpu {
        user: Option<String>,
        above_pct: f64,
        for_: Duration,
    },
    /// An interface's traffic above `above` bytes per second for at least `for_`.
    Rate {
        interface: String,
        direction: Direction,
        above: f64,
        for_: Duration,
    },
    /// The daemon's own trouble.
    Daemon { trouble: Trouble },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Rx,
    Tx,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// From a `write_error` event to the `write_ok` after it.
    WriteError,
    /// An overflow event (`net_uid_overflow`, …), until `quiet` passes without another.
    Overflow { quiet: Duration },
    /// `backend = "auto"` ended on /proc: eBPF could not run (fires at start).
    Fallback,
}

impl Rule {
    /// The target, user or interface the rule names, if it names one.
    pub fn subject_key(&self) -> &'static str {
        match self.kind {
            Kind::Outage { .. } | Kind::Loss { .. } => "CSM_TARGET",
            Kind::Cpu { .. } => "CSM_USER",
            Kind::Rate { .. } => "CSM_INTERFACE",
            Kind::Daemon { .. } => "CSM_TROUBLE",
        }
    }
}

/// The rules of a config file; an error names the line and the key.
pub fn rules(sections: &[AlertSection], text: &str) -> Result<Vec<Rule>, String> {
    if sections.len() > MAX_RULES {
        return Err(format!(
            "key alert: {} rules, at most {MAX_RULES}",
            sections.len()
        ));
    }
    let mut names = std::collections::HashSet::new();
    sections
        .iter()
        .map(|section| {
            let rule = rule(section, text)?;
            if !names.insert(rule.name.clone()) {
                return Err(at(
                    text,
                    section.name.span(),
                    "alert.name",
                    "used by another rule",
                ));
            }
            Ok(rule)
        })
        .collect()
}

fn at(text: &str, span: std::ops::Range<usize>, key: &str, message: &str) -> String {
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    format!("line {line}: key {key}: {message}")
}

/// The line of the `[[alert]]` itself, for a key that is missing.
fn missing(text: &str, section: &AlertSection, key: &str) -> String {
    at(
        text,
        section.kind.span(),
        key,
        &format!("required for kind = {:?}", section.kind.get_ref()),
    )
}

fn duration(
    text: &str,
    key: &str,
    value: &Option<Spanned<String>>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(v) => {
            parse_duration(v.get_ref()).map_err(|err| at(text, v.span(), key, &err.to_string()))
        }
    }
}

fn threshold(text: &str, section: &AlertSection) -> Result<f64, String> {
    let above = section
        .above
        .as_ref()
        .ok_or_else(|| missing(text, section, "alert.above"))?;
    let value = *above.get_ref();
    if !value.is_finite() || value < 0.0 {
        return Err(at(
            text,
            above.span(),
            "alert.above",
            "a number of 0 or more",
        ));
    }
    Ok(value)
}

fn required(
    text: &str,
    section: &AlertSection,
    key: &str,
    value: &Option<Spanned<String>>,
) -> Result<String, String> {
    let value = value.as_ref().ok_or_else(|| missing(text, section, key))?;
    let value = value.get_ref();
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(at(
            text,
            section.kind.span(),
            key,
            "empty or with control characters",
        ));
    }
    Ok(value.clone())
}

fn rule(section: &AlertSection, text: &str) -> Result<Rule, String> {
    let name = section.name.get_ref();
    if name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 200 {
        return Err(at(
            text,
            section.name.span(),
            "alert.name",
            "1 to 200 characters, no control characters",
        ));
    }
    let for_ = duration(text, "alert.for", &section.for_, Duration::ZERO)?;
    let kind = match section.kind.get_ref().as_str() {
        "outage" => Kind::Outage {
            target: required(text, section, "alert.target", &section.target)?,
            for_,
        },
        "loss" => Kind::Loss {
            target: required(text, section, "alert.target", &section.target)?,
            window: duration(
                text,
                "alert.window",
                &section.window,
                Duration::from_secs(300),
            )?,
            above_pct: threshold(text, section)?,
        },
        "cpu" => Kind::Cpu {
            user: section.user.as_ref().map(|u| u.get_ref().clone()),
            above_pct: threshold(text, section)?,
            for_,
        },
        "rate" => Kind::Rate {
            interface: required(text, section, "alert.interface", &section.interface)?,
            direction: direction(text, &section.direction)?,
            above: threshold(text, section)?,
            for_,
        },
        "daemon" => Kind::Daemon {
            trouble: trouble(text, section)?,
        },
        other => {
            return Err(at(
                text,
                section.kind.span(),
                "alert.kind",
                &format!("{other:?}: one of outage, loss, cpu, rate, daemon"),
            ))
        }
    };
    Ok(Rule {
        name: name.clone(),
        kind,
        run: run(text, &section.run)?,
        timeout: duration(text, "alert.timeout", &section.timeout, DEFAULT_RUN_TIMEOUT)?,
    })
}

fn direction(text: &str, value: &Option<Spanned<String>>) -> Result<Direction, String> {
    let Some(value) = value else {
        return Ok(Direction::Both);
    };
    match value.get_ref().as_str() {
        "rx" => Ok(Direction::Rx),
        "tx" => Ok(Direction::Tx),
        "both" => Ok(Direction::Both),
        other => Err(at(
            text,
            value.span(),
            "alert.direction",
            &format!("{other:?}: rx, tx or both"),
        )),
    }
}

fn trouble(text: &str, section: &AlertSection) -> Result<Trouble, String> {
    let value = section
        .trouble
        .as_ref()
        .ok_or_else(|| missing(text, section, "alert.trouble"))?;
    match value.get_ref().as_str() {
        "write_error" => Ok(Trouble::WriteError),
        "overflow" => Ok(Trouble::Overflow {
            quiet: duration(
                text,
                "alert.window",
                &section.window,
                DEFAULT_OVERFLOW_QUIET,
            )?,
        }),
        "fallback" => Ok(Trouble::Fallback),
        other => Err(at(
            text,
            value.span(),
            "alert.trouble",
            &format!("{other:?}: write_error, overflow or fallback"),
        )),
    }
}

/// `run = ["/path/cmd", "arg", …]`: an absolute path (no shell, no PATH search).
fn run(text: &str, value: &Option<Spanned<Vec<String>>>) -> Result<Option<Vec<String>>, String> {
    let Some(value) = value else { return Ok(None) };
    let command = value.get_ref();
    let Some(program) = command.first() else {
        return Err(at(
            text,
            value.span(),
            "alert.run",
            "empty: [\"/path/cmd\", \"arg\", …]",
        ));
    };
    if !program.starts_with('/') {
        return Err(at(
            text,
            value.span(),
            "alert.run",
            &format!("{program:?}: an absolute path (it runs without a shell or PATH)"),
        ));
    }
    if command.iter().any(|arg| arg.contains('\0')) {
        return Err(at(
            text,
            value.span(),
            "alert.run",
            "a NUL byte in an argument",
        ));
    }
    Ok(Some(command.clone()))
}

/// An `outage` or `loss` rule must name a configured ping target: one that is never
/// measured would never fire, silently.
pub fn check_targets(
    rules: &[Rule],
    targets: &[crate::sources::ping::PingTarget],
) -> Result<(), String> {
    for rule in rules {
        if let Kind::Outage { target, .. } | Kind::Loss { target, .. } = &rule.kind {
            if !targets.iter().any(|t| &t.host == target) {
                return Err(format!(
                    "alert {:?}: key alert.target {target:?} is not a ping target ([ping] targets or --ping)",
                    rule.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        alert: Vec<AlertSection>,
    }

    fn parse(text: &str) -> Result<Vec<Rule>, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        rules(&file.alert, text)
    }

    #[test]
    fn every_kind_parses() {
        let text = r#"
[[alert]]
name = "gateway down"
kind = "outage"
target = "10.0.0.1"
for = "30s"
run = ["/usr/local/bin/page", "--urgent"]

[[alert]]
name = "loss"
kind = "loss"
target = "10.0.0.1"
window = "5m"
above = 20

[[alert]]
name = "hog"
kind = "cpu"
user = "alice"
above = 150
for = "10m"

[[alert]]
name = "uplink full"
kind = "rate"
interface = "eth0"
direction = "tx"
above = 1e8

[[alert]]
name = "disk"
kind = "daemon"
trouble = "write_error"
"#;
        let rules = parse(text).unwrap();
        assert_eq!(rules.len(), 5);
        assert_eq!(
            rules[0].kind,
            Kind::Outage {
                target: "10.0.0.1".into(),
                for_: Duration::from_secs(30)
            }
        );
        assert_eq!(rules[0].run.as_ref().unwrap()[0], "/usr/local/bin/page");
        assert_eq!(rules[0].timeout, DEFAULT_RUN_TIMEOUT);
        assert!(matches!(
            rules[3].kind,
            Kind::Rate {
                direction: Direction::Tx,
                ..
            }
        ));
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let err = parse("[[alert]]\nname = \"a\"\nkind = \"loss\"\ntarget = \"x\"\n").unwrap_err();
        assert_eq!(err, "line 3: key alert.above: required for kind = \"loss\"");
        let err = parse("[[alert]]\nname = \"a\"\nkind = \"cpu\"\nabove = 5\nrun = [\"page\"]\n")
            .unwrap_err();
        assert!(err.starts_with("line 5: key alert.run: "), "{err}");
        let err = parse("[[alert]]\nname = \"a\"\nkind = \"pager\"\n").unwrap_err();
        assert!(err.starts_with("line 3: key alert.kind: "), "{err}");
        let err = parse("[[alert]]\nname = \"a\"\nkind = \"cpu\"\nabove = 5\nfor = \"soon\"\n")
            .unwrap_err();
        assert!(err.starts_with("line 5: key alert.for: "), "{err}");
        let twice = "[[alert]]\nname = \"a\"\nkind = \"outage\"\ntarget = \"x\"\n\
                     [[alert]]\nname = \"a\"\nkind = \"outage\"\ntarget = \"y\"\n";
        assert!(parse(twice)
            .unwrap_err()
            .starts_with("line 6: key alert.name: "));
    }
}

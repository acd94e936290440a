//! What the Debian package ships besides the binaries, generated from the clap
//! definitions so that it can never disagree with `--help`: man pages (`csm(1)`,
//! `csm-run(1)`, `csm-check(1)`, `csm-top(1)`, `csm-report(1)`, `csm-plot(1)`) and bash/zsh/fish completions.
//! `csm __generate-assets DIR` (hidden) writes them; `cargo xtask deb` calls it.
//!
//! Also the `--version` string (with the commit) and the environment help that `csm
//! --help` and the man page share.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// `0.1.0 (commit 1a2b3c4d5e6f)`; the commit comes from `build.rs` ("unknown" outside a
/// git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CSM_GIT_COMMIT"),
    ")"
);

/// The environment `csm` reads, for `--help` (after the options).
pub const ENVIRONMENT_HELP: &str = "\
Environment:
  CSM_LOG    What to log, as a tracing filter: error, warn, info (the default), debug,
             trace, or per module, e.g. CSM_LOG=info,csm::sources::ping=debug
  NO_COLOR   When set (not empty), the log has no colour even on a terminal.

The log goes to stderr, coloured only on a terminal. Under systemd (JOURNAL_STREAM
names stderr) lines carry no timestamp (the journal adds its own) and start with a
syslog priority, so `journalctl -u csm -p warning` works.

Files: /etc/csm.toml (the package's config; `csm run --config /etc/csm.toml`),
/var/lib/csm (the data, Parquet files 0640, folders 0750).";

/// `csm` as users see it: the derived command with the version that names the commit
/// and the environment help.
pub fn csm_command() -> clap::Command {
    crate::cli::Cli::command()
        .version(VERSION)
        .after_help(ENVIRONMENT_HELP)
}

/// `csm-plot` as users see it: its definition comes from its own crate (only the clap
/// definition is linked into `csm`, for this).
pub fn plot_command() -> clap::Command {
    csm_plot::args::PlotArgs::command()
}

/// Writes `man/*.1` and `completions/{bash,zsh,fish}/*` under `dir`; returns the files
/// written, relative to `dir`.
pub fn generate(dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let man_dir = dir.join("man");
    fs::create_dir_all(&man_dir).with_context(|| format!("create {}", man_dir.display()))?;

    let csm = build(csm_command());
    let plot = build(plot_command());
    // csm(1) lists the subcommands; each gets its own page with its options.
    let mut pages = vec![(csm.clone(), true)];
    for sub in csm.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("csm-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .display_name(name.clone())
            .bin_name(format!("csm {}", sub.get_name()))
            .version(VERSION);
        pages.push((sub, true));
    }
    pages.push((plot.clone(), false));
    for (cmd, is_csm) in pages {
        let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
        let file = format!("{name}.1");
        let path = man_dir.join(&file);
        let page = man_page(cmd, is_csm).with_context(|| format!("render {file}"))?;
        fs::write(&path, page).with_context(|| format!("write {}", path.display()))?;
        written.push(format!("man/{file}"));
    }

    for (shell, folder, file_of) in [
        (
            Shell::Bash,
            "bash",
            (|n: &str| n.to_string()) as fn(&str) -> String,
        ),
        (Shell::Zsh, "zsh", |n: &str| format!("_{n}")),
        (Shell::Fish, "fish", |n: &str| format!("{n}.fish")),
    ] {
        let out = dir.join("completions").join(folder);
        fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
        for cmd in [csm.clone(), plot.clone()] {
            let name = cmd.get_name().to_string();
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut text);
            let file = file_of(&name);
            let path = out.join(&file);
            fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
            written.push(format!("completions/{folder}/{file}"));
        }
    }
    Ok(written)
}

/// The command as users see it, with the hidden and help entries settled (clap adds
/// `help` and `--version` lazily; pages and completions must show what `--help` shows).
fn build(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One man page: clap_mangen's sections, then ENVIRONMENT, FILES and SEE ALSO for csm's
/// pages (in place of clap_mangen's "EXTRA", which would only repeat `after_help`).
fn man_page(cmd: clap::Command, is_csm: bool) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("csm")
        .source(format!("csm {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)?;
    }
    if is_csm {
        // A subcommand's own notes (keys of `csm top`); the root's are CSM_SECTIONS.
        if cmd.get_name() != "csm" && cmd.get_after_help().is_some() {
            man.render_extra_section(&mut out)?;
        }
        out.write_all(CSM_SECTIONS.as_bytes())?;
    } else if cmd.get_after_help().is_some() {
        man.render_extra_section(&mut out)?;
        out.write_all(PLOT_SEE_ALSO.as_bytes())?;
    } else {
        out.write_all(PLOT_SEE_ALSO.as_bytes())?;
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

const CSM_SECTIONS: &str = r#".SH ENVIRONMENT
.TP
\fBCSM_LOG\fR
What to log, as a tracing filter: \fBerror\fR, \fBwarn\fR, \fBinfo\fR (the default), \fBdebug\fR, \fBtrace\fR, or per module, e.g. \fBCSM_LOG=info,csm::sources::ping=debug\fR.
.TP
\fBNO_COLOR\fR
When set (not empty), the log has no colour even on a terminal.
.TP
\fBJOURNAL_STREAM\fR
Set by systemd. When it names stderr, log lines carry no timestamp (the journal adds its own) and start with a syslog priority prefix, so that \fBjournalctl \-u csm \-p warning\fR selects warnings and errors.
.SH FILES
.TP
\fI/etc/csm.toml\fR
The configuration the service uses (\fBcsm run \-\-config /etc/csm.toml\fR). Every key is optional; flags override it.
.TP
\fI/var/lib/csm\fR
The data: \fI<table>/host=<host>/date=<YYYY\-MM\-DD>/<HH>.parquet\fR, files 0640 and folders 0750 (they reveal what each user does).
.TP
\fI/sys/fs/bpf/csm/\fR
Pinned eBPF state of a running (or killed) daemon, one folder per data dir, adopted by the next start; removed at a clean stop. \fBcsm check\fR lists it; owners are noted in \fI/run/csm/\fR.
.TP
\fI/usr/lib/systemd/system/csm.service\fR
The hardened service unit: \fBsystemctl enable \-\-now csm\fR.
.SH EXIT STATUS
0 success; 1 runtime failure; 2 usage or configuration error.
.SH SEE ALSO
\fBcsm\-run\fR(1), \fBcsm\-check\fR(1), \fBcsm\-top\fR(1), \fBcsm\-report\fR(1), \fBcsm\-plot\fR(1), \fBsystemctl\fR(1), \fBjournalctl\fR(1)
"#;

const PLOT_SEE_ALSO: &str = r#".SH SEE ALSO
\fBcsm\fR(1), \fBcsm\-run\fR(1)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pages_and_completions_that_name_every_option() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path()).unwrap();
        for expected in [
            "man/csm.1",
            "man/csm-run.1",
            "man/csm-check.1",
            "man/csm-top.1",
            "man/csm-report.1",
            "man/csm-plot.1",
            "completions/bash/csm",
            "completions/bash/csm-plot",
            "completions/zsh/_csm",
            "completions/fish/csm-plot.fish",
        ] {
            assert!(written.iter().any(|w| w == expected), "{expected} missing");
        }
        let read = |rel: &str| fs::read_to_string(dir.path().join(rel)).unwrap();
        // Every flag of `csm run` is in its page and in the completions.
        let run = read("man/csm-run.1");
        let bash = read("completions/bash/csm");
        for arg in crate::cli::Cli::command()
            .find_subcommand("run")
            .unwrap()
            .get_arguments()
        {
            if let Some(long) = arg.get_long() {
                assert!(
                    run.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{long} not in csm-run.1"
                );
                assert!(
                    bash.contains(&format!("--{long}")),
                    "{long} not in bash completion"
                );
            }
        }
        let csm = read("man/csm.1");
        assert!(csm.contains("CSM_LOG"));
        assert!(csm.contains(VERSION), "version section names the commit");
        assert!(
            !csm.contains("__generate"),
            "the hidden subcommand stays hidden"
        );
        assert!(read("man/csm-plot.1").contains("\\-\\-data\\-dir"));
        let top = read("man/csm-top.1");
        assert!(top.contains("\\-\\-once") && top.contains("q quit"));
        let report = read("man/csm-report.1");
        for flag in ["\\-\\-from", "\\-\\-tz", "\\-\\-format", "\\-\\-top"] {
            assert!(report.contains(flag), "{flag} not in csm-report.1");
        }
        assert!(bash.contains("report"), "csm's completion knows `report`");
        // The range flags are declared once; each page still states its command's defaults.
        assert!(
            report.contains("[default: local]") && report.contains("midnight in"),
            "csm-report.1 states its --tz and --from defaults"
        );
        let plot = read("man/csm-plot.1");
        assert!(
            plot.contains("[default: utc]") && plot.contains("24 hours before"),
            "csm-plot.1 states its --tz and --from defaults"
        );
    }
}

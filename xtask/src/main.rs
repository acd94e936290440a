//! `cargo xtask`: set up a fresh machine, build, run, test and benchmark csm.
//!
//! Every step says what it does. Setup installs only what is missing: nightly's rust-src,
//! bpf-linker built against the nightly toolchain's own LLVM, and the bpffs/tracefs mounts.

mod setup;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark csm")]
struct Args {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (rust-src, bpf-linker, mounts).
    Setup,
    /// Build the eBPF programs and the release binaries (csm, csm-plot).
    Build,
    /// Build, then run `csm run` as root; arguments after `--` go to `csm run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run every test (unit, root end-to-end, Python readers) and clippy.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run the benchmarks and print their figures.
    Bench {
        /// Only the benchmarks whose name contains this.
        filter: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Task::Setup => setup::all(),
        Task::Build => setup::all().and_then(|_| build()),
        Task::Run { args } => setup::all().and_then(|_| build()).and_then(|_| run(&args)),
        Task::Test { args } => setup::all().and_then(|_| build()).and_then(|_| test(&args)),
        Task::Bench { filter } => setup::all()
            .and_then(|_| build())
            .and_then(|_| bench(filter.as_deref())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn say(message: &str) {
    eprintln!("xtask: {message}");
}

/// Runs a command, echoing it, failing with its name when it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    say(&format!("running {shown}"));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// The crates that hold the binaries: `csm` (csm-user) and `csm-plot`.
const BINARY_CRATES: [&str; 2] = ["csm-user", "csm-plot"];

/// The crates whose `examples/bench_*.rs` are the benchmarks.
const BENCH_CRATES: [&str; 3] = ["csm-user", "csm-store", "csm-plot"];

fn build() -> Result<()> {
    let packages = BINARY_CRATES.iter().flat_map(|p| ["-p", p]);
    run_cmd(
        cargo()
            .args(["build", "--release", "--bins"])
            .args(packages),
    )
}

/// What the tests run besides the binaries: the fixture writer of the analysis tests.
fn build_test_tools() -> Result<()> {
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "csm-store",
        "--example",
        "write_fixture",
    ]))
}

fn run(args: &[String]) -> Result<()> {
    setup::require_root("csm run loads eBPF programs")?;
    let binary = setup::workspace_root().join("target/release/csm");
    run_cmd(Command::new(binary).arg("run").args(args))
}

fn test(args: &[String]) -> Result<()> {
    setup::require_root("the end-to-end tests load eBPF programs, create users and namespaces")?;
    setup::python_test_packages()?;
    build_test_tools()?;
    // One test binary at a time: the root tests measure CPU time and traffic against
    // ground truth and must not compete with each other for the 2 cores.
    let mut totals = TestTotals::default();
    let cargo_tests = run_counting(
        cargo()
            .args(["test", "--release", "--workspace", "--no-fail-fast"])
            .args(args)
            .args(["--", "--test-threads=1"]),
        &mut totals,
    );
    let python_tests = run_python_tests(&mut totals);
    let clippy = run_cmd(cargo().args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]));
    let clippy_ebpf = run_cmd(&mut ebpf_clippy());
    // One closing line over every runner, so the whole suite reads at a glance.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    cargo_tests.and(python_tests).and(clippy).and(clippy_ebpf)
}

/// Clippy over the eBPF crate, which is outside the workspace (nightly, bpfel target).
fn ebpf_clippy() -> Command {
    let root = setup::workspace_root();
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "--release",
        "--target-dir",
    ])
    .arg(root.join("target/ebpf-clippy"))
    .args(["--", "-D", "warnings"])
    .current_dir(root.join("csm-ebpf"));
    // The outer (stable) cargo's settings must not leak into the nightly one.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[derive(Default, Debug, PartialEq)]
struct TestTotals {
    passed: u64,
    failed: u64,
}

impl TestTotals {
    /// Adds the counts of a cargo (`test result: ok. 7 passed; 0 failed; …`) or pytest
    /// (`=== 3 passed, 1 failed in 2.0s ===`) summary line.
    fn add_line(&mut self, line: &str) {
        let is_summary = line.starts_with("test result:")
            || (line.contains(" passed")
                && line.contains(" in ")
                && line.trim_end_matches([' ', '=']).ends_with('s'));
        if !is_summary {
            return;
        }
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ';' || c == ',')
            .collect();
        for pair in words.windows(2) {
            let Ok(n) = pair[0].parse::<u64>() else {
                continue;
            };
            match pair[1] {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs a test command, echoing its output and adding up its summary lines.
fn run_counting(cmd: &mut Command, totals: &mut TestTotals) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let shown = format!("{cmd:?}").replace('"', "");
    say(&format!("running {shown}"));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {shown}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        totals.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn run_python_tests(totals: &mut TestTotals) -> Result<()> {
    let analysis = setup::workspace_root().join("analysis");
    if !analysis.join("tests").is_dir() {
        return Ok(());
    }
    run_counting(
        Command::new("python3")
            .args(["-m", "pytest", "-q", "analysis/tests"])
            .current_dir(setup::workspace_root()),
        totals,
    )
}

fn bench(filter: Option<&str>) -> Result<()> {
    setup::require_root("the benchmarks load eBPF programs")?;
    let mut benches: Vec<(String, &str)> = Vec::new();
    for package in BENCH_CRATES {
        let examples = setup::workspace_root().join(package).join("examples");
        for entry in std::fs::read_dir(&examples)
            .with_context(|| format!("read {}", examples.display()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(bench) = name.strip_suffix(".rs").filter(|n| n.starts_with("bench_")) {
                benches.push((bench.to_string(), package));
            }
        }
    }
    benches.retain(|(name, _)| filter.is_none_or(|f| name.contains(f)));
    benches.sort();
    if benches.is_empty() {
        bail!("no benchmark matches {filter:?}");
    }
    for (name, package) in benches {
        say(&format!("benchmark {name}"));
        // The eBPF benchmarks attach programs by hand: csm-user's `bench` feature.
        let features: &[&str] = if package == "csm-user" {
            &["--features", "bench"]
        } else {
            &[]
        };
        run_cmd(
            cargo()
                .args(["run", "--release", "-p", package])
                .args(features)
                .args(["--example", &name]),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_cargo_and_pytest_summaries() {
        let mut t = TestTotals::default();
        t.add_line("test result: ok. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add_line("test result: FAILED. 1 passed; 2 failed; 0 ignored");
        t.add_line("======= 3 passed, 1 failed in 2.01s =======");
        t.add_line("2 passed in 0.50s");
        t.add_line("3 passed if you ask me");
        assert_eq!(
            t,
            TestTotals {
                passed: 13,
                failed: 3
            }
        );
    }
}

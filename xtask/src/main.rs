//! `cargo xtask`: set up a fresh machine, build, run, test and benchmark csm.
//!
//! Every step says what it does. Setup installs only what is missing: nightly's rust-src,
//! bpf-linker built against the nightly toolchain's own LLVM, and the bpffs/tracefs mounts;
//! `test` also the Debian packages and Python readers its tests use, `deb` cargo-deb.

mod setup;
mod vm;

use std::path::PathBuf;
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
    /// Build, then make the Debian package target/debian/csm_<version>_amd64.deb.
    Deb,
    /// Build, then run `csm run` as root; arguments after `--` go to `csm run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the Debian packages the tests drive, build, make the Debian package, then
    /// run every test (unit, root end-to-end, package, Python readers), clippy and the
    /// kernel matrix (5.10, 6.1, 6.12 in VMs).
    Test {
        /// Only the kernel matrix: csm's end-to-end checks in a VM per kernel.
        #[arg(long)]
        kernels: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Boot one kernel of the matrix (5.10, 6.1, 6.12) under qemu with csm and run the
    /// end-to-end checks in it; arguments after `--` go to csm-vm-agent (`checks`,
    /// `fallback`, which boots with `lockdown=confidentiality`, `bench N`, `run CMD...`).
    Vm {
        kernel: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run the benchmarks and print their figures (`security`: the issue 21
    /// attacks of tests/tests/floods.rs at their full counts).
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
        Task::Deb => setup::all()
            .and_then(|_| build())
            .and_then(|_| deb().map(drop)),
        Task::Run { args } => setup::all().and_then(|_| build()).and_then(|_| run(&args)),
        Task::Test {
            kernels: true,
            args,
        } => {
            if args.is_empty() {
                setup::all().and_then(|_| vm::matrix())
            } else {
                Err(anyhow::anyhow!(
                    "--kernels takes no test arguments: {}",
                    args.join(" ")
                ))
            }
        }
        Task::Test {
            kernels: false,
            args,
        } => setup::debian_packages(setup::TEST_TOOLS)
            .and_then(|_| setup::all())
            .and_then(|_| build())
            .and_then(|_| deb().map(drop))
            .and_then(|_| test(&args)),
        Task::Vm { kernel, args } => setup::all().and_then(|_| vm::vm(&kernel, &args)),
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

/// The workspace members whose binaries the package ships: `csm` (csm-user) and
/// `csm-plot`. The package names the binaries by their paths in target/release.
const BIN_PACKAGES: &[&str] = &["csm-user", "csm-plot"];

/// The crates whose `examples/bench_*.rs` are the benchmarks.
const BENCH_CRATES: [&str; 3] = ["csm-user", "csm-store", "csm-plot"];

fn build() -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--bins"]);
    for package in BIN_PACKAGES {
        cmd.args(["--package", package]);
    }
    run_cmd(&mut cmd)
}

/// Makes target/debian/csm_<version>_amd64.deb from the release binaries: generates the
/// man pages and completions (from the clap definitions, by the binary itself) and the
/// commented /etc/csm.toml, then has cargo-deb strip the binaries, put their debug info
/// into csm-dbgsym_<version>_amd64.ddeb beside it, and pack (metadata in
/// csm-user/Cargo.toml). Returns the .deb's path.
fn deb() -> Result<PathBuf> {
    setup::debian_packages(setup::DEB_TOOLS)?;
    setup::cargo_deb()?;
    let root = setup::workspace_root();
    let out = root.join("target/debian");
    // cargo-deb takes paths under target/release/ as build output (csm-user/Cargo.toml).
    let assets = root.join("target/release/deb-assets");
    match std::fs::remove_dir_all(&assets) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("remove {}", assets.display())),
    }
    std::fs::create_dir_all(&assets).with_context(|| format!("create {}", assets.display()))?;
    say("generating man pages and shell completions from csm's command-line definitions");
    run_cmd(
        Command::new(root.join("target/release/csm"))
            .arg("__generate-assets")
            .arg(&assets)
            .stdout(std::process::Stdio::null()),
    )?;
    let pages: Vec<PathBuf> = std::fs::read_dir(assets.join("man"))
        .context("read the generated man pages")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // -n: no file name or time stamp in the gzip header, so the package is reproducible.
    run_cmd(Command::new("gzip").args(["-9", "-n", "-f"]).args(&pages))?;
    let example = root.join("csm.example.toml");
    let text =
        std::fs::read_to_string(&example).with_context(|| format!("read {}", example.display()))?;
    let config = assets.join("csm.toml");
    std::fs::write(&config, commented_config(&text))
        .with_context(|| format!("write {}", config.display()))?;

    let shown = "cargo deb";
    say(&format!(
        "running {shown} (strip, debug info into a -dbgsym .ddeb)"
    ));
    let output = cargo()
        .args([
            "deb",
            "--package",
            "csm-user",
            "--no-build",
            // Strips the binaries and moves their debug info into the .ddeb.
            "--dbgsym",
            "--compress-debug-symbols=zlib",
            "--output",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cargo deb")?;
    if !output.status.success() {
        bail!("{shown} failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let package = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb named no .deb: {stdout}"))?;
    let size = std::fs::metadata(&package)
        .with_context(|| format!("stat {}", package.display()))?
        .len();
    say(&format!(
        "built {} ({:.1} MB)",
        package.display(),
        size as f64 / 1e6
    ));
    Ok(package)
}

/// /etc/csm.toml: the example config with every setting commented out, so that a fresh
/// install collects with the built-in defaults (and pings nothing) until the admin
/// uncomments what they want.
fn commented_config(example: &str) -> String {
    let mut out = String::from(
        "# /etc/csm.toml: the configuration of csm.service (`csm run --config /etc/csm.toml`).\n\
         # Every setting is commented out: the built-in defaults apply. Uncomment and edit,\n\
         # then `systemctl restart csm`. A data_dir elsewhere than /var/lib/csm must also be\n\
         # made writable for the service: `systemctl edit csm`, then add\n\
         # [Service]\n\
         # ReadWritePaths=/that/dir\n\
         #\n",
    );
    for line in example.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
    out
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
    // The whole suite also runs the kernel matrix; a filtered run (ARGS) does not.
    let kernels = if args.is_empty() {
        vm::matrix()
    } else {
        Ok(())
    };
    // One closing line over every runner, so the whole suite reads at a glance.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    cargo_tests
        .and(python_tests)
        .and(clippy)
        .and(clippy_ebpf)
        .and(kernels)
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
    if filter == Some("security") {
        return bench_security();
    }
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
    // The daemon's cost inside the 6.1 VM beside the host's (`cargo xtask bench vm`).
    let in_vm = filter.is_none_or(|f| "vm".contains(f));
    if benches.is_empty() && !in_vm {
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
    if in_vm {
        say("benchmark vm: the daemon beside sleeping processes, in the 6.1 VM and here");
        vm::bench_in_vm()?;
    }
    Ok(())
}

/// The floods of issue 21 at the full counts (8,300 namespaces, 4,096 veth
/// pairs, 5,000 processes beside a namespace churn): the root tests of
/// `tests/tests/floods.rs`, which print the daemon's measured peaks.
fn bench_security() -> Result<()> {
    say("benchmark security (tests/tests/floods.rs at full counts)");
    run_cmd(
        cargo()
            .args(["test", "--release", "-p", "csm-tests", "--test", "floods"])
            .args(["--", "--test-threads=1", "--nocapture"])
            .env("CSM_FLOODS_FULL", "1"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_all_comments_and_keeps_every_key() {
        let example = "# a note\ndata_dir = \"/var/lib/csm\"\n\n[ping]\ntargets = [\"x\"]\n";
        let config = commented_config(example);
        assert!(config.lines().all(|l| l.is_empty() || l.starts_with('#')));
        for key in [
            "# data_dir = \"/var/lib/csm\"",
            "# [ping]",
            "# targets = [\"x\"]",
            "# a note",
        ] {
            assert!(config.lines().any(|l| l == key), "{key} missing");
        }
        // As TOML it is empty: the defaults apply.
        assert!(config
            .lines()
            .filter(|l| !l.starts_with('#'))
            .all(str::is_empty));
    }

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

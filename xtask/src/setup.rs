//! Installs what a fresh machine lacks, saying what it does. Nothing is downloaded but
//! rustup components of the installed nightly, crates from crates.io, PyPI packages and
//! Debian packages (apt-get).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{run_cmd, say};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Python packages the reader tests use.
const PYTHON_PACKAGES: &[&str] = &["duckdb", "pandas", "pyarrow", "pytest"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

pub fn all() -> Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    if is_root() {
        mount_if_missing("bpf", "/sys/fs/bpf")?;
        mount_if_missing("tracefs", "/sys/kernel/tracing")?;
    } else {
        say("not root: skipping the bpffs/tracefs mounts (csm run needs root anyway)");
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!("run this as root: {why} (for example `sudo -E cargo xtask ...`)");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The eBPF crate builds core from source with nightly: it needs rust-src.
fn nightly_rust_src() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "no nightly toolchain is installed; the eBPF programs need one \
             (`rustup toolchain install nightly --component rust-src`)"
        );
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    say("installing rust-src for the nightly toolchain (the eBPF build compiles core)");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker links the eBPF object. crates.io's build looks for a system LLVM; we build
/// it against the nightly toolchain's own libLLVM instead, which always matches.
fn bpf_linker() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let sysroot = PathBuf::from(sysroot.trim());
    let libllvm = find_libllvm(&sysroot.join("lib"))?;
    if bpf_linker_works() {
        return Ok(());
    }
    let verbose = output(Command::new("rustc").args(["+nightly", "--version", "--verbose"]))?;
    let major = llvm_major(&verbose).context("cannot tell nightly's LLVM version")?;
    let prefix = workspace_root().join("target/xtask/llvm-prefix");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("create {}", lib.display()))?;
    let file_name = libllvm.file_name().expect("a file").to_owned();
    // Two names: `libLLVM.so` for the build to link against, and the original name the
    // binary records, so that it also runs outside `rustup run nightly`.
    for name in [PathBuf::from("libLLVM.so"), PathBuf::from(&file_name)] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    say(&format!(
        "installing bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {major} \
         ({}); this takes about a minute",
        libllvm.display()
    ));
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker was installed but does not run; see the output above");
    }
    Ok(())
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
        .unwrap_or(false)
}

fn find_libllvm(lib_dir: &Path) -> Result<PathBuf> {
    fs::read_dir(lib_dir)
        .with_context(|| format!("read {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("libLLVM.so."))
                .unwrap_or(false)
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))
}

/// `LLVM version: 22.1.3` → 22
pub fn llvm_major(verbose_version: &str) -> Option<u32> {
    verbose_version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn mount_if_missing(fstype: &str, target: &str) -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("read /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, kind) = (fields.next(), fields.next(), fields.next());
        dir == Some(target) && kind == Some(fstype)
    });
    if mounted {
        return Ok(());
    }
    // bpffs private to root, as csm itself and systemd mount it: the kernel's default
    // (1777) lets any user plant folders and links where csm pins its state.
    let options = if fstype == "bpf" {
        "mode=0700"
    } else {
        "defaults"
    };
    say(&format!("mounting {fstype} at {target} ({options})"));
    run_cmd(Command::new("mount").args(["-t", fstype, "-o", options, fstype, target]))
}

/// The reader tests check the Parquet output with DuckDB, pandas and pyarrow; the
/// `analysis/` package is installed with its test extras (pytest, nbclient for the
/// notebook).
pub fn python_test_packages() -> Result<()> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import duckdb, pandas, pyarrow, pytest, nbclient, ipykernel, polars, pyspark, csm_analysis",
        ])
        .output();
    if matches!(probe, Ok(ref o) if o.status.success()) {
        return Ok(());
    }
    let analysis = workspace_root().join("analysis");
    say(&format!(
        "installing Python packages for the reader tests: {} and ./analysis[test]",
        PYTHON_PACKAGES.join(" ")
    ));
    run_cmd(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PYTHON_PACKAGES)
            .arg(format!("{}[test]", analysis.display())),
    )
}

/// A command the tests (or the packaging) run, and the Debian package that has it.
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
    pub why: &'static str,
}

/// What the root tests drive. `cargo xtask test` installs the missing ones.
pub const TEST_TOOLS: &[Tool] = &[
    Tool {
        command: "ip",
        package: "iproute2",
        why: "network namespaces and veth pairs",
    },
    Tool {
        command: "ping",
        package: "iputils-ping",
        why: "ground truth for the ping tests",
    },
    Tool {
        command: "setpriv",
        package: "util-linux",
        why: "running as test users and under the service's capabilities",
    },
    Tool {
        command: "useradd",
        package: "passwd",
        why: "test users",
    },
    Tool {
        command: "pkill",
        package: "procps",
        why: "cleaning up test users' processes",
    },
    Tool {
        command: "chromium",
        package: "chromium",
        why: "rendering the charts to PNG",
    },
    Tool {
        command: "systemd-analyze",
        package: "systemd",
        why: "verifying the service unit",
    },
    Tool {
        command: "systemd-nspawn",
        package: "systemd-container",
        why: "running the installed service under a real systemd in a container",
    },
    Tool {
        command: "java",
        package: "default-jre-headless",
        why: "running the Spark recipe of analysis/README.md",
    },
    Tool {
        command: "man",
        package: "man-db",
        why: "reading the installed man pages",
    },
    Tool {
        command: "prometheus",
        package: "prometheus",
        why: "scraping the metrics endpoint in the metrics tests (promtool checks the exposition)",
    },
];

/// What `cargo xtask deb` runs besides cargo.
pub const DEB_TOOLS: &[Tool] = &[
    Tool {
        command: "objcopy",
        package: "binutils",
        why: "splitting the debug info off the binaries",
    },
    Tool {
        command: "gzip",
        package: "gzip",
        why: "compressing the man pages",
    },
];

/// Whether `command` is an executable file on PATH (as `command -v` tells).
pub fn on_path(command: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        fs::metadata(dir.join(command))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Installs the Debian packages of the tools that are missing (`apt-get update`, then
/// `apt-get install -y`), saying which and why.
pub fn debian_packages(tools: &[Tool]) -> Result<()> {
    let missing: Vec<&Tool> = tools.iter().filter(|t| !on_path(t.command)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    for tool in &missing {
        say(&format!(
            "{} is missing: installing Debian package {} ({})",
            tool.command, tool.package, tool.why
        ));
    }
    if !is_root() {
        bail!(
            "installing Debian packages needs root: `apt-get install {}`",
            missing
                .iter()
                .map(|t| t.package)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    let mut packages: Vec<&str> = missing.iter().map(|t| t.package).collect();
    packages.dedup();
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for tool in &missing {
        if !on_path(tool.command) {
            bail!(
                "{} was installed but {} is still not on PATH",
                tool.package,
                tool.command
            );
        }
    }
    Ok(())
}

/// cargo-deb builds the .deb from `[package.metadata.deb]` in csm-user/Cargo.toml.
pub fn cargo_deb() -> Result<()> {
    let works = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Ok(());
    }
    say("cargo-deb is missing: installing it from crates.io (a few minutes, once)");
    run_cmd(Command::new("cargo").args(["install", "cargo-deb", "--locked"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llvm_major() {
        let text = "rustc 1.97.0-nightly\nbinary: rustc\nLLVM version: 22.1.3\n";
        assert_eq!(llvm_major(text), Some(22));
        assert_eq!(llvm_major("nothing"), None);
    }

    #[test]
    fn finds_commands_on_path() {
        assert!(on_path("sh"));
        assert!(!on_path("csm-no-such-command"));
    }
}

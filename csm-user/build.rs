//! Builds the eBPF object (`csm-ebpf`, nightly, bpfel-unknown-none) and hands its path to
//! the crate, which embeds it. `cargo xtask` installs the toolchain pieces this needs; a
//! missing piece fails here with the command that fixes it.
//!
//! It also records the git commit for `csm --version` (`CSM_GIT_COMMIT`).

use std::{env, path::PathBuf, process::Command};

fn main() {
    git_commit();
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let ebpf_dir = manifest_dir
        .join("../csm-ebpf")
        .canonicalize()
        .expect("csm-ebpf folder");
    let common_dir = manifest_dir.join("../csm-common");
    for watched in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        common_dir.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
    println!("cargo:rerun-if-env-changed=CSM_EBPF_OBJECT");

    // A prebuilt object (for example from `cargo xtask build-ebpf`) may be handed in.
    if let Ok(prebuilt) = env::var("CSM_EBPF_OBJECT") {
        println!("cargo:rustc-env=CSM_EBPF_OBJECT={prebuilt}");
        return;
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.join("ebpf-target");
    let mut cargo = Command::new("rustup");
    cargo
        .args([
            "run",
            "nightly",
            "cargo",
            "build",
            "--release",
            "--target-dir",
        ])
        .arg(&target_dir)
        .current_dir(&ebpf_dir);
    // Nothing of the outer (stable, host) build may leak into the nested eBPF build.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTDOC",
        "CARGO",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().unwrap_or_else(|err| {
        panic!("cannot run `rustup run nightly cargo` to build csm-ebpf: {err}; run `cargo xtask setup`")
    });
    if !status.success() {
        panic!(
            "building csm-ebpf failed ({status}); `cargo xtask setup` installs nightly's rust-src and bpf-linker"
        );
    }
    let object = target_dir.join("bpfel-unknown-none/release/csm-ebpf");
    println!("cargo:rustc-env=CSM_EBPF_OBJECT={}", object.display());
}

/// Sets `CSM_GIT_COMMIT` to the short commit of the checkout, or "unknown" outside one
/// (a source tarball, git missing). A packager may set `CSM_GIT_COMMIT` themselves.
///
/// Only git's own HEAD, the branch ref it points at and packed-refs are watched, so a
/// build reruns this script when a commit or checkout changes the answer, and not at
/// every edit of the work tree.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=CSM_GIT_COMMIT");
    if let Ok(given) = env::var("CSM_GIT_COMMIT") {
        println!("cargo:rustc-env=CSM_GIT_COMMIT={given}");
        return;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(env::var("CARGO_MANIFEST_DIR").ok()?)
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    };
    // A watched path that does not exist would rerun the script at every build.
    let watch = |path: String| {
        if PathBuf::from(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if commit.is_some() {
        // Worktrees keep HEAD in their own git dir and refs in the common one.
        let git_dir = git(&["rev-parse", "--absolute-git-dir"]);
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
        if let Some(dir) = &git_dir {
            watch(format!("{dir}/HEAD"));
        }
        if let Some(common) = common.or(git_dir) {
            watch(format!("{common}/packed-refs"));
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(format!("{common}/{branch}"));
            }
        }
    }
    let commit = commit.unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CSM_GIT_COMMIT={commit}");
}

//! Builds the eBPF object (`csm-ebpf`, nightly, bpfel-unknown-none) and hands its path to
//! the crate, which embeds it. `cargo xtask` installs the toolchain pieces this needs; a
//! missing piece fails here with the command that fixes it.

use std::{env, path::PathBuf, process::Command};

fn main() {
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

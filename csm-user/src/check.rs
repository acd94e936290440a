//! `csm check`: what this host supports, which backend `csm run` would use, and why.

use std::fmt::Write as _;
use std::fs;

use crate::sources::ebpf::{load_and_attach, pins};
use crate::sources::host::HostPaths;
use crate::sources::SourceError;

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub topic: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The facts `csm check` reports and the backend `auto` would pick.
#[derive(Debug, Clone)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub ebpf_usable: bool,
    pub backend: &'static str,
    pub backend_reason: String,
}

pub fn inspect(paths: &HostPaths) -> Report {
    let mut findings = vec![kernel_release(paths), btf(paths)];
    findings.push(mounted(
        paths,
        "tracefs",
        &["kernel/tracing/events", "kernel/debug/tracing/events"],
    ));
    findings.push(mounted(paths, "bpffs", &["fs/bpf"]));
    findings.extend(pinned_state(&paths.sys("fs/bpf")));
    let (ebpf_usable, ebpf_detail) = try_ebpf(paths);
    findings.push(Finding {
        topic: "ebpf",
        ok: ebpf_usable,
        detail: ebpf_detail.clone(),
    });
    let (backend, backend_reason) = if ebpf_usable {
        ("ebpf", ebpf_detail)
    } else {
        ("proc", format!("eBPF cannot run here: {ebpf_detail}"))
    };
    Report {
        findings,
        ebpf_usable,
        backend,
        backend_reason,
    }
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let mark = if f.ok { "ok " } else { "no " };
            let _ = writeln!(out, "{mark} {:<8} {}", f.topic, f.detail);
        }
        let _ = writeln!(
            out,
            "backend (auto): {} ({})",
            self.backend, self.backend_reason
        );
        out
    }
}

fn kernel_release(paths: &HostPaths) -> Finding {
    let path = paths.proc("sys/kernel/osrelease");
    match fs::read_to_string(&path) {
        Ok(text) => Finding {
            topic: "kernel",
            ok: true,
            detail: text.trim().to_string(),
        },
        Err(err) => Finding {
            topic: "kernel",
            ok: false,
            detail: format!("{}: {err}", path.display()),
        },
    }
}

fn btf(paths: &HostPaths) -> Finding {
    let path = paths.vmlinux_btf();
    let ok = path.exists();
    let detail = if ok {
        format!("{} present (tp_btf programs can load)", path.display())
    } else {
        format!(
            "{} missing (kernel built without BTF: classic tracepoint only)",
            path.display()
        )
    };
    Finding {
        topic: "btf",
        ok,
        detail,
    }
}

fn mounted(paths: &HostPaths, name: &'static str, candidates: &[&str]) -> Finding {
    let found = candidates.iter().map(|c| paths.sys(c)).find(|p| p.exists());
    match found {
        Some(p) => Finding {
            topic: name,
            ok: true,
            detail: format!("mounted ({})", p.parent().unwrap_or(&p).display()),
        },
        None => Finding {
            topic: name,
            ok: false,
            detail: "not mounted (`cargo xtask run` mounts it)".into(),
        },
    }
}

/// csm's pinned eBPF state: live (a daemon runs), stale (a crashed daemon left it; the
/// next `csm run` with the same data dir adopts it) or from another build (replaced at
/// the next start with that data dir).
fn pinned_state(bpffs: &std::path::Path) -> Vec<Finding> {
    pins::list_pins(bpffs)
        .into_iter()
        .map(|p| {
            let owner = match (&p.data_dir, p.pid) {
                (Some(dir), Some(pid)) => format!("data dir {dir}, pid {pid}"),
                _ => "owner unknown".to_string(),
            };
            let detail = if !p.stale {
                format!("{} in use ({owner})", p.dir.display())
            } else if p.compatible {
                format!(
                    "STALE {} ({owner} gone; programs still attached and counting): the next `csm run` with that data dir adopts it; `rm -r {}` detaches them",
                    p.dir.display(),
                    p.dir.display()
                )
            } else {
                format!(
                    "STALE {} from another csm build ({owner}): replaced at the next start with that data dir; `rm -r {}` detaches its programs",
                    p.dir.display(),
                    p.dir.display()
                )
            };
            Finding {
                topic: "pins",
                ok: !p.stale,
                detail,
            }
        })
        .collect()
}

/// Actually loads and attaches the programs, then detaches them: the only honest answer.
fn try_ebpf(paths: &HostPaths) -> (bool, String) {
    match load_and_attach(paths) {
        Ok(loaded) => {
            let mut detail = format!("programs load and attach ({})", loaded.sched.describe());
            if let Some(reason) = &loaded.fallback_reason {
                detail.push_str(&format!("; tp_btf unavailable: {reason}"));
            }
            (true, detail)
        }
        Err(SourceError::Unsupported { why, .. }) => (false, why),
        Err(err) => (false, format!("{err:#}")),
    }
}

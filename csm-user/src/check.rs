//! `csm check`: what this host supports, which backend `csm run` would use, and why.

use std::fmt::Write as _;
use std::fs;

use crate::sources::ebpf::{load_and_attach, pins};
use crate::sources::host::HostPaths;
use crate::sources::procfs::platform::{self, kernel_version, MIN_EBPF_KERNEL};
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
    findings.push(mounted(paths, "tracefs", "tracefs", "kernel/tracing"));
    findings.push(mounted(paths, "bpffs", "bpf", "fs/bpf"));
    findings.extend(pinned_state(&paths.sys("fs/bpf")));
    findings.extend(platform_findings(paths));
    // Same rule as `csm run --backend auto`: no load attempt when the answer is known.
    let (ebpf_usable, ebpf_detail) = match platform::ebpf_ruled_out(paths) {
        Some(why) => (false, format!("not tried: {why}")),
        None => try_ebpf(paths),
    };
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

/// What the `[metrics]` endpoint of `config` exposes, and where (one line); an
/// unreadable or invalid config is the error.
pub fn metrics_exposure(config: Option<&std::path::Path>) -> Result<String, String> {
    let Some(path) = config else {
        return Ok(
            "metrics: not checked (give --config to see what its [metrics] endpoint exposes)"
                .into(),
        );
    };
    let file = crate::cli::config::ConfigFile::load(path).map_err(|err| err.to_string())?;
    let listen = file.metrics.listen("").unwrap_or_default();
    Ok(match listen {
        None => format!("metrics: off ({} sets no [metrics] listen)", path.display()),
        Some(listen) => format!("metrics: exposes {}", listen.describe()),
    })
}

fn kernel_release(paths: &HostPaths) -> Finding {
    let path = paths.proc("sys/kernel/osrelease");
    match crate::sources::procfs::read_text(&path) {
        Ok(text) => {
            let release = text.trim().to_string();
            let ok = kernel_version(&release).is_some_and(|v| v >= MIN_EBPF_KERNEL);
            let detail = if ok {
                release
            } else {
                format!(
                    "{release} (eBPF needs {}.{} or later)",
                    MIN_EBPF_KERNEL.0, MIN_EBPF_KERNEL.1
                )
            };
            Finding {
                topic: "kernel",
                ok,
                detail,
            }
        }
        Err(err) => Finding {
            topic: "kernel",
            ok: false,
            detail: format!("{}: {err}", path.display()),
        },
    }
}

/// OpenVZ, Xen and what the /proc backend can read here. `ok` means "present".
fn platform_findings(paths: &HostPaths) -> Vec<Finding> {
    let found = platform::detect(paths);
    let present = |topic, evidence: Option<String>| Finding {
        topic,
        ok: evidence.is_some(),
        detail: evidence.unwrap_or_else(|| "not detected".into()),
    };
    let file = |topic, rel: &str, what: &str| {
        let path = paths.proc(rel);
        Finding {
            topic,
            ok: path.exists(),
            detail: format!(
                "{} {} ({what})",
                path.display(),
                if path.exists() { "present" } else { "missing" }
            ),
        }
    };
    vec![
        present("openvz", found.openvz),
        present("xen", found.xen),
        file("netdev", "net/dev", "per-interface traffic without eBPF"),
        file("ubc", "user_beancounters", "OpenVZ beancounters"),
        file(
            "pss",
            &format!("{}/smaps_rollup", some_pid(paths)),
            "per-user PSS; Linux 4.14+",
        ),
    ]
}

/// A process directory to look at: `self` on this host, the first pid in a fixture tree.
fn some_pid(paths: &HostPaths) -> String {
    let first = fs::read_dir(&paths.proc_root).ok().and_then(|entries| {
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .find(|name| name.parse::<u32>().is_ok())
    });
    match first {
        Some(pid) if !paths.is_live() => pid,
        _ => "self".into(),
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

/// Whether a file system of `fstype` is mounted at `<sys-root>/<rel>`, from
/// `<proc-root>/mounts`.
fn mounted(paths: &HostPaths, topic: &'static str, fstype: &str, rel: &str) -> Finding {
    let target = paths.sys(rel);
    let mounts = crate::sources::procfs::read_text(&paths.proc("mounts")).unwrap_or_default();
    let found = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_, dir, kind) = (fields.next(), fields.next(), fields.next());
        dir == Some(&*target.to_string_lossy()) && kind == Some(fstype)
    });
    let detail = if found {
        format!("mounted at {}", target.display())
    } else {
        // Said to whoever installed the package: nothing to do by hand.
        format!(
            "not mounted at {} (`csm run` mounts it itself when it needs it, as root)",
            target.display()
        )
    };
    Finding {
        topic,
        ok: found,
        detail,
    }
}

/// csm's pinned eBPF state: live (a daemon runs), stale (a crashed daemon left it; the
/// next `csm run` with the same data dir adopts it) or from another build (replaced at
/// the next start with that data dir).
fn pinned_state(bpffs: &std::path::Path) -> Vec<Finding> {
    let unsafe_folder = pins::pin_root_problem(bpffs).map(|why| Finding {
        topic: "pins",
        ok: false,
        detail: format!("{why} (until then `csm run` does not pin its state)"),
    });
    let listed = pins::list_pins(bpffs)
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
        });
    unsafe_folder.into_iter().chain(listed).collect()
}

/// Actually loads and attaches the programs, then detaches them: the only honest answer.
fn try_ebpf(paths: &HostPaths) -> (bool, String) {
    match load_and_attach(paths) {
        Ok(loaded) => {
            let mut detail = format!("programs load and attach ({})", loaded.sched.describe());
            if let Some(reason) = &loaded.fallback_reason {
                detail.push_str(&format!("; tp_btf unavailable: {reason}"));
            }
            // Each feature with its source, or why it falls back: as the `backend` event.
            if loaded.net.ifaces {
                detail.push_str("; net per interface by tp_btf netdev");
            }
            if loaded.net.uids {
                detail.push_str("; net per uid by cgroup_skb");
            }
            for problem in &loaded.net.problems {
                detail.push_str(&format!("; {problem}"));
            }
            match &loaded.mem {
                Ok(_) => detail.push_str("; memory by task iterator"),
                Err(why) => detail.push_str(&format!("; memory from /proc ({why})")),
            }
            (true, detail)
        }
        Err(SourceError::Unsupported { why, .. }) => (false, why),
        Err(err) => (false, format!("{err:#}")),
    }
}

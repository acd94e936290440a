//! What kind of host this is: kernel version, OpenVZ, Xen; and whether eBPF can be
//! ruled out without trying (a load attempt on an ancient kernel only adds noise).

use crate::sources::host::HostPaths;

/// Facts about the host, each with the evidence that shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    /// `/proc/sys/kernel/osrelease`, e.g. `2.6.18-xen`.
    pub kernel_release: Option<String>,
    /// Why this looks like OpenVZ (a container or its hardware node), if it does.
    pub openvz: Option<String>,
    /// Why this looks like a Xen guest (or dom0), if it does.
    pub xen: Option<String>,
}

pub fn detect(paths: &HostPaths) -> Platform {
    Platform {
        kernel_release: paths.kernel_release(),
        openvz: openvz(paths),
        xen: xen(paths),
    }
}

fn openvz(paths: &HostPaths) -> Option<String> {
    let found: Vec<String> = ["vz", "user_beancounters"]
        .iter()
        .map(|rel| paths.proc(rel))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if found.is_empty() {
        return None;
    }
    // /proc/vz/version exists only on the hardware node.
    let role = if paths.proc("vz/version").exists() {
        "hardware node"
    } else {
        "container"
    };
    Some(format!("{role} ({} present)", found.join(", ")))
}

fn xen(paths: &HostPaths) -> Option<String> {
    let hypervisor = super::read_text(&paths.sys("hypervisor/type"))
        .ok()
        .map(|s| s.trim().to_string());
    let proc_xen = paths.proc("xen");
    match (hypervisor.as_deref(), proc_xen.exists()) {
        (Some("xen"), _) => Some(format!(
            "{} says xen{}",
            paths.sys("hypervisor/type").display(),
            dom0(paths)
        )),
        (_, true) => Some(format!("{} present{}", proc_xen.display(), dom0(paths))),
        _ => None,
    }
}

/// `control_d` in `/proc/xen/capabilities` marks the control domain.
fn dom0(paths: &HostPaths) -> &'static str {
    match super::read_text(&paths.proc("xen/capabilities")) {
        Ok(caps) if caps.contains("control_d") => ", dom0",
        Ok(_) => ", guest (domU)",
        Err(_) => "",
    }
}

/// `major.minor` of a release string like `6.18.44-fc` or `2.6.18-xenU`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// BPF programs on tracepoints need Linux 4.7; older kernels cannot run csm's eBPF.
pub const MIN_EBPF_KERNEL: (u32, u32) = (4, 7);

impl Platform {
    /// A reason eBPF cannot work here that needs no load attempt, if there is one.
    pub fn ebpf_ruled_out(&self) -> Option<String> {
        let release = self.kernel_release.as_deref()?;
        let version = kernel_version(release)?;
        if version < MIN_EBPF_KERNEL {
            return Some(format!(
                "kernel {release} is older than {}.{} (no BPF on tracepoints)",
                MIN_EBPF_KERNEL.0, MIN_EBPF_KERNEL.1
            ));
        }
        if let Some(vz) = &self.openvz {
            if vz.starts_with("container") {
                return Some(format!("OpenVZ container ({vz}): bpf() is not allowed"));
            }
        }
        None
    }
}

/// Why eBPF cannot work here, when that is known without a load attempt: a fixture tree
/// (`--proc-root`/`--sys-root`) describes another host than the kernel we would load
/// into, and ancient kernels and OpenVZ containers cannot run it.
pub fn ebpf_ruled_out(paths: &HostPaths) -> Option<String> {
    if !paths.is_live() {
        return Some("--proc-root/--sys-root point at a tree other than this host's".into());
    }
    detect(paths).ebpf_ruled_out()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn versions() {
        assert_eq!(kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(kernel_version("2.6.18-xenU"), Some((2, 6)));
        assert_eq!(kernel_version("4.7"), Some((4, 7)));
        assert_eq!(kernel_version("garbage"), None);
    }

    #[test]
    fn old_kernel_and_openvz_container_rule_out_ebpf() {
        let old = Platform {
            kernel_release: Some("2.6.18-xenU".into()),
            ..Default::default()
        };
        assert!(old.ebpf_ruled_out().unwrap().contains("older than 4.7"));
        let vz = Platform {
            kernel_release: Some("4.18.0-vz7".into()),
            openvz: Some("container (/proc/vz present)".into()),
            ..Default::default()
        };
        assert!(vz.ebpf_ruled_out().unwrap().contains("OpenVZ"));
        let modern = Platform {
            kernel_release: Some("6.1.0".into()),
            ..Default::default()
        };
        assert_eq!(modern.ebpf_ruled_out(), None);
    }

    #[test]
    fn detects_fixture_trees() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths {
            proc_root: dir.path().join("proc"),
            sys_root: dir.path().join("sys"),
        };
        fs::create_dir_all(paths.proc("xen")).unwrap();
        fs::write(paths.proc("xen/capabilities"), "").unwrap();
        fs::create_dir_all(paths.proc("vz")).unwrap();
        let p = detect(&paths);
        assert!(p.xen.unwrap().ends_with("guest (domU)"));
        assert!(p.openvz.unwrap().starts_with("container"));
    }
}

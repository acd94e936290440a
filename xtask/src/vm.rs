//! The kernel matrix: csm booted under qemu on Debian's own kernel packages (5.10 from
//! bullseye, 6.1 from bookworm, 6.12 from bookworm-backports), each with a small
//! initramfs (busybox, the release `csm`, the test helpers and `csm-vm-agent`, which runs
//! the end-to-end checks inside and prints a result block on the serial console).
//!
//! Kernels come through a private apt configuration per suite under
//! `target/kernels/<suite>/apt` (the host's mirror, never its sources) and are cached
//! there; one that cannot be fetched is an error naming it. KVM is used where a short
//! probe boot shows it works (the paravirtual /dev/kvm of some hosts hangs stock
//! kernels), TCG otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup::{self, workspace_root, Tool};
use crate::{run_cmd, say};

/// A kernel of the matrix: the Debian suite whose `linux-image-amd64` it is.
pub struct Kernel {
    pub name: &'static str,
    pub suite: &'static str,
    pub distribution: &'static str,
}

pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        suite: "bullseye",
        distribution: "Debian 11",
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        distribution: "Debian 12",
    },
    Kernel {
        name: "6.12",
        suite: "bookworm-backports",
        distribution: "Debian 12 backports",
    },
];

/// What the VMs need on the host.
pub const VM_TOOLS: &[Tool] = &[
    Tool {
        command: "qemu-system-x86_64",
        package: "qemu-system-x86",
        why: "booting the kernel matrix",
    },
    Tool {
        command: "busybox",
        package: "busybox-static",
        why: "the VMs' shell and tools",
    },
    Tool {
        command: "cpio",
        package: "cpio",
        why: "packing the VMs' initramfs",
    },
    Tool {
        command: "strip",
        package: "binutils",
        why: "shrinking the binaries in the VMs' initramfs",
    },
    Tool {
        command: "depmod",
        package: "kmod",
        why: "listing the dependencies of the VMs' kernel modules",
    },
    Tool {
        command: "ip",
        package: "iproute2",
        why: "network namespaces and veth pairs inside the VMs",
    },
];

/// Boot, run and power-off bound of one VM: about 2 minutes emulated on 2 idle cores;
/// on a loaded host (load average 18 on 2 cores) the 2,000 short processes alone took
/// over 6 minutes.
const VM_TIMEOUT: Duration = Duration::from_secs(900);
/// Memory of a VM: the bench's 10,000 sleeping processes fit.
const VM_MEMORY_MIB: u32 = 3072;

/// The modules the checks load (veth) beside those they depend on.
const MODULES: &[&str] = &["veth"];

/// Test users of the agent (uid = gid), named in the initramfs's /etc/passwd.
const TEST_UIDS: std::ops::RangeInclusive<u32> = 2001..=2006;

pub fn kernel(name: &str) -> Result<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name).with_context(|| {
        format!(
            "no kernel {name:?} in the matrix; known: {}",
            KERNELS
                .iter()
                .map(|k| k.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Builds what goes into the VMs: the release binaries and the test helpers (csm-vm-agent,
/// csm-mem-hold).
pub fn build_guest_binaries() -> Result<()> {
    // One build with the package binaries: built apart, cargo's feature unification
    // differs and csm-user is compiled twice.
    run_cmd(crate::cargo().args([
        "build",
        "--release",
        "--bins",
        "-p",
        "csm-user",
        "-p",
        "csm-plot",
        "-p",
        "csm-tests",
    ]))
}

/// The kernel files unpacked from its Debian package.
pub struct KernelFiles {
    pub package: String,
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

fn kernel_dir(kernel: &Kernel) -> PathBuf {
    workspace_root().join("target/kernels").join(kernel.suite)
}

/// The kernel of `kernel`'s suite, fetched once and cached under target/kernels.
pub fn fetch(kernel: &Kernel) -> Result<KernelFiles> {
    let dir = kernel_dir(kernel);
    let marker = dir.join("package");
    let package = match fs::read_to_string(&marker) {
        Ok(p) if dir.join("root/boot").is_dir() => p.trim().to_string(),
        _ => download(kernel, &dir).with_context(|| {
            format!("cannot fetch the {} kernel ({})", kernel.name, kernel.suite)
        })?,
    };
    let root = dir.join("root");
    let boot = fs::read_dir(root.join("boot")).context("read the kernel's /boot")?;
    let vmlinuz = boot
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package} has no vmlinuz"))?;
    let release = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    Ok(KernelFiles {
        package,
        vmlinuz,
        modules: root.join("lib/modules").join(release),
    })
}

/// The host's Debian mirror (the URI its own sources use for the main archive).
fn debian_mirror() -> Result<String> {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        for entry in dir.flatten() {
            texts.push(fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    for text in &texts {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            // One-line format: deb [options] URI suite components
            if words.first() == Some(&"deb") {
                if let Some(uri) = words.iter().skip(1).find(|w| w.contains("://")) {
                    if uri.trim_end_matches('/').ends_with("/debian") {
                        return Ok(uri.trim_end_matches('/').to_string());
                    }
                }
            }
            // deb822: URIs: …
            if let Some(uris) = line.strip_prefix("URIs:") {
                if let Some(uri) = uris
                    .split_whitespace()
                    .find(|u| u.trim_end_matches('/').ends_with("/debian"))
                {
                    return Ok(uri.trim_end_matches('/').to_string());
                }
            }
        }
    }
    bail!("no Debian archive (a URI ending in /debian) in /etc/apt/sources.list*")
}

/// apt-get/apt-cache options of a private configuration in `apt_dir`.
fn apt_options(apt_dir: &Path) -> Vec<String> {
    let p = |sub: &str| apt_dir.join(sub).display().to_string();
    vec![
        format!("-oDir::Etc::sourcelist={}", p("sources.list")),
        "-oDir::Etc::sourceparts=-".into(),
        format!("-oDir::State={}", p("state")),
        format!("-oDir::State::status={}", p("state/status")),
        format!("-oDir::Cache={}", p("cache")),
        "-oAPT::Architecture=amd64".into(),
        "-oAPT::Sandbox::User=root".into(),
        "-qq".into(),
    ]
}

fn download(kernel: &Kernel, dir: &Path) -> Result<String> {
    let mirror = debian_mirror()?;
    let apt = dir.join("apt");
    for sub in ["state/lists/partial", "cache/archives/partial"] {
        fs::create_dir_all(apt.join(sub)).with_context(|| format!("create {}", apt.display()))?;
    }
    fs::write(apt.join("state/status"), "")?;
    fs::write(
        apt.join("sources.list"),
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {} main\n",
            kernel.suite
        ),
    )?;
    say(&format!(
        "fetching the {} kernel ({}: linux-image-amd64 of {} from {mirror}) into {}",
        kernel.name,
        kernel.distribution,
        kernel.suite,
        dir.display()
    ));
    let options = apt_options(&apt);
    run_cmd(Command::new("apt-get").args(&options).arg("update"))?;
    let depends = Command::new("apt-cache")
        .args(&options)
        .args(["depends", "linux-image-amd64"])
        .output()
        .context("run apt-cache depends")?;
    let text = String::from_utf8_lossy(&depends.stdout);
    let package = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
        .with_context(|| {
            format!(
                "linux-image-amd64 of {} names no kernel: {text}",
                kernel.suite
            )
        })?
        .to_string();
    let debs = dir.join("debs");
    let _ = fs::remove_dir_all(&debs);
    fs::create_dir_all(&debs)?;
    run_cmd(
        Command::new("apt-get")
            .args(&options)
            .args(["download", &package])
            .current_dir(&debs),
    )?;
    let deb = fs::read_dir(&debs)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    let root = dir.join("root");
    let _ = fs::remove_dir_all(&root);
    run_cmd(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    // The package has no modules.dep (the postinst makes it): make it, to load veth's
    // dependencies too.
    let modules = fs::read_dir(root.join("lib/modules"))
        .context("the package has no /lib/modules")?
        .flatten()
        .next()
        .with_context(|| format!("{package} has no modules"))?;
    run_cmd(
        Command::new("depmod")
            .arg("-b")
            .arg(&root)
            .arg(modules.file_name()),
    )?;
    fs::write(dir.join("package"), &package)?;
    Ok(package)
}

/// Where a command is on PATH.
fn which(command: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(command))
        .find(|p| p.is_file())
        .with_context(|| format!("{command} is not on PATH"))
}

/// The shared libraries `binary` loads (ldd), the loader included.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .with_context(|| format!("ldd {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split("=> ").nth(1).unwrap_or(l);
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copies `src` (its content, symlinks followed) to `root` + `dest`, stripped of debug
/// info when `strip`.
fn install(root: &Path, src: &Path, dest: &str, strip: bool) -> Result<()> {
    let target = root.join(dest.trim_start_matches('/'));
    fs::create_dir_all(target.parent().unwrap())?;
    if strip {
        run_quiet(
            Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&target)
                .arg(src),
        )
    } else {
        fs::copy(src, &target)
            .map(drop)
            .with_context(|| format!("copy {} to {}", src.display(), target.display()))
    }
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The `.ko` files of `MODULES` and of what they depend on (modules.dep), relative to
/// the modules dir.
fn module_files(modules: &Path) -> Result<Vec<String>> {
    let dep_path = modules.join("modules.dep");
    let deps =
        fs::read_to_string(&dep_path).with_context(|| format!("read {}", dep_path.display()))?;
    let mut wanted = Vec::new();
    for name in MODULES {
        let line = deps
            .lines()
            .find(|l| {
                let file = l.split(':').next().unwrap_or("");
                let base = file.rsplit('/').next().unwrap_or("");
                base.split('.').next() == Some(name)
            })
            .with_context(|| format!("no module {name} in {}", dep_path.display()))?;
        let (module, rest) = line.split_once(':').unwrap();
        // modules.dep lists dependencies in load order reversed: load the last first.
        let mut chain: Vec<String> = rest.split_whitespace().rev().map(String::from).collect();
        chain.push(module.to_string());
        for m in chain {
            if !wanted.contains(&m) {
                wanted.push(m);
            }
        }
    }
    Ok(wanted)
}

/// Builds the initramfs of one run: returns the path of the cpio archive.
fn initramfs(kernel: &Kernel, files: &KernelFiles, agent_args: &[String]) -> Result<PathBuf> {
    let dir = kernel_dir(kernel);
    let root = dir.join("initramfs");
    let _ = fs::remove_dir_all(&root);
    for sub in [
        "bin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "etc",
        "lib/csm-modules",
    ] {
        fs::create_dir_all(root.join(sub))?;
    }
    let release = workspace_root().join("target/release");
    let busybox = which("busybox")?;
    install(&root, &busybox, "/bin/busybox", false)?;
    let mut dynamic = Vec::new();
    for name in ["csm", "csm-vm-agent", "csm-mem-hold"] {
        let src = release.join(name);
        install(&root, &src, &format!("/bin/{name}"), true)?;
        dynamic.push(src);
    }
    // iproute2's ip: network namespaces (`ip netns`), which busybox's ip lacks.
    let ip = which("ip")?;
    install(&root, &ip, "/bin/ip", false)?;
    dynamic.push(ip);
    let mut libraries = std::collections::BTreeSet::new();
    for binary in &dynamic {
        libraries.extend(shared_libraries(binary)?);
    }
    for lib in &libraries {
        install(&root, lib, &lib.display().to_string(), false)?;
    }
    let mut load = String::new();
    for module in module_files(&files.modules)? {
        let src = files.modules.join(&module);
        let base = module.rsplit('/').next().unwrap().to_string();
        let plain = base
            .trim_end_matches(".xz")
            .trim_end_matches(".zst")
            .to_string();
        let dest = root.join("lib/csm-modules").join(&plain);
        if base.ends_with(".xz") {
            decompress("xz", &src, &dest)?;
        } else if base.ends_with(".zst") {
            decompress("zstd", &src, &dest)?;
        } else {
            fs::copy(&src, &dest)?;
        }
        load.push_str(&format!("insmod /lib/csm-modules/{plain}\n"));
    }
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut group = String::from("root:x:0:\n");
    for uid in TEST_UIDS {
        passwd.push_str(&format!("csmvm{uid}:x:{uid}:{uid}::/:/bin/sh\n"));
        group.push_str(&format!("csmvm{uid}:x:{uid}:\n"));
    }
    fs::write(root.join("etc/passwd"), passwd)?;
    fs::write(root.join("etc/group"), group)?;
    fs::write(root.join("etc/hostname"), "csmvm\n")?;
    let quoted: Vec<String> = agent_args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin CSM_TEST_BIN_DIR=/bin HOME=/\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         mount -t devtmpfs dev /dev\n\
         mount -t tmpfs tmp /tmp\n\
         mount -t tmpfs run /run\n\
         mount -t bpf -o mode=0700 bpf /sys/fs/bpf\n\
         mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
         {load}\
         ip link set lo up\n\
         hostname csmvm\n\
         echo \"CSMVM info kernel $(uname -r) cpus $(nproc) cmdline $(cat /proc/cmdline)\"\n\
         /bin/csm-vm-agent {}\n\
         sync\n\
         poweroff -f\n",
        quoted.join(" ")
    );
    let init_path = root.join("init");
    fs::write(&init_path, init)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&init_path, fs::Permissions::from_mode(0o755))?;
    let archive = dir.join("initramfs.cpio");
    run_quiet(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find . | LC_ALL=C sort | cpio -o -H newc --quiet > '{}'",
                archive.display()
            ))
            .current_dir(&root),
    )?;
    Ok(archive)
}

fn decompress(tool: &str, src: &Path, dest: &Path) -> Result<()> {
    let out = Command::new(tool)
        .args(["-d", "-c"])
        .arg(src)
        .output()
        .with_context(|| format!("run {tool} -d {}", src.display()))?;
    if !out.status.success() {
        bail!("{tool} -d {} failed", src.display());
    }
    fs::write(dest, out.stdout)?;
    Ok(())
}

/// What one VM printed between `CSMVM-BEGIN` and `CSMVM-END`.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ended: Option<bool>,
    pub results: Vec<(String, bool, String)>,
    pub metrics: BTreeMap<String, Vec<String>>,
    pub seconds: f64,
}

impl Outcome {
    pub fn add_line(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        let Some(at) = line.find("CSMVM") else {
            return;
        };
        let line = &line[at..];
        if let Some(status) = line.strip_prefix("CSMVM-END ") {
            self.ended = Some(status.trim() == "ok");
        } else if let Some(rest) = line.strip_prefix("CSMVM result ") {
            let mut words = rest.splitn(3, ' ');
            let name = words.next().unwrap_or("").to_string();
            let ok = words.next() == Some("ok");
            let detail = words.next().unwrap_or("").to_string();
            self.results.push((name, ok, detail));
        } else if let Some(rest) = line.strip_prefix("CSMVM metric ") {
            let (name, value) = rest.split_once(' ').unwrap_or((rest, ""));
            self.metrics
                .entry(name.to_string())
                .or_default()
                .push(value.to_string());
        }
    }

    pub fn passed(&self) -> bool {
        self.ended == Some(true) && self.results.iter().all(|(_, ok, _)| *ok)
    }

    pub fn metric(&self, name: &str) -> String {
        self.metrics
            .get(name)
            .map(|v| v.join(" / "))
            .unwrap_or_else(|| "-".into())
    }
}

/// How qemu runs guests here: KVM where a probe boot shows it works, TCG otherwise
/// (remembered per host kernel in target/kernels/accel).
fn accelerator(kernel: &Kernel, files: &KernelFiles) -> Result<Vec<String>> {
    let tcg = vec![
        "-accel".into(),
        "tcg,thread=multi".into(),
        "-cpu".into(),
        "max".into(),
    ];
    let kvm = vec!["-enable-kvm".into(), "-cpu".into(), "host".into()];
    let cache = workspace_root().join("target/kernels/accel");
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let host = host.trim();
    if let Ok(text) = fs::read_to_string(&cache) {
        if let Some((release, accel)) = text.trim().split_once(' ') {
            if release == host {
                return Ok(if accel == "kvm" { kvm } else { tcg });
            }
        }
    }
    let usable = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let works = usable && {
        say("probing KVM: a short boot under -enable-kvm (20 s at most)");
        let initrd = initramfs(kernel, files, &["run".into(), "/bin/true".into()])?;
        let outcome = boot(
            kernel,
            files,
            &initrd,
            &kvm,
            "",
            Duration::from_secs(20),
            false,
        )?;
        outcome.ended.is_some()
    };
    let accel = if works { "kvm" } else { "tcg" };
    say(&format!(
        "qemu accelerator: {accel} ({})",
        if works {
            "KVM boots the guest"
        } else if usable {
            "a guest under KVM did not boot in 20 s: emulating"
        } else {
            "/dev/kvm cannot be opened: emulating"
        }
    ));
    fs::write(&cache, format!("{host} {accel}\n"))?;
    Ok(if works { kvm } else { tcg })
}

/// Boots `kernel` with `initrd` and waits for it to power off (or `timeout`); the
/// console's result block. `echo` prints the console as it comes.
fn boot(
    kernel: &Kernel,
    files: &KernelFiles,
    initrd: &Path,
    accel: &[String],
    cmdline: &str,
    timeout: Duration,
    echo: bool,
) -> Result<Outcome> {
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(accel)
        .args(["-smp", "2", "-m", &VM_MEMORY_MIB.to_string()])
        .arg("-kernel")
        .arg(&files.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {cmdline}").trim())
        .args([
            "-nographic",
            "-nodefaults",
            "-no-reboot",
            "-serial",
            "stdio",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let (send, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let err_send = send.clone();
    let stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let _ = send.send(String::from_utf8_lossy(&line).into_owned());
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
            let _ = err_send.send(format!("qemu: {}", String::from_utf8_lossy(&line)));
        }
    });
    let mut outcome = Outcome::default();
    let deadline = started + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                if echo {
                    println!("[{}] {}", kernel.name, line.trim_end_matches('\r'));
                }
                outcome.add_line(&line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            if echo {
                println!("[{}] timed out after {} s", kernel.name, timeout.as_secs());
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Fetches, builds the initramfs and boots `kernel` with the agent's `args`.
pub fn run_vm(kernel: &Kernel, args: &[String], cmdline: &str) -> Result<Outcome> {
    let files = fetch(kernel)?;
    let accel = accelerator(kernel, &files)?;
    let initrd = initramfs(kernel, &files, args)?;
    say(&format!(
        "booting {} ({}, {}) with {}: csm-vm-agent {}",
        kernel.name,
        kernel.distribution,
        files.package,
        accel.join(" "),
        args.join(" ")
    ));
    boot(kernel, &files, &initrd, &accel, cmdline, VM_TIMEOUT, true)
}

/// `cargo xtask vm KERNEL -- ARGS`: one VM; ARGS go to csm-vm-agent (`checks` when none).
pub fn vm(name: &str, args: &[String]) -> Result<()> {
    setup::require_root("the VMs' initramfs holds root-owned files; the checks load eBPF")?;
    setup::debian_packages(VM_TOOLS)?;
    let kernel = kernel(name)?;
    build_guest_binaries()?;
    let args: Vec<String> = if args.is_empty() {
        vec!["checks".into()]
    } else {
        args.to_vec()
    };
    // The agent's `fallback` mode is made for a kernel that refuses BPF's kernel reads.
    let cmdline = if args.first().is_some_and(|a| a == "fallback") {
        "lockdown=confidentiality"
    } else {
        ""
    };
    let outcome = run_vm(kernel, &args, cmdline)?;
    summarize(&[(kernel.name.to_string(), &outcome)]);
    if !outcome.passed() {
        bail!("the {} VM failed (see its console above)", kernel.name);
    }
    Ok(())
}

/// `cargo xtask test --kernels`: the checks on every kernel, then `auto` on a kernel
/// booted with `lockdown=confidentiality`, one after the other (the CPU checks compare
/// against the guest's own accounting, but two emulated guests on 2 cores would starve
/// each other's timers).
pub fn matrix() -> Result<()> {
    setup::require_root("the VMs' initramfs holds root-owned files; the checks load eBPF")?;
    setup::debian_packages(VM_TOOLS)?;
    build_guest_binaries()?;
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for kernel in KERNELS {
        match run_vm(kernel, &["checks".into()], "") {
            Ok(outcome) => {
                if !outcome.passed() {
                    failures.push(kernel.name.to_string());
                }
                outcomes.push((kernel.name.to_string(), outcome));
            }
            Err(err) => failures.push(format!("{}: {err:#}", kernel.name)),
        }
    }
    let lockdown = kernel("6.1")?;
    let name = "6.1 lockdown".to_string();
    match run_vm(lockdown, &["fallback".into()], "lockdown=confidentiality") {
        Ok(outcome) => {
            if !outcome.passed() {
                failures.push(name.clone());
            }
            outcomes.push((name, outcome));
        }
        Err(err) => failures.push(format!("{name}: {err:#}")),
    }
    let shown: Vec<(String, &Outcome)> = outcomes.iter().map(|(n, o)| (n.clone(), o)).collect();
    summarize(&shown);
    if !failures.is_empty() {
        bail!("the kernel matrix failed: {}", failures.join("; "));
    }
    Ok(())
}

/// The matrix as a table: each kernel's sources, errors, load time and peak RSS.
fn summarize(outcomes: &[(String, &Outcome)]) {
    println!(
        "\n| kernel | result | cpu source | mem source | net source | burn | 2,000 processes | lo bytes | lo per uid | veth bytes | veth per uid | mem RSS | load | peak RSS | VM |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, o) in outcomes {
        let failed: Vec<&str> = o
            .results
            .iter()
            .filter(|(_, ok, _)| !ok)
            .map(|(n, _, _)| n.as_str())
            .collect();
        let result = match (o.ended, failed.is_empty()) {
            (None, _) => "no result block".to_string(),
            (Some(_), true) if o.passed() => "pass".to_string(),
            _ => format!("FAIL {}", failed.join(",")),
        };
        println!(
            "| {name} | {result} | {} | {} | {} | {} % | {} % | {} B | {} % | {} B | {} % | {} B | {} ms | {} KiB | {:.0} s |",
            o.metric("cpu_source"),
            o.metric("mem_source"),
            o.metric("net_source"),
            o.metric("cpu_burn_err_pct"),
            o.metric("cpu_forks_err_pct"),
            o.metric("lo_iface_err_bytes"),
            o.metric("lo_uid_err_pct"),
            o.metric("veth_iface_err_bytes"),
            o.metric("veth_uid_err_pct"),
            o.metric("mem_rss_err_bytes"),
            o.metric("load_time_ms"),
            o.metric("peak_rss_kib"),
            o.seconds
        );
    }
    for (name, o) in outcomes {
        for (check, ok, detail) in &o.results {
            println!(
                "{name}: {check} {} {detail}",
                if *ok { "ok" } else { "FAILED" }
            );
        }
    }
}

/// `cargo xtask bench`'s last part: the daemon's share of a core beside 1,000 and 10,000
/// sleeping processes (defaults, 60 s) inside the 6.1 VM and on this host, side by side
/// (emulation slows everything: the ratio is what compares).
pub fn bench_in_vm() -> Result<()> {
    setup::debian_packages(VM_TOOLS)?;
    build_guest_binaries()?;
    let agent = workspace_root().join("target/release/csm-vm-agent");
    let kernel = kernel("6.1")?;
    let host_kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut rows = Vec::new();
    for n in ["1000", "10000"] {
        let vm = run_vm(kernel, &["bench".into(), n.into()], "")?;
        let mut host = Outcome::default();
        say(&format!("running csm-vm-agent bench {n} on this host"));
        let out = Command::new(&agent)
            .args(["bench", n])
            .output()
            .context("run csm-vm-agent bench on the host")?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            host.add_line(line);
        }
        if !vm.passed() || !host.passed() {
            bail!("the bench beside {n} processes failed (VM: {vm:?}; host: {host:?})");
        }
        rows.push((
            n,
            vm.metric("bench_core_pct"),
            host.metric("bench_core_pct"),
        ));
    }
    println!(
        "\n| processes | 6.1 VM (TCG) | host {} | ratio |",
        host_kernel.trim()
    );
    println!("|---|---|---|---|");
    for (n, vm, host) in rows {
        let ratio = match (vm.parse::<f64>(), host.parse::<f64>()) {
            (Ok(v), Ok(h)) if h > 0.0 => format!("{:.2}", v / h),
            _ => "-".into(),
        };
        println!("| {n} | {vm} % | {host} % | {ratio} |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_block() {
        let mut o = Outcome::default();
        for line in [
            "[    3.1] noise",
            "CSMVM-BEGIN",
            "CSMVM result cpu-burn ok +0.030 % of 9.9 s",
            "\u{1b}[0mCSMVM metric load_time_ms 812\r",
            "CSMVM metric backend_event ebpf: all",
            "CSMVM result ping FAIL no rows",
            "CSMVM-END FAIL",
        ] {
            o.add_line(line);
        }
        assert_eq!(o.ended, Some(false));
        assert_eq!(o.results.len(), 2);
        assert_eq!(
            o.results[0],
            ("cpu-burn".into(), true, "+0.030 % of 9.9 s".into())
        );
        assert!(!o.results[1].1);
        assert_eq!(o.metric("load_time_ms"), "812");
        assert_eq!(o.metric("backend_event"), "ebpf: all");
        assert!(!o.passed());
        let mut done = Outcome::default();
        done.add_line("CSMVM result x ok fine");
        assert!(!done.passed(), "no end line: not passed");
        done.add_line("CSMVM-END ok");
        assert!(done.passed());
    }

    #[test]
    fn lists_a_modules_dependencies_first() {
        let dir = std::env::temp_dir().join(format!("csm-xtask-mods-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("modules.dep"),
            "kernel/net/a.ko.xz: kernel/net/b.ko.xz kernel/net/c.ko.xz\n\
             kernel/drivers/net/veth.ko: kernel/net/x.ko kernel/net/y.ko\n",
        )
        .unwrap();
        let files = module_files(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            files,
            [
                "kernel/net/y.ko",
                "kernel/net/x.ko",
                "kernel/drivers/net/veth.ko"
            ]
        );
    }
}

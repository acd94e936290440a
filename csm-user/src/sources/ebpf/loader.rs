//! Loading and attaching: the one path both the daemon and the root tests use.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use aya::maps::{Map, MapData, MapInfo};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::trace_point::TracePointLink;
use aya::programs::{BtfTracePoint, Iter, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};
use csm_common::{names, MemOffsets, NetOffsets, SwitchFormat, TaskOffsets};
use tracing::{debug, info, warn};

use super::attach::{self, load_failure, NetAttached};
use super::mem::MemIter;
use super::object::EBPF_OBJECT;
use super::pins::{self, PinDir};
use super::{btf, read_only};
use crate::sources::host::HostPaths;
use crate::sources::SourceError;

/// Which scheduler program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedVariant {
    /// tp_btf: charges `se.sum_exec_runtime` deltas (the kernel's own accounting).
    BtfTracePoint,
    /// Classic tracepoint: charges wall time between switches (kernels without BTF).
    ClassicTracePoint,
}

impl SchedVariant {
    pub fn describe(self) -> &'static str {
        match self {
            SchedVariant::BtfTracePoint => "tp_btf sched_switch",
            SchedVariant::ClassicTracePoint => "tracepoint sched/sched_switch",
        }
    }
}

/// Loaded and attached programs; dropping it detaches them and frees the maps, unless
/// they are pinned (then they stay until [`PinDir::remove`]).
pub struct Loaded {
    /// The object loaded by this process; `None` when pinned state was adopted.
    ebpf: Option<Ebpf>,
    /// Maps opened from pins (adopted state).
    adopted_maps: HashMap<String, Map>,
    /// Attachments; dropping an unpinned one detaches its program.
    links: Vec<HeldLink>,
    pub sched: SchedVariant,
    /// Why tp_btf was not used, when the classic tracepoint runs instead.
    pub fallback_reason: Option<String>,
    /// Where the state is pinned, if it is.
    pub pins: Option<PinDir>,
    /// True when this start adopted the pins a crashed run left.
    pub adopted: bool,
    /// Identity of the cumulative counters (pin folder and map id): a persisted last
    /// value is only comparable with counters of the same identity.
    pub instance: Option<String>,
    /// What happened to pinned state at start (for the `events` table).
    pub notes: Vec<String>,
    /// Which network programs are attached.
    pub net: NetAttached,
    /// The memory iterator (RSS and swap of every process), or why there is none.
    pub mem: Result<MemIter, String>,
}

enum HeldLink {
    Fd(&'static str, FdLink),
    Pinned(#[allow(dead_code)] PinnedLink),
    Other(#[allow(dead_code)] Box<dyn std::any::Any>),
}

impl Loaded {
    /// Takes a map out, whether this process loaded it or adopted it from a pin.
    pub fn take_map(&mut self, name: &str) -> Option<Map> {
        if let Some(map) = self.adopted_maps.remove(name) {
            return Some(map);
        }
        self.ebpf.as_mut()?.take_map(name)
    }

    /// A program this process loaded (not one adopted from a pin), for its statistics.
    pub fn program(&self, name: &str) -> Option<&aya::programs::Program> {
        self.ebpf.as_ref()?.program(name)
    }

    /// A program this process loaded, to load and attach one the daemon leaves alone
    /// (`bench_net` attaches the empty floor programs this way).
    #[cfg(feature = "bench")]
    pub fn program_mut(&mut self, name: &str) -> Option<&mut aya::programs::Program> {
        self.ebpf.as_mut()?.program_mut(name)
    }

    /// Detaches a program this process attached (`bench_net` compares with and without
    /// it). Returns whether it was attached.
    #[cfg(feature = "bench")]
    pub fn detach_program(&mut self, name: &str) -> bool {
        let before = self.links.len();
        self.links
            .retain(|link| !matches!(link, HeldLink::Fd(program, _) if *program == name));
        self.links.len() != before
    }

    fn fresh(
        ebpf: Ebpf,
        links: Vec<HeldLink>,
        sched: SchedVariant,
        reason: Option<String>,
    ) -> Self {
        Loaded {
            ebpf: Some(ebpf),
            adopted_maps: HashMap::new(),
            links,
            net: NetAttached::default(),
            sched,
            fallback_reason: reason,
            pins: None,
            adopted: false,
            instance: None,
            notes: Vec::new(),
            mem: Err("not loaded".into()),
        }
    }
}

impl Loaded {
    fn fresh_read_only(maps: HashMap<String, Map>, sched: SchedVariant) -> Self {
        Loaded {
            ebpf: None,
            adopted_maps: maps,
            links: Vec::new(),
            net: NetAttached::default(),
            sched,
            fallback_reason: None,
            pins: None,
            adopted: false,
            instance: None,
            notes: Vec::new(),
            mem: Err("not loaded".into()),
        }
    }
}

const WHAT: &str = "eBPF";

/// The tp_btf tracepoints csm attaches to.
const TP_BTF_TARGETS: [&str; 3] = ["sched_switch", "net_dev_xmit", "netif_receive_skb"];

/// Loads csm's eBPF object and attaches the scheduler program, tp_btf first and the
/// classic tracepoint second. `Unsupported` means this host cannot run eBPF at all.
pub fn load_and_attach(paths: &HostPaths) -> Result<Loaded, SourceError> {
    check_privileges()?;
    let btf_path = paths.vmlinux_btf();
    // Read once and dropped before the object loads: aya's loader parses the whole BTF
    // again (EbpfLoader::new), which should not add to this at the start-up peak.
    let kernel_btf = btf::KernelBtf::read(&btf_path);
    let offsets = match &kernel_btf {
        Ok(kernel) => btf::task_offsets(kernel),
        Err(err) => Err(anyhow::anyhow!("{err:#}")),
    }
    .map_err(|err| debug!("no task_struct offsets: {err:#}"))
    .ok();
    let format = switch_format(paths).unwrap_or_default();
    let net_offsets = match &kernel_btf {
        Ok(kernel) => btf::net_offsets(kernel).map_err(|err| format!("{err:#}")),
        Err(err) => Err(format!("{err:#}")),
    };
    let mem_offsets = match &kernel_btf {
        Ok(kernel) => possible_cpus().and_then(|cpus| btf::mem_offsets(kernel, cpus)),
        Err(err) => Err(anyhow::anyhow!("{err:#}")),
    }
    .map_err(|err| format!("{err:#}"));
    let attach_targets = kernel_btf.and_then(|kernel| {
        let mut targets = kernel.attach_targets(&TP_BTF_TARGETS)?;
        if let Err(err) = kernel.add_iterator(&mut targets, "task") {
            debug!("{err:#}");
        }
        Ok(targets)
    });
    let mut ebpf = load_object(
        offsets.unwrap_or_default(),
        format,
        bench_uid_source(net_offsets.clone().unwrap_or_default()),
        mem_offsets.clone().unwrap_or_default(),
    )?;
    // Only the attach points' typedefs, at their vmlinux ids: what BtfTracePoint::load
    // looks up (see btf.rs).
    let targets = attach_targets
        .and_then(|targets| targets.stand_in())
        .map_err(|err| format!("{err:#}"));

    let btf_attempt = match (offsets, &targets) {
        (Some(_), Ok(targets)) => attach_sched_btf(&mut ebpf, targets),
        (None, _) => Err(format!("no usable BTF at {}", btf_path.display())),
        (_, Err(err)) => Err(err.clone()),
    };
    let (link, sched, fallback_reason) = match btf_attempt {
        Ok(link) => (link, SchedVariant::BtfTracePoint, None),
        Err(why_not_btf) => {
            let link = attach_sched_classic(&mut ebpf, paths).map_err(|why| {
                SourceError::unsupported(
                    WHAT,
                    format!("tp_btf: {why_not_btf}; classic tracepoint: {why}"),
                )
            })?;
            info!("tp_btf sched_switch unavailable ({why_not_btf}); using the classic tracepoint");
            (link, SchedVariant::ClassicTracePoint, Some(why_not_btf))
        }
    };
    let netdev_btf = match (net_offsets, &targets) {
        (Ok(_), Ok(targets)) => Ok(targets),
        (Err(why), _) => Err(format!("no netdev offsets: {why}")),
        (_, Err(why)) => Err(why.clone()),
    };
    let (net, net_links) = attach::attach_net(&mut ebpf, paths, netdev_btf);
    let mut links = vec![link];
    links.extend(
        net_links
            .into_iter()
            .map(|(program, link)| HeldLink::Fd(program, link)),
    );
    let mem = match (mem_offsets, &targets) {
        (Ok(_), Ok(targets)) => attach_mem_iter(&mut ebpf, targets),
        (Err(why), _) => Err(format!("no memory offsets: {why}")),
        (_, Err(why)) => Err(why.clone()),
    };
    let mut loaded = Loaded::fresh(ebpf, links, sched, fallback_reason);
    loaded.net = net;
    loaded.mem = mem;
    Ok(loaded)
}

/// Like [`load_and_attach`], with the maps and links pinned in bpffs for this data dir:
/// adopts the pins a crashed run left (same data dir, same build), replaces pins of
/// another build, and pins fresh state otherwise. Where pinning is impossible it runs
/// unpinned and says so in `notes`.
pub fn load_pinned(paths: &HostPaths, data_dir: &Path) -> Result<Loaded, SourceError> {
    check_privileges()?;
    if !pins::ensure_bpffs() {
        let mut loaded = load_and_attach(paths)?;
        loaded.notes.push(format!(
            "bpffs not available at {}: state not pinned",
            pins::BPFFS
        ));
        return Ok(loaded);
    }
    if let Err(err) = pins::prepare_pin_root(Path::new(pins::BPFFS)) {
        warn!("eBPF state not pinned (it will not survive a crash): {err}");
        let mut loaded = load_and_attach(paths)?;
        loaded.notes.push(format!("state not pinned: {err}"));
        return Ok(loaded);
    }
    let dir = PinDir::for_data_dir(Path::new(pins::BPFFS), data_dir);
    let mut notes = Vec::new();
    for other in dir.incompatible_siblings() {
        match pins::remove_pin_dir(&other) {
            Ok(()) => notes.push(format!(
                "removed pins of another csm build: {}",
                other.display()
            )),
            Err(err) => warn!("cannot remove old pins {}: {err}", other.display()),
        }
    }
    if dir.exists() {
        match adopt(&dir) {
            Ok(mut loaded) => {
                dir.write_owner(data_dir);
                notes.push(format!("adopted pinned state {}", dir.path.display()));
                loaded.notes = notes;
                loaded.mem = load_mem_iter_alone(paths);
                return Ok(loaded);
            }
            Err(err) => {
                warn!(
                    "cannot adopt {}: {err:#}; loading afresh",
                    dir.path.display()
                );
                notes.push(format!("unusable pins replaced ({err:#})"));
                if let Err(err) = pins::remove_pin_dir(&dir.path) {
                    return Err(SourceError::Failed(anyhow::anyhow!(
                        "cannot remove unusable pins {}: {err}",
                        dir.path.display()
                    )));
                }
            }
        }
    }
    let mut loaded = load_and_attach(paths)?;
    match pin_all(&mut loaded, &dir) {
        Ok(()) => {
            dir.write_owner(data_dir);
            loaded.instance = instance_of(&dir).ok();
            loaded.pins = Some(dir);
        }
        Err(err) => {
            warn!("cannot pin eBPF state in {}: {err:#}", dir.path.display());
            notes.push(format!("state not pinned: {err:#}"));
            let _ = pins::remove_pin_dir(&dir.path);
        }
    }
    loaded.notes = notes;
    Ok(loaded)
}

/// Pins every map and every link that can be pinned.
fn pin_all(loaded: &mut Loaded, dir: &PinDir) -> anyhow::Result<()> {
    dir.create()?;
    let ebpf = loaded.ebpf.as_ref().context("nothing loaded to pin")?;
    for (name, map) in ebpf.maps() {
        if name.starts_with('.') {
            continue; // .rodata/.bss: constants of this load, not state
        }
        let path = dir.map(name);
        map.pin(&path)
            .with_context(|| format!("pin map {name} at {}", path.display()))?;
    }
    let links = std::mem::take(&mut loaded.links);
    for link in links {
        loaded.links.push(match link {
            HeldLink::Fd(program, fd) => {
                let path = dir.link(program);
                HeldLink::Pinned(
                    fd.pin(&path)
                        .with_context(|| format!("pin link of {program} at {}", path.display()))?,
                )
            }
            other => other,
        });
    }
    if !loaded
        .links
        .iter()
        .all(|l| matches!(l, HeldLink::Pinned(_)))
    {
        anyhow::bail!("a program's attachment cannot be pinned on this kernel");
    }
    Ok(())
}

/// Opens the pinned maps and links a crashed run left.
fn adopt(dir: &PinDir) -> anyhow::Result<Loaded> {
    let mut adopted_maps = HashMap::new();
    let mut links = Vec::new();
    let mut link_names = std::collections::HashSet::new();
    let mut sched = None;
    for entry in fs::read_dir(&dir.path).with_context(|| format!("read {}", dir.path.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(map) = name.strip_prefix("map_") {
            let data = MapData::from_pin(&path)
                .with_context(|| format!("open pinned map {}", path.display()))?;
            let map_obj = Map::from_map_data(data)
                .with_context(|| format!("pinned map {} has an unknown type", path.display()))?;
            adopted_maps.insert(map.to_string(), map_obj);
        } else if let Some(program) = name.strip_prefix("link_") {
            let link = PinnedLink::from_pin(&path)
                .with_context(|| format!("open pinned link {}", path.display()))?;
            if program == names::PROG_SCHED_SWITCH_BTF {
                sched = Some(SchedVariant::BtfTracePoint);
            } else if program == names::PROG_SCHED_SWITCH_TP {
                sched = Some(SchedVariant::ClassicTracePoint);
            }
            links.push(HeldLink::Pinned(link));
            link_names.insert(program.to_string());
        }
    }
    let sched = sched.context("no pinned scheduler program")?;
    let net = NetAttached {
        ifaces: [names::PROG_NET_XMIT_BTF, names::PROG_NET_RECV_BTF]
            .iter()
            .all(|p| link_names.contains(*p))
            && [
                names::NET_DEV,
                names::NET_DEV_USER,
                names::NET_DEV_OVERFLOW,
                names::NET_DEV_OVERFLOW_ANY,
                names::NET_NS_PID,
            ]
            .iter()
            .all(|map| adopted_maps.contains_key(*map)),
        uids: [names::PROG_NET_UID_INGRESS, names::PROG_NET_UID_EGRESS]
            .iter()
            .all(|p| link_names.contains(*p))
            && adopted_maps.contains_key(names::NET_UID)
            && adopted_maps.contains_key(names::NET_UID_OVERFLOW),
        problems: Vec::new(),
    };
    for required in [names::CPU_NS, names::CPU_RUNNING] {
        anyhow::ensure!(
            adopted_maps.contains_key(required),
            "map {required} is not pinned"
        );
    }
    Ok(Loaded {
        ebpf: None,
        adopted_maps,
        links,
        sched,
        fallback_reason: None,
        instance: Some(instance_of(dir)?),
        pins: Some(dir.clone()),
        adopted: true,
        notes: Vec::new(),
        net,
        // The iterator keeps no state: it is not pinned; see load_mem_iter_alone.
        mem: Err("eBPF state adopted from pins of a crashed run".into()),
    })
}

/// A running daemon's pinned maps, opened read only (`csm top`): nothing is attached,
/// adopted or written by this process; dropping it only closes the descriptors.
pub fn open_pinned_read_only(dir: &PinDir) -> anyhow::Result<Loaded> {
    let mut maps = HashMap::new();
    let mut sched = SchedVariant::BtfTracePoint;
    for entry in fs::read_dir(&dir.path).with_context(|| format!("read {}", dir.path.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(map) = name.strip_prefix("map_") {
            let path = dir.map(map);
            maps.insert(
                map.to_string(),
                read_only::open_pinned_map_read_only(&path)?,
            );
        } else if name.strip_prefix("link_") == Some(names::PROG_SCHED_SWITCH_TP) {
            sched = SchedVariant::ClassicTracePoint;
        }
    }
    let mut loaded = Loaded::fresh_read_only(maps, sched);
    loaded.pins = Some(dir.clone());
    Ok(loaded)
}

/// Pin folder and kernel id of the CPU map: the same only while the same map lives.
fn instance_of(dir: &PinDir) -> anyhow::Result<String> {
    let path = dir.map(names::CPU_NS);
    let info = MapInfo::from_pin(&path).with_context(|| format!("map info {}", path.display()))?;
    Ok(format!("{}#{}", dir.name(), info.id()))
}

fn check_privileges() -> Result<(), SourceError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SourceError::unsupported(
            WHAT,
            "loading eBPF needs root (CAP_BPF and CAP_PERFMON); run csm as root",
        ));
    }
    // Root under a restricted capability set (a systemd unit, setpriv, a container):
    // say which capability is missing rather than let a map or program load fail
    // with a bare EPERM.
    if let Some(missing) = missing_capabilities() {
        return Err(SourceError::unsupported(
            WHAT,
            format!(
                "loading eBPF needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); this process lacks {missing}"
            ),
        ));
    }
    Ok(())
}

/// The capabilities eBPF loading needs that the effective set lacks (from
/// /proc/self/status), or None when they are there or cannot be told. Before Linux 5.8
/// CAP_SYS_ADMIN covered both.
fn missing_capabilities() -> Option<String> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status =
        crate::sources::procfs::read_text(std::path::Path::new("/proc/self/status")).ok()?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    missing_from(
        effective,
        CAP_SYS_ADMIN,
        &[(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")],
    )
}

fn missing_from(effective: u64, admin: u32, needed: &[(u32, &str)]) -> Option<String> {
    if effective & (1 << admin) != 0 {
        return None;
    }
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    (!missing.is_empty()).then(|| missing.join(" and "))
}

/// A loader made by [`prepare_loader_early`], waiting for [`load_object`].
static EARLY_LOADER: Mutex<Option<EbpfLoader<'static>>> = Mutex::new(None);

/// Makes the eBPF loader now, while the process is still small.
///
/// aya 0.14's `EbpfLoader::new` always reads and parses the whole kernel BTF (here a
/// 5.5 MB file and 9.4 MB of parsed types), although [`load_object`] drops it at once
/// with `.btf(None)` (aya issue #1172; no later aya builds with this toolchain). That
/// transient cannot be avoided, only placed: called first thing in `csm run`, before the
/// runtime, the store and the sources have touched their memory, it no longer stacks on
/// top of them, which takes the daemon's peak RSS from 33 to about 20 MB.
pub fn prepare_loader_early() {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    *EARLY_LOADER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(loader);
}

fn take_loader() -> EbpfLoader<'static> {
    let early = EARLY_LOADER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    early.unwrap_or_default()
}

fn load_object(
    offsets: TaskOffsets,
    format: SwitchFormat,
    net: NetOffsets,
    mem: MemOffsets,
) -> Result<Ebpf, SourceError> {
    raise_memlock_limit();
    let mut loader: EbpfLoader<'_> = take_loader();
    loader
        // The object has no CO-RE relocations (aya-ebpf emits none: offsets come in
        // .rodata), so the loader needs no parsed kernel BTF (its default parses all of it).
        .btf(None)
        .override_global("TASK_OFFSETS", &offsets, true)
        .override_global("SWITCH_FORMAT", &format, true)
        .override_global("NET_OFFSETS", &net, true)
        .override_global("MEM_OFFSETS", &mem, true)
        .load(EBPF_OBJECT)
        .map_err(|err| {
            SourceError::unsupported(WHAT, format!("loading the eBPF object failed: {err}"))
        })
}

/// `bench_net` compares the per-uid programs' two ways of finding the uid side by side:
/// with `CSM_BENCH_UID_HELPER=1` they use `bpf_get_socket_uid` (their fallback without
/// BTF offsets) instead of reading `sk->sk_uid`. Not in the daemon.
#[cfg(feature = "bench")]
fn bench_uid_source(mut net: NetOffsets) -> NetOffsets {
    if std::env::var_os("CSM_BENCH_UID_HELPER").is_some() {
        net.skb_sk = 0;
    }
    net
}

#[cfg(not(feature = "bench"))]
fn bench_uid_source(net: NetOffsets) -> NetOffsets {
    net
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid pointer to a local rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        debug!("cannot raise RLIMIT_MEMLOCK; fine on kernels that account BPF memory to cgroups");
    }
}

fn attach_sched_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<HeldLink, String> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(names::PROG_SCHED_SWITCH_BTF)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program
        .load("sched_switch", btf)
        .map_err(|err| load_failure(names::PROG_SCHED_SWITCH_BTF, &err))?;
    let id = program
        .attach()
        .map_err(|err| format!("attach {}: {err}", names::PROG_SCHED_SWITCH_BTF))?;
    let link = program
        .take_link(id)
        .map_err(|err| format!("take link of {}: {err}", names::PROG_SCHED_SWITCH_BTF))?;
    Ok(HeldLink::Fd(
        names::PROG_SCHED_SWITCH_BTF,
        FdLink::from(link),
    ))
}

/// The memory iterator alone, for a daemon that adopted a crashed run's pinned programs:
/// it keeps no state, so a fresh load serves (the object's other maps and programs are
/// created and dropped again).
fn load_mem_iter_alone(paths: &HostPaths) -> Result<MemIter, String> {
    let (offsets, btf) = {
        let kernel = btf::KernelBtf::read(&paths.vmlinux_btf()).map_err(|e| format!("{e:#}"))?;
        let offsets = possible_cpus()
            .and_then(|cpus| btf::mem_offsets(&kernel, cpus))
            .map_err(|e| format!("no memory offsets: {e:#}"))?;
        let mut targets = kernel.attach_targets(&[]).map_err(|e| format!("{e:#}"))?;
        kernel
            .add_iterator(&mut targets, "task")
            .map_err(|e| format!("{e:#}"))?;
        (offsets, targets.stand_in().map_err(|e| format!("{e:#}"))?)
    };
    let mut ebpf = load_object(
        TaskOffsets::default(),
        SwitchFormat::default(),
        NetOffsets::default(),
        offsets,
    )
    .map_err(|e| format!("{e}"))?;
    attach_mem_iter(&mut ebpf, &btf)
}

/// Loads the task iterator that reports every process's memory counters and attaches it
/// (an iterator's link only makes walks possible: nothing runs until one is read).
fn attach_mem_iter(ebpf: &mut Ebpf, btf: &Btf) -> Result<MemIter, String> {
    let name = names::PROG_MEM_TASKS;
    // The records carry the kernel's pids (the initial namespace's), which name the same
    // processes as /proc only there.
    if !in_initial_pid_namespace() {
        return Err("csm runs in a pid namespace of its own".into());
    }
    let program: &mut Iter = ebpf
        .program_mut(name)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program
        .load("task", btf)
        .map_err(|err| load_failure(name, &err))?;
    let fd = program.fd().map_err(|err| format!("{name}: {err}"))?;
    MemIter::new(fd).map_err(|err| format!("{err:#}"))
}

/// `PROC_PID_INIT_INO` (include/linux/proc_ns.h): the initial pid namespace's inode.
fn in_initial_pid_namespace() -> bool {
    fs::read_link("/proc/self/ns/pid").is_ok_and(|link| link.as_os_str() == "pid:[4026531836]")
}

/// Number of possible CPU ids, from /sys/devices/system/cpu/possible.
fn possible_cpus() -> anyhow::Result<u32> {
    let cpus = aya::util::nr_cpus().map_err(|(path, err)| anyhow::anyhow!("{path}: {err}"))?;
    Ok(u32::try_from(cpus)?)
}

fn attach_sched_classic(ebpf: &mut Ebpf, paths: &HostPaths) -> Result<HeldLink, String> {
    if paths.is_live() {
        ensure_tracefs();
    }
    // Attaching goes through tracefs; a --sys-root without it stands for a host without.
    let event = "events/sched/sched_switch";
    let has_tracefs = ["kernel/tracing", "kernel/debug/tracing"]
        .iter()
        .any(|dir| paths.sys(dir).join(event).exists());
    if !has_tracefs {
        return Err(format!(
            "tracefs with {event} not found under {}",
            paths.sys("kernel").display()
        ));
    }
    let program: &mut TracePoint = ebpf
        .program_mut(names::PROG_SCHED_SWITCH_TP)
        .ok_or("program missing from the object")?
        .try_into()
        .map_err(|err| format!("{err}"))?;
    program
        .load()
        .map_err(|err| load_failure(names::PROG_SCHED_SWITCH_TP, &err))?;
    // Perf-event links (kernels before 5.15) cannot become pinnable fd links; the failed
    // conversion dropped (detached) it, so attach once more and keep that link as it is.
    Ok(match FdLink::try_from(attach_sched_switch(program)?) {
        Ok(fd) => HeldLink::Fd(names::PROG_SCHED_SWITCH_TP, fd),
        Err(err) => {
            debug!("classic tracepoint link is not an fd link ({err}); it will not be pinned");
            HeldLink::Other(Box::new(attach_sched_switch(program)?))
        }
    })
}

/// Attaches the classic scheduler program and takes its link.
fn attach_sched_switch(program: &mut TracePoint) -> Result<TracePointLink, String> {
    let id = program
        .attach("sched", "sched_switch")
        .map_err(|err| format!("attach {}: {err}", names::PROG_SCHED_SWITCH_TP))?;
    program
        .take_link(id)
        .map_err(|err| format!("take link of {}: {err}", names::PROG_SCHED_SWITCH_TP))
}

/// Classic tracepoints attach through tracefs; mount it where it is missing (as root).
fn ensure_tracefs() {
    let target = Path::new("/sys/kernel/tracing");
    if target.join("events").exists() || !target.exists() {
        return;
    }
    match crate::sources::mounts::mount_pseudo_fs(c"tracefs", c"/sys/kernel/tracing") {
        Ok(()) => info!("mounted tracefs at /sys/kernel/tracing"),
        Err(err) => debug!("cannot mount tracefs: {err}"),
    }
}

/// Field offsets of the classic `sched_switch` record, from tracefs (the defaults when
/// tracefs is not mounted: they have not changed since 2.6.32).
fn switch_format(paths: &HostPaths) -> anyhow::Result<SwitchFormat> {
    let candidates = [
        paths.sys("kernel/tracing/events/sched/sched_switch/format"),
        paths.sys("kernel/debug/tracing/events/sched/sched_switch/format"),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .context("sched_switch format not found in tracefs")?;
    let text = crate::sources::procfs::read_text(path)
        .with_context(|| format!("read {}", path.display()))?;
    parse_switch_format(&text).with_context(|| format!("parse {}", path.display()))
}

pub fn parse_switch_format(text: &str) -> anyhow::Result<SwitchFormat> {
    let offset = |field: &str| -> anyhow::Result<u32> {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(" {field};")))
            .with_context(|| format!("no field {field}"))?;
        let value = line
            .split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .with_context(|| format!("no offset for {field}"))?;
        Ok(value.trim().parse()?)
    };
    Ok(SwitchFormat {
        prev_pid: offset("prev_pid")?,
        next_pid: offset("next_pid")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_missing_capabilities() {
        let needed = [(39, "CAP_BPF"), (38, "CAP_PERFMON")];
        let all = (1u64 << 39) | (1 << 38);
        assert_eq!(super::missing_from(all, 21, &needed), None);
        assert_eq!(
            super::missing_from(1 << 21, 21, &needed),
            None,
            "CAP_SYS_ADMIN covers both"
        );
        assert_eq!(
            super::missing_from(1 << 38, 21, &needed).as_deref(),
            Some("CAP_BPF")
        );
        assert_eq!(
            super::missing_from(0, 21, &needed).as_deref(),
            Some("CAP_BPF and CAP_PERFMON")
        );
    }

    use super::*;

    #[test]
    fn parses_the_tracefs_format() {
        let text = "name: sched_switch\nID: 316\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:char next_comm[16];\toffset:40;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;\n";
        assert_eq!(
            parse_switch_format(text).unwrap(),
            SwitchFormat {
                prev_pid: 24,
                next_pid: 56
            }
        );
        assert!(parse_switch_format("garbage").is_err());
    }
}

//! What network accounting costs (run as root, release build):
//! `cargo run --release -p csm-user --example bench_net -- [RUNS] [SECONDS] [kernel]`
//! (`kernel`: only the kernel cost)
//!
//! - kernel cost per event of each network program, from the kernel's own BPF stats
//!   (BPF_ENABLE_STATS: run_time / run_count while the programs run), beside an empty
//!   program on the same hook: its run time is what the stats add to every program
//!   (the floor), the rest is the program's own body;
//! - throughput of a loopback TCP stream (128 KiB writes) and the rate of a 64-byte
//!   request/response ping-pong (packet-rate bound): without csm, with csm's network
//!   programs only, and with all of csm's programs (the scheduler's too), attached
//!   through the daemon's own `load_and_attach`. The three alternate within each round,
//!   so a busy neighbour on a shared machine hurts all alike. Reported: the median rate,
//!   the median of the per-round loss (paired with the same round's run without csm),
//!   and the median CPU time (user + system, this process) per unit of work, which a
//!   busy neighbour disturbs far less than the rate.
//!   BPF stats are off while throughput is measured (they add two clock reads per run).
//!
//! Only 127.0.0.1 is used, and for the kernel cost also a veth pair into a namespace of
//! the benchmark's own (10.213.77.0/30, deleted at the end).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aya::programs::cgroup_skb::CgroupSkbAttachType;
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb};
use aya::sys::{enable_stats, Stats};
use aya::Btf;
use csm::sources::ebpf::attach::parse_cgroup2_mount;
use csm::sources::ebpf::{load_and_attach, Loaded};
use csm::sources::host::HostPaths;
use csm_common::names;

/// Each network program, and the empty program on its hook.
const NET_PROGRAMS: [(&str, &str); 4] = [
    (names::PROG_NET_XMIT_BTF, names::PROG_FLOOR_XMIT),
    (names::PROG_NET_RECV_BTF, names::PROG_FLOOR_RECV),
    (names::PROG_NET_UID_EGRESS, names::PROG_FLOOR_EGRESS),
    (names::PROG_NET_UID_INGRESS, names::PROG_FLOOR_INGRESS),
];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Off,
    NetOnly,
    Full,
}

const MODES: [Mode; 3] = [Mode::Off, Mode::NetOnly, Mode::Full];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).map_or(Ok(7), |s| s.parse()).context("RUNS")?;
    let secs: f64 = args
        .get(2)
        .map_or(Ok(2.0), |s| s.parse())
        .context("SECONDS")?;
    let dur = Duration::from_secs_f64(secs);
    println!("machine: {}", csm_store::layout::machine());
    if args.get(3).is_some_and(|a| a == "kernel") {
        return kernel_cost(runs, dur);
    }

    let mut stream: [Vec<Run>; 3] = Default::default();
    let mut pingpong: [Vec<Run>; 3] = Default::default();
    for _ in 0..runs {
        for (i, mode) in MODES.into_iter().enumerate() {
            let _attached = attach(mode)?;
            stream[i].push(measured(|| stream_mib_s(dur, loopback_listener()?))?);
            pingpong[i].push(measured(|| pingpong_per_s(dur, loopback_listener()?))?);
        }
    }
    report("loopback TCP stream, MiB/s", "µs CPU/MiB", &stream);
    report(
        "loopback 64 B ping-pong, round trips/s",
        "µs CPU/trip",
        &pingpong,
    );
    kernel_cost(runs, dur)
}

/// Kernel run time per event of each network program, over one run of each workload,
/// repeated `runs` times, over loopback and then over a veth pair (where `net_dev_xmit`
/// counts instead of returning early as it does on lo). Beside each program runs an empty
/// one on the same hook, whose run time is the floor the stats themselves add (two clock
/// reads, the indirect call).
fn kernel_cost(runs: usize, dur: Duration) -> Result<()> {
    // The fd keeps the stats switched on until dropped.
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS (needs root)")?;
    let mut loaded = attach(Mode::NetOnly)?.context("attach")?;
    attach_floor(&mut loaded)?;
    let veth = Veth::new()?;
    let over_lo = per_event(&loaded, runs, dur, loopback_listener)?;
    let over_veth = per_event(&loaded, runs, dur, || veth.listen())?;
    println!(
        "kernel cost per event (BPF stats; median [min–max] of {runs} runs; \
         body = program minus the empty program on its hook):"
    );
    let lo = print_costs("over loopback", &loaded, over_lo);
    let nic = print_costs("over a veth pair", &loaded, over_veth);
    println!("per packet (BPF stats / bodies only):");
    let sum = |cost: &BTreeMap<&str, (f64, f64)>, programs: &[&str]| {
        programs.iter().fold((0.0, 0.0), |(a, b), p| {
            let (s, o) = cost[p];
            (a + s, b + o)
        })
    };
    for (path, (stats, body)) in [
        (
            "loopback (all four; net_dev_xmit returns early on lo)",
            sum(&lo, &NET_PROGRAMS.map(|(p, _)| p)),
        ),
        (
            "sent by a local socket on a NIC (veth)",
            sum(
                &nic,
                &[names::PROG_NET_XMIT_BTF, names::PROG_NET_UID_EGRESS],
            ),
        ),
        (
            "received for a local socket on a NIC (veth)",
            sum(
                &nic,
                &[names::PROG_NET_RECV_BTF, names::PROG_NET_UID_INGRESS],
            ),
        ),
    ] {
        println!("  {path:56} {stats:6.1} ns / {body:5.1} ns");
    }
    Ok(())
}

/// Per-event run time of every program (and floor) in each of `runs` rounds of the two
/// workloads against listeners made by `listen`.
fn per_event(
    loaded: &Loaded,
    runs: usize,
    dur: Duration,
    listen: impl Fn() -> Result<TcpListener>,
) -> Result<BTreeMap<&'static str, Vec<f64>>> {
    let mut out: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        let before = prog_stats(loaded)?;
        stream_mib_s(dur, listen()?)?;
        pingpong_per_s(dur, listen()?)?;
        let after = prog_stats(loaded)?;
        for (name, (t, n)) in after {
            let (t0, n0) = before[name];
            out.entry(name)
                .or_default()
                .push((t - t0) as f64 / (n - n0).max(1) as f64);
        }
    }
    Ok(out)
}

/// Prints each program's median, floor and body; returns (median, body) per program.
fn print_costs(
    what: &str,
    loaded: &Loaded,
    mut per_event: BTreeMap<&'static str, Vec<f64>>,
) -> BTreeMap<&'static str, (f64, f64)> {
    println!(" {what}:");
    let mut cost = BTreeMap::new();
    for (program, floor) in NET_PROGRAMS {
        let m = median(per_event.get_mut(program).expect("measured"));
        let m_floor = median(per_event.get_mut(floor).expect("measured"));
        let v = &per_event[program];
        let insns = loaded
            .program(program)
            .and_then(|p| p.info().ok())
            .and_then(|i| i.size_translated())
            .map_or(0, |b| b / 8);
        println!(
            "  {program:24} {m:6.1} ns [{:.1}–{:.1}]  floor {m_floor:5.1} ns  \
             body {:5.1} ns  ({insns} insns after the verifier)",
            v[0],
            v[v.len() - 1],
            m - m_floor
        );
        cost.insert(program, (m, m - m_floor));
    }
    cost
}

fn loopback_listener() -> Result<TcpListener> {
    Ok(TcpListener::bind("127.0.0.1:0")?)
}

/// A veth pair from this namespace into a new one, deleted on drop: traffic over it
/// takes the path of a NIC (`net_dev_xmit` counts, no loopback early exit).
struct Veth {
    ns: String,
}

impl Veth {
    const PEER: &str = "10.213.77.2";

    fn new() -> Result<Veth> {
        let pid = std::process::id();
        let veth = Veth {
            ns: format!("csmbench{pid}"),
        };
        let host_if = format!("csmb{pid}");
        let ns = veth.ns.as_str();
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["addr", "add", "10.213.77.1/30", "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", ns, "addr", "add", "10.213.77.2/30", "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(veth)
    }

    /// A listener on the peer's address, inside the namespace (a socket keeps the
    /// namespace of the thread that made it).
    fn listen(&self) -> Result<TcpListener> {
        let path = format!("/run/netns/{}", self.ns);
        thread::spawn(move || -> Result<TcpListener> {
            let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            // SAFETY: a valid fd; only this short-lived thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            anyhow::ensure!(rc == 0, "setns {path}: {}", std::io::Error::last_os_error());
            Ok(TcpListener::bind((Self::PEER, 0))?)
        })
        .join()
        .expect("setns thread")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the namespace deletes the pair.
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Loads and attaches the empty programs next to the real ones.
fn attach_floor(loaded: &mut Loaded) -> Result<()> {
    let btf = Btf::from_sys_fs().context("kernel BTF")?;
    for (name, tracepoint) in [
        (names::PROG_FLOOR_XMIT, "net_dev_xmit"),
        (names::PROG_FLOOR_RECV, "netif_receive_skb"),
    ] {
        let program: &mut BtfTracePoint = loaded
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?;
        program
            .load(tracepoint, &btf)
            .with_context(|| format!("load {name}"))?;
        program.attach().with_context(|| format!("attach {name}"))?;
    }
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    let root = parse_cgroup2_mount(&mounts).context("no cgroup2 mount")?;
    let cgroup = std::fs::File::open(&root)?;
    for (name, direction) in [
        (names::PROG_FLOOR_EGRESS, CgroupSkbAttachType::Egress),
        (names::PROG_FLOOR_INGRESS, CgroupSkbAttachType::Ingress),
    ] {
        let program: &mut CgroupSkb = loaded
            .program_mut(name)
            .with_context(|| format!("program {name} missing"))?
            .try_into()?;
        program.load().with_context(|| format!("load {name}"))?;
        program
            .attach(&cgroup, direction, CgroupAttachMode::Single)
            .with_context(|| format!("attach {name}"))?;
    }
    Ok(())
}

fn attach(mode: Mode) -> Result<Option<Loaded>> {
    if let Mode::Off = mode {
        return Ok(None);
    }
    let mut loaded = load_and_attach(&HostPaths::default())?;
    anyhow::ensure!(
        loaded.net.problems.is_empty(),
        "network programs: {:?}",
        loaded.net.problems
    );
    if let Mode::NetOnly = mode {
        loaded.detach_program(names::PROG_SCHED_SWITCH_BTF);
        loaded.detach_program(names::PROG_SCHED_SWITCH_TP);
    }
    Ok(Some(loaded))
}

/// One run: units of work per second, and CPU µs per unit.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    rate: f64,
    cpu_us_per_unit: f64,
}

fn measured(f: impl FnOnce() -> Result<(f64, f64)>) -> Result<Run> {
    let cpu0 = cpu_time_us();
    let (rate, units) = f()?;
    Ok(Run {
        rate,
        cpu_us_per_unit: (cpu_time_us() - cpu0) / units,
    })
}

/// User + system time of this process so far, in µs.
fn cpu_time_us() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn report(what: &str, cpu_unit: &str, runs: &[Vec<Run>; 3]) {
    println!("{what}:");
    let off = &runs[0];
    for (mode, v) in MODES.iter().zip(runs.iter()) {
        let mut rates: Vec<f64> = v.iter().map(|r| r.rate).collect();
        let mut losses: Vec<f64> = v
            .iter()
            .zip(off)
            .map(|(r, o)| (o.rate - r.rate) / o.rate * 100.0)
            .collect();
        let mut cpu: Vec<f64> = v.iter().map(|r| r.cpu_us_per_unit).collect();
        println!(
            "  {:8} rate {:10.0}  paired loss {:6.2} %  {:8.3} {cpu_unit}",
            format!("{mode:?}"),
            median(&mut rates),
            median(&mut losses),
            median(&mut cpu),
        );
    }
}
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// (run_time ns, run_count) of each network program.
fn prog_stats(loaded: &Loaded) -> Result<BTreeMap<&'static str, (u64, u64)>> {
    let mut out = BTreeMap::new();
    for name in NET_PROGRAMS.iter().flat_map(|(p, f)| [*p, *f]) {
        let program = loaded
            .program(name)
            .with_context(|| format!("program {name} missing"))?;
        let info = program.info().with_context(|| format!("info of {name}"))?;
        out.insert(name, (info.run_time().as_nanos() as u64, info.run_count()));
    }
    Ok(out)
}

/// (MiB/s, MiB moved)
fn stream_mib_s(dur: Duration, listener: TcpListener) -> Result<(f64, f64)> {
    let addr = listener.local_addr()?;
    let reader = thread::spawn(move || -> std::io::Result<u64> {
        let (mut conn, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut client = TcpStream::connect(addr)?;
    let chunk = vec![7u8; 128 * 1024];
    let start = Instant::now();
    while start.elapsed() < dur {
        client.write_all(&chunk)?;
    }
    client.shutdown(std::net::Shutdown::Write)?;
    let mib = reader.join().expect("reader thread")? as f64 / (1024.0 * 1024.0);
    Ok((mib / start.elapsed().as_secs_f64(), mib))
}

/// (round trips/s, round trips)
fn pingpong_per_s(dur: Duration, listener: TcpListener) -> Result<(f64, f64)> {
    let addr = listener.local_addr()?;
    let echo = thread::spawn(move || -> std::io::Result<()> {
        let (mut conn, _) = listener.accept()?;
        conn.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            if conn.read_exact(&mut buf).is_err() {
                return Ok(());
            }
            conn.write_all(&buf)?;
        }
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let mut buf = [1u8; 64];
    let start = Instant::now();
    let mut trips = 0u64;
    while start.elapsed() < dur {
        client.write_all(&buf)?;
        client.read_exact(&mut buf)?;
        trips += 1;
    }
    drop(client);
    echo.join().expect("echo thread")?;
    Ok((trips as f64 / start.elapsed().as_secs_f64(), trips as f64))
}

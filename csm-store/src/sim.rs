//! A simulated host's days, written through the real [`Store`]: what the benchmarks
//! (`bench_store`, `csm report`'s `bench_report`) measure, generated in one place.
//!
//! 20 users, of whom 5 are busy all day and 15 active a tenth of the time (in 10-minute
//! stretches); 4 interfaces; per-user traffic for 5 users; memory of every user every
//! 10 s; 2 ping targets every 60 s (192.0.2.7 down from 03:00 to 04:00 each day). Values
//! carry realistic noise (timestamps a few ms after the second, CPU and byte counts that
//! vary every interval); `uniform_noise` runs an earlier, cruder simulation (see
//! `bench_store`).

use std::path::Path;

use crate::{CpuRow, MemRow, NetRow, NetUidRow, PingRow, Store, StoreOptions, WriteError};

pub const SEC: i64 = 1_000_000;
/// 2026-11-25T00:00:00Z: where the simulated days start.
pub const DAY_START: i64 = 1_795_564_800_000_000;

/// Writes `days` simulated days from [`DAY_START`] at 1 s into `data_dir` as `host`,
/// flushing every hour and finishing every hour (roll-ups included).
pub fn write_days(
    data_dir: &Path,
    host: &str,
    days: i64,
    uniform_noise: bool,
) -> Result<(), String> {
    let mut store = Store::open(StoreOptions::new(data_dir, host))
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let mut sim = Sim::new(uniform_noise);
    let end = DAY_START + days * 86_400 * SEC;
    let mut t = DAY_START + SEC;
    let first_error = |errors: Vec<WriteError>| match errors.into_iter().next() {
        Some(err) => Err(format!("flush failed: {err}")),
        None => Ok(()),
    };
    while t <= end {
        sim.second(&mut store, t);
        if (t - DAY_START) % (3600 * SEC) == 0 {
            first_error(store.flush(t))?;
        }
        t += SEC;
    }
    first_error(store.flush(end + 3 * 3600 * SEC))
}

struct Rng(u64);
/// A ping measurement of 3 probes started at `ts_us` that got the replies `rtts` (none: a
/// timeout), its min/avg/max taken from them and its mean deviation `mdev_ms`.
pub fn ping_minute(ts_us: i64, target: &str, addr: &str, rtts: Vec<f64>, mdev_ms: f64) -> PingRow {
    let answered = !rtts.is_empty();
    let avg = answered.then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
    PingRow {
        ts_us,
        target: target.to_string(),
        addr: Some(addr.to_string()),
        sent: 3,
        received: rtts.len() as i64,
        rtt_min_ms: rtts.iter().cloned().reduce(f64::min),
        rtt_avg_ms: avg,
        rtt_max_ms: rtts.iter().cloned().reduce(f64::max),
        rtt_mdev_ms: answered.then_some(mdev_ms),
        rtts_ms: rtts,
        error: (!answered).then(|| "timeout".to_string()),
    }
}

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, n: u64) -> i64 {
        (self.next() % n.max(1)) as i64
    }
}

/// The simulated host's state: its users, interfaces and noise.
pub struct Sim {
    rng: Rng,
    uniform_noise: bool,
    users: Vec<(i64, String)>,
    ifaces: Vec<(&'static str, i64, f64)>,
}

impl Sim {
    pub fn new(uniform_noise: bool) -> Sim {
        let users = (0..20).map(|i| (1000 + i, format!("user{i:02}"))).collect();
        Sim {
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            uniform_noise,
            users,
            ifaces: vec![
                ("lo", 1, 2e4),
                ("eth0", 2, 2e6),
                ("eth1", 3, 3e5),
                ("wg0", 4, 5e4),
            ],
        }
    }

    /// Bytes in one second of a flow whose mean is `mean` bytes/s.
    fn bytes(&mut self, mean: f64, sec: i64) -> i64 {
        if self.uniform_noise {
            return (2.0 * mean * self.rng.unit()) as i64;
        }
        let day = (sec % 86_400) as f64 / 86_400.0 * std::f64::consts::TAU;
        let level = mean * (1.0 - 0.3 * day.cos());
        (level * (0.75 + 0.5 * self.rng.unit())) as i64
    }

    fn packets(&mut self, bytes: i64) -> i64 {
        if self.uniform_noise {
            return bytes / 900 + 1;
        }
        (bytes as f64 / (900.0 * (0.9 + 0.2 * self.rng.unit()))) as i64 + 1
    }

    /// RSS and PSS of a user whose RSS level is `rss`.
    fn memory(&mut self, rss: i64) -> (i64, i64) {
        if self.uniform_noise {
            return (
                rss + self.rng.range(1 << 20),
                rss / 2 + self.rng.range(1 << 16) * 4096,
            );
        }
        (
            rss + self.rng.range(256) * 4096,
            rss / 2 + self.rng.range(1024) * 1024,
        )
    }

    /// One second of rows, ending at `t` (µs).
    pub fn second(&mut self, store: &mut Store, t: i64) {
        let ts = t + 1000 + self.rng.range(2000);
        let dur_ms = 1000 + self.rng.range(3) - 1;
        let sec = (t - DAY_START) / SEC;
        for (i, (uid, name)) in self.users.clone().into_iter().enumerate() {
            let busy = i < 5;
            let active = busy || ((sec / 600) as usize + i).is_multiple_of(10);
            if !active {
                continue;
            }
            let load = if busy {
                0.2 + 0.8 * (i as f64 / 5.0)
            } else {
                0.05
            };
            let cpu_ns = (load * 1e9 * (0.9 + 0.1 * self.rng.unit())) as i64;
            store.push(CpuRow {
                ts_us: ts,
                dur_ms,
                uid,
                user: Some(name.clone()),
                cpu_ns,
                cpu_pct: cpu_ns as f64 * 100.0 / (dur_ms as f64 * 1e6),
                source: crate::Source::Ebpf,
            });
            if i < 5 {
                let rx = self.bytes(1e5, sec);
                store.push(NetUidRow {
                    ts_us: ts,
                    dur_ms,
                    uid,
                    user: Some(name.clone()),
                    rx_bytes: rx,
                    tx_bytes: rx + self.rng.range(5000),
                });
            }
            if sec % 10 == 0 {
                let (rss, pss) = self.memory((200 + i as i64 * 50) << 20);
                store.push(MemRow {
                    ts_us: ts,
                    uid,
                    user: Some(name.clone()),
                    nproc: 3 + i as i64,
                    rss_bytes: rss,
                    pss_bytes: Some(pss),
                    swap_bytes: Some(0),
                });
            }
        }
        // Idle users still have memory.
        if sec % 10 == 0 {
            for (i, (uid, name)) in self.users.clone().into_iter().enumerate().skip(5) {
                let active = ((sec / 600) as usize + i).is_multiple_of(10);
                if !active {
                    store.push(MemRow {
                        ts_us: ts,
                        uid,
                        user: Some(name),
                        nproc: 1,
                        rss_bytes: 8 << 20,
                        pss_bytes: Some(4 << 20),
                        swap_bytes: Some(0),
                    });
                }
            }
        }
        for (iface, ifindex, scale) in self.ifaces.clone() {
            let rx = self.bytes(scale / 2.0, sec);
            let tx = self.bytes(scale / 2.0, sec);
            let (rx_packets, tx_packets) = (self.packets(rx), self.packets(tx));
            store.push(NetRow {
                ts_us: ts,
                dur_ms,
                iface: iface.to_string(),
                ifindex,
                netns: Some(4_026_531_840),
                rx_bytes: rx,
                tx_bytes: tx,
                rx_packets,
                tx_packets,
                source: crate::Source::Ebpf,
                // A healthy link: no errors, a received packet dropped now and then.
                rx_errors: Some(0),
                tx_errors: Some(0),
                rx_dropped: Some(i64::from(sec % 97 == 0)),
                tx_dropped: Some(0),
            });
        }
        if sec % 60 == 0 {
            for (n, target) in ["example.org", "192.0.2.7"].iter().enumerate() {
                let down = n == 1 && (sec / 3600) % 24 == 3;
                let rtts: Vec<f64> = if down {
                    vec![]
                } else {
                    (0..3).map(|_| 20.0 + 5.0 * self.rng.unit()).collect()
                };
                store.push(ping_minute(t - 60 * SEC, target, "192.0.2.7", rtts, 1.0));
            }
        }
    }
}

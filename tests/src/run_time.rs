//! What a thread really ran, as the kernel accounts it: `/proc/<pid>/schedstat` sampled
//! every 10 ms on a thread of its own, so that a test can tell what a workload ran
//! between any two wall times (interpolated), whatever share of a core it was given on a
//! busy machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{now_us, schedstat_ns};

const EVERY: Duration = Duration::from_millis(10);

/// `(wall µs, run time ns)` samples of one thread.
pub struct RunTime {
    samples: Vec<(i64, u64)>,
}

/// A thread following a pid's run time until [`finish`](RunTimeFollower::finish).
pub struct RunTimeFollower {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<RunTime>,
}

impl RunTimeFollower {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || RunTime::sample(pid, || stop.load(Ordering::Relaxed)))
        };
        RunTimeFollower { stop, thread }
    }

    pub fn finish(self) -> RunTime {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the run time follower panicked")
    }
}

impl RunTime {
    /// Follows `pid` for `how_long` (blocking).
    pub fn follow_for(pid: u32, how_long: Duration) -> RunTime {
        let end = Instant::now() + how_long;
        RunTime::sample(pid, || Instant::now() >= end)
    }

    fn sample(pid: u32, mut done: impl FnMut() -> bool) -> RunTime {
        let mut samples = Vec::new();
        while !done() {
            if let Some(ns) = schedstat_ns(pid) {
                samples.push((now_us(), ns));
            }
            std::thread::sleep(EVERY);
        }
        assert!(
            samples.len() > 50,
            "could not follow /proc/{pid}/schedstat ({} samples)",
            samples.len()
        );
        RunTime { samples }
    }

    pub fn first_us(&self) -> i64 {
        self.samples[0].0
    }

    pub fn last_us(&self) -> i64 {
        self.samples[self.samples.len() - 1].0
    }

    /// Run time (ns) at a wall time, interpolated between the samples around it.
    pub fn at(&self, at_us: i64) -> f64 {
        let samples = &self.samples;
        let after = samples
            .partition_point(|(t, _)| *t < at_us)
            .clamp(1, samples.len() - 1);
        let (t0, v0) = samples[after - 1];
        let (t1, v1) = samples[after];
        let frac = (at_us - t0) as f64 / (t1 - t0).max(1) as f64;
        v0 as f64 + (v1 as f64 - v0 as f64) * frac
    }

    /// What it ran between two wall times, in % of one core.
    pub fn pct(&self, from_us: i64, to_us: i64) -> f64 {
        (self.at(to_us) - self.at(from_us)) * 100.0 / ((to_us - from_us) as f64 * 1000.0)
    }

    /// Whether it had a whole core (≥ 97 %) over everything followed.
    pub fn had_a_core(&self) -> bool {
        self.pct(self.first_us(), self.last_us()) >= 97.0
    }
}

//! The clocks samples are stamped with.

use crate::model::Stamp;

/// Nanoseconds on `clock` (CLOCK_MONOTONIC is what `bpf_ktime_get_ns` reads).
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a local timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Now, on both clocks.
pub fn now() -> Stamp {
    Stamp {
        mono_ns: clock_ns(libc::CLOCK_MONOTONIC),
        wall_us: chrono::Utc::now().timestamp_micros(),
    }
}

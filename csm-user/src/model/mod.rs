//! The pure model: two raw cumulative samples and the time between them become the rows of
//! one interval. No I/O here, so every rule is unit-tested on plain values.

pub mod counter;
pub mod cpu;
pub mod ping;

pub use counter::counter_delta;
pub use cpu::{cpu_intervals, CpuInterval, CpuSample};

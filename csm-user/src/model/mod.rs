//! The pure model: two raw cumulative samples and their time stamps become the values of
//! one interval. No I/O here, so every rule is unit-tested on plain values; the model
//! knows neither the sources nor the store's rows (the daemon's collectors make those).

pub mod counter;
pub mod cpu;
pub mod link;
pub mod mem;
pub mod net;
pub mod netdev;
pub mod ping;
pub mod stamp;
pub mod ubc;

pub use counter::counter_delta;
pub use cpu::{cpu_intervals, CpuInterval, CpuSample};
pub use link::LinkErrors;
pub use net::{IfaceCounters, NetSample, UidCounters};
pub use stamp::Stamp;

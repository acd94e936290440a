//! The Prometheus/OpenMetrics endpoint (`[metrics] listen = …`, off by default): the
//! [registry](registry::Metrics) counts the rows the collectors send to the store, the
//! [server](server::start) answers `GET /metrics` on a thread of its own.

mod listen;
pub mod registry;
pub mod server;

pub use listen::{Listen, DEFAULT_PORT, DEFAULT_SOCKET_MODE};
pub use registry::{Format, Metrics};
pub use server::{start, Endpoint};

//! The eBPF backend: loads csm-ebpf's programs into the kernel and reads their maps.

pub mod attach;
pub mod batch;
pub mod btf;
pub mod cpu;
pub mod loader;
pub mod mem;
pub mod net;
mod nudge;
pub mod object;
pub mod pins;
pub mod read_only;

pub use attach::NetAttached;
pub use cpu::CpuReader;
pub use loader::{load_and_attach, load_pinned, open_pinned_read_only, Loaded, SchedVariant};
pub use net::NetReader;
pub use object::EBPF_OBJECT;

//! The eBPF programs csm loads, as one compiled object.

/// The compiled eBPF object, embedded at build time (see csm-user/build.rs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("CSM_EBPF_OBJECT"));

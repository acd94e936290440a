//! csm's eBPF programs. Each handler is a thin wrapper; the hot paths avoid helpers where a
//! direct load will do, because they run on every context switch and every packet.
#![no_std]
#![no_main]
// BPF inline assembly (the atomic add in net.rs) is still behind a feature gate.
#![feature(asm_experimental_arch)]

mod floor;
mod mem;
mod net;
mod sched;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves no panic is reachable; this only satisfies no_std.
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

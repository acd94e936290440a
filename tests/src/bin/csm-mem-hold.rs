//! Test helper: touches MIB MiB of anonymous memory, forks CHILDREN children that share
//! it copy-on-write (so each page's PSS is split between them) and touch one MiB of their
//! own each, prints one line per process ("ready <pid>") and then sleeps until killed.
//! Run as a test user (the tests set its uid) so its memory is charged to that user.

use std::io::Write;
use std::process::ExitCode;

const MIB: usize = 1 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(Ok(mib)), Some(Ok(children))) = (
        args.get(1).map(|a| a.parse::<usize>()),
        args.get(2).map(|a| a.parse::<usize>()),
    ) else {
        eprintln!("usage: csm-mem-hold MIB CHILDREN");
        return ExitCode::from(2);
    };
    let shared = touched(mib * MIB);
    for _ in 0..children {
        // SAFETY: single-threaded here; the child only touches memory, writes and sleeps.
        match unsafe { libc::fork() } {
            -1 => {
                eprintln!("csm-mem-hold: fork: {}", std::io::Error::last_os_error());
                return ExitCode::FAILURE;
            }
            0 => hold(Some(touched(MIB))),
            _ => {}
        }
    }
    hold(Some(shared))
}

/// `len` bytes, every page written (so resident and anonymous).
fn touched(len: usize) -> Vec<u8> {
    let mut memory = vec![0u8; len];
    for page in memory.chunks_mut(4096) {
        page[0] = 1;
    }
    memory
}

/// Prints "ready <pid>" and sleeps, keeping `memory` alive.
fn hold(memory: Option<Vec<u8>>) -> ! {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {pid}");
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        std::hint::black_box(&memory);
    }
}

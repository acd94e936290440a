//! Helpers shared by the unit tests of several modules.

/// Runs `future` to its end on a current-thread runtime with a `LocalSet`, as the daemon
/// runs its tasks (they hold `!Send` state: ICMP sockets, eBPF maps).
pub fn block_on_local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

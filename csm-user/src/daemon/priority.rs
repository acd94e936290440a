//! The threads that keep time (the collectors' ticks and the ping schedule) run at nice
//! −10, above every user's processes at the default 0. A local user who keeps both
//! cores busy (a dozen busy loops: no privilege needed) otherwise delays their wake-ups:
//! at load 12–15 on 2 cores one interval in a few hundred stretched to 1.15 s, past the
//! 10 % bound, and the next one was as short. A higher weight makes the scheduler run
//! a waking collector at once; it does not give csm more CPU time than it asks for (its
//! work per interval is bounded: see docs/security.md). The writer, the roll-ups and the
//! flushes stay at the daemon's own priority: their timing does not matter, and a flood
//! that makes them busy must not take the users' CPU first. Threads a raised thread starts
//! (ping's name lookups on its runtime's blocking pool) inherit its nice, as Linux does.

use std::sync::Once;

use rustix::process::{getpriority_process, setpriority_process};

/// The nice value of the time-keeping threads.
pub const TIME_KEEPING_NICE: i32 = -10;

/// The calling thread's nice raised to [`TIME_KEEPING_NICE`] for as long as this lives,
/// then put back: the thread comes from tokio's blocking pool and may run a flush next.
pub struct TimeKeeping {
    before: Option<i32>,
}

impl TimeKeeping {
    /// Raises the calling thread's priority (Linux's nice is per thread: `who` 0 is the
    /// calling thread). Without CAP_SYS_NICE it stays as it is, said once per run.
    pub fn raise() -> TimeKeeping {
        let before = getpriority_process(None).ok();
        if before.is_some_and(|nice| nice <= TIME_KEEPING_NICE) {
            return TimeKeeping { before: None };
        }
        match setpriority_process(None, TIME_KEEPING_NICE) {
            Ok(()) => TimeKeeping { before },
            Err(err) => {
                static WARNED: Once = Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "collector threads keep the default priority (nice {TIME_KEEPING_NICE} \
                         refused: {err}); a busy host may delay their ticks"
                    )
                });
                TimeKeeping { before: None }
            }
        }
    }
}

impl Drop for TimeKeeping {
    fn drop(&mut self) {
        if let Some(nice) = self.before {
            // Raising the nice value needs no privilege.
            let _ = setpriority_process(None, nice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// In threads of their own: the test harness's threads are reused.
    #[test]
    fn raises_the_calling_thread_only_and_puts_it_back() {
        let before = getpriority_process(None).unwrap();
        // A thread that reads its own nice when told to, while the other is raised.
        let (ask, asked) = channel::<()>();
        let (tell, told) = channel();
        let other = std::thread::spawn(move || {
            asked.recv().unwrap();
            tell.send(getpriority_process(None).unwrap()).unwrap();
        });
        std::thread::spawn(move || {
            let root = rustix::process::geteuid().is_root();
            {
                let _raised = TimeKeeping::raise();
                let now = getpriority_process(None).unwrap();
                if root {
                    assert_eq!(now, TIME_KEEPING_NICE);
                } else {
                    // Without CAP_SYS_NICE the call is refused and nothing changes.
                    assert_eq!(now, before);
                }
                ask.send(()).unwrap();
                assert_eq!(told.recv().unwrap(), before, "another thread is not raised");
            }
            assert_eq!(getpriority_process(None).unwrap(), before, "put back");
        })
        .join()
        .unwrap();
        other.join().unwrap();
    }
}

//! The namespace-churn load of issue 21 (point 3), as an unprivileged user does it: many
//! sleeping processes (a /proc walk has that many entries to read) and a loop that
//! creates and destroys network namespaces (`unshare -Urn`, no privileges needed), each
//! with a UDP datagram on its own `lo` so that the daemon sees the namespace's traffic.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::TestUser;

/// The load, running as its own [`TestUser`] until dropped (every process of the user is
/// killed, then the user removed).
pub struct Churn {
    children: Vec<Child>,
    pub user: TestUser,
}

impl Churn {
    /// `sleepers` sleeping processes and one namespace create/destroy loop.
    pub fn start(sleepers: usize) -> Churn {
        let user = TestUser::create("churn");
        let sleep = user
            .shell(&format!(
                "i=0; while [ $i -lt {sleepers} ]; do sleep 3600 & i=$((i+1)); done; wait"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the sleepers");
        let namespaces = user
            .shell(
                "while :; do unshare -Urn bash -c \
                 'ip link set lo up && echo x > /dev/udp/127.0.0.1/9' >/dev/null 2>&1; done",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the namespace loop");
        let churn = Churn {
            children: vec![sleep, namespaces],
            user,
        };
        crate::wait_until("the sleepers to start", Duration::from_secs(60), || {
            churn.processes() >= sleepers
        });
        churn
    }

    /// How many processes the churn user has now.
    pub fn processes(&self) -> usize {
        let uid = self.user.uid;
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                std::os::unix::fs::MetadataExt::uid(&match e.metadata() {
                    Ok(m) => m,
                    Err(_) => return false,
                }) == uid
                    && e.file_name().to_string_lossy().parse::<u32>().is_ok()
            })
            .count()
    }

    /// Whether an unprivileged user may create user and network namespaces here.
    pub fn possible() -> bool {
        let user = TestUser::create("nsck");
        user.shell("unshare -Urn true")
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The user's Drop kills what is left (the sleepers) and removes the user.
    }
}

//! The `run` commands of the rules: on a thread of their own (collection never waits for
//! one), one at a time, each exactly once per transition, without a shell, with the
//! alert's fields in its environment, killed when it outlasts its timeout.

use std::process::{Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use tracing::warn;

/// Transitions waiting for their command; past this many (a flapping rule with a slow
/// command) new ones are dropped, with a log line, rather than held without bound.
pub const MAX_QUEUED: usize = 256;
/// The PATH a command gets (its environment is cleared first).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const POLL: Duration = Duration::from_millis(20);

/// One command to run.
#[derive(Clone, Debug)]
pub struct Job {
    pub rule: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// Hands jobs to the runner thread.
pub struct Runner {
    jobs: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Runner {
    pub fn start() -> Runner {
        let (tx, rx) = sync_channel(MAX_QUEUED);
        let thread = std::thread::Builder::new()
            .name("csm-alert-run".into())
            .spawn(move || run_all(rx))
            .map_err(|err| warn!("alerts: cannot start the thread that runs commands: {err}"))
            .ok();
        Runner {
            jobs: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Queues `job`; never waits.
    pub fn submit(&self, job: Job) {
        let Some(jobs) = &self.jobs else { return };
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => warn!(
                "alert {}: {MAX_QUEUED} commands already waiting; this one is not run",
                job.rule
            ),
            Err(TrySendError::Disconnected(job)) => {
                warn!("alert {}: the command runner is gone; not run", job.rule)
            }
        }
    }
}

impl Drop for Runner {
    /// Lets the queued commands run (each bounded by its timeout) before the daemon ends.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run_all(jobs: Receiver<Job>) {
    for job in jobs {
        if let Err(err) = run_one(&job) {
            warn!("alert {}: command {:?}: {err}", job.rule, job.command[0]);
        }
    }
}

fn run_one(job: &Job) -> Result<(), String> {
    let (program, args) = job.command.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", PATH)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start: {err}"))?;
    let deadline = Instant::now() + job.timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("ended with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after its timeout of {:?}", job.timeout));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(err) => return Err(format!("cannot wait for it: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(command: &[&str], timeout: Duration) -> Job {
        Job {
            rule: "r".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: vec![("CSM_STATE".into(), "firing".into())],
            timeout,
        }
    }

    #[test]
    fn a_command_gets_only_its_environment_and_no_shell() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!("env > {}", out.display());
        run_one(&job(&["/bin/sh", "-c", &script], Duration::from_secs(10))).unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(env.contains("CSM_STATE=firing"), "{env}");
        assert!(!env.contains("HOME="), "{env}");
        // No shell: a metacharacter in an argument is an argument.
        assert!(run_one(&job(&["/bin/true; touch /tmp/x"], Duration::from_secs(1))).is_err());
    }

    #[test]
    fn a_slow_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let err = run_one(&job(&["/bin/sleep", "30"], Duration::from_millis(200))).unwrap_err();
        assert!(err.contains("timeout"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

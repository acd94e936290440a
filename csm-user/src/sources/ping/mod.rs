//! ICMP echo measurements on the tokio runtime.
//!
//! One ICMP socket per address family ([`socket::IcmpSocket`]) is shared by every target:
//! a raw socket as root (or with CAP_NET_RAW), else the unprivileged ICMP datagram socket
//! where `net.ipv4.ping_group_range` allows it. Its receive task hands each reply to the
//! echo waiting for exactly that (address, identifier, sequence) and to nobody else, so
//! late replies (their echo gave up), duplicates (the first took the waiter) and foreign
//! replies (another process's identifier or sequence) are dropped.
//!
//! Sequence numbers come from one counter shared by all targets, so no two echoes in
//! flight ever wait for the same (address, sequence), even when two targets name the same
//! address, or when the datagram socket hides the identifier from us.
//!
//! The `surge-ping` crate (0.9.1) was evaluated and not used: it takes the send time
//! after `sendto` returned (over a veth pair the reply often arrives during `sendto`, so
//! its RTTs came out at a third of iputils') and the receive time when its receive task
//! gets to run, so a runtime busy with a Parquet flush would lengthen RTTs. Here the send
//! time is taken just before `sendto` and the receive time is the kernel's timestamp, as
//! iputils does. (It also brings pnet and rand 0.10, and unwraps in its receive task.)

mod codec;
mod echo;
mod socket;
mod target;

use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use crate::model::ping::Measurement;
pub use socket::Outcome;
pub use target::{check_target, resolve, PingTarget, Resolver};

use socket::IcmpSocket;

/// The gap between the echoes of one measurement when the interval leaves room for it.
pub const ECHO_GAP: Duration = Duration::from_millis(200);
/// The longest a measurement waits for replies after its last echo.
pub const MAX_WAIT: Duration = Duration::from_secs(3);

/// The ICMP sockets shared by every target, opened on first use.
#[derive(Default)]
pub struct Icmp {
    v4: RefCell<Option<Rc<IcmpSocket>>>,
    v6: RefCell<Option<Rc<IcmpSocket>>>,
    seq: Cell<u16>,
}

impl Icmp {
    /// The socket for `addr`'s family; an error text when none can be opened (tried
    /// again at the next measurement, so a permission fixed meanwhile starts working).
    fn socket(&self, addr: IpAddr) -> Result<Rc<IcmpSocket>, String> {
        let (slot, v6, name) = match addr {
            IpAddr::V4(_) => (&self.v4, false, "ICMPv4"),
            IpAddr::V6(_) => (&self.v6, true, "ICMPv6"),
        };
        if let Some(socket) = slot.borrow().as_ref() {
            return Ok(socket.clone());
        }
        let socket = IcmpSocket::open(v6).map_err(|err| socket_error(name, &err))?;
        tracing::info!("{name} echo socket: {}", socket.kind());
        *slot.borrow_mut() = Some(socket.clone());
        Ok(socket)
    }

    fn next_seq(&self) -> u16 {
        let seq = self.seq.get();
        self.seq.set(seq.wrapping_add(1));
        seq
    }
}

fn socket_error(family: &str, err: &std::io::Error) -> String {
    format!(
        "permission denied: cannot open an {family} socket ({err}); csm needs root or \
         CAP_NET_RAW, or its group in net.ipv4.ping_group_range"
    )
}

/// The gap between echoes: [`ECHO_GAP`], or less when the interval is short, so that all
/// echoes go out in the first half of the interval and have the other half for replies.
pub fn echo_gap(interval: Duration, count: u32) -> Duration {
    ECHO_GAP.min(interval / (2 * count.max(1)))
}

/// When a measurement that started at `start` stops waiting: before the next one is due
/// (`next_due`), and at most [`MAX_WAIT`] after its last echo.
pub fn deadline(start: Instant, next_due: Instant, count: u32, gap: Duration) -> Instant {
    // A little room before the next measurement so that writing the row never delays it.
    let room = (next_due.saturating_duration_since(start) / 20).min(Duration::from_millis(20));
    let last_echo = start + gap * count.saturating_sub(1);
    (next_due - room).min(last_echo + MAX_WAIT)
}

/// One target's identity on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Prober {
    /// Echo identifier (raw sockets; the datagram socket's kernel picks its own).
    pub ident: u16,
    pub count: u32,
    pub gap: Duration,
}

impl Prober {
    /// `index` tells the targets apart, the process id tells csm from other pingers.
    pub fn new(index: usize, count: u32, interval: Duration) -> Self {
        let base = std::process::id() as u16;
        Prober {
            ident: base.wrapping_add(index as u16),
            count,
            gap: echo_gap(interval, count),
        }
    }
}

/// Looks the target up and sends the echoes, until `deadline` or until `shutdown` changes;
/// what was collected by then is the measurement (so a stop writes a partial one).
pub async fn measure(
    icmp: &Icmp,
    prober: Prober,
    resolver: &mut Resolver,
    deadline: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Measurement {
    let start = Instant::now();
    // A stop must not wait for a resolver that does not answer.
    let looked_up = tokio::select! {
        found = resolver.lookup(deadline) => found,
        _ = shutdown.changed() => Err("stopped while looking up the name".to_string()),
    };
    let addr = match looked_up {
        Ok(addr) => addr,
        Err(error) => return failed(None, error),
    };
    let socket = match icmp.socket(addr) {
        Ok(socket) => socket,
        Err(error) => return failed(Some(addr), error),
    };
    let shared = Rc::new(RefCell::new(Measurement {
        addr: Some(addr.to_string()),
        ..Default::default()
    }));
    let mut echoes = JoinSet::new();
    for i in 0..prober.count {
        let send_at = start + prober.gap * i;
        if send_at >= deadline {
            break;
        }
        let echo = echo::Echo {
            socket: socket.clone(),
            addr,
            ident: prober.ident,
            seq: icmp.next_seq(),
            send_at,
            deadline,
        };
        echoes.spawn_local(echo.run(shared.clone()));
    }
    if echoes.is_empty() {
        // Woke too late to send anything (a suspended host, a stalled process): say so,
        // rather than leave a row that looks like plain loss.
        return failed(Some(addr), echo::not_measured("started after its deadline"));
    }
    wait_all(&mut echoes, shutdown).await;
    // Dropping the set aborts echoes still waiting (stop): they count as sent, unanswered.
    drop(echoes);
    let measurement = shared.borrow().clone();
    measurement
}

async fn wait_all(echoes: &mut JoinSet<()>, shutdown: &mut watch::Receiver<bool>) {
    loop {
        tokio::select! {
            next = echoes.join_next() => if next.is_none() { return },
            _ = shutdown.changed() => return,
        }
    }
}

fn failed(addr: Option<IpAddr>, error: String) -> Measurement {
    Measurement {
        addr: addr.map(|a| a.to_string()),
        error: Some(error),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_shrinks_for_short_intervals() {
        assert_eq!(echo_gap(Duration::from_secs(60), 3), ECHO_GAP);
        assert_eq!(
            echo_gap(Duration::from_secs(1), 5),
            Duration::from_millis(100)
        );
        assert_eq!(echo_gap(Duration::from_secs(1), 0), ECHO_GAP);
    }

    /// Real echoes to the loopback (root, or a group in net.ipv4.ping_group_range; skipped
    /// elsewhere), and a stop in the middle of a measurement.
    #[test]
    fn measures_loopback_and_keeps_a_partial_measurement_at_stop() {
        crate::test_support::block_on_local(async {
            let icmp = Icmp::default();
            if let Err(err) = icmp.socket("127.0.0.1".parse().unwrap()) {
                eprintln!("skipped: {err}");
                return;
            }
            let prober = Prober::new(0, 3, Duration::from_secs(1));
            let (_keep, mut running) = watch::channel(false);
            let until = Instant::now() + Duration::from_millis(900);
            let mut loopback = Resolver::new("127.0.0.1");
            let m = measure(&icmp, prober, &mut loopback, until, &mut running).await;
            assert_eq!((m.sent, m.rtts_ms.len(), &m.error), (3, 3, &None));
            assert!(m.rtts_ms.iter().all(|&ms| ms > 0.0 && ms < 100.0), "{m:?}");

            // Echoes go out at 0, 166 and 333 ms; the stop comes at 250 ms.
            let (stop, mut stopping) = watch::channel(false);
            let until = Instant::now() + Duration::from_millis(900);
            let stop_later = async {
                tokio::time::sleep(Duration::from_millis(250)).await;
                stop.send(true).unwrap();
            };
            let measuring = measure(&icmp, prober, &mut loopback, until, &mut stopping);
            let (m, ()) = tokio::join!(measuring, stop_later);
            assert_eq!((m.sent, m.rtts_ms.len()), (2, 2), "{m:?}");

            // Started with its deadline already past: a row that says so.
            let past = Instant::now();
            let m = measure(&icmp, prober, &mut loopback, past, &mut running).await;
            assert_eq!(m.sent, 0);
            assert!(m.error.unwrap().starts_with("not measured"));
        });
    }

    #[test]
    fn deadline_is_before_the_next_measurement_and_capped() {
        let start = Instant::now();
        let gap = ECHO_GAP;
        let long = deadline(start, start + Duration::from_secs(60), 3, gap);
        assert_eq!(long, start + 2 * gap + MAX_WAIT);
        let next = start + Duration::from_secs(1);
        let short = deadline(start, next, 3, gap);
        assert!(short < next && short >= next - Duration::from_millis(20));
    }
}

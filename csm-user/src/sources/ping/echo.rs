//! One echo request of a measurement, and what it adds to the measurement.

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::socket::{IcmpSocket, Outcome};
use crate::model::ping::Measurement;

pub struct Echo {
    pub socket: Rc<IcmpSocket>,
    pub addr: IpAddr,
    pub ident: u16,
    pub seq: u16,
    pub send_at: Instant,
    pub deadline: Instant,
}

impl Echo {
    /// Sends at `send_at`, waits until `deadline`, and records into `into`. The echo is
    /// counted as sent before it goes out, so one aborted while waiting (stop) still counts.
    /// One that woke too late to have a fair wait for its reply is not sent at all: the
    /// daemon was late, not the target, and that is not loss.
    pub async fn run(self, into: Rc<RefCell<Measurement>>) {
        sleep_until(self.send_at).await;
        into.borrow_mut().sent += 1;
        let outcome = match too_late(self.send_at, self.deadline, Instant::now()) {
            Some(late_by) => Outcome::NotSent(not_measured(&format!(
                "echo woke {} ms after it was due",
                late_by.as_millis()
            ))),
            None => {
                self.socket
                    .echo(self.addr, self.ident, self.seq, self.deadline)
                    .await
            }
        };
        record(&mut into.borrow_mut(), outcome);
    }
}

/// How late an echo due at `send_at` is at `now`, when it is so late that less than half
/// the wait it was planned to have for its reply is left (`None` while on time).
fn too_late(send_at: Instant, deadline: Instant, now: Instant) -> Option<Duration> {
    let planned_wait = deadline.saturating_duration_since(send_at);
    let late_by = now.saturating_duration_since(send_at);
    (late_by > planned_wait / 2).then_some(late_by)
}

fn record(m: &mut Measurement, outcome: Outcome) {
    match outcome {
        Outcome::Reply(rtt) => m.rtts_ms.push(rtt.as_secs_f64() * 1000.0),
        Outcome::Lost => {}
        Outcome::NotSent(error) => {
            m.sent = m.sent.saturating_sub(1);
            m.error.get_or_insert(error);
        }
        Outcome::IcmpError(error) => {
            m.error.get_or_insert(error);
        }
    }
}

/// The error of an echo or measurement the daemon could not send on time: left out of
/// loss and outages (`csm_store::outages::measured`), as the daemon was late, not the
/// target.
pub(super) fn not_measured(why: &str) -> String {
    format!("{}: {why}", csm_store::outages::NOT_MEASURED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_is_sent_late_only_while_half_its_wait_is_left() {
        let due = Instant::now();
        let deadline = due + Duration::from_millis(800);
        let at = |ms| due + Duration::from_millis(ms);
        assert_eq!(too_late(due, deadline, at(0)), None);
        assert_eq!(too_late(due, deadline, at(400)), None);
        assert_eq!(
            too_late(due, deadline, at(401)),
            Some(Duration::from_millis(401))
        );
        assert!(too_late(due, deadline, at(5000)).is_some());
    }

    #[test]
    fn a_refused_echo_is_not_counted_as_sent() {
        let mut m = Measurement {
            sent: 2,
            ..Default::default()
        };
        record(&mut m, Outcome::NotSent("network unreachable".into()));
        record(&mut m, Outcome::Reply(Duration::from_micros(1500)));
        assert_eq!(m.sent, 1);
        assert_eq!(m.rtts_ms, vec![1.5]);
        assert_eq!(m.error.as_deref(), Some("network unreachable"));
    }

    #[test]
    fn an_icmp_error_counts_as_sent_and_unanswered() {
        let mut m = Measurement {
            sent: 1,
            ..Default::default()
        };
        record(
            &mut m,
            Outcome::IcmpError("host unreachable (code 1)".into()),
        );
        assert_eq!((m.sent, m.rtts_ms.len()), (1, 0));
        assert!(m.error.is_some());
    }
}

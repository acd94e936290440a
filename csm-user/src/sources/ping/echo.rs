//! One echo request and what became of it.

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use surge_ping::{Client, IcmpPacket, PingIdentifier, PingSequence, SurgeError};
use tokio::time::{sleep_until, Instant};

use super::Measurement;

/// 16 bytes of payload: small, and recognisable in a packet capture.
const PAYLOAD: &[u8; 16] = b"csm ping payload";

/// What became of one echo.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reply(Duration),
    /// No answer before the deadline: plain loss.
    Lost,
    /// The kernel refused to send it (no route, permission…).
    NotSent(String),
    /// A router (or the local stack) answered with an ICMP error instead.
    IcmpError(String),
}

pub struct Echo {
    pub client: Client,
    pub addr: IpAddr,
    pub ident: PingIdentifier,
    pub seq: PingSequence,
    pub send_at: Instant,
    pub deadline: Instant,
}

impl Echo {
    /// Sends at `send_at`, waits until `deadline`, and records into `into`. The echo is
    /// counted as sent before it goes out, so one aborted while waiting (stop) still counts.
    pub async fn run(self, into: Rc<RefCell<Measurement>>) {
        sleep_until(self.send_at).await;
        into.borrow_mut().sent += 1;
        let outcome = self.exchange().await;
        record(&mut into.borrow_mut(), outcome);
    }

    async fn exchange(&self) -> Outcome {
        let mut pinger = self.client.pinger(self.addr, self.ident).await;
        pinger.timeout(self.deadline.saturating_duration_since(Instant::now()));
        match pinger.ping(self.seq, PAYLOAD).await {
            Ok((packet, rtt)) => classify(&packet, rtt),
            Err(SurgeError::Timeout { .. }) => Outcome::Lost,
            Err(SurgeError::IOError(err)) => Outcome::NotSent(send_error(&err)),
            Err(err) => Outcome::NotSent(format!("echo failed: {err}")),
        }
    }
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

/// A matched packet is our echo's reply, or an ICMP error that quotes our echo.
fn classify(packet: &IcmpPacket, rtt: Duration) -> Outcome {
    let (ty, code, from): (u8, u8, IpAddr) = match packet {
        IcmpPacket::V4(p) => (
            p.get_icmp_type().0,
            p.get_icmp_code().0,
            p.get_source().into(),
        ),
        IcmpPacket::V6(p) => (
            p.get_icmpv6_type().0,
            p.get_icmpv6_code().0,
            p.get_source().into(),
        ),
    };
    let v6 = matches!(packet, IcmpPacket::V6(_));
    match icmp_error_text(v6, ty, code) {
        None => Outcome::Reply(rtt),
        Some(text) => Outcome::IcmpError(format!("{text} (ICMP from {from})")),
    }
}

/// `None` for an echo reply, else what the ICMP message means.
pub fn icmp_error_text(v6: bool, ty: u8, code: u8) -> Option<String> {
    let text = match (v6, ty, code) {
        (false, 0, _) | (true, 129, _) => return None,
        (false, 3, 0) | (true, 1, 0) => "network unreachable",
        (false, 3, 1) | (true, 1, 3) => "host unreachable",
        (false, 3, 3) | (true, 1, 4) => "port unreachable",
        (false, 3, 9 | 10 | 13) | (true, 1, 1) => "administratively prohibited",
        (false, 3, _) | (true, 1, _) => "destination unreachable",
        (false, 11, _) | (true, 3, _) => "time exceeded",
        (false, 12, _) | (true, 4, _) => "parameter problem",
        _ => return Some(format!("unexpected ICMP type {ty} code {code}")),
    };
    Some(format!("{text} (code {code})"))
}

/// The kernel's refusal, as an error text that names the cause.
fn send_error(err: &io::Error) -> String {
    let cause = match err.raw_os_error() {
        Some(libc::ENETUNREACH) => "network unreachable",
        Some(libc::EHOSTUNREACH) => "host unreachable",
        Some(libc::EACCES | libc::EPERM) => "permission denied",
        Some(libc::EADDRNOTAVAIL) => "address not available",
        _ => "send failed",
    };
    format!("{cause}: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_replies_are_not_errors() {
        assert_eq!(icmp_error_text(false, 0, 0), None);
        assert_eq!(icmp_error_text(true, 129, 0), None);
    }

    #[test]
    fn unreachable_messages_are_named() {
        assert!(icmp_error_text(false, 3, 1)
            .unwrap()
            .starts_with("host unreachable"));
        assert!(icmp_error_text(true, 1, 0)
            .unwrap()
            .starts_with("network unreachable"));
        assert!(icmp_error_text(false, 11, 0)
            .unwrap()
            .starts_with("time exceeded"));
    }

    #[test]
    fn send_errors_name_the_cause() {
        let err = io::Error::from_raw_os_error(libc::ENETUNREACH);
        assert!(send_error(&err).starts_with("network unreachable: "));
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
}

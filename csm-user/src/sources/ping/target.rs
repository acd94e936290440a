//! Ping targets: what a valid one looks like, and which address it has right now.

use std::net::IpAddr;
use std::time::Duration;

use tokio::task::{spawn_local, JoinHandle};
use tokio::time::{timeout_at, Instant};

/// One ping target with its own schedule (the config file and `--ping` give them).
#[derive(Clone, Debug, PartialEq)]
pub struct PingTarget {
    pub host: String,
    /// Time between measurements; a measurement never outlasts it.
    pub interval: Duration,
    /// Echoes per measurement.
    pub count: u32,
}

/// The most echoes one measurement may send.
pub const MAX_COUNT: u32 = 100;

/// Checks a target before the daemon starts; the message is about `target.host` and is
/// shown after its name. Whether the name resolves is not checked: names come and go,
/// and an unresolvable one gets rows with an error (DESIGN.md).
pub fn check_target(target: &PingTarget) -> Result<(), String> {
    check_host(&target.host)?;
    if target.count == 0 || target.count > MAX_COUNT {
        return Err(format!(
            "count must be 1 to {MAX_COUNT}, not {}",
            target.count
        ));
    }
    if target.interval.is_zero() {
        return Err("interval must be longer than 0".into());
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if literal(host).is_some() {
        return Ok(());
    }
    if host.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    // Letters, digits, '-', '_' (seen in real DNS names) and dots between labels; this
    // catches pasted URLs, ports and spaces, which getaddrinfo would only report as
    // "does not resolve" forever.
    let bad = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
    if let Some(c) = bad {
        return Err(format!(
            "{c:?} is not allowed in a host name (give a name or an IP address, no port or URL)"
        ));
    }
    // One trailing dot (a fully qualified name) is fine; other empty labels are not.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.split('.').any(str::is_empty) {
        return Err("empty label in host name".into());
    }
    Ok(())
}

/// An IP literal, also IPv6 in brackets (`[::1]`).
fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// The address to ping now. Names are looked up at every measurement (so a server that
/// moved is followed), on tokio's blocking pool so a slow resolver never stalls the
/// other collectors; the first address getaddrinfo gives (RFC 6724 order) is used.
pub async fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Some(addr) = literal(host) {
        return Ok(addr);
    }
    let mut addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|err| format!("name does not resolve: {err}"))?;
    addrs
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| "name does not resolve: no address".into())
}

/// One target's name lookups. A lookup that outlasts its measurement (a resolver that
/// does not answer) is not abandoned but awaited by the next measurement, so a target
/// never has more than one lookup (one blocking-pool thread) running.
pub struct Resolver {
    host: String,
    pending: Option<JoinHandle<Result<IpAddr, String>>>,
}

impl Resolver {
    pub fn new(host: &str) -> Self {
        Resolver {
            host: host.to_string(),
            pending: None,
        }
    }

    /// The address to ping now, or why there is none by `deadline`.
    pub async fn lookup(&mut self, deadline: Instant) -> Result<IpAddr, String> {
        if let Some(addr) = literal(&self.host) {
            return Ok(addr);
        }
        let host = self.host.clone();
        let pending = self
            .pending
            .get_or_insert_with(|| spawn_local(async move { resolve(&host).await }));
        match timeout_at(deadline, pending).await {
            Ok(done) => {
                self.pending = None;
                done.unwrap_or_else(|err| Err(format!("name lookup failed: {err}")))
            }
            Err(_) => Err("name does not resolve: no answer from the resolver yet".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> PingTarget {
        PingTarget {
            host: host.into(),
            interval: Duration::from_secs(60),
            count: 3,
        }
    }

    #[test]
    fn names_and_literals_are_fine() {
        for host in [
            "example.org",
            "example.org.",
            "gw",
            "192.0.2.7",
            "2001:db8::1",
            "[::1]",
            "my_host-1.lan",
        ] {
            assert_eq!(check_target(&target(host)), Ok(()), "{host}");
        }
    }

    #[test]
    fn urls_ports_and_spaces_are_refused_with_a_reason() {
        for host in ["", "http://x.org", "x.org:80", "a b", "a..b", ".x"] {
            let err = check_target(&target(host)).unwrap_err();
            assert!(!err.is_empty(), "{host}");
        }
    }

    #[test]
    fn counts_and_intervals_are_bounded() {
        let mut t = target("x");
        t.count = 0;
        assert!(check_target(&t).unwrap_err().contains("count"));
        t.count = 3;
        t.interval = Duration::ZERO;
        assert!(check_target(&t).unwrap_err().contains("interval"));
    }

    /// `localhost` comes from /etc/hosts: no packet leaves the machine.
    #[test]
    fn names_are_looked_up_on_the_blocking_pool() {
        crate::test_support::block_on_local(async {
            let mut resolver = Resolver::new("localhost");
            let until = Instant::now() + std::time::Duration::from_secs(5);
            let addr = resolver.lookup(until).await.unwrap();
            assert!(addr.is_loopback(), "{addr}");
            assert!(resolver.pending.is_none(), "a finished lookup is not kept");
        });
    }

    #[tokio::test]
    async fn literals_resolve_without_a_lookup() {
        assert_eq!(resolve("[::1]").await, Ok("::1".parse().unwrap()));
        assert_eq!(resolve("127.0.0.9").await, Ok("127.0.0.9".parse().unwrap()));
    }
}

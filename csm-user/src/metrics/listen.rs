//! Where the endpoint listens: the `[metrics] listen` and `mode` settings.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// The port of `listen = ":9847"` examples and the README.
pub const DEFAULT_PORT: u16 = 9847;
/// A unix socket's mode when `mode` is not given: root only.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Where the endpoint listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix { path: PathBuf, mode: u32 },
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => write!(f, "http://{addr}/metrics"),
            Listen::Unix { path, mode } => write!(f, "unix:{} (mode {mode:04o})", path.display()),
        }
    }
}

impl Listen {
    /// `listen` and `mode` of the `[metrics]` section: an absolute path is a unix socket
    /// (with `mode`, default 0600); `host:port` is TCP with an IP address (never a name,
    /// which could resolve to more than was meant); a bare port or `:port` listens on
    /// loopback only. A non-loopback address is taken as written: setting it is the
    /// explicit choice (`csm check` and the start log say it).
    pub fn parse(listen: &str, mode: Option<&str>) -> Result<Listen, String> {
        if listen.starts_with('/') {
            let mode = match mode {
                Some(text) => parse_mode(text)?,
                None => DEFAULT_SOCKET_MODE,
            };
            return Ok(Listen::Unix {
                path: PathBuf::from(listen),
                mode,
            });
        }
        if mode.is_some() {
            return Err("mode: only for a unix socket (a listen path starting with /)".into());
        }
        let port_only = listen.strip_prefix(':').unwrap_or(listen);
        if let Ok(port) = port_only.parse::<u16>() {
            return Ok(Listen::Tcp(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        listen.parse::<SocketAddr>().map(Listen::Tcp).map_err(|_| {
            format!(
                "listen {listen:?}: not an IP address and port (127.0.0.1:{DEFAULT_PORT}, [::1]:{DEFAULT_PORT}), a port, or an absolute unix socket path"
            )
        })
    }

    /// Reachable from other machines.
    pub fn is_remote(&self) -> bool {
        match self {
            Listen::Tcp(addr) => !addr.ip().is_loopback(),
            Listen::Unix { .. } => false,
        }
    }

    /// What `csm check` and the log say about it.
    pub fn describe(&self) -> String {
        let who = match self {
            Listen::Tcp(_) if self.is_remote() => {
                "reachable from the network: anyone who can connect sees every user's activity"
            }
            Listen::Tcp(_) => "loopback only: every local user can read it",
            Listen::Unix { mode, .. } if mode & 0o006 != 0 => "every local user can connect",
            Listen::Unix { mode, .. } if mode & 0o060 != 0 => "the socket's group can connect",
            Listen::Unix { .. } => "root only",
        };
        format!("per-user CPU, memory and traffic, interfaces and ping on {self} ({who})")
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "mode {text:?}: not an octal file mode such as \"0660\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_is_loopback() {
        let want = Listen::Tcp("127.0.0.1:9847".parse().unwrap());
        assert_eq!(Listen::parse("9847", None).unwrap(), want);
        assert_eq!(Listen::parse(":9847", None).unwrap(), want);
        assert!(!want.is_remote());
    }

    #[test]
    fn remote_only_as_written() {
        let any = Listen::parse("0.0.0.0:9847", None).unwrap();
        assert!(any.is_remote());
        assert!(any.describe().contains("network"), "{}", any.describe());
        assert!(!Listen::parse("[::1]:9847", None).unwrap().is_remote());
    }

    #[test]
    fn names_and_junk_are_refused() {
        let err = Listen::parse("localhost:9847", None).unwrap_err();
        assert!(err.contains("localhost:9847"), "{err}");
        assert!(Listen::parse("127.0.0.1:99999", None).is_err());
        assert!(Listen::parse("127.0.0.1:9847", Some("0660")).is_err());
    }

    #[test]
    fn unix_socket_with_mode() {
        let listen = Listen::parse("/run/csm/metrics.sock", Some("0660")).unwrap();
        assert_eq!(
            listen,
            Listen::Unix {
                path: "/run/csm/metrics.sock".into(),
                mode: 0o660
            }
        );
        assert!(listen.describe().contains("group"));
        assert!(Listen::parse("/x.sock", Some("rw")).is_err());
        assert!(Listen::parse("/x.sock", Some("1777")).is_err());
    }
}

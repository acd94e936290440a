//! Network namespaces and veth pairs that clean up after themselves, even when a test
//! panics: deleting a namespace deletes the veth ends inside it.

use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use crate::net::{link_errors_here, traffic_here, LinkErrors, Traffic};
use crate::run;

/// Whether a new namespace has IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6 {
    On,
    /// Quiet interfaces: no router solicitations, DAD or MLD traffic of their own at odd
    /// moments, so that the only packets are the test's (and the ARP they cause).
    Off,
}

/// A network namespace `csmt<tag><pid>` with its loopback up, deleted on drop. Its
/// resolver config (`/etc/netns/<name>/resolv.conf`, bound over /etc/resolv.conf by `ip
/// netns exec`) points at its own loopback, so a name lookup never sends a packet out.
pub struct Netns {
    pub name: String,
}

/// The prefix of every test namespace; what follows is the tag (letters) and the pid.
const PREFIX: &str = "csmt";

impl Netns {
    /// `tag` (lowercase letters) makes the name unique among the tests; the pid among
    /// concurrent runs.
    pub fn new(tag: &str, ipv6: Ipv6) -> Netns {
        assert!(
            !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_lowercase()),
            "a namespace tag is lowercase letters: {tag:?}"
        );
        remove_orphans();
        let name = format!("{PREFIX}{tag}{}", std::process::id());
        // A namespace left over by a killed run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        if ipv6 == Ipv6::Off {
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        ns.ip(&["link", "set", "lo", "up"]);
        fs::create_dir_all(ns.etc()).expect("create /etc/netns/<name>");
        ns.write_etc("resolv.conf", "nameserver 127.0.0.1\n");
        ns
    }

    fn etc(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// Writes `/etc/netns/<name>/<file>` in place (same inode: a file already bound
    /// into a running `ip netns exec` sees the new content).
    pub fn write_etc(&self, file: &str, content: &str) {
        fs::write(self.etc().join(file), content).expect("write /etc/netns file");
    }

    /// `ip -n <name> <args>`; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `cmd` inside the namespace (`ip netns exec`); its stdout.
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// `ip netns exec <name> <program>` as a command to add arguments to and spawn.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode: what csm writes in the `netns` column.
    pub fn inode(&self) -> i64 {
        fs::metadata(self.path()).expect("netns file").ino() as i64
    }

    /// Runs `f` on a thread inside this namespace; sockets it creates stay in there.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let file = fs::File::open(&path).expect("open netns");
            // SAFETY: valid fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {}", path.display());
            f()
        })
        .join()
        .expect("thread in netns panicked")
    }

    /// The kernel's counters of `iface` in this namespace (`/proc/net/dev`).
    pub fn traffic(&self, iface: &str) -> Traffic {
        let iface = iface.to_string();
        self.within(move || traffic_here(&iface))
    }

    /// The kernel's error and drop counters of `iface` in this namespace.
    pub fn link_errors(&self, iface: &str) -> LinkErrors {
        let iface = iface.to_string();
        self.within(move || link_errors_here(&iface))
    }

    pub fn ifindex(&self, iface: &str) -> i64 {
        let iface = iface.to_string();
        self.within(move || {
            let name = std::ffi::CString::new(iface).unwrap();
            // SAFETY: NUL-terminated name.
            unsafe { libc::if_nametoindex(name.as_ptr()) as i64 }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = fs::remove_dir_all(self.etc());
    }
}

/// Deletes test namespaces whose test process is gone (a run killed before its guards
/// could drop), so killed CI runs do not pile them up.
fn remove_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
        let alive = PathBuf::from("/proc").join(pid).exists();
        if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) && !alive {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
        }
    }
}

/// A veth pair from `a_if` in `a` to `b_if` in `b`, both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.ip(&[
        "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Two namespaces joined by a veth pair: `client` (where csm runs) and `server`.
pub struct Link {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
}

impl Link {
    /// Namespaces `<tag>c` and `<tag>s`; interfaces `csmc<tag>` and `csms<tag>` (at most
    /// 15 characters).
    pub fn new(tag: &str, ipv6: Ipv6) -> Link {
        let client = Netns::new(&format!("{tag}c"), ipv6);
        let server = Netns::new(&format!("{tag}s"), ipv6);
        let client_if = format!("csmc{tag}");
        let server_if = format!("csms{tag}");
        veth(&client, &client_if, &server, &server_if);
        Link {
            client,
            server,
            client_if,
            server_if,
        }
    }

    /// Adds `client_addr` on the client end and `server_addr` on the server end
    /// (CIDR notation); IPv6 addresses skip duplicate detection so they work at once.
    pub fn address(&self, client_addr: &str, server_addr: &str) {
        let v6 = client_addr.contains(':');
        for (ns, dev, addr) in [
            (&self.client, &self.client_if, client_addr),
            (&self.server, &self.server_if, server_addr),
        ] {
            let mut args = vec!["addr", "add", addr, "dev", dev.as_str()];
            if v6 {
                args.push("nodad");
            }
            ns.ip(&args);
        }
    }

    /// Takes the server's end down or up: the client sees its link lose carrier.
    pub fn set_server_link(&self, up: bool) {
        self.server.ip(&[
            "link",
            "set",
            &self.server_if,
            if up { "up" } else { "down" },
        ]);
    }
}

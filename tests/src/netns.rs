//! Network namespaces and veth pairs that clean up after themselves, even when a test
//! panics: deleting a namespace deletes the veth ends inside it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs a command and panics with its stderr if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {args:?}: {err}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace with its loopback up, deleted on drop. Its resolver config
/// (`/etc/netns/<name>/resolv.conf`, bound over /etc/resolv.conf by `ip netns exec`)
/// points at its own loopback, so a name lookup never sends a packet out.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `tag` makes the name unique among the tests; the pid among concurrent runs.
    pub fn new(tag: &str) -> Netns {
        remove_orphans();
        let name = format!("csmping{tag}{}", std::process::id());
        // A namespace left over by a killed run of the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        std::fs::create_dir_all(ns.etc()).expect("create /etc/netns/<name>");
        ns.write_etc("resolv.conf", "nameserver 127.0.0.1\n");
        ns
    }

    fn etc(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    /// Writes `/etc/netns/<name>/<file>` in place (same inode: a file already bound
    /// into a running `ip netns exec` sees the new content).
    pub fn write_etc(&self, file: &str, content: &str) {
        std::fs::write(self.etc().join(file), content).expect("write /etc/netns file");
    }

    /// `ip -n <name> <args>`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all);
    }

    /// `ip netns exec <name> <program> <args>` as a command to spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(self.etc());
    }
}

/// Deletes `csmping<tag><pid>` namespaces whose test process is gone (a run killed
/// before its guards could drop), so killed CI runs do not pile them up.
fn remove_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("csmping") else {
            continue;
        };
        let pid = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let alive = PathBuf::from("/proc").join(pid).exists();
        if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) && !alive {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
        }
    }
}

/// Two namespaces joined by a veth pair: `client` (where csm runs) and `server`.
pub struct Link {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
}

impl Link {
    /// Interface names are `csmc<tag>`/`csms<tag>` (at most 15 characters).
    pub fn new(tag: &str) -> Link {
        let client = Netns::new(&format!("{tag}c"));
        let server = Netns::new(&format!("{tag}s"));
        let client_if = format!("csmc{tag}");
        let server_if = format!("csms{tag}");
        sh(&[
            "ip",
            "link",
            "add",
            &client_if,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
            "netns",
            &server.name,
        ]);
        client.ip(&["link", "set", &client_if, "up"]);
        server.ip(&["link", "set", &server_if, "up"]);
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

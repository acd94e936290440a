//! Interfaces from `/proc/net/dev` (the daemon's network namespace), with their ifindex
//! from `/sys/class/net/<iface>/ifindex`.

use std::collections::HashSet;

use anyhow::{Context, Result};

use super::netdev::parse_net_dev;
use super::{read_text, WarnOnce};
use crate::model::netdev::{IfaceSample, NetSample};
use crate::sources::clock;
use crate::sources::host::HostPaths;

pub struct ProcNetSampler {
    paths: HostPaths,
    /// Interfaces seen with a counter above 32 bits: their counters never wrap at 2^32.
    wide: HashSet<String>,
    warnings: WarnOnce,
}

impl ProcNetSampler {
    pub fn new(paths: HostPaths) -> Self {
        ProcNetSampler {
            paths,
            wide: HashSet::new(),
            warnings: WarnOnce::default(),
        }
    }

    pub fn sample(&mut self) -> Result<NetSample> {
        let path = self.paths.proc("net/dev");
        let at = clock::now();
        let text = read_text(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let parsed = parse_net_dev(&text);
        self.warnings.lines(&path, &parsed.warnings);
        let mut sample = NetSample {
            at,
            ..Default::default()
        };
        for iface in parsed.value {
            let counters = [
                iface.rx_bytes,
                iface.tx_bytes,
                iface.rx_packets,
                iface.tx_packets,
            ];
            if counters.iter().any(|&c| c > u64::from(u32::MAX)) {
                self.wide.insert(iface.name.clone());
            }
            let ifindex = self.ifindex(&iface.name);
            sample.ifaces.insert(
                iface.name,
                IfaceSample {
                    ifindex,
                    rx_bytes: counters[0],
                    tx_bytes: counters[1],
                    rx_packets: counters[2],
                    tx_packets: counters[3],
                    link: iface.link,
                },
            );
        }
        Ok(sample)
    }

    /// Whether `iface`'s counters may wrap at 32 bits (none seen wider yet).
    pub fn may_wrap_32(&self, iface: &str) -> bool {
        !self.wide.contains(iface)
    }

    fn ifindex(&self, iface: &str) -> Option<u32> {
        let path = self.paths.sys(format!("class/net/{iface}/ifindex"));
        super::read_text(&path).ok()?.trim().parse().ok()
    }
}

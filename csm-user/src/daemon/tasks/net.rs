//! Traffic per interface and per uid: a sample every interval, the model's deltas into
//! `net` and `net_uid` rows, and the maps kept bounded by deleting what is gone.

use std::collections::{BTreeMap, BTreeSet};

use csm_common::{MAX_UIDS, OVERFLOW_UID};

use super::mem::clamp;
use crate::daemon::collector::{self, Collector, Kind};
use crate::daemon::Rows;
use crate::model::net::{idle_keys, iface_deltas, link_deltas, uid_deltas, IfaceKey};
use crate::model::{IfaceCounters, LinkErrors, NetSample, Stamp};
use crate::sources::ebpf::NetReader;
use crate::sources::host::HostPaths;
use crate::sources::link_errors::LinkErrorsReader;
use crate::sources::netns::{IfaceName, IfaceNames};
use crate::sources::users::UserNames;
use csm_store::{Counters, Event, NetRow, NetUidRow, Source};

/// A uid's map entry is deleted after this long without traffic. A uid has no "gone"
/// event; deleting only long-idle entries makes losing a packet that lands between the
/// last read and the delete very unlikely.
const UID_IDLE_NS: u64 = 600 * 1_000_000_000;

/// The `net_uid` row of the traffic the uid map had no room for.
pub const OVERFLOW_ROW_UID: i64 = -1;
pub const OVERFLOW_USER: &str = "(overflow)";

pub struct NetCollector {
    reader: NetReader,
    ifaces: IfaceNames,
    link_errors: LinkErrorsReader,
    users: UserNames,
    /// CLOCK_MONOTONIC ns of each uid's last traffic (or first sight).
    uid_last_active: BTreeMap<u32, u64>,
    /// The uid map is full (traffic went to the overflow slot) and no entry has been
    /// deleted since: the `net_uid_overflow` event was written for this episode.
    uid_map_full: bool,
}

impl NetCollector {
    pub fn new(reader: NetReader, paths: HostPaths) -> Self {
        NetCollector {
            reader,
            ifaces: IfaceNames::new(paths.clone()),
            link_errors: LinkErrorsReader::new(paths),
            users: UserNames::default(),
            uid_last_active: BTreeMap::new(),
            uid_map_full: false,
        }
    }
}

impl Collector for NetCollector {
    type Sample = NetSample;
    const NAME: &'static str = "net";
    const KIND: Kind<NetSample> = Kind::Counter(Rows::NetTotals);

    /// `net` and `net_uid` rows; then, drained, what is gone is deleted here and in the
    /// kernel.
    fn rows(&mut self, prev: &NetSample, cur: &mut NetSample) -> Vec<Rows> {
        let names = self.ifaces.resolve(&iface_keys(cur));
        let (net, active) = net_rows(prev, cur, &names);
        let uids = self.uid_rows(prev, cur);
        let overflow_event = self.overflow_event(&uids);
        let gone_ifaces: Vec<IfaceKey> = names
            .iter()
            .filter(|(key, name)| match name {
                IfaceName::Gone => true,
                IfaceName::Unknown => !active.contains(key),
                IfaceName::Named(_) => false,
            })
            .map(|(key, _)| *key)
            .collect();
        let idle_uids = self.idle_uids(cur.at.mono_ns);
        self.reader.forget(&gone_ifaces, &idle_uids);
        cur.forget(&gone_ifaces, &idle_uids);
        for uid in &idle_uids {
            self.uid_last_active.remove(uid);
        }
        if !idle_uids.is_empty() {
            self.uid_map_full = false; // room again: a next overflow is a new episode
        }
        let mut rows = vec![Rows::from(net), Rows::from(uids)];
        rows.extend(overflow_event);
        rows
    }

    /// The maps' counters, and the kernel's error and drop counters of the namespaces
    /// they saw.
    fn sample(&mut self) -> anyhow::Result<NetSample> {
        let mut sample = self.reader.sample()?;
        let namespaces: BTreeSet<u32> = sample.ifaces.keys().map(|(netns, _)| *netns).collect();
        sample.links = self.link_errors.read(&mut self.ifaces, namespaces);
        Ok(sample)
    }

    /// The pinned counters kept counting while the daemon was down: that traffic becomes
    /// one row per interface and uid.
    fn recover(
        &mut self,
        last_written: &NetSample,
        first: &NetSample,
    ) -> Option<(Vec<Rows>, Event)> {
        let names = self.ifaces.resolve(&iface_keys(first));
        let (net, _) = net_rows(last_written, first, &names);
        let uids = self.uid_rows(last_written, first);
        let bytes: i64 = net.iter().map(|r| r.rx_bytes + r.tx_bytes).sum();
        let event = collector::recovered(
            Counters::Net,
            "traffic accounting from the pinned counters",
            last_written.at,
            first.at,
            format!("bytes={bytes} ifaces={} uids={}", net.len(), uids.len()),
        );
        Some((vec![Rows::from(net), Rows::from(uids)], event))
    }

    fn started(&mut self) -> Option<Event> {
        Some(Event::NetMaps(self.map_sizes("start")))
    }

    fn stopped(&mut self) -> Option<Event> {
        Some(Event::NetMaps(self.map_sizes("stop")))
    }
}

impl NetCollector {
    /// Uids whose map entries are deleted now: idle for [`UID_IDLE_NS`]. Never the
    /// overflow slot: its counters are cumulative like the others, and forgetting them
    /// would count its whole total again as new.
    fn idle_uids(&self, now_ns: u64) -> Vec<u32> {
        idle_uids(&self.uid_last_active, now_ns)
    }

    /// The `net_uid_overflow` event, once per episode of a full uid map.
    fn overflow_event(&mut self, rows: &[NetUidRow]) -> Option<Rows> {
        let overflowed = rows.iter().any(|r| r.uid == OVERFLOW_ROW_UID);
        if !overflowed || self.uid_map_full {
            return None;
        }
        self.uid_map_full = true;
        Some(Rows::event(Event::NetUidOverflow {
            uids: MAX_UIDS as i64,
        }))
    }

    fn uid_rows(&mut self, prev: &NetSample, cur: &NetSample) -> Vec<NetUidRow> {
        let dur_ms = Stamp::dur_ms(prev.at, cur.at);
        let now = cur.at.mono_ns;
        for uid in cur.uids.keys() {
            self.uid_last_active.entry(*uid).or_insert(now);
        }
        uid_deltas(prev, cur)
            .into_iter()
            .map(|(uid, d)| {
                self.uid_last_active.insert(uid, now);
                let (uid, user) = if uid == OVERFLOW_UID {
                    (OVERFLOW_ROW_UID, Some(OVERFLOW_USER.to_string()))
                } else {
                    (uid as i64, self.users.name(uid))
                };
                NetUidRow {
                    ts_us: cur.at.wall_us,
                    dur_ms,
                    uid,
                    user,
                    rx_bytes: d.rx_bytes as i64,
                    tx_bytes: d.tx_bytes as i64,
                }
            })
            .collect()
    }

    fn map_sizes(&self, when: &str) -> String {
        let (ifaces, uids) = self.reader.map_sizes();
        format!("{when}: ifaces={ifaces} uids={uids}")
    }
}

fn idle_uids(last_active: &BTreeMap<u32, u64>, now_ns: u64) -> Vec<u32> {
    let mut idle = idle_keys(last_active, now_ns, UID_IDLE_NS);
    idle.retain(|uid| *uid != OVERFLOW_UID);
    idle
}

/// The interfaces of a sample: those the maps saw, and those whose error and drop
/// counters were read.
fn iface_keys(sample: &NetSample) -> Vec<IfaceKey> {
    let keys: BTreeSet<IfaceKey> = sample
        .ifaces
        .keys()
        .chain(sample.links.keys())
        .copied()
        .collect();
    keys.into_iter().collect()
}

/// The error and drop columns of a `net` row (the rest default): null when unknown.
pub(super) fn link_columns(link: Option<LinkErrors>) -> NetRow {
    NetRow {
        rx_errors: link.map(|l| clamp(l.rx_errors)),
        tx_errors: link.map(|l| clamp(l.tx_errors)),
        rx_dropped: link.map(|l| clamp(l.rx_dropped)),
        tx_dropped: link.map(|l| clamp(l.tx_dropped)),
        ..NetRow::default()
    }
}

/// `net` rows, and the interfaces that had traffic, errors or drops.
fn net_rows(
    prev: &NetSample,
    cur: &NetSample,
    names: &BTreeMap<IfaceKey, IfaceName>,
) -> (Vec<NetRow>, BTreeSet<IfaceKey>) {
    let dur_ms = Stamp::dur_ms(prev.at, cur.at);
    let traffic: BTreeMap<IfaceKey, IfaceCounters> = iface_deltas(prev, cur).into_iter().collect();
    let links = link_deltas(prev, cur);
    let with_errors = links.iter().filter(|(_, l)| !l.is_zero()).map(|(k, _)| *k);
    let active: BTreeSet<IfaceKey> = traffic.keys().copied().chain(with_errors).collect();
    let row = |key @ (netns, ifindex): IfaceKey| {
        // An interface with errors or drops and no traffic counted has zero traffic.
        let d = traffic.get(&key).copied().unwrap_or_default();
        NetRow {
            ts_us: cur.at.wall_us,
            dur_ms,
            iface: names
                .get(&key)
                .unwrap_or(&IfaceName::Unknown)
                .label(ifindex),
            ifindex: ifindex as i64,
            netns: Some(netns as i64),
            rx_bytes: d.rx_bytes as i64,
            tx_bytes: d.tx_bytes as i64,
            rx_packets: d.rx_packets as i64,
            tx_packets: d.tx_packets as i64,
            source: Source::Ebpf,
            ..link_columns(links.get(&key).copied())
        }
    };
    let rows = active.iter().copied().map(row).collect();
    (rows, active)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overflow_slot_is_never_deleted_as_idle() {
        let last_active = BTreeMap::from([(1000, 0), (OVERFLOW_UID, 0), (1001, UID_IDLE_NS)]);
        assert_eq!(idle_uids(&last_active, UID_IDLE_NS), vec![1000]);
    }
}

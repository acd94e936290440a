//! Traffic per interface and per uid: a sample every interval, the model's deltas into
//! `net` and `net_uid` rows, and the maps kept bounded by deleting what is gone.
//!
//! Budgets (docs/security.md, issue 21): interfaces of root's namespaces each get their
//! row; those of namespaces a user owns get up to [`ROWS_PER_OWNER`] rows per owner
//! uid and interval (the busiest), the rest summed into one `(other uid=N)` row, and
//! what the eBPF maps had no room for is the `(overflow uid=N)` row: a user's objects
//! cost that user's detail, never root's rows, and every byte stays in the totals.
//! Each fold and overflow is an `events` row every interval while it lasts.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use csm_common::{MAX_UIDS, OVERFLOW_UID};

use super::mem::clamp;
use crate::daemon::collector::{self, Collector, Kind};
use crate::daemon::ctx::Rows;
use crate::model::net::{
    idle_keys, iface_deltas, iface_overflow_deltas, link_deltas, uid_deltas, IfaceKey,
};
use crate::model::{IfaceCounters, LinkErrors, NetSample, Stamp};
use crate::sources::ebpf::NetReader;
use crate::sources::host::HostPaths;
use crate::sources::link_errors::LinkErrorsReader;
use crate::sources::netns::{IfaceName, IfaceNames};
use crate::sources::users::UserNames;
use csm_store::rollup::sum_known;
use csm_store::{Counters, Event, NetRow, NetUidRow, Source};

/// A uid's map entry is deleted after this long without traffic. A uid has no "gone"
/// event; deleting only long-idle entries makes losing a packet that lands between the
/// last read and the delete very unlikely.
const UID_IDLE_NS: u64 = 600 * 1_000_000_000;

/// An interface of a namespace a user owns has its map entry deleted after this long
/// without traffic: users can create namespaces by the thousand and keep them, and an
/// idle entry must not hold room another interface needs.
const IFACE_IDLE_NS: u64 = 10 * 1_000_000_000;

/// `net` rows per interval for the interfaces of namespaces one user owns; beyond, one
/// `(other uid=N)` row carries the rest.
pub const ROWS_PER_OWNER: usize = 32;

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
    /// The same for interfaces.
    iface_last_active: BTreeMap<IfaceKey, u64>,
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
            iface_last_active: BTreeMap::new(),
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
        let names = self.names(cur);
        let (net, active) = net_rows(prev, cur, &names);
        let (mut net, folded) = fold_rows_per_owner(net, &cur.ns_owners);
        let overflow = overflow_rows(prev, cur);
        let overflow_events: Vec<Rows> = overflow.iter().map(overflow_event_of).collect();
        net.extend(overflow.into_iter().map(|(_, row)| row));
        let uids = self.uid_rows(prev, cur);
        let overflow_event = self.overflow_event(&uids);
        let gone_ifaces: Vec<(IfaceKey, IfaceCounters)> = self
            .gone_ifaces(cur, &names, &active)
            .into_iter()
            .map(|key| (key, cur.ifaces[&key]))
            .collect();
        let idle_uids = self.idle_uids(cur.at.mono_ns);
        let candidates: Vec<IfaceKey> = gone_ifaces.iter().map(|(key, _)| *key).collect();
        let gone_ns = gone_namespaces(cur, &candidates);
        let gone_ifaces = self.reader.forget(
            &gone_ifaces,
            |netns| cur.ns_owners.contains_key(&netns),
            &idle_uids,
            &gone_ns,
        );
        cur.forget(&gone_ifaces, &idle_uids);
        self.forget_dead_shadowed(prev, cur);
        let live: HashSet<u32> = cur.ifaces.keys().map(|(netns, _)| *netns).collect();
        self.ifaces.forget(&gone_ifaces, &live);
        for key in &gone_ifaces {
            self.iface_last_active.remove(key);
        }
        for uid in &idle_uids {
            self.uid_last_active.remove(uid);
        }
        if !idle_uids.is_empty() {
            self.uid_map_full = false; // room again: a next overflow is a new episode
        }
        let mut rows = vec![Rows::from(net), Rows::from(uids)];
        rows.extend(overflow_event);
        rows.extend(folded.into_iter().map(Rows::event));
        rows.extend(overflow_events);
        rows
    }

    /// The maps' counters, and the kernel's error and drop counters of the namespaces
    /// they saw.
    fn sample(&mut self) -> anyhow::Result<NetSample> {
        let mut sample = self.reader.sample()?;
        // Only root's namespaces: reading another namespace's counters means entering it
        // on a thread of its own, and a user can make thousands (docs/security.md).
        let namespaces: BTreeSet<u32> = sample
            .ifaces
            .keys()
            .map(|(netns, _)| *netns)
            .filter(|netns| !sample.ns_owners.contains_key(netns))
            .collect();
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
        let names = self.names(first);
        // The overflow counters are not in the state file: a recovery leaves them out
        // (they are counted again from the first interval on).
        let (net, _) = net_rows(last_written, first, &names);
        let (net, _) = fold_rows_per_owner(net, &first.ns_owners);
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
    /// Names of the interfaces of `sample`, within the naming budget.
    fn names(&mut self, sample: &NetSample) -> BTreeMap<IfaceKey, IfaceName> {
        let keys = iface_keys(sample);
        let reader = &self.reader;
        self.ifaces.resolve_with(
            &keys,
            &|netns| sample.ns_owners.contains_key(&netns),
            &|netns| reader.ns_pid(netns),
        )
    }

    /// Interfaces whose map entries are deleted now: gone from their namespace, idle
    /// for [`IFACE_IDLE_NS`] in a namespace a user owns, or (root's) found nowhere and
    /// idle. Root's are not deleted for idleness: a packet landing between the read and
    /// the delete would be lost, and root's entries are bounded by what root creates.
    fn gone_ifaces(
        &mut self,
        cur: &NetSample,
        names: &BTreeMap<IfaceKey, IfaceName>,
        active: &BTreeSet<IfaceKey>,
    ) -> Vec<IfaceKey> {
        let now = cur.at.mono_ns;
        for key in cur.ifaces.keys() {
            self.iface_last_active.entry(*key).or_insert(now);
        }
        for key in active {
            self.iface_last_active.insert(*key, now);
        }
        let idle: HashSet<IfaceKey> = idle_keys(&self.iface_last_active, now, IFACE_IDLE_NS)
            .into_iter()
            .collect();
        names
            .iter()
            .filter(|(key, name)| match name {
                IfaceName::Gone => true,
                _ if cur.ns_owners.contains_key(&key.0) => idle.contains(key),
                IfaceName::Unknown => !active.contains(key),
                IfaceName::Named(_) => false,
            })
            .map(|(key, _)| *key)
            .collect()
    }

    /// Deletes the users' entries shadowed by root's namespace (see
    /// [`NetSample::shadowed`]) that did not move over the interval: their namespace is
    /// dead (a live namespace holds its inode, and it is root's). One that moved is a
    /// user's live namespace beside an entry of root's dead one (deleted once found
    /// gone): it is kept, and counted again when no longer shadowed.
    fn forget_dead_shadowed(&mut self, prev: &NetSample, cur: &mut NetSample) {
        let dead: Vec<(IfaceKey, IfaceCounters)> = cur
            .shadowed
            .iter()
            .filter(|(key, counters)| prev.shadowed.get(key) == Some(counters))
            .map(|(key, counters)| (*key, *counters))
            .collect();
        if dead.is_empty() {
            return;
        }
        let deleted = self.reader.forget(&dead, |_| true, &[], &[]);
        for key in &deleted {
            cur.shadowed.remove(key);
        }
    }

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
        let (ifaces, user_ifaces, uids) = self.reader.map_sizes();
        format!("{when}: ifaces={ifaces} uids={uids} user_ifaces={user_ifaces}")
    }
}

/// Namespaces of `gone` none of whose interfaces is left in `cur`.
fn gone_namespaces(cur: &NetSample, gone: &[IfaceKey]) -> Vec<u32> {
    let gone_keys: HashSet<IfaceKey> = gone.iter().copied().collect();
    let left: HashSet<u32> = cur
        .ifaces
        .keys()
        .filter(|key| !gone_keys.contains(key))
        .map(|(netns, _)| *netns)
        .collect();
    let namespaces: BTreeSet<u32> = gone.iter().map(|(netns, _)| *netns).collect();
    namespaces
        .into_iter()
        .filter(|netns| !left.contains(netns))
        .collect()
}

fn row_bytes(row: &NetRow) -> i64 {
    row.rx_bytes + row.tx_bytes
}

/// Keeps every row of root's namespaces and up to [`ROWS_PER_OWNER`] rows (the busiest)
/// per uid owning other namespaces; the rest of each owner's rows become one
/// `(other uid=N)` row with their sums, and a `net_folded` event.
fn fold_rows_per_owner(
    rows: Vec<NetRow>,
    owners: &BTreeMap<u32, u32>,
) -> (Vec<NetRow>, Vec<Event>) {
    let mut kept = Vec::with_capacity(rows.len());
    let mut by_owner: BTreeMap<u32, Vec<NetRow>> = BTreeMap::new();
    for row in rows {
        let owner = row
            .netns
            .and_then(|netns| owners.get(&(netns as u32)).copied());
        match owner {
            Some(owner) => by_owner.entry(owner).or_default().push(row),
            None => kept.push(row),
        }
    }
    let mut events = Vec::new();
    for (owner, mut rows) in by_owner {
        if rows.len() > ROWS_PER_OWNER {
            rows.sort_by_key(|row| std::cmp::Reverse(row_bytes(row)));
            let rest = rows.split_off(ROWS_PER_OWNER);
            let other = summed_row(&rest, format!("(other uid={owner})"));
            events.push(Event::NetFolded {
                uid: owner as i64,
                ifaces: rest.len() as i64,
                bytes: row_bytes(&other),
            });
            rows.push(other);
        }
        kept.extend(rows);
    }
    (kept, events)
}

/// One row holding the sums of `rows` (all of one interval), under `iface`.
fn summed_row(rows: &[NetRow], iface: String) -> NetRow {
    let first = &rows[0];
    let mut sum = NetRow {
        ts_us: first.ts_us,
        dur_ms: first.dur_ms,
        iface,
        ifindex: 0,
        netns: None,
        rx_bytes: 0,
        tx_bytes: 0,
        rx_packets: 0,
        tx_packets: 0,
        source: Source::Ebpf,
        ..Default::default()
    };
    for row in rows {
        sum.rx_bytes += row.rx_bytes;
        sum.tx_bytes += row.tx_bytes;
        sum.rx_packets += row.rx_packets;
        sum.tx_packets += row.tx_packets;
        sum.rx_errors = sum_known(sum.rx_errors, row.rx_errors);
        sum.tx_errors = sum_known(sum.tx_errors, row.tx_errors);
        sum.rx_dropped = sum_known(sum.rx_dropped, row.rx_dropped);
        sum.tx_dropped = sum_known(sum.tx_dropped, row.tx_dropped);
    }
    sum
}

/// `(overflow uid=N)` rows: traffic of interfaces the maps had no entry for, per owner.
fn overflow_rows(prev: &NetSample, cur: &NetSample) -> Vec<(u32, NetRow)> {
    let dur_ms = Stamp::dur_ms(prev.at, cur.at);
    iface_overflow_deltas(prev, cur)
        .into_iter()
        .map(|(owner, d)| {
            (
                owner,
                NetRow {
                    ts_us: cur.at.wall_us,
                    dur_ms,
                    iface: overflow_label(owner),
                    ifindex: 0,
                    netns: None,
                    rx_bytes: d.rx_bytes as i64,
                    tx_bytes: d.tx_bytes as i64,
                    rx_packets: d.rx_packets as i64,
                    tx_packets: d.tx_packets as i64,
                    source: Source::Ebpf,
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn overflow_label(owner: u32) -> String {
    if owner == OVERFLOW_UID {
        "(overflow)".to_string()
    } else {
        format!("(overflow uid={owner})")
    }
}

fn overflow_event_of((owner, row): &(u32, NetRow)) -> Rows {
    let uid = if *owner == OVERFLOW_UID {
        OVERFLOW_ROW_UID
    } else {
        *owner as i64
    };
    Rows::event(Event::NetDevOverflow {
        uid,
        bytes: row_bytes(row),
    })
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

    fn row(netns: i64, ifindex: i64, bytes: i64) -> NetRow {
        NetRow {
            ts_us: 7,
            dur_ms: 1000,
            iface: format!("if{ifindex}"),
            ifindex,
            netns: Some(netns),
            rx_bytes: bytes,
            tx_bytes: 1,
            rx_packets: 1,
            tx_packets: 1,
            source: Source::Ebpf,
            ..Default::default()
        }
    }

    #[test]
    fn a_users_rows_beyond_the_budget_are_summed_and_roots_are_all_kept() {
        let owners = BTreeMap::from([(20, 1000), (21, 1000), (30, 1001)]);
        let mut rows: Vec<NetRow> = (0..40).map(|i| row(20 + i % 2, i, 100 + i)).collect();
        rows.extend((0..50).map(|i| row(10, i, 1)));
        rows.push(row(30, 1, 5));
        let total: i64 = rows.iter().map(row_bytes).sum();
        let (kept, events) = fold_rows_per_owner(rows, &owners);
        assert_eq!(
            kept.iter().map(row_bytes).sum::<i64>(),
            total,
            "no byte lost"
        );
        assert_eq!(kept.iter().filter(|r| r.netns == Some(10)).count(), 50);
        let users: Vec<&NetRow> = kept
            .iter()
            .filter(|r| matches!(r.netns, Some(20) | Some(21)))
            .collect();
        assert_eq!(users.len(), ROWS_PER_OWNER);
        // The busiest are kept: the folded ones are the 8 smallest.
        assert!(users.iter().all(|r| r.rx_bytes >= 108));
        let other: Vec<&NetRow> = kept
            .iter()
            .filter(|r| r.iface == "(other uid=1000)")
            .collect();
        assert_eq!(other.len(), 1);
        assert_eq!((other[0].rx_packets, other[0].netns), (8, None));
        assert_eq!(kept.iter().filter(|r| r.netns == Some(30)).count(), 1);
        assert_eq!(
            events,
            vec![Event::NetFolded {
                uid: 1000,
                ifaces: 8,
                bytes: (100..108).sum::<i64>() + 8,
            }]
        );
    }

    #[test]
    fn gone_namespaces_are_those_with_no_interface_left() {
        let mut cur = NetSample::default();
        for key in [(1, 1), (1, 2), (2, 1)] {
            cur.ifaces.insert(key, Default::default());
        }
        assert_eq!(gone_namespaces(&cur, &[(1, 1), (2, 1)]), vec![2]);
    }

    #[test]
    fn the_overflow_slot_is_never_deleted_as_idle() {
        let last_active = BTreeMap::from([(1000, 0), (OVERFLOW_UID, 0), (1001, UID_IDLE_NS)]);
        assert_eq!(idle_uids(&last_active, UID_IDLE_NS), vec![1000]);
    }
}

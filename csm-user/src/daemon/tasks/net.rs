//! Traffic per interface and per uid: a sample every interval, the model's deltas into
//! `net` and `net_uid` rows, and the maps kept bounded by deleting what is gone.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::{every, Step};
use crate::daemon::{Ctx, Rows};
use crate::model::net::{dur_ms, idle_keys, iface_deltas, uid_deltas, IfaceKey};
use crate::model::NetSample;
use crate::sources::ebpf::NetReader;
use crate::sources::netns::{IfaceName, IfaceNames};
use crate::sources::users::UserNames;
use crate::store::{Counters, Event, NetRow, NetUidRow, Recovered, Source};

/// A uid's map entry is deleted after this long without traffic. A uid has no "gone"
/// event; deleting only long-idle entries makes losing a packet that lands between the
/// last read and the delete very unlikely.
const UID_IDLE_NS: u64 = 600 * 1_000_000_000;

struct NetTask {
    reader: NetReader,
    ifaces: IfaceNames,
    users: UserNames,
    prev: NetSample,
    /// CLOCK_MONOTONIC ns of each uid's last traffic (or first sight).
    uid_last_active: BTreeMap<u32, u64>,
}

/// `resume`: the last sample whose rows a crashed run wrote; the pinned counters kept
/// counting since, and that traffic becomes one row per interface and uid.
pub async fn run(ctx: Ctx, reader: NetReader, resume: Option<NetSample>) {
    let prev = match reader.sample() {
        Ok(sample) => sample,
        Err(err) => {
            warn!("first network sample failed; traffic is not collected: {err:#}");
            ctx.event(Event::CollectorError(format!("net: {err:#}")));
            return;
        }
    };
    let mut task = NetTask {
        ifaces: IfaceNames::new(ctx.settings.paths.clone()),
        users: UserNames::default(),
        uid_last_active: BTreeMap::new(),
        prev,
        reader,
    };
    ctx.event(Event::NetMaps(task.map_sizes("start")));
    if let Some(last_written) = resume {
        task.recover(&ctx, last_written);
    }
    ctx.send(Rows::NetTotals(task.prev.clone()));
    every(ctx.settings.interval, ctx.shutdown.clone(), |step: Step| {
        task.step(&ctx);
        if step == Step::Final {
            ctx.event(Event::NetMaps(task.map_sizes("stop")));
        }
    })
    .await;
}

impl NetTask {
    fn step(&mut self, ctx: &Ctx) {
        let mut cur = match self.reader.sample() {
            Ok(sample) => sample,
            Err(err) => {
                warn!("network sample failed, interval skipped: {err:#}");
                return;
            }
        };
        let prev = std::mem::take(&mut self.prev);
        let keys: Vec<IfaceKey> = cur.ifaces.keys().copied().collect();
        let names = self.ifaces.resolve(&keys);
        let (net, active) = net_rows(&prev, &cur, &names);
        ctx.send(Rows::Net(net));
        ctx.send(Rows::NetUid(self.uid_rows(&prev, &cur)));

        // Drained: now delete what is gone, here and in the kernel.
        let gone_ifaces: Vec<IfaceKey> = names
            .iter()
            .filter(|(key, name)| match name {
                IfaceName::Gone => true,
                IfaceName::Unknown => !active.contains(key),
                IfaceName::Named(_) => false,
            })
            .map(|(key, _)| *key)
            .collect();
        let idle_uids = idle_keys(&self.uid_last_active, cur.mono_ns, UID_IDLE_NS);
        self.reader.forget(&gone_ifaces, &idle_uids);
        cur.forget(&gone_ifaces, &idle_uids);
        for uid in &idle_uids {
            self.uid_last_active.remove(uid);
        }
        ctx.send(Rows::NetTotals(cur.clone()));
        self.prev = cur;
    }

    /// Rows for the time the daemon was down: from the last sample a crashed run wrote
    /// to this run's first sample.
    fn recover(&mut self, ctx: &Ctx, last_written: NetSample) {
        let first = self.prev.clone();
        let keys: Vec<IfaceKey> = first.ifaces.keys().copied().collect();
        let names = self.ifaces.resolve(&keys);
        let (net, _) = net_rows(&last_written, &first, &names);
        let uids = self.uid_rows(&last_written, &first);
        let bytes: i64 = net.iter().map(|r| r.rx_bytes + r.tx_bytes).sum();
        let gap_ms = dur_ms(&last_written, &first);
        info!("recovered {gap_ms} ms of traffic accounting from the pinned counters");
        ctx.event(Event::Recovered(Recovered::Gap {
            counters: Counters::Net,
            gap_ms,
            from_us: last_written.wall_us,
            extra: format!("bytes={bytes} ifaces={} uids={}", net.len(), uids.len()),
        }));
        ctx.send(Rows::Net(net));
        ctx.send(Rows::NetUid(uids));
    }

    fn uid_rows(&mut self, prev: &NetSample, cur: &NetSample) -> Vec<NetUidRow> {
        let dur_ms = dur_ms(prev, cur);
        let now = cur.mono_ns;
        for uid in cur.uids.keys() {
            self.uid_last_active.entry(*uid).or_insert(now);
        }
        uid_deltas(prev, cur)
            .into_iter()
            .map(|(uid, d)| {
                self.uid_last_active.insert(uid, now);
                NetUidRow {
                    ts_us: cur.wall_us,
                    dur_ms,
                    uid: uid as i64,
                    user: self.users.name(uid),
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

/// `net` rows, and the interfaces that had traffic.
fn net_rows(
    prev: &NetSample,
    cur: &NetSample,
    names: &BTreeMap<IfaceKey, IfaceName>,
) -> (Vec<NetRow>, BTreeSet<IfaceKey>) {
    let dur_ms = dur_ms(prev, cur);
    let deltas = iface_deltas(prev, cur);
    let active = deltas.iter().map(|(key, _)| *key).collect();
    let rows = deltas
        .into_iter()
        .map(|((netns, ifindex), d)| NetRow {
            ts_us: cur.wall_us,
            dur_ms,
            iface: names
                .get(&(netns, ifindex))
                .unwrap_or(&IfaceName::Unknown)
                .label(ifindex),
            ifindex: ifindex as i64,
            netns: Some(netns as i64),
            rx_bytes: d.rx_bytes as i64,
            tx_bytes: d.tx_bytes as i64,
            rx_packets: d.rx_packets as i64,
            tx_packets: d.tx_packets as i64,
            source: Source::Ebpf,
        })
        .collect();
    (rows, active)
}

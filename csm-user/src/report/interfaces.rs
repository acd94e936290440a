//! The interfaces section: bytes and packets in and out per interface, each network
//! namespace apart, with the peak rate and the kernel's error and drop counts; with `--by` one row per hour, day or month of the
//! report's time zone, as `vnstat -d` / `-m` show them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::Serialize;

use csm_store::netns::NetnsLabels;
use csm_store::rollup::sum_known;
use csm_store::units::{bytes, rate};
use csm_store::zone::Zone;

use super::render::{SectionOutput, TextContext};
use super::request::{rfc3339, Period};
use super::spans::NetSpan;
use super::table::{CsvTable, TextTable};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Interface {
    /// The network namespace's inode; null from /proc (the host's own).
    pub netns: Option<i64>,
    /// The namespace as the text shows it (csm-store's one label: `host`, its
    /// `/run/netns` name, its owner process, `inode-<n>`); JSON and CSV keep the inode.
    #[serde(skip)]
    pub netns_label: String,
    pub iface: String,
    /// With `--by`: the period's label in the report's zone (`2026-11-25`, `2026-11`,
    /// `2026-11-25 10:00`) and its start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start: Option<String>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
    /// The highest single interval's rate, bytes per second.
    pub rx_bytes_per_s_peak: f64,
    pub tx_bytes_per_s_peak: f64,
    /// The kernel's own counts (`sar -n EDEV`); null where no row knew them (files
    /// written before they were collected).
    pub rx_errors: Option<i64>,
    pub tx_errors: Option<i64>,
    pub rx_dropped: Option<i64>,
    pub tx_dropped: Option<i64>,
}

impl SectionOutput for Vec<Interface> {
    fn text(&self, ctx: &TextContext, out: &mut String) {
        out.push_str("\nInterfaces\n");
        let mut header = vec!["netns", "iface"];
        if let Some(by) = ctx.by {
            header.push(match by {
                Period::Hour => "hour",
                Period::Month => "month",
                Period::Day => "day",
            });
        }
        let left = header.len();
        header.extend([
            "rx",
            "tx",
            "total",
            "rx peak",
            "tx peak",
            "rx packets",
            "tx packets",
            "rx errs",
            "tx errs",
            "rx drop",
            "tx drop",
        ]);
        let mut table = TextTable::new(header, left);
        // `-`: not known (files written before csm collected them).
        let count = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        for line in self {
            let mut row = vec![line.netns_label.clone(), line.iface.clone()];
            if let Some(period) = &line.period {
                row.push(period.clone());
            }
            row.extend([
                bytes(line.rx_bytes),
                bytes(line.tx_bytes),
                bytes(line.rx_bytes + line.tx_bytes),
                rate(line.rx_bytes_per_s_peak),
                rate(line.tx_bytes_per_s_peak),
                line.rx_packets.to_string(),
                line.tx_packets.to_string(),
                count(line.rx_errors),
                count(line.tx_errors),
                count(line.rx_dropped),
                count(line.tx_dropped),
            ]);
            table.push(row);
        }
        table.write(out);
    }

    fn csv(&self) -> Vec<CsvTable> {
        vec![CsvTable::of("interfaces", self)]
    }
}

/// The interfaces section folded as the rows are read: one line per (namespace,
/// interface, period), so that what it holds grows with the interfaces of the range, not
/// with its rows.
pub struct InterfacesFold<'a> {
    by: Option<Period>,
    zone: &'a Zone,
    lines: BTreeMap<(Option<i64>, String, i64), Interface>,
    /// The interfaces of one interval share its `ts`, and rows come in time order: the
    /// period (a formatted date in a zone) is found once per interval, not once per row.
    last: Option<(i64, Option<(String, i64)>)>,
}

/// What a line holds besides its interface's name, charged to the command's budget: the
/// key and the line (about 300 bytes) in a B-tree's half-full nodes, doubled. Measured
/// (heaptrack, a million-name file refused at the 128 MiB budget): 99 MB of lines, 485
/// bytes each, below this charge.
const LINE_BYTES: u64 = 640;

impl<'a> InterfacesFold<'a> {
    pub fn new(by: Option<Period>, zone: &'a Zone) -> InterfacesFold<'a> {
        InterfacesFold {
            by,
            zone,
            lines: BTreeMap::new(),
            last: None,
        }
    }

    /// `--by` and the zone: what an empty fold of the same kind is made of.
    pub fn params(&self) -> (Option<Period>, &'a Zone) {
        (self.by, self.zone)
    }

    /// Folds one row; returns the bytes it added to what the fold holds.
    pub fn add(&mut self, mut row: NetSpan) -> u64 {
        if self
            .last
            .as_ref()
            .is_none_or(|(ts_us, _)| *ts_us != row.ts_us)
        {
            let period = self.by.map(|by| period_of(by, self.zone, row.ts_us));
            self.last = Some((row.ts_us, period));
        }
        let period = self.last.as_ref().and_then(|(_, period)| period.as_ref());
        let key = (
            row.netns,
            std::mem::take(&mut row.iface),
            period.map_or(0, |p| p.1),
        );
        let mut grown = 0;
        let line = match self.lines.entry(key) {
            Entry::Occupied(line) => line.into_mut(),
            Entry::Vacant(vacant) => {
                grown = LINE_BYTES + 2 * vacant.key().1.len() as u64;
                let (netns, iface, _) = vacant.key().clone();
                vacant.insert(Interface::empty(netns, iface, period))
            }
        };
        line.add(&row);
        grown
    }

    /// Adds a fold of rows read after this one's; returns the bytes this one grew by.
    pub fn merge(&mut self, later: InterfacesFold) -> u64 {
        let mut grown = 0;
        for (key, line) in later.lines {
            match self.lines.entry(key) {
                Entry::Occupied(mut mine) => mine.get_mut().merge(&line),
                Entry::Vacant(vacant) => {
                    grown += LINE_BYTES + 2 * vacant.key().1.len() as u64;
                    vacant.insert(line);
                }
            }
        }
        grown
    }

    /// Whether no row was folded.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The section's lines, namespaces named by `labels`.
    pub fn finish(self, labels: &mut NetnsLabels) -> Vec<Interface> {
        let mut lines: Vec<Interface> = self.lines.into_values().collect();
        for line in &mut lines {
            line.netns_label = labels.label(line.netns);
        }
        lines
    }
}

impl Interface {
    fn empty(netns: Option<i64>, iface: String, period: Option<&(String, i64)>) -> Interface {
        Interface {
            netns,
            netns_label: String::new(),
            iface,
            period: period.map(|p| p.0.clone()),
            period_start: period.map(|p| rfc3339(p.1)),
            rx_bytes: 0,
            tx_bytes: 0,
            rx_packets: 0,
            tx_packets: 0,
            rx_bytes_per_s_peak: 0.0,
            tx_bytes_per_s_peak: 0.0,
            rx_errors: None,
            tx_errors: None,
            rx_dropped: None,
            tx_dropped: None,
        }
    }

    fn add(&mut self, row: &NetSpan) {
        self.rx_bytes += row.rx_bytes;
        self.tx_bytes += row.tx_bytes;
        self.rx_packets += row.rx_packets;
        self.tx_packets += row.tx_packets;
        self.rx_bytes_per_s_peak = self.rx_bytes_per_s_peak.max(row.rx_peak);
        self.tx_bytes_per_s_peak = self.tx_bytes_per_s_peak.max(row.tx_peak);
        self.add_kernel_counts([row.rx_errors, row.tx_errors, row.rx_dropped, row.tx_dropped]);
    }

    fn merge(&mut self, later: &Interface) {
        self.rx_bytes += later.rx_bytes;
        self.tx_bytes += later.tx_bytes;
        self.rx_packets += later.rx_packets;
        self.tx_packets += later.tx_packets;
        self.rx_bytes_per_s_peak = self.rx_bytes_per_s_peak.max(later.rx_bytes_per_s_peak);
        self.tx_bytes_per_s_peak = self.tx_bytes_per_s_peak.max(later.tx_bytes_per_s_peak);
        self.add_kernel_counts([
            later.rx_errors,
            later.tx_errors,
            later.rx_dropped,
            later.tx_dropped,
        ]);
    }

    /// Adds errors and drops (rx, tx, rx, tx), each null while no row knew it.
    fn add_kernel_counts(&mut self, [rx_err, tx_err, rx_drop, tx_drop]: [Option<i64>; 4]) {
        self.rx_errors = sum_known(self.rx_errors, rx_err);
        self.tx_errors = sum_known(self.tx_errors, tx_err);
        self.rx_dropped = sum_known(self.rx_dropped, rx_drop);
        self.tx_dropped = sum_known(self.tx_dropped, tx_drop);
    }
}

/// The section from `net` rows in time order, namespaces named by `labels`.
#[cfg(test)]
fn interfaces(
    rows: &[NetSpan],
    by: Option<Period>,
    zone: &Zone,
    labels: &mut NetnsLabels,
) -> Vec<Interface> {
    let mut fold = InterfacesFold::new(by, zone);
    for row in rows {
        fold.add(row.clone());
    }
    fold.finish(labels)
}

/// The period holding a row (by the end of its interval, less a microsecond: a row
/// ending at midnight belongs to the day before) and the period's start, in `zone`.
pub fn period_of(by: Period, zone: &Zone, ts_us: i64) -> (String, i64) {
    let at = ts_us - 1;
    let local = zone.local(at);
    let (label, start) = match by {
        Period::Hour => (
            local.format("%Y-%m-%d %H:00").to_string(),
            local
                .date_naive()
                .and_hms_opt(chrono::Timelike::hour(&local), 0, 0),
        ),
        Period::Day => (
            local.format("%Y-%m-%d").to_string(),
            local.date_naive().and_hms_opt(0, 0, 0),
        ),
        Period::Month => (
            local.format("%Y-%m").to_string(),
            local
                .date_naive()
                .with_day(1)
                .and_then(|d| d.and_hms_opt(0, 0, 0)),
        ),
    };
    let naive_us = start.map_or(at, |s| s.and_utc().timestamp_micros());
    // The period's start in UTC, by the offset in force then (daylight saving time).
    let offset_us = |t: i64| zone.offset_at(t).local_minus_utc() as i64 * 1_000_000;
    let guess = naive_us - offset_us(at);
    (label, naive_us - offset_us(guess))
}

use chrono::Datelike;

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    /// 2026-03-29 00:00 UTC: that night Europe/Berlin moves from +01:00 to +02:00.
    const MAR29: i64 = 1_774_742_400_000_000;

    /// Labels without named namespaces nor processes: `host` or `inode-<n>`.
    fn no_names() -> NetnsLabels {
        NetnsLabels::with_roots(Vec::new(), "/nonexistent".into())
    }

    fn span(ts_us: i64, iface: &str, netns: Option<i64>, rx: i64) -> NetSpan {
        NetSpan {
            ts_us,
            dur_ms: 1000,
            netns,
            iface: iface.into(),
            rx_bytes: rx,
            tx_bytes: 2 * rx,
            rx_packets: 1,
            tx_packets: 2,
            rx_peak: rx as f64,
            tx_peak: 2.0 * rx as f64,
            rx_errors: None,
            tx_errors: Some(0),
            rx_dropped: netns.map(|_| rx % 3),
            tx_dropped: Some(1),
        }
    }

    #[test]
    fn same_named_interfaces_of_two_namespaces_stay_apart() {
        let rows = [
            span(H, "eth0", Some(1), 100),
            span(H + 1_000_000, "eth0", Some(1), 300),
            span(H, "eth0", Some(2), 5),
        ];
        let lines = interfaces(&rows, None, &Zone::utc(), &mut no_names());
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].netns, lines[0].rx_bytes, lines[0].tx_bytes),
            (Some(1), 400, 800)
        );
        assert_eq!(
            (lines[0].rx_packets, lines[0].rx_bytes_per_s_peak),
            (2, 300.0)
        );
        assert_eq!((lines[1].netns, lines[1].rx_bytes), (Some(2), 5));
        assert_eq!(lines[1].netns_label, "inode-2");
        let errors = |l: &Interface| (l.rx_errors, l.tx_errors, l.rx_dropped, l.tx_dropped);
        assert_eq!(errors(&lines[0]), (None, Some(0), Some(1), Some(2)));
        assert_eq!(errors(&lines[1]), (None, Some(0), Some(2), Some(1)));
    }

    #[test]
    fn days_follow_the_zone_and_its_daylight_saving_time() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        // 22:30 UTC on the 28th is 23:30 in Berlin (+01:00): still the 28th; 22:30 UTC on
        // the 29th is 00:30 on the 30th (+02:00).
        let rows = [
            span(MAR29 - H - H / 2, "lo", None, 1),
            span(MAR29 + 22 * H + H / 2, "lo", None, 2),
            span(MAR29 + 12 * H, "lo", None, 4),
        ];
        let lines = interfaces(&rows, Some(Period::Day), &berlin, &mut no_names());
        let days: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l.period.clone().unwrap(),
                    l.period_start.clone().unwrap(),
                    l.rx_bytes,
                )
            })
            .collect();
        assert_eq!(
            days,
            vec![
                ("2026-03-28".into(), "2026-03-27T23:00:00.000000Z".into(), 1),
                ("2026-03-29".into(), "2026-03-28T23:00:00.000000Z".into(), 4),
                ("2026-03-30".into(), "2026-03-29T22:00:00.000000Z".into(), 2),
            ]
        );
        // A row ending exactly at midnight UTC belongs to the day before.
        assert_eq!(period_of(Period::Day, &Zone::utc(), MAR29).0, "2026-03-28");
        assert_eq!(
            period_of(Period::Month, &Zone::utc(), MAR29 + H).0,
            "2026-03"
        );
    }
}

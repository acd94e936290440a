//! Errors and drops per interface, for the `net-errors` charts: the kernel's counters
//! that `net` and `net_1m` carry since schema version 3. Read through the store's typed
//! reader, which reads the columns as nulls from files written before them: those rows
//! add nothing, and an interface none of whose rows knows them has no chart.

use std::collections::BTreeMap;

use csm_store::names::safe_text;
use csm_store::{read_columns, NetMinuteRow, NetRow, Table};

use crate::bins::{Binned, Grid};
use crate::data::{table_files, NamespaceLabels, NetKey};
use crate::read::{DataTree, Problems};

const US_PER_MS: i64 = 1000;

/// Per interface: errors and drops per second each way, and the range's totals.
pub struct NetErrorData {
    /// rx_errors + rx_dropped per second.
    pub rx: Binned,
    /// tx_errors + tx_dropped per second.
    pub tx: Binned,
    pub totals: BTreeMap<String, LinkTotals>,
    /// Each key's interface and network namespace.
    pub interfaces: BTreeMap<String, NetKey>,
}

/// The range's sums of the four counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkTotals {
    pub rx_errors: i64,
    pub tx_errors: i64,
    pub rx_dropped: i64,
    pub tx_dropped: i64,
}

impl LinkTotals {
    pub fn any(&self) -> bool {
        *self != LinkTotals::default()
    }
}

/// What one `net` or `net_1m` row says of them.
struct Span {
    ts_us: i64,
    dur_ms: i64,
    iface: String,
    netns: Option<i64>,
    counts: [Option<i64>; 4],
}

/// The same names in `net` and `net_1m`.
const COLUMNS: [&str; 8] = [
    NetRow::COLUMN.ts_us,
    NetRow::COLUMN.dur_ms,
    NetRow::COLUMN.iface,
    NetRow::COLUMN.netns,
    NetRow::COLUMN.rx_errors,
    NetRow::COLUMN.tx_errors,
    NetRow::COLUMN.rx_dropped,
    NetRow::COLUMN.tx_dropped,
];

fn spans_of(table: Table, path: &std::path::Path) -> std::io::Result<Vec<Span>> {
    macro_rules! spans {
        ($row:ty) => {
            read_columns::<$row>(path, &COLUMNS)?
                .into_iter()
                .map(|r| Span {
                    ts_us: r.ts_us,
                    dur_ms: r.dur_ms,
                    iface: r.iface,
                    netns: r.netns,
                    counts: [r.rx_errors, r.tx_errors, r.rx_dropped, r.tx_dropped],
                })
                .collect()
        };
    }
    Ok(match table {
        Table::NetMinute => spans!(NetMinuteRow),
        _ => spans!(NetRow),
    })
}

pub fn load_net_errors(
    tree: &DataTree,
    grid: Grid,
    problems: &mut Problems,
) -> Option<NetErrorData> {
    let files = table_files(tree, Table::Net, Some(Table::NetMinute), &grid, problems)?;
    let mut data = NetErrorData {
        rx: Binned::new(grid),
        tx: Binned::new(grid),
        totals: BTreeMap::new(),
        interfaces: BTreeMap::new(),
    };
    let mut labels = NamespaceLabels::default();
    for (table, path) in &files {
        match spans_of(*table, path) {
            Ok(spans) => spans
                .into_iter()
                .for_each(|span| add(&mut data, &mut labels, span)),
            Err(err) => problems.unreadable.push(format!("cannot read {err}")),
        }
    }
    if !data.totals.values().any(LinkTotals::any) {
        problems.notes.push(format!(
            "no errors or drops for host {} in the range on any interface (or only files \
             written before csm collected them): the net-errors charts are skipped",
            tree.host
        ));
        return None;
    }
    Some(data)
}

fn add(data: &mut NetErrorData, labels: &mut NamespaceLabels, span: Span) {
    let grid = data.rx.grid;
    let end = span.ts_us;
    let start = end - span.dur_ms.max(1) * US_PER_MS;
    if end <= grid.from_us || start >= grid.to_us || span.counts.iter().all(Option::is_none) {
        return;
    }
    let [rx_errors, tx_errors, rx_dropped, tx_dropped] = span.counts.map(|c| c.unwrap_or(0));
    let net_key = NetKey {
        iface: safe_text(&span.iface).into_owned(),
        namespace: labels.get(span.netns),
    };
    let name = net_key.key();
    data.interfaces.entry(name.clone()).or_insert(net_key);
    // Both tables get keys together, so their slots agree.
    let slot = data.rx.key_index(&name);
    data.tx.key_index(&name);
    let seconds = (end - start) as f64 / 1e6;
    let rx = (rx_errors + rx_dropped) as f64 / seconds;
    let tx = (tx_errors + tx_dropped) as f64 / seconds;
    data.rx.add_span_at(slot, start, end, rx, rx);
    data.tx.add_span_at(slot, start, end, tx, tx);
    let totals = data.totals.entry(name).or_default();
    totals.rx_errors += rx_errors;
    totals.tx_errors += tx_errors;
    totals.rx_dropped += rx_dropped;
    totals.tx_dropped += tx_dropped;
}

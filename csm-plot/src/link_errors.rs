//! Errors and drops per interface, for the `net-errors` charts: the kernel's counters
//! that `net` and `net_1m` carry since schema version 3, for the busiest interfaces (the
//! others summed, as the traffic charts). Read through the store's typed reader a batch at
//! a time, which reads the columns as nulls from files written before them: those rows
//! add nothing, and an interface none of whose rows knows them has no chart.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use csm_store::{NetMinuteRow, NetRow, Table};

use crate::bins::{Binned, Grid};
use crate::data::{add_weight, table_files, Charted, NamespaceLabels, NetKey};
use crate::read::{read_pair, DataTree, Problems, Spans};

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
    /// How many interfaces are summed under the key of the others (not among the busiest).
    pub others: usize,
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

/// `net` and `net_1m` rows as the error charts take them, a batch at a time.
fn read_spans(files: &[(Table, PathBuf)], take: impl FnMut(Span), problems: &mut Problems) {
    macro_rules! span {
        ($row:ty) => {
            |r: $row| Span {
                ts_us: r.ts_us,
                dur_ms: r.dur_ms,
                iface: r.iface,
                netns: r.netns,
                counts: [r.rx_errors, r.tx_errors, r.rx_dropped, r.tx_dropped],
            }
        };
    }
    let (raw, minute) = (span!(NetRow), span!(NetMinuteRow));
    let spans = Spans {
        raw: (&COLUMNS, raw),
        minute: (&COLUMNS, minute),
    };
    read_pair(files, spans, take, problems);
}

impl Span {
    fn start(&self) -> i64 {
        self.ts_us - self.dur_ms.max(1) * US_PER_MS
    }

    /// Whether the row counts anything in the range.
    fn counts_in(&self, grid: &Grid) -> bool {
        self.ts_us > grid.from_us
            && self.start() < grid.to_us
            && self.counts.iter().any(Option::is_some)
    }
}

/// Errors and drops per interface: the files are read twice, first for each interface's
/// counts (to chart the busiest), then binned.
pub fn load_net_errors(
    tree: &DataTree,
    grid: Grid,
    problems: &mut Problems,
) -> Option<NetErrorData> {
    let files = table_files(tree, Table::Net, Some(Table::NetMinute), &grid, problems)?;
    let mut weights = HashMap::new();
    let weigh = |span: Span| {
        if span.counts_in(&grid) {
            let counted: i64 = span.counts.iter().flatten().sum();
            add_weight(&mut weights, span.netns, &span.iface, counted as f64);
        }
    };
    // The second pass says what could not be read.
    read_spans(&files, weigh, &mut Problems::default());
    let charted = Charted::busiest(weights);
    let mut data = NetErrorData {
        rx: Binned::new(grid),
        tx: Binned::new(grid),
        totals: BTreeMap::new(),
        interfaces: BTreeMap::new(),
        others: charted.others,
    };
    let mut labels = NamespaceLabels::default();
    read_spans(
        &files,
        |span| add(&mut data, &mut labels, &charted, span),
        problems,
    );
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

fn add(data: &mut NetErrorData, labels: &mut NamespaceLabels, charted: &Charted, span: Span) {
    let grid = data.rx.grid;
    if !span.counts_in(&grid) {
        return;
    }
    let (start, end) = (span.start(), span.ts_us);
    let [rx_errors, tx_errors, rx_dropped, tx_dropped] = span.counts.map(|c| c.unwrap_or(0));
    let net_key = charted.key(labels, span.netns, &span.iface);
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

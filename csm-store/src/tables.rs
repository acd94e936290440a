//! Every table csm writes, declared once. A line is a column: field, column name when it
//! differs (`as "ts"`), Rust type, [`Kind`](crate::column::Kind) (which sets the Arrow
//! type, the encoding and the rounding). Schema, writer, reader and the column-name
//! constants come from these declarations.
//!
//! To add a column: add its line here (new columns are `Option<…>`, so files written
//! before read as nulls), bump [`SCHEMA_VERSION`](crate::SCHEMA_VERSION), extend the
//! contract test in `table.rs` and `docs/TABLES.md`, and fill the field where rows are made.
//!
//! `ts` is TIMESTAMP(MICROS, UTC): for counter rows the end of the interval the row
//! covers (`dur_ms` long); for gauges (`mem`, `ubc`) the sampling time; for `ping` the
//! time the measurement started; for roll-ups the end of the minute.

use crate::events::Source;

crate::table! {
    /// CPU time of one uid in one interval (only uids that ran).
    pub struct CpuRow in Cpu, names CpuColumns {
        ts_us as "ts": i64 = Time,
        dur_ms: i64 = Measured,
        uid: i64 = Id,
        /// Null when the uid has no name.
        user: Option<String> = Text,
        cpu_ns: i64 = Measured,
        /// 100 = one core.
        cpu_pct: f64 = Rate,
        source: Source = Text,
    }
}

crate::table! {
    /// Memory of one uid's processes at one sample.
    pub struct MemRow in Mem, names MemColumns {
        ts_us as "ts": i64 = Time,
        uid: i64 = Id,
        user: Option<String> = Text,
        nproc: i64 = Id,
        rss_bytes: i64 = Measured,
        /// Null where smaps_rollup cannot be read.
        pss_bytes: Option<i64> = Measured,
        swap_bytes: Option<i64> = Measured,
    }
}

crate::table! {
    /// Traffic of one interface (of one network namespace) in one interval.
    pub struct NetRow in Net, names NetColumns {
        ts_us as "ts": i64 = Time,
        dur_ms: i64 = Measured,
        iface: String = Text,
        ifindex: i64 = Id,
        /// The namespace's inode; null from /proc.
        netns: Option<i64> = Id,
        rx_bytes: i64 = Measured,
        tx_bytes: i64 = Measured,
        rx_packets: i64 = Measured,
        tx_packets: i64 = Measured,
        source: Source = Text,
        /// The kernel's own error and drop counters of the interface (`dev_get_stats`, as
        /// /proc/net/dev, `ip -s link` and `sar -n EDEV` show them); null in files written
        /// before they were collected, and where the interface was new in the interval.
        rx_errors: Option<i64> = Measured,
        tx_errors: Option<i64> = Measured,
        rx_dropped: Option<i64> = Measured,
        tx_dropped: Option<i64> = Measured,
    }
}

crate::table! {
    /// IP-layer bytes of one uid's sockets in one interval.
    pub struct NetUidRow in NetUid, names NetUidColumns {
        ts_us as "ts": i64 = Time,
        dur_ms: i64 = Measured,
        uid: i64 = Id,
        user: Option<String> = Text,
        rx_bytes: i64 = Measured,
        tx_bytes: i64 = Measured,
    }
}

crate::table! {
    /// One scheduled measurement of a ping target (`ts`: when it started).
    pub struct PingRow in Ping, names PingColumns {
        ts_us as "ts": i64 = Time,
        target: String = Text,
        addr: Option<String> = Text,
        sent: i64 = Id,
        received: i64 = Id,
        rtt_min_ms: Option<f64> = Rtt,
        rtt_avg_ms: Option<f64> = Rtt,
        rtt_max_ms: Option<f64> = Rtt,
        rtt_mdev_ms: Option<f64> = Rtt,
        /// Every reply's RTT, for distributions.
        rtts_ms: Vec<f64> = Rtt,
        error: Option<String> = Text,
    }
}

crate::table! {
    /// One OpenVZ beancounter resource at one sample.
    pub struct UbcRow in Ubc, names UbcColumns {
        ts_us as "ts": i64 = Time,
        ctid: i64 = Id,
        resource: String = Text,
        held: i64 = Measured,
        maxheld: i64 = Measured,
        barrier: i64 = Measured,
        /// The file's `limit`, renamed: it is an SQL keyword.
        hard_limit: i64 = Measured,
        failcnt: i64 = Measured,
    }
}

crate::table! {
    /// Something the daemon itself did; see [`Event`](crate::Event) for the typed view.
    pub struct EventRow in Events, names EventColumns {
        ts_us as "ts": i64 = Time,
        event: String = Text,
        detail: Option<String> = Text,
    }
}

// Roll-ups: one row per key and minute of a finished hour (`rollup.rs` computes them).
// `ts` is the end of the minute; keys and names are the raw rows'.

crate::table! {
    pub struct CpuMinuteRow in CpuMinute, names CpuMinuteColumns {
        ts_us as "ts": i64 = Time,
        /// The time the minute's rows cover (more than 60 000 across a recovered gap).
        dur_ms: i64 = Measured,
        uid: i64 = Id,
        user: Option<String> = Text,
        /// Sum over the minute.
        cpu_ns: i64 = Measured,
        /// Mean over the covered time.
        cpu_pct: f64 = Rate,
        /// The highest single interval: spikes survive the roll-up.
        cpu_pct_max: f64 = Rate,
        source: Source = Text,
    }
}

crate::table! {
    pub struct NetMinuteRow in NetMinute, names NetMinuteColumns {
        ts_us as "ts": i64 = Time,
        /// The time the minute's rows cover.
        dur_ms: i64 = Measured,
        iface: String = Text,
        ifindex: i64 = Id,
        netns: Option<i64> = Id,
        /// Sums over the minute.
        rx_bytes: i64 = Measured,
        tx_bytes: i64 = Measured,
        rx_packets: i64 = Measured,
        tx_packets: i64 = Measured,
        /// The highest single interval's rate, bytes per second.
        rx_bytes_per_s_max: f64 = Rate,
        tx_bytes_per_s_max: f64 = Rate,
        source: Source = Text,
        /// Sums over the minute's rows that have them; null when none has.
        rx_errors: Option<i64> = Measured,
        tx_errors: Option<i64> = Measured,
        rx_dropped: Option<i64> = Measured,
        tx_dropped: Option<i64> = Measured,
    }
}

crate::table! {
    pub struct NetUidMinuteRow in NetUidMinute, names NetUidMinuteColumns {
        ts_us as "ts": i64 = Time,
        /// The time the minute's rows cover.
        dur_ms: i64 = Measured,
        uid: i64 = Id,
        user: Option<String> = Text,
        /// Sums over the minute.
        rx_bytes: i64 = Measured,
        tx_bytes: i64 = Measured,
    }
}

crate::table! {
    pub struct MemMinuteRow in MemMinute, names MemMinuteColumns {
        ts_us as "ts": i64 = Time,
        uid: i64 = Id,
        user: Option<String> = Text,
        /// Samples taken in the minute; the others are their means and maxima.
        samples: i64 = Measured,
        nproc_max: i64 = Measured,
        rss_bytes_mean: i64 = Measured,
        rss_bytes_max: i64 = Measured,
        pss_bytes_mean: Option<i64> = Measured,
        swap_bytes_mean: Option<i64> = Measured,
    }
}

crate::table! {
    /// Per target, the measurements that started in the minute.
    pub struct PingMinuteRow in PingMinute, names PingMinuteColumns {
        ts_us as "ts": i64 = Time,
        target: String = Text,
        measurements: i64 = Id,
        /// Echoes, summed.
        sent: i64 = Id,
        received: i64 = Id,
        /// Null when nothing was sent.
        loss_pct: Option<f64> = Rate,
        /// Over every reply of the minute (null without replies); percentiles are exact,
        /// nearest rank.
        rtt_min_ms: Option<f64> = Rtt,
        rtt_avg_ms: Option<f64> = Rtt,
        rtt_p50_ms: Option<f64> = Rtt,
        rtt_p90_ms: Option<f64> = Rtt,
        rtt_p99_ms: Option<f64> = Rtt,
        rtt_max_ms: Option<f64> = Rtt,
    }
}

impl EventRow {
    pub fn new(ts_us: i64, event: &crate::Event) -> EventRow {
        EventRow {
            ts_us,
            event: event.name().to_string(),
            detail: event.detail(),
        }
    }

    /// The typed event this row holds.
    pub fn event(&self) -> crate::Event {
        crate::Event::parse(&self.event, self.detail.as_deref())
    }
}

// Every table, once: the `Table` enum, the folder names and the lists the store, the
// readers and the tests walk all come from these lines (see `catalog!` in `table.rs`).
// A new table is a `table!` declaration above and a line here.
crate::catalog! {
    Cpu = "cpu" => CpuRow, rolled_up;
    Mem = "mem" => MemRow, rolled_up;
    Net = "net" => NetRow, rolled_up;
    NetUid = "net_uid" => NetUidRow, rolled_up;
    Ping = "ping" => PingRow, rolled_up;
    Ubc = "ubc" => UbcRow, plain;
    Events = "events" => EventRow, plain;
    CpuMinute = "cpu_1m" => CpuMinuteRow, rollup;
    NetMinute = "net_1m" => NetMinuteRow, rollup;
    NetUidMinute = "net_uid_1m" => NetUidMinuteRow, rollup;
    MemMinute = "mem_1m" => MemMinuteRow, rollup;
    PingMinute = "ping_1m" => PingMinuteRow, rollup;
}

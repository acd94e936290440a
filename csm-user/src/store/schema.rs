//! Arrow schemas of the tables in DESIGN.md. Changes are additive only (new tables, new
//! nullable columns) and bump [`SCHEMA_VERSION`].

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// `csm.schema_version` in every file's key-value metadata.
pub const SCHEMA_VERSION: &str = "2";

/// The tables csm writes; the name is the top folder under the data dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Cpu,
    Mem,
    Net,
    NetUid,
    Ping,
    Ubc,
    Events,
    /// 1-minute roll-ups of finished hours, so that months read fast.
    CpuMinute,
    NetMinute,
    NetUidMinute,
    MemMinute,
    PingMinute,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Cpu,
        Table::Mem,
        Table::Net,
        Table::NetUid,
        Table::Ping,
        Table::Ubc,
        Table::Events,
    ];

    /// Roll-up tables: one row per key per minute, `ts` = the end of the minute.
    pub const ROLLUPS: [Table; 5] = [
        Table::CpuMinute,
        Table::NetMinute,
        Table::NetUidMinute,
        Table::MemMinute,
        Table::PingMinute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::CpuMinute => "cpu_1m",
            Table::NetMinute => "net_1m",
            Table::NetUidMinute => "net_uid_1m",
            Table::MemMinute => "mem_1m",
            Table::PingMinute => "ping_1m",
            Table::Cpu => "cpu",
            Table::Mem => "mem",
            Table::Net => "net",
            Table::NetUid => "net_uid",
            Table::Ping => "ping",
            Table::Ubc => "ubc",
            Table::Events => "events",
        }
    }

    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(self.fields()))
    }

    fn fields(self) -> Vec<Field> {
        match self {
            Table::Cpu => vec![
                ts(),
                int("dur_ms"),
                int("uid"),
                text_null("user"),
                int("cpu_ns"),
                Field::new("cpu_pct", DataType::Float64, false),
                text("source"),
            ],
            Table::Mem => vec![
                ts(),
                int("uid"),
                text_null("user"),
                int("nproc"),
                int("rss_bytes"),
                int_null("pss_bytes"),
                int_null("swap_bytes"),
            ],
            Table::Net => vec![
                ts(),
                int("dur_ms"),
                text("iface"),
                int("ifindex"),
                int_null("netns"),
                int("rx_bytes"),
                int("tx_bytes"),
                int("rx_packets"),
                int("tx_packets"),
                text("source"),
            ],
            Table::NetUid => vec![
                ts(),
                int("dur_ms"),
                int("uid"),
                text_null("user"),
                int("rx_bytes"),
                int("tx_bytes"),
            ],
            Table::Ping => vec![
                ts(),
                text("target"),
                text_null("addr"),
                int("sent"),
                int("received"),
                float_null("rtt_min_ms"),
                float_null("rtt_avg_ms"),
                float_null("rtt_max_ms"),
                float_null("rtt_mdev_ms"),
                Field::new(
                    "rtts_ms",
                    DataType::List(Arc::new(Field::new("item", DataType::Float64, false))),
                    false,
                ),
                text_null("error"),
            ],
            Table::Ubc => vec![
                ts(),
                int("ctid"),
                text("resource"),
                int("held"),
                int("maxheld"),
                int("barrier"),
                int("hard_limit"),
                int("failcnt"),
            ],
            Table::Events => vec![ts(), text("event"), text_null("detail")],
            // Roll-ups: counters are sums over the minute; `dur_ms` is the time the
            // minute's rows cover; `*_max` keep the highest single interval, so spikes
            // survive the roll-up.
            Table::CpuMinute => vec![
                ts(),
                int("dur_ms"),
                int("uid"),
                text_null("user"),
                int("cpu_ns"),
                Field::new("cpu_pct", DataType::Float64, false),
                Field::new("cpu_pct_max", DataType::Float64, false),
                text("source"),
            ],
            Table::NetMinute => vec![
                ts(),
                int("dur_ms"),
                text("iface"),
                int("ifindex"),
                int_null("netns"),
                int("rx_bytes"),
                int("tx_bytes"),
                int("rx_packets"),
                int("tx_packets"),
                Field::new("rx_bytes_per_s_max", DataType::Float64, false),
                Field::new("tx_bytes_per_s_max", DataType::Float64, false),
                text("source"),
            ],
            Table::NetUidMinute => vec![
                ts(),
                int("dur_ms"),
                int("uid"),
                text_null("user"),
                int("rx_bytes"),
                int("tx_bytes"),
            ],
            Table::MemMinute => vec![
                ts(),
                int("uid"),
                text_null("user"),
                int("samples"),
                int("nproc_max"),
                int("rss_bytes_mean"),
                int("rss_bytes_max"),
                int_null("pss_bytes_mean"),
                int_null("swap_bytes_mean"),
            ],
            // Per target: measurements that started in the minute; RTTs over every reply
            // (null without replies); loss_pct null when nothing was sent.
            Table::PingMinute => vec![
                ts(),
                text("target"),
                int("measurements"),
                int("sent"),
                int("received"),
                float_null("loss_pct"),
                float_null("rtt_min_ms"),
                float_null("rtt_avg_ms"),
                float_null("rtt_p50_ms"),
                float_null("rtt_p90_ms"),
                float_null("rtt_p99_ms"),
                float_null("rtt_max_ms"),
            ],
        }
    }
}

/// TIMESTAMP(MICROS, UTC)
fn ts() -> Field {
    Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, false)
}

fn int_null(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn float_null(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn text_null(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

//! What the daemon itself did, typed. On disk an event is two strings (`event`, `detail`)
//! so that every reader (DuckDB, pandas, older csm-plot) keeps working; in Rust it is an
//! [`Event`], written with [`Event::name`] and [`Event::detail`] and read back with
//! [`Event::parse`], which never fails: a name this version does not know becomes
//! [`Event::Other`], a detail it cannot read keeps its text.

use std::fmt;

/// Where a table's numbers come from (`source` column of `cpu`, `net` and their roll-ups).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// eBPF programs on the scheduler and the netdev path.
    Ebpf,
    /// The /proc fallback (OpenVZ, old Xen, no BTF).
    Proc,
    /// A value this version does not know (written by a newer csm); written back as
    /// `other`.
    #[default]
    Other,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Ebpf => "ebpf",
            Source::Proc => "proc",
            Source::Other => "other",
        }
    }

    /// Reads a stored value; anything unknown (or null) is [`Source::Other`].
    pub fn parse(value: Option<&str>) -> Source {
        match value {
            Some("ebpf") => Source::Ebpf,
            Some("proc") => Source::Proc,
            _ => Source::Other,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which counters a `recovered` event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counters {
    /// Per-uid CPU time from the pinned eBPF maps (detail starts with `gap_ms=`).
    Cpu,
    /// Per-interface and per-uid traffic from the pinned eBPF maps (`net gap_ms=`).
    Net,
    /// `/proc/net/dev` traffic of the /proc backend (`netdev gap_ms=`).
    Netdev,
}

impl Counters {
    /// The detail's first word; CPU has none (the first version wrote `gap_ms=` alone).
    fn prefix(self) -> &'static str {
        match self {
            Counters::Cpu => "",
            Counters::Net => "net ",
            Counters::Netdev => "netdev ",
        }
    }
}

/// What a `recovered` event says.
#[derive(Clone, Debug, PartialEq)]
pub enum Recovered {
    /// Counts that accrued while the daemon was down were written as rows covering the gap.
    Gap {
        counters: Counters,
        gap_ms: i64,
        /// Where the gap starts: the end of the last interval the previous run wrote.
        from_us: i64,
        /// Further `key=value` words (`cpu_ns=… uids=…`, `bytes=… ifaces=…`).
        extra: String,
    },
    /// Pinned counters were adopted without a state file saying what was last written:
    /// the time while down is not attributed.
    Unattributed,
}

const UNATTRIBUTED: &str =
    "pinned counters adopted, but no matching state file: time while down is not attributed";

impl Recovered {
    /// The integer of `key=` among the detail's extra words (`bytes`, `uids`, …).
    pub fn value(&self, key: &str) -> Option<i64> {
        match self {
            Recovered::Gap { extra, .. } => word_value(extra, key)?.parse().ok(),
            Recovered::Unattributed => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            Recovered::Gap {
                counters,
                gap_ms,
                from_us,
                extra,
            } => {
                let mut detail = format!("{}gap_ms={gap_ms} from={from_us}", counters.prefix());
                if !extra.is_empty() {
                    detail.push(' ');
                    detail.push_str(extra);
                }
                detail
            }
            Recovered::Unattributed => UNATTRIBUTED.to_string(),
        }
    }

    fn parse(detail: &str) -> Option<Recovered> {
        if detail == UNATTRIBUTED {
            return Some(Recovered::Unattributed);
        }
        let (counters, rest) = if let Some(rest) = detail.strip_prefix("net ") {
            (Counters::Net, rest)
        } else if let Some(rest) = detail.strip_prefix("netdev ") {
            (Counters::Netdev, rest)
        } else {
            (Counters::Cpu, detail)
        };
        let rest = rest.strip_prefix("gap_ms=")?;
        let (gap_ms, rest) = rest.split_once(" from=")?;
        let (from_us, extra) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Recovered::Gap {
            counters,
            gap_ms: gap_ms.parse().ok()?,
            from_us: from_us.parse().ok()?,
            extra: extra.to_string(),
        })
    }
}

/// An `[[alert]]` rule changed state (`alert` event): what fired or resolved, about
/// what, the value that decided it and since when the condition held.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    /// The rule's `name`.
    pub name: String,
    /// True when it fired, false when it resolved.
    pub firing: bool,
    /// The target, user or interface it is about (empty for the daemon's own trouble).
    pub subject: String,
    /// The value that decided it: seconds down, loss %, CPU % of a core, bytes/s, 1.
    pub value: f64,
    /// When the condition started (for a resolution too: the start of what ended).
    pub since_us: i64,
}

impl AlertEvent {
    pub fn state(&self) -> &'static str {
        if self.firing {
            "firing"
        } else {
            "resolved"
        }
    }

    /// `<state> since=<us> value=<v> subject=<s> name=<the rest>`: the name goes last
    /// since it may hold spaces; a subject's whitespace is written as `_`.
    fn detail(&self) -> String {
        let subject: String = self
            .subject
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        format!(
            "{} since={} value={} subject={subject} name={}",
            self.state(),
            self.since_us,
            self.value,
            self.name
        )
    }

    fn parse(detail: &str) -> Option<AlertEvent> {
        let (head, name) = detail.split_once(" name=")?;
        let firing = match head.split_whitespace().next()? {
            "firing" => true,
            "resolved" => false,
            _ => return None,
        };
        Some(AlertEvent {
            name: name.to_string(),
            firing,
            subject: word_value(head, "subject").unwrap_or_default().to_string(),
            value: word_value(head, "value")?.parse().ok()?,
            since_us: word_value(head, "since")?.parse().ok()?,
        })
    }
}

/// A row of the `events` table, typed. Variants carrying a `String` hold free text meant
/// for people (a reason, a description); the others have fields a program reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The daemon started (`csm <version> interval=… data_dir=…`).
    Start(String),
    /// The backend chosen, and why.
    Backend(String),
    /// The machine the data describes: what `csm-plot` scales the CPU axis to.
    Host { cores: u32, kernel: String },
    /// A note about the pinned eBPF state (stale pins, adopted pins).
    Pins(String),
    /// Counts from while the daemon was down, written (or not) at start.
    Recovered(Recovered),
    /// Old date partitions removed.
    Retention(String),
    /// Writing failed (condition and first error); the rows stay in memory.
    WriteError(String),
    /// Writing works again after a [`Event::WriteError`].
    WriteOk(String),
    /// Rows dropped because the memory bound for unwritable rows was reached.
    RowsDropped(String),
    /// A collector failed to sample (which one, and why).
    CollectorError(String),
    /// Sizes of the network maps (at start and stop).
    NetMaps(String),
    /// The per-uid traffic map was full: from this interval on, traffic of uids it has
    /// no entry for is in the `net_uid` row of uid -1, user `(overflow)` (`uids` is how
    /// many it held).
    NetUidOverflow { uids: i64 },
    /// Written every interval while it lasts: interfaces of namespaces owned by `uid`
    /// beyond the per-owner row budget were summed into one `net` row named
    /// `(other uid=<uid>)` (`ifaces` of them, `bytes` received and sent).
    NetFolded { uid: i64, ifaces: i64, bytes: i64 },
    /// Written every interval while it lasts: the interface maps had no entry for some of
    /// `uid`'s interfaces; their `bytes` are in the `net` row `(overflow uid=<uid>)`
    /// (uid -1: not even the per-owner overflow map had room).
    NetDevOverflow { uid: i64, bytes: i64 },
    /// Written for each interval in which it happened: the taskstats socket's buffer
    /// overflowed `overflows` times (the kernel dropped exit records), so the /proc
    /// backend's `cpu` rows of that interval may be short by the time of processes that
    /// exited in it. Never written by the eBPF backend, which needs no exit records.
    ExitRecordsLost { overflows: i64 },
    /// An OpenVZ beancounter's failcnt grew.
    UbcFailcnt(String),
    /// The daemon stopped (SIGTERM, SIGINT, duration reached).
    Stop(String),
    /// An `[[alert]]` rule fired or resolved.
    Alert(AlertEvent),
    /// An event this version does not know, kept as written.
    Other {
        name: String,
        detail: Option<String>,
    },
}

impl Event {
    /// The `event` column.
    pub fn name(&self) -> &str {
        match self {
            Event::Start(_) => "start",
            Event::Backend(_) => "backend",
            Event::Host { .. } => "host",
            Event::Pins(_) => "pins",
            Event::Recovered(_) => "recovered",
            Event::Retention(_) => "retention",
            Event::WriteError(_) => "write_error",
            Event::WriteOk(_) => "write_ok",
            Event::RowsDropped(_) => "rows_dropped",
            Event::CollectorError(_) => "collector_error",
            Event::NetMaps(_) => "net_maps",
            Event::NetUidOverflow { .. } => "net_uid_overflow",
            Event::NetFolded { .. } => "net_folded",
            Event::NetDevOverflow { .. } => "net_dev_overflow",
            Event::ExitRecordsLost { .. } => "exit_records_lost",
            Event::UbcFailcnt(_) => "ubc_failcnt",
            Event::Stop(_) => "stop",
            Event::Alert(_) => "alert",
            Event::Other { name, .. } => name,
        }
    }

    /// The `detail` column.
    pub fn detail(&self) -> Option<String> {
        match self {
            Event::Start(text)
            | Event::Backend(text)
            | Event::Pins(text)
            | Event::Retention(text)
            | Event::WriteError(text)
            | Event::WriteOk(text)
            | Event::RowsDropped(text)
            | Event::CollectorError(text)
            | Event::NetMaps(text)
            | Event::UbcFailcnt(text)
            | Event::Stop(text) => Some(text.clone()),
            Event::Host { cores, kernel } => Some(format!("cores={cores} kernel={kernel}")),
            Event::NetUidOverflow { uids } => Some(format!(
                "uids={uids} the per-uid traffic map is full: new uids are charged to uid -1 (overflow)"
            )),
            Event::NetFolded { uid, ifaces, bytes } => Some(format!(
                "uid={uid} ifaces={ifaces} bytes={bytes} interfaces beyond the per-owner row budget are summed in net row (other uid={uid})"
            )),
            Event::NetDevOverflow { uid, bytes } => Some(format!(
                "uid={uid} bytes={bytes} the interface maps are full: traffic of interfaces without an entry is in net row (overflow uid={uid})"
            )),
            Event::ExitRecordsLost { overflows } => Some(format!(
                "overflows={overflows} the kernel dropped taskstats exit records (socket buffer full): cpu rows of this interval may be short by processes that exited in it"
            )),
            Event::Recovered(recovered) => Some(recovered.detail()),
            Event::Alert(alert) => Some(alert.detail()),
            Event::Other { detail, .. } => detail.clone(),
        }
    }

    /// Reads an event back from its two columns. Never fails: an unknown name, or a
    /// detail that does not read as its name says, gives [`Event::Other`].
    pub fn parse(name: &str, detail: Option<&str>) -> Event {
        let text = || detail.unwrap_or_default().to_string();
        let typed = match name {
            "start" => Some(Event::Start(text())),
            "backend" => Some(Event::Backend(text())),
            "host" => detail.and_then(parse_host),
            "pins" => Some(Event::Pins(text())),
            "recovered" => detail.and_then(Recovered::parse).map(Event::Recovered),
            "retention" => Some(Event::Retention(text())),
            "write_error" => Some(Event::WriteError(text())),
            "write_ok" => Some(Event::WriteOk(text())),
            "rows_dropped" => Some(Event::RowsDropped(text())),
            "collector_error" => Some(Event::CollectorError(text())),
            "net_maps" => Some(Event::NetMaps(text())),
            "net_uid_overflow" => detail
                .and_then(|d| word_value(d, "uids")?.parse().ok())
                .map(|uids| Event::NetUidOverflow { uids }),
            "net_folded" => detail.and_then(|d| {
                Some(Event::NetFolded {
                    uid: word_value(d, "uid")?.parse().ok()?,
                    ifaces: word_value(d, "ifaces")?.parse().ok()?,
                    bytes: word_value(d, "bytes")?.parse().ok()?,
                })
            }),
            "net_dev_overflow" => detail.and_then(|d| {
                Some(Event::NetDevOverflow {
                    uid: word_value(d, "uid")?.parse().ok()?,
                    bytes: word_value(d, "bytes")?.parse().ok()?,
                })
            }),
            "exit_records_lost" => detail
                .and_then(|d| word_value(d, "overflows")?.parse().ok())
                .map(|overflows| Event::ExitRecordsLost { overflows }),
            "ubc_failcnt" => Some(Event::UbcFailcnt(text())),
            "stop" => Some(Event::Stop(text())),
            "alert" => detail.and_then(AlertEvent::parse).map(Event::Alert),
            _ => None,
        };
        typed.unwrap_or_else(|| Event::Other {
            name: name.to_string(),
            detail: detail.map(str::to_string),
        })
    }
}

/// `cores=N kernel=R`; the kernel release may be empty (it could not be read). A core
/// count of 0 is no machine: the event does not read as `host`.
fn parse_host(detail: &str) -> Option<Event> {
    let cores = word_value(detail, "cores")?
        .parse()
        .ok()
        .filter(|&n| n > 0)?;
    let kernel = word_value(detail, "kernel").unwrap_or_default().to_string();
    Some(Event::Host { cores, kernel })
}

/// The value of the first `key=value` word.
fn word_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace().find_map(|word| {
        word.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(event: Event) {
        let detail = event.detail();
        assert_eq!(Event::parse(event.name(), detail.as_deref()), event);
    }

    #[test]
    fn every_event_reads_back_as_written() {
        for event in [
            Event::Start("csm 0.1.0 interval=1s data_dir=/d".into()),
            Event::Backend("ebpf (tp_btf)".into()),
            Event::Host {
                cores: 16,
                kernel: "6.18.0-1-amd64".into(),
            },
            Event::Host {
                cores: 2,
                kernel: String::new(),
            },
            Event::Pins("stale pins removed".into()),
            Event::Recovered(Recovered::Unattributed),
            Event::Recovered(Recovered::Gap {
                counters: Counters::Cpu,
                gap_ms: 4012,
                from_us: 1_700_000_000_000_000,
                extra: "cpu_ns=5 uids=2".into(),
            }),
            Event::Recovered(Recovered::Gap {
                counters: Counters::Net,
                gap_ms: 1,
                from_us: 2,
                extra: String::new(),
            }),
            Event::Recovered(Recovered::Gap {
                counters: Counters::Netdev,
                gap_ms: 1,
                from_us: 2,
                extra: "bytes=3 ifaces=1 unknown=1 (counters that may wrap)".into(),
            }),
            Event::Retention("removed 2".into()),
            Event::WriteError("disk full: …".into()),
            Event::WriteOk("ok".into()),
            Event::RowsDropped("cpu 5".into()),
            Event::CollectorError("cpu: x".into()),
            Event::NetMaps("start ifaces=1".into()),
            Event::NetUidOverflow { uids: 16_384 },
            Event::NetFolded {
                uid: 1000,
                ifaces: 4_064,
                bytes: 123_456,
            },
            Event::NetDevOverflow { uid: -1, bytes: 7 },
            Event::ExitRecordsLost { overflows: 3 },
            Event::UbcFailcnt("numproc +1".into()),
            Event::Stop("SIGTERM".into()),
            Event::Alert(AlertEvent {
                name: "gateway down".into(),
                firing: true,
                subject: "10.0.0.1".into(),
                value: 12.5,
                since_us: 1_700_000_000_000_000,
            }),
            Event::Alert(AlertEvent {
                name: "x".into(),
                firing: false,
                subject: String::new(),
                value: 0.0,
                since_us: 3,
            }),
            Event::Other {
                name: "future_thing".into(),
                detail: None,
            },
        ] {
            round_trip(event);
        }
    }

    #[test]
    fn details_written_by_earlier_versions_read_typed() {
        assert_eq!(
            Event::parse("host", Some("cores=2 kernel=6.18.0")),
            Event::Host {
                cores: 2,
                kernel: "6.18.0".into()
            }
        );
        let Event::Recovered(recovered) = Event::parse(
            "recovered",
            Some("netdev gap_ms=3000 from=17 bytes=3000000 ifaces=2"),
        ) else {
            panic!("not a recovered event");
        };
        assert_eq!(recovered.value("bytes"), Some(3_000_000));
        assert_eq!(recovered.value("ifaces"), Some(2));
        assert!(matches!(
            recovered,
            Recovered::Gap {
                counters: Counters::Netdev,
                gap_ms: 3000,
                from_us: 17,
                ..
            }
        ));
    }

    #[test]
    fn unreadable_details_are_kept_not_lost() {
        assert_eq!(
            Event::parse("host", Some("cores=many")),
            Event::Other {
                name: "host".into(),
                detail: Some("cores=many".into())
            }
        );
        assert_eq!(
            Event::parse("recovered", None),
            Event::Other {
                name: "recovered".into(),
                detail: None
            }
        );
        assert!(matches!(
            Event::parse("host", Some("kernel=6.1 cores=0")),
            Event::Other { .. }
        ));
        assert_eq!(
            Event::parse("host", Some("kernel=6.1 cores=4")),
            Event::Host {
                cores: 4,
                kernel: "6.1".into()
            }
        );
        assert_eq!(Source::parse(Some("tc")), Source::Other);
        assert_eq!(Source::parse(Some("proc")), Source::Proc);
    }
}

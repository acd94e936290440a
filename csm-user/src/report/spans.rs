//! What the report's sections fold: the rows of each counter table, raw or rolled up,
//! brought to one shape.

/// CPU of one uid over one span (a raw interval or a minute).
#[derive(Clone, Debug, PartialEq)]
pub struct CpuSpan {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub cpu_ns: i64,
    /// The highest single interval's CPU % within the span.
    pub pct_peak: f64,
}

/// Memory of one uid: one sample, or a minute's samples.
#[derive(Clone, Debug, PartialEq)]
pub struct MemSpan {
    pub uid: i64,
    pub user: Option<String>,
    pub samples: i64,
    pub rss_mean: i64,
    pub rss_peak: i64,
    pub pss_mean: Option<i64>,
    /// Raw rows: the sample's PSS; roll-ups keep only the minute's mean.
    pub pss_peak: Option<i64>,
}

/// Socket bytes of one uid over one span.
#[derive(Clone, Debug, PartialEq)]
pub struct UidBytes {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub uid: i64,
    pub user: Option<String>,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
}

/// Traffic of one interface over one span.
#[derive(Clone, Debug, PartialEq)]
pub struct NetSpan {
    pub ts_us: i64,
    pub dur_ms: i64,
    pub netns: Option<i64>,
    pub iface: String,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
    /// The highest single interval's rates, bytes per second.
    pub rx_peak: f64,
    pub tx_peak: f64,
    /// The kernel's error and drop counts; null when unknown.
    pub rx_errors: Option<i64>,
    pub tx_errors: Option<i64>,
    pub rx_dropped: Option<i64>,
    pub tx_dropped: Option<i64>,
}

/// What the gaps and alerts sections use of an `events` row: a row of any other kind
/// counts only as an event at its time (the last sign of a run that crashed).
#[derive(Clone, Debug, PartialEq)]
pub enum EventMark {
    Start,
    Stop,
    /// Counts from while the daemon was down were written from `from_us` on.
    RecoveredGap {
        from_us: i64,
    },
    /// Boxed: alerts are few, the other marks many.
    Alert(Box<csm_store::AlertEvent>),
    Other,
}

impl EventMark {
    pub fn of(event: csm_store::Event) -> EventMark {
        use csm_store::{Event, Recovered};
        match event {
            Event::Start(_) => EventMark::Start,
            Event::Stop(_) => EventMark::Stop,
            Event::Recovered(Recovered::Gap { from_us, .. }) => EventMark::RecoveredGap { from_us },
            Event::Alert(alert) => EventMark::Alert(Box::new(alert)),
            _ => EventMark::Other,
        }
    }

    /// Bytes a mark holds besides its place in a vector.
    pub fn held_bytes(&self) -> u64 {
        match self {
            EventMark::Alert(alert) => {
                (std::mem::size_of::<csm_store::AlertEvent>()
                    + alert.name.len()
                    + alert.subject.len()) as u64
            }
            _ => 0,
        }
    }
}

//! The report written out: text (aligned tables, human units, times in the report's
//! zone), JSON (one document, exact numbers in base units) or CSV (one table per section,
//! the section's name in the first column, a blank line between sections).

use std::fmt::Write as _;

use serde::Serialize;

use csm_store::zone::Zone;

use super::units::{bytes, cpu_time, duration, pct, rate, rtt};
use super::{Period, Report};

/// One JSON document.
pub fn json(report: &Report) -> Result<String, String> {
    serde_json::to_string_pretty(report)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|err| format!("cannot write JSON: {err}"))
}

/// Each section as its own CSV table with a header; a row per user, interface, target,
/// outage, resource or gap, numbers in base units.
pub fn csv(report: &Report) -> Result<String, String> {
    let mut out = Vec::new();
    let mut first = true;
    let mut section = |name: &str, rows: Vec<serde_json::Value>| -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        if !first {
            out.push(b'\n');
        }
        first = false;
        let mut writer = csv::Writer::from_writer(&mut out);
        let keys: Vec<String> = match &rows[0] {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let fail = |err: csv::Error| format!("cannot write CSV: {err}");
        writer
            .write_record(std::iter::once("section").chain(keys.iter().map(String::as_str)))
            .map_err(fail)?;
        for row in &rows {
            let cells = keys.iter().map(|k| cell(&row[k]));
            writer
                .write_record(std::iter::once(name.to_string()).chain(cells))
                .map_err(fail)?;
        }
        writer
            .flush()
            .map_err(|err| format!("cannot write CSV: {err}"))
    };
    if let Some(users) = &report.users {
        let lines = users.top.iter().chain(&users.rest).chain([&users.total]);
        section("users", lines.map(value).collect())?;
    }
    if let Some(interfaces) = &report.interfaces {
        section("interfaces", interfaces.iter().map(value).collect())?;
    }
    if let Some(targets) = &report.ping {
        let rows = targets
            .iter()
            .map(|t| {
                let mut row = value(t);
                row["outages"] = t.outages.len().into();
                row
            })
            .collect();
        section("ping", rows)?;
        let outages = targets
            .iter()
            .flat_map(|t| {
                t.outages.iter().map(|o| {
                    let mut row = serde_json::json!({ "target": t.target });
                    if let (Some(row), serde_json::Value::Object(o)) =
                        (row.as_object_mut(), value(o))
                    {
                        row.extend(o);
                    }
                    row
                })
            })
            .collect();
        section("outages", outages)?;
    }
    if let Some(growths) = &report.beancounters {
        section("beancounters", growths.iter().map(value).collect())?;
    }
    if let Some(gaps) = &report.gaps {
        section("gaps", gaps.iter().map(value).collect())?;
    }
    if let Some(alerts) = &report.alerts {
        section("alerts", alerts.iter().map(value).collect())?;
    }
    String::from_utf8(out).map_err(|err| format!("cannot write CSV: {err}"))
}

fn value(item: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(item).unwrap_or_default()
}

/// A CSV cell: numbers and strings as they are, null empty.
fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Columns of text: the first `left` aligned left (names), the rest right (numbers).
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    left: usize,
}

impl Table {
    fn new(header: Vec<&'static str>, left: usize) -> Table {
        Table {
            header,
            rows: Vec::new(),
            left,
        }
    }

    fn write(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i < self.left {
                    let _ = write!(line, " {cell:<width$}");
                } else {
                    let _ = write!(line, "  {cell:>width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

/// Aligned tables with human units; times in `zone`.
pub fn text(report: &Report, zone: &Zone, by: Option<Period>) -> Result<String, String> {
    let time = |ts_us: i64| zone.local(ts_us).format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = format!(
        "csm report for {}: {} to {} ({}){}\n",
        report.host,
        time(report.from_us),
        time(report.to_us),
        zone.name(),
        if report.rollups {
            "; from the 1-minute roll-ups"
        } else {
            ""
        }
    );
    let dash = || "-".to_string();
    if let Some(users) = &report.users {
        let _ = writeln!(
            out,
            "\nUsers (CPU: 100 % = one core, mean over the {} with data)",
            duration((users.covered_s * 1e6) as i64)
        );
        let mut table = Table::new(
            vec![
                "user", "cpu time", "cpu mean", "cpu peak", "rss mean", "rss peak", "pss mean",
                "pss peak", "in", "out",
            ],
            1,
        );
        let opt_bytes = |v: Option<i64>| v.map_or_else(dash, bytes);
        for user in users.top.iter().chain(&users.rest).chain([&users.total]) {
            table.rows.push(vec![
                user.user.clone(),
                cpu_time(user.cpu_ns),
                pct(user.cpu_pct_mean),
                user.cpu_pct_peak.map_or_else(dash, pct),
                opt_bytes(user.rss_bytes_mean),
                opt_bytes(user.rss_bytes_peak),
                opt_bytes(user.pss_bytes_mean),
                opt_bytes(user.pss_bytes_peak),
                bytes(user.rx_bytes),
                bytes(user.tx_bytes),
            ]);
        }
        table.write(&mut out);
    }
    if let Some(interfaces) = &report.interfaces {
        out.push_str("\nInterfaces\n");
        let mut header = vec!["netns", "iface"];
        if by.is_some() {
            header.push(match by {
                Some(Period::Hour) => "hour",
                Some(Period::Month) => "month",
                _ => "day",
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
        ]);
        let mut table = Table::new(header, left);
        for line in interfaces {
            let mut row = vec![
                line.netns
                    .map_or_else(|| "host".to_string(), |n| n.to_string()),
                line.iface.clone(),
            ];
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
            ]);
            table.rows.push(row);
        }
        table.write(&mut out);
    }
    if let Some(targets) = &report.ping {
        out.push_str("\nPing (RTT percentiles over every reply, nearest rank)\n");
        let mut table = Table::new(
            vec![
                "target",
                "measurements",
                "loss",
                "median",
                "p90",
                "p99",
                "max",
                "outages",
            ],
            1,
        );
        let opt_rtt = |v: Option<f64>| v.map_or_else(dash, rtt);
        for t in targets {
            table.rows.push(vec![
                t.target.clone(),
                t.measurements.to_string(),
                t.loss_pct.map_or_else(|| "nothing sent".into(), pct),
                opt_rtt(t.rtt_p50_ms),
                opt_rtt(t.rtt_p90_ms),
                opt_rtt(t.rtt_p99_ms),
                opt_rtt(t.rtt_max_ms),
                t.outages.len().to_string(),
            ]);
        }
        table.write(&mut out);
        let mut outages = Table::new(vec!["outage of", "start", "end", "duration", "error"], 3);
        for t in targets {
            for o in &t.outages {
                outages.rows.push(vec![
                    t.target.clone(),
                    time(o.start_us),
                    o.end_us.map_or_else(|| "ongoing".into(), time),
                    duration((o.duration_s * 1e6).round() as i64),
                    o.first_error.clone().unwrap_or_default(),
                ]);
            }
        }
        if !outages.rows.is_empty() {
            out.push('\n');
            outages.write(&mut out);
        }
    }
    if let Some(growths) = &report.beancounters {
        out.push_str("\nBeancounters (failcnt grew)\n");
        if growths.is_empty() {
            out.push_str("  none\n");
        }
        let mut table = Table::new(
            vec![
                "ctid",
                "resource",
                "failcnt +",
                "held",
                "maxheld",
                "barrier",
                "limit",
            ],
            2,
        );
        for g in growths {
            table.rows.push(vec![
                g.ctid.to_string(),
                g.resource.clone(),
                g.failcnt_growth.to_string(),
                g.held.to_string(),
                g.maxheld.to_string(),
                g.barrier.to_string(),
                g.hard_limit.to_string(),
            ]);
        }
        if !growths.is_empty() {
            table.write(&mut out);
        }
    }
    if let Some(gaps) = &report.gaps {
        out.push_str("\nGaps (the daemon not running)\n");
        if gaps.is_empty() {
            out.push_str("  none\n");
        } else {
            let mut table = Table::new(vec!["from", "to", "duration", "cause"], 2);
            for g in gaps {
                table.rows.push(vec![
                    time(g.start_us),
                    g.end_us.map_or_else(|| "(still)".into(), time),
                    duration((g.duration_s * 1e6).round() as i64),
                    g.cause.clone(),
                ]);
            }
            table.write(&mut out);
        }
    }
    if let Some(alerts) = &report.alerts {
        out.push_str("\nAlerts ([[alert]] rules that fired)\n");
        if alerts.is_empty() {
            out.push_str("  none\n");
        } else {
            let mut table = Table::new(
                vec!["alert", "subject", "from", "to", "duration", "value"],
                2,
            );
            for a in alerts {
                table.rows.push(vec![
                    a.name.clone(),
                    a.subject.clone(),
                    time(a.start_us),
                    a.end_us.map_or_else(|| "(still)".into(), time),
                    duration((a.duration_s * 1e6).round() as i64),
                    format!("{}", a.value),
                ]);
            }
            table.write(&mut out);
        }
    }
    Ok(out)
}

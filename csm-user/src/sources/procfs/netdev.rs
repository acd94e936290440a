//! `/proc/net/dev`: cumulative traffic per interface.
//!
//! Two layouts matter. Modern kernels print `%6s: %7llu …` (a space after the colon);
//! 2.6-era kernels, as on old Xen guests, print `%6s:%8lu …`, so a long name or a wide
//! counter touches the colon (`eth0:4294967000`), and counters are `unsigned long`,
//! 32 bits wide on 32-bit guests. The column layout is read from the header, so kernels
//! with fewer or more columns still parse.

use super::{clip, number, LineWarning, Parsed};
use crate::model::LinkErrors;

/// One interface's cumulative counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// `errs` and `drop` of both directions; `None` when the header has no such columns.
    pub link: Option<LinkErrors>,
}

/// Where the counters sit among a data line's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    rx_columns: usize,
    rx_bytes: usize,
    rx_packets: usize,
    tx_bytes: usize,
    tx_packets: usize,
    /// `errs` and `drop`, receive then transmit, where the header has them.
    link: Option<[usize; 4]>,
}

/// Since Linux 2.2: 8 receive and 8 transmit columns, bytes then packets.
const MODERN: Layout = Layout {
    rx_columns: 8,
    rx_bytes: 0,
    rx_packets: 1,
    tx_bytes: 0,
    tx_packets: 1,
    link: Some([2, 2, 3, 3]),
};

pub fn parse_net_dev(text: &str) -> Parsed<Vec<IfaceCounters>> {
    let mut out = Parsed::<Vec<IfaceCounters>>::default();
    let mut layout = MODERN;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.contains('|') {
            // Header lines: the second names the columns.
            match header_layout(line) {
                Ok(Some(found)) => layout = found,
                Ok(None) => {}
                Err(message) => {
                    out.warnings.push(LineWarning::new(n, message));
                    return out;
                }
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line, &layout) {
            Ok(iface) => out.value.push(iface),
            Err(message) => out.warnings.push(LineWarning::new(n, message)),
        }
    }
    out
}

/// The layout named by a ` face |bytes packets … |bytes packets …` header; `None` for
/// the first header line (`Inter-|   Receive …`).
fn header_layout(line: &str) -> Result<Option<Layout>, String> {
    let parts: Vec<&str> = line.split('|').collect();
    if parts.len() != 3 || !parts[1].contains("packets") {
        return Ok(None);
    }
    let rx: Vec<&str> = parts[1].split_whitespace().collect();
    let tx: Vec<&str> = parts[2].split_whitespace().collect();
    let find = |cols: &[&str], name: &str| cols.iter().position(|c| *c == name);
    let link = match (
        find(&rx, "errs"),
        find(&tx, "errs"),
        find(&rx, "drop"),
        find(&tx, "drop"),
    ) {
        (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
        _ => None,
    };
    match (
        find(&rx, "bytes"),
        find(&rx, "packets"),
        find(&tx, "bytes"),
        find(&tx, "packets"),
    ) {
        (Some(rx_bytes), Some(rx_packets), Some(tx_bytes), Some(tx_packets)) => Ok(Some(Layout {
            rx_columns: rx.len(),
            rx_bytes,
            rx_packets,
            tx_bytes,
            tx_packets,
            link,
        })),
        _ => Err("header has no byte counters (Linux 2.0 layout?): traffic not collected".into()),
    }
}

fn parse_line(line: &str, layout: &Layout) -> Result<IfaceCounters, String> {
    // Names cannot contain ':' (dev_valid_name), counters neither.
    let (name, counters) = line
        .rsplit_once(':')
        .ok_or_else(|| format!("no `name:` in `{}`", clip(line.trim())))?;
    let name = name.trim();
    if name.is_empty() {
        return Err("empty interface name".into());
    }
    let values: Vec<&str> = counters.split_whitespace().collect();
    let tx_at = |i: usize| layout.rx_columns + i;
    let link_tx = layout
        .link
        .map_or(0, |[_, tx_errs, _, tx_drop]| tx_errs.max(tx_drop));
    let needed = tx_at(layout.tx_bytes.max(layout.tx_packets).max(link_tx)) + 1;
    if values.len() < needed {
        return Err(format!(
            "{name}: truncated ({} counters, {needed} needed)",
            values.len()
        ));
    }
    let get = |i: usize, what: &str| number(&format!("{name} {what}"), values[i]);
    Ok(IfaceCounters {
        name: name.to_string(),
        rx_bytes: get(layout.rx_bytes, "rx bytes")?,
        rx_packets: get(layout.rx_packets, "rx packets")?,
        tx_bytes: get(tx_at(layout.tx_bytes), "tx bytes")?,
        tx_packets: get(tx_at(layout.tx_packets), "tx packets")?,
        link: match layout.link {
            Some([rx_errs, tx_errs, rx_drop, tx_drop]) => Some(LinkErrors {
                rx_errors: get(rx_errs, "rx errs")?,
                tx_errors: get(tx_at(tx_errs), "tx errs")?,
                rx_dropped: get(rx_drop, "rx drop")?,
                tx_dropped: get(tx_at(tx_drop), "tx drop")?,
            }),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    #[test]
    fn modern_layout() {
        let text = format!(
            "{HEADER}    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
             eth0: 12345678901 98765 4 5 0 0 0 0 2222 33 6 7 0 0 0 0\n"
        );
        let p = parse_net_dev(&text);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.value.len(), 2);
        assert_eq!(
            p.value[1],
            IfaceCounters {
                name: "eth0".into(),
                rx_bytes: 12345678901,
                rx_packets: 98765,
                tx_bytes: 2222,
                tx_packets: 33,
                link: Some(LinkErrors {
                    rx_errors: 4,
                    tx_errors: 6,
                    rx_dropped: 5,
                    tx_dropped: 7
                }),
            }
        );
    }

    #[test]
    fn old_layout_with_counter_touching_the_colon() {
        let text = format!(
            "{HEADER}  eth0:4294967000 3000000    0    0    0     0          0         0 123456789   45678    0    0    0     0       0          0\n"
        );
        let p = parse_net_dev(&text);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.value[0].rx_bytes, 4294967000);
        assert_eq!(p.value[0].tx_packets, 45678);
    }

    #[test]
    fn bad_line_is_named_and_the_others_survive() {
        let text =
            format!("{HEADER}  eth0: 1 2 3\n  eth1: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0\ngarbage\n");
        let p = parse_net_dev(&text);
        assert_eq!(p.value.len(), 1);
        assert_eq!(p.value[0].name, "eth1");
        let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![3, 5]);
        assert!(p.warnings[0].message.contains("truncated"));
    }

    #[test]
    fn linux_2_0_header_without_bytes_is_refused_with_a_warning() {
        let text = "Inter-|   Receive                  |  Transmit\n \
                    face |packets errs drop fifo frame|packets errs drop fifo colls carrier\n  \
                    eth0:  10 0 0 0 0  12 0 0 0 0 0\n";
        let p = parse_net_dev(text);
        assert!(p.value.is_empty());
        assert_eq!(p.warnings[0].line, 2);
    }
}

//! Drawing a [`Snapshot`]: pure, so that it is tested on ratatui's `TestBackend`. Every
//! name from outside (users, interfaces, ping targets) goes through [`printable`].

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::sample::{IfaceLine, Snapshot, SortKey, UserLine};
use super::text::{bytes, printable, rate, rtt};
use crate::top::ping::PingLine;

/// What the user chose to see.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct View {
    pub sort: SortKey,
    pub reversed: bool,
    pub interval_s: f64,
}

impl View {
    /// A sort key pressed: that column, or the same column the other way round.
    pub fn press(&mut self, key: SortKey) {
        if self.sort == key {
            self.reversed = !self.reversed;
        } else {
            (self.sort, self.reversed) = (key, false);
        }
    }
}

pub const FOOTER: &str = "c CPU  m memory  r received  t sent  n name (again: reverse)   q quit";

/// The whole screen; `None` until the first interval is over.
pub fn draw(frame: &mut Frame, snapshot: Option<&Snapshot>, view: &View) {
    let Some(snapshot) = snapshot else {
        let [top, _, bottom] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        frame.render_widget(
            Paragraph::new("csm top: measuring the first interval…"),
            top,
        );
        frame.render_widget(Paragraph::new(FOOTER), bottom);
        return;
    };
    let iface_rows = snapshot.interfaces.len().clamp(1, 8) as u16;
    let ping_rows = snapshot.ping.len().clamp(1, 6) as u16;
    let [header, users, ifaces, ping, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(4),
        Constraint::Length(iface_rows + 3),
        Constraint::Length(ping_rows + 3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(snapshot, view)), header);
    draw_users(frame, users, &snapshot.users, view);
    draw_interfaces(frame, ifaces, &snapshot.interfaces, view);
    draw_ping(frame, ping, &snapshot.ping, snapshot.ts_us);
    frame.render_widget(
        Paragraph::new(FOOTER).style(Style::new().add_modifier(Modifier::REVERSED)),
        footer,
    );
}

fn header_line(snapshot: &Snapshot, view: &View) -> String {
    let time = chrono::DateTime::from_timestamp_micros(snapshot.ts_us)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let total: f64 = snapshot.users.iter().map(|u| u.cpu_pct).sum();
    format!(
        "csm top {time}  every {}  CPU {total:.0} % (100 = 1 core)  {}",
        humantime::format_duration(std::time::Duration::from_secs_f64(view.interval_s)),
        printable(&snapshot.source)
    )
}

/// A header row whose sorted column is marked with an arrow.
fn header<'a>(columns: &[(&'a str, Option<SortKey>)], view: &View) -> Row<'a> {
    Row::new(columns.iter().map(|(title, key)| {
        if *key == Some(view.sort) {
            let arrow = if view.reversed { "▲" } else { "▼" };
            Cell::from(format!("{title}{arrow}")).style(Style::new().add_modifier(Modifier::BOLD))
        } else {
            Cell::from(*title)
        }
    }))
    .style(Style::new().add_modifier(Modifier::UNDERLINED))
}

fn draw_users(frame: &mut Frame, area: Rect, users: &[UserLine], view: &View) {
    let columns = [
        ("USER", Some(SortKey::Name)),
        ("UID", None),
        ("CPU %", Some(SortKey::Cpu)),
        ("PROCS", None),
        ("RSS", Some(SortKey::Mem)),
        ("RX", Some(SortKey::Rx)),
        ("TX", Some(SortKey::Tx)),
    ];
    let traffic = |v: Option<f64>| v.map(rate).unwrap_or_else(|| "-".into());
    let rows = users.iter().map(|u| {
        Row::new([
            printable(u.user.as_deref().unwrap_or("?")),
            u.uid.to_string(),
            format!("{:.1}", u.cpu_pct),
            u.nproc.to_string(),
            bytes(u.rss_bytes as f64),
            traffic(u.rx_bytes_per_s),
            traffic(u.tx_bytes_per_s),
        ])
    });
    let widths = [
        Constraint::Min(12),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(13),
        Constraint::Length(13),
    ];
    let table = Table::new(rows, widths)
        .header(header(&columns, view))
        .block(Block::new().borders(Borders::TOP).title(" users "));
    frame.render_widget(table, area);
}

fn draw_interfaces(frame: &mut Frame, area: Rect, ifaces: &[IfaceLine], view: &View) {
    let columns = [
        ("INTERFACE", Some(SortKey::Name)),
        ("NETNS", None),
        ("RX", Some(SortKey::Rx)),
        ("TX", Some(SortKey::Tx)),
        ("RX pkt/s", None),
        ("TX pkt/s", None),
    ];
    let rows = ifaces.iter().map(|i| {
        Row::new([
            printable(&i.iface),
            i.netns_label.clone(),
            rate(i.rx_bytes_per_s),
            rate(i.tx_bytes_per_s),
            format!("{:.0}", i.rx_packets_per_s),
            format!("{:.0}", i.tx_packets_per_s),
        ])
    });
    let widths = [
        Constraint::Min(16),
        // `inode-<n>` is 16 characters; names and owners are usually shorter.
        Constraint::Length(16),
        Constraint::Length(13),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(header(&columns, view))
        .block(Block::new().borders(Borders::TOP).title(" interfaces "));
    frame.render_widget(table, area);
}

fn draw_ping(frame: &mut Frame, area: Rect, ping: &[PingLine], now_us: i64) {
    let rows = ping.iter().map(|p| {
        let age_s = (now_us - p.ts_us).max(0) / 1_000_000;
        Row::new([
            printable(&p.target),
            printable(p.addr.as_deref().unwrap_or("-")),
            p.rtt_ms.map(rtt).unwrap_or_else(|| "-".into()),
            p.loss_pct
                .map(|l| format!("{l:.0} %"))
                .unwrap_or_else(|| "-".into()),
            format!("{age_s} s ago"),
            printable(p.error.as_deref().unwrap_or("")),
        ])
    });
    let widths = [
        Constraint::Min(16),
        Constraint::Length(16),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Min(0),
    ];
    let header = Row::new(["TARGET", "ADDRESS", "LAST RTT", "LOSS", "MEASURED", ""])
        .style(Style::new().add_modifier(Modifier::UNDERLINED));
    let title = if ping.is_empty() {
        " ping (no targets in the data dir) "
    } else {
        " ping "
    };
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::new().borders(Borders::TOP).title(title));
    frame.render_widget(table, area);
}

/// `--once --format text`: the same figures as plain aligned lines.
pub fn plain_text(snapshot: &Snapshot) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "{:<16} {:>10} {:>7} {:>6} {:>10} {:>13} {:>13}",
        "USER", "UID", "CPU %", "PROCS", "RSS", "RX", "TX"
    ));
    let traffic = |v: Option<f64>| v.map(rate).unwrap_or_else(|| "-".into());
    for u in &snapshot.users {
        out.push(format!(
            "{:<16} {:>10} {:>7.1} {:>6} {:>10} {:>13} {:>13}",
            printable(u.user.as_deref().unwrap_or("?")),
            u.uid,
            u.cpu_pct,
            u.nproc,
            bytes(u.rss_bytes as f64),
            traffic(u.rx_bytes_per_s),
            traffic(u.tx_bytes_per_s)
        ));
    }
    out.push(String::new());
    out.push(format!(
        "{:<16} {:>16} {:>13} {:>13}",
        "INTERFACE", "NETNS", "RX", "TX"
    ));
    for i in &snapshot.interfaces {
        out.push(format!(
            "{:<16} {:>16} {:>13} {:>13}",
            printable(&i.iface),
            i.netns_label,
            rate(i.rx_bytes_per_s),
            rate(i.tx_bytes_per_s)
        ));
    }
    if !snapshot.ping.is_empty() {
        out.push(String::new());
        out.push(format!("{:<24} {:>11} {:>6}", "TARGET", "LAST RTT", "LOSS"));
        for p in &snapshot.ping {
            out.push(format!(
                "{:<24} {:>11} {:>6}",
                printable(&p.target),
                p.rtt_ms.map(rtt).unwrap_or_else(|| "-".into()),
                p.loss_pct
                    .map(|l| format!("{l:.0} %"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// A snapshot like the one the README shows.
    pub fn example() -> Snapshot {
        let user = |uid, name: &str, cpu, nproc, rss, rx, tx| UserLine {
            uid,
            user: Some(name.into()),
            cpu_pct: cpu,
            nproc,
            rss_bytes: rss,
            rx_bytes_per_s: Some(rx),
            tx_bytes_per_s: Some(tx),
        };
        let iface = |name: &str, netns, host, rx, tx| IfaceLine {
            iface: name.into(),
            ifindex: Some(2),
            netns: Some(netns),
            host_netns: host,
            netns_label: if host {
                "host".to_string()
            } else {
                format!("inode-{netns}")
            },
            rx_bytes_per_s: rx,
            tx_bytes_per_s: tx,
            rx_packets_per_s: rx / 1000.0,
            tx_packets_per_s: tx / 1000.0,
        };
        Snapshot {
            ts_us: 1_780_000_000_000_000,
            interval_s: 1.0,
            source: "ebpf: csm pid 812's maps, read only".into(),
            users: vec![
                user(1001, "alice", 99.8, 3, 52 << 20, 0.0, 0.0),
                user(1002, "bob\x1b[2J", 12.5, 41, 310 << 20, 1.2e6, 48e3),
                user(0, "root", 0.7, 96, 412 << 20, 2048.0, 1024.0),
            ],
            interfaces: vec![
                iface("eth0", 4026531840, true, 1.25e6, 52e3),
                iface("veth-c1", 4026532301, false, 3000.0, 1.2e6),
            ],
            ping: vec![PingLine {
                target: "gateway".into(),
                addr: Some("192.0.2.1".into()),
                ts_us: 1_779_999_995_000_000,
                rtt_ms: Some(0.42),
                loss_pct: Some(0.0),
                error: None,
            }],
        }
    }

    pub fn screen(snapshot: Option<&Snapshot>, view: &View, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, snapshot, view)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    const VIEW: View = View {
        sort: SortKey::Cpu,
        reversed: false,
        interval_s: 1.0,
    };

    #[test]
    fn the_screen_shows_users_interfaces_ping_and_the_keys() {
        let text = screen(Some(&example()), &VIEW, 90, 22);
        println!("{text}");
        for needle in [
            "alice",
            "99.8",
            "52.0 MiB",
            "1.14 MiB/s",
            "eth0",
            "veth-c1",
            "inode-4026532301",
            "gateway",
            "0.420 ms",
            "CPU %▼",
            "q quit",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let alice = text.find("alice").unwrap();
        assert!(alice < text.find("bob").unwrap(), "sorted by CPU");
    }

    #[test]
    fn control_characters_in_names_are_replaced() {
        let text = screen(Some(&example()), &VIEW, 90, 22);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("bob\\u{1b}[2J"), "{text}");
        assert!(!plain_text(&example()).contains('\x1b'));
    }

    #[test]
    fn pressing_a_key_sorts_and_again_reverses() {
        let mut view = VIEW;
        view.press(SortKey::Mem);
        let mut snap = example();
        snap.sort(view.sort, view.reversed);
        assert_eq!(snap.users[0].uid, 0, "root has the most RSS");
        view.press(SortKey::Mem);
        snap.sort(view.sort, view.reversed);
        assert_eq!(snap.users[0].uid, 1001);
        assert!(screen(Some(&snap), &view, 90, 22).contains("RSS▲"));
    }

    #[test]
    fn before_the_first_interval_a_notice() {
        let text = screen(None, &VIEW, 60, 5);
        assert!(text.contains("measuring the first interval"));
    }

    #[test]
    fn a_tiny_terminal_does_not_panic() {
        for (w, h) in [(1, 1), (10, 3), (30, 8)] {
            screen(Some(&example()), &VIEW, w, h);
        }
    }
}

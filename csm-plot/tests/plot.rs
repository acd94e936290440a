//! csm-plot end to end: Parquet trees with known shapes written through the store, the
//! real binary run on them, and the SVGs it writes checked by their numbers and geometry;
//! then every chart rendered to PNG in headless Chromium (kept in target/plot-pngs/).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use csm_store::{
    CpuRow, Event, MemRow, NetRow, NetUidRow, PingRow, Source, Store, StoreOptions, UbcRow,
};

/// 2026-11-20T00:00:00Z
const T0: i64 = 1_795_132_800_000_000;
const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const MIB: i64 = 1024 * 1024;
const HOST: &str = "testhost";

fn rfc3339(ts_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(ts_us)
        .unwrap()
        .to_rfc3339()
}

fn open_store(dir: &Path) -> Store {
    Store::open(StoreOptions::new(dir.to_path_buf(), HOST)).unwrap()
}

fn flush(store: &mut Store) {
    let errors = store.flush(i64::MAX / 2);
    assert!(errors.is_empty(), "{errors:?}");
}

fn net_row(ts_us: i64, iface: &str, rx: i64, tx: i64) -> NetRow {
    NetRow {
        ts_us,
        dur_ms: 1000,
        iface: iface.into(),
        ifindex: 2,
        netns: None,
        rx_bytes: rx,
        tx_bytes: tx,
        rx_packets: rx / 1000,
        tx_packets: tx / 1000,
        source: Source::Proc,
        rx_errors: Some(0),
        tx_errors: Some(0),
        rx_dropped: Some(0),
        tx_dropped: Some(0),
    }
}

fn cpu_row(ts_us: i64, uid: i64, user: &str, pct: f64) -> CpuRow {
    CpuRow {
        ts_us,
        dur_ms: 1000,
        uid,
        user: Some(user.into()),
        cpu_ns: (pct * 1e7) as i64,
        cpu_pct: pct,
        source: Source::Proc,
    }
}

fn ping_row(ts_us: i64, target: &str, rtts: &[f64]) -> PingRow {
    let avg = (!rtts.is_empty()).then(|| rtts.iter().sum::<f64>() / rtts.len() as f64);
    PingRow {
        ts_us,
        target: target.into(),
        addr: Some("192.0.2.7".into()),
        sent: 3,
        received: rtts.len() as i64,
        rtt_min_ms: rtts.iter().copied().reduce(f64::min),
        rtt_avg_ms: avg,
        rtt_max_ms: rtts.iter().copied().reduce(f64::max),
        rtt_mdev_ms: avg.map(|_| 0.5),
        rtts_ms: rtts.to_vec(),
        error: None,
    }
}

fn csm_plot(data: &Path, out: &Path, from_us: i64, to_us: i64, plots: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_csm-plot"))
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--from", &rfc3339(from_us), "--to", &rfc3339(to_us)])
        .args(plots)
        .output()
        .unwrap();
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// `csm_plot` that must exit 0 (the failure shows its stderr).
#[track_caller]
fn plot_ok(data: &Path, out: &Path, from_us: i64, to_us: i64, plots: &[&str]) -> Output {
    let output = csm_plot(data, out, from_us, to_us, plots);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    output
}

/// A data dir with a store open on it, and an output dir for the charts.
fn dirs_and_store() -> (tempfile::TempDir, tempfile::TempDir, Store) {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let store = open_store(data.path());
    (data, out, store)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An SVG read back: the text and well-formedness checked by a real XML parser.
struct Svg {
    text: String,
}

impl Svg {
    fn load(path: &Path) -> Svg {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{} not written: {e}", path.display()));
        roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
        Svg { text }
    }

    fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.text).unwrap()
    }

    /// All text of the chart, one string per <text>.
    fn texts(&self) -> Vec<String> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").to_string())
            .collect()
    }

    fn has_text(&self, needle: &str) -> bool {
        self.texts().iter().any(|t| t.contains(needle))
    }

    /// Fails, naming every text of the chart, unless one of them contains `needle`.
    #[track_caller]
    fn assert_text(&self, needle: &str) {
        assert!(self.has_text(needle), "no {needle:?} in {:?}", self.texts());
    }

    /// The plot area: the one rectangle filled with the plot background colour.
    fn plot_area(&self) -> Rect {
        let doc = self.doc();
        let rect = doc
            .descendants()
            .find(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("#FCFCFC"))
            .expect("plot area rectangle");
        Rect::of(&rect)
    }

    fn rects(&self, fill: &str) -> Vec<Rect> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(fill))
            .map(|n| Rect::of(&n))
            .collect()
    }

    /// Point lists of polylines (stroke) or polygons (fill) in a colour.
    fn shapes(&self, tag: &str, colour_attr: &str, colour: &str) -> Vec<Vec<(f64, f64)>> {
        self.doc()
            .descendants()
            .filter(|n| n.has_tag_name(tag) && n.attribute(colour_attr) == Some(colour))
            .map(|n| points(n.attribute("points").unwrap_or("")))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn of(node: &roxmltree::Node) -> Rect {
        let num = |name| node.attribute(name).unwrap().parse::<f64>().unwrap();
        Rect {
            x: num("x"),
            y: num("y"),
            w: num("width"),
            h: num("height"),
        }
    }

    /// The x pixel of a time in a chart spanning `[from_us, to_us)`.
    fn x_at(&self, ts_us: i64, from_us: i64, to_us: i64) -> f64 {
        self.x + self.w * (ts_us - from_us) as f64 / (to_us - from_us) as f64
    }
}

fn points(text: &str) -> Vec<(f64, f64)> {
    text.split_whitespace()
        .filter_map(|p| {
            let (x, y) = p.split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The zero axis: a thick black horizontal line as wide as the plot.
fn zero_line_y(svg: &Svg, area: Rect) -> f64 {
    let doc = svg.doc();
    let line = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("polyline")
                && n.attribute("stroke") == Some("#000000")
                && n.attribute("stroke-width") == Some("2")
        })
        .map(|n| points(n.attribute("points").unwrap_or("")))
        .find(|p| p.len() == 2 && p[0].1 == p[1].1 && (p[1].0 - p[0].0) >= area.w - 2.0)
        .expect("zero line");
    line[0].1
}

/// Rectangles of a colour inside the plot area (not the legend swatch).
fn plot_rects(svg: &Svg, fill: &str) -> Vec<Rect> {
    let area = svg.plot_area();
    svg.rects(fill)
        .into_iter()
        .filter(|r| r.y >= area.y - 0.5)
        .collect()
}

#[test]
fn a_huge_spike_is_marked_and_the_normal_level_stays_tall() {
    let (data, out, mut store) = dirs_and_store();
    // Two hours: 1 Mbit/s out, 0.5 Mbit/s in, and one second at 1 Gbit/s out at 00:40:00.
    let spike_at = T0 + 40 * MINUTE + 30 * SECOND;
    for s in 1..=7200 {
        let ts = T0 + s * SECOND;
        let tx = if ts == spike_at { 125_000_000 } else { 125_000 };
        store.push(net_row(ts, "eth0", 62_500, tx));
    }
    flush(&mut store);
    plot_ok(data.path(), out.path(), T0, T0 + 2 * HOUR, &["net"]);

    let svg = Svg::load(&out.path().join("net-eth0.svg"));
    let area = svg.plot_area();
    let zero = zero_line_y(&svg, area);
    // The out mean line (blue): its normal level fills most of the upper half.
    let out_lines = svg.shapes("polyline", "stroke", "#0072B2");
    let ys: Vec<f64> = out_lines.iter().flatten().map(|p| p.1).collect();
    let normal = median(ys);
    let upper_half = zero - area.y;
    let share = (zero - normal) / upper_half;
    assert!(
        share > 0.5,
        "normal level uses only {share:.2} of the upper half"
    );
    // The spike: a red marker at its time and its true value in words.
    let markers = svg.shapes("polygon", "fill", "#C80000");
    assert_eq!(markers.len(), 1, "one clipped spike marked");
    let marker_x = markers[0].iter().map(|p| p.0).sum::<f64>() / 3.0;
    let expected_x = area.x_at(spike_at, T0, T0 + 2 * HOUR);
    assert!(
        (marker_x - expected_x).abs() < 2.0,
        "marker at {marker_x}, spike at {expected_x}"
    );
    svg.assert_text("true peak: 1.0 Gbit/s at 00:40");
    // Legend totals: 7199 s at 125 000 B/s + one at 125 000 000 B.
    let tx_total = (7199.0 * 125_000.0 + 125_000_000.0) / MIB as f64;
    svg.assert_text(&format!("total {tx_total:.0} MiB"));
    svg.assert_text("peak 1.0 Gbit/s");
}

#[test]
fn asymmetric_totals_are_written_on_the_diff_chart() {
    let (data, out, mut store) = dirs_and_store();
    // One hour of 2 MiB/s each way; 600 s with 1 MiB/s more out, 300 s with 1 MiB/s more in.
    for s in 1..=3600 {
        let (rx, tx) = match s {
            601..=1200 => (2 * MIB, 3 * MIB),
            2001..=2300 => (3 * MIB, 2 * MIB),
            _ => (2 * MIB, 2 * MIB),
        };
        store.push(net_row(T0 + s * SECOND, "eth0", rx, tx));
    }
    flush(&mut store);
    plot_ok(
        data.path(),
        out.path(),
        T0,
        T0 + HOUR,
        &["net-diff", "net-log"],
    );

    let svg = Svg::load(&out.path().join("net-diff-eth0.svg"));
    svg.assert_text("Total asymmetric bytes: out > in 600 MiB, in > out 300 MiB");
    let area = svg.plot_area();
    let zero = zero_line_y(&svg, area);
    // More out: vermillion above the axis from 00:10 to 00:20; more in: sky blue below.
    let above: Vec<(f64, f64)> = svg.shapes("polygon", "fill", "#D55E00").concat();
    let below: Vec<(f64, f64)> = svg.shapes("polygon", "fill", "#56B4E9").concat();
    let top_of = |pts: &[(f64, f64)]| pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let bottom_of = |pts: &[(f64, f64)]| pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    assert!(
        top_of(&above) < zero - 50.0,
        "out > in area reaches up: {above:?} zero {zero}"
    );
    assert!(
        bottom_of(&below) > zero + 50.0,
        "in > out area reaches down: {below:?} zero {zero}"
    );
    let tall: Vec<f64> = above
        .iter()
        .filter(|p| p.1 < zero - 50.0)
        .map(|p| p.0)
        .collect();
    let (first, last) = (
        tall.iter().copied().fold(f64::INFINITY, f64::min),
        tall.iter().copied().fold(0.0, f64::max),
    );
    assert!((first - area.x_at(T0 + 600 * SECOND, T0, T0 + HOUR)).abs() < 3.0);
    assert!((last - area.x_at(T0 + 1200 * SECOND, T0, T0 + HOUR)).abs() < 3.0);

    for name in ["net-log-eth0.svg", "net-symlog-eth0.svg"] {
        let svg = Svg::load(&out.path().join(name));
        assert!(svg.has_text("out > in 600 MiB"), "{name}");
        // The magenta overlay (more sent) and the cyan one (more received) both appear.
        assert!(
            !svg.shapes("polygon", "fill", "#CC00CC").is_empty(),
            "{name} magenta"
        );
        assert!(
            !svg.shapes("polygon", "fill", "#00AAC8").is_empty(),
            "{name} cyan"
        );
    }
}

#[test]
fn a_ping_outage_is_shaded_at_its_time_and_listed() {
    let (data, out, mut store) = dirs_and_store();
    // Every minute for two hours; no reply from 00:30 to 00:45 (15 measurements).
    for m in 0..120 {
        let rtts: &[f64] = if (30..45).contains(&m) {
            &[]
        } else {
            &[20.0, 21.0, 23.0]
        };
        store.push(ping_row(T0 + m * MINUTE, "example.org", rtts));
    }
    flush(&mut store);
    plot_ok(data.path(), out.path(), T0, T0 + 2 * HOUR, &["ping"]);

    let svg = Svg::load(&out.path().join("ping-example.org.svg"));
    let area = svg.plot_area();
    let outages = plot_rects(&svg, "#D55E00");
    assert_eq!(outages.len(), 1, "{outages:?}");
    let start = area.x_at(T0 + 30 * MINUTE, T0, T0 + 2 * HOUR);
    let end = area.x_at(T0 + 45 * MINUTE, T0, T0 + 2 * HOUR);
    assert!(
        (outages[0].x - start).abs() < 1.5,
        "outage starts at {} not {start}",
        outages[0].x
    );
    assert!(
        (outages[0].x + outages[0].w - end).abs() < 1.5,
        "outage ends wrong"
    );
    assert!(outages[0].h > area.h - 2.0, "outage spans the plot height");
    svg.assert_text("Outages (no reply), UTC: 11-20 00:30–00:45 (15 min)");
    svg.assert_text("12.5% lost");
    // 105 answered measurements of 20, 21 and 23 ms.
    svg.assert_text("All 315 replies: median 21.00 ms, p90 23.00 ms, p99 23.00 ms, max 23.00 ms.");
    // The median line sits at 21 ms.
    let median_ys: Vec<f64> = svg
        .shapes("polyline", "stroke", "#003C64")
        .concat()
        .iter()
        .map(|p| p.1)
        .collect();
    assert!(!median_ys.is_empty());
}

#[test]
fn cpu_gaps_stay_gaps_and_the_axis_counts_cores() {
    let (data, out, mut store) = dirs_and_store();
    // alice at 50%, bob at 150% for an hour, with the daemon stopped 00:20–00:40.
    for s in 1..=3600 {
        if (20 * 60..40 * 60).contains(&s) {
            continue;
        }
        let ts = T0 + s * SECOND;
        store.push(cpu_row(ts, 1000, "alice", 50.0));
        store.push(cpu_row(ts, 1001, "bob", 150.0));
    }
    store.event(T0 + 20 * MINUTE, Event::Stop("signal".into()));
    store.event(T0 + 40 * MINUTE, Event::Start(String::new()));
    // The data's machine had 16 cores: the axis says so, whatever this machine has.
    store.event(
        T0 + 40 * MINUTE,
        Event::Host {
            cores: 16,
            kernel: "6.1.0".into(),
        },
    );
    flush(&mut store);
    plot_ok(data.path(), out.path(), T0, T0 + HOUR, &["cpu"]);

    let svg = Svg::load(&out.path().join("cpu.svg"));
    // bob (biggest, first colour) and alice: two polygons each, split at the gap.
    assert_eq!(svg.shapes("polygon", "fill", "#0072B2").len(), 2);
    assert_eq!(svg.shapes("polygon", "fill", "#E69F00").len(), 2);
    svg.assert_text("bob (avg 150.0%)");
    svg.assert_text("alice (avg 50.0%)");
    let texts = svg.texts().join(" ");
    assert!(texts.contains("the host's 16"), "{texts}");
    assert!(svg.has_text("1500"), "the axis reaches 16 cores: {texts}");
    // The stop–start period is shaded grey.
    let area = svg.plot_area();
    let down = plot_rects(&svg, "#D7D7D7");
    assert_eq!(down.len(), 1);
    assert!((down[0].x - area.x_at(T0 + 20 * MINUTE, T0, T0 + HOUR)).abs() < 1.5);
}

#[test]
fn missing_tables_an_empty_range_and_a_corrupt_file_each_get_one_message() {
    let (data, out, mut store) = dirs_and_store();
    for s in 1..=600 {
        store.push(cpu_row(T0 + s * SECOND, 1000, "alice", 25.0));
        store.push(net_row(T0 + s * SECOND, "eth0", 1000, 2000));
    }
    flush(&mut store);

    // Missing tables: noted, not failures; the cpu and net charts are still written.
    let output = plot_ok(data.path(), out.path(), T0, T0 + HOUR, &[]);
    let err = stderr(&output);
    assert_eq!(
        err.matches("no mem table for host testhost").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("no ping table").count(), 1, "{err}");
    assert!(!err.contains("ubc"), "ubc exists only on OpenVZ: {err}");
    Svg::load(&out.path().join("cpu.svg"));
    Svg::load(&out.path().join("net-eth0.svg"));

    // An empty range: one note per table, no charts, still success.
    let empty = tempfile::tempdir().unwrap();
    let output = csm_plot(
        data.path(),
        empty.path(),
        T0 + 5 * HOUR,
        T0 + 6 * HOUR,
        &["cpu", "net"],
    );
    // Nothing drawn at all: exit 1 (it was 0), with one line saying so after the notes.
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(
        err.matches("csm-plot: no chart drawn: host testhost has no data to chart")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(
        err.matches("no cpu rows for host testhost in the range")
            .count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("no net rows").count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);

    // A corrupt file: named once, exit 1, the cpu chart still drawn.
    let corrupt = data
        .path()
        .join("net/host=testhost/date=2026-11-20/00.1.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet").unwrap();
    let out2 = tempfile::tempdir().unwrap();
    let output = csm_plot(data.path(), out2.path(), T0, T0 + HOUR, &["cpu", "net"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(
        err.matches(&format!("cannot read {}", corrupt.display()))
            .count(),
        1,
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    Svg::load(&out2.path().join("cpu.svg"));
    Svg::load(&out2.path().join("net-eth0.svg"));
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    for (args, culprit) in [
        (vec!["--data-dir", dir, "--bogus"], "--bogus"),
        (vec!["--data-dir", dir, "--from", "yesterday"], "yesterday"),
        (vec!["--data-dir", dir, "pie"], "pie"),
        (
            vec!["--data-dir", dir, "--tz", "Mars/Olympus"],
            "Mars/Olympus",
        ),
        (vec!["--data-dir", "/nonexistent/csm"], "/nonexistent/csm"),
        (
            vec![
                "--data-dir",
                dir,
                "--from",
                "2026-11-21",
                "--to",
                "2026-11-20",
            ],
            "--from",
        ),
    ] {
        let err = stderr_of_exit(&args, 2);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(culprit), "{args:?}: {err}");
    }
}

/// A tree with every table, for looking at and for Chromium.
fn write_every_table(dir: &Path) {
    let mut store = open_store(dir);
    for s in 1..=2 * 3600 {
        let ts = T0 + s * SECOND;
        let wave = ((s as f64) / 600.0).sin();
        for (uid, user, pct) in [
            (1000, "alice", 30.0 + 20.0 * wave),
            (1001, "bob", 80.0),
            (0, "root", 5.0),
        ] {
            store.push(cpu_row(ts, uid, user, pct));
        }
        let burst = if (3000..3030).contains(&s) {
            40 * MIB
        } else {
            0
        };
        let rx = 200_000 + (50_000.0 * wave) as i64;
        store.push(NetRow {
            // The burst overflows a queue: drops on the way out.
            tx_dropped: Some(burst / MIB),
            rx_dropped: Some(i64::from(s % 300 == 0)),
            ..net_row(ts, "eth0", rx, rx + 20_000 + burst)
        });
        store.push(NetUidRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1000,
            user: Some("alice".into()),
            rx_bytes: rx / 2,
            tx_bytes: rx / 2 + burst,
        });
        store.push(NetUidRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1001,
            user: Some("bob".into()),
            rx_bytes: rx / 2,
            tx_bytes: rx / 2 + 20_000,
        });
        if s % 10 == 0 {
            for (uid, user, rss) in [(1000, "alice", 300 * MIB), (1001, "bob", 900 * MIB)] {
                store.push(MemRow {
                    ts_us: ts,
                    uid,
                    user: Some(user.into()),
                    nproc: 4,
                    rss_bytes: rss + (50.0 * MIB as f64 * wave) as i64,
                    pss_bytes: None,
                    swap_bytes: None,
                });
            }
            for (resource, held, barrier, failcnt) in [
                ("numproc", 80 + s / 200, 100, s / 2000),
                ("privvmpages", 50_000, 65_536, 0),
            ] {
                store.push(UbcRow {
                    ts_us: ts,
                    ctid: 101,
                    resource: resource.into(),
                    held,
                    maxheld: held,
                    barrier,
                    hard_limit: barrier * 11 / 10,
                    failcnt,
                });
            }
        }
        if s % 60 == 0 {
            let m = s / 60;
            let rtts: Vec<f64> = if (70..80).contains(&m) {
                vec![]
            } else {
                vec![20.0 + wave * 3.0, 22.0, 30.0 + (m % 7) as f64]
            };
            store.push(ping_row(ts, "example.org", &rtts));
        }
    }
    store.event(T0, Event::Start(String::new()));
    flush(&mut store);
}

fn png_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plot-pngs")
}

#[test]
fn every_chart_is_well_formed_and_renders_in_chromium() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium is missing: this test renders every chart to PNG; install Debian's \
         `chromium` package (apt-get install -y chromium)"
    );
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_every_table(data.path());
    plot_ok(data.path(), out.path(), T0, T0 + 2 * HOUR, &[]);
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cpu.svg",
            "index.html",
            "mem.svg",
            "net-diff-eth0.svg",
            "net-errors-eth0.svg",
            "net-eth0.svg",
            "net-log-eth0.svg",
            "net-symlog-eth0.svg",
            "net-users.svg",
            "ping-example.org.svg",
            "ubc-101.svg",
        ]
    );
    let pngs = png_dir();
    std::fs::create_dir_all(&pngs).unwrap();
    // index.html opens from disk and every chart on it loads.
    let dom = dump_dom(chromium, &out.path().join("index.html"));
    assert!(
        dom.contains("<title>csm charts: 10 of 10 loaded</title>"),
        "index.html did not load every chart: {dom}"
    );
    assert!(dom.contains("<img src=\"cpu.svg\""), "{dom}");
    for name in names.iter().filter(|n| n.ends_with(".svg")) {
        let svg_path = out.path().join(name);
        Svg::load(&svg_path);
        let png = pngs.join(name.replace(".svg", ".png"));
        let _ = std::fs::remove_file(&png);
        render_png(chromium, &svg_path, &png);
        let bytes =
            std::fs::read(&png).unwrap_or_else(|e| panic!("{}: no PNG: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            png.display()
        );
        assert!(
            bytes.len() > 10_000,
            "{} is suspiciously small ({} bytes)",
            png.display(),
            bytes.len()
        );
    }
}

/// The DOM of a page after its scripts ran (headless Chromium, no network).
fn dump_dom(chromium: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    assert!(
        output.status.success(),
        "chromium failed on {}: {}",
        page.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn render_png(chromium: &Path, svg: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1000,460")
        .arg(format!("file://{}", svg.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium.display()));
    assert!(
        output.status.success() && png.exists(),
        "chromium failed on {}: {}",
        svg.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes one hour of `net_1m` as the roll-up job would: one row per minute.
fn write_net_rollup_hour(
    data_dir: &Path,
    hour_start_us: i64,
    tx_per_minute: i64,
    peak: Option<(i64, f64)>,
) {
    use arrow::array::{
        ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use csm_store::{layout, Table};
    use std::sync::Arc;
    let ends: Vec<i64> = (1..=60).map(|m| hour_start_us + m * MINUTE).collect();
    let n = ends.len();
    let tx_max: Vec<f64> = ends
        .iter()
        .map(|&end| match peak {
            Some((at, rate)) if at == end => rate,
            _ => tx_per_minute as f64 / 60.0,
        })
        .collect();
    let ints = |v: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(v)) };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from(ends.clone()).with_timezone("UTC")),
        ints(vec![60_000; n]),
        Arc::new(StringArray::from(vec!["eth0"; n])),
        ints(vec![2; n]),
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
        ints(vec![tx_per_minute; n]),
        ints(vec![tx_per_minute; n]),
        ints(vec![1; n]),
        ints(vec![1; n]),
        Arc::new(Float64Array::from(vec![tx_per_minute as f64 / 60.0; n])),
        Arc::new(Float64Array::from(tx_max)),
        Arc::new(StringArray::from(vec!["ebpf"; n])),
        // rx_errors, tx_errors, rx_dropped, tx_dropped: not known here.
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
        Arc::new(Int64Array::from(vec![None::<i64>; n])),
    ];
    let batch =
        arrow::record_batch::RecordBatch::try_new(Table::NetMinute.schema(), columns).unwrap();
    let host_dir = layout::table_host_dir(data_dir, Table::NetMinute, HOST);
    let (date_dir, hh) = layout::hour_location(&host_dir, layout::hour_of(hour_start_us));
    std::fs::create_dir_all(&date_dir).unwrap();
    let file = std::fs::File::create(date_dir.join(format!("{hh}.parquet"))).unwrap();
    let props = csm_store::writer::writer_properties(Table::NetMinute, HOST);
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn a_long_range_reads_the_rollups_and_raw_rows_where_none_exist() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // 23 rolled-up hours at 1 MB/s each way, with one second at 1 Gbit/s out at 05:30
    // (kept by the roll-up's per-second maximum), then one raw hour at 2 MB/s.
    let spike_minute_end = T0 + 5 * HOUR + 31 * MINUTE;
    let mut store = open_store(data.path());
    for s in 1..=3600 {
        store.push(net_row(
            T0 + 23 * HOUR + s * SECOND,
            "eth0",
            2_000_000,
            2_000_000,
        ));
    }
    // Raw rows also exist for a rolled-up hour: they must not be counted twice.
    for s in 1..=3600 {
        store.push(net_row(T0 + s * SECOND, "eth0", 1_000_000, 1_000_000));
    }
    // Flushed as of the end of the range, so that the store rolls up none of hour 23; the
    // roll-ups it made of the raw hours 0 and 1 are then replaced by the ones under test.
    let errors = store.flush(T0 + 24 * HOUR);
    assert!(errors.is_empty(), "{errors:?}");
    for hour in 0..23 {
        let start = T0 + hour * HOUR;
        let peak = (hour == 5).then_some((spike_minute_end, 125_000_000.0));
        write_net_rollup_hour(data.path(), start, 60_000_000, peak);
    }
    plot_ok(data.path(), out.path(), T0, T0 + 24 * HOUR, &["net"]);

    let svg = Svg::load(&out.path().join("net-eth0.svg"));
    let total = (23.0 * 60.0 * 60_000_000.0 + 3600.0 * 2_000_000.0) / 1024f64.powi(3);
    svg.assert_text(&format!("out (sent, above): total {total:.1} GiB"));
    svg.assert_text("peak 1.0 Gbit/s");
    svg.assert_text("true peak: 1.0 Gbit/s at 05:30");
}

#[test]
fn tz_moves_the_time_axis_and_the_times_written() {
    let (data, out, mut store) = dirs_and_store();
    for m in 0..60 {
        let rtts: &[f64] = if m == 20 { &[] } else { &[20.0, 21.0, 22.0] };
        store.push(ping_row(T0 + m * MINUTE, "example.org", rtts));
    }
    flush(&mut store);
    plot_ok(
        data.path(),
        out.path(),
        T0,
        T0 + HOUR,
        &["ping", "--tz", "+02:00"],
    );
    let svg = Svg::load(&out.path().join("ping-example.org.svg"));
    svg.assert_text("2026-11-20 02:00 to 2026-11-20 03:00 UTC+02:00");
    svg.assert_text("time (UTC+02:00)");
    svg.assert_text("Outages (no reply), UTC+02:00: 11-20 02:20–02:21 (1 min)");
    // Ticks in the chosen zone.
    svg.assert_text("02:10");
}

#[test]
fn loopback_alone_says_why_there_is_no_interface_chart() {
    let (data, out, mut store) = dirs_and_store();
    for s in 1..=600 {
        store.push(net_row(T0 + s * SECOND, "lo", 5_000, 5_000));
    }
    flush(&mut store);
    let output = csm_plot(data.path(), out.path(), T0, T0 + HOUR, &["net"]);
    // No chart at all: exit 1 (it was 0), the reason still given.
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("lo is not charted"),
        "{}",
        stderr(&output)
    );
    assert!(!out.path().join("net-lo.svg").exists());
}

/// The y tick labels: texts right of nothing but left of the plot area.
fn y_labels(svg: &Svg) -> Vec<String> {
    let area = svg.plot_area();
    svg.doc()
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter(|n| {
            n.attribute("x")
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(|x| x < area.x && x > 20.0)
        })
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .filter(|t| t.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .collect()
}

/// `run_plot` that must exit with `code`: its stderr.
#[track_caller]
fn stderr_of_exit(args: &[&str], code: i32) -> String {
    let output = run_plot(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
    err
}

fn run_plot(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_csm-plot"))
        .args(args)
        .output()
        .unwrap();
    eprintln!("stderr: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn ping_chart_says_sub_ms_rtts_short_outages_and_silent_targets_right() {
    let (data, out, mut store) = dirs_and_store();
    // Every 2 s for 2 min, replies of 0.11–0.14 ms; no reply from 00:00:40 to 00:00:52.
    for i in 0..60 {
        let rtts: &[f64] = if (20..26).contains(&i) {
            &[]
        } else if i == 40 {
            &[0.12] // two of three echoes lost
        } else {
            &[0.11, 0.12, 0.14]
        };
        store.push(ping_row(T0 + i * 2 * SECOND, "lan.example", rtts));
    }
    // A name that never resolves: nothing sent, the resolver's error kept.
    for i in 0..4 {
        store.push(PingRow {
            sent: 0,
            addr: None,
            error: Some("nohost.invalid: Name or service not known".into()),
            ..ping_row(T0 + i * 30 * SECOND, "nohost.invalid", &[])
        });
    }
    flush(&mut store);
    plot_ok(data.path(), out.path(), T0, T0 + 2 * MINUTE, &["ping"]);

    let svg = Svg::load(&out.path().join("ping-lan.example.svg"));
    svg.assert_text("Outages (no reply), UTC: 11-20 00:00:40–00:00:52 (12 s)");
    let labels = y_labels(&svg);
    assert!(labels.len() >= 4, "{labels:?}");
    assert!(labels.contains(&"0.10".to_string()), "{labels:?}");
    let mut distinct = labels.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), labels.len(), "repeated labels: {labels:?}");
    svg.assert_text("round-trip time (ms)");
    svg.assert_text("echoes lost (bar height: share, scale at the right)");
    // The partial loss: bars two thirds of the plot high, on a labelled loss scale.
    let area = svg.plot_area();
    let bars = plot_rects(&svg, "#E69F00");
    assert!(!bars.is_empty());
    for bar in &bars {
        assert!(
            (bar.h - area.h * 2.0 / 3.0).abs() < 1.5,
            "{bar:?} in {area:?}"
        );
        assert!(
            (bar.y + bar.h - (area.y + area.h)).abs() < 1.5,
            "from the bottom: {bar:?}"
        );
    }
    assert!(svg.has_text("50% lost") && svg.has_text("100% lost"));
    // Time ticks every 15 s with seconds (a 2 min range had three ticks at 60 s steps).
    assert!(
        svg.has_text("00:00:15") && svg.has_text("00:01:45"),
        "{:?}",
        svg.texts()
    );

    let silent = Svg::load(&out.path().join("ping-nohost.invalid.svg"));
    silent.assert_text(
        "No echo could be sent in 4 measurements: the target never resolved to an \
             address (last error: nohost.invalid: Name or service not known).",
    );
    assert!(!silent.has_text("0.0% lost"));
}

#[test]
fn the_same_interface_in_two_namespaces_gets_two_charts_with_their_own_totals() {
    let (data, out, mut store) = dirs_and_store();
    const OTHER_NS: i64 = 4_026_532_999;
    for s in 1..=60 {
        store.push(NetRow {
            netns: Some(0xF000_0000),
            ..net_row(T0 + s * SECOND, "veth0", 1000, 2000)
        });
        store.push(NetRow {
            netns: Some(OTHER_NS),
            ifindex: 7,
            ..net_row(T0 + s * SECOND, "veth0", 50_000, 70_000)
        });
    }
    flush(&mut store);
    plot_ok(data.path(), out.path(), T0, T0 + 2 * MINUTE, &["net"]);

    let host = Svg::load(&out.path().join("net-veth0.svg"));
    let other = Svg::load(
        &out.path()
            .join(format!("net-veth0.netns-inode-{OTHER_NS}.svg")),
    );
    let total = |bytes: f64| format!("total {}", csm_plot::units::bytes(bytes));
    host.assert_text(&total(60.0 * 2000.0));
    host.assert_text(&total(60.0 * 1000.0));
    other.assert_text(&total(60.0 * 70_000.0));
    other.assert_text(&total(60.0 * 50_000.0));
    other.assert_text(&format!(
        "Traffic of veth0 in network namespace inode-{OTHER_NS} on"
    ));
    host.assert_text("Traffic of veth0 on");
}

/// Fill colour of each user's area in a chart, from the tooltips: `(user, fill)`.
fn user_fills(svg: &Svg) -> Vec<(String, String)> {
    let mut fills: Vec<(String, String)> = svg
        .doc()
        .descendants()
        .filter(|n| n.has_tag_name("polygon"))
        .filter_map(|n| {
            let title = n.children().find(|c| c.has_tag_name("title"))?;
            let user = title.text()?.split(' ').next()?.to_string();
            Some((user, n.attribute("fill")?.to_string()))
        })
        .collect();
    fills.sort();
    fills.dedup();
    fills
}

#[test]
fn a_user_keeps_one_colour_in_the_cpu_mem_and_traffic_charts() {
    let (data, out, mut store) = dirs_and_store();
    for s in 1..=600 {
        let ts = T0 + s * SECOND;
        // CPU ranks bob first; memory and traffic would rank alice first.
        store.push(cpu_row(ts, 1001, "bob", 90.0));
        store.push(cpu_row(ts, 1000, "alice", 10.0));
        for (uid, user, bytes) in [(1000, "alice", 90_000), (1001, "bob", 1_000)] {
            store.push(NetUidRow {
                ts_us: ts,
                dur_ms: 1000,
                uid,
                user: Some(user.into()),
                rx_bytes: bytes,
                tx_bytes: bytes,
            });
        }
        if s % 10 == 0 {
            for (uid, user, rss) in [
                (1000, "alice", 900 * MIB),
                (1001, "bob", 100 * MIB),
                (1002, "carol", 500 * MIB),
            ] {
                store.push(MemRow {
                    ts_us: ts,
                    uid,
                    user: Some(user.into()),
                    nproc: 1,
                    rss_bytes: rss,
                    pss_bytes: None,
                    swap_bytes: None,
                });
            }
        }
    }
    flush(&mut store);
    plot_ok(
        data.path(),
        out.path(),
        T0,
        T0 + 10 * MINUTE,
        &["cpu", "mem", "net-users"],
    );
    let (blue, orange, green) = ("#0072B2", "#E69F00", "#009E73");
    let fills = |name: &str| user_fills(&Svg::load(&out.path().join(name)));
    let two = vec![
        ("alice".to_string(), orange.to_string()),
        ("bob".to_string(), blue.to_string()),
    ];
    assert_eq!(fills("cpu.svg"), two);
    assert_eq!(fills("net-users.svg"), two);
    let mut three = two.clone();
    three.push(("carol".to_string(), green.to_string()));
    assert_eq!(fills("mem.svg"), three);

    let mem = Svg::load(&out.path().join("mem.svg"));
    // Stacked 1.5 GiB: ticks at round binary values.
    assert_eq!(
        y_labels(&mem),
        ["0.00", "0.25", "0.50", "0.75", "1.00", "1.25", "1.50"],
        "{:?}",
        mem.texts()
    );
    mem.assert_text("resident memory (GiB)");
    let cpu = Svg::load(&out.path().join("cpu.svg"));
    cpu.assert_text("bob (avg 90.0%)");
    cpu.assert_text("Averages in the legend are over the 10 min with data.");
}

#[test]
fn the_average_is_over_the_time_with_data_whatever_the_range() {
    let data = tempfile::tempdir().unwrap();
    let mut store = open_store(data.path());
    for s in 1..=60 {
        store.push(cpu_row(T0 + s * SECOND, 1000, "alice", 40.0));
        store.push(cpu_row(T0 + (60 + s) * SECOND, 1000, "alice", 50.0));
    }
    flush(&mut store);
    for hours in [1, 24] {
        let out = tempfile::tempdir().unwrap();
        plot_ok(data.path(), out.path(), T0, T0 + hours * HOUR, &["cpu"]);
        let cpu = Svg::load(&out.path().join("cpu.svg"));
        assert!(
            cpu.has_text("alice (avg 45.0%)"),
            "{hours} h: {:?}",
            cpu.texts()
        );
        cpu.assert_text("over the 2 min with data");
    }
}

#[test]
fn without_from_the_range_starts_at_the_data_and_nothing_drawn_exits_1() {
    let (data, out, mut store) = dirs_and_store();
    for s in 1..=60 {
        store.push(cpu_row(T0 + 30 * SECOND + s * SECOND, 1000, "alice", 40.0));
    }
    flush(&mut store);
    let dir = data.path().to_str().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let to = rfc3339(T0 + 2 * MINUTE);
    let output = run_plot(&["--data-dir", dir, "--out", out_dir, "--to", &to, "cpu"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cpu = Svg::load(&out.path().join("cpu.svg"));
    cpu.assert_text("on testhost, 2026-11-20 00:00 to 2026-11-20 00:02 UTC");

    for args in [
        vec!["--data-dir", dir, "--out", out_dir, "--host", "nohost"],
        vec![
            "--data-dir",
            dir,
            "--out",
            out_dir,
            "--from",
            "2026-11-21",
            "--to",
            "2026-11-22",
        ],
    ] {
        let err = stderr_of_exit(&args, 1);
        assert_eq!(err.matches("no chart drawn").count(), 1, "{err}");
        assert_eq!(
            err.lines()
                .last()
                .unwrap_or("")
                .matches("no chart drawn")
                .count(),
            1
        );
    }
}

#[test]
fn berlin_time_is_drawn_right_across_the_spring_change() {
    let (data, out, mut store) = dirs_and_store();
    // 2026-03-29 00:00–04:00 UTC: Berlin's clocks go from 02:00 CET to 03:00 CEST at 01:00 UTC.
    let from = 1_774_742_400_000_000;
    for m in 0..240 {
        store.push(ping_row(from + m * MINUTE, "example.org", &[20.0]));
    }
    flush(&mut store);
    let output = Command::new(env!("CARGO_BIN_EXE_csm-plot"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--out")
        .arg(out.path())
        .args(["--from", &rfc3339(from), "--to", &rfc3339(from + 4 * HOUR)])
        .args(["--tz", "Europe/Berlin", "ping"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let svg = Svg::load(&out.path().join("ping-example.org.svg"));
    svg.assert_text("2026-03-29 01:00 to 2026-03-29 06:00 Europe/Berlin");
    svg.assert_text("time (Europe/Berlin)");
    // Half-hour ticks on Berlin's clock: 01:30, then 03:00 an hour of UTC later; no 02:xx.
    let area = svg.plot_area();
    let tick_x = |label: &str| {
        svg.doc()
            .descendants()
            .find(|n| n.has_tag_name("text") && n.text().map(str::trim) == Some(label))
            .and_then(|n| n.attribute("x")?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no tick {label}: {:?}", svg.texts()))
    };
    assert!((tick_x("01:30") - area.x_at(from + 30 * MINUTE, from, from + 4 * HOUR)).abs() < 2.0);
    assert!((tick_x("03:00") - area.x_at(from + HOUR, from, from + 4 * HOUR)).abs() < 2.0);
    assert!((tick_x("06:00") - area.x_at(from + 4 * HOUR, from, from + 4 * HOUR)).abs() < 2.0);
    assert!(
        !svg.has_text("02:00") && !svg.has_text("02:30"),
        "{:?}",
        svg.texts()
    );
}

/// The errors and drops chart: the range's totals of the four counters in the legend,
/// out above the axis and in below; no chart for an interface without any, nor for
/// files written before csm collected them (the rows read them as nulls).
#[test]
fn errors_and_drops_chart_says_the_totals_and_old_files_have_none() {
    let (data, out, mut store) = dirs_and_store();
    for s in 1..=60 {
        let ts = T0 + s * SECOND;
        store.push(NetRow {
            rx_dropped: Some(2),
            tx_errors: Some(i64::from(s == 30) * 5),
            ..net_row(ts, "eth0", 1000, 2000)
        });
        store.push(net_row(ts, "eth1", 1000, 2000));
        store.push(NetRow {
            rx_errors: None,
            tx_errors: None,
            rx_dropped: None,
            tx_dropped: None,
            ..net_row(ts, "eth2", 1000, 2000)
        });
    }
    flush(&mut store);
    plot_ok(
        data.path(),
        out.path(),
        T0,
        T0 + 2 * MINUTE,
        &["net-errors"],
    );
    let svg = Svg::load(&out.path().join("net-errors-eth0.svg"));
    svg.assert_text("out (sent, above): 5 errors, 0 dropped");
    svg.assert_text("in (received, below): 0 errors, 120 dropped");
    for quiet in ["eth1", "eth2"] {
        assert!(!out.path().join(format!("net-errors-{quiet}.svg")).exists());
    }

    // Files written before the columns existed: read, no chart, one note.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../csm-store/tests/fixtures/written-by-main-2026-11-28");
    let out = tempfile::tempdir().unwrap();
    let output = run_plot(&[
        "--data-dir",
        fixture.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--from",
        "2026-11-25T10:00:00Z",
        "--to",
        "2026-11-25T12:00:00Z",
        "net-errors",
        "net",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no errors or drops for host fixture"),
        "{}",
        stderr(&output)
    );
    assert!(out.path().join("net-eth0.svg").exists());
    assert!(!out.path().join("net-errors-eth0.svg").exists());
}

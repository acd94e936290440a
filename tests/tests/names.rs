//! Issue 21 point 5, as the attack: a user names interfaces in its own network namespaces
//! with an escape sequence, a right-to-left override and a spreadsheet formula, and sends
//! traffic through them while the real eBPF daemon runs. `csm report` (text and CSV),
//! `csm top --once --format text` and the csm-plot SVGs must show none of them raw: the
//! text escaped (`\u{1b}`, `\u{202e}`), the formula prefixed with `'` in the CSV.

use std::fs;
use std::process::Command;
use std::time::Duration;

use csm::store::NetRow;
use csm_tests::netns::{veth, Ipv6, Netns};
use csm_tests::{csm_bin, require_root, run_csm, wait_until, Daemon, DataDir};

/// Interface names as a user may give them: at most 15 bytes, no `/`, `:` nor whitespace.
const ESC: &str = "e\x1b[31mx";
const RLO: &str = "r\u{202e}olx";
const FORMULA: &str = "=1+2*cmd|x";
/// The peers of the evil names, plain.
const PEERS: [&str; 3] = ["csmnmpa", "csmnmpb", "csmnmpc"];

/// What must never appear in a terminal's or a chart's text.
fn assert_nothing_raw(what: &str, text: &str) {
    for raw in ['\x1b', '\u{202e}'] {
        assert!(!text.contains(raw), "{what} shows {raw:?} raw:\n{text:?}");
    }
}

fn stdout_of(what: &str, out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn names_with_escapes_overrides_and_formulas_reach_no_output_raw() {
    require_root();
    let data = DataDir::new();
    let daemon = Daemon::builder()
        .data_dir(&data)
        .args(["--interval", "1s", "--flush-interval", "1s"])
        .backend("ebpf")
        .start();
    let user_side = Netns::new("nmu", Ipv6::Off);
    let peer_side = Netns::new("nmp", Ipv6::Off);
    for (i, (evil, peer)) in [ESC, RLO, FORMULA].into_iter().zip(PEERS).enumerate() {
        veth(&user_side, evil, &peer_side, peer);
        let (mine, theirs) = (format!("10.91.{i}.1/24"), format!("10.91.{i}.2/24"));
        user_side.ip(&["addr", "add", &mine, "dev", evil]);
        peer_side.ip(&["addr", "add", &theirs, "dev", peer]);
    }
    let ping_all = || {
        for i in 0..3 {
            let to = format!("10.91.{i}.2");
            user_side.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", &to]);
        }
    };
    ping_all();
    // `top` while the traffic goes on: the daemon's counters name every interface.
    let top = run_csm([
        "top",
        "--once",
        "--format",
        "text",
        "--interval",
        "1s",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    let top = stdout_of("csm top", &top);
    wait_until(
        "net rows of the three interfaces",
        Duration::from_secs(20),
        || {
            let rows: Vec<NetRow> = data.rows();
            [ESC, RLO, FORMULA]
                .iter()
                .all(|name| rows.iter().any(|r| r.iface == *name && r.rx_bytes > 0))
        },
    );
    ping_all();
    daemon.stop();

    assert_nothing_raw("csm top", &top);
    for shown in ["e\\u{1b}[31mx", "r\\u{202e}olx", FORMULA] {
        assert!(top.contains(shown), "csm top lacks {shown}:\n{top}");
    }

    let report = |format: &str| {
        let out = run_csm([
            "report",
            "--data-dir",
            data.path().to_str().unwrap(),
            "--from",
            "-1h",
            "--format",
            format,
            "interfaces",
        ]);
        stdout_of("csm report", &out)
    };
    let text = report("text");
    assert_nothing_raw("csm report", &text);
    for shown in ["e\\u{1b}[31mx", "r\\u{202e}olx", FORMULA] {
        assert!(text.contains(shown), "the report lacks {shown}:\n{text}");
    }
    // The namespaces are named by csm's one label: `ip netns` names them.
    assert!(text.contains(&user_side.name), "{text}");

    let csv_text = report("csv");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let cells: Vec<String> = reader
        .records()
        .flat_map(|r| {
            r.expect("a CSV record")
                .iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        cells.iter().any(|c| c == "'=1+2*cmd|x"),
        "the formula is prefixed: {csv_text}"
    );
    for cell in &cells {
        assert!(
            !cell.starts_with(['=', '+', '@', '\t', '\r']),
            "a cell a spreadsheet would run: {cell:?} in\n{csv_text}"
        );
        if cell.starts_with('-') {
            assert!(
                cell.parse::<f64>().is_ok(),
                "a text cell starting with '-': {cell:?}"
            );
        }
    }
    // JSON stays exact: the names as they are, escaped by JSON itself.
    let json: serde_json::Value = serde_json::from_str(&report("json")).expect("JSON");
    let names: Vec<&str> = json["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .filter_map(|i| i["iface"].as_str())
        .collect();
    for exact in [ESC, RLO, FORMULA] {
        assert!(names.contains(&exact), "{exact:?} not exact in {names:?}");
    }

    let charts = data.beside("charts");
    let plot = Command::new(csm_bin("csm-plot"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--out")
        .arg(&charts)
        .args(["--from", "-1h", "net"])
        .output()
        .expect("run csm-plot");
    stdout_of("csm-plot", &plot);
    let mut svgs = 0;
    let mut all = String::new();
    for entry in fs::read_dir(&charts).expect("the charts folder").flatten() {
        if entry.path().extension().is_some_and(|x| x == "svg") {
            let svg = fs::read_to_string(entry.path()).expect("an SVG");
            assert_nothing_raw(&entry.path().display().to_string(), &svg);
            all.push_str(&svg);
            svgs += 1;
        }
    }
    assert!(svgs > 0, "csm-plot drew no chart");
    assert!(
        all.contains("r\\u{202e}olx"),
        "the override shown escaped in a chart"
    );
}

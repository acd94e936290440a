//! Property tests of the /proc parsers: arbitrary and mutated input never panics, and
//! well-formed input reads back exactly.
//!
//! Bounded for CI (proptest's default 256 cases per property, a second or two in all).
//! The long run, for minutes:
//! `PROPTEST_CASES=2000000 cargo test --release -p csm-user --test fuzz_parsers`

use csm::sources::procfs::beancounters::parse_user_beancounters;
use csm::sources::procfs::netdev::parse_net_dev;
use csm::sources::procfs::pid::{parse_stat, parse_status};
use csm::sources::procfs::smaps::parse_smaps_rollup;
use proptest::prelude::*;

const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5209      53    0    0    0     0          0         0     5209      53    0    0    0     0       0          0
  eth0:4294967000 3000000    0    0    0     0          0         0 123456789   45678    0    0    0     0       0          0
";

const UBC: &str = "Version: 2.5
       uid  resource                     held              maxheld              barrier                limit              failcnt
      101:  kmemsize                  2752214              3192320             14372700             14790164                    0
            privvmpages                 71232                84608               262144               292912                   17
";

const STAT: &str = "4242 (bash) S 1 4242 4242 34816 4242 4194560 2870 7412 0 3 4 2 11 6 20 0 1 0 2203 9732096 1263 18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0\n";

/// A valid text with a random edit: bytes replaced, a range cut out, or text inserted.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    (0..base.len(), 0..64usize, any::<String>(), 0..3u8).prop_map(move |(at, len, insert, kind)| {
        let bytes = base.as_bytes();
        let end = (at + len).min(bytes.len());
        let mut out = bytes[..at].to_vec();
        match kind {
            0 => out.extend_from_slice(&bytes[end..]),
            1 => {
                out.extend_from_slice(insert.as_bytes());
                out.extend_from_slice(&bytes[at..]);
            }
            _ => {
                out.extend_from_slice(insert.as_bytes());
                out.extend_from_slice(&bytes[end..]);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// Text drawn from the characters these files are made of, so the parsers get deep.
fn procish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(' '),
            Just(':'),
            Just('|'),
            Just('\n'),
            Just('('),
            Just(')'),
            Just('-'),
            proptest::char::range('0', '9'),
            proptest::char::range('a', 'z'),
        ],
        0..400,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn net_dev_never_panics(text in prop_oneof![any::<String>(), procish(), mutated(NET_DEV)]) {
        let parsed = parse_net_dev(&text);
        for w in &parsed.warnings {
            prop_assert!(w.line >= 1 && w.line <= text.lines().count().max(1));
        }
    }

    #[test]
    fn beancounters_never_panic(text in prop_oneof![any::<String>(), procish(), mutated(UBC)]) {
        let parsed = parse_user_beancounters(&text);
        for w in &parsed.warnings {
            prop_assert!(w.line >= 1 && w.line <= text.lines().count().max(1));
        }
    }

    #[test]
    fn stat_and_status_never_panic(text in prop_oneof![any::<String>(), procish(), mutated(STAT)]) {
        let _ = parse_stat(&text);
        let _ = parse_status(&text);
        let _ = parse_smaps_rollup(&text);
    }

    /// Any command name (spaces and parentheses included) and any counters read back.
    #[test]
    fn stat_reads_back(comm in "[ -~]{0,16}", ppid in any::<u32>(),
                       t in proptest::array::uniform5(any::<u32>())) {
        let line = format!(
            "77 ({comm}) R {ppid} 1 1 0 -1 0 0 0 0 0 {} {} {} {} 20 0 1 0 {} 100 5\n",
            t[0], t[1], t[2], t[3], t[4]
        );
        let s = parse_stat(&line).unwrap();
        prop_assert_eq!((s.ppid, s.utime, s.stime, s.cutime, s.cstime, s.starttime),
            (ppid, t[0] as u64, t[1] as u64, t[2] as u64, t[3] as u64, t[4] as u64));
    }

    /// Generated interfaces, in the old (no space after the colon) or modern layout.
    #[test]
    fn net_dev_reads_back(ifaces in proptest::collection::vec(
        ("[a-z][a-z0-9.-]{0,14}", proptest::array::uniform4(any::<u64>())), 0..8),
        old in any::<bool>()) {
        let mut text = NET_DEV.lines().take(2).collect::<Vec<_>>().join("\n");
        text.push('\n');
        for (name, c) in &ifaces {
            let sep = if old { "" } else { " " };
            text.push_str(&format!("{name:>6}:{sep}{} {} 0 0 0 0 0 0 {} {} 0 0 0 0 0 0\n", c[0], c[1], c[2], c[3]));
        }
        let parsed = parse_net_dev(&text);
        prop_assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let got: Vec<_> = parsed.value.iter()
            .map(|i| (i.name.clone(), [i.rx_bytes, i.rx_packets, i.tx_bytes, i.tx_packets]))
            .collect();
        prop_assert_eq!(got, ifaces);
    }
}

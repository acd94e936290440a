//! BSD process accounting (`acct(2)`, format v3): one 64-byte record per process at exit,
//! with its real uid and CPU time. It sees processes that live and die between two /proc
//! samples, with the right uid, which the parent's cutime cannot give. Measured (see
//! tests/tests/proc_vs_ebpf.rs), not yet used by the daemon: switching accounting on is a
//! host-wide setting that a running psacct/acct service owns.
//!
//! Times are `comp_t` (13-bit mantissa, 3-bit base-8 exponent) in AHZ = 100 ticks per
//! second, each truncated: a process that ran under 10 ms of user or system time counts 0.

/// One exited process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcctRecord {
    pub uid: u32,
    pub pid: u32,
    pub ppid: u32,
    /// Creation time, seconds since the epoch.
    pub btime: u32,
    /// User + system time in ns (from AHZ ticks).
    pub cpu_ns: u64,
}

pub const RECORD_LEN: usize = 64;
const ACCT_VERSION_3: u8 = 3;
const NS_PER_AHZ_TICK: u64 = 10_000_000;

/// Records of a v3 accounting file; a trailing partial record and records of another
/// version are skipped.
pub fn parse_acct_v3(bytes: &[u8]) -> Vec<AcctRecord> {
    bytes
        .chunks_exact(RECORD_LEN)
        .filter(|r| r[1] & 0x0f == ACCT_VERSION_3)
        .map(|r| {
            let u32_at = |i: usize| u32::from_ne_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
            let comp_at = |i: usize| decode_comp_t(u16::from_ne_bytes([r[i], r[i + 1]]));
            AcctRecord {
                uid: u32_at(8),
                pid: u32_at(16),
                ppid: u32_at(20),
                btime: u32_at(24),
                cpu_ns: (comp_at(32) + comp_at(34)) * NS_PER_AHZ_TICK,
            }
        })
        .collect()
}

/// `comp_t`: value = mantissa << (3 * exponent).
pub fn decode_comp_t(c: u16) -> u64 {
    u64::from(c & 0x1fff) << (3 * u32::from(c >> 13))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comp_t() {
        assert_eq!(decode_comp_t(0), 0);
        assert_eq!(decode_comp_t(8191), 8191);
        assert_eq!(decode_comp_t((1 << 13) | 1000), 8000);
    }

    #[test]
    fn records() {
        let mut r = [0u8; RECORD_LEN];
        r[1] = 3;
        r[8..12].copy_from_slice(&1000u32.to_ne_bytes());
        r[16..20].copy_from_slice(&4242u32.to_ne_bytes());
        r[20..24].copy_from_slice(&1u32.to_ne_bytes());
        r[32..34].copy_from_slice(&7u16.to_ne_bytes());
        r[34..36].copy_from_slice(&3u16.to_ne_bytes());
        let mut bytes = r.to_vec();
        bytes.extend_from_slice(&[0u8; 10]); // a partial record
        let got = parse_acct_v3(&bytes);
        assert_eq!(
            got,
            vec![AcctRecord {
                uid: 1000,
                pid: 4242,
                ppid: 1,
                btime: 0,
                cpu_ns: 100_000_000
            }]
        );
    }
}

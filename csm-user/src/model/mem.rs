//! Memory per uid: per-process gauges summed by uid.

use std::collections::BTreeMap;

/// One process's memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessMem {
    /// The process id, as /proc names it.
    pub pid: u32,
    pub uid: u32,
    pub rss: u64,
    /// From smaps_rollup; `None` where the kernel has none (before 4.14).
    pub pss: Option<u64>,
    /// `VmSwap`; `None` before Linux 2.6.34.
    pub swap: Option<u64>,
}

/// One uid's memory at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UidMem {
    pub nproc: u64,
    pub rss: u64,
    /// `None` unless every counted process of the uid had a PSS: a partial sum would
    /// look like a drop.
    pub pss: Option<u64>,
    pub swap: Option<u64>,
}

pub fn mem_per_uid(processes: &[ProcessMem]) -> BTreeMap<u32, UidMem> {
    let mut per_uid: BTreeMap<u32, UidMem> = BTreeMap::new();
    for p in processes {
        let entry = per_uid.entry(p.uid).or_insert(UidMem {
            pss: Some(0),
            swap: Some(0),
            ..Default::default()
        });
        entry.nproc += 1;
        entry.rss += p.rss;
        entry.pss = add(entry.pss, p.pss);
        entry.swap = add(entry.swap, p.swap);
    }
    per_uid
}

fn add(sum: Option<u64>, value: Option<u64>) -> Option<u64> {
    Some(sum?.saturating_add(value?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_uid_and_pss_needs_every_process() {
        let p = |uid, rss, pss, swap| ProcessMem {
            pid: 1,
            uid,
            rss,
            pss,
            swap,
        };
        let m = mem_per_uid(&[
            p(1000, 10, Some(5), Some(1)),
            p(1000, 20, Some(7), Some(0)),
            p(0, 100, None, Some(3)),
            p(0, 50, Some(40), None),
        ]);
        assert_eq!(
            m[&1000],
            UidMem {
                nproc: 2,
                rss: 30,
                pss: Some(12),
                swap: Some(1)
            }
        );
        assert_eq!(
            m[&0],
            UidMem {
                nproc: 2,
                rss: 150,
                pss: None,
                swap: None
            }
        );
    }
}

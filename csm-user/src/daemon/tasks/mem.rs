//! Memory per uid (`mem` table), for every backend: a gauge sampled at start, every
//! `mem.interval`, and at stop.

use crate::daemon::collector::{Collector, Kind};
use crate::daemon::{now_us, Rows};
use crate::model::mem::{mem_per_uid, ProcessMem};
use crate::sources::procfs::mem::ProcMemSampler;
use crate::sources::users::UserNames;
use crate::store::MemRow;

pub struct MemCollector {
    sampler: ProcMemSampler,
    names: UserNames,
}

impl MemCollector {
    pub fn new(sampler: ProcMemSampler) -> Self {
        MemCollector {
            sampler,
            names: UserNames::default(),
        }
    }
}

impl Collector for MemCollector {
    type Sample = Vec<ProcessMem>;
    const NAME: &'static str = "mem";
    const KIND: Kind<Vec<ProcessMem>> = Kind::Gauge;

    fn rows(&mut self, _prev: &Vec<ProcessMem>, cur: &mut Vec<ProcessMem>) -> Vec<Rows> {
        let ts_us = now_us();
        let rows: Vec<MemRow> = mem_per_uid(cur)
            .into_iter()
            .map(|(uid, m)| MemRow {
                ts_us,
                uid: uid.into(),
                user: self.names.name(uid),
                nproc: clamp(m.nproc),
                rss_bytes: clamp(m.rss),
                pss_bytes: m.pss.map(clamp),
                swap_bytes: m.swap.map(clamp),
            })
            .collect();
        vec![Rows::from(rows)]
    }

    fn sample(&mut self) -> anyhow::Result<Vec<ProcessMem>> {
        self.sampler.sample()
    }
}

/// INT64 columns: values beyond i64::MAX (never seen in practice) saturate.
pub fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

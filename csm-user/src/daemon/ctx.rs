//! What the daemon and its collector tasks share: the rows they hand to the store loop,
//! the context each task gets, and the clock they stamp rows with.

use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::settings::Settings;
use crate::model::{netdev, CpuSample, NetSample};
use csm_store::{Event, EventRow, Row, TableRows};

/// What a collector hands to the store loop: rows of any table, or the cumulative
/// sample the rows sent so far end at.
#[derive(Debug)]
pub enum Rows {
    Table(TableRows),
    /// The cumulative CPU sample the `cpu` rows just sent end at (persisted with each
    /// flush, for recovery after a crash).
    CpuTotals(CpuSample),
    /// The cumulative traffic sample the `net`/`net_uid` rows just sent end at (same use).
    NetTotals(NetSample),
    /// The `/proc/net/dev` sample the /proc backend's `Net` rows just sent end at.
    NetdevTotals(netdev::NetSample),
}

impl Rows {
    /// An event that happens now.
    pub fn event(event: Event) -> Rows {
        vec![EventRow::new(now_us(), &event)].into()
    }
}

impl<R: Row> From<Vec<R>> for Rows {
    fn from(rows: Vec<R>) -> Rows {
        Rows::Table(rows.into())
    }
}

pub type RowSender = mpsc::UnboundedSender<Rows>;

/// What every collector task gets: the settings, where rows go, and the stop signal.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<Settings>,
    pub rows: RowSender,
    pub shutdown: watch::Receiver<bool>,
}

impl Ctx {
    pub fn send(&self, rows: Rows) {
        // The receiver lives until every collector has finished: a send cannot fail
        // before then.
        let _ = self.rows.send(rows);
    }

    pub fn event(&self, event: Event) {
        self.send(Rows::event(event));
    }
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Things that must outlive the collectors (attached eBPF programs).
pub type KeepAlive = Vec<Rc<dyn std::any::Any>>;

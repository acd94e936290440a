//! Evaluation: the rules against the rows the collectors send (each batch of `cpu` or
//! `net` rows is one interval; each `ping` row one measurement) and the daemon's events;
//! a [`Transition`] whenever a rule starts or stops firing for a subject.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use csm_store::outages::outages;

use super::rules::{Direction, Kind, Rule, Trouble};
use crate::daemon::ctx::Rows;
use csm_store::{AlertEvent, CpuRow, EventRow, NetRow, PingRow};

/// The most subjects (users) one rule follows at once; more are not evaluated (a rule
/// on every user of a machine with more active users than this is not what it meant).
pub const MAX_SUBJECTS_PER_RULE: usize = 1000;
/// Measurements kept per target for the outage definition: the first of the outage and
/// the latest ones are what its start, end and length depend on.
const MAX_OUTAGE_MEASUREMENTS: usize = 64;

/// A rule starting or stopping firing for one subject.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// Index of the rule in the config.
    pub rule: usize,
    /// The events row it becomes (at `at_us`).
    pub event: AlertEvent,
    /// When it happened: the time it fired, or for an outage's end the start of the
    /// first measurement answered again (the end `csm report` gives the outage).
    pub at_us: i64,
}

/// Whether one condition of one subject holds, and since when.
#[derive(Default, Debug)]
struct Tracker {
    since_us: Option<i64>,
    firing: bool,
}

impl Tracker {
    /// The condition holds (`started_us`: when it began to) or not, seen at `now_us`.
    fn update(
        &mut self,
        holds: bool,
        started_us: i64,
        now_us: i64,
        hold_for: Duration,
    ) -> Option<bool> {
        if holds {
            let since = *self.since_us.get_or_insert(started_us);
            if !self.firing && now_us - since >= hold_for.as_micros() as i64 {
                self.firing = true;
                return Some(true);
            }
            None
        } else {
            self.since_us.take();
            if self.firing {
                self.firing = false;
                return Some(false);
            }
            None
        }
    }
}

/// The state of every rule.
pub struct Alerts {
    rules: Vec<Rule>,
    /// Per rule, per subject.
    trackers: Vec<BTreeMap<String, Tracker>>,
    /// Per target: its recent measurements `(start, sent, received)`.
    pings: BTreeMap<String, VecDeque<(i64, i64, i64)>>,
    /// When the last overflow event came.
    last_overflow_us: Option<i64>,
}

impl Alerts {
    pub fn new(rules: Vec<Rule>) -> Alerts {
        let trackers = rules.iter().map(|_| BTreeMap::new()).collect();
        Alerts {
            rules,
            trackers,
            pings: BTreeMap::new(),
            last_overflow_us: None,
        }
    }

    pub fn rule(&self, index: usize) -> &Rule {
        &self.rules[index]
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rows on their way to the store.
    pub fn observe(&mut self, rows: &Rows, now_us: i64) -> Vec<Transition> {
        let Rows::Table(rows) = rows else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(rows) = rows.get::<PingRow>() {
            for row in rows {
                self.ping(row, &mut out);
            }
        } else if let Some(rows) = rows.get::<CpuRow>() {
            self.cpu(rows, &mut out);
        } else if let Some(rows) = rows.get::<NetRow>() {
            self.rate(rows, &mut out);
        } else if let Some(rows) = rows.get::<EventRow>() {
            for row in rows {
                self.daemon_event(&row.event, row.ts_us, &mut out);
            }
        }
        self.overflow_quiet(now_us, &mut out);
        out
    }

    /// An event the store wrote itself (`write_error`, `write_ok`).
    pub fn event(&mut self, name: &str, at_us: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        self.daemon_event(name, at_us, &mut out);
        out
    }

    /// At start: the backend `auto` chose was /proc.
    pub fn fell_back(&mut self, at_us: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        self.each_trouble(
            |t| t == Trouble::Fallback,
            |alerts, index, out| {
                alerts.set(index, "", true, at_us, at_us, Duration::ZERO, 1.0, out);
            },
            &mut out,
        );
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        rule: usize,
        subject: &str,
        holds: bool,
        started_us: i64,
        now_us: i64,
        hold_for: Duration,
        value: f64,
        out: &mut Vec<Transition>,
    ) {
        let trackers = &mut self.trackers[rule];
        if !trackers.contains_key(subject) && (!holds || trackers.len() >= MAX_SUBJECTS_PER_RULE) {
            return;
        }
        let tracker = trackers.entry(subject.to_string()).or_default();
        let since_before = tracker.since_us;
        let Some(firing) = tracker.update(holds, started_us, now_us, hold_for) else {
            if !holds {
                trackers.remove(subject);
            }
            return;
        };
        let since_us = tracker.since_us.or(since_before).unwrap_or(started_us);
        if !firing {
            trackers.remove(subject);
        }
        out.push(Transition {
            rule,
            at_us: now_us,
            event: AlertEvent {
                name: self.rules[rule].name.clone(),
                firing,
                subject: subject.to_string(),
                value,
                since_us,
            },
        });
    }

    fn ping(&mut self, row: &PingRow, out: &mut Vec<Transition>) {
        // A measurement the daemon could not send on time says nothing about the target
        // (the one outage definition leaves it out): it neither fires nor resolves.
        if !csm_store::outages::measured(row.sent, row.error.as_deref()) {
            return;
        }
        let history = self.pings.entry(row.target.clone()).or_default();
        if row.received > 0 {
            history.clear();
        } else if history.len() >= MAX_OUTAGE_MEASUREMENTS {
            // Keep the outage's first measurement and the latest: its start and length
            // are the same without the ones between.
            history.remove(1);
        }
        history.push_back((row.ts_us, row.sent, row.received));
        let outage = outages(
            history
                .iter()
                .map(|&(ts, _, received)| (ts, received, true)),
        )
        .into_iter()
        .last();
        for index in 0..self.rules.len() {
            match &self.rules[index].kind {
                Kind::Outage { target, for_ } if *target == row.target => {
                    let for_ = *for_;
                    match outage {
                        Some(o) if o.ongoing() => {
                            let value = o.duration_us() as f64 / 1e6;
                            self.set(
                                index,
                                &row.target,
                                true,
                                o.start_us,
                                o.until_us,
                                for_,
                                value,
                                out,
                            );
                        }
                        _ => self.set(
                            index,
                            &row.target,
                            false,
                            row.ts_us,
                            row.ts_us,
                            for_,
                            0.0,
                            out,
                        ),
                    }
                }
                Kind::Loss {
                    target,
                    window,
                    above_pct,
                } if *target == row.target => {
                    let (window, above) = (*window, *above_pct);
                    let loss = self.loss(index, row, window);
                    let holds = loss.is_some_and(|pct| pct > above);
                    self.set(
                        index,
                        &row.target,
                        holds,
                        row.ts_us,
                        row.ts_us,
                        Duration::ZERO,
                        loss.unwrap_or(0.0),
                        out,
                    );
                }
                _ => {}
            }
        }
    }

    /// Loss % over the window ending at this measurement (None when nothing was sent).
    fn loss(&mut self, _rule: usize, row: &PingRow, window: Duration) -> Option<f64> {
        // The loss window needs every measurement in it, not only an outage's: kept per
        // target in a separate history.
        let key = format!("\0loss\0{}", row.target);
        let history = self.pings.entry(key).or_default();
        history.push_back((row.ts_us, row.sent, row.received));
        let oldest = row.ts_us - window.as_micros() as i64;
        while history.front().is_some_and(|&(ts, _, _)| ts <= oldest) {
            history.pop_front();
        }
        let (sent, received) = history.iter().fold((0, 0), |(s, r), &(_, sent, received)| {
            (s + sent, r + received.min(sent))
        });
        (sent > 0).then(|| (sent - received) as f64 * 100.0 / sent as f64)
    }

    /// One interval's `cpu` rows: every user without a row used no CPU in it.
    fn cpu(&mut self, rows: &[CpuRow], out: &mut Vec<Transition>) {
        let Some(first) = rows.first() else { return };
        let (now_us, started_us) = (first.ts_us, first.ts_us - first.dur_ms * 1000);
        let mut by_user: BTreeMap<String, f64> = BTreeMap::new();
        for row in rows {
            let user = row.user.clone().unwrap_or_else(|| row.uid.to_string());
            *by_user.entry(user).or_default() += row.cpu_pct;
        }
        for index in 0..self.rules.len() {
            let Kind::Cpu {
                user,
                above_pct,
                for_,
            } = &self.rules[index].kind
            else {
                continue;
            };
            let (user, above, for_) = (user.clone(), *above_pct, *for_);
            let mut subjects: Vec<String> = match &user {
                Some(user) => vec![user.clone()],
                None => by_user.keys().cloned().collect(),
            };
            subjects.extend(self.trackers[index].keys().cloned());
            subjects.sort();
            subjects.dedup();
            for subject in subjects {
                let pct = by_user.get(&subject).copied().unwrap_or(0.0);
                self.set(
                    index,
                    &subject,
                    pct > above,
                    started_us,
                    now_us,
                    for_,
                    pct,
                    out,
                );
            }
        }
    }

    /// One interval's `net` rows: an interface without a row had no traffic in it.
    fn rate(&mut self, rows: &[NetRow], out: &mut Vec<Transition>) {
        let Some(first) = rows.first() else { return };
        let (now_us, started_us) = (first.ts_us, first.ts_us - first.dur_ms * 1000);
        for index in 0..self.rules.len() {
            let Kind::Rate {
                interface,
                direction,
                above,
                for_,
            } = &self.rules[index].kind
            else {
                continue;
            };
            let (interface, above, for_) = (interface.clone(), *above, *for_);
            let rate: f64 = rows
                .iter()
                .filter(|r| r.iface == interface && r.dur_ms > 0)
                .map(|r| {
                    let bytes = match direction {
                        Direction::Rx => r.rx_bytes,
                        Direction::Tx => r.tx_bytes,
                        Direction::Both => r.rx_bytes + r.tx_bytes,
                    };
                    bytes as f64 * 1000.0 / r.dur_ms as f64
                })
                .sum();
            self.set(
                index,
                &interface,
                rate > above,
                started_us,
                now_us,
                for_,
                rate,
                out,
            );
        }
    }

    fn daemon_event(&mut self, name: &str, at_us: i64, out: &mut Vec<Transition>) {
        match name {
            "write_error" | "write_ok" => {
                let holds = name == "write_error";
                self.each_trouble(
                    |t| t == Trouble::WriteError,
                    |alerts, index, out| {
                        alerts.set(
                            index,
                            "",
                            holds,
                            at_us,
                            at_us,
                            Duration::ZERO,
                            f64::from(u8::from(holds)),
                            out,
                        );
                    },
                    out,
                );
            }
            name if name.ends_with("overflow") => {
                self.last_overflow_us = Some(at_us);
                self.each_trouble(
                    |t| matches!(t, Trouble::Overflow { .. }),
                    |alerts, index, out| {
                        alerts.set(index, "", true, at_us, at_us, Duration::ZERO, 1.0, out);
                    },
                    out,
                );
            }
            _ => {}
        }
    }

    /// Overflow alerts resolve once their quiet time passed without another overflow.
    fn overflow_quiet(&mut self, now_us: i64, out: &mut Vec<Transition>) {
        let Some(last) = self.last_overflow_us else {
            return;
        };
        for index in 0..self.rules.len() {
            if let Kind::Daemon {
                trouble: Trouble::Overflow { quiet },
            } = self.rules[index].kind
            {
                if now_us - last >= quiet.as_micros() as i64 {
                    self.set(index, "", false, now_us, now_us, Duration::ZERO, 0.0, out);
                }
            }
        }
    }

    fn each_trouble(
        &mut self,
        matches: impl Fn(Trouble) -> bool,
        mut apply: impl FnMut(&mut Alerts, usize, &mut Vec<Transition>),
        out: &mut Vec<Transition>,
    ) {
        for index in 0..self.rules.len() {
            if let Kind::Daemon { trouble } = self.rules[index].kind {
                if matches(trouble) {
                    apply(self, index, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn outage_rule(for_s: u64) -> Rule {
        Rule {
            name: "down".into(),
            kind: Kind::Outage {
                target: "t".into(),
                for_: Duration::from_secs(for_s),
            },
            run: None,
            timeout: Duration::from_secs(1),
        }
    }

    fn ping(ts: i64, received: i64) -> Rows {
        Rows::from(vec![PingRow {
            ts_us: ts,
            target: "t".into(),
            sent: 1,
            received,
            ..PingRow::default()
        }])
    }

    #[test]
    fn an_outage_fires_once_after_its_duration_and_resolves_where_it_ends() {
        let mut alerts = Alerts::new(vec![outage_rule(3)]);
        let answered = [true, true, false, false, false, false, false, true, true];
        let mut transitions = Vec::new();
        for (i, ok) in answered.iter().enumerate() {
            let ts = 100 * S + i as i64 * S;
            transitions.extend(alerts.observe(&ping(ts, i64::from(*ok)), ts));
        }
        assert_eq!(transitions.len(), 2, "{transitions:?}");
        let (fired, resolved) = (&transitions[0].event, &transitions[1].event);
        assert!(fired.firing && !resolved.firing);
        // Down from the measurement at 102 s; 3 s long (last + one step) at 104 s.
        assert_eq!(fired.since_us, 102 * S);
        assert_eq!(transitions[0].at_us, 105 * S);
        assert_eq!(resolved.since_us, 102 * S);
        assert_eq!(transitions[1].at_us, 107 * S);
        assert_eq!(resolved.value, 0.0);
    }

    #[test]
    fn cpu_resolves_when_the_user_stops_running() {
        let rule = Rule {
            name: "hog".into(),
            kind: Kind::Cpu {
                user: None,
                above_pct: 50.0,
                for_: Duration::from_secs(2),
            },
            run: None,
            timeout: Duration::from_secs(1),
        };
        let mut alerts = Alerts::new(vec![rule]);
        let row = |ts: i64, pct: f64| CpuRow {
            ts_us: ts,
            dur_ms: 1000,
            uid: 1000,
            user: Some("alice".into()),
            cpu_ns: 0,
            cpu_pct: pct,
            source: Default::default(),
        };
        let mut transitions = Vec::new();
        for i in 1..=4 {
            let ts = i * S;
            transitions.extend(alerts.observe(&Rows::from(vec![row(ts, 99.0)]), ts));
        }
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].event.since_us, 0);
        // An interval where only someone else ran.
        let other = CpuRow {
            uid: 1,
            user: Some("bob".into()),
            ..row(5 * S, 1.0)
        };
        transitions.extend(alerts.observe(&Rows::from(vec![other]), 5 * S));
        assert_eq!(transitions.len(), 2);
        assert!(!transitions[1].event.firing);
        assert_eq!(transitions[1].event.subject, "alice");
    }

    #[test]
    fn write_errors_fire_and_resolve_once() {
        let rule = Rule {
            name: "disk".into(),
            kind: Kind::Daemon {
                trouble: Trouble::WriteError,
            },
            run: None,
            timeout: Duration::from_secs(1),
        };
        let mut alerts = Alerts::new(vec![rule]);
        assert_eq!(alerts.event("write_error", 1).len(), 1);
        assert!(alerts.event("write_error", 2).is_empty());
        let resolved = alerts.event("write_ok", 3);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].event.since_us, 1);
    }
}

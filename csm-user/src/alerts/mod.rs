//! `[[alert]]` rules, evaluated by the daemon as the collectors' rows come: on firing and
//! on resolving, an `alert` row in the events table, a log line (warning when it fires,
//! info when it resolves: priorities 4 and 6 under journald), and the rule's `run`
//! command, once, on a thread of its own.

pub mod eval;
pub mod rules;
pub mod runner;

use tracing::{info, warn};

pub use eval::{Alerts, Transition};
pub use rules::{AlertSection, Kind, Rule};

use crate::daemon::ctx::Rows;
use csm_store::{AlertEvent, Event, EventRow};

/// The rules, their state and the command runner.
pub struct AlertEngine {
    alerts: Alerts,
    runner: Option<runner::Runner>,
}

impl AlertEngine {
    /// `None` without rules.
    pub fn new(rules: Vec<Rule>) -> Option<AlertEngine> {
        if rules.is_empty() {
            return None;
        }
        let runner = rules
            .iter()
            .any(|r| r.run.is_some())
            .then(runner::Runner::start);
        Some(AlertEngine {
            alerts: Alerts::new(rules),
            runner,
        })
    }

    /// Rows on their way to the store; the events rows of what changed.
    pub fn observe(&mut self, rows: &Rows, now_us: i64) -> Vec<EventRow> {
        let transitions = self.alerts.observe(rows, now_us);
        self.act(transitions)
    }

    /// An event the store wrote itself (`write_error`, `write_ok`).
    pub fn event(&mut self, name: &str, at_us: i64) -> Vec<EventRow> {
        let transitions = self.alerts.event(name, at_us);
        self.act(transitions)
    }

    /// At start, when `backend = "auto"` ended on /proc.
    pub fn fell_back(&mut self, at_us: i64) -> Vec<EventRow> {
        let transitions = self.alerts.fell_back(at_us);
        self.act(transitions)
    }

    fn act(&mut self, transitions: Vec<Transition>) -> Vec<EventRow> {
        transitions
            .into_iter()
            .map(|t| {
                let rule = self.alerts.rule(t.rule);
                log(rule, &t.event);
                if let (Some(runner), Some(command)) = (&self.runner, &rule.run) {
                    runner.submit(runner::Job {
                        rule: rule.name.clone(),
                        command: command.clone(),
                        env: environment(rule, &t.event),
                        timeout: rule.timeout,
                    });
                }
                EventRow::new(t.at_us, &Event::Alert(t.event))
            })
            .collect()
    }
}

fn log(rule: &Rule, event: &AlertEvent) {
    let subject = if event.subject.is_empty() {
        String::new()
    } else {
        format!(" ({})", event.subject)
    };
    let since = rfc3339(event.since_us);
    if event.firing {
        warn!(
            "alert {}{subject} firing: value {} since {since}",
            rule.name, event.value
        );
    } else {
        info!(
            "alert {}{subject} resolved (it held since {since})",
            rule.name
        );
    }
}

/// What a `run` command finds in its environment.
fn environment(rule: &Rule, event: &AlertEvent) -> Vec<(String, String)> {
    let mut env = vec![
        ("CSM_ALERT".to_string(), rule.name.clone()),
        ("CSM_STATE".to_string(), event.state().to_string()),
        ("CSM_VALUE".to_string(), event.value.to_string()),
        ("CSM_SINCE".to_string(), rfc3339(event.since_us)),
        ("CSM_SINCE_US".to_string(), event.since_us.to_string()),
    ];
    if !event.subject.is_empty() {
        env.push((rule.subject_key().to_string(), event.subject.clone()));
    }
    env
}

/// `2026-12-06T19:50:00.000Z`.
fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| us.to_string())
}

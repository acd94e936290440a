//! The last cumulative values written, persisted in the data dir (`.csm-state`) right
//! after each successful flush, so that the next run (which adopts the pinned counters)
//! can emit what accrued while the daemon was down instead of losing it.
//!
//! Plain text, one fact per line; replaced atomically (temporary, fsync, rename).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::model::CpuSample;

pub const STATE_FILE: &str = ".csm-state";
const HEADER: &str = "csm-state 1";

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Identity of the counters the values come from (see `Loaded::instance`).
    pub instance: String,
    /// The last CPU sample whose rows were written.
    pub cpu: CpuSample,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

impl State {
    pub fn render(&self) -> String {
        let mut out = format!(
            "{HEADER}\ninstance {}\nmono_ns {}\nwall_us {}\n",
            self.instance, self.cpu.mono_ns, self.cpu.wall_us
        );
        for (uid, ns) in &self.cpu.per_uid {
            out.push_str(&format!("cpu {uid} {ns}\n"));
        }
        out
    }

    /// `None` for anything that is not a complete state file of this version.
    pub fn parse(text: &str) -> Option<State> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut state = State::default();
        let mut per_uid = BTreeMap::new();
        let (mut mono, mut wall) = (None, None);
        for line in lines {
            let mut words = line.split_whitespace();
            match (words.next()?, words.next(), words.next()) {
                ("instance", Some(v), None) => state.instance = v.to_string(),
                ("mono_ns", Some(v), None) => mono = v.parse().ok(),
                ("wall_us", Some(v), None) => wall = v.parse().ok(),
                ("cpu", Some(uid), Some(ns)) => {
                    per_uid.insert(uid.parse().ok()?, ns.parse().ok()?);
                }
                _ => return None,
            }
        }
        state.cpu = CpuSample {
            mono_ns: mono?,
            wall_us: wall?,
            per_uid,
        };
        (!state.instance.is_empty()).then_some(state)
    }

    pub fn load(data_dir: &Path) -> Option<State> {
        State::parse(&fs::read_to_string(path(data_dir)).ok()?)
    }

    /// Replaces the state file atomically.
    pub fn save(&self, data_dir: &Path) -> io::Result<()> {
        let target = path(data_dir);
        let temp = data_dir.join(format!("{STATE_FILE}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&temp)?;
        file.write_all(self.render().as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &target)?;
        File::open(data_dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let state = State {
            instance: "abc-123#42".into(),
            cpu: CpuSample {
                mono_ns: 5,
                wall_us: 6,
                per_uid: [(0, 10), (1000, 20)].into_iter().collect(),
            },
        };
        let dir = tempfile::tempdir().unwrap();
        state.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()), Some(state));
        assert_eq!(State::parse("csm-state 1\ninstance x\nmono_ns 1\n"), None);
        assert_eq!(State::parse("something else"), None);
        assert_eq!(
            State::parse("csm-state 1\ninstance x\nmono_ns 1\nwall_us 2\ncpu a b\n"),
            None
        );
    }
}

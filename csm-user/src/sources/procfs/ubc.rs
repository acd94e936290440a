//! OpenVZ beancounters from `/proc/user_beancounters`.

use anyhow::{Context, Result};

use super::beancounters::parse_user_beancounters;
use super::{read_text, WarnOnce};
use crate::model::ubc::Beancounter;
use crate::sources::host::HostPaths;

pub struct UbcSampler {
    paths: HostPaths,
    warnings: WarnOnce,
}

impl UbcSampler {
    /// `None` where the file does not exist (not OpenVZ).
    pub fn new(paths: HostPaths) -> Option<Self> {
        paths
            .proc("user_beancounters")
            .exists()
            .then(|| UbcSampler {
                paths,
                warnings: WarnOnce::default(),
            })
    }

    pub fn sample(&mut self) -> Result<Vec<Beancounter>> {
        let path = self.paths.proc("user_beancounters");
        let text = read_text(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let parsed = parse_user_beancounters(&text);
        self.warnings.lines(&path, &parsed.warnings);
        Ok(parsed.value)
    }
}

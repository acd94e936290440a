//! uid → user name, cached. A uid without a name gives `None` (a null `user`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Names are looked up again after this long, so renamed or new users show up.
const REFRESH: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct UserNames {
    cache: HashMap<u32, (Option<String>, Instant)>,
}

impl UserNames {
    pub fn name(&mut self, uid: u32) -> Option<String> {
        let now = Instant::now();
        match self.cache.get(&uid) {
            Some((name, at)) if now.duration_since(*at) < REFRESH => name.clone(),
            _ => {
                let name = uzers::get_user_by_uid(uid)
                    .map(|user| user.name().to_string_lossy().into_owned());
                self.cache.insert(uid, (name.clone(), now));
                name
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uid_has_none() {
        let mut names = UserNames::default();
        assert_eq!(names.name(0).as_deref(), Some("root"));
        assert_eq!(names.name(4_000_000_000), None);
    }
}

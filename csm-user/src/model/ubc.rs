//! OpenVZ beancounters: a rising `failcnt` means an allocation was refused.

use std::collections::HashMap;

/// One resource of one container, as `/proc/user_beancounters` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Beancounter {
    pub ctid: u64,
    pub resource: String,
    pub held: i64,
    pub maxheld: i64,
    pub barrier: i64,
    pub limit: i64,
    pub failcnt: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailcntRise {
    pub ctid: u64,
    pub resource: String,
    pub from: i64,
    pub to: i64,
}

/// Resources whose failcnt went up between two readings. A resource absent before
/// (a container that just started) is not a rise.
pub fn failcnt_rises(prev: &[Beancounter], cur: &[Beancounter]) -> Vec<FailcntRise> {
    let before: HashMap<(u64, &str), i64> = prev
        .iter()
        .map(|b| ((b.ctid, b.resource.as_str()), b.failcnt))
        .collect();
    cur.iter()
        .filter_map(|b| {
            let from = *before.get(&(b.ctid, b.resource.as_str()))?;
            (b.failcnt > from).then(|| FailcntRise {
                ctid: b.ctid,
                resource: b.resource.clone(),
                from,
                to: b.failcnt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc(ctid: u64, resource: &str, failcnt: i64) -> Beancounter {
        Beancounter {
            ctid,
            resource: resource.into(),
            failcnt,
            ..Default::default()
        }
    }

    #[test]
    fn only_rises_are_reported() {
        let prev = [bc(101, "privvmpages", 3), bc(101, "numproc", 0)];
        let cur = [
            bc(101, "privvmpages", 5),
            bc(101, "numproc", 0),
            bc(102, "numproc", 9),
        ];
        assert_eq!(
            failcnt_rises(&prev, &cur),
            vec![FailcntRise {
                ctid: 101,
                resource: "privvmpages".into(),
                from: 3,
                to: 5
            }]
        );
    }
}

//! The flags of every command that reads history (`csm report`, `csm-plot`; `csm top` for
//! its data dir and host), declared once: `--data-dir --host` ([`SourceArgs`]) and `--from
//! --to --tz` ([`RangeArgs`], which holds the first two). Their defaults differ on purpose
//! from command to command (`--tz` local for a report, UTC for charts; `--from` today's
//! midnight or 24 hours back): each command names them in a [`Defaults`] type, and the
//! help texts say that command's default.

use std::marker::PhantomData;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::time::parse_time;
use crate::zone::{parse_zone, Zone};

/// One command's defaults for [`SourceArgs`] and the help texts that state them.
pub trait SourceDefaults: Clone + Send + Sync + 'static {
    /// `--data-dir`'s default; `None` makes the flag required.
    const DATA_DIR: Option<&'static str>;
    /// `--host`'s help, with what is chosen without it (the command applies it).
    const HOST_HELP: &'static str;
}

/// One command's defaults for [`RangeArgs`] and the help texts that state them.
pub trait Defaults: SourceDefaults {
    /// `--from`'s help, with what is chosen without it (the command applies it).
    const FROM_HELP: &'static str;
    /// `--tz`'s default (`utc`, `local`, …).
    const TZ: &'static str;
    /// `--tz`'s help: what the zone is used for in this command.
    const TZ_HELP: &'static str;
}

/// `--data-dir` and `--host`: whose data.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs<D: SourceDefaults> {
    /// The data dir `csm run` writes to.
    #[arg(long, value_name = "DIR", default_value = D::DATA_DIR, required = D::DATA_DIR.is_none())]
    pub data_dir: PathBuf,
    #[arg(long, value_name = "NAME", help = D::HOST_HELP)]
    pub host: Option<String>,
    #[arg(skip)]
    defaults: PhantomData<D>,
}

/// [`SourceArgs`] and the range: `--from`, `--to`, `--tz`.
#[derive(clap::Args, Debug, Clone)]
pub struct RangeArgs<D: Defaults> {
    #[command(flatten)]
    pub source: SourceArgs<D>,
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true, help = D::FROM_HELP)]
    pub from: Option<DateTime<Utc>>,
    /// End of the range [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse_time, allow_hyphen_values = true)]
    pub to: Option<DateTime<Utc>>,
    #[arg(long, value_name = "ZONE", default_value = D::TZ, value_parser = parse_zone, allow_hyphen_values = true, help = D::TZ_HELP)]
    pub tz: Zone,
}

/// What `--tz` accepts, for the commands' help texts.
#[macro_export]
macro_rules! zone_syntax {
    () => {
        "`utc`, `local` (this machine's zone), a tz database name such as `Europe/Berlin` \
         (daylight saving time followed) or a fixed offset such as `+02:00`"
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Clone, Debug)]
    struct Required;
    impl SourceDefaults for Required {
        const DATA_DIR: Option<&'static str> = None;
        const HOST_HELP: &'static str = "Host [default: one]";
    }
    impl Defaults for Required {
        const FROM_HELP: &'static str = "Start [default: 24 hours back]";
        const TZ: &'static str = "utc";
        const TZ_HELP: &'static str = "Zone";
    }

    #[derive(Clone, Debug)]
    struct Given;
    impl SourceDefaults for Given {
        const DATA_DIR: Option<&'static str> = Some("/var/lib/csm");
        const HOST_HELP: &'static str = "Host [default: two]";
    }
    impl Defaults for Given {
        const FROM_HELP: &'static str = "Start [default: midnight]";
        const TZ: &'static str = "+02:00";
        const TZ_HELP: &'static str = "Zone";
    }

    #[derive(Parser, Debug)]
    struct Cmd<D: Defaults> {
        #[command(flatten)]
        range: RangeArgs<D>,
    }

    #[test]
    fn each_command_gets_its_own_defaults_and_help() {
        let given = Cmd::<Given>::try_parse_from(["x"]).unwrap().range;
        assert_eq!(given.source.data_dir, PathBuf::from("/var/lib/csm"));
        assert_eq!(given.tz.name(), "UTC+02:00");
        assert!(Cmd::<Required>::try_parse_from(["x"]).is_err());
        let required = Cmd::<Required>::try_parse_from(["x", "--data-dir", "/d", "--from", "-1h"])
            .unwrap()
            .range;
        assert_eq!(required.source.data_dir, PathBuf::from("/d"));
        assert_eq!(required.tz.name(), "UTC");
        assert!(required.from.is_some());
        let help = Cmd::<Given>::command().render_help().to_string();
        assert!(help.contains("[default: midnight]"), "{help}");
        assert!(help.contains("[default: +02:00]"), "{help}");
        let help = Cmd::<Required>::command().render_help().to_string();
        assert!(help.contains("[default: 24 hours back]"), "{help}");
    }
}

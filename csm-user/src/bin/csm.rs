//! `csm`: the collector daemon (`csm run`) and the host check (`csm check`).

use std::process::ExitCode;

use clap::Parser;
use csm::cli::{Cli, Command, Settings};
use csm::sources::host::HostPaths;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Run(args) => {
            let settings = match Settings::resolve(&args) {
                Ok(s) => s,
                Err(err) => return fail(2, &err.to_string()),
            };
            match csm::daemon::run(settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(err.exit_code, &err.message),
            }
        }
        Command::Check(roots) => {
            let defaults = HostPaths::default();
            let paths = HostPaths {
                proc_root: roots.proc_root.unwrap_or(defaults.proc_root),
                sys_root: roots.sys_root.unwrap_or(defaults.sys_root),
            };
            print!("{}", csm::check::inspect(&paths).render());
            ExitCode::SUCCESS
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("CSM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("csm: {message}");
    ExitCode::from(code)
}

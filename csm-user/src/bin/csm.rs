//! `csm`: the collector daemon (`csm run`), the host check (`csm check`) and the report
//! (`csm report`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::FromArgMatches;
use csm::cli::{Cli, Command, Settings};
use csm::sources::host::HostPaths;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Hidden: writes the man pages and shell completions (`cargo xtask deb` calls it).
const GENERATE_ASSETS: &str = "__generate-assets";

fn main() -> ExitCode {
    let matches = csm::assets::csm_command()
        .subcommand(
            clap::Command::new(GENERATE_ASSETS).hide(true).arg(
                clap::Arg::new("dir")
                    .required(true)
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
        )
        .try_get_matches()
        .unwrap_or_else(|err| exit_on_usage_error(&err));
    if let Some((GENERATE_ASSETS, sub)) = matches.subcommand() {
        let dir = sub.get_one::<PathBuf>("dir").expect("required argument");
        return match csm::assets::generate(dir) {
            Ok(files) => {
                for file in files {
                    println!("{}", dir.join(file).display());
                }
                ExitCode::SUCCESS
            }
            Err(err) => fail(1, &format!("{err:#}")),
        };
    }
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    init_logging();
    match cli.command {
        Command::Run(args) => {
            let settings = match Settings::resolve(&args) {
                Ok(s) => s,
                Err(err) => return fail(2, &err.to_string()),
            };
            // Only where the eBPF backend may be tried (see the loader's comment).
            if settings.backend != csm::daemon::settings::Backend::Proc && settings.paths.is_live()
            {
                csm::sources::ebpf::loader::prepare_loader_early();
            }
            match csm::daemon::run(settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(err.exit_code, &err.message),
            }
        }
        Command::Check(args) => {
            let exposure = match csm::check::metrics_exposure(args.config.as_deref()) {
                Ok(line) => line,
                Err(err) => return fail(2, &err),
            };
            let roots = args.roots;
            let defaults = HostPaths::default();
            let paths = HostPaths {
                proc_root: roots.proc_root.unwrap_or(defaults.proc_root),
                sys_root: roots.sys_root.unwrap_or(defaults.sys_root),
            };
            // Names in it (mounts, interfaces) may hold control characters: shown escaped.
            for line in csm::check::inspect(&paths).render().lines() {
                println!("{}", csm_store::names::safe_text(line));
            }
            println!("{}", csm::store::names::safe_text(&exposure));
            ExitCode::SUCCESS
        }
        Command::Top(args) => match csm::top::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(err.exit_code, &err.message),
        },
        Command::Report(args) => csm::report::main(args),
    }
}

/// The log goes to stderr as text, whatever runs csm (a terminal, systemd, another init,
/// a container runtime), rather than to journald's socket (tracing-journald), which
/// would leave nothing where there is no journal. Under systemd the journal reads
/// stderr anyway: it adds its own timestamps and takes a `<N>` prefix as the syslog
/// priority (SyslogLevelPrefix=yes, the default), which keeps `journalctl -p` working.
fn init_logging() {
    let filter = EnvFilter::try_from_env("CSM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SafeStderr { colour })
        .with_target(false)
        .with_ansi(colour);
    if stderr_is_journal() {
        let format = tracing_subscriber::fmt::format()
            .with_target(false)
            .with_ansi(false)
            .without_time();
        builder.event_format(JournalPriority(format)).init();
    } else {
        builder.init();
    }
}

/// stderr for the log, one event per write, with every control character in it (a name
/// another user chose: an interface, a user, a file) written as a visible escape, so that
/// a log line can neither be split nor rewrite the terminal. tracing-subscriber already
/// escapes ESC and BEL in logged values, not newlines or carriage returns; its own colour
/// codes (ESC, when `colour`) and the final newline stay.
#[derive(Clone, Copy)]
struct SafeStderr {
    colour: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SafeStderr {
    type Writer = SafeStderr;
    fn make_writer(&'a self) -> SafeStderr {
        *self
    }
}

impl std::io::Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::fmt::Write as _;
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = String::with_capacity(buf.len());
        for c in body.chars() {
            let kept = c == '\t' || (self.colour && c == '\x1b');
            if kept || !csm_store::names::is_unsafe_char(c) {
                line.push(c);
            } else {
                let _ = write!(line, "{}", c.escape_unicode());
            }
        }
        line.push_str(newline);
        std::io::stderr().write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// systemd sets JOURNAL_STREAM to `<device>:<inode>` of the stream it connected stderr
/// to; it is only ours if stderr still is that stream (a child whose stderr was
/// redirected inherits the variable, not the stream).
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    (unsafe { libc::fstat(2, &mut st) } == 0) && st.st_dev == dev && st.st_ino == ino
}

/// Prefixes each line with its syslog priority (`<3>` error … `<7>` debug).
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// `--help` and `--version` print and exit 0; any other command-line error is one line
/// naming the flag and the value (clap's own message, without its usage block), exit 2.
fn exit_on_usage_error(err: &clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let rendered = err.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!(
        "csm: {} (see csm --help)",
        csm_store::names::safe_text(first)
    );
    std::process::exit(2);
}

fn fail(code: u8, message: &str) -> ExitCode {
    // Under systemd the journal files it as an error, not as the stream's default (info).
    let priority = if stderr_is_journal() { "<3>" } else { "" };
    let message = csm_store::names::safe_text(message);
    eprintln!("{priority}csm: {message}");
    ExitCode::from(code)
}

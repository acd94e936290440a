//! The live view: owns the terminal (raw mode, alternate screen, hidden cursor) and puts
//! it back however `top` ends: `q`, Ctrl-C, an error, a panic, SIGTERM/SIGHUP/SIGINT.

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::crossterm::{cursor, execute};
use ratatui::Terminal;

use super::error::TopError;
use super::render::{self, View};
use super::sample::{Sampler, Snapshot, SortKey};

/// Set by the signal handler; the loop looks at it at least every [`WAKE_AT_LEAST`].
static STOP: AtomicBool = AtomicBool::new(false);
const WAKE_AT_LEAST: Duration = Duration::from_millis(250);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_stop_signals() {
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Puts the terminal back: cursor shown, main screen, cooked mode. Safe to call twice.
fn restore_terminal() {
    let _ = execute!(io::stdout(), cursor::Show, LeaveAlternateScreen);
    let _ = disable_raw_mode();
}

/// The terminal as `top` uses it, restored when dropped (an error returned through `?`)
/// and by the panic hook (a panic).
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            hook(info);
        }));
        enable_raw_mode().context("cannot put the terminal in raw mode (is stdout a terminal?)")?;
        let mut out = io::stdout();
        if let Err(err) = execute!(out, EnterAlternateScreen, cursor::Hide) {
            restore_terminal();
            return Err(err).context("cannot switch to the alternate screen");
        }
        let terminal = Terminal::new(CrosstermBackend::new(out));
        match terminal {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(err) => {
                restore_terminal();
                Err(err).context("cannot set up the terminal")
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore_terminal();
    }
}

pub fn run(sampler: &mut Sampler, interval: Duration, sort: SortKey) -> Result<(), TopError> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() {
        return Err(TopError::usage(
            "stdout is not a terminal: use `csm top --once` (with --format json for scripts)",
        ));
    }
    catch_stop_signals();
    sampler
        .prime()
        .map_err(|err| TopError::runtime(format!("{err:#}")))?;
    let mut screen = Screen::enter().map_err(|err| TopError::runtime(format!("{err:#}")))?;
    let result = event_loop(&mut screen, sampler, interval, sort);
    drop(screen);
    result.map_err(|err| TopError::runtime(format!("{err:#}")))
}

fn event_loop(
    screen: &mut Screen,
    sampler: &mut Sampler,
    interval: Duration,
    sort: SortKey,
) -> Result<()> {
    let mut view = View {
        sort,
        reversed: false,
        interval_s: interval.as_secs_f64(),
    };
    let mut snapshot: Option<Snapshot> = None;
    let mut next_sample = Instant::now() + interval;
    let mut redraw = true;
    while !STOP.load(Ordering::Relaxed) {
        if redraw {
            if let Some(s) = snapshot.as_mut() {
                s.sort(view.sort, view.reversed);
            }
            screen
                .terminal
                .draw(|frame| render::draw(frame, snapshot.as_ref(), &view))
                .context("draw")?;
            redraw = false;
        }
        let wait = next_sample
            .saturating_duration_since(Instant::now())
            .min(WAKE_AT_LEAST);
        if event::poll(wait).context("read the terminal")? {
            match event::read().context("read the terminal")? {
                Event::Key(key) if key.kind != KeyEventKind::Release => match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char(c) => {
                        if let Some(key) = SortKey::from_key(c) {
                            view.press(key);
                            redraw = true;
                        }
                    }
                    _ => {}
                },
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
        if Instant::now() >= next_sample {
            snapshot = Some(sampler.sample()?);
            redraw = true;
            // A slow sample (a suspended terminal) does not make the next ones pile up.
            next_sample = (next_sample + interval).max(Instant::now());
        }
    }
    Ok(())
}

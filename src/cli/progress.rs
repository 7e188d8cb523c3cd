//! Progress on stderr, and log lines that get along with it.
//!
//! The bars are `indicatif`'s: it is maintained, hides itself where stderr is not a terminal
//! (or `TERM` is `dumb`), estimates the rate with an exponentially weighted moving average (so
//! the ETA follows the recent pace, not the average since the start), and can suspend its bars
//! while something else writes a line. Every bar of the process is drawn through one
//! [`MultiProgress`]; the log writer ([`LogWriter`]) prints each log line with the bars
//! suspended, so a line appears above the bars and never through one.
//!
//! Where stderr is not a terminal there is no bar at all: CI logs get the plain lines they got
//! before (the tests snapshot them), and nothing else.

use std::io::{self, Write};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of the process (stderr; hidden when stderr is not a terminal).
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Retries the client reported in this process (the retry hooks count them); every bar shows
/// the count once there is one.
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// Whether bars are drawn (stderr is a terminal).
pub(crate) fn on_terminal() -> bool {
    !BARS.is_hidden()
}

/// Counts a retry the client reported (for the bars' `retries: N`): each request sent again
/// (a lost delete that is only checked, and found done, is not sent again).
pub(crate) fn count_retry(event: &crate::ucs::RetryEvent) {
    if event.then == crate::ucs::RetryThen::Retry {
        RETRIES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Prints a line to stderr above the bars (suspending them while it prints).
pub(crate) fn eprintln(line: &str) {
    BARS.suspend(|| {
        let mut stderr = io::stderr().lock();
        // A closed stderr has nobody left to tell.
        let _ = writeln!(stderr, "{line}");
    });
}

/// A progress bar of `total` things on a terminal; nothing elsewhere. Shows the count done, the
/// rate, the time left, and the retries so far.
#[derive(Debug)]
pub(crate) struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar counting `unit` (`contacts`, `contacts read`), `total` of them, after `label`
    /// (`plan`, `re-check`; empty for none). The bar takes the width the text leaves, so the
    /// line never wraps.
    pub(crate) fn new(total: usize, label: &str, unit: &str) -> Bar {
        let bar = if on_terminal() {
            BARS.add(ProgressBar::new(total as u64))
        } else {
            ProgressBar::hidden()
        };
        let label = if label.is_empty() { String::new() } else { format!("{label} ") };
        let template = format!(
            "{label}[{{wide_bar}}] {{pos}}/{{len}} {unit} · {{per_sec:1}} · ETA {{eta}}{{msg}}"
        );
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>.");
        bar.set_style(style);
        // Redrawn a few times a second, so the ETA and the retries move while nothing finishes.
        bar.enable_steady_tick(Duration::from_millis(250));
        let bar = Bar { bar };
        bar.refresh_retries();
        bar
    }

    /// `done` of `total` now.
    pub(crate) fn set(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        self.refresh_retries();
    }

    /// Whether anything was counted.
    fn moved(&self) -> bool {
        self.bar.position() > 0
    }

    fn refresh_retries(&self) {
        let retries = RETRIES.load(Ordering::Relaxed);
        if retries > 0 {
            self.bar.set_message(format!(" · retries: {retries}"));
        }
    }

    /// Leaves the bar as it ended (the final count and rate stay on screen).
    pub(crate) fn finish(self) {
        self.refresh_retries();
        self.bar.finish();
    }

    /// Removes the bar (a phase that is over: the next one has its own).
    pub(crate) fn clear(self) {
        self.bar.finish_and_clear();
        BARS.remove(&self.bar);
    }
}

/// The writer of the log lines: each line is printed with the bars suspended, so it lands
/// above them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine
    }
}

/// One log line being written (the formatter writes each event whole, in one call).
#[derive(Debug)]
pub(crate) struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BARS.suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Says, once, how the calls that were retried ended: a warning only when there were any (each
/// retry itself is logged at `info`).
pub(crate) fn summarise_retries(tally: crate::ucs::RetryTally) {
    let calls = tally.calls();
    if calls == 0 {
        return;
    }
    let retried = if calls == 1 {
        "1 UCS call was retried".to_owned()
    } else {
        format!("{calls} UCS calls were retried")
    };
    let ended = match (tally.gave_up, calls) {
        (0, 1) => "it succeeded".to_owned(),
        (0, _) => "all succeeded".to_owned(),
        (_, 1) => "it gave up".to_owned(),
        (gave_up, _) if gave_up == calls => "all gave up".to_owned(),
        (gave_up, _) => format!("{} succeeded, {gave_up} gave up", tally.succeeded),
    };
    tracing::warn!(retried = calls, gave_up = tally.gave_up, "{retried}; {ended}");
}

/// What a phase of planning shows on a terminal: a bar of subjects resolved, then one of
/// contacts read. Nothing elsewhere.
#[derive(Debug, Default)]
pub(crate) struct PlanProgress {
    label: &'static str,
    bar: std::sync::Mutex<Option<(crate::plan::Phase, Bar)>>,
}

impl PlanProgress {
    /// Progress of a planning whose bars are labelled with `label` (`plan`, `re-check`).
    pub(crate) fn new(label: &'static str) -> Self {
        Self { label, bar: std::sync::Mutex::new(None) }
    }

    /// Tells how far planning is.
    pub(crate) fn show(&self, phase: crate::plan::Phase, done: usize, total: usize) {
        if !on_terminal() {
            return;
        }
        let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.as_ref().is_none_or(|(shown, _)| *shown != phase) {
            if let Some((_, old)) = slot.take() {
                old.clear();
            }
            let unit = match phase {
                crate::plan::Phase::Resolving => "subjects resolved",
                crate::plan::Phase::Reading => "contacts read",
            };
            *slot = Some((phase, Bar::new(total, self.label, unit)));
        }
        if let Some((_, bar)) = slot.as_ref() {
            bar.set(done, total);
        }
    }

    /// Removes the bar: planning is over.
    pub(crate) fn end(&self) {
        let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, bar)) = slot.take() {
            bar.clear();
        }
    }
}

/// What a run shows: the re-check's bars, then a line per finished contact and, on a
/// terminal, a bar of contacts done under the lines.
#[derive(Debug)]
pub(crate) struct RunProgress {
    recheck: PlanProgress,
    bar: std::sync::Mutex<Option<Bar>>,
    line: fn(&str),
}

impl RunProgress {
    /// Progress whose per-contact lines are printed by `line` (which must print through
    /// [`eprintln`] or [`suspended`] to stay above the bars).
    pub(crate) fn new(line: fn(&str)) -> Self {
        Self { recheck: PlanProgress::new("re-check"), bar: std::sync::Mutex::new(None), line }
    }

    /// Tells how far the run is.
    pub(crate) fn show(&self, event: &crate::apply::Progress<'_>) {
        match event.stage {
            crate::apply::Stage::Recheck(phase) => {
                self.recheck.show(phase, event.done, event.total);
                // The run starts when the re-check has read every contact: its bar starts now,
                // so its rate counts from the start of the run.
                if phase == crate::plan::Phase::Reading
                    && event.done >= event.total
                    && on_terminal()
                {
                    let mut slot =
                        self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if slot.is_none() {
                        *slot = Some(Bar::new(event.total, "", "contacts"));
                    }
                }
            }
            crate::apply::Stage::Contacts => {
                self.recheck.end();
                if !on_terminal() {
                    (self.line)(&event.to_string());
                    return;
                }
                let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let bar = slot.get_or_insert_with(|| Bar::new(event.total, "", "contacts"));
                bar.set(event.done, event.total);
                (self.line)(&event.to_string());
                if event.done >= event.total
                    && let Some(bar) = slot.take()
                {
                    bar.finish();
                }
            }
        }
    }

    /// The run is over (or refused): no bar is left running (one that never moved is removed).
    pub(crate) fn end(&self) {
        self.recheck.end();
        let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bar) = slot.take() {
            if bar.moved() { bar.finish() } else { bar.clear() }
        }
    }
}

/// Runs `f` (which prints to stdout or stderr) with the bars suspended, so what it prints lands
/// above them.
pub(crate) fn suspended<R>(f: impl FnOnce() -> R) -> R {
    BARS.suspend(f)
}

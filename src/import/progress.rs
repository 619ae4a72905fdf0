//! How `postern import` shows its progress: a bar on a terminal (messages, bytes, rate, ETA
//! when the size is known), plain lines on stderr otherwise (a log, a pipe, CI).

use super::pipeline::{ImportCounters, ImportProgress, ImportSummary};
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A progress bar on stderr.
pub struct TerminalProgress {
    bar: ProgressBar,
    started: Mutex<Option<(Instant, ImportCounters)>>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalProgress {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        Self {
            bar,
            started: Mutex::new(None),
        }
    }

    fn message(&self, c: &ImportCounters) -> String {
        let rate = self
            .started
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|(t, first)| {
                let secs = t.elapsed().as_secs_f64().max(0.001);
                (c.seen - first.seen) as f64 / secs
            })
            .unwrap_or(0.0);
        format!(
            "{} messages ({:.0}/s): {} imported, {} duplicates, {} quarantined, {} skipped",
            c.seen, rate, c.imported, c.duplicates, c.quarantined, c.skipped
        )
    }
}

impl ImportProgress for TerminalProgress {
    fn started(&self, source: &str, total_bytes: Option<u64>, resumed: &ImportCounters) {
        if let Ok(mut s) = self.started.lock() {
            *s = Some((Instant::now(), *resumed));
        }
        let style = match total_bytes {
            Some(total) => {
                self.bar.set_length(total);
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})\n{msg}",
                )
            }
            None => ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes} read ({bytes_per_sec})\n{msg}",
            ),
        };
        if let Ok(style) = style {
            self.bar.set_style(style);
        }
        self.bar.set_position(resumed.bytes.max(0) as u64);
        self.bar.println(format!("importing {source}"));
        self.bar.set_message(self.message(resumed));
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn advanced(&self, c: &ImportCounters) {
        self.bar.set_position(c.bytes.max(0) as u64);
        self.bar.set_message(self.message(c));
    }

    fn finished(&self, _summary: &ImportSummary) {
        self.bar.finish_and_clear();
    }
}

/// One line on stderr at most every `every`, and at the end.
pub struct LineProgress {
    every: Duration,
    last: Mutex<Instant>,
    started: Instant,
}

impl LineProgress {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(Instant::now()),
            started: Instant::now(),
        }
    }
}

fn line(c: &ImportCounters, secs: f64) -> String {
    format!(
        "import: {} messages, {} read in {secs:.1} s: {} imported, {} duplicates, {} quarantined, {} skipped",
        c.seen,
        HumanBytes(c.bytes.max(0) as u64),
        c.imported,
        c.duplicates,
        c.quarantined,
        c.skipped
    )
}

impl ImportProgress for LineProgress {
    fn started(&self, source: &str, total_bytes: Option<u64>, resumed: &ImportCounters) {
        let size = total_bytes
            .map(|t| format!(" ({})", HumanBytes(t)))
            .unwrap_or_default();
        if resumed.seen > 0 {
            eprintln!(
                "import: {source}{size}: resuming after {} messages already done",
                resumed.seen
            );
        } else {
            eprintln!("import: {source}{size}");
        }
    }

    fn advanced(&self, c: &ImportCounters) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.elapsed() >= self.every {
            *last = Instant::now();
            eprintln!("{}", line(c, self.started.elapsed().as_secs_f64()));
        }
    }

    fn finished(&self, s: &ImportSummary) {
        let c = ImportCounters {
            seen: s.seen,
            imported: s.imported,
            duplicates: s.duplicates,
            quarantined: s.quarantined,
            skipped: s.skipped,
            bytes: s.bytes,
        };
        eprintln!("{}", line(&c, self.started.elapsed().as_secs_f64()));
    }
}

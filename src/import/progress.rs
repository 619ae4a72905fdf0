//! How `postern import` shows its progress: a bar on a terminal (messages, bytes, rate, ETA),
//! plain lines on stderr otherwise (a log, a pipe, CI). First the source is read (a spinner:
//! messages and bytes read), then the messages are committed in date order (a bar with ETA).

use super::pipeline::{ImportProgress, ImportSummary};
use super::staging::StagingTotals;
use crate::domain::ImportTotals;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn done(c: &ImportTotals) -> u64 {
    c.committed().max(0) as u64
}

fn outcome(c: &ImportTotals) -> String {
    format!(
        "{} imported, {} duplicates, {} quarantined, {} outside the dates",
        c.imported, c.duplicates, c.quarantined, c.skipped
    )
}

/// A progress bar on stderr.
pub struct TerminalProgress {
    bar: ProgressBar,
    committing: Mutex<bool>,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalProgress {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] reading: {msg}")
        {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            committing: Mutex::new(false),
        }
    }
}

impl ImportProgress for TerminalProgress {
    fn reading(&self, t: &StagingTotals) {
        self.bar.set_message(format!(
            "{} messages, {} ({} outside the dates)",
            t.seen,
            HumanBytes(t.bytes.max(0) as u64),
            t.skipped
        ));
    }

    fn started(&self, source: &str, total: Option<i64>, c: &ImportTotals) {
        if let Ok(mut committing) = self.committing.lock() {
            *committing = true;
        }
        self.bar.println(format!(
            "read {source}: {} messages, {}",
            c.seen,
            HumanBytes(c.bytes.max(0) as u64)
        ));
        let template = match total {
            Some(_) => "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages ({per_sec}, ETA {eta})\n{msg}",
            None => "{spinner} [{elapsed_precise}] {pos} messages ({per_sec})\n{msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style);
        }
        if let Some(total) = total {
            self.bar.set_length(total.max(0) as u64);
        }
        self.bar.reset_eta();
        self.bar.set_position(done(c));
        self.bar.set_message(outcome(c));
    }

    fn advanced(&self, c: &ImportTotals) {
        self.bar.set_position(done(c));
        self.bar.set_message(outcome(c));
    }

    fn finished(&self, _summary: &ImportSummary) {
        self.bar.finish_and_clear();
    }
}

/// One line on stderr at most every `every`, and at each step.
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

    fn due(&self) -> bool {
        match self.last.lock() {
            Ok(mut last) if last.elapsed() >= self.every => {
                *last = Instant::now();
                true
            }
            _ => false,
        }
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl ImportProgress for LineProgress {
    fn reading(&self, t: &StagingTotals) {
        if self.due() {
            eprintln!(
                "import: reading: {} messages, {} in {:.1} s",
                t.seen,
                HumanBytes(t.bytes.max(0) as u64),
                self.secs()
            );
        }
    }

    fn started(&self, source: &str, total: Option<i64>, c: &ImportTotals) {
        let resumed = if done(c) > 0 {
            format!(" (resuming: {} already done)", done(c))
        } else {
            String::new()
        };
        match total {
            Some(total) => eprintln!(
                "import: {source}: {} messages read, {} to commit in date order{resumed}",
                c.seen, total
            ),
            None => eprintln!("import: {source}{resumed}"),
        }
    }

    fn advanced(&self, c: &ImportTotals) {
        if self.due() {
            eprintln!(
                "import: {} messages done in {:.1} s: {}",
                done(c),
                self.secs(),
                outcome(c)
            );
        }
    }

    fn finished(&self, s: &ImportSummary) {
        eprintln!(
            "import: {} after {:.1} s: {} messages read, {}",
            s.status,
            self.secs(),
            s.seen,
            outcome(&s.totals)
        );
    }
}

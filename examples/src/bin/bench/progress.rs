//! The live display: one progress bar on stderr for the whole run (round, peer, rate, time
//! left), with the per-second rate printed above it. When stderr is not a terminal the bar
//! hides itself and the rate lines are printed plainly.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The run's progress, in seconds of measurement.
pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
}

impl Progress {
    /// A bar for `total` of measurement; `quiet` (`--json`) keeps the rate lines off stderr.
    pub fn new(total: Duration, quiet: bool) -> Self {
        let bar = ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {msg} ({eta} left)")
                .expect("template")
                .progress_chars("=> "),
        );
        Self { bar, quiet }
    }

    /// What runs now: `round 2/3 · buffstreams`.
    pub fn stage(&self, stage: String) {
        self.bar.set_message(stage);
    }

    /// `elapsed` more of the run is done.
    pub fn advance(&self, elapsed: Duration) {
        self.bar.inc(elapsed.as_millis() as u64);
    }

    /// A line of live output (the rate each second).
    pub fn line(&self, line: String) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

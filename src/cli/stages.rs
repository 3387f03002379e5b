//! The stage line of long commands (`compile`, `calibrate`, `report`).
//!
//! On a terminal it is an indicatif spinner naming the current stage. Where stderr is not a
//! terminal (a CI log, a pipe), indicatif draws nothing, and a W48 compile would sit silent for
//! minutes; there each stage gets one line instead, with the time since the command started, as
//! cargo prints its `Compiling` lines. `-q` silences them with the rest of the log.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

pub struct Stages {
    bar: ProgressBar,
    started: Instant,
    /// One line per stage: stderr is not a terminal and the command is not `-q`.
    lines: bool,
}

impl Stages {
    /// A spinner on a terminal, stage lines elsewhere.
    pub fn start() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("static template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        let lines = bar.is_hidden() && log::max_level() >= log::LevelFilter::Warn;
        Stages {
            bar,
            started: Instant::now(),
            lines,
        }
    }

    /// The bar, for commands that turn it into a counter (`report` counts images).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    pub fn stage(&self, name: &str) {
        self.bar.set_message(name.to_string());
        if self.lines {
            eprintln!("{}", line(self.started.elapsed(), name));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn line(elapsed: Duration, name: &str) -> String {
    format!("[{:>7.1} s] {name}", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_line_is_the_elapsed_time_then_the_stage() {
        assert_eq!(
            line(Duration::from_millis(12_345), "calibrating INT8"),
            "[   12.3 s] calibrating INT8"
        );
        assert_eq!(
            line(Duration::ZERO, "loading model"),
            "[    0.0 s] loading model"
        );
    }
}

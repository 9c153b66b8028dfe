//! A bounded ring of the last notable simulator events, printed when a run fails.

use std::collections::VecDeque;

/// Default number of trace lines kept.
pub const TRACE_CAPACITY_LINES: usize = 400;

/// The last [`TRACE_CAPACITY_LINES`] (or the configured number of) events.
#[derive(Clone, Debug)]
pub struct Trace {
    lines: VecDeque<String>,
    capacity_lines: usize,
}

impl Trace {
    /// An empty trace keeping at most `capacity_lines` lines.
    pub fn new(capacity_lines: usize) -> Trace {
        Trace {
            lines: VecDeque::with_capacity(capacity_lines),
            capacity_lines,
        }
    }

    /// Appends a line, forgetting the oldest when full.
    pub fn push(&mut self, line: String) {
        if self.lines.len() == self.capacity_lines {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The kept lines, oldest first, one per line.
    pub fn render(&self) -> String {
        self.lines
            .iter()
            .map(|line| format!("  {line}\n"))
            .collect()
    }
}

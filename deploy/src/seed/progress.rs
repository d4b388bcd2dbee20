//! The load's progress: rows, rows/s and time left per table, redrawn in place on a
//! terminal and printed as plain lines every few seconds into a log.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Row counters of the tables being loaded, shared with the threads that load them.
#[derive(Debug)]
pub struct Progress {
    tables: Vec<Table>,
    started: Instant,
}

#[derive(Debug)]
struct Table {
    name: &'static str,
    total: u64,
    done: AtomicU64,
    /// Milliseconds from `started` to the first and the last row counted (0 = none yet).
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

impl Progress {
    /// Counters for `tables`, as (name, rows expected).
    pub fn new(tables: &[(&'static str, u64)]) -> Arc<Self> {
        Arc::new(Self {
            tables: tables
                .iter()
                .map(|&(name, total)| Table {
                    name,
                    total,
                    done: AtomicU64::new(0),
                    first_ms: AtomicU64::new(0),
                    last_ms: AtomicU64::new(0),
                })
                .collect(),
            started: Instant::now(),
        })
    }

    /// Counts `rows` more rows of `table` as sent.
    pub fn add(&self, table: &str, rows: u64) {
        let Some(table) = self.tables.iter().find(|t| t.name == table) else {
            return;
        };
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let _ = table
            .first_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        table.last_ms.store(now, Ordering::Relaxed);
        table.done.fetch_add(rows, Ordering::Relaxed);
    }

    /// Rows sent of `table` and the rate they went at (rows per second of its own time).
    pub fn rows(&self, table: &str) -> (u64, f64) {
        self.tables
            .iter()
            .find(|t| t.name == table)
            .map_or((0, 0.0), |t| (t.done.load(Ordering::Relaxed), t.rate()))
    }

    fn lines(&self) -> Vec<String> {
        self.tables.iter().map(Table::line).collect()
    }
}

impl Table {
    fn rate(&self) -> f64 {
        let (first, last) = (
            self.first_ms.load(Ordering::Relaxed),
            self.last_ms.load(Ordering::Relaxed),
        );
        let seconds = last.saturating_sub(first) as f64 / 1000.0;
        if seconds > 0.0 {
            self.done.load(Ordering::Relaxed) as f64 / seconds
        } else {
            0.0
        }
    }

    fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let rate = self.rate();
        let left = if done >= self.total {
            "done".to_owned()
        } else if rate > 0.0 {
            format!("{:.0} s left", (self.total - done) as f64 / rate)
        } else {
            "waiting".to_owned()
        };
        format!(
            "  {:<10} {:>12} / {:<12} {:>10} rows/s  {left}",
            self.name,
            thousands(done),
            thousands(self.total),
            thousands(rate as u64),
        )
    }
}

/// Shows `progress` until the returned guard is dropped: redrawn in place every 200 ms
/// on a terminal, otherwise printed every 5 s.
pub fn show(progress: Arc<Progress>) -> ShowGuard {
    let (stop, mut stopped) = watch::channel(false);
    let tty = std::io::stdout().is_terminal();
    let period = Duration::from_millis(if tty { 200 } else { 5_000 });
    let task = tokio::spawn(async move {
        let mut drawn = 0;
        loop {
            let done = tokio::select! {
                _ = tokio::time::sleep(period) => false,
                _ = stopped.changed() => true,
            };
            let lines = progress.lines();
            let mut out = std::io::stdout().lock();
            if tty && drawn > 0 {
                let _ = write!(out, "\x1b[{drawn}A");
            }
            let clear_rest = if tty { "\x1b[K" } else { "" };
            for line in &lines {
                let _ = writeln!(out, "{line}{clear_rest}");
            }
            drawn = if tty { lines.len() } else { 0 };
            let _ = out.flush();
            if done {
                return;
            }
        }
    });
    ShowGuard {
        stop,
        task: Some(task),
    }
}

/// Stops the display; [`ShowGuard::finish`] also prints the final counts.
#[derive(Debug)]
pub struct ShowGuard {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ShowGuard {
    /// Prints the final counts and waits for the display to stop.
    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ShowGuard {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `15000000` as `15,000,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(15_000_000), "15,000,000");
    }

    #[test]
    fn lines_show_rows_and_what_is_left() {
        let progress = Progress::new(&[("reviews", 100), ("ratings", 10)]);
        progress.add("reviews", 40);
        std::thread::sleep(Duration::from_millis(20));
        progress.add("reviews", 10);
        progress.add("ratings", 10);
        let lines = progress.lines();
        assert!(lines[0].contains("50 / 100"), "{}", lines[0]);
        assert!(lines[0].ends_with("s left"), "{}", lines[0]);
        assert!(lines[1].ends_with("done"), "{}", lines[1]);
        assert_eq!(progress.rows("reviews").0, 50);
    }
}

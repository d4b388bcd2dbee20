//! Resource accounting of the processes under test, read from `/proc`: CPU seconds
//! over the measured window (user + system) and the peak resident set size seen while
//! sampling. Processes are named on the command line by pid or by a name pattern.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::Error;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// What to watch, from `--watch NAME=PID[,PID..]` or `--watch-process NAME=PATTERN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchSpec {
    Pids {
        name: String,
        pids: Vec<u32>,
    },
    /// Every process whose name (`comm`) or program file name contains the pattern.
    Pattern {
        name: String,
        pattern: String,
    },
}

impl WatchSpec {
    pub fn parse_pids(text: &str) -> Result<Self, Error> {
        let (name, pids) = split(text, "--watch NAME=PID[,PID..]")?;
        let pids = pids
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<u32>()
                    .map_err(|_| Error::Config(format!("--watch {text}: '{p}' is not a pid")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Pids { name, pids })
    }

    pub fn parse_pattern(text: &str) -> Result<Self, Error> {
        let (name, pattern) = split(text, "--watch-process NAME=PATTERN")?;
        Ok(Self::Pattern { name, pattern })
    }

    fn name(&self) -> &str {
        match self {
            Self::Pids { name, .. } | Self::Pattern { name, .. } => name,
        }
    }
}

fn split(text: &str, form: &str) -> Result<(String, String), Error> {
    match text.split_once('=') {
        Some((n, v)) if !n.trim().is_empty() && !v.trim().is_empty() => {
            Ok((n.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(Error::Config(format!("'{text}' is not {form}"))),
    }
}

/// One watched name's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub name: String,
    pub pids: Vec<u32>,
    /// CPU seconds (user + system) used in the measured window.
    pub cpu_seconds: f64,
    /// CPU seconds per 1,000 requests completed in the measured window.
    pub cpu_seconds_per_1k: f64,
    /// The largest sum of the processes' RSS seen in any sample, bytes.
    pub peak_rss_bytes: u64,
}

#[derive(Debug, Default)]
struct PidTicks {
    first: u64,
    at_start: Option<u64>,
    last: u64,
    at_end: Option<u64>,
}

#[derive(Debug)]
struct Watched {
    spec: WatchSpec,
    pids: BTreeMap<u32, PidTicks>,
    peak_rss: u64,
}

/// Samples the watched processes; the runner calls `sample` a few times a second and
/// marks the measured window.
#[derive(Debug)]
pub struct ProcWatch {
    watched: Vec<Watched>,
    started: bool,
    ended: bool,
    me: u32,
    /// When `/proc` was last listed for the patterns: once a second is enough to
    /// notice new processes, and listing costs far more than reading known pids.
    listed: Option<std::time::Instant>,
}

impl ProcWatch {
    /// Watches `specs`, plus this process itself as `courser-load`.
    #[must_use]
    pub fn new(specs: &[WatchSpec]) -> Self {
        let me = std::process::id();
        let mut watched: Vec<Watched> = specs
            .iter()
            .map(|spec| Watched {
                spec: spec.clone(),
                pids: BTreeMap::new(),
                peak_rss: 0,
            })
            .collect();
        watched.push(Watched {
            spec: WatchSpec::Pids {
                name: "courser-load".into(),
                pids: vec![me],
            },
            pids: BTreeMap::new(),
            peak_rss: 0,
        });
        let mut w = Self {
            watched,
            started: false,
            ended: false,
            me,
            listed: None,
        };
        w.sample();
        w
    }

    /// Reads every watched process once.
    pub fn sample(&mut self) {
        if self.ended {
            return;
        }
        let relist = self.listed.is_none_or(|t| t.elapsed().as_secs() >= 1);
        let all = if relist
            && self
                .watched
                .iter()
                .any(|w| matches!(w.spec, WatchSpec::Pattern { .. }))
        {
            self.listed = Some(std::time::Instant::now());
            Some(list_processes())
        } else {
            None
        };
        for w in &mut self.watched {
            let pids: Vec<u32> = match &w.spec {
                WatchSpec::Pids { pids, .. } => pids.clone(),
                WatchSpec::Pattern { .. } if all.is_none() => w.pids.keys().copied().collect(),
                WatchSpec::Pattern { pattern, .. } => all
                    .iter()
                    .flatten()
                    .filter(|(pid, comm, exe)| {
                        *pid != self.me
                            && (comm.contains(pattern.as_str()) || exe.contains(pattern.as_str()))
                    })
                    .map(|(pid, _, _)| *pid)
                    .collect(),
            };
            let mut rss = 0;
            for pid in pids {
                let Some((ticks, pid_rss)) = read_pid(pid) else {
                    continue;
                };
                rss += pid_rss;
                let t = w.pids.entry(pid).or_insert_with(|| PidTicks {
                    first: ticks,
                    ..PidTicks::default()
                });
                t.last = ticks;
                if self.started && t.at_start.is_none() {
                    // Appeared during the window: count from its first sample.
                    t.at_start = Some(t.first);
                }
            }
            if self.started {
                w.peak_rss = w.peak_rss.max(rss);
            }
        }
    }

    /// The measured window starts now.
    pub fn start_window(&mut self) {
        self.sample();
        self.started = true;
        for w in &mut self.watched {
            for t in w.pids.values_mut() {
                t.at_start = Some(t.last);
            }
        }
        self.sample();
    }

    /// The measured window ends now.
    pub fn end_window(&mut self) {
        if !self.started {
            self.start_window();
        }
        self.sample();
        for w in &mut self.watched {
            for t in w.pids.values_mut() {
                t.at_end = Some(t.last);
            }
        }
        self.ended = true;
    }

    /// The figures, given how many requests completed in the window.
    #[must_use]
    pub fn figures(&self, requests: u64) -> Vec<ProcessFigures> {
        self.watched
            .iter()
            .map(|w| {
                let ticks: u64 = w
                    .pids
                    .values()
                    .map(|t| {
                        let end = t.at_end.unwrap_or(t.last);
                        end.saturating_sub(t.at_start.unwrap_or(end))
                    })
                    .sum();
                let cpu = ticks as f64 / TICKS_PER_SECOND;
                ProcessFigures {
                    name: w.spec.name().to_string(),
                    pids: w.pids.keys().copied().collect(),
                    cpu_seconds: cpu,
                    cpu_seconds_per_1k: if requests > 0 {
                        cpu * 1000.0 / requests as f64
                    } else {
                        0.0
                    },
                    peak_rss_bytes: w.peak_rss,
                }
            })
            .collect()
    }
}

/// utime + stime ticks and RSS bytes of one process, None if it is gone.
fn read_pid(pid: u32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((utime + stime, rss_kb * 1024))
}

/// (pid, comm, program file name) of every process.
fn list_processes() -> Vec<(u32, String, String)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let exe = String::from_utf8_lossy(argv0);
        let exe = exe.rsplit('/').next().unwrap_or_default().to_string();
        Some((pid, comm.trim().to_string(), exe))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_watched_and_its_cpu_counted() {
        let mut w =
            ProcWatch::new(
                &[WatchSpec::parse_pids(&format!("me={}", std::process::id())).unwrap()],
            );
        w.start_window();
        // Burn 200 ms of CPU (however long that takes on a busy machine).
        let me = std::process::id();
        let before = read_pid(me).unwrap().0;
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while read_pid(me).unwrap().0 < before + 20 && t.elapsed().as_secs() < 20 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
        }
        std::hint::black_box(x);
        w.end_window();
        let f = w.figures(1000);
        assert_eq!(f.len(), 2);
        assert!(f[0].cpu_seconds >= 0.19, "{f:?}");
        assert!(f[0].peak_rss_bytes > 1_000_000, "{f:?}");
        assert!(WatchSpec::parse_pids("x=abc").is_err());
        assert!(WatchSpec::parse_pattern("api=courser-api").is_ok());
    }
}

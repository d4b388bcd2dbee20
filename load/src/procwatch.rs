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
    /// These processes and their descendants (a Postgres postmaster and its backends).
    Pids { name: String, pids: Vec<u32> },
    /// Every process whose name (`comm`) or program file name contains the pattern.
    Pattern { name: String, pattern: String },
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
    /// The largest memory of the processes seen in any sample, bytes: their private
    /// (anonymous) pages summed, plus the shared and file-backed pages of the one that
    /// maps most, so that a postmaster and its backends, which all map the shared
    /// buffers, do not count them once each. For one process, its RSS.
    pub peak_memory_bytes: u64,
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
    peak_memory: u64,
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
                peak_memory: 0,
            })
            .collect();
        watched.push(Watched {
            spec: WatchSpec::Pids {
                name: "courser-load".into(),
                pids: vec![me],
            },
            pids: BTreeMap::new(),
            peak_memory: 0,
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
        let all = if relist {
            self.listed = Some(std::time::Instant::now());
            Some(list_processes())
        } else {
            None
        };
        for w in &mut self.watched {
            let pids: Vec<u32> = match (&w.spec, &all) {
                // Between listings, the processes found by the last one.
                (_, None) => w.pids.keys().copied().collect(),
                (WatchSpec::Pids { pids, .. }, Some(all)) => with_descendants(pids, all),
                (WatchSpec::Pattern { pattern, .. }, Some(all)) => all
                    .iter()
                    .filter(|p| {
                        p.pid != self.me
                            && (p.comm.contains(pattern.as_str())
                                || p.exe.contains(pattern.as_str()))
                    })
                    .map(|p| p.pid)
                    .collect(),
            };
            let (mut private, mut shared) = (0, 0);
            for pid in pids {
                let Some((ticks, memory)) = read_pid(pid) else {
                    continue;
                };
                private += memory.private;
                shared = shared.max(memory.shared);
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
                w.peak_memory = w.peak_memory.max(private + shared);
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
                    peak_memory_bytes: w.peak_memory,
                }
            })
            .collect()
    }
}

/// One process's resident memory, bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    /// Anonymous pages (`RssAnon`): this process's own.
    private: u64,
    /// File-backed and shared-memory pages (`RssFile` + `RssShmem`), which other
    /// processes may map too.
    shared: u64,
}

/// utime + stime ticks and resident memory of one process, None if it is gone. Both
/// come from `stat` and `status`, which are cheap; `smaps_rollup` (PSS) costs
/// milliseconds per process and would make the tool a load of its own.
fn read_pid(pid: u32) -> Option<(u64, Memory)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let memory = Memory {
        private: kb("RssAnon:") * 1024,
        shared: (kb("RssFile:") + kb("RssShmem:")) * 1024,
    };
    Some((utime + stime, memory))
}

/// One process of a `/proc` listing.
struct Listed {
    pid: u32,
    ppid: u32,
    comm: String,
    /// The program file name (argv[0] without its folder).
    exe: String,
}

/// Every process.
fn list_processes() -> Vec<Listed> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        let exe = String::from_utf8_lossy(argv0);
        let exe = exe.rsplit('/').next().unwrap_or_default().to_string();
        Some(Listed {
            pid,
            ppid,
            comm,
            exe,
        })
    })
    .collect()
}

/// `roots` and every process descended from one of them.
fn with_descendants(roots: &[u32], all: &[Listed]) -> Vec<u32> {
    let mut tree = roots.to_vec();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    tree
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
        assert!(f[0].peak_memory_bytes > 1_000_000, "{f:?}");
        assert!(WatchSpec::parse_pids("x=abc").is_err());
        assert!(WatchSpec::parse_pattern("api=courser-api").is_ok());
    }

    #[test]
    fn a_watched_pid_brings_its_descendants() {
        use std::io::BufRead as _;
        // A shell whose child is a `sleep`: watching the shell must count the sleep too.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: u32 = line.trim().parse().unwrap();
        let w = ProcWatch::new(&[WatchSpec::Pids {
            name: "shell".into(),
            pids: vec![shell.id()],
        }]);
        let pids = &w.figures(1)[0].pids;
        let _ = std::process::Command::new("kill")
            .arg(sleep.to_string())
            .status();
        let _ = shell.wait();
        assert!(
            pids.contains(&shell.id()) && pids.contains(&sleep),
            "{pids:?}"
        );
    }
}

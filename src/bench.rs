//! Benchmark plumbing shared by the `bench` commands: run a command as a child process and measure its wall
//! time and peak resident memory the same way for us and for the peer we compare with.

use serde::Serialize;
use std::process::Command;
use std::time::Instant;

/// One measured run of a child process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Run {
    pub seconds: f64,
    /// Peak resident set size of the child (`ru_maxrss`), in bytes.
    pub peak_rss_bytes: u64,
}

/// Runs `cmd` to completion, measuring it with `wait4` so the peak RSS is the child's own.
pub fn measure(cmd: &mut Command) -> std::io::Result<Run> {
    measure_output(cmd).map(|(run, _)| run)
}

/// [`measure`], also returning what the child printed on stdout (a worker reporting its own timings).
pub fn measure_output(cmd: &mut Command) -> std::io::Result<(Run, String)> {
    use std::io::Read;
    let start = Instant::now();
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn()?;
    let mut out = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_string(&mut out)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for the child we spawned and reaps it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(std::io::Error::other(format!(
            "{cmd:?} failed (wait status {status})"
        )));
    }
    Ok((
        Run {
            seconds,
            // Linux reports ru_maxrss in KiB.
            peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        },
        out,
    ))
}

/// Median and peak over repeated runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub runs: usize,
    pub median_seconds: f64,
    pub min_seconds: f64,
    pub peak_rss_bytes: u64,
}

impl Summary {
    pub fn of(name: &str, runs: &[Run]) -> Self {
        let mut secs: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        secs.sort_by(f64::total_cmp);
        Summary {
            name: name.to_string(),
            runs: runs.len(),
            median_seconds: secs.get(secs.len() / 2).copied().unwrap_or(f64::NAN),
            min_seconds: secs.first().copied().unwrap_or(f64::NAN),
            peak_rss_bytes: runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0),
        }
    }
}

/// Reads `path` once so every contender starts from a warm page cache; returns its size. Streamed through
/// a small buffer: children inherit this process's peak RSS at exec (ru_maxrss), so it must stay small.
pub fn warm_page_cache(path: &std::path::Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    std::io::copy(&mut file, &mut std::io::sink())
}

/// Measures `runs` fresh children made by `make`. Each writes `out`, which is removed after it is measured,
/// and the disk is synced before the next run: otherwise each contender would pay for freeing and writing
/// back its predecessor's output.
pub fn repeat(
    runs: usize,
    out: &std::path::Path,
    make: &dyn Fn() -> Command,
) -> std::io::Result<Vec<Run>> {
    (0..runs)
        .map(|_| {
            let run = measure(&mut make());
            let _ = std::fs::remove_file(out);
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
            run
        })
        .collect()
}

/// Latency over repeated runs of one operation, as trtexec prints it: percentiles by nearest rank.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub runs: usize,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// `None` for no samples.
    pub fn of(samples: &[std::time::Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least p of the samples at or below it.
        let pct = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Latency {
            runs: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            median_ms: pct(0.5),
            p90_ms: pct(0.9),
            p99_ms: pct(0.99),
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
        })
    }
}

#[cfg(test)]
mod latency_tests {
    use super::Latency;
    use std::time::Duration;

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms: the p-th percentile by nearest rank is p ms.
        let d: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latency::of(&d).unwrap();
        assert_eq!((l.median_ms, l.p90_ms, l.p99_ms), (50.0, 90.0, 99.0));
        assert_eq!((l.min_ms, l.max_ms, l.runs), (1.0, 100.0, 100));
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
        // Three samples: median is the middle one, p90 and p99 the largest.
        let l = Latency::of(&[3, 1, 2].map(Duration::from_millis)).unwrap();
        assert_eq!((l.median_ms, l.p90_ms, l.p99_ms), (2.0, 3.0, 3.0));
        assert!(Latency::of(&[]).is_none());
    }
}

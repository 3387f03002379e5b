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

/// Latency figures over repeated timed calls, as trtexec reports them: mean, median, p90, p99, min, max
/// (milliseconds) and the throughput the calls sustained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencyStats {
    pub runs: usize,
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// Calls per second of wall time: runs ÷ the wall time they took together (not 1000 ÷ mean, which
    /// ignores the gaps between calls).
    pub throughput_per_s: f64,
}

impl LatencyStats {
    /// Stats of `samples_ms` (one latency per call, any order) that took `wall_s` seconds in all.
    /// `None` when there are no samples or a sample is not a finite non-negative number.
    pub fn of(samples_ms: &[f64], wall_s: f64) -> Option<Self> {
        if samples_ms.is_empty() || samples_ms.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return None;
        }
        let mut s = samples_ms.to_vec();
        s.sort_by(f64::total_cmp);
        Some(LatencyStats {
            runs: s.len(),
            min_ms: s[0],
            max_ms: s[s.len() - 1],
            mean_ms: s.iter().sum::<f64>() / s.len() as f64,
            median_ms: percentile_sorted(&s, 50.0),
            p90_ms: percentile_sorted(&s, 90.0),
            p99_ms: percentile_sorted(&s, 99.0),
            throughput_per_s: if wall_s > 0.0 {
                s.len() as f64 / wall_s
            } else {
                f64::NAN
            },
        })
    }
}

/// The median of unsorted `samples` by the same nearest-rank rule as [`percentile_sorted`] (NaN when empty).
pub fn median(samples: &[f64]) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, 50.0)
}

/// The `p`-th percentile (0..=100) of ascending `sorted` by the nearest-rank rule trtexec uses: the
/// smallest sample with at least p% of the samples at or below it. The median of an even count is the
/// lower middle sample. NaN for an empty slice.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_unsorted_samples_is_the_lower_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_sorted(&v, 50.0), 50.0);
        assert_eq!(percentile_sorted(&v, 90.0), 90.0);
        assert_eq!(percentile_sorted(&v, 99.0), 99.0);
        assert_eq!(percentile_sorted(&v, 100.0), 100.0);
        assert_eq!(percentile_sorted(&v, 0.0), 1.0);
        // Ten samples: p99 is the largest, the median the lower middle one.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile_sorted(&ten, 99.0), 10.0);
        assert_eq!(percentile_sorted(&ten, 50.0), 5.0);
        assert_eq!(percentile_sorted(&[7.0], 90.0), 7.0);
        assert!(percentile_sorted(&[], 50.0).is_nan());
    }

    #[test]
    fn latency_stats_sort_their_samples() {
        let s = LatencyStats::of(&[4.0, 1.0, 3.0, 2.0], 0.5).unwrap();
        assert_eq!(s.runs, 4);
        assert_eq!((s.min_ms, s.max_ms), (1.0, 4.0));
        assert_eq!(s.mean_ms, 2.5);
        assert_eq!(s.median_ms, 2.0);
        assert_eq!(s.p90_ms, 4.0);
        assert_eq!(s.p99_ms, 4.0);
        assert_eq!(s.throughput_per_s, 8.0);
        assert!(LatencyStats::of(&[], 1.0).is_none());
        assert!(LatencyStats::of(&[1.0, f64::NAN], 1.0).is_none());
        assert!(LatencyStats::of(&[1.0], 0.0)
            .unwrap()
            .throughput_per_s
            .is_nan());
    }
}

//! How much memory the process may still take: what sizes the number of images evaluated at once, where
//! each CPU inference of a full-size model holds gigabytes (HRNet-W48 at 1024×2048: about 1.5 GB of
//! activations at peak, 3 GB of RSS).

/// Puts every thread's allocations in one glibc malloc arena, unless `MALLOC_ARENA_MAX` is set (then glibc
/// has already read it). Call it first thing in `main`, before any thread starts.
///
/// Why: glibc gives each thread that allocates its own arena, up to 8 per core. Memory freed in one arena
/// is reused only by that arena. The executors' worker threads allocate activations of 1 to 30 MB, which
/// glibc's dynamic mmap threshold puts in arenas after the first frees, so each arena keeps its own high
/// water mark. HRNet-W48 at 1024×2048, three executors with 2 images at once: `compile` peaked at 4.7 GB
/// of RSS with glibc's default arenas, 4.0 GB with one, both in 722 s; a `report` on 5 images at 4.2 and
/// 4.7 GB against 3.3 GB (4.0 GB with two arenas). Forward time did not change (`bench exec`, W48
/// 512×1024, runs alternated: 1.55–1.68 s with one arena, 1.50–1.72 s without). A fixed 1 MB mmap threshold saved as much
/// memory but cost 18% in forward time, in page faults.
pub fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes a malloc parameter; M_ARENA_MAX is a valid one. No arena beyond the
        // main one exists yet when this runs first in `main`, and a later call would only bound new ones.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Bytes the process can still allocate without swapping or meeting its cgroup's limit: the kernel's
/// `MemAvailable`, lowered to the cgroup v2 `memory.max` headroom when the process runs in a limited
/// container (CI runners usually do). `None` off Linux or when neither can be read.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t));
    let cgroup = cgroup_headroom();
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The smallest `memory.max - memory.current` over this process's cgroup (v2) and its parents (a systemd
/// slice or a pod may hold the limit), not counting inactive page cache, which the kernel reclaims
/// first. `None` when no cgroup on the way has a limit.
fn cgroup_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let mut least: Option<u64> = None;
    loop {
        if let Some(room) = headroom_of(&dir) {
            least = Some(least.map_or(room, |l| l.min(room)));
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            return least;
        }
    }
}

fn headroom_of(dir: &std::path::Path) -> Option<u64> {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?; // "max" (no limit) does not parse
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    let inactive_file = read("memory.stat")
        .and_then(|t| stat_field(&t, "inactive_file"))
        .unwrap_or(0);
    Some(max.saturating_sub(current.saturating_sub(inactive_file)))
}

/// A `name value` line of a cgroup `memory.stat`.
fn stat_field(stat: &str, name: &str) -> Option<u64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Runs `work(i, acc)` for every `i` of `items` on `threads` plain threads, each folding into its own
/// accumulator from `init`; returns the accumulators, or the first error (the other threads stop at their
/// next item).
///
/// Plain threads, not a narrower rayon pool: a rayon worker that waits for another pool (every inference
/// runs on its executor's own pool) runs other queued jobs of its pool meanwhile, so a rayon pool of one
/// thread still had dozens of images in flight at once.
pub fn run_bounded<A: Send, E: Send>(
    items: std::ops::Range<usize>,
    threads: usize,
    init: impl Fn() -> A + Sync,
    work: impl Fn(usize, &mut A) -> Result<(), E> + Sync,
) -> Result<Vec<A>, E> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(items.start);
    let failed = AtomicBool::new(false);
    let results: Vec<Result<A, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut acc = init();
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.end {
                            break;
                        }
                        if let Err(e) = work(i, &mut acc) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                    Ok(acc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.into_iter().collect()
}

/// How many images to run at once: as many as there are threads, unless `per_image` bytes each would
/// take more than three quarters of `available`; at least one. `per_image` is the executor's activation
/// peak, which leaves out its scratch and buffer pool, the decoded image and the class maps: it counts
/// double (HRNet-W48 at 512×1024 on 2 threads: 363 MB measured peak, about 750 MB of RSS per image in
/// flight).
pub fn images_at_once(per_image: Option<usize>, available: Option<u64>, threads: usize) -> usize {
    at_once(per_image.map(|b| b as u64 * 2), available, threads)
}

/// How many tasks of `need` bytes each fit in three quarters of `available`, between 1 and `threads`;
/// `threads` when either is unknown.
pub fn at_once(need: Option<u64>, available: Option<u64>, threads: usize) -> usize {
    let threads = threads.max(1);
    match (need, available) {
        (Some(need), Some(avail)) if need > 0 => {
            ((avail / 4 * 3 / need) as usize).clamp(1, threads)
        }
        _ => threads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(mem_available(text), Some(20_480_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn images_at_once_follows_the_memory() {
        const GB: u64 = 1 << 30;
        // A 6 GB peak on a 64 GB, 16-thread workstation: 4 at once, not 16.
        assert_eq!(images_at_once(Some(6 << 30), Some(64 * GB), 16), 4);
        // Not even one fits: still one, the evaluation must run.
        assert_eq!(images_at_once(Some(6 << 30), Some(2 * GB), 16), 1);
        // Small images: the thread count bounds it.
        assert_eq!(images_at_once(Some(50 << 20), Some(20 * GB), 2), 2);
        // Unknown need or memory: one per thread, as before.
        assert_eq!(images_at_once(None, Some(GB), 8), 8);
        assert_eq!(images_at_once(Some(1 << 30), None, 8), 8);
        assert_eq!(images_at_once(Some(1 << 30), Some(GB), 0), 1);
        // Tasks whose need carries its own margins: 3/4 of 16 GB in 1.3 GB pieces.
        assert_eq!(at_once(Some(1300 << 20), Some(16 * GB), 16), 9);
    }

    #[test]
    fn reads_a_cgroup_stat_field() {
        let stat = "anon 100\nfile 300\ninactive_file 200\nactive_file 100\n";
        assert_eq!(stat_field(stat, "inactive_file"), Some(200));
        assert_eq!(stat_field(stat, "inactive_anon"), None);
    }

    #[test]
    fn run_bounded_keeps_to_its_threads_and_covers_every_item() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let (active, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        // Each item waits on a rayon pool, as an inference does on its executor's.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let accs = run_bounded(
            0..40,
            2,
            Vec::new,
            |i, acc: &mut Vec<usize>| -> Result<(), ()> {
                let now = active.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                pool.install(|| {
                    rayon::scope(|s| {
                        for _ in 0..4 {
                            s.spawn(|_| std::thread::sleep(std::time::Duration::from_millis(1)));
                        }
                    })
                });
                active.fetch_sub(1, SeqCst);
                acc.push(i);
                Ok(())
            },
        )
        .unwrap();
        let mut all: Vec<usize> = accs.into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
        assert!(most.into_inner() <= 2);
        // The first error is returned.
        let err = run_bounded(0..10, 3, || (), |i, _| if i == 4 { Err(i) } else { Ok(()) });
        assert_eq!(err.unwrap_err(), 4);
    }

    #[test]
    fn available_is_some_on_linux() {
        if cfg!(target_os = "linux") {
            let a = available_bytes().expect("/proc/meminfo");
            assert!(a > 0);
        }
    }
}

//! Convolution kernel throughput at HRNet-W48 shapes, on 1 and 2 threads: the kernel the executor
//! runs (`conv2d`: the AVX2 micro-kernel on x86-64 with AVX2 and FMA, Winograd F(2×2, 3×3) for
//! 3×3 stride-1 layers, whose GFLOP/s count the direct convolution's multiply-adds; `direct` is
//! the micro-kernel on those layers without Winograd), its portable twin through
//! the `gemm` crate (`conv2d_portable`, what aarch64 runs), and that twin's ceiling: its GEMM calls
//! alone on pre-built im2col tiles, i.e. the portable kernel minus im2col and bias.
//!
//! `cargo bench --bench kernels` prints the table; `-- sweep` adds a pixel-tile sweep (what
//! `default_tile` was tuned with), `-- probe` bare GEMM calls at several M and strides, `-- chain`
//! the Winograd forms on chains of layers, `-- quick` skips the 720-channel shapes; any other word
//! keeps the shapes whose name contains it (`-- 1x1`).
//!
//! Each figure is the best of a few runs, as wall-clock GFLOP/s and, in brackets, per CPU-second
//! of the process divided by the thread count: on a shared machine the second is what the code
//! does when it has its cores, the first what it got.

#[cfg(target_arch = "x86_64")]
use ocrnet_edge::exec::ops::avx2;
use ocrnet_edge::exec::ops::winograd;
use ocrnet_edge::exec::ops::{
    conv2d, conv2d_portable, conv2d_with_tile, default_tile, f32_kernels, planes, Conv2d, Window,
};
use std::time::{Duration, Instant};

struct Shape {
    name: &'static str,
    cin: usize,
    cout: usize,
    k: usize,
    h: usize,
    w: usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "3x3 48->48 @128x256",
        cin: 48,
        cout: 48,
        k: 3,
        h: 128,
        w: 256,
    },
    Shape {
        name: "3x3 96->96 @64x128",
        cin: 96,
        cout: 96,
        k: 3,
        h: 64,
        w: 128,
    },
    Shape {
        name: "3x3 192->192 @32x64",
        cin: 192,
        cout: 192,
        k: 3,
        h: 32,
        w: 64,
    },
    Shape {
        name: "3x3 384->384 @16x32",
        cin: 384,
        cout: 384,
        k: 3,
        h: 16,
        w: 32,
    },
    Shape {
        name: "1x1 720->512 @128x256",
        cin: 720,
        cout: 512,
        k: 1,
        h: 128,
        w: 256,
    },
    Shape {
        name: "1x1 64->256 @128x256",
        cin: 64,
        cout: 256,
        k: 1,
        h: 128,
        w: 256,
    },
    Shape {
        name: "1x1 512->19 @128x256",
        cin: 512,
        cout: 19,
        k: 1,
        h: 128,
        w: 256,
    },
    Shape {
        name: "3x3 720->512 @128x256",
        cin: 720,
        cout: 512,
        k: 3,
        h: 128,
        w: 256,
    },
];

fn geometry(s: &Shape) -> Conv2d {
    let p = s.k / 2;
    let window = Window {
        kernel: vec![s.k, s.k],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![p; 4],
        auto_pad: "NOTSET".into(),
        ceil_mode: false,
    };
    Conv2d::new([1, s.cin, s.h, s.w], [s.cout, s.cin, s.k, s.k], 1, &window).expect("geometry")
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best wall time and best process CPU time of `f` over a few runs (at least 3, up to about two
/// seconds of runs), after a warm-up run.
fn best(mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let (mut wall, mut cpu, mut total, mut runs) =
        (Duration::MAX, Duration::MAX, Duration::ZERO, 0);
    while runs < 3 || (total < Duration::from_secs(2) && runs < 12) {
        let (t, c) = (Instant::now(), cpu_time());
        f();
        let d = t.elapsed();
        wall = wall.min(d);
        cpu = cpu.min(cpu_time() - c);
        total += d;
        runs += 1;
    }
    (wall, cpu)
}

/// Wall-clock and per-thread-CPU GFLOP/s.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

impl Rate {
    fn new(flops: f64, (wall, cpu): (Duration, Duration), threads: usize) -> Self {
        Rate {
            wall: flops / wall.as_secs_f64() / 1e9,
            cpu: flops / (cpu.as_secs_f64() / threads as f64) / 1e9,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = format!("{:.0} ({:.0})", self.wall, self.cpu);
        f.pad(&s)
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// The im2col tile `[K][pt]` (column stride `pt`) of pixels `p0..p0 + pt`.
fn im2col_tile(g: &Conv2d, x: &[f32], p0: usize, pt: usize) -> Vec<f32> {
    let (h, w) = (g.h, g.w);
    let mut m = Vec::with_capacity(g.depth() * pt);
    for c in 0..g.in_channels {
        for ky in 0..h.kernel {
            for kx in 0..w.kernel {
                for p in p0..p0 + pt {
                    let (iy, ix) = (h.at(p / w.output, ky), w.at(p % w.output, kx));
                    let inside =
                        (0..h.input as isize).contains(&iy) && (0..w.input as isize).contains(&ix);
                    m.push(if inside {
                        x[(c * h.input + iy as usize) * w.input + ix as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    m
}

#[derive(Clone, Copy)]
struct DstPtr(*mut f32);
// SAFETY: used only for disjoint writes joined before the buffer is touched again.
unsafe impl Send for DstPtr {}
unsafe impl Sync for DstPtr {}

impl DstPtr {
    /// Through a method, so that closures capture the wrapper rather than the bare pointer.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One single-threaded GEMM: dst (m×n, column-major, column stride `dst_cs`) = lhs (m×k,
/// column stride `lhs_cs`) · rhs (k×n, column-major, column stride k).
///
/// # Safety
/// The strides must address valid elements.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: usize,
    lhs: *const f32,
    lhs_cs: usize,
    rhs: *const f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        1,
        false,
        lhs,
        lhs_cs as isize,
        1,
        rhs,
        k as isize,
        1,
        1.0,
        1.0,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// The kernel's GEMM calls alone: one single-threaded call per pixel tile into a fresh NCHW
/// output, the tiles spread over the pool, each thread's lhs a pre-built im2col tile of its own
/// (hot in cache, as the kernel's scratch tile is after im2col).
fn ceiling(g: &Conv2d, x: &[f32], wts: &[f32], tile: usize, threads: usize) -> Rate {
    use rayon::prelude::*;
    let (k, m) = (g.depth(), g.out_channels);
    let p = g.h.output * g.w.output;
    let tile = tile.min(p);
    let hot: Vec<Vec<f32>> = (0..threads).map(|_| im2col_tile(g, x, 0, tile)).collect();
    let t = pool(threads).install(|| {
        best(|| {
            let mut y = vec![0f32; p * m];
            let dst = DstPtr(y.as_mut_ptr());
            (0..p.div_ceil(tile)).into_par_iter().for_each(|i| {
                let pt = tile.min(p - i * tile);
                let lhs = &hot[rayon::current_thread_index().unwrap_or(0)];
                // SAFETY: tile i alone writes pixels i·tile..i·tile + pt of every output
                // channel; lhs holds [k][tile] and wts [m][k].
                unsafe {
                    sgemm(
                        pt,
                        m,
                        k,
                        dst.get().add(i * tile),
                        p,
                        lhs.as_ptr(),
                        tile,
                        wts.as_ptr(),
                    )
                }
            });
            std::hint::black_box(y);
        })
    });
    Rate::new(g.flops(), t, threads)
}

/// The `gemm`-crate twin at its own default tile.
fn portable(g: &Conv2d, x: &[f32], w: &[f32], b: &[f32], threads: usize) -> Rate {
    pool(threads).install(|| {
        let t = best(|| {
            std::hint::black_box(conv2d_portable(g, x, w, Some(b), default_tile(g)));
        });
        Rate::new(g.flops(), t, threads)
    })
}

/// The direct AVX2 kernel (packed rows or im2col) where the executor takes the Winograd one: its
/// figure is the yardstick of that choice. `None` where the executor runs it anyway.
fn direct(g: &Conv2d, x: &[f32], w: &[f32], b: &[f32], threads: usize) -> Option<Rate> {
    #[cfg(target_arch = "x86_64")]
    if winograd::applies(g) && avx2::available() {
        return Some(pool(threads).install(|| {
            let t = best(|| {
                std::hint::black_box(avx2::conv2d(g, x, w, Some(b), avx2::default_tile(g)));
            });
            Rate::new(g.flops(), t, threads)
        }));
    }
    let _ = (g, x, w, b, threads);
    None
}

/// Winograd through the `gemm` crate (what aarch64 runs on these layers), next to the crate's
/// direct twin.
fn portable_winograd(g: &Conv2d, x: &[f32], w: &[f32], b: &[f32], threads: usize) -> Option<Rate> {
    winograd::applies(g).then(|| {
        pool(threads).install(|| {
            let planes = planes(g, x);
            let t = best(|| {
                std::hint::black_box(winograd::portable(
                    g,
                    &planes,
                    w,
                    Some(b),
                    winograd::portable_tiles(g),
                ));
            });
            Rate::new(g.flops(), t, threads)
        })
    })
}

/// The executor's kernel, at its own default tile or at `tile`.
fn kernel(
    g: &Conv2d,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    threads: usize,
    tile: Option<usize>,
) -> Rate {
    pool(threads).install(|| {
        let t = best(|| {
            let y = match tile {
                Some(tile) => conv2d_with_tile(g, x, w, Some(b), tile),
                None => conv2d(g, x, w, Some(b)),
            };
            std::hint::black_box(y);
        });
        Rate::new(g.flops(), t, threads)
    })
}

/// Bare single-threaded GEMMs at several M and lhs column strides (dst column stride 32768, as
/// for a 128×256 output).
fn probe() {
    for (n, k) in [(48, 432), (512, 720), (512, 6480)] {
        println!("bare GEMM, pixels as M, k={k}, n={n}, 1 thread:");
        let rhs = values(k * n, 5);
        let mut dst = vec![0f32; 32768 * n];
        for (m, lhs_cs) in [
            (4096, 4096),
            (1024, 1024),
            (512, 512),
            (512, 32768),
            (256, 256),
            (128, 128),
        ] {
            let lhs = values(lhs_cs * k, 4);
            let t = best(|| unsafe {
                sgemm(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr(),
                    32768,
                    lhs.as_ptr(),
                    lhs_cs,
                    rhs.as_ptr(),
                )
            });
            println!(
                "  m {m:>5}, lhs column stride {lhs_cs:>5}: {:>10}",
                Rate::new(2.0 * (m * n * k) as f64, t, 1)
            );
        }
    }
}

/// The Winograd forms on chains of 3×3 C→C layers, each reading the output the layer before it
/// wrote, as in a forward. The table above repeats one layer on one input, which then stays in
/// cache, and that misleads: there, giving `portable` the AVX2 form's transforms (8 tiles at a
/// time, the next channel's rows prefetched) and a cache line between its points' matrices
/// looked 20–30% faster on 48 channels; on chains those transforms were 7–10% slower than the
/// loops, and the padding did nothing for the loops, so neither was kept (2026-12-03, Emerald
/// Rapids). The forms take
/// turns at every step, each on its own chain, so a shared machine's drift hits them alike.
/// Mean ms per layer, 2 threads.
fn chain(only: &[&String]) {
    const LAYERS: usize = 40;
    type Form = fn(&Conv2d, &[&[f32]], &[f32], Option<&[f32]>, usize) -> Vec<f32>;
    type Tiles = fn(&Conv2d) -> usize;
    let mut forms: Vec<(&str, Form, Tiles)> =
        vec![("portable", winograd::portable, winograd::portable_tiles)];
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        forms.push((
            "avx2",
            winograd::avx2::conv2d_planes,
            winograd::default_tiles,
        ));
    }
    println!(
        "Winograd on chains of {LAYERS} 3x3 layers (Relu, weights scaled to keep the values' size), \
         2 threads: mean ms per layer (effective GFLOP/s)"
    );
    let threads = pool(2);
    for s in SHAPES
        .iter()
        .filter(|s| s.k == 3 && s.cin == s.cout)
        .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
    {
        let g = Conv2d {
            relu: true,
            ..geometry(s)
        };
        let scale = 3.0 / (9.0 * s.cin as f32).sqrt();
        let w: Vec<f32> = values(s.cout * g.depth(), 2)
            .iter()
            .map(|v| v * scale)
            .collect();
        let b: Vec<f32> = values(s.cout, 3).iter().map(|v| v * 0.1).collect();
        let mut xs: Vec<Vec<f32>> = forms.iter().map(|_| values(s.cin * s.h * s.w, 1)).collect();
        let mut spent = vec![Duration::ZERO; forms.len()];
        threads.install(|| {
            for _ in 0..LAYERS {
                for ((_, form, tiles), (x, t)) in forms.iter().zip(xs.iter_mut().zip(&mut spent)) {
                    let planes = planes(&g, x);
                    let start = Instant::now();
                    let y = form(&g, &planes, &w, Some(&b), tiles(&g));
                    *t += start.elapsed();
                    *x = y;
                }
            }
        });
        let cells: Vec<String> = forms
            .iter()
            .zip(&spent)
            .map(|((name, ..), t)| {
                let per = t.as_secs_f64() / LAYERS as f64;
                format!("{name} {:.2} ms ({:.0})", per * 1e3, g.flops() / per / 1e9)
            })
            .collect();
        println!("{:<24} {}", s.name, cells.join(", "));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |a: &str| args.iter().any(|x| x == a);
    // Any other argument (not a flag) keeps only the shapes whose name contains it.
    let only: Vec<&String> = args[1..]
        .iter()
        .filter(|a| {
            !a.starts_with('-') && !["chain", "probe", "quick", "sweep"].contains(&a.as_str())
        })
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} threads available, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if has("probe") {
        probe();
        return;
    }
    if has("chain") {
        chain(&only);
        return;
    }
    println!(
        "conv2d f32, batch 1, pads k/2, bias. GFLOP/s: wall (per thread-CPU-second); conv = the \
         executor's kernel ({}: OCRNET_CONV_KERNELS; Winograd on 3x3: direct-convolution FLOPs), direct = the AVX2 \
         micro-kernel without Winograd, gemm = its portable twin, wgemm = Winograd through the gemm crate \
         (what aarch64 runs on 3x3 stride-1 layers), ceil = the twin's GEMM calls alone, on a \
         pre-built im2col tile per thread\n",
        f32_kernels().name()
    );
    println!(
        "{:<24} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "shape", "conv 1T", "gemm 1T", "conv 2T", "direct 2T", "gemm 2T", "wgemm 2T", "ceil 2T"
    );
    let shapes: Vec<&Shape> = SHAPES
        .iter()
        .filter(|s| !has("quick") || s.cin < 100)
        .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
        .collect();
    for s in &shapes {
        let g = geometry(s);
        let x = values(s.cin * s.h * s.w, 1);
        let w = values(s.cout * g.depth(), 2);
        let b = values(s.cout, 3);
        // Each pair measured back to back, so drift on a shared machine hits both alike.
        let c1 = kernel(&g, &x, &w, &b, 1, None);
        let p1 = portable(&g, &x, &w, &b, 1);
        let c2 = kernel(&g, &x, &w, &b, 2, None);
        let d2 = direct(&g, &x, &w, &b, 2).map_or("-".to_string(), |r| r.to_string());
        let p2 = portable(&g, &x, &w, &b, 2);
        let wp2 = portable_winograd(&g, &x, &w, &b, 2).map_or("-".to_string(), |r| r.to_string());
        let ceil = ceiling(&g, &x, &w, default_tile(&g), 2);
        println!(
            "{:<24} {c1:>11} {p1:>11} {c2:>11} {d2:>11} {p2:>11} {wp2:>11} {ceil:>11}",
            s.name
        );
        check(&g, &x, &w);
    }
    if has("sweep") {
        println!("\ntile sweep, GFLOP/s 1T / 2T, wall (per thread-CPU-second)");
        for s in &shapes {
            let g = geometry(s);
            let x = values(s.cin * s.h * s.w, 1);
            let w = values(s.cout * g.depth(), 2);
            let b = values(s.cout, 3);
            println!("{}", s.name);
            for tile in [64, 128, 256, 512, 1024, 2048] {
                let c1 = kernel(&g, &x, &w, &b, 1, Some(tile));
                let c2 = kernel(&g, &x, &w, &b, 2, Some(tile));
                println!("  {tile:>5}: {c1:>10} / {c2:>10}");
            }
        }
    }
}

/// The kernel's output on a few pixels equals the im2col product (no bias).
fn check(g: &Conv2d, x: &[f32], w: &[f32]) {
    let y = conv2d(g, x, w, None);
    let (p, k) = (g.h.output * g.w.output, g.depth());
    for q in [0, p / 3, p - 1] {
        let col = im2col_tile(g, x, q, 1);
        for c in [0, g.out_channels - 1] {
            let want: f64 = (0..k).map(|i| col[i] as f64 * w[c * k + i] as f64).sum();
            let got = y[c * p + q] as f64;
            assert!(
                (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
                "channel {c} pixel {q}: {got} vs {want}"
            );
        }
    }
}

//! Histogram binning throughput (`Histogram::add` once the range is set, the calibration hook's
//! work per activation value), in ns a value on 1 and 2 threads, for a ReLU output (half zeros) and a
//! dense tensor, 16 M values each: larger than the caches, as W48's activations are.
//!
//! `cargo bench --bench histogram`. The calibration forward as a whole, next to a plain forward and
//! next to Model Optimizer, is `ocrnet-edge bench calib`.

use ocrnet_edge::calib::Histogram;
use std::time::Instant;

fn values(n: usize, relu: bool) -> Vec<f32> {
    let mut s = 7u64;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
            if relu {
                x.max(0.0)
            } else {
                x
            }
        })
        .collect()
}

fn main() {
    let n = 16 << 20;
    println!(
        "Histogram::add, {} M values, best of 15 (ns a value; lower is better)",
        n >> 20
    );
    println!("{:<10} {:>10} {:>10}", "data", "1 thread", "2 threads");
    for (name, relu) in [("relu", true), ("dense", false)] {
        let v = values(n, relu);
        let mut row = format!("{name:<10}");
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let best = pool.install(|| {
                let mut h = Histogram::new();
                h.add(&v); // sets the range
                (0..15)
                    .map(|_| {
                        let t = Instant::now();
                        h.add(&v);
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::MAX, f64::min)
            });
            row += &format!(" {:>10.3}", best * 1e9 / n as f64);
        }
        println!("{row}");
    }
}

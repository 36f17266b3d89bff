//! Generates a synthetic set and reports throughput.
//!
//! Usage: `cargo run --release -p privpkt-synth --example synth_bench -- <out_dir> [target_mb] [seed]`
//! (`target_mb` 0 = the default config, no size target).
//! The output directory is created if needed; delete it afterwards.

use privpkt_synth::{generate, SynthConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("privpkt-synth-bench"));
    let target_mb: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let cfg = SynthConfig {
        seed,
        target_bytes: (target_mb > 0).then_some(target_mb * 1_000_000),
        ..SynthConfig::default()
    };
    let seen = AtomicU64::new(0);
    let start = Instant::now();
    let summary = match generate(&cfg, &out, &|n| {
        seen.fetch_add(n, Ordering::Relaxed);
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} files, {} flows, {} packets, {:.1} MB in {:.2} s = {:.0} MB/s (progress saw {:.1} MB)",
        summary.files.len(),
        summary.flows,
        summary.packets,
        summary.bytes as f64 / 1e6,
        secs,
        summary.bytes as f64 / 1e6 / secs,
        seen.load(Ordering::Relaxed) as f64 / 1e6,
    );
    let mut per_class: Vec<(String, u64, u64)> = Vec::new();
    for f in &summary.files {
        match per_class.iter_mut().find(|c| c.0 == f.class) {
            Some(c) => {
                c.1 += f.bytes;
                c.2 += f.flows;
            }
            None => per_class.push((f.class.clone(), f.bytes, f.flows)),
        }
    }
    for (c, b, n) in per_class {
        println!("  {c:<20} {:>10.2} MB {n:>7} flows", b as f64 / 1e6);
    }
}

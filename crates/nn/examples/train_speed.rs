//! Training-step speed of a network on random data, for comparison with the PyTorch peers: the
//! Deep Packet CNN (`opacus_deeppacket.py --fc 200,100,50`) or the packet-series network
//! (`bench/opacus_series.py`, on behaviour samples of `--packets` packets with `--payload-bytes`
//! bytes each and the flow statistics).
//!
//!     cargo run --release -p privpkt-nn --example train_speed -- \
//!         [--batch 64] [--iters 10] [--warmup 2] [--conv im2col|im2col-autodiff|burn|all] \
//!         [--optimizer sgd|adam] [--arch deeppacket-app|deeppacket-traffic|series-cnn|mlp|logistic] \
//!         [--packets 30] [--payload-bytes 16] [--no-tune] [--dp]
//!
//! `--dp` also times a DP-SGD step on the same batch (every example its own unit, as Opacus
//! clips): per-example norms and clipped sums from one backward pass, ChaCha20 noise for every
//! parameter, the update; and reports its ratio to the non-private step and the peak RSS.
//!
//! Prints one JSON object per convolution implementation: the median seconds per step
//! (forward + backward + optimizer update), the fastest step, the optimizer's share, and
//! samples/s at the median.

use std::time::Instant;

use privpkt_nn::dp::clipped_gradients;
use privpkt_nn::model::{ConvImpl, Network};
use privpkt_nn::optim::{OptimState, Optimizer};
use privpkt_nn::train::gradients;
use privpkt_nn::{Arch, InputSpec};
use privpkt_privacy::NoiseGenerator;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = arg(&args, "--batch").map_or(64, |s| s.parse().expect("--batch N"));
    let iters: usize = arg(&args, "--iters").map_or(10, |s| s.parse().expect("--iters N"));
    let warmup: usize = arg(&args, "--warmup").map_or(2, |s| s.parse().expect("--warmup N"));
    let arch: Arch = arg(&args, "--arch").map_or(Arch::DeepPacketApp, |s| s.parse().expect("--arch"));
    // SGD (lr 0.01, no momentum) by default: what the anchor's non-private step runs.
    let (optimizer, lr) = match arg(&args, "--optimizer").as_deref() {
        None | Some("sgd") => (Optimizer::Sgd { momentum: 0.0 }, 0.01),
        Some("adam") => (Optimizer::Adam, 1e-3),
        Some(o) => panic!("--optimizer sgd|adam, not {o}"),
    };
    let convs = match arg(&args, "--conv").as_deref() {
        None | Some("im2col") => vec![ConvImpl::Im2col],
        Some("im2col-autodiff") => vec![ConvImpl::Im2colAutodiff],
        Some("burn") => vec![ConvImpl::Burn],
        Some("all") => vec![ConvImpl::Im2col, ConvImpl::Im2colAutodiff, ConvImpl::Burn],
        Some(c) => panic!("--conv im2col|im2col-autodiff|burn|all, not {c}"),
    };
    let tuned = !args.iter().any(|a| a == "--no-tune");
    let dp = args.iter().any(|a| a == "--dp");
    if tuned {
        privpkt_nn::tune_allocator();
    }

    let deeppacket = matches!(arch, Arch::DeepPacketApp | Arch::DeepPacketTraffic | Arch::Sae);
    let input = if deeppacket {
        InputSpec::DeepPacket { len: 1500 }
    } else {
        InputSpec::Behaviour {
            packets: arg(&args, "--packets").map_or(30, |s| s.parse().expect("--packets N")),
            payload_bytes: arg(&args, "--payload-bytes").map_or(16, |s| s.parse().expect("--payload-bytes K")),
            stats: privpkt_capture::STATS.len(),
            bins: privpkt_nn::arch::PLE_BINS,
        }
    };
    let classes = if deeppacket { 17 } else { 10 };
    let convs = if deeppacket { convs } else { vec![ConvImpl::Im2col] };
    let mut net = Network::new(arch, input, classes).expect("network");
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..batch * input.features()).map(|_| rng.random::<f32>()).collect();
    let y: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();
    for conv in convs {
        net.conv = conv;
        let mut params = net.init_params(0);
        let mut opt = OptimState::new(optimizer, &params);
        let (mut steps, mut update) = (Vec::new(), 0.0);
        for it in 0..warmup + iters {
            let t0 = Instant::now();
            let (g, _) = gradients(
                &net,
                &params,
                x.clone(),
                &y,
                None,
                Some(&mut ChaCha8Rng::seed_from_u64(it as u64)),
            );
            let t1 = Instant::now();
            let g: Vec<&[f32]> = g.iter().map(|d| d.as_slice::<f32>().expect("f32")).collect();
            opt.update(&mut params, &g, lr, 0.0);
            let t2 = Instant::now();
            if it >= warmup {
                steps.push((t2 - t0).as_secs_f64());
                update += (t2 - t1).as_secs_f64();
            }
        }
        // The median step: robust to other processes briefly taking a core.
        steps.sort_by(f64::total_cmp);
        let step = steps[steps.len() / 2];
        let dp_step = (dp && conv == ConvImpl::Im2col).then(|| {
            let offsets: Vec<usize> = (0..=batch).collect();
            let mut noise = NoiseGenerator::from_u64(1);
            let mut times = Vec::new();
            for it in 0..warmup + iters {
                let t0 = Instant::now();
                let mut g = clipped_gradients(
                    &net,
                    &params,
                    x.clone(),
                    &y,
                    &offsets,
                    1.0,
                    Some(&mut ChaCha8Rng::seed_from_u64(it as u64)),
                    Default::default(),
                )
                .expect("DP step");
                for v in &mut g.sum {
                    noise.add_noise(v, 1.0).expect("noise");
                    v.iter_mut().for_each(|x| *x /= batch as f32);
                }
                let gr: Vec<&[f32]> = g.sum.iter().map(Vec::as_slice).collect();
                opt.update(&mut params, &gr, lr, 0.0);
                if it >= warmup {
                    times.push(t0.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            times[times.len() / 2]
        });
        println!(
            "{}",
            serde_json::json!({
                "arch": arch.name(),
                "input": input.to_string(),
                "features": input.features(),
                "conv": match conv {
                    ConvImpl::Im2col => "im2col",
                    ConvImpl::Im2colAutodiff => "im2col-autodiff",
                    ConvImpl::Burn => "burn",
                },
                "optimizer": match optimizer {
                    Optimizer::Adam => "adam",
                    Optimizer::Sgd { .. } => "sgd",
                },
                "batch": batch,
                "iters": iters,
                "params": params.count(),
                "threads": rayon::current_num_threads(),
                "allocator_tuned": tuned,
                "seconds_per_step": step,
                "fastest_step_seconds": steps[0],
                "optimizer_seconds_per_step": update / iters as f64,
                "samples_per_s": batch as f64 / step,
                "dp_seconds_per_step": dp_step,
                "dp_samples_per_s": dp_step.map(|s| batch as f64 / s),
                "dp_over_non_private": dp_step.map(|s| s / step),
                "peak_rss_mib": peak_rss_mib(),
            })
        );
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

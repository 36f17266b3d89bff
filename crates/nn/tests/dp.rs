//! DP-SGD against independent references: per-unit clipped gradients equal clipped
//! batch-of-one backward passes for every model, units bound their total contribution,
//! Poisson sampling has the right statistics, and private training records what it spent.

mod common;

use common::{private_flowpic, write_dataset, Kind};
use privpkt_nn::dp::{clipped_gradients, poisson_batch, units_of, GradOptions};
use privpkt_nn::model::{ConvImpl, Network};
use privpkt_nn::train::gradients;
use privpkt_nn::{load_split, train, Arch, DpConfig, InputSpec, NnError, PrivacyUnit, TrainConfig, TrainEvent};
use privpkt_privacy::AccountantKind;
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};

const DP_IN: InputSpec = InputSpec::DeepPacket { len: 1500 };
/// Series of 8 packets with flow statistics, and of 9 packets with 4 payload bytes each.
const BEHAVIOUR: InputSpec = InputSpec::Behaviour {
    packets: 8,
    payload_bytes: 0,
    stats: 94,
    bins: privpkt_nn::arch::PLE_BINS,
};
const HYBRID: InputSpec = InputSpec::Behaviour {
    packets: 9,
    payload_bytes: 4,
    stats: 0,
    bins: privpkt_nn::arch::PLE_BINS,
};

/// Each example's full gradient (all parameters, flat, f64) by its own backward pass, all of
/// it through autodiff (not the hand-written blocks the engine uses).
fn per_example(net: &Network, params: &privpkt_nn::Params, x: &[f32], y: &[u32]) -> Vec<Vec<f64>> {
    let mut net = net.clone();
    net.conv = ConvImpl::Im2colAutodiff;
    let net = &net;
    let f = net.input.features();
    y.iter()
        .enumerate()
        .map(|(i, &yi)| {
            let (g, _) = gradients(net, params, x[i * f..(i + 1) * f].to_vec(), &[yi], None, None);
            g.iter()
                .flat_map(|d| {
                    d.as_slice::<f32>()
                        .unwrap()
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The DP engine's clipped sum for `offsets` against Σ_u min(1, C/‖Σ_{i∈u} g_i‖)·Σ_{i∈u} g_i
/// from batch-of-one passes, tensor by tensor.
fn check_model(arch: Arch, input: InputSpec, offsets: &[usize], clip_frac: f64) {
    let net = Network::new(arch, input, 3).unwrap();
    let params = net.init_params(7);
    let n = *offsets.last().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..n * input.features()).map(|_| rng.random::<f32>()).collect();
    let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let ex = per_example(&net, &params, &x, &y);
    let units: Vec<Vec<f64>> = offsets
        .windows(2)
        .map(|w| {
            let mut s = vec![0f64; ex[0].len()];
            for e in &ex[w[0]..w[1]] {
                s.iter_mut().zip(e).for_each(|(s, v)| *s += v);
            }
            s
        })
        .collect();
    // C below most unit norms, so clipping matters.
    let mut norms: Vec<f64> = units.iter().map(|u| norm(u)).collect();
    norms.sort_by(f64::total_cmp);
    let clip = norms[norms.len() / 2] * clip_frac;
    let mut want = vec![0f64; ex[0].len()];
    let mut clipped = 0;
    for u in &units {
        let c = (clip / norm(u)).min(1.0);
        clipped += usize::from(c < 1.0);
        want.iter_mut().zip(u).for_each(|(w, v)| *w += c * v);
    }
    let got = clipped_gradients(&net, &params, x, &y, offsets, clip, None, GradOptions::default()).unwrap();
    assert_eq!(got.clipped_units, clipped, "{arch}: clipped units");
    assert_eq!(got.units, offsets.len() - 1);
    let mut start = 0;
    for (spec, g) in params.specs.iter().zip(&got.sum) {
        let w = &want[start..start + g.len()];
        start += g.len();
        let err = norm(&g.iter().zip(w).map(|(&a, b)| f64::from(a) - b).collect::<Vec<_>>());
        let scale = norm(w).max(1e-3 * norm(&want));
        assert!(
            err <= 1e-4 * scale,
            "{arch} {}: clipped sum off by {err:.3e} (norm {scale:.3e})",
            spec.name
        );
    }
}

#[test]
fn per_example_clipping_equals_batch_of_one_passes_for_every_model() {
    let fp16 = InputSpec::FlowPic { resolution: 16 };
    let fp_paper = InputSpec::FlowPic { resolution: 160 };
    for (arch, input) in [
        (Arch::DeepPacketApp, DP_IN),
        (Arch::DeepPacketTraffic, DP_IN),
        (Arch::Sae, DP_IN),
        (Arch::FlowPicMini, fp16),
        (Arch::FlowPic, fp_paper),
        (Arch::Logistic, BEHAVIOUR),
        (Arch::Mlp, BEHAVIOUR),
        (Arch::SeriesCnn, BEHAVIOUR),
        (Arch::SeriesCnn, HYBRID),
    ] {
        // Packet-level units (one example each) and flow-level units of several examples.
        check_model(arch, input, &[0, 1, 2, 3, 4], 0.5);
        check_model(arch, input, &[0, 2, 2, 5], 0.7);
    }
}

#[test]
fn frozen_layers_take_no_part_and_views_are_averaged() {
    // Only `fc` and `out` of the series network trained: the engine's clipped sum equals the
    // batch-of-one reference restricted to those tensors (norms over them alone), and frozen
    // tensors get exactly zero.
    let net = Network::new(Arch::SeriesCnn, BEHAVIOUR, 3).unwrap();
    let params = net.init_params(11);
    let trainable: Vec<bool> = params
        .specs
        .iter()
        .map(|s| s.name.starts_with("fc.") || s.name.starts_with("out."))
        .collect();
    let f = net.input.features();
    let n = 6;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..n * f).map(|_| rng.random::<f32>()).collect();
    let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    let ex = per_example(&net, &params, &x, &y);
    // Two units of three "views" each: a unit's gradient is the mean of its views'.
    let offsets = [0, 3, 6];
    let mask: Vec<bool> = params
        .specs
        .iter()
        .zip(&trainable)
        .flat_map(|(s, &t)| std::iter::repeat_n(t, s.numel()))
        .collect();
    let units: Vec<Vec<f64>> = offsets
        .windows(2)
        .map(|w| {
            let mut s = vec![0f64; mask.len()];
            for e in &ex[w[0]..w[1]] {
                for ((s, v), &m) in s.iter_mut().zip(e).zip(&mask) {
                    if m {
                        *s += v / 3.0;
                    }
                }
            }
            s
        })
        .collect();
    let clip = norm(&units[0]).min(norm(&units[1])) * 0.8;
    let mut want = vec![0f64; mask.len()];
    for u in &units {
        let c = (clip / norm(u)).min(1.0);
        want.iter_mut().zip(u).for_each(|(w, v)| *w += c * v);
    }
    let opts = GradOptions {
        trainable: Some(&trainable),
        example_weight: 1.0 / 3.0,
    };
    let got = clipped_gradients(&net, &params, x, &y, &offsets, clip, None, opts).unwrap();
    assert_eq!(got.clipped_units, 2);
    let mut start = 0;
    for ((spec, g), &t) in params.specs.iter().zip(&got.sum).zip(&trainable) {
        let w = &want[start..start + g.len()];
        start += g.len();
        if !t {
            assert!(g.iter().all(|&v| v == 0.0), "{} is frozen", spec.name);
            continue;
        }
        let err = norm(&g.iter().zip(w).map(|(&a, b)| f64::from(a) - b).collect::<Vec<_>>());
        assert!(err <= 1e-4 * norm(w).max(1e-6), "{}: off by {err:.3e}", spec.name);
    }
}

#[test]
fn a_unit_moves_the_sum_by_at_most_c() {
    // One flow of 6 packets: whatever their number, the clipped contribution has norm ≤ C.
    let net = Network::new(Arch::Sae, DP_IN, 4).unwrap();
    let params = net.init_params(1);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x: Vec<f32> = (0..6 * 1500).map(|_| rng.random::<f32>()).collect();
    let y = [0, 1, 2, 3, 0, 1];
    for clip in [1e-3, 0.1, 1.0] {
        let g = clipped_gradients(
            &net,
            &params,
            x.clone(),
            &y,
            &[0, 6],
            clip,
            None,
            GradOptions::default(),
        )
        .unwrap();
        let n = norm(&g.sum.iter().flatten().map(|&v| f64::from(v)).collect::<Vec<_>>());
        assert!(n <= clip * (1.0 + 1e-5), "flow contribution {n} > C = {clip}");
        assert!(
            n >= clip * 0.999 || g.clipped_units == 0,
            "a clipped flow sits on the sphere: {n}"
        );
    }
}

#[test]
fn layers_without_a_per_example_rule_are_refused() {
    // burn's own conv1d has no probe: DP-SGD must refuse rather than train without it.
    let mut net = Network::new(Arch::DeepPacketApp, DP_IN, 3).unwrap();
    net.conv = ConvImpl::Burn;
    let params = net.init_params(1);
    let err = clipped_gradients(
        &net,
        &params,
        vec![0.5; 1500],
        &[1],
        &[0, 1],
        1.0,
        None,
        GradOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv1.weight") && msg.contains("refusing"), "{msg}");
}

#[test]
fn poisson_sampling_statistics_and_unit_caps() {
    let units: Vec<Vec<u32>> = (0..1000u32).map(|u| (u * 20..u * 20 + 20).collect()).collect();
    let (q, cap, steps) = (0.05, 5, 400);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut sizes = Vec::new();
    let mut hits = vec![0u32; units.len()];
    for _ in 0..steps {
        let b = poisson_batch(&units, q, cap, &mut rng);
        sizes.push((b.offsets.len() - 1) as f64);
        for w in b.offsets.windows(2) {
            let members = &b.samples[w[0]..w[1]];
            assert_eq!(members.len(), cap, "a sampled unit brings exactly its cap");
            let u = members[0] / 20;
            assert!(members.iter().all(|&s| s / 20 == u), "samples of one unit");
            assert!(members.windows(2).all(|p| p[0] < p[1]), "distinct samples");
            hits[u] += 1;
        }
    }
    // Batch size: mean N·q = 50, variance N·q(1 − q) = 47.5 per step.
    let mean = sizes.iter().sum::<f64>() / steps as f64;
    let var = sizes.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (steps - 1) as f64;
    assert!(
        (mean - 50.0).abs() < 5.0 * (47.5f64 / steps as f64).sqrt(),
        "mean batch {mean}"
    );
    assert!((var / 47.5 - 1.0).abs() < 0.35, "batch variance {var}");
    // Every unit is sampled ~ q·steps = 20 times; none is starved or favoured.
    let max = *hits.iter().max().unwrap();
    assert!(hits.iter().all(|&h| h < 50) && max > 20, "hits per unit up to {max}");
    // q = 1 takes every unit, small units whole.
    let small: Vec<Vec<u32>> = vec![vec![0], vec![1, 2], vec![3]];
    let b = poisson_batch(&small, 1.0, 8, &mut rng);
    assert_eq!(b.samples, [0, 1, 2, 3]);
    assert_eq!(b.offsets, [0, 1, 3, 4]);
}

#[test]
fn private_training_spends_at_most_its_budget_and_records_it() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 400, 2);
    let train_set = load_split(&ds, privpkt_dataset::Split::Train).unwrap();
    let flows = units_of(&train_set, PrivacyUnit::Flow);
    assert!(flows.len() < train_set.len() && flows.iter().all(|u| !u.is_empty()));
    let cfg = private_flowpic(4.0, 4);
    let events = std::cell::RefCell::new(Vec::new());
    let out = train(&ds, &cfg, &d.path().join("w"), false, &|e| events.borrow_mut().push(e)).unwrap();
    let p = out.model.meta().privacy.clone().expect("privacy recorded");
    let eps = p["epsilon"].as_f64().unwrap();
    assert!(eps <= 4.0 + 1e-9 && eps > 3.9, "ε spent {eps}");
    assert_eq!(p["unit"], "flow");
    assert_eq!(p["units"].as_u64().unwrap() as usize, flows.len());
    assert!(p["sigma_calibrated"].as_bool().unwrap());
    let steps = p["steps"].as_u64().unwrap();
    let q = p["q"].as_f64().unwrap();
    assert!((q - 8.0 / flows.len() as f64).abs() < 1e-12);
    // The recorded ε is the accountant's for the recorded (q, σ, steps).
    let sigma = p["sigma"].as_f64().unwrap();
    let again = privpkt_privacy::epsilon(
        AccountantKind::Rdp,
        &[privpkt_privacy::Phase::new(q, sigma, steps).unwrap()],
        1e-5,
    )
    .unwrap();
    assert!((again - eps).abs() < 1e-12);
    assert!(p["accountants"]["prv"]["epsilon"].as_f64().unwrap() <= eps + 1e-6);
    // ε per epoch is printed and grows.
    let eps_hist: Vec<f64> = out.history.iter().map(|r| r.epsilon.unwrap()).collect();
    assert!(eps_hist.windows(2).all(|w| w[0] < w[1]), "{eps_hist:?}");
    assert!(events
        .borrow()
        .iter()
        .any(|e| matches!(e, TrainEvent::Privacy { calibrated: true, .. })));
    // Seeded: the same command gives the same model.
    let out2 = train(&ds, &cfg, &d.path().join("w2"), false, &|_| {}).unwrap();
    assert_eq!(out.model.params(), out2.model.params());

    // A fixed σ with a budget: stops before exceeding it.
    let mut small = private_flowpic(1.0, 4);
    if let Some(dp) = small.dp.as_mut() {
        dp.sigma = Some(1.5);
    }
    small.epochs = 50;
    let events = std::cell::RefCell::new(Vec::new());
    let out = train(&ds, &small, &d.path().join("w3"), false, &|e| {
        events.borrow_mut().push(e)
    })
    .unwrap();
    let p = out.model.meta().privacy.clone().unwrap();
    assert!(p["epsilon"].as_f64().unwrap() <= 1.0 + 1e-9);
    assert!(out.history.len() < 50);
    assert!(events
        .borrow()
        .iter()
        .any(|e| matches!(e, TrainEvent::BudgetSpent { .. })));
}

#[test]
fn private_resume_equals_an_uninterrupted_seeded_run() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 200, 4);
    let cfg = private_flowpic(8.0, 4);
    let full = train(&ds, &cfg, &d.path().join("a"), false, &|_| {}).unwrap();
    let work = d.path().join("b");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&ds, &cfg, &work, false, &|e| {
            if let TrainEvent::EpochStart { epoch: 3, .. } = e {
                panic!("interrupted");
            }
        })
    }));
    assert!(r.is_err());
    let resumed = train(&ds, &cfg, &work, true, &|_| {}).unwrap();
    assert_eq!(resumed.model.params(), full.model.params());
    assert_eq!(resumed.model.meta().privacy, full.model.meta().privacy);
}

#[test]
fn impossible_budgets_and_unsound_settings_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(16), 4, 100, 2);
    let refuse = |cfg: TrainConfig, what: &str| {
        let work = d.path().join("w");
        match train(&ds, &cfg, &work, false, &|_| {}) {
            Err(NnError::Config(m)) => assert!(m.contains(what), "expected `{what}` in: {m}"),
            Err(e) => panic!("expected a configuration error with `{what}`, got {e}"),
            Ok(_) => panic!("expected a refusal with `{what}`"),
        }
    };
    let with = |f: &dyn Fn(&mut DpConfig)| {
        let mut c = private_flowpic(2.0, 4);
        f(c.dp.as_mut().unwrap());
        c
    };
    refuse(with(&|d| d.epsilon = Some(0.0)), "ε must be a finite number > 0");
    refuse(with(&|d| d.epsilon = Some(-1.0)), "ε must be a finite number > 0");
    refuse(with(&|d| d.delta = 1.0), "δ must be in (0, 1)");
    refuse(with(&|d| d.clip = 0.0), "clipping norm");
    refuse(
        with(&|d| {
            d.epsilon = None;
            d.sigma = None
        }),
        "budget ε",
    );
    refuse(
        TrainConfig {
            batch_size: 10_000,
            ..private_flowpic(2.0, 4)
        },
        "q =",
    );
    refuse(
        TrainConfig {
            class_weights: true,
            ..private_flowpic(2.0, 4)
        },
        "class weights",
    );
    refuse(
        TrainConfig {
            arch: Arch::Sae,
            ..private_flowpic(2.0, 4)
        },
        "pre-training",
    );
}

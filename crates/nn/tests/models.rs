//! Architectures: names, parameter counts (computed by hand), output shapes, the im2col
//! convolution against burn's conv1d, and gradient probes.

use burn::tensor::{Device, Tensor, TensorData};
use privpkt_capture::{BehaviourConfig, DeepPacketConfig, FlowPicConfig, Representation};
use privpkt_nn::model::{conv1d_burn, conv1d_im2col, ConvImpl, Mode, ProbeKind};
use privpkt_nn::train::StepStats;
use privpkt_nn::{Arch, InputSpec, Network, NnError, ParamSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DP: InputSpec = InputSpec::DeepPacket { len: 1500 };
const BEH: InputSpec = InputSpec::Behaviour {
    packets: 12,
    payload_bytes: 4,
    stats: 94,
    bins: privpkt_nn::arch::PLE_BINS,
};

#[test]
fn names_round_trip() {
    for a in Arch::ALL {
        assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
    }
    let names: Vec<String> = Arch::ALL.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        names,
        [
            "deeppacket-app",
            "deeppacket-traffic",
            "sae",
            "flowpic",
            "flowpic-mini",
            "logistic",
            "mlp",
            "series-cnn"
        ]
    );
    assert!(matches!("cnn".parse::<Arch>(), Err(NnError::Config(_))));
}

#[test]
fn defaults_and_input_checks() {
    let dp = Representation::DeepPacket(DeepPacketConfig::default());
    assert_eq!(Arch::default_for(&dp), Arch::DeepPacketApp);
    assert_eq!(
        Arch::default_for(&Representation::FlowPic(FlowPicConfig::paper())),
        Arch::FlowPic
    );
    assert_eq!(
        Arch::default_for(&Representation::FlowPic(FlowPicConfig::mini())),
        Arch::FlowPicMini
    );
    assert!(Arch::Sae.check_input(&DP).is_ok());
    assert!(Arch::FlowPic.check_input(&DP).is_err());
    assert!(Arch::DeepPacketApp
        .check_input(&InputSpec::FlowPic { resolution: 32 })
        .is_err());
    // The paper's FlowPic CNN does not fit 32×32 images; the error says why.
    let e = Arch::FlowPic
        .check_input(&InputSpec::FlowPic { resolution: 32 })
        .unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    assert!(Network::new(Arch::Sae, DP, 1).is_err());
    // Behaviour samples: the series network when there is a series long enough for it, else the MLP.
    let beh = Representation::Behaviour(BehaviourConfig::behaviour());
    assert_eq!(Arch::default_for(&beh), Arch::SeriesCnn);
    assert_eq!(
        Arch::default_for(&Representation::Behaviour(BehaviourConfig::flowstats())),
        Arch::Mlp
    );
    let short = InputSpec::Behaviour {
        packets: 4,
        payload_bytes: 0,
        stats: 94,
        bins: privpkt_nn::arch::PLE_BINS,
    };
    let e = Arch::SeriesCnn.check_input(&short).unwrap_err();
    assert!(e.to_string().contains("at least 5 packets"), "{e}");
    assert!(Arch::Mlp.check_input(&short).is_ok());
    assert!(Arch::Mlp.check_input(&DP).is_err());
    assert!(Arch::Sae.check_input(&short).is_err());
}

#[test]
fn parameter_counts_match_hand_computation() {
    // Deep Packet app-ID CNN, 17 classes, FC 200-100-50: the PyTorch anchor's
    // `--fc 200,100,50` model. conv1 1·4·200+200; conv2 200·5·200+200; after conv1
    // (1500-4)/3+1 = 499, conv2 495, pool 247: fc1 247·200·200+200; fc2 200·100+100;
    // fc3 100·50+50; out 50·17+17.
    let app = 1000 + 200_200 + 9_880_200 + 20_100 + 5_050 + 867;
    assert_eq!(app, 10_107_417);
    assert_eq!(Network::new(Arch::DeepPacketApp, DP, 17).unwrap().param_count(), app);
    // Traffic variant, 12 classes: conv1 k5 s3 → 499, conv2 k4 s3 → 166, pool 83.
    let traffic = (5 * 200 + 200) + (4 * 200 * 200 + 200) + (83 * 200 * 200 + 200) + 20_100 + 5_050 + (50 * 12 + 12);
    assert_eq!(
        Network::new(Arch::DeepPacketTraffic, DP, 12).unwrap().param_count(),
        traffic
    );
    // SAE 1500-400-300-200-100-50, 10 classes.
    let sae = 600_400 + 120_300 + 60_200 + 20_100 + 5_050 + 510;
    assert_eq!(Network::new(Arch::Sae, DP, 10).unwrap().param_count(), sae);
    // FlowPic 1500×1500: conv 10×10 s5 → 299, pool 149, conv → 28, pool 14: 20·14·14 = 3920.
    let fp = (10 * 100 + 10) + (20 * 10 * 100 + 20) + (3920 * 64 + 64) + (64 * 5 + 5);
    let big = InputSpec::FlowPic { resolution: 1500 };
    assert_eq!(Network::new(Arch::FlowPic, big, 5).unwrap().param_count(), fp);
    // mini: 32 → conv3 30 → pool 15 → conv3 13 → pool 6: 20·6·6 = 720.
    let mini = (10 * 9 + 10) + (20 * 10 * 9 + 20) + (720 * 64 + 64) + (64 * 5 + 5);
    let small = InputSpec::FlowPic { resolution: 32 };
    assert_eq!(Network::new(Arch::FlowPicMini, small, 5).unwrap().param_count(), mini);
    // Behaviour, 30-packet series with 16 payload bytes and the 94 statistics, 10 classes. Each packet:
    // 8 plain values + 3 numbers × 16 bins + 16 bytes × 8 bits = 184 inputs; statistics 94 × 16 = 1504.
    let beh = InputSpec::Behaviour {
        packets: 30,
        payload_bytes: 16,
        stats: 94,
        bins: privpkt_nn::arch::PLE_BINS,
    };
    assert_eq!(beh.features(), 30 * 184 + 1504);
    assert_eq!(beh.stored_len(), 30 * 27 + 94);
    assert_eq!(
        Network::new(Arch::Logistic, beh, 10).unwrap().param_count(),
        (30 * 184 + 1504) * 10 + 10
    );
    let mlp = (7024 * 256 + 256) + (256 * 128 + 128) + (128 * 10 + 10);
    assert_eq!(Network::new(Arch::Mlp, beh, 10).unwrap().param_count(), mlp);
    // series-cnn: conv 1·184→64 (the packet embedding), 3·64→64 twice; first 10 packets × 56 → 64;
    // statistics 1504 → 64; fc (64 + 64 + 64 + 64) → 128; out 128 → 10.
    let series = (184 * 64 + 64)
        + 2 * (3 * 64 * 64 + 64)
        + (10 * 56 * 64 + 64)
        + (1504 * 64 + 64)
        + (256 * 128 + 128)
        + (128 * 10 + 10);
    assert_eq!(Network::new(Arch::SeriesCnn, beh, 10).unwrap().param_count(), series);
}

#[test]
fn output_shapes() {
    let device = Device::flex();
    for (arch, input, classes) in [
        (Arch::DeepPacketApp, DP, 17),
        (Arch::DeepPacketTraffic, DP, 12),
        (Arch::Sae, DP, 3),
        (Arch::FlowPicMini, InputSpec::FlowPic { resolution: 32 }, 4),
        (Arch::FlowPic, InputSpec::FlowPic { resolution: 300 }, 5),
        (Arch::Logistic, BEH, 6),
        (Arch::Mlp, BEH, 6),
        (Arch::SeriesCnn, BEH, 6),
    ] {
        let net = Network::new(arch, input, classes).unwrap();
        let p = net.init_params(1).tensors(&device, false);
        let n = 3;
        let x = Tensor::<2>::ones([n, input.features()], &device);
        let probs = net.predict(&p, x);
        assert_eq!(probs.dims(), [n, classes], "{arch}");
        let d = probs.into_data();
        for row in d.as_slice::<f32>().unwrap().chunks(classes) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{arch}: {row:?}");
        }
    }
}

#[test]
fn same_seed_same_weights() {
    let net = Network::new(Arch::Sae, DP, 3).unwrap();
    assert_eq!(net.init_params(7), net.init_params(7));
    assert_ne!(net.init_params(7), net.init_params(8));
}

fn rel_close(a: &TensorData, b: &TensorData, what: &str) {
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * scale, "{what}[{i}]: {x} vs {y} (scale {scale})");
    }
}

/// Loss and parameter gradients of a batch, dropout seeded.
fn seeded_gradients(net: &Network, params: &privpkt_nn::Params, x: &[f32], y: &[u32]) -> (Vec<TensorData>, StepStats) {
    privpkt_nn::train::gradients(
        net,
        params,
        x.to_vec(),
        y,
        None,
        Some(&mut ChaCha8Rng::seed_from_u64(0)),
    )
}

/// The same loss (to 1e-5) and parameter gradients ([`rel_close`]), tensor by tensor.
fn same_gradients(
    got: &(Vec<TensorData>, StepStats),
    want: &(Vec<TensorData>, StepStats),
    specs: &[ParamSpec],
    what: &str,
) {
    let (l, w) = (got.1.loss, want.1.loss);
    assert!((l - w).abs() < 1e-5 * w.abs().max(1.0), "{what}: loss {l} vs {w}");
    for ((a, b), spec) in got.0.iter().zip(&want.0).zip(specs) {
        rel_close(a, b, &format!("{what} {}", spec.name));
    }
}

fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// im2col conv on [N, L, C] equals burn's conv1d on [N, C, L]: outputs, input gradients and
/// weight/bias gradients, for Deep Packet's three convolution shapes.
#[test]
fn im2col_conv_equals_burn_conv1d() {
    let ad = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (cin, cout, k, s, len) in [(1, 8, 4, 3, 50), (6, 5, 5, 1, 23), (6, 7, 4, 3, 31)] {
        let n = 3;
        let x = random(n * cin * len, &mut rng); // [N, C, L]
        let w = random(k * cin * cout, &mut rng); // [k·C, C_out]
        let b = random(cout, &mut rng);
        let leaf1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &ad).require_grad();
        // burn: x [N, C, L]
        let (w1, b1) = (leaf1(&w), leaf1(&b));
        let x1 = Tensor::<3>::from_data(TensorData::new(x.clone(), [n, cin, len]), &ad).require_grad();
        let y1 = conv1d_burn(&[w1.clone(), b1.clone()], 0, x1.clone(), k, s, cin);
        // im2col: x [N, L, C] (same values, transposed)
        let mut xt = vec![0f32; x.len()];
        for i in 0..n {
            for c in 0..cin {
                for l in 0..len {
                    xt[(i * len + l) * cin + c] = x[(i * cin + c) * len + l];
                }
            }
        }
        let (w2, b2) = (leaf1(&w), leaf1(&b));
        let x2 = Tensor::<3>::from_data(TensorData::new(xt, [n, len, cin]), &ad).require_grad();
        let y2 = conv1d_im2col(&[w2.clone(), b2.clone()], 0, x2.clone(), k, s, &mut Mode::eval());
        let what = format!("C_in {cin} k{k} s{s}");
        rel_close(
            &y2.clone().swap_dims(1, 2).inner().into_data(),
            &y1.clone().inner().into_data(),
            &format!("{what} output"),
        );
        // A loss that weights every output differently.
        let lout = y1.dims()[2];
        let r = random(n * cout * lout, &mut rng);
        let r1 = Tensor::<3>::from_data(TensorData::new(r.clone(), [n, cout, lout]), &Device::flex());
        let g1 = (y1 * r1.clone()).sum().backward();
        let g2 = (y2 * r1.swap_dims(1, 2)).sum().backward();
        let gx1 = x1.grad(&g1).unwrap().into_data();
        let gx2 = x2.grad(&g2).unwrap().swap_dims(1, 2).into_data();
        rel_close(&gx2, &gx1, &format!("{what} input grad"));
        rel_close(
            &w2.grad(&g2).unwrap().into_data(),
            &w1.grad(&g1).unwrap().into_data(),
            &format!("{what} weight grad"),
        );
        rel_close(
            &b2.grad(&g2).unwrap().into_data(),
            &b1.grad(&g1).unwrap().into_data(),
            &format!("{what} bias grad"),
        );
    }
}

/// Inference (no backward: conv2 read straight from h1 with a strided row step, no column
/// matrix) predicts what burn's conv1d predicts, for both Deep Packet CNNs.
#[test]
fn deeppacket_inference_same_with_every_conv() {
    for arch in [Arch::DeepPacketApp, Arch::DeepPacketTraffic] {
        let mut net = Network::new(arch, DP, 5).unwrap();
        let params = net.init_params(8);
        let p = params.tensors(&Device::flex(), false);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let x: Vec<f32> = (0..3 * 1500).map(|_| rng.random::<f32>()).collect();
        let mut run = |conv| {
            net.conv = conv;
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [3, 1500]), &Device::flex());
            net.forward(&p, xt, &mut Mode::eval()).into_data()
        };
        let burn = run(ConvImpl::Burn);
        rel_close(&run(ConvImpl::Im2col), &burn, &format!("{arch} logits"));
    }
}

/// Both Deep Packet CNNs give the same loss and parameter gradients with every convolution
/// implementation: burn's conv1d, im2col under autodiff, and im2col with the graph cut at
/// conv2 (the training default).
#[test]
fn deeppacket_networks_same_with_every_conv() {
    for arch in [Arch::DeepPacketApp, Arch::DeepPacketTraffic] {
        let mut net = Network::new(arch, DP, 4).unwrap();
        let params = net.init_params(5);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x: Vec<f32> = (0..2 * 1500).map(|_| rng.random::<f32>()).collect();
        let y = [1u32, 3];
        let mut run = |conv| {
            net.conv = conv;
            seeded_gradients(&net, &params, &x, &y)
        };
        let burn = run(ConvImpl::Burn);
        for conv in [ConvImpl::Im2col, ConvImpl::Im2colAutodiff] {
            same_gradients(&run(conv), &burn, &params.specs, &format!("{arch} {conv:?}"));
        }
    }
}

/// The series network's hand-written block (the CPU default) gives the logits, loss and
/// parameter gradients of the same network differentiated by autodiff, with short flows
/// (windows masked out), a one-packet flow and an empty series among the examples.
#[test]
fn series_block_equals_autodiff() {
    for input in [
        BEH,
        InputSpec::Behaviour {
            packets: 30,
            payload_bytes: 0,
            stats: 0,
            bins: privpkt_nn::arch::PLE_BINS,
        },
        BEH.with_bins(Some(3)),
    ] {
        let mut net = Network::new(Arch::SeriesCnn, input, 5).unwrap();
        let params = net.init_params(3);
        let (packets, payload, stats) = input.behaviour_layout().unwrap();
        let width = (input.features() - stats * input.bins()) / packets;
        assert_eq!(width, 8 + 3 * input.bins() + 8 * payload);
        let n = 6;
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut x: Vec<f32> = (0..n * input.features()).map(|_| rng.random::<f32>()).collect();
        // Packets present: all, 7, 3, 1, 0 and all; channel 0 is the presence mask.
        for (e, present) in [packets, 7, 3, 1, 0, packets].into_iter().enumerate() {
            for j in 0..packets {
                let row = &mut x[e * input.features() + j * width..][..width];
                if j < present {
                    row[0] = 1.0;
                } else {
                    row.fill(0.0);
                }
            }
        }
        let y = [0u32, 1, 2, 3, 4, 0];
        let mut run = |conv| {
            net.conv = conv;
            let ad = Device::flex();
            let logits = net
                .forward(
                    &params.tensors(&ad, false),
                    Tensor::<2>::from_data(TensorData::new(x.clone(), [n, input.features()]), &ad),
                    &mut Mode::eval(),
                )
                .into_data();
            (logits, seeded_gradients(&net, &params, &x, &y))
        };
        let (la, autodiff) = run(ConvImpl::Im2colAutodiff);
        let (lb, block) = run(ConvImpl::Im2col);
        rel_close(&lb, &la, "series logits");
        for (g, spec) in autodiff.0.iter().zip(&params.specs) {
            assert!(
                g.as_slice::<f32>().unwrap().iter().any(|&v| v != 0.0),
                "{}: some gradient",
                spec.name
            );
        }
        same_gradients(&block, &autodiff, &params.specs, "series-cnn");
    }
}

/// Probes: per-example output gradients, summed over the batch (and positions), equal each
/// layer's bias gradient; per-example input·probe products equal the weight gradient.
#[test]
fn probes_give_per_example_output_gradients() {
    let ad = Device::flex().autodiff();
    for (arch, input) in [
        (Arch::Sae, DP),
        (Arch::DeepPacketTraffic, DP),
        (Arch::FlowPicMini, InputSpec::FlowPic { resolution: 16 }),
    ] {
        let net = Network::new(arch, input, 3).unwrap();
        let params = net.init_params(2);
        let p = params.tensors(&ad, true);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = 3;
        let x: Vec<f32> = (0..n * input.features()).map(|_| rng.random::<f32>()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [n, input.features()]), &Device::flex());
        let mut probes = Vec::new();
        let logits = net.forward(
            &p,
            x,
            &mut Mode {
                probes: Some(&mut probes),
                ..Mode::default()
            },
        );
        let loss = privpkt_nn::model::cross_entropy(logits, &[0, 1, 2], None);
        let grads = loss.backward();
        assert_eq!(probes.len() * 2, params.specs.len(), "{arch}: a probe per layer");
        for pr in &probes {
            let g = pr.probe.grad(&grads).expect("probe gradient");
            let name = &params.specs[pr.bias].name;
            let bias_grad = p[pr.bias].grad(&grads).unwrap().into_data();
            let summed = match pr.kind {
                ProbeKind::Matmul => g.clone().sum_dim(1).sum_dim(0).flatten::<1>(0, 2).into_data(),
                ProbeKind::Conv2d { .. } => g.clone().sum_dim(2).sum_dim(0).flatten::<1>(0, 2).into_data(),
            };
            rel_close(&summed, &bias_grad, &format!("{arch} {name}"));
            if pr.kind == ProbeKind::Matmul {
                // Σ_i a_iᵀ g_i = ∇W
                let [b, pos, din] = pr.input.dims();
                let a = pr.input.clone().inner().reshape([b * pos, din]);
                let gw = a.transpose().matmul(g.reshape([b * pos, pr.probe.dims()[2]]));
                let wg = p[pr.weight].grad(&grads).unwrap().into_data();
                rel_close(
                    &gw.flatten::<1>(0, 1).into_data(),
                    &wg,
                    &format!("{arch} {name} weight"),
                );
            }
        }
    }
}

//! RDP accountant against Opacus 1.6 golden values and against brute-force integration.

use privpkt_privacy::{default_orders, rdp_epsilon, rdp_subsampled_gaussian, Phase, PrivacyError, RdpAccountant};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Per-step RDP given in docs/dp-sgd.md (Opacus 1.6 `_compute_rdp`).
#[test]
fn per_step_golden_values_from_the_docs() {
    let a2 = rdp_subsampled_gaussian(0.01, 1.0, 2.0).unwrap();
    let a8 = rdp_subsampled_gaussian(0.01, 1.0, 8.0).unwrap();
    assert!(rel(a2, 1.7181342207453428e-4) < 1e-10, "{a2}");
    assert!(rel(a8, 8.936439076060279e-4) < 1e-10, "{a8}");
}

/// (q, σ, α, RDP) from Opacus 1.6.0 `opacus.accountants.analysis.rdp._compute_rdp`
/// (Python 3.11, scipy 1.17.1), integer and fractional orders, tiny q, large σ, q near 1.
const OPACUS_PER_STEP: &[(f64, f64, f64, f64)] = &[
    (0.01, 1.0, 2.5, 0.00021757533233085147),
    (0.01, 1.0, 7.4, 0.000774446811786381),
    (1e-06, 1.0, 32.0, 1.7388278466688971),
    (0.5, 0.7, 3.3, 2.3870796175525624),
    (0.5, 0.7, 12.0, 11.488737398767057),
    (0.99, 2.0, 5.7, 0.7040963446151102),
    (0.99, 2.0, 6.0, 0.7414144876065469),
    (0.001, 50.0, 63.0, 1.260282763888057e-08),
    (0.2, 0.5, 1.1, 0.20258092767062957),
    (0.2, 0.5, 40.0, 78.34929444878554),
    (0.004266666666666667, 1.1, 8.1, 9.965972761984104e-05),
    (0.01818181818181818, 1.1, 7.4, 0.001985672780569958),
    (0.0064, 1.0, 9.2, 0.0004104869821429411),
];

#[test]
fn per_step_matches_opacus() {
    for &(q, s, a, want) in OPACUS_PER_STEP {
        let got = rdp_subsampled_gaussian(q, s, a).unwrap();
        // Opacus sums ln A directly; we sum A − 1 (integer orders), so tiny values may differ
        // in the last digits Opacus gets wrong.
        let tol = if want < 1e-6 { 1e-6 } else { 1e-9 };
        assert!(rel(got, want) < tol, "q={q} σ={s} α={a}: {got} vs {want}");
    }
}

/// Tiny values where Opacus's own answer has only ~5 correct digits because it sums ln A
/// directly (Opacus: (1e-6, 1, 10.5) → 9.021155e-12, (0.001, 50, 1.5) → 3.000596e-10; the
/// integral agrees with ours to 2e-9 and 4e-7, see `brute_force_integration_fractional_orders`).
#[test]
fn tiny_q_keeps_relative_precision() {
    // Leading term of A − 1 for integer α: C(α,2) q² (e^{1/σ²} − 1), so RDP ≈ that/(α − 1).
    let (q, s, a) = (1e-9, 1.0, 4.0);
    let got = rdp_subsampled_gaussian(q, s, a).unwrap();
    let lead = 6.0 * q * q * (1f64.exp() - 1.0) / 3.0;
    assert!(rel(got, lead) < 1e-6, "{got} vs {lead}");
}

/// ∫ μ₀^{1−α} μ^α with μ₀ = N(0, σ²), μ = (1 − q)N(0, σ²) + qN(1, σ²), by composite 16-point
/// Gauss–Legendre over [−40σ, α + 40σ] (the tilted integrand peaks near x = α): an
/// independent check of the closed-form series.
fn brute_force_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    // 16-point Gauss–Legendre nodes/weights on [-1, 1] (Abramowitz & Stegun 25.4.30).
    const X: [f64; 8] = [
        0.0950125098376374,
        0.2816035507792589,
        0.4580167776572274,
        0.6178762444026438,
        0.755404408355003,
        0.8656312023878318,
        0.9445750230732326,
        0.9894009349916499,
    ];
    const W: [f64; 8] = [
        0.1894506104550685,
        0.1826034150449236,
        0.1691565193950025,
        0.1495959888165767,
        0.1246289712555339,
        0.0951585116824928,
        0.0622535239386479,
        0.0271524594117541,
    ];
    let integrand = |x: f64| {
        let base = (-x * x / (2.0 * sigma * sigma)).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt());
        // (μ/μ₀)^α − 1 = expm1(α ln(1 + q(e^w − 1))): integrating A − 1 keeps relative
        // precision when A − 1 ≈ 1e-11.
        let w = (2.0 * x - 1.0) / (2.0 * sigma * sigma);
        base * (alpha * (q * w.exp_m1()).ln_1p()).exp_m1()
    };
    let (a, b) = (-40.0 * sigma, alpha + 40.0 * sigma);
    let panels = 4000;
    let h = (b - a) / panels as f64;
    let mut sum = 0.0;
    for p in 0..panels {
        let mid = a + (p as f64 + 0.5) * h;
        for k in 0..8 {
            let dx = 0.5 * h * X[k];
            sum += 0.5 * h * W[k] * (integrand(mid - dx) + integrand(mid + dx));
        }
    }
    sum.ln_1p() / (alpha - 1.0)
}

#[test]
fn brute_force_integration_integer_orders() {
    for &(q, s, a) in &[
        (0.01, 1.0, 2.0),
        (0.01, 1.0, 8.0),
        (0.1, 2.0, 5.0),
        (0.3, 1.5, 12.0),
        (0.05, 0.8, 3.0),
    ] {
        let closed = rdp_subsampled_gaussian(q, s, a).unwrap();
        let brute = brute_force_rdp(q, s, a);
        assert!(rel(closed, brute) < 1e-6, "q={q} σ={s} α={a}: {closed} vs {brute}");
    }
}

#[test]
fn brute_force_integration_fractional_orders() {
    for &(q, s, a) in &[
        (0.01, 1.0, 2.5),
        (0.01, 1.0, 7.4),
        (0.1, 2.0, 1.5),
        (0.3, 1.5, 10.9),
        (0.05, 0.8, 3.7),
        (0.9, 3.0, 1.1),
        (1e-6, 1.0, 10.5),
        (0.001, 50.0, 1.5),
    ] {
        let closed = rdp_subsampled_gaussian(q, s, a).unwrap();
        let brute = brute_force_rdp(q, s, a);
        assert!(rel(closed, brute) < 1e-6, "q={q} σ={s} α={a}: {closed} vs {brute}");
    }
}

#[test]
fn edge_sampling_rates() {
    assert_eq!(rdp_subsampled_gaussian(0.0, 1.0, 5.5).unwrap(), 0.0);
    assert_eq!(rdp_subsampled_gaussian(1.0, 2.0, 8.0).unwrap(), 1.0);
    assert!(rdp_subsampled_gaussian(1.0 + 1e-12, 1.0, 2.0).is_err());
    assert!(rdp_subsampled_gaussian(-0.1, 1.0, 2.0).is_err());
    // Huge σ: RDP ≈ q² α (e^{1/σ²} − 1)/2 ≈ q² α/(2σ²), no overflow or negative values.
    let r = rdp_subsampled_gaussian(0.01, 1e4, 20.0).unwrap();
    assert!(rel(r, 1e-4 * 20.0 / 2e8) < 1e-3, "{r}");
}

#[test]
fn default_orders_are_opacus_alphas() {
    let o = default_orders();
    assert_eq!(o.len(), 99 + 52);
    assert_eq!(o[0], 1.1);
    assert_eq!(o[98], 10.9);
    assert_eq!(o[99], 12.0);
    assert_eq!(*o.last().unwrap(), 63.0);
    assert_eq!(o[9], 2.0); // 1 + 10/10.0 is exactly 2: integer path, as in Opacus.
}

/// The three rows of docs/dp-sgd.md; full-precision values from Opacus 1.6.0
/// `RDPAccountant.get_privacy_spent` with default alphas.
#[test]
fn dp_sgd_doc_rows() {
    let rows = [
        (256.0 / 60000.0, 1.1, 14062, 2.596556, 2.5965558689607486, 8.1),
        (1.0 / 55.0, 1.1, 550, 2.433101, 2.4331013733377453, 7.4),
        (0.0064, 1.0, 1000, 1.428798, 1.4287983817380603, 9.2),
    ];
    for (q, s, n, doc, full, order) in rows {
        let r = rdp_epsilon(&[Phase::new(q, s, n).unwrap()], 1e-5).unwrap();
        assert!(rel(r.epsilon, doc) < 1e-4, "{} vs {doc}", r.epsilon);
        assert!(rel(r.epsilon, full) < 1e-9, "{} vs {full}", r.epsilon);
        assert_eq!(r.order, order);
    }
}

#[test]
fn extra_opacus_rows() {
    // Opacus 1.6.0 RDPAccountant, δ = 1e-5: (q=0.05, σ=0.8, 2000 steps) and (q=1, σ=5, 10 steps).
    let r = rdp_epsilon(&[Phase::new(0.05, 0.8, 2000).unwrap()], 1e-5).unwrap();
    assert!(rel(r.epsilon, 28.716873770141078) < 1e-9 && r.order == 1.9, "{r:?}");
    let r = rdp_epsilon(&[Phase::new(1.0, 5.0, 10).unwrap()], 1e-5).unwrap();
    assert!(rel(r.epsilon, 2.8136532471298397) < 1e-9 && r.order == 7.9, "{r:?}");
}

#[test]
fn heterogeneous_phases_add_curves() {
    // Opacus 1.6.0 RDPAccountant with history [(σ=1.0, q=0.01, 500), (σ=1.5, q=0.02, 300)].
    let phases = [Phase::new(0.01, 1.0, 500).unwrap(), Phase::new(0.02, 1.5, 300).unwrap()];
    let r = rdp_epsilon(&phases, 1e-5).unwrap();
    assert!(rel(r.epsilon, 1.9517459647894668) < 1e-9, "{r:?}");
    assert_eq!(r.order, 8.1);
    // Splitting a phase changes nothing; order of phases changes nothing.
    let split = [
        Phase::new(0.02, 1.5, 100).unwrap(),
        Phase::new(0.01, 1.0, 500).unwrap(),
        Phase::new(0.02, 1.5, 200).unwrap(),
    ];
    let r2 = rdp_epsilon(&split, 1e-5).unwrap();
    assert!(rel(r2.epsilon, r.epsilon) < 1e-12);
}

#[test]
fn custom_orders_tf_privacy_doc_example() {
    // The docstring example of TF-privacy/Opacus `analysis/rdp.py`: orders 2..=32,
    // [(1e-5, 1.0, 10), (1e-4, 3.0, 4)], δ = 1e-5 → (0.336, 23); full value from Opacus 1.6.0.
    let orders: Vec<f64> = (2..=32).map(f64::from).collect();
    let mut acc = RdpAccountant::with_orders(&orders).unwrap();
    acc.compose(&Phase::new(1e-5, 1.0, 10).unwrap()).unwrap();
    acc.compose(&Phase::new(1e-4, 3.0, 4).unwrap()).unwrap();
    let r = acc.epsilon(1e-5).unwrap();
    assert!(rel(r.epsilon, 0.33634406339259565) < 1e-8, "{r:?}");
    assert_eq!(r.order, 23.0);
    assert_eq!(acc.steps(), 14);
}

#[test]
fn classic_conversion_is_looser() {
    let mut acc = RdpAccountant::new();
    acc.compose(&Phase::new(256.0 / 60000.0, 1.1, 14062).unwrap()).unwrap();
    let improved = acc.epsilon(1e-5).unwrap();
    let classic = acc.epsilon_classic(1e-5).unwrap();
    assert!(classic.epsilon > improved.epsilon);
    // Classic by hand at its best order.
    let i = acc.orders().iter().position(|&o| o == classic.order).unwrap();
    let by_hand = acc.rdp()[i] + (1e5f64).ln() / (classic.order - 1.0);
    assert!(rel(classic.epsilon, by_hand) < 1e-14);
}

#[test]
fn infinite_orders_are_skipped() {
    // σ = 1e-152: (i² − i)/(2σ²) overflows at α = 1000 but not at α = 2, 3.
    let mut acc = RdpAccountant::with_orders(&[2.0, 3.0, 1000.0]).unwrap();
    acc.compose(&Phase::new(0.5, 1e-152, 1).unwrap()).unwrap();
    assert!(acc.rdp()[2].is_infinite());
    let r = acc.epsilon(1e-5).unwrap();
    assert!(r.epsilon.is_finite() && r.order != 1000.0, "{r:?}");
    // Every order infinite: an error, not a bogus number.
    let mut acc = RdpAccountant::new();
    acc.compose(&Phase::new(1.0, 1e-160, 1).unwrap()).unwrap();
    assert!(matches!(acc.epsilon(1e-5), Err(PrivacyError::Unreachable(_))));
}

#[test]
fn monotone_in_steps_q_and_sigma() {
    let qs = [0.001, 0.01, 0.1, 0.5, 1.0];
    let sigmas = [0.6, 1.0, 2.0, 5.0];
    let steps = [1u64, 10, 100, 1000];
    let eps = |q: f64, s: f64, n: u64| rdp_epsilon(&[Phase::new(q, s, n).unwrap()], 1e-5).unwrap().epsilon;
    let grid: Vec<Vec<Vec<f64>>> = qs
        .iter()
        .map(|&q| {
            sigmas
                .iter()
                .map(|&s| steps.iter().map(|&n| eps(q, s, n)).collect())
                .collect()
        })
        .collect();
    for i in 0..qs.len() {
        for j in 0..sigmas.len() {
            for k in 0..steps.len() {
                let e = grid[i][j][k];
                if k + 1 < steps.len() {
                    assert!(grid[i][j][k + 1] > e, "steps: q={} σ={}", qs[i], sigmas[j]);
                }
                if i + 1 < qs.len() {
                    assert!(grid[i + 1][j][k] > e, "q: q={} σ={} n={}", qs[i], sigmas[j], steps[k]);
                }
                if j + 1 < sigmas.len() {
                    assert!(grid[i][j + 1][k] < e, "σ: q={} σ={} n={}", qs[i], sigmas[j], steps[k]);
                }
            }
        }
    }
}

#[test]
fn invalid_inputs_are_errors() {
    assert_eq!(Phase::new(0.0, 1.0, 1), Err(PrivacyError::InvalidSamplingRate(0.0)));
    assert_eq!(Phase::new(1.5, 1.0, 1), Err(PrivacyError::InvalidSamplingRate(1.5)));
    assert!(matches!(
        Phase::new(f64::NAN, 1.0, 1),
        Err(PrivacyError::InvalidSamplingRate(_))
    ));
    assert_eq!(Phase::new(0.1, 0.0, 1), Err(PrivacyError::InvalidNoiseMultiplier(0.0)));
    assert_eq!(
        Phase::new(0.1, -1.0, 1),
        Err(PrivacyError::InvalidNoiseMultiplier(-1.0))
    );
    assert_eq!(
        Phase::new(0.1, f64::INFINITY, 1),
        Err(PrivacyError::InvalidNoiseMultiplier(f64::INFINITY))
    );
    assert_eq!(Phase::new(0.1, 1.0, 0), Err(PrivacyError::ZeroSteps));
    let p = Phase::new(0.1, 1.0, 10).unwrap();
    for d in [0.0, 1.0, -1e-5, f64::NAN] {
        assert!(
            matches!(rdp_epsilon(&[p], d), Err(PrivacyError::InvalidDelta(_))),
            "δ={d}"
        );
    }
    for o in [1.0, 0.5, f64::INFINITY, f64::NAN, 2e6] {
        assert!(matches!(
            RdpAccountant::with_orders(&[2.0, o]),
            Err(PrivacyError::InvalidOrder(_))
        ));
    }
    assert!(RdpAccountant::with_orders(&[]).is_err());
    assert_eq!(RdpAccountant::new().epsilon(1e-5), Err(PrivacyError::ZeroSteps));
    // Public fields can be set to nonsense; the accountant re-validates.
    let bad = Phase {
        q: 2.0,
        sigma: 1.0,
        steps: 1,
    };
    assert!(RdpAccountant::new().compose(&bad).is_err());
    // Messages name the value.
    let msg = Phase::new(0.1, -3.5, 1).unwrap_err().to_string();
    assert!(msg.contains("-3.5"), "{msg}");
}

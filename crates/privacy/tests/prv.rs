//! PRV accountant against Opacus 1.6 `prv`, Google dp-accounting's PLD and closed forms.

use privpkt_privacy::{prv_epsilon, Phase, PrivacyError, PrvAccountant, PrvOptions};

fn phase(q: f64, sigma: f64, steps: u64) -> Phase {
    Phase::new(q, sigma, steps).unwrap()
}

/// Φ(x) via erfc (libm).
fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

fn norm_sf(x: f64) -> f64 {
    0.5 * libm::erfc(x / std::f64::consts::SQRT_2)
}

/// Smallest ε with δ(ε) ≤ δ for a decreasing δ(·), by bisection.
fn invert(delta_of: impl Fn(f64) -> f64, delta: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, hi);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if delta_of(mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

struct Row {
    q: f64,
    sigma: f64,
    steps: u64,
    /// Opacus 1.6.0 `PRVAccountant` (eps_error 0.01, delta_error δ/1000): (lower, estimate, upper).
    opacus: (f64, f64, f64),
    /// dp-accounting 0.6.0 PLD, `from_gaussian_mechanism(σ, sampling_prob=q,
    /// value_discretization_interval=2e-5)` (connect-the-dots, pessimistic), self-composed: a
    /// near-exact upper bound from an independent algorithm.
    pld: f64,
}

const DELTA: f64 = 1e-5;

const ROWS: &[Row] = &[
    Row {
        q: 256.0 / 60000.0,
        sigma: 1.1,
        steps: 14062,
        opacus: (2.37145549890257, 2.3815995284343763, 2.391743695945225),
        pld: 2.381600492287658,
    },
    Row {
        q: 1.0 / 55.0,
        sigma: 1.1,
        steps: 550,
        opacus: (2.1556795904510917, 2.165830476224811, 2.175981505344654),
        pld: 2.1658280593034718,
    },
    Row {
        q: 0.0064,
        sigma: 1.0,
        steps: 1000,
        opacus: (1.118054273237548, 1.1281429806339476, 1.1382317838411635),
        pld: 1.1281389725523743,
    },
    Row {
        q: 0.05,
        sigma: 0.8,
        steps: 2000,
        opacus: (26.565785468338905, 26.576928300737936, 26.58807223073349),
        pld: 26.576930088142053,
    },
    Row {
        q: 1.0,
        sigma: 5.0,
        steps: 10,
        opacus: (2.584235974215271, 2.5943861861555573, 2.604536375535605),
        pld: 2.5943833829222567,
    },
];

#[test]
fn matches_opacus_and_brackets_the_pld_reference() {
    for r in ROWS {
        let e = prv_epsilon(&[phase(r.q, r.sigma, r.steps)], DELTA, PrvOptions::default()).unwrap();
        let ctx = format!("q={} σ={} n={}: {e:?}", r.q, r.sigma, r.steps);
        // Same algorithm as Opacus up to grid padding and quadrature: agree far below eps_error.
        assert!((e.eps_upper - r.opacus.2).abs() < 1e-5, "{ctx}");
        assert!((e.eps_estimate - r.opacus.1).abs() < 1e-5, "{ctx}");
        assert!((e.eps_lower - r.opacus.0).abs() < 1e-5, "{ctx}");
        // The guarantee: the (near-)true ε lies within the bounds.
        assert!(e.eps_lower <= r.pld && r.pld <= e.eps_upper, "{ctx} vs PLD {}", r.pld);
        assert!((e.eps_estimate - r.pld).abs() < 1e-4, "{ctx} vs PLD {}", r.pld);
    }
}

#[test]
fn dp_sgd_doc_rows() {
    // docs/dp-sgd.md "PRV ε" = Opacus's get_epsilon = upper bound, rounded to the digits shown.
    for (q, s, n, doc, half_ulp) in [
        (256.0 / 60000.0, 1.1, 14062, 2.3917, 5e-5),
        (1.0 / 55.0, 1.1, 550, 2.176, 5e-4),
        (0.0064, 1.0, 1000, 1.1382, 5e-5),
    ] {
        let e = prv_epsilon(&[phase(q, s, n)], DELTA, PrvOptions::default()).unwrap();
        assert!((e.eps_upper - doc).abs() <= half_ulp, "{e:?} vs {doc}");
        assert!(e.eps_lower <= doc && doc <= e.eps_upper + half_ulp, "{e:?} vs {doc}");
        // The golden value is an upper bound: the estimate sits below it by the error slack.
        let slack = e.eps_upper - e.eps_estimate;
        assert!(
            e.eps_estimate < doc && doc - e.eps_estimate <= slack + half_ulp,
            "{e:?} vs {doc}"
        );
    }
}

/// q = 1 is the Gaussian mechanism composed n times, i.e. one Gaussian with μ = √n/σ, whose
/// exact δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (Balle & Wang 2018, Thm. 8).
#[test]
fn pure_gaussian_matches_analytic_epsilon() {
    for (sigma, steps, delta) in [(5.0, 10u64, 1e-5), (2.0, 50, 1e-6), (20.0, 400, 1e-5)] {
        let mu = (steps as f64).sqrt() / sigma;
        let exact = invert(
            |e| norm_cdf(-e / mu + mu / 2.0) - e.exp() * norm_cdf(-e / mu - mu / 2.0),
            delta,
            50.0,
        );
        let e = prv_epsilon(&[phase(1.0, sigma, steps)], delta, PrvOptions::default()).unwrap();
        assert!(e.eps_lower <= exact && exact <= e.eps_upper, "{e:?} vs {exact}");
        assert!((e.eps_estimate - exact).abs() < 1e-3, "{e:?} vs {exact}");
    }
    // scipy 1.17.1 brentq on the same formula for σ = 5, 10 steps, δ = 1e-5.
    let mu = 10f64.sqrt() / 5.0;
    let exact = invert(
        |e| norm_cdf(-e / mu + mu / 2.0) - e.exp() * norm_cdf(-e / mu - mu / 2.0),
        1e-5,
        50.0,
    );
    assert!((exact - 2.594383380527609).abs() < 1e-9, "{exact}");
}

/// One step of the subsampled Gaussian has a closed-form δ(ε) = P[L > ε] − e^ε Q[L > ε] with
/// L > ε ⇔ x > σ² ln((e^ε − 1 + q)/q) + 1/2, x ~ P = (1−q)N(0,σ²) + qN(1,σ²), Q = N(0,σ²).
#[test]
fn single_step_matches_closed_form() {
    for (q, sigma, delta) in [(0.05, 0.8, 1e-5), (0.01, 1.0, 1e-6), (0.3, 2.0, 1e-5)] {
        let delta_of = |e: f64| {
            let x = sigma * sigma * ((e.exp() - 1.0 + q) / q).ln() + 0.5;
            (1.0 - q) * norm_sf(x / sigma) + q * norm_sf((x - 1.0) / sigma) - e.exp() * norm_sf(x / sigma)
        };
        let exact = invert(delta_of, delta, 50.0);
        let e = prv_epsilon(&[phase(q, sigma, 1)], delta, PrvOptions::default()).unwrap();
        assert!(e.eps_lower <= exact && exact <= e.eps_upper, "q={q}: {e:?} vs {exact}");
        assert!((e.eps_estimate - exact).abs() < 1e-3, "q={q}: {e:?} vs {exact}");
    }
    // scipy 1.17.1 brentq on the closed form, q = 0.05, σ = 0.8, δ = 1e-5.
    let e = prv_epsilon(&[phase(0.05, 0.8, 1)], 1e-5, PrvOptions::default()).unwrap();
    assert!((e.eps_estimate - 1.8941129738049691).abs() < 1e-3, "{e:?}");
}

#[test]
fn small_delta_and_tiny_q() {
    // δ = 1e-10: dp-accounting 0.6.0 PLD (interval 1e-5, connect-the-dots) gives
    // 3.2904529922734542. Opacus 1.6.0 gives estimate 3.290630952 here: its cell masses are
    // differences of CDFs near 1, which lose digits in the tail that decides δ = 1e-10.
    let e = prv_epsilon(&[phase(0.01, 1.0, 1000)], 1e-10, PrvOptions::default()).unwrap();
    let pld = 3.2904529922734542;
    assert!(e.eps_lower <= pld && pld <= e.eps_upper, "{e:?}");
    assert!((e.eps_estimate - pld).abs() < 1e-3, "{e:?}");
    // q = 1e-5, 1e5 steps: Opacus 1.6.0 (0.000779188, 0.010780628, 0.020782072).
    let e = prv_epsilon(&[phase(1e-5, 1.0, 100_000)], 1e-5, PrvOptions::default()).unwrap();
    assert!((e.eps_estimate - 0.010780628).abs() < 1e-6, "{e:?}");
    assert!((e.eps_upper - 0.020782072).abs() < 1e-6, "{e:?}");
}

#[test]
fn heterogeneous_phases() {
    let a = phase(0.01, 1.0, 500);
    let b = phase(0.02, 1.5, 300);
    let e = prv_epsilon(&[a, b], DELTA, PrvOptions::default()).unwrap();
    // dp-accounting 0.6.0 PLD (interval 2e-5) of the composition: 1.6825954002649977.
    let pld = 1.6825954002649977;
    assert!(e.eps_lower <= pld && pld <= e.eps_upper, "{e:?}");
    // Opacus 1.6.0 PRVAccountant, history [(1.0, 0.01, 500), (1.5, 0.02, 300)]:
    // (1.6724781166039064, 1.6825983666565643, 1.6927187325199984). Opacus convolves the phases
    // linearly, we multiply spectra (circular): equal up to the truncated tail mass.
    assert!((e.eps_upper - 1.6927187325199984).abs() < 1e-4, "{e:?}");
    assert!((e.eps_estimate - 1.6825983666565643).abs() < 1e-4, "{e:?}");
    // Composition commutes.
    let r = prv_epsilon(&[b, a], DELTA, PrvOptions::default()).unwrap();
    assert!((r.eps_estimate - e.eps_estimate).abs() < 1e-9, "{r:?} vs {e:?}");
}

#[test]
fn one_grid_serves_fewer_steps() {
    let acc = PrvAccountant::new(&[phase(0.01, 1.0, 800)], 0.01, 1e-8).unwrap();
    let mut last = 0.0;
    for n in [1u64, 10, 100, 400, 800] {
        let on_big = acc.epsilon_for_steps(&[n], DELTA).unwrap();
        let fresh = prv_epsilon(&[phase(0.01, 1.0, n)], DELTA, PrvOptions::default()).unwrap();
        assert!(on_big.eps_estimate > last, "monotone in steps");
        last = on_big.eps_estimate;
        // Both are estimates within eps_error of the truth.
        assert!(
            (on_big.eps_estimate - fresh.eps_estimate).abs() < 0.01,
            "n={n}: {on_big:?} vs {fresh:?}"
        );
    }
    assert!(acc.epsilon_for_steps(&[801], DELTA).is_err());
    assert!(acc.epsilon_for_steps(&[1, 1], DELTA).is_err());
    assert_eq!(acc.epsilon_for_steps(&[0], DELTA), Err(PrivacyError::ZeroSteps));
}

#[test]
fn monotone_in_q_and_sigma() {
    let eps = |q: f64, s: f64| {
        prv_epsilon(&[phase(q, s, 200)], DELTA, PrvOptions::default())
            .unwrap()
            .eps_estimate
    };
    let qs = [0.005, 0.02, 0.1];
    let sigmas = [0.8, 1.2, 2.0];
    for (i, &q) in qs.iter().enumerate() {
        for (j, &s) in sigmas.iter().enumerate() {
            let e = eps(q, s);
            if i + 1 < qs.len() {
                assert!(eps(qs[i + 1], s) > e, "q={q} σ={s}");
            }
            if j + 1 < sigmas.len() {
                assert!(eps(q, sigmas[j + 1]) < e, "q={q} σ={s}");
            }
        }
    }
}

#[test]
fn tighter_than_rdp() {
    for r in ROWS {
        let p = [phase(r.q, r.sigma, r.steps)];
        let prv = prv_epsilon(&p, DELTA, PrvOptions::default()).unwrap();
        let rdp = privpkt_privacy::rdp_epsilon(&p, DELTA).unwrap();
        assert!(prv.eps_upper < rdp.epsilon, "{prv:?} vs {rdp:?}");
    }
}

#[test]
fn invalid_inputs_are_errors() {
    let p = phase(0.01, 1.0, 10);
    assert!(matches!(
        prv_epsilon(&[p], 0.0, PrvOptions::default()),
        Err(PrivacyError::InvalidDelta(_))
    ));
    assert!(matches!(
        prv_epsilon(&[p], 1.0, PrvOptions::default()),
        Err(PrivacyError::InvalidDelta(_))
    ));
    assert_eq!(
        prv_epsilon(&[], 1e-5, PrvOptions::default()),
        Err(PrivacyError::ZeroSteps)
    );
    let bad_eps = PrvOptions {
        eps_error: 0.0,
        delta_error: None,
    };
    assert!(matches!(
        prv_epsilon(&[p], 1e-5, bad_eps),
        Err(PrivacyError::InvalidParameter { name: "eps_error", .. })
    ));
    let bad_delta = PrvOptions {
        eps_error: 0.01,
        delta_error: Some(1e-5),
    };
    assert!(matches!(
        prv_epsilon(&[p], 1e-5, bad_delta),
        Err(PrivacyError::InvalidParameter { name: "delta", .. })
    ));
    let bad_phase = Phase {
        q: 0.0,
        sigma: 1.0,
        steps: 10,
    };
    assert_eq!(
        prv_epsilon(&[bad_phase], 1e-5, PrvOptions::default()),
        Err(PrivacyError::InvalidSamplingRate(0.0))
    );
    // A grid beyond MAX_PRV_GRID is refused, not allocated.
    let huge = PrvOptions {
        eps_error: 1e-5,
        delta_error: None,
    };
    assert!(matches!(
        prv_epsilon(&[phase(0.01, 1.0, 1_000_000)], 1e-5, huge),
        Err(PrivacyError::Unreachable(_))
    ));
}

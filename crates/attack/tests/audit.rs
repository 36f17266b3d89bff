//! The one-run audit: its statistics against exact binomial sums, and whole DP-SGD runs in
//! which it stays below the accountant's ε while DP holds and exceeds it once noise or clipping
//! is switched off.

// The synthetic dataset writer of the model tests (written straight in privpkt's format).
#[path = "../../nn/tests/common/mod.rs"]
mod nn_common;

use privpkt_attack::audit::{
    best_bound, binomial_log_pmf, epsilon_lower_bound, guess_grid, p_value, run_audit, AuditConfig,
};
use privpkt_nn::dp::BrokenDp;

/// C(n, k) exactly (n ≤ 60 fits a u128).
fn choose(n: u64, k: u64) -> u128 {
    (0..k).fold(1u128, |acc, i| acc * u128::from(n - i) / u128::from(i + 1))
}

/// P[Binomial(r, q) = k] from the exact coefficient, q = e^ε/(1+e^ε).
fn pmf(r: u64, k: u64, eps: f64) -> f64 {
    let q = eps.exp() / (1.0 + eps.exp());
    choose(r, k) as f64 * q.powi(k as i32) * (1.0 - q).powi((r - k) as i32)
}

/// The p-value by brute force: tail sum, and the δ term's maximum over i of window sums / i.
fn brute_p(m: u64, r: u64, v: u64, eps: f64, delta: f64) -> f64 {
    let beta: f64 = (v..=r).map(|k| pmf(r, k, eps)).sum();
    let alpha = (1..=v)
        .map(|i| (v - i..v).map(|k| pmf(r, k, eps)).sum::<f64>() / i as f64)
        .fold(0.0, f64::max);
    (beta + 2.0 * m as f64 * delta * alpha).min(1.0)
}

#[test]
fn binomial_terms_match_exact_sums() {
    for r in [1u64, 5, 20, 60] {
        for eps in [0.0, 0.3, 1.0, 4.0] {
            let lp = binomial_log_pmf(r as usize, eps);
            assert_eq!(lp.len(), r as usize + 1);
            let total: f64 = lp.iter().map(|l| l.exp()).sum();
            assert!((total - 1.0).abs() < 1e-12, "r {r} ε {eps}: pmf sums to {total}");
            for k in 0..=r {
                let want = pmf(r, k, eps);
                let got = lp[k as usize].exp();
                assert!(
                    (got - want).abs() <= 1e-12 * want.max(1e-300) + 1e-300,
                    "r {r} k {k} ε {eps}: {got} vs {want}"
                );
            }
        }
    }
    for (m, r, v, eps, delta) in [
        (100, 40, 30, 0.5, 1e-5),
        (100, 40, 40, 2.0, 1e-5),
        (60, 60, 31, 0.0, 0.0),
        (1000, 50, 45, 1.0, 1e-3),
        (20, 10, 0, 1.0, 1e-5),
        (200, 60, 55, 3.0, 1e-2),
    ] {
        let got = p_value(m, r, v, eps, delta).unwrap();
        let want = brute_p(m as u64, r as u64, v as u64, eps, delta);
        assert!(
            (got - want).abs() <= 1e-10 * want.max(1e-12),
            "{m} {r} {v} {eps} {delta}: {got} vs {want}"
        );
    }
    // δ = 0, every guess right: the p-value is q^r.
    let q: f64 = 2f64.exp() / (1.0 + 2f64.exp());
    assert!((p_value(50, 30, 30, 2.0, 0.0).unwrap() - q.powi(30)).abs() < 1e-15);
    assert!(p_value(10, 11, 3, 1.0, 0.0).is_err() && p_value(10, 5, 6, 1.0, 0.0).is_err());
}

#[test]
fn the_bound_is_the_rejection_boundary() {
    // All r guesses right, δ = 0: q^r = α gives ε = ln(q / (1 − q)) in closed form.
    for (r, sig) in [(10usize, 0.05), (100, 0.05), (100, 0.001)] {
        let q = f64::powf(sig, 1.0 / r as f64);
        let want = (q / (1.0 - q)).ln();
        let got = epsilon_lower_bound(r, r, r, 0.0, sig).unwrap();
        assert!((got - want).abs() < 1e-7, "r {r}: {got} vs {want}");
    }
    // With δ > 0 the bound rejects just below it and not just above it.
    let (m, r, v, delta, sig) = (1000, 200, 170, 1e-5, 0.05);
    let eps = epsilon_lower_bound(m, r, v, delta, sig).unwrap();
    assert!(eps > 0.5 && eps < 2.0, "{eps}");
    assert!(p_value(m, r, v, eps, delta).unwrap() < sig);
    assert!(p_value(m, r, v, eps + 1e-6, delta).unwrap() >= sig);
    // More correct guesses, a higher bound; chance-level guesses, none.
    assert!(epsilon_lower_bound(m, r, 180, delta, sig).unwrap() > eps);
    assert_eq!(epsilon_lower_bound(m, r, 100, delta, sig).unwrap(), 0.0);
    // A large δ term: 2mδ alone above the level leaves nothing to reject.
    assert_eq!(epsilon_lower_bound(1000, 10, 10, 0.1, 0.05).unwrap(), 0.0);
}

#[test]
fn the_best_pair_is_bonferroni_corrected() {
    let m = 200;
    let grid = guess_grid(m);
    assert!(grid.contains(&(2, 0)) && grid.contains(&(100, 100)) && !grid.contains(&(0, 0)));
    assert!(grid.iter().all(|&(p, n)| p + n <= m));
    // Perfect scores: included canaries score 1, the others 0.
    let included: Vec<bool> = (0..m).map(|i| i % 3 == 0).collect();
    let scores: Vec<f64> = included.iter().map(|&b| f64::from(u8::from(b))).collect();
    let b = best_bound(&scores, &included, 1e-5, 0.95).unwrap();
    assert_eq!(b.correct, b.guesses, "perfect separation: every guess right");
    assert_eq!(b.grid, grid.len());
    // 67 included: the top p guesses hold min(p, 67) of them, the bottom n min(n, 133) others.
    let want = grid
        .iter()
        .map(|&(p, n)| epsilon_lower_bound(m, p + n, p.min(67) + n.min(133), 1e-5, 0.05 / grid.len() as f64).unwrap())
        .fold(0.0, f64::max);
    assert!((b.epsilon - want).abs() < 1e-12, "{} vs {want}", b.epsilon);
    // Scores unrelated to inclusion: no bound.
    let noise: Vec<f64> = (0..m).map(|i| ((i * 7919) % 211) as f64).collect();
    assert!(best_bound(&noise, &included, 1e-5, 0.95).unwrap().epsilon < 0.3);
    assert!(best_bound(&[1.0, f64::NAN], &[true, false], 1e-5, 0.95).is_err());
}

#[test]
fn the_audit_stays_below_epsilon_and_catches_broken_dp() {
    let d = tempfile::tempdir().unwrap();
    let ds = nn_common::write_dataset(&d.path().join("ds"), nn_common::Kind::FlowPicDense(16), 4, 400, 2);
    let cfg = |broken| AuditConfig {
        canaries: 200,
        runs: 1,
        seed: 11,
        confidence: 0.95,
        broken,
    };
    let tc = nn_common::private_flowpic(1.0, 4);
    let honest = run_audit(&ds, &tc, &cfg(None), d.path(), &|_| {}).unwrap();
    assert!(honest.accountant_epsilon > 0.9 && honest.accountant_epsilon <= 1.0 + 1e-9);
    assert!(honest.consistent && honest.epsilon_lower_bound <= honest.accountant_epsilon);
    assert_eq!(honest.canaries, 200);
    assert!(honest.runs[0].steps > 0);
    for broken in [BrokenDp::Noise, BrokenDp::Clipping] {
        let r = run_audit(&ds, &tc, &cfg(Some(broken)), d.path(), &|_| {}).unwrap();
        eprintln!(
            "{broken:?} off: bound {:.3} ({} of {} guesses right) vs ε {:.3}; honest bound {:.3}",
            r.epsilon_lower_bound, r.bound.correct, r.bound.guesses, r.accountant_epsilon, honest.epsilon_lower_bound
        );
        assert!(
            r.epsilon_lower_bound > r.accountant_epsilon && !r.consistent,
            "{broken:?}: bound {} vs claimed ε {}",
            r.epsilon_lower_bound,
            r.accountant_epsilon
        );
    }
    // Two runs pool their canaries.
    let two = run_audit(&ds, &tc, &AuditConfig { runs: 2, ..cfg(None) }, d.path(), &|_| {}).unwrap();
    assert_eq!((two.canaries, two.runs.len()), (400, 2));
    assert!(two.consistent);
}

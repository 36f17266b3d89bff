//! σ calibration, step budgets and the serialisable summary.

use privpkt_privacy::{
    calibrate_sigma, epsilon, privacy_report, prv_epsilon, rdp_epsilon, steps_for_budget, AccountantKind, Phase,
    PrivacyError, PrivacyReport, PrivacySummary, PrvOptions, CALIBRATION_TOLERANCE,
};

const DELTA: f64 = 1e-5;

#[test]
fn rdp_calibration_round_trips_and_matches_opacus() {
    // σ solving Opacus 1.6.0 RDPAccountant ε(σ) = target exactly (scipy brentq, xtol 1e-13).
    let cases = [
        (2.0, 256.0 / 60000.0, 14062u64, 1e-5, 1.295226923507964),
        (1.0, 0.01, 1000, 1e-5, 1.5131221626072058),
        (8.0, 0.05, 500, 1e-6, 1.079191267813967),
    ];
    for (target, q, steps, delta, opacus_sigma) in cases {
        let sigma = calibrate_sigma(target, delta, q, steps, AccountantKind::Rdp).unwrap();
        let e = rdp_epsilon(&[Phase::new(q, sigma, steps).unwrap()], delta)
            .unwrap()
            .epsilon;
        assert!(e <= target && target - e <= CALIBRATION_TOLERANCE, "σ={sigma}: ε={e}");
        // Just above the exact root: within a relative 1e-3 of it.
        assert!(
            sigma >= opacus_sigma && (sigma - opacus_sigma) / opacus_sigma < 1e-3,
            "{sigma}"
        );
    }
    for target in [0.5, 1.0, 2.0, 4.0, 8.0] {
        let sigma = calibrate_sigma(target, DELTA, 0.01, 300, AccountantKind::Rdp).unwrap();
        let e = epsilon(AccountantKind::Rdp, &[Phase::new(0.01, sigma, 300).unwrap()], DELTA).unwrap();
        assert!(
            e <= target && target - e <= CALIBRATION_TOLERANCE,
            "target {target}: ε={e}"
        );
    }
}

#[test]
fn prv_calibration_round_trips() {
    for (target, q, steps) in [(1.0, 0.01, 100u64), (3.0, 0.05, 50)] {
        let sigma = calibrate_sigma(target, DELTA, q, steps, AccountantKind::Prv).unwrap();
        let e = prv_epsilon(&[Phase::new(q, sigma, steps).unwrap()], DELTA, PrvOptions::default())
            .unwrap()
            .eps_upper;
        assert!(e <= target && target - e <= 0.01, "σ={sigma}: ε={e}");
        // PRV is tighter, so it needs less noise than RDP for the same target.
        let rdp_sigma = calibrate_sigma(target, DELTA, q, steps, AccountantKind::Rdp).unwrap();
        assert!(sigma < rdp_sigma, "{sigma} vs {rdp_sigma}");
    }
}

#[test]
fn unreachable_targets_are_errors() {
    // With orders ≤ 63 the improved conversion cannot go below ~0.10 at δ = 1e-5.
    assert!(matches!(
        calibrate_sigma(0.05, DELTA, 0.01, 100, AccountantKind::Rdp),
        Err(PrivacyError::Unreachable(_))
    ));
}

#[test]
fn rdp_steps_for_budget_is_the_last_step_within_budget() {
    let (q, sigma) = (256.0 / 60000.0, 1.1);
    let eps_at = |n: u64| rdp_epsilon(&[Phase::new(q, sigma, n).unwrap()], DELTA).unwrap().epsilon;
    // Budget equal to the doc row's ε at 14062 steps (Opacus: 2.5965558689607486).
    let at_row = eps_at(14062);
    assert!((at_row - 2.5965558689607486).abs() < 1e-9);
    let n = steps_for_budget(at_row, DELTA, q, sigma, AccountantKind::Rdp).unwrap();
    assert_eq!(n, 14062);
    for budget in [1.0, 3.0, 8.0] {
        let n = steps_for_budget(budget, DELTA, q, sigma, AccountantKind::Rdp).unwrap();
        assert!(n >= 1 && eps_at(n) <= budget && eps_at(n + 1) > budget, "{budget}: {n}");
    }
    // One step already too expensive.
    assert_eq!(steps_for_budget(0.2, DELTA, 0.5, 0.5, AccountantKind::Rdp).unwrap(), 0);
}

#[test]
fn prv_steps_for_budget_agrees_with_fresh_accountants() {
    let (q, sigma, budget) = (0.02, 1.0, 1.5);
    let eps_at = |n: u64| {
        prv_epsilon(&[Phase::new(q, sigma, n).unwrap()], DELTA, PrvOptions::default())
            .unwrap()
            .eps_upper
    };
    let n = steps_for_budget(budget, DELTA, q, sigma, AccountantKind::Prv).unwrap();
    let rdp_n = steps_for_budget(budget, DELTA, q, sigma, AccountantKind::Rdp).unwrap();
    assert!(n > rdp_n, "PRV allows more steps than RDP: {n} vs {rdp_n}");
    assert!(eps_at(n) <= budget, "ε({n}) = {}", eps_at(n));
    assert!(eps_at(n + 1) > budget, "ε({}) = {}", n + 1, eps_at(n + 1));
}

#[test]
fn calibration_inputs_are_validated() {
    let k = AccountantKind::Rdp;
    assert_eq!(
        calibrate_sigma(0.0, DELTA, 0.01, 10, k),
        Err(PrivacyError::InvalidEpsilon(0.0))
    );
    assert_eq!(
        calibrate_sigma(-1.0, DELTA, 0.01, 10, k),
        Err(PrivacyError::InvalidEpsilon(-1.0))
    );
    assert!(matches!(
        calibrate_sigma(f64::NAN, DELTA, 0.01, 10, k),
        Err(PrivacyError::InvalidEpsilon(_))
    ));
    assert_eq!(
        calibrate_sigma(1.0, 1.0, 0.01, 10, k),
        Err(PrivacyError::InvalidDelta(1.0))
    );
    assert_eq!(
        calibrate_sigma(1.0, DELTA, 0.0, 10, k),
        Err(PrivacyError::InvalidSamplingRate(0.0))
    );
    assert_eq!(calibrate_sigma(1.0, DELTA, 0.01, 0, k), Err(PrivacyError::ZeroSteps));
    assert_eq!(
        steps_for_budget(1.0, DELTA, 0.01, 0.0, k),
        Err(PrivacyError::InvalidNoiseMultiplier(0.0))
    );
    assert_eq!(
        steps_for_budget(f64::INFINITY, DELTA, 0.01, 1.0, k),
        Err(PrivacyError::InvalidEpsilon(f64::INFINITY))
    );
    assert_eq!(
        steps_for_budget(1.0, 0.0, 0.01, 1.0, k),
        Err(PrivacyError::InvalidDelta(0.0))
    );
}

#[test]
fn report_serialises_one_key_per_accountant() {
    let report = privacy_report(1.0 / 55.0, 1.1, 550, DELTA).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let rdp = &json["rdp"];
    let prv = &json["prv"];
    assert_eq!(rdp["accountant"], "rdp");
    assert_eq!(prv["accountant"], "prv");
    assert!((rdp["epsilon"].as_f64().unwrap() - 2.4331013733377453).abs() < 1e-9);
    assert_eq!(rdp["best_order"].as_f64().unwrap(), 7.4);
    assert!(rdp.get("eps_lower").is_none());
    assert!((prv["epsilon"].as_f64().unwrap() - 2.175981505344654).abs() < 1e-5);
    assert_eq!(prv["epsilon"], prv["eps_upper"]);
    assert!(prv["eps_lower"].as_f64().unwrap() < prv["eps_estimate"].as_f64().unwrap());
    assert!(prv.get("best_order").is_none());
    assert_eq!(prv["delta_error"].as_f64().unwrap(), 1e-8);
    assert_eq!(rdp["steps"], 550);
    let back: PrivacyReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    // A minimal record (as written by hand or an older version) still parses.
    let s: PrivacySummary =
        serde_json::from_str(r#"{"accountant":"rdp","q":0.01,"sigma":1.0,"steps":10,"delta":1e-5,"epsilon":0.5}"#)
            .unwrap();
    assert_eq!(s.accountant, AccountantKind::Rdp);
    assert_eq!("PRV".parse::<AccountantKind>().unwrap(), AccountantKind::Prv);
    assert!("gdp".parse::<AccountantKind>().is_err());
    assert_eq!(AccountantKind::Rdp.to_string(), "rdp");
}

#[test]
fn summary_validates_inputs() {
    assert_eq!(
        PrivacySummary::compute(AccountantKind::Rdp, 0.01, 1.0, 0, DELTA),
        Err(PrivacyError::ZeroSteps)
    );
    assert_eq!(
        PrivacySummary::compute(AccountantKind::Prv, 0.01, f64::NAN, 10, DELTA)
            .unwrap_err()
            .to_string(),
        "invalid noise multiplier sigma = NaN: must be finite and > 0"
    );
    assert_eq!(privacy_report(0.01, 1.0, 10, 0.0), Err(PrivacyError::InvalidDelta(0.0)));
}

#[test]
fn epsilon_after_is_zero_before_the_first_step() {
    use privpkt_privacy::{epsilon, epsilon_after, AccountantKind, Phase};
    for acct in [AccountantKind::Rdp, AccountantKind::Prv] {
        assert_eq!(epsilon_after(acct, 0.01, 1.1, 0, 1e-5).unwrap(), 0.0);
        let want = epsilon(acct, &[Phase::new(0.01, 1.1, 300).unwrap()], 1e-5).unwrap();
        assert_eq!(epsilon_after(acct, 0.01, 1.1, 300, 1e-5).unwrap(), want);
    }
    assert!(epsilon_after(AccountantKind::Rdp, 1.5, 1.1, 3, 1e-5).is_err());
}

#[test]
fn several_mechanisms_of_one_sigma_are_calibrated_together() {
    use privpkt_privacy::{calibrate_sigma_phases, steps_for_budget_with, RdpAccountant};
    let (q, steps) = (1.0, 100u64);
    // One phase: the same σ as the single-phase calibration.
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        let one = calibrate_sigma(4.0, DELTA, q, steps, kind).unwrap();
        let same = calibrate_sigma_phases(4.0, DELTA, kind, &|s| vec![Phase { q, sigma: s, steps }]).unwrap();
        assert!((one - same).abs() <= 1e-9 * one, "{kind:?}: {one} vs {same}");
    }
    // The training steps plus one full-batch Gaussian release (a class histogram) of the same σ:
    // more noise than the steps alone need, and the composition spends the budget.
    let phases = |s: f64| {
        vec![
            Phase { q, sigma: s, steps },
            Phase {
                q: 1.0,
                sigma: s,
                steps: 1,
            },
        ]
    };
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        let alone = calibrate_sigma(4.0, DELTA, q, steps, kind).unwrap();
        let s = calibrate_sigma_phases(4.0, DELTA, kind, &phases).unwrap();
        assert!(s > alone, "{kind:?}");
        let e = epsilon(kind, &phases(s), DELTA).unwrap();
        assert!(e <= 4.0 && 4.0 - e < 0.01, "{kind:?}: ε = {e}");
    }
    // RDP composition adds curves: the release's RDP at order α is the Gaussian mechanism's
    // closed form α / (2σ²).
    let sigma = 10.0;
    let mut a = RdpAccountant::new();
    a.compose(&Phase::new(0.3, sigma, 50).unwrap()).unwrap();
    let mut b = a.clone();
    b.compose(&Phase::new(1.0, sigma, 1).unwrap()).unwrap();
    for ((x, y), alpha) in a.rdp().iter().zip(b.rdp()).zip(a.orders()) {
        let closed = alpha / (2.0 * sigma * sigma);
        assert!(
            (y - x - closed).abs() <= 1e-9 * closed.max(1e-12),
            "α = {alpha}: {} vs {closed}",
            y - x
        );
    }
    // The step budget with the release: the last step count within ε, below the count without it.
    let extra = [Phase::new(1.0, sigma, 1).unwrap()];
    for kind in [AccountantKind::Rdp, AccountantKind::Prv] {
        let n = steps_for_budget_with(4.0, DELTA, 0.3, sigma, kind, &extra).unwrap();
        assert!(n > 0 && n <= steps_for_budget(4.0, DELTA, 0.3, sigma, kind).unwrap());
        let eps_at = |k: u64| epsilon(kind, &[Phase::new(0.3, sigma, k).unwrap(), extra[0]], DELTA).unwrap();
        assert!(eps_at(n) <= 4.0 && eps_at(n + 1) > 4.0, "{kind:?}: {n}");
    }
}

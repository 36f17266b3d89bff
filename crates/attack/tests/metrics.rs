//! The attack arithmetic against hand computations: ROC points and per-class slices, per-flow
//! statistics, LiRA's Gaussian likelihood ratios and the attack classifier.

use privpkt_attack::lira::{self, Variance};
use privpkt_attack::membership_metrics;
use privpkt_attack::scores::GroupPreds;
use privpkt_attack::shokri::{AttackModels, Logistic};

#[test]
fn metrics_match_hand_computed_roc_points() {
    // Members score 4, 3, 2, 0.5; non-members 2.5, 1, 0.2, 0.1.
    let scores = [4.0, 3.0, 2.0, 0.5, 2.5, 1.0, 0.2, 0.1];
    let member = [true, true, true, true, false, false, false, false];
    let class_of = [0, 1, 0, 1, 0, 1, 0, 2];
    let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let (m, per_class, roc) = membership_metrics(&scores, &member, &class_of, &classes).unwrap();
    // Thresholds 4, 3, 2.5, 2, 1, 0.5, 0.2, 0.1 after (0, 0).
    let tp = [0.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 4.0];
    let fp = [0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0];
    assert_eq!(roc.tpr, tp.map(|t| t / 4.0));
    assert_eq!(roc.fpr, fp.map(|f| f / 4.0));
    // 13 of the 16 (member, non-member) pairs are ordered right.
    assert_eq!(m.auc, 13.0 / 16.0);
    assert_eq!(m.advantage, 0.5);
    assert_eq!(m.best_balanced_accuracy, 0.75);
    // No threshold has FPR ≤ 1 % but FPR = 0: TPR there is 2/4.
    assert_eq!((m.tpr_at_1pct_fpr, m.tpr_at_0_1pct_fpr), (0.5, 0.5));
    assert_eq!((m.n_pos, m.n_neg), (4, 4));
    // Class a: members 4, 2 against 2.5, 0.2 (3 of 4 pairs); class c: no member.
    let a = per_class[0].metrics.as_ref().unwrap();
    assert_eq!((per_class[0].members, per_class[0].non_members, a.auc), (2, 2, 0.75));
    let b = per_class[1].metrics.as_ref().unwrap();
    assert_eq!(b.auc, 0.5);
    assert_eq!((per_class[2].members, per_class[2].non_members), (0, 1));
    assert!(per_class[2].metrics.is_none());
    assert!(membership_metrics(&scores, &member, &class_of[..3], &classes).is_err());
    assert!(membership_metrics(&[1.0, f64::NAN], &[true, false], &[0, 0], &classes).is_err());
}

#[test]
fn flow_statistics_average_their_samples() {
    let g = GroupPreds {
        probs: vec![vec![0.5, 0.25, 0.25], vec![0.1, 0.8, 0.1], vec![1.0, 0.0, 0.0]],
        labels: vec![0, 1, 0],
    };
    let want = (0.5f64.ln() + f64::from(0.8f32).ln() + 0.0) / 3.0;
    assert!((g.mean_log_p() - want).abs() < 1e-12);
    // ln p_y − ln Σ others; a certain prediction saturates at ln(1/1e-45), not at infinity.
    let lc = g.mean_logit_conf();
    let want = (0.0 + (f64::from(0.8f32).ln() - (2.0 * f64::from(0.1f32)).ln()) + (1.0 / 1e-45f64).ln()) / 3.0;
    assert!((lc - want).abs() < 1e-9, "{lc} vs {want}");
    let s = g.mean_sorted();
    let want = [
        (0.5 + 0.8 + 1.0) / 3.0,
        (0.25 + 0.1 + 0.0) / 3.0,
        (0.25 + 0.1 + 0.0) / 3.0,
    ];
    for (a, b) in s.iter().zip(want) {
        assert!((a - b).abs() < 1e-7);
    }
}

#[test]
fn lira_likelihood_ratios_by_hand() {
    // Candidate 0: IN {2, 4}, OUT {0, 2}; candidate 1: IN {5, 7}, OUT {1, 1}.
    let shadow = vec![vec![2.0, 5.0], vec![4.0, 7.0], vec![0.0, 1.0], vec![2.0, 1.0]];
    let inside = vec![
        vec![true, true],
        vec![true, true],
        vec![false, false],
        vec![false, false],
    ];
    let (s, v) = lira::scores(&[3.0, 1.0], &shadow, Some(&inside)).unwrap();
    // Few shadows: variances pooled over candidates, IN (2 + 2)/2 = 2, OUT (2 + 0)/2 = 1.
    assert_eq!(v, Variance::Global);
    let ln_n = |x: f64, m: f64, var: f64| -0.5 * ((x - m).powi(2) / var + (2.0 * std::f64::consts::PI * var).ln());
    assert!((s[0] - (ln_n(3.0, 3.0, 2.0) - ln_n(3.0, 1.0, 1.0))).abs() < 1e-12);
    assert!((s[0] - (2.0 - 0.5 * 2f64.ln())).abs() < 1e-12);
    assert!((s[1] - (-6.25 - 0.5 * 2f64.ln())).abs() < 1e-12);
    // Offline: all four are OUT; z-score against each candidate's OUT mean, pooled variance.
    let (z, _) = lira::scores(&[3.0, 1.0], &shadow, None).unwrap();
    let var = (8.0 / 3.0 + 9.0) / 2.0;
    assert!((z[0] - 1.0 / f64::sqrt(var)).abs() < 1e-12);
    assert!((z[1] + 2.5 / f64::sqrt(var)).abs() < 1e-12);
    // One IN model per candidate is too few for a Gaussian.
    let err = lira::scores(&[0.0], &[vec![1.0], vec![2.0]], Some(&[vec![true], vec![false]])).unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
    // With ≥ 32 models per side, every candidate gets its own variance.
    let k = 64;
    let rows: Vec<Vec<f64>> = (0..k).map(|i| vec![(i % 5) as f64]).collect();
    let ins: Vec<Vec<bool>> = (0..k).map(|i| vec![i < 32]).collect();
    assert_eq!(
        lira::scores(&[1.0], &rows, Some(&ins)).unwrap().1,
        Variance::PerCandidate
    );
}

#[test]
fn the_attack_classifier_separates_and_falls_back() {
    // y = 1 mostly when x > 0: a positive slope, the boundary near 0.
    let x: Vec<Vec<f64>> = (-20..20).map(|i| vec![i as f64 / 4.0, 1.0]).collect();
    let y: Vec<bool> = (-20..20).map(|i| (i > 0) ^ (i == 3 || i == -4)).collect();
    let m = Logistic::fit(&x, &y).unwrap();
    assert!(m.logit(&[3.0, 1.0]) > 2.0 && m.logit(&[-3.0, 1.0]) < -2.0);
    assert!(m.logit(&[0.0, 1.0]).abs() < 1.0);
    assert!(Logistic::fit(&[vec![1.0], vec![f64::NAN]], &[true, false]).is_err());
    // Class 0 has enough IN and OUT examples for its own model; class 1 does not.
    let mut ex = Vec::new();
    for i in 0..40 {
        ex.push((vec![i as f64], 0, i >= 20));
    }
    for i in 0..5 {
        ex.push((vec![i as f64], 1, i >= 2));
    }
    let names = vec!["zero".to_string(), "one".to_string()];
    let (models, info) = AttackModels::fit(&ex, &names).unwrap();
    assert_eq!(info.classes_with_own_model, ["zero"]);
    assert_eq!(info.classes_pooled, ["one"]);
    assert!(models.score(&[35.0], 0) > models.score(&[5.0], 0));
}

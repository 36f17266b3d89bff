//! Metrics against hand-worked cases and scikit-learn.

use privpkt_nn::metrics::{
    flow_level_confusion, flow_level_confusion_probs, roc_auc, roc_curve, BinaryReport, ConfusionMatrix, EvalReport,
    MeanStd, MetricsError, RocCurve, SeedSummary,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b): (f64, f64) = ($a, $b);
        assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

/// Rows are true classes:
///
/// ```text
///          pred0 pred1 pred2   support
/// true0      3     1     0        4
/// true1      1     2     0        3
/// true2      0     1     2        3
/// predicted  4     4     2       10
/// ```
///
/// - class 0: P = 3/4, R = 3/4, F1 = 2·3/(4+4) = 3/4
/// - class 1: P = 2/4, R = 2/3, F1 = 2·2/(3+4) = 4/7
/// - class 2: P = 2/2, R = 2/3, F1 = 2·2/(3+2) = 4/5
/// - accuracy = 7/10; macro-F1 = (3/4 + 4/7 + 4/5)/3 = 297/420
/// - weighted F1 = (4·3/4 + 3·4/7 + 3·4/5)/10 = (3 + 12/7 + 12/5)/10 = 249/350
/// - balanced accuracy = (3/4 + 2/3 + 2/3)/3 = 25/36
#[test]
fn hand_case_three_classes() {
    let y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
    let y_pred = [0, 0, 0, 1, 0, 1, 1, 1, 2, 2];
    let cm = ConfusionMatrix::from_labels(3, &y_true, &y_pred).unwrap();
    assert_eq!(cm.to_rows(), vec![vec![3, 1, 0], vec![1, 2, 0], vec![0, 1, 2]]);
    assert_eq!(cm.total(), 10);
    let s = cm.per_class();
    assert_eq!((s[0].support, s[0].predicted, s[0].true_positives), (4, 4, 3));
    assert_close!(s[0].precision, 0.75);
    assert_close!(s[0].recall, 0.75);
    assert_close!(s[0].f1, 0.75);
    assert_close!(s[1].precision, 0.5);
    assert_close!(s[1].recall, 2.0 / 3.0);
    assert_close!(s[1].f1, 4.0 / 7.0);
    assert_close!(s[2].precision, 1.0);
    assert_close!(s[2].recall, 2.0 / 3.0);
    assert_close!(s[2].f1, 0.8);
    assert_close!(cm.accuracy(), 0.7);
    assert_close!(cm.macro_f1(), 297.0 / 420.0);
    assert_close!(cm.weighted_f1(), 249.0 / 350.0);
    assert_close!(cm.balanced_accuracy(), 25.0 / 36.0);
    assert_eq!(ConfusionMatrix::from_rows(&cm.to_rows()).unwrap(), cm);
}

/// Four declared classes; class 2 is only predicted, class 3 never occurs.
///
/// ```text
///          pred0 pred1 pred2 pred3
/// true0      1     0     1     0     support 2
/// true1      0     2     0     0     support 2
/// ```
///
/// - class 0: P = 1/1, R = 1/2, F1 = 2·1/(2+1) = 2/3
/// - class 1: P = R = F1 = 1
/// - class 2: tp = 0, predicted once, no support: P = 0, R = 0/0 → 0, F1 = 0 (in the macro
///   average: it occurs in y_pred)
/// - class 3: absent from both, excluded from the macro average
/// - macro-F1 = (2/3 + 1 + 0)/3 = 5/9; balanced accuracy = mean recall over classes 0, 1 = 3/4
/// - weighted F1 = (2·2/3 + 2·1)/4 = 5/6; accuracy = 3/4
#[test]
fn hand_case_absent_and_only_predicted_classes() {
    let cm = ConfusionMatrix::from_labels(4, &[0, 0, 1, 1], &[0, 2, 1, 1]).unwrap();
    let s = cm.per_class();
    assert_close!(s[0].precision, 1.0);
    assert_close!(s[0].recall, 0.5);
    assert_close!(s[0].f1, 2.0 / 3.0);
    assert_eq!((s[2].support, s[2].predicted), (0, 1));
    assert_eq!((s[2].precision, s[2].recall, s[2].f1), (0.0, 0.0, 0.0));
    assert_eq!((s[3].support, s[3].predicted), (0, 0));
    assert_close!(cm.macro_f1(), 5.0 / 9.0);
    assert_close!(cm.balanced_accuracy(), 0.75);
    assert_close!(cm.weighted_f1(), 5.0 / 6.0);
    assert_close!(cm.accuracy(), 0.75);
}

/// Everything predicted as class 0: y_true = [0, 0, 1], y_pred = [0, 0, 0].
///
/// - class 0: P = 2/3, R = 1, F1 = 2·2/(2+3) = 4/5
/// - class 1: never predicted: P = 0/0 → 0, R = 0, F1 = 0
/// - macro-F1 = 2/5; balanced accuracy = (1 + 0)/2 = 1/2; weighted F1 = 2·(4/5)/3 = 8/15
#[test]
fn hand_case_zero_division() {
    let cm = ConfusionMatrix::from_labels(2, &[0, 0, 1], &[0, 0, 0]).unwrap();
    let s = cm.per_class();
    assert_close!(s[0].precision, 2.0 / 3.0);
    assert_close!(s[0].f1, 0.8);
    assert_eq!((s[1].precision, s[1].recall, s[1].f1), (0.0, 0.0, 0.0));
    assert_close!(cm.macro_f1(), 0.4);
    assert_close!(cm.balanced_accuracy(), 0.5);
    assert_close!(cm.weighted_f1(), 8.0 / 15.0);
    assert_close!(cm.accuracy(), 2.0 / 3.0);
}

/// scikit-learn 1.9.1: with y_true, y_pred below (numpy default_rng(7), 40 samples; class 4 only
/// predicted, class 5 declared here but absent from both),
/// `f1_score(y_true, y_pred, average="macro"|"weighted", zero_division=0)`,
/// `balanced_accuracy_score`, `accuracy_score` and
/// `precision_recall_fscore_support(labels=[0,1,2,3,4], zero_division=0)`.
#[test]
fn matches_scikit_learn() {
    let y_true = [
        3, 3, 3, 3, 2, 3, 3, 1, 0, 1, 1, 3, 3, 0, 2, 3, 0, 3, 0, 2, 3, 1, 1, 1, 3, 1, 3, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
        3, 1, 3,
    ];
    let y_pred = [
        3, 3, 2, 3, 2, 3, 3, 0, 2, 1, 1, 3, 3, 0, 4, 3, 0, 3, 4, 2, 3, 3, 1, 1, 2, 4, 3, 2, 2, 0, 2, 4, 2, 3, 3, 3, 4,
        3, 1, 0,
    ];
    let cm = ConfusionMatrix::from_labels(6, &y_true, &y_pred).unwrap();
    assert_close!(cm.macro_f1(), 0.5474969474969476);
    assert_close!(cm.weighted_f1(), 0.7554334554334554);
    assert_close!(cm.balanced_accuracy(), 0.6452850877192982);
    assert_close!(cm.accuracy(), 0.7);
    let p = [0.4, 1.0, 0.6666666666666666, 0.9375, 0.0];
    let r = [0.5, 0.625, 0.6666666666666666, 0.7894736842105263, 0.0];
    let f = [
        0.4444444444444444,
        0.7692307692307693,
        0.6666666666666666,
        0.8571428571428571,
        0.0,
    ];
    let support = [4, 8, 9, 19, 0];
    for (c, s) in cm.per_class().iter().take(5).enumerate() {
        assert_close!(s.precision, p[c]);
        assert_close!(s.recall, r[c]);
        assert_close!(s.f1, f[c]);
        assert_eq!(s.support, support[c], "class {c}");
    }
}

#[test]
fn bad_input_is_an_error() {
    assert!(matches!(
        ConfusionMatrix::from_labels(3, &[], &[]),
        Err(MetricsError::Empty(_))
    ));
    assert!(matches!(
        ConfusionMatrix::from_labels(3, &[0, 1], &[0]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    let e = ConfusionMatrix::from_labels(3, &[0, 3], &[0, 1]).unwrap_err();
    assert!(matches!(e, MetricsError::LabelOutOfRange { label: 3, .. }), "{e}");
    assert!(e.to_string().contains("out of range"), "{e}");
    assert!(ConfusionMatrix::from_labels(3, &[0], &[7]).is_err());
    assert!(ConfusionMatrix::new(0).is_err());
    assert!(ConfusionMatrix::from_rows(&[vec![1, 2], vec![3]]).is_err());
    let mut cm = ConfusionMatrix::new(2).unwrap();
    assert!(cm.add(2, 0).is_err());
    assert_eq!(cm.total(), 0, "failed add leaves the matrix unchanged");
    assert!(cm.accuracy().is_nan() && cm.macro_f1().is_nan() && cm.balanced_accuracy().is_nan());
    assert!(cm.merge(&ConfusionMatrix::new(3).unwrap()).is_err());
    assert_eq!(cm.get(2, 0), None);
    assert!(cm.class_stats(2).is_none());
    assert!(EvalReport::new(&names(2), &cm).is_err(), "empty matrix");
    cm.add(0, 1).unwrap();
    assert!(EvalReport::new(&names(3), &cm).is_err(), "names do not match classes");
}

#[test]
fn merge_adds_counts() {
    let mut a = ConfusionMatrix::from_labels(3, &[0, 1], &[0, 2]).unwrap();
    let b = ConfusionMatrix::from_labels(3, &[1, 2], &[2, 2]).unwrap();
    a.merge(&b).unwrap();
    assert_eq!(a.get(1, 2), Some(2));
    assert_eq!(a.total(), 4);
}

#[test]
fn eval_report_round_trips_through_json() {
    let cm = ConfusionMatrix::from_labels(3, &[0, 0, 1, 2], &[0, 1, 1, 2]).unwrap();
    let flows = ConfusionMatrix::from_labels(3, &[0, 1, 2], &[0, 1, 2]).unwrap();
    let r = EvalReport::new(&names(3), &cm)
        .unwrap()
        .with_flow_level(&flows)
        .unwrap();
    assert_eq!(r.n, 4);
    assert_eq!(r.per_class[1].name, "c1");
    assert_eq!((r.per_class[1].support, r.per_class[1].predicted), (1, 2));
    assert_close!(r.macro_f1, cm.macro_f1());
    let fl = r.flow_level.as_ref().unwrap();
    assert_eq!(fl.flows, 3);
    assert_close!(fl.accuracy, 1.0);
    let json = serde_json::to_string(&r).unwrap();
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(ConfusionMatrix::from_rows(&back.confusion).unwrap(), cm);
}

/// Five flows over three classes, samples interleaved:
///
/// - A (true 0): predictions 0, 1, 0 → 0
/// - B (true 1): predictions 1, 2 → tie; by label: lowest id 1; by mean probability
///   (class 1: 0.5 + 0.3 = 0.8, class 2: 0.4 + 0.7 = 1.1) → 2
/// - C (true 2): predictions 0, 0, 2, 2 → tie; by label 0; by probability
///   (class 0: 0.6 + 0.5 + 0.1 + 0.2 = 1.4, class 2: 0.3 + 0.3 + 0.9 + 0.8 = 2.3) → 2
/// - D (true 1): prediction 2 → 2
/// - E (true labels 0, 0, 1, 0 → 0 by majority): predictions 0, 1, 2 and 0 (an all-zero row:
///   arg-max tie → lowest id) → 0
#[test]
fn flow_level_majority_vote_and_ties() {
    #[rustfmt::skip]
    let samples: [(char, usize, [f32; 3]); 14] = [
        ('A', 0, [0.9, 0.05, 0.05]),
        ('B', 1, [0.1, 0.5, 0.4]),
        ('C', 2, [0.6, 0.1, 0.3]),
        ('E', 0, [0.6, 0.4, 0.0]),
        ('A', 0, [0.2, 0.7, 0.1]),
        ('C', 2, [0.5, 0.2, 0.3]),
        ('D', 1, [0.1, 0.2, 0.7]),
        ('B', 1, [0.0, 0.3, 0.7]),
        ('E', 0, [0.4, 0.6, 0.0]),
        ('C', 2, [0.1, 0.0, 0.9]),
        ('A', 0, [0.8, 0.1, 0.1]),
        ('E', 1, [0.3, 0.3, 0.4]),
        ('C', 2, [0.2, 0.0, 0.8]),
        ('E', 0, [0.0, 0.0, 0.0]),
    ];
    let groups: Vec<char> = samples.iter().map(|s| s.0).collect();
    let y_true: Vec<usize> = samples.iter().map(|s| s.1).collect();
    let probs: Vec<f32> = samples.iter().flat_map(|s| s.2).collect();
    let y_pred: Vec<usize> = samples
        .iter()
        .map(|s| {
            let r = s.2;
            (0..3).fold(0, |b, c| if r[c] > r[b] { c } else { b })
        })
        .collect();
    assert_eq!(y_pred, [0, 1, 0, 0, 1, 0, 2, 2, 1, 2, 0, 2, 2, 0]);

    // By label: A 0→0, B 1→1 (tie, lowest id), C 2→0 (tie, lowest id), D 1→2, E 0→0.
    let by_label = flow_level_confusion(3, &groups, &y_true, &y_pred).unwrap();
    assert_eq!(by_label.to_rows(), vec![vec![2, 0, 0], vec![0, 1, 1], vec![1, 0, 0]]);

    // By probability: B and C ties go to class 2 (higher mean probability).
    let by_prob = flow_level_confusion_probs(3, &groups, &y_true, &probs).unwrap();
    assert_eq!(by_prob.to_rows(), vec![vec![2, 0, 0], vec![0, 0, 2], vec![0, 0, 1]]);
    assert_eq!(by_prob.total(), 5);
}

/// A two-sample flow whose votes tie and whose mean probabilities tie exactly: lowest id.
#[test]
fn flow_level_full_tie_goes_to_lowest_class() {
    let probs = [0.6f32, 0.4, 0.0, 0.4, 0.6, 0.0];
    let cm = flow_level_confusion_probs(3, &[(0u32, 7u64), (0, 7)], &[2, 2], &probs).unwrap();
    assert_eq!(cm.get(2, 0), Some(1));
}

#[test]
fn flow_level_bad_input() {
    let g = [1, 1];
    assert!(flow_level_confusion(3, &g, &[0, 1], &[0]).is_err());
    assert!(flow_level_confusion(3, &g, &[0, 3], &[0, 0]).is_err());
    assert!(flow_level_confusion::<u8>(3, &[], &[], &[]).is_err());
    assert!(flow_level_confusion_probs(2, &g, &[0, 1], &[0.5, 0.5, 0.5]).is_err());
    assert!(flow_level_confusion_probs(2, &g, &[0, 1], &[0.5, f32::NAN, 0.5, 0.5]).is_err());
    assert!(flow_level_confusion_probs(0, &g, &[0, 1], &[]).is_err());
}

#[test]
fn mean_std_over_seeds() {
    // mean 0.8; deviations −0.02, 0, 0.02 → sample variance 0.0008/2 = 0.0004, std 0.02
    let m = MeanStd::from_values(&[0.78, 0.80, 0.82]).unwrap();
    assert_close!(m.mean, 0.8);
    assert!((m.std.unwrap() - 0.02).abs() < 1e-12);
    assert_eq!(m.to_string(), "0.800 ± 0.020");
    assert_eq!(format!("{m:.1}"), "0.8 ± 0.0");
    let m = MeanStd::from_values(&[0.812, 0.781, 0.843]).unwrap();
    assert_eq!(m.to_string(), "0.812 ± 0.031");
    let one = MeanStd::from_values(&[0.5]).unwrap();
    assert_eq!(one.std, None);
    assert_eq!(one.to_string(), "0.500 (1 run)");
    assert!(MeanStd::from_values(&[]).is_err());
    assert!(MeanStd::from_values(&[0.5, f64::NAN]).is_err());
}

#[test]
fn seed_summary() {
    let r = |t: &[usize], p: &[usize]| {
        let cm = ConfusionMatrix::from_labels(2, t, p).unwrap();
        EvalReport::new(&names(2), &cm).unwrap()
    };
    let a = r(&[0, 1], &[0, 1]);
    let b = r(&[0, 1], &[0, 0]);
    let s = SeedSummary::from_reports(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(s.runs, 2);
    assert_close!(s.accuracy.mean, 0.75);
    assert_eq!(s.flow_accuracy, None);
    let flows = ConfusionMatrix::from_labels(2, &[0], &[0]).unwrap();
    let with_flows = a.clone().with_flow_level(&flows).unwrap();
    assert!(SeedSummary::from_reports(&[with_flows, b]).is_err(), "mixed flow level");
    let other = EvalReport::new(
        &["x".into(), "y".into()],
        &ConfusionMatrix::from_labels(2, &[0], &[0]).unwrap(),
    );
    assert!(
        SeedSummary::from_reports(&[a, other.unwrap()]).is_err(),
        "different classes"
    );
    assert!(SeedSummary::from_reports(&[]).is_err());
}

/// Scores with ties; 3 positives, 4 negatives:
///
/// ```text
/// score  0.9  0.8  0.8  0.6  0.6  0.6  0.3
/// label   +    +    −    +    −    −    −
/// ```
///
/// Thresholds (score ≥ t is positive) and cumulative (tp, fp) → (FPR, TPR):
/// +∞ (0,0) → (0, 0); 0.9 (1,0) → (0, 1/3); 0.8 (2,1) → (1/4, 2/3); 0.6 (3,3) → (3/4, 1);
/// 0.3 (3,4) → (1, 1).
///
/// AUC by trapezoids: 1/4·(1/3+2/3)/2 + 1/2·(2/3+1)/2 + 1/4·1 = 1/8 + 5/12 + 1/4 = 19/24.
/// Mann–Whitney: positive 0.9 beats 4 negatives; 0.8 ties one, beats 3 → 3.5; 0.6 ties two,
/// beats one → 2; U = 9.5, AUC = 9.5/12 = 19/24.
/// TPR at FPR ≤ 0 → 1/3, ≤ 0.25 → 2/3, ≤ 0.5 → 2/3, ≤ 0.75 → 1.
/// Advantage: max |TPR − FPR| = 2/3 − 1/4 = 5/12 at 0.8, where balanced accuracy is
/// (2/3 + 3/4)/2 = 17/24.
#[test]
fn roc_hand_case_with_ties() {
    let scores = [0.9, 0.8, 0.8, 0.6, 0.6, 0.6, 0.3];
    let labels = [true, true, false, true, false, false, false];
    let roc = roc_curve(&scores, &labels).unwrap();
    assert_eq!(roc.thresholds(), [f64::INFINITY, 0.9, 0.8, 0.6, 0.3]);
    assert_eq!(roc.fps(), [0, 0, 1, 3, 4]);
    assert_eq!(roc.tps(), [0, 1, 2, 3, 3]);
    assert_eq!(roc.fpr(), [0.0, 0.0, 0.25, 0.75, 1.0]);
    assert_eq!(roc.tpr(), [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0, 1.0]);
    assert_close!(roc.auc(), 19.0 / 24.0);
    assert_close!(roc_auc(&scores, &labels).unwrap(), 19.0 / 24.0);
    assert_close!(roc.tpr_at_fpr(0.0).unwrap(), 1.0 / 3.0);
    assert_close!(roc.tpr_at_fpr(0.25).unwrap(), 2.0 / 3.0);
    assert_close!(roc.tpr_at_fpr(0.5).unwrap(), 2.0 / 3.0);
    assert_close!(roc.tpr_at_fpr(0.75).unwrap(), 1.0);
    assert_close!(roc.advantage(), 5.0 / 12.0);
    let best = roc.best_balanced_accuracy();
    assert_eq!(best.threshold, 0.8);
    assert_close!(best.balanced_accuracy, 17.0 / 24.0);
    // Sample order does not matter.
    let rev: Vec<f64> = scores.iter().rev().copied().collect();
    let revl: Vec<bool> = labels.iter().rev().copied().collect();
    assert_eq!(roc_curve(&rev, &revl).unwrap(), roc);
}

/// scikit-learn 1.9.1: `roc_curve(labels, scores, drop_intermediate=False)` and
/// `roc_auc_score(labels, scores)` on 20 scores rounded to 0.1 (numpy default_rng(7), after the
/// classification arrays above).
#[test]
fn roc_matches_scikit_learn() {
    let scores = [
        0.2, 0.9, 0.6, 0.2, 0.9, 0.6, 0.6, 0.4, 0.4, 0.2, 0.0, 0.9, 0.5, 0.5, 0.3, 0.8, 0.0, 0.4, 0.0, 0.1,
    ];
    let labels = [
        false, false, false, false, false, true, false, false, true, false, false, false, true, false, true, false,
        false, true, false, false,
    ];
    let roc = roc_curve(&scores, &labels).unwrap();
    let fpr = [
        0.0,
        0.2,
        0.26666666666666666,
        0.4,
        0.4666666666666667,
        0.5333333333333333,
        0.5333333333333333,
        0.7333333333333333,
        0.8,
        1.0,
    ];
    let tpr = [0.0, 0.0, 0.0, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0];
    let th = [f64::INFINITY, 0.9, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0];
    assert_eq!(roc.fpr().len(), fpr.len());
    for k in 0..fpr.len() {
        assert_close!(roc.fpr()[k], fpr[k]);
        assert_close!(roc.tpr()[k], tpr[k]);
        assert_eq!(roc.thresholds()[k], th[k]);
    }
    assert_close!(roc_auc(&scores, &labels).unwrap(), 0.54);
    assert_close!(roc.auc(), 0.54);
}

fn brute_force_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if labels[i] && !labels[j] {
                pairs += 1.0;
                wins += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    wins / pairs
}

#[test]
fn auc_equals_pairwise_probability_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for trial in 0..50 {
        let n = rng.random_range(2..300);
        // Coarse grid for many ties; scores shifted by the label for a non-trivial AUC.
        let labels: Vec<bool> = (0..n).map(|i| i == 0 || (i != 1 && rng.random_bool(0.3))).collect();
        let scores: Vec<f64> = labels
            .iter()
            .map(|&l| (rng.random_range(0..20) + if l { 3 } else { 0 }) as f64 / 10.0)
            .collect();
        let want = brute_force_auc(&scores, &labels);
        let u = roc_auc(&scores, &labels).unwrap();
        let trap = roc_curve(&scores, &labels).unwrap().auc();
        assert!((u - want).abs() < 1e-12, "trial {trial}: U {u} vs {want}");
        assert!((trap - want).abs() < 1e-12, "trial {trial}: trapezoid {trap} vs {want}");
    }
}

/// Perfectly separated: advantage 1, TPR 1 at FPR 0. Perfectly inverted, the curve is
/// (0,0) → (½,0) → (1,0) → (1,½) → (1,1): advantage still 1 (|0 − 1|: the attacker flips the
/// score), best balanced accuracy only 0.5 at the +∞ threshold (it never flips), TPR at FPR
/// ≤ 0.5 is 0.
#[test]
fn operating_points_hand_case() {
    let labels = [true, true, false, false];
    let roc = RocCurve::new(&[0.9, 0.8, 0.2, 0.1], &labels).unwrap();
    assert_eq!(roc.advantage(), 1.0);
    assert_eq!(roc.tpr_at_fpr(0.0).unwrap(), 1.0);
    assert_eq!(roc.best_balanced_accuracy().balanced_accuracy, 1.0);
    let inv = RocCurve::new(&[0.1, 0.2, 0.8, 0.9], &labels).unwrap();
    assert_eq!(inv.fpr(), [0.0, 0.5, 1.0, 1.0, 1.0]);
    assert_eq!(inv.tpr(), [0.0, 0.0, 0.0, 0.5, 1.0]);
    assert_eq!(inv.advantage(), 1.0);
    assert_eq!(inv.tpr_at_fpr(0.5).unwrap(), 0.0);
    let best = inv.best_balanced_accuracy();
    assert_eq!((best.threshold, best.balanced_accuracy), (f64::INFINITY, 0.5));
    let rep = BinaryReport::from_scores(&[0.9, 0.8, 0.2, 0.1], &labels).unwrap();
    assert_eq!((rep.auc, rep.advantage, rep.tpr_at_0_1pct_fpr), (1.0, 1.0, 1.0));
    assert_eq!((rep.n_pos, rep.n_neg), (2, 2));
}

/// TPR at a decimal FPR that is exactly reachable: 7 false positives out of 100 negatives is
/// FPR 0.07 and must count as ≤ 0.07 despite binary floating point.
#[test]
fn tpr_at_exact_decimal_fpr() {
    // 100 negatives scored 0..=99, 10 positives scored 92.5..=101.5: at threshold 92.5 the
    // curve has fp = 7 (93..=99) and tp = 10; with fp = 6 at most tp = 9 (threshold 93.5).
    let mut scores: Vec<f64> = (0..100).map(f64::from).collect();
    let mut labels = vec![false; 100];
    scores.extend((0..10).map(|k| 92.5 + k as f64));
    labels.extend([true; 10]);
    let roc = roc_curve(&scores, &labels).unwrap();
    assert_close!(roc.tpr_at_fpr(0.07).unwrap(), 1.0);
    assert_close!(roc.tpr_at_fpr(0.069).unwrap(), 0.9);
}

#[test]
fn binary_bad_input() {
    assert!(roc_curve(&[], &[]).is_err());
    assert!(roc_curve(&[0.1, 0.2], &[true]).is_err());
    assert!(roc_curve(&[0.1, 0.2], &[true, true]).is_err(), "no negatives");
    assert!(roc_curve(&[0.1, 0.2], &[false, false]).is_err(), "no positives");
    assert!(roc_curve(&[0.1, f64::NAN], &[true, false]).is_err());
    assert!(roc_auc(&[0.1, f64::INFINITY], &[true, false]).is_err());
    let roc = roc_curve(&[0.1, 0.2], &[true, false]).unwrap();
    assert!(roc.tpr_at_fpr(-0.1).is_err());
    assert!(roc.tpr_at_fpr(1.5).is_err());
    assert!(roc.tpr_at_fpr(f64::NAN).is_err());
}

//! Evaluation metrics, independent of any ML framework.
//!
//! The evaluation protocol (docs/evaluation.md) ranks macro-F1 first because traffic classes
//! are heavily imbalanced and accuracy or weighted F1 hide failing minority classes; per-class
//! precision/recall/F1, balanced accuracy, flow-level accuracy and mean ± std over seeds come
//! beside it. Weighted F1 exists only to compare with Deep Packet, which reported it.
//!
//! Conventions follow scikit-learn so numbers can be cross-checked:
//!
//! - precision, recall and F1 are 0 when their denominator is 0 (`zero_division=0`);
//! - macro-F1 averages F1 over the classes that occur in the true **or** the predicted labels
//!   (`f1_score(average="macro")` with its default `labels`); a class absent from both is not
//!   averaged in, so declaring an unused class does not pull the score down;
//! - weighted F1 weights each class's F1 by its support (true count);
//! - balanced accuracy is the mean recall over classes with support > 0
//!   (`balanced_accuracy_score`);
//! - the ROC curve is `roc_curve(drop_intermediate=False)`: one point per distinct score, from
//!   (0, 0) at an infinite threshold, a sample being positive when its score ≥ the threshold.
//!
//! Aggregates of an empty [`ConfusionMatrix`] are NaN rather than a number that could be
//! mistaken for a score; [`EvalReport`] refuses an empty matrix.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// Bad input to a metric: reported, never clamped, since a silently repaired input is a wrong
/// number in a paper.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A metric of nothing is undefined.
    #[error("empty input: {0}")]
    Empty(&'static str),
    /// Parallel inputs of different lengths.
    #[error("length mismatch: {what} ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs disagree.
        what: &'static str,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },
    /// A class id ≥ the number of classes.
    #[error("{what} label {label} is out of range for {n_classes} classes")]
    LabelOutOfRange {
        /// Which labels (true, predicted, ...).
        what: &'static str,
        /// The offending label.
        label: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// Anything else, with the reason.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, MetricsError>;

fn check_len(what: &'static str, left: usize, right: usize) -> Result<()> {
    if left != right {
        return Err(MetricsError::LengthMismatch { what, left, right });
    }
    Ok(())
}

fn check_label(what: &'static str, label: usize, n_classes: usize) -> Result<()> {
    if label >= n_classes {
        return Err(MetricsError::LabelOutOfRange { what, label, n_classes });
    }
    Ok(())
}

/// `num / den`, 0 when `den` is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Confusion matrix
// ---------------------------------------------------------------------------------------------

/// Counts of (true, predicted) class pairs: rows are true classes, columns predicted ones.
///
/// Kept as counts rather than label vectors so batches, folds and flows can be merged and every
/// metric recomputed from the matrix a report stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    n_classes: usize,
    /// Row-major `n_classes × n_classes`.
    counts: Vec<u64>,
}

/// Per-class counts and scores of a [`ConfusionMatrix`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassStats {
    /// Samples of this class predicted as this class.
    pub true_positives: u64,
    /// Samples whose true class is this one.
    pub support: u64,
    /// Samples predicted as this class.
    pub predicted: u64,
    /// `tp / predicted`, 0 if nothing was predicted as this class.
    pub precision: f64,
    /// `tp / support`, 0 if the class has no samples.
    pub recall: f64,
    /// `2 tp / (support + predicted)`, 0 if both are 0.
    pub f1: f64,
}

impl ConfusionMatrix {
    /// An empty matrix over `n_classes` classes, to be filled with [`add`](Self::add) batch by
    /// batch.
    pub fn new(n_classes: usize) -> Result<Self> {
        if n_classes == 0 {
            return Err(MetricsError::Invalid(
                "a confusion matrix needs at least one class".into(),
            ));
        }
        let cells = n_classes
            .checked_mul(n_classes)
            .ok_or_else(|| MetricsError::Invalid(format!("{n_classes} classes is too many")))?;
        Ok(Self {
            n_classes,
            counts: vec![0; cells],
        })
    }

    /// The matrix of `(y_true[i], y_pred[i])` pairs; errors on empty or mismatched inputs and
    /// labels ≥ `n_classes`.
    pub fn from_labels(n_classes: usize, y_true: &[usize], y_pred: &[usize]) -> Result<Self> {
        check_len("true and predicted labels", y_true.len(), y_pred.len())?;
        if y_true.is_empty() {
            return Err(MetricsError::Empty("no labels"));
        }
        let mut cm = Self::new(n_classes)?;
        for (&t, &p) in y_true.iter().zip(y_pred) {
            cm.add(t, p)?;
        }
        Ok(cm)
    }

    /// A matrix from its rows (`rows[true][predicted]`), e.g. one read back from a report.
    pub fn from_rows(rows: &[Vec<u64>]) -> Result<Self> {
        let mut cm = Self::new(rows.len())?;
        for (t, row) in rows.iter().enumerate() {
            check_len("confusion matrix row and number of classes", row.len(), rows.len())?;
            cm.counts[t * cm.n_classes..(t + 1) * cm.n_classes].copy_from_slice(row);
        }
        Ok(cm)
    }

    /// Count one sample; the matrix is unchanged on error.
    pub fn add(&mut self, true_label: usize, predicted: usize) -> Result<()> {
        check_label("true", true_label, self.n_classes)?;
        check_label("predicted", predicted, self.n_classes)?;
        self.counts[true_label * self.n_classes + predicted] += 1;
        Ok(())
    }

    /// Add another matrix's counts (another batch or fold) into this one.
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        check_len("numbers of classes", self.n_classes, other.n_classes)?;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        Ok(())
    }

    /// Number of classes (rows and columns).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Count of samples of class `true_label` predicted as `predicted`; `None` out of range.
    pub fn get(&self, true_label: usize, predicted: usize) -> Option<u64> {
        (true_label < self.n_classes && predicted < self.n_classes)
            .then(|| self.counts[true_label * self.n_classes + predicted])
    }

    /// The matrix as rows (`rows[true][predicted]`), the form reports store.
    pub fn to_rows(&self) -> Vec<Vec<u64>> {
        self.counts.chunks(self.n_classes).map(<[u64]>::to_vec).collect()
    }

    /// Counts and scores of class `c`; `None` out of range.
    pub fn class_stats(&self, c: usize) -> Option<ClassStats> {
        if c >= self.n_classes {
            return None;
        }
        let n = self.n_classes;
        let tp = self.counts[c * n + c];
        let support: u64 = self.counts[c * n..(c + 1) * n].iter().sum();
        let predicted: u64 = (0..n).map(|t| self.counts[t * n + c]).sum();
        Some(ClassStats {
            true_positives: tp,
            support,
            predicted,
            precision: ratio(tp, predicted),
            recall: ratio(tp, support),
            f1: ratio(2 * tp, support + predicted),
        })
    }

    /// [`class_stats`](Self::class_stats) of every class, in class order.
    pub fn per_class(&self) -> Vec<ClassStats> {
        (0..self.n_classes).filter_map(|c| self.class_stats(c)).collect()
    }

    /// Fraction of samples on the diagonal; NaN if empty.
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return f64::NAN;
        }
        let diag: u64 = (0..self.n_classes).map(|c| self.counts[c * self.n_classes + c]).sum();
        diag as f64 / total as f64
    }

    /// Mean recall over classes with support > 0 (`balanced_accuracy_score`); NaN if empty.
    pub fn balanced_accuracy(&self) -> f64 {
        mean(self.per_class().iter().filter(|s| s.support > 0).map(|s| s.recall))
    }

    /// Mean F1 over classes that occur in the true or predicted labels (`f1_score(average=
    /// "macro")`); NaN if empty.
    pub fn macro_f1(&self) -> f64 {
        mean(
            self.per_class()
                .iter()
                .filter(|s| s.support > 0 || s.predicted > 0)
                .map(|s| s.f1),
        )
    }

    /// F1 averaged with weights = support (`f1_score(average="weighted")`); NaN if empty.
    pub fn weighted_f1(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return f64::NAN;
        }
        let sum: f64 = self.per_class().iter().map(|s| s.f1 * s.support as f64).sum();
        sum / total as f64
    }
}

/// Arithmetic mean, NaN for no values.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Flow-level evaluation
// ---------------------------------------------------------------------------------------------

/// Index of the largest count; ties go to the largest `tie_break` value, then the lowest id.
fn vote(counts: &[u64], tie_break: Option<&[f64]>) -> usize {
    let mut best = 0;
    for c in 1..counts.len() {
        let better = match counts[c].cmp(&counts[best]) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => tie_break.is_some_and(|t| t[c] > t[best]),
        };
        if better {
            best = c;
        }
    }
    best
}

/// Shared by both flow-level entry points; inputs are already checked for length.
///
/// Samples are sorted by flow and each flow counted in one scratch buffer, so memory is a few
/// words per sample rather than per-class vectors per flow.
fn flow_matrix<G: Eq + Hash>(
    n_classes: usize,
    groups: &[G],
    y_true: &[usize],
    y_pred: &[usize],
    probs: Option<&[f32]>,
) -> Result<ConfusionMatrix> {
    let mut cm = ConfusionMatrix::new(n_classes)?;
    for (&t, &p) in y_true.iter().zip(y_pred) {
        check_label("true", t, n_classes)?;
        check_label("predicted", p, n_classes)?;
    }
    let mut ids: HashMap<&G, usize> = HashMap::new();
    let flow_of: Vec<usize> = groups
        .iter()
        .map(|g| {
            let next = ids.len();
            *ids.entry(g).or_insert(next)
        })
        .collect();
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_unstable_by_key(|&i| flow_of[i]);
    let mut truth = vec![0u64; n_classes];
    let mut predicted = vec![0u64; n_classes];
    let mut prob_sum = vec![0f64; if probs.is_some() { n_classes } else { 0 }];
    for flow in order.chunk_by(|&a, &b| flow_of[a] == flow_of[b]) {
        truth.fill(0);
        predicted.fill(0);
        prob_sum.fill(0.0);
        for &i in flow {
            truth[y_true[i]] += 1;
            predicted[y_pred[i]] += 1;
            if let Some(pr) = probs {
                for (s, &v) in prob_sum.iter_mut().zip(&pr[i * n_classes..(i + 1) * n_classes]) {
                    *s += f64::from(v);
                }
            }
        }
        // All votes of a flow share one denominator, so comparing summed probabilities is
        // comparing mean probabilities.
        let tie = probs.map(|_| prob_sum.as_slice());
        cm.add(vote(&truth, None), vote(&predicted, tie))?;
    }
    Ok(cm)
}

/// Flow-level confusion matrix from per-sample predicted labels.
///
/// Samples are grouped by `groups[i]` (e.g. `(capture, flow)`). A flow's prediction is the
/// majority vote of its samples' predicted labels, its truth the majority of their true labels
/// (normally all equal); ties go to the lowest class id. With probabilities at hand prefer
/// [`flow_level_confusion_probs`], whose ties are decided by confidence.
pub fn flow_level_confusion<G: Eq + Hash>(
    n_classes: usize,
    groups: &[G],
    y_true: &[usize],
    y_pred: &[usize],
) -> Result<ConfusionMatrix> {
    check_len("groups and true labels", groups.len(), y_true.len())?;
    check_len("groups and predicted labels", groups.len(), y_pred.len())?;
    if groups.is_empty() {
        return Err(MetricsError::Empty("no samples"));
    }
    flow_matrix(n_classes, groups, y_true, y_pred, None)
}

/// Flow-level confusion matrix from per-sample class probabilities.
///
/// `probs` is row-major `samples × n_classes` (what a model's softmax output flattens to);
/// larger means more likely, so scores other than probabilities work too, and NaN is an error.
/// Each sample votes for its arg-max class (ties: lowest id). A flow's prediction is the
/// majority vote; a tie between classes goes to the one with the highest mean probability
/// over the flow's samples, then to the lowest class id. The flow's truth is the majority of
/// its samples' true labels (ties: lowest id).
pub fn flow_level_confusion_probs<G: Eq + Hash>(
    n_classes: usize,
    groups: &[G],
    y_true: &[usize],
    probs: &[f32],
) -> Result<ConfusionMatrix> {
    check_len("groups and true labels", groups.len(), y_true.len())?;
    if groups.is_empty() {
        return Err(MetricsError::Empty("no samples"));
    }
    if n_classes == 0 {
        return Err(MetricsError::Invalid("need at least one class".into()));
    }
    let want = groups
        .len()
        .checked_mul(n_classes)
        .ok_or_else(|| MetricsError::Invalid("samples × classes overflows".into()))?;
    check_len("probabilities and samples × classes", probs.len(), want)?;
    if let Some(i) = probs.iter().position(|v| v.is_nan()) {
        return Err(MetricsError::Invalid(format!(
            "probability of sample {} class {} is NaN",
            i / n_classes,
            i % n_classes
        )));
    }
    let y_pred: Vec<usize> = probs
        .chunks(n_classes)
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = c;
                }
            }
            best
        })
        .collect();
    flow_matrix(n_classes, groups, y_true, &y_pred, Some(probs))
}

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// Precision, recall and F1 of one class, as stored in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// 0 when the class was never predicted.
    pub precision: f64,
    /// 0 when the class has no samples.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Samples of this class (true labels).
    pub support: u64,
    /// Samples predicted as this class; a minority class never predicted stands out here.
    pub predicted: u64,
}

/// Core numbers of a flow-level evaluation (majority vote per flow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowLevelReport {
    /// Number of flows evaluated.
    pub flows: u64,
    /// Fraction of flows classified correctly.
    pub accuracy: f64,
    /// Mean per-class recall over flows.
    pub balanced_accuracy: f64,
    /// Macro-F1 over flows.
    pub macro_f1: f64,
    /// Support-weighted F1 over flows.
    pub weighted_f1: f64,
    /// Flow confusion matrix, `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

/// Everything the protocol asks of one evaluation, serialisable to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Class names, in class-id order.
    pub classes: Vec<String>,
    /// Samples evaluated.
    pub n: u64,
    /// Fraction correct (reported, but ranks below macro-F1).
    pub accuracy: f64,
    /// Mean recall over classes with support > 0.
    pub balanced_accuracy: f64,
    /// The headline number.
    pub macro_f1: f64,
    /// Only for comparison with Deep Packet.
    pub weighted_f1: f64,
    /// One entry per class, in class-id order.
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Majority vote per flow, when groups were known.
    pub flow_level: Option<FlowLevelReport>,
}

fn check_report_matrix(cm: &ConfusionMatrix, n_names: usize) -> Result<()> {
    check_len("class names and confusion matrix classes", n_names, cm.n_classes())?;
    if cm.total() == 0 {
        return Err(MetricsError::Empty("the confusion matrix counts no samples"));
    }
    Ok(())
}

impl EvalReport {
    /// Sample-level report of `cm` with `classes` naming its rows; errors if the names do not
    /// match the matrix or the matrix is empty.
    pub fn new(classes: &[String], cm: &ConfusionMatrix) -> Result<Self> {
        check_report_matrix(cm, classes.len())?;
        let per_class = cm
            .per_class()
            .into_iter()
            .zip(classes)
            .map(|(s, name)| ClassMetrics {
                name: name.clone(),
                precision: s.precision,
                recall: s.recall,
                f1: s.f1,
                support: s.support,
                predicted: s.predicted,
            })
            .collect();
        Ok(Self {
            classes: classes.to_vec(),
            n: cm.total(),
            accuracy: cm.accuracy(),
            balanced_accuracy: cm.balanced_accuracy(),
            macro_f1: cm.macro_f1(),
            weighted_f1: cm.weighted_f1(),
            per_class,
            confusion: cm.to_rows(),
            flow_level: None,
        })
    }

    /// Attach the flow-level numbers of `flows` (same classes, at least one flow).
    pub fn with_flow_level(mut self, flows: &ConfusionMatrix) -> Result<Self> {
        check_report_matrix(flows, self.classes.len())?;
        self.flow_level = Some(FlowLevelReport {
            flows: flows.total(),
            accuracy: flows.accuracy(),
            balanced_accuracy: flows.balanced_accuracy(),
            macro_f1: flows.macro_f1(),
            weighted_f1: flows.weighted_f1(),
            confusion: flows.to_rows(),
        });
        Ok(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Mean ± std over seeds
// ---------------------------------------------------------------------------------------------

/// Mean and sample standard deviation (n − 1 denominator) of a metric over seeds or folds.
///
/// Displays as `0.812 ± 0.031` (three decimals unless a precision is given, `{:.2}`); a single
/// run has no standard deviation and displays as `0.812 (1 run)`, not as a misleading ± 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation; `None` for a single run.
    pub std: Option<f64>,
    /// Number of values.
    pub runs: usize,
}

impl MeanStd {
    /// Mean and sample std of `values`; errors on no values or a non-finite one.
    pub fn from_values(values: &[f64]) -> Result<Self> {
        if values.is_empty() {
            return Err(MetricsError::Empty("no values to average"));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(MetricsError::Invalid(format!("value #{i} is {}", values[i])));
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Ok(Self { mean, std, runs: n })
    }
}

impl fmt::Display for MeanStd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = f.precision().unwrap_or(3);
        match self.std {
            Some(s) => write!(f, "{:.p$} ± {:.p$}", self.mean, s),
            None => write!(f, "{:.p$} ({} run)", self.mean, self.runs),
        }
    }
}

/// Headline numbers of several runs (seeds or folds) of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSummary {
    /// Number of reports summarised.
    pub runs: usize,
    /// Macro-F1.
    pub macro_f1: MeanStd,
    /// Balanced accuracy.
    pub balanced_accuracy: MeanStd,
    /// Accuracy.
    pub accuracy: MeanStd,
    /// Weighted F1.
    pub weighted_f1: MeanStd,
    /// Flow-level accuracy, when every report has flow-level numbers.
    pub flow_accuracy: Option<MeanStd>,
    /// Flow-level macro-F1, when every report has flow-level numbers.
    pub flow_macro_f1: Option<MeanStd>,
}

impl SeedSummary {
    /// Summarise reports over the same classes; errors if there are none, their classes differ,
    /// or only some have flow-level numbers (which would average different populations).
    pub fn from_reports(reports: &[EvalReport]) -> Result<Self> {
        let first = reports.first().ok_or(MetricsError::Empty("no reports"))?;
        if let Some(i) = reports.iter().position(|r| r.classes != first.classes) {
            return Err(MetricsError::Invalid(format!(
                "report #{i} has different classes from report #0"
            )));
        }
        let with_flows = reports.iter().filter(|r| r.flow_level.is_some()).count();
        if with_flows != 0 && with_flows != reports.len() {
            return Err(MetricsError::Invalid(format!(
                "{with_flows} of {} reports have flow-level numbers; all or none must",
                reports.len()
            )));
        }
        let of = |f: &dyn Fn(&EvalReport) -> f64| MeanStd::from_values(&reports.iter().map(f).collect::<Vec<_>>());
        let flows = |f: &dyn Fn(&FlowLevelReport) -> f64| {
            let v: Vec<f64> = reports.iter().filter_map(|r| r.flow_level.as_ref()).map(f).collect();
            if v.is_empty() {
                Ok(None)
            } else {
                MeanStd::from_values(&v).map(Some)
            }
        };
        Ok(Self {
            runs: reports.len(),
            macro_f1: of(&|r| r.macro_f1)?,
            balanced_accuracy: of(&|r| r.balanced_accuracy)?,
            accuracy: of(&|r| r.accuracy)?,
            weighted_f1: of(&|r| r.weighted_f1)?,
            flow_accuracy: flows(&|f| f.accuracy)?,
            flow_macro_f1: flows(&|f| f.macro_f1)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Binary classifiers (membership inference)
// ---------------------------------------------------------------------------------------------

fn check_binary(scores: &[f64], labels: &[bool]) -> Result<(u64, u64)> {
    check_len("scores and labels", scores.len(), labels.len())?;
    if scores.is_empty() {
        return Err(MetricsError::Empty("no scores"));
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::Invalid(format!(
            "score #{i} is {}; scores must be finite",
            scores[i]
        )));
    }
    let n_pos = labels.iter().filter(|&&l| l).count() as u64;
    let n_neg = labels.len() as u64 - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(MetricsError::Invalid(format!(
            "a ROC needs positives and negatives, got {n_pos} and {n_neg}"
        )));
    }
    Ok((n_pos, n_neg))
}

/// ROC curve of a score where larger means "positive" (e.g. "member").
///
/// Exactly scikit-learn's `roc_curve(drop_intermediate=False)`: point 0 is (0, 0) at threshold
/// +∞, then one point per distinct score in decreasing order, counting as positive every
/// sample whose score is ≥ that threshold, so tied scores enter together. The integer counts
/// are kept so areas and operating points are computed exactly; fields are private so the
/// vectors always have equal, non-zero lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    fpr: Vec<f64>,
    tpr: Vec<f64>,
    thresholds: Vec<f64>,
    fps: Vec<u64>,
    tps: Vec<u64>,
    n_pos: u64,
    n_neg: u64,
}

/// A point of a ROC curve chosen for some criterion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    /// Predict positive when score ≥ this (+∞: never).
    pub threshold: f64,
    /// True-positive rate there.
    pub tpr: f64,
    /// False-positive rate there.
    pub fpr: f64,
    /// `(tpr + 1 − fpr) / 2`.
    pub balanced_accuracy: f64,
}

impl RocCurve {
    /// The ROC of `scores` against `labels` (`true` = positive); errors on empty or
    /// mismatched inputs, a non-finite score, or a missing class.
    pub fn new(scores: &[f64], labels: &[bool]) -> Result<Self> {
        let (n_pos, n_neg) = check_binary(scores, labels)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Scores are checked finite, so partial_cmp never fails; ±0 compare equal, as in numpy.
        order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
        let mut roc = RocCurve {
            fpr: vec![0.0],
            tpr: vec![0.0],
            thresholds: vec![f64::INFINITY],
            fps: vec![0],
            tps: vec![0],
            n_pos,
            n_neg,
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for (k, &i) in order.iter().enumerate() {
            if labels[i] {
                tp += 1;
            } else {
                fp += 1;
            }
            let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
            if last_of_tie {
                roc.tps.push(tp);
                roc.fps.push(fp);
                roc.tpr.push(tp as f64 / n_pos as f64);
                roc.fpr.push(fp as f64 / n_neg as f64);
                roc.thresholds.push(scores[i]);
            }
        }
        Ok(roc)
    }

    /// False-positive rate of each point, non-decreasing from 0 to 1.
    pub fn fpr(&self) -> &[f64] {
        &self.fpr
    }

    /// True-positive rate of each point, non-decreasing from 0 to 1.
    pub fn tpr(&self) -> &[f64] {
        &self.tpr
    }

    /// Score threshold of each point, decreasing; the first is +∞.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// False positives at each point.
    pub fn fps(&self) -> &[u64] {
        &self.fps
    }

    /// True positives at each point.
    pub fn tps(&self) -> &[u64] {
        &self.tps
    }

    /// Number of positives.
    pub fn n_pos(&self) -> u64 {
        self.n_pos
    }

    /// Number of negatives.
    pub fn n_neg(&self) -> u64 {
        self.n_neg
    }

    /// Area under the curve by the trapezoidal rule, computed on integer counts; equal to
    /// [`roc_auc`] of the same data.
    pub fn auc(&self) -> f64 {
        let twice_area: u128 = self
            .fps
            .windows(2)
            .zip(self.tps.windows(2))
            .map(|(f, t)| (f[1] - f[0]) as u128 * (t[0] + t[1]) as u128)
            .sum();
        twice_area as f64 / (2 * self.n_pos as u128 * self.n_neg as u128) as f64
    }

    /// Largest TPR among the curve's points with FPR ≤ `max_fpr`, without interpolating
    /// between points: an attacker can only run thresholds that exist. With `n_neg`
    /// negatives the FPR resolution is 1/`n_neg`, so a target below it means FPR = 0.
    /// Errors unless `max_fpr` is in [0, 1].
    pub fn tpr_at_fpr(&self, max_fpr: f64) -> Result<f64> {
        if !(0.0..=1.0).contains(&max_fpr) {
            return Err(MetricsError::Invalid(format!("target FPR {max_fpr} is not in [0, 1]")));
        }
        // fpr[k] = fps/n_neg is correctly rounded, so an FPR equal to a decimal target compares
        // equal to it.
        Ok(self
            .fpr
            .iter()
            .zip(&self.tpr)
            .filter(|(&f, _)| f <= max_fpr)
            .map(|(_, &t)| t)
            .fold(0.0, f64::max))
    }

    /// Membership advantage: max over thresholds of |TPR − FPR|. The absolute value credits an
    /// attacker who inverts a score that is anti-correlated with membership.
    pub fn advantage(&self) -> f64 {
        self.tpr
            .iter()
            .zip(&self.fpr)
            .map(|(t, f)| (t - f).abs())
            .fold(0.0, f64::max)
    }

    /// The threshold with the highest balanced accuracy `(TPR + 1 − FPR) / 2` (never below
    /// 0.5, the +∞ threshold); ties go to the higher threshold.
    pub fn best_balanced_accuracy(&self) -> OperatingPoint {
        // Compare TPR − FPR exactly: tps·n_neg − fps·n_pos.
        let gap = |k: usize| self.tps[k] as i128 * self.n_neg as i128 - self.fps[k] as i128 * self.n_pos as i128;
        let mut best = 0;
        for k in 1..self.tps.len() {
            if gap(k) > gap(best) {
                best = k;
            }
        }
        OperatingPoint {
            threshold: self.thresholds[best],
            tpr: self.tpr[best],
            fpr: self.fpr[best],
            balanced_accuracy: (self.tpr[best] + 1.0 - self.fpr[best]) / 2.0,
        }
    }
}

/// [`RocCurve::new`].
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Result<RocCurve> {
    RocCurve::new(scores, labels)
}

/// ROC AUC as the Mann–Whitney statistic: the probability that a random positive scores above
/// a random negative, ties counting ½ — `U / (n_pos · n_neg)`, counted exactly in integers.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    let (n_pos, n_neg) = check_binary(scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].partial_cmp(&scores[b]).unwrap_or(std::cmp::Ordering::Equal));
    // 2U = Σ over positives of (2 · negatives below + negatives tied).
    let (mut twice_u, mut neg_below) = (0u128, 0u128);
    let mut k = 0;
    while k < order.len() {
        let s = scores[order[k]];
        let (mut pos, mut neg) = (0u128, 0u128);
        while k < order.len() && scores[order[k]] == s {
            if labels[order[k]] {
                pos += 1;
            } else {
                neg += 1;
            }
            k += 1;
        }
        twice_u += pos * (2 * neg_below + neg);
        neg_below += neg;
    }
    Ok(twice_u as f64 / (2 * n_pos as u128 * n_neg as u128) as f64)
}

/// The numbers the protocol asks of a membership-inference attack, serialisable to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// Positives (members).
    pub n_pos: u64,
    /// Negatives (non-members).
    pub n_neg: u64,
    /// ROC AUC.
    pub auc: f64,
    /// max |TPR − FPR|.
    pub advantage: f64,
    /// TPR at FPR ≤ 0.1 %.
    pub tpr_at_0_1pct_fpr: f64,
    /// TPR at FPR ≤ 1 %.
    pub tpr_at_1pct_fpr: f64,
    /// Balanced accuracy at the best threshold.
    pub best_balanced_accuracy: f64,
}

impl BinaryReport {
    /// All numbers from one pass over `scores` and `labels` (`true` = positive).
    pub fn from_scores(scores: &[f64], labels: &[bool]) -> Result<Self> {
        let roc = RocCurve::new(scores, labels)?;
        Ok(Self {
            n_pos: roc.n_pos,
            n_neg: roc.n_neg,
            auc: roc.auc(),
            advantage: roc.advantage(),
            tpr_at_0_1pct_fpr: roc.tpr_at_fpr(0.001)?,
            tpr_at_1pct_fpr: roc.tpr_at_fpr(0.01)?,
            best_balanced_accuracy: roc.best_balanced_accuracy().balanced_accuracy,
        })
    }
}

//! Header-only baseline: what the masked header fields alone predict.
//!
//! The samples given to the models have their IPs (and by default ports) masked, but on public
//! datasets the transport protocol and ports alone identify most applications. The evaluation
//! protocol therefore reports this baseline beside every model, so a reader sees what the
//! payload bytes add over the header.
//!
//! The rule, learnt from the training split only, is a majority vote with back-off:
//!
//! 1. key `(l4, lower port, higher port)`: the unordered port pair, so both directions of a
//!    flow share a key;
//! 2. key `(l4, lower port)`: the lower port is usually the server's (clients use high
//!    ephemeral ports), so this generalises to new client ports of a known service;
//! 3. key `l4` (`tcp` / `udp`);
//! 4. the global majority class.
//!
//! Each key predicts the class with most training samples under it (ties: lowest class id,
//! i.e. first in the dataset's class list). A sample is predicted with the most specific key
//! that occurred in training. Every key is derived from a sample's own header, so the rule
//! cannot use anything a test sample does not carry, and nothing from val or test rows.

use std::collections::HashMap;
use std::hash::Hash;

use privpkt_dataset::store::StoreError;
use privpkt_dataset::{Dataset, IndexRow, Split};

use crate::metrics::{flow_level_confusion, ConfusionMatrix, EvalReport, MetricsError};

/// Why the baseline could not be fitted or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Reading the dataset failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Computing the metrics failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Bad rows or class names, with the reason.
    #[error("header baseline: {0}")]
    Invalid(String),
}

/// Which key of the back-off chain produced a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backoff {
    /// `(l4, lower port, higher port)` was seen in training.
    PortPair,
    /// `(l4, lower port)` was seen in training.
    LowerPort,
    /// Only the transport protocol was seen in training.
    L4,
    /// Nothing matched: the global majority class.
    Global,
}

/// Majority class under a key: most samples, ties to the lowest class id.
fn majority(counts: &[u64]) -> usize {
    let mut best = 0;
    for (c, &n) in counts.iter().enumerate() {
        if n > counts[best] {
            best = c;
        }
    }
    best
}

/// Majority class per key from sparse `(key, class) → count` tallies: most port pairs carry a
/// single class, so dense per-key vectors would waste memory on large datasets.
fn majorities<K: Eq + Hash + Copy>(counts: HashMap<(K, usize), u64>) -> HashMap<K, usize> {
    let mut best: HashMap<K, (u64, usize)> = HashMap::new();
    for ((key, class), n) in counts {
        let e = best.entry(key).or_insert((n, class));
        // More samples wins; equal counts go to the lower class id.
        if n > e.0 || (n == e.0 && class < e.1) {
            *e = (n, class);
        }
    }
    best.into_iter().map(|(k, (_, c))| (k, c)).collect()
}

fn ports(row: &IndexRow) -> (u16, u16) {
    (row.src_port.min(row.dst_port), row.src_port.max(row.dst_port))
}

/// The header-only baseline (see the module docs for the rule).
#[derive(Debug, Clone)]
pub struct HeaderBaseline {
    classes: Vec<String>,
    /// Transport protocol names seen in training, interned so look-ups do not allocate.
    l4_ids: HashMap<String, u32>,
    pair: HashMap<(u32, u16, u16), usize>,
    lower: HashMap<(u32, u16), usize>,
    l4: HashMap<u32, usize>,
    global: usize,
}

impl HeaderBaseline {
    /// Learn the majority tables from `rows`, which must be training rows: a row of the test
    /// split is refused, since memorising test ports is exactly the leak this baseline exists
    /// to expose. `class_names` maps each row's `label` to its class id. Errors on no rows,
    /// duplicate class names, a label not among them, or a test row.
    pub fn fit(rows: &[IndexRow], class_names: &[String]) -> Result<Self, BaselineError> {
        Self::fit_iter(rows.iter(), class_names)
    }

    /// [`fit`](Self::fit) without collecting the rows first.
    fn fit_iter<'a>(rows: impl Iterator<Item = &'a IndexRow>, class_names: &[String]) -> Result<Self, BaselineError> {
        let class_of = class_index(class_names)?;
        let n = class_names.len();
        let mut l4_ids: HashMap<String, u32> = HashMap::new();
        let mut pair: HashMap<((u32, u16, u16), usize), u64> = HashMap::new();
        let mut lower: HashMap<((u32, u16), usize), u64> = HashMap::new();
        let mut l4: HashMap<(u32, usize), u64> = HashMap::new();
        let mut global = vec![0u64; n];
        for row in rows {
            if row.split == Split::Test.name() {
                return Err(BaselineError::Invalid(format!(
                    "sample {} is in the test split; fit on training rows only",
                    row.sample
                )));
            }
            let c = label_of(&class_of, row)?;
            let next = l4_ids.len() as u32;
            let p = *l4_ids.entry(row.l4.clone()).or_insert(next);
            let (lo, hi) = ports(row);
            *pair.entry(((p, lo, hi), c)).or_default() += 1;
            *lower.entry(((p, lo), c)).or_default() += 1;
            *l4.entry((p, c)).or_default() += 1;
            global[c] += 1;
        }
        if global.iter().all(|&c| c == 0) {
            return Err(BaselineError::Invalid("no training rows to fit on".into()));
        }
        Ok(Self {
            classes: class_names.to_vec(),
            l4_ids,
            pair: majorities(pair),
            lower: majorities(lower),
            l4: majorities(l4),
            global: majority(&global),
        })
    }

    /// Predicted class id of `row`.
    pub fn predict(&self, row: &IndexRow) -> usize {
        self.predict_with_backoff(row).0
    }

    /// Predicted class id of `row` and the key that decided it, to report how often the
    /// baseline had to back off.
    pub fn predict_with_backoff(&self, row: &IndexRow) -> (usize, Backoff) {
        let Some(&p) = self.l4_ids.get(row.l4.as_str()) else {
            return (self.global, Backoff::Global);
        };
        let (lo, hi) = ports(row);
        if let Some(&c) = self.pair.get(&(p, lo, hi)) {
            (c, Backoff::PortPair)
        } else if let Some(&c) = self.lower.get(&(p, lo)) {
            (c, Backoff::LowerPort)
        } else if let Some(&c) = self.l4.get(&p) {
            (c, Backoff::L4)
        } else {
            (self.global, Backoff::Global)
        }
    }

    /// Class names, in class-id order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
}

fn class_index(class_names: &[String]) -> Result<HashMap<&str, usize>, BaselineError> {
    if class_names.is_empty() {
        return Err(BaselineError::Invalid("no class names".into()));
    }
    let mut map = HashMap::with_capacity(class_names.len());
    for (i, name) in class_names.iter().enumerate() {
        if map.insert(name.as_str(), i).is_some() {
            return Err(BaselineError::Invalid(format!("class name `{name}` appears twice")));
        }
    }
    Ok(map)
}

fn label_of(class_of: &HashMap<&str, usize>, row: &IndexRow) -> Result<usize, BaselineError> {
    class_of.get(row.label.as_str()).copied().ok_or_else(|| {
        BaselineError::Invalid(format!(
            "sample {} has label `{}`, which is not one of the classes",
            row.sample, row.label
        ))
    })
}

/// Fit on the rows of the training split and evaluate on the rows of `split`, at sample level
/// and at flow level (flows grouped by `(capture, flow)`). Rows of other splits are ignored.
pub fn evaluate_rows(rows: &[IndexRow], class_names: &[String], split: Split) -> Result<EvalReport, BaselineError> {
    let train = rows.iter().filter(|r| r.split == Split::Train.name());
    let model = HeaderBaseline::fit_iter(train, class_names)?;
    let class_of = class_index(class_names)?;
    let eval: Vec<&IndexRow> = rows.iter().filter(|r| r.split == split.name()).collect();
    if eval.is_empty() {
        return Err(BaselineError::Invalid(format!("no rows in the {} split", split.name())));
    }
    let y_true = eval
        .iter()
        .map(|r| label_of(&class_of, r))
        .collect::<Result<Vec<_>, _>>()?;
    let y_pred: Vec<usize> = eval.iter().map(|r| model.predict(r)).collect();
    let groups: Vec<(u32, u64)> = eval.iter().map(|r| (r.capture, r.flow)).collect();
    let n = class_names.len();
    let samples = ConfusionMatrix::from_labels(n, &y_true, &y_pred)?;
    let flows = flow_level_confusion(n, &groups, &y_true, &y_pred)?;
    Ok(EvalReport::new(class_names, &samples)?.with_flow_level(&flows)?)
}

/// [`evaluate_rows`] on a dataset's index with its manifest's classes: the baseline fitted on
/// the training split, evaluated on `split`.
pub fn evaluate_baseline(ds: &Dataset, split: Split) -> Result<EvalReport, BaselineError> {
    let rows = ds.read_index()?;
    evaluate_rows(&rows, &ds.manifest.classes, split)
}

//! What an attacker reads off a model: per-sample statistics of its predictions, averaged over
//! the samples of each flow or capture (the unit of membership).

use privpkt_nn::Model;

use crate::members::Universe;
use crate::Result;

/// Probabilities below this count as this (f32 softmax outputs can underflow to 0).
const TINY: f64 = 1e-45;

/// One group's predictions: a probability row and the true label per sample.
#[derive(Debug, Clone)]
pub struct GroupPreds {
    pub probs: Vec<Vec<f32>>,
    pub labels: Vec<u32>,
}

impl GroupPreds {
    /// Mean log-probability of the true class, −(mean cross-entropy): Yeom et al.'s loss
    /// attack says "member" above a threshold.
    pub fn mean_log_p(&self) -> f64 {
        self.mean(|p, y| (f64::from(p[y])).max(TINY).ln())
    }

    /// Mean logit-scaled confidence `ln p_y − ln Σ_{j≠y} p_j` (Carlini et al. 2022): close to
    /// Gaussian over training runs, which LiRA's fits assume. The sum of the other
    /// probabilities is taken directly, not as 1 − p_y, which rounds to 0 for confident models.
    pub fn mean_logit_conf(&self) -> f64 {
        self.mean(|p, y| {
            let others: f64 = p
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != y)
                .map(|(_, &v)| f64::from(v))
                .sum();
            (f64::from(p[y]) + TINY).ln() - (others + TINY).ln()
        })
    }

    /// Mean over samples of the prediction vector sorted in decreasing order (Shokri et al.'s
    /// attack input, label-free apart from the per-class attack model).
    pub fn mean_sorted(&self) -> Vec<f64> {
        let k = self.probs.first().map_or(0, Vec::len);
        let mut acc = vec![0f64; k];
        for p in &self.probs {
            let mut s: Vec<f32> = p.clone();
            s.sort_by(|a, b| b.total_cmp(a));
            acc.iter_mut().zip(&s).for_each(|(a, &v)| *a += f64::from(v));
        }
        let n = self.probs.len().max(1) as f64;
        acc.iter_mut().for_each(|a| *a /= n);
        acc
    }

    fn mean(&self, f: impl Fn(&[f32], usize) -> f64) -> f64 {
        let s: f64 = self
            .probs
            .iter()
            .zip(&self.labels)
            .map(|(p, &y)| f(p, y as usize))
            .sum();
        s / self.probs.len().max(1) as f64
    }
}

/// Predictions of `model` for every sample of `groups` (indices into `u.groups`), grouped.
pub fn predict_groups(model: &Model, u: &Universe, groups: &[usize]) -> Result<Vec<GroupPreds>> {
    let idx: Vec<usize> = groups
        .iter()
        .flat_map(|&g| u.groups[g].samples.iter().copied())
        .collect();
    let probs = model.predict_samples(&u.samples.subset(&idx))?;
    let mut rows = probs.into_iter();
    Ok(groups
        .iter()
        .map(|&g| {
            let s = &u.groups[g].samples;
            GroupPreds {
                probs: rows.by_ref().take(s.len()).collect(),
                labels: s.iter().map(|&i| u.samples.labels[i]).collect(),
            }
        })
        .collect())
}

//! Shokri et al. (2017) shadow-model attack: shadow models trained like the target on attacker
//! data disjoint from its training data; their predictions on their own IN and OUT flows teach
//! one attack classifier per class, whose input is the sorted prediction vector.
//!
//! The attack classifier is an L2-regularised logistic regression (fitted by Newton's method,
//! deterministic) on the standardised sorted probabilities and their logarithms: the logarithms
//! spread out the confidences near 1 where members and non-members differ.

use serde::Serialize;

use crate::{AttackError, Result};

/// A class needs this many IN and OUT shadow examples for its own attack model; fewer and the
/// model pooled over all classes is used.
pub const MIN_PER_CLASS: usize = 10;
const L2: f64 = 1e-2;

/// The attack input of one prediction vector (mean sorted probabilities of a group).
pub fn features(sorted: &[f64]) -> Vec<f64> {
    let mut f = sorted.to_vec();
    f.extend(sorted.iter().map(|&p| p.max(1e-12).ln()));
    f
}

/// Logistic regression on standardised features.
#[derive(Debug, Clone)]
pub struct Logistic {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Weights, then the bias.
    w: Vec<f64>,
}

impl Logistic {
    /// Fits `P(y | x)` by Newton's method (iteratively reweighted least squares) with an L2
    /// penalty on the weights; `x` rows must have equal lengths.
    pub fn fit(x: &[Vec<f64>], y: &[bool]) -> Result<Logistic> {
        let n = x.len();
        let d = x.first().map_or(0, Vec::len);
        if n == 0 || n != y.len() || x.iter().any(|r| r.len() != d) || x.iter().flatten().any(|v| !v.is_finite()) {
            return Err(AttackError::Config(format!(
                "attack classifier: {n} rows and {} labels of unequal or non-finite features",
                y.len()
            )));
        }
        let mut mean = vec![0f64; d];
        for r in x {
            mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n as f64);
        }
        let mut scale = vec![0f64; d];
        for r in x {
            scale
                .iter_mut()
                .zip(r.iter().zip(&mean))
                .for_each(|(s, (v, m))| *s += (v - m).powi(2) / n as f64);
        }
        scale
            .iter_mut()
            .for_each(|s| *s = if *s > 1e-24 { s.sqrt() } else { 1.0 });
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|r| {
                let mut z: Vec<f64> = r.iter().zip(&mean).zip(&scale).map(|((v, m), s)| (v - m) / s).collect();
                z.push(1.0);
                z
            })
            .collect();
        let p = d + 1;
        let mut w = vec![0f64; p];
        for _ in 0..100 {
            let mut h = vec![0f64; p * p];
            let mut g = vec![0f64; p];
            for (zi, &yi) in z.iter().zip(y) {
                let s = sigmoid(dot(zi, &w));
                let r = f64::from(u8::from(yi)) - s;
                let wt = (s * (1.0 - s)).max(1e-12);
                for a in 0..p {
                    g[a] += zi[a] * r;
                    for b in 0..=a {
                        h[a * p + b] += wt * zi[a] * zi[b];
                    }
                }
            }
            for a in 0..p {
                for b in 0..a {
                    h[b * p + a] = h[a * p + b];
                }
                // No penalty on the bias.
                if a < d {
                    h[a * p + a] += L2 * n as f64;
                    g[a] -= L2 * n as f64 * w[a];
                }
            }
            let step = solve_spd(&h, &g, p)?;
            let mut moved = 0f64;
            for (wi, si) in w.iter_mut().zip(&step) {
                *wi += si;
                moved = moved.max(si.abs());
            }
            if moved < 1e-9 {
                break;
            }
        }
        Ok(Logistic { mean, scale, w })
    }

    /// The linear predictor (log-odds of "member").
    pub fn logit(&self, x: &[f64]) -> f64 {
        let d = self.mean.len();
        let z: f64 = x
            .iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .zip(&self.w)
            .map(|(((v, m), s), w)| (v - m) / s * w)
            .sum();
        z + self.w[d]
    }
}

fn sigmoid(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `H s = g` for a symmetric positive definite `H` (`p × p`, row-major) by Cholesky.
fn solve_spd(h: &[f64], g: &[f64], p: usize) -> Result<Vec<f64>> {
    let mut l = vec![0f64; p * p];
    for i in 0..p {
        for j in 0..=i {
            let s: f64 = h[i * p + j] - (0..j).map(|k| l[i * p + k] * l[j * p + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return Err(AttackError::Config(
                        "attack classifier: the Newton system is singular (constant features?)".into(),
                    ));
                }
                l[i * p + i] = s.sqrt();
            } else {
                l[i * p + j] = s / l[j * p + j];
            }
        }
    }
    let mut y = vec![0f64; p];
    for i in 0..p {
        y[i] = (g[i] - (0..i).map(|k| l[i * p + k] * y[k]).sum::<f64>()) / l[i * p + i];
    }
    let mut x = vec![0f64; p];
    for i in (0..p).rev() {
        x[i] = (y[i] - (i + 1..p).map(|k| l[k * p + i] * x[k]).sum::<f64>()) / l[i * p + i];
    }
    Ok(x)
}

/// The per-class attack models.
pub struct AttackModels {
    per_class: Vec<Option<Logistic>>,
    pooled: Logistic,
}

/// Which classes have their own attack model.
#[derive(Debug, Clone, Serialize)]
pub struct ShokriInfo {
    pub shadow_examples: usize,
    pub classes_with_own_model: Vec<String>,
    /// Too few shadow examples of one side: scored by the model pooled over all classes.
    pub classes_pooled: Vec<String>,
}

impl AttackModels {
    /// Fits one model per class on (features, class, was IN) shadow examples.
    pub fn fit(examples: &[(Vec<f64>, u32, bool)], class_names: &[String]) -> Result<(AttackModels, ShokriInfo)> {
        let all_x: Vec<Vec<f64>> = examples.iter().map(|e| e.0.clone()).collect();
        let all_y: Vec<bool> = examples.iter().map(|e| e.2).collect();
        if !(all_y.contains(&true) && all_y.contains(&false)) {
            return Err(AttackError::Config(
                "Shokri: the shadow models produced only IN or only OUT examples".into(),
            ));
        }
        let pooled = Logistic::fit(&all_x, &all_y)?;
        let mut info = ShokriInfo {
            shadow_examples: examples.len(),
            classes_with_own_model: Vec::new(),
            classes_pooled: Vec::new(),
        };
        let mut per_class = Vec::with_capacity(class_names.len());
        for (c, name) in class_names.iter().enumerate() {
            let rows: Vec<&(Vec<f64>, u32, bool)> = examples.iter().filter(|e| e.1 == c as u32).collect();
            let ins = rows.iter().filter(|e| e.2).count();
            if ins < MIN_PER_CLASS || rows.len() - ins < MIN_PER_CLASS {
                info.classes_pooled.push(name.clone());
                per_class.push(None);
                continue;
            }
            let x: Vec<Vec<f64>> = rows.iter().map(|e| e.0.clone()).collect();
            let y: Vec<bool> = rows.iter().map(|e| e.2).collect();
            per_class.push(Some(Logistic::fit(&x, &y)?));
            info.classes_with_own_model.push(name.clone());
        }
        Ok((AttackModels { per_class, pooled }, info))
    }

    /// Log-odds that a group of class `class` with these features was a member.
    pub fn score(&self, features: &[f64], class: u32) -> f64 {
        match self.per_class.get(class as usize) {
            Some(Some(m)) => m.logit(features),
            _ => self.pooled.logit(features),
        }
    }
}

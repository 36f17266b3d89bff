//! The likelihood-ratio attack (LiRA, Carlini et al. 2022, "Membership Inference Attacks From
//! First Principles"): for every candidate, Gaussians fitted to its logit-scaled confidence
//! under shadow models that trained on it (IN) and that did not (OUT).

use serde::Serialize;

use crate::{AttackError, Result};

/// How the Gaussians' variances are estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variance {
    /// One variance per candidate and side.
    PerCandidate,
    /// One variance per side, pooled over candidates: Carlini et al. recommend it below 64
    /// shadow models, where per-example variances are too noisy.
    Global,
}

/// Per-example variances need this many observations per side (Carlini et al.: 64 shadows
/// online, half of them IN).
pub const PER_CANDIDATE_MIN: usize = 32;

/// Variance floor: a statistic that never moves would otherwise give ±∞.
const MIN_VAR: f64 = 1e-12;

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = if x.len() > 1 {
        x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, v)
}

fn log_normal(x: f64, m: f64, v: f64) -> f64 {
    -0.5 * ((x - m).powi(2) / v + (2.0 * std::f64::consts::PI * v).ln())
}

/// LiRA scores (higher: member). `target[c]` is candidate c's statistic under the target,
/// `shadow[k][c]` under shadow k, `inside[k][c]` whether shadow k trained on c (`None`:
/// offline, no shadow did). Online: the log-likelihood ratio of the IN and OUT Gaussians.
/// Offline: the one-sided test's z-score `(x − μ_out)/σ_out`, which ranks exactly as
/// 1 − P(OUT > x) without saturating in the tail.
pub fn scores(target: &[f64], shadow: &[Vec<f64>], inside: Option<&[Vec<bool>]>) -> Result<(Vec<f64>, Variance)> {
    let k = shadow.len();
    let c = target.len();
    if k == 0
        || shadow.iter().any(|s| s.len() != c)
        || inside.is_some_and(|i| i.len() != k || i.iter().any(|r| r.len() != c))
    {
        return Err(AttackError::Config(format!(
            "LiRA: {k} shadow statistic rows for {c} candidates do not line up"
        )));
    }
    let mut fits = Vec::with_capacity(c);
    let mut min_side = usize::MAX;
    for j in 0..c {
        let (mut ins, mut outs) = (Vec::new(), Vec::new());
        for s in 0..k {
            if inside.is_some_and(|i| i[s][j]) {
                ins.push(shadow[s][j]);
            } else {
                outs.push(shadow[s][j]);
            }
        }
        let need = if inside.is_some() {
            ins.len().min(outs.len())
        } else {
            outs.len()
        };
        if need < 2 {
            return Err(AttackError::Config(format!(
                "LiRA: candidate {j} has {} IN and {} OUT shadow models; each side needs at least 2",
                ins.len(),
                outs.len()
            )));
        }
        min_side = min_side.min(need);
        fits.push((inside.is_some().then(|| mean_var(&ins)), mean_var(&outs)));
    }
    let variance = if min_side >= PER_CANDIDATE_MIN {
        Variance::PerCandidate
    } else {
        Variance::Global
    };
    let g_in = (fits.iter().map(|f| f.0.map_or(0.0, |x| x.1)).sum::<f64>() / c as f64).max(MIN_VAR);
    let g_out = (fits.iter().map(|f| f.1 .1).sum::<f64>() / c as f64).max(MIN_VAR);
    let out = target
        .iter()
        .zip(&fits)
        .map(|(&x, (fin, (m_out, v_out)))| {
            let v_out = match variance {
                Variance::Global => g_out,
                Variance::PerCandidate => v_out.max(MIN_VAR),
            };
            match fin {
                Some((m_in, v_in)) => {
                    let v_in = match variance {
                        Variance::Global => g_in,
                        Variance::PerCandidate => v_in.max(MIN_VAR),
                    };
                    log_normal(x, *m_in, v_in) - log_normal(x, *m_out, v_out)
                }
                None => (x - m_out) / v_out.sqrt(),
            }
        })
        .collect();
    Ok((out, variance))
}

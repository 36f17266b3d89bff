//! A one-run privacy audit of DP-SGD (Steinke, Nasr & Jagielski 2023, "Privacy Auditing with
//! One (1) Training Run"): an empirical lower bound on ε at 95 % confidence, to set beside the
//! accountant's ε, which it must never exceed.
//!
//! m gradient canaries ([`privpkt_nn::dp::Canaries`]) are extra privacy units of one training
//! run, each included with probability ½. Afterwards each canary's score is the sum of the noisy
//! gradient sums at its coordinate (white-box: what DP-SGD releases); the auditor guesses "in"
//! for the k₊ highest scores and "out" for the k₋ lowest and counts its correct guesses v of
//! r = k₊ + k₋. If training is (ε, δ)-DP, then (the paper's main theorem, as its appendix code
//! computes it)
//!
//! P[v correct or more] ≤ P[Binomial(r, e^ε/(1+e^ε)) ≥ v] + 2mδ · max_{1≤i≤v} P[v−i ≤ Binomial(r, ·) < v] / i,
//!
//! and the bound is the largest ε whose p-value stays below 1 − confidence. The paper reports
//! the best (k₊, k₋) after trying many; here every pair of a fixed grid is tested at a Bonferroni
//! level (1 − confidence)/|grid|, so the maximum over the grid is itself a valid 95 % bound.
//!
//! Several runs (`runs`) pool their canaries: each canary affects only its own run, so the pooled
//! release is still (ε, δ)-DP per canary, with m the total.

use std::time::Instant;

use privpkt_dataset::{Dataset, Split};
use privpkt_nn::dp::{BrokenDp, Canaries};
use privpkt_nn::train::derive_seed;
use privpkt_nn::{load_split, manifest_sha256, train_samples, TrainConfig, TrainData, TrainEvent};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{AttackError, Result};

/// An included canary's gradient norm, in clipping norms: correct DP-SGD clips it to C (the
/// most any unit can move a step); with clipping broken it goes through whole.
pub const CANARY_NORM: f64 = 100.0;

/// Fractions of m tried as k₊ and as k₋.
const GRID: [f64; 8] = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5];

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x + (-x).exp()
    } else {
        x.exp().ln_1p()
    }
}

/// ln P[Binomial(r, q) = k] for k = 0..=r, with q = e^ε/(1+e^ε), by the pmf recurrence in
/// log space (no factorials, no underflow).
pub fn binomial_log_pmf(r: usize, eps: f64) -> Vec<f64> {
    let (ln_q, ln_1q) = (-softplus(-eps), -softplus(eps));
    let mut out = Vec::with_capacity(r + 1);
    let mut lp = r as f64 * ln_1q;
    out.push(lp);
    for k in 1..=r {
        lp += ((r - k + 1) as f64).ln() - (k as f64).ln() + ln_q - ln_1q;
        out.push(lp);
    }
    out
}

/// The p-value of `v` correct guesses out of `r` with `m` canaries under the hypothesis that
/// training is (ε, δ)-DP (Steinke et al. 2023, `p_value_DP_audit` of its appendix).
pub fn p_value(m: usize, r: usize, v: usize, eps: f64, delta: f64) -> Result<f64> {
    if v > r || r > m || eps.is_nan() || eps < 0.0 || !(0.0..=1.0).contains(&delta) {
        return Err(AttackError::Config(format!(
            "audit p-value needs 0 ≤ v ≤ r ≤ m, ε ≥ 0, δ in [0, 1]; got v = {v}, r = {r}, m = {m}, ε = {eps}, δ = {delta}"
        )));
    }
    let pmf: Vec<f64> = binomial_log_pmf(r, eps).into_iter().map(f64::exp).collect();
    let beta: f64 = pmf[v..].iter().sum();
    let (mut alpha, mut sum) = (0f64, 0f64);
    for i in 1..=v {
        sum += pmf[v - i];
        alpha = alpha.max(sum / i as f64);
    }
    Ok((beta + alpha * delta * 2.0 * m as f64).min(1.0))
}

/// The largest ε whose (ε, δ)-DP hypothesis `v` correct of `r` guesses rejects at level
/// `significance` (0 when even ε = 0 is not rejected), to 1e-9.
pub fn epsilon_lower_bound(m: usize, r: usize, v: usize, delta: f64, significance: f64) -> Result<f64> {
    if !(significance > 0.0 && significance < 1.0) {
        return Err(AttackError::Config(format!(
            "the audit's significance must be in (0, 1), got {significance}"
        )));
    }
    if p_value(m, r, v, 0.0, delta)? >= significance {
        return Ok(0.0);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while p_value(m, r, v, hi, delta)? < significance {
        lo = hi;
        hi *= 2.0;
        if hi > 1e4 {
            return Ok(lo);
        }
    }
    while hi - lo > 1e-9 {
        let mid = 0.5 * (lo + hi);
        if p_value(m, r, v, mid, delta)? < significance {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The best bound of one set of canary scores over the (k₊, k₋) grid.
#[derive(Debug, Clone, Serialize)]
pub struct Bound {
    pub epsilon: f64,
    pub k_pos: usize,
    pub k_neg: usize,
    /// Guesses r = k₊ + k₋ and correct ones v at the chosen pair.
    pub guesses: usize,
    pub correct: usize,
    /// Pairs tried; each was tested at level (1 − confidence)/grid.
    pub grid: usize,
}

/// The (k₊, k₋) pairs tried for m canaries.
pub fn guess_grid(m: usize) -> Vec<(usize, usize)> {
    let mut ks: Vec<usize> = GRID
        .iter()
        .map(|&f| {
            if f == 0.0 {
                0
            } else {
                ((f * m as f64).round() as usize).max(1)
            }
        })
        .collect();
    ks.dedup();
    let mut out = Vec::new();
    for &p in &ks {
        for &n in &ks {
            if p + n > 0 && p + n <= m {
                out.push((p, n));
            }
        }
    }
    out
}

/// The largest Bonferroni-corrected bound over [`guess_grid`] for `scores` of canaries
/// `included` (higher score: guessed "in"; ties broken by canary order).
pub fn best_bound(scores: &[f64], included: &[bool], delta: f64, confidence: f64) -> Result<Bound> {
    let m = scores.len();
    if m == 0 || m != included.len() || scores.iter().any(|s| !s.is_finite()) {
        return Err(AttackError::Config(format!(
            "audit: {m} finite canary scores needed for {} inclusion flags",
            included.len()
        )));
    }
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    // Correct "in" guesses among the top k, correct "out" guesses among the bottom k.
    let mut top = vec![0usize; m + 1];
    let mut bottom = vec![0usize; m + 1];
    for k in 0..m {
        top[k + 1] = top[k] + usize::from(included[order[k]]);
        bottom[k + 1] = bottom[k] + usize::from(!included[order[m - 1 - k]]);
    }
    let grid = guess_grid(m);
    let significance = (1.0 - confidence) / grid.len() as f64;
    let mut best: Option<Bound> = None;
    for &(kp, kn) in &grid {
        let (r, v) = (kp + kn, top[kp] + bottom[kn]);
        let eps = epsilon_lower_bound(m, r, v, delta, significance)?;
        if best.as_ref().is_none_or(|b| eps > b.epsilon) {
            best = Some(Bound {
                epsilon: eps,
                k_pos: kp,
                k_neg: kn,
                guesses: r,
                correct: v,
                grid: grid.len(),
            });
        }
    }
    best.ok_or_else(|| AttackError::Config("audit: no guess count fits".into()))
}

/// Settings of an audit.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Canaries per run.
    pub canaries: usize,
    pub runs: usize,
    pub seed: u64,
    pub confidence: f64,
    /// Break DP-SGD on purpose to check that the audit catches it.
    pub broken: Option<BrokenDp>,
}

/// One training run of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRun {
    pub seed: u64,
    pub canaries_included: usize,
    pub steps: u64,
    pub sigma: Option<f64>,
    pub q: Option<f64>,
    /// The accountant's ε after the steps taken.
    pub epsilon: f64,
    pub seconds: f64,
}

/// What `privpkt audit` reports.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub method: &'static str,
    pub dataset: String,
    pub seed: u64,
    pub confidence: f64,
    /// The empirical lower bound: training is not (ε, δ)-DP for any smaller ε, at `confidence`.
    pub epsilon_lower_bound: f64,
    /// The accountant's ε (largest over the runs).
    pub accountant_epsilon: f64,
    pub delta: f64,
    pub unit: String,
    pub canaries: usize,
    pub canary_norm: f64,
    pub bound: Bound,
    pub runs: Vec<AuditRun>,
    /// DP-SGD was broken on purpose (`--break`): the accountant's ε does not hold.
    pub broken: Option<BrokenDp>,
    /// The bound does not exceed the accountant's ε (it must, unless DP is broken).
    pub consistent: bool,
    pub seconds: f64,
}

/// Progress of [`run_audit`].
#[derive(Debug, Clone)]
pub enum AuditEvent {
    RunStart { run: usize, runs: usize },
    Epoch { run: usize, epoch: usize, epochs: usize },
    RunEnd(AuditRun),
}

/// Trains `runs` DP-SGD models of `cfg` on `ds`'s train split, each with `canaries` gradient
/// canaries, and bounds ε from their pooled scores.
pub fn run_audit(
    ds: &Dataset,
    train_cfg: &TrainConfig,
    cfg: &AuditConfig,
    work: &std::path::Path,
    progress: &dyn Fn(AuditEvent),
) -> Result<AuditReport> {
    let dp = train_cfg
        .dp
        .as_ref()
        .ok_or_else(|| AttackError::Config("an audit needs DP-SGD settings (ε or σ)".into()))?;
    if cfg.canaries < 2 || cfg.runs == 0 {
        return Err(AttackError::Config(format!(
            "an audit needs at least 2 canaries and 1 run, got {} and {}",
            cfg.canaries, cfg.runs
        )));
    }
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return Err(AttackError::Config(format!(
            "the confidence must be in (0, 1), got {}",
            cfg.confidence
        )));
    }
    let started = Instant::now();
    let params = privpkt_nn::train::network_for(train_cfg, &ds.manifest)?.param_count();
    if cfg.canaries > params {
        return Err(AttackError::Config(format!(
            "{} canaries need as many distinct coordinates; the model has {params} parameters",
            cfg.canaries
        )));
    }
    let train = load_split(ds, Split::Train)?;
    let val = load_split(ds, Split::Val)?;
    let sha = manifest_sha256(ds)?;
    let (mut scores, mut included, mut runs) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..cfg.runs {
        progress(AuditEvent::RunStart { run, runs: cfg.runs });
        let t0 = Instant::now();
        let seed = derive_seed(cfg.seed, &[0xA0D17, run as u64]);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut coords: Vec<usize> = sample(&mut rng, params, cfg.canaries).into_iter().collect();
        coords.sort_unstable();
        let inc: Vec<bool> = (0..cfg.canaries).map(|_| rng.random::<bool>()).collect();
        let mut canaries = Canaries::new(coords, inc.clone(), CANARY_NORM * dp.clip, derive_seed(seed, &[1]))?;
        if let Some(b) = cfg.broken {
            canaries = canaries.break_dp(b);
        }
        let mut tc = train_cfg.clone();
        tc.seed = derive_seed(seed, &[2]);
        if let Some(d) = tc.dp.as_mut() {
            d.seeded = true;
        }
        let data = TrainData {
            dataset: ds,
            train: &train,
            val: &val,
            data_id: format!("{sha}-audit-{seed}"),
        };
        let dir = work.join(format!("audit-run-{run}"));
        let _ = std::fs::remove_dir_all(&dir);
        let out = train_samples(
            &data,
            &tc,
            &dir,
            false,
            &|e| {
                if let TrainEvent::EpochEnd { record, .. } = e {
                    progress(AuditEvent::Epoch {
                        run,
                        epoch: record.epoch,
                        epochs: tc.epochs,
                    })
                }
            },
            Some(&mut canaries),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let out = out?;
        let p = out
            .model
            .meta()
            .privacy
            .clone()
            .ok_or_else(|| AttackError::Config("the audited run recorded no privacy accounting".into()))?;
        let info = AuditRun {
            seed,
            canaries_included: inc.iter().filter(|&&i| i).count(),
            steps: canaries.steps(),
            sigma: p["sigma"].as_f64(),
            q: p["q"].as_f64(),
            epsilon: p["epsilon"].as_f64().unwrap_or(f64::NAN),
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress(AuditEvent::RunEnd(info.clone()));
        runs.push(info);
        scores.extend_from_slice(canaries.scores());
        included.extend(inc);
    }
    let bound = best_bound(&scores, &included, dp.delta, cfg.confidence)?;
    let accountant = runs.iter().map(|r| r.epsilon).fold(f64::NEG_INFINITY, f64::max);
    Ok(AuditReport {
        method: "one-run audit (Steinke, Nasr & Jagielski 2023) with white-box gradient (Dirac) canaries scored by \
                 the noisy gradient sums DP-SGD releases",
        dataset: ds.dir.display().to_string(),
        seed: cfg.seed,
        confidence: cfg.confidence,
        epsilon_lower_bound: bound.epsilon,
        accountant_epsilon: accountant,
        delta: dp.delta,
        unit: dp.unit.to_string(),
        canaries: scores.len(),
        canary_norm: CANARY_NORM * dp.clip,
        consistent: bound.epsilon <= accountant,
        bound,
        runs,
        broken: cfg.broken,
        seconds: started.elapsed().as_secs_f64(),
    })
}

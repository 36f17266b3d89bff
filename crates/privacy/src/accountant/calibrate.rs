//! Inverting the accountants: the σ that meets a target ε, and the number of steps a budget
//! allows. Both rely on monotonicity (ε decreases with σ and increases with steps), so
//! bracketing + bisection is robust where Newton steps on a min-over-orders curve are not.

use super::prv::{PrvAccountant, PrvOptions};
use super::rdp::RdpAccountant;
use super::{epsilon, validate_delta, validate_epsilon, validate_q, validate_sigma, AccountantKind, Phase};
use crate::error::{PrivacyError, Result};

/// Calibration stops once ε(σ) is within this of the target (and never above it).
pub const CALIBRATION_TOLERANCE: f64 = 1e-3;

/// A calibrated σ whose ε misses the target by more than this is reported as an error.
const CALIBRATION_MAX_GAP: f64 = 0.01;

const SIGMA_MIN: f64 = 1e-6;
const SIGMA_MAX: f64 = 1e6;

/// Smallest-noise σ (to within [`CALIBRATION_TOLERANCE`] in ε) such that `steps` steps with
/// sampling rate `q` satisfy (`target_eps`, `delta`)-DP under `accountant`.
///
/// The returned σ always satisfies ε(σ) ≤ `target_eps` (the PRV upper bound for
/// [`AccountantKind::Prv`]); ε(σ) ≥ target − 1e-3 unless the accountant's ε(σ) jumps there
/// (PRV's grid changes with σ), in which case ≥ target − 0.01 or an error.
pub fn calibrate_sigma(target_eps: f64, delta: f64, q: f64, steps: u64, accountant: AccountantKind) -> Result<f64> {
    validate_q(q)?;
    if steps == 0 {
        return Err(PrivacyError::ZeroSteps);
    }
    calibrate_sigma_phases(target_eps, delta, accountant, &|sigma| vec![Phase { q, sigma, steps }])
}

/// As [`calibrate_sigma`], for a run whose mechanisms all use the one noise multiplier σ:
/// `phases(σ)` lists them (e.g. the training steps and one more full-batch Gaussian release),
/// and their composition must meet (`target_eps`, `delta`).
pub fn calibrate_sigma_phases(
    target_eps: f64,
    delta: f64,
    accountant: AccountantKind,
    phases: &dyn Fn(f64) -> Vec<Phase>,
) -> Result<f64> {
    validate_epsilon(target_eps)?;
    validate_delta(delta)?;
    for p in phases(1.0) {
        p.validate()?;
    }
    let eps_of = |sigma: f64| epsilon(accountant, &phases(sigma), delta);

    // Bracket [lo, hi] with ε(lo) > target ≥ ε(hi).
    let (mut lo, mut hi, mut eps_hi) = match accountant {
        AccountantKind::Rdp => bracket(target_eps, 1.0, 2.0, &eps_of)?,
        AccountantKind::Prv => {
            // PRV ε is below RDP ε, so the RDP σ is an excellent upper start.
            let start = calibrate_sigma_phases(target_eps, delta, AccountantKind::Rdp, phases)?;
            bracket(target_eps, start, 1.1, &eps_of)?
        }
    };
    for _ in 0..200 {
        if target_eps - eps_hi <= CALIBRATION_TOLERANCE || hi - lo <= 1e-12 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        match eps_of(mid) {
            Ok(e) if e <= target_eps => {
                hi = mid;
                eps_hi = e;
            }
            // An error at smaller σ means ε is out of reach of the accountant: too little noise.
            _ => lo = mid,
        }
    }
    if target_eps - eps_hi > CALIBRATION_MAX_GAP {
        return Err(PrivacyError::Numerical(format!(
            "calibration stalled: sigma = {hi} gives epsilon = {eps_hi}, more than \
             {CALIBRATION_MAX_GAP} below the target {target_eps}"
        )));
    }
    Ok(hi)
}

/// Finds lo < hi with ε(lo) > target ≥ ε(hi), starting at `start` and growing/shrinking by
/// `factor`. Returns (lo, hi, ε(hi)).
fn bracket(target: f64, start: f64, factor: f64, eps_of: &impl Fn(f64) -> Result<f64>) -> Result<(f64, f64, f64)> {
    let mut hi = start;
    let mut eps_hi = eps_of(hi)?;
    while eps_hi > target {
        hi *= factor;
        if hi > SIGMA_MAX {
            return Err(PrivacyError::Unreachable(format!(
                "target epsilon {target} is below what any sigma <= {SIGMA_MAX} reaches \
                 (epsilon = {eps_hi}); with RDP, larger orders may help"
            )));
        }
        eps_hi = eps_of(hi)?;
    }
    let mut lo = hi / factor;
    loop {
        match eps_of(lo) {
            Ok(e) if e <= target => {
                hi = lo;
                eps_hi = e;
                lo /= factor;
                if lo < SIGMA_MIN {
                    return Err(PrivacyError::Unreachable(format!(
                        "target epsilon {target} is met even by sigma < {SIGMA_MIN}; \
                         it is too large to calibrate against"
                    )));
                }
            }
            _ => return Ok((lo, hi, eps_hi)),
        }
    }
}

/// Largest number of steps with sampling rate `q` and noise multiplier `sigma` whose ε stays
/// within (`eps`, `delta`) under `accountant` (0 if even one step exceeds it). Used to stop
/// training when the budget is spent.
///
/// For PRV the answer is checked against a fresh accountant sized for exactly that many steps,
/// so `PrivacySummary::compute` at the returned count never exceeds `eps`.
pub fn steps_for_budget(eps: f64, delta: f64, q: f64, sigma: f64, accountant: AccountantKind) -> Result<u64> {
    validate_epsilon(eps)?;
    validate_delta(delta)?;
    validate_q(q)?;
    validate_sigma(sigma)?;
    let rdp_steps = rdp_steps_for_budget(eps, delta, q, sigma)?;
    match accountant {
        AccountantKind::Rdp => Ok(rdp_steps),
        AccountantKind::Prv => prv_steps_for_budget(eps, delta, q, sigma, rdp_steps),
    }
}

/// As [`steps_for_budget`], when the run also releases `extra` mechanisms (composed with the
/// steps): the largest number of steps whose composition with them stays within the budget.
pub fn steps_for_budget_with(
    eps: f64,
    delta: f64,
    q: f64,
    sigma: f64,
    accountant: AccountantKind,
    extra: &[Phase],
) -> Result<u64> {
    let alone = steps_for_budget(eps, delta, q, sigma, accountant)?;
    if extra.is_empty() {
        return Ok(alone);
    }
    // More mechanisms never lower ε: the answer lies in [0, alone].
    let fits = |n: u64| -> Result<bool> {
        let mut all = extra.to_vec();
        if n > 0 {
            all.insert(0, Phase::new(q, sigma, n)?);
        }
        Ok(epsilon(accountant, &all, delta)? <= eps)
    };
    if !fits(0)? {
        return Ok(0);
    }
    last_fitting(0, alone.saturating_add(1), &fits)
}

/// The largest n in [lo, hi) with `fits(n)`, given `fits(lo)` and not `fits(hi)` (bisection).
fn last_fitting(mut lo: u64, mut hi: u64, fits: &dyn Fn(u64) -> Result<bool>) -> Result<u64> {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn rdp_steps_for_budget(eps: f64, delta: f64, q: f64, sigma: f64) -> Result<u64> {
    let mut one = RdpAccountant::new();
    one.compose(&Phase::new(q, sigma, 1)?)?;
    let fits = |n: u64| -> Result<bool> { Ok(one.repeated(n)?.epsilon(delta)?.epsilon <= eps) };
    if !fits(1)? {
        return Ok(0);
    }
    let (mut lo, mut hi) = (1u64, 2u64);
    while fits(hi)? {
        lo = hi;
        hi = hi.checked_mul(2).filter(|&h| h <= 1 << 53).ok_or_else(|| {
            PrivacyError::Unreachable(format!("the budget epsilon = {eps} is not spent within 2^53 steps"))
        })?;
    }
    last_fitting(lo, hi, &fits)
}

fn prv_steps_for_budget(eps: f64, delta: f64, q: f64, sigma: f64, rdp_steps: u64) -> Result<u64> {
    let opts = PrvOptions::default();
    let delta_error = opts.delta_error_for(delta);
    let build = |n: u64| PrvAccountant::new(&[Phase::new(q, sigma, n)?], opts.eps_error, delta_error);
    // One grid sized for `hi` steps answers every n ≤ hi (finer mesh, wider domain than needed).
    let mut hi = rdp_steps.saturating_mul(2).max(2);
    let acc = loop {
        let acc = build(hi)?;
        if acc.epsilon_for_steps(&[hi], delta)?.eps_upper > eps {
            break acc;
        }
        hi = hi
            .checked_mul(2)
            .ok_or_else(|| PrivacyError::Unreachable(format!("the budget epsilon = {eps} is never spent")))?;
    };
    let (mut lo, mut hi) = (0u64, hi);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if acc.epsilon_for_steps(&[mid], delta)?.eps_upper <= eps {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The grid for exactly `lo` steps may differ in the last digits: make the answer agree with
    // what a summary at `lo` steps will report.
    for _ in 0..64 {
        if lo == 0 || build(lo)?.epsilon(delta)?.eps_upper <= eps {
            return Ok(lo);
        }
        lo -= 1;
    }
    Err(PrivacyError::Numerical(format!(
        "PRV epsilon is not monotone in the number of steps near {lo}"
    )))
}

//! Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
//!
//! Per-step RDP follows Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the
//! Sampled Gaussian Mechanism" (arXiv:1908.10530, §3.3), the algorithm of TF-privacy's and
//! Opacus's `_compute_log_a_int` / `_compute_log_a_frac`. RDP composes additively (Mironov
//! 2017), so phases with different (q, σ) simply add their curves. Conversion to (ε, δ) uses
//! the improved bound of Balle et al. 2020 ("Hypothesis testing interpretations and Rényi DP",
//! Thm. 21) / Canonne, Kamath & Steinke 2020, exactly as Opacus 1.6's `get_privacy_spent`.

use serde::{Deserialize, Serialize};

use super::Phase;
use crate::error::{PrivacyError, Result};
use crate::special::{ln_expm1, log_add, log_erfc, log_sub};

/// Largest accepted Rényi order. The integer-order sum has `α + 1` terms and the fractional
/// series needs `α` to be representable with a fractional part, so a bound keeps both sane.
pub const MAX_ORDER: f64 = 1e6;

/// Iteration cap of the fractional-order series. It converges in at most a few thousand terms
/// for realistic (q, σ); the cap turns a pathological case into an error instead of a hang.
const MAX_FRAC_TERMS: u64 = 10_000_000;

/// Opacus's default orders: 1.1, 1.2, …, 10.9 and 12, 13, …, 63 (`RDPAccountant.DEFAULT_ALPHAS`).
/// Reproducing them exactly makes our ε and best order comparable with Opacus's.
pub fn default_orders() -> Vec<f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
        .collect()
}

fn validate_order(order: f64) -> Result<()> {
    if !order.is_finite() || order <= 1.0 || order > MAX_ORDER {
        return Err(PrivacyError::InvalidOrder(order));
    }
    Ok(())
}

/// RDP of order `order` of one step of the Poisson-subsampled Gaussian mechanism with sampling
/// rate `q` and noise multiplier `sigma` (sensitivity 1).
///
/// `q = 1` is the plain Gaussian mechanism, α/(2σ²); `q = 0` samples nobody and costs 0 (the
/// only place where q = 0 is accepted: a phase of training must have q > 0).
/// The result can be `+inf` when σ is so small that the RDP overflows.
pub fn rdp_subsampled_gaussian(q: f64, sigma: f64, order: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&q) {
        return Err(PrivacyError::InvalidSamplingRate(q));
    }
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(PrivacyError::InvalidNoiseMultiplier(sigma));
    }
    validate_order(order)?;
    if q == 0.0 {
        return Ok(0.0);
    }
    if q == 1.0 {
        return Ok(order / (2.0 * sigma * sigma));
    }
    let log_a = if order.fract() == 0.0 {
        // Exact conversion: `order` is an integer ≤ MAX_ORDER.
        log_a_int(q, sigma, order as u64)
    } else {
        log_a_frac(q, sigma, order)?
    };
    // A_α ≥ 1 mathematically; the fractional series can round a hair below.
    Ok((log_a / (order - 1.0)).max(0.0))
}

/// ln A_α for integer α (MTZ19 eq. in §3.3): A_α = Σᵢ C(α,i) qⁱ (1−q)^{α−i} e^{(i²−i)/(2σ²)}.
///
/// Because Σᵢ C(α,i) qⁱ(1−q)^{α−i} = 1 we sum A_α − 1 = Σ_{i≥2} C(α,i) qⁱ(1−q)^{α−i}
/// (e^{(i²−i)/(2σ²)} − 1) instead: every term is positive, so for tiny q the answer keeps full
/// relative precision (the direct sum returns ln(1 + 1e-13) with only ~3 correct digits).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let af = alpha as f64;
    let two_s2 = 2.0 * sigma * sigma;
    let mut log_binom = 0.0; // ln C(α, i), built incrementally (no lgamma cancellation).
    let mut log_am1 = f64::NEG_INFINITY;
    for i in 1..=alpha {
        let fi = i as f64;
        log_binom += (af - fi + 1.0).ln() - fi.ln();
        if i < 2 {
            continue;
        }
        let term = log_binom + fi * ln_q + (af - fi) * ln_1mq + ln_expm1((fi * fi - fi) / two_s2);
        log_am1 = log_add(log_am1, term);
    }
    // ln A = ln(1 + e^{ln(A−1)}).
    log_add(0.0, log_am1)
}

/// ln A_α for fractional α: the two alternating series over (−∞, z₀] and [z₀, ∞) of MTZ19 §3.3,
/// as TF-privacy/Opacus `_compute_log_a_frac`, stopping when both terms drop below e⁻³⁰.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> Result<f64> {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let s2 = sigma * sigma;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    let ln_half = 0.5f64.ln();
    let z0 = s2 * (1.0 / q - 1.0).ln() + 0.5;

    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    // Generalised binomial coefficient C(α, i), kept as (ln |C|, sign) to avoid overflow.
    let mut log_coef = 0.0;
    let mut positive = true;
    let mut i: u64 = 0;
    loop {
        let fi = i as f64;
        if i > 0 {
            let factor = alpha - fi + 1.0;
            log_coef += factor.abs().ln() - fi.ln();
            if factor < 0.0 {
                positive = !positive;
            }
        }
        let j = alpha - fi;
        let log_t0 = log_coef + fi * ln_q + j * ln_1mq;
        let log_t1 = log_coef + j * ln_q + fi * ln_1mq;
        let log_e0 = ln_half + log_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = ln_half + log_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * s2) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * s2) + log_e1;
        if positive {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0)?;
            log_a1 = log_sub(log_a1, log_s1)?;
        }
        if log_s0.is_nan() || log_s1.is_nan() {
            return Err(PrivacyError::Numerical(format!(
                "fractional-order RDP series produced NaN (q = {q}, sigma = {sigma}, order = {alpha})"
            )));
        }
        i += 1;
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
        if i >= MAX_FRAC_TERMS {
            return Err(PrivacyError::Numerical(format!(
                "fractional-order RDP series did not converge in {MAX_FRAC_TERMS} terms \
                 (q = {q}, sigma = {sigma}, order = {alpha}); use integer orders"
            )));
        }
    }
    Ok(log_add(log_a0, log_a1))
}

/// ε and the Rényi order that attains it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RdpEpsilon {
    /// Smallest ε over the accountant's orders (never negative: (ε', δ)-DP with ε' < 0 implies
    /// (0, δ)-DP, so reporting 0 is still a valid guarantee).
    pub epsilon: f64,
    /// Order α at which the minimum is reached (the first one on ties, as `numpy.nanargmin`).
    pub order: f64,
}

/// Accumulated RDP curve of a sequence of Poisson-subsampled Gaussian phases.
///
/// Composition is exact addition of curves (Mironov 2017, Prop. 1), which is what makes
/// heterogeneous training (federated rounds, resumed runs with a new σ) cheap to account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    rdp: Vec<f64>,
    steps: u64,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        let orders = default_orders();
        let rdp = vec![0.0; orders.len()];
        Self { orders, rdp, steps: 0 }
    }
}

impl RdpAccountant {
    /// Empty accountant over Opacus's default orders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty accountant over custom orders (each finite, > 1, ≤ [`MAX_ORDER`]).
    pub fn with_orders(orders: &[f64]) -> Result<Self> {
        if orders.is_empty() {
            return Err(PrivacyError::InvalidParameter {
                name: "orders",
                value: 0.0,
                reason: "at least one Rényi order is needed",
            });
        }
        for &o in orders {
            validate_order(o)?;
        }
        Ok(Self {
            orders: orders.to_vec(),
            rdp: vec![0.0; orders.len()],
            steps: 0,
        })
    }

    /// Rényi orders of the curve.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// Accumulated RDP at each order (same indexing as [`Self::orders`]).
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// Total number of mechanism steps composed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Adds `phase.steps` steps of the subsampled Gaussian with `phase.q`, `phase.sigma`.
    pub fn compose(&mut self, phase: &Phase) -> Result<()> {
        phase.validate()?;
        let per_step = self
            .orders
            .iter()
            .map(|&o| rdp_subsampled_gaussian(phase.q, phase.sigma, o))
            .collect::<Result<Vec<f64>>>()?;
        let steps = self
            .steps
            .checked_add(phase.steps)
            .ok_or(PrivacyError::InvalidParameter {
                name: "steps",
                value: phase.steps as f64,
                reason: "total number of steps overflows u64",
            })?;
        let n = phase.steps as f64;
        for (acc, r) in self.rdp.iter_mut().zip(per_step) {
            *acc += n * r;
        }
        self.steps = steps;
        Ok(())
    }

    /// The curve of this accountant's history run `times` times over (RDP composes linearly).
    pub(crate) fn repeated(&self, times: u64) -> Result<Self> {
        let steps = self.steps.checked_mul(times).ok_or(PrivacyError::InvalidParameter {
            name: "steps",
            value: times as f64,
            reason: "total number of steps overflows u64",
        })?;
        let n = times as f64;
        Ok(Self {
            orders: self.orders.clone(),
            rdp: self.rdp.iter().map(|r| n * r).collect(),
            steps,
        })
    }

    /// Composes every phase in order.
    pub fn compose_all(&mut self, phases: &[Phase]) -> Result<()> {
        phases.iter().try_for_each(|p| self.compose(p))
    }

    /// ε(δ) with the improved conversion of Balle et al. 2020 / Canonne–Kamath–Steinke 2020,
    /// as Opacus 1.6: ε = min_α RDP(α) − (ln δ + ln α)/(α − 1) + ln((α − 1)/α).
    pub fn epsilon(&self, delta: f64) -> Result<RdpEpsilon> {
        self.convert(delta, |rdp, a, ln_delta| {
            rdp - (ln_delta + a.ln()) / (a - 1.0) + (-1.0 / a).ln_1p()
        })
    }

    /// ε(δ) with the classic conversion of Mironov 2017 (Prop. 3): min_α RDP(α) + ln(1/δ)/(α − 1).
    /// Looser; kept to compare with papers that used it.
    pub fn epsilon_classic(&self, delta: f64) -> Result<RdpEpsilon> {
        self.convert(delta, |rdp, a, ln_delta| rdp - ln_delta / (a - 1.0))
    }

    fn convert(&self, delta: f64, f: impl Fn(f64, f64, f64) -> f64) -> Result<RdpEpsilon> {
        super::validate_delta(delta)?;
        if self.steps == 0 {
            return Err(PrivacyError::ZeroSteps);
        }
        let ln_delta = delta.ln();
        let mut best: Option<(f64, f64)> = None;
        for (&a, &r) in self.orders.iter().zip(&self.rdp) {
            if !r.is_finite() {
                continue; // RDP = ∞ at this order: it bounds nothing.
            }
            let eps = f(r, a, ln_delta);
            if eps.is_nan() {
                continue;
            }
            if best.is_none_or(|(e, _)| eps < e) {
                best = Some((eps, a));
            }
        }
        match best {
            Some((eps, order)) => Ok(RdpEpsilon {
                epsilon: eps.max(0.0),
                order,
            }),
            None => Err(PrivacyError::Unreachable(
                "RDP is infinite at every order: the noise is too small for any (epsilon, delta) \
                 guarantee"
                    .into(),
            )),
        }
    }
}

/// Convenience: ε(δ) of a sequence of phases over Opacus's default orders.
pub fn rdp_epsilon(phases: &[Phase], delta: f64) -> Result<RdpEpsilon> {
    let mut acc = RdpAccountant::new();
    acc.compose_all(phases)?;
    acc.epsilon(delta)
}

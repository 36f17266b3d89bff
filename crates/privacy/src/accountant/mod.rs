//! Privacy accountants for DP-SGD with Poisson sampling.
//!
//! Two accountants for the same mechanism (Poisson-subsampled Gaussian, add/remove adjacency,
//! L2 sensitivity 1 after clipping):
//! - [`RdpAccountant`]: Rényi DP (Mironov, Talwar & Zhang 2019), cheap and an upper bound,
//!   loose by 5–20 % in ε at typical settings;
//! - [`PrvAccountant`]: numerical composition of privacy loss random variables (Gopi, Lee &
//!   Wutschitz 2021), tight to a stated `eps_error`.
//!
//! Both match Opacus 1.6 (`rdp`, `prv`) on its own defaults, so numbers are comparable with
//! published DP-SGD results. Both assume Poisson sampling: fixed-size shuffled batches are a
//! different mechanism and these numbers do not apply to them.

mod calibrate;
mod prv;
mod rdp;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use calibrate::{
    calibrate_sigma, calibrate_sigma_phases, steps_for_budget, steps_for_budget_with, CALIBRATION_TOLERANCE,
};
pub use prv::{prv_epsilon, PrvAccountant, PrvEpsilon, PrvOptions, DEFAULT_EPS_ERROR, MAX_PRV_GRID};
pub use rdp::{default_orders, rdp_epsilon, rdp_subsampled_gaussian, RdpAccountant, RdpEpsilon, MAX_ORDER};

use crate::error::{PrivacyError, Result};

/// `steps` consecutive steps of the Poisson-subsampled Gaussian mechanism with sampling rate `q`
/// and noise multiplier `sigma` (noise std / clipping norm). Training is a sequence of phases;
/// a plain run is one phase, a resumed run or a federated schedule several.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Poisson sampling rate, in (0, 1] (expected batch size / dataset size).
    pub q: f64,
    /// Noise multiplier σ, finite and > 0.
    pub sigma: f64,
    /// Number of steps, ≥ 1.
    pub steps: u64,
}

impl Phase {
    /// Validated constructor.
    pub fn new(q: f64, sigma: f64, steps: u64) -> Result<Self> {
        let p = Self { q, sigma, steps };
        p.validate()?;
        Ok(p)
    }

    /// Checks q ∈ (0, 1], σ finite > 0 and steps ≥ 1 (fields are public, so every accountant
    /// re-checks).
    pub fn validate(&self) -> Result<()> {
        validate_q(self.q)?;
        validate_sigma(self.sigma)?;
        if self.steps == 0 {
            return Err(PrivacyError::ZeroSteps);
        }
        Ok(())
    }
}

pub(crate) fn validate_q(q: f64) -> Result<()> {
    if !(q > 0.0 && q <= 1.0) {
        return Err(PrivacyError::InvalidSamplingRate(q));
    }
    Ok(())
}

pub(crate) fn validate_sigma(sigma: f64) -> Result<()> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(PrivacyError::InvalidNoiseMultiplier(sigma));
    }
    Ok(())
}

pub(crate) fn validate_delta(delta: f64) -> Result<()> {
    if !(delta > 0.0 && delta < 1.0) {
        return Err(PrivacyError::InvalidDelta(delta));
    }
    Ok(())
}

pub(crate) fn validate_epsilon(eps: f64) -> Result<()> {
    if !eps.is_finite() || eps <= 0.0 {
        return Err(PrivacyError::InvalidEpsilon(eps));
    }
    Ok(())
}

/// Which accountant to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    /// Rényi DP with Opacus's default orders.
    Rdp,
    /// PRV with [`PrvOptions::default`]; ε is the upper bound.
    Prv,
}

impl AccountantKind {
    /// Lower-case name as used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rdp => "rdp",
            Self::Prv => "prv",
        }
    }
}

impl fmt::Display for AccountantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountantKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rdp" => Ok(Self::Rdp),
            "prv" => Ok(Self::Prv),
            other => Err(format!("unknown accountant {other:?}: expected \"rdp\" or \"prv\"")),
        }
    }
}

/// ε(δ) of `phases` under `accountant`: the RDP ε, or the PRV upper bound (the guarantee, as
/// Opacus's `PRVAccountant.get_epsilon`) with default options.
pub fn epsilon(accountant: AccountantKind, phases: &[Phase], delta: f64) -> Result<f64> {
    match accountant {
        AccountantKind::Rdp => Ok(rdp_epsilon(phases, delta)?.epsilon),
        AccountantKind::Prv => Ok(prv_epsilon(phases, delta, PrvOptions::default())?.eps_upper),
    }
}

/// ε(δ) after `steps` steps of one phase (rate `q`, noise `sigma`); 0 before the first step,
/// as a training run's per-epoch report needs.
pub fn epsilon_after(accountant: AccountantKind, q: f64, sigma: f64, steps: u64, delta: f64) -> Result<f64> {
    if steps == 0 {
        return Ok(0.0);
    }
    epsilon(accountant, &[Phase::new(q, sigma, steps)?], delta)
}

/// What a model file records about its privacy: one accountant's view of one training phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacySummary {
    /// `"rdp"` or `"prv"`.
    pub accountant: AccountantKind,
    /// Poisson sampling rate.
    pub q: f64,
    /// Noise multiplier.
    pub sigma: f64,
    /// Number of steps.
    pub steps: u64,
    /// Target δ.
    pub delta: f64,
    /// The guarantee: RDP ε, or the PRV upper bound.
    pub epsilon: f64,
    /// RDP only: order at which ε is attained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_order: Option<f64>,
    /// PRV only: lower bound on the true ε.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps_lower: Option<f64>,
    /// PRV only: point estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps_estimate: Option<f64>,
    /// PRV only: upper bound (equal to `epsilon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps_upper: Option<f64>,
    /// PRV only: ε error the bounds were computed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eps_error: Option<f64>,
    /// PRV only: δ error the bounds were computed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_error: Option<f64>,
}

impl PrivacySummary {
    /// Runs `accountant` on one phase (PRV with default options).
    pub fn compute(accountant: AccountantKind, q: f64, sigma: f64, steps: u64, delta: f64) -> Result<Self> {
        let phase = Phase::new(q, sigma, steps)?;
        validate_delta(delta)?;
        let base = Self {
            accountant,
            q,
            sigma,
            steps,
            delta,
            epsilon: 0.0,
            best_order: None,
            eps_lower: None,
            eps_estimate: None,
            eps_upper: None,
            eps_error: None,
            delta_error: None,
        };
        match accountant {
            AccountantKind::Rdp => {
                let r = rdp_epsilon(&[phase], delta)?;
                Ok(Self {
                    epsilon: r.epsilon,
                    best_order: Some(r.order),
                    ..base
                })
            }
            AccountantKind::Prv => {
                let opts = PrvOptions::default();
                let r = prv_epsilon(&[phase], delta, opts)?;
                Ok(Self {
                    epsilon: r.eps_upper,
                    eps_lower: Some(r.eps_lower),
                    eps_estimate: Some(r.eps_estimate),
                    eps_upper: Some(r.eps_upper),
                    eps_error: Some(opts.eps_error),
                    delta_error: Some(opts.delta_error_for(delta)),
                    ..base
                })
            }
        }
    }
}

/// Both accountants at once; serialises as `{"rdp": {…, "epsilon": …}, "prv": {…}}`, the shape
/// printed by `privpkt privacy --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReport {
    /// RDP view.
    pub rdp: PrivacySummary,
    /// PRV view.
    pub prv: PrivacySummary,
}

/// ε of one phase under both accountants.
pub fn privacy_report(q: f64, sigma: f64, steps: u64, delta: f64) -> Result<PrivacyReport> {
    Ok(PrivacyReport {
        rdp: PrivacySummary::compute(AccountantKind::Rdp, q, sigma, steps, delta)?,
        prv: PrivacySummary::compute(AccountantKind::Prv, q, sigma, steps, delta)?,
    })
}

//! Error type shared by every module of the crate.

use thiserror::Error;

/// Everything that can go wrong in this crate. Bad input is always reported, never clamped:
/// a silently "fixed" privacy parameter is a wrong privacy claim.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PrivacyError {
    /// ε must be finite and strictly positive.
    #[error("invalid epsilon {0}: must be finite and > 0")]
    InvalidEpsilon(f64),
    /// δ must lie in the open interval (0, 1).
    #[error("invalid delta {0}: must be in (0, 1)")]
    InvalidDelta(f64),
    /// The Poisson sampling rate must lie in (0, 1].
    #[error("invalid sampling rate q = {0}: must be in (0, 1]")]
    InvalidSamplingRate(f64),
    /// The noise multiplier must be finite and strictly positive.
    #[error("invalid noise multiplier sigma = {0}: must be finite and > 0")]
    InvalidNoiseMultiplier(f64),
    /// A mechanism applied zero times has no privacy cost to report.
    #[error("invalid number of steps 0: a phase must run at least one step")]
    ZeroSteps,
    /// Rényi orders must be finite, > 1 and at most [`crate::MAX_ORDER`] (1e6).
    #[error("invalid RDP order {0}: must be finite, > 1 and <= 1e6")]
    InvalidOrder(f64),
    /// Any other out-of-range argument; `name` is the parameter, `value` what was passed.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name as it appears in the API.
        name: &'static str,
        /// The rejected value.
        value: f64,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// A per-example squared gradient norm that is NaN, infinite or negative.
    #[error("per-example squared norm #{index} = {value}: must be finite and >= 0")]
    InvalidNorm {
        /// Position of the example in the batch.
        index: usize,
        /// The rejected squared norm.
        value: f64,
    },
    /// The request is well formed but cannot be met (e.g. a target ε below what any σ reaches).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// A numerical computation could not deliver a trustworthy answer.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// Layer inputs, output gradients and units that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The operating system's entropy source failed.
    #[error("OS entropy source failed: {0}")]
    Entropy(String),
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, PrivacyError>;

//! Differential-privacy machinery of privpkt, free of any ML framework.
//!
//! - [`accountant`]: RDP and PRV accountants for DP-SGD with Poisson sampling, σ calibration,
//!   step budgets and a serialisable summary (re-exported at the crate root);
//! - [`noise`]: ChaCha20 Gaussian noise, reproducible across thread counts;
//! - [`clip`]: per-example clipping factors, and clipping of a whole model update;
//! - [`perex`]: per-unit gradient norms and clipped sums from (layer input, output gradient)
//!   pairs, the framework-free core of DP-SGD;
//! - [`linalg`]: the strided matrix products both need.

#![warn(missing_docs)]

pub mod accountant;
pub mod clip;
pub mod error;
pub mod linalg;
pub mod noise;
pub mod perex;
mod special;

pub use accountant::*;
pub use clip::{clip_factors, clip_factors_into, clip_update, measure_update, UpdateClip};
pub use error::{PrivacyError, Result};
pub use noise::{add_gaussian_noise, run_keys, NoiseGenerator, SeedSource, NOISE_CHUNK};

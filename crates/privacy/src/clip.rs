//! Per-example clipping factors, independent of any tensor framework.
//!
//! DP-SGD (Abadi et al. 2016) bounds each example's contribution by scaling its gradient gᵢ
//! with cᵢ = min(1, C/‖gᵢ‖), which makes the clipped sum's L2 sensitivity C. A non-finite norm
//! is an error: mapping it to a factor of 0 would silently drop the example and hide a
//! diverging model, and mapping it to 1 would break the sensitivity bound.

use crate::error::{PrivacyError, Result};

/// Writes min(1, C/‖gᵢ‖) into `out` for per-example squared norms ‖gᵢ‖² (f64, as accumulated
/// over all parameter tensors). A zero norm gives 1.
pub fn clip_factors_into(sq_norms: &[f64], max_norm: f64, out: &mut [f64]) -> Result<()> {
    if !max_norm.is_finite() || max_norm <= 0.0 {
        return Err(PrivacyError::InvalidParameter {
            name: "max_norm",
            value: max_norm,
            reason: "clipping norm must be finite and > 0",
        });
    }
    if out.len() != sq_norms.len() {
        return Err(PrivacyError::InvalidParameter {
            name: "out.len()",
            value: out.len() as f64,
            reason: "must equal the number of squared norms",
        });
    }
    for (i, (&sq, o)) in sq_norms.iter().zip(out.iter_mut()).enumerate() {
        if !sq.is_finite() || sq < 0.0 {
            return Err(PrivacyError::InvalidNorm { index: i, value: sq });
        }
        let norm = sq.sqrt();
        *o = if norm <= max_norm { 1.0 } else { max_norm / norm };
    }
    Ok(())
}

/// Allocating version of [`clip_factors_into`].
pub fn clip_factors(sq_norms: &[f64], max_norm: f64) -> Result<Vec<f64>> {
    let mut out = vec![0.0; sq_norms.len()];
    clip_factors_into(sq_norms, max_norm, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_clip_only_large_norms() {
        let f = clip_factors(&[0.0, 1.0, 4.0, 0.25, 1e-300, 1e300], 1.0).unwrap();
        assert_eq!(&f[..5], &[1.0, 1.0, 0.5, 1.0, 1.0]);
        assert!((f[5] - 1e-150).abs() < 1e-160);
    }

    #[test]
    fn non_finite_or_negative_norms_are_errors() {
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let err = clip_factors(&[1.0, bad], 1.0).unwrap_err();
            assert!(matches!(err, PrivacyError::InvalidNorm { index: 1, .. }), "{err}");
        }
        assert!(clip_factors(&[1.0], 0.0).is_err());
        assert!(clip_factors(&[1.0], f64::NAN).is_err());
        assert!(clip_factors_into(&[1.0], 1.0, &mut [0.0; 2]).is_err());
    }
}

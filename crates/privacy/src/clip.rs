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

/// What [`clip_update`] did: the update's L2 norm before, and the factor it was scaled by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpdateClip {
    /// ‖new − old‖₂ over all tensors, flattened, before clipping.
    pub norm: f64,
    /// min(1, C/norm): 1 when the update was within the norm.
    pub factor: f64,
}

impl UpdateClip {
    /// The update's norm after clipping.
    pub fn clipped_norm(&self) -> f64 {
        self.norm * self.factor
    }

    /// Whether the update was scaled down (Flower's `norm_bit`).
    pub fn clipped(&self) -> bool {
        self.factor < 1.0
    }
}

/// Measures a model update `new − old`: its L2 norm over every tensor flattened into one
/// vector, and the factor min(1, C/norm) that clips it (client-level DP, McMahan et al. 2018,
/// "FlatClip"). Tensors must pair up in count and length; a non-finite update is an error
/// (clipping it would send NaN, and skipping it would break the bound).
pub fn measure_update(new: &[Vec<f32>], old: &[Vec<f32>], max_norm: f64) -> Result<UpdateClip> {
    if new.len() != old.len() || new.iter().zip(old).any(|(a, b)| a.len() != b.len()) {
        return Err(PrivacyError::InvalidParameter {
            name: "update",
            value: new.len() as f64,
            reason: "the new and old tensors must match in count and length",
        });
    }
    let sq: f64 = new
        .iter()
        .zip(old)
        .flat_map(|(a, b)| a.iter().zip(b))
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum();
    let factor = clip_factors(&[sq], max_norm)?[0];
    Ok(UpdateClip {
        norm: sq.sqrt(),
        factor,
    })
}

/// Clips a model update in place, as Flower's `fixedclipping_mod` / `adaptiveclipping_mod`
/// do: `new` becomes `old + min(1, C/‖new − old‖)·(new − old)` ([`measure_update`]).
pub fn clip_update(new: &mut [Vec<f32>], old: &[Vec<f32>], max_norm: f64) -> Result<UpdateClip> {
    let clip = measure_update(new, old, max_norm)?;
    if clip.clipped() {
        for (a, b) in new.iter_mut().zip(old) {
            for (x, &y) in a.iter_mut().zip(b) {
                *x = y + (*x - y) * clip.factor as f32;
            }
        }
    }
    Ok(clip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_clipped_over_all_tensors_flattened() {
        // Update (3, 0 | 4): norm 5 over both tensors, though each alone is within 4.
        let old = vec![vec![1.0f32, 2.0], vec![-1.0]];
        let mut new = vec![vec![4.0f32, 2.0], vec![3.0]];
        let c = clip_update(&mut new, &old, 1.0).unwrap();
        assert_eq!(c.norm, 5.0);
        assert!((c.factor - 0.2).abs() < 1e-12 && c.clipped());
        assert!((c.clipped_norm() - 1.0).abs() < 1e-12);
        let want = [[1.6f32, 2.0], [-0.2, 0.0]];
        assert!((new[0][0] - want[0][0]).abs() < 1e-6 && new[0][1] == 2.0);
        assert!((new[1][0] - want[1][0]).abs() < 1e-6);
        // Within the norm: untouched, not clipped.
        let mut same = vec![vec![1.5f32, 2.0], vec![-1.0]];
        let c = clip_update(&mut same, &old, 1.0).unwrap();
        assert_eq!((c.norm, c.factor, c.clipped()), (0.5, 1.0, false));
        assert_eq!(same, vec![vec![1.5f32, 2.0], vec![-1.0]]);
        // Mismatched shapes, a NaN update, a bad norm.
        assert!(clip_update(&mut [vec![1.0f32]], &old, 1.0).is_err());
        assert!(clip_update(&mut [vec![f32::NAN, 2.0], vec![-1.0]], &old, 1.0).is_err());
        assert!(clip_update(&mut new.clone(), &old, 0.0).is_err());
    }

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

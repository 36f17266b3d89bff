//! Numerical helpers: log-space arithmetic, log-erfc, compensated sums and Gauss–Legendre rules.
//!
//! Kept private: they exist so the accountants never overflow and never lose the tiny
//! probabilities that decide δ ≈ 1e-5.

use crate::error::{PrivacyError, Result};

/// `ln(e^a + e^b)` without overflow; `-inf` stands for zero.
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    if hi == f64::INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// `ln(e^a - e^b)` for `a >= b`. A difference below zero by more than rounding is an error
/// (TF-privacy raises there too); a rounding-level one is zero.
pub(crate) fn log_sub(a: f64, b: f64) -> Result<f64> {
    if b == f64::NEG_INFINITY {
        return Ok(a);
    }
    if a < b {
        if b - a <= 1e-12 * a.abs().max(1.0) {
            return Ok(f64::NEG_INFINITY);
        }
        return Err(PrivacyError::Numerical(format!(
            "log-space subtraction went negative (ln x = {a}, ln y = {b})"
        )));
    }
    if a == b {
        return Ok(f64::NEG_INFINITY);
    }
    // e^a - e^b = e^a (1 - e^{b-a}); -expm1 keeps precision when b ≈ a.
    Ok(a + (-(b - a).exp_m1()).ln())
}

/// `ln(e^x - 1)` for `x > 0`, accurate for both tiny and huge `x`.
pub(crate) fn ln_expm1(x: f64) -> f64 {
    if x > 1.0 {
        x + (-(-x).exp()).ln_1p()
    } else {
        x.exp_m1().ln()
    }
}

/// `ln(erfc(x))`, accurate far into the upper tail where `erfc` underflows.
///
/// Below 26 libm's `erfc` is relatively accurate and normal (erfc(26) ≈ 6e-296); above it we
/// use the asymptotic (Laurent) series at infinity, as TF-privacy's `_log_erfc` fallback:
/// erfc(x) ~ exp(-x² - 1/(2x²) + 5/(8x⁴) - …)/(x√π).
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 26.0 {
        return libm::erfc(x).ln();
    }
    let x2 = x * x;
    let inv2 = 1.0 / x2;
    -0.5 * std::f64::consts::PI.ln() - x.ln() - x2 - 0.5 * inv2 + 0.625 * inv2 * inv2 - 37.0 / 24.0 * inv2.powi(3)
        + 353.0 / 64.0 * inv2.powi(4)
}

/// Neumaier (improved Kahan) summation: the PRV accountant adds ~10⁶ cell masses and must
/// keep absolute error far below δ_error ≈ 1e-8.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NeumaierSum {
    sum: f64,
    comp: f64,
}

impl NeumaierSum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.comp += (self.sum - t) + x;
        } else {
            self.comp += (x - t) + self.sum;
        }
        self.sum = t;
    }

    pub(crate) fn value(&self) -> f64 {
        self.sum + self.comp
    }
}

/// Nodes and weights of the `n`-point Gauss–Legendre rule on [-1, 1] (Newton on Pₙ,
/// Golub–Welsch-free; accurate to ~1e-15 for the small `n` used here).
pub(crate) fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    let nf = n as f64;
    for i in 0..n.div_ceil(2) {
        // Tricomi's initial guess for the i-th root.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let kf = k as f64;
                let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
                p0 = p1;
                p1 = p2;
            }
            // p1 = P_n(x), p0 = P_{n-1}(x).
            dp = nf * (x * p1 - p0) / (x * x - 1.0);
            let dx = p1 / dp;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        nodes[i] = -x;
        nodes[n - 1 - i] = x;
        weights[i] = w;
        weights[n - 1 - i] = w;
    }
    (nodes, weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        let (x, w) = gauss_legendre(10);
        // ∫_{-1}^{1} t^18 dt = 2/19 (degree 2n-2 is exact).
        let s: f64 = x.iter().zip(&w).map(|(x, w)| w * x.powi(18)).sum();
        assert!((s - 2.0 / 19.0).abs() < 1e-14, "{s}");
        let total: f64 = w.iter().sum();
        assert!((total - 2.0).abs() < 1e-14);
    }

    #[test]
    fn log_erfc_is_continuous_across_the_series_switch() {
        let below = log_erfc(26.0 - 1e-9);
        let above = log_erfc(26.0);
        assert!((below - above).abs() < 1e-9 * below.abs(), "{below} vs {above}");
        // Leading terms of the series: ln erfc(x) ≈ -x² - ln x - ln √π - 1/(2x²), next term 5/(8x⁴) ≈ 8e-7.
        let v = log_erfc(30.0);
        let expected = -900.0 - 30f64.ln() - 0.5 * std::f64::consts::PI.ln() - 0.5 / 900.0;
        assert!((v - expected).abs() < 1e-6, "{v} vs {expected}");
    }

    #[test]
    fn log_space_arithmetic() {
        let a = 3f64.ln();
        let b = 2f64.ln();
        assert!((log_add(a, b) - 5f64.ln()).abs() < 1e-15);
        assert!((log_sub(a, b).unwrap() - 0.0).abs() < 1e-15);
        assert_eq!(log_sub(a, a).unwrap(), f64::NEG_INFINITY);
        assert!(log_sub(b, a).is_err());
        assert!((ln_expm1(1e-10) - (1e-10f64).ln()).abs() < 1e-9);
        assert!((ln_expm1(800.0) - 800.0).abs() < 1e-12);
    }
}

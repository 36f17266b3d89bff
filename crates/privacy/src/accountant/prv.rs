//! PRV accountant: numerical composition of privacy loss random variables.
//!
//! Gopi, Lee & Wutschitz 2021, "Numerical Composition of Differential Privacy" (NeurIPS,
//! arXiv:2106.02848), as implemented by Microsoft's `prv_accountant` and Opacus 1.6's `prv`:
//! the privacy loss Y = ln(P(x)/Q(x)), x ~ P, of the Poisson-subsampled Gaussian
//! (P = (1−q)N(0,σ²) + qN(1,σ²), Q = N(0,σ²)) is truncated to [−L, L], discretised on a uniform
//! mesh with cell-centred masses whose mean is matched to the continuous mean, composed with
//! one FFT power, and δ(ε) = E[(1 − e^{ε−Y})₊] is inverted exactly between mesh points.
//! The mesh comes from Theorem 5.5 and L from RDP tail bounds as in the reference code's
//! `compute_safe_domain_size` (Remark 5.6; Opacus notes the code deviates subtly from the remark,
//! harmless for eps_error < 1); together they bound the true ε by
//! [ε̂(δ + δ_err) − ε_err, ε̂(δ − δ_err) + ε_err].
//!
//! Differences from the reference implementation, none of which weakens those bounds:
//! - the grid is widened to an FFT-friendly size (a larger L only reduces truncation error);
//! - heterogeneous phases are multiplied in Fourier space (one circular convolution, as in the
//!   paper's Algorithm 1) instead of a linear convolution tree;
//! - cell masses in the upper tail are differences of survival functions (no cancellation),
//!   and the continuous mean is a Gauss–Legendre integral in x-space rather than in t.

use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use super::rdp::RdpAccountant;
use super::{validate_delta, Phase};
use crate::error::{PrivacyError, Result};
use crate::special::{gauss_legendre, log_add, NeumaierSum};

/// Default ε error of the PRV accountant, as Opacus's `PRVAccountant.get_epsilon`.
pub const DEFAULT_EPS_ERROR: f64 = 0.01;

/// Largest discretisation grid (points) the accountant will allocate (~1 GiB of work memory).
pub const MAX_PRV_GRID: usize = 1 << 24;

/// Accuracy knobs of the PRV accountant.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrvOptions {
    /// Half-width added to the ε bounds; also sets the mesh (Gopi et al. Thm. 5.5). Default 0.01.
    pub eps_error: f64,
    /// δ error; `None` means δ/1000 (Opacus and Microsoft's default).
    pub delta_error: Option<f64>,
}

impl Default for PrvOptions {
    fn default() -> Self {
        Self {
            eps_error: DEFAULT_EPS_ERROR,
            delta_error: None,
        }
    }
}

impl PrvOptions {
    /// δ error to use for a target δ.
    pub fn delta_error_for(&self, delta: f64) -> f64 {
        self.delta_error.unwrap_or(delta / 1000.0)
    }
}

/// ε bounds from the PRV accountant. The true ε(δ) of the mechanism lies in
/// [`eps_lower`, `eps_upper`]; `eps_upper` is what should be reported as the guarantee
/// (Opacus's `get_epsilon` returns it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrvEpsilon {
    /// Lower bound on the true ε (clamped at 0, itself a valid lower bound).
    pub eps_lower: f64,
    /// Point estimate from the discretised PRV.
    pub eps_estimate: f64,
    /// Upper bound on the true ε: the privacy guarantee.
    pub eps_upper: f64,
}

/// Privacy loss random variable of one step of the Poisson-subsampled Gaussian.
#[derive(Clone, Copy, Debug)]
struct SubsampledGaussianPrv {
    q: f64,
    sigma: f64,
    /// ln(1 − q): the loss is supported on (ln(1 − q), ∞). −∞ for q = 1.
    ln_1mq: f64,
    ln_q: f64,
}

impl SubsampledGaussianPrv {
    fn new(q: f64, sigma: f64) -> Self {
        Self {
            q,
            sigma,
            ln_1mq: (-q).ln_1p(),
            ln_q: q.ln(),
        }
    }

    /// z(t) = ln((eᵗ − (1 − q))/q), i.e. the loss t is reached at x = σ²z + 1/2.
    fn z(&self, t: f64) -> Option<f64> {
        if t <= self.ln_1mq {
            return None;
        }
        // eᵗ − (1−q) = eᵗ(1 − e^{ln(1−q) − t}); −expm1 avoids cancellation near the support edge.
        Some(t - self.ln_q + (-(self.ln_1mq - t).exp_m1()).ln())
    }

    /// (P[Y ≤ t], P[Y > t]), each computed without cancellation (propositions B1/B4 of the paper).
    fn cdf_sf(&self, t: f64) -> (f64, f64) {
        let Some(z) = self.z(t) else {
            return (0.0, 1.0);
        };
        let s = self.sigma;
        let u1 = (s * z + 0.5 / s) / std::f64::consts::SQRT_2;
        let u2 = (s * z - 0.5 / s) / std::f64::consts::SQRT_2;
        let w0 = 1.0 - self.q;
        let cdf = 0.5 * (w0 * libm::erfc(-u1) + self.q * libm::erfc(-u2));
        let sf = 0.5 * (w0 * libm::erfc(u1) + self.q * libm::erfc(u2));
        (cdf, sf)
    }

    /// x at which the loss equals t (−∞ below the support).
    fn x_of_t(&self, t: f64) -> f64 {
        match self.z(t) {
            Some(z) => self.sigma * self.sigma * z + 0.5,
            None => f64::NEG_INFINITY,
        }
    }

    /// Loss at x: ln((1 − q) + q e^{(2x−1)/(2σ²)}).
    fn loss(&self, x: f64) -> f64 {
        log_add(
            self.ln_1mq,
            self.ln_q + (2.0 * x - 1.0) / (2.0 * self.sigma * self.sigma),
        )
    }

    /// Density of x under P = (1−q)N(0,σ²) + qN(1,σ²).
    fn density(&self, x: f64) -> f64 {
        let s = self.sigma;
        let c = 1.0 / (s * (2.0 * std::f64::consts::PI).sqrt());
        let a = x / s;
        let b = (x - 1.0) / s;
        c * ((1.0 - self.q) * (-0.5 * a * a).exp() + self.q * (-0.5 * b * b).exp())
    }

    /// E[Y ; t_lo < Y ≤ t_hi] by Gauss–Legendre in x-space, where the integrand is smooth on
    /// the scale min(σ, σ²) (in t the mass piles up in a spike of width ~q near 0).
    fn partial_mean(&self, t_lo: f64, t_hi: f64) -> Result<f64> {
        let s = self.sigma;
        let a = self.x_of_t(t_lo).max(-40.0 * s);
        let b = self.x_of_t(t_hi).min(1.0 + 40.0 * s);
        if b <= a {
            return Ok(0.0);
        }
        let h = 0.25 * s.min(s * s);
        let panels = ((b - a) / h).ceil();
        if panels.is_nan() || panels > 5e7 {
            return Err(PrivacyError::Numerical(format!(
                "PRV mean integral needs {panels} panels (sigma = {s} too small)"
            )));
        }
        let panels = (panels as usize).max(1);
        let width = (b - a) / panels as f64;
        let (nodes, weights) = gauss_legendre(16);
        let mut sum = NeumaierSum::default();
        for p in 0..panels {
            let lo = a + p as f64 * width;
            let mid = lo + 0.5 * width;
            for (xn, w) in nodes.iter().zip(&weights) {
                let x = mid + 0.5 * width * xn;
                sum.add(0.5 * width * w * self.loss(x) * self.density(x));
            }
        }
        Ok(sum.value())
    }
}

/// Uniform mesh t_j = (j − k)·dt, j = 0..size, before any mean shift.
#[derive(Clone, Copy, Debug)]
struct Grid {
    dt: f64,
    size: usize,
    k: usize,
}

impl Grid {
    fn t(&self, j: usize) -> f64 {
        (j as f64 - self.k as f64) * self.dt
    }
}

/// Smallest even n ≥ `min` whose prime factors are all ≤ 7 (fast for rustfft).
fn fft_friendly_size(min: usize) -> usize {
    let mut n = min.max(2);
    loop {
        if n % 2 == 0 {
            let mut m = n;
            for p in [2, 3, 5, 7] {
                while m % p == 0 {
                    m /= p;
                }
            }
            if m == 1 {
                return n;
            }
        }
        n += 1;
    }
}

/// Domain half-width L from the RDP tail bounds: Microsoft's `compute_safe_domain_size`
/// (Remark 5.6 of Gopi et al.), as Opacus.
fn safe_domain_size(phases: &[Phase], total: u64, eps_error: f64, delta_error: f64) -> Result<f64> {
    let mut all = RdpAccountant::new();
    all.compose_all(phases)?;
    let mut l_max = all.epsilon(delta_error / 4.0)?.epsilon;
    for p in phases {
        let mut one = RdpAccountant::new();
        one.compose(&Phase { steps: 1, ..*p })?;
        let d = delta_error / (8.0 * total as f64);
        l_max = l_max.max(one.epsilon(d)?.epsilon);
    }
    Ok(l_max.max(eps_error) + 3.0)
}

/// A discretised, FFT-transformed PRV per phase, ready to be composed any number of times up to
/// each phase's `steps` (the maximum the grid was sized for, like Microsoft's
/// `max_self_compositions`).
#[derive(Clone, Debug)]
pub struct PrvAccountant {
    phases: Vec<Phase>,
    eps_error: f64,
    delta_error: f64,
    grid: Grid,
    spectra: Vec<Vec<Complex<f64>>>,
    mean_shifts: Vec<f64>,
}

impl PrvAccountant {
    /// Discretises every phase on a common mesh sized for composing each `phase.steps` times.
    ///
    /// `eps_error` > 0 is the ε slack of the bounds; `delta_error` ∈ (0, 1) the δ slack (use
    /// δ/1000 for a target δ, see [`PrvOptions`]).
    pub fn new(phases: &[Phase], eps_error: f64, delta_error: f64) -> Result<Self> {
        if phases.is_empty() {
            return Err(PrivacyError::ZeroSteps);
        }
        for p in phases {
            p.validate()?;
        }
        if !eps_error.is_finite() || eps_error <= 0.0 {
            return Err(PrivacyError::InvalidParameter {
                name: "eps_error",
                value: eps_error,
                reason: "must be finite and > 0",
            });
        }
        if !(delta_error > 0.0 && delta_error < 1.0) {
            return Err(PrivacyError::InvalidParameter {
                name: "delta_error",
                value: delta_error,
                reason: "must be in (0, 1)",
            });
        }
        let total =
            phases
                .iter()
                .try_fold(0u64, |acc, p| acc.checked_add(p.steps))
                .ok_or(PrivacyError::InvalidParameter {
                    name: "steps",
                    value: f64::INFINITY,
                    reason: "total number of steps overflows u64",
                })?;

        let l = safe_domain_size(phases, total, eps_error, delta_error)?;
        // Theorem 5.5: mesh so that discretisation moves ε by at most eps_error.
        let dt = eps_error / ((total as f64) / 2.0 * (12.0 / delta_error).ln()).sqrt();
        let k_lo = (-l / dt).floor();
        let k_hi = (l / dt).ceil();
        let points = k_hi - k_lo + 1.0;
        if !(points.is_finite() && points <= MAX_PRV_GRID as f64) {
            return Err(PrivacyError::Unreachable(format!(
                "PRV grid would need {points:.0} points (more than {MAX_PRV_GRID}); ε is too \
                 large or eps_error too small for this many steps, use the RDP accountant or a \
                 larger eps_error"
            )));
        }
        let base = points as usize;
        let size = fft_friendly_size(base + base % 2);
        if size > MAX_PRV_GRID {
            return Err(PrivacyError::Unreachable(format!(
                "PRV grid would need {size} points (more than {MAX_PRV_GRID})"
            )));
        }
        // Widen symmetrically: index k sits at t = 0.
        let k = (-k_lo) as usize + (size - base) / 2;
        let grid = Grid { dt, size, k };

        let mut planner = RealFftPlanner::<f64>::new();
        let fft = planner.plan_fft_forward(size);
        let mut spectra = Vec::with_capacity(phases.len());
        let mut mean_shifts = Vec::with_capacity(phases.len());
        for p in phases {
            let prv = SubsampledGaussianPrv::new(p.q, p.sigma);
            let (mut pmf, shift) = discretise(&prv, &grid)?;
            let mut spec = fft.make_output_vec();
            fft.process(&mut pmf, &mut spec)
                .map_err(|e| PrivacyError::Numerical(format!("FFT failed: {e}")))?;
            spectra.push(spec);
            mean_shifts.push(shift);
        }
        Ok(Self {
            phases: phases.to_vec(),
            eps_error,
            delta_error,
            grid,
            spectra,
            mean_shifts,
        })
    }

    /// Number of mesh points (memory and time scale linearly with it).
    pub fn grid_size(&self) -> usize {
        self.grid.size
    }

    /// Mesh width.
    pub fn mesh(&self) -> f64 {
        self.grid.dt
    }

    /// The phases (with their maximum step counts) the accountant was built for.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// ε bounds after every phase ran its full `steps`.
    pub fn epsilon(&self, delta: f64) -> Result<PrvEpsilon> {
        let steps: Vec<u64> = self.phases.iter().map(|p| p.steps).collect();
        self.epsilon_for_steps(&steps, delta)
    }

    /// ε bounds after `steps[i]` ≤ `phases[i].steps` steps of each phase (any order: composition
    /// commutes). Reusing one accountant for many step counts is how `steps_for_budget` stays
    /// fast.
    pub fn epsilon_for_steps(&self, steps: &[u64], delta: f64) -> Result<PrvEpsilon> {
        validate_delta(delta)?;
        if steps.len() != self.phases.len() {
            return Err(PrivacyError::InvalidParameter {
                name: "steps.len()",
                value: steps.len() as f64,
                reason: "must equal the number of phases the accountant was built for",
            });
        }
        for (&n, p) in steps.iter().zip(&self.phases) {
            if n > p.steps {
                return Err(PrivacyError::InvalidParameter {
                    name: "steps",
                    value: n as f64,
                    reason: "exceeds the step count the PRV grid was sized for",
                });
            }
        }
        let total: u64 = steps.iter().sum();
        if total == 0 {
            return Err(PrivacyError::ZeroSteps);
        }
        if delta <= self.delta_error {
            return Err(PrivacyError::InvalidParameter {
                name: "delta",
                value: delta,
                reason: "must exceed the accountant's delta_error",
            });
        }
        let size = self.grid.size;
        if f64::EPSILON * size as f64 > delta - self.delta_error {
            return Err(PrivacyError::Numerical(format!(
                "floating-point error of a {size}-point grid dominates delta = {delta}; \
                 increase delta or eps_error"
            )));
        }
        let (pmf, shift) = self.compose(steps, total)?;
        let curve = DeltaCurve::new(&pmf, self.grid, shift);
        let upper = curve.epsilon(delta - self.delta_error)? + self.eps_error;
        let lower = (curve.epsilon(delta + self.delta_error)? - self.eps_error).max(0.0);
        let estimate = curve.epsilon(delta)?;
        Ok(PrvEpsilon {
            eps_lower: lower,
            eps_estimate: estimate,
            eps_upper: upper,
        })
    }

    /// pmf of the composed loss on the mesh and the total mean shift Σ nᵢ sᵢ.
    fn compose(&self, steps: &[u64], total: u64) -> Result<(Vec<f64>, f64)> {
        let size = self.grid.size;
        let mut planner = RealFftPlanner::<f64>::new();
        let ifft = planner.plan_fft_inverse(size);
        let mut spec = vec![Complex::new(1.0, 0.0); size / 2 + 1];
        for (s, &n) in self.spectra.iter().zip(steps) {
            if n == 0 {
                continue;
            }
            spec.par_iter_mut()
                .zip(s.par_iter())
                .for_each(|(acc, &z)| *acc *= complex_powu(z, n));
        }
        // A real signal's DC and Nyquist bins are real; drop rounding-level imaginary parts.
        spec[0].im = 0.0;
        if let Some(last) = spec.last_mut() {
            last.im = 0.0;
        }
        let mut circ = ifft.make_output_vec();
        ifft.process(&mut spec, &mut circ)
            .map_err(|e| PrivacyError::Numerical(format!("inverse FFT failed: {e}")))?;
        // Sum of `total` variables indexed from −k: circular index J ↔ output J − (total−1)k.
        let m = size as u128;
        let r = (m - ((total as u128 - 1) % m) * (self.grid.k as u128) % m) % m;
        let r = r as usize;
        let norm = 1.0 / size as f64;
        let mut pmf = vec![0.0; size];
        for (j, v) in circ.iter().enumerate() {
            pmf[(j + r) % size] = v * norm;
        }
        let shift: f64 = steps.iter().zip(&self.mean_shifts).map(|(&n, s)| n as f64 * s).sum();
        Ok((pmf, shift))
    }
}

/// zⁿ by binary exponentiation (relative error O(log n · ε_mach)).
fn complex_powu(mut z: Complex<f64>, mut n: u64) -> Complex<f64> {
    let mut acc = Complex::new(1.0, 0.0);
    while n > 0 {
        if n & 1 == 1 {
            acc *= z;
        }
        z *= z;
        n >>= 1;
    }
    acc
}

/// Cell-centred discretisation of the PRV truncated to [t₀, t_{size−1}], with the mean shift
/// that makes the discrete mean equal the continuous (truncated) mean.
fn discretise(prv: &SubsampledGaussianPrv, grid: &Grid) -> Result<(Vec<f64>, f64)> {
    let size = grid.size;
    let t_min = grid.t(0);
    let t_max = grid.t(size - 1);
    let edges: Vec<(f64, f64)> = (0..=size)
        .into_par_iter()
        .map(|j| {
            let e = (grid.t(j) - 0.5 * grid.dt).clamp(t_min, t_max);
            prv.cdf_sf(e)
        })
        .collect();
    let mass = 1.0 - edges[0].0 - edges[size].1;
    if mass.is_nan() || mass <= 0.5 {
        return Err(PrivacyError::Numerical(format!(
            "PRV truncation to [{t_min}, {t_max}] keeps only {mass} of the mass"
        )));
    }
    let mut pmf: Vec<f64> = edges
        .par_windows(2)
        .map(|w| {
            let ((c0, s0), (c1, s1)) = (w[0], w[1]);
            let p = if c1 <= 0.5 { c1 - c0 } else { s0 - s1 };
            p.max(0.0) / mass
        })
        .collect();
    let mean_c = prv.partial_mean(t_min, t_max)? / mass;
    let mut mean_d = NeumaierSum::default();
    for (j, p) in pmf.iter().enumerate() {
        mean_d.add(grid.t(j) * p);
    }
    let shift = mean_c - mean_d.value();
    if shift.is_nan() || shift.abs() >= 0.5 * grid.dt {
        return Err(PrivacyError::Numerical(format!(
            "discrete PRV mean differs from the continuous one by {shift} (mesh {})",
            grid.dt
        )));
    }
    // Tiny renormalisation so the pmf sums to one despite rounding.
    let mut total = NeumaierSum::default();
    pmf.iter().for_each(|&p| total.add(p));
    let total = total.value();
    pmf.iter_mut().for_each(|p| *p /= total);
    Ok((pmf, shift))
}

/// Suffix sums that give δ(ε) = Σ_{t_j ≥ ε} p_j (1 − e^{ε − t_j}) in closed form between mesh
/// points; stored relative to t_j (Sᵢ = Σ_{j≥i} p_j e^{t_i − t_j}) so nothing overflows when
/// the domain reaches e^{±700}.
struct DeltaCurve {
    t0: f64,
    dt: f64,
    d1: Vec<f64>,
    s: Vec<f64>,
}

impl DeltaCurve {
    fn new(pmf: &[f64], grid: Grid, shift: f64) -> Self {
        let n = pmf.len();
        let mut d1 = vec![0.0; n];
        let mut s = vec![0.0; n];
        let decay = (-grid.dt).exp();
        let mut tail = NeumaierSum::default();
        let mut acc = 0.0;
        for i in (0..n).rev() {
            tail.add(pmf[i]);
            d1[i] = tail.value();
            acc = pmf[i] + decay * acc;
            s[i] = acc;
        }
        Self {
            t0: grid.t(0) + shift,
            dt: grid.dt,
            d1,
            s,
        }
    }

    fn t(&self, i: usize) -> f64 {
        self.t0 + i as f64 * self.dt
    }

    /// Smallest ε with δ(ε) ≤ `delta` (Microsoft's `find_epsilon`).
    fn epsilon(&self, delta: f64) -> Result<f64> {
        // −δ(t_i) = S_i − d1_i is non-decreasing in i: binary search like numpy's searchsorted.
        let n = self.d1.len();
        let i = partition_point(n, |i| self.s[i] - self.d1[i] < -delta);
        if i == 0 {
            return Err(PrivacyError::Numerical(
                "epsilon lies below the PRV domain (delta too large?)".into(),
            ));
        }
        if i >= n {
            return Err(PrivacyError::Numerical("epsilon lies above the PRV domain".into()));
        }
        let num = self.d1[i] - delta;
        if num <= 0.0 {
            // δ(ε) ≤ target already just right of t_{i−1}.
            return Ok(self.t(i - 1));
        }
        if self.s[i] <= 0.0 {
            return Ok(self.t(i));
        }
        Ok(self.t(i) + (num / self.s[i]).ln())
    }
}

fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Convenience: ε bounds of a sequence of phases for target δ.
pub fn prv_epsilon(phases: &[Phase], delta: f64, options: PrvOptions) -> Result<PrvEpsilon> {
    validate_delta(delta)?;
    let delta_error = options.delta_error_for(delta);
    PrvAccountant::new(phases, options.eps_error, delta_error)?.epsilon(delta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_sizes_are_even_and_smooth() {
        assert_eq!(fft_friendly_size(505_756), 506_250); // 2·3⁴·5⁵
        assert_eq!(fft_friendly_size(1), 2);
        assert_eq!(fft_friendly_size(14), 14);
        assert_eq!(fft_friendly_size(22), 24);
    }

    #[test]
    fn cdf_and_sf_are_complementary() {
        let prv = SubsampledGaussianPrv::new(0.01, 1.0);
        for &t in &[-0.009, -0.001, 0.0, 0.001, 0.5, 3.0] {
            let (c, s) = prv.cdf_sf(t);
            assert!((c + s - 1.0).abs() < 1e-15, "t={t}: {c} + {s}");
        }
        assert_eq!(prv.cdf_sf(-0.02), (0.0, 1.0));
    }

    #[test]
    fn untruncated_mean_is_kl_divergence() {
        // For q = 1 the loss is N(μ²/2, μ²) with μ = 1/σ, so E[Y] = 1/(2σ²).
        let prv = SubsampledGaussianPrv::new(1.0, 2.0);
        let m = prv.partial_mean(-1e3, 1e3).unwrap();
        assert!((m - 0.125).abs() < 1e-13, "{m}");
    }
}

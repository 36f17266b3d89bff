//! Per-unit gradient norms and clipped gradient sums from (layer input, output gradient)
//! pairs, without any ML framework.
//!
//! Every trainable layer privpkt uses is `z = a·W + b` applied at one or more positions per
//! example (a dense layer: one; a convolution: one per output position, `a` being the unfolded
//! input patch). With `A` the layer's input rows and `G` the gradient of the *summed* loss
//! with respect to `z` (one backward pass, see `dp-sgd` notes in the README), the gradient of
//! a group of rows is `Aᵀ G` for the weight and the column sums of `G` for the bias. A
//! *unit* is a contiguous run of examples (one packet, every sampled packet of a flow, or of a
//! capture): its gradient is the sum of its examples', so its squared norm is
//!
//! - `‖A_uᵀ G_u‖²` formed explicitly (`r·d_in·d_out` multiply-adds for `r` rows), or
//! - the "ghost norm" `⟨A_u A_uᵀ, G_u G_uᵀ⟩` (`r²·(d_in + d_out)`), cheaper when few rows
//!   feed a wide layer (`‖a‖²·‖g‖²` for one row),
//!
//! whichever costs less. The clipped sum `Σ_u c_u·∇_u` is one product `Aᵀ (c ⊙ G)`.
//! Convolutions over images are unfolded on the fly, a few examples at a time, so a batch of
//! 1500×1500 FlowPics never holds its column matrix whole.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::error::{PrivacyError, Result};
use crate::linalg::{gemm_into, Mat};

/// Column-matrix bytes unfolded at once when summing over image batches.
const UNFOLD_CHUNK_BYTES: usize = 64 << 20;

/// Where a layer's input rows come from.
#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    /// Row-major `[rows, d_in]`.
    Rows(&'a [f32]),
    /// `[n, channels, size·size]` images (NCHW) read as the rows of a `kernel`×`kernel`
    /// stride-`stride` unpadded convolution: row `(i, oy, ox)` holds the patch in
    /// (channel, ky, kx) order, the layout of a `[C_out, C_in, k, k]` weight's rows.
    Image {
        data: &'a [f32],
        channels: usize,
        size: usize,
        kernel: usize,
        stride: usize,
        out: usize,
    },
}

/// One trainable layer's input rows and output gradients for a batch.
#[derive(Debug, Clone, Copy)]
pub struct LayerPair<'a> {
    input: Input<'a>,
    d_in: usize,
    grad: &'a [f32],
    d_out: usize,
    rows_per_example: usize,
    examples: usize,
}

impl<'a> LayerPair<'a> {
    /// A layer whose input rows are given: `input` `[n·rows_per_example, d_in]`, `grad`
    /// `[n·rows_per_example, d_out]` (example-major). A dense layer has one row per example; a
    /// 1-D convolution one im2col row per output position.
    pub fn rows(input: &'a [f32], d_in: usize, grad: &'a [f32], d_out: usize, rows_per_example: usize) -> Result<Self> {
        if d_in == 0 || d_out == 0 || rows_per_example == 0 {
            return Err(PrivacyError::Shape(format!(
                "layer of {d_in} inputs, {d_out} outputs, {rows_per_example} rows per example"
            )));
        }
        let rows = grad.len() / d_out;
        if grad.len() % d_out != 0 || rows % rows_per_example != 0 || input.len() != rows * d_in {
            return Err(PrivacyError::Shape(format!(
                "input of {} values and gradient of {} values do not make rows of {d_in} and {d_out} \
                 in whole examples of {rows_per_example} rows",
                input.len(),
                grad.len()
            )));
        }
        Ok(LayerPair {
            input: Input::Rows(input),
            d_in,
            grad,
            d_out,
            rows_per_example,
            examples: rows / rows_per_example,
        })
    }

    /// An unpadded square 2-D convolution: `images` `[n, channels, size·size]`, `grad`
    /// `[n·out², d_out]` with `out = (size − kernel)/stride + 1` (example-major, then output
    /// row, then column). The weight gradient comes out as `[channels·kernel², d_out]`.
    pub fn conv2d(
        images: &'a [f32],
        channels: usize,
        size: usize,
        kernel: usize,
        stride: usize,
        grad: &'a [f32],
        d_out: usize,
    ) -> Result<Self> {
        if channels == 0 || kernel == 0 || stride == 0 || size < kernel || d_out == 0 {
            return Err(PrivacyError::Shape(format!(
                "convolution of {channels} channels, {size}×{size} images, kernel {kernel}, stride {stride}, \
                 {d_out} outputs"
            )));
        }
        let out = (size - kernel) / stride + 1;
        let per = channels * size * size;
        let n = images.len() / per;
        if images.len() % per != 0 || grad.len() != n * out * out * d_out {
            return Err(PrivacyError::Shape(format!(
                "{} image values and {} gradient values do not make whole examples of {per} and {}",
                images.len(),
                grad.len(),
                out * out * d_out
            )));
        }
        Ok(LayerPair {
            input: Input::Image {
                data: images,
                channels,
                size,
                kernel,
                stride,
                out,
            },
            d_in: channels * kernel * kernel,
            grad,
            d_out,
            rows_per_example: out * out,
            examples: n,
        })
    }

    /// Examples in the batch.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// Inputs per row (the weight gradient is `[d_in, d_out]`).
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Outputs per row.
    pub fn d_out(&self) -> usize {
        self.d_out
    }

    /// Input rows of examples `from..to`, `[(to − from)·rows_per_example, d_in]`.
    fn input_rows(&self, from: usize, to: usize) -> Cow<'a, [f32]> {
        let rpe = self.rows_per_example;
        match self.input {
            Input::Rows(d) => Cow::Borrowed(&d[from * rpe * self.d_in..to * rpe * self.d_in]),
            Input::Image {
                data,
                channels,
                size,
                kernel,
                stride,
                out,
            } => {
                let per = channels * size * size;
                let mut rows = vec![0f32; (to - from) * rpe * self.d_in];
                for (e, dst) in rows.chunks_mut(rpe * self.d_in).enumerate() {
                    let img = &data[(from + e) * per..][..per];
                    for (r, row) in dst.chunks_mut(self.d_in).enumerate() {
                        let (oy, ox) = (r / out, r % out);
                        let mut j = 0;
                        for c in 0..channels {
                            for ky in 0..kernel {
                                let start = c * size * size + (oy * stride + ky) * size + ox * stride;
                                row[j..j + kernel].copy_from_slice(&img[start..start + kernel]);
                                j += kernel;
                            }
                        }
                    }
                }
                Cow::Owned(rows)
            }
        }
    }

    fn grad_rows(&self, from: usize, to: usize) -> &'a [f32] {
        let w = self.rows_per_example * self.d_out;
        &self.grad[from * w..to * w]
    }

    /// Examples unfolded together when streaming over an image batch.
    fn chunk_examples(&self) -> usize {
        match self.input {
            Input::Rows(_) => self.examples.max(1),
            Input::Image { .. } => (UNFOLD_CHUNK_BYTES / (4 * self.rows_per_example * self.d_in).max(1)).max(1),
        }
    }
}

/// Checks that `offsets` splits `examples` examples into contiguous units.
pub fn check_units(offsets: &[usize], examples: usize) -> Result<()> {
    let ok =
        offsets.first() == Some(&0) && offsets.last() == Some(&examples) && offsets.windows(2).all(|w| w[0] <= w[1]);
    if ok {
        Ok(())
    } else {
        Err(PrivacyError::Shape(format!(
            "unit offsets must rise from 0 to the {examples} examples of the batch"
        )))
    }
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}

/// Per-unit squared gradient norms of one layer, and the unit weight gradients that were
/// formed explicitly on the way (kept, when they fit the memory budget, so the clipped sum is
/// a weighted sum of them instead of another product over every row).
#[derive(Debug, Clone, Default)]
pub struct LayerNorms {
    /// Squared norm of each unit's weight and bias gradient.
    pub sq: Vec<f64>,
    kept: Vec<Option<Vec<f32>>>,
}

impl LayerNorms {
    /// Units whose weight gradient was kept.
    pub fn kept_units(&self) -> usize {
        self.kept.iter().filter(|k| k.is_some()).count()
    }
}

/// Each unit's squared gradient norm for `layer` (weight and bias); unit `u` is examples
/// `offsets[u]..offsets[u + 1]`. Unit weight gradients formed explicitly are kept while their
/// total stays within `keep_bytes`.
pub fn unit_norms(layer: &LayerPair<'_>, offsets: &[usize], keep_bytes: usize) -> Result<LayerNorms> {
    check_units(offsets, layer.examples)?;
    let units = offsets.len() - 1;
    let (d_in, d_out, rpe) = (layer.d_in, layer.d_out, layer.rows_per_example);
    let explicit = |u: usize| {
        let rows = (offsets[u + 1] - offsets[u]) * rpe;
        rows > 1 && rows * (d_in + d_out) >= d_in * d_out
    };
    let n_explicit = (0..units).filter(|&u| explicit(u)).count();
    let keep = n_explicit > 0 && n_explicit * d_in * d_out * 4 <= keep_bytes;
    let per_unit: Vec<(f64, Option<Vec<f32>>)> = (0..units)
        .into_par_iter()
        .map(|u| {
            let (from, to) = (offsets[u], offsets[u + 1]);
            let rows = (to - from) * rpe;
            if rows == 0 {
                return (0.0, None);
            }
            let g = layer.grad_rows(from, to);
            // Bias: the squared norm of the unit's column sums.
            let mut bias = vec![0f64; d_out];
            for row in g.chunks_exact(d_out) {
                for (b, &v) in bias.iter_mut().zip(row) {
                    *b += f64::from(v);
                }
            }
            let sq: f64 = bias.iter().map(|b| b * b).sum();
            if rows == 1 {
                let a = layer.input_rows(from, to);
                return (sq + dot64(&a, &a) * dot64(g, g), None);
            }
            if !explicit(u) {
                // Ghost norm: ⟨A Aᵀ, G Gᵀ⟩ over the unit's rows.
                let a = layer.input_rows(from, to);
                let mut aa = vec![0f32; rows * rows];
                let mut gg = vec![0f32; rows * rows];
                let am = Mat::rows(&a, d_in);
                let gm = Mat::rows(g, d_out);
                gemm_into(&mut aa, rows, am, am.t(), [rows, rows, d_in], false, false);
                gemm_into(&mut gg, rows, gm, gm.t(), [rows, rows, d_out], false, false);
                return (sq + dot64(&aa, &gg), None);
            }
            // Materialise the unit's weight gradient, an example (or chunk) at a time.
            let mut w = vec![0f32; d_in * d_out];
            let step = layer.chunk_examples();
            let mut e = from;
            while e < to {
                let end = (e + step).min(to);
                let a = layer.input_rows(e, end);
                gemm_into(
                    &mut w,
                    d_out,
                    Mat::rows(&a, d_in).t(),
                    Mat::rows(layer.grad_rows(e, end), d_out),
                    [d_in, d_out, (end - e) * rpe],
                    e > from,
                    false,
                );
                e = end;
            }
            let sq = sq + w.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
            (sq, keep.then_some(w))
        })
        .collect();
    let (sq, kept) = per_unit.into_iter().unzip();
    Ok(LayerNorms { sq, kept })
}

/// `Σ_u factors[u]·∇_u` for `layer`: the weight gradient `[d_in, d_out]` and the bias
/// gradient `[d_out]`, each unit's gradient scaled by its clipping factor. Unit gradients
/// kept by [`unit_norms`] are summed directly; the other units' rows go through one product.
pub fn clipped_sum(
    layer: &LayerPair<'_>,
    offsets: &[usize],
    factors: &[f64],
    norms: Option<&LayerNorms>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    check_units(offsets, layer.examples)?;
    if factors.len() + 1 != offsets.len() {
        return Err(PrivacyError::Shape(format!(
            "{} clipping factors for {} units",
            factors.len(),
            offsets.len() - 1
        )));
    }
    let kept: Vec<Option<&Vec<f32>>> = match norms {
        Some(n) if n.kept.len() == factors.len() => n.kept.iter().map(Option::as_ref).collect(),
        Some(_) => return Err(PrivacyError::Shape("norms of another batch".into())),
        None => vec![None; factors.len()],
    };
    let (d_in, d_out, rpe) = (layer.d_in, layer.d_out, layer.rows_per_example);
    // Scale each row of G by its unit's factor (for the bias, and for the product over the
    // rows of units whose gradient was not kept).
    let mut scaled = vec![0f32; layer.grad.len()];
    let w = rpe * d_out;
    for (u, &c) in factors.iter().enumerate() {
        let (from, to) = (offsets[u] * w, offsets[u + 1] * w);
        let c = c as f32;
        scaled[from..to]
            .par_chunks_mut(w.max(1))
            .zip(layer.grad[from..to].par_chunks(w.max(1)))
            .for_each(|(d, s)| {
                for (d, s) in d.iter_mut().zip(s) {
                    *d = c * s;
                }
            });
    }
    let mut bias = vec![0f64; d_out];
    for row in scaled.chunks_exact(d_out) {
        for (b, &v) in bias.iter_mut().zip(row) {
            *b += f64::from(v);
        }
    }
    let mut weight = vec![0f32; d_in * d_out];
    // Kept unit gradients: a weighted sum, in unit order (deterministic), parallel over chunks
    // of the output.
    let kept_units: Vec<(f32, &Vec<f32>)> = kept
        .iter()
        .zip(factors)
        .filter_map(|(k, &c)| k.map(|k| (c as f32, k)))
        .collect();
    if !kept_units.is_empty() {
        const CHUNK: usize = 1 << 14;
        weight.par_chunks_mut(CHUNK).enumerate().for_each(|(i, out)| {
            for (c, k) in &kept_units {
                for (o, v) in out.iter_mut().zip(&k[i * CHUNK..]) {
                    *o += c * v;
                }
            }
        });
    }
    if kept.iter().any(Option::is_none) {
        // Rows of kept units must not count twice.
        for (u, k) in kept.iter().enumerate() {
            if k.is_some() {
                scaled[offsets[u] * w..offsets[u + 1] * w].fill(0.0);
            }
        }
        let step = layer.chunk_examples();
        let mut e = 0;
        while e < layer.examples {
            let end = (e + step).min(layer.examples);
            let a = layer.input_rows(e, end);
            gemm_into(
                &mut weight,
                d_out,
                Mat::rows(&a, d_in).t(),
                Mat::rows(&scaled[e * w..end * w], d_out),
                [d_in, d_out, (end - e) * rpe],
                true,
                true,
            );
            e = end;
        }
    }
    Ok((weight, bias.into_iter().map(|b| b as f32).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    /// Brute force in f64: each example's weight and bias gradient by explicit loops.
    fn per_example(a_rows: &[f32], g: &[f32], d_in: usize, d_out: usize, rpe: usize) -> Vec<Vec<f64>> {
        let n = g.len() / (rpe * d_out);
        (0..n)
            .map(|i| {
                let mut v = vec![0f64; d_in * d_out + d_out];
                for r in i * rpe..(i + 1) * rpe {
                    for p in 0..d_in {
                        for o in 0..d_out {
                            v[p * d_out + o] += f64::from(a_rows[r * d_in + p]) * f64::from(g[r * d_out + o]);
                        }
                    }
                    for o in 0..d_out {
                        v[d_in * d_out + o] += f64::from(g[r * d_out + o]);
                    }
                }
                v
            })
            .collect()
    }

    fn check(a_rows: &[f32], layer: &LayerPair<'_>, offsets: &[usize], clip: f64) {
        let (d_in, d_out) = (layer.d_in(), layer.d_out());
        let ex = per_example(a_rows, layer.grad, d_in, d_out, layer.rows_per_example);
        let units: Vec<Vec<f64>> = offsets
            .windows(2)
            .map(|w| {
                let mut s = vec![0f64; d_in * d_out + d_out];
                for e in &ex[w[0]..w[1]] {
                    for (s, v) in s.iter_mut().zip(e) {
                        *s += v;
                    }
                }
                s
            })
            .collect();
        // Keeping the formed unit gradients or not gives the same norms.
        let sq = unit_norms(layer, offsets, 0).unwrap().sq;
        let norms = unit_norms(layer, offsets, usize::MAX).unwrap();
        assert_eq!(norms.sq, sq);
        let mut factors = Vec::new();
        for (u, want) in units.iter().enumerate() {
            let want_sq: f64 = want.iter().map(|v| v * v).sum();
            assert!(
                (sq[u] - want_sq).abs() <= 1e-4 * want_sq.max(1e-12),
                "unit {u}: {} vs {want_sq}",
                sq[u]
            );
            factors.push((clip / want_sq.sqrt()).min(1.0));
        }
        let (w, b) = clipped_sum(layer, offsets, &factors, None).unwrap();
        let (wk, bk) = clipped_sum(layer, offsets, &factors, Some(&norms)).unwrap();
        for (x, y) in w.iter().chain(&b).zip(wk.iter().chain(&bk)) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "kept and recomputed sums differ: {x} vs {y}"
            );
        }
        let mut want = vec![0f64; d_in * d_out + d_out];
        for (u, g) in units.iter().enumerate() {
            let clipped: f64 = g.iter().map(|v| (v * factors[u]).powi(2)).sum::<f64>().sqrt();
            assert!(
                clipped <= clip * (1.0 + 1e-9),
                "clipped contribution {clipped} > {clip}"
            );
            for (s, v) in want.iter_mut().zip(g) {
                *s += v * factors[u];
            }
        }
        let got: Vec<f64> = w.iter().chain(&b).map(|&v| f64::from(v)).collect();
        let scale = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let err = got.iter().zip(&want).map(|(g, w)| (g - w).powi(2)).sum::<f64>().sqrt();
        assert!(err <= 1e-4 * scale, "clipped sum off by {err} (norm {scale})");
    }

    #[test]
    fn dense_layers_one_row_per_example() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (n, d_in, d_out) = (7, 13, 5);
        let a = random(n * d_in, &mut rng);
        let g = random(n * d_out, &mut rng);
        let layer = LayerPair::rows(&a, d_in, &g, d_out, 1).unwrap();
        // Every example its own unit, then units of several examples (ghost and explicit).
        check(&a, &layer, &[0, 1, 2, 3, 4, 5, 6, 7], 0.5);
        check(&a, &layer, &[0, 3, 3, 4, 7], 0.5);
        check(&a, &layer, &[0, 7], 100.0);
    }

    #[test]
    fn conv_rows_both_norm_routes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // Wide layer with few rows (ghost) and narrow with many rows (explicit).
        for (d_in, d_out, rpe) in [(40, 30, 3), (3, 4, 9)] {
            let n = 5;
            let a = random(n * rpe * d_in, &mut rng);
            let g = random(n * rpe * d_out, &mut rng);
            let layer = LayerPair::rows(&a, d_in, &g, d_out, rpe).unwrap();
            check(&a, &layer, &[0, 1, 2, 3, 4, 5], 1.0);
            check(&a, &layer, &[0, 2, 5], 1.0);
        }
    }

    #[test]
    fn units_of_mixed_routes_in_one_layer() {
        // Rows ≥ 7 are formed explicitly (and kept), fewer go through the ghost norm.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (n, d_in, d_out, rpe) = (6, 20, 10, 2);
        let a = random(n * rpe * d_in, &mut rng);
        let g = random(n * rpe * d_out, &mut rng);
        let layer = LayerPair::rows(&a, d_in, &g, d_out, rpe).unwrap();
        let offsets = [0, 1, 5, 6];
        assert_eq!(unit_norms(&layer, &offsets, usize::MAX).unwrap().kept_units(), 1);
        assert_eq!(unit_norms(&layer, &offsets, 10).unwrap().kept_units(), 0);
        check(&a, &layer, &offsets, 0.8);
    }

    #[test]
    fn conv2d_images_are_unfolded_like_a_convolution() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, ch, size, k, s, d_out) = (4, 2, 7, 3, 2, 5);
        let out = (size - k) / s + 1;
        let img = random(n * ch * size * size, &mut rng);
        let g = random(n * out * out * d_out, &mut rng);
        // Reference column matrix built independently.
        let mut rows = Vec::new();
        for i in 0..n {
            for oy in 0..out {
                for ox in 0..out {
                    for c in 0..ch {
                        for ky in 0..k {
                            for kx in 0..k {
                                rows.push(
                                    img[i * ch * size * size + c * size * size + (oy * s + ky) * size + ox * s + kx],
                                );
                            }
                        }
                    }
                }
            }
        }
        let layer = LayerPair::conv2d(&img, ch, size, k, s, &g, d_out).unwrap();
        assert_eq!(layer.input_rows(0, n).as_ref(), &rows[..]);
        check(&rows, &layer, &[0, 1, 2, 3, 4], 0.3);
        check(&rows, &layer, &[0, 3, 4], 0.3);
    }

    #[test]
    fn shapes_are_checked() {
        let a = vec![0f32; 6];
        let g = vec![0f32; 4];
        assert!(LayerPair::rows(&a, 3, &g, 2, 1).is_ok());
        assert!(LayerPair::rows(&a, 4, &g, 2, 1).is_err());
        assert!(LayerPair::rows(&a, 3, &g, 2, 3).is_err());
        let layer = LayerPair::rows(&a, 3, &g, 2, 1).unwrap();
        assert!(unit_norms(&layer, &[0, 1], 0).is_err());
        assert!(unit_norms(&layer, &[0, 2, 1], 0).is_err());
        assert!(clipped_sum(&layer, &[0, 1, 2], &[1.0], None).is_err());
        assert!(LayerPair::conv2d(&a, 1, 2, 3, 1, &g, 1).is_err());
    }
}

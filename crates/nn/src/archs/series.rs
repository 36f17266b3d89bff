//! The packet-series network: what a flow's first packets do, read by 1-D convolutions.
//!
//! Three branches meet in a small head:
//! - **convolutions** over the series: each packet's inputs (behaviour channels and, for the
//!   hybrid, its payload bits) first projected to 64 values (a 1-wide convolution: a packet
//!   embedding), then two 3-wide convolutions of 64 filters, then the maximum and the mean
//!   over the windows that start inside the flow (masked, so a 3-packet flow and a 30-packet
//!   flow are pooled alike);
//! - **the first packets** ([`FIRST_PACKETS`]) in order, flattened: where a handshake's sizes
//!   and directions sit matters, and pooling forgets positions;
//! - **flow statistics**, when the samples carry them.
//!
//! Each branch ends in 64 ReLU units; then dense `fc` 128 (ReLU, dropout 0.1) → `out`.
//! About 0.2 M parameters on 30-packet series with statistics: small, as DP-SGD wants.

use burn::tensor::activation::relu;
use burn::tensor::{Slice, Tensor, TensorData};
use privpkt_privacy::linalg::{gemm_into, Mat};
use rayon::prelude::*;

use super::deeppacket::{column_sums, host, im2col};
use super::{dense_specs, Architecture};
use crate::arch::{encoded_packet_width, Arch, InputSpec, BINNED_CHANNELS, PLAIN_CHANNELS};
use crate::error::{NnError, Result};
use crate::model::{
    conv1d_im2col, dense, dropout, BlockGrads, BlockLayer, ConvImpl, HandBlock, Mode, Network, ParamSpec,
};

/// Filters of each convolution.
const FILTERS: usize = 64;
/// Widths of the convolutions (stride 1, no padding): a packet embedding, then two 3-wide.
const KERNELS: [usize; 3] = [1, 3, 3];
/// Packets of the flattened branch.
pub const FIRST_PACKETS: usize = 10;
/// Units at the end of each branch, and of the head.
const BRANCH: usize = 64;
const HEAD: usize = 128;
const DROPOUT: f64 = 0.1;

/// The packet-series network.
pub struct SeriesCnn;

/// Behaviour inputs of a packet, without its payload bits.
fn packet_behaviour(input: &InputSpec) -> usize {
    PLAIN_CHANNELS + BINNED_CHANNELS * input.bins()
}

/// Series length, encoded inputs per packet and encoded statistics of a behaviour input.
fn layout(input: &InputSpec) -> (usize, usize, usize) {
    input
        .behaviour_layout()
        .map_or((0, 0, 0), |(packets, payload_bytes, stats)| {
            (
                packets,
                encoded_packet_width(payload_bytes, input.bins()),
                stats * input.bins(),
            )
        })
}

/// Packets a window of the last convolution spans.
const SPAN: usize = 1 + (KERNELS[0] - 1) + (KERNELS[1] - 1) + (KERNELS[2] - 1);

/// Windows left after the convolutions.
fn windows(packets: usize) -> usize {
    packets + 1 - SPAN
}

impl Architecture for SeriesCnn {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        let min = SPAN;
        match *input {
            InputSpec::Behaviour { packets, .. } if packets >= min => Ok(()),
            InputSpec::Behaviour { packets, .. } => Err(NnError::Incompatible(format!(
                "{} reads series of at least {min} packets, the data has {packets} (prepare with --packets {min} or \
                 more, or use mlp / logistic)",
                Arch::SeriesCnn
            ))),
            other => Err(NnError::Incompatible(format!(
                "{} takes flow behaviour samples with a packet series, not {}",
                Arch::SeriesCnn,
                other.representation()
            ))),
        }
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        let (packets, channels, stats) = layout(input);
        let mut v = Vec::new();
        let mut cin = channels;
        for (i, k) in KERNELS.into_iter().enumerate() {
            dense_specs(&mut v, &format!("conv{}", i + 1), k * cin, FILTERS);
            cin = FILTERS;
        }
        dense_specs(
            &mut v,
            "first",
            packets.min(FIRST_PACKETS) * packet_behaviour(input),
            BRANCH,
        );
        let mut head_in = 2 * FILTERS + BRANCH;
        if stats > 0 {
            dense_specs(&mut v, "stats", stats, BRANCH);
            head_in += BRANCH;
        }
        dense_specs(&mut v, "fc", head_in, HEAD);
        dense_specs(&mut v, "out", HEAD, classes);
        v
    }

    fn forward(&self, net: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let (packets, channels, stats) = layout(&net.input);
        let behaviour = packet_behaviour(&net.input);
        let [n, _] = x.dims();
        let series_len = packets * channels;
        let first_n = packets.min(FIRST_PACKETS);
        let (pooled, first, stats_in) = match net.conv {
            // The convolutions and the masked pooling by hand, as Deep Packet's block (with probes
            // too, when the caller takes the block: its pairs are DP-SGD's per-example inputs).
            ConvImpl::Im2col if !x.is_tracked() && (mode.probes.is_none() || mode.conv_block.is_some()) => {
                let device = x.device().without_autodiff();
                let data = x.into_data();
                let xs = data.as_slice::<f32>().expect("f32 input");
                let block = SeriesBlock::new(p, xs, n, packets, channels, mode.conv_block.is_some());
                let f = Tensor::<2>::from_data(TensorData::new(block.features.clone(), [n, 2 * FILTERS]), &device);
                let f = match mode.conv_block.as_deref_mut() {
                    Some(out) => {
                        let f = f.autodiff().require_grad();
                        *out = Some((Box::new(block), f.clone()));
                        f
                    }
                    None => f,
                };
                // The other branches' inputs, gathered from the rows directly.
                let row = xs.len() / n.max(1);
                let gather = |width: usize, pick: &(dyn Fn(&[f32], &mut [f32]) + Sync)| {
                    let mut v = vec![0f32; n * width];
                    v.par_chunks_mut(width.max(1))
                        .zip(xs.par_chunks(row.max(1)))
                        .for_each(|(d, r)| pick(r, d));
                    Tensor::<2>::from_data(TensorData::new(v, [n, width]), &device)
                };
                let first = gather(first_n * behaviour, &|r, d| {
                    for (j, d) in d.chunks_exact_mut(behaviour).enumerate() {
                        d.copy_from_slice(&r[j * channels..][..behaviour]);
                    }
                });
                let s = (stats > 0).then(|| gather(stats, &|r, d| d.copy_from_slice(&r[series_len..])));
                (f, first, s)
            }
            _ => {
                let series = x
                    .clone()
                    .slice([Slice::from(..), Slice::from(..series_len)])
                    .reshape([n, packets, channels]);
                let mut h = series.clone();
                for (i, k) in KERNELS.into_iter().enumerate() {
                    h = relu(conv1d_im2col(p, 2 * i, h, k, 1, mode));
                }
                // A window counts when its first packet exists (channel 0 is the presence mask).
                let w = windows(packets);
                let mask = series
                    .clone()
                    .slice([Slice::from(..), Slice::from(..w), Slice::from(..1)])
                    .detach();
                let h = h * mask.clone();
                let max = h.clone().max_dim(1).reshape([n, FILTERS]);
                let count = mask.sum_dim(1).clamp_min(1.0).reshape([n, 1]);
                let mean = h.sum_dim(1).reshape([n, FILTERS]) / count;
                let first = series
                    .slice([Slice::from(..), Slice::from(..first_n), Slice::from(..behaviour)])
                    .reshape([n, first_n * behaviour]);
                let s = (stats > 0).then(|| x.slice([Slice::from(..), Slice::from(series_len..)]));
                (Tensor::cat(vec![max, mean], 1), first, s)
            }
        };
        let mut next = 2 * KERNELS.len();
        let first = relu(dense(p, next, first, mode));
        next += 2;
        let mut parts = vec![pooled, first];
        if let Some(s) = stats_in {
            parts.push(relu(dense(p, next, s, mode)));
            next += 2;
        }
        let h = Tensor::cat(parts, 1);
        let h = dropout(relu(dense(p, next, h, mode)), DROPOUT, mode);
        dense(p, next + 2, h, mode)
    }
}

/// The series network's convolutions (packet embedding, two 3-wide convolutions, ReLUs) and
/// masked max and mean pooling, computed outside autodiff (see [`HandBlock`]).
///
/// Channels-last, a window of a stride-1 convolution is one contiguous run of `k·C` values,
/// so each column matrix is row copies, and conv1's (1-wide) is the series itself.
#[derive(Debug, Clone)]
pub struct SeriesBlock {
    n: usize,
    /// Rows per example of each convolution: its output positions.
    lens: [usize; 3],
    /// Inputs per row of each convolution.
    d_in: [usize; 3],
    /// Column matrices `[N·lens[i], d_in[i]]` (empty unless kept for the backward pass).
    cols: [Vec<f32>; 3],
    /// ReLU outputs `[N·lens[i], FILTERS]` (their signs are the ReLU masks).
    acts: [Vec<f32>; 3],
    /// Window presence `[N, lens[2]]`, and windows present per example (at least 1).
    mask: Vec<f32>,
    count: Vec<f32>,
    /// Window of each example's maximum, per filter `[N, FILTERS]` (the first on ties).
    argmax: Vec<u32>,
    /// `[N, 2·FILTERS]`: the maxima, then the means.
    pub features: Vec<f32>,
}

impl SeriesBlock {
    /// Run on `x` `[N, features]` (scaled behaviour inputs, row-major) whose series are
    /// `packets` × `channels`; `for_backward` keeps the column matrices.
    pub fn new(p: &[Tensor<1>], x: &[f32], n: usize, packets: usize, channels: usize, for_backward: bool) -> Self {
        let features_len = x.len() / n.max(1);
        let mut lens = [0; 3];
        let mut d_in = [0; 3];
        let mut cols: [Vec<f32>; 3] = Default::default();
        let mut acts: [Vec<f32>; 3] = Default::default();
        let (mut len, mut cin) = (packets, channels);
        for (i, k) in KERNELS.into_iter().enumerate() {
            let lout = len + 1 - k;
            let c = if i == 0 {
                // The series rows of each example, without its statistics.
                let mut c = vec![0f32; n * packets * channels];
                c.par_chunks_mut(packets * channels)
                    .zip(x.par_chunks(features_len.max(1)))
                    .for_each(|(d, s)| d.copy_from_slice(&s[..packets * channels]));
                c
            } else {
                im2col(&acts[i - 1], [n, len, cin], k, 1)
            };
            let (w, b) = (host(p[2 * i].clone()), host(p[2 * i + 1].clone()));
            let mut z = vec![0f32; n * lout * FILTERS];
            gemm_into(
                &mut z,
                FILTERS,
                Mat::rows(&c, k * cin),
                Mat::rows(&w, FILTERS),
                [n * lout, FILTERS, k * cin],
                false,
                true,
            );
            z.par_chunks_mut(FILTERS).for_each(|row| {
                for (v, b) in row.iter_mut().zip(&b) {
                    *v = (*v + b).max(0.0);
                }
            });
            lens[i] = lout;
            d_in[i] = k * cin;
            acts[i] = z;
            if for_backward {
                cols[i] = c;
            }
            (len, cin) = (lout, FILTERS);
        }
        // A window counts when its first packet exists (channel 0 is the presence mask).
        let w = lens[2];
        debug_assert_eq!(w, windows(packets));
        let mut mask = vec![0f32; n * w];
        for (b, m) in mask.chunks_mut(w).enumerate() {
            for (j, m) in m.iter_mut().enumerate() {
                *m = x[b * features_len + j * channels];
            }
        }
        let count: Vec<f32> = mask.chunks(w).map(|m| m.iter().sum::<f32>().max(1.0)).collect();
        let mut features = vec![0f32; n * 2 * FILTERS];
        let mut argmax = vec![0u32; n * FILTERS];
        features
            .par_chunks_mut(2 * FILTERS)
            .zip(argmax.par_chunks_mut(FILTERS))
            .enumerate()
            .for_each(|(b, (f, am))| {
                let (max, mean) = f.split_at_mut(FILTERS);
                let h = &acts[2][b * w * FILTERS..][..w * FILTERS];
                let m = &mask[b * w..][..w];
                for (j, (row, &mj)) in h.chunks_exact(FILTERS).zip(m).enumerate() {
                    for ch in 0..FILTERS {
                        let v = row[ch] * mj;
                        if j == 0 || v > max[ch] {
                            max[ch] = v;
                            am[ch] = j as u32;
                        }
                        mean[ch] += v;
                    }
                }
                mean.iter_mut().for_each(|v| *v /= count[b]);
            });
        SeriesBlock {
            n,
            lens,
            d_in,
            cols,
            acts,
            mask,
            count,
            argmax,
            features,
        }
    }
}

/// Gradient of a stride-1 convolution's input `[N, l_in, c_in]` from its output gradient `g`
/// `[N, l_out, c_out]` and weight `w` `[k·c_in, c_out]`, through the ReLU whose output `act`
/// was that input: the column gradient `G · Wᵀ` in one product over the whole batch (small
/// per-example products run at a fraction of the kernels' speed), then its overlap-add.
fn conv_input_grad(g: &[f32], w: &[f32], act: &[f32], n: usize, [l_in, l_out, k]: [usize; 3], c_in: usize) -> Vec<f32> {
    let c_out = FILTERS;
    let width = k * c_in;
    let mut dcols = vec![0f32; n * l_out * width];
    gemm_into(
        &mut dcols,
        width,
        Mat::rows(g, c_out),
        Mat::rows(w, c_out).t(),
        [n * l_out, width, c_out],
        false,
        true,
    );
    let mut d = vec![0f32; n * l_in * c_in];
    d.par_chunks_mut(l_in * c_in).enumerate().for_each(|(b, dst)| {
        let cols = &dcols[b * l_out * width..][..l_out * width];
        for (j, row) in cols.chunks_exact(width).enumerate() {
            for (v, s) in dst[j * c_in..(j + k) * c_in].iter_mut().zip(row) {
                *v += s;
            }
        }
        for (d, &a) in dst.iter_mut().zip(&act[b * l_in * c_in..][..l_in * c_in]) {
            if a <= 0.0 {
                *d = 0.0;
            }
        }
    });
    d
}

impl HandBlock for SeriesBlock {
    fn layers(&self) -> Vec<BlockLayer<'_>> {
        (0..3)
            .map(|i| BlockLayer {
                weight: 2 * i,
                input: &self.cols[i],
                d_in: self.d_in[i],
                rows_per_example: self.lens[i],
            })
            .collect()
    }

    fn backward(&self, p: &[Tensor<1>], d_features: &[f32], param_grads: bool) -> BlockGrads {
        let (n, w) = (self.n, self.lens[2]);
        // Pooling (max to its window, mean to every present window), the mask, then ReLU.
        let mut g3 = vec![0f32; n * w * FILTERS];
        g3.par_chunks_mut(w * FILTERS).enumerate().for_each(|(b, g)| {
            let df = &d_features[b * 2 * FILTERS..][..2 * FILTERS];
            let am = &self.argmax[b * FILTERS..][..FILTERS];
            let h = &self.acts[2][b * w * FILTERS..][..w * FILTERS];
            for (j, (row, hrow)) in g.chunks_exact_mut(FILTERS).zip(h.chunks_exact(FILTERS)).enumerate() {
                let mj = self.mask[b * w + j];
                for ch in 0..FILTERS {
                    if hrow[ch] > 0.0 {
                        let max = if am[ch] as usize == j { df[ch] } else { 0.0 };
                        row[ch] = (max + df[FILTERS + ch] / self.count[b]) * mj;
                    }
                }
            }
        });
        let w3 = host(p[4].clone());
        let g2 = conv_input_grad(&g3, &w3, &self.acts[1], n, [self.lens[1], w, KERNELS[2]], FILTERS);
        let w2 = host(p[2].clone());
        let g1 = conv_input_grad(
            &g2,
            &w2,
            &self.acts[0],
            n,
            [self.lens[0], self.lens[1], KERNELS[1]],
            FILTERS,
        );
        let layers = vec![g1, g2, g3];
        if !param_grads {
            return BlockGrads {
                params: Vec::new(),
                layers,
            };
        }
        let mut params = Vec::with_capacity(6);
        for (i, g) in layers.iter().enumerate() {
            let mut dw = vec![0f32; self.d_in[i] * FILTERS];
            gemm_into(
                &mut dw,
                FILTERS,
                Mat::rows(&self.cols[i], self.d_in[i]).t(),
                Mat::rows(g, FILTERS),
                [self.d_in[i], FILTERS, n * self.lens[i]],
                false,
                true,
            );
            params.push(dw);
            params.push(column_sums(g, n, FILTERS));
        }
        BlockGrads { params, layers }
    }
}

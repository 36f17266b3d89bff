//! Deep Packet's 1-D CNNs (Lotfollahi et al., "Deep Packet", Soft Computing 2020): application
//! identification (conv 200×k4 s3 → conv 200×k5 s1) and traffic characterisation (k5 s3 → k4
//! s3), each followed by max-pool 2 and FC 200-100-50 with dropout 0.05, on 1500-byte vectors.
//!
//! On the CPU the convolution block runs outside autodiff ([`ConvBlock`], differentiated by
//! hand); its (columns, output gradient) pairs are DP-SGD's per-example inputs.

use burn::tensor::activation::relu;
use burn::tensor::module::max_pool1d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Slice, Tensor, TensorData};
use privpkt_capture::VECTOR_LEN;
use rayon::prelude::*;

use privpkt_privacy::linalg::{gemm_into, Mat};

use super::{dense_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::{NnError, Result};
use crate::model::{
    conv1d_burn, conv1d_im2col, conv_out, dense, dropout, BlockGrads, BlockLayer, ConvImpl, HandBlock, Mode, Network,
    ParamSpec,
};

/// Width of Deep Packet's convolutions.
const DP_FILTERS: usize = 200;
/// Deep Packet's fully connected layers.
const DP_FC: [usize; 3] = [200, 100, 50];
/// Deep Packet's dropout rate.
pub(crate) const DP_DROPOUT: f64 = 0.05;

/// One of Deep Packet's CNNs: kernel and stride of its two convolutions.
pub struct DeepPacketCnn {
    arch: Arch,
    convs: [(usize, usize); 2],
}

/// The application-identification CNN.
pub static APP: DeepPacketCnn = DeepPacketCnn {
    arch: Arch::DeepPacketApp,
    convs: [(4, 3), (5, 1)],
};
/// The traffic-characterisation CNN.
pub static TRAFFIC: DeepPacketCnn = DeepPacketCnn {
    arch: Arch::DeepPacketTraffic,
    convs: [(5, 3), (4, 3)],
};

fn cnn(arch: Arch) -> &'static DeepPacketCnn {
    match arch {
        Arch::DeepPacketTraffic => &TRAFFIC,
        _ => &APP,
    }
}

impl DeepPacketCnn {
    /// Sequence lengths after conv1, conv2 and the pool.
    fn lens(&self, input: &InputSpec) -> [usize; 3] {
        let [(k1, s1), (k2, s2)] = self.convs;
        let l1 = conv_out(input.features(), k1, s1);
        let l2 = conv_out(l1, k2, s2);
        [l1, l2, l2 / 2]
    }
}

impl Architecture for DeepPacketCnn {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        deeppacket_input(self.arch, input)
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        let [(k1, _), (k2, _)] = self.convs;
        let [_, _, pooled] = self.lens(input);
        dense_specs(&mut v, "conv1", k1, DP_FILTERS);
        dense_specs(&mut v, "conv2", k2 * DP_FILTERS, DP_FILTERS);
        let mut din = pooled * DP_FILTERS;
        for (i, d) in DP_FC.into_iter().enumerate() {
            dense_specs(&mut v, &format!("fc{}", i + 1), din, d);
            din = d;
        }
        dense_specs(&mut v, "out", din, classes);
        v
    }

    fn forward(&self, net: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let [n, len] = x.dims();
        let [(k1, s1), (k2, s2)] = self.convs;
        let [_, l2, pooled] = self.lens(&net.input);
        let h = match net.conv {
            // With probes (DP-SGD) the block still runs by hand when the caller takes it: its
            // (columns, output gradient) pairs are the per-example inputs of the DP engine.
            ConvImpl::Im2col if !x.is_tracked() && (mode.probes.is_none() || mode.conv_block.is_some()) => {
                let block = net.conv_block(p, &x, mode.conv_block.is_some());
                let f = Tensor::<2>::from_data(
                    TensorData::new(block.features.clone(), [n, pooled * DP_FILTERS]),
                    &x.device().without_autodiff(),
                );
                match mode.conv_block.as_deref_mut() {
                    Some(out) => {
                        let f = f.autodiff().require_grad();
                        *out = Some((Box::new(block), f.clone()));
                        f
                    }
                    None => f,
                }
            }
            ConvImpl::Im2col | ConvImpl::Im2colAutodiff => {
                let h = relu(conv1d_im2col(p, 0, x.reshape([n, len, 1]), k1, s1, mode));
                let h = relu(conv1d_im2col(p, 2, h, k2, s2, mode));
                // Max-pool 2 along L, channels-last: pair rows (2j, 2j+1) side by side.
                let h = h
                    .slice([Slice::from(..), Slice::from(..2 * pooled), Slice::from(..)])
                    .reshape([n, pooled, 2 * DP_FILTERS]);
                let a = h
                    .clone()
                    .slice([Slice::from(..), Slice::from(..), Slice::from(..DP_FILTERS)]);
                let b = h.slice([Slice::from(..), Slice::from(..), Slice::from(DP_FILTERS..)]);
                a.max_pair(b).reshape([n, pooled * DP_FILTERS])
            }
            ConvImpl::Burn => {
                let h = relu(conv1d_burn(p, 0, x.reshape([n, 1, len]), k1, s1, 1));
                let h = relu(conv1d_burn(p, 2, h, k2, s2, DP_FILTERS));
                debug_assert_eq!(h.dims()[2], l2);
                let h = max_pool1d(h, MaxPoolOptions::new([2]));
                // Same flattening order as the im2col path, so the weights are interchangeable.
                h.swap_dims(1, 2).reshape([n, pooled * DP_FILTERS])
            }
        };
        let mut h = h;
        for i in 0..DP_FC.len() {
            h = dense(p, 4 + 2 * i, h, mode);
            h = dropout(relu(h), DP_DROPOUT, mode);
        }
        dense(p, 4 + 2 * DP_FC.len(), h, mode)
    }

    fn eval_batch(&self, _: &InputSpec) -> usize {
        64
    }
}

/// Deep Packet models take 1500-byte vectors.
pub(crate) fn deeppacket_input(arch: Arch, input: &InputSpec) -> Result<()> {
    match input {
        InputSpec::DeepPacket { len } if *len == VECTOR_LEN => Ok(()),
        InputSpec::DeepPacket { len } => Err(NnError::Incompatible(format!(
            "{arch} takes Deep Packet vectors of {VECTOR_LEN} bytes, the data has {len}"
        ))),
        other => Err(NnError::Incompatible(format!(
            "{arch} does not take {} samples",
            other.representation()
        ))),
    }
}

/// Deep Packet's convolution block (conv1, ReLU, conv2, ReLU, max-pool 2) computed outside
/// autodiff, with what its backward pass needs.
///
/// Channels-last, every convolution window is one contiguous run of `k·C` values, so a column
/// matrix is row copies, and every product is one call of the `gemm` kernels burn itself uses
/// (straight into our buffers: burn's matmul zero-fills and copies each output). The layer
/// inputs (`cols1`, `cols2`) and output gradients ([`BlockGrads`]) are exactly the pairs a
/// per-example (DP-SGD) gradient needs.
#[derive(Debug, Clone)]
pub struct ConvBlock {
    n: usize,
    /// `[k1, s1, k2, s2, L1, L2, pooled]`.
    dims: [usize; 7],
    /// conv1 columns `[N·L1, k1]`.
    pub cols1: Vec<f32>,
    /// conv2 columns `[N·L2, k2·C]`.
    pub cols2: Vec<f32>,
    /// ReLU(conv1) `[N, L1, C]` (its sign is the ReLU mask).
    h1: Vec<f32>,
    /// Per pooled value: 0 when the pool's output is 0 (no gradient), else 1 + which of its
    /// two inputs won (the first on ties, as PyTorch and burn do).
    winners: Vec<u8>,
    /// Pooled features `[N, pooled·C]`, the head's input.
    pub features: Vec<f32>,
}

/// Column matrix `[N·L_out, k·C]` of `x` `[N, L, C]` flat.
pub(crate) fn im2col(x: &[f32], [n, len, c]: [usize; 3], k: usize, stride: usize) -> Vec<f32> {
    let lout = conv_out(len, k, stride);
    let w = k * c;
    let mut cols = vec![0f32; n * lout * w];
    cols.par_chunks_mut(w).enumerate().for_each(|(row, dst)| {
        let start = ((row / lout) * len + (row % lout) * stride) * c;
        dst.copy_from_slice(&x[start..start + w]);
    });
    cols
}

/// Column sums of `g` `[rows, c]`, summed per sample then over samples in order, so the
/// result does not depend on thread scheduling.
pub(crate) fn column_sums(g: &[f32], n: usize, c: usize) -> Vec<f32> {
    let per: Vec<Vec<f32>> = g
        .par_chunks(g.len() / n.max(1))
        .map(|s| {
            let mut acc = vec![0f32; c];
            for row in s.chunks_exact(c) {
                for (a, v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut out = vec![0f32; c];
    for s in per {
        for (a, v) in out.iter_mut().zip(s) {
            *a += v;
        }
    }
    out
}

/// A parameter tensor's values on the host.
pub(crate) fn host(t: Tensor<1>) -> Vec<f32> {
    t.inner().into_data().try_into_vec::<f32>().expect("f32 tensor")
}

impl Network {
    /// Run Deep Packet's convolution block on a plain (untracked) batch `x` `[N, 1500]`;
    /// `for_backward` keeps what [`ConvBlock::backward`] needs (conv2's column matrix).
    pub fn conv_block(&self, p: &[Tensor<1>], x: &Tensor<2>, for_backward: bool) -> ConvBlock {
        let [n, len] = x.dims();
        let dp = cnn(self.arch);
        let [(k1, s1), (k2, s2)] = dp.convs;
        let [l1, l2, pooled] = dp.lens(&self.input);
        let c = DP_FILTERS;
        let xs = x.clone().inner().into_data().try_into_vec::<f32>().expect("f32 input");
        let (w1, b1, w2, b2) = (
            host(p[0].clone()),
            host(p[1].clone()),
            host(p[2].clone()),
            host(p[3].clone()),
        );
        let cols1 = im2col(&xs, [n, len, 1], k1, s1);
        let mut h1 = vec![0f32; n * l1 * c];
        gemm_into(
            &mut h1,
            c,
            Mat::rows(&cols1, k1),
            Mat::rows(&w1, c),
            [n * l1, c, k1],
            false,
            true,
        );
        h1.par_chunks_mut(c).for_each(|row| {
            for (v, b) in row.iter_mut().zip(&b1) {
                *v = (*v + b).max(0.0);
            }
        });
        let mut z2 = vec![0f32; n * l2 * c];
        let cols2 = if for_backward {
            let cols2 = im2col(&h1, [n, l1, c], k2, s2);
            gemm_into(
                &mut z2,
                c,
                Mat::rows(&cols2, k2 * c),
                Mat::rows(&w2, c),
                [n * l2, c, k2 * c],
                false,
                true,
            );
            cols2
        } else {
            // Inference: channels-last, conv2's window j of an example is the contiguous run
            // h1[j·s2·C ..][.. k2·C], so its column matrix is h1 itself read with row stride
            // s2·C: no copy (the copy is N·L2·k2·C floats, 127 MB at batch 64).
            z2.par_chunks_mut(l2 * c).enumerate().for_each(|(b, z)| {
                let a = Mat {
                    data: &h1[b * l1 * c..(b + 1) * l1 * c],
                    rs: s2 * c,
                    cs: 1,
                };
                gemm_into(z, c, a, Mat::rows(&w2, c), [l2, c, k2 * c], false, false);
            });
            Vec::new()
        };
        let mut features = vec![0f32; n * pooled * c];
        let mut winners = vec![0u8; n * pooled * c];
        features
            .par_chunks_mut(pooled * c)
            .zip(winners.par_chunks_mut(pooled * c))
            .enumerate()
            .for_each(|(b, (f, w))| {
                for j in 0..pooled {
                    let r0 = &z2[(b * l2 + 2 * j) * c..][..c];
                    let r1 = &z2[(b * l2 + 2 * j + 1) * c..][..c];
                    for ch in 0..c {
                        let (y0, y1) = (r0[ch] + b2[ch], r1[ch] + b2[ch]);
                        let (m, which) = if y1 > y0 { (y1, 2) } else { (y0, 1) };
                        if m > 0.0 {
                            f[j * c + ch] = m;
                            w[j * c + ch] = which;
                        }
                    }
                }
            });
        ConvBlock {
            n,
            dims: [k1, s1, k2, s2, l1, l2, pooled],
            cols1,
            cols2,
            h1,
            winners,
            features,
        }
    }
}

impl HandBlock for ConvBlock {
    fn layers(&self) -> Vec<BlockLayer<'_>> {
        let [k1, _, k2, _, l1, l2, _] = self.dims;
        vec![
            BlockLayer {
                weight: 0,
                input: &self.cols1,
                d_in: k1,
                rows_per_example: l1,
            },
            BlockLayer {
                weight: 2,
                input: &self.cols2,
                d_in: k2 * DP_FILTERS,
                rows_per_example: l2,
            },
        ]
    }

    /// From the gradient of the pooled features `d_features` `[N, pooled·C]`; without
    /// `param_grads` only the layer output gradients are computed (DP-SGD forms its own
    /// clipped weight gradients).
    fn backward(&self, p: &[Tensor<1>], d_features: &[f32], param_grads: bool) -> BlockGrads {
        let [k1, _, k2, s2, l1, l2, pooled] = self.dims;
        let (n, c) = (self.n, DP_FILTERS);
        let w2 = host(p[2].clone());
        // Un-pool (and ReLU): the gradient goes to the winning input of each positive max.
        let mut g2 = vec![0f32; n * l2 * c];
        g2.par_chunks_mut(l2 * c).enumerate().for_each(|(b, g)| {
            let base = b * pooled * c;
            for j in 0..pooled {
                for ch in 0..c {
                    let i = base + j * c + ch;
                    match self.winners[i] {
                        1 => g[2 * j * c + ch] = d_features[i],
                        2 => g[(2 * j + 1) * c + ch] = d_features[i],
                        _ => {}
                    }
                }
            }
        });
        // conv2's input gradient, per sample: for each kernel offset i, rows i, i+s, ... of
        // dH1 gain G2_b · W2_iᵀ (the overlap-add of the column gradient, never materialised);
        // then ReLU's mask.
        let mut g1 = vec![0f32; n * l1 * c];
        g1.par_chunks_mut(l1 * c).enumerate().for_each(|(b, g)| {
            let gb = Mat::rows(&g2[b * l2 * c..][..l2 * c], c);
            for i in 0..k2 {
                let wi = Mat::rows(&w2[i * c * c..][..c * c], c).t();
                gemm_into(&mut g[i * c..], s2 * c, gb, wi, [l2, c, c], true, false);
            }
            let h = &self.h1[b * l1 * c..][..l1 * c];
            for (d, &h) in g.iter_mut().zip(h) {
                if h <= 0.0 {
                    *d = 0.0;
                }
            }
        });
        if !param_grads {
            return BlockGrads {
                params: Vec::new(),
                layers: vec![g1, g2],
            };
        }
        let mut dw2 = vec![0f32; k2 * c * c];
        let cols2 = Mat::rows(&self.cols2, k2 * c).t();
        gemm_into(&mut dw2, c, cols2, Mat::rows(&g2, c), [k2 * c, c, n * l2], false, true);
        let mut dw1 = vec![0f32; k1 * c];
        let cols1 = Mat::rows(&self.cols1, k1).t();
        gemm_into(&mut dw1, c, cols1, Mat::rows(&g1, c), [k1, c, n * l1], false, true);
        BlockGrads {
            params: vec![dw1, column_sums(&g1, n, c), dw2, column_sums(&g2, n, c)],
            layers: vec![g1, g2],
        }
    }
}

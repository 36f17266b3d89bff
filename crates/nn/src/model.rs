//! The networks as explicit parameter lists and forward functions.
//!
//! Every trainable layer is a weight and a bias applied by a matrix product (Deep Packet's
//! convolutions through im2col) or by burn's `conv2d` (FlowPic), never a stateful burn module:
//! the trainer owns plain `Vec<f32>` parameters (simple, exact checkpoints and optimizer
//! state). For per-example gradients (DP-SGD), [`Mode::probes`] returns each layer's input
//! together with a zero leaf added to its pre-activation, whose gradient is the per-example
//! output gradient; Deep Packet's hand-differentiated [`ConvBlock`] hands out the same pairs.
//!
//! Layouts: activations are channels-last (`[N, L, C]`), dense weights `[in, out]`, Deep Packet
//! conv weights `[k·C_in, C_out]` (kernel offset major), FlowPic conv weights burn's
//! `[C_out, C_in, k, k]`.

use burn::tensor::activation::{log_softmax, relu, softmax};
use burn::tensor::module::{conv1d, conv2d, max_pool1d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Slice, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use privpkt_privacy::linalg::{gemm_into, Mat};

use crate::arch::{Arch, InputSpec};
use crate::error::{NnError, Result};

/// Width of Deep Packet's convolutions.
const DP_FILTERS: usize = 200;
/// Deep Packet's fully connected layers.
const DP_FC: [usize; 3] = [200, 100, 50];
/// Deep Packet's dropout rate.
const DP_DROPOUT: f64 = 0.05;
/// Stacked autoencoder widths after the 1500-byte input.
pub const SAE_LAYERS: [usize; 5] = [400, 300, 200, 100, 50];
const FP_FILTERS: [usize; 2] = [10, 20];
const FP_DENSE: usize = 64;
const FP_DROPOUT: [f64; 2] = [0.25, 0.5];

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Inputs feeding one output unit: the initialisation bound is `1/sqrt(fan_in)`.
    pub fan_in: usize,
}

impl ParamSpec {
    fn new(name: &str, shape: Vec<usize>, fan_in: usize) -> Self {
        ParamSpec {
            name: name.to_string(),
            shape,
            fan_in,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A network's parameters, flat, in [`Network::param_specs`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub specs: Vec<ParamSpec>,
    pub values: Vec<Vec<f32>>,
}

impl Params {
    pub fn count(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }

    /// The parameters as 1-D tensors on `device`, gradient-tracked leaves if `grad` (the device
    /// must then be an autodiff one).
    pub fn tensors(&self, device: &Device, grad: bool) -> Vec<Tensor<1>> {
        self.values
            .iter()
            .map(|v| {
                let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), device);
                if grad {
                    t.require_grad()
                } else {
                    t
                }
            })
            .collect()
    }
}

/// How Deep Packet's 1-D convolutions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvImpl {
    /// im2col + matrix products with the whole convolution block (conv1, ReLU, conv2, ReLU,
    /// max-pool) differentiated by hand ([`ConvBlock`]): column matrices are plain memory
    /// copies (channels-last windows are contiguous), the backward pass is three products per
    /// layer plus an overlap-add, and autodiff only runs the fully connected head. Autodiff's
    /// own route through strided slices, concat, ReLU and pooling costs about as much as the
    /// convolutions' matrix products.
    #[default]
    Im2col,
    /// im2col from strided slices and a concat, differentiated entirely by autodiff.
    Im2colAutodiff,
    /// burn's `conv1d` / `max_pool1d` on `[N, C, L]`: the reference, kept for comparison.
    Burn,
}

/// What kind of layer a probe belongs to (how to turn it into a weight gradient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// `z = a·W + b` over `positions` rows per example: `input` `[N, P, in]`, probe `[N, P, out]`.
    Matmul,
    /// burn `conv2d` with square `kernel` and `stride`: `input` `[N, C_in, H·W]` (H = W =
    /// `in_size`), probe `[N, C_out, H_out·W_out]`.
    Conv2d {
        kernel: usize,
        stride: usize,
        in_size: usize,
    },
}

/// A trainable layer's input and a zero leaf added to its pre-activation: after `backward`,
/// `probe.grad()` is each example's gradient of the loss with respect to the layer output.
#[derive(Debug, Clone)]
pub struct Probe {
    pub weight: usize,
    pub bias: usize,
    pub kind: ProbeKind,
    pub input: Tensor<3>,
    pub probe: Tensor<3>,
}

/// Forward-pass options.
#[derive(Default)]
pub struct Mode<'a> {
    /// Dropout masks come from this generator (training); `None` is inference.
    pub dropout: Option<&'a mut ChaCha8Rng>,
    /// Collect a [`Probe`] per trainable layer (needs an autodiff device).
    pub probes: Option<&'a mut Vec<Probe>>,
    /// Deep Packet with [`ConvImpl::Im2col`]: receives the convolution block's saved state and
    /// its output, a gradient-tracked leaf, so the caller can finish the backward pass with
    /// [`ConvBlock::backward`].
    pub conv_block: Option<&'a mut Option<(ConvBlock, Tensor<2>)>>,
}

impl Mode<'_> {
    pub fn eval() -> Mode<'static> {
        Mode::default()
    }
}

/// Spatial sizes of a FlowPic CNN on R×R images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowPicDims {
    pub kernel: usize,
    pub stride: usize,
    pub conv1: usize,
    pub pool1: usize,
    pub conv2: usize,
    pub pool2: usize,
}

impl FlowPicDims {
    pub fn flat(&self) -> usize {
        FP_FILTERS[1] * self.pool2 * self.pool2
    }
}

pub(crate) fn flowpic_dims(arch: Arch, r: usize) -> Result<FlowPicDims> {
    let (kernel, stride) = match arch {
        Arch::FlowPic => (10, 5),
        Arch::FlowPicMini => (3, 1),
        _ => return Err(NnError::Config(format!("{arch} is not a FlowPic network"))),
    };
    let conv = |n: usize| (n >= kernel).then(|| (n - kernel) / stride + 1);
    let dims = conv(r).and_then(|conv1| {
        let pool1 = conv1 / 2;
        let conv2 = conv(pool1)?;
        let pool2 = conv2 / 2;
        (pool2 > 0).then_some(FlowPicDims {
            kernel,
            stride,
            conv1,
            pool1,
            conv2,
            pool2,
        })
    });
    dims.ok_or_else(|| {
        NnError::Incompatible(format!(
            "{r}×{r} FlowPics are too small for {arch} (two {kernel}×{kernel} stride-{stride} convolutions and 2×2 pools)"
        ))
    })
}

/// Kernel and stride of Deep Packet's two convolutions.
fn dp_convs(arch: Arch) -> [(usize, usize); 2] {
    match arch {
        Arch::DeepPacketTraffic => [(5, 3), (4, 3)],
        _ => [(4, 3), (5, 1)],
    }
}

fn conv_out(len: usize, k: usize, s: usize) -> usize {
    (len - k) / s + 1
}

/// An architecture instantiated for an input and a number of classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub arch: Arch,
    pub input: InputSpec,
    pub classes: usize,
    pub conv: ConvImpl,
}

impl Network {
    pub fn new(arch: Arch, input: InputSpec, classes: usize) -> Result<Network> {
        arch.check_input(&input)?;
        if classes < 2 {
            return Err(NnError::Config(format!(
                "a classifier needs at least 2 classes, got {classes}"
            )));
        }
        Ok(Network {
            arch,
            input,
            classes,
            // The hand-written block computes on host memory: right for the CPU, a round trip
            // on a GPU, where autodiff's im2col keeps the data on the device.
            conv: if crate::device::gpu_selected() {
                ConvImpl::Im2colAutodiff
            } else {
                ConvImpl::default()
            },
        })
    }

    /// Deep Packet: sequence lengths after conv1, conv2 and the pool.
    fn dp_lens(&self) -> [usize; 3] {
        let [(k1, s1), (k2, s2)] = dp_convs(self.arch);
        let l1 = conv_out(self.input.features(), k1, s1);
        let l2 = conv_out(l1, k2, s2);
        [l1, l2, l2 / 2]
    }

    fn fp_dims(&self) -> FlowPicDims {
        match self.input {
            InputSpec::FlowPic { resolution } => flowpic_dims(self.arch, resolution).expect("checked in Network::new"),
            InputSpec::DeepPacket { .. } => unreachable!("checked in Network::new"),
        }
    }

    /// The trainable tensors, in order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        let dense = |v: &mut Vec<ParamSpec>, name: &str, din: usize, dout: usize| {
            v.push(ParamSpec::new(&format!("{name}.weight"), vec![din, dout], din));
            v.push(ParamSpec::new(&format!("{name}.bias"), vec![dout], din));
        };
        let c = self.classes;
        match self.arch {
            Arch::DeepPacketApp | Arch::DeepPacketTraffic => {
                let [(k1, _), (k2, _)] = dp_convs(self.arch);
                let [_, _, pooled] = self.dp_lens();
                dense(&mut v, "conv1", k1, DP_FILTERS);
                dense(&mut v, "conv2", k2 * DP_FILTERS, DP_FILTERS);
                let mut din = pooled * DP_FILTERS;
                for (i, d) in DP_FC.into_iter().enumerate() {
                    dense(&mut v, &format!("fc{}", i + 1), din, d);
                    din = d;
                }
                dense(&mut v, "out", din, c);
            }
            Arch::Sae => {
                let mut din = self.input.features();
                for (i, d) in SAE_LAYERS.into_iter().enumerate() {
                    dense(&mut v, &format!("enc{}", i + 1), din, d);
                    din = d;
                }
                dense(&mut v, "out", din, c);
            }
            Arch::FlowPic | Arch::FlowPicMini => {
                let d = self.fp_dims();
                let k = d.kernel;
                let [f1, f2] = FP_FILTERS;
                v.push(ParamSpec::new("conv1.weight", vec![f1, 1, k, k], k * k));
                v.push(ParamSpec::new("conv1.bias", vec![f1], k * k));
                v.push(ParamSpec::new("conv2.weight", vec![f2, f1, k, k], f1 * k * k));
                v.push(ParamSpec::new("conv2.bias", vec![f2], f1 * k * k));
                dense(&mut v, "fc1", d.flat(), FP_DENSE);
                dense(&mut v, "out", FP_DENSE, c);
            }
        }
        v
    }

    pub fn param_count(&self) -> usize {
        self.param_specs().iter().map(ParamSpec::numel).sum()
    }

    /// PyTorch's default initialisation (uniform in ±1/sqrt(fan_in) for weights and biases),
    /// from a seeded generator.
    pub fn init_params(&self, seed: u64) -> Params {
        Self::init_uniform(&self.param_specs(), seed)
    }

    /// Uniform ±1/sqrt(fan_in) initialisation of `specs` from `seed`.
    pub fn init_uniform(specs: &[ParamSpec], seed: u64) -> Params {
        let specs = specs.to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let values = specs
            .iter()
            .map(|s| {
                let bound = 1.0 / (s.fan_in as f32).sqrt();
                (0..s.numel()).map(|_| rng.random_range(-bound..bound)).collect()
            })
            .collect();
        Params { specs, values }
    }

    /// Logits `[N, classes]` of a batch `x` `[N, features]` of scaled inputs.
    pub fn forward(&self, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        match self.arch {
            Arch::DeepPacketApp | Arch::DeepPacketTraffic => self.forward_dp(p, x, mode),
            Arch::Sae => {
                let mut h = x;
                for i in 0..SAE_LAYERS.len() {
                    h = dense(p, 2 * i, h, mode);
                    h = dropout(relu(h), DP_DROPOUT, mode);
                }
                dense(p, 2 * SAE_LAYERS.len(), h, mode)
            }
            Arch::FlowPic | Arch::FlowPicMini => self.forward_fp(p, x, mode),
        }
    }

    /// Class probabilities (softmax of the logits).
    pub fn predict(&self, p: &[Tensor<1>], x: Tensor<2>) -> Tensor<2> {
        softmax(self.forward(p, x, &mut Mode::eval()), 1)
    }

    fn forward_dp(&self, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let [n, len] = x.dims();
        let [(k1, s1), (k2, s2)] = dp_convs(self.arch);
        let [_, l2, pooled] = self.dp_lens();
        let h = match self.conv {
            // With probes (DP-SGD) the block still runs by hand when the caller takes it: its
            // (columns, output gradient) pairs are the per-example inputs of the DP engine.
            ConvImpl::Im2col if !x.is_tracked() && (mode.probes.is_none() || mode.conv_block.is_some()) => {
                let block = self.conv_block(p, &x, mode.conv_block.is_some());
                let f = Tensor::<2>::from_data(
                    TensorData::new(block.features.clone(), [n, pooled * DP_FILTERS]),
                    &x.device().without_autodiff(),
                );
                match mode.conv_block.as_deref_mut() {
                    Some(out) => {
                        let f = f.autodiff().require_grad();
                        *out = Some((block, f.clone()));
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

    fn forward_fp(&self, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let [n, _] = x.dims();
        let d = self.fp_dims();
        let r = match self.input {
            InputSpec::FlowPic { resolution } => resolution,
            InputSpec::DeepPacket { .. } => unreachable!(),
        };
        let h = x.reshape([n, 1, r, r]);
        let h = relu(conv2d_layer(p, 0, h, [1, FP_FILTERS[0]], &d, mode));
        let h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
        let h = relu(conv2d_layer(p, 2, h, FP_FILTERS, &d, mode));
        let h = dropout(h, FP_DROPOUT[0], mode);
        let h = max_pool2d(h, MaxPoolOptions::new([2, 2]));
        let h = h.reshape([n, d.flat()]);
        let h = dropout(relu(dense(p, 4, h, mode)), FP_DROPOUT[1], mode);
        dense(p, 6, h, mode)
    }
}

/// `x·W + b` with `W = p[w]` `[in, out]`, `b = p[w + 1]`, plus a probe when asked.
pub(crate) fn dense(p: &[Tensor<1>], w: usize, x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
    let [n, din] = x.dims();
    let dout = p[w + 1].dims()[0];
    let z = x.clone().matmul(p[w].clone().reshape([din, dout])) + p[w + 1].clone().reshape([1, dout]);
    match mode.probes.as_deref_mut() {
        Some(probes) => {
            let probe = Tensor::<3>::zeros([n, 1, dout], &z.device()).require_grad();
            probes.push(Probe {
                weight: w,
                bias: w + 1,
                kind: ProbeKind::Matmul,
                input: x.reshape([n, 1, din]),
                probe: probe.clone(),
            });
            z + probe.reshape([n, dout])
        }
        None => z,
    }
}

/// Unfold `x` `[N, L, C]` into `[N, L_out, k·C]`: the k strided slices side by side.
pub fn im2col1d(x: Tensor<3>, k: usize, stride: usize) -> Tensor<3> {
    let [_, len, _] = x.dims();
    let lout = conv_out(len, k, stride);
    let cols: Vec<Tensor<3>> = (0..k)
        .map(|i| {
            let rows = Slice::new(
                i as isize,
                Some((i + stride * (lout - 1) + 1) as isize),
                stride as isize,
            );
            x.clone().slice([Slice::from(..), rows, Slice::from(..)])
        })
        .collect();
    if k == 1 {
        cols.into_iter().next().expect("k = 1")
    } else {
        Tensor::cat(cols, 2)
    }
}

/// 1-D convolution (no padding) as im2col + matmul, channels-last: `x` `[N, L, C_in]`,
/// weight `p[w]` `[k·C_in, C_out]`, bias `p[w + 1]`; result `[N, L_out, C_out]`.
pub fn conv1d_im2col(
    p: &[Tensor<1>],
    w: usize,
    x: Tensor<3>,
    k: usize,
    stride: usize,
    mode: &mut Mode<'_>,
) -> Tensor<3> {
    let [n, _, cin] = x.dims();
    let cols = im2col1d(x, k, stride);
    let lout = cols.dims()[1];
    let cout = p[w + 1].dims()[0];
    let z = cols
        .clone()
        .reshape([n * lout, k * cin])
        .matmul(p[w].clone().reshape([k * cin, cout]))
        + p[w + 1].clone().reshape([1, cout]);
    let z = z.reshape([n, lout, cout]);
    match mode.probes.as_deref_mut() {
        Some(probes) => {
            let probe = Tensor::<3>::zeros([n, lout, cout], &z.device()).require_grad();
            probes.push(Probe {
                weight: w,
                bias: w + 1,
                kind: ProbeKind::Matmul,
                input: cols,
                probe: probe.clone(),
            });
            z + probe
        }
        None => z,
    }
}

/// Deep Packet's convolution block (conv1, ReLU, conv2, ReLU, max-pool 2) computed outside
/// autodiff, with what its backward pass needs.
///
/// Channels-last, every convolution window is one contiguous run of `k·C` values, so a column
/// matrix is row copies, and every product is one call of the `gemm` kernels burn itself uses
/// (straight into our buffers: burn's matmul zero-fills and copies each output). The layer
/// inputs (`cols1`, `cols2`) and output gradients ([`ConvGrads`]) are exactly the pairs a
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

/// Gradients out of [`ConvBlock::backward`].
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// conv1 weight, conv1 bias, conv2 weight, conv2 bias (parameter order and layout).
    pub params: [Vec<f32>; 4],
    /// Gradient of the loss with respect to conv1's pre-activation `[N·L1, C]`.
    pub g1: Vec<f32>,
    /// ... and conv2's `[N·L2, C]`.
    pub g2: Vec<f32>,
}

/// Column matrix `[N·L_out, k·C]` of `x` `[N, L, C]` flat.
fn im2col(x: &[f32], [n, len, c]: [usize; 3], k: usize, stride: usize) -> Vec<f32> {
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
fn column_sums(g: &[f32], n: usize, c: usize) -> Vec<f32> {
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

fn host(t: Tensor<1>) -> Vec<f32> {
    t.inner().into_data().try_into_vec::<f32>().expect("f32 tensor")
}

impl Network {
    /// Run Deep Packet's convolution block on a plain (untracked) batch `x` `[N, 1500]`;
    /// `for_backward` keeps what [`ConvBlock::backward`] needs (conv2's column matrix).
    pub fn conv_block(&self, p: &[Tensor<1>], x: &Tensor<2>, for_backward: bool) -> ConvBlock {
        let [n, len] = x.dims();
        let [(k1, s1), (k2, s2)] = dp_convs(self.arch);
        let [l1, l2, pooled] = self.dp_lens();
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

impl ConvBlock {
    /// Input rows per example and inputs per row of conv1 and conv2 (`cols1`, `cols2`).
    pub fn layer_rows(&self) -> [(usize, usize); 2] {
        let [k1, _, k2, _, l1, l2, _] = self.dims;
        [(l1, k1), (l2, k2 * DP_FILTERS)]
    }

    /// Gradients of the block's parameters (and layer outputs) from the gradient of the
    /// pooled features `d_features` `[N, pooled·C]`. Without `param_grads` only the layer
    /// output gradients are computed (DP-SGD forms its own clipped weight gradients) and
    /// `params` is empty.
    pub fn backward(&self, p: &[Tensor<1>], d_features: &[f32], param_grads: bool) -> ConvGrads {
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
            return ConvGrads {
                params: Default::default(),
                g1,
                g2,
            };
        }
        let mut dw2 = vec![0f32; k2 * c * c];
        let cols2 = Mat::rows(&self.cols2, k2 * c).t();
        gemm_into(&mut dw2, c, cols2, Mat::rows(&g2, c), [k2 * c, c, n * l2], false, true);
        let mut dw1 = vec![0f32; k1 * c];
        let cols1 = Mat::rows(&self.cols1, k1).t();
        gemm_into(&mut dw1, c, cols1, Mat::rows(&g1, c), [k1, c, n * l1], false, true);
        ConvGrads {
            params: [dw1, column_sums(&g1, n, c), dw2, column_sums(&g2, n, c)],
            g1,
            g2,
        }
    }
}

/// burn's conv1d on `[N, C_in, L]` with the same `[k·C_in, C_out]` weight as
/// [`conv1d_im2col`]; result `[N, C_out, L_out]`.
pub fn conv1d_burn(p: &[Tensor<1>], w: usize, x: Tensor<3>, k: usize, stride: usize, cin: usize) -> Tensor<3> {
    let cout = p[w + 1].dims()[0];
    let weight = p[w].clone().reshape([k, cin, cout]).permute([2, 1, 0]);
    conv1d(
        x,
        weight,
        Some(p[w + 1].clone()),
        ConvOptions::new([stride], [0], [1], 1),
    )
}

fn conv2d_layer(
    p: &[Tensor<1>],
    w: usize,
    x: Tensor<4>,
    [cin, cout]: [usize; 2],
    d: &FlowPicDims,
    mode: &mut Mode<'_>,
) -> Tensor<4> {
    let k = d.kernel;
    let weight = p[w].clone().reshape([cout, cin, k, k]);
    let z = conv2d(
        x.clone(),
        weight,
        Some(p[w + 1].clone()),
        ConvOptions::new([d.stride; 2], [0, 0], [1, 1], 1),
    );
    match mode.probes.as_deref_mut() {
        Some(probes) => {
            let [n, _, h, wd] = z.dims();
            let in_size = x.dims()[2];
            let probe = Tensor::<3>::zeros([n, cout, h * wd], &z.device()).require_grad();
            probes.push(Probe {
                weight: w,
                bias: w + 1,
                kind: ProbeKind::Conv2d {
                    kernel: k,
                    stride: d.stride,
                    in_size,
                },
                input: x.reshape([n, cin, in_size * in_size]),
                probe: probe.clone(),
            });
            z + probe.reshape([n, cout, h, wd])
        }
        None => z,
    }
}

/// Inverted dropout with a mask drawn from the mode's generator (not burn's global RNG, so
/// concurrent trainings in one process stay reproducible).
fn dropout<const D: usize>(x: Tensor<D>, rate: f64, mode: &mut Mode<'_>) -> Tensor<D> {
    let Some(rng) = mode.dropout.as_deref_mut() else {
        return x;
    };
    let dims = x.dims();
    let n: usize = dims.iter().product();
    let keep = (1.0 / (1.0 - rate)) as f32;
    let mask: Vec<f32> = (0..n)
        .map(|_| if rng.random::<f64>() < rate { 0.0 } else { keep })
        .collect();
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims), &x.device().without_autodiff());
    x * mask
}

/// `Σ_i k_i·(−log p_{y_i})`: the negative log-likelihood with a weight per example.
fn weighted_nll(logits: Tensor<2>, targets: &[u32], k: impl Fn(u32) -> f32) -> Tensor<1> {
    let [n, c] = logits.dims();
    let mut t = vec![0f32; n * c];
    for (i, &y) in targets.iter().enumerate() {
        t[i * c + y as usize] = k(y);
    }
    let t = Tensor::<2>::from_data(TensorData::new(t, [n, c]), &logits.device().without_autodiff());
    (log_softmax(logits, 1) * t).sum().neg()
}

/// Summed cross-entropy `Σ −log p_y`: its gradient with respect to each example's outputs is
/// that example's own gradient, as per-example clipping needs.
pub fn cross_entropy_sum(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    weighted_nll(logits, targets, |_| 1.0)
}

/// Class-weighted mean cross-entropy of `logits` for `targets`: `Σ w_y·(−log p_y) / Σ w_y`
/// (PyTorch's `CrossEntropyLoss(weight=...)`); `weights` `None` is the plain mean.
pub fn cross_entropy(logits: Tensor<2>, targets: &[u32], weights: Option<&[f32]>) -> Tensor<1> {
    let w = |y: u32| weights.map_or(1.0, |w| w[y as usize]);
    let total: f32 = targets.iter().map(|&y| w(y)).sum();
    weighted_nll(logits, targets, |y| if total > 0.0 { w(y) / total } else { 0.0 })
}

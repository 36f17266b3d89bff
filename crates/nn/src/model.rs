//! Networks as explicit parameter lists and forward functions, and the layers they share.
//!
//! Every trainable layer is a weight and a bias applied by a matrix product (Deep Packet's
//! convolutions through im2col) or by burn's `conv2d` (FlowPic), never a stateful burn module:
//! the trainer owns plain `Vec<f32>` parameters (simple, exact checkpoints and optimizer
//! state). For per-example gradients (DP-SGD), [`Mode::probes`] returns each layer's input
//! together with a zero leaf added to its pre-activation, whose gradient is the per-example
//! output gradient; the hand-differentiated blocks ([`HandBlock`]) hand out the same pairs.
//!
//! Layouts: activations are channels-last (`[N, L, C]`), dense weights `[in, out]`, 1-D conv
//! weights `[k·C_in, C_out]` (kernel offset major), FlowPic conv weights burn's
//! `[C_out, C_in, k, k]`. Each architecture is a module of [`crate::archs`].

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::module::conv1d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Slice, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, InputSpec};
use crate::archs::Architecture;
use crate::error::{NnError, Result};

pub use crate::archs::deeppacket::ConvBlock;
pub use crate::archs::sae::SAE_LAYERS;
pub use crate::archs::series::SeriesBlock;

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Inputs feeding one output unit: the initialisation bound is `1/sqrt(fan_in)`.
    pub fan_in: usize,
}

impl ParamSpec {
    pub(crate) fn new(name: &str, shape: Vec<usize>, fan_in: usize) -> Self {
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

/// Layers computed and differentiated by hand on host memory, outside autodiff: Deep Packet's
/// convolution block ([`ConvBlock`]) and the series network's convolutions. On the CPU,
/// autodiff's route through im2col, ReLU and pooling costs as much as the layers' matrix
/// products; by hand, column matrices are row copies and the backward pass is a few products.
/// The block's output enters the graph as a gradient-tracked leaf ([`Mode::conv_block`]).
///
/// Every layer of a block is `z = a·W + b` over some rows per example, so its (input rows,
/// output gradient) pairs are exactly what DP-SGD's per-example engine takes.
pub trait HandBlock: Send {
    /// The layers, in the order of [`BlockGrads::layers`].
    fn layers(&self) -> Vec<BlockLayer<'_>>;

    /// Every layer's output gradient from the gradient of the block's output `d_features`
    /// `[N, width]`, and with `param_grads` the gradients of the block's parameter tensors
    /// (tensors `0..params.len()` of the network, in order).
    fn backward(&self, p: &[Tensor<1>], d_features: &[f32], param_grads: bool) -> BlockGrads;
}

/// A layer `z = a·W + b` of a [`HandBlock`].
#[derive(Debug, Clone, Copy)]
pub struct BlockLayer<'a> {
    /// Index of `W` among the network's tensors (`b` is the next).
    pub weight: usize,
    /// Input rows `[N·rows_per_example, d_in]`.
    pub input: &'a [f32],
    pub d_in: usize,
    pub rows_per_example: usize,
}

/// Gradients out of [`HandBlock::backward`].
#[derive(Debug, Clone, Default)]
pub struct BlockGrads {
    /// The block's parameter tensors' gradients, in order (empty without `param_grads`).
    pub params: Vec<Vec<f32>>,
    /// Each layer's output gradient `[N·rows_per_example, d_out]`.
    pub layers: Vec<Vec<f32>>,
}

/// Forward-pass options.
#[derive(Default)]
pub struct Mode<'a> {
    /// Dropout masks come from this generator (training); `None` is inference.
    pub dropout: Option<&'a mut ChaCha8Rng>,
    /// Collect a [`Probe`] per trainable layer (needs an autodiff device).
    pub probes: Option<&'a mut Vec<Probe>>,
    /// Networks with a [`HandBlock`] ([`ConvImpl::Im2col`]): receives the block's saved state
    /// and its output, a gradient-tracked leaf, so the caller can finish the backward pass with
    /// [`HandBlock::backward`].
    pub conv_block: Option<&'a mut Option<(Box<dyn HandBlock>, Tensor<2>)>>,
    /// Tensors being trained (`None`: all): layers whose weight is not get no probe, so the
    /// backward pass stops above them.
    pub trainable: Option<&'a [bool]>,
}

impl Mode<'_> {
    pub fn eval() -> Mode<'static> {
        Mode::default()
    }

    /// The probe list, if probes are wanted for the layer whose weight is tensor `w`.
    pub(crate) fn probes_for(&mut self, w: usize) -> Option<&mut Vec<Probe>> {
        if self.trainable.is_some_and(|t| !t.get(w).copied().unwrap_or(true)) {
            return None;
        }
        self.probes.as_deref_mut()
    }
}

pub(crate) fn conv_out(len: usize, k: usize, s: usize) -> usize {
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

    /// The architecture's implementation.
    pub fn architecture(&self) -> &'static dyn Architecture {
        crate::archs::of(self.arch)
    }

    /// The trainable tensors, in order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        self.architecture().param_specs(&self.input, self.classes)
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
        self.architecture().forward(self, p, x, mode)
    }

    /// Class probabilities (softmax of the logits).
    pub fn predict(&self, p: &[Tensor<1>], x: Tensor<2>) -> Tensor<2> {
        softmax(self.forward(p, x, &mut Mode::eval()), 1)
    }

    /// Samples per inference batch.
    pub fn eval_batch(&self) -> usize {
        self.architecture().eval_batch(&self.input)
    }
}

/// `x·W + b` with `W = p[w]` `[in, out]`, `b = p[w + 1]`, plus a probe when asked.
pub(crate) fn dense(p: &[Tensor<1>], w: usize, x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
    let [n, din] = x.dims();
    let dout = p[w + 1].dims()[0];
    let z = x.clone().matmul(p[w].clone().reshape([din, dout])) + p[w + 1].clone().reshape([1, dout]);
    match mode.probes_for(w) {
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

/// Sequences up to this length are unfolded by a selection product rather than by slices.
const SELECT_MAX_LEN: usize = 128;

/// Unfold `x` `[N, L, C]` into `[N, L_out, k·C]`: the k strided slices side by side.
pub fn im2col1d(x: Tensor<3>, k: usize, stride: usize) -> Tensor<3> {
    let [n, len, c] = x.dims();
    let lout = conv_out(len, k, stride);
    if k == 1 && stride == 1 {
        return x;
    }
    if len <= SELECT_MAX_LEN {
        // Short sequences (packet series): one batched product with a fixed 0/1 matrix whose
        // row j·k + i picks input row j·stride + i. Its backward is one product too, where k
        // strided slices and a concat cost k zero-filled copies of the input's gradient.
        let mut sel = vec![0f32; lout * k * len];
        for j in 0..lout {
            for i in 0..k {
                sel[(j * k + i) * len + j * stride + i] = 1.0;
            }
        }
        let sel = Tensor::<3>::from_data(TensorData::new(sel, [1, lout * k, len]), &x.device().without_autodiff());
        return sel.matmul(x).reshape([n, lout, k * c]);
    }
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
    match mode.probes_for(w) {
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

/// Inverted dropout with a mask drawn from the mode's generator (not burn's global RNG, so
/// concurrent trainings in one process stay reproducible).
pub(crate) fn dropout<const D: usize>(x: Tensor<D>, rate: f64, mode: &mut Mode<'_>) -> Tensor<D> {
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

/// `w · Σ −log p_y`: each example's loss weighted alike (augmented views of one unit).
pub fn weighted_cross_entropy_sum(logits: Tensor<2>, targets: &[u32], w: f32) -> Tensor<1> {
    weighted_nll(logits, targets, |_| w)
}

/// Class-weighted mean cross-entropy of `logits` for `targets`: `Σ w_y·(−log p_y) / Σ w_y`
/// (PyTorch's `CrossEntropyLoss(weight=...)`); `weights` `None` is the plain mean.
pub fn cross_entropy(logits: Tensor<2>, targets: &[u32], weights: Option<&[f32]>) -> Tensor<1> {
    let w = |y: u32| weights.map_or(1.0, |w| w[y as usize]);
    let total: f32 = targets.iter().map(|&y| w(y)).sum();
    weighted_nll(logits, targets, |y| if total > 0.0 { w(y) / total } else { 0.0 })
}

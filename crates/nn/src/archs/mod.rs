//! The architectures, one module each behind [`Architecture`].
//!
//! A network is a list of trainable tensors ([`Architecture::param_specs`]) and a forward
//! function over them ([`Architecture::forward`]) built from the shared layers of
//! [`crate::model`] (`dense`, `conv1d_im2col`, burn's `conv2d`), each of which hands DP-SGD its
//! per-example rule (a probe). No architecture has BatchNorm or any other layer that mixes the
//! examples of a batch, so per-example gradients stay per-example.
//!
//! - [`deeppacket`]: Deep Packet's 1-D CNNs (Lotfollahi et al. 2020);
//! - [`sae`]: Deep Packet's stacked autoencoder;
//! - [`flowpic`]: the FlowPic CNNs (Shapira & Shavitt 2021);
//! - [`logistic`] and [`mlp`]: multinomial logistic regression and an MLP on flow behaviour
//!   (statistics, series, or both, flattened);
//! - [`series`]: the packet-series network (1-D convolutions over the first packets, masked
//!   global pooling, and a branch for flow statistics when the samples carry them).

use burn::tensor::Tensor;

use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{Mode, Network, ParamSpec};

pub mod deeppacket;
pub mod flowpic;
pub mod logistic;
pub mod mlp;
pub mod sae;
pub mod series;

/// One architecture: what it takes, its parameters and its forward pass.
pub trait Architecture: Send + Sync {
    /// Whether it can take `input`, with the reason when it cannot.
    fn check_input(&self, input: &InputSpec) -> Result<()>;

    /// The trainable tensors for `input` and `classes`, in order. Each layer's tensors are
    /// named `<layer>.weight` / `<layer>.bias`; the output layer is `out`.
    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec>;

    /// Logits `[N, classes]` of a batch `x` `[N, features]` of scaled inputs.
    fn forward(&self, net: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2>;

    /// Samples per inference batch: bounded so that large inputs stay in memory.
    fn eval_batch(&self, input: &InputSpec) -> usize {
        ((16usize << 20) / input.features().max(1)).clamp(1, 256)
    }
}

/// The implementation of `arch`.
pub fn of(arch: Arch) -> &'static dyn Architecture {
    match arch {
        Arch::DeepPacketApp => &deeppacket::APP,
        Arch::DeepPacketTraffic => &deeppacket::TRAFFIC,
        Arch::Sae => &sae::Sae,
        Arch::FlowPic => &flowpic::PAPER,
        Arch::FlowPicMini => &flowpic::MINI,
        Arch::Logistic => &logistic::Logistic,
        Arch::Mlp => &mlp::Mlp,
        Arch::SeriesCnn => &series::SeriesCnn,
    }
}

/// A stack of dense layers `<prefix>1..` of `widths` on `din` inputs, then `out` for `classes`.
pub(crate) fn dense_stack_specs(prefix: &str, din: usize, widths: &[usize], classes: usize) -> Vec<ParamSpec> {
    let mut v = Vec::new();
    let mut din = din;
    for (i, &d) in widths.iter().enumerate() {
        dense_specs(&mut v, &format!("{prefix}{}", i + 1), din, d);
        din = d;
    }
    dense_specs(&mut v, "out", din, classes);
    v
}

/// The forward pass of [`dense_stack_specs`]: dense → ReLU → dropout per hidden layer, then `out`.
pub(crate) fn dense_stack(p: &[Tensor<1>], x: Tensor<2>, layers: usize, rate: f64, mode: &mut Mode<'_>) -> Tensor<2> {
    let mut h = x;
    for i in 0..layers {
        h = crate::model::dropout(
            burn::tensor::activation::relu(crate::model::dense(p, 2 * i, h, mode)),
            rate,
            mode,
        );
    }
    crate::model::dense(p, 2 * layers, h, mode)
}

/// `<name>.weight` `[din, dout]` and `<name>.bias` `[dout]` of a dense layer.
pub(crate) fn dense_specs(v: &mut Vec<ParamSpec>, name: &str, din: usize, dout: usize) {
    v.push(ParamSpec::new(&format!("{name}.weight"), vec![din, dout], din));
    v.push(ParamSpec::new(&format!("{name}.bias"), vec![dout], din));
}

/// Models of flow behaviour take behaviour samples (statistics, series, or both).
pub(crate) fn behaviour_input(arch: Arch, input: &InputSpec) -> Result<()> {
    match input {
        InputSpec::Behaviour { .. } => Ok(()),
        other => Err(crate::error::NnError::Incompatible(format!(
            "{arch} takes flow behaviour samples (prepare with --repr behaviour, series or flowstats), not {}",
            other.representation()
        ))),
    }
}

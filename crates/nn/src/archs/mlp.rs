//! A multilayer perceptron on a flow's behaviour (statistics, series, or both, flattened and
//! scaled): two hidden ReLU layers with dropout. Small enough for DP-SGD (≈ 60 k parameters on
//! the flow statistics), large enough for interactions a logistic model cannot express.

use burn::tensor::activation::relu;
use burn::tensor::Tensor;

use super::{behaviour_input, dense_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{dense, dropout, Mode, Network, ParamSpec};

/// Hidden widths.
pub const MLP_LAYERS: [usize; 2] = [256, 128];
const MLP_DROPOUT: f64 = 0.1;

/// The MLP.
pub struct Mlp;

impl Architecture for Mlp {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        behaviour_input(Arch::Mlp, input)
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        let mut din = input.features();
        for (i, d) in MLP_LAYERS.into_iter().enumerate() {
            dense_specs(&mut v, &format!("fc{}", i + 1), din, d);
            din = d;
        }
        dense_specs(&mut v, "out", din, classes);
        v
    }

    fn forward(&self, _: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let mut h = x;
        for i in 0..MLP_LAYERS.len() {
            h = dropout(relu(dense(p, 2 * i, h, mode)), MLP_DROPOUT, mode);
        }
        dense(p, 2 * MLP_LAYERS.len(), h, mode)
    }
}

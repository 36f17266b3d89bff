//! A multilayer perceptron on a flow's behaviour (statistics, series, or both, flattened and
//! scaled): two hidden ReLU layers with dropout. Small enough for DP-SGD (≈ 60 k parameters on
//! the flow statistics), large enough for interactions a logistic model cannot express.

use burn::tensor::Tensor;

use super::{behaviour_input, dense_stack, dense_stack_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{Mode, Network, ParamSpec};

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
        dense_stack_specs("fc", input.features(), &MLP_LAYERS, classes)
    }

    fn forward(&self, _: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        dense_stack(p, x, MLP_LAYERS.len(), MLP_DROPOUT, mode)
    }
}

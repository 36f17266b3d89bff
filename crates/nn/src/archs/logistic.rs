//! Multinomial logistic regression on a flow's behaviour (its statistics, series, or both,
//! flattened and scaled): one dense layer, the smallest model DP-SGD can train, and the
//! reference a deeper model has to beat.

use burn::tensor::Tensor;

use super::{behaviour_input, dense_stack, dense_stack_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{Mode, Network, ParamSpec};

/// `softmax(x·W + b)`.
pub struct Logistic;

impl Architecture for Logistic {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        behaviour_input(Arch::Logistic, input)
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        dense_stack_specs("fc", input.features(), &[], classes)
    }

    fn forward(&self, _: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        dense_stack(p, x, 0, 0.0, mode)
    }
}

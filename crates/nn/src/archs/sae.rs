//! Deep Packet's stacked autoencoder: 1500 → 400-300-200-100-50 → classes, ReLU and dropout
//! 0.05, its encoders greedily pre-trained as autoencoders (`crate::train`).

use burn::tensor::Tensor;

use super::deeppacket::{deeppacket_input, DP_DROPOUT};
use super::{dense_stack, dense_stack_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{Mode, Network, ParamSpec};

/// Stacked autoencoder widths after the 1500-byte input.
pub const SAE_LAYERS: [usize; 5] = [400, 300, 200, 100, 50];

/// The stacked autoencoder.
pub struct Sae;

impl Architecture for Sae {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        deeppacket_input(Arch::Sae, input)
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        dense_stack_specs("enc", input.features(), &SAE_LAYERS, classes)
    }

    fn forward(&self, _: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        dense_stack(p, x, SAE_LAYERS.len(), DP_DROPOUT, mode)
    }
}

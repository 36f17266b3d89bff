//! Deep Packet's stacked autoencoder: 1500 → 400-300-200-100-50 → classes, ReLU and dropout
//! 0.05, its encoders greedily pre-trained as autoencoders (`crate::train`).

use burn::tensor::activation::relu;
use burn::tensor::Tensor;

use super::deeppacket::{deeppacket_input, DP_DROPOUT};
use super::{dense_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::Result;
use crate::model::{dense, dropout, Mode, Network, ParamSpec};

/// Stacked autoencoder widths after the 1500-byte input.
pub const SAE_LAYERS: [usize; 5] = [400, 300, 200, 100, 50];

/// The stacked autoencoder.
pub struct Sae;

impl Architecture for Sae {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        deeppacket_input(Arch::Sae, input)
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        let mut v = Vec::new();
        let mut din = input.features();
        for (i, d) in SAE_LAYERS.into_iter().enumerate() {
            dense_specs(&mut v, &format!("enc{}", i + 1), din, d);
            din = d;
        }
        dense_specs(&mut v, "out", din, classes);
        v
    }

    fn forward(&self, _: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let mut h = x;
        for i in 0..SAE_LAYERS.len() {
            h = dense(p, 2 * i, h, mode);
            h = dropout(relu(h), DP_DROPOUT, mode);
        }
        dense(p, 2 * SAE_LAYERS.len(), h, mode)
    }
}

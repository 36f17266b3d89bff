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
use burn::tensor::{Slice, Tensor};

use super::{dense_specs, Architecture};
use crate::arch::{encoded_packet_width, Arch, InputSpec, BINNED_CHANNELS, PLAIN_CHANNELS, PLE_BINS};
use crate::error::{NnError, Result};
use crate::model::{conv1d_im2col, dense, dropout, Mode, Network, ParamSpec};

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
const PACKET_BEHAVIOUR: usize = PLAIN_CHANNELS + BINNED_CHANNELS * PLE_BINS;

/// Series length, encoded inputs per packet and encoded statistics of a behaviour input.
fn layout(input: &InputSpec) -> (usize, usize, usize) {
    input
        .behaviour_layout()
        .map_or((0, 0, 0), |(packets, payload_bytes, stats)| {
            (packets, encoded_packet_width(payload_bytes), stats * PLE_BINS)
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
        dense_specs(&mut v, "first", packets.min(FIRST_PACKETS) * PACKET_BEHAVIOUR, BRANCH);
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
        let [n, _] = x.dims();
        let series_len = packets * channels;
        let series = x
            .clone()
            .slice([Slice::from(..), Slice::from(..series_len)])
            .reshape([n, packets, channels]);
        // A window counts when its first packet exists (channel 0 is the presence mask).
        let w = windows(packets);
        let mask = series
            .clone()
            .slice([Slice::from(..), Slice::from(..w), Slice::from(..1)])
            .detach();
        let mut h = series.clone();
        for (i, k) in KERNELS.into_iter().enumerate() {
            h = relu(conv1d_im2col(p, 2 * i, h, k, 1, mode));
        }
        let h = h * mask.clone();
        let max = h.clone().max_dim(1).reshape([n, FILTERS]);
        let count = mask.sum_dim(1).clamp_min(1.0).reshape([n, 1]);
        let mean = h.sum_dim(1).reshape([n, FILTERS]) / count;
        let first_n = packets.min(FIRST_PACKETS);
        let first = series
            .slice([Slice::from(..), Slice::from(..first_n), Slice::from(..PACKET_BEHAVIOUR)])
            .reshape([n, first_n * PACKET_BEHAVIOUR]);
        let mut next = 2 * KERNELS.len();
        let first = relu(dense(p, next, first, mode));
        next += 2;
        let mut parts = vec![max, mean, first];
        if stats > 0 {
            let s = x.slice([Slice::from(..), Slice::from(series_len..)]);
            parts.push(relu(dense(p, next, s, mode)));
            next += 2;
        }
        let h = Tensor::cat(parts, 1);
        let h = dropout(relu(dense(p, next, h, mode)), DROPOUT, mode);
        dense(p, next + 2, h, mode)
    }
}

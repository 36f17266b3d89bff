//! The FlowPic CNNs (Shapira & Shavitt, IEEE TNSM 2021): conv → max-pool 2 → conv → dropout →
//! max-pool 2 → FC 64 → dropout → output. `flowpic` has the paper's 10×10 stride-5 kernels for
//! its 1500×1500 images; `flowpic-mini` 3×3 stride-1 kernels for 32×32 mini-FlowPics.

use burn::tensor::activation::relu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::Tensor;

use super::{dense_specs, Architecture};
use crate::arch::{Arch, InputSpec};
use crate::error::{NnError, Result};
use crate::model::{dense, dropout, Mode, Network, ParamSpec, Probe, ProbeKind};

const FP_FILTERS: [usize; 2] = [10, 20];
const FP_DENSE: usize = 64;
const FP_DROPOUT: [f64; 2] = [0.25, 0.5];

/// A FlowPic CNN.
pub struct FlowPicCnn {
    arch: Arch,
}

/// The paper's network (R ≥ 256).
pub static PAPER: FlowPicCnn = FlowPicCnn { arch: Arch::FlowPic };
/// The mini-FlowPic network.
pub static MINI: FlowPicCnn = FlowPicCnn {
    arch: Arch::FlowPicMini,
};

fn resolution(input: &InputSpec) -> usize {
    match *input {
        InputSpec::FlowPic { resolution } => resolution,
        _ => 0,
    }
}

impl Architecture for FlowPicCnn {
    fn check_input(&self, input: &InputSpec) -> Result<()> {
        match input {
            InputSpec::FlowPic { resolution } => flowpic_dims(self.arch, *resolution).map(|_| ()),
            other => Err(NnError::Incompatible(format!(
                "{} does not take {} samples",
                self.arch,
                other.representation()
            ))),
        }
    }

    fn param_specs(&self, input: &InputSpec, classes: usize) -> Vec<ParamSpec> {
        let d = flowpic_dims(self.arch, resolution(input)).expect("checked in Network::new");
        let k = d.kernel;
        let [f1, f2] = FP_FILTERS;
        let mut v = vec![
            ParamSpec::new("conv1.weight", vec![f1, 1, k, k], k * k),
            ParamSpec::new("conv1.bias", vec![f1], k * k),
            ParamSpec::new("conv2.weight", vec![f2, f1, k, k], f1 * k * k),
            ParamSpec::new("conv2.bias", vec![f2], f1 * k * k),
        ];
        dense_specs(&mut v, "fc1", d.flat(), FP_DENSE);
        dense_specs(&mut v, "out", FP_DENSE, classes);
        v
    }

    fn forward(&self, net: &Network, p: &[Tensor<1>], x: Tensor<2>, mode: &mut Mode<'_>) -> Tensor<2> {
        let [n, _] = x.dims();
        let r = resolution(&net.input);
        let d = flowpic_dims(self.arch, r).expect("checked in Network::new");
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
    match mode.probes_for(w) {
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

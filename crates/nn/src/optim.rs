//! Adam and SGD with momentum on plain parameter vectors.
//!
//! Written here instead of burn's optimizers so the whole state is a few `Vec<f32>` that a
//! checkpoint stores exactly (resume gives bit-identical weights), and so one fused pass per
//! tensor does the update. Semantics follow PyTorch (`weight_decay` is L2 added to the
//! gradient; SGD's first momentum buffer is the gradient itself).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::Params;

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam with β = (0.9, 0.999), ε = 1e-8.
    Adam,
    Sgd {
        momentum: f64,
    },
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
/// Elements per parallel task: large enough to amortise scheduling, small enough to split
/// the 10 M-element FC weight across cores.
const CHUNK: usize = 1 << 16;

/// An optimizer's state for one set of parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState {
    pub kind: Optimizer,
    /// Steps taken (Adam's bias correction).
    pub step: u64,
    /// Adam's first moments, or SGD's momentum buffers (empty when unused).
    pub m: Vec<Vec<f32>>,
    /// Adam's second moments (empty for SGD).
    pub v: Vec<Vec<f32>>,
    /// Tensors left as they are (layers kept from a pre-trained model); empty: none.
    pub frozen: Vec<bool>,
}

impl OptimState {
    pub fn new(kind: Optimizer, params: &Params) -> OptimState {
        let zeros = || params.values.iter().map(|p| vec![0f32; p.len()]).collect::<Vec<_>>();
        let (m, v) = match kind {
            Optimizer::Adam => (zeros(), zeros()),
            Optimizer::Sgd { momentum } if momentum != 0.0 => (zeros(), Vec::new()),
            Optimizer::Sgd { .. } => (Vec::new(), Vec::new()),
        };
        OptimState {
            kind,
            step: 0,
            m,
            v,
            frozen: Vec::new(),
        }
    }

    /// The same, leaving the tensors where `frozen` is true untouched.
    pub fn with_frozen(mut self, frozen: Vec<bool>) -> OptimState {
        self.frozen = frozen;
        self
    }

    fn is_frozen(&self, i: usize) -> bool {
        self.frozen.get(i).copied().unwrap_or(false)
    }

    /// One update of `params` with `grads` (same order and sizes).
    pub fn update(&mut self, params: &mut Params, grads: &[&[f32]], lr: f64, weight_decay: f64) {
        self.step += 1;
        let wd = weight_decay as f32;
        match self.kind {
            Optimizer::Adam => {
                let t = self.step as i32;
                let bc1 = 1.0 - BETA1.powi(t);
                let bc2 = 1.0 - BETA2.powi(t);
                // p -= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps)
                let step = (lr / bc1) as f32;
                let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
                let (b1, b2, eps) = (BETA1 as f32, BETA2 as f32, EPS as f32);
                let frozen: Vec<bool> = (0..params.values.len()).map(|i| self.is_frozen(i)).collect();
                for ((((p, g), m), v), frozen) in params
                    .values
                    .iter_mut()
                    .zip(grads)
                    .zip(&mut self.m)
                    .zip(&mut self.v)
                    .zip(frozen)
                {
                    if frozen {
                        continue;
                    }
                    p.par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .for_each(|(((p, g), m), v)| {
                            for i in 0..p.len() {
                                let g = g[i] + wd * p[i];
                                m[i] = b1 * m[i] + (1.0 - b1) * g;
                                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                                p[i] -= step * m[i] / (v[i].sqrt() * inv_sqrt_bc2 + eps);
                            }
                        });
                }
            }
            Optimizer::Sgd { momentum } => {
                let (lr, mu) = (lr as f32, momentum as f32);
                let first = self.step == 1;
                let frozen: Vec<bool> = (0..params.values.len()).map(|i| self.is_frozen(i)).collect();
                for (i, (p, g)) in params.values.iter_mut().zip(grads).enumerate() {
                    if frozen[i] {
                        continue;
                    }
                    match self.m.get_mut(i) {
                        Some(buf) => p
                            .par_chunks_mut(CHUNK)
                            .zip(g.par_chunks(CHUNK))
                            .zip(buf.par_chunks_mut(CHUNK))
                            .for_each(|((p, g), b)| {
                                for i in 0..p.len() {
                                    let g = g[i] + wd * p[i];
                                    b[i] = if first { g } else { mu * b[i] + g };
                                    p[i] -= lr * b[i];
                                }
                            }),
                        None => p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(p, g)| {
                            for i in 0..p.len() {
                                p[i] -= lr * (g[i] + wd * p[i]);
                            }
                        }),
                    }
                }
            }
        }
    }
}

//! Training: mini-batch epochs with early stopping on validation macro-F1, a checkpoint after
//! every epoch, and exact resumption.
//!
//! Reproducibility: the initial weights come from `seed`; epoch e's shuffle from a generator
//! seeded by (seed, e); batch b's dropout masks from one seeded by (seed, e, b). No generator
//! state carries over from one epoch to the next, so the checkpoint needs only the epoch
//! number, and a resumed run computes exactly what an uninterrupted one would.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use privpkt_dataset::{Dataset, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, InputSpec};
use crate::augment::Augment;
use crate::data::{load_split, RawBatch, Samples};
use crate::dp::{DpConfig, DpRun};
use crate::error::{NnError, Result};
use crate::init::{load_init, trainable, InitFrom, Pretraining};
use crate::metrics::ConfusionMatrix;
use crate::model::{cross_entropy, dense, Mode, Network, ParamSpec, Params, SAE_LAYERS};
use crate::modelfile::{self, HistorySummary, Model, ModelMeta, MODEL_FORMAT};
use crate::optim::{OptimState, Optimizer};
use crate::tensors::{self, NamedTensor};

/// Largest learning rate accepted: beyond it every network diverges at the first step.
pub const MAX_LR: f64 = 1e3;

/// File name of the checkpoint in the work directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const CHECKPOINT_FORMAT: &str = "privpkt-checkpoint";
const CHECKPOINT_KEY: &str = "privpkt-checkpoint";

/// Learning rate over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Constant,
    /// `lr · (1 + cos(π·e/E)) / 2` in epoch e of E.
    Cosine,
    /// `lr · gamma^⌊e/every⌋`.
    Step { every: usize, gamma: f64 },
}

impl Schedule {
    /// Learning rate of epoch `epoch` (0-based) of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs.max(1) as f64).cos()),
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
        }
    }
}

/// Hyper-parameters of a training run (stored in the model file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub schedule: Schedule,
    pub epochs: usize,
    pub batch_size: usize,
    /// Stop after this many epochs without a better validation macro-F1; `None` never stops.
    pub patience: Option<usize>,
    /// Weight the loss by inverse class frequency (classes are often very unbalanced).
    pub class_weights: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
    pub seed: u64,
    /// Epochs of greedy pre-training per stacked-autoencoder layer (`sae` only).
    pub sae_pretrain_epochs: usize,
    /// Train on a seeded random subset of at most this many training samples.
    pub max_train_samples: Option<usize>,
    /// DP-SGD instead of plain mini-batch training; `batch_size` is then the expected number
    /// of privacy units per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<DpConfig>,
    /// Keep an exponential moving average of the weights with this decay (warmed up as
    /// `min(d, (1 + t)/(10 + t))` at step t): the averaged weights are the ones validated and
    /// released. Free under DP (post-processing), and it steadies noisy steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// Augmented views of behaviour samples ([`crate::augment`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augment>,
    /// Start from a pre-trained (public) model and train only some of its layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitFrom>,
    /// Logit adjustment (Menon et al. 2021): shift the output biases by −log of the training
    /// class frequencies, so rare classes are not drowned by common ones; under DP-SGD the class
    /// counts are released once with the run's noise and composed in ε.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub logit_adjust: bool,
    /// Piecewise-linear bins per number of behaviour inputs (`None`: a pre-trained model's, or
    /// [`crate::arch::PLE_BINS`]). Fewer bins, fewer weights: DP-SGD's noise grows with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ple_bins: Option<usize>,
}

impl TrainConfig {
    /// The papers' usual settings: Adam 1e-3, batch 64, 20 epochs, patience 5.
    pub fn new(arch: Arch) -> TrainConfig {
        TrainConfig {
            arch,
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            schedule: Schedule::Constant,
            epochs: 20,
            batch_size: 64,
            patience: Some(5),
            class_weights: false,
            weight_decay: 0.0,
            seed: 0,
            sae_pretrain_epochs: 3,
            max_train_samples: None,
            dp: None,
            ema: None,
            augment: None,
            init: None,
            logit_adjust: false,
            ple_bins: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(NnError::Config(m.to_string()));
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            return Err(NnError::Config(format!(
                "the learning rate must be a number in (0, {MAX_LR}], got {}",
                self.lr
            )));
        }
        if self.epochs == 0 {
            return bad("epochs must be ≥ 1");
        }
        if self.batch_size == 0 {
            return bad("the batch size must be ≥ 1");
        }
        if let Some(d) = self.ema {
            if !(d.is_finite() && d > 0.0 && d < 1.0) {
                return bad("the weight-averaging (EMA) decay must be in (0, 1)");
            }
        }
        if self.batch_size == crate::dp::FULL_BATCH && self.dp.is_none() {
            return bad("a full batch (`--batch-size full`) is for DP gradient descent; give a number without --dp");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(&format!(
                "weight decay must be a finite number ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if let Optimizer::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return bad("SGD momentum must be in [0, 1)");
            }
        }
        if let Schedule::Step { every, gamma } = self.schedule {
            if every == 0 || !(gamma.is_finite() && gamma > 0.0) {
                return bad("a step schedule needs every ≥ 1 and gamma > 0");
            }
        }
        if self.max_train_samples == Some(0) {
            return bad("max_train_samples must be ≥ 1");
        }
        if let Some(b) = self.ple_bins {
            if !(1..=crate::arch::MAX_PLE_BINS).contains(&b) {
                return bad(&format!(
                    "piecewise-linear bins must be 1..={}, got {b}",
                    crate::arch::MAX_PLE_BINS
                ));
            }
            if !crate::recipe::is_behaviour(self.arch) {
                return bad(&format!(
                    "piecewise-linear bins are for the flow-behaviour models (logistic, mlp, series-cnn), not {}",
                    self.arch
                ));
            }
        }
        if let Some(dp) = &self.dp {
            dp.validate()?;
            if self.class_weights {
                return bad(
                    "DP-SGD with class weights: the weights are computed from the private labels' counts, which \
                     the accountant does not cover; train without --class-weights",
                );
            }
            if self.arch == Arch::Sae && self.sae_pretrain_epochs > 0 && self.init.is_none() {
                return bad(
                    "DP-SGD with stacked-autoencoder pre-training: the greedy pre-training reads the private data \
                     outside the accountant; use --pretrain-epochs 0",
                );
            }
        }
        Ok(())
    }
}

/// The network a run of `cfg` trains on a dataset described by `manifest`: the dataset's
/// samples seen through `cfg.ple_bins` piecewise-linear bins, else through the pre-trained
/// model's (its weights must fit), else the default.
pub fn network_for(cfg: &TrainConfig, manifest: &privpkt_dataset::Manifest) -> Result<Network> {
    let bins = match (cfg.ple_bins, &cfg.init) {
        (Some(b), _) => Some(b),
        (None, Some(init)) => {
            let public = crate::init::pretrained(init)?;
            Some(public.meta().input.bins()).filter(|&b| b > 0)
        }
        (None, None) => None,
    };
    let input = InputSpec::from_manifest(manifest)?.with_bins(bins);
    Network::new(cfg.arch, input, manifest.classes.len())
}

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_macro_f1: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    /// DP-SGD: ε spent after this epoch (at the run's δ, by its accountant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
}

/// Progress of [`train`], for a progress bar. Epochs are 1-based.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Continuing from a checkpoint after `epochs_done` epochs.
    Resumed {
        epochs_done: usize,
    },
    /// Stacked autoencoder pre-training: an epoch of layer `layer` (1-based) done.
    Pretrain {
        layer: usize,
        layers: usize,
        epoch: usize,
        epochs: usize,
        loss: f64,
    },
    EpochStart {
        epoch: usize,
        epochs: usize,
        batches: usize,
        lr: f64,
    },
    /// Running means over the epoch so far.
    Batch {
        epoch: usize,
        batch: usize,
        batches: usize,
        loss: f64,
        accuracy: f64,
    },
    EpochEnd {
        record: EpochRecord,
        best: bool,
    },
    EarlyStop {
        epoch: usize,
        best_epoch: usize,
    },
    /// DP-SGD set up: σ (given or calibrated), sampling rate and the planned steps.
    Privacy {
        sigma: f64,
        calibrated: bool,
        q: f64,
        units: usize,
        steps_per_epoch: u64,
        max_steps: u64,
        epsilon_at_max: f64,
    },
    /// DP-SGD: the budget is spent; training ends here.
    BudgetSpent {
        epoch: usize,
        epsilon: f64,
    },
    Warning(String),
}

/// What [`train`] returns; `model` holds the best-on-validation weights.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub model: Model,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_val_macro_f1: Option<f64>,
    pub stopped_early: bool,
    /// Epochs already done when this call resumed.
    pub resumed_from: Option<usize>,
}

/// Loss and correct predictions of one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    pub loss: f64,
    pub correct: usize,
}

/// Gradients (one flat vector per parameter) of the batch loss, in one forward + backward.
pub fn gradients(
    net: &Network,
    params: &Params,
    x: Vec<f32>,
    targets: &[u32],
    class_weights: Option<&[f32]>,
    dropout: Option<&mut ChaCha8Rng>,
) -> (Vec<TensorData>, StepStats) {
    let ad = crate::device::compute().autodiff();
    let p = params.tensors(&ad, true);
    let n = targets.len();
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, net.input.features()]), &crate::device::compute());
    let mut block = None;
    let logits = net.forward(
        &p,
        x,
        &mut Mode {
            dropout,
            probes: None,
            conv_block: Some(&mut block),
            trainable: None,
        },
    );
    let correct = count_correct(&logits.clone().inner().into_data(), targets, net.classes);
    let loss = cross_entropy(logits, targets, class_weights);
    let mut grads = loss.backward();
    let loss = scalar(loss.inner().into_data());
    let mut g: Vec<Option<Tensor<1>>> = p.iter().map(|t| t.grad_remove(&mut grads)).collect();
    if let Some((block, features)) = block {
        // The convolution block ran outside autodiff: finish the chain rule by hand.
        let df = features.grad(&grads).expect("the features lie on the loss's path");
        let df = df.into_data().try_into_vec::<f32>().expect("f32 gradient");
        for (i, v) in block.backward(&p, &df, true).params.into_iter().enumerate() {
            let len = v.len();
            g[i] = Some(Tensor::from_data(TensorData::new(v, [len]), &crate::device::compute()));
        }
    }
    let g = g
        .into_iter()
        .zip(&params.values)
        .map(|(t, v)| {
            t.map(Tensor::into_data)
                .unwrap_or_else(|| TensorData::new(vec![0f32; v.len()], [v.len()]))
        })
        .collect();
    (g, StepStats { loss, correct })
}

/// One optimisation step on a batch of scaled inputs `x` (`[targets.len(), features]`). With
/// `prox` (anchor weights, μ) the gradient gains μ·(w − anchor) (FedProx, Li et al. 2020).
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    net: &Network,
    params: &mut Params,
    opt: &mut OptimState,
    x: Vec<f32>,
    targets: &[u32],
    class_weights: Option<&[f32]>,
    lr: f64,
    weight_decay: f64,
    dropout: &mut ChaCha8Rng,
    prox: Option<(&[Vec<f32>], f64)>,
) -> StepStats {
    let (grads, stats) = gradients(net, params, x, targets, class_weights, Some(dropout));
    match prox {
        None => {
            let g: Vec<&[f32]> = grads
                .iter()
                .map(|d| d.as_slice::<f32>().expect("f32 gradients"))
                .collect();
            opt.update(params, &g, lr, weight_decay);
        }
        Some((anchor, mu)) => {
            let mu = mu as f32;
            let g: Vec<Vec<f32>> = grads
                .into_iter()
                .zip(&params.values)
                .zip(anchor)
                .map(|((d, w), a)| {
                    let mut g = d.try_into_vec::<f32>().expect("f32 gradients");
                    for ((g, w), a) in g.iter_mut().zip(w).zip(a) {
                        *g += mu * (w - a);
                    }
                    g
                })
                .collect();
            let refs: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
            opt.update(params, &refs, lr, weight_decay);
        }
    }
    stats
}

/// A federated client's local work: `epochs` epochs of plain training of `params` on
/// `samples` with a fresh optimizer, shuffled and dropped out from `seed`, optionally with
/// FedProx's proximal term (see [`train_step`]). Returns the mean training loss and the number
/// of samples seen.
pub fn local_epochs(
    net: &Network,
    params: &mut Params,
    samples: &Samples,
    cfg: &TrainConfig,
    epochs: usize,
    seed: u64,
    prox: Option<(&[Vec<f32>], f64)>,
) -> Result<(f64, usize)> {
    let mut opt = optimizer_for(cfg, params)?;
    let raw = samples.raw_for(&net.input);
    let features = net.input.features();
    let (mut loss_sum, mut seen) = (0.0, 0usize);
    for e in 0..epochs {
        let order = permutation(samples.len(), derive_seed(seed, &[STREAM_SHUFFLE, e as u64]));
        for (b, idx) in order.chunks(cfg.batch_size.max(1)).enumerate() {
            let y: Vec<u32> = idx.iter().map(|&i| samples.labels[i]).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[STREAM_DROPOUT, e as u64, b as u64]));
            let x = batch_for(&raw, idx, features, cfg, seed, e, b);
            let s = train_step(
                net,
                params,
                &mut opt,
                x,
                &y,
                None,
                cfg.lr,
                cfg.weight_decay,
                &mut rng,
                prox,
            );
            loss_sum += s.loss * idx.len() as f64;
            seen += idx.len();
        }
    }
    Ok((loss_sum / seen.max(1) as f64, seen))
}

/// A fresh optimizer for `params` that leaves the layers `cfg` keeps from a pre-trained model.
fn optimizer_for(cfg: &TrainConfig, params: &Params) -> Result<OptimState> {
    let frozen = trainable(cfg.init.as_ref(), &params.specs)?
        .iter()
        .map(|t| !t)
        .collect();
    Ok(OptimState::new(cfg.optimizer, params).with_frozen(frozen))
}

/// The scaled inputs of batch `b` of epoch `e`: augmented views when the run augments.
fn batch_for(
    raw: &RawBatch<'_>,
    idx: &[usize],
    features: usize,
    cfg: &TrainConfig,
    seed: u64,
    e: usize,
    b: usize,
) -> Vec<f32> {
    match &cfg.augment {
        Some(aug) => {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[STREAM_AUGMENT, e as u64, b as u64]));
            raw.batch_augmented(idx, features, aug, &mut rng)
        }
        None => raw.batch(idx, features),
    }
}

/// A federated client's DP-SGD state, kept across rounds: its own units, σ, step budget and
/// accountant, so each organisation's ε covers every round it trained in.
pub struct LocalDp {
    run: DpRun,
    /// DP-SGD steps taken so far (over all rounds).
    pub steps: u64,
}

impl LocalDp {
    /// DP-SGD over `samples` planned for `planned_epochs` local epochs in all: σ is calibrated
    /// so that many epochs spend `dp.epsilon` (or `dp.sigma` is used, and training stops at the
    /// budget). `cfg.seed` keys noise and sampling when `dp.seeded`.
    pub fn new(
        dp: &DpConfig,
        cfg: &TrainConfig,
        net: &Network,
        samples: &Samples,
        planned_epochs: usize,
    ) -> Result<LocalDp> {
        let plan = TrainConfig {
            epochs: planned_epochs.max(1),
            ..cfg.clone()
        };
        if cfg.logit_adjust {
            return Err(NnError::Config(
                "logit adjustment is for centralised training: a federation's organisations would each release \
                 their own class counts"
                    .into(),
            ));
        }
        let run = DpRun::new(dp, &plan, net, samples, &mut None, &mut None, false, &|_| {})?;
        Ok(LocalDp { run, steps: 0 })
    }

    /// ε spent so far.
    pub fn epsilon(&self) -> Result<f64> {
        self.run.epsilon(self.steps)
    }

    /// The noise multiplier in use.
    pub fn sigma(&self) -> f64 {
        self.run.sigma
    }

    /// No step of the budget is left.
    pub fn exhausted(&self) -> bool {
        self.steps >= self.run.max_steps
    }

    /// The privacy record of the steps so far (as in a model file).
    pub fn summary(&self) -> Result<serde_json::Value> {
        self.run.summary(self.steps)
    }
}

/// [`local_epochs`] with DP-SGD: `epochs` epochs of Poisson-sampled, clipped, noised steps on
/// `samples` (the data `dp` was made for), stopping early when its budget is spent. Returns
/// the mean training loss and the number of samples used.
pub fn local_dp_epochs(
    net: &Network,
    params: &mut Params,
    samples: &Samples,
    cfg: &TrainConfig,
    epochs: usize,
    seed: u64,
    dp: &mut LocalDp,
) -> Result<(f64, usize)> {
    let mut opt = optimizer_for(cfg, params)?;
    let raw = samples.raw_for(&net.input);
    let (mut loss_sum, mut seen) = (0.0, 0usize);
    'epochs: for e in 0..epochs {
        for b in 0..dp.run.steps_per_epoch {
            if dp.exhausted() {
                break 'epochs;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[STREAM_DROPOUT, e as u64, b]));
            let (s, size) = dp.run.step(
                net,
                params,
                &mut opt,
                dp.steps,
                &raw,
                samples,
                cfg.lr,
                cfg.weight_decay,
                &mut rng,
                None,
            )?;
            dp.steps += 1;
            loss_sum += s.loss * size as f64;
            seen += size;
        }
    }
    Ok((loss_sum / seen.max(1) as f64, seen))
}

fn scalar(d: TensorData) -> f64 {
    d.as_slice::<f32>()
        .ok()
        .and_then(|s| s.first().copied())
        .unwrap_or(f32::NAN) as f64
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

pub(crate) fn count_correct(logits: &TensorData, targets: &[u32], classes: usize) -> usize {
    let l = logits.as_slice::<f32>().expect("f32 logits");
    l.chunks_exact(classes)
        .zip(targets)
        .filter(|(row, &y)| argmax(row) == y)
        .count()
}

/// Macro-F1 and accuracy of `params` on (non-empty) `samples`, by [`crate::metrics`].
pub fn evaluate(net: &Network, params: &Params, samples: &Samples) -> Result<(f64, f64)> {
    let raw = samples.raw_for(&net.input);
    let probs = modelfile::predict(net, params, &raw, samples.len());
    let pred: Vec<usize> = probs.iter().map(|r| argmax(r) as usize).collect();
    let truth: Vec<usize> = samples.labels.iter().map(|&y| y as usize).collect();
    let cm = ConfusionMatrix::from_labels(net.classes, &truth, &pred)
        .map_err(|e| NnError::Config(format!("validation metrics: {e}")))?;
    Ok((cm.macro_f1(), cm.accuracy()))
}

/// SplitMix64 over (seed, parts): independent seeds for each use of randomness.
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut z = seed;
    for &p in parts {
        z = z
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(p.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

const STREAM_SHUFFLE: u64 = 1;
const STREAM_DROPOUT: u64 = 2;
const STREAM_SUBSET: u64 = 3;
const STREAM_PRETRAIN: u64 = 4;
const STREAM_AUGMENT: u64 = 7;

fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    v
}

/// Inverse-frequency class weights, normalised to mean 1 over the classes present.
pub fn inverse_frequency(counts: &[u64]) -> Vec<f32> {
    let present = counts.iter().filter(|&&c| c > 0).count().max(1) as f64;
    let total: u64 = counts.iter().sum();
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                (total as f64 / (present * c as f64)) as f32
            }
        })
        .collect()
}

/// Training state between epochs: what a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CheckpointMeta {
    format: String,
    privpkt_version: String,
    config: TrainConfig,
    dataset_manifest_sha256: String,
    classes: Vec<String>,
    epochs_done: usize,
    opt_step: u64,
    best_score: Option<f64>,
    best_epoch: usize,
    bad_epochs: usize,
    stopped_early: bool,
    history: Vec<EpochRecord>,
    /// DP-SGD steps taken and the σ they used (a resumed run keeps it).
    #[serde(default)]
    dp_steps: u64,
    #[serde(default)]
    dp_sigma: Option<f64>,
    #[serde(default)]
    budget_spent: bool,
    /// Optimizer steps folded into the weight average.
    #[serde(default)]
    ema_steps: u64,
    /// Where the run's starting weights came from.
    #[serde(default)]
    pretraining: Option<Pretraining>,
    /// The noisy class counts a private run released (logit adjustment): released once.
    #[serde(default)]
    dp_prior: Option<Vec<f64>>,
}

struct State {
    meta: CheckpointMeta,
    params: Params,
    opt: OptimState,
    best: Option<Vec<Vec<f32>>>,
    /// The moving average of the weights (`TrainConfig::ema`).
    ema: Option<Vec<Vec<f32>>>,
}

impl State {
    /// Fold the current weights into the moving average.
    fn update_ema(&mut self, decay: f64) {
        let t = self.meta.ema_steps as f64;
        let d = decay.min((1.0 + t) / (10.0 + t)) as f32;
        let ema = self.ema.get_or_insert_with(|| self.params.values.clone());
        for (a, p) in ema.iter_mut().zip(&self.params.values) {
            for (a, &p) in a.iter_mut().zip(p) {
                *a = d * *a + (1.0 - d) * p;
            }
        }
        self.meta.ema_steps += 1;
    }

    /// The weights to validate and release: the average when there is one.
    fn current(&self) -> &[Vec<f32>] {
        self.ema.as_deref().unwrap_or(&self.params.values)
    }
}

impl State {
    fn save(&self, path: &Path) -> Result<()> {
        let mut groups: Vec<(&str, &[Vec<f32>])> = vec![
            ("param", &self.params.values),
            ("opt_m", &self.opt.m),
            ("opt_v", &self.opt.v),
        ];
        if let Some(b) = &self.best {
            groups.push(("best", b));
        }
        if let Some(e) = &self.ema {
            groups.push(("ema", e));
        }
        let t: Vec<NamedTensor<'_>> = groups
            .into_iter()
            .flat_map(|(prefix, values)| {
                self.params.specs.iter().zip(values).map(move |(s, v)| NamedTensor {
                    name: format!("{prefix}/{}", s.name),
                    shape: s.shape.clone(),
                    data: v,
                })
            })
            .collect();
        let json = serde_json::to_string(&self.meta).map_err(|e| NnError::Config(e.to_string()))?;
        let meta = std::collections::HashMap::from([(CHECKPOINT_KEY.to_string(), json)]);
        tensors::write(path, &t, meta).map_err(|msg| NnError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(msg),
        })
    }

    /// Read a checkpoint of a run of `cfg` (up to epochs and patience) on the dataset whose
    /// manifest hashes to `sha`.
    fn load(path: &Path, specs: &[ParamSpec], cfg: &TrainConfig, sha: &str) -> Result<State> {
        let bad = |msg: String| NnError::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let (meta, mut found) = tensors::read(path).map_err(|e| e.at(path, bad))?;
        let meta: CheckpointMeta = meta
            .get(CHECKPOINT_KEY)
            .ok_or_else(|| bad("no checkpoint metadata".into()))
            .and_then(|j| serde_json::from_str(j).map_err(|e| bad(format!("metadata: {e}"))))?;
        if meta.format != CHECKPOINT_FORMAT {
            return Err(bad(format!("format `{}`", meta.format)));
        }
        if meta.dataset_manifest_sha256 != sha {
            return Err(bad("it was made on a different dataset".into()));
        }
        if comparable(&meta.config) != comparable(cfg) {
            return Err(bad(format!(
                "it was made with other settings ({}); only epochs and patience may change",
                serde_json::to_string(&meta.config).unwrap_or_default()
            )));
        }
        let mut take = |prefix: &str, required: bool| -> Result<Option<Vec<Vec<f32>>>> {
            let mut out = Vec::new();
            for s in specs {
                match found.remove(&format!("{prefix}/{}", s.name)) {
                    Some((shape, v)) if shape == s.shape => out.push(v),
                    Some((shape, _)) => {
                        return Err(bad(format!(
                            "{prefix}/{} has shape {shape:?}, expected {:?}",
                            s.name, s.shape
                        )))
                    }
                    None if required || !out.is_empty() => return Err(bad(format!("{prefix}/{} is missing", s.name))),
                    None => return Ok(None),
                }
            }
            Ok(Some(out))
        };
        let values = take("param", true)?.unwrap_or_default();
        let m = take("opt_m", false)?.unwrap_or_default();
        let v = take("opt_v", false)?.unwrap_or_default();
        let best = take("best", false)?;
        let ema = take("ema", false)?;
        let frozen = trainable(meta.config.init.as_ref(), specs)?
            .iter()
            .map(|t| !t)
            .collect();
        let opt = OptimState {
            kind: meta.config.optimizer,
            step: meta.opt_step,
            m,
            v,
            frozen,
        };
        let params = Params {
            specs: specs.to_vec(),
            values,
        };
        if (opt.m.len(), opt.v.len()) != shape_of_state(opt.kind, specs.len()) {
            return Err(bad("optimizer state does not match the optimizer".into()));
        }
        Ok(State {
            meta,
            params,
            opt,
            best,
            ema,
        })
    }
}

fn shape_of_state(kind: Optimizer, n: usize) -> (usize, usize) {
    match kind {
        Optimizer::Adam => (n, n),
        Optimizer::Sgd { momentum } if momentum != 0.0 => (n, 0),
        Optimizer::Sgd { .. } => (0, 0),
    }
}

/// Settings that may differ between an interrupted run and its resumption.
fn comparable(cfg: &TrainConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(cfg).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("epochs");
        o.remove("patience");
        // The default bins, said or not (checkpoints from before the setting have none).
        if o.get("ple_bins").and_then(serde_json::Value::as_u64) == Some(crate::arch::PLE_BINS as u64) {
            o.remove("ple_bins");
        }
    }
    v
}

/// Train `cfg.arch` on `ds`'s train split, early-stopping on its val split; checkpoint in
/// `work_dir` after every epoch; with `resume`, continue from the checkpoint there.
pub fn train(
    ds: &Dataset,
    cfg: &TrainConfig,
    work_dir: &Path,
    resume: bool,
    progress: &dyn Fn(TrainEvent),
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let train_set = load_split(ds, Split::Train)?;
    let val = load_split(ds, Split::Val)?;
    let data = TrainData {
        dataset: ds,
        train: &train_set,
        val: &val,
        data_id: modelfile::manifest_sha256(ds)?,
    };
    train_samples(&data, cfg, work_dir, resume, progress, None)
}

/// Samples to train on, already in memory: a dataset's splits ([`train`]), or any subsets of
/// them (the shadow models of a membership-inference attack train on other flows).
pub struct TrainData<'a> {
    /// Where the samples come from: the model's input, classes and preprocessing.
    pub dataset: &'a Dataset,
    pub train: &'a Samples,
    /// Early stopping and the kept weights (may be empty).
    pub val: &'a Samples,
    /// What a checkpoint must have been made on to be resumed ([`train`]: the manifest's
    /// sha256; a subset needs its own).
    pub data_id: String,
}

/// Positions (sorted) of the samples a run of `cfg` trains on among `n` training samples:
/// all, or the seeded subset of `max_train_samples`. Membership inference needs exactly these.
pub fn training_subset(n: usize, cfg: &TrainConfig) -> Vec<usize> {
    match cfg.max_train_samples.filter(|&m| m < n) {
        Some(max) => {
            let mut keep = permutation(n, derive_seed(cfg.seed, &[STREAM_SUBSET]));
            keep.truncate(max);
            keep.sort_unstable();
            keep
        }
        None => (0..n).collect(),
    }
}

/// [`train`] on samples in memory. `canaries` (DP-SGD only, no resume) are a privacy audit's
/// gradient canaries, stepped with every DP-SGD step; their scores are left in them.
pub fn train_samples(
    data: &TrainData<'_>,
    cfg: &TrainConfig,
    work_dir: &Path,
    resume: bool,
    progress: &dyn Fn(TrainEvent),
    mut canaries: Option<&mut crate::dp::Canaries>,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let ds = data.dataset;
    let manifest = &ds.manifest;
    let net = network_for(cfg, manifest)?;
    let manifest_sha = modelfile::manifest_sha256(ds)?;
    let sha = data.data_id.clone();
    if let Some(c) = &canaries {
        if cfg.dp.is_none() || resume {
            return Err(NnError::Config(
                "audit canaries need a DP-SGD run started from scratch (their scores are not checkpointed)".into(),
            ));
        }
        c.check_fits(net.param_count())?;
    }
    std::fs::create_dir_all(work_dir).map_err(crate::error::io_err(work_dir))?;
    let ckpt: PathBuf = work_dir.join(CHECKPOINT_FILE);

    if data.train.is_empty() {
        return Err(NnError::Config(format!(
            "{}: the train split is empty",
            ds.dir.display()
        )));
    }
    let keep = training_subset(data.train.len(), cfg);
    let subset;
    let train_set = if keep.len() < data.train.len() {
        subset = data.train.subset(&keep);
        &subset
    } else {
        data.train
    };
    let val = data.val;
    if val.is_empty() {
        progress(TrainEvent::Warning(
            "the validation split is empty: no early stopping, the last epoch's weights are kept".into(),
        ));
    }
    let weights = cfg
        .class_weights
        .then(|| inverse_frequency(&train_set.class_counts(net.classes)));

    let mut resumed_from = None;
    let mut st = if resume && ckpt.exists() {
        let mut st = State::load(&ckpt, &net.param_specs(), cfg, &sha)?;
        if st.meta.config.epochs != cfg.epochs && cfg.schedule == Schedule::Cosine {
            progress(TrainEvent::Warning(
                "the number of epochs changed: the cosine schedule now differs from the interrupted run's".into(),
            ));
        }
        st.meta.config = cfg.clone();
        resumed_from = Some(st.meta.epochs_done);
        progress(TrainEvent::Resumed {
            epochs_done: st.meta.epochs_done,
        });
        st
    } else {
        if resume {
            progress(TrainEvent::Warning(format!(
                "no checkpoint in {}: starting from scratch",
                work_dir.display()
            )));
        }
        let mut params = net.init_params(cfg.seed);
        let mut pretraining = None;
        if let Some(init) = &cfg.init {
            let (p, prov) = load_init(init, &net, &manifest.classes, &manifest.extract, &params)?;
            for d in &prov.preprocessing_differences {
                progress(TrainEvent::Warning(format!(
                    "the pre-trained model's data was prepared differently: {d}"
                )));
            }
            params = p;
            pretraining = Some(prov);
        } else if cfg.arch == Arch::Sae && cfg.sae_pretrain_epochs > 0 {
            pretrain_sae(&net, &mut params, train_set, cfg, progress);
        }
        let opt = optimizer_for(cfg, &params)?;
        let st = State {
            meta: CheckpointMeta {
                format: CHECKPOINT_FORMAT.into(),
                privpkt_version: env!("CARGO_PKG_VERSION").into(),
                config: cfg.clone(),
                dataset_manifest_sha256: sha.clone(),
                classes: manifest.classes.clone(),
                epochs_done: 0,
                opt_step: 0,
                best_score: None,
                best_epoch: 0,
                bad_epochs: 0,
                stopped_early: false,
                history: Vec::new(),
                dp_steps: 0,
                dp_sigma: None,
                budget_spent: false,
                ema_steps: 0,
                pretraining,
                dp_prior: None,
            },
            params,
            opt,
            best: None,
            ema: None,
        };
        st.save(&ckpt)?;
        st
    };

    let raw = train_set.raw_for(&net.input);
    let features = net.input.features();
    let n = train_set.len();
    let dp_run = match &cfg.dp {
        Some(dp) => Some(DpRun::new(
            dp,
            cfg,
            &net,
            train_set,
            &mut st.meta.dp_sigma,
            &mut st.meta.dp_prior,
            resumed_from.is_some(),
            progress,
        )?),
        None => None,
    };
    // Logit adjustment: the released counts under DP, the exact ones otherwise.
    let offsets: Option<Vec<f32>> = match (cfg.logit_adjust, &dp_run) {
        (false, _) => None,
        (true, Some(r)) => r.prior.as_deref().map(crate::dp::logit_offsets),
        (true, None) => {
            let counts: Vec<f64> = train_set.class_counts(net.classes).iter().map(|&c| c as f64).collect();
            Some(crate::dp::logit_offsets(&counts))
        }
    };
    let adjust = |values: &[Vec<f32>]| -> Vec<Vec<f32>> {
        let mut v = values.to_vec();
        if let (Some(off), Some(b)) = (&offsets, st_specs_out_bias(&net)) {
            v[b].iter_mut().zip(off).for_each(|(x, o)| *x += o);
        }
        v
    };
    let batches = match &dp_run {
        Some(r) => r.steps_per_epoch as usize,
        None => n.div_ceil(cfg.batch_size),
    };
    if let Some(aug) = &cfg.augment {
        aug.validate(&net.input)?;
    }
    while st.meta.epochs_done < cfg.epochs && !st.meta.stopped_early && !st.meta.budget_spent {
        if let Some(r) = &dp_run {
            if st.meta.dp_steps >= r.max_steps {
                st.meta.budget_spent = true;
                st.save(&ckpt)?;
                break;
            }
        }
        let e = st.meta.epochs_done;
        let started = Instant::now();
        let lr = cfg.schedule.lr(cfg.lr, e, cfg.epochs);
        progress(TrainEvent::EpochStart {
            epoch: e + 1,
            epochs: cfg.epochs,
            batches,
            lr,
        });
        let order = match dp_run {
            Some(_) => Vec::new(),
            None => permutation(n, derive_seed(cfg.seed, &[STREAM_SHUFFLE, e as u64])),
        };
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for b in 0..batches {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &[STREAM_DROPOUT, e as u64, b as u64]));
            let (s, size) = match &dp_run {
                // DP-SGD: a Poisson-sampled batch of units per step, until the budget is spent.
                Some(r) => {
                    if st.meta.dp_steps >= r.max_steps {
                        st.meta.budget_spent = true;
                        break;
                    }
                    let out = r.step(
                        &net,
                        &mut st.params,
                        &mut st.opt,
                        st.meta.dp_steps,
                        &raw,
                        train_set,
                        lr,
                        cfg.weight_decay,
                        &mut rng,
                        canaries.as_deref_mut(),
                    )?;
                    st.meta.dp_steps += 1;
                    out
                }
                None => {
                    let idx = &order[b * cfg.batch_size..((b + 1) * cfg.batch_size).min(n)];
                    let y: Vec<u32> = idx.iter().map(|&i| train_set.labels[i]).collect();
                    let x = batch_for(&raw, idx, features, cfg, cfg.seed, e, b);
                    let s = train_step(
                        &net,
                        &mut st.params,
                        &mut st.opt,
                        x,
                        &y,
                        weights.as_deref(),
                        lr,
                        cfg.weight_decay,
                        &mut rng,
                        None,
                    );
                    (s, idx.len())
                }
            };
            if let Some(d) = cfg.ema {
                st.update_ema(d);
            }
            loss_sum += s.loss * size as f64;
            correct += s.correct;
            seen += size;
            progress(TrainEvent::Batch {
                epoch: e + 1,
                batch: b + 1,
                batches,
                loss: loss_sum / seen.max(1) as f64,
                accuracy: correct as f64 / seen.max(1) as f64,
            });
        }
        let (val_f1, val_acc) = if val.is_empty() {
            (None, None)
        } else {
            let current = Params {
                specs: st.params.specs.clone(),
                values: adjust(st.current()),
            };
            let (f, a) = evaluate(&net, &current, val)?;
            (Some(f), Some(a))
        };
        let improved = match (val_f1, st.meta.best_score) {
            (Some(f), Some(b)) => f > b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            st.meta.best_score = val_f1;
            st.meta.best_epoch = e + 1;
            st.meta.bad_epochs = 0;
            st.best = Some(st.current().to_vec());
        } else if val_f1.is_some() {
            st.meta.bad_epochs += 1;
        }
        let record = EpochRecord {
            epoch: e + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_macro_f1: val_f1,
            val_accuracy: val_acc,
            seconds: started.elapsed().as_secs_f64(),
            epsilon: match &dp_run {
                Some(r) => Some(r.epsilon(st.meta.dp_steps)?),
                None => None,
            },
        };
        st.meta.history.push(record.clone());
        st.meta.epochs_done = e + 1;
        st.meta.opt_step = st.opt.step;
        st.meta.stopped_early = cfg.patience.is_some_and(|p| st.meta.bad_epochs >= p) && e + 1 < cfg.epochs;
        if let Some(r) = &dp_run {
            st.meta.budget_spent |= st.meta.dp_steps >= r.max_steps && e + 1 < cfg.epochs;
        }
        st.save(&ckpt)?;
        let eps = record.epsilon;
        progress(TrainEvent::EpochEnd { record, best: improved });
        if st.meta.budget_spent {
            progress(TrainEvent::BudgetSpent {
                epoch: e + 1,
                epsilon: eps.unwrap_or(f64::NAN),
            });
        }
        if st.meta.stopped_early {
            progress(TrainEvent::EarlyStop {
                epoch: e + 1,
                best_epoch: st.meta.best_epoch,
            });
        }
    }

    let (values, best_epoch) = match &st.best {
        Some(b) => (b.clone(), st.meta.best_epoch),
        None => (st.current().to_vec(), st.meta.epochs_done),
    };
    let history = st.meta.history.clone();
    let meta = ModelMeta {
        format: MODEL_FORMAT.into(),
        format_version: modelfile::format_version_for(&net.input),
        privpkt_version: env!("CARGO_PKG_VERSION").into(),
        arch: cfg.arch,
        input: net.input,
        scaling: net.input.scaling(),
        classes: manifest.classes.clone(),
        params: net.param_count() as u64,
        train: cfg.clone(),
        seed: cfg.seed,
        extract: manifest.extract,
        dataset_manifest_sha256: manifest_sha,
        history: HistorySummary {
            epochs_run: st.meta.epochs_done,
            best_epoch,
            best_val_macro_f1: st.meta.best_score,
            stopped_early: st.meta.stopped_early,
            epochs: history.clone(),
        },
        privacy: match &dp_run {
            Some(r) => {
                let mut p = r.summary(st.meta.dp_steps)?;
                if let Some(b) = canaries.as_ref().and_then(|c| c.broken()) {
                    p["broken_for_audit_validation"] = format!("{} off: the ε above does NOT hold", b.name()).into();
                }
                Some(p)
            }
            None => None,
        },
        federated: None,
        pretraining: st.meta.pretraining.clone(),
    };
    let model = Model::new(
        meta,
        Params {
            specs: st.params.specs.clone(),
            values: adjust(&values),
        },
    )?;
    Ok(TrainOutcome {
        model,
        history,
        best_epoch,
        best_val_macro_f1: st.meta.best_score,
        stopped_early: st.meta.stopped_early,
        resumed_from,
    })
}

/// Position of the output layer's bias (`out.bias`) among the network's tensors.
fn st_specs_out_bias(net: &Network) -> Option<usize> {
    net.param_specs().iter().position(|s| s.name == "out.bias")
}

/// Greedy layer-wise pre-training of the stacked autoencoder: layer k is trained as an
/// autoencoder (ReLU encoder, linear decoder, MSE) to reconstruct the output of the already
/// trained layers 1..k, for `sae_pretrain_epochs` epochs; the decoders are then dropped.
fn pretrain_sae(net: &Network, params: &mut Params, train: &Samples, cfg: &TrainConfig, progress: &dyn Fn(TrainEvent)) {
    let plain = crate::device::compute();
    let ad = crate::device::compute().autodiff();
    let raw = train.raw_for(&net.input);
    let features = net.input.features();
    let mut dims = vec![features];
    dims.extend(SAE_LAYERS);
    let layers = SAE_LAYERS.len();
    for k in 0..layers {
        let (din, dout) = (dims[k], dims[k + 1]);
        let dec_init = Network::init_uniform(
            &[
                ParamSpec {
                    name: "dec.weight".into(),
                    shape: vec![dout, din],
                    fan_in: dout,
                },
                ParamSpec {
                    name: "dec.bias".into(),
                    shape: vec![din],
                    fan_in: dout,
                },
            ],
            derive_seed(cfg.seed, &[STREAM_PRETRAIN, k as u64]),
        );
        let mut ae = Params {
            specs: vec![params.specs[2 * k].clone(), params.specs[2 * k + 1].clone()],
            values: vec![params.values[2 * k].clone(), params.values[2 * k + 1].clone()],
        };
        ae.specs.extend(dec_init.specs);
        ae.values.extend(dec_init.values);
        let mut opt = OptimState::new(cfg.optimizer, &ae);
        // Layers below k are frozen: plain tensors, no graph.
        let frozen = Params {
            specs: params.specs[..2 * k].to_vec(),
            values: params.values[..2 * k].to_vec(),
        }
        .tensors(&plain, false);
        for epoch in 0..cfg.sae_pretrain_epochs {
            let order = permutation(
                train.len(),
                derive_seed(cfg.seed, &[STREAM_PRETRAIN, k as u64, epoch as u64 + 1]),
            );
            let (mut sum, mut seen) = (0.0, 0usize);
            for idx in order.chunks(cfg.batch_size) {
                let x =
                    Tensor::<2>::from_data(TensorData::new(raw.batch(idx, features), [idx.len(), features]), &plain);
                let mut h = x;
                for j in 0..k {
                    h = burn::tensor::activation::relu(dense(&frozen, 2 * j, h, &mut Mode::eval()));
                }
                let p = ae.tensors(&ad, true);
                let z = burn::tensor::activation::relu(dense(&p, 0, h.clone(), &mut Mode::eval()));
                let r = dense(&p, 2, z, &mut Mode::eval());
                let loss = (r - h).square().mean();
                let grads = loss.backward();
                let lv = scalar(loss.inner().into_data());
                let g: Vec<TensorData> = p
                    .iter()
                    .map(|t| {
                        t.grad(&grads)
                            .map(Tensor::into_data)
                            .expect("every AE parameter has a gradient")
                    })
                    .collect();
                let g: Vec<&[f32]> = g.iter().map(|d| d.as_slice::<f32>().expect("f32")).collect();
                opt.update(&mut ae, &g, cfg.lr, cfg.weight_decay);
                sum += lv * idx.len() as f64;
                seen += idx.len();
            }
            progress(TrainEvent::Pretrain {
                layer: k + 1,
                layers,
                epoch: epoch + 1,
                epochs: cfg.sae_pretrain_epochs,
                loss: sum / seen.max(1) as f64,
            });
        }
        let mut vals = ae.values.into_iter();
        params.values[2 * k] = vals.next().expect("encoder weight");
        params.values[2 * k + 1] = vals.next().expect("encoder bias");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bins_said_or_not_resume_alike() {
        let plain = TrainConfig::new(Arch::Logistic);
        let said = TrainConfig {
            ple_bins: Some(crate::arch::PLE_BINS),
            epochs: 7,
            ..plain.clone()
        };
        assert_eq!(comparable(&plain), comparable(&said));
        let other = TrainConfig {
            ple_bins: Some(4),
            ..plain.clone()
        };
        assert_ne!(comparable(&plain), comparable(&other));
    }
}

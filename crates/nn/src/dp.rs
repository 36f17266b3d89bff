//! DP-SGD for every network of [`crate::model`]: per-unit clipped gradients from one backward
//! pass, Poisson sampling of privacy units, Gaussian noise.
//!
//! A step (Abadi et al. 2016, with Poisson sampling as the accountant assumes):
//! 1. every unit of the training split (a packet, a flow or a capture) joins the step with
//!    probability q; a sampled unit brings at most `unit_cap` of its samples (a random subset);
//! 2. one forward pass with a zero "probe" added to each layer's pre-activation and the
//!    weights detached, one backward pass of the *summed* loss: each probe's gradient is every
//!    example's output gradient, which with the layer's input gives each unit's gradient norm
//!    and the clipped sum ([`privpkt_privacy::perex`]); the hand-written convolution blocks
//!    ([`crate::model::HandBlock`]) hand over the same (columns, output gradient) pairs;
//! 3. each unit's *summed* gradient over all its samples is clipped to C over the whole
//!    parameter vector, so one flow (or capture) moves the sum by at most C whatever its
//!    number of packets: the ε printed is per unit;
//! 4. N(0, σ²C²) noise from ChaCha20 ([`privpkt_privacy::NoiseGenerator`]) is added to every
//!    coordinate, and the result divided by the *expected* number of units per step, q·N.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, TensorData};
use privpkt_privacy::noise::streams_needed;
use privpkt_privacy::perex::{clipped_sum, unit_norms, LayerPair};
use privpkt_privacy::{
    calibrate_sigma_phases, clip_factors, epsilon, run_keys, steps_for_budget_with, AccountantKind, NoiseGenerator,
    Phase,
};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
use serde::{Deserialize, Serialize};

use crate::data::Samples;
use crate::error::{NnError, Result};
use crate::model::{weighted_cross_entropy_sum, Mode, Network, Params, ProbeKind};
use crate::train::StepStats;

/// Whose privacy the guarantee is about: the records the accountant's ε applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyUnit {
    /// One sample: a packet vector, or one FlowPic image. Says little when a flow has
    /// thousands of packets.
    Packet,
    /// All samples of one flow (the default).
    #[default]
    Flow,
    /// All samples of one capture file.
    Capture,
}

impl PrivacyUnit {
    pub fn name(self) -> &'static str {
        match self {
            PrivacyUnit::Packet => "packet",
            PrivacyUnit::Flow => "flow",
            PrivacyUnit::Capture => "capture",
        }
    }
}

impl fmt::Display for PrivacyUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PrivacyUnit {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "packet" | "sample" => Ok(PrivacyUnit::Packet),
            "flow" => Ok(PrivacyUnit::Flow),
            "capture" => Ok(PrivacyUnit::Capture),
            _ => Err(NnError::Config(format!(
                "unknown privacy unit `{s}` (packet, flow or capture)"
            ))),
        }
    }
}

/// DP-SGD settings of a training run (stored in the model file). The training batch size is
/// the *expected* number of units per step: q = batch size / units in the train split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    pub unit: PrivacyUnit,
    /// Clipping norm C of a unit's summed gradient.
    pub clip: f64,
    /// Noise multiplier σ; `None` calibrates it so the planned epochs spend exactly `epsilon`.
    pub sigma: Option<f64>,
    /// Budget ε at `delta`: training stops before it would be exceeded.
    pub epsilon: Option<f64>,
    pub delta: f64,
    /// Samples a sampled unit contributes to one step at most (a random subset beyond it).
    pub unit_cap: usize,
    pub accountant: AccountantKind,
    /// Draw noise and sampling from the run's seed (reproducible experiments) instead of the
    /// operating system's entropy (real private training).
    pub seeded: bool,
}

impl DpConfig {
    /// Flow-level DP at (`epsilon`, 1e-5) with C = 1, RDP accounting, 8 samples per flow.
    pub fn new(epsilon: f64) -> DpConfig {
        DpConfig {
            unit: PrivacyUnit::Flow,
            clip: 1.0,
            sigma: None,
            epsilon: Some(epsilon),
            delta: 1e-5,
            unit_cap: 8,
            accountant: AccountantKind::Rdp,
            seeded: false,
        }
    }

    /// Refuses settings no accountant can honour.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(NnError::Config(format!("DP-SGD: {m}")));
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return bad(format!(
                "the clipping norm must be a finite number > 0, got {}",
                self.clip
            ));
        }
        if let Some(s) = self.sigma {
            if !(s.is_finite() && s > 0.0) {
                return bad(format!("the noise multiplier σ must be a finite number > 0, got {s}"));
            }
        }
        match self.epsilon {
            Some(e) if !(e.is_finite() && e > 0.0) => return bad(format!("ε must be a finite number > 0, got {e}")),
            None if self.sigma.is_none() => return bad("give a budget ε, a noise multiplier σ, or both".into()),
            _ => {}
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad(format!("δ must be in (0, 1), got {}", self.delta));
        }
        if self.unit_cap == 0 {
            return bad("the per-unit sample cap must be ≥ 1".into());
        }
        Ok(())
    }
}

/// The training samples of each privacy unit, units in order of first appearance.
pub fn units_of(samples: &Samples, unit: PrivacyUnit) -> Vec<Vec<u32>> {
    let mut ids: HashMap<(u32, u64), usize> = HashMap::new();
    let mut units: Vec<Vec<u32>> = Vec::new();
    for i in 0..samples.len() {
        let key = match unit {
            PrivacyUnit::Packet => {
                units.push(vec![i as u32]);
                continue;
            }
            PrivacyUnit::Flow => (samples.capture[i], samples.flow[i]),
            PrivacyUnit::Capture => (samples.capture[i], 0),
        };
        let u = *ids.entry(key).or_insert_with(|| {
            units.push(Vec::new());
            units.len() - 1
        });
        units[u].push(i as u32);
    }
    units
}

/// One Poisson-sampled step: sample indices grouped by unit (unit u is
/// `samples[offsets[u]..offsets[u + 1]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepBatch {
    pub samples: Vec<usize>,
    pub offsets: Vec<usize>,
}

/// Each unit joins with probability `q` (independently: gaps between sampled units are drawn
/// from the geometric distribution, so a step costs O(batch), not O(units)); a sampled unit
/// with more than `cap` samples brings a uniform random `cap` of them.
pub fn poisson_batch<R: Rng>(units: &[Vec<u32>], q: f64, cap: usize, rng: &mut R) -> StepBatch {
    let mut samples = Vec::new();
    let mut offsets = vec![0];
    let ln1q = (1.0 - q).ln();
    let mut next = 0usize;
    loop {
        // Units skipped before the next sampled one: ⌊ln(U)/ln(1 − q)⌋, U uniform in (0, 1].
        let u: f64 = 1.0 - rng.random::<f64>();
        let skip = if q >= 1.0 { 0.0 } else { (u.ln() / ln1q).floor() };
        // Past the last unit (or never, for q = 0): the step's batch is complete.
        if !skip.is_finite() || skip >= (units.len() - next.min(units.len())) as f64 {
            break;
        }
        let i = next + skip as usize;
        let members = &units[i];
        if members.len() > cap {
            let mut pick: Vec<usize> = sample(rng, members.len(), cap).into_iter().collect();
            pick.sort_unstable();
            samples.extend(pick.into_iter().map(|j| members[j] as usize));
        } else {
            samples.extend(members.iter().map(|&j| j as usize));
        }
        offsets.push(samples.len());
        next = i + 1;
    }
    StepBatch { samples, offsets }
}

/// The per-unit clipped gradient sum of a batch, before noise.
#[derive(Debug, Clone)]
pub struct ClippedGrads {
    /// `Σ_u min(1, C/‖∇_u‖)·∇_u`, one vector per parameter.
    pub sum: Vec<Vec<f32>>,
    pub stats: StepStats,
    /// Units whose gradient norm exceeded C.
    pub clipped_units: usize,
    pub units: usize,
}

/// A layer's input and output gradient taken off the autodiff graph.
struct HostPair<'a> {
    weight: usize,
    input: Cow<'a, [f32]>,
    grad: Vec<f32>,
    d_out: usize,
    kind: PairKind,
}

enum PairKind {
    /// `[rows, d_in]` rows, weight `[d_in, d_out]`.
    Rows { d_in: usize, rows_per_example: usize },
    /// Images `[n, C_in, S²]`, weight burn's `[C_out, C_in, k, k]`.
    Conv2d {
        channels: usize,
        size: usize,
        kernel: usize,
        stride: usize,
    },
}

impl HostPair<'_> {
    fn layer(&self) -> privpkt_privacy::Result<LayerPair<'_>> {
        match self.kind {
            PairKind::Rows { d_in, rows_per_example } => {
                LayerPair::rows(&self.input, d_in, &self.grad, self.d_out, rows_per_example)
            }
            PairKind::Conv2d {
                channels,
                size,
                kernel,
                stride,
            } => LayerPair::conv2d(&self.input, channels, size, kernel, stride, &self.grad, self.d_out),
        }
    }
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 tensor")
}

fn engine_err(e: privpkt_privacy::PrivacyError) -> NnError {
    NnError::Config(format!("DP-SGD: {e}"))
}

/// Which tensors get per-unit gradients, and how much each example's loss counts.
#[derive(Debug, Clone, Copy)]
pub struct GradOptions<'a> {
    /// Tensors being trained (`None`: all). The others get no gradient, take no part in the
    /// unit norms and get no noise: they are public (kept from a pre-trained model).
    pub trainable: Option<&'a [bool]>,
    /// Weight of every example's loss: `1/views` when each sample is present as several
    /// augmented views, so a unit's gradient is the mean over its views before clipping.
    pub example_weight: f32,
}

impl Default for GradOptions<'_> {
    fn default() -> Self {
        GradOptions {
            trainable: None,
            example_weight: 1.0,
        }
    }
}

/// Loss, predictions and each unit's clipped gradient sum for a batch `x` (`[n, features]`,
/// scaled) whose examples are grouped into units by `offsets`. `dropout` `None` disables
/// dropout (tests compare with batch-of-one passes).
#[allow(clippy::too_many_arguments)]
pub fn clipped_gradients(
    net: &Network,
    params: &Params,
    x: Vec<f32>,
    targets: &[u32],
    offsets: &[usize],
    clip: f64,
    dropout: Option<&mut ChaCha8Rng>,
    opts: GradOptions<'_>,
) -> Result<ClippedGrads> {
    let n = targets.len();
    let units = offsets.len().saturating_sub(1);
    privpkt_privacy::perex::check_units(offsets, n).map_err(engine_err)?;
    let mut sum: Vec<Vec<f32>> = params.values.iter().map(|v| vec![0f32; v.len()]).collect();
    if n == 0 {
        return Ok(ClippedGrads {
            sum,
            stats: StepStats { loss: 0.0, correct: 0 },
            clipped_units: 0,
            units,
        });
    }
    let ad = crate::device::compute().autodiff();
    // Detached weights: autodiff computes only what the probes need, never a weight gradient
    // (the clipped sums replace it).
    let p = params.tensors(&ad, false);
    let xt = Tensor::<2>::from_data(TensorData::new(x, [n, net.input.features()]), &crate::device::compute());
    let mut probes = Vec::new();
    let mut block = None;
    let logits = net.forward(
        &p,
        xt,
        &mut Mode {
            dropout,
            probes: Some(&mut probes),
            conv_block: Some(&mut block),
            trainable: opts.trainable,
        },
    );
    let trains = |i: usize| opts.trainable.is_none_or(|t| t.get(i).copied().unwrap_or(true));
    // Every trained parameter must belong to a layer with a per-example rule, or the run is
    // refused; frozen ones need none.
    let mut covered: Vec<bool> = (0..params.values.len()).map(|i| !trains(i)).collect();
    for pr in &probes {
        covered[pr.weight] = true;
        covered[pr.bias] = true;
    }
    if let Some((block, _)) = &block {
        for l in block.layers() {
            covered[l.weight] = true;
            covered[l.weight + 1] = true;
        }
    }
    if let Some(i) = covered.iter().position(|c| !c) {
        return Err(NnError::Config(format!(
            "DP-SGD cannot compute per-example gradients of `{}` in this configuration of {}: refusing to \
             train without them",
            params.specs[i].name, net.arch
        )));
    }
    let probs = logits.clone().inner().into_data();
    let correct = crate::train::count_correct(&probs, targets, net.classes);
    let loss = weighted_cross_entropy_sum(logits, targets, opts.example_weight);
    let grads = loss.backward();
    let loss_sum = host(loss.inner());

    let mut pairs = Vec::new();
    if let Some((block, features)) = &block {
        let layers = block.layers();
        if layers.iter().any(|l| trains(l.weight)) {
            let df = host(features.grad(&grads).expect("the features lie on the loss's path"));
            let g = block.backward(&p, &df, false);
            for (l, grad) in layers.into_iter().zip(g.layers) {
                if trains(l.weight) {
                    pairs.push(HostPair {
                        weight: l.weight,
                        d_out: params.values[l.weight + 1].len(),
                        input: Cow::Borrowed(l.input),
                        grad,
                        kind: PairKind::Rows {
                            d_in: l.d_in,
                            rows_per_example: l.rows_per_example,
                        },
                    });
                }
            }
        }
    }
    for pr in probes {
        let [_, p1, p2] = pr.probe.dims();
        let grad = pr
            .probe
            .grad(&grads)
            .map(host)
            .unwrap_or_else(|| vec![0f32; n * p1 * p2]);
        let [_, a, b] = pr.input.dims();
        let input = host(pr.input);
        match pr.kind {
            // Probe [n, positions, d_out], input [n, positions, d_in].
            ProbeKind::Matmul => pairs.push(HostPair {
                weight: pr.weight,
                input: Cow::Owned(input),
                grad,
                d_out: p2,
                kind: PairKind::Rows {
                    d_in: b,
                    rows_per_example: a,
                },
            }),
            // Probe [n, C_out, positions], input [n, C_in, S²]: the engine wants the gradient
            // as [n, positions, C_out].
            ProbeKind::Conv2d {
                kernel,
                stride,
                in_size,
            } => {
                let (c_out, positions) = (p1, p2);
                let mut t = vec![0f32; grad.len()];
                for (e, (dst, src)) in t
                    .chunks_mut(c_out * positions)
                    .zip(grad.chunks(c_out * positions))
                    .enumerate()
                {
                    debug_assert!(e < n);
                    for c in 0..c_out {
                        for q in 0..positions {
                            dst[q * c_out + c] = src[c * positions + q];
                        }
                    }
                }
                pairs.push(HostPair {
                    weight: pr.weight,
                    input: Cow::Owned(input),
                    grad: t,
                    d_out: c_out,
                    kind: PairKind::Conv2d {
                        channels: a,
                        size: in_size,
                        kernel,
                        stride,
                    },
                });
            }
        }
    }

    let mut sq = vec![0f64; units];
    let mut norms = Vec::with_capacity(pairs.len());
    for pair in &pairs {
        let layer = pair.layer().map_err(engine_err)?;
        let n = unit_norms(&layer, offsets, KEEP_BYTES).map_err(engine_err)?;
        sq.iter_mut().zip(&n.sq).for_each(|(s, v)| *s += v);
        norms.push(n);
    }
    let factors = clip_factors(&sq, clip)
        .map_err(|e| NnError::Config(format!("DP-SGD: {e}: the model diverged (try a lower learning rate)")))?;
    let clipped_units = factors.iter().filter(|&&f| f < 1.0).count();
    for (pair, n) in pairs.iter().zip(&norms) {
        let layer = pair.layer().map_err(engine_err)?;
        let (w, b) = clipped_sum(&layer, offsets, &factors, Some(n)).map_err(engine_err)?;
        sum[pair.weight] = match pair.kind {
            PairKind::Rows { .. } => w,
            PairKind::Conv2d { .. } => transpose(&w, layer.d_in(), pair.d_out),
        };
        sum[pair.weight + 1] = b;
    }
    // A frozen layer of the hand-written block: its (zero) sums are not the run's to change.
    for (i, s) in sum.iter_mut().enumerate() {
        if !trains(i) {
            s.fill(0.0);
        }
    }
    Ok(ClippedGrads {
        sum,
        stats: StepStats {
            loss: f64::from(loss_sum.first().copied().unwrap_or(f32::NAN))
                / (n as f64 * f64::from(opts.example_weight)),
            correct,
        },
        clipped_units,
        units,
    })
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// Memory for unit weight gradients formed while taking norms (Deep Packet's conv2 at batch
/// 64: 51 MB), reused as the clipped sum instead of a second product over every row.
const KEEP_BYTES: usize = 512 << 20;

fn privacy_err(e: privpkt_privacy::PrivacyError) -> NnError {
    NnError::Config(format!("DP-SGD: {e}"))
}

/// A private training run's fixed state: units, q, σ, step budget and secret keys.
pub(crate) struct DpRun {
    cfg: DpConfig,
    units: Vec<Vec<u32>>,
    batch: usize,
    pub q: f64,
    pub sigma: f64,
    sigma_calibrated: bool,
    pub steps_per_epoch: u64,
    pub max_steps: u64,
    noise_key: [u8; 32],
    sample_key: [u8; 32],
    streams_per_step: u64,
    seed: u64,
    /// Tensors trained (the others are public, kept from a pre-trained model: no noise).
    trainable: Vec<bool>,
    augment: Option<crate::augment::Augment>,
    /// Logit adjustment: the class counts of the training units, released once with Gaussian
    /// noise of the run's σ (one full-batch release of sensitivity 1, composed with the steps).
    pub prior: Option<Vec<f64>>,
}

/// `--batch-size full`: every unit in every step (q = 1: full-batch DP gradient descent).
pub const FULL_BATCH: usize = usize::MAX;

impl DpRun {
    /// Sets up DP-SGD for `train`: σ from the settings, or calibrated so that the planned
    /// epochs spend the budget, or the σ a resumed run already used (`saved_sigma`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dp: &DpConfig,
        cfg: &crate::train::TrainConfig,
        net: &Network,
        train: &Samples,
        saved_sigma: &mut Option<f64>,
        saved_prior: &mut Option<Vec<f64>>,
        resumed: bool,
        progress: &dyn Fn(crate::train::TrainEvent),
    ) -> Result<DpRun> {
        dp.validate()?;
        let units = units_of(train, dp.unit);
        let n_units = units.len();
        let full = cfg.batch_size == FULL_BATCH;
        let q = if full {
            1.0
        } else {
            cfg.batch_size as f64 / n_units.max(1) as f64
        };
        if q > 1.0 {
            return Err(NnError::Config(format!(
                "DP-SGD: an expected batch of {} {}s exceeds the {n_units} {}s of the train split (q = {q:.3} > 1); \
                 lower --batch-size, or give `--batch-size full` for full-batch DP gradient descent",
                cfg.batch_size, dp.unit, dp.unit
            )));
        }
        let steps_per_epoch = if full {
            1
        } else {
            ((n_units as f64 / cfg.batch_size as f64).round() as u64).max(1)
        };
        let planned = steps_per_epoch * cfg.epochs as u64;
        // Logit adjustment releases the class counts once, with the steps' σ: one more phase.
        let extra = |sigma: f64| -> Vec<Phase> {
            if cfg.logit_adjust {
                vec![Phase {
                    q: 1.0,
                    sigma,
                    steps: 1,
                }]
            } else {
                Vec::new()
            }
        };
        let (sigma, calibrated) = match (*saved_sigma, dp.sigma, dp.epsilon) {
            (Some(s), given, _) => (s, given.is_none()),
            (None, Some(s), _) => (s, false),
            (None, None, Some(eps)) => (
                calibrate_sigma_phases(eps, dp.delta, dp.accountant, &|s| {
                    let mut p = vec![Phase {
                        q,
                        sigma: s,
                        steps: planned,
                    }];
                    p.extend(extra(s));
                    p
                })
                .map_err(privacy_err)?,
                true,
            ),
            (None, None, None) => return Err(NnError::Config("DP-SGD: neither ε nor σ given".into())),
        };
        *saved_sigma = Some(sigma);
        let max_steps = match dp.epsilon {
            Some(eps) => steps_for_budget_with(eps, dp.delta, q, sigma, dp.accountant, &extra(sigma))
                .map_err(privacy_err)?
                .min(planned),
            None => planned,
        };
        if max_steps == 0 {
            return Err(NnError::Config(format!(
                "DP-SGD: with σ = {sigma} and q = {q:.4} not even one step fits in ε = {}; raise σ or the budget",
                dp.epsilon.unwrap_or(f64::NAN)
            )));
        }
        let seed = dp.seeded.then(|| crate::train::derive_seed(cfg.seed, &[STREAM_DP]));
        let (noise_key, sample_key) = run_keys(seed).map_err(privacy_err)?;
        // Released once per run: a resumed run reuses the counts it released, never draws again.
        if cfg.logit_adjust && saved_prior.is_none() {
            *saved_prior = Some(noisy_class_counts(
                &units,
                train,
                net.classes,
                sigma * dp.clip,
                &noise_key,
            )?);
        }
        if seed.is_none() && resumed {
            progress(crate::train::TrainEvent::Warning(
                "resumed private run: noise and sampling continue from fresh OS entropy (the accounting is unchanged)"
                    .into(),
            ));
        }
        let run = DpRun {
            cfg: dp.clone(),
            units,
            // A full batch expects every unit (the sentinel is not a count).
            batch: if full { n_units } else { cfg.batch_size },
            q,
            sigma,
            sigma_calibrated: calibrated,
            steps_per_epoch,
            max_steps,
            noise_key,
            sample_key,
            // Step t's noise starts at stream t·(streams per step): a resumed run never reuses any.
            streams_per_step: net.param_specs().iter().map(|p| streams_needed(p.numel())).sum(),
            seed: cfg.seed,
            trainable: crate::init::trainable(cfg.init.as_ref(), &net.param_specs())?,
            augment: cfg.augment,
            prior: saved_prior.clone().filter(|_| cfg.logit_adjust),
        };
        progress(crate::train::TrainEvent::Privacy {
            sigma,
            calibrated,
            q,
            units: n_units,
            steps_per_epoch,
            max_steps,
            epsilon_at_max: run.epsilon(max_steps)?,
        });
        Ok(run)
    }

    /// The mechanisms of the run after `steps` steps: the steps, and the class-count release.
    fn phases(&self, steps: u64) -> Vec<Phase> {
        let mut p = Vec::new();
        if steps > 0 {
            p.push(Phase {
                q: self.q,
                sigma: self.sigma,
                steps,
            });
        }
        if self.prior.is_some() {
            p.push(Phase {
                q: 1.0,
                sigma: self.sigma,
                steps: 1,
            });
        }
        p
    }

    /// ε spent after `steps` steps, by the run's accountant (the class-count release included).
    pub fn epsilon(&self, steps: u64) -> Result<f64> {
        let phases = self.phases(steps);
        if phases.is_empty() {
            return Ok(0.0);
        }
        epsilon(self.cfg.accountant, &phases, self.cfg.delta).map_err(privacy_err)
    }

    /// ε of the run after `steps` steps by both accountants.
    /// The recorded view of the accountant the run does not use is informative only: when it
    /// cannot be computed (PRV's grid for extreme settings) it is recorded as unavailable, with
    /// the reason, rather than losing the trained model.
    fn both_accountants(&self, steps: u64) -> Result<serde_json::Value> {
        let unavailable = |e: privpkt_privacy::PrivacyError| serde_json::json!({ "unavailable": e.to_string() });
        if self.prior.is_none() {
            let one = |k| {
                privpkt_privacy::PrivacySummary::compute(k, self.q, self.sigma, steps, self.cfg.delta)
                    .map(|s| serde_json::to_value(s).unwrap_or_default())
            };
            let mut out = serde_json::Map::new();
            for k in [AccountantKind::Rdp, AccountantKind::Prv] {
                let v = match one(k) {
                    Ok(v) => v,
                    Err(e) if k != self.cfg.accountant => unavailable(e),
                    Err(e) => return Err(privacy_err(e)),
                };
                out.insert(k.as_str().to_string(), v);
            }
            return Ok(serde_json::Value::Object(out));
        }
        let phases = self.phases(steps);
        let of = |k| match epsilon(k, &phases, self.cfg.delta) {
            Ok(e) => Ok(serde_json::json!({ "epsilon": e })),
            Err(e) if k != self.cfg.accountant => Ok(unavailable(e)),
            Err(e) => Err(privacy_err(e)),
        };
        Ok(serde_json::json!({
            "rdp": of(AccountantKind::Rdp)?,
            "prv": of(AccountantKind::Prv)?,
            "phases": phases.iter().map(|p| serde_json::json!({"q": p.q, "sigma": p.sigma, "steps": p.steps}))
                .collect::<Vec<_>>(),
        }))
    }

    /// One DP-SGD step `t` (0-based over the run): Poisson-sample units, clip, add noise,
    /// update. Returns the batch statistics and the number of samples it used. An audit's
    /// gradient `canaries` join the clipped sum before the noise and read the noisy sum after it.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        net: &Network,
        params: &mut Params,
        opt: &mut crate::optim::OptimState,
        t: u64,
        raw: &crate::data::RawBatch<'_>,
        train: &Samples,
        lr: f64,
        weight_decay: f64,
        dropout: &mut ChaCha8Rng,
        mut canaries: Option<&mut Canaries>,
    ) -> Result<(StepStats, usize)> {
        let broken = canaries.as_ref().and_then(|c| c.broken);
        // Broken clipping (audit validation only): every factor is 1.
        let clip = match broken {
            Some(BrokenDp::Clipping) => f64::MAX,
            _ => self.cfg.clip,
        };
        let mut rng = ChaCha20Rng::from_seed(self.sample_key);
        rng.set_stream(t);
        let mut b = poisson_batch(&self.units, self.q, self.cfg.unit_cap, &mut rng);
        // Augmentation multiplicity: each sample as `views` views of one unit, averaged.
        let views = self.augment.map_or(1, |a| a.views);
        let x = match &self.augment {
            Some(aug) => {
                b.samples = b.samples.iter().flat_map(|&i| std::iter::repeat_n(i, views)).collect();
                b.offsets.iter_mut().for_each(|o| *o *= views);
                let mut arng = ChaCha8Rng::seed_from_u64(crate::train::derive_seed(self.seed, &[STREAM_AUGMENT, t]));
                raw.batch_augmented(&b.samples, net.input.features(), aug, &mut arng)
            }
            None => raw.batch(&b.samples, net.input.features()),
        };
        let y: Vec<u32> = b.samples.iter().map(|&i| train.labels[i]).collect();
        let opts = GradOptions {
            trainable: Some(&self.trainable),
            example_weight: 1.0 / views as f32,
        };
        let mut cg = clipped_gradients(net, params, x, &y, &b.offsets, clip, Some(dropout), opts)?;
        if let Some(c) = canaries.as_deref_mut() {
            c.inject(t, self.q, clip, &mut cg.sum)?;
        }
        let mut noise = NoiseGenerator::from_seed(self.noise_key);
        noise.set_next_stream(t * self.streams_per_step);
        let std = (self.sigma * self.cfg.clip) as f32;
        if broken != Some(BrokenDp::Noise) {
            for (g, &trained) in cg.sum.iter_mut().zip(&self.trainable) {
                if trained {
                    noise.add_noise(g, std).map_err(privacy_err)?;
                } else {
                    // Streams stay reserved for every tensor: freezing one shifts no other's noise.
                    noise.set_next_stream(noise.next_stream() + streams_needed(g.len()));
                }
            }
        }
        if let Some(c) = canaries {
            c.observe(&cg.sum);
        }
        // Divide by the *expected* number of units: the actual count would leak it.
        let scale = (1.0 / (self.q * self.units.len() as f64)) as f32;
        for g in &mut cg.sum {
            g.iter_mut().for_each(|v| *v *= scale);
        }
        let g: Vec<&[f32]> = cg.sum.iter().map(Vec::as_slice).collect();
        opt.update(params, &g, lr, weight_decay);
        Ok((cg.stats, y.len() / views))
    }

    /// What the model file records about the run's privacy after `steps` steps.
    pub fn summary(&self, steps: u64) -> Result<serde_json::Value> {
        let accountants = if steps > 0 {
            self.both_accountants(steps)?
        } else {
            serde_json::Value::Null
        };
        let noise = if self.cfg.seeded {
            format!(
                "ChaCha20 keyed from the run's seed {} (reproducible experiment: the key can be searched, not for a \
                 real privacy claim)",
                self.seed
            )
        } else {
            "ChaCha20 keyed from OS entropy (key not recorded)".to_string()
        };
        Ok(serde_json::json!({
            "mechanism": "DP-SGD",
            "unit": self.cfg.unit,
            "epsilon": self.epsilon(steps)?,
            "delta": self.cfg.delta,
            "accountant": self.cfg.accountant,
            "target_epsilon": self.cfg.epsilon,
            "sigma": self.sigma,
            "sigma_calibrated": self.sigma_calibrated,
            "clip": self.cfg.clip,
            "q": self.q,
            "expected_units_per_step": self.batch,
            "units": self.units.len(),
            "unit_cap": self.cfg.unit_cap,
            "steps": steps,
            "sampling": "Poisson",
            "noise": noise,
            "accountants": accountants,
            "covers": "the training split's units; the validation split (early stopping, model selection) and the \
                       test split are not covered",
            "float_caveat": "floating-point Gaussian noise (Mironov 2012)",
            "class_prior": self.prior.as_ref().map(|p| serde_json::json!({
                "mechanism": "Gaussian: each training unit's share of each class (sensitivity 1), released once with \
                              the steps' σ·C and composed with them in ε; used to shift the output biases by \
                              −log of the class frequencies (logit adjustment, post-processing)",
                "noisy_counts": p,
            })),
        }))
    }
}

/// The training units' class counts (a unit adds its share of samples of each class, so at most
/// 1 in L2: sensitivity 1 under adding or removing a unit) with N(0, `std`²) noise on each,
/// from a stream of `key` that no step uses.
fn noisy_class_counts(
    units: &[Vec<u32>],
    train: &Samples,
    classes: usize,
    std: f64,
    key: &[u8; 32],
) -> Result<Vec<f64>> {
    let mut counts = vec![0f32; classes];
    for u in units {
        let share = 1.0 / u.len().max(1) as f32;
        for &i in u {
            counts[train.labels[i as usize] as usize] += share;
        }
    }
    let mut noise = NoiseGenerator::from_seed(*key);
    noise.set_next_stream(PRIOR_STREAM);
    noise.add_noise(&mut counts, std as f32).map_err(privacy_err)?;
    Ok(counts.into_iter().map(f64::from).collect())
}

/// Noise stream of the class-count release: far past any step's streams.
const PRIOR_STREAM: u64 = 1 << 62;

/// Output-bias offsets of logit adjustment (Menon et al. 2021): `−ln π̂_c`, with the class
/// frequencies π̂ from `counts` (each floored at 1, as a noisy count can be ≤ 0).
pub fn logit_offsets(counts: &[f64]) -> Vec<f32> {
    let c: Vec<f64> = counts.iter().map(|&n| n.max(1.0)).collect();
    let total: f64 = c.iter().sum();
    c.iter().map(|&n| -(n / total).ln() as f32).collect()
}

/// Seed stream of the DP keys when the run is seeded.
const STREAM_DP: u64 = 5;
/// Seed stream of the augmented views of DP steps (not secret: the views are of sampled units).
const STREAM_AUGMENT: u64 = 6;

/// DP-SGD broken on purpose, only to check that a privacy audit notices: reachable through
/// [`Canaries::break_dp`] (`privpkt audit --break`), never through a training configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokenDp {
    /// No Gaussian noise: the accountant's ε is void.
    Noise,
    /// No clipping (real units and canaries): the noise no longer covers a unit's influence.
    Clipping,
}

impl BrokenDp {
    pub fn name(self) -> &'static str {
        match self {
            BrokenDp::Noise => "noise",
            BrokenDp::Clipping => "clipping",
        }
    }
}

/// Gradient ("Dirac") canaries of a one-run privacy audit (Steinke, Nasr & Jagielski 2023).
///
/// Canary i is an extra privacy unit whose gradient is `norm` times the basis vector of
/// coordinate `coords[i]` of the flat parameter vector. An included canary joins every step
/// with the run's sampling rate q (Poisson, like a real unit), is clipped by the same
/// [`clip_factors`] and added to the clipped sum before the noise. After the noise every canary,
/// included or not, adds the noisy sum at its coordinate to its score: the score is computed
/// from what the mechanism releases, so the accountant's (ε, δ) bounds what it can reveal.
#[derive(Debug, Clone)]
pub struct Canaries {
    coords: Vec<usize>,
    included: Vec<bool>,
    norm: f64,
    seed: u64,
    broken: Option<BrokenDp>,
    scores: Vec<f64>,
    steps: u64,
}

impl Canaries {
    /// Canaries at distinct `coords`, `included[i]` saying whether canary i is a training unit;
    /// `seed` drives their per-step sampling.
    pub fn new(coords: Vec<usize>, included: Vec<bool>, norm: f64, seed: u64) -> Result<Canaries> {
        let bad = |m: String| Err(NnError::Config(format!("audit canaries: {m}")));
        if coords.is_empty() || coords.len() != included.len() {
            return bad(format!(
                "{} coordinates for {} inclusion flags",
                coords.len(),
                included.len()
            ));
        }
        if !(norm.is_finite() && norm > 0.0) {
            return bad(format!(
                "the canary gradient norm must be a finite number > 0, got {norm}"
            ));
        }
        let mut sorted = coords.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return bad("two canaries share a coordinate".into());
        }
        Ok(Canaries {
            scores: vec![0.0; coords.len()],
            coords,
            included,
            norm,
            seed,
            broken: None,
            steps: 0,
        })
    }

    /// Break DP-SGD on purpose for this run (to validate an audit): its ε no longer holds.
    pub fn break_dp(mut self, how: BrokenDp) -> Canaries {
        self.broken = Some(how);
        self
    }

    pub fn broken(&self) -> Option<BrokenDp> {
        self.broken
    }

    pub fn included(&self) -> &[bool] {
        &self.included
    }

    /// Each canary's score: the noisy gradient sums at its coordinate, summed over the steps.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// Steps the canaries took part in.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The flat coordinate of every canary must lie in a model of `params` parameters.
    pub fn check_fits(&self, params: usize) -> Result<()> {
        match self.coords.iter().max() {
            Some(&c) if c >= params => Err(NnError::Config(format!(
                "audit canaries: coordinate {c} lies outside the model's {params} parameters"
            ))),
            _ => Ok(()),
        }
    }

    /// Adds the sampled included canaries' clipped gradients to `sum` (step `t`).
    fn inject(&mut self, t: u64, q: f64, clip: f64, sum: &mut [Vec<f32>]) -> Result<()> {
        let factor = clip_factors(&[self.norm * self.norm], clip).map_err(privacy_err)?[0];
        let g = (self.norm * factor) as f32;
        let mut rng = ChaCha8Rng::seed_from_u64(crate::train::derive_seed(self.seed, &[t]));
        let at = locate(sum);
        for (i, &c) in self.coords.iter().enumerate() {
            // One draw per canary, included or not, so inclusion does not shift the others'.
            let sampled = rng.random::<f64>() < q;
            if self.included[i] && sampled {
                let (p, o) = at(c);
                sum[p][o] += g;
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// Adds the noisy sum at each canary's coordinate to its score.
    fn observe(&mut self, sum: &[Vec<f32>]) {
        let at = locate(sum);
        for (s, &c) in self.scores.iter_mut().zip(&self.coords) {
            let (p, o) = at(c);
            *s += f64::from(sum[p][o]);
        }
    }
}

/// Flat coordinate → (tensor, offset) of a parameter list.
fn locate(values: &[Vec<f32>]) -> impl Fn(usize) -> (usize, usize) {
    let mut starts = Vec::with_capacity(values.len());
    let mut acc = 0;
    for v in values {
        starts.push(acc);
        acc += v.len();
    }
    move |c| {
        let p = starts.partition_point(|&s| s <= c) - 1;
        (p, c - starts[p])
    }
}

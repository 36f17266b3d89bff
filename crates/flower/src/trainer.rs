//! privpkt's networks as a Flower node: local training on this organisation's train split,
//! evaluation on its test (or val) split, DP-SGD with one accountant kept across rounds.
//!
//! Config keys read from the server's ConfigRecord (FedAvg's `train_config` /
//! `evaluate_config`); all are optional:
//! - `local-epochs` (whole number ≥ 1): epochs of local training this round, instead of the
//!   node's own setting;
//! - `lr` (number > 0): the learning rate this round;
//! - `server-round` (set by FedAvg): keys this round's shuffling and dropout;
//! - `clipping_norm` (number > 0, set by Flower's `DifferentialPrivacyClientSide*Clipping`
//!   wrappers): the update (new − received, all arrays flattened) is clipped to this L2 norm
//!   before the reply, as Flower's `fixedclipping_mod` / `adaptiveclipping_mod` do, and the
//!   reply carries the int metric `norm_bit` (1: the update was scaled down) that the adaptive
//!   wrapper needs. The server's noise is calibrated on this norm, so ignoring it would break
//!   the guarantee without a word;
//! - `privpkt-model` (set by the privpkt ServerApp from `model.json`): the fingerprint of the
//!   federation's model (architecture, input, classes, tensor shapes); a node whose data makes
//!   a different model refuses, instead of averaging weights of classes in another order.
//!
//! Any other key that looks like a privacy setting (`noise`, `clip`, `epsilon`, `secagg`, …) is
//! refused with an error reply: a node must not silently skip a protection the server relies on.
//!
//! Arrays that do not fit the local network (count, shapes, dtype, non-finite values) are
//! refused with an error naming the tensor; the loop sends it back as an error reply.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use privpkt_dataset::npy::{self, Dtype};
use privpkt_dataset::{Dataset, Split};
use privpkt_nn::metrics::ConfusionMatrix;
use privpkt_nn::train::{derive_seed, local_dp_epochs, local_epochs, LocalDp};
use privpkt_nn::{
    load_split, save_model, InputSpec, Model, ModelMeta, Network, ParamSpec, Params, Samples, TrainConfig,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{ClipReport, EvalReply, FlClient, TrainReply};
use crate::records::{config_count, config_f64, config_value, ArrayRecord, ConfigRecord, Metric};

/// Config key of the model fingerprint.
pub const MODEL_KEY: &str = "privpkt-model";
/// Config key of Flower's client-side clipping (`flwr.common.differential_privacy_constants`).
pub const CLIPPING_NORM_KEY: &str = "clipping_norm";
/// Metric key of the adaptive clipping bit.
pub const NORM_BIT_KEY: &str = "norm_bit";
/// Metric key of weight 1 in every reply, for an equal-weight average (`FedAvg(weighted_by_key=
/// "unit-weight")`): the σ of Flower's DP wrappers is calibrated for one node, one vote.
pub const UNIT_WEIGHT_KEY: &str = "unit-weight";
/// Config keys this node acts on.
const KNOWN_KEYS: [&str; 5] = ["local-epochs", "lr", "server-round", MODEL_KEY, CLIPPING_NORM_KEY];

/// The server's `clipping_norm`, checked, and a refusal of any other privacy-looking key.
fn privacy_config(config: &ConfigRecord) -> anyhow::Result<Option<f64>> {
    for item in &config.items {
        if KNOWN_KEYS.contains(&item.key.as_str()) {
            continue;
        }
        let k = item.key.to_ascii_lowercase();
        let looks_private = ["clip", "noise", "epsilon", "sigma", "privacy", "secagg", "norm"]
            .iter()
            .any(|w| k.contains(w))
            || k.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|t| matches!(t, "dp" | "delta" | "eps"));
        if looks_private {
            bail!(
                "config `{}` looks like a privacy setting this node does not implement; it refuses rather than \
                 train without it (it implements `{CLIPPING_NORM_KEY}`, Flower's client-side clipping)",
                item.key
            );
        }
    }
    if config_value(config, CLIPPING_NORM_KEY).is_none() {
        return Ok(None);
    }
    match config_f64(config, CLIPPING_NORM_KEY) {
        Some(c) if c.is_finite() && c > 0.0 => Ok(Some(c)),
        Some(c) => bail!("config `{CLIPPING_NORM_KEY}` must be a finite number > 0, got {c}"),
        None => bail!("config `{CLIPPING_NORM_KEY}` must be a number"),
    }
}

/// File describing exported initial arrays.
pub const MODEL_JSON: &str = "model.json";

/// Settings of a privpkt node.
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    /// Architecture, optimizer, learning rate, batch size, seed and DP-SGD settings.
    pub train: TrainConfig,
    /// Local epochs per round unless the server's `local-epochs` says otherwise.
    pub local_epochs: usize,
    /// DP-SGD: the rounds the budget is planned for (σ is calibrated for `rounds ×
    /// local_epochs` epochs; training stops when the budget is spent).
    pub planned_rounds: Option<usize>,
    /// Split the evaluate messages are answered on.
    pub eval_split: Split,
    /// Write every new global model received here (a privpkt model file).
    pub save_global: Option<PathBuf>,
}

/// What `model.json` says about exported arrays: enough for the ServerApp to load them in
/// order and for nodes to check they build the same model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescription {
    pub format: String,
    pub fingerprint: String,
    pub arch: String,
    pub input: InputSpec,
    pub classes: Vec<String>,
    /// Tensors in ArrayRecord order: file `<i>.npy` holds `params[i]`.
    pub params: Vec<TensorDescription>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorDescription {
    pub file: String,
    pub name: String,
    pub shape: Vec<usize>,
}

/// A privpkt model taking part in a Flower federation.
pub struct PrivpktTrainer {
    net: Network,
    specs: Vec<ParamSpec>,
    train: Samples,
    eval: Samples,
    cfg: TrainerConfig,
    dp: Option<LocalDp>,
    meta: ModelMeta,
    description: ModelDescription,
    rounds_trained: u64,
    /// The last global weights written to `save_global`.
    saved: Option<Vec<Vec<f32>>>,
    data_dir: PathBuf,
}

impl PrivpktTrainer {
    /// Loads the dataset's train and evaluation splits and sets up the network (and DP-SGD).
    pub fn new(ds: &Dataset, cfg: TrainerConfig) -> anyhow::Result<PrivpktTrainer> {
        cfg.train.validate()?;
        anyhow::ensure!(cfg.local_epochs >= 1, "local epochs must be ≥ 1");
        let net = privpkt_nn::train::network_for(&cfg.train, &ds.manifest)?;
        let train = load_split(ds, Split::Train)?;
        let eval = load_split(ds, cfg.eval_split)?;
        if train.is_empty() {
            bail!("{}: the train split is empty: nothing to train on", ds.dir.display());
        }
        if eval.is_empty() {
            bail!(
                "{}: the {} split is empty: nothing to evaluate on (choose another with --eval-split)",
                ds.dir.display(),
                cfg.eval_split.name()
            );
        }
        let dp = match &cfg.train.dp {
            Some(d) => {
                let rounds = cfg.planned_rounds.ok_or_else(|| {
                    anyhow!(
                        "DP-SGD needs the number of rounds it is planned for (--rounds): σ is calibrated and the \
                         step budget counted over rounds × local epochs"
                    )
                })?;
                anyhow::ensure!(rounds >= 1, "--rounds must be ≥ 1");
                Some(LocalDp::new(d, &cfg.train, &net, &train, rounds * cfg.local_epochs)?)
            }
            None => None,
        };
        let specs = net.param_specs();
        let description = describe(&net, &specs, &ds.manifest.classes);
        let meta = ModelMeta::for_dataset(ds, &net, &cfg.train)?;
        Ok(PrivpktTrainer {
            net,
            specs,
            train,
            eval,
            cfg,
            dp,
            meta,
            description,
            rounds_trained: 0,
            saved: None,
            data_dir: ds.dir.clone(),
        })
    }

    /// The model's description (fingerprint, tensors) as `model.json` holds it.
    pub fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// Samples of the local train and evaluation splits.
    pub fn sizes(&self) -> (usize, usize) {
        (self.train.len(), self.eval.len())
    }

    /// DP-SGD's σ, if private.
    pub fn dp_sigma(&self) -> Option<f64> {
        self.dp.as_ref().map(LocalDp::sigma)
    }

    /// Writes the initial weights (from the seed) as `0.npy`, `1.npy`, … in parameter order,
    /// plus `model.json`: the starting point the ServerApp sends every node.
    pub fn export_initial(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let params = self.net.init_params(self.cfg.train.seed);
        for (t, (spec, values)) in self
            .description
            .params
            .iter()
            .zip(params.specs.iter().zip(&params.values))
        {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let dims: Vec<u64> = spec.shape.iter().map(|&d| d as u64).collect();
            let npy = npy::to_bytes(Dtype::F32, &dims, &bytes).map_err(|e| anyhow!("{}: {e}", spec.name))?;
            let path = dir.join(&t.file);
            std::fs::write(&path, npy).with_context(|| format!("{}: cannot write", path.display()))?;
        }
        let path = dir.join(MODEL_JSON);
        std::fs::write(&path, serde_json::to_string_pretty(&self.description)? + "\n")
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(())
    }

    /// The server's arrays as this network's parameters, or why they do not fit.
    pub fn params_from_arrays(&self, arrays: &ArrayRecord) -> Result<Params, String> {
        if arrays.items.len() != self.specs.len() {
            return Err(format!(
                "the server sent {} arrays, the local {} model has {} tensors ({})",
                arrays.items.len(),
                self.meta.arch,
                self.specs.len(),
                self.specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let mut values = Vec::with_capacity(self.specs.len());
        for (i, ((key, a), spec)) in arrays.items.iter().zip(&self.specs).enumerate() {
            let at = || format!("array {i} (`{key}`, the local model's `{}`)", spec.name);
            if a.shape != spec.shape {
                return Err(format!(
                    "{} has shape {:?}, the local model needs {:?}",
                    at(),
                    a.shape,
                    spec.shape
                ));
            }
            let v = a.to_f32().map_err(|e| format!("{}: {e}", at()))?;
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(format!("{} holds a non-finite value ({x})", at()));
            }
            values.push(v);
        }
        Ok(Params {
            specs: self.specs.clone(),
            values,
        })
    }

    fn arrays_from_params(&self, p: &Params) -> anyhow::Result<ArrayRecord> {
        ArrayRecord::from_f32(
            p.specs
                .iter()
                .zip(&p.values)
                .map(|(s, v)| (s.shape.as_slice(), v.as_slice())),
        )
        .map_err(|e| anyhow!("encoding the weights: {e}"))
    }

    /// Checks the federation's model fingerprint, if the server sent one.
    fn check_model(&self, config: &ConfigRecord) -> anyhow::Result<()> {
        use crate::proto::config_record_value::Value;
        match config_value(config, MODEL_KEY) {
            None => Ok(()),
            Some(Value::String(fp)) if *fp == self.description.fingerprint => Ok(()),
            Some(Value::String(fp)) => bail!(
                "the federation's model is {fp}, this node's data makes {} ({} on {}, classes {:?}): every \
                 organisation must prepare its data with the same representation and class list and use the same \
                 --arch as the exported initial model",
                self.description.fingerprint,
                self.meta.arch,
                self.meta.input,
                self.meta.classes
            ),
            Some(_) => bail!("config `{MODEL_KEY}` must be a string"),
        }
    }

    /// Takes the server's arrays (checked), writing them to `save_global` when they changed;
    /// returns them with the time the writing took (a feature's cost, not Flower's).
    fn receive(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<(Params, Duration)> {
        // Shapes first (the most specific error), then the fingerprint, which also catches
        // same-shaped models of other classes.
        let params = self
            .params_from_arrays(arrays)
            .map_err(|e| anyhow!("the global model does not fit this node: {e}"))?;
        self.check_model(config)?;
        let t = Instant::now();
        if let Some(path) = self.cfg.save_global.clone() {
            if self.saved.as_ref() != Some(&params.values) {
                let model = self.model(params.clone())?;
                save_model(&path, &model).with_context(|| "saving the global model (--save-global)")?;
                self.saved = Some(params.values.clone());
            }
        }
        Ok((params, t.elapsed()))
    }

    /// The weights as a privpkt model file would hold them, with this node's record.
    pub fn model(&self, params: Params) -> anyhow::Result<Model> {
        let mut meta = self.meta.clone();
        let epochs = self.rounds_trained as usize * self.cfg.local_epochs;
        meta.history.epochs_run = epochs;
        meta.history.best_epoch = epochs;
        if let Some(dp) = &self.dp {
            let mut p = dp.summary()?;
            p["mechanism"] = "DP-SGD in each organisation (this node's own; other nodes' are not known here)".into();
            meta.privacy = Some(p);
        }
        meta.federated = Some(serde_json::json!({
            "framework": format!("flower {}", crate::FLWR_VERSION),
            "local_rounds_trained": self.rounds_trained,
            "local_epochs": self.cfg.local_epochs,
            "note": "the last global model this node received from the Flower server",
        }));
        Ok(Model::new(meta, params)?)
    }

    /// Loss (mean NLL), accuracy and macro-F1 of `params` on the evaluation split.
    fn scores(&self, params: Params) -> anyhow::Result<(f64, f64, f64)> {
        let model = self.model(params)?;
        let probs = model.predict_samples(&self.eval)?;
        let truth: Vec<usize> = self.eval.labels.iter().map(|&y| y as usize).collect();
        let mut nll = 0.0;
        let pred: Vec<usize> = probs
            .iter()
            .zip(&truth)
            .map(|(p, &y)| {
                nll -= f64::from(p[y].max(1e-12)).ln();
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i)
            })
            .collect();
        let cm = ConfusionMatrix::from_labels(self.net.classes, &truth, &pred)?;
        Ok((nll / truth.len() as f64, cm.accuracy(), cm.macro_f1()))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn describe(net: &Network, specs: &[ParamSpec], classes: &[String]) -> ModelDescription {
    let params: Vec<TensorDescription> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| TensorDescription {
            file: format!("{i}.npy"),
            name: s.name.clone(),
            shape: s.shape.clone(),
        })
        .collect();
    let key = serde_json::json!({
        "arch": net.arch.name(),
        "input": net.input,
        "classes": classes,
        "params": params.iter().map(|p| (&p.name, &p.shape)).collect::<Vec<_>>(),
    });
    let digest = Sha256::digest(key.to_string().as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    ModelDescription {
        format: "privpkt-flower-model".into(),
        fingerprint: format!("{}-{}c-{hex}", net.arch.name(), classes.len()),
        arch: net.arch.name().into(),
        input: net.input,
        classes: classes.to_vec(),
        params,
    }
}

impl FlClient for PrivpktTrainer {
    fn train(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<TrainReply> {
        let t = Instant::now();
        let (mut params, saving) = self.receive(arrays, config)?;
        let mut convert = t.elapsed().saturating_sub(saving);
        let clipping_norm = privacy_config(config)?;
        let received = clipping_norm.map(|_| params.values.clone());
        let epochs = config_count(config, "local-epochs", 1)
            .map_err(|e| anyhow!(e))?
            .map_or(self.cfg.local_epochs, |n| n as usize);
        let mut cfg = self.cfg.train.clone();
        if let Some(lr) = config_f64(config, "lr") {
            anyhow::ensure!(
                lr.is_finite() && lr > 0.0,
                "config `lr` must be a finite number > 0, got {lr}"
            );
            cfg.lr = lr;
        }
        let round = config_count(config, "server-round", 0).ok().flatten().unwrap_or(0);
        let seed = derive_seed(self.cfg.train.seed, &[0xF10E, round, self.rounds_trained]);
        let (loss, seen) = match &mut self.dp {
            Some(dp) => {
                if dp.exhausted() {
                    bail!(
                        "this organisation's privacy budget is spent (ε = {:.3} after {} DP-SGD steps): it sits out \
                         the remaining rounds",
                        dp.epsilon()?,
                        dp.steps
                    );
                }
                local_dp_epochs(&self.net, &mut params, &self.train, &cfg, epochs, seed, dp)?
            }
            None => local_epochs(&self.net, &mut params, &self.train, &cfg, epochs, seed, None)?,
        };
        anyhow::ensure!(
            loss.is_finite(),
            "local training diverged (loss {loss}); try a lower learning rate"
        );
        let clip = match (clipping_norm, &received) {
            (Some(c), Some(old)) => {
                let u = privpkt_privacy::clip_update(&mut params.values, old, c)
                    .map_err(|e| anyhow!("clipping the update to the server's `{CLIPPING_NORM_KEY}`: {e}"))?;
                let report = ClipReport {
                    clipping_norm: c,
                    norm_before: u.norm,
                    norm_after: u.clipped_norm(),
                };
                Some((report, u.clipped()))
            }
            _ => None,
        };
        self.rounds_trained += 1;
        let mut metrics = vec![
            (UNIT_WEIGHT_KEY.to_string(), Metric::Int(1)),
            ("train_loss".to_string(), Metric::Float(loss)),
            ("train_samples_seen".to_string(), Metric::Int(seen as i64)),
        ];
        if let Some(dp) = &self.dp {
            metrics.push(("epsilon".into(), Metric::Float(dp.epsilon()?)));
        }
        if let Some((_, clipped)) = clip {
            metrics.push((NORM_BIT_KEY.into(), Metric::Int(i64::from(clipped))));
        }
        let t = Instant::now();
        let arrays = self.arrays_from_params(&params)?;
        convert += t.elapsed();
        Ok(TrainReply {
            arrays,
            num_examples: self.train.len() as u64,
            metrics,
            convert,
            clip: clip.map(|(report, _)| report),
        })
    }

    fn evaluate(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<EvalReply> {
        let t = Instant::now();
        let (params, saving) = self.receive(arrays, config)?;
        let convert = t.elapsed().saturating_sub(saving);
        let (loss, acc, f1) = self.scores(params)?;
        Ok(EvalReply {
            num_examples: self.eval.len() as u64,
            metrics: vec![
                (UNIT_WEIGHT_KEY.into(), Metric::Int(1)),
                ("eval_loss".into(), Metric::Float(loss)),
                ("eval_acc".into(), Metric::Float(acc)),
                ("eval_macro_f1".into(), Metric::Float(f1)),
            ],
            convert,
        })
    }
}

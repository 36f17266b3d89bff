//! The model file: one `model.safetensors` with every weight, and in its header
//! (`__metadata__["privpkt"]`) the JSON [`ModelMeta`]: what the model is, what it was trained
//! on and how inputs must be prepared for it.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use privpkt_capture::ExtractConfig;
use privpkt_dataset::{Dataset, Manifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::arch::{Arch, InputSpec, Scaling};
use crate::data::{RawBatch, Samples};
use crate::error::{io_err, NnError, Result};
use crate::model::{Network, Params};
use crate::tensors::{self, NamedTensor};
use crate::train::{EpochRecord, TrainConfig};

pub const MODEL_FORMAT: &str = "privpkt-model";
pub const MODEL_FORMAT_VERSION: u32 = 2;

/// The format version a model of `input` is written with: 2 when its behaviour input has other
/// than the default bins (a v1 reader would take it for 16 and call the file corrupt), else 1,
/// which every privpkt reads.
pub fn format_version_for(input: &InputSpec) -> u32 {
    match input {
        InputSpec::Behaviour { bins, .. } if *bins != crate::arch::PLE_BINS => 2,
        _ => 1,
    }
}
/// Header metadata key holding the [`ModelMeta`] JSON.
pub const META_KEY: &str = "privpkt";

/// Training history kept in the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistorySummary {
    pub epochs_run: usize,
    /// Epoch (1-based) whose weights the model holds.
    pub best_epoch: usize,
    pub best_val_macro_f1: Option<f64>,
    pub stopped_early: bool,
    pub epochs: Vec<EpochRecord>,
}

/// Everything about a model besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format: String,
    pub format_version: u32,
    pub privpkt_version: String,
    pub arch: Arch,
    pub input: InputSpec,
    /// How raw samples are scaled before the network sees them.
    pub scaling: Scaling,
    /// Output order of the probabilities.
    pub classes: Vec<String>,
    pub params: u64,
    pub train: TrainConfig,
    pub seed: u64,
    /// The dataset's preprocessing (representation, masking, flow timeouts, FlowPic
    /// parameters): data for this model must be prepared the same way.
    pub extract: ExtractConfig,
    /// sha256 of the training dataset's `manifest.json`.
    pub dataset_manifest_sha256: String,
    pub history: HistorySummary,
    /// Privacy accounting of a DP run; `None` for ordinary training.
    pub privacy: Option<serde_json::Value>,
    /// Federated training (partition, clients, rounds, aggregation); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated: Option<serde_json::Value>,
    /// The pre-trained (public) model this one started from, and which layers were trained
    /// here; absent for a model trained from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretraining: Option<crate::init::Pretraining>,
}

impl ModelMeta {
    /// The record of a model of `net` trained with `train` on `ds`, with an empty history
    /// and no privacy or federation record (the caller fills those in).
    pub fn for_dataset(ds: &Dataset, net: &Network, train: &TrainConfig) -> Result<ModelMeta> {
        Ok(ModelMeta {
            format: MODEL_FORMAT.into(),
            format_version: format_version_for(&net.input),
            privpkt_version: env!("CARGO_PKG_VERSION").into(),
            arch: train.arch,
            input: net.input,
            scaling: net.input.scaling(),
            classes: ds.manifest.classes.clone(),
            params: net.param_count() as u64,
            train: train.clone(),
            seed: train.seed,
            extract: ds.manifest.extract,
            dataset_manifest_sha256: manifest_sha256(ds)?,
            history: HistorySummary {
                epochs_run: 0,
                best_epoch: 0,
                best_val_macro_f1: None,
                stopped_early: false,
                epochs: Vec::new(),
            },
            privacy: None,
            federated: None,
            pretraining: None,
        })
    }
}

/// A trained network with its metadata: what `train` returns and `load_model` reads.
#[derive(Debug, Clone)]
pub struct Model {
    meta: ModelMeta,
    net: Network,
    params: Params,
}

/// The name the CLI uses for a model read from a file.
pub type LoadedModel = Model;

impl Model {
    /// Assemble a model, checking the parameters against the architecture.
    pub fn new(meta: ModelMeta, params: Params) -> Result<Model> {
        let net = Network::new(meta.arch, meta.input, meta.classes.len())?;
        let want = net.param_specs();
        let shapes =
            |v: &[crate::model::ParamSpec]| v.iter().map(|s| (s.name.clone(), s.shape.clone())).collect::<Vec<_>>();
        if shapes(&want) != shapes(&params.specs) || params.values.iter().zip(&want).any(|(v, s)| v.len() != s.numel())
        {
            return Err(NnError::Incompatible(format!(
                "parameters do not fit a {} network for {} and {} classes",
                meta.arch,
                meta.input,
                meta.classes.len()
            )));
        }
        // A diverged run's weights: never a model (it would predict NaN, or one class).
        for (s, v) in params.specs.iter().zip(&params.values) {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(NnError::Diverged(format!(
                    "tensor {} holds a non-finite value ({} at {i}): training diverged (lower the learning rate); \
                     no model is made of it",
                    s.name, v[i]
                )));
            }
        }
        Ok(Model { meta, net, params })
    }

    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    pub fn meta_mut(&mut self) -> &mut ModelMeta {
        &mut self.meta
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Class probabilities (one row per sample, `meta().classes` order) of raw samples, as
    /// stored by `prepare`; scaled as in training, run in memory-bounded batches.
    pub fn predict_proba(&self, batch: RawBatch<'_>) -> Result<Vec<Vec<f32>>> {
        let (input, n) = batch.check()?;
        if !self.meta.input.same_samples(&input) {
            return Err(NnError::Incompatible(format!(
                "the model takes {}, the batch holds {input}",
                self.meta.input
            )));
        }
        Ok(predict(&self.net, &self.params, &batch.seen_as(&self.meta.input), n))
    }

    /// Probabilities for every sample of a split.
    pub fn predict_samples(&self, samples: &Samples) -> Result<Vec<Vec<f32>>> {
        self.predict_proba(samples.raw())
    }
}

/// Probabilities of `n` samples of a checked batch.
pub(crate) fn predict(net: &Network, params: &Params, batch: &RawBatch<'_>, n: usize) -> Vec<Vec<f32>> {
    let device = crate::device::compute();
    let p = params.tensors(&device, false);
    let f = net.input.features();
    let bs = net.eval_batch();
    let mut out = Vec::with_capacity(n);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(bs) {
        let x = Tensor::<2>::from_data(TensorData::new(batch.batch(chunk, f), [chunk.len(), f]), &device);
        let probs = net.predict(&p, x).into_data();
        let probs = probs.as_slice::<f32>().expect("f32 output");
        out.extend(probs.chunks_exact(net.classes).map(<[f32]>::to_vec));
    }
    out
}

/// sha256 (hex) of a dataset's `manifest.json`.
pub fn manifest_sha256(ds: &Dataset) -> Result<String> {
    let p = ds.dir.join("manifest.json");
    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Whether a model may be written at `path`: a new path, or (with `force`) a privpkt model
/// file. Never a folder or another file: a mistyped `--out` must not replace what the user had.
pub fn check_out(path: &Path, force: bool) -> Result<()> {
    let refuse = |msg: &str| Err(NnError::Config(format!("{}: {msg}", path.display())));
    if !path.exists() {
        return Ok(());
    }
    if path.is_dir() {
        return refuse("is a folder: give the model file to write");
    }
    if !force {
        return refuse("already exists (--force replaces it if it is a privpkt model file)");
    }
    if !is_model_file(path) {
        return refuse("is not a privpkt model file: --force replaces only a model");
    }
    Ok(())
}

/// A safetensors file whose header carries privpkt's metadata (read without the weights).
fn is_model_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).is_ok()
        && serde_json::from_slice::<serde_json::Value>(&header).is_ok_and(|h| h["__metadata__"][META_KEY].is_string())
}

/// Write `model` to `path` (atomically: a temporary sibling renamed into place).
pub fn save_model(path: &Path, model: &Model) -> Result<()> {
    let json = serde_json::to_string(&model.meta).map_err(|e| NnError::Config(format!("model metadata: {e}")))?;
    let tensors: Vec<NamedTensor<'_>> = model
        .params
        .specs
        .iter()
        .zip(&model.params.values)
        .map(|(s, v)| NamedTensor {
            name: s.name.clone(),
            shape: s.shape.clone(),
            data: v,
        })
        .collect();
    let meta = HashMap::from([(META_KEY.to_string(), json)]);
    tensors::write(path, &tensors, meta).map_err(|msg| NnError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(msg),
    })
}

/// Read a model file, checking its format, checksum and every tensor's name and shape.
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    let corrupt = |msg: String| NnError::CorruptModel {
        path: path.to_path_buf(),
        msg,
    };
    let (meta, mut found) = tensors::read(path).map_err(|e| e.at(path, corrupt))?;
    let json = meta
        .get(META_KEY)
        .ok_or_else(|| corrupt(format!("no `{META_KEY}` metadata: not written by privpkt")))?;
    let meta: ModelMeta = serde_json::from_str(json).map_err(|e| corrupt(format!("metadata: {e}")))?;
    check_records(&meta).map_err(corrupt)?;
    let bins = meta.input.bins();
    if matches!(meta.input, InputSpec::Behaviour { .. }) && !(1..=crate::arch::MAX_PLE_BINS).contains(&bins) {
        return Err(corrupt(format!(
            "a behaviour input with {bins} bins per number (1–{} are made)",
            crate::arch::MAX_PLE_BINS
        )));
    }
    if meta.format != MODEL_FORMAT || meta.format_version > MODEL_FORMAT_VERSION {
        return Err(corrupt(format!(
            "format {} v{} is not readable by this privpkt (expects {MODEL_FORMAT} v{MODEL_FORMAT_VERSION})",
            meta.format, meta.format_version
        )));
    }
    let net = Network::new(meta.arch, meta.input, meta.classes.len()).map_err(|e| corrupt(e.to_string()))?;
    let specs = net.param_specs();
    let mut values = Vec::with_capacity(specs.len());
    for s in &specs {
        let (shape, v) = found
            .remove(&s.name)
            .ok_or_else(|| corrupt(format!("tensor {} is missing", s.name)))?;
        if shape != s.shape {
            return Err(corrupt(format!(
                "tensor {} has shape {shape:?}, a {} network needs {:?}",
                s.name, meta.arch, s.shape
            )));
        }
        values.push(v);
    }
    if let Some(extra) = found.keys().next() {
        return Err(corrupt(format!(
            "unexpected tensor {extra} for a {} network",
            meta.arch
        )));
    }
    Model::new(meta, Params { specs, values }).map_err(|e| corrupt(e.to_string()))
}

/// The free-form records of a model file: a privacy record states a finite ε ≥ 0 and a δ in
/// (0, 1) (what `eval` prints and experiments compare); a federation record is an object.
fn check_records(meta: &ModelMeta) -> std::result::Result<(), String> {
    if let Some(p) = &meta.privacy {
        let eps = p["epsilon"].as_f64().filter(|e| e.is_finite() && *e >= 0.0);
        let delta = p["delta"].as_f64().filter(|d| *d > 0.0 && *d < 1.0);
        if !p.is_object() || eps.is_none() || delta.is_none() {
            return Err(format!(
                "privacy record without a finite ε ≥ 0 and a δ in (0, 1): {}",
                serde_json::to_string(p)
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    if let Some(f) = &meta.federated {
        if !f.is_object() {
            return Err("federation record is not an object".into());
        }
    }
    if meta.classes.iter().any(|c| c.trim().is_empty()) {
        return Err("a class name is empty".into());
    }
    Ok(())
}

/// Whether a model can classify a dataset's samples: same classes in the same order, same
/// representation and sample shape.
pub fn check_compatible(meta: &ModelMeta, manifest: &Manifest) -> Result<()> {
    let input = InputSpec::from_manifest(manifest)?;
    if !meta.input.same_samples(&input) {
        return Err(NnError::Incompatible(format!(
            "the model takes {}, the dataset holds {input}",
            meta.input
        )));
    }
    if meta.classes != manifest.classes {
        let missing: Vec<_> = manifest.classes.iter().filter(|c| !meta.classes.contains(c)).collect();
        return Err(NnError::Incompatible(
            if missing.is_empty() && meta.classes.len() == manifest.classes.len() {
                format!(
                    "same classes in a different order (model {:?}, dataset {:?})",
                    meta.classes, manifest.classes
                )
            } else {
                format!(
                    "the model knows classes {:?}, the dataset has {:?} (unknown to the model: {missing:?})",
                    meta.classes, manifest.classes
                )
            },
        ));
    }
    Ok(())
}

/// Preprocessing settings that differ between the model's training data and a dataset
/// (masking, flow timeouts, FlowPic block length, ...): not fatal, but worth a warning.
pub fn preprocessing_differences(meta: &ModelMeta, manifest: &Manifest) -> Vec<String> {
    preprocessing_differences_of(&meta.extract, &manifest.extract)
}

/// Settings that differ between two preprocessings, as `extract.<path>: model A, dataset B`.
pub fn preprocessing_differences_of(model: &ExtractConfig, data: &ExtractConfig) -> Vec<String> {
    let a = serde_json::to_value(model).unwrap_or_default();
    let b = serde_json::to_value(data).unwrap_or_default();
    let mut out = Vec::new();
    diff("extract", &a, &b, &mut out);
    out
}

fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<_> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = serde_json::Value::Null;
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: model {a}, dataset {b}")),
        _ => {}
    }
}

//! Starting from a pre-trained model: public pre-training, then private fine-tuning.
//!
//! Under DP-SGD the noise grows with the number of parameters that spend ε, so a model first
//! trained on *public* data (the synthetic generator, or a public corpus), whose private run
//! then trains only its last layers, keeps far more of its utility (Tramèr & Boneh 2021, Mehta
//! et al. 2022). A run started with [`InitFrom`] loads that model's weights, trains only the
//! chosen layers (the others stay exactly as loaded, and neither their gradients nor any noise
//! are computed), and records in its model file ([`Pretraining`]) which layers came from where.
//! Inputs are scaled by fixed transforms ([`crate::Scaling`]), so no normalisation statistic
//! of the private data is ever needed.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, NnError, Result};
use crate::model::{Network, ParamSpec, Params};
use crate::modelfile::{load_model, preprocessing_differences_of};

/// Where a run starts from (part of its training configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitFrom {
    /// The pre-trained model file, as given.
    pub model: String,
    /// Its sha256: a run is tied to exactly that file.
    pub model_sha256: String,
    /// Layers trained in this run (`out` is the output layer; `head` names it too); empty:
    /// every layer.
    pub train_layers: Vec<String>,
}

impl InitFrom {
    /// Start from the model at `path`, training `train_layers` (empty: all).
    pub fn new(path: &Path, train_layers: Vec<String>) -> Result<InitFrom> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        Ok(InitFrom {
            model: path.display().to_string(),
            model_sha256: format!("{:x}", Sha256::digest(&bytes)),
            train_layers: train_layers
                .into_iter()
                .map(|l| if l == "head" { "out".to_string() } else { l })
                .collect(),
        })
    }
}

/// What a model file records of its pre-training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pretraining {
    /// The pre-trained model the run started from, and its sha256.
    pub model: String,
    pub model_sha256: String,
    /// sha256 of the manifest of the dataset it was trained on, and that dataset's labels.
    pub dataset_manifest_sha256: String,
    pub classes: Vec<String>,
    /// Its own privacy record: `None` for a model trained without DP, as public data is.
    pub privacy: Option<serde_json::Value>,
    /// Layers kept exactly as pre-trained (they never saw this run's data).
    pub layers_kept: Vec<String>,
    /// Layers trained in this run, on this run's data (the only ones a DP run's ε covers, and
    /// the only ones that saw the private data).
    pub layers_trained: Vec<String>,
    /// Layers that did not fit (other classes) and started from a fresh initialisation.
    pub layers_reinitialised: Vec<String>,
    /// Preprocessing settings where the pre-training data differs from this run's.
    pub preprocessing_differences: Vec<String>,
}

/// The layers of a parameter list, in order: the part of each tensor name before its `.`.
pub fn layers(specs: &[ParamSpec]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in specs {
        let l = layer_of(&s.name);
        if out.last().map(String::as_str) != Some(l) {
            out.push(l.to_string());
        }
    }
    out
}

fn layer_of(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Which tensors a run with `init` trains (all when there is no `init`).
pub fn trainable(init: Option<&InitFrom>, specs: &[ParamSpec]) -> Result<Vec<bool>> {
    let Some(init) = init.filter(|i| !i.train_layers.is_empty()) else {
        return Ok(vec![true; specs.len()]);
    };
    let known = layers(specs);
    if let Some(l) = init.train_layers.iter().find(|l| !known.contains(l)) {
        return Err(NnError::Config(format!(
            "--train-layers: the model has no layer `{l}` (its layers: {}; `head` is `out`)",
            known.join(", ")
        )));
    }
    Ok(specs
        .iter()
        .map(|s| init.train_layers.iter().any(|l| l == layer_of(&s.name)))
        .collect())
}

/// The pre-trained model of `init`, refused if the file changed since the run was configured.
pub fn pretrained(init: &InitFrom) -> Result<crate::modelfile::LoadedModel> {
    let path = Path::new(&init.model);
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let sha = format!("{:x}", Sha256::digest(&bytes));
    if sha != init.model_sha256 {
        return Err(NnError::Config(format!(
            "{}: the pre-trained model changed since this run was configured (sha256 {sha}, expected {})",
            init.model, init.model_sha256
        )));
    }
    load_model(path)
}

/// The starting weights of `net` (classes `classes`) from `init`, with `fresh` (the run's own
/// initialisation) for layers that do not fit; and what to record of it.
pub fn load_init(
    init: &InitFrom,
    net: &Network,
    classes: &[String],
    extract: &privpkt_capture::ExtractConfig,
    fresh: &Params,
) -> Result<(Params, Pretraining)> {
    let public = pretrained(init)?;
    let sha = init.model_sha256.clone();
    let meta = public.meta();
    if meta.arch == net.arch && meta.input.same_samples(&net.input) && meta.input != net.input {
        return Err(NnError::Incompatible(format!(
            "{}: the pre-trained model sees numbers in {} bins, this run asks for {} (--ple-bins): leave it out to \
             take the pre-trained model's",
            init.model,
            meta.input.bins(),
            net.input.bins()
        )));
    }
    if meta.arch != net.arch || meta.input != net.input {
        return Err(NnError::Incompatible(format!(
            "{}: a {} model for {}; this run trains a {} for {}: pre-train the same architecture on data prepared \
             the same way",
            init.model, meta.arch, meta.input, net.arch, net.input
        )));
    }
    let specs = net.param_specs();
    let trainable = trainable(Some(init), &specs)?;
    let same_classes = meta.classes == classes;
    let mut values = Vec::with_capacity(specs.len());
    let mut reinit = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let from_public = public.params().specs.iter().position(|p| p == s);
        match from_public {
            Some(j) if same_classes || layer_of(&s.name) != "out" => values.push(public.params().values[j].clone()),
            _ => {
                if !trainable[i] {
                    return Err(NnError::Config(format!(
                        "{}: layer `{}` does not fit (the pre-trained model knows classes {:?}, this data has {:?}), \
                         so it starts fresh and must be trained: add it to --train-layers",
                        init.model,
                        layer_of(&s.name),
                        meta.classes,
                        classes
                    )));
                }
                let l = layer_of(&s.name).to_string();
                if !reinit.contains(&l) {
                    reinit.push(l);
                }
                values.push(fresh.values[i].clone());
            }
        }
    }
    let all = layers(&specs);
    let trained: Vec<String> = all
        .iter()
        .filter(|l| specs.iter().zip(&trainable).any(|(s, &t)| t && layer_of(&s.name) == *l))
        .cloned()
        .collect();
    let kept = all.iter().filter(|l| !trained.contains(l)).cloned().collect();
    let provenance = Pretraining {
        model: init.model.clone(),
        model_sha256: sha,
        dataset_manifest_sha256: meta.dataset_manifest_sha256.clone(),
        classes: meta.classes.clone(),
        privacy: meta.privacy.clone(),
        layers_kept: kept,
        layers_trained: trained,
        layers_reinitialised: reinit,
        preprocessing_differences: preprocessing_differences_of(&meta.extract, extract),
    };
    Ok((
        Params {
            specs: specs.clone(),
            values,
        },
        provenance,
    ))
}

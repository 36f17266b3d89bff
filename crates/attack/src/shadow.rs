//! Shadow models: trained like the target (its own training settings) on attacker-chosen
//! groups, in parallel, each kept in the work directory under a hash of everything it depends
//! on so that a rerun skips the finished ones.
//!
//! Shadows are tasks on rayon's pool, the same pool their tensor kernels use: on N cores about
//! N train at once and their inner parallelism fills idle cores, without oversubscription.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use privpkt_dataset::Dataset;
use privpkt_nn::{load_model, save_model, train_samples, Model, Samples, TrainConfig, TrainData, TrainEvent};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::members::{Origin, Universe};
use crate::{AttackError, AttackEvent, Result};

/// One shadow model to train: the groups (indices into the universe) it trains on.
#[derive(Debug, Clone)]
pub struct ShadowSpec {
    pub index: usize,
    pub groups: Vec<usize>,
    pub seed: u64,
}

/// What every shadow shares.
pub struct ShadowContext<'a> {
    pub dataset: &'a Dataset,
    pub universe: &'a Universe,
    /// Early stopping, as the target did: its dataset's validation split.
    pub val: &'a Samples,
    /// The target's training settings.
    pub train: &'a TrainConfig,
    /// Identifies the data behind the universe's group keys (manifest hashes).
    pub data_tag: String,
    /// Keep finished shadows here (resumable); `None`: a temporary directory, removed after.
    pub work: Option<&'a Path>,
    /// Members may be shadow training data (LiRA online only).
    pub allow_members: bool,
}

/// How many shadows were trained and reused, and the wall time of training them all.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ShadowStats {
    pub trained: usize,
    pub reused: usize,
    pub seconds: f64,
}

#[derive(Serialize)]
struct Fingerprint<'a> {
    format: &'static str,
    train: &'a TrainConfig,
    data: &'a str,
    seed: u64,
    /// (origin, capture, flow) of every training group, in training order.
    groups: Vec<(Origin, u32, Option<u64>)>,
}

impl ShadowContext<'_> {
    /// The shadow's settings: the target's, with the shadow's seed, reproducible DP noise and
    /// no subsampling (the shadow set is already the attacker's choice).
    fn config(&self, spec: &ShadowSpec) -> TrainConfig {
        let mut cfg = self.train.clone();
        cfg.seed = spec.seed;
        cfg.max_train_samples = None;
        if let Some(dp) = cfg.dp.as_mut() {
            dp.seeded = true;
        }
        cfg
    }

    fn hash(&self, spec: &ShadowSpec, cfg: &TrainConfig) -> Result<String> {
        let u = self.universe;
        let fp = Fingerprint {
            format: "privpkt-shadow-1",
            train: cfg,
            data: &self.data_tag,
            seed: spec.seed,
            groups: spec
                .groups
                .iter()
                .map(|&g| (u.groups[g].origin, u.groups[g].capture, u.groups[g].flow))
                .collect(),
        };
        let json = serde_json::to_vec(&fp).map_err(|e| AttackError::Config(e.to_string()))?;
        Ok(format!("{:x}", Sha256::digest(&json)))
    }

    /// Train (or reuse) every shadow, in parallel, and hand each finished model to `use_model`;
    /// results come back in `specs` order.
    pub fn run<T: Send>(
        &self,
        specs: &[ShadowSpec],
        progress: &(dyn Fn(AttackEvent) + Sync),
        use_model: &(dyn Fn(&ShadowSpec, &Model) -> Result<T> + Sync),
    ) -> Result<(Vec<T>, ShadowStats)> {
        let u = self.universe;
        for s in specs {
            if let Some(&g) = s
                .groups
                .iter()
                .find(|&&g| u.groups[g].origin == Origin::TargetTrain && !self.allow_members)
            {
                return Err(AttackError::Overlap(format!(
                    "shadow model {} would train on group {g}, part of the target's training data",
                    s.index
                )));
            }
            if s.groups.is_empty() {
                return Err(AttackError::Config(format!(
                    "shadow model {} has no training data: the shadow pool is too small",
                    s.index
                )));
            }
        }
        let temp;
        let dir: &Path = match self.work {
            Some(d) => d,
            None => {
                temp = TempDir::new()?;
                &temp.0
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let started = Instant::now();
        let (trained, reused) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let out: Vec<T> = specs
            .par_iter()
            .map(|spec| {
                let cfg = self.config(spec);
                let hash = self.hash(spec, &cfg)?;
                let stem = format!("shadow-{:03}-{}", spec.index, &hash[..16]);
                let file = dir.join(format!("{stem}.safetensors"));
                let t0 = Instant::now();
                let (model, was_reused) = match file.exists().then(|| load_model(&file)) {
                    Some(Ok(m)) => (m, true),
                    found => {
                        if let Some(Err(e)) = found {
                            progress(AttackEvent::Warning(format!(
                                "{e}: training shadow {} again",
                                spec.index
                            )));
                        }
                        (
                            self.train_one(spec, &cfg, &hash, &dir.join(format!("{stem}.work")), progress)?,
                            false,
                        )
                    }
                };
                if !was_reused {
                    save_model(&file, &model)?;
                    let _ = std::fs::remove_dir_all(dir.join(format!("{stem}.work")));
                    trained.fetch_add(1, Ordering::Relaxed);
                } else {
                    reused.fetch_add(1, Ordering::Relaxed);
                }
                let r = use_model(spec, &model)?;
                progress(AttackEvent::ShadowDone {
                    index: spec.index,
                    reused: was_reused,
                    seconds: t0.elapsed().as_secs_f64(),
                });
                Ok(r)
            })
            .collect::<Result<Vec<T>>>()?;
        Ok((
            out,
            ShadowStats {
                trained: trained.into_inner(),
                reused: reused.into_inner(),
                seconds: started.elapsed().as_secs_f64(),
            },
        ))
    }

    fn train_one(
        &self,
        spec: &ShadowSpec,
        cfg: &TrainConfig,
        hash: &str,
        work: &Path,
        progress: &(dyn Fn(AttackEvent) + Sync),
    ) -> Result<Model> {
        let u = self.universe;
        let idx: Vec<usize> = spec
            .groups
            .iter()
            .flat_map(|&g| u.groups[g].samples.iter().copied())
            .collect();
        let train = u.samples.subset(&idx);
        let data = TrainData {
            dataset: self.dataset,
            train: &train,
            val: self.val,
            data_id: hash.to_string(),
        };
        let index = spec.index;
        let out = train_samples(
            &data,
            cfg,
            work,
            true,
            &|e| match e {
                TrainEvent::EpochEnd { record, .. } => progress(AttackEvent::ShadowEpoch {
                    index,
                    epoch: record.epoch,
                    epochs: cfg.epochs,
                }),
                TrainEvent::Resumed { epochs_done } => progress(AttackEvent::Warning(format!(
                    "shadow {index}: resuming after epoch {epochs_done}"
                ))),
                _ => {}
            },
            None,
        )?;
        Ok(out.model)
    }
}

fn io(path: &Path, e: std::io::Error) -> AttackError {
    AttackError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// A directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!("privpkt-shadows-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).map_err(|e| io(&p, e))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

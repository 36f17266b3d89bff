//! privpkt-federated: federated learning across organisations, simulated on one machine.
//!
//! A dataset's train split is divided among N clients by whole flows
//! ([`privpkt_dataset::partition`]); every round a seeded fraction of them trains the global
//! model locally (in parallel) and the server aggregates the returned weights: FedAvg (mean
//! weighted by examples, McMahan et al. 2017), optionally with FedProx's proximal term, or a
//! robust coordinate-wise median / trimmed mean. The global model is evaluated on the test
//! split after every round. PrivPkt's FedAvg averaged only its last tensor; here every
//! parameter is aggregated and the tests check it against a hand computation.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use privpkt_dataset::partition::{partition, Group, PartitionError, Scheme};
use privpkt_dataset::{Dataset, Split};
use privpkt_nn::modelfile::{HistorySummary, MODEL_FORMAT, MODEL_FORMAT_VERSION};
use privpkt_nn::train::{evaluate, local_epochs};
use privpkt_nn::{load_split, manifest_sha256, InputSpec, Model, ModelMeta, Network, NnError, Params, TrainConfig};
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Everything that can go wrong in a federation.
#[derive(Debug, thiserror::Error)]
pub enum FedError {
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("partition: {0}")]
    Partition(#[from] PartitionError),
    #[error("invalid federation settings: {0}")]
    Config(String),
    /// A client's update that cannot be aggregated: named, never averaged in.
    #[error("update of client {client} rejected: {reason}")]
    BadUpdate { client: usize, reason: String },
}

pub type Result<T, E = FedError> = std::result::Result<T, E>;

/// How the server combines the clients' weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Aggregation {
    /// Mean weighted by the clients' example counts (FedAvg).
    Mean,
    /// Coordinate-wise median (robust to a minority of bad clients; unweighted).
    Median,
    /// Coordinate-wise mean after dropping the `trim` fraction of lowest and of highest values.
    TrimmedMean { trim: f64 },
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregation::Mean => f.write_str("mean"),
            Aggregation::Median => f.write_str("median"),
            Aggregation::TrimmedMean { trim } => write!(f, "trimmed:{trim}"),
        }
    }
}

impl FromStr for Aggregation {
    type Err = FedError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            FedError::Config(format!(
                "unknown aggregation `{s}` (mean, median or trimmed:FRACTION < 0.5)"
            ))
        };
        match s {
            "mean" => Ok(Aggregation::Mean),
            "median" => Ok(Aggregation::Median),
            _ => {
                let t: f64 = s.strip_prefix("trimmed:").ok_or_else(bad)?.parse().map_err(|_| bad())?;
                if (0.0..0.5).contains(&t) {
                    Ok(Aggregation::TrimmedMean { trim: t })
                } else {
                    Err(bad())
                }
            }
        }
    }
}

/// Settings of a simulated federation (recorded in the global model's file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FedConfig {
    pub clients: usize,
    pub partition: Scheme,
    pub rounds: usize,
    /// Share of clients training in each round (at least one).
    pub fraction: f64,
    pub local_epochs: usize,
    /// FedProx μ; 0 is plain FedAvg.
    pub prox_mu: f64,
    pub aggregation: Aggregation,
    /// Model, optimizer, learning rate, batch size and seed of the local training.
    pub train: TrainConfig,
}

impl FedConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FedError::Config(m));
        if self.clients == 0 || self.rounds == 0 || self.local_epochs == 0 {
            return bad("clients, rounds and local epochs must be ≥ 1".into());
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("the client fraction must be in (0, 1], got {}", self.fraction));
        }
        if !(self.prox_mu.is_finite() && self.prox_mu >= 0.0) {
            return bad(format!("FedProx μ must be ≥ 0, got {}", self.prox_mu));
        }
        if self.train.dp.is_some() {
            return bad("local DP-SGD in federations is not supported yet".into());
        }
        self.train.validate()?;
        Ok(())
    }
}

/// What one client holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub samples: usize,
    pub flows: usize,
    /// Samples per class (manifest order).
    pub class_counts: Vec<u64>,
}

/// One finished round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 1-based.
    pub round: usize,
    /// Clients that trained (0-based).
    pub clients: Vec<usize>,
    /// Training samples they saw.
    pub examples: usize,
    /// Mean local training loss, weighted by samples.
    pub train_loss: f64,
    pub test_macro_f1: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
}

/// Progress of [`simulate`].
#[derive(Debug, Clone, PartialEq)]
pub enum FedEvent {
    Partitioned(Vec<ClientInfo>),
    RoundStart {
        round: usize,
        rounds: usize,
        clients: Vec<usize>,
    },
    RoundEnd(RoundRecord),
}

/// The global model after the last round, with the history.
#[derive(Debug, Clone)]
pub struct FedOutcome {
    pub model: Model,
    pub rounds: Vec<RoundRecord>,
    pub clients: Vec<ClientInfo>,
}

/// Seed for (round, client, ...) uses, independent across uses.
fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut z = seed ^ 0x5EED_FEDA_u64;
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

/// The clients' sample indices: the train split divided by whole flows.
pub fn client_samples(
    train: &privpkt_nn::Samples,
    clients: usize,
    scheme: Scheme,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    let mut ids: HashMap<(u32, u64), usize> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for i in 0..train.len() {
        let g = *ids.entry((train.capture[i], train.flow[i])).or_insert_with(|| {
            groups.push(Group {
                capture: train.capture[i],
                class: train.labels[i],
                samples: 0,
            });
            members.push(Vec::new());
            groups.len() - 1
        });
        groups[g].samples += 1;
        members[g].push(i);
    }
    let assign = partition(&groups, clients, scheme, seed)?;
    let mut out = vec![Vec::new(); clients];
    for (g, &c) in assign.iter().enumerate() {
        out[c].extend_from_slice(&members[g]);
    }
    for o in &mut out {
        o.sort_unstable();
    }
    Ok(out)
}

/// Combines client weights `updates` (client id, weights, examples) into the global weights,
/// after checking each for shape and finiteness against `like`.
pub fn aggregate(updates: &[(usize, Vec<Vec<f32>>, usize)], like: &Params, how: Aggregation) -> Result<Vec<Vec<f32>>> {
    if updates.is_empty() {
        return Err(FedError::Config("no client update to aggregate".into()));
    }
    for (client, w, _) in updates {
        if w.len() != like.values.len() {
            return Err(FedError::BadUpdate {
                client: *client,
                reason: format!("{} tensors, the model has {}", w.len(), like.values.len()),
            });
        }
        for ((t, want), spec) in w.iter().zip(&like.values).zip(&like.specs) {
            if t.len() != want.len() {
                return Err(FedError::BadUpdate {
                    client: *client,
                    reason: format!("`{}` has {} values, expected {}", spec.name, t.len(), want.len()),
                });
            }
            if let Some(v) = t.iter().find(|v| !v.is_finite()) {
                return Err(FedError::BadUpdate {
                    client: *client,
                    reason: format!("`{}` holds a non-finite value ({v})", spec.name),
                });
            }
        }
    }
    let total: f64 = updates.iter().map(|u| u.2 as f64).sum();
    let out = (0..like.values.len())
        .map(|t| {
            let len = like.values[t].len();
            match how {
                Aggregation::Mean => {
                    let mut acc = vec![0f64; len];
                    for (_, w, n) in updates {
                        let k = if total > 0.0 {
                            *n as f64 / total
                        } else {
                            1.0 / updates.len() as f64
                        };
                        acc.iter_mut().zip(&w[t]).for_each(|(a, &v)| *a += k * f64::from(v));
                    }
                    acc.into_iter().map(|v| v as f32).collect()
                }
                Aggregation::Median | Aggregation::TrimmedMean { .. } => {
                    let m = updates.len();
                    let cut = match how {
                        Aggregation::TrimmedMean { trim } => ((trim * m as f64).floor() as usize).min((m - 1) / 2),
                        _ => 0,
                    };
                    (0..len)
                        .into_par_iter()
                        .map(|j| {
                            let mut col: Vec<f32> = updates.iter().map(|u| u.1[t][j]).collect();
                            col.sort_by(f32::total_cmp);
                            match how {
                                Aggregation::Median if m % 2 == 1 => col[m / 2],
                                Aggregation::Median => (col[m / 2 - 1] + col[m / 2]) / 2.0,
                                _ => {
                                    let kept = &col[cut..m - cut];
                                    kept.iter().map(|&v| f64::from(v)).sum::<f64>() as f32 / kept.len() as f32
                                }
                            }
                        })
                        .collect()
                }
            }
        })
        .collect();
    Ok(out)
}

/// Runs a simulated federation on `ds`: partition its train split, `cfg.rounds` rounds of
/// local training and aggregation, the global model evaluated on the test split each round.
pub fn simulate(ds: &Dataset, cfg: &FedConfig, progress: &(dyn Fn(FedEvent) + Sync)) -> Result<FedOutcome> {
    cfg.validate()?;
    let input = InputSpec::from_manifest(&ds.manifest)?;
    let classes = ds.manifest.classes.len();
    let net = Network::new(cfg.train.arch, input, classes)?;
    let train = load_split(ds, Split::Train)?;
    let test = load_split(ds, Split::Test)?;
    if train.is_empty() || test.is_empty() {
        return Err(FedError::Config(format!(
            "{}: a federation needs non-empty train and test splits",
            ds.dir.display()
        )));
    }
    let seed = cfg.train.seed;
    let parts = client_samples(&train, cfg.clients, cfg.partition, derive(seed, &[1]))?;
    let data: Vec<privpkt_nn::Samples> = parts.iter().map(|idx| train.subset(idx)).collect();
    let infos: Vec<ClientInfo> = data
        .iter()
        .map(|s| ClientInfo {
            samples: s.len(),
            flows: s
                .capture
                .iter()
                .zip(&s.flow)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            class_counts: s.class_counts(classes),
        })
        .collect();
    progress(FedEvent::Partitioned(infos.clone()));

    let mut global = net.init_params(seed);
    let per_round = ((cfg.fraction * cfg.clients as f64).round() as usize).clamp(1, cfg.clients);
    let mut rounds = Vec::new();
    for r in 0..cfg.rounds {
        let t0 = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, &[2, r as u64]));
        let mut chosen: Vec<usize> = sample(&mut rng, cfg.clients, per_round).into_iter().collect();
        chosen.sort_unstable();
        progress(FedEvent::RoundStart {
            round: r + 1,
            rounds: cfg.rounds,
            clients: chosen.clone(),
        });
        let anchor = global.values.clone();
        let updates: Vec<(usize, Vec<Vec<f32>>, usize, f64)> = chosen
            .par_iter()
            .map(|&c| {
                let mut p = global.clone();
                let (loss, seen) = local_epochs(
                    &net,
                    &mut p,
                    &data[c],
                    &cfg.train,
                    cfg.local_epochs,
                    derive(seed, &[3, r as u64, c as u64]),
                    (cfg.prox_mu > 0.0).then_some((anchor.as_slice(), cfg.prox_mu)),
                );
                (c, p.values, data[c].len(), loss * seen as f64 / cfg.local_epochs as f64)
            })
            .collect();
        let examples: usize = updates.iter().map(|u| u.2).sum();
        let loss = updates.iter().map(|u| u.3).sum::<f64>() / examples.max(1) as f64;
        let plain: Vec<(usize, Vec<Vec<f32>>, usize)> = updates.into_iter().map(|(c, w, n, _)| (c, w, n)).collect();
        global.values = aggregate(&plain, &global, cfg.aggregation)?;
        let (f1, acc) = evaluate(&net, &global, &test)?;
        let rec = RoundRecord {
            round: r + 1,
            clients: chosen,
            examples,
            train_loss: loss,
            test_macro_f1: f1,
            test_accuracy: acc,
            seconds: t0.elapsed().as_secs_f64(),
        };
        progress(FedEvent::RoundEnd(rec.clone()));
        rounds.push(rec);
    }

    let meta = ModelMeta {
        format: MODEL_FORMAT.into(),
        format_version: MODEL_FORMAT_VERSION,
        privpkt_version: env!("CARGO_PKG_VERSION").into(),
        arch: cfg.train.arch,
        input,
        scaling: input.scaling(),
        classes: ds.manifest.classes.clone(),
        params: net.param_count() as u64,
        train: cfg.train.clone(),
        seed,
        extract: ds.manifest.extract,
        dataset_manifest_sha256: manifest_sha256(ds)?,
        history: HistorySummary {
            epochs_run: cfg.rounds * cfg.local_epochs,
            best_epoch: cfg.rounds * cfg.local_epochs,
            best_val_macro_f1: None,
            stopped_early: false,
            epochs: Vec::new(),
        },
        privacy: None,
        federated: Some(serde_json::json!({
            "config": cfg,
            "clients": infos,
            "rounds": rounds,
            "note": "the global model after the last round; per-round scores are on the test split",
        })),
    };
    Ok(FedOutcome {
        model: Model::new(meta, global)?,
        rounds,
        clients: infos,
    })
}

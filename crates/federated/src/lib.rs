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
use privpkt_nn::modelfile::HistorySummary;
use privpkt_nn::train::{evaluate, local_dp_epochs, local_epochs, LocalDp};
use privpkt_nn::{load_split, Model, ModelMeta, NnError, Params, TrainConfig};
use privpkt_privacy::{
    calibrate_sigma, epsilon_after, measure_update, privacy_report, run_keys, AccountantKind, NoiseGenerator,
};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::{ChaCha20Rng, ChaCha8Rng};
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

/// Client-level differential privacy (DP-FedAvg, McMahan et al. 2018): the unit is a whole
/// organisation. Each round samples every client independently with probability q (the
/// client fraction); each sampled client's update (its weights minus the global weights) is
/// clipped to L2 norm `clip`; the server adds N(0, σ²·clip²) to their sum and divides by the
/// expected number of clients q·N. The RDP accountant of the subsampled Gaussian runs over
/// rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDp {
    pub clip: f64,
    /// Noise multiplier; `None` calibrates it so the rounds spend exactly `epsilon`.
    pub sigma: Option<f64>,
    pub epsilon: Option<f64>,
    pub delta: f64,
    /// Key noise and client sampling from the seed (reproducible experiments) instead of OS
    /// entropy.
    pub seeded: bool,
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
    /// Client-level DP; `None` for plain federated averaging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_dp: Option<ClientDp>,
}

impl FedConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(FedError::Config(m));
        if self.clients == 0 || self.rounds == 0 || self.local_epochs == 0 {
            return bad("clients, rounds and local epochs must be ≥ 1".into());
        }
        if self.train.logit_adjust {
            return bad(
                "logit adjustment is for centralised training: each organisation would adjust by its own class \
                 counts"
                    .into(),
            );
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad(format!("the client fraction must be in (0, 1], got {}", self.fraction));
        }
        if !(self.prox_mu.is_finite() && self.prox_mu >= 0.0) {
            return bad(format!("FedProx μ must be ≥ 0, got {}", self.prox_mu));
        }
        if self.train.dp.is_some() && self.prox_mu > 0.0 {
            return bad(
                "local DP-SGD with FedProx is not supported: the proximal term would bypass the clipped, \
                        noised gradient step; use --prox-mu 0"
                    .into(),
            );
        }
        if let Some(dp) = &self.client_dp {
            if !(dp.clip.is_finite() && dp.clip > 0.0) {
                return bad(format!(
                    "client-level DP: the clipping norm must be a finite number > 0, got {}",
                    dp.clip
                ));
            }
            if !(dp.delta > 0.0 && dp.delta < 1.0) {
                return bad(format!("client-level DP: δ must be in (0, 1), got {}", dp.delta));
            }
            match (dp.sigma, dp.epsilon) {
                (None, None) => return bad("client-level DP needs a budget ε or a noise multiplier σ".into()),
                (Some(s), _) if !(s.is_finite() && s > 0.0) => {
                    return bad(format!("client-level DP: σ must be a finite number > 0, got {s}"))
                }
                (_, Some(e)) if !(e.is_finite() && e > 0.0) => {
                    return bad(format!("client-level DP: ε must be a finite number > 0, got {e}"))
                }
                _ => {}
            }
            if self.aggregation != Aggregation::Mean {
                return bad(format!(
                    "client-level DP bounds the sensitivity of the mean; {} aggregation is not covered",
                    self.aggregation
                ));
            }
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
    /// Client-level DP: ε spent after this round, and how many updates were clipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipped: Option<usize>,
    /// Local DP-SGD: the largest ε any organisation has spent so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_epsilon: Option<f64>,
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

/// Seed for (round, client, ...) uses, independent across uses and from the trainer's own
/// streams (which start with small stream numbers).
fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut all = vec![0xFED_u64];
    all.extend_from_slice(parts);
    privpkt_nn::train::derive_seed(seed, &all)
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

/// The organisations' sample indices that [`simulate`] with `cfg` makes of `train` (so an
/// attack can rebuild one organisation's data from a global model's record).
pub fn client_partition(train: &privpkt_nn::Samples, cfg: &FedConfig) -> Result<Vec<Vec<usize>>> {
    client_samples(train, cfg.clients, cfg.partition, derive(cfg.train.seed, &[1]))
}

/// Checks every update (client id, weights, examples) against the model's tensors: the
/// same count and sizes, finite values. A bad update is named, never averaged in.
pub fn check_updates(updates: &[(usize, Vec<Vec<f32>>, usize)], like: &Params) -> Result<()> {
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
    Ok(())
}

/// Combines client weights `updates` (client id, weights, examples) into the global weights,
/// after [`check_updates`].
pub fn aggregate(updates: &[(usize, Vec<Vec<f32>>, usize)], like: &Params, how: Aggregation) -> Result<Vec<Vec<f32>>> {
    if updates.is_empty() {
        return Err(FedError::Config("no client update to aggregate".into()));
    }
    check_updates(updates, like)?;
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
    let classes = ds.manifest.classes.len();
    let net = privpkt_nn::train::network_for(&cfg.train, &ds.manifest)?;
    let train = load_split(ds, Split::Train)?;
    let test = load_split(ds, Split::Test)?;
    if train.is_empty() || test.is_empty() {
        return Err(FedError::Config(format!(
            "{}: a federation needs non-empty train and test splits",
            ds.dir.display()
        )));
    }
    let seed = cfg.train.seed;
    let parts = client_partition(&train, cfg)?;
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
    // Public pre-training: the federation starts from that model, and trains only its chosen
    // layers in every organisation.
    let mut pretraining = None;
    if let Some(init) = &cfg.train.init {
        let (p, prov) = privpkt_nn::init::load_init(init, &net, &ds.manifest.classes, &ds.manifest.extract, &global)?;
        global = p;
        pretraining = Some(prov);
    }
    // The released model: the global weights, or their moving average over rounds
    // (post-processing of what the server already holds).
    let mut average: Option<(Vec<Vec<f32>>, u64)> = None;
    let per_round = ((cfg.fraction * cfg.clients as f64).round() as usize).clamp(1, cfg.clients);
    let dp = match &cfg.client_dp {
        Some(d) => Some(ClientDpRun::new(d, cfg)?),
        None => None,
    };
    // Local DP-SGD: each organisation keeps its own units, σ and accountant over all rounds;
    // σ is calibrated as if it trained in every round (the worst case for its budget).
    let local: Option<Vec<std::sync::Mutex<LocalDp>>> = match &cfg.train.dp {
        Some(d) => Some(
            data.iter()
                .enumerate()
                .map(|(c, s)| {
                    let own = TrainConfig {
                        seed: derive(seed, &[4, c as u64]),
                        ..cfg.train.clone()
                    };
                    LocalDp::new(d, &own, &net, s, cfg.rounds * cfg.local_epochs)
                        .map(std::sync::Mutex::new)
                        .map_err(|e| FedError::Config(format!("client {c}: {e}")))
                })
                .collect::<Result<_>>()?,
        ),
        None => None,
    };
    let mut rounds = Vec::new();
    for r in 0..cfg.rounds {
        let t0 = Instant::now();
        let chosen: Vec<usize> = match &dp {
            // Poisson sampling of clients, from the secret generator.
            Some(d) => {
                let mut rng = ChaCha20Rng::from_seed(d.sample_key);
                rng.set_stream(r as u64);
                (0..cfg.clients)
                    .filter(|_| rng.random::<f64>() < cfg.fraction)
                    .collect()
            }
            None => {
                let mut rng = ChaCha8Rng::seed_from_u64(derive(seed, &[2, r as u64]));
                let mut c: Vec<usize> = sample(&mut rng, cfg.clients, per_round).into_iter().collect();
                c.sort_unstable();
                c
            }
        };
        progress(FedEvent::RoundStart {
            round: r + 1,
            rounds: cfg.rounds,
            clients: chosen.clone(),
        });
        let anchor = global.values.clone();
        let trained: Vec<Option<LocalUpdate>> = chosen
            .par_iter()
            .map(|&c| {
                let mut p = global.clone();
                let own_seed = derive(seed, &[3, r as u64, c as u64]);
                let (loss, seen) = match &local {
                    Some(l) => {
                        let mut dp = l[c].lock().unwrap_or_else(|e| e.into_inner());
                        if dp.exhausted() {
                            // Its budget is spent: the organisation sits the round out.
                            return Ok(None);
                        }
                        local_dp_epochs(&net, &mut p, &data[c], &cfg.train, cfg.local_epochs, own_seed, &mut dp)
                            .map_err(|e| FedError::Config(format!("client {c}: {e}")))?
                    }
                    None => local_epochs(
                        &net,
                        &mut p,
                        &data[c],
                        &cfg.train,
                        cfg.local_epochs,
                        own_seed,
                        (cfg.prox_mu > 0.0).then_some((anchor.as_slice(), cfg.prox_mu)),
                    )
                    .map_err(|e| FedError::Config(format!("client {c}: {e}")))?,
                };
                Ok(Some((
                    c,
                    p.values,
                    data[c].len(),
                    loss * seen as f64 / cfg.local_epochs as f64,
                )))
            })
            .collect::<Result<_>>()?;
        let updates: Vec<LocalUpdate> = trained.into_iter().flatten().collect();
        let examples: usize = updates.iter().map(|u| u.2).sum();
        let loss = updates.iter().map(|u| u.3).sum::<f64>() / examples.max(1) as f64;
        let plain: Vec<(usize, Vec<Vec<f32>>, usize)> = updates.into_iter().map(|(c, w, n, _)| (c, w, n)).collect();
        let mut clipped = None;
        match &dp {
            Some(d) => clipped = Some(d.apply(&mut global, &plain, r as u64)?),
            None if plain.is_empty() => {}
            None => global.values = aggregate(&plain, &global, cfg.aggregation)?,
        }
        if let Some(decay) = cfg.train.ema {
            let (avg, t) = average.get_or_insert_with(|| (global.values.clone(), 0));
            let d = decay.min((1.0 + *t as f64) / (10.0 + *t as f64)) as f32;
            for (a, g) in avg.iter_mut().zip(&global.values) {
                for (a, &g) in a.iter_mut().zip(g) {
                    *a = d * *a + (1.0 - d) * g;
                }
            }
            *t += 1;
        }
        let released = Params {
            specs: global.specs.clone(),
            values: average
                .as_ref()
                .map_or_else(|| global.values.clone(), |(a, _)| a.clone()),
        };
        let (f1, acc) = evaluate(&net, &released, &test)?;
        let rec = RoundRecord {
            round: r + 1,
            clients: chosen,
            examples,
            train_loss: loss,
            test_macro_f1: f1,
            test_accuracy: acc,
            seconds: t0.elapsed().as_secs_f64(),
            epsilon: match &dp {
                Some(d) => Some(d.epsilon(r as u64 + 1)?),
                None => None,
            },
            clipped,
            local_epsilon: match &local {
                Some(l) => Some(local_epsilon(l)?),
                None => None,
            },
        };
        progress(FedEvent::RoundEnd(rec.clone()));
        rounds.push(rec);
    }

    let meta = ModelMeta {
        history: HistorySummary {
            epochs_run: cfg.rounds * cfg.local_epochs,
            best_epoch: cfg.rounds * cfg.local_epochs,
            best_val_macro_f1: None,
            stopped_early: false,
            epochs: Vec::new(),
        },
        privacy: match (&dp, &local) {
            (Some(d), None) => Some(d.summary(cfg.rounds as u64)?),
            (None, Some(l)) => Some(local_summary(l)?),
            (Some(d), Some(l)) => {
                let mut v = d.summary(cfg.rounds as u64)?;
                v["local_dp"] = local_summary(l)?;
                Some(v)
            }
            (None, None) => None,
        },
        federated: Some(serde_json::json!({
            "config": cfg,
            "clients": infos,
            "rounds": rounds,
            "note": "the global model after the last round (its moving average over rounds when the run averages); \
                     per-round scores are on the test split",
        })),
        pretraining,
        ..ModelMeta::for_dataset(ds, &net, &cfg.train)?
    };
    if let Some((avg, _)) = average {
        global.values = avg;
    }
    Ok(FedOutcome {
        model: Model::new(meta, global)?,
        rounds,
        clients: infos,
    })
}

/// A client's round: (client, new weights, its examples, summed local loss).
type LocalUpdate = (usize, Vec<Vec<f32>>, usize, f64);

fn local_epsilon(l: &[std::sync::Mutex<LocalDp>]) -> Result<f64> {
    l.iter().try_fold(0f64, |m, d| {
        let e = d
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .epsilon()
            .map_err(FedError::from)?;
        Ok(m.max(e))
    })
}

/// Local DP-SGD's record: the organisation that spent the most stands for the run (its
/// fields in the top level), every organisation's own record under `per_client`.
fn local_summary(l: &[std::sync::Mutex<LocalDp>]) -> Result<serde_json::Value> {
    let all: Vec<serde_json::Value> = l
        .iter()
        .map(|d| d.lock().unwrap_or_else(|e| e.into_inner()).summary())
        .collect::<std::result::Result<_, _>>()?;
    let worst = all
        .iter()
        .max_by(|a, b| {
            let e = |v: &serde_json::Value| v["epsilon"].as_f64().unwrap_or(f64::INFINITY);
            e(a).total_cmp(&e(b))
        })
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let mut v = worst;
    v["mechanism"] = "DP-SGD in each organisation (the one that spent most shown)".into();
    v["per_client"] = all.into();
    Ok(v)
}

fn privacy_err(e: privpkt_privacy::PrivacyError) -> FedError {
    FedError::Config(format!("client-level DP: {e}"))
}

/// A DP-FedAvg run's fixed state: σ, q and the secret keys.
struct ClientDpRun {
    cfg: ClientDp,
    q: f64,
    sigma: f64,
    calibrated: bool,
    clients: usize,
    noise_key: [u8; 32],
    sample_key: [u8; 32],
}

impl ClientDpRun {
    fn new(d: &ClientDp, cfg: &FedConfig) -> Result<ClientDpRun> {
        let q = cfg.fraction;
        let (sigma, calibrated) = match (d.sigma, d.epsilon) {
            (Some(s), _) => (s, false),
            (None, Some(e)) => (
                calibrate_sigma(e, d.delta, q, cfg.rounds as u64, AccountantKind::Rdp).map_err(privacy_err)?,
                true,
            ),
            (None, None) => return Err(FedError::Config("client-level DP needs ε or σ".into())),
        };
        if let (Some(_), Some(e)) = (d.sigma, d.epsilon) {
            let spent =
                epsilon_after(AccountantKind::Rdp, q, sigma, cfg.rounds as u64, d.delta).map_err(privacy_err)?;
            if spent > e {
                return Err(FedError::Config(format!(
                    "client-level DP: σ = {sigma} over {} rounds spends ε = {spent:.3} > {e}; raise σ or lower the rounds",
                    cfg.rounds
                )));
            }
        }
        let (noise_key, sample_key) = run_keys(d.seeded.then(|| derive(cfg.train.seed, &[9]))).map_err(privacy_err)?;
        Ok(ClientDpRun {
            cfg: d.clone(),
            q,
            sigma,
            calibrated,
            clients: cfg.clients,
            noise_key,
            sample_key,
        })
    }

    fn epsilon(&self, rounds: u64) -> Result<f64> {
        epsilon_after(AccountantKind::Rdp, self.q, self.sigma, rounds, self.cfg.delta).map_err(privacy_err)
    }

    /// Clips every update to the clipping norm, adds the noise, moves the global weights by
    /// the noisy sum over the expected number of clients; returns how many were clipped.
    fn apply(&self, global: &mut Params, updates: &[(usize, Vec<Vec<f32>>, usize)], round: u64) -> Result<usize> {
        check_updates(updates, global)?;
        let mut sum: Vec<Vec<f32>> = global.values.iter().map(|v| vec![0f32; v.len()]).collect();
        let mut clipped = 0;
        for (_, w, _) in updates {
            let update = measure_update(w, &global.values, self.cfg.clip).map_err(privacy_err)?;
            let c = update.factor;
            clipped += usize::from(update.clipped());
            for ((s, a), b) in sum.iter_mut().zip(w).zip(&global.values) {
                for ((s, x), y) in s.iter_mut().zip(a).zip(b) {
                    *s += (c * f64::from(x - y)) as f32;
                }
            }
        }
        let mut noise = NoiseGenerator::from_seed(self.noise_key);
        let per_round: u64 = global
            .values
            .iter()
            .map(|v| privpkt_privacy::noise::streams_needed(v.len()))
            .sum();
        noise.set_next_stream(round * per_round);
        let std = (self.sigma * self.cfg.clip) as f32;
        let scale = (1.0 / (self.q * self.clients as f64)) as f32;
        for (s, g) in sum.iter_mut().zip(global.values.iter_mut()) {
            noise.add_noise(s, std).map_err(privacy_err)?;
            for (s, g) in s.iter().zip(g.iter_mut()) {
                *g += s * scale;
            }
        }
        Ok(clipped)
    }

    fn summary(&self, rounds: u64) -> Result<serde_json::Value> {
        let accountants =
            serde_json::to_value(privacy_report(self.q, self.sigma, rounds, self.cfg.delta).map_err(privacy_err)?)
                .map_err(|e| FedError::Config(e.to_string()))?;
        Ok(serde_json::json!({
            "mechanism": "DP-FedAvg",
            "unit": "client",
            "epsilon": self.epsilon(rounds)?,
            "delta": self.cfg.delta,
            "accountant": "rdp",
            "target_epsilon": self.cfg.epsilon,
            "sigma": self.sigma,
            "sigma_calibrated": self.calibrated,
            "clip": self.cfg.clip,
            "q": self.q,
            "clients": self.clients,
            "steps": rounds,
            "sampling": "Poisson (clients)",
            "noise": if self.cfg.seeded { "ChaCha20 keyed from the run's seed (reproducible experiment)" } else { "ChaCha20 keyed from OS entropy" },
            "accountants": accountants,
        }))
    }
}

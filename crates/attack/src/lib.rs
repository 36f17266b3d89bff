//! privpkt-attack: what a trained traffic classifier leaks about its training flows.
//!
//! - Membership inference ([`run_attack`]) against a model file: members are flows (or
//!   captures) the target trained on, non-members flows of its test split, equal in number
//!   ([`members`]); attacks score each sample, average over the flow, and report ROC AUC,
//!   balanced accuracy, advantage and TPR at 0.1 % / 1 % FPR overall and per class:
//!   - `loss`: Yeom et al. (2018), the mean log-probability of the true class;
//!   - `shokri`: Shokri et al. (2017), shadow models on attacker data disjoint from the
//!     target's training data and one attack classifier per class ([`shokri`]);
//!   - `lira`: Carlini et al. (2022), online or offline ([`lira`]).
//! - A one-run privacy audit of DP-SGD ([`audit`]): an empirical ε lower bound beside the
//!   accountant's ε.

pub mod audit;
pub mod lira;
pub mod members;
pub mod scores;
pub mod shadow;
pub mod shokri;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use privpkt_dataset::{Dataset, Split};
use privpkt_nn::metrics::{BinaryReport, MetricsError, RocCurve};
use privpkt_nn::train::derive_seed;
use privpkt_nn::{load_split, manifest_sha256, Model, NnError};
use rand::seq::index::sample;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use members::{MemberUnit, Universe};

/// Everything that can go wrong in an attack or audit.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error(transparent)]
    Federated(#[from] privpkt_federated::FedError),
    #[error("{0}")]
    Metrics(#[from] MetricsError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Settings that cannot be run.
    #[error("invalid attack settings: {0}")]
    Config(String),
    /// Member and non-member sets, or shadow and training data, that overlap.
    #[error("refused: {0}")]
    Overlap(String),
}

impl From<privpkt_dataset::store::StoreError> for AttackError {
    fn from(e: privpkt_dataset::store::StoreError) -> Self {
        AttackError::Nn(e.into())
    }
}

pub type Result<T, E = AttackError> = std::result::Result<T, E>;

/// Which membership-inference attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    Loss,
    Shokri,
    Lira,
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttackKind::Loss => "loss",
            AttackKind::Shokri => "shokri",
            AttackKind::Lira => "lira",
        })
    }
}

impl FromStr for AttackKind {
    type Err = AttackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "loss" => Ok(AttackKind::Loss),
            "shokri" => Ok(AttackKind::Shokri),
            "lira" => Ok(AttackKind::Lira),
            _ => Err(AttackError::Config(format!(
                "unknown attack `{s}` (loss, shokri or lira)"
            ))),
        }
    }
}

/// Settings of one attack.
#[derive(Debug, Clone)]
pub struct AttackConfig {
    pub kind: AttackKind,
    /// LiRA without shadow models that trained on the candidates.
    pub offline: bool,
    /// Shadow models (Shokri, LiRA).
    pub shadows: usize,
    /// Members (= non-members) to draw; `None`: as many as the data allow.
    pub members: Option<usize>,
    /// Default: the target's DP unit (flow or capture), else flow.
    pub unit: Option<MemberUnit>,
    pub seed: u64,
    /// Federated target: members are this organisation's data.
    pub federated_client: Option<usize>,
}

impl AttackConfig {
    pub fn new(kind: AttackKind) -> AttackConfig {
        AttackConfig {
            kind,
            offline: false,
            shadows: 16,
            members: None,
            unit: None,
            seed: 0,
            federated_client: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AttackError::Config(m));
        if self.offline && self.kind != AttackKind::Lira {
            return bad("--offline is a LiRA setting".into());
        }
        match self.kind {
            AttackKind::Lira if !self.offline && self.shadows < 4 => bad(format!(
                "online LiRA needs at least 4 shadow models (2 IN and 2 OUT per candidate), got {}",
                self.shadows
            )),
            AttackKind::Lira if self.shadows < 2 => bad(format!(
                "offline LiRA needs at least 2 shadow models, got {}",
                self.shadows
            )),
            AttackKind::Shokri if self.shadows == 0 => bad("Shokri's attack needs at least 1 shadow model".into()),
            _ if self.members == Some(0) => bad("--members must be ≥ 1".into()),
            _ => Ok(()),
        }
    }

    fn name(&self) -> &'static str {
        match (self.kind, self.offline) {
            (AttackKind::Loss, _) => "loss",
            (AttackKind::Shokri, _) => "shokri",
            (AttackKind::Lira, false) => "lira-online",
            (AttackKind::Lira, true) => "lira-offline",
        }
    }
}

/// The model under attack and its data.
pub struct Target<'a> {
    pub model: &'a Model,
    pub dataset: &'a Dataset,
    /// The attacker's own data for shadow models (default: the target's test split, minus the
    /// non-members).
    pub shadow_data: Option<&'a Dataset>,
}

/// Progress of [`run_attack`].
#[derive(Debug, Clone)]
pub enum AttackEvent {
    /// Members and non-members drawn; `shadows` models to train on `pool` groups.
    Planned {
        members: usize,
        non_members: usize,
        pool: usize,
        shadows: usize,
    },
    ShadowEpoch {
        index: usize,
        epoch: usize,
        epochs: usize,
    },
    ShadowDone {
        index: usize,
        reused: bool,
        seconds: f64,
    },
    Warning(String),
}

/// One class's slice of the candidates.
#[derive(Debug, Clone, Serialize)]
pub struct ClassSlice {
    pub class: String,
    pub members: usize,
    pub non_members: usize,
    /// `None` when one side is empty.
    pub metrics: Option<BinaryReport>,
}

/// ROC points (no interpolation), for log-log plots.
#[derive(Debug, Clone, Serialize)]
pub struct RocPoints {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
}

/// About the target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    pub arch: String,
    pub dataset: String,
    pub params: u64,
    /// The accountant's ε of a DP-trained target (per its unit), else `None`.
    pub epsilon: Option<f64>,
    pub privacy_unit: Option<String>,
    pub federated: bool,
    pub federated_client: Option<usize>,
}

/// LiRA's settings as run.
#[derive(Debug, Clone, Serialize)]
pub struct LiraInfo {
    pub online: bool,
    pub variance: lira::Variance,
    /// Shadows that trained on each candidate (online: half).
    pub in_per_candidate: usize,
}

/// What `privpkt attack` reports.
#[derive(Debug, Clone, Serialize)]
pub struct AttackReport {
    pub attack: &'static str,
    pub seed: u64,
    pub unit: MemberUnit,
    pub members: usize,
    pub non_members: usize,
    pub metrics: BinaryReport,
    pub per_class: Vec<ClassSlice>,
    pub roc: RocPoints,
    pub target: TargetInfo,
    pub shadows: usize,
    pub shadow_pool: usize,
    pub shadow_training: shadow::ShadowStats,
    pub lira: Option<LiraInfo>,
    pub shokri: Option<shokri::ShokriInfo>,
    pub seconds: f64,
    pub notes: Vec<String>,
}

/// The protocol's numbers for membership `scores` (higher: member) of candidates whose truth
/// is `is_member`: overall, per class (`class_of[i]` indexes `classes`) and the ROC points.
pub fn membership_metrics(
    scores: &[f64],
    is_member: &[bool],
    class_of: &[u32],
    classes: &[String],
) -> Result<(BinaryReport, Vec<ClassSlice>, RocPoints)> {
    if class_of.len() != scores.len() {
        return Err(AttackError::Config(format!(
            "{} classes for {} scores",
            class_of.len(),
            scores.len()
        )));
    }
    let roc = RocCurve::new(scores, is_member)?;
    let metrics = BinaryReport::from_scores(scores, is_member)?;
    let per_class = classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let idx: Vec<usize> = (0..scores.len()).filter(|&j| class_of[j] == c as u32).collect();
            let m = idx.iter().filter(|&&j| is_member[j]).count();
            let s: Vec<f64> = idx.iter().map(|&j| scores[j]).collect();
            let l: Vec<bool> = idx.iter().map(|&j| is_member[j]).collect();
            let metrics = (m > 0 && m < idx.len())
                .then(|| BinaryReport::from_scores(&s, &l))
                .transpose()?;
            Ok(ClassSlice {
                class: name.clone(),
                members: m,
                non_members: idx.len() - m,
                metrics,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((
        metrics,
        per_class,
        RocPoints {
            fpr: roc.fpr().to_vec(),
            tpr: roc.tpr().to_vec(),
        },
    ))
}

/// Candidates: member groups then non-member groups (indices into the universe).
struct Candidates {
    groups: Vec<usize>,
    is_member: Vec<bool>,
}

const STREAM_SELECT: u64 = 0x5E1;
const STREAM_SHADOW: u64 = 0x5AD;

/// Runs one membership-inference attack on `target`. Shadow models are kept in `work` (a rerun
/// reuses the finished ones) or, without it, in a temporary directory.
pub fn run_attack(
    target: &Target<'_>,
    cfg: &AttackConfig,
    work: Option<&Path>,
    progress: &(dyn Fn(AttackEvent) + Sync),
) -> Result<AttackReport> {
    cfg.validate()?;
    let started = Instant::now();
    let meta = target.model.meta();
    let federated = meta.federated.is_some();
    if federated && cfg.kind != AttackKind::Loss {
        return Err(AttackError::Config(format!(
            "{} needs shadow models trained like the target, which for a federated global model means simulated \
             federations; only the loss attack is run against federated targets",
            cfg.kind
        )));
    }
    let unit = cfg.unit.unwrap_or_else(|| MemberUnit::default_for(meta));
    let u = members::build_universe(&members::MemberSource {
        dataset: target.dataset,
        meta,
        unit,
        federated_client: cfg.federated_client,
        shadow_data: target.shadow_data,
    })?;
    let by = |o: members::Origin| -> Vec<usize> { (0..u.groups.len()).filter(|&g| u.groups[g].origin == o).collect() };
    let member_pool = by(members::Origin::TargetTrain);
    let held = by(members::Origin::HeldOut);
    let external = by(members::Origin::ShadowData);
    let needs_pool = cfg.kind == AttackKind::Shokri || (cfg.kind == AttackKind::Lira && cfg.offline);
    let reserve_pool = cfg.kind != AttackKind::Loss && external.is_empty();
    // Without attacker data of its own, half the test split is kept back for the shadows.
    let held_for_candidates = if reserve_pool { held.len() / 2 } else { held.len() };
    let available = member_pool.len().min(held_for_candidates);
    let n = match cfg.members {
        Some(n) if n > available => {
            return Err(AttackError::Config(format!(
                "--members {n}: there are {} member {unit}s and {} held-out {unit}s{}, so at most {available}",
                member_pool.len(),
                held.len(),
                if reserve_pool {
                    " (half of them kept for the shadow models)"
                } else {
                    ""
                }
            )))
        }
        Some(n) => n,
        None => available,
    };
    if n == 0 {
        return Err(AttackError::Config(format!(
            "no {unit}s to attack: {} member and {} held-out {unit}s",
            member_pool.len(),
            held.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &[STREAM_SELECT]));
    let pick = |pool: &[usize], k: usize, rng: &mut ChaCha8Rng| -> Vec<usize> {
        let mut s: Vec<usize> = sample(rng, pool.len(), k).into_iter().map(|i| pool[i]).collect();
        s.sort_unstable();
        s
    };
    let chosen_members = pick(&member_pool, n, &mut rng);
    let chosen_non = pick(&held, n, &mut rng);
    let non_set: std::collections::HashSet<usize> = chosen_non.iter().copied().collect();
    let pool: Vec<usize> = held
        .iter()
        .copied()
        .filter(|g| !non_set.contains(g))
        .chain(external.iter().copied())
        .collect();
    if needs_pool && pool.len() < 4 {
        return Err(AttackError::Config(format!(
            "the shadow pool has {} {unit}s; shadow models need more attacker data (a larger test split or \
             --shadow-data)",
            pool.len()
        )));
    }
    let cand = Candidates {
        groups: chosen_members.iter().chain(&chosen_non).copied().collect(),
        is_member: (0..2 * n).map(|i| i < n).collect(),
    };
    let shadows = if cfg.kind == AttackKind::Loss { 0 } else { cfg.shadows };
    progress(AttackEvent::Planned {
        members: n,
        non_members: n,
        pool: pool.len(),
        shadows,
    });

    let target_preds = scores::predict_groups(target.model, &u, &cand.groups)?;
    let val = load_split(target.dataset, Split::Val)?;
    let mut data_tag = manifest_sha256(target.dataset)?;
    if let Some(sd) = target.shadow_data {
        data_tag.push('+');
        data_tag.push_str(&manifest_sha256(sd)?);
    }
    let ctx = shadow::ShadowContext {
        dataset: target.dataset,
        universe: &u,
        val: &val,
        train: &meta.train,
        data_tag,
        work,
        allow_members: cfg.kind == AttackKind::Lira && !cfg.offline,
    };
    let mut notes = u.notes.clone();
    let mut lira_info = None;
    let mut shokri_info = None;
    let mut stats = shadow::ShadowStats::default();
    let shadow_seed = |k: usize| derive_seed(cfg.seed, &[STREAM_SHADOW, k as u64]);
    // Each pool group joins a shadow's training set with probability ½ (seeded per shadow).
    let half_pool = |k: usize| -> Vec<usize> {
        let mut r = ChaCha8Rng::seed_from_u64(derive_seed(shadow_seed(k), &[1]));
        pool.iter().copied().filter(|_| r.random::<bool>()).collect()
    };
    let scores: Vec<f64> = match cfg.kind {
        AttackKind::Loss => target_preds.iter().map(scores::GroupPreds::mean_log_p).collect(),
        AttackKind::Lira => {
            let stat: Vec<f64> = target_preds.iter().map(scores::GroupPreds::mean_logit_conf).collect();
            // Online: each candidate in exactly half the shadows (Carlini et al.'s balanced keep
            // matrix), so both Gaussians are fitted on K/2 models.
            let inside: Option<Vec<Vec<bool>>> = (!cfg.offline).then(|| {
                let mut m = vec![vec![false; cand.groups.len()]; shadows];
                let mut r = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &[STREAM_SHADOW, u64::MAX]));
                let mut ks: Vec<usize> = (0..shadows).collect();
                let columns: Vec<Vec<usize>> = (0..cand.groups.len())
                    .map(|_| {
                        ks.shuffle(&mut r);
                        ks[..shadows / 2].to_vec()
                    })
                    .collect();
                for (j, col) in columns.iter().enumerate() {
                    for &k in col {
                        m[k][j] = true;
                    }
                }
                m
            });
            let specs: Vec<shadow::ShadowSpec> = (0..shadows)
                .map(|k| {
                    let mut groups: Vec<usize> = match &inside {
                        Some(m) => (0..cand.groups.len())
                            .filter(|&j| m[k][j])
                            .map(|j| cand.groups[j])
                            .collect(),
                        None => Vec::new(),
                    };
                    groups.extend(half_pool(k));
                    groups.sort_unstable();
                    shadow::ShadowSpec {
                        index: k,
                        groups,
                        seed: shadow_seed(k),
                    }
                })
                .collect();
            let (rows, st) = ctx.run(&specs, progress, &|_, m| {
                Ok(scores::predict_groups(m, &u, &cand.groups)?
                    .iter()
                    .map(scores::GroupPreds::mean_logit_conf)
                    .collect::<Vec<f64>>())
            })?;
            stats = st;
            let (s, variance) = lira::scores(&stat, &rows, inside.as_deref())?;
            lira_info = Some(LiraInfo {
                online: !cfg.offline,
                variance,
                in_per_candidate: if cfg.offline { 0 } else { shadows / 2 },
            });
            if cfg.offline {
                notes.push("LiRA offline: no shadow model trained on any candidate".into());
            } else {
                notes.push(
                    "LiRA online: each candidate (member or not) trains half the shadow models, so shadows see target \
                     members; that is LiRA's threat model (the attacker queries with the candidates), unlike Shokri's"
                        .into(),
                );
            }
            s
        }
        AttackKind::Shokri => {
            // Each shadow trains on a random half of the pool; the other half is its OUT data.
            let specs: Vec<shadow::ShadowSpec> = (0..shadows)
                .map(|k| {
                    let mut groups = half_pool(k);
                    groups.sort_unstable();
                    shadow::ShadowSpec {
                        index: k,
                        groups,
                        seed: shadow_seed(k),
                    }
                })
                .collect();
            let (rows, st) = ctx.run(&specs, progress, &|spec, m| {
                let inside: std::collections::HashSet<usize> = spec.groups.iter().copied().collect();
                let preds = scores::predict_groups(m, &u, &pool)?;
                Ok(pool
                    .iter()
                    .zip(preds)
                    .map(|(&g, p)| {
                        (
                            shokri::features(&p.mean_sorted()),
                            u.groups[g].class,
                            inside.contains(&g),
                        )
                    })
                    .collect::<Vec<_>>())
            })?;
            stats = st;
            let examples: Vec<(Vec<f64>, u32, bool)> = rows.into_iter().flatten().collect();
            let (models, info) = shokri::AttackModels::fit(&examples, &meta.classes)?;
            shokri_info = Some(info);
            target_preds
                .iter()
                .zip(&cand.groups)
                .map(|(p, &g)| models.score(&shokri::features(&p.mean_sorted()), u.groups[g].class))
                .collect()
        }
    };

    let class_of: Vec<u32> = cand.groups.iter().map(|&g| u.groups[g].class).collect();
    let (metrics, per_class, roc) = membership_metrics(&scores, &cand.is_member, &class_of, &meta.classes)?;
    let privacy = meta.privacy.as_ref();
    Ok(AttackReport {
        attack: cfg.name(),
        seed: cfg.seed,
        unit,
        members: n,
        non_members: n,
        metrics,
        per_class,
        roc,
        target: TargetInfo {
            arch: meta.arch.name().to_string(),
            dataset: target.dataset.dir.display().to_string(),
            params: meta.params,
            epsilon: privacy.and_then(|p| p["epsilon"].as_f64()),
            privacy_unit: privacy.and_then(|p| p["unit"].as_str().map(str::to_string)),
            federated,
            federated_client: cfg.federated_client,
        },
        shadows,
        shadow_pool: if shadows > 0 { pool.len() } else { 0 },
        shadow_training: stats,
        lira: lira_info,
        shokri: shokri_info,
        seconds: started.elapsed().as_secs_f64(),
        notes,
    })
}

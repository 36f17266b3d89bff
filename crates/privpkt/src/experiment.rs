//! `privpkt experiment`: a sweep over ε, organisations, partition, model and seed, from a
//! plan.toml, to one table (CSV), one privacy–utility–leakage plot and one report page.
//!
//! Every cell (one configuration, one seed) trains a model, evaluates it on the test split and
//! attacks it, and leaves `cells/<id>/result.json`; the id hashes the cell's whole configuration
//! and the dataset's manifest, so a rerun skips finished cells and a changed setting reruns only
//! the cells it touches. The outputs are rewritten after every cell, so an interrupted sweep
//! still leaves a consistent (partial) report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use privpkt_attack::{run_attack, AttackConfig, AttackEvent, AttackKind, Target};
use privpkt_dataset::partition::Scheme;
use privpkt_dataset::prepare::prepare;
use privpkt_dataset::{Dataset, Split};
use privpkt_federated::{simulate, Aggregation, FedConfig, FedEvent};
use privpkt_nn::{manifest_sha256, save_model, Arch, DpConfig, Optimizer, PrivacyUnit, TrainConfig};
use privpkt_privacy::AccountantKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cmd_eval::evaluate_model;
use crate::cmd_prepare::{self, PrepareArgs, Repr};
use crate::cmd_synth::{self, SynthArgs};
use crate::plots::{render, tradeoff_plot, ImageFormat};
use crate::results::{
    config_label, summarise, AttackSummary, CellResult, CurvePoint, DataInfo, OrgData, Privacy, Results, Setting,
    Settings, Utility,
};
use crate::ui::say;

#[derive(Args, Debug, Clone)]
#[command(after_help = "The plan is a TOML file:\n\n\
  title = \"nDPI category: privacy, utility and leakage\"\n\
  [data]                     # one of synthetic = {...}, captures = \"DIR\", dataset = \"DIR\"\n\
  captures = \"captures\"       # relative to the plan; labels from its flows_labels.csv\n\
  label_column = \"category\"\n\
  max_per_flow = 32          # Deep Packet vectors kept per flow\n\
  [train]\n\
  epochs = 20                # centralised (early stopping on validation, patience 5)\n\
  rounds = 20                # federated: rounds × local_epochs\n\
  local_epochs = 1\n\
  optimizer = \"adam\"         # or \"sgd\" (momentum = 0.9)\n\
  lr = 0.001\n\
  batch_size = 64            # with DP: expected flows per step\n\
  delta = 1e-5\n\
  clip = 1.0\n\
  [attack]\n\
  kinds = [\"loss\"]           # also shokri, lira, lira-offline (centralised cells only)\n\
  shadows = 8\n\
  [sweep]\n\
  setting = [\"centralised\", \"fedavg\"]\n\
  organisations = [3, 10]\n\
  partition = [\"iid\", \"dirichlet:0.5\", \"by-capture\"]\n\
  epsilon = [\"none\", 1, 8]   # DP-SGD budget per flow (per organisation when federated)\n\
  model = [\"sae\"]\n\
  seed = [1, 2, 3]\n\n\
Centralised cells ignore organisations and partition. Each cell trains, evaluates on the test split (once), \
and runs the attacks; DP noise and sampling are seeded from the cell's seed, so a cell is reproducible (and its \
noise key recorded: an experiment, not a deployment).\n\n\
Writes into --out: cells/<id>/ (model, result.json), results.json, results.csv, privacy-utility.png/.svg and \
report.html. A rerun skips finished cells; --list shows the cells and which are done.")]
pub struct ExperimentArgs {
    /// The plan (TOML).
    pub plan: PathBuf,
    /// Output folder [default: the plan's name without .toml, beside it].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// List the cells (done or to do) and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only the first N cells still to do (the rest wait for a rerun).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A parsed plan.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default = "default_title")]
    pub title: String,
    pub data: DataPlan,
    #[serde(default)]
    pub train: TrainPlan,
    #[serde(default)]
    pub attack: AttackPlan,
    /// Public data to pre-train on (cells with `public = true` start from that model).
    pub public: Option<PublicPlan>,
    #[serde(default)]
    pub sweep: SweepPlan,
}

/// Public pre-training: data nobody needs to protect (other synthetic seeds, a public corpus),
/// prepared like `[data]`, on which each model is trained once without DP; a cell with
/// `public = true` starts from it and trains only `train_layers` on the private data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublicPlan {
    pub synthetic: Option<SynthPlan>,
    pub captures: Option<PathBuf>,
    pub dataset: Option<PathBuf>,
    pub label_column: Option<String>,
    pub labels: Option<PathBuf>,
    pub class_map: Option<PathBuf>,
    /// Layers trained on the private data (`out`/`head` is the output layer).
    #[serde(default = "default_train_layers")]
    pub train_layers: Vec<String>,
}

fn default_train_layers() -> Vec<String> {
    vec!["out".into()]
}

/// Where a dataset comes from: the data source fields of `[data]` or `[public]`.
struct Source<'a> {
    synthetic: &'a Option<SynthPlan>,
    captures: &'a Option<PathBuf>,
    dataset: &'a Option<PathBuf>,
    label_column: &'a Option<String>,
    labels: &'a Option<PathBuf>,
    class_map: &'a Option<PathBuf>,
}

impl DataPlan {
    fn source(&self) -> Source<'_> {
        Source {
            synthetic: &self.synthetic,
            captures: &self.captures,
            dataset: &self.dataset,
            label_column: &self.label_column,
            labels: &self.labels,
            class_map: &self.class_map,
        }
    }
}

impl PublicPlan {
    fn source(&self) -> Source<'_> {
        Source {
            synthetic: &self.synthetic,
            captures: &self.captures,
            dataset: &self.dataset,
            label_column: &self.label_column,
            labels: &self.labels,
            class_map: &self.class_map,
        }
    }
}

/// A batch size in a plan: a number, or `"full"` (every unit in every DP step).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum BatchSpec {
    Size(usize),
    Word(FullBatch),
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum FullBatch {
    Full,
}

impl BatchSpec {
    fn value(self) -> usize {
        match self {
            BatchSpec::Size(n) => n,
            BatchSpec::Word(FullBatch::Full) => privpkt_nn::dp::FULL_BATCH,
        }
    }
}

/// `[train.dp]`: settings of DP cells that differ from `[train]` (DP-SGD wants large batches,
/// plain SGD and larger steps).
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DpTrainPlan {
    pub optimizer: Option<String>,
    pub momentum: Option<f64>,
    pub lr: Option<f64>,
    pub batch_size: Option<BatchSpec>,
    pub epochs: Option<usize>,
    /// Early stopping of private centralised cells (0: never; a noisy validation score stops
    /// them early otherwise).
    pub patience: Option<usize>,
    pub rounds: Option<usize>,
    pub local_epochs: Option<usize>,
    /// Weight averaging of private cells (0: off).
    pub ema: Option<f64>,
    pub augment_views: Option<usize>,
    /// Piecewise-linear bins per number of behaviour inputs in private cells trained from
    /// scratch (a pre-trained model's cells keep its bins).
    pub ple_bins: Option<usize>,
    /// Logit adjustment of private centralised cells.
    pub logit_adjust: Option<bool>,
}

fn default_title() -> String {
    "privpkt experiment".into()
}

/// Where the dataset comes from, and how captures are prepared.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DataPlan {
    pub synthetic: Option<SynthPlan>,
    pub captures: Option<PathBuf>,
    pub dataset: Option<PathBuf>,
    /// Column of flows_labels.csv (`category+vpn` for synthetic traffic by default).
    pub label_column: Option<String>,
    /// A labels CSV outside the captures' folder.
    pub labels: Option<PathBuf>,
    /// A class map CSV (`from,to`; empty `to` drops the class).
    pub class_map: Option<PathBuf>,
    /// behaviour (default), series, flowstats, deeppacket or flowpic (mini-FlowPics).
    #[serde(default = "default_repr")]
    pub repr: String,
    /// behaviour, series: packets per series.
    #[serde(default = "default_packets")]
    pub packets: u32,
    /// behaviour, series: payload bytes per series packet (of the first payload-carrying ones).
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: u32,
    /// behaviour, series: payload-carrying packets that keep their bytes.
    #[serde(default = "default_payload_packets")]
    pub payload_packets: u32,
    /// behaviour, flowstats: statistics over `flow`, `series` or a number of seconds.
    #[serde(default = "default_stats_over")]
    pub stats_over: String,
    /// Samples kept per flow (Deep Packet vectors); keeps long flows from dominating.
    pub max_per_flow: Option<u32>,
    pub max_per_class: Option<u64>,
    #[serde(default = "default_split_by")]
    pub split_by: String,
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
}

fn default_repr() -> String {
    "behaviour".into()
}
fn default_packets() -> u32 {
    30
}
fn default_payload_bytes() -> u32 {
    8
}
fn default_payload_packets() -> u32 {
    4
}
fn default_stats_over() -> String {
    "flow".into()
}

fn repr(r: &str) -> Result<Repr> {
    Ok(match r {
        "behaviour" => Repr::Behaviour,
        "series" => Repr::Series,
        "flowstats" => Repr::Flowstats,
        "deeppacket" => Repr::Deeppacket,
        "flowpic" => Repr::Flowpic,
        r => bail!("[data] repr: `{r}` is not behaviour, series, flowstats, deeppacket or flowpic"),
    })
}
fn default_split_by() -> String {
    "flow".into()
}
fn default_split() -> String {
    "0.7,0.1,0.2".into()
}
fn default_split_seed() -> u64 {
    42
}

/// Synthetic traffic (`privpkt synth`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthPlan {
    #[serde(default = "default_split_seed")]
    pub seed: u64,
    #[serde(default = "default_cpc")]
    pub captures_per_class: usize,
    #[serde(default = "default_fpc")]
    pub flows_per_capture: usize,
    #[serde(default)]
    pub no_vpn: bool,
}

fn default_cpc() -> usize {
    3
}
fn default_fpc() -> usize {
    12
}

/// Training settings shared by every cell.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainPlan {
    pub epochs: usize,
    /// Epochs without a better validation macro-F1 before a centralised run stops (0: never).
    pub patience: usize,
    pub rounds: usize,
    pub local_epochs: usize,
    /// Share of organisations training in each round.
    pub fraction: f64,
    pub optimizer: String,
    pub momentum: f64,
    pub lr: f64,
    pub batch_size: usize,
    pub delta: f64,
    pub clip: f64,
    pub privacy_unit: String,
    pub unit_cap: usize,
    pub accountant: String,
    /// Weight averaging decay (the average is validated and released); none by default.
    pub ema: Option<f64>,
    /// Augmented views of behaviour samples per step (0: no augmentation).
    pub augment_views: usize,
    /// Weight the loss by inverse class frequency (cells without DP only: under DP the weights
    /// would come from the private labels' counts).
    pub class_weights: bool,
    /// Logit adjustment (centralised cells; under DP the class counts are released with noise and
    /// accounted).
    pub logit_adjust: bool,
    /// Piecewise-linear bins per number of behaviour inputs (none: 16).
    pub ple_bins: Option<usize>,
    /// Settings of DP cells that differ (`[train.dp]`).
    pub dp: DpTrainPlan,
}

impl Default for TrainPlan {
    fn default() -> Self {
        TrainPlan {
            epochs: 20,
            patience: 5,
            rounds: 20,
            local_epochs: 1,
            fraction: 1.0,
            optimizer: "adam".into(),
            momentum: 0.9,
            lr: 1e-3,
            batch_size: 64,
            delta: 1e-5,
            clip: 1.0,
            privacy_unit: "flow".into(),
            unit_cap: 8,
            accountant: "rdp".into(),
            ema: None,
            augment_views: 0,
            class_weights: false,
            logit_adjust: false,
            ple_bins: None,
            dp: DpTrainPlan::default(),
        }
    }
}

/// Attacks run on every cell.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttackPlan {
    pub kinds: Vec<String>,
    pub shadows: usize,
    pub members: Option<usize>,
}

impl Default for AttackPlan {
    fn default() -> Self {
        AttackPlan {
            kinds: vec!["loss".into()],
            shadows: 8,
            members: None,
        }
    }
}

/// A privacy budget in the sweep: a number, or `none` for training without DP.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EpsSpec {
    Value(f64),
    Word(NoDp),
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum NoDp {
    None,
}

impl EpsSpec {
    fn value(self) -> Option<f64> {
        match self {
            EpsSpec::Value(e) => Some(e),
            EpsSpec::Word(NoDp::None) => None,
        }
    }
}

/// The axes of the sweep.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepPlan {
    pub setting: Vec<Setting>,
    pub organisations: Vec<usize>,
    pub partition: Vec<String>,
    pub epsilon: Vec<EpsSpec>,
    /// Architectures (default: the representation's default).
    pub model: Vec<Arch>,
    /// Start from the `[public]` pre-trained model (true), from scratch (false), or both.
    pub public: Vec<bool>,
    pub seed: Vec<u64>,
    /// Cells of the grid not to run: each entry names some axes' values, and a cell matching all
    /// of them is left out (e.g. `{ model = "logistic", public = true }`).
    pub exclude: Vec<CellFilter>,
}

/// Part of a cell's coordinates (see [`SweepPlan::exclude`]).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CellFilter {
    pub setting: Option<Setting>,
    pub organisations: Option<usize>,
    pub partition: Option<String>,
    pub model: Option<Arch>,
    pub public: Option<bool>,
    pub epsilon: Option<EpsSpec>,
    pub seed: Option<u64>,
}

impl CellFilter {
    fn matches(&self, c: &Cell) -> bool {
        self.setting.is_none_or(|s| s == c.setting)
            && self.organisations.is_none_or(|o| o == c.organisations)
            && self.partition.as_ref().is_none_or(|p| *p == c.partition)
            && self.model.is_none_or(|m| m == c.model)
            && self.public.is_none_or(|p| p == c.public)
            && self.epsilon.is_none_or(|e| e.value() == c.epsilon)
            && self.seed.is_none_or(|s| s == c.seed)
    }
}

impl Default for SweepPlan {
    fn default() -> Self {
        SweepPlan {
            setting: vec![Setting::Centralised],
            organisations: vec![3],
            partition: vec!["iid".into()],
            epsilon: vec![EpsSpec::Word(NoDp::None)],
            model: Vec::new(),
            public: vec![false],
            seed: vec![1],
            exclude: Vec::new(),
        }
    }
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the plan", path.display()))?;
        Self::parse(&text, path)
    }

    /// A plan from its text; `path` names it in errors and anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Plan> {
        let mut plan: Plan = toml::from_str(text).with_context(|| format!("{}: not a valid plan", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut paths = vec![
            &mut plan.data.captures,
            &mut plan.data.dataset,
            &mut plan.data.labels,
            &mut plan.data.class_map,
        ];
        if let Some(p) = plan.public.as_mut() {
            paths.extend([&mut p.captures, &mut p.dataset, &mut p.labels, &mut p.class_map]);
        }
        for p in paths.into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        plan.validate()
            .with_context(|| format!("{}: invalid plan", path.display()))?;
        Ok(plan)
    }

    /// Refuses plans that cannot run, before anything is trained.
    pub fn validate(&self) -> Result<()> {
        let d = &self.data;
        let sources = [d.synthetic.is_some(), d.captures.is_some(), d.dataset.is_some()];
        if sources.iter().filter(|&&s| s).count() != 1 {
            bail!("[data] needs exactly one of synthetic = {{...}}, captures = \"DIR\" or dataset = \"DIR\"");
        }
        repr(&d.repr)?;
        if let Some(p) = &self.public {
            let sources = [p.synthetic.is_some(), p.captures.is_some(), p.dataset.is_some()];
            if sources.iter().filter(|&&s| s).count() != 1 {
                bail!("[public] needs exactly one of synthetic = {{...}}, captures = \"DIR\" or dataset = \"DIR\"");
            }
            if p.train_layers.is_empty() {
                bail!("[public] train_layers is empty: name the layers trained on the private data (e.g. [\"out\"])");
            }
        }
        if self.sweep.public.contains(&true) && self.public.is_none() {
            bail!("[sweep] public = true needs a [public] section saying where the public data come from");
        }
        if self.sweep.public.is_empty() {
            bail!("[sweep] public is empty: give at least one value (false: from scratch)");
        }
        if self.train.class_weights && self.sweep.epsilon.iter().any(|e| e.value().is_some()) {
            // Refused per cell by the trainer too; say it before anything runs.
            eprintln!("note: [train] class_weights applies to the cells without DP only");
        }
        for (key, e) in [("[train] ema", self.train.ema), ("[train.dp] ema", self.train.dp.ema)] {
            if let Some(e) = e {
                // 0 switches averaging off for the private cells.
                let off_allowed = key == "[train.dp] ema";
                if !(e.is_finite() && (0.0..1.0).contains(&e)) || (e == 0.0 && !off_allowed) {
                    let range = if off_allowed { "[0, 1) (0: off)" } else { "(0, 1)" };
                    bail!("{key}: the decay must be in {range}, got {e}");
                }
            }
        }
        if let Some(o) = &self.train.dp.optimizer {
            optimizer(&TrainPlan {
                optimizer: o.clone(),
                ..self.train.clone()
            })
            .context("[train.dp] optimizer")?;
        }
        let s = &self.sweep;
        for (name, empty) in [
            ("setting", s.setting.is_empty()),
            ("organisations", s.organisations.is_empty()),
            ("partition", s.partition.is_empty()),
            ("epsilon", s.epsilon.is_empty()),
            ("seed", s.seed.is_empty()),
        ] {
            if empty {
                bail!("[sweep] {name} is empty: give at least one value");
            }
        }
        for e in s.epsilon.iter().filter_map(|e| e.value()) {
            if !(e.is_finite() && e > 0.0) {
                bail!("[sweep] epsilon: {e} is not a budget (> 0; \"none\" trains without DP)");
            }
        }
        if s.organisations.contains(&0) {
            bail!("[sweep] organisations: 0 organisations cannot train");
        }
        for p in &s.partition {
            p.parse::<Scheme>()
                .map_err(|e| anyhow::anyhow!("[sweep] partition `{p}`: {e}"))?;
        }
        for k in &self.attack.kinds {
            attack_kind(k)?;
        }
        optimizer(&self.train)?;
        dp_unit(&self.train.privacy_unit)?;
        accountant(&self.train.accountant)?;
        let t = &self.train;
        if t.epochs == 0 || t.rounds == 0 || t.local_epochs == 0 || t.batch_size == 0 {
            bail!("[train] epochs, rounds, local_epochs and batch_size must be ≥ 1");
        }
        // A value twice on an axis would run the same cell twice and report it as two.
        fn unique<T: PartialEq + std::fmt::Debug>(axis: &str, v: &[T]) -> Result<()> {
            for (i, x) in v.iter().enumerate() {
                if v[..i].contains(x) {
                    bail!("[sweep] {axis}: {x:?} is given twice");
                }
            }
            Ok(())
        }
        unique("setting", &s.setting)?;
        unique("organisations", &s.organisations)?;
        unique("partition", &s.partition)?;
        unique("epsilon", &s.epsilon)?;
        unique("model", &s.model)?;
        unique("public", &s.public)?;
        unique("seed", &s.seed)?;
        // Every cell's training settings, checked as the trainer will, before anything runs.
        let models = if s.model.is_empty() {
            vec![Arch::Sae]
        } else {
            s.model.clone()
        };
        for &model in &models {
            for eps in &s.epsilon {
                let cell = Cell {
                    setting: Setting::Centralised,
                    organisations: 1,
                    partition: "-".into(),
                    model,
                    public: false,
                    epsilon: eps.value(),
                    seed: s.seed[0],
                };
                let which = if eps.value().is_some() {
                    "[train] with [train.dp]"
                } else {
                    "[train]"
                };
                train_config(self, &cell)
                    .and_then(|c| c.validate().map_err(anyhow::Error::from))
                    .with_context(|| format!("{which} for {model}"))?;
            }
        }
        Ok(())
    }
}

fn attack_kind(k: &str) -> Result<(AttackKind, bool)> {
    Ok(match k {
        "loss" => (AttackKind::Loss, false),
        "shokri" => (AttackKind::Shokri, false),
        "lira" => (AttackKind::Lira, false),
        "lira-offline" => (AttackKind::Lira, true),
        _ => bail!("[attack] kinds: unknown attack `{k}` (loss, shokri, lira, lira-offline)"),
    })
}

fn optimizer(t: &TrainPlan) -> Result<Optimizer> {
    Ok(match t.optimizer.as_str() {
        "adam" => Optimizer::Adam,
        "sgd" => Optimizer::Sgd { momentum: t.momentum },
        o => bail!("[train] optimizer: `{o}` is not adam or sgd"),
    })
}

fn dp_unit(u: &str) -> Result<PrivacyUnit> {
    Ok(match u {
        "packet" => PrivacyUnit::Packet,
        "flow" => PrivacyUnit::Flow,
        "capture" => PrivacyUnit::Capture,
        _ => bail!("[train] privacy_unit: `{u}` is not packet, flow or capture"),
    })
}

fn accountant(a: &str) -> Result<AccountantKind> {
    Ok(match a {
        "rdp" => AccountantKind::Rdp,
        "prv" => AccountantKind::Prv,
        _ => bail!("[train] accountant: `{a}` is not rdp or prv"),
    })
}

/// One cell of the sweep (before it runs).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub setting: Setting,
    pub organisations: usize,
    pub partition: String,
    pub model: Arch,
    /// Starts from the `[public]` pre-trained model.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub public: bool,
    pub epsilon: Option<f64>,
    pub seed: u64,
}

impl Cell {
    fn label(&self) -> String {
        config_label(
            self.setting,
            self.organisations,
            &self.partition,
            &self.model_name(),
            self.epsilon,
        ) + &format!(", seed {}", self.seed)
    }

    /// The model as results name it: the architecture, and its public pre-training.
    pub fn model_name(&self) -> String {
        if self.public {
            format!("{} + public pre-training", self.model.name())
        } else {
            self.model.name().to_string()
        }
    }
}

/// The cells of a plan, in plan order; centralised cells once whatever the organisations and
/// partitions, shadow-model attacks only where they are defined.
pub fn expand(plan: &Plan, default_model: Arch) -> Vec<Cell> {
    let s = &plan.sweep;
    let models = if s.model.is_empty() {
        vec![default_model]
    } else {
        s.model.clone()
    };
    let mut cells = Vec::new();
    for &model in &models {
        for &setting in &s.setting {
            let layouts: Vec<(usize, String)> = match setting {
                Setting::Centralised => vec![(1, "-".into())],
                Setting::Fedavg => s
                    .organisations
                    .iter()
                    .flat_map(|&o| s.partition.iter().map(move |p| (o, p.clone())))
                    .collect(),
            };
            for (organisations, partition) in layouts {
                for &public in &s.public {
                    for eps in &s.epsilon {
                        for &seed in &s.seed {
                            let cell = Cell {
                                setting,
                                organisations,
                                partition: partition.clone(),
                                model,
                                public,
                                epsilon: eps.value(),
                                seed,
                            };
                            if !s.exclude.iter().any(|f| f.matches(&cell)) {
                                cells.push(cell);
                            }
                        }
                    }
                }
            }
        }
    }
    cells
}

/// What identifies a cell's result: everything that can change it.
#[derive(Serialize)]
struct CellKey<'a> {
    scheme: u32,
    manifest_sha256: &'a str,
    cell: &'a Cell,
    train: &'a TrainPlan,
    attack: &'a AttackPlan,
    #[serde(skip_serializing_if = "Option::is_none")]
    public: Option<(&'a PublicPlan, &'a DataPlan)>,
}

fn cell_id(cell: &Cell, manifest: &str, plan: &Plan) -> String {
    let key = CellKey {
        scheme: 2,
        manifest_sha256: manifest,
        cell,
        train: &plan.train,
        attack: &plan.attack,
        public: plan.public.as_ref().filter(|_| cell.public).map(|p| (p, &plan.data)),
    };
    let json = serde_json::to_vec(&key).expect("cell keys serialise");
    let h = format!("{:x}", Sha256::digest(&json));
    h[..12].to_string()
}

/// Prepare (or reuse) the dataset the plan describes; returns its folder and a description of
/// its source.
fn dataset_for(plan: &Plan, out: &Path, progress: &ProgressBar) -> Result<(PathBuf, String, String)> {
    let key = serde_json::to_string(&(&plan.data, env!("CARGO_PKG_VERSION")))?;
    prepare_source(&plan.data.source(), &plan.data, &out.join("data"), &key, progress)
}

/// Prepare (or reuse, while `key` is unchanged) the dataset of `src` in `data_dir`, the way
/// `prep` says (representation, split, caps); returns its folder, a description of its source
/// and the label column.
fn prepare_source(
    src: &Source<'_>,
    prep: &DataPlan,
    data_dir: &Path,
    key: &str,
    progress: &ProgressBar,
) -> Result<(PathBuf, String, String)> {
    let d = src;
    if let Some(ds) = &d.dataset {
        Dataset::open(ds).with_context(|| format!("dataset = {}", ds.display()))?;
        return Ok((ds.clone(), ds.display().to_string(), String::new()));
    }
    let ds_dir = data_dir.join("dataset");
    // Reuse the prepared dataset when the data settings are unchanged (its manifest keys the cells).
    let key_file = data_dir.join("data-settings.json");
    let (captures, source, label_column) = match (&d.synthetic, &d.captures) {
        (Some(s), _) => (
            data_dir.join("captures"),
            format!(
                "synthetic (seed {}, {} captures per class, {} flows per capture)",
                s.seed, s.captures_per_class, s.flows_per_capture
            ),
            d.label_column.clone().unwrap_or_else(|| "category+vpn".into()),
        ),
        (None, Some(c)) => (
            c.clone(),
            c.display().to_string(),
            d.label_column.clone().unwrap_or_else(|| "category".into()),
        ),
        (None, None) => unreachable!("validated: one data source"),
    };
    if std::fs::read_to_string(&key_file).ok().as_deref() == Some(key) && ds_dir.join("manifest.json").exists() {
        say(progress, format!("data: reusing {}", ds_dir.display()));
        return Ok((ds_dir, source, label_column));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("{}: cannot create", data_dir.display()))?;
    let _ = std::fs::remove_file(&key_file);
    if let Some(s) = &d.synthetic {
        if captures.exists() {
            std::fs::remove_dir_all(&captures).with_context(|| format!("{}: cannot clear", captures.display()))?;
        }
        progress.set_message("synthesising captures");
        let sa = SynthArgs {
            out: captures.clone(),
            seed: s.seed,
            categories: None,
            no_vpn: s.no_vpn,
            captures_per_class: s.captures_per_class,
            flows_per_capture: s.flows_per_capture,
            size: None,
            format: cmd_synth::FormatArg::Mixed,
            link: cmd_synth::LinkArg::Mixed,
            ipv6: 0.2,
            json: false,
            // A plan states its sizes: it is checked and listed (`--list`) before anything runs.
            yes: true,
        };
        let sum = cmd_synth::generate_with_progress(&cmd_synth::config(&sa)?, &captures, true)?;
        say(
            progress,
            format!(
                "data: {} synthetic captures, {} flows, {} packets in {}",
                sum.files.len(),
                sum.flows,
                sum.packets,
                captures.display()
            ),
        );
    }
    progress.set_message(format!("preparing {}", ds_dir.display()));
    let class_map = match (&d.class_map, &d.synthetic) {
        (Some(m), _) => Some(m.clone()),
        // Background DNS is not an application class.
        (None, Some(_)) => {
            let p = data_dir.join("class_map.csv");
            std::fs::write(&p, "from,to\ndns,\nvpn_dns,\n")
                .with_context(|| format!("{}: cannot write", p.display()))?;
            Some(p)
        }
        (None, None) => None,
    };
    let pa = PrepareArgs {
        inputs: vec![captures.clone()],
        out: ds_dir.clone(),
        labels: d.labels.clone(),
        label_column: Some(label_column.clone()),
        iscx: false,
        rules: None,
        class_map,
        classes: None,
        repr: repr(&prep.repr)?,
        packets: prep.packets,
        payload_bytes: prep.payload_bytes,
        payload_packets: prep.payload_packets,
        stats_over: prep.stats_over.clone(),
        paper: false,
        mini: true,
        block_seconds: None,
        resolution: None,
        min_packets: None,
        bidirectional: false,
        idle_timeout: 120.0,
        active_timeout: 3600.0,
        max_per_flow: prep.max_per_flow,
        max_per_class: prep.max_per_class,
        balance: false,
        split_by: match prep.split_by.as_str() {
            "flow" => privpkt_dataset::SplitUnit::Flow,
            "capture" => privpkt_dataset::SplitUnit::Capture,
            u => bail!("[data] split_by: `{u}` is not flow or capture (a split by packet is not an honest estimate)"),
        },
        split: prep.split.clone(),
        seed: prep.split_seed,
        shard_rows: 1 << 20,
        force: true,
        json: false,
    };
    let cfg = cmd_prepare::config(&pa)?;
    prepare(&cfg, &|_| {}).with_context(|| format!("preparing {}", captures.display()))?;
    std::fs::write(&key_file, key).with_context(|| format!("{}: cannot write", key_file.display()))?;
    say(progress, format!("data: prepared {}", ds_dir.display()));
    Ok((ds_dir, source, label_column))
}

fn data_info(ds: &Dataset, dir: &Path, source: String, label_column: String) -> Result<DataInfo> {
    let index = ds.read_index()?;
    let mut flows = [HashSet::new(), HashSet::new(), HashSet::new()];
    let mut samples = [0u64; 3];
    for r in &index {
        let i = match r.split.as_str() {
            "train" => 0,
            "val" => 1,
            "test" => 2,
            _ => continue,
        };
        samples[i] += 1;
        flows[i].insert((r.capture, r.flow));
    }
    let m = &ds.manifest;
    Ok(DataInfo {
        source,
        dataset: dir.display().to_string(),
        manifest_sha256: manifest_sha256(ds)?,
        repr: m.extract.repr.name().into(),
        label_column: if label_column.is_empty() {
            m.labels.column.clone().unwrap_or_else(|| m.labels.kind.clone())
        } else {
            label_column
        },
        classes: m.classes.clone(),
        samples,
        flows: flows.map(|f| f.len() as u64),
        train_class_counts: m.split_counts.get("train").cloned().unwrap_or_default(),
        split_by: format!("{:?}", m.split.unit).to_lowercase(),
    })
}

/// The model of a plan that names none: the stacked autoencoder for Deep Packet vectors (the
/// fastest Deep Packet model, and the one DP-SGD trains best), else the representation's own.
fn default_model(ds: &Dataset) -> Arch {
    match ds.manifest.extract.repr {
        privpkt_capture::Representation::DeepPacket(_) => Arch::Sae,
        ref r => Arch::default_for(r),
    }
}

/// Everything a cell needs besides itself.
struct Ctx<'a> {
    plan: &'a Plan,
    ds: &'a Dataset,
    out: &'a Path,
    bar: &'a ProgressBar,
    /// Flows of the train split (a centralised cell's one organisation holds them all).
    train_flows: usize,
}

fn train_config(plan: &Plan, cell: &Cell) -> Result<TrainConfig> {
    let t = &plan.train;
    let o = &t.dp;
    let private = cell.epsilon.is_some();
    // DP cells take `[train.dp]` where it says something.
    let or = |over: Option<f64>, base: f64| if private { over.unwrap_or(base) } else { base };
    let dp = match cell.epsilon {
        None => None,
        Some(e) => {
            let mut dp = DpConfig::new(e);
            dp.delta = t.delta;
            dp.clip = t.clip;
            dp.unit = dp_unit(&t.privacy_unit)?;
            dp.unit_cap = t.unit_cap;
            dp.accountant = accountant(&t.accountant)?;
            // Seeded: a cell is a reproducible experiment (recorded in the model file).
            dp.seeded = true;
            Some(dp)
        }
    };
    let opt_plan = TrainPlan {
        optimizer: o
            .optimizer
            .clone()
            .filter(|_| private)
            .unwrap_or_else(|| t.optimizer.clone()),
        momentum: or(o.momentum, t.momentum),
        ..t.clone()
    };
    let views = if private {
        o.augment_views.unwrap_or(t.augment_views)
    } else {
        t.augment_views
    };
    Ok(TrainConfig {
        optimizer: optimizer(&opt_plan)?,
        lr: or(o.lr, t.lr),
        epochs: if private {
            o.epochs.unwrap_or(t.epochs)
        } else {
            t.epochs
        },
        batch_size: match (private, o.batch_size) {
            (true, Some(b)) => b.value(),
            _ => t.batch_size,
        },
        patience: match (private, o.patience) {
            (true, Some(p)) => (p > 0).then_some(p),
            _ => (t.patience > 0).then_some(t.patience),
        },
        seed: cell.seed,
        // Centralised and federated cells start alike: no greedy pre-training (it has no
        // federated form here), so the comparison is of the training regime alone.
        sae_pretrain_epochs: 0,
        dp,
        ema: if private {
            o.ema.or(t.ema).filter(|&d| d != 0.0)
        } else {
            t.ema
        },
        augment: (views > 0).then(|| privpkt_nn::augment::Augment {
            views,
            ..Default::default()
        }),
        class_weights: t.class_weights && !private,
        logit_adjust: (if private {
            o.logit_adjust.unwrap_or(t.logit_adjust)
        } else {
            t.logit_adjust
        }) && cell.setting == Setting::Centralised,
        // Cells from a pre-trained model take its bins (`run_cell` sets `init`).
        ple_bins: match (private, cell.public) {
            (_, true) => None,
            (true, false) => o.ple_bins.or(t.ple_bins),
            (false, false) => t.ple_bins,
        },
        ..TrainConfig::new(cell.model)
    })
}

/// The `[public]` pre-trained model of `arch`: the public data prepared like `[data]`, the
/// model trained on it once without DP (with `[train]`'s settings and the split seed), both
/// cached under `public/` while their settings are unchanged.
fn public_model(ctx: &Ctx<'_>, arch: Arch) -> Result<PathBuf> {
    let plan = ctx.plan;
    let public = plan
        .public
        .as_ref()
        .context("cells with public = true need a [public] section")?;
    let dir = ctx.out.join("public");
    let key = serde_json::to_string(&(public, &plan.data, env!("CARGO_PKG_VERSION")))?;
    let (ds_dir, _, _) =
        prepare_source(&public.source(), &plan.data, &dir.join("data"), &key, ctx.bar).context("[public] data")?;
    let ds = Dataset::open(&ds_dir)?;
    let cell = Cell {
        setting: Setting::Centralised,
        organisations: 1,
        partition: "-".into(),
        model: arch,
        public: false,
        epsilon: None,
        seed: plan.data.split_seed,
    };
    let cfg = train_config(plan, &cell)?;
    let id = {
        let k = serde_json::to_vec(&(&cfg, manifest_sha256(&ds)?))?;
        format!("{:x}", Sha256::digest(&k))[..12].to_string()
    };
    let path = dir.join(format!("{}-{id}.safetensors", arch.name()));
    if path.exists() {
        return Ok(path);
    }
    let bar = ctx.bar;
    let outcome = privpkt_nn::train(&ds, &cfg, &dir.join(format!("work-{id}")), false, &|e| {
        if let privpkt_nn::TrainEvent::EpochEnd { record, .. } = e {
            bar.set_message(format!(
                "public pre-training of {arch}: epoch {}/{}",
                record.epoch, cfg.epochs
            ));
        }
    })
    .context("[public] pre-training")?;
    save_model(&path, &outcome.model)?;
    let _ = std::fs::remove_dir_all(dir.join(format!("work-{id}")));
    say(
        bar,
        format!(
            "public pre-training of {arch} on {}: validation macro-F1 {}",
            ds_dir.display(),
            outcome.best_val_macro_f1.map_or("-".into(), |f| format!("{f:.3}"))
        ),
    );
    Ok(path)
}

fn run_cell(ctx: &Ctx<'_>, cell: &Cell, id: &str, n: usize, of: usize) -> Result<CellResult> {
    let dir = ctx.out.join("cells").join(id);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let model_path = dir.join("model.safetensors");
    let label = cell.label();
    let bar = ctx.bar;
    let msg = |m: String| bar.set_message(format!("cell {n}/{of}: {label}: {m}"));
    let mut cfg = train_config(ctx.plan, cell)?;
    if cell.public {
        let layers = ctx
            .plan
            .public
            .as_ref()
            .map(|p| p.train_layers.clone())
            .unwrap_or_default();
        cfg.init = Some(privpkt_nn::init::InitFrom::new(
            &public_model(ctx, cell.model)?,
            layers,
        )?);
    }
    let private = cell.epsilon.is_some();
    let dpo = &ctx.plan.train.dp;
    let t0 = Instant::now();
    let (model, curve, orgs) = match cell.setting {
        Setting::Centralised => {
            let work = dir.join("work");
            let resume = work.join(privpkt_nn::train::CHECKPOINT_FILE).exists();
            let outcome = privpkt_nn::train(ctx.ds, &cfg, &work, resume, &|e| {
                if let privpkt_nn::TrainEvent::Batch {
                    epoch, batch, batches, ..
                } = e
                {
                    if batch % 16 == 0 || batch == batches {
                        msg(format!("epoch {epoch}/{} batch {batch}/{batches}", cfg.epochs));
                    }
                }
            })?;
            let curve = outcome
                .history
                .iter()
                .filter_map(|r| {
                    r.val_macro_f1.map(|f| CurvePoint {
                        step: r.epoch,
                        macro_f1: f,
                        epsilon: r.epsilon,
                    })
                })
                .collect();
            let train_counts = ctx.ds.manifest.split_counts.get("train").cloned().unwrap_or_default();
            let orgs = vec![OrgData {
                samples: train_counts.iter().sum::<u64>() as usize,
                flows: ctx.train_flows,
                class_counts: train_counts,
            }];
            (outcome.model, curve, orgs)
        }
        Setting::Fedavg => {
            let fed = FedConfig {
                clients: cell.organisations,
                partition: cell.partition.parse::<Scheme>().map_err(|e| anyhow::anyhow!("{e}"))?,
                rounds: dpo.rounds.filter(|_| private).unwrap_or(ctx.plan.train.rounds),
                fraction: ctx.plan.train.fraction,
                local_epochs: dpo
                    .local_epochs
                    .filter(|_| private)
                    .unwrap_or(ctx.plan.train.local_epochs),
                prox_mu: 0.0,
                aggregation: "mean".parse::<Aggregation>()?,
                train: cfg.clone(),
                client_dp: None,
            };
            let orgs = std::sync::Mutex::new(Vec::new());
            let out = simulate(ctx.ds, &fed, &|e| match e {
                FedEvent::Partitioned(c) => {
                    *orgs.lock().unwrap_or_else(|e| e.into_inner()) = c
                        .iter()
                        .map(|c| OrgData {
                            samples: c.samples,
                            flows: c.flows,
                            class_counts: c.class_counts.clone(),
                        })
                        .collect()
                }
                FedEvent::RoundStart { round, rounds, .. } => msg(format!("round {round}/{rounds}")),
                FedEvent::RoundEnd(_) => {}
            })?;
            let curve = out
                .rounds
                .iter()
                .map(|r| CurvePoint {
                    step: r.round,
                    macro_f1: r.test_macro_f1,
                    epsilon: r.local_epsilon,
                })
                .collect();
            (out.model, curve, orgs.into_inner().unwrap_or_else(|e| e.into_inner()))
        }
    };
    save_model(&model_path, &model)?;
    // A centralised run's checkpoints are only for resuming it.
    let _ = std::fs::remove_dir_all(dir.join("work"));
    let train_seconds = t0.elapsed().as_secs_f64();
    msg("evaluating on the test split".into());
    let ev = evaluate_model(&model, &model_path, ctx.ds, Split::Test)?;
    let flows = ev
        .report
        .flow_level
        .as_ref()
        .context("the test split has no flow ids: flow-level metrics need them")?;
    let utility = Utility {
        macro_f1: ev.report.macro_f1,
        accuracy: ev.report.accuracy,
        balanced_accuracy: ev.report.balanced_accuracy,
        flow_macro_f1: flows.macro_f1,
        flow_accuracy: flows.accuracy,
        baseline_macro_f1: ev.baseline.macro_f1,
        baseline_flow_macro_f1: ev.baseline.flow_level.as_ref().map_or(f64::NAN, |f| f.macro_f1),
        per_class_f1: ev.report.per_class.iter().map(|c| c.f1).collect(),
        flow_confusion: flows.confusion.clone(),
        test_samples: ev.report.n,
        test_flows: flows.flows,
    };
    let privacy = ev.privacy.as_ref().map(privacy_of).transpose()?;
    let t1 = Instant::now();
    let mut attacks = Vec::new();
    for k in &ctx.plan.attack.kinds {
        let (kind, offline) = attack_kind(k)?;
        if kind != AttackKind::Loss && cell.setting == Setting::Fedavg {
            // Shadow attacks need simulated federations as shadows: not run (see `privpkt attack`).
            continue;
        }
        msg(format!("{k} attack"));
        let cfg = AttackConfig {
            kind,
            offline,
            shadows: ctx.plan.attack.shadows,
            members: ctx.plan.attack.members,
            unit: None,
            seed: cell.seed,
            federated_client: None,
        };
        let rep = run_attack(
            &Target {
                model: &model,
                dataset: ctx.ds,
                shadow_data: None,
            },
            &cfg,
            Some(&dir.join(format!("shadows-{k}"))),
            &|e| {
                if let AttackEvent::ShadowEpoch { index, epoch, epochs } = e {
                    msg(format!("{k} attack: shadow {index}, epoch {epoch}/{epochs}"));
                }
            },
        )
        .with_context(|| format!("{k} attack"))?;
        let (fpr, tpr) = thin_roc(&rep.roc.fpr, &rep.roc.tpr, 400);
        attacks.push(AttackSummary {
            attack: k.clone(),
            members: rep.members,
            non_members: rep.non_members,
            unit: rep.unit.to_string(),
            auc: rep.metrics.auc,
            advantage: rep.metrics.advantage,
            balanced_accuracy: rep.metrics.best_balanced_accuracy,
            tpr_at_1pct_fpr: rep.metrics.tpr_at_1pct_fpr,
            tpr_at_0_1pct_fpr: rep.metrics.tpr_at_0_1pct_fpr,
            shadows: rep.shadows,
            roc_fpr: fpr,
            roc_tpr: tpr,
        });
    }
    Ok(CellResult {
        id: id.to_string(),
        label: config_label(
            cell.setting,
            cell.organisations,
            &cell.partition,
            &cell.model_name(),
            cell.epsilon,
        ),
        setting: cell.setting,
        organisations: cell.organisations,
        partition: cell.partition.clone(),
        model: cell.model_name(),
        epsilon_target: cell.epsilon,
        seed: cell.seed,
        utility,
        privacy,
        attacks,
        curve,
        organisations_data: orgs,
        train_seconds,
        attack_seconds: t1.elapsed().as_secs_f64(),
        model_file: format!("cells/{id}/model.safetensors"),
    })
}

/// The model file's privacy record as the report's [`Privacy`].
fn privacy_of(p: &serde_json::Value) -> Result<Privacy> {
    let num = |k: &str| {
        p[k].as_f64()
            .with_context(|| format!("the model's privacy record has no numeric `{k}`"))
    };
    Ok(Privacy {
        mechanism: p["mechanism"].as_str().unwrap_or("DP-SGD").to_string(),
        epsilon: num("epsilon")?,
        delta: num("delta")?,
        unit: p["unit"].as_str().unwrap_or("?").to_string(),
        sigma: num("sigma")?,
        clip: num("clip")?,
        accountant: p["accountant"].as_str().unwrap_or("?").to_string(),
        steps: p["steps"].as_u64().unwrap_or(0),
    })
}

/// At most about `max` ROC points, keeping the first and last and the low-FPR end (where the
/// log-log plot looks) at full resolution.
fn thin_roc(fpr: &[f64], tpr: &[f64], max: usize) -> (Vec<f64>, Vec<f64>) {
    if fpr.len() <= max {
        return (fpr.to_vec(), tpr.to_vec());
    }
    let step = fpr.len().div_ceil(max);
    let keep: Vec<usize> = (0..fpr.len())
        .filter(|&i| i % step == 0 || i == fpr.len() - 1 || fpr[i] <= 0.01)
        .collect();
    (
        keep.iter().map(|&i| fpr[i]).collect(),
        keep.iter().map(|&i| tpr[i]).collect(),
    )
}

/// Write `bytes` to `path` through a temporary file, so a crash never leaves half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

fn write_csv(path: &Path, r: &Results) -> Result<()> {
    let mut kinds: Vec<&str> = Vec::new();
    for c in &r.cells {
        for a in &c.attacks {
            if !kinds.contains(&a.attack.as_str()) {
                kinds.push(&a.attack);
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "id",
        "setting",
        "organisations",
        "partition",
        "model",
        "epsilon_target",
        "seed",
        "macro_f1",
        "flow_macro_f1",
        "accuracy",
        "balanced_accuracy",
        "baseline_macro_f1",
        "epsilon",
        "delta",
        "sigma",
        "steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in &kinds {
        header.push(format!("auc_{k}"));
        header.push(format!("tpr_at_1pct_fpr_{k}"));
    }
    header.extend(["train_seconds".to_string(), "attack_seconds".to_string()]);
    w.write_record(&header)?;
    let f = |x: f64| format!("{x:.6}");
    for c in &r.cells {
        let p = c.privacy.as_ref();
        let mut row = vec![
            c.id.clone(),
            c.setting.name().to_string(),
            c.organisations.to_string(),
            c.partition.clone(),
            c.model.clone(),
            c.epsilon_target.map_or("none".into(), |e| e.to_string()),
            c.seed.to_string(),
            f(c.utility.macro_f1),
            f(c.utility.flow_macro_f1),
            f(c.utility.accuracy),
            f(c.utility.balanced_accuracy),
            f(c.utility.baseline_macro_f1),
            p.map_or(String::new(), |p| f(p.epsilon)),
            p.map_or(String::new(), |p| p.delta.to_string()),
            p.map_or(String::new(), |p| f(p.sigma)),
            p.map_or(String::new(), |p| p.steps.to_string()),
        ];
        for k in &kinds {
            match c.attacks.iter().find(|a| a.attack == *k) {
                Some(a) => row.extend([f(a.auc), f(a.tpr_at_1pct_fpr)]),
                None => row.extend([String::new(), String::new()]),
            }
        }
        row.extend([format!("{:.1}", c.train_seconds), format!("{:.1}", c.attack_seconds)]);
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(path, &bytes)
}

/// Where a run's outputs went.
pub struct Outputs {
    pub results: Results,
    pub files: Vec<PathBuf>,
}

/// results.json, results.csv, the trade-off plot and report.html from the finished cells.
fn write_outputs(out: &Path, r: &Results) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let json = out.join("results.json");
    write_atomic(&json, serde_json::to_string_pretty(r)?.as_bytes())?;
    files.push(json);
    let csv = out.join("results.csv");
    write_csv(&csv, r)?;
    files.push(csv);
    if let Some(fig) = tradeoff_plot(r) {
        for fmt in [ImageFormat::Png, ImageFormat::Svg] {
            let p = out.join(format!("privacy-utility.{}", fmt.ext()));
            render(&p, fmt, (1200, 500), &fig).with_context(|| format!("{}: cannot draw", p.display()))?;
            files.push(p);
        }
    }
    let html = out.join("report.html");
    crate::report::write_report(r, &html)?;
    files.push(html);
    Ok(files)
}

/// Runs `plan` into `out`: the engine of both `privpkt experiment` and `privpkt demo`.
pub fn execute(plan: &Plan, out: &Path, command: &str, limit: Option<usize>) -> Result<Outputs> {
    execute_selected(plan, out, command, limit, &|_| true)
}

/// [`execute`] on the cells of the plan that `select` keeps.
pub fn execute_selected(
    plan: &Plan,
    out: &Path,
    command: &str,
    limit: Option<usize>,
    select: &dyn Fn(&Cell) -> bool,
) -> Result<Outputs> {
    let started = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let bar = ProgressBar::new(0);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{bar:30}] {pos}/{len} cells  {elapsed_precise} eta {eta}  {wide_msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("experiment");
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    let (ds_dir, source, label_column) = dataset_for(plan, out, &bar)?;
    let ds = Dataset::open(&ds_dir)?;
    let data = data_info(&ds, &ds_dir, source, label_column)?;
    let cells: Vec<Cell> = expand(plan, default_model(&ds))
        .into_iter()
        .filter(|c| select(c))
        .collect();
    if cells.is_empty() {
        bail!("the plan has no cells to run");
    }
    let ids: Vec<String> = cells.iter().map(|c| cell_id(c, &data.manifest_sha256, plan)).collect();
    let result_path = |id: &str| out.join("cells").join(id).join("result.json");
    let mut results: Vec<Option<CellResult>> = ids
        .iter()
        .map(|id| {
            std::fs::read_to_string(result_path(id))
                .ok()
                .and_then(|t| serde_json::from_str::<CellResult>(&t).ok())
        })
        .collect();
    let done = results.iter().filter(|r| r.is_some()).count();
    bar.set_length(cells.len() as u64);
    bar.set_position(done as u64);
    bar.reset_eta();
    say(
        &bar,
        format!(
            "{}: {} cells, {} done before, {} to run; dataset {} ({} classes, {} train flows)",
            plan.title,
            cells.len(),
            done,
            cells.len() - done,
            ds_dir.display(),
            data.classes.len(),
            data.flows[0]
        ),
    );
    let t = &plan.train;
    let settings = Settings {
        epochs: t.epochs,
        rounds: t.rounds,
        local_epochs: t.local_epochs,
        optimizer: t.optimizer.clone(),
        lr: t.lr,
        batch_size: t.batch_size,
        delta: t.delta,
        clip: t.clip,
        privacy_unit: t.privacy_unit.clone(),
        accountant: t.accountant.clone(),
        attacks: plan.attack.kinds.clone(),
    };
    let assemble = |results: &[Option<CellResult>]| {
        let cells: Vec<CellResult> = results.iter().flatten().cloned().collect();
        Results {
            privpkt_version: env!("CARGO_PKG_VERSION").to_string(),
            title: plan.title.clone(),
            command: command.to_string(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            data: data.clone(),
            settings: settings.clone(),
            summary: summarise(&cells),
            cells,
            seconds: started.elapsed().as_secs_f64(),
        }
    };
    let ctx = Ctx {
        plan,
        ds: &ds,
        out,
        bar: &bar,
        train_flows: data.flows[0] as usize,
    };
    let mut ran = 0usize;
    for (i, cell) in cells.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        if limit.is_some_and(|l| ran >= l) {
            break;
        }
        let t0 = Instant::now();
        let r = run_cell(&ctx, cell, &ids[i], i + 1, cells.len())
            .with_context(|| format!("cell {} ({}); finished cells are kept", cell.label(), ids[i]))?;
        write_atomic(&result_path(&ids[i]), serde_json::to_string_pretty(&r)?.as_bytes())?;
        let eps = r
            .privacy
            .as_ref()
            .map_or("no DP".to_string(), |p| format!("ε {:.2}", p.epsilon));
        let auc = r
            .attacks
            .first()
            .map_or(String::new(), |a| format!(", {} attack AUC {:.3}", a.attack, a.auc));
        say(
            &bar,
            format!(
                "cell {}/{} {}: macro-F1 {:.3} (flows {:.3}), {eps}{auc} ({:.0} s)",
                i + 1,
                cells.len(),
                cell.label(),
                r.utility.macro_f1,
                r.utility.flow_macro_f1,
                t0.elapsed().as_secs_f64()
            ),
        );
        results[i] = Some(r);
        ran += 1;
        bar.inc(1);
        write_outputs(out, &assemble(&results))?;
    }
    bar.finish_and_clear();
    let r = assemble(&results);
    let files = write_outputs(out, &r)?;
    let missing = results.iter().filter(|r| r.is_none()).count();
    if missing > 0 {
        eprintln!("{missing} cells still to run: rerun the same command to continue");
    }
    Ok(Outputs { results: r, files })
}

pub fn run(a: ExperimentArgs) -> Result<()> {
    let plan = Plan::load(&a.plan)?;
    let out = a.out.clone().unwrap_or_else(|| a.plan.with_extension(""));
    if out == a.plan {
        bail!("--out: give an output folder (the plan's name has no .toml to strip)");
    }
    if a.list {
        return list(&plan, &out);
    }
    let command = crate::ui::command_line();
    let o = execute(&plan, &out, &command, a.limit)?;
    print_summary(&o.results);
    for f in &o.files {
        println!("written: {}", f.display());
    }
    Ok(())
}

/// The cells and whether each is done (ids need the prepared dataset's manifest).
fn list(plan: &Plan, out: &Path) -> Result<()> {
    let ds_dir = match &plan.data.dataset {
        Some(d) => d.clone(),
        None => out.join("data").join("dataset"),
    };
    let ds = Dataset::open(&ds_dir).ok();
    let manifest = ds.as_ref().map(manifest_sha256).transpose()?;
    // Before the data are prepared the default model is unknown for FlowPic plans; ids wait anyway.
    let cells = expand(plan, ds.as_ref().map_or(Arch::Sae, default_model));
    println!("{} cells:", cells.len());
    for c in &cells {
        let status = match &manifest {
            Some(m) => {
                let id = cell_id(c, m, plan);
                if out.join("cells").join(&id).join("result.json").exists() {
                    format!("done  {id}")
                } else {
                    format!("to do {id}")
                }
            }
            None => "to do (dataset not prepared yet)".into(),
        };
        println!("  {status}  {}", c.label());
    }
    Ok(())
}

fn print_summary(r: &Results) {
    println!("{}", r.title);
    let kinds = &r.settings.attacks;
    let mut head = format!(
        "  {:<44} {:>5} {:>15} {:>9} {:>8}",
        "configuration", "seeds", "macro-F1", "flow F1", "ε spent"
    );
    for k in kinds {
        head += &format!(" {:>10}", format!("AUC {k}"));
    }
    println!("{head}");
    for s in &r.summary {
        let mut line = format!(
            "  {:<44} {:>5} {:>15} {:>9} {:>8}",
            s.label,
            s.seeds.len(),
            format!("{:.3} ± {:.3}", s.macro_f1.mean, s.macro_f1.std),
            format!("{:.3}", s.flow_macro_f1.mean),
            s.epsilon.map_or("–".into(), |e| format!("{e:.2}"))
        );
        for k in kinds {
            let v = s.attacks.iter().find(|a| &a.attack == k);
            line += &format!(" {:>10}", v.map_or("–".into(), |a| format!("{:.3}", a.auc.mean)));
        }
        println!("{line}");
    }
    println!("  {:.0} s", r.seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan> {
        let p: Plan = toml::from_str(text)?;
        p.validate()?;
        Ok(p)
    }

    #[test]
    fn expands_sweeps_with_centralised_cells_once() {
        let p = plan(
            r#"
            [data]
            synthetic = {}
            [sweep]
            setting = ["centralised", "fedavg"]
            organisations = [3, 10]
            partition = ["iid", "dirichlet:0.5"]
            epsilon = ["none", 1, 8.5]
            seed = [1, 2]
            "#,
        )
        .unwrap();
        let cells = expand(&p, Arch::Sae);
        // centralised: 3 ε × 2 seeds; fedavg: 2 orgs × 2 partitions × 3 ε × 2 seeds.
        assert_eq!(cells.len(), 6 + 24);
        assert_eq!(cells[0].epsilon, None);
        assert_eq!(cells[2].epsilon, Some(1.0));
        assert_eq!(cells[4].epsilon, Some(8.5));
        assert!(cells[..6].iter().all(|c| c.organisations == 1 && c.partition == "-"));
        let ids: HashSet<String> = cells.iter().map(|c| cell_id(c, "m", &p)).collect();
        assert_eq!(ids.len(), cells.len(), "every cell has its own id");
    }

    #[test]
    fn public_axis_exclusions_and_dp_overrides() {
        let p = plan(
            r#"
            [data]
            synthetic = {}
            [train]
            lr = 0.001
            [train.dp]
            optimizer = "sgd"
            momentum = 0.0
            lr = 2.0
            batch_size = "full"
            rounds = 50
            ple_bins = 4
            [public]
            synthetic = { seed = 9 }
            [sweep]
            setting = ["fedavg"]
            epsilon = ["none", 4]
            model = ["logistic", "mlp"]
            public = [false, true]
            exclude = [{ model = "logistic", public = true }, { model = "mlp", public = false, epsilon = 4 }]
            "#,
        )
        .unwrap();
        let cells = expand(&p, Arch::Sae);
        let names: Vec<String> = cells.iter().map(|c| c.label()).collect();
        assert_eq!(
            names,
            [
                "FedAvg, 3 orgs (iid), logistic, no DP, seed 1",
                "FedAvg, 3 orgs (iid), logistic, ε = 4, seed 1",
                "FedAvg, 3 orgs (iid), mlp, no DP, seed 1",
                "FedAvg, 3 orgs (iid), mlp + public pre-training, no DP, seed 1",
                "FedAvg, 3 orgs (iid), mlp + public pre-training, ε = 4, seed 1",
            ]
        );
        // Private cells take [train.dp]; the others [train].
        let private = train_config(&p, &cells[1]).unwrap();
        assert_eq!(private.lr, 2.0);
        assert_eq!(private.batch_size, privpkt_nn::dp::FULL_BATCH);
        assert_eq!(private.optimizer, Optimizer::Sgd { momentum: 0.0 });
        assert_eq!(private.ple_bins, Some(4));
        let plain = train_config(&p, &cells[0]).unwrap();
        assert_eq!(plain.lr, 0.001);
        assert_eq!(plain.optimizer, Optimizer::Adam);
        assert_eq!(plain.ple_bins, None);
        // A private cell from a pre-trained model keeps that model's bins.
        assert_eq!(train_config(&p, &cells[4]).unwrap().ple_bins, None);
        // The public plan is part of a public cell's id only.
        let mut q = p.clone();
        q.public.as_mut().unwrap().train_layers = vec!["fc2".into(), "out".into()];
        assert_eq!(cell_id(&cells[0], "m", &p), cell_id(&cells[0], "m", &q));
        assert_ne!(cell_id(&cells[3], "m", &p), cell_id(&cells[3], "m", &q));
        // A public cell needs a [public] section.
        let err = format!(
            "{:#}",
            plan("[data]\nsynthetic = {}\n[sweep]\npublic = [true]\n").unwrap_err()
        );
        assert!(err.contains("[public]"), "{err}");
    }

    #[test]
    fn ids_follow_settings_and_data() {
        let p = plan("[data]\nsynthetic = {}\n").unwrap();
        let c = &expand(&p, Arch::Sae)[0];
        let id = cell_id(c, "m", &p);
        assert_eq!(id, cell_id(c, "m", &p), "stable");
        assert_ne!(id, cell_id(c, "other manifest", &p));
        let mut q = p.clone();
        q.train.lr = 0.01;
        assert_ne!(id, cell_id(c, "m", &q));
    }

    #[test]
    fn bad_plans_are_refused_with_the_reason() {
        let err = |t: &str| format!("{:#}", plan(t).unwrap_err());
        assert!(err("[data]\n").contains("exactly one of"));
        assert!(err("[data]\nsynthetic = {}\ncaptures = \"x\"\n").contains("exactly one of"));
        assert!(err("[data]\nsynthetic = {}\n[sweep]\nepsilon = [0]\n").contains("not a budget"));
        assert!(err("[data]\nsynthetic = {}\n[sweep]\nepsilon = [\"inf\"]\n").contains("epsilon"));
        assert!(err("[data]\nsynthetic = {}\n[sweep]\npartition = [\"zipf\"]\n").contains("zipf"));
        assert!(err("[data]\nsynthetic = {}\n[attack]\nkinds = [\"magic\"]\n").contains("magic"));
        assert!(err("[data]\nsynthetic = {}\n[train]\nepoch = 3\n").contains("epoch"));
        assert!(err("[data]\nsynthetic = {}\n[sweep]\nmodel = [\"resnet\"]\n").contains("resnet"));
    }

    #[test]
    fn roc_thinning_keeps_ends_and_low_fpr() {
        let n = 5000;
        let fpr: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
        let tpr = fpr.clone();
        let (f, t) = thin_roc(&fpr, &tpr, 400);
        assert!(f.len() < 500 + 60, "{}", f.len());
        assert_eq!(f[0], 0.0);
        assert_eq!(*f.last().unwrap(), 1.0);
        assert_eq!(f.len(), t.len());
        assert!(f.iter().filter(|&&x| x <= 0.01).count() >= 50);
    }
}

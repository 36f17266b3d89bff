//! Local-training settings shared by `train`, `federate`, `flower-client` and `audit`: one
//! optimizer conversion and one architecture default, so the commands cannot drift apart.
//! Only flags that are identical (name, default, help text) in several commands are shared as
//! a flattened struct; flags whose help differs per command stay in that command's arguments.

use clap::{Args, ValueEnum};
use privpkt_dataset::Dataset;
use privpkt_nn::{Arch, Optimizer};

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum OptArg {
    Adam,
    Sgd,
}

impl OptArg {
    /// The optimizer; `momentum` (--momentum) only applies to SGD.
    pub fn to_optimizer(self, momentum: f64) -> Optimizer {
        match self {
            OptArg::Adam => Optimizer::Adam,
            OptArg::Sgd => Optimizer::Sgd { momentum },
        }
    }
}

/// The optimizer of each organisation's local rounds (`federate`, `flower-client`).
#[derive(Args, Debug, Clone)]
pub struct LocalOptimizerArgs {
    /// Local optimizer (fresh in every round, as in FedAvg).
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptArg,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
}

impl LocalOptimizerArgs {
    pub fn optimizer(&self) -> Optimizer {
        self.optimizer.to_optimizer(self.momentum)
    }
}

/// --arch if given, else the default for the dataset's representation (Deep Packet vectors or
/// FlowPics of its resolution): every command picks the same model for the same data.
pub fn arch_or_default(arch: Option<Arch>, ds: &Dataset) -> Arch {
    arch.unwrap_or_else(|| Arch::default_for(&ds.manifest.extract.repr))
}

/// `--batch-size`: a number of samples (expected privacy units per DP step), or `full`: every
/// unit in every step (full-batch DP gradient descent, q = 1).
pub fn parse_batch(s: &str) -> Result<usize, String> {
    if s == "full" {
        return Ok(privpkt_nn::dp::FULL_BATCH);
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{s}` is not a batch size (a number ≥ 1, or `full`)")),
    }
}

/// Weight averaging, augmentation and public pre-training: shared by `train` and `federate`.
#[derive(Args, Debug, Clone, Default)]
pub struct RecipeArgs {
    /// Average the weights over steps (rounds, when federated) with this decay, e.g. 0.99: the
    /// average is what is validated and released (free under DP: post-processing); 0: off.
    /// [`train` default: 0.99 for behaviour models without DP]
    #[arg(long, help_heading = "Training recipe")]
    pub ema: Option<f64>,
    /// Train on augmented views of flow behaviour samples: time dilation and jitter, a dropped
    /// or duplicated packet, truncation [`train` default for series-cnn without DP].
    #[arg(long, help_heading = "Training recipe", conflicts_with = "no_augment")]
    pub augment: bool,
    /// No augmentation.
    #[arg(long, help_heading = "Training recipe")]
    pub no_augment: bool,
    /// Augmented views of each sample per DP step, averaged before clipping (augmentation
    /// multiplicity; implies --augment) [default: 1].
    #[arg(long, help_heading = "Training recipe")]
    pub augment_views: Option<usize>,
    /// Start from this pre-trained model (trained with `privpkt train` on public data: other
    /// synthetic seeds, a public corpus). Its data must be prepared the same way.
    #[arg(long, help_heading = "Training recipe")]
    pub init: Option<std::path::PathBuf>,
    /// With --init: the layers trained in this run, comma-separated (`head` is the output layer
    /// `out`); the others stay as pre-trained and never see this run's data. Default: all.
    /// Under DP, `head` (or the last layers) keeps most utility: only they spend ε.
    #[arg(long, value_delimiter = ',', requires = "init", help_heading = "Training recipe")]
    pub train_layers: Vec<String>,
    /// Piecewise-linear bins per number (sizes, gaps, statistics) of flow-behaviour inputs,
    /// 1–64. Fine bins let a model draw fine thresholds; under DP every bin is weights that
    /// take noise, and fewer win. [`train` default: 16, 4 with --dp; with --init: the
    /// pre-trained model's]
    #[arg(long, help_heading = "Training recipe")]
    pub ple_bins: Option<usize>,
}

impl RecipeArgs {
    /// Set these options on `cfg`, over whatever defaults it holds.
    pub fn apply(&self, cfg: &mut privpkt_nn::TrainConfig) -> anyhow::Result<()> {
        if let Some(d) = self.ema {
            cfg.ema = (d != 0.0).then_some(d);
        }
        if self.augment || self.augment_views.is_some() {
            cfg.augment = Some(privpkt_nn::augment::Augment {
                views: self.augment_views.unwrap_or(1),
                ..Default::default()
            });
        }
        if self.no_augment {
            cfg.augment = None;
        }
        if let Some(p) = &self.init {
            cfg.init = Some(privpkt_nn::init::InitFrom::new(p, self.train_layers.clone())?);
            // The pre-trained weights fix the bins, unless asked otherwise.
            cfg.ple_bins = None;
        }
        if self.ple_bins.is_some() {
            cfg.ple_bins = self.ple_bins;
        }
        Ok(())
    }
}

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

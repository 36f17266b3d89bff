//! DP-SGD command-line settings shared by `train`, `federate` (local DP per client) and
//! `flower-client`.

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use privpkt_nn::{DpConfig, PrivacyUnit};
use privpkt_privacy::AccountantKind;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum UnitArg {
    /// One sample (a packet vector or one FlowPic image).
    Packet,
    /// All samples of a flow.
    Flow,
    /// All samples of a capture file.
    Capture,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum AccountantArg {
    Rdp,
    Prv,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DpArgs {
    /// Train with DP-SGD (needs --epsilon or --sigma).
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub dp: bool,
    #[command(flatten)]
    pub settings: DpSettings,
}

/// The DP-SGD settings themselves (`audit` takes them without a `--dp` switch: it is always
/// private).
#[derive(Args, Debug, Clone, Default)]
pub struct DpSettings {
    /// Privacy budget ε at --delta.
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub epsilon: Option<f64>,
    /// δ [default: 1e-5].
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub delta: Option<f64>,
    /// Noise multiplier σ (instead of calibrating it to --epsilon).
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub sigma: Option<f64>,
    /// Clipping norm C of each unit's summed gradient [default: 1].
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub clip: Option<f64>,
    /// Whose privacy ε is about [default: flow].
    #[arg(long, value_enum, help_heading = "Differential privacy (DP-SGD)")]
    pub privacy_unit: Option<UnitArg>,
    /// At most this many samples of a sampled unit per step [default: 8].
    #[arg(long, help_heading = "Differential privacy (DP-SGD)")]
    pub unit_cap: Option<usize>,
    /// Accountant of the printed and recorded ε [default: rdp].
    #[arg(long, value_enum, help_heading = "Differential privacy (DP-SGD)")]
    pub accountant: Option<AccountantArg>,
}

impl DpArgs {
    /// The DP settings; any of them without --dp is refused, so a typo never turns into a
    /// silent non-private run. `seeded`: noise and sampling keyed from the run's seed.
    pub fn config(&self, seeded: bool) -> Result<Option<DpConfig>> {
        if !self.dp {
            if let Some(flag) = self.settings.given() {
                bail!("{flag} is a DP-SGD setting: add --dp to train privately (refusing to train without privacy)");
            }
            return Ok(None);
        }
        self.settings.config(seeded).map(Some)
    }
}

impl DpSettings {
    /// The first setting given on the command line, if any.
    fn given(&self) -> Option<&'static str> {
        let given = [
            ("--epsilon", self.epsilon.is_some()),
            ("--delta", self.delta.is_some()),
            ("--sigma", self.sigma.is_some()),
            ("--clip", self.clip.is_some()),
            ("--privacy-unit", self.privacy_unit.is_some()),
            ("--unit-cap", self.unit_cap.is_some()),
            ("--accountant", self.accountant.is_some()),
        ];
        given.iter().find(|(_, g)| *g).map(|(flag, _)| *flag)
    }

    /// The DP-SGD configuration (a budget or a noise multiplier is required).
    pub fn config(&self, seeded: bool) -> Result<DpConfig> {
        if self.epsilon.is_none() && self.sigma.is_none() {
            bail!("DP-SGD needs a budget --epsilon (σ is then calibrated) or a noise multiplier --sigma");
        }
        let mut dp = DpConfig::new(self.epsilon.unwrap_or(1.0));
        dp.epsilon = self.epsilon;
        dp.sigma = self.sigma;
        if let Some(d) = self.delta {
            dp.delta = d;
        }
        if let Some(c) = self.clip {
            dp.clip = c;
        }
        dp.unit = match self.privacy_unit {
            None | Some(UnitArg::Flow) => PrivacyUnit::Flow,
            Some(UnitArg::Packet) => PrivacyUnit::Packet,
            Some(UnitArg::Capture) => PrivacyUnit::Capture,
        };
        if let Some(c) = self.unit_cap {
            dp.unit_cap = c;
        }
        dp.accountant = match self.accountant {
            None | Some(AccountantArg::Rdp) => AccountantKind::Rdp,
            Some(AccountantArg::Prv) => AccountantKind::Prv,
        };
        dp.seeded = seeded;
        Ok(dp)
    }
}

//! `privpkt privacy`: ε of DP-SGD / DP-FedAvg settings under both accountants, or σ for a budget.

use anyhow::{bail, Result};
use clap::Args;
use privpkt_privacy::{calibrate_sigma, AccountantKind, PrivacySummary};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "The mechanism is the Poisson-subsampled Gaussian: each record (packet, flow, capture or \
client: the privacy unit) is in each step with probability q, its contribution clipped to C, and N(0, σ²C²) \
noise added; adjacency is add/remove of one unit.\n\nExamples:\n  \
privpkt privacy --q 0.004267 --sigma 1.1 --steps 14062 --delta 1e-5\n  \
privpkt privacy --q 0.01 --epsilon 2 --steps 1000 --delta 1e-5 --json"
)]
pub struct PrivacyArgs {
    /// Poisson sampling rate per step, in (0, 1].
    #[arg(long)]
    pub q: f64,
    /// Noise multiplier σ (noise std / clipping norm). Give this or --epsilon.
    #[arg(long, required_unless_present = "epsilon", conflicts_with = "epsilon")]
    pub sigma: Option<f64>,
    /// Target ε: find the smallest σ that stays within it, for each accountant.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// Number of steps (DP-SGD iterations or federated rounds).
    #[arg(long)]
    pub steps: u64,
    /// δ; should be well below 1/N for N units.
    #[arg(long, default_value_t = 1e-5)]
    pub delta: f64,
    /// Only this accountant (`rdp` or `prv`); by default both. PRV's grid grows with ε and the
    /// number of steps: for very large budgets use the RDP accountant alone.
    #[arg(long, value_enum)]
    pub accountant: Option<crate::dpargs::AccountantArg>,
    /// Print JSON: one key per accountant (`rdp`, `prv`), each holding `epsilon`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PrivacyArgs) -> Result<()> {
    if let Some(e) = a.epsilon {
        if !(e.is_finite() && e > 0.0) {
            bail!("--epsilon must be a finite number > 0, got {e}");
        }
    }
    let mut out = serde_json::Map::new();
    let kinds: Vec<AccountantKind> = match a.accountant {
        None => vec![AccountantKind::Rdp, AccountantKind::Prv],
        Some(crate::dpargs::AccountantArg::Rdp) => vec![AccountantKind::Rdp],
        Some(crate::dpargs::AccountantArg::Prv) => vec![AccountantKind::Prv],
    };
    for kind in kinds {
        let sigma = match (a.sigma, a.epsilon) {
            (Some(s), _) => s,
            (None, Some(e)) => calibrate_sigma(e, a.delta, a.q, a.steps, kind)?,
            (None, None) => bail!("give --sigma or --epsilon"),
        };
        let s = PrivacySummary::compute(kind, a.q, sigma, a.steps, a.delta)?;
        out.insert(kind.as_str().to_string(), serde_json::to_value(&s)?);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(out))?);
        return Ok(());
    }
    println!(
        "Poisson-subsampled Gaussian, q = {}, {} steps, δ = {:e}{}",
        a.q,
        a.steps,
        a.delta,
        a.epsilon.map(|e| format!(", target ε = {e}")).unwrap_or_default()
    );
    for (k, v) in &out {
        let s: PrivacySummary = serde_json::from_value(v.clone())?;
        let detail = match k.as_str() {
            "rdp" => format!("best order α = {}", s.best_order.unwrap_or(f64::NAN)),
            _ => format!(
                "bounds [{:.4}, {:.4}], estimate {:.4}",
                s.eps_lower.unwrap_or(f64::NAN),
                s.eps_upper.unwrap_or(f64::NAN),
                s.eps_estimate.unwrap_or(f64::NAN)
            ),
        };
        println!("  {k}: ε = {:.4} at σ = {:.4} ({detail})", s.epsilon, s.sigma);
    }
    Ok(())
}

//! `privpkt federate`: FedAvg across simulated organisations on one machine.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use privpkt_dataset::partition::Scheme;
use privpkt_dataset::Dataset;
use privpkt_federated::{simulate, Aggregation, ClientDp, FedConfig, FedEvent};
use privpkt_nn::{save_model, Arch, TrainConfig};

use crate::dpargs::DpArgs;
use crate::plots::{render, ImageFormat, LineChart, Series};
use crate::trainargs::{arch_or_default, LocalOptimizerArgs};
use crate::ui::progress_bar;

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "The train split is divided among the clients by whole flows (iid: same class mix \
everywhere; dirichlet:ALPHA: label skew, small ALPHA = strong; by-capture: each capture file is one site). Every \
round a seeded --fraction of the clients trains the global model for --local-epochs on its own data, in \
parallel; the server combines the weights (FedAvg: mean weighted by examples; or a robust median / trimmed mean) \
and evaluates the global model on the test split.\n\nExamples:\n  privpkt federate ds --out global.safetensors \
--clients 10 --partition dirichlet:0.5 --rounds 20\n  privpkt federate ds --out g.safetensors --clients 3 \
--partition by-capture --prox-mu 0.01 --plot rounds.png\n  privpkt federate ds --out g.safetensors --clients 3 \
--dp --epsilon 8            # DP-SGD inside each organisation (flow-level)\n  privpkt federate ds --out g.safetensors \
--clients 10 --fraction 0.3 --client-epsilon 8   # DP-FedAvg (client-level)"
)]
pub struct FederateArgs {
    /// Dataset directory (from `privpkt prepare`).
    pub dataset: PathBuf,
    /// Global model file to write after the last round.
    #[arg(long, short)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub clients: usize,
    /// iid, dirichlet:ALPHA or by-capture.
    #[arg(long, default_value = "iid")]
    pub partition: String,
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Share of clients training in each round.
    #[arg(long, default_value_t = 1.0)]
    pub fraction: f64,
    #[arg(long, default_value_t = 1)]
    pub local_epochs: usize,
    /// FedProx proximal weight μ (0: FedAvg).
    #[arg(long, default_value_t = 0.0)]
    pub prox_mu: f64,
    /// mean (FedAvg), median or trimmed:FRACTION.
    #[arg(long, default_value = "mean")]
    pub aggregation: String,
    /// Architecture (default by the dataset's representation, as for `train`).
    #[arg(long)]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub local: LocalOptimizerArgs,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Samples per step; with DP, privacy units expected per step (`full`: all of them).
    #[arg(long, default_value = "64", value_parser = crate::trainargs::parse_batch)]
    pub batch_size: usize,
    /// Seed of partition, client sampling, initialisation and local training [default: 42]; with
    /// client-level DP it also keys the noise (a reproducible experiment).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Per-round test macro-F1 and accuracy as a chart (.png or .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print a JSON summary on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Replace an existing model file at --out (only a privpkt model; never another file).
    #[arg(long)]
    pub force: bool,
    /// Client-level DP (DP-FedAvg): budget ε per organisation over all rounds (σ calibrated).
    #[arg(long, help_heading = "Client-level differential privacy")]
    pub client_epsilon: Option<f64>,
    /// Client-level DP: noise multiplier σ instead of (or with) a budget.
    #[arg(long, help_heading = "Client-level differential privacy")]
    pub client_sigma: Option<f64>,
    /// Client-level DP: clipping norm of each client's update [default: 1].
    #[arg(long, help_heading = "Client-level differential privacy")]
    pub client_clip: Option<f64>,
    /// Client-level DP: δ [default: 1e-5].
    #[arg(long, help_heading = "Client-level differential privacy")]
    pub client_delta: Option<f64>,
    /// Local DP-SGD inside every organisation (each keeps its own accountant; ε is per
    /// organisation over all rounds, σ calibrated as if it trained in every round).
    #[command(flatten)]
    pub dp: DpArgs,
    #[command(flatten)]
    pub recipe: crate::trainargs::RecipeArgs,
}

/// Client-level DP settings; DP options without a budget or σ are refused, never ignored.
fn client_dp(a: &FederateArgs) -> Result<Option<ClientDp>> {
    if a.client_epsilon.is_none() && a.client_sigma.is_none() {
        if a.client_clip.is_some() || a.client_delta.is_some() {
            anyhow::bail!(
                "--client-clip/--client-delta are client-level DP settings: add --client-epsilon or --client-sigma \
                 (refusing to run without privacy)"
            );
        }
        return Ok(None);
    }
    Ok(Some(ClientDp {
        clip: a.client_clip.unwrap_or(1.0),
        sigma: a.client_sigma,
        epsilon: a.client_epsilon,
        delta: a.client_delta.unwrap_or(1e-5),
        seeded: a.seed.is_some(),
    }))
}

pub fn run(a: FederateArgs) -> Result<()> {
    // Before any work: the output must not replace what the user had.
    privpkt_nn::check_out(&a.out, a.force)?;
    let ds = Dataset::open(&a.dataset)?;
    let arch = arch_or_default(a.arch, &ds);
    let mut cfg = FedConfig {
        clients: a.clients,
        partition: a.partition.parse::<Scheme>()?,
        rounds: a.rounds,
        fraction: a.fraction,
        local_epochs: a.local_epochs,
        prox_mu: a.prox_mu,
        aggregation: a.aggregation.parse::<Aggregation>()?,
        train: TrainConfig {
            lr: a.lr,
            optimizer: a.local.optimizer(),
            batch_size: a.batch_size,
            seed: a.seed.unwrap_or(42),
            dp: a.dp.config(a.seed.is_some())?,
            // Local rounds train end to end; the SAE's greedy pre-training has no federated form here.
            sae_pretrain_epochs: 0,
            ..TrainConfig::new(arch)
        },
        client_dp: client_dp(&a)?,
    };
    a.recipe.apply(&mut cfg.train)?;
    cfg.train.validate()?;
    let bar = progress_bar(
        a.rounds as u64,
        "{prefix:>10} [{bar:30}] {pos}/{len} rounds {msg} eta {eta}",
        a.json,
    );
    bar.set_prefix("federate");
    let say = |m: String| crate::ui::say(&bar, m);
    let out = simulate(&ds, &cfg, &|e| match e {
        FedEvent::Partitioned(clients) => {
            for (i, c) in clients.iter().enumerate() {
                say(format!(
                    "client {i}: {} samples in {} flows, per class {:?}",
                    c.samples, c.flows, c.class_counts
                ));
            }
        }
        FedEvent::RoundStart { round, clients, .. } => bar.set_message(format!("round {round}: clients {clients:?}")),
        FedEvent::RoundEnd(r) => {
            bar.inc(1);
            let mut eps = String::new();
            if let Some(e) = r.local_epsilon {
                eps += &format!("; local ε ≤ {e:.3}");
            }
            if let Some(e) = r.epsilon {
                eps += &format!("; client-level ε {e:.3}");
            }
            say(format!(
                "round {}: {} examples, local loss {:.4}; global test macro-F1 {:.4}, accuracy {:.3} ({:.1} s){eps}",
                r.round, r.examples, r.train_loss, r.test_macro_f1, r.test_accuracy, r.seconds
            ));
        }
    })?;
    bar.finish_and_clear();
    if let Some(dir) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    save_model(&a.out, &out.model)?;
    if let Some(p) = &a.plot {
        let chart = LineChart {
            title: format!(
                "{} clients, {} partition, {}",
                cfg.clients, cfg.partition, cfg.aggregation
            ),
            x_label: "round".into(),
            y_label: "global model on the test split".into(),
            x: out.rounds.iter().map(|r| r.round.to_string()).collect(),
            series: vec![
                Series {
                    name: "macro-F1".into(),
                    mean: out.rounds.iter().map(|r| Some(r.test_macro_f1)).collect(),
                    std: Vec::new(),
                },
                Series {
                    name: "accuracy".into(),
                    mean: out.rounds.iter().map(|r| Some(r.test_accuracy)).collect(),
                    std: Vec::new(),
                },
            ],
            reference: None,
            y_range: None,
        };
        let fmt = ImageFormat::of_path(p);
        render(p, fmt, (760, 480), &chart)?;
    }
    let last = out.rounds.last().map_or(f64::NAN, |r| r.test_macro_f1);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": a.out.display().to_string(),
                "config": cfg,
                "clients": out.clients,
                "rounds": out.rounds,
                "privacy": out.model.meta().privacy,
            }))?
        );
    } else {
        println!(
            "{} rounds of {} over {} clients: global test macro-F1 {last:.4}; written to {}",
            cfg.rounds,
            cfg.aggregation,
            cfg.clients,
            a.out.display()
        );
        if let Some(p) = &out.model.meta().privacy {
            println!("{}", crate::ui::privacy_line(p));
        }
    }
    Ok(())
}

//! `privpkt audit`: an empirical lower bound on the ε of a DP-SGD training setting, beside the
//! accountant's ε.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use privpkt_attack::audit::{run_audit, AuditConfig, AuditEvent, AuditReport};
use privpkt_dataset::Dataset;
use privpkt_nn::dp::BrokenDp;
use privpkt_nn::{Arch, TrainConfig};

use crate::dpargs::DpSettings;
use crate::trainargs::{arch_or_default, OptArg};
use crate::ui::{json_to_stdout, progress_bar, say, write_json_report};

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum BreakArg {
    /// No Gaussian noise.
    Noise,
    /// No clipping of any unit (canaries included).
    Clipping,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Steinke, Nasr & Jagielski (2023), \"Privacy auditing with one (1) training run\": \
--canaries gradient canaries join one DP-SGD run on the dataset's train split as extra privacy units, each with \
probability ½ (seeded). A canary's gradient is a single coordinate of the parameter vector at 100 C; DP-SGD samples, \
clips and noises it like any unit. Its score is the sum of the noisy gradient sums at its coordinate over the \
steps (white-box: exactly what DP-SGD releases). The auditor guesses \"in\" for the highest scores and \"out\" for \
the lowest, and the bound is the largest ε that its correct guesses reject at the given confidence, with the \
paper's δ term. Guess counts are tried over a fixed grid, each at a Bonferroni-corrected level, so the reported \
maximum is a valid bound. With --runs R, R independent runs pool their canaries.\n\nThe bound must never exceed the \
accountant's ε; if it does, DP-SGD is broken. --break noise|clipping breaks it on purpose, only to check that the \
audit notices (the run's ε is then void).\n\nExamples:\n  privpkt audit --data ds --epsilon 4 --canaries 1000\n  \
privpkt audit --data ds --epsilon 1 --canaries 500 --break noise    # must report a bound above 1"
)]
pub struct AuditArgs {
    /// Dataset directory (from `privpkt prepare`); the audited runs train on its train split.
    #[arg(long)]
    pub data: PathBuf,
    /// Canaries per training run.
    #[arg(long, default_value_t = 1000)]
    pub canaries: usize,
    /// Independent training runs whose canaries are pooled.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Confidence of the lower bound.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Write the report as JSON; `-` for stdout.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// FOR VALIDATING THE AUDIT ONLY: switch DP-SGD's noise or clipping off in the audited runs.
    #[arg(long = "break", value_enum)]
    pub break_dp: Option<BreakArg>,
    /// Seed of canaries, inclusion, initialisation, sampling and noise (recorded in the report).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the runs' checkpoints go while they train (default: a directory beside the dataset).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Architecture (default by the dataset's representation, as for `train`).
    #[arg(long, help_heading = "Training")]
    pub arch: Option<Arch>,
    #[arg(long, default_value_t = 10, help_heading = "Training")]
    pub epochs: usize,
    /// Expected privacy units per step.
    #[arg(long, default_value_t = 64, help_heading = "Training")]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3, help_heading = "Training")]
    pub lr: f64,
    #[arg(long, value_enum, default_value = "adam", help_heading = "Training")]
    pub optimizer: OptArg,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9, help_heading = "Training")]
    pub momentum: f64,
    /// Train on a random subset of at most this many training samples.
    #[arg(long, help_heading = "Training")]
    pub max_train_samples: Option<usize>,
    #[command(flatten)]
    pub dp: DpSettings,
}

fn train_config(a: &AuditArgs, ds: &Dataset) -> Result<TrainConfig> {
    let dp = Some(a.dp.config(true)?);
    let cfg = TrainConfig {
        optimizer: a.optimizer.to_optimizer(a.momentum),
        lr: a.lr,
        epochs: a.epochs,
        batch_size: a.batch_size,
        // Every step's release is scored: no early stopping, no pre-training outside DP.
        patience: None,
        sae_pretrain_epochs: 0,
        max_train_samples: a.max_train_samples,
        dp,
        ..TrainConfig::new(arch_or_default(a.arch, ds))
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: AuditArgs) -> Result<()> {
    let ds = Dataset::open(&a.data)?;
    let cfg = train_config(&a, &ds)?;
    let broken = a.break_dp.map(|b| match b {
        BreakArg::Noise => BrokenDp::Noise,
        BreakArg::Clipping => BrokenDp::Clipping,
    });
    let to_stdout = json_to_stdout(a.json.as_deref());
    if let Some(b) = broken {
        eprintln!(
            "warning: --break {}: DP-SGD runs with its {} switched off, to validate the audit; these runs are NOT private",
            b.name(),
            b.name()
        );
    }
    let work = a.work_dir.clone().unwrap_or_else(|| {
        let mut p = a.data.clone().into_os_string();
        p.push(".audit-work");
        PathBuf::from(p)
    });
    let bar = progress_bar(
        0,
        "{prefix:>12} [{bar:30}] {pos}/{len} epochs {msg} eta {eta}",
        to_stdout,
    );
    let report = run_audit(
        &ds,
        &cfg,
        &AuditConfig {
            canaries: a.canaries,
            runs: a.runs,
            seed: a.seed,
            confidence: a.confidence,
            broken,
        },
        &work,
        &|e| match e {
            AuditEvent::RunStart { run, runs } => {
                bar.reset();
                bar.set_length(cfg.epochs as u64);
                bar.set_prefix(format!("run {}/{runs}", run + 1));
            }
            AuditEvent::Epoch { epoch, .. } => bar.set_position(epoch as u64),
            AuditEvent::RunEnd(r) => say(
                &bar,
                format!(
                    "run trained in {:.1} s: {} steps, σ = {}, ε = {:.3}, {} of the canaries included",
                    r.seconds,
                    r.steps,
                    r.sigma.map_or("?".into(), |s| format!("{s:.4}")),
                    r.epsilon,
                    r.canaries_included
                ),
            ),
        },
    )?;
    bar.finish_and_clear();
    let _ = std::fs::remove_dir(&work);
    write_json_report(a.json.as_deref(), &report)?;
    if !to_stdout {
        print_summary(&report);
    }
    if !report.consistent && report.broken.is_none() {
        bail!(
            "the empirical lower bound {:.3} exceeds the accountant's ε = {:.3}: this DP-SGD implementation or its \
             accounting is wrong",
            report.epsilon_lower_bound,
            report.accountant_epsilon
        );
    }
    Ok(())
}

fn print_summary(r: &AuditReport) {
    println!(
        "empirical ε ≥ {:.3} ({:.0} %) vs accountant ε = {:.3} (δ = {}, per {})",
        r.epsilon_lower_bound,
        100.0 * r.confidence,
        r.accountant_epsilon,
        r.delta,
        r.unit
    );
    println!(
        "  {} canaries over {} run(s), seed {}: {} of {} guesses right (top {} guessed in, bottom {} out; best of {} \
         Bonferroni-corrected guess counts)",
        r.canaries,
        r.runs.len(),
        r.seed,
        r.bound.correct,
        r.bound.guesses,
        r.bound.k_pos,
        r.bound.k_neg,
        r.bound.grid
    );
    match r.broken {
        Some(b) if r.consistent => println!(
            "  DP-SGD was run with its {} OFF, yet the audit did not exceed the claimed ε: more canaries or steps \
             would be needed to catch it",
            b.name()
        ),
        Some(b) => println!(
            "  DP-SGD was run with its {} OFF: the audit caught it (the bound exceeds the claimed ε)",
            b.name()
        ),
        None => println!("  consistent: the bound does not exceed the accountant's ε"),
    }
    println!("  {:.1} s in all", r.seconds);
}

//! `privpkt demo`: the whole pipeline on an embedded default, in minutes on a laptop.
//!
//! Synthetic multi-class captures (or `--data`) → a Deep Packet dataset split by flow → three
//! organisations → a centralised baseline, FedAvg without DP and FedAvg with DP-SGD inside every
//! organisation at two budgets → a membership-inference attack on each model → results.json,
//! results.csv, the privacy–utility–leakage plot and a self-contained report.html. It is an
//! [`experiment`](crate::experiment) with a built-in plan, so its outputs are the same files
//! and a rerun reuses finished cells.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use crate::experiment::{self, AttackPlan, DataPlan, EpsSpec, NoDp, Plan, SweepPlan, SynthPlan, TrainPlan};
use crate::results::{Results, Setting};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Everything lands in --out: data/ (captures and the prepared dataset), cells/ (one model \
and result per configuration), results.json, results.csv, privacy-utility.png/.svg and report.html — open the \
report in a browser.\n\nThe numbers are of a small synthetic dataset and short training: they show the pipeline \
and the shape of the privacy–utility–leakage trade-off, not a benchmark (see the README's results on real \
traffic). For sweeps of your own, write a plan for `privpkt experiment`.\n\nExamples:\n  privpkt demo\n  \
privpkt demo --data captures/ --label-column category   # a folder of pcaps with flows_labels.csv\n  \
privpkt demo --epsilon 2 --epsilon 16 --out demo-2"
)]
pub struct DemoArgs {
    /// Output folder.
    #[arg(long, default_value = "privpkt-demo")]
    pub out: PathBuf,
    /// Seed of everything random: traffic, split, partition, training, DP noise, attack.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Run on these captures instead of synthetic ones (labels from a flows_labels.csv inside).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Label column of flows_labels.csv [default: category; synthetic traffic: category+vpn].
    #[arg(long)]
    pub label_column: Option<String>,
    /// DP-SGD budgets of the private federated runs (ε per flow, per organisation; give twice).
    #[arg(long = "epsilon", num_args = 1, default_values_t = [1.0, 8.0])]
    pub epsilons: Vec<f64>,
    /// Organisations sharing the train split.
    #[arg(long, default_value_t = 3)]
    pub organisations: usize,
    /// Training budget: centralised epochs, and FedAvg rounds of one local epoch.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Deep Packet vectors kept per flow.
    #[arg(long, default_value_t = 8)]
    pub max_per_flow: u32,
    /// Batch size (with DP-SGD: flows expected per step; at most an organisation's train flows).
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Synthetic flows per capture (3 captures per class): the demo's data size.
    #[arg(long, default_value_t = 200)]
    pub flows_per_capture: usize,
}

/// The demo's plan.
pub fn plan(a: &DemoArgs) -> Result<Plan> {
    if a.epsilons.is_empty() || a.epsilons.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
        bail!("--epsilon: give budgets > 0 (default: 1 and 8)");
    }
    let data = match &a.data {
        Some(d) => DataPlan {
            captures: Some(d.clone()),
            label_column: a.label_column.clone(),
            ..default_data(a)
        },
        None => DataPlan {
            synthetic: Some(SynthPlan {
                seed: a.seed,
                captures_per_class: 3,
                flows_per_capture: a.flows_per_capture,
                no_vpn: false,
            }),
            label_column: a.label_column.clone(),
            ..default_data(a)
        },
    };
    let mut epsilon = vec![EpsSpec::Word(NoDp::None)];
    epsilon.extend(a.epsilons.iter().map(|&e| EpsSpec::Value(e)));
    Ok(Plan {
        title: match &a.data {
            Some(d) => format!("privpkt demo on {}", d.display()),
            None => {
                "privpkt demo: synthetic encrypted traffic, 3 organisations".replace('3', &a.organisations.to_string())
            }
        },
        data,
        train: TrainPlan {
            epochs: a.epochs,
            rounds: a.epochs,
            local_epochs: 1,
            // One setting for every cell, chosen for DP-SGD, where it matters most: plain SGD
            // with momentum (Adam's per-coordinate scaling amplifies the noise) and large
            // batches (128 flows expected per step by default) so the signal stands above σ·C/batch.
            optimizer: "sgd".into(),
            lr: 0.2,
            batch_size: a.batch_size,
            ..TrainPlan::default()
        },
        attack: AttackPlan::default(),
        sweep: SweepPlan {
            setting: vec![Setting::Centralised, Setting::Fedavg],
            organisations: vec![a.organisations],
            partition: vec!["iid".into()],
            epsilon,
            model: vec![privpkt_nn::Arch::Sae],
            seed: vec![a.seed],
        },
    })
}

fn default_data(a: &DemoArgs) -> DataPlan {
    DataPlan {
        repr: "deeppacket".into(),
        max_per_flow: Some(a.max_per_flow),
        split_by: "flow".into(),
        split: "0.7,0.1,0.2".into(),
        split_seed: a.seed,
        ..DataPlan::default()
    }
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let plan = plan(&a)?;
    println!(
        "privpkt demo: {} → Deep Packet vectors → centralised, FedAvg over {} organisations, FedAvg + DP-SGD at ε = {} \
         → loss membership-inference attack on each (seed {})",
        if a.data.is_some() { "your captures" } else { "synthetic captures" },
        a.organisations,
        a.epsilons.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" and "),
        a.seed
    );
    let command = crate::ui::command_line();
    // The centralised baseline without DP; DP runs are federated (the demo's question).
    let select = |c: &experiment::Cell| c.setting == Setting::Fedavg || c.epsilon.is_none();
    let o = experiment::execute_selected(&plan, &a.out, &command, None, &select)?;
    print_table(&o.results);
    println!(
        "demo finished in {:.0} s; open {} in a browser (everything else is under {})",
        t0.elapsed().as_secs_f64(),
        a.out.join("report.html").display(),
        a.out.display()
    );
    Ok(())
}

fn print_table(r: &Results) {
    let d = &r.data;
    println!(
        "data: {} — {} classes, {} train / {} val / {} test flows ({} / {} / {} samples), split by {}",
        d.source,
        d.classes.len(),
        d.flows[0],
        d.flows[1],
        d.flows[2],
        d.samples[0],
        d.samples[1],
        d.samples[2],
        d.split_by
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>11} {:>10}",
        "", "macro-F1", "flow F1", "ε spent", "attack AUC", "TPR@1%FPR"
    );
    for c in &r.cells {
        let a = c.attacks.first();
        println!(
            "{:<44} {:>9.3} {:>9.3} {:>9} {:>11} {:>10}",
            c.label,
            c.utility.macro_f1,
            c.utility.flow_macro_f1,
            c.privacy.as_ref().map_or("–".into(), |p| format!("{:.2}", p.epsilon)),
            a.map_or("–".into(), |a| format!("{:.3}", a.auc)),
            a.map_or("–".into(), |a| format!("{:.3}", a.tpr_at_1pct_fpr)),
        );
    }
    if let Some(c) = r.cells.first() {
        println!(
            "header-only baseline (protocol and ports): macro-F1 {:.3}; attack AUC 0.5 is chance",
            c.utility.baseline_macro_f1
        );
    }
}

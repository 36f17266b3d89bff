//! `privpkt demo`: the whole pipeline on an embedded default, in about a minute on a laptop.
//!
//! Synthetic multi-class captures (or `--data`) → flow behaviour samples (each flow's first
//! packets and its statistics) split by flow → three organisations → a centralised baseline and
//! FedAvg without DP (the packet-series network), FedAvg with DP-SGD inside every organisation at
//! two budgets — from scratch (a logistic model, full-batch DP gradient descent) and from a model
//! pre-trained on public traffic (other synthetic seeds) whose output layer alone is trained
//! privately — → a membership-inference attack on each model → results.json, results.csv, the
//! privacy–utility–leakage plot and a self-contained report.html. It is an
//! [`experiment`](crate::experiment) with a built-in plan, so its outputs are the same files and
//! a rerun reuses finished cells.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use privpkt_nn::Arch;

use crate::experiment::{
    self, AttackPlan, BatchSpec, DataPlan, DpTrainPlan, EpsSpec, FullBatch, NoDp, Plan, PublicPlan, SweepPlan,
    SynthPlan, TrainPlan,
};
use crate::results::{Results, Setting};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Everything lands in --out: data/ (captures and the prepared dataset), public/ (the public \
traffic and the models pre-trained on it), cells/ (one model and result per configuration), results.json, \
results.csv, privacy-utility.png/.svg and report.html — open the report in a browser.\n\nThe models: the \
packet-series network (series-cnn) without DP, centralised and federated; under DP-SGD in every organisation, a \
logistic model trained from scratch by full-batch DP gradient descent, and the series network pre-trained on \
public traffic (synthetic captures of another seed, which no organisation needs to protect) with only its output \
layer trained on the private flows. ε is per flow and per organisation, δ = 1e-5.\n\nThe numbers are of a \
small synthetic dataset: they show the pipeline and the shape of the privacy–utility–leakage trade-off (see the \
README's results on real traffic). For sweeps of your own, write a plan for `privpkt experiment`.\n\n\
Examples:\n  privpkt demo\n  privpkt demo --data captures/ --label-column category   # a folder of pcaps with \
flows_labels.csv\n  privpkt demo --epsilon 2 --epsilon 16 --out demo-2"
)]
pub struct DemoArgs {
    /// Output folder.
    #[arg(long, default_value = "privpkt-demo")]
    pub out: PathBuf,
    /// Seed of everything random: traffic, split, partition, training, DP noise, attack. The
    /// public traffic uses seed + 1000.
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
    /// Centralised epochs (early stopping on validation).
    #[arg(long, default_value_t = 60)]
    pub epochs: usize,
    /// FedAvg rounds of one local epoch, without DP.
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
    /// Rounds of the private runs: one full-batch DP gradient step per organisation each.
    #[arg(long, default_value_t = 100)]
    pub dp_rounds: usize,
    /// Batch size of the training without DP (the private runs use each organisation's whole
    /// train split in every step).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Synthetic flows per capture (3 captures per class): the demo's data size.
    #[arg(long, default_value_t = 200)]
    pub flows_per_capture: usize,
    /// Payload bytes kept per packet of each flow's first 4 payload packets. 0 by default here:
    /// the synthetic payloads are random ciphertext after their headers, so bytes add only
    /// noise; `prepare` keeps 8, which helps on real traffic (see the README's results).
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: u32,
}

/// The demo's plan.
pub fn plan(a: &DemoArgs) -> Result<Plan> {
    if a.epsilons.is_empty() || a.epsilons.iter().any(|e| !(e.is_finite() && *e > 0.0)) {
        bail!("--epsilon: give budgets > 0 (default: 1 and 8)");
    }
    let synthetic = |seed| SynthPlan {
        seed,
        captures_per_class: 3,
        flows_per_capture: a.flows_per_capture,
        no_vpn: false,
    };
    let data = match &a.data {
        Some(d) => DataPlan {
            captures: Some(d.clone()),
            label_column: a.label_column.clone(),
            ..default_data(a)
        },
        None => DataPlan {
            synthetic: Some(synthetic(a.seed)),
            label_column: a.label_column.clone(),
            ..default_data(a)
        },
    };
    let mut epsilon = vec![EpsSpec::Word(NoDp::None)];
    epsilon.extend(a.epsilons.iter().map(|&e| EpsSpec::Value(e)));
    Ok(Plan {
        title: match &a.data {
            Some(d) => format!("privpkt demo on {}", d.display()),
            None => format!(
                "privpkt demo: synthetic encrypted traffic, {} organisations",
                a.organisations
            ),
        },
        data,
        train: TrainPlan {
            epochs: a.epochs,
            patience: 15,
            rounds: a.rounds,
            local_epochs: 1,
            optimizer: "adam".into(),
            lr: 1e-3,
            batch_size: a.batch_size,
            ema: Some(0.99),
            // DP: every flow of an organisation in every step (q = 1), plain gradient steps
            // (Adam's per-coordinate scaling amplifies the noise), one per round.
            dp: DpTrainPlan {
                optimizer: Some("sgd".into()),
                momentum: Some(0.0),
                lr: Some(2.0),
                batch_size: Some(BatchSpec::Word(FullBatch::Full)),
                rounds: Some(a.dp_rounds),
                ..DpTrainPlan::default()
            },
            ..TrainPlan::default()
        },
        attack: AttackPlan::default(),
        public: Some(PublicPlan {
            synthetic: Some(synthetic(a.seed + 1000)),
            captures: None,
            dataset: None,
            label_column: None,
            labels: None,
            class_map: None,
            train_layers: vec!["out".into()],
        }),
        sweep: SweepPlan {
            setting: vec![Setting::Centralised, Setting::Fedavg],
            organisations: vec![a.organisations],
            partition: vec!["iid".into()],
            epsilon,
            model: vec![Arch::SeriesCnn, Arch::Logistic],
            public: vec![false, true],
            seed: vec![a.seed],
            exclude: Vec::new(),
        },
    })
}

fn default_data(a: &DemoArgs) -> DataPlan {
    DataPlan {
        repr: "behaviour".into(),
        packets: 30,
        payload_bytes: a.payload_bytes,
        payload_packets: 4,
        stats_over: "flow".into(),
        split_by: "flow".into(),
        split: "0.7,0.1,0.2".into(),
        split_seed: a.seed,
        ..DataPlan::default()
    }
}

/// The cells the demo runs: the series network without DP (centralised, FedAvg); FedAvg with DP
/// from scratch (logistic) and from public pre-training (series network).
pub fn selected(c: &experiment::Cell) -> bool {
    match (c.model, c.epsilon.is_some(), c.public) {
        (Arch::SeriesCnn, false, false) => true,
        (Arch::SeriesCnn, true, true) | (Arch::Logistic, true, false) => c.setting == Setting::Fedavg,
        _ => false,
    }
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let plan = plan(&a)?;
    println!(
        "privpkt demo: {} → flow behaviour (first packets + statistics) → centralised and FedAvg over {} \
         organisations, FedAvg + DP-SGD at ε = {} (from scratch, and after public pre-training) → loss \
         membership-inference attack on each (seed {})",
        if a.data.is_some() {
            "your captures"
        } else {
            "synthetic captures"
        },
        a.organisations,
        a.epsilons
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        a.seed
    );
    let command = crate::ui::command_line();
    let o = experiment::execute_selected(&plan, &a.out, &command, None, &selected)?;
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
        "{:<64} {:>9} {:>9} {:>11} {:>10}",
        "", "flow F1", "ε spent", "attack AUC", "TPR@1%FPR"
    );
    for c in &r.cells {
        let a = c.attacks.first();
        println!(
            "{:<64} {:>9.3} {:>9} {:>11} {:>10}",
            c.label,
            c.utility.flow_macro_f1,
            c.privacy.as_ref().map_or("–".into(), |p| format!("{:.2}", p.epsilon)),
            a.map_or("–".into(), |a| format!("{:.3}", a.auc)),
            a.map_or("–".into(), |a| format!("{:.3}", a.tpr_at_1pct_fpr)),
        );
    }
    if let Some(c) = r.cells.first() {
        println!(
            "header-only baseline (protocol and ports): flow macro-F1 {:.3}; attack AUC 0.5 is chance",
            c.utility.baseline_flow_macro_f1
        );
    }
}

//! `privpkt demo`: the whole pipeline on an embedded default.
//!
//! Today: synthetic captures → Deep Packet dataset and mini-FlowPic dataset → inspection with
//! plots. Training, federation, DP and attacks join as they land.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use privpkt_dataset::prepare::prepare;
use privpkt_dataset::Dataset;

use crate::cmd_eval::evaluate;
use crate::cmd_inspect::{draw, inspect, print_text};
use crate::cmd_prepare::{self, PrepareArgs, Repr};
use crate::cmd_synth::{self, SynthArgs};
use crate::cmd_train::{self, TrainArgs};
use crate::plots::ImageFormat;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Working directory for the demo's captures, datasets and plots.
    #[arg(long, default_value = "privpkt-demo")]
    pub out: PathBuf,
    /// Seed of everything random in the demo.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Run on these captures instead of synthetic ones (labels from a flows_labels.csv inside).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Label column when --data is given.
    #[arg(long, default_value = "category")]
    pub label_column: String,
    /// Stop after preparing and inspecting the datasets (no training).
    #[arg(long)]
    pub no_train: bool,
    /// Training samples for the demo's Deep Packet CNN (a small budget keeps the demo short).
    #[arg(long, default_value_t = 4000)]
    pub train_samples: usize,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let steps = if a.no_train { 3 } else { 5 };
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create", a.out.display()))?;
    let (captures, label_column) = match &a.data {
        Some(d) => (d.clone(), a.label_column.clone()),
        None => {
            let caps = a.out.join("captures");
            if caps.exists() {
                std::fs::remove_dir_all(&caps).with_context(|| format!("{}: cannot clear", caps.display()))?;
            }
            println!(
                "[1/{steps}] synthesising labelled traffic (seed {}) into {}",
                a.seed,
                caps.display()
            );
            let sa = SynthArgs {
                out: caps.clone(),
                seed: a.seed,
                categories: None,
                no_vpn: false,
                captures_per_class: 3,
                flows_per_capture: 12,
                size: None,
                format: cmd_synth::FormatArg::Mixed,
                link: cmd_synth::LinkArg::Mixed,
                ipv6: 0.2,
                json: false,
            };
            let s = cmd_synth::generate_with_progress(&cmd_synth::config(&sa)?, &caps, false)?;
            println!(
                "      {} captures, {} flows, {} packets, classes: {}",
                s.files.len(),
                s.flows,
                s.packets,
                s.classes.join(", ")
            );
            // Category with vpn_ prefix: the Deep Packet traffic-characterisation task.
            (caps, "category+vpn".to_string())
        }
    };
    for (step, repr, name) in [(2, Repr::Deeppacket, "deeppacket"), (3, Repr::Flowpic, "flowpic")] {
        let out = a.out.join(format!("dataset-{name}"));
        println!("[{step}/{steps}] preparing the {name} dataset in {}", out.display());
        let pa = PrepareArgs {
            inputs: vec![captures.clone()],
            out: out.clone(),
            labels: None,
            label_column: Some(label_column.clone()),
            iscx: false,
            rules: None,
            class_map: Some(write_demo_class_map(&a.out)?),
            repr,
            paper: false,
            mini: true,
            block_seconds: None,
            resolution: None,
            min_packets: 10,
            bidirectional: false,
            idle_timeout: 120.0,
            active_timeout: 3600.0,
            max_per_flow: None,
            max_per_class: None,
            balance: false,
            split_by: privpkt_dataset::SplitUnit::Flow,
            split: "0.7,0.1,0.2".into(),
            seed: a.seed,
            shard_rows: 1 << 20,
            force: true,
            json: false,
        };
        let cfg = cmd_prepare::config(&pa)?;
        prepare(&cfg, &|_| {})?;
        let ds = Dataset::open(&out)?;
        let index = ds.read_index()?;
        print_text(&inspect(&ds, &index)?);
        for p in draw(&ds, &index, &out.join("plots"), ImageFormat::Png, 4)? {
            println!("plot: {}", p.display());
        }
    }
    if !a.no_train {
        // Small budgets: the point is the pipeline and the model-beside-baseline table, not a
        // tuned model. Real runs use `privpkt train` with its defaults.
        for (step, name, arch, epochs, samples) in [
            (4, "flowpic", privpkt_nn::Arch::FlowPicMini, 15, None),
            (
                5,
                "deeppacket",
                privpkt_nn::Arch::DeepPacketApp,
                2,
                Some(a.train_samples),
            ),
        ] {
            let ds_dir = a.out.join(format!("dataset-{name}"));
            let model = a.out.join(format!("model-{name}.safetensors"));
            println!(
                "[{step}/{steps}] training {} on {} and evaluating it on the test split",
                arch.name(),
                ds_dir.display()
            );
            let ta = TrainArgs {
                dataset: ds_dir.clone(),
                out: model.clone(),
                arch: Some(arch),
                optimizer: cmd_train::OptArg::Adam,
                momentum: 0.9,
                lr: if arch == privpkt_nn::Arch::FlowPicMini {
                    3e-3
                } else {
                    1e-3
                },
                schedule: cmd_train::ScheduleArg::Constant,
                step_every: 5,
                gamma: 0.5,
                epochs,
                batch_size: if arch == privpkt_nn::Arch::FlowPicMini { 16 } else { 64 },
                patience: 0,
                class_weights: false,
                weight_decay: 0.0,
                seed: Some(a.seed),
                pretrain_epochs: 3,
                max_train_samples: samples,
                work_dir: None,
                resume: false,
                json: true,
                dp: Default::default(),
            };
            let ds = Dataset::open(&ds_dir)?;
            let cfg = cmd_train::config(&ta, &ds)?;
            let work = a.out.join(format!("model-{name}.work"));
            let outcome = privpkt_nn::train(&ds, &cfg, &work, false, &|_| {})?;
            privpkt_nn::save_model(&model, &outcome.model)?;
            let ev = evaluate(&model, &ds_dir, privpkt_dataset::Split::Test)?;
            println!(
                "      test macro-F1 {:.3} (flows {:.3}); header-only baseline {:.3} (flows {:.3}); model: {}",
                ev.report.macro_f1,
                ev.report.flow_level.as_ref().map_or(f64::NAN, |f| f.macro_f1),
                ev.baseline.macro_f1,
                ev.baseline.flow_level.as_ref().map_or(f64::NAN, |f| f.macro_f1),
                model.display()
            );
        }
    }
    println!(
        "demo finished in {:.1} s; everything is under {}",
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}

/// Background DNS is not an application class: the demo drops it.
fn write_demo_class_map(dir: &std::path::Path) -> Result<PathBuf> {
    let p = dir.join("class_map.csv");
    std::fs::write(&p, "from,to\ndns,\nvpn_dns,\n").with_context(|| format!("{}: cannot write", p.display()))?;
    Ok(p)
}

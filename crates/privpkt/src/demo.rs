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

use crate::cmd_inspect::{draw, inspect, print_text};
use crate::cmd_prepare::{self, PrepareArgs, Repr};
use crate::cmd_synth::{self, SynthArgs};
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
}

pub fn run(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}: cannot create", a.out.display()))?;
    let (captures, label_column) = match &a.data {
        Some(d) => (d.clone(), a.label_column.clone()),
        None => {
            let caps = a.out.join("captures");
            if caps.exists() {
                std::fs::remove_dir_all(&caps).with_context(|| format!("{}: cannot clear", caps.display()))?;
            }
            println!(
                "[1/3] synthesising labelled traffic (seed {}) into {}",
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
        println!("[{step}/3] preparing the {name} dataset in {}", out.display());
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

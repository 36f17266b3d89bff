//! `privpkt synth`: synthetic labelled captures.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use privpkt_synth::{generate, CaptureFormat, Category, LinkKind, SynthConfig, SynthSummary};

use crate::ui;

#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum FormatArg {
    Pcap,
    Pcapng,
    /// Alternate pcap and pcapng per file.
    Mixed,
}

#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum LinkArg {
    Ethernet,
    /// Ethernet with 802.1Q tags (QinQ on some).
    Vlan,
    /// Linux cooked capture.
    Sll,
    /// Raw IP.
    Raw,
    /// A different link type per file.
    Mixed,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  privpkt synth --out caps                       # 5 categories + VPN variants, ~90 MB\n  \
privpkt synth --out big --size 2GB --seed 7     # benchmark-sized\n  \
privpkt synth --out chat --categories chat,voip --no-vpn --format pcapng"
)]
pub struct SynthArgs {
    /// Output directory (captures + flows_labels.csv + classes.csv).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Categories to generate (chat, streaming, voip, file_transfer, browsing).
    #[arg(long, value_delimiter = ',')]
    pub categories: Option<Vec<String>>,
    /// Leave out the VPN-wrapped variant of each category.
    #[arg(long)]
    pub no_vpn: bool,
    /// Captures per class.
    #[arg(long, default_value_t = 3)]
    pub captures_per_class: usize,
    /// Main flows per capture.
    #[arg(long, default_value_t = 12)]
    pub flows_per_capture: usize,
    /// Approximate total size (e.g. 50MB, 2GB); scales flows and files to reach it.
    #[arg(long, value_parser = ui::parse_size)]
    pub size: Option<u64>,
    /// Capture file format.
    #[arg(long, value_enum, default_value = "mixed")]
    pub format: FormatArg,
    /// Link layer.
    #[arg(long, value_enum, default_value = "ethernet")]
    pub link: LinkArg,
    /// Share of flows over IPv6.
    #[arg(long, default_value_t = 0.2)]
    pub ipv6: f64,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write even when the estimated size is above 10 GB.
    #[arg(long)]
    pub yes: bool,
}

/// Average bytes a synthetic flow takes on disk (a mix of chats and bulk transfers: 1.4 GiB for
/// the demo's 4,263 flows), for the size estimate.
const BYTES_PER_FLOW: u64 = 350_000;
/// Above this estimate `synth` asks for `--yes`.
const ASK_ABOVE: u64 = 10_000_000_000;

/// The estimated size of what `cfg` writes.
pub fn estimate_bytes(cfg: &SynthConfig) -> u64 {
    cfg.target_bytes.unwrap_or_else(|| {
        let classes = cfg.categories.len() as u64 * if cfg.vpn { 2 } else { 1 };
        classes
            .saturating_mul(cfg.captures_per_class as u64)
            .saturating_mul(cfg.flows_per_capture as u64)
            .saturating_mul(BYTES_PER_FLOW)
    })
}

pub fn config(a: &SynthArgs) -> Result<SynthConfig> {
    let mut cfg = SynthConfig {
        seed: a.seed,
        vpn: !a.no_vpn,
        captures_per_class: a.captures_per_class,
        flows_per_capture: a.flows_per_capture,
        target_bytes: a.size,
        format: match a.format {
            FormatArg::Pcap => CaptureFormat::Pcap,
            FormatArg::Pcapng => CaptureFormat::PcapNg,
            FormatArg::Mixed => CaptureFormat::Mixed,
        },
        link: match a.link {
            LinkArg::Ethernet => LinkKind::Ethernet,
            LinkArg::Vlan => LinkKind::Vlan,
            LinkArg::Sll => LinkKind::Sll,
            LinkArg::Raw => LinkKind::RawIp,
            LinkArg::Mixed => LinkKind::Mixed,
        },
        ipv6_fraction: a.ipv6,
        ..SynthConfig::default()
    };
    if let Some(cats) = &a.categories {
        cfg.categories = cats
            .iter()
            .map(|c| c.parse::<Category>().map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<Result<_>>()?;
    }
    if !(0.0..=1.0).contains(&a.ipv6) {
        bail!("--ipv6 is a share between 0 and 1, got {}", a.ipv6);
    }
    if cfg.categories.is_empty() || a.captures_per_class == 0 || a.flows_per_capture == 0 {
        bail!("nothing to generate: need at least one category, capture and flow");
    }
    Ok(cfg)
}

/// Generate with a progress bar; used by `synth` and `demo`.
pub fn generate_with_progress(cfg: &SynthConfig, out: &std::path::Path, quiet: bool) -> Result<SynthSummary> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let bar = ui::bytes_bar(cfg.target_bytes.unwrap_or(0), "synthesising", quiet);
    let s = generate(cfg, out, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    Ok(s)
}

pub fn run(a: SynthArgs) -> Result<()> {
    let cfg = config(&a)?;
    let est = estimate_bytes(&cfg);
    if est > ASK_ABOVE && !a.yes {
        bail!(
            "this would write about {} (at ~{} per flow): add --yes to go ahead, or lower --size, \
             --captures-per-class or --flows-per-capture",
            ui::human_bytes(est),
            ui::human_bytes(BYTES_PER_FLOW)
        );
    }
    let t0 = Instant::now();
    let s = generate_with_progress(&cfg, &a.out, a.json)?;
    let secs = t0.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "out": a.out.display().to_string(),
                "seed": a.seed,
                "files": s.files.len(),
                "flows": s.flows,
                "packets": s.packets,
                "bytes": s.bytes,
                "seconds": secs,
                "classes": s.classes,
                "labels": s.labels_csv.display().to_string(),
            }))?
        );
    } else {
        println!(
            "{} captures, {} flows, {} packets, {} in {secs:.2} s (seed {}); classes: {}",
            s.files.len(),
            s.flows,
            s.packets,
            ui::human_bytes(s.bytes),
            a.seed,
            s.classes.join(", ")
        );
        println!("labels: {}", s.labels_csv.display());
    }
    Ok(())
}

//! `privpkt prepare`: captures → dataset directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use privpkt_capture::{
    BehaviourConfig, DeepPacketConfig, ExtractConfig, FlowConfig, FlowPicConfig, Masking, Representation, StatsScope,
};
use privpkt_dataset::labels::{ClassMap, FlowLabels, LabelColumn, LabelSource, LabelSpec, PathRules};
use privpkt_dataset::prepare::{prepare, PrepareConfig, Progress};
use privpkt_dataset::store::ClassBalance;
use privpkt_dataset::{SplitConfig, SplitUnit};
use serde_json::json;

use crate::ui;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum Repr {
    /// One sample per flow: its first packets' series and its statistics (the default: what
    /// generalises on honest splits).
    Behaviour,
    /// One sample per flow: the first N packets' sizes, directions, gaps and flags (add
    /// --payload-bytes for the hybrid of series and bytes); decided at the N-th packet.
    Series,
    /// One sample per flow: its statistics (counts, durations, size and gap moments and
    /// percentiles, flags, bursts), nfstream's names where the meaning is the same.
    Flowstats,
    /// One 1500-byte vector per packet (Lotfollahi et al.: the paper's method).
    Deeppacket,
    /// Packet-size × time histograms per flow block (Shapira & Shavitt: the paper's method).
    Flowpic,
}

#[derive(Args, Debug, Clone)]
#[command(after_help = "Examples:\n  \
privpkt prepare caps/ --out ds                                   # labels from caps/flows_labels.csv\n  \
privpkt prepare ndpi/pcap --labels ndpi/flows_labels.csv --label-column category --out ds\n  \
privpkt prepare iscx/ --iscx --label-column traffic --out ds     # ISCX VPN-nonVPN file names\n  \
privpkt prepare caps/ --rules rules.csv --repr flowpic --mini --out ds\n  \
privpkt prepare caps/ --repr series --packets 20 --payload-bytes 32 --out ds   # the series/bytes hybrid\n\n\
Representations: behaviour (default), series and flowstats give one sample per flow from what the flow does \
(sizes, directions, gaps, flags, statistics; no address, port or timestamp); deeppacket and flowpic are the \
papers' methods, kept for comparison. The layout of a behaviour sample is in docs/data.md.")]
pub struct PrepareArgs {
    /// Capture files or directories (searched recursively; files recognised by their magic bytes).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output dataset directory (written atomically: it appears only when complete).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Per-flow labels CSV (nDPI corpus format: file,l4,endpoint_a,endpoint_b,<label columns>).
    /// Without --labels/--iscx/--rules, a flows_labels.csv inside an input directory is used.
    #[arg(long, conflicts_with_all = ["iscx", "rules"])]
    pub labels: Option<PathBuf>,
    /// Label column of the CSV (`category`, `app_family`, ...; `category+vpn` prefixes vpn_ on
    /// VPN flows). With --iscx: app, category, traffic (category with vpn_ prefix) or vpn.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Label captures by ISCX VPN-nonVPN 2016 file names (e.g. vpn_skype_chat1a.pcap).
    #[arg(long, conflicts_with = "rules")]
    pub iscx: bool,
    /// Label whole captures by path globs: CSV `pattern,label`, first match wins.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Rename, merge or drop classes: CSV `from,to`; empty `to` drops; `*` matches the rest.
    #[arg(long)]
    pub class_map: Option<PathBuf>,
    /// Fix the class list, in this order (comma-separated), instead of the classes found: what
    /// every organisation of a Flower federation gives, so their models fit together even where
    /// a site lacks a class. Other labels are left unlabelled.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Sample representation.
    #[arg(long, value_enum, default_value = "behaviour")]
    pub repr: Repr,
    /// behaviour, series: packets in each flow's series.
    #[arg(long, default_value_t = 30)]
    pub packets: u32,
    /// behaviour, series: the first K bytes of the payload of the series' first payload-carrying
    /// packets (the hybrid of series and bytes: protocol headers such as TLS records show there;
    /// 0: a flow's behaviour alone).
    #[arg(long, default_value_t = 8)]
    pub payload_bytes: u32,
    /// With --payload-bytes: only the first N packets that carry payload keep their bytes (the
    /// handshake's; later payload is ciphertext).
    #[arg(long, default_value_t = 4)]
    pub payload_packets: u32,
    /// behaviour, flowstats: statistics over the whole flow (`flow`), the series' packets only
    /// (`series`: decided at the N-th packet), or a number of seconds from the flow's start.
    #[arg(long, default_value = "flow")]
    pub stats_over: String,
    /// Deep Packet: the paper's exact steps (mask IP addresses only) instead of also masking
    /// ports, IP ID, TTL, checksums, TCP seq/ack and timestamps (the honest default).
    #[arg(long)]
    pub paper: bool,
    /// FlowPic: mini-FlowPic (15 s blocks, 32×32) instead of the paper's 60 s, 1500×1500.
    #[arg(long)]
    pub mini: bool,
    /// FlowPic block length in seconds (overrides the preset).
    #[arg(long)]
    pub block_seconds: Option<f64>,
    /// FlowPic bins per axis (overrides the preset).
    #[arg(long)]
    pub resolution: Option<u32>,
    /// FlowPic: drop blocks with fewer packets [default: 10]; behaviour, series, flowstats:
    /// drop flows with fewer packets [default: 1].
    #[arg(long)]
    pub min_packets: Option<u32>,
    /// FlowPic: one image for both directions instead of one per direction.
    #[arg(long)]
    pub bidirectional: bool,
    /// Flow idle timeout in seconds.
    #[arg(long, default_value_t = 120.0)]
    pub idle_timeout: f64,
    /// Flow active timeout in seconds (longer flows are cut).
    #[arg(long, default_value_t = 3600.0)]
    pub active_timeout: f64,
    /// Keep at most N samples per flow (its first ones); 0 keeps all.
    /// Default: 256 for Deep Packet, 0 for FlowPic.
    #[arg(long)]
    pub max_per_flow: Option<u32>,
    /// Undersample every class to at most N samples (seeded).
    #[arg(long)]
    pub max_per_class: Option<u64>,
    /// Undersample every class to the size of the smallest (seeded).
    #[arg(long)]
    pub balance: bool,
    /// What must never straddle train and test: flow (default), capture, or packet (comparable
    /// to the papers, not an honest estimate; marked so in the manifest).
    #[arg(long, default_value = "flow")]
    pub split_by: SplitUnit,
    /// Train,val,test shares.
    #[arg(long, default_value = "0.7,0.1,0.2")]
    pub split: String,
    /// Seed for splits and undersampling (recorded in the manifest).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Samples per .npy shard.
    #[arg(long, default_value_t = 1 << 20)]
    pub shard_rows: u64,
    /// Replace an existing dataset at --out.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary on stdout instead of text (no progress bar).
    #[arg(long)]
    pub json: bool,
}

fn parse_fractions(s: &str) -> Result<[f64; 3]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--split expects three numbers like 0.7,0.1,0.2, got `{s}`"))?;
    if v.len() != 3 {
        bail!("--split expects three numbers (train,val,test), got {}", v.len());
    }
    Ok([v[0], v[1], v[2]])
}

fn sha256_file(p: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Resolve the label source from the flags (or a flows_labels.csv beside the captures).
fn label_source(a: &PrepareArgs, class_map: &ClassMap) -> Result<(LabelSource, LabelSpec)> {
    let cm = (!class_map.rules.is_empty() || class_map.fallback.is_some()).then(|| class_map.clone());
    if a.iscx {
        let column = a.label_column.clone().unwrap_or_else(|| "app".into());
        if !matches!(column.as_str(), "app" | "application" | "category" | "traffic" | "vpn") {
            bail!("--iscx labels are app, category, traffic or vpn; `{column}` is not one of them");
        }
        return Ok((
            LabelSource::Iscx { column: column.clone() },
            LabelSpec {
                kind: "iscx-vpn-nonvpn-2016".into(),
                file: None,
                sha256: None,
                column: Some(column),
                class_map: cm,
            },
        ));
    }
    if let Some(r) = &a.rules {
        let rules = PathRules::load(r)?;
        return Ok((
            LabelSource::Rules(rules),
            LabelSpec {
                kind: "path-rules".into(),
                file: Some(r.display().to_string()),
                sha256: Some(sha256_file(r)?),
                column: None,
                class_map: cm,
            },
        ));
    }
    let csv = match &a.labels {
        Some(p) => p.clone(),
        None => {
            let mut found: Vec<PathBuf> = a
                .inputs
                .iter()
                .filter(|i| i.is_dir())
                .map(|i| i.join("flows_labels.csv"))
                .filter(|p| p.is_file())
                .collect();
            // The same folder given twice has one labels file.
            let mut seen = std::collections::HashSet::new();
            found.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
            match found.as_slice() {
                [one] => {
                    if !a.json {
                        eprintln!("labels: using {}", one.display());
                    }
                    one.clone()
                }
                [] => bail!(
                    "no label source: give --labels FILE (per-flow CSV), --iscx (ISCX VPN-nonVPN file names) or \
                     --rules FILE (path globs); unlabelled traffic is never guessed"
                ),
                _ => bail!("several flows_labels.csv found among the inputs; choose one with --labels"),
            }
        }
    };
    let col: LabelColumn = a
        .label_column
        .clone()
        .unwrap_or_else(|| "category".into())
        .parse()
        .map_err(anyhow::Error::msg)?;
    let labels = FlowLabels::load(&csv, &col)?;
    if labels.is_empty() {
        bail!("{}: no TCP/UDP flow has a value in column `{col}`", csv.display());
    }
    Ok((
        LabelSource::Flows(labels),
        LabelSpec {
            kind: "flow-csv".into(),
            file: Some(csv.display().to_string()),
            sha256: Some(sha256_file(&csv)?),
            column: Some(col.to_string()),
            class_map: cm,
        },
    ))
}

/// Build the library configuration from the command line.
pub fn config(a: &PrepareArgs) -> Result<PrepareConfig> {
    let class_map = match &a.class_map {
        Some(p) => ClassMap::load(p)?,
        None => ClassMap::default(),
    };
    let (labels, label_spec) = label_source(a, &class_map)?;
    let repr = match a.repr {
        Repr::Deeppacket => Representation::DeepPacket(DeepPacketConfig {
            masking: if a.paper { Masking::Paper } else { Masking::Honest },
        }),
        Repr::Flowpic => {
            let mut fp = if a.mini {
                FlowPicConfig::mini()
            } else {
                FlowPicConfig::paper()
            };
            if let Some(b) = a.block_seconds {
                fp.block_s = b;
            }
            if let Some(r) = a.resolution {
                fp.resolution = r;
            }
            fp.min_packets = a.min_packets.unwrap_or(10);
            fp.bidirectional = a.bidirectional;
            Representation::FlowPic(fp)
        }
        Repr::Behaviour | Repr::Series | Repr::Flowstats => {
            let stats = match a.stats_over.as_str() {
                "flow" => StatsScope::Flow,
                "series" => StatsScope::Series,
                t => StatsScope::Seconds {
                    seconds: t
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0)
                        .with_context(|| {
                            format!("--stats-over takes flow, series or a number of seconds > 0, not `{t}`")
                        })?,
                },
            };
            Representation::Behaviour(BehaviourConfig {
                packets: if a.repr == Repr::Flowstats { 0 } else { a.packets },
                payload_bytes: a.payload_bytes,
                payload_packets: a.payload_packets,
                stats: (a.repr != Repr::Series).then_some(stats),
                min_packets: a.min_packets.unwrap_or(1),
            })
        }
    };
    repr.validate().map_err(|e| {
        anyhow::anyhow!(
            "--repr {}: {e}",
            a.repr
                .to_possible_value()
                .map_or(String::new(), |v| v.get_name().to_string())
        )
    })?;
    for (flag, v) in [
        ("--idle-timeout", a.idle_timeout),
        ("--active-timeout", a.active_timeout),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{flag} takes a finite number of seconds > 0, not {v}");
        }
    }
    let max_per_flow = a.max_per_flow.unwrap_or(match a.repr {
        Repr::Deeppacket => 256,
        _ => 0,
    });
    Ok(PrepareConfig {
        inputs: a.inputs.clone(),
        out: a.out.clone(),
        extract: ExtractConfig {
            repr,
            flow: FlowConfig {
                idle_timeout: a.idle_timeout,
                active_timeout: a.active_timeout,
                ..FlowConfig::default()
            },
            max_per_flow,
        },
        labels,
        label_spec,
        class_map,
        classes: a.classes.clone(),
        split: SplitConfig {
            unit: a.split_by,
            fractions: parse_fractions(&a.split)?,
            seed: a.seed,
        },
        balance: ClassBalance {
            max_per_class: a.max_per_class,
            balance: a.balance,
        },
        seed: a.seed,
        force: a.force,
        shard_rows: a.shard_rows.max(1),
    })
}

/// Peak resident memory of this process in bytes (Linux), for the throughput report.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn run(a: PrepareArgs) -> Result<()> {
    let cfg = config(&a)?;
    let t0 = Instant::now();
    let bar = ui::bytes_bar(0, "reading", a.json);
    let outcome = prepare(&cfg, &|p| match p {
        Progress::Start { bytes, .. } => bar.set_length(bytes),
        Progress::FileDone { bytes, .. } => bar.inc(bytes),
        Progress::Phase(name) => bar.set_message(name),
    })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    let m = &outcome.manifest;
    let bytes: u64 = m.captures.iter().map(|c| c.bytes).sum();
    let rss = peak_rss();
    if a.json {
        let classes: serde_json::Map<String, serde_json::Value> = m
            .classes
            .iter()
            .zip(&m.class_counts)
            .map(|(c, n)| (c.clone(), json!(n)))
            .collect();
        let out = json!({
            "out": a.out.display().to_string(),
            "representation": m.representation_name(),
            "captures": m.captures.len(),
            "bytes": bytes,
            "seconds": secs,
            "mb_per_s": bytes as f64 / 1e6 / secs,
            "packets_per_s": m.totals.records as f64 / secs,
            "peak_rss_bytes": rss,
            "samples": m.totals.samples,
            "classes": classes,
            "split_counts": m.split_counts,
            "totals": m.totals,
            "warnings": m.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} captures, {} read in {secs:.2} s ({:.0} MB/s, {:.0} packets/s, peak RSS {})",
        m.captures.len(),
        ui::human_bytes(bytes),
        bytes as f64 / 1e6 / secs,
        m.totals.records as f64 / secs,
        rss.map(ui::human_bytes).unwrap_or_else(|| "?".into())
    );
    let t = &m.totals;
    println!(
        "{} TCP/UDP packets in {} flows; labelled: {} flows, {:.1}% of packets; unlabelled packets: {}",
        t.tcp_udp_packets,
        t.flows,
        t.labelled_flows,
        100.0 * t.labelled_packets as f64 / t.tcp_udp_packets.max(1) as f64,
        t.unlabelled_packets
    );
    println!(
        "{} samples ({}); dropped by Deep Packet rules {}, per-flow cap {}, undersampling {}",
        t.samples,
        m.representation_name(),
        t.dropped_by_rule,
        t.capped_per_flow,
        t.undersampled
    );
    println!(
        "{:<24} {:>10} {:>10} {:>10} {:>10}",
        "class", "samples", "train", "val", "test"
    );
    for (i, c) in m.classes.iter().enumerate() {
        println!(
            "{:<24} {:>10} {:>10} {:>10} {:>10}",
            c, m.class_counts[i], m.split_counts["train"][i], m.split_counts["val"][i], m.split_counts["test"][i]
        );
    }
    for w in &m.warnings {
        println!("warning: {w}");
    }
    println!("dataset written to {}", a.out.display());
    Ok(())
}

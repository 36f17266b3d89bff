//! `privpkt inspect`: what is in a dataset, and what reading its captures lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use privpkt_capture::flowpic::densify;
use privpkt_capture::{BehaviourConfig, Representation, STATS};
use privpkt_dataset::prepare::FileReport;
use privpkt_dataset::store::Storage;
use privpkt_dataset::{Dataset, IndexRow};
use serde::Serialize;

use crate::plots::{self, FlowPicGrid, ImageFormat, SizeHistograms};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Examples:\n  privpkt inspect ds\n  privpkt inspect ds --json | jq .classes\n  \
privpkt inspect ds --plots ds/plots --format svg\n  \
privpkt inspect ds --export-split split.csv     # the flow split, for a peer tool on the same flows"
)]
pub struct InspectArgs {
    /// Dataset directory written by `privpkt prepare`.
    pub dir: PathBuf,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Draw plots here: per-class packet-size histograms; for behaviour datasets the mean packet
    /// series and a profile of flow statistics per class; for FlowPic datasets example images.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Image format of the plots.
    #[arg(long, value_enum, default_value = "png")]
    pub format: ImageFormat,
    /// Example FlowPics per class.
    #[arg(long, default_value_t = 4)]
    pub examples: usize,
    /// Write the flow split as CSV (`file,l4,endpoint_a,endpoint_b,split`): what a peer tool
    /// (e.g. nfstream_lightgbm.py --split) needs to score exactly the same flows.
    #[arg(long)]
    pub export_split: Option<PathBuf>,
}

#[derive(Serialize, Default)]
pub struct ClassStats {
    pub samples: u64,
    pub flows: u64,
    pub captures: u64,
    pub splits: BTreeMap<String, u64>,
}

#[derive(Serialize)]
pub struct CaptureStats {
    pub path: String,
    pub sha256: String,
    pub format: Option<String>,
    pub records: u64,
    pub skipped: u64,
    pub flows: u64,
    pub samples: u64,
    pub error: Option<String>,
    pub stopped_early: Option<String>,
}

#[derive(Serialize, Default)]
pub struct SkipStats {
    pub count: u64,
    pub files: u64,
    /// First (file, byte offset) where it happened.
    pub first: Option<(String, u64)>,
}

#[derive(Serialize)]
pub struct Inspection {
    pub dir: String,
    pub representation: String,
    pub samples: u64,
    pub paper_comparable: bool,
    pub seed: u64,
    pub split_unit: String,
    pub classes: BTreeMap<String, ClassStats>,
    pub flows: u64,
    pub samples_per_flow: BTreeMap<String, u64>,
    pub captures: Vec<CaptureStats>,
    /// Everything reading and decoding skipped, by reason, over all captures.
    pub skipped: BTreeMap<String, SkipStats>,
    pub totals: privpkt_dataset::store::Totals,
    pub warnings: Vec<String>,
}

pub fn inspect(ds: &Dataset, index: &[IndexRow]) -> Result<Inspection> {
    let m = &ds.manifest;
    let mut classes: BTreeMap<String, ClassStats> = BTreeMap::new();
    let mut flows_of: BTreeMap<&str, BTreeSet<(u32, u64)>> = BTreeMap::new();
    let mut caps_of: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    let mut per_flow: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut split_of: BTreeMap<(u32, u64), &str> = BTreeMap::new();
    let known: BTreeSet<&str> = m.classes.iter().map(String::as_str).collect();
    for r in index {
        // An index that disagrees with its manifest is damaged: said, never counted quietly.
        if !known.contains(r.label.as_str()) {
            anyhow::bail!(
                "{}: sample {} has label `{}`, which is not among the manifest's classes",
                ds.index_path().display(),
                r.sample,
                r.label
            );
        }
        let first = *split_of.entry((r.capture, r.flow)).or_insert(r.split.as_str());
        if first != r.split && !m.paper_comparable {
            anyhow::bail!(
                "{}: flow {} of capture {} sits in both the {first} and the {} split: the dataset is damaged",
                ds.index_path().display(),
                r.flow,
                r.capture,
                r.split
            );
        }
        let c = classes.entry(r.label.clone()).or_default();
        c.samples += 1;
        *c.splits.entry(r.split.clone()).or_default() += 1;
        flows_of.entry(&r.label).or_default().insert((r.capture, r.flow));
        caps_of.entry(&r.label).or_default().insert(r.capture);
        *per_flow.entry((r.capture, r.flow)).or_default() += 1;
    }
    for (name, c) in classes.iter_mut() {
        c.flows = flows_of.get(name.as_str()).map_or(0, |s| s.len() as u64);
        c.captures = caps_of.get(name.as_str()).map_or(0, |s| s.len() as u64);
    }
    let mut sizes: Vec<u64> = per_flow.values().copied().collect();
    sizes.sort_unstable();
    let q = |f: f64| {
        sizes
            .get(((sizes.len().saturating_sub(1)) as f64 * f) as usize)
            .copied()
            .unwrap_or(0)
    };
    let samples_per_flow = BTreeMap::from([
        ("min".to_string(), q(0.0)),
        ("median".to_string(), q(0.5)),
        ("p95".to_string(), q(0.95)),
        ("max".to_string(), q(1.0)),
    ]);
    let reports: Vec<FileReport> = std::fs::read(ds.dir.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut skipped: BTreeMap<String, SkipStats> = BTreeMap::new();
    let mut stopped: BTreeMap<String, String> = BTreeMap::new();
    for r in &reports {
        let Some(x) = &r.extract else { continue };
        if let Some(s) = &x.read.stopped_early {
            stopped.insert(r.path.clone(), s.clone());
        }
        for (why, c) in x.read.skipped.iter().chain(x.not_decoded.iter()) {
            let e = skipped.entry(why.clone()).or_default();
            e.count += c.count;
            e.files += 1;
            e.first.get_or_insert((r.path.clone(), c.first_offset));
        }
    }
    let captures = m
        .captures
        .iter()
        .map(|c| CaptureStats {
            path: c.path.clone(),
            sha256: c.sha256.clone(),
            format: c.format.clone(),
            records: c.records,
            skipped: c.skipped,
            flows: c.flows,
            samples: c.samples,
            error: c.error.clone(),
            stopped_early: stopped.get(&c.path).cloned(),
        })
        .collect();
    Ok(Inspection {
        dir: ds.dir.display().to_string(),
        representation: m.representation_name().into(),
        samples: m.totals.samples,
        paper_comparable: m.paper_comparable,
        seed: m.seed,
        split_unit: format!("{:?}", m.split.unit).to_lowercase(),
        classes,
        flows: per_flow.len() as u64,
        samples_per_flow,
        captures,
        skipped,
        totals: m.totals.clone(),
        warnings: m.warnings.clone(),
    })
}

/// Packet size of a Deep Packet vector from its (never masked) IP length field.
fn vector_size(v: &[u8]) -> u32 {
    match v[0] >> 4 {
        4 => u16::from_be_bytes([v[2], v[3]]) as u32,
        6 => 40 + u16::from_be_bytes([v[4], v[5]]) as u32,
        _ => 0,
    }
}

const SIZE_BINS: usize = 50;

/// Write the plots; returns the files written.
pub fn draw(
    ds: &Dataset,
    index: &[IndexRow],
    dir: &std::path::Path,
    fmt: ImageFormat,
    examples: usize,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let m = &ds.manifest;
    let cls: BTreeMap<&str, usize> = m.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    let labels: Vec<usize> = index
        .iter()
        .map(|r| cls.get(r.label.as_str()).copied().unwrap_or(0))
        .collect();
    let mut hists = vec![vec![0u64; SIZE_BINS]; m.classes.len()];
    let mut written = Vec::new();
    let mut example_imgs: Vec<Vec<Vec<u16>>> = vec![Vec::new(); m.classes.len()];
    let bin_of = |size: u32| ((size.min(1500) as usize) * SIZE_BINS / 1501).min(SIZE_BINS - 1);
    if let Representation::Behaviour(b) = m.extract.repr {
        return draw_behaviour(ds, &b, &labels, dir, fmt);
    }
    match &m.storage {
        Storage::Dense { row_shape, .. } if m.representation_name() == "deeppacket" => {
            let (_, data) = ds.read_dense()?;
            let w = row_shape[0] as usize;
            for (i, v) in data.chunks_exact(w).enumerate() {
                hists[labels[i]][bin_of(vector_size(v))] += 1;
            }
        }
        Storage::Dense { row_shape, .. } => {
            let (_, data) = ds.read_dense()?;
            let r = row_shape[0] as usize;
            for (i, img) in data.chunks_exact(r * r * 2).enumerate() {
                let img: Vec<u16> = img.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
                add_flowpic_sizes(&mut hists[labels[i]], &img, r, bin_of);
                if example_imgs[labels[i]].len() < examples {
                    example_imgs[labels[i]].push(img);
                }
            }
        }
        Storage::Sparse { resolution, .. } => {
            let images = ds.read_sparse()?;
            let r = *resolution as usize;
            for i in 0..index.len() {
                let pairs = images.image(i);
                for &(bin, c) in &pairs {
                    let size_row = bin as usize / r;
                    let size = (size_row * 1501 / r) as u32;
                    hists[labels[i]][bin_of(size)] += c as u64;
                }
                if example_imgs[labels[i]].len() < examples {
                    example_imgs[labels[i]].push(densify(&pairs, *resolution));
                }
            }
        }
    }
    let n = m.classes.len();
    let cols = n.min(3);
    let rows = n.div_ceil(cols.max(1));
    let p = dir.join(format!("packet_sizes.{}", fmt.ext()));
    plots::render(
        &p,
        fmt,
        (360 * cols as u32 + 40, 240 * rows as u32 + 60),
        &SizeHistograms {
            classes: m.classes.clone(),
            hists,
        },
    )?;
    written.push(p);
    if m.representation_name() == "flowpic" {
        let res = m.sample_shape()[0] as u32;
        let p = dir.join(format!("flowpics.{}", fmt.ext()));
        let cols = example_imgs.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
        plots::render(
            &p,
            fmt,
            (160 * (cols + 1), 160 * n as u32 + 50),
            &FlowPicGrid {
                classes: m.classes.clone(),
                images: example_imgs,
                resolution: res,
            },
        )?;
        written.push(p);
    }
    Ok(written)
}

/// Statistics drawn per class for a behaviour dataset: one profile of medians.
const PROFILE: [&str; 8] = [
    "bidirectional_packets",
    "bidirectional_duration_ms",
    "bidirectional_mean_ps",
    "src2dst_mean_ps",
    "dst2src_mean_ps",
    "bidirectional_mean_piat_ms",
    "dst2src_bytes_share",
    "bidirectional_bursts",
];

/// Behaviour datasets: packet sizes of the series, the mean signed packet size at each position
/// of the series, and a profile of median flow statistics, per class.
fn draw_behaviour(
    ds: &Dataset,
    b: &BehaviourConfig,
    labels: &[usize],
    dir: &std::path::Path,
    fmt: ImageFormat,
) -> Result<Vec<PathBuf>> {
    let m = &ds.manifest;
    let n = m.classes.len();
    let (_, bytes) = ds.read_dense()?;
    let rows: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (w, c, packets) = (b.sample_len(), b.channels(), b.packets as usize);
    let mut written = Vec::new();
    let mut hists = vec![vec![0u64; SIZE_BINS]; n];
    // Per class and position: the signed sizes of the flows that reach it.
    let mut at: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); packets]; n];
    let mut stats: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); PROFILE.len()]; n];
    let cols: Vec<Option<usize>> = PROFILE
        .iter()
        .map(|name| STATS.iter().position(|f| f.name == *name))
        .collect();
    for (row, &y) in rows.chunks_exact(w).zip(labels) {
        for (j, p) in row[..b.series_len()].chunks_exact(c).enumerate() {
            if p[0] > 0.0 {
                hists[y][((p[2].clamp(0.0, 1500.0) as usize) * SIZE_BINS / 1501).min(SIZE_BINS - 1)] += 1;
                at[y][j].push(f64::from(p[1] * p[2]));
            }
        }
        if b.stats.is_some() {
            let st = &row[b.series_len()..];
            for (k, col) in cols.iter().enumerate() {
                if let Some(i) = col {
                    let v = st[*i];
                    stats[y][k].push(f64::from(privpkt_nn::data::scale_stat(STATS[*i].kind, v)));
                }
            }
        }
    }
    if packets > 0 {
        let grid = n.min(3);
        let p = dir.join(format!("packet_sizes.{}", fmt.ext()));
        plots::render(
            &p,
            fmt,
            (360 * grid as u32 + 40, 240 * n.div_ceil(grid.max(1)) as u32 + 60),
            &SizeHistograms {
                classes: m.classes.clone(),
                hists,
            },
        )?;
        written.push(p);
        let mean_sd = |v: &[f64]| -> (Option<f64>, Option<f64>) {
            if v.is_empty() {
                return (None, None);
            }
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            (Some(mean), Some(var.sqrt()))
        };
        let chart = plots::LineChart {
            title: "Mean signed packet size by position (+ forward, − backward), ± std".into(),
            x_label: "packet of the flow".into(),
            y_label: "IP bytes".into(),
            x: (1..=packets).map(|i| i.to_string()).collect(),
            series: m
                .classes
                .iter()
                .zip(&at)
                .map(|(name, pos)| {
                    let (mean, std) = pos.iter().map(|v| mean_sd(v)).unzip();
                    plots::Series {
                        name: name.clone(),
                        mean,
                        std,
                    }
                })
                .collect(),
            reference: None,
            y_range: Some([-1500.0, 1500.0]),
        };
        let p = dir.join(format!("series.{}", fmt.ext()));
        plots::render(&p, fmt, (1000, 600), &chart)?;
        written.push(p);
    }
    if b.stats.is_some() {
        let median_iqr = |v: &mut Vec<f64>| -> (Option<f64>, Option<f64>) {
            if v.is_empty() {
                return (None, None);
            }
            v.sort_by(f64::total_cmp);
            let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
            (Some(q(0.5)), Some((q(0.75) - q(0.25)) / 2.0))
        };
        let chart = plots::LineChart {
            title: "Flow statistics per class: median, ± half the interquartile range (fixed scaling)".into(),
            x_label: "statistic".into(),
            y_label: "scaled value".into(),
            x: PROFILE.iter().map(|s| s.replace("bidirectional_", "bi_")).collect(),
            series: m
                .classes
                .iter()
                .zip(stats.iter_mut())
                .map(|(name, feats)| {
                    let (mean, std) = feats.iter_mut().map(median_iqr).unzip();
                    plots::Series {
                        name: name.clone(),
                        mean,
                        std,
                    }
                })
                .collect(),
            reference: None,
            y_range: Some([0.0, 1.6]),
        };
        let p = dir.join(format!("flow_stats.{}", fmt.ext()));
        plots::render(&p, fmt, (1100, 600), &chart)?;
        written.push(p);
    }
    Ok(written)
}

/// Packet-size distribution of a dense FlowPic: the row sums.
fn add_flowpic_sizes(hist: &mut [u64], img: &[u16], r: usize, bin_of: impl Fn(u32) -> usize) {
    for row in 0..r {
        let s: u64 = img[row * r..(row + 1) * r].iter().map(|&c| c as u64).sum();
        if s > 0 {
            hist[bin_of((row * 1501 / r) as u32)] += s;
        }
    }
}

pub fn run(a: InspectArgs) -> Result<()> {
    let ds = Dataset::open(&a.dir)?;
    let index = ds.read_index()?;
    let ins = inspect(&ds, &index)?;
    if let Some(out) = &a.export_split {
        let n = export_split(&ds, out)?;
        if !a.json {
            println!("split of {n} flows written to {}", out.display());
        }
    }
    let plots = match &a.plots {
        Some(dir) => draw(&ds, &index, dir, a.format, a.examples)?,
        None => Vec::new(),
    };
    if a.json {
        let mut v = serde_json::to_value(&ins)?;
        v["plots"] = serde_json::json!(plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>());
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_text(&ins);
    for p in plots {
        println!("plot: {}", p.display());
    }
    Ok(())
}

/// Write `file,l4,endpoint_a,endpoint_b,split` for every flow of the dataset; returns the
/// number of flows.
pub fn export_split(ds: &Dataset, out: &std::path::Path) -> Result<usize> {
    let flows = ds.read_flows()?;
    let mut w = csv::Writer::from_path(out).with_context(|| format!("{}: cannot create", out.display()))?;
    w.write_record(["file", "l4", "endpoint_a", "endpoint_b", "split"])?;
    for f in &flows {
        w.write_record([&f.file, &f.l4, &f.endpoint_a, &f.endpoint_b, &f.split])?;
    }
    w.flush().with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(flows.len())
}

pub fn print_text(ins: &Inspection) {
    println!(
        "{}: {} {} samples, {} flows, {} captures, split by {}{}, seed {}",
        ins.dir,
        ins.samples,
        ins.representation,
        ins.flows,
        ins.captures.len(),
        ins.split_unit,
        if ins.paper_comparable {
            " (paper-comparable, not honest)"
        } else {
            ""
        },
        ins.seed
    );
    println!(
        "{:<24} {:>9} {:>7} {:>9} {:>9} {:>8} {:>8}",
        "class", "samples", "flows", "captures", "train", "val", "test"
    );
    for (name, c) in &ins.classes {
        let g = |s: &str| c.splits.get(s).copied().unwrap_or(0);
        println!(
            "{:<24} {:>9} {:>7} {:>9} {:>9} {:>8} {:>8}",
            name,
            c.samples,
            c.flows,
            c.captures,
            g("train"),
            g("val"),
            g("test")
        );
    }
    println!(
        "samples per flow: min {} median {} p95 {} max {}",
        ins.samples_per_flow["min"],
        ins.samples_per_flow["median"],
        ins.samples_per_flow["p95"],
        ins.samples_per_flow["max"]
    );
    let t = &ins.totals;
    println!(
        "{} records; {} TCP/UDP packets, {:.2}% of them in labelled flows; {} unlabelled packets",
        t.records,
        t.tcp_udp_packets,
        100.0 * t.labelled_packets as f64 / t.tcp_udp_packets.max(1) as f64,
        t.unlabelled_packets
    );
    if !ins.skipped.is_empty() {
        println!("skipped while reading:");
        for (why, s) in &ins.skipped {
            let first = s
                .first
                .as_ref()
                .map(|(f, o)| format!(", first in {f} at byte {o}"))
                .unwrap_or_default();
            println!("  {:>8} × {why} ({} files{first})", s.count, s.files);
        }
    }
    let bad: Vec<&CaptureStats> = ins
        .captures
        .iter()
        .filter(|c| c.error.is_some() || c.stopped_early.is_some())
        .collect();
    for c in bad {
        println!(
            "  {}: {}",
            c.path,
            c.error.as_deref().or(c.stopped_early.as_deref()).unwrap_or_default()
        );
    }
    for w in &ins.warnings {
        println!("warning: {w}");
    }
}

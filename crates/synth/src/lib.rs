//! Synthetic labelled encrypted-traffic generator.
//!
//! Writes real pcap / pcapng captures of flows from several app categories
//! (chat, streaming, VoIP, file transfer, browsing, each optionally inside a
//! VPN tunnel) plus ground-truth labels in the nDPI-corpus CSV format, so the
//! rest of privpkt can be developed, tested and benchmarked without shipping
//! real captures.
//!
//! Classes differ by packet sizes, timing, direction and payload shape, not
//! by constants: every flow draws its own RTT, rates, sizes and think times.
//! Output is a pure function of the config: every random stream is keyed by
//! (seed, class, file or flow ordinal), never by thread order, so parallel
//! generation is byte-identical run to run.
//!
//! ```no_run
//! use privpkt_synth::{generate, SynthConfig};
//! let cfg = SynthConfig { seed: 7, target_bytes: Some(50_000_000), ..SynthConfig::default() };
//! let out = std::env::temp_dir().join("privpkt-synth-example");
//! let summary = generate(&cfg, &out, &|_bytes| {}).unwrap();
//! println!("{} files, labels in {}", summary.files.len(), summary.labels_csv.display());
//! ```
//!
//! Output layout: `<class>_<NNNN>.pcap|.pcapng` per file, `flows_labels.csv`
//! (one row per TCP/UDP flow, joinable on file + l4 + unordered endpoint
//! pair; background DNS rows have category `dns`) and `classes.csv`.

mod apps;
mod build;
mod gen;
mod labels;
mod plan;
mod rng;
mod sched;
pub mod writer;

pub use writer::WriterOptions;

use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// App category a class imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Chat,
    Streaming,
    Voip,
    FileTransfer,
    Browsing,
}

impl Category {
    /// All categories, in canonical order.
    pub const ALL: [Category; 5] = [
        Category::Chat,
        Category::Streaming,
        Category::Voip,
        Category::FileTransfer,
        Category::Browsing,
    ];

    /// Name used in class names and label files.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Chat => "chat",
            Category::Streaming => "streaming",
            Category::Voip => "voip",
            Category::FileTransfer => "file_transfer",
            Category::Browsing => "browsing",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Category::ALL.into_iter().find(|c| c.as_str() == norm).ok_or_else(|| {
            SynthError::InvalidConfig(format!(
                "unknown category {s:?} (expected chat, streaming, voip, file_transfer or browsing)"
            ))
        })
    }
}

/// Capture container format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
    /// Alternate pcap / pcapng per file.
    #[default]
    Mixed,
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::PcapNg => "pcapng",
            CaptureFormat::Mixed => "mixed",
        })
    }
}

impl FromStr for CaptureFormat {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pcap" => Ok(CaptureFormat::Pcap),
            "pcapng" => Ok(CaptureFormat::PcapNg),
            "mixed" => Ok(CaptureFormat::Mixed),
            _ => Err(SynthError::InvalidConfig(format!(
                "unknown capture format {s:?} (expected pcap, pcapng or mixed)"
            ))),
        }
    }
}

/// Link layer of the written packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LinkKind {
    #[default]
    Ethernet,
    /// Ethernet with an 802.1Q tag (802.1ad QinQ on some files).
    Vlan,
    /// Linux cooked capture, linktype 113.
    Sll,
    /// Raw IP, linktype 101.
    RawIp,
    /// Cycle through all of the above per file; pcapng files get two
    /// interfaces with different link types.
    Mixed,
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkKind::Ethernet => "ethernet",
            LinkKind::Vlan => "vlan",
            LinkKind::Sll => "sll",
            LinkKind::RawIp => "raw",
            LinkKind::Mixed => "mixed",
        })
    }
}

impl FromStr for LinkKind {
    type Err = SynthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ethernet" | "eth" => Ok(LinkKind::Ethernet),
            "vlan" => Ok(LinkKind::Vlan),
            "sll" => Ok(LinkKind::Sll),
            "raw" | "rawip" | "raw_ip" => Ok(LinkKind::RawIp),
            "mixed" => Ok(LinkKind::Mixed),
            _ => Err(SynthError::InvalidConfig(format!(
                "unknown link kind {s:?} (expected ethernet, vlan, sll, raw or mixed)"
            ))),
        }
    }
}

/// What to generate. Same config (seed included) ⇒ byte-identical output.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    pub seed: u64,
    /// Categories to generate (default: all five).
    pub categories: Vec<Category>,
    /// Also generate the VPN-wrapped variant of each category.
    pub vpn: bool,
    /// Capture sessions per class (ignored when `target_bytes` is set).
    pub captures_per_class: usize,
    /// Main flows per capture (VPN: inner flows); background DNS comes on top.
    pub flows_per_capture: usize,
    /// Packet cap per flow (VPN: per inner flow).
    pub max_packets_per_flow: usize,
    /// Scale flows and files so the capture files total about this many
    /// bytes (labels CSVs not included), split evenly across classes.
    pub target_bytes: Option<u64>,
    /// Start a new file before one would exceed this size (flows are not
    /// split across files; a single flow larger than this is cut).
    pub max_file_bytes: u64,
    pub format: CaptureFormat,
    pub link: LinkKind,
    /// Fraction of flows (VPN: tunnels; DNS lookups) carried over IPv6.
    pub ipv6_fraction: f64,
    /// Byte order / timestamp resolution of written files.
    pub writer: WriterOptions,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            categories: Category::ALL.to_vec(),
            vpn: true,
            captures_per_class: 3,
            flows_per_capture: 12,
            max_packets_per_flow: 400,
            target_bytes: None,
            max_file_bytes: 256 << 20,
            format: CaptureFormat::Mixed,
            link: LinkKind::Ethernet,
            ipv6_fraction: 0.2,
            writer: WriterOptions::default(),
        }
    }
}

/// Largest accepted `max_packets_per_flow`; schedules are held in memory
/// per flow, so this bounds memory use.
pub const MAX_PACKETS_PER_FLOW: usize = 1_000_000;

/// Smallest accepted `max_file_bytes`: a file must hold its headers, the
/// background DNS and at least some packets of a flow.
pub const MIN_FILE_BYTES: u64 = 64 * 1024;

impl SynthConfig {
    /// Class names in generation order: plain categories, then `vpn_*`.
    pub fn class_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.categories.iter().map(|c| c.as_str().to_string()).collect();
        if self.vpn {
            v.extend(self.categories.iter().map(|c| format!("vpn_{c}")));
        }
        v
    }

    /// Checks the config; errors name the offending field.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: &str| Err(SynthError::InvalidConfig(m.to_string()));
        if self.categories.is_empty() {
            return bad("categories must not be empty");
        }
        let mut seen = self.categories.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.categories.len() {
            return bad("categories contain duplicates");
        }
        if self.captures_per_class == 0 {
            return bad("captures_per_class must be at least 1");
        }
        if self.flows_per_capture == 0 {
            return bad("flows_per_capture must be at least 1");
        }
        if !(1..=MAX_PACKETS_PER_FLOW).contains(&self.max_packets_per_flow) {
            return bad("max_packets_per_flow must be within 1..=1000000");
        }
        if self.target_bytes == Some(0) {
            return bad("target_bytes must be positive");
        }
        if self.max_file_bytes < MIN_FILE_BYTES {
            return bad("max_file_bytes must be at least 64 KiB");
        }
        if !(0.0..=1.0).contains(&self.ipv6_fraction) {
            return bad("ipv6_fraction must be within 0..=1");
        }
        Ok(())
    }
}

/// Errors; I/O errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid synth configuration: {0}")]
    InvalidConfig(String),
    #[error("cannot create output directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// One written capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthFile {
    pub path: PathBuf,
    pub class: String,
    pub packets: u64,
    pub bytes: u64,
    /// Labelled flows in the file (background DNS included).
    pub flows: u64,
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthSummary {
    pub files: Vec<SynthFile>,
    /// Labelled flows (rows of `flows_labels.csv`).
    pub flows: u64,
    pub packets: u64,
    /// Total bytes of the capture files.
    pub bytes: u64,
    pub labels_csv: PathBuf,
    /// Path of `classes.csv` (file → class).
    pub classes_csv: PathBuf,
    pub classes: Vec<String>,
}

/// Name of the per-flow label file written beside the captures.
pub const LABELS_FILE: &str = "flows_labels.csv";
/// Name of the file → class map written beside the captures.
pub const CLASSES_FILE: &str = "classes.csv";

/// Generates the captures and label files into `out_dir` (created if
/// missing). `progress` receives byte counts as data is written and may be
/// called from several threads.
pub fn generate(
    cfg: &SynthConfig,
    out_dir: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SynthSummary, SynthError> {
    cfg.validate()?;
    std::fs::create_dir_all(out_dir).map_err(|source| SynthError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let names = cfg.class_names();
    let classes: Vec<plan::ClassDef> = names
        .iter()
        .enumerate()
        .map(|(pos, name)| plan::ClassDef {
            pos,
            name: name.clone(),
            category: cfg.categories[pos % cfg.categories.len()],
            vpn: pos >= cfg.categories.len(),
            key: rng::name_key(name),
        })
        .collect();
    let n = classes.len() as u64;
    let budgets: Vec<Option<u64>> = (0..n)
        .map(|i| cfg.target_bytes.map(|t| (t / n + u64::from(i < t % n)).max(1)))
        .collect();
    let plans: Vec<plan::FilePlan> = classes
        .par_iter()
        .enumerate()
        .map(|(i, c)| plan::plan_class(cfg, c, i, budgets[i]))
        .collect::<Vec<_>>()
        .into_iter()
        .flatten()
        .collect();
    let results = plans
        .par_iter()
        .map(|p| gen::write_file(cfg, &classes[p.class], p, out_dir, progress))
        .collect::<Result<Vec<_>, _>>()?;

    let mut files = Vec::with_capacity(results.len());
    let mut rows = Vec::new();
    for (f, r) in results {
        files.push(f);
        rows.extend(r);
    }
    let labels_csv = out_dir.join(LABELS_FILE);
    labels::write_labels(&labels_csv, &rows, cfg.seed)?;
    let classes_csv = out_dir.join(CLASSES_FILE);
    labels::write_classes(&classes_csv, &files)?;
    Ok(SynthSummary {
        flows: rows.len() as u64,
        packets: files.iter().map(|f| f.packets).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        labels_csv,
        classes_csv,
        classes: names,
    })
}

//! `privpkt prepare`: captures → labelled, split dataset directory.
//!
//! 1. Every capture is extracted in parallel (rayon, one task per file), streaming its samples
//!    to a temporary part file and hashing it as it is read; memory per file is the flow table.
//! 2. Classes are fixed (only classes with samples, sorted by name), per-class caps applied
//!    (seeded), and splits assigned by group.
//! 3. The kept samples are copied into the final shards in capture order, with the index.
//!
//! Everything happens in `<out>.partial-<pid>`, renamed to `<out>` at the end, so an interrupted
//! run never leaves a directory that looks complete.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use privpkt_capture::{
    extract_from, flowpic::densify, Direction, ExtractConfig, ExtractReport, FlowKey, FlowPicImage, Representation,
    SampleMeta, SampleSink, L4, VECTOR_LEN,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::labels::{iscx_value, ClassMap, IscxLabel, LabelSource, LabelSpec, ISCX_TABLE};
use crate::npy::{self, Dtype, NpyWriter};
use crate::split::{assign, Split, SplitConfig, SplitUnit};
use crate::store::{CaptureEntry, ClassBalance, IndexRow, Manifest, Shard, Storage, Totals, FORMAT, FORMAT_VERSION};

/// FlowPics up to this resolution are stored dense (`(n, R, R) u16`), larger ones sparse.
pub const DENSE_FLOWPIC_MAX: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{path}: {msg}")]
    Input { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(String),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> PrepareError + '_ {
    move |source| PrepareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct PrepareConfig {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub extract: ExtractConfig,
    pub labels: LabelSource,
    pub label_spec: LabelSpec,
    pub class_map: ClassMap,
    pub split: SplitConfig,
    pub balance: ClassBalance,
    pub seed: u64,
    /// Replace an existing dataset at `out`.
    pub force: bool,
    /// Rows per dense shard.
    pub shard_rows: u64,
}

/// Progress notifications for a progress bar.
pub enum Progress<'a> {
    Start { files: usize, bytes: u64 },
    FileDone { path: &'a Path, bytes: u64 },
    Phase(&'static str),
}

/// What reading one capture found, for `report.json` and `inspect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileReport {
    pub path: String,
    pub error: Option<String>,
    pub extract: Option<ExtractReport>,
}

pub struct PrepareOutcome {
    pub manifest: Manifest,
    pub reports: Vec<FileReport>,
}

/// Regular files under `inputs` (directories recursively, sorted) whose first bytes are a
/// pcap or pcapng magic; files named explicitly are kept whatever they hold, so a wrong one is
/// reported rather than silently ignored.
pub fn collect_captures(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, PrepareError> {
    fn is_capture(p: &Path) -> bool {
        let mut m = [0u8; 4];
        File::open(p).and_then(|mut f| f.read_exact(&mut m)).is_ok()
            && matches!(
                m,
                [0x0a, 0x0d, 0x0d, 0x0a]
                    | [0xd4, 0xc3, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0xc3, 0xd4]
                    | [0x4d, 0x3c, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0x3c, 0x4d]
                    | [0x34, 0xcd, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0xcd, 0x34]
            )
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PrepareError> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if p.is_file() && is_capture(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for i in inputs {
        if i.is_dir() {
            walk(i, &mut out)?;
        } else if i.is_file() {
            out.push(i.clone());
        } else {
            return Err(PrepareError::Input {
                path: i.clone(),
                msg: "no such file or directory".into(),
            });
        }
    }
    if out.is_empty() {
        return Err(PrepareError::Config(format!(
            "no pcap/pcapng files found in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(out)
}

/// Every class name the label source can produce, after the class map.
fn candidate_classes(src: &LabelSource, map: &ClassMap) -> Vec<String> {
    let raw: Vec<String> = match src {
        LabelSource::Flows(f) => f.classes(),
        LabelSource::Rules(r) => r.classes(),
        LabelSource::Iscx { column } => {
            let mut v = Vec::new();
            for &(_, app, category) in ISCX_TABLE {
                for vpn in [false, true] {
                    if let Some(x) = iscx_value(&IscxLabel { app, category, vpn }, column) {
                        v.push(x);
                    }
                }
            }
            v
        }
    };
    let mut out: Vec<String> = raw.iter().filter_map(|l| map.apply(l)).collect();
    out.sort();
    out.dedup();
    out
}

#[derive(Clone, Copy)]
struct PartRow {
    flow: u64,
    direction: u8,
    ts: i64,
    label: u32,
    l4: L4,
    sport: u16,
    dport: u16,
    /// Non-zero bins (sparse FlowPic rows only).
    nnz: u32,
}

struct FileSink<'a> {
    src: &'a LabelSource,
    map: &'a ClassMap,
    cand: &'a HashMap<String, u32>,
    capture: &'a Path,
    file_label: Option<Option<u32>>,
    out: BufWriter<File>,
    rows: Vec<PartRow>,
    sparse: bool,
    resolution: u32,
    dropped_by_map: u64,
    err: Option<std::io::Error>,
    scratch: Vec<u8>,
}

impl FileSink<'_> {
    fn push(&mut self, meta: &SampleMeta, nnz: u32) {
        self.rows.push(PartRow {
            flow: meta.flow_id,
            direction: match meta.direction {
                Some(Direction::Forward) => 0,
                Some(Direction::Backward) => 1,
                None => 2,
            },
            ts: meta.ts_ns,
            label: meta.label,
            l4: meta.l4,
            sport: meta.src_port,
            dport: meta.dst_port,
            nnz,
        });
    }

    fn write(&mut self, bytes_from_scratch: bool, bytes: &[u8]) {
        if self.err.is_some() {
            return;
        }
        let r = if bytes_from_scratch {
            self.out.write_all(&self.scratch)
        } else {
            self.out.write_all(bytes)
        };
        if let Err(e) = r {
            self.err = Some(e);
        }
    }
}

impl SampleSink for FileSink<'_> {
    fn label(&mut self, key: &FlowKey) -> Option<u32> {
        if let Some(l) = self.file_label {
            return l;
        }
        let raw = self.src.flow_label(self.capture, key)?;
        match self.map.apply(raw) {
            Some(c) => self.cand.get(&c).copied(),
            None => {
                self.dropped_by_map += 1;
                None
            }
        }
    }

    fn packet(&mut self, meta: &SampleMeta, vector: &[u8; VECTOR_LEN]) {
        self.write(false, vector);
        self.push(meta, 0);
    }

    fn flowpic(&mut self, meta: &SampleMeta, image: &FlowPicImage) {
        self.scratch.clear();
        if self.sparse {
            for (b, _) in &image.bins {
                self.scratch.extend_from_slice(&b.to_le_bytes());
            }
            for (_, c) in &image.bins {
                self.scratch.extend_from_slice(&c.to_le_bytes());
            }
        } else {
            for c in densify(&image.bins, self.resolution) {
                self.scratch.extend_from_slice(&c.to_le_bytes());
            }
        }
        self.write(true, &[]);
        self.push(meta, image.bins.len() as u32);
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

struct FileResult {
    path: PathBuf,
    part: PathBuf,
    sha256: String,
    bytes: u64,
    report: Result<ExtractReport, String>,
    rows: Vec<PartRow>,
    dropped_by_map: u64,
}

fn extract_one(
    cfg: &PrepareConfig,
    cand: &HashMap<String, u32>,
    path: &Path,
    part: PathBuf,
    sparse: bool,
    resolution: u32,
) -> Result<FileResult, PrepareError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(1 << 16, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let file_label = cfg.labels.file_label(path).map(|l| {
        l.and_then(|l| cfg.class_map.apply(&l))
            .and_then(|c| cand.get(&c).copied())
    });
    let mut sink = FileSink {
        src: &cfg.labels,
        map: &cfg.class_map,
        cand,
        capture: path,
        file_label,
        out: BufWriter::with_capacity(1 << 20, File::create(&part).map_err(io_err(&part))?),
        rows: Vec::new(),
        sparse,
        resolution,
        dropped_by_map: 0,
        err: None,
        scratch: Vec::new(),
    };
    let report = extract_from(path, &mut reader, &cfg.extract, &mut sink).map_err(|e| e.to_string());
    // Hash the part the reader did not need (stopped early, or unreadable file).
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(io_err(path))?;
    if let Some(e) = sink.err.take() {
        return Err(PrepareError::Io { path: part, source: e });
    }
    sink.out.flush().map_err(io_err(&part))?;
    let sha256 = reader.hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let (rows, dropped_by_map) = (sink.rows, sink.dropped_by_map);
    Ok(FileResult {
        path: path.to_path_buf(),
        part,
        sha256,
        bytes: reader.bytes,
        report,
        rows,
        dropped_by_map,
    })
}

/// Run `prepare`.
pub fn prepare(cfg: &PrepareConfig, progress: &(dyn Fn(Progress<'_>) + Sync)) -> Result<PrepareOutcome, PrepareError> {
    cfg.split.validate().map_err(PrepareError::Config)?;
    if let Representation::FlowPic(fp) = cfg.extract.repr {
        fp.validate().map_err(PrepareError::Config)?;
    }
    if cfg.out.exists() && !cfg.force {
        return Err(PrepareError::Input {
            path: cfg.out.clone(),
            msg: "already exists (use --force to replace it)".into(),
        });
    }
    let files = collect_captures(&cfg.inputs)?;
    let total_bytes: u64 = files.iter().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum();
    progress(Progress::Start {
        files: files.len(),
        bytes: total_bytes,
    });

    let name = cfg
        .out
        .file_name()
        .ok_or_else(|| PrepareError::Config(format!("bad output path {}", cfg.out.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = cfg
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    remove_stale_partials(parent, &name);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(tmp.join("parts")).map_err(io_err(&tmp))?;
    let result = build(cfg, &files, &tmp, progress);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
    if cfg.out.exists() {
        std::fs::remove_dir_all(&cfg.out).map_err(io_err(&cfg.out))?;
    }
    std::fs::rename(&tmp, &cfg.out).map_err(io_err(&cfg.out))?;
    result
}

/// Remove `.NAME.partial-PID` directories left by runs that were killed (their PID is gone).
fn remove_stale_partials(parent: &Path, name: &str) {
    let prefix = format!(".{name}.partial-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = f.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn build(
    cfg: &PrepareConfig,
    files: &[PathBuf],
    tmp: &Path,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<PrepareOutcome, PrepareError> {
    let cand_list = candidate_classes(&cfg.labels, &cfg.class_map);
    if cand_list.is_empty() {
        return Err(PrepareError::Config(
            "the label source (after the class map) defines no class".into(),
        ));
    }
    let cand: HashMap<String, u32> = cand_list
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i as u32))
        .collect();
    let (sparse, resolution) = match cfg.extract.repr {
        Representation::FlowPic(fp) => (fp.resolution > DENSE_FLOWPIC_MAX, fp.resolution),
        Representation::DeepPacket(_) => (false, 0),
    };

    // 1. extract, in parallel, order kept by collect
    let results: Vec<FileResult> = files
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let r = extract_one(
                cfg,
                &cand,
                f,
                tmp.join("parts").join(format!("{i:06}.bin")),
                sparse,
                resolution,
            );
            if let Ok(r) = &r {
                progress(Progress::FileDone {
                    path: f,
                    bytes: r.bytes,
                });
            }
            r
        })
        .collect::<Result<_, _>>()?;

    // 2. classes, caps, splits
    progress(Progress::Phase("splitting"));
    let mut cand_counts = vec![0u64; cand_list.len()];
    for r in &results {
        for row in &r.rows {
            cand_counts[row.label as usize] += 1;
        }
    }
    let classes: Vec<String> = cand_list
        .iter()
        .zip(&cand_counts)
        .filter(|(_, &n)| n > 0)
        .map(|(c, _)| c.clone())
        .collect();
    if classes.is_empty() {
        return Err(PrepareError::Config(format!(
            "no labelled samples: none of the {} captures' flows matched the labels ({} classes known)",
            files.len(),
            cand_list.len()
        )));
    }
    let remap: Vec<u32> = {
        let mut k = 0u32;
        cand_counts
            .iter()
            .map(|&n| {
                if n > 0 {
                    k += 1;
                    k - 1
                } else {
                    u32::MAX
                }
            })
            .collect()
    };
    let n_all: usize = results.iter().map(|r| r.rows.len()).sum();
    let mut labels = Vec::with_capacity(n_all);
    let mut groups = Vec::with_capacity(n_all);
    for (fi, r) in results.iter().enumerate() {
        for row in &r.rows {
            labels.push(remap[row.label as usize]);
            groups.push(match cfg.split.unit {
                SplitUnit::Flow => ((fi as u64) << 40) | row.flow,
                SplitUnit::Capture => fi as u64,
                SplitUnit::Packet => groups.len() as u64,
            });
        }
    }
    let mut keep = vec![true; n_all];
    let class_n: Vec<u64> = (0..classes.len())
        .map(|c| labels.iter().filter(|&&l| l == c as u32).count() as u64)
        .collect();
    let mut cap = cfg.balance.max_per_class.unwrap_or(u64::MAX);
    if cfg.balance.balance {
        cap = cap.min(*class_n.iter().min().unwrap_or(&0));
    }
    let mut undersampled = 0u64;
    if cap < u64::MAX {
        for (c, &n) in class_n.iter().enumerate() {
            if n <= cap {
                continue;
            }
            let mut idx: Vec<usize> = (0..n_all).filter(|&i| labels[i] == c as u32).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xC1A5_5CA9 ^ ((c as u64) << 32));
            idx.shuffle(&mut rng);
            for &i in &idx[cap as usize..] {
                keep[i] = false;
                undersampled += 1;
            }
        }
    }
    let kept: Vec<usize> = (0..n_all).filter(|&i| keep[i]).collect();
    let (kept_groups, kept_labels): (Vec<u64>, Vec<u32>) = kept.iter().map(|&i| (groups[i], labels[i])).unzip();
    let (splits, mut warnings) = assign(&kept_groups, &kept_labels, &classes, &cfg.split);
    if let (LabelSource::Flows(f), Some(file)) = (&cfg.labels, &cfg.label_spec.file) {
        warnings.extend(f.warning(Path::new(file)));
    }
    if cfg.split.unit == SplitUnit::Packet {
        warnings.insert(
            0,
            "split by packet: packets of one flow are in train and test; comparable to the papers, not an honest estimate"
                .into(),
        );
    }
    let mut split_of = vec![None; n_all];
    for (k, &i) in kept.iter().enumerate() {
        split_of[i] = Some(splits[k]);
    }

    // 3. write shards and index, in capture order
    progress(Progress::Phase("writing"));
    std::fs::create_dir_all(tmp.join("shards")).map_err(io_err(tmp))?;
    let index_path = tmp.join("index.csv");
    let mut index = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&index_path).map_err(io_err(&index_path))?,
    ));
    let (dtype, row_shape): (Dtype, Vec<u64>) = match cfg.extract.repr {
        Representation::DeepPacket(_) => (Dtype::U8, vec![VECTOR_LEN as u64]),
        Representation::FlowPic(_) => (Dtype::U16, vec![resolution as u64, resolution as u64]),
    };
    let row_bytes = row_shape.iter().product::<u64>() as usize * dtype.size();
    let mut shards: Vec<Shard> = Vec::new();
    let mut shard: Option<NpyWriter> = None;
    let mut sparse_out: Option<(Vec<u64>, BufWriter<File>, BufWriter<File>)> = if sparse {
        let b = tmp.join("flowpic_bins.raw");
        let c = tmp.join("flowpic_counts.raw");
        Some((
            vec![0],
            BufWriter::new(File::create(&b).map_err(io_err(&b))?),
            BufWriter::new(File::create(&c).map_err(io_err(&c))?),
        ))
    } else {
        None
    };
    let mut captures = Vec::new();
    let mut reports = Vec::new();
    let mut totals = Totals::default();
    let mut class_counts = vec![0u64; classes.len()];
    let mut split_counts: BTreeMap<String, Vec<u64>> = Split::ALL
        .iter()
        .map(|s| (s.name().to_string(), vec![0; classes.len()]))
        .collect();
    let mut sample = 0u64;
    let mut g = 0usize;
    let mut buf = vec![0u8; row_bytes.max(1)];
    for (fi, r) in results.iter().enumerate() {
        let mut part = BufReader::with_capacity(1 << 20, File::open(&r.part).map_err(io_err(&r.part))?);
        let mut kept_here = 0u64;
        for row in &r.rows {
            let len = if sparse { row.nnz as usize * 6 } else { row_bytes };
            if buf.len() < len {
                buf.resize(len, 0);
            }
            part.read_exact(&mut buf[..len]).map_err(io_err(&r.part))?;
            let this = g;
            g += 1;
            let Some(split) = split_of[this] else { continue };
            let label = labels[this] as usize;
            if let Some((indptr, bins, counts)) = sparse_out.as_mut() {
                let n = row.nnz as usize;
                bins.write_all(&buf[..n * 4]).map_err(io_err(tmp))?;
                counts.write_all(&buf[n * 4..n * 6]).map_err(io_err(tmp))?;
                indptr.push(indptr.last().copied().unwrap_or(0) + n as u64);
            } else {
                if shard.as_ref().is_none_or(|s| s.rows() >= cfg.shard_rows) {
                    if let Some(s) = shard.take() {
                        let rows = s.finish().map_err(io_err(tmp))?;
                        shards.last_mut().expect("open shard is listed").rows = rows;
                    }
                    let file = format!("shards/samples-{:05}.npy", shards.len());
                    let p = tmp.join(&file);
                    shard = Some(NpyWriter::create(&p, dtype, &row_shape).map_err(io_err(&p))?);
                    shards.push(Shard { file, rows: 0 });
                }
                let s = shard.as_mut().expect("shard opened above");
                s.write_rows(&buf[..row_bytes]).map_err(io_err(tmp))?;
            }
            index
                .serialize(IndexRow {
                    sample,
                    capture: fi as u32,
                    flow: row.flow,
                    direction: ["fwd", "bwd", "bi"][row.direction as usize].to_string(),
                    timestamp_ns: row.ts,
                    label: classes[label].clone(),
                    split: split.name().to_string(),
                    l4: row.l4.name().to_string(),
                    src_port: row.sport,
                    dst_port: row.dport,
                })
                .map_err(|e| PrepareError::Io {
                    path: index_path.clone(),
                    source: std::io::Error::other(e),
                })?;
            sample += 1;
            kept_here += 1;
            class_counts[label] += 1;
            split_counts.get_mut(split.name()).expect("all splits present")[label] += 1;
        }
        drop(part);
        std::fs::remove_file(&r.part).map_err(io_err(&r.part))?;
        let (rep, err) = match &r.report {
            Ok(rep) => (Some(rep.clone()), None),
            Err(e) => (None, Some(e.clone())),
        };
        if let Some(rep) = &rep {
            totals.records += rep.read.records;
            totals.tcp_udp_packets += rep.tcp_udp_packets;
            totals.labelled_packets += rep.labelled_packets;
            totals.unlabelled_packets += rep.unlabelled_packets;
            totals.flows += rep.flows;
            totals.labelled_flows += rep.labelled_flows;
            totals.dropped_by_rule += rep.dropped_by_rule.values().sum::<u64>();
            totals.capped_per_flow += rep.capped;
        }
        totals.dropped_by_class_map += r.dropped_by_map;
        captures.push(CaptureEntry {
            path: r.path.display().to_string(),
            sha256: r.sha256.clone(),
            bytes: r.bytes,
            format: rep.as_ref().and_then(|x| x.read.format.map(|f| f.to_string())),
            linktypes: rep.as_ref().map(|x| x.read.linktypes.clone()).unwrap_or_default(),
            records: rep.as_ref().map_or(0, |x| x.read.records),
            skipped: rep.as_ref().map_or(0, |x| {
                x.read.skipped_total() + x.not_decoded.values().map(|s| s.count).sum::<u64>()
            }),
            flows: rep.as_ref().map_or(0, |x| x.flows),
            samples: kept_here,
            error: err.clone(),
        });
        reports.push(FileReport {
            path: r.path.display().to_string(),
            error: err,
            extract: rep,
        });
    }
    index.flush().map_err(io_err(&index_path))?;
    drop(index);
    let storage = if let Some((indptr, mut bins, mut counts)) = sparse_out {
        bins.flush().map_err(io_err(tmp))?;
        counts.flush().map_err(io_err(tmp))?;
        drop((bins, counts));
        raw_to_npy(&tmp.join("flowpic_bins.raw"), &tmp.join("flowpic_bins.npy"), Dtype::U32)?;
        raw_to_npy(
            &tmp.join("flowpic_counts.raw"),
            &tmp.join("flowpic_counts.npy"),
            Dtype::U16,
        )?;
        let p = tmp.join("flowpic_indptr.npy");
        npy::write_1d(&p, Dtype::U64, &indptr).map_err(io_err(&p))?;
        Storage::Sparse {
            resolution,
            indptr: "flowpic_indptr.npy".into(),
            bins: "flowpic_bins.npy".into(),
            counts: "flowpic_counts.npy".into(),
        }
    } else {
        if let Some(s) = shard.take() {
            let rows = s.finish().map_err(io_err(tmp))?;
            shards.last_mut().expect("open shard is listed").rows = rows;
        }
        Storage::Dense {
            dtype,
            row_shape,
            shards,
        }
    };
    std::fs::remove_dir(tmp.join("parts")).map_err(io_err(tmp))?;
    totals.undersampled = undersampled;
    totals.samples = sample;
    for r in &reports {
        if let Some(e) = &r.error {
            warnings.push(format!("{}: skipped: {e}", r.path));
        }
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        privpkt_version: env!("CARGO_PKG_VERSION").into(),
        extract: cfg.extract,
        labels: cfg.label_spec.clone(),
        classes,
        class_counts,
        split: cfg.split,
        paper_comparable: cfg.split.unit == SplitUnit::Packet,
        split_counts,
        balance: cfg.balance.clone(),
        seed: cfg.seed,
        storage,
        totals,
        captures,
        warnings,
    };
    let rp = tmp.join("report.json");
    std::fs::write(&rp, serde_json::to_vec_pretty(&reports).expect("reports serialize")).map_err(io_err(&rp))?;
    // The manifest is written last: its presence marks the directory complete.
    let mp = tmp.join("manifest.json");
    let mut f = File::create(&mp).map_err(io_err(&mp))?;
    f.write_all(&serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))
        .and_then(|_| f.sync_all())
        .map_err(io_err(&mp))?;
    Ok(PrepareOutcome { manifest, reports })
}

/// Prefix a raw little-endian 1-D array with an `.npy` header.
fn raw_to_npy(raw: &Path, out: &Path, dtype: Dtype) -> Result<(), PrepareError> {
    let mut w = NpyWriter::create(out, dtype, &[]).map_err(io_err(out))?;
    let mut f = BufReader::with_capacity(1 << 20, File::open(raw).map_err(io_err(raw))?);
    let mut chunk = vec![0u8; (1 << 20) / dtype.size() * dtype.size()];
    loop {
        let mut n = 0;
        while n < chunk.len() {
            let k = f.read(&mut chunk[n..]).map_err(io_err(raw))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        w.write_rows(&chunk[..n]).map_err(io_err(out))?;
    }
    w.finish().map_err(io_err(out))?;
    std::fs::remove_file(raw).map_err(io_err(raw))?;
    Ok(())
}

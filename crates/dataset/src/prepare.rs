//! `privpkt prepare`: captures → labelled, split dataset directory.
//!
//! 1. Every capture is extracted in parallel (rayon, one task per file), streaming its samples
//!    to a temporary part file and hashing it as it is read; memory per file is the flow table.
//! 2. Classes are fixed (only classes with samples, sorted by name, or a given list), per-class caps applied
//!    (seeded), and splits assigned by group.
//! 3. The kept samples are copied into the final shards in capture order, with the index.
//!
//! Everything happens in `<out>.partial-<pid>`, renamed to `<out>` at the end, so an interrupted
//! run never leaves a directory that looks complete.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use privpkt_capture::{
    extract_from, flowpic::densify, Direction, ExtractConfig, ExtractReport, FlowKey, FlowPicImage, Representation,
    SampleMeta, SampleSink, L4, VECTOR_LEN,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::labels::{iscx_value, ClassMap, IscxLabel, LabelSource, LabelSpec, ISCX_TABLE};
use crate::npy::{self, Dtype, NpyWriter};
use crate::split::{assign_groups, majority, packet_split, Group, Split, SplitConfig, SplitUnit};
use crate::store::{
    CaptureEntry, ClassBalance, FlowRow, IndexRow, Manifest, Shard, Storage, Totals, FORMAT, FORMAT_VERSION,
};

/// Parts with at least this many rows (or half the shard size, if smaller), all kept, become
/// shards by a rename; smaller ones are merged so a corpus of many small captures does not
/// turn into hundreds of shards. A renamed part may hold more rows than `shard_rows`.
pub const MERGE_MIN_ROWS: usize = 16_384;

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
    /// A fixed class list, in this order, instead of the classes found in these captures: the
    /// organisations of a federation prepare their own data apart, and their models only fit
    /// together when every one has the same classes, also where a site lacks some of them.
    /// Labels outside it are left unlabelled.
    pub classes: Option<Vec<String>>,
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

/// The captures found under some inputs, and what was passed over on the way.
#[derive(Debug, Clone, Default)]
pub struct Captures {
    pub files: Vec<PathBuf>,
    /// One line per thing not read, with the reason (a file reached twice, a symbolic-link
    /// loop, a file that cannot be opened): for the manifest's warnings.
    pub notes: Vec<String>,
}

/// Regular files under `inputs` (directories recursively, sorted) whose first bytes are a
/// pcap or pcapng magic; files named explicitly are kept whatever they hold, so a wrong one is
/// reported rather than silently ignored. Every directory and file is visited once, however
/// many paths (symbolic links, an input inside another) lead to it, so a link loop ends and a
/// capture is never read twice.
pub fn collect_captures(inputs: &[PathBuf]) -> Result<Captures, PrepareError> {
    fn is_capture(p: &Path) -> std::io::Result<bool> {
        let mut m = [0u8; 4];
        let mut f = File::open(p)?;
        match f.read_exact(&mut m) {
            Ok(()) => Ok(matches!(
                m,
                [0x0a, 0x0d, 0x0d, 0x0a]
                    | [0xd4, 0xc3, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0xc3, 0xd4]
                    | [0x4d, 0x3c, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0x3c, 0x4d]
                    | [0x34, 0xcd, 0xb2, 0xa1]
                    | [0xa1, 0xb2, 0xcd, 0x34]
            )),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e),
        }
    }
    struct Walk {
        seen: HashSet<FileId>,
        out: Captures,
    }
    impl Walk {
        /// False (with a note) when `p` was reached before.
        fn first_visit(&mut self, p: &Path, what: &str) -> bool {
            match file_id(p) {
                Some(id) if self.seen.contains(&id) => {
                    self.out.notes.push(format!(
                        "{}: {what} reached again (a link or a repeated input): read once",
                        p.display()
                    ));
                    false
                }
                Some(id) => {
                    self.seen.insert(id);
                    true
                }
                None => true,
            }
        }

        fn dir(&mut self, dir: &Path) -> Result<(), PrepareError> {
            if !self.first_visit(dir, "directory") {
                return Ok(());
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    self.dir(&p)?;
                } else if p.is_file() {
                    match is_capture(&p) {
                        Ok(true) => {
                            if self.first_visit(&p, "capture") {
                                self.out.files.push(p);
                            }
                        }
                        Ok(false) => {}
                        Err(e) => self
                            .out
                            .notes
                            .push(format!("{}: cannot be read ({e}): skipped", p.display())),
                    }
                } else if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    self.out
                        .notes
                        .push(format!("{}: a link to nothing: skipped", p.display()));
                }
            }
            Ok(())
        }
    }
    let mut w = Walk {
        seen: HashSet::new(),
        out: Captures::default(),
    };
    for i in inputs {
        if i.is_dir() {
            w.dir(i)?;
        } else if i.is_file() {
            if w.first_visit(i, "capture") {
                w.out.files.push(i.clone());
            }
        } else {
            return Err(PrepareError::Input {
                path: i.clone(),
                msg: "no such file or directory".into(),
            });
        }
    }
    if w.out.files.is_empty() {
        return Err(PrepareError::Config(format!(
            "no pcap/pcapng files found in {}",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(w.out)
}

/// What makes two paths the same file: (device, inode) on Unix, the canonical path elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg(not(unix))]
    Path(PathBuf),
}

fn file_id(p: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| FileId::Inode(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::canonicalize(p).ok().map(FileId::Path)
    }
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

/// Per-sample metadata, spilled to a `.rows` file beside each part so memory does not grow
/// with the number of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
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

impl PartRow {
    const LEN: usize = 30;

    fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&self.flow.to_le_bytes());
        b[8..16].copy_from_slice(&self.ts.to_le_bytes());
        b[16..20].copy_from_slice(&self.label.to_le_bytes());
        b[20..24].copy_from_slice(&self.nnz.to_le_bytes());
        b[24..26].copy_from_slice(&self.sport.to_le_bytes());
        b[26..28].copy_from_slice(&self.dport.to_le_bytes());
        b[28] = self.direction;
        b[29] = self.l4 as u8;
        b
    }

    fn decode(b: &[u8; Self::LEN]) -> PartRow {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        PartRow {
            flow: u64_at(0),
            ts: u64_at(8) as i64,
            label: u32_at(16),
            nnz: u32_at(20),
            sport: u16_at(24),
            dport: u16_at(26),
            direction: b[28],
            l4: if b[29] == L4::Udp as u8 { L4::Udp } else { L4::Tcp },
        }
    }
}

/// Where a capture's samples go first: dense rows straight into an `.npy` file (which becomes
/// a shard as is when all its rows are kept), sparse FlowPic rows into a raw file.
enum PartOut {
    Dense(NpyWriter),
    Raw(BufWriter<File>),
}

impl PartOut {
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            PartOut::Dense(w) => w.write_rows(b),
            PartOut::Raw(w) => w.write_all(b),
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            PartOut::Dense(w) => w.finish().map(|_| ()),
            PartOut::Raw(mut w) => w.flush(),
        }
    }
}

struct FileSink<'a> {
    src: &'a LabelSource,
    map: &'a ClassMap,
    cand: &'a HashMap<String, u32>,
    capture: &'a Path,
    file_label: Option<Option<u32>>,
    out: PartOut,
    rows: BufWriter<File>,
    n_rows: u64,
    /// Samples per candidate class.
    class_counts: Vec<u64>,
    /// Flow id → (samples, class): the split groups of this capture.
    flows: HashMap<u64, (u64, u32)>,
    /// Flow id → its key (for `flows.csv`).
    keys: HashMap<u64, FlowKey>,
    sparse: bool,
    resolution: u32,
    dropped_by_map: u64,
    err: Option<std::io::Error>,
    scratch: Vec<u8>,
}

impl FileSink<'_> {
    fn push(&mut self, meta: &SampleMeta, nnz: u32) {
        self.n_rows += 1;
        self.class_counts[meta.label as usize] += 1;
        self.flows.entry(meta.flow_id).or_insert((0, meta.label)).0 += 1;
        self.keys.entry(meta.flow_id).or_insert(meta.key);
        let row = PartRow {
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
        };
        if self.err.is_none() {
            if let Err(e) = self.rows.write_all(&row.encode()) {
                self.err = Some(e);
            }
        }
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

    fn behaviour(&mut self, meta: &SampleMeta, sample: &[f32]) {
        self.scratch.clear();
        for v in sample {
            self.scratch.extend_from_slice(&v.to_le_bytes());
        }
        self.write(true, &[]);
        self.push(meta, 0);
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
    rows_path: PathBuf,
    n_rows: u64,
    class_counts: Vec<u64>,
    /// (flow id, samples, class), sorted by flow id.
    flows: Vec<(u64, u64, u32)>,
    keys: HashMap<u64, FlowKey>,
    sha256: String,
    bytes: u64,
    report: Result<ExtractReport, String>,
    dropped_by_map: u64,
}

fn extract_one(
    cfg: &PrepareConfig,
    cand: &HashMap<String, u32>,
    path: &Path,
    part: PathBuf,
    sparse: bool,
    resolution: u32,
    row: Option<(Dtype, &[u64])>,
) -> Result<FileResult, PrepareError> {
    let rows_path = part.with_extension("rows");
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
        out: match row {
            Some((dtype, shape)) => PartOut::Dense(NpyWriter::create(&part, dtype, shape).map_err(io_err(&part))?),
            None => PartOut::Raw(BufWriter::with_capacity(
                1 << 20,
                File::create(&part).map_err(io_err(&part))?,
            )),
        },
        rows: BufWriter::with_capacity(1 << 16, File::create(&rows_path).map_err(io_err(&rows_path))?),
        n_rows: 0,
        class_counts: vec![0; cand.len()],
        flows: HashMap::new(),
        keys: HashMap::new(),
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
    sink.rows.flush().map_err(io_err(&rows_path))?;
    sink.out.finish().map_err(io_err(&part))?;
    let mut flows: Vec<(u64, u64, u32)> = sink.flows.iter().map(|(&f, &(n, c))| (f, n, c)).collect();
    flows.sort_unstable();
    let sha256 = reader.hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(FileResult {
        path: path.to_path_buf(),
        part,
        rows_path,
        n_rows: sink.n_rows,
        class_counts: sink.class_counts,
        flows,
        keys: std::mem::take(&mut sink.keys),
        sha256,
        bytes: reader.bytes,
        report,
        dropped_by_map: sink.dropped_by_map,
    })
}

/// Run `prepare`.
pub fn prepare(cfg: &PrepareConfig, progress: &(dyn Fn(Progress<'_>) + Sync)) -> Result<PrepareOutcome, PrepareError> {
    cfg.split.validate().map_err(PrepareError::Config)?;
    cfg.extract.repr.validate().map_err(PrepareError::Config)?;
    cfg.extract.flow.validate().map_err(PrepareError::Config)?;
    check_out(&cfg.out, &cfg.inputs, cfg.force)?;
    let found = collect_captures(&cfg.inputs)?;
    let files = found.files;
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
    let result = build(cfg, &files, &found.notes, &tmp, progress);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return result;
    }
    if cfg.out.exists() {
        // Checked again: the folder may have changed while the captures were read.
        check_out(&cfg.out, &cfg.inputs, cfg.force)?;
        std::fs::remove_dir_all(&cfg.out).map_err(io_err(&cfg.out))?;
    }
    std::fs::rename(&tmp, &cfg.out).map_err(io_err(&cfg.out))?;
    result
}

/// What a dataset folder holds: `--force` replaces a folder of these names only.
const DATASET_ENTRIES: [&str; 9] = [
    "manifest.json",
    "index.csv",
    "flows.csv",
    "report.json",
    "shards",
    "parts",
    "flowpic_indptr.npy",
    "flowpic_bins.npy",
    "flowpic_counts.npy",
];

/// Whether a dataset may be written at `out`: a new path, or (with `force`) a privpkt dataset
/// and nothing else. Never a file, a folder holding other files, or one an input lies in: a
/// mistyped `--out` must not delete what the user had.
pub fn check_out(out: &Path, inputs: &[PathBuf], force: bool) -> Result<(), PrepareError> {
    let refuse = |msg: String| {
        Err(PrepareError::Input {
            path: out.to_path_buf(),
            msg,
        })
    };
    if !out.exists() {
        if std::fs::symlink_metadata(out).is_ok() {
            return refuse("is a link to nothing: give another --out".into());
        }
        return Ok(());
    }
    if !out.is_dir() {
        return refuse("is a file, not a dataset folder: give another --out".into());
    }
    let canon = std::fs::canonicalize(out).map_err(io_err(out))?;
    for i in inputs {
        if std::fs::canonicalize(i).is_ok_and(|c| c.starts_with(&canon)) {
            return refuse(format!(
                "holds the input {}: replacing it would delete the captures; give another --out",
                i.display()
            ));
        }
    }
    if !force {
        return refuse("already exists (--force replaces it if it is a privpkt dataset)".into());
    }
    let manifest = out.join("manifest.json");
    let is_dataset = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|m| m["format"] == FORMAT);
    if !is_dataset {
        return refuse("is not a privpkt dataset (no manifest.json of one): --force replaces only a dataset".into());
    }
    let mut other: Vec<String> = std::fs::read_dir(out)
        .map_err(io_err(out))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !DATASET_ENTRIES.contains(&n.as_str()))
        .collect();
    if !other.is_empty() {
        other.sort();
        return refuse(format!(
            "holds files that are not part of the dataset ({}): move them away first, or give another --out",
            other.join(", ")
        ));
    }
    Ok(())
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
    notes: &[String],
    tmp: &Path,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<PrepareOutcome, PrepareError> {
    let known = candidate_classes(&cfg.labels, &cfg.class_map);
    let (cand_list, outside) = match &cfg.classes {
        Some(fixed) => {
            let mut seen = HashSet::new();
            if let Some(dup) = fixed.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(PrepareError::Config(format!("the class list names `{dup}` twice")));
            }
            if let Some(empty) = fixed.iter().find(|c| c.trim().is_empty()) {
                return Err(PrepareError::Config(format!(
                    "the class list has an empty name: `{empty}`"
                )));
            }
            let outside: Vec<String> = known.iter().filter(|k| !fixed.contains(k)).cloned().collect();
            (fixed.clone(), outside)
        }
        None => (known, Vec::new()),
    };
    let fixed = cfg.classes.is_some();
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
        Representation::DeepPacket(_) | Representation::Behaviour(_) => (false, 0),
    };

    let (dtype, row_shape): (Dtype, Vec<u64>) = match cfg.extract.repr {
        Representation::DeepPacket(_) => (Dtype::U8, vec![VECTOR_LEN as u64]),
        Representation::FlowPic(_) => (Dtype::U16, vec![resolution as u64, resolution as u64]),
        Representation::Behaviour(b) => (Dtype::F32, vec![b.sample_len() as u64]),
    };
    let dense_row = (!sparse).then_some((dtype, row_shape.as_slice()));

    // 1. extract, in parallel, order kept by collect
    let all_results: Vec<FileResult> = files
        .par_iter()
        .enumerate()
        .map(|(i, f)| {
            let r = extract_one(
                cfg,
                &cand,
                f,
                tmp.join("parts").join(format!("{i:06}.part")),
                sparse,
                resolution,
                dense_row,
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
    // The same bytes under two names (a backup copy, a capture given twice): read once, or its
    // flows would sit in train and test alike.
    let mut first_of: HashMap<String, PathBuf> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut results: Vec<FileResult> = Vec::with_capacity(all_results.len());
    for r in all_results {
        match first_of.get(&r.sha256) {
            Some(first) => {
                duplicates.push(format!(
                    "{}: the same content as {} (sha256 {}): skipped",
                    r.path.display(),
                    first.display(),
                    &r.sha256[..16]
                ));
                for f in [&r.part, &r.rows_path] {
                    let _ = std::fs::remove_file(f);
                }
            }
            None => {
                first_of.insert(r.sha256.clone(), r.path.clone());
                results.push(r);
            }
        }
    }

    // 2. classes, splits (per group), undersampling (per class): memory per flow, not per sample
    progress(Progress::Phase("splitting"));
    let mut cand_counts = vec![0u64; cand_list.len()];
    for r in &results {
        for (c, n) in r.class_counts.iter().enumerate() {
            cand_counts[c] += n;
        }
    }
    // Only classes with samples, unless the list is fixed (then absent classes stay, empty).
    let classes: Vec<String> = cand_list
        .iter()
        .zip(&cand_counts)
        .filter(|(_, &n)| n > 0 || fixed)
        .map(|(c, _)| c.clone())
        .collect();
    if cand_counts.iter().all(|&n| n == 0) {
        // Say first what could not be read at all: a wrong file is not a labelling problem.
        let unreadable: Vec<String> = results
            .iter()
            .filter_map(|r| r.report.as_ref().err().map(|e| format!("{}: {e}", r.path.display())))
            .collect();
        if unreadable.len() == results.len() {
            return Err(PrepareError::Config(if unreadable.len() == 1 {
                unreadable[0].clone()
            } else {
                format!(
                    "none of the {} inputs could be read: {}",
                    unreadable.len(),
                    unreadable.join("; ")
                )
            }));
        }
        return Err(PrepareError::Config(format!(
            "no labelled samples: none of the {} captures' flows matched the labels ({} classes known){}",
            results.len(),
            cand_list.len(),
            if unreadable.is_empty() {
                String::new()
            } else {
                format!("; {} could not be read: {}", unreadable.len(), unreadable.join("; "))
            }
        )));
    }
    if !fixed && classes.len() < 2 {
        let conflicts = match &cfg.labels {
            LabelSource::Flows(f) if f.conflicts > 0 => format!(
                "; {} flow(s) were left unlabelled because their label rows disagree",
                f.conflicts
            ),
            _ => String::new(),
        };
        return Err(PrepareError::Config(format!(
            "only one class has samples ({}): a classifier needs at least two{conflicts}",
            classes.join(", ")
        )));
    }
    let remap: Vec<u32> = {
        let mut k = 0u32;
        cand_counts
            .iter()
            .map(|&n| {
                if n > 0 || fixed {
                    k += 1;
                    k - 1
                } else {
                    u32::MAX
                }
            })
            .collect()
    };
    let groups: Vec<Group> = match cfg.split.unit {
        SplitUnit::Flow => results
            .iter()
            .enumerate()
            .flat_map(|(fi, r)| {
                r.flows.iter().map(move |&(flow, n, c)| Group {
                    id: ((fi as u64) << 40) | flow,
                    samples: n,
                    class: c,
                })
            })
            .map(|g| Group {
                class: remap[g.class as usize],
                ..g
            })
            .collect(),
        SplitUnit::Capture => results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.n_rows > 0)
            .map(|(fi, r)| Group {
                id: fi as u64,
                samples: r.n_rows,
                class: remap[majority(r.class_counts.iter().enumerate().map(|(c, &n)| (c as u32, n))) as usize],
            })
            .collect(),
        SplitUnit::Packet => Vec::new(),
    };
    let (group_split, mut warnings) = assign_groups(&groups, &classes, &cfg.split);
    drop(groups);
    if cfg.split.unit == SplitUnit::Packet {
        warnings.insert(
            0,
            "split by packet: packets of one flow are in train and test; comparable to the papers, not an honest estimate"
                .into(),
        );
    }
    if let (LabelSource::Flows(f), Some(file)) = (&cfg.labels, &cfg.label_spec.file) {
        warnings.extend(f.warnings(Path::new(file)));
    }
    if !outside.is_empty() {
        warnings.push(format!(
            "labels outside the fixed class list are left unlabelled: {}",
            outside.join(", ")
        ));
    }
    // Over the candidate list, whose counts these are (`classes` drops the empty ones unless fixed).
    let absent: Vec<&str> = cand_list
        .iter()
        .zip(&cand_counts)
        .filter(|(_, &n)| n == 0 && fixed)
        .map(|(c, _)| c.as_str())
        .collect();
    if !absent.is_empty() {
        warnings.push(format!(
            "classes of the fixed list with no sample in these captures (kept, empty): {}",
            absent.join(", ")
        ));
    }
    let class_n: Vec<u64> = cand_counts.iter().copied().filter(|&n| n > 0 || fixed).collect();
    let mut cap = cfg.balance.max_per_class.unwrap_or(u64::MAX);
    if cfg.balance.balance {
        // Balance to the smallest class that has samples: an empty class of a fixed list
        // would otherwise empty them all.
        cap = cap.min(class_n.iter().copied().filter(|&n| n > 0).min().unwrap_or(0));
    }
    // Per class over the cap: which of its samples (by order of appearance) are kept.
    let keep_sets: Vec<Option<HashSet<u64>>> = class_n
        .iter()
        .enumerate()
        .map(|(c, &n)| {
            (n > cap).then(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xC1A5_5CA9 ^ ((c as u64) << 32));
                floyd_sample(n, cap, &mut rng)
            })
        })
        .collect();
    let undersampled: u64 = class_n.iter().map(|&n| n.saturating_sub(cap)).sum();

    // 3. write shards and index, in capture order, streaming each part's rows
    progress(Progress::Phase("writing"));
    std::fs::create_dir_all(tmp.join("shards")).map_err(io_err(tmp))?;
    let index_path = tmp.join("index.csv");
    let mut index = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 20,
        File::create(&index_path).map_err(io_err(&index_path))?,
    ));
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
    let flows_path = tmp.join("flows.csv");
    let mut flows_csv = csv::Writer::from_writer(BufWriter::with_capacity(
        1 << 16,
        File::create(&flows_path).map_err(io_err(&flows_path))?,
    ));
    let mut captures = Vec::new();
    let mut reports = Vec::new();
    let mut totals = Totals::default();
    let mut class_counts = vec![0u64; classes.len()];
    let mut split_counts: BTreeMap<String, Vec<u64>> = Split::ALL
        .iter()
        .map(|s| (s.name().to_string(), vec![0; classes.len()]))
        .collect();
    let mut sample = 0u64;
    let mut seen = vec![0u64; classes.len()];
    let mut global = 0u64;
    let mut buf = vec![0u8; row_bytes.max(1)];
    for (fi, r) in results.iter().enumerate() {
        let n = r.n_rows;
        // Every row of this part is kept unless one of its classes is undersampled.
        let all_kept = r
            .class_counts
            .iter()
            .enumerate()
            .all(|(c, &k)| k == 0 || keep_sets[remap[c] as usize].is_none());
        let renamed = !sparse && all_kept && n > 0 && n >= (MERGE_MIN_ROWS as u64).min(cfg.shard_rows / 2).max(1);
        if renamed {
            // The part is already a valid .npy of exactly these rows: it becomes a shard as is.
            if let Some(s) = shard.take() {
                shards.last_mut().expect("open shard is listed").rows = s.finish().map_err(io_err(tmp))?;
            }
            let file = format!("shards/samples-{:05}.npy", shards.len());
            std::fs::rename(&r.part, tmp.join(&file)).map_err(io_err(&r.part))?;
            shards.push(Shard { file, rows: n });
        }
        let mut part = if renamed || n == 0 {
            None
        } else {
            let mut f = BufReader::with_capacity(1 << 20, File::open(&r.part).map_err(io_err(&r.part))?);
            if !sparse {
                f.seek_relative(npy::HEADER_LEN as i64).map_err(io_err(&r.part))?;
            }
            Some(f)
        };
        let mut rows = BufReader::with_capacity(1 << 16, File::open(&r.rows_path).map_err(io_err(&r.rows_path))?);
        let mut kept_here = 0u64;
        // Per flow of this capture: label, the splits its kept samples went to, kept samples.
        let mut flow_rows: BTreeMap<u64, (usize, u8, u64)> = BTreeMap::new();
        let mut rec = [0u8; PartRow::LEN];
        for _ in 0..n {
            rows.read_exact(&mut rec).map_err(io_err(&r.rows_path))?;
            let row = PartRow::decode(&rec);
            let label = remap[row.label as usize] as usize;
            let ordinal = seen[label];
            seen[label] += 1;
            let this = global;
            global += 1;
            let keep = keep_sets[label].as_ref().is_none_or(|k| k.contains(&ordinal));
            let split = match cfg.split.unit {
                SplitUnit::Flow => group_split[&(((fi as u64) << 40) | row.flow)],
                SplitUnit::Capture => group_split[&(fi as u64)],
                SplitUnit::Packet => packet_split(cfg.split.seed, this, &cfg.split.fractions),
            };
            if let Some(part) = part.as_mut() {
                let len = if sparse { row.nnz as usize * 6 } else { row_bytes };
                if buf.len() < len {
                    buf.resize(len, 0);
                }
                part.read_exact(&mut buf[..len]).map_err(io_err(&r.part))?;
                if keep {
                    if let Some((indptr, bins, counts)) = sparse_out.as_mut() {
                        let k = row.nnz as usize;
                        bins.write_all(&buf[..k * 4]).map_err(io_err(tmp))?;
                        counts.write_all(&buf[k * 4..k * 6]).map_err(io_err(tmp))?;
                        indptr.push(indptr.last().copied().unwrap_or(0) + k as u64);
                    } else {
                        if shard.as_ref().is_none_or(|s| s.rows() >= cfg.shard_rows) {
                            if let Some(s) = shard.take() {
                                shards.last_mut().expect("open shard is listed").rows =
                                    s.finish().map_err(io_err(tmp))?;
                            }
                            let file = format!("shards/samples-{:05}.npy", shards.len());
                            let p = tmp.join(&file);
                            shard = Some(NpyWriter::create(&p, dtype, &row_shape).map_err(io_err(&p))?);
                            shards.push(Shard { file, rows: 0 });
                        }
                        let s = shard.as_mut().expect("shard opened above");
                        s.write_rows(&buf[..row_bytes]).map_err(io_err(tmp))?;
                    }
                }
            }
            if !keep {
                continue;
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
            let f = flow_rows.entry(row.flow).or_insert((label, 0, 0));
            f.1 |= 1 << split as u8;
            f.2 += 1;
            class_counts[label] += 1;
            split_counts.get_mut(split.name()).expect("all splits present")[label] += 1;
        }
        drop((part, rows));
        let file = r
            .path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        for (flow, (label, splits, samples)) in flow_rows {
            let key = r.keys.get(&flow).copied();
            flows_csv
                .serialize(FlowRow {
                    capture: fi as u32,
                    flow,
                    file: file.clone(),
                    l4: key.map_or_else(String::new, |k| k.l4.name().to_string()),
                    endpoint_a: key.map_or_else(String::new, |k| k.a.to_string()),
                    endpoint_b: key.map_or_else(String::new, |k| k.b.to_string()),
                    label: classes[label].clone(),
                    split: match Split::ALL
                        .iter()
                        .filter(|s| splits & (1 << **s as u8) != 0)
                        .collect::<Vec<_>>()[..]
                    {
                        [one] => one.name().to_string(),
                        _ => "mixed".to_string(),
                    },
                    samples,
                })
                .map_err(|e| PrepareError::Io {
                    path: flows_path.clone(),
                    source: std::io::Error::other(e),
                })?;
        }
        for f in [&r.part, &r.rows_path] {
            if f.exists() {
                std::fs::remove_file(f).map_err(io_err(f))?;
            }
        }
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
    flows_csv.flush().map_err(io_err(&flows_path))?;
    drop(flows_csv);
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
    warnings.extend(notes.iter().cloned());
    warnings.extend(duplicates);
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

/// `k` distinct values of `0..n`, uniformly at random (Floyd's algorithm): memory O(k).
fn floyd_sample(n: u64, k: u64, rng: &mut ChaCha8Rng) -> HashSet<u64> {
    use rand::Rng;
    let mut set = HashSet::with_capacity(k as usize);
    for j in n - k..n {
        let t = rng.random_range(0..=j);
        if !set.insert(t) {
            set.insert(j);
        }
    }
    set
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_rows_roundtrip() {
        let r = PartRow {
            flow: 1 << 41 | 7,
            direction: 2,
            ts: -5,
            label: 70_000,
            l4: L4::Udp,
            sport: 65535,
            dport: 1,
            nnz: 123_456,
        };
        assert_eq!(PartRow::decode(&r.encode()), r);
        let t = PartRow { l4: L4::Tcp, ..r };
        assert_eq!(PartRow::decode(&t.encode()), t);
    }

    #[test]
    fn floyd_sample_is_uniform_and_exact() {
        let mut counts = [0u32; 10];
        for seed in 0..2000 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let s = floyd_sample(10, 3, &mut rng);
            assert_eq!(s.len(), 3);
            for &x in &s {
                assert!(x < 10);
                counts[x as usize] += 1;
            }
        }
        // each value is chosen with probability 3/10: 600 of 2000 on average
        assert!(counts.iter().all(|&c| (520..=680).contains(&c)), "{counts:?}");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(floyd_sample(5, 5, &mut rng).len(), 5);
    }
}

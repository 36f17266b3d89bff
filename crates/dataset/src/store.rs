//! The on-disk dataset: a directory with
//!
//! - `manifest.json`: representation and flow settings, label source, classes and counts,
//!   split settings, seed, privpkt version, and every source capture with its sha256;
//! - `shards/samples-NNNNN.npy`: dense samples — Deep Packet `(n, 1500) u8`, FlowPic
//!   `(n, R, R) u16` for R ≤ 64, or flow behaviour `(n, L) f32` (one row per flow, raw values
//!   in the layout of `privpkt_capture::behaviour`) — each opened by
//!   `np.load(path, mmap_mode="r")`;
//! - `flowpic_indptr.npy` (u64, n+1), `flowpic_bins.npy` (u32 flat bins), `flowpic_counts.npy`
//!   (u16) for larger FlowPics, in CSR form: image i is `bins[indptr[i]:indptr[i+1]]`;
//! - `index.csv`: one row per sample (capture, flow, direction, timestamp, label, split, and
//!   the header fields the header-only baseline needs);
//! - `flows.csv`: one row per flow (capture file, protocol, endpoints, label, split, samples):
//!   what a peer tool needs to score the same split;
//! - `report.json`: what reading each capture found (skipped records with reasons and offsets).
//!
//! A directory is complete only when `manifest.json` is there; `prepare` writes into a
//! temporary sibling and renames it at the very end.

use std::path::{Path, PathBuf};

use privpkt_capture::ExtractConfig;
use serde::{Deserialize, Serialize};

use crate::labels::LabelSpec;
use crate::npy::{self, Dtype};
use crate::split::{Split, SplitConfig};

pub const FORMAT: &str = "privpkt-dataset";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {msg}")]
    Bad { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> StoreError {
    StoreError::Bad {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// One dense shard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shard {
    pub file: String,
    pub rows: u64,
}

/// How samples are stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "layout", rename_all = "lowercase")]
pub enum Storage {
    Dense {
        dtype: Dtype,
        row_shape: Vec<u64>,
        shards: Vec<Shard>,
    },
    /// CSR FlowPics (see module docs).
    Sparse {
        resolution: u32,
        indptr: String,
        bins: String,
        counts: String,
    },
}

/// One source capture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaptureEntry {
    /// Path as given on the command line (relative paths stay relative).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    pub format: Option<String>,
    pub linktypes: Vec<u32>,
    pub records: u64,
    /// Records/frames not turned into packets, all reasons together (details in report.json).
    pub skipped: u64,
    pub flows: u64,
    /// Samples kept in the dataset.
    pub samples: u64,
    /// Set when the file could not be read at all, with the reason.
    pub error: Option<String>,
}

/// Totals over all captures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub records: u64,
    pub tcp_udp_packets: u64,
    pub labelled_packets: u64,
    pub unlabelled_packets: u64,
    pub flows: u64,
    pub labelled_flows: u64,
    pub dropped_by_rule: u64,
    pub capped_per_flow: u64,
    pub dropped_by_class_map: u64,
    pub undersampled: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassBalance {
    pub max_per_class: Option<u64>,
    pub balance: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub privpkt_version: String,
    pub extract: ExtractConfig,
    pub labels: LabelSpec,
    pub classes: Vec<String>,
    /// Samples per class, in `classes` order.
    pub class_counts: Vec<u64>,
    pub split: SplitConfig,
    /// True when split by packet: comparable to the papers, not an honest estimate.
    pub paper_comparable: bool,
    /// Samples per split per class: `split_counts["train"][c]`.
    pub split_counts: std::collections::BTreeMap<String, Vec<u64>>,
    pub balance: ClassBalance,
    pub seed: u64,
    pub storage: Storage,
    pub totals: Totals,
    pub captures: Vec<CaptureEntry>,
    pub warnings: Vec<String>,
}

impl Manifest {
    pub fn samples(&self) -> u64 {
        self.totals.samples
    }

    /// Bytes of one dense sample, or the R of sparse FlowPics.
    pub fn sample_shape(&self) -> Vec<u64> {
        match &self.storage {
            Storage::Dense { row_shape, .. } => row_shape.clone(),
            Storage::Sparse { resolution, .. } => vec![*resolution as u64, *resolution as u64],
        }
    }

    pub fn representation_name(&self) -> &'static str {
        self.extract.repr.name()
    }
}

/// One row of `index.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexRow {
    pub sample: u64,
    /// Position of the capture in `manifest.captures`.
    pub capture: u32,
    /// Flow id within the capture.
    pub flow: u64,
    /// `fwd`, `bwd` or `bi` (bidirectional FlowPic).
    pub direction: String,
    pub timestamp_ns: i64,
    pub label: String,
    pub split: String,
    pub l4: String,
    pub src_port: u16,
    pub dst_port: u16,
}

/// One row of `flows.csv`: a flow with samples in the dataset, where it came from and which
/// split it went to (`mixed` only when split by packet).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRow {
    /// Position of the capture in `manifest.captures`.
    pub capture: u32,
    /// Flow id within the capture.
    pub flow: u64,
    /// The capture's file name, as labels CSVs name it.
    pub file: String,
    pub l4: String,
    /// `ip:port` of the flow's two endpoints (`[addr]:port` for IPv6), smaller first.
    pub endpoint_a: String,
    pub endpoint_b: String,
    pub label: String,
    pub split: String,
    /// Samples of the flow in the dataset.
    pub samples: u64,
}

/// FlowPics in CSR form: image i is `bins[indptr[i]..indptr[i+1]]` with its `counts`.
#[derive(Debug, Clone)]
pub struct SparseImages {
    pub indptr: Vec<u64>,
    pub bins: Vec<u32>,
    pub counts: Vec<u16>,
}

impl SparseImages {
    /// (flat bin, count) pairs of image `i`.
    pub fn image(&self, i: usize) -> Vec<(u32, u16)> {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        self.bins[a..b]
            .iter()
            .copied()
            .zip(self.counts[a..b].iter().copied())
            .collect()
    }
}

/// An opened dataset directory.
#[derive(Debug)]
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Dataset {
    /// Open and check a dataset directory (manifest present and readable, shards the size the
    /// manifest says).
    pub fn open(dir: &Path) -> Result<Dataset, StoreError> {
        let mpath = dir.join("manifest.json");
        if !mpath.exists() {
            let partial = dir.join("index.csv").exists();
            return Err(bad(
                dir,
                if partial {
                    "no manifest.json: this dataset is incomplete (an interrupted prepare?)".to_string()
                } else {
                    "not a privpkt dataset (no manifest.json)".to_string()
                },
            ));
        }
        let text = std::fs::read_to_string(&mpath).map_err(|source| StoreError::Io {
            path: mpath.clone(),
            source,
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| bad(&mpath, format!("corrupt manifest: {e}")))?;
        if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
            return Err(bad(
                &mpath,
                format!(
                    "format {} v{} is not readable by this privpkt (expects {FORMAT} v{FORMAT_VERSION})",
                    manifest.format, manifest.format_version
                ),
            ));
        }
        let ds = Dataset {
            dir: dir.to_path_buf(),
            manifest,
        };
        ds.check_storage()?;
        Ok(ds)
    }

    fn check_storage(&self) -> Result<(), StoreError> {
        match &self.manifest.storage {
            Storage::Dense {
                dtype,
                row_shape,
                shards,
            } => {
                let mut total = 0;
                for s in shards {
                    let p = self.dir.join(&s.file);
                    let info = npy::read_info(&p).map_err(|m| bad(&p, m))?;
                    let mut want = vec![s.rows];
                    want.extend(row_shape);
                    if info.dtype != *dtype || info.shape != want {
                        return Err(bad(
                            &p,
                            format!(
                                "shard is {:?} {:?}, manifest says {:?} {:?}",
                                info.dtype, info.shape, dtype, want
                            ),
                        ));
                    }
                    total += s.rows;
                }
                if total != self.manifest.totals.samples {
                    return Err(bad(
                        &self.dir,
                        format!(
                            "shards hold {total} samples, manifest says {}",
                            self.manifest.totals.samples
                        ),
                    ));
                }
            }
            Storage::Sparse {
                indptr, bins, counts, ..
            } => {
                let p = self.dir.join(indptr);
                let info = npy::read_info(&p).map_err(|m| bad(&p, m))?;
                if info.shape != vec![self.manifest.totals.samples + 1] {
                    return Err(bad(&p, format!("indptr has shape {:?}", info.shape)));
                }
                for f in [bins, counts] {
                    let p = self.dir.join(f);
                    npy::read_info(&p).map_err(|m| bad(&p, m))?;
                }
            }
        }
        Ok(())
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join("index.csv")
    }

    /// Read the whole index, checking it against the manifest.
    pub fn read_index(&self) -> Result<Vec<IndexRow>, StoreError> {
        let p = self.index_path();
        let mut rdr = csv::Reader::from_path(&p).map_err(|e| bad(&p, e.to_string()))?;
        let mut rows = Vec::with_capacity(self.manifest.totals.samples as usize);
        for (i, r) in rdr.deserialize::<IndexRow>().enumerate() {
            let row = r.map_err(|e| bad(&p, format!("row {}: {e}", i + 2)))?;
            if row.sample != i as u64 {
                return Err(bad(&p, format!("row {}: sample {} out of order", i + 2, row.sample)));
            }
            if Split::parse(&row.split).is_none() {
                return Err(bad(&p, format!("row {}: unknown split `{}`", i + 2, row.split)));
            }
            rows.push(row);
        }
        if rows.len() as u64 != self.manifest.totals.samples {
            return Err(bad(
                &p,
                format!(
                    "{} rows, manifest says {} samples",
                    rows.len(),
                    self.manifest.totals.samples
                ),
            ));
        }
        Ok(rows)
    }

    /// The flows (`flows.csv`): which flow went to which split, with its endpoints.
    pub fn read_flows(&self) -> Result<Vec<FlowRow>, StoreError> {
        let p = self.dir.join("flows.csv");
        if !p.exists() {
            return Err(bad(
                &p,
                "missing: this dataset was prepared by an older privpkt; prepare it again to list its flows",
            ));
        }
        let mut rdr = csv::Reader::from_path(&p).map_err(|e| bad(&p, e.to_string()))?;
        rdr.deserialize::<FlowRow>()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| bad(&p, format!("row {}: {e}", i + 2))))
            .collect()
    }

    /// All dense samples as one byte vector (row-major), in sample order.
    pub fn read_dense(&self) -> Result<(Vec<u64>, Vec<u8>), StoreError> {
        let Storage::Dense {
            dtype,
            row_shape,
            shards,
        } = &self.manifest.storage
        else {
            return Err(bad(&self.dir, "samples are stored sparse; use read_sparse"));
        };
        let mut all = Vec::new();
        for s in shards {
            let p = self.dir.join(&s.file);
            let (_, bytes) = npy::read_bytes(&p, *dtype).map_err(|m| bad(&p, m))?;
            all.extend_from_slice(&bytes);
        }
        Ok((row_shape.clone(), all))
    }

    /// All sparse FlowPics.
    pub fn read_sparse(&self) -> Result<SparseImages, StoreError> {
        let Storage::Sparse {
            indptr, bins, counts, ..
        } = &self.manifest.storage
        else {
            return Err(bad(&self.dir, "samples are stored dense; use read_dense"));
        };
        fn load<T: Copy + Default>(p: &Path, dt: Dtype) -> Result<Vec<T>, StoreError> {
            let (_, b) = npy::read_bytes(p, dt).map_err(|m| bad(p, m))?;
            let n = b.len() / std::mem::size_of::<T>();
            let mut v = vec![T::default(); n];
            // Little-endian file, little-endian target.
            unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), v.as_mut_ptr() as *mut u8, b.len()) };
            Ok(v)
        }
        let images = SparseImages {
            indptr: load(&self.dir.join(indptr), Dtype::U64)?,
            bins: load(&self.dir.join(bins), Dtype::U32)?,
            counts: load(&self.dir.join(counts), Dtype::U16)?,
        };
        let n = self.manifest.totals.samples as usize;
        let nnz = images.indptr.last().copied().unwrap_or(0) as usize;
        if images.indptr.len() != n + 1
            || images.bins.len() != nnz
            || images.counts.len() != nnz
            || images.indptr.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad(
                &self.dir,
                "sparse FlowPic arrays are inconsistent (indptr/bins/counts)",
            ));
        }
        Ok(images)
    }
}

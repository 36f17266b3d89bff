//! Dataset splits in memory, and raw samples turned into scaled `f32` batches.
//!
//! Samples stay in their stored type (u8 vectors, u16 or sparse FlowPics) until a batch is
//! made: a Deep Packet split takes 1500 bytes per sample instead of 6000.

use std::collections::HashMap;

use privpkt_dataset::npy::{self, Dtype};
use privpkt_dataset::{Dataset, Split, Storage};

use privpkt_capture::behaviour::StatKind;
use privpkt_capture::{SERIES_CHANNELS, STATS};

use crate::arch::{encoded_packet_width, InputSpec, PLAIN_CHANNELS, PLE_MAX};
use crate::error::{NnError, Result};

/// Stored samples of one split.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleData {
    /// Deep Packet vectors, row-major `n × len`.
    Bytes(Vec<u8>),
    /// Dense FlowPics, row-major `n × R × R`.
    Dense16(Vec<u16>),
    /// Flow behaviour rows, raw values, row-major `n × features`.
    F32(Vec<f32>),
    /// CSR FlowPics: image i is `bins[indptr[i]..indptr[i+1]]` with its `counts`.
    Sparse {
        indptr: Vec<u64>,
        bins: Vec<u32>,
        counts: Vec<u16>,
    },
}

/// One split of a dataset in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub input: InputSpec,
    pub data: SampleData,
    /// Class index (manifest order) per sample.
    pub labels: Vec<u32>,
    /// Row of each sample in the dataset (`index.csv`'s `sample`).
    pub sample: Vec<u64>,
    /// Capture (position in the manifest) and flow id per sample, for flow-level metrics.
    pub capture: Vec<u32>,
    pub flow: Vec<u64>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Borrow the samples as a raw batch encoded for a network taking `input` (see
    /// [`RawBatch::seen_as`]).
    pub fn raw_for(&self, input: &InputSpec) -> RawBatch<'_> {
        self.raw().seen_as(input)
    }

    /// Borrow the samples as a raw batch (for [`crate::Model::predict_proba`]).
    pub fn raw(&self) -> RawBatch<'_> {
        match (&self.data, self.input) {
            (SampleData::Bytes(b), _) => RawBatch::DeepPacket(b),
            (SampleData::F32(v), InputSpec::Behaviour { .. }) => RawBatch::Behaviour {
                input: self.input,
                values: v,
            },
            (SampleData::Dense16(d), InputSpec::FlowPic { resolution }) => {
                RawBatch::FlowPicDense { resolution, counts: d }
            }
            (SampleData::Sparse { indptr, bins, counts }, InputSpec::FlowPic { resolution }) => {
                RawBatch::FlowPicSparse {
                    resolution,
                    indptr,
                    bins,
                    counts,
                }
            }
            (_, InputSpec::DeepPacket { .. }) => RawBatch::DeepPacket(&[]),
            (_, input) => RawBatch::Behaviour { input, values: &[] },
        }
    }

    /// Samples per class.
    pub fn class_counts(&self, classes: usize) -> Vec<u64> {
        let mut c = vec![0u64; classes];
        for &y in &self.labels {
            c[y as usize] += 1;
        }
        c
    }

    /// The samples of several sets one after the other (same input representation).
    pub fn concat(parts: &[&Samples]) -> Result<Samples> {
        let first = parts
            .first()
            .ok_or_else(|| NnError::Config("no samples to concatenate".into()))?;
        let mut out = Samples {
            input: first.input,
            data: match &first.data {
                SampleData::Bytes(_) => SampleData::Bytes(Vec::new()),
                SampleData::Dense16(_) => SampleData::Dense16(Vec::new()),
                SampleData::F32(_) => SampleData::F32(Vec::new()),
                SampleData::Sparse { .. } => SampleData::Sparse {
                    indptr: vec![0],
                    bins: Vec::new(),
                    counts: Vec::new(),
                },
            },
            labels: Vec::new(),
            sample: Vec::new(),
            capture: Vec::new(),
            flow: Vec::new(),
        };
        for p in parts {
            if p.input != out.input {
                return Err(NnError::Incompatible(format!(
                    "samples of {} and {} cannot be mixed",
                    out.input, p.input
                )));
            }
            match (&mut out.data, &p.data) {
                (SampleData::Bytes(a), SampleData::Bytes(b)) => a.extend_from_slice(b),
                (SampleData::Dense16(a), SampleData::Dense16(b)) => a.extend_from_slice(b),
                (SampleData::F32(a), SampleData::F32(b)) => a.extend_from_slice(b),
                (
                    SampleData::Sparse { indptr, bins, counts },
                    SampleData::Sparse {
                        indptr: ip,
                        bins: b,
                        counts: c,
                    },
                ) => {
                    let base = *indptr.last().unwrap_or(&0);
                    indptr.extend(ip.iter().skip(1).map(|v| v + base));
                    bins.extend_from_slice(b);
                    counts.extend_from_slice(c);
                }
                _ => {
                    return Err(NnError::Incompatible(
                        "dense and sparse samples cannot be mixed (datasets stored differently)".into(),
                    ))
                }
            }
            out.labels.extend_from_slice(&p.labels);
            out.sample.extend_from_slice(&p.sample);
            out.capture.extend_from_slice(&p.capture);
            out.flow.extend_from_slice(&p.flow);
        }
        Ok(out)
    }

    /// The samples at `keep` (in that order).
    pub fn subset(&self, keep: &[usize]) -> Samples {
        let data = match &self.data {
            SampleData::Bytes(b) => {
                let w = self.input.features();
                SampleData::Bytes(keep.iter().flat_map(|&i| &b[i * w..(i + 1) * w]).copied().collect())
            }
            SampleData::Dense16(d) => {
                let w = self.input.features();
                SampleData::Dense16(keep.iter().flat_map(|&i| &d[i * w..(i + 1) * w]).copied().collect())
            }
            SampleData::F32(d) => {
                let w = self.input.stored_len();
                SampleData::F32(keep.iter().flat_map(|&i| &d[i * w..(i + 1) * w]).copied().collect())
            }
            SampleData::Sparse { indptr, bins, counts } => {
                let (mut ip, mut bs, mut cs) = (vec![0u64], Vec::new(), Vec::new());
                for &i in keep {
                    let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
                    bs.extend_from_slice(&bins[a..b]);
                    cs.extend_from_slice(&counts[a..b]);
                    ip.push(bs.len() as u64);
                }
                SampleData::Sparse {
                    indptr: ip,
                    bins: bs,
                    counts: cs,
                }
            }
        };
        let pick = |v: &[u64]| keep.iter().map(|&i| v[i]).collect::<Vec<_>>();
        Samples {
            input: self.input,
            data,
            labels: keep.iter().map(|&i| self.labels[i]).collect(),
            sample: pick(&self.sample),
            capture: keep.iter().map(|&i| self.capture[i]).collect(),
            flow: pick(&self.flow),
        }
    }
}

/// Raw samples as stored, borrowed: what inference takes.
#[derive(Debug, Clone, Copy)]
pub enum RawBatch<'a> {
    /// Deep Packet vectors, rows of 1500 bytes.
    DeepPacket(&'a [u8]),
    /// FlowPics `n × R × R` packet counts.
    FlowPicDense { resolution: usize, counts: &'a [u16] },
    /// CSR FlowPics as `privpkt_dataset::store::SparseImages` holds them (`indptr` has n+1
    /// entries, offsets into `bins`/`counts`; bins are flat `row·R + col`).
    FlowPicSparse {
        resolution: usize,
        indptr: &'a [u64],
        bins: &'a [u32],
        counts: &'a [u16],
    },
    /// Flow behaviour rows of `input.stored_len()` raw values.
    Behaviour { input: InputSpec, values: &'a [f32] },
}

impl RawBatch<'_> {
    /// The same samples encoded as `model` wants them: behaviour samples through the model's
    /// piecewise-linear bins (how many is the model's choice; the samples are the data's).
    pub fn seen_as(self, model: &InputSpec) -> Self {
        match self {
            RawBatch::Behaviour { input, values } if model.same_samples(&input) => {
                RawBatch::Behaviour { input: *model, values }
            }
            other => other,
        }
    }

    /// What these samples are, and how many, checking that the slices are consistent.
    pub fn check(&self) -> Result<(InputSpec, usize)> {
        let bad = |m: String| NnError::Incompatible(m);
        match *self {
            RawBatch::DeepPacket(b) => {
                let len = privpkt_capture::VECTOR_LEN;
                if !b.len().is_multiple_of(len) {
                    return Err(bad(format!(
                        "{} bytes is not a whole number of {len}-byte vectors",
                        b.len()
                    )));
                }
                Ok((InputSpec::DeepPacket { len }, b.len() / len))
            }
            RawBatch::FlowPicDense { resolution, counts } => {
                let px = resolution * resolution;
                if px == 0 || !counts.len().is_multiple_of(px) {
                    return Err(bad(format!(
                        "{} counts is not a whole number of {resolution}×{resolution} images",
                        counts.len()
                    )));
                }
                Ok((InputSpec::FlowPic { resolution }, counts.len() / px))
            }
            RawBatch::FlowPicSparse {
                resolution,
                indptr,
                bins,
                counts,
            } => {
                let px = (resolution * resolution) as u64;
                let nnz = indptr.last().copied().unwrap_or(0);
                if indptr.is_empty()
                    || bins.len() != counts.len()
                    || nnz as usize > bins.len()
                    || indptr.windows(2).any(|w| w[0] > w[1])
                    || bins.iter().any(|&b| b as u64 >= px)
                {
                    return Err(bad(format!(
                        "sparse FlowPics are inconsistent (indptr/bins/counts, or a bin outside {resolution}×{resolution})"
                    )));
                }
                Ok((InputSpec::FlowPic { resolution }, indptr.len() - 1))
            }
            RawBatch::Behaviour { input, values } => {
                let w = input.stored_len();
                let InputSpec::Behaviour { stats, .. } = input else {
                    return Err(bad(format!("{input} is not a behaviour input")));
                };
                if stats != 0 && stats != STATS.len() {
                    return Err(bad(format!(
                        "{stats} flow statistics per sample, this privpkt computes {}: prepare the data again",
                        STATS.len()
                    )));
                }
                if w == 0 || !values.len().is_multiple_of(w) {
                    return Err(bad(format!(
                        "{} values is not a whole number of {w}-value behaviour samples",
                        values.len()
                    )));
                }
                if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                    return Err(bad(format!(
                        "behaviour sample {} holds a non-finite value (value {} of the row)",
                        i / w,
                        i % w
                    )));
                }
                Ok((input, values.len() / w))
            }
        }
    }

    /// Write sample `i`, scaled, into `out` (`features` values). The batch must have passed
    /// [`RawBatch::check`].
    pub fn fill(&self, i: usize, out: &mut [f32]) {
        match *self {
            RawBatch::DeepPacket(b) => {
                let w = out.len();
                for (o, &v) in out.iter_mut().zip(&b[i * w..(i + 1) * w]) {
                    *o = v as f32 / 255.0;
                }
            }
            RawBatch::FlowPicDense { counts, .. } => {
                let w = out.len();
                let img = &counts[i * w..(i + 1) * w];
                let max = img.iter().copied().max().unwrap_or(0);
                let norm = log_norm(max);
                for (o, &c) in out.iter_mut().zip(img) {
                    *o = if c == 0 { 0.0 } else { (c as f32).ln_1p() * norm };
                }
            }
            RawBatch::FlowPicSparse {
                indptr, bins, counts, ..
            } => {
                out.fill(0.0);
                let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
                let max = counts[a..b].iter().copied().max().unwrap_or(0);
                let norm = log_norm(max);
                // Repeated bins are summed, like a dense histogram would hold them.
                for (&bin, &c) in bins[a..b].iter().zip(&counts[a..b]) {
                    out[bin as usize] += c as f32;
                }
                if max > 0 {
                    for o in out.iter_mut().filter(|o| **o > 0.0) {
                        *o = o.ln_1p() * norm;
                    }
                }
            }
            RawBatch::Behaviour { input, values } => {
                let w = input.stored_len();
                scale_behaviour(&input, &values[i * w..(i + 1) * w], out);
            }
        }
    }

    /// Augmented views of samples `idx` (behaviour samples; others as [`RawBatch::batch`]),
    /// scaled, row-major `[idx.len(), features]`: one fresh view per entry of `idx`.
    pub fn batch_augmented<R: rand::Rng>(
        &self,
        idx: &[usize],
        features: usize,
        aug: &crate::augment::Augment,
        rng: &mut R,
    ) -> Vec<f32> {
        let RawBatch::Behaviour { input, values } = *self else {
            return self.batch(idx, features);
        };
        let w = input.stored_len();
        let mut view = vec![0f32; w];
        let mut out = vec![0f32; idx.len() * features];
        for (row, &i) in out.chunks_exact_mut(features.max(1)).zip(idx) {
            aug.view(&input, &values[i * w..(i + 1) * w], &mut view, rng);
            scale_behaviour(&input, &view, row);
        }
        out
    }

    /// Samples `idx`, scaled, row-major `[idx.len(), features]`.
    pub fn batch(&self, idx: &[usize], features: usize) -> Vec<f32> {
        let mut out = vec![0f32; idx.len() * features];
        for (row, &i) in out.chunks_exact_mut(features.max(1)).zip(idx) {
            self.fill(i, row);
        }
        out
    }
}

/// [`crate::Scaling::Behaviour`]: each raw value by the fixed transform of its kind, numbers
/// spread over piecewise-linear bins, payload bytes as bits. `out` has `input.features()` values.
pub fn scale_behaviour(input: &InputSpec, raw: &[f32], out: &mut [f32]) {
    let Some((packets, payload_bytes, stats)) = input.behaviour_layout() else {
        return;
    };
    let bins = input.bins();
    let channels = SERIES_CHANNELS + payload_bytes;
    let width = encoded_packet_width(payload_bytes, bins);
    let series = packets * channels;
    for (o, r) in out[..packets * width]
        .chunks_exact_mut(width)
        .zip(raw[..series].chunks_exact(channels))
    {
        // mask, direction, then the six flags as they are.
        o[0] = r[0];
        o[1] = r[1];
        o[2..PLAIN_CHANNELS].copy_from_slice(&r[5..SERIES_CHANNELS]);
        let mut at = PLAIN_CHANNELS;
        for v in [r[2] / 1500.0, r[3] / 1500.0, r[4].max(0.0).ln_1p() / 16.0] {
            ple(v, &mut o[at..at + bins]);
            at += bins;
        }
        for (bits, &b) in o[at..].chunks_exact_mut(8).zip(&r[SERIES_CHANNELS..]) {
            let b = b.clamp(0.0, 255.0) as u8;
            for (k, x) in bits.iter_mut().enumerate() {
                *x = ((b >> (7 - k)) & 1) as f32;
            }
        }
    }
    for ((o, &r), f) in out[packets * width..]
        .chunks_exact_mut(bins.max(1))
        .zip(&raw[series..series + stats])
        .zip(STATS.iter())
    {
        ple(scale_stat(f.kind, r), o);
    }
}

/// Piecewise-linear encoding of `v` over `out.len()` bins of width `PLE_MAX / out.len()` from
/// 0: bin k holds `clamp(v/w − k, 0, 1)` (its sum is `v/w` inside the range).
fn ple(v: f32, out: &mut [f32]) {
    let x = v.max(0.0) * (out.len() as f32 / PLE_MAX);
    for (k, o) in out.iter_mut().enumerate() {
        *o = (x - k as f32).clamp(0.0, 1.0);
    }
}

/// The fixed transform of one flow statistic, before binning.
pub fn scale_stat(kind: StatKind, v: f32) -> f32 {
    let v = v.max(0.0);
    match kind {
        StatKind::Count => v.ln_1p() / 10.0,
        StatKind::Bytes => v.ln_1p() / 16.0,
        StatKind::Size => v / 1500.0,
        StatKind::Millis => v.ln_1p() / 12.0,
        StatKind::Share => v,
        StatKind::Protocol => (v == 17.0) as u8 as f32,
    }
}

fn log_norm(max: u16) -> f32 {
    if max == 0 {
        0.0
    } else {
        1.0 / (max as f32).ln_1p()
    }
}

/// Load one split of a dataset: its samples in index order, with labels and flow ids.
pub fn load_split(ds: &Dataset, split: Split) -> Result<Samples> {
    let m = &ds.manifest;
    let input = InputSpec::from_manifest(m)?;
    let index = ds.read_index()?;
    let class_of: HashMap<&str, u32> = m
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u32))
        .collect();
    let mut rows = Vec::new();
    let (mut labels, mut sample, mut capture, mut flow) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in index.iter().filter(|r| r.split == split.name()) {
        let y = *class_of.get(r.label.as_str()).ok_or_else(|| NnError::Data {
            path: ds.index_path(),
            msg: format!(
                "sample {}: label `{}` is not among the manifest's classes",
                r.sample, r.label
            ),
        })?;
        rows.push(r.sample as usize);
        labels.push(y);
        sample.push(r.sample);
        capture.push(r.capture);
        flow.push(r.flow);
    }
    let data = match &m.storage {
        Storage::Dense { dtype, shards, .. } => {
            let width = input.stored_len();
            let mut bytes = Vec::with_capacity(rows.len() * width * dtype.size());
            let row_bytes = width * dtype.size();
            let mut next = 0; // position in `rows` (sorted ascending, index order)
            let mut start = 0usize;
            for s in shards {
                let end = start + s.rows as usize;
                if next < rows.len() && rows[next] < end {
                    let p = ds.dir.join(&s.file);
                    let (_, b) = npy::read_bytes(&p, *dtype).map_err(|msg| NnError::Data { path: p.clone(), msg })?;
                    if b.len() != s.rows as usize * row_bytes {
                        return Err(NnError::Data {
                            path: p,
                            msg: format!("{} data bytes, expected {}", b.len(), s.rows as usize * row_bytes),
                        });
                    }
                    while next < rows.len() && rows[next] < end {
                        let o = (rows[next] - start) * row_bytes;
                        bytes.extend_from_slice(&b[o..o + row_bytes]);
                        next += 1;
                    }
                }
                start = end;
            }
            match dtype {
                Dtype::U8 => SampleData::Bytes(bytes),
                Dtype::U16 => SampleData::Dense16(
                    bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect(),
                ),
                Dtype::F32 if matches!(input, InputSpec::Behaviour { .. }) => SampleData::F32(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                other => {
                    return Err(NnError::Data {
                        path: ds.dir.join("manifest.json"),
                        msg: format!("dense samples of dtype {other:?} are not a known representation"),
                    })
                }
            }
        }
        Storage::Sparse { .. } => {
            let sp = ds.read_sparse()?;
            let r = input.features() as u64;
            if sp.bins.iter().any(|&b| b as u64 >= r) {
                return Err(NnError::Data {
                    path: ds.dir.clone(),
                    msg: "a sparse FlowPic bin lies outside the image".into(),
                });
            }
            let full = Samples {
                input,
                data: SampleData::Sparse {
                    indptr: sp.indptr,
                    bins: sp.bins,
                    counts: sp.counts,
                },
                labels: vec![0; m.totals.samples as usize],
                sample: vec![0; m.totals.samples as usize],
                capture: vec![0; m.totals.samples as usize],
                flow: vec![0; m.totals.samples as usize],
            };
            full.subset(&rows).data
        }
    };
    Ok(Samples {
        input,
        data,
        labels,
        sample,
        capture,
        flow,
    })
}

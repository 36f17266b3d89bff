//! `privpkt classify`: per-flow predictions for new captures, with the model's own preprocessing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use privpkt_capture::{extract_file, FlowKey, FlowPicImage, Representation, SampleMeta, SampleSink, VECTOR_LEN};
use privpkt_dataset::prepare::collect_captures;
use privpkt_nn::{load_model, LoadedModel, RawBatch};
use serde::Serialize;

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Csv,
    Json,
}

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "Each capture is read with exactly the preprocessing recorded in the model file \
(representation, masking, flow timeouts, per-flow sample cap, FlowPic settings). A flow's class is the argmax of \
its samples' mean predicted probabilities; `confidence` is that mean probability. A behaviour model (series, \
flowstats) has one sample per flow, taken as soon as the flow's N-th packet (or, for whole-flow statistics, its \
end) arrives: `decided_at_packet` says at which of the flow's packets that was.\n\nExamples:\n  \
privpkt classify model.safetensors new.pcap\n  privpkt classify model.safetensors captures/ --format json --out flows.json"
)]
pub struct ClassifyArgs {
    /// Model file (from `privpkt train`).
    pub model: PathBuf,
    /// Capture files or directories.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: OutFormat,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also output every class's mean probability.
    #[arg(long)]
    pub probs: bool,
    /// Samples per inference batch.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

/// One classified flow.
#[derive(Serialize, Clone)]
pub struct FlowPrediction {
    pub capture: String,
    pub flow: u64,
    pub l4: String,
    pub endpoint_a: String,
    pub endpoint_b: String,
    pub first_ts_ns: i64,
    pub samples: u64,
    /// The flow's packet at which its last sample was taken: where a behaviour model decided
    /// (its N-th packet, or the flow's end).
    pub decided_at_packet: u64,
    pub predicted: String,
    pub confidence: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probs: Option<BTreeMap<String, f32>>,
}

#[derive(Default)]
struct FlowAcc {
    key: Option<FlowKey>,
    first_ts: i64,
    samples: u64,
    decided_at: u64,
    sum: Vec<f64>,
}

/// Buffers a file's samples into batches and accumulates per-flow probabilities.
struct Classifier<'m> {
    model: &'m LoadedModel,
    batch: usize,
    resolution: usize,
    dense: Vec<u8>,
    values: Vec<f32>,
    sparse: (Vec<u64>, Vec<u32>, Vec<u16>),
    owners: Vec<u64>,
    flows: BTreeMap<u64, FlowAcc>,
    err: Option<anyhow::Error>,
}

impl Classifier<'_> {
    fn note(&mut self, meta: &SampleMeta) {
        let k = self.model.meta().classes.len();
        let f = self.flows.entry(meta.flow_id).or_insert_with(|| FlowAcc {
            key: Some(meta.key),
            first_ts: meta.ts_ns,
            samples: 0,
            decided_at: 0,
            sum: vec![0.0; k],
        });
        f.first_ts = f.first_ts.min(meta.ts_ns);
        f.decided_at = f.decided_at.max(meta.flow_packets);
        self.owners.push(meta.flow_id);
        if self.owners.len() >= self.batch {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.owners.is_empty() || self.err.is_some() {
            return;
        }
        let batch = if self.sparse.0.len() > 1 {
            RawBatch::FlowPicSparse {
                resolution: self.resolution,
                indptr: &self.sparse.0,
                bins: &self.sparse.1,
                counts: &self.sparse.2,
            }
        } else if !self.values.is_empty() {
            RawBatch::Behaviour {
                input: self.model.meta().input,
                values: &self.values,
            }
        } else {
            RawBatch::DeepPacket(&self.dense)
        };
        match self.model.predict_proba(batch) {
            Ok(probs) => {
                for (owner, p) in self.owners.iter().zip(probs) {
                    if let Some(f) = self.flows.get_mut(owner) {
                        f.samples += 1;
                        for (s, x) in f.sum.iter_mut().zip(p) {
                            *s += x as f64;
                        }
                    }
                }
            }
            Err(e) => self.err = Some(e.into()),
        }
        self.owners.clear();
        self.dense.clear();
        self.values.clear();
        self.sparse = (vec![0], Vec::new(), Vec::new());
    }
}

impl SampleSink for Classifier<'_> {
    fn label(&mut self, _: &FlowKey) -> Option<u32> {
        Some(0) // classify every flow
    }

    fn packet(&mut self, meta: &SampleMeta, vector: &[u8; VECTOR_LEN]) {
        self.dense.extend_from_slice(vector);
        self.note(meta);
    }

    fn flowpic(&mut self, meta: &SampleMeta, image: &FlowPicImage) {
        let (indptr, bins, counts) = &mut self.sparse;
        for &(b, c) in &image.bins {
            bins.push(b);
            counts.push(c);
        }
        indptr.push(bins.len() as u64);
        self.note(meta);
    }

    fn behaviour(&mut self, meta: &SampleMeta, sample: &[f32]) {
        self.values.extend_from_slice(sample);
        self.note(meta);
    }
}

/// Classify every flow of `inputs`; returns the predictions and the packets read.
pub fn classify(
    model: &LoadedModel,
    inputs: &[PathBuf],
    batch: usize,
    with_probs: bool,
) -> Result<(Vec<FlowPrediction>, u64)> {
    let found = collect_captures(inputs)?;
    for n in &found.notes {
        eprintln!("warning: {n}");
    }
    let files = found.files;
    let meta = model.meta();
    let resolution = match meta.extract.repr {
        Representation::FlowPic(fp) => fp.resolution as usize,
        Representation::DeepPacket(_) | Representation::Behaviour(_) => 0,
    };
    let mut out = Vec::new();
    let mut packets = 0u64;
    let mut unreadable = Vec::new();
    for f in &files {
        let mut c = Classifier {
            model,
            batch: batch.max(1),
            resolution,
            dense: Vec::new(),
            values: Vec::new(),
            sparse: (vec![0], Vec::new(), Vec::new()),
            owners: Vec::new(),
            flows: BTreeMap::new(),
            err: None,
        };
        let rep = match extract_file(f, &meta.extract, &mut c) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("warning: {e}");
                unreadable.push(e.to_string());
                continue;
            }
        };
        c.flush();
        if let Some(e) = c.err.take() {
            return Err(e.context(format!("{}: inference failed", f.display())));
        }
        packets += rep.read.records;
        for (flow, acc) in c.flows {
            if acc.samples == 0 {
                continue;
            }
            let mean: Vec<f64> = acc.sum.iter().map(|s| s / acc.samples as f64).collect();
            let (best, conf) = mean
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, p)| (i, *p))
                .unwrap_or((0, 0.0));
            let key = acc.key.expect("set with the first sample");
            out.push(FlowPrediction {
                capture: f.display().to_string(),
                flow,
                l4: key.l4.name().to_string(),
                endpoint_a: key.a.to_string(),
                endpoint_b: key.b.to_string(),
                first_ts_ns: acc.first_ts,
                samples: acc.samples,
                decided_at_packet: acc.decided_at,
                predicted: meta.classes[best].clone(),
                confidence: conf as f32,
                probs: with_probs.then(|| {
                    meta.classes
                        .iter()
                        .cloned()
                        .zip(mean.iter().map(|&p| p as f32))
                        .collect()
                }),
            });
        }
    }
    if unreadable.len() == files.len() {
        anyhow::bail!(
            "none of the {} inputs could be read as a capture: {}",
            files.len(),
            unreadable.join("; ")
        );
    }
    Ok((out, packets))
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let t0 = Instant::now();
    let (preds, packets) = classify(&model, &a.inputs, a.batch, a.probs)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut w: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match a.format {
        OutFormat::Json => {
            serde_json::to_writer_pretty(&mut w, &preds)?;
            writeln!(w)?;
        }
        OutFormat::Csv => {
            let classes = &model.meta().classes;
            let mut header = vec![
                "capture",
                "flow",
                "l4",
                "endpoint_a",
                "endpoint_b",
                "first_ts_ns",
                "samples",
                "decided_at_packet",
                "predicted",
                "confidence",
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            if a.probs {
                header.extend(classes.iter().map(|c| format!("p_{c}")));
            }
            let mut csv = csv::Writer::from_writer(&mut w);
            csv.write_record(&header)?;
            for p in &preds {
                let mut rec = vec![
                    p.capture.clone(),
                    p.flow.to_string(),
                    p.l4.clone(),
                    p.endpoint_a.clone(),
                    p.endpoint_b.clone(),
                    p.first_ts_ns.to_string(),
                    p.samples.to_string(),
                    p.decided_at_packet.to_string(),
                    p.predicted.clone(),
                    format!("{:.4}", p.confidence),
                ];
                if let Some(pr) = &p.probs {
                    rec.extend(
                        classes
                            .iter()
                            .map(|c| format!("{:.4}", pr.get(c).copied().unwrap_or(0.0))),
                    );
                }
                csv.write_record(&rec)?;
            }
            csv.flush()?;
        }
    }
    w.flush()?;
    eprintln!(
        "classified {} flows ({packets} packets) in {secs:.2} s: {:.0} flows/s, {:.0} packets/s",
        preds.len(),
        preds.len() as f64 / secs,
        packets as f64 / secs
    );
    Ok(())
}

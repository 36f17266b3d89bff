//! Small Deep Packet datasets split by flow, written straight in privpkt's format, and a quick
//! stacked-autoencoder configuration for targets that train in seconds.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use privpkt_capture::{DeepPacketConfig, ExtractConfig, FlowConfig, Representation};
use privpkt_dataset::labels::LabelSpec;
use privpkt_dataset::npy::{Dtype, NpyWriter};
use privpkt_dataset::store::{CaptureEntry, ClassBalance, Manifest, Shard, Storage, Totals};
use privpkt_dataset::{Dataset, SplitConfig, SplitUnit};
use privpkt_nn::{Arch, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const CAPTURES: u32 = 4;

/// Flows per split and how their samples look.
pub struct Flows {
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub per_flow: usize,
    pub classes: usize,
    /// Random bytes and random labels (a model can only memorise them), instead of a
    /// class-specific byte band (learnable).
    pub noise: bool,
    /// Capture files are named by this tag: two datasets with the same tag share captures.
    pub tag: &'static str,
    /// First flow id (datasets with the same tag and overlapping ids share flows).
    pub first_flow: u64,
}

impl Flows {
    pub fn noise(train: usize, val: usize, test: usize) -> Flows {
        Flows {
            train,
            val,
            test,
            per_flow: 4,
            classes: 3,
            noise: true,
            tag: "a",
            first_flow: 0,
        }
    }
}

/// Writes the dataset: flow id f (counted over train, val, test) lies in capture f mod 4, so
/// each capture holds flows of every split.
pub fn write_flows(dir: &Path, spec: &Flows, seed: u64) -> Dataset {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let names: Vec<String> = (0..spec.classes).map(|c| format!("class{c}")).collect();
    let n_flows = spec.train + spec.val + spec.test;
    let n = n_flows * spec.per_flow;
    let mut w = NpyWriter::create(&dir.join("shards/samples-00000.npy"), Dtype::U8, &[1500]).unwrap();
    let mut csv = String::from("sample,capture,flow,direction,timestamp_ns,label,split,l4,src_port,dst_port\n");
    let mut class_counts = vec![0u64; spec.classes];
    let mut split_counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut i = 0u64;
    for f in 0..n_flows {
        let split = if f < spec.train {
            "train"
        } else if f < spec.train + spec.val {
            "val"
        } else {
            "test"
        };
        let c = if spec.noise {
            rng.random_range(0..spec.classes)
        } else {
            f % spec.classes
        };
        for _ in 0..spec.per_flow {
            let v: Vec<u8> = (0..1500)
                .map(|j| {
                    if !spec.noise && j >= 40 * c && j < 40 * c + 40 {
                        rng.random_range(150..=255)
                    } else if spec.noise {
                        rng.random::<u8>()
                    } else {
                        rng.random_range(0..60)
                    }
                })
                .collect();
            w.write_rows(&v).unwrap();
            csv += &format!(
                "{i},{},{},fwd,{},{},{split},tcp,443,{}\n",
                ((spec.first_flow + f as u64) % u64::from(CAPTURES)) as u32,
                spec.first_flow + f as u64,
                i * 1000,
                names[c],
                40000 + f
            );
            class_counts[c] += 1;
            split_counts
                .entry(split.into())
                .or_insert_with(|| vec![0; spec.classes])[c] += 1;
            i += 1;
        }
    }
    w.finish().unwrap();
    std::fs::write(dir.join("index.csv"), csv).unwrap();
    let total = n_flows as f64;
    let manifest = Manifest {
        format: "privpkt-dataset".into(),
        format_version: 1,
        privpkt_version: "0.1.0".into(),
        extract: ExtractConfig {
            repr: Representation::DeepPacket(DeepPacketConfig::default()),
            flow: FlowConfig::default(),
            max_per_flow: 0,
        },
        labels: LabelSpec {
            kind: "synthetic".into(),
            file: None,
            sha256: None,
            column: None,
            class_map: None,
        },
        classes: names,
        class_counts,
        split: SplitConfig {
            unit: SplitUnit::Flow,
            fractions: [
                spec.train as f64 / total,
                spec.val as f64 / total,
                spec.test as f64 / total,
            ],
            seed,
        },
        paper_comparable: false,
        split_counts,
        balance: ClassBalance {
            max_per_class: None,
            balance: false,
        },
        seed,
        storage: Storage::Dense {
            dtype: Dtype::U8,
            row_shape: vec![1500],
            shards: vec![Shard {
                file: "shards/samples-00000.npy".into(),
                rows: n as u64,
            }],
        },
        totals: Totals {
            samples: n as u64,
            ..Totals::default()
        },
        captures: (0..CAPTURES)
            .map(|c| CaptureEntry {
                path: format!("{}-{c}.pcap", spec.tag),
                sha256: format!("{}-capture-{c}", spec.tag),
                bytes: 0,
                format: Some("pcap".into()),
                linktypes: vec![1],
                records: 0,
                skipped: 0,
                flows: 0,
                samples: 0,
                error: None,
            })
            .collect(),
        warnings: vec![],
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    Dataset::open(dir).unwrap()
}

/// A stacked autoencoder trained long enough to memorise a few hundred samples.
pub fn overfit_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 1e-3,
        patience: None,
        seed: 1,
        sae_pretrain_epochs: 0,
        ..TrainConfig::new(Arch::Sae)
    }
}

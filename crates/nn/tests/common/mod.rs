//! Small synthetic datasets written straight in privpkt's dataset format: separable by
//! construction, so a model that trains correctly must learn them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use privpkt_capture::{BehaviourConfig, DeepPacketConfig, ExtractConfig, FlowConfig, FlowPicConfig, Representation};
use privpkt_dataset::labels::LabelSpec;
use privpkt_dataset::npy::{self, Dtype, NpyWriter};
use privpkt_dataset::store::{ClassBalance, Manifest, Shard, Storage, Totals};
use privpkt_dataset::{Dataset, SplitConfig, SplitUnit};
use privpkt_nn::{Arch, DpConfig, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub enum Kind {
    DeepPacket,
    FlowPicDense(u32),
    FlowPicSparse(u32),
    /// Flow behaviour: 10-packet series and the flow statistics.
    Behaviour,
}

/// The behaviour layout of [`Kind::Behaviour`].
pub fn behaviour_config() -> BehaviourConfig {
    BehaviourConfig {
        packets: 10,
        ..BehaviourConfig::behaviour()
    }
}

/// A flow of class c as a raw behaviour sample: class 0 sends small request/response pairs
/// every ~10 ms, class 1 bursts of large downstream packets ~0.1 ms apart; classes 2 and 3 the
/// same with sizes shifted by 300 bytes.
pub fn behaviour_sample(c: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    use privpkt_capture::behaviour::FlowStats;
    use privpkt_capture::{Direction, L4};
    let cfg = behaviour_config();
    let packets = 4 + rng.random_range(0..10usize);
    let mut series = Vec::new();
    let mut stats = FlowStats::default();
    let mut t = 0i64;
    for i in 0..packets {
        let (dir, size, gap_us) = if c.is_multiple_of(2) {
            let d = if i % 2 == 0 {
                Direction::Forward
            } else {
                Direction::Backward
            };
            (
                d,
                rng.random_range(60..200u32) + 300 * (c as u32 / 2),
                rng.random_range(8_000..12_000i64),
            )
        } else {
            let d = if i == 0 {
                Direction::Forward
            } else {
                Direction::Backward
            };
            (
                d,
                rng.random_range(1200..1500u32) - 300 * (c as u32 / 2),
                rng.random_range(50..150i64),
            )
        };
        let gap = if i == 0 { 0 } else { gap_us };
        t += gap * 1000;
        if i < cfg.packets as usize {
            let dv = if dir == Direction::Forward { 1.0 } else { -1.0 };
            series.extend_from_slice(&[
                1.0,
                dv,
                size as f32,
                (size - 40) as f32,
                gap as f32,
                0.,
                0.,
                0.,
                1.,
                1.,
                0.,
            ]);
        }
        stats.push(t, dir, size, size - 40, L4::Tcp, 0x18);
    }
    series.resize(cfg.series_len(), 0.0);
    stats.write(&mut series);
    series
}

/// Split of sample i: 3 of 5 train, 1 val, 1 test.
pub fn split_of(i: usize) -> &'static str {
    match i % 5 {
        0..=2 => "train",
        3 => "val",
        _ => "test",
    }
}

/// Class of sample i.
pub fn class_of(i: usize, classes: usize) -> usize {
    (i / 5) % classes
}

/// A Deep Packet vector of class c: low noise, with bytes 40c..40c+40 high.
pub fn dp_vector(c: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    (0..1500)
        .map(|j| {
            if j >= 40 * c && j < 40 * c + 40 {
                rng.random_range(150..=255)
            } else {
                rng.random_range(0..60)
            }
        })
        .collect()
}

/// A FlowPic of class c: packets in size rows band c, a little noise elsewhere.
pub fn fp_image(c: usize, r: usize, rng: &mut ChaCha8Rng) -> Vec<u16> {
    let mut img = vec![0u16; r * r];
    let band = r / 4;
    for _ in 0..40 {
        let row = c * band + rng.random_range(0..band);
        let col = rng.random_range(0..r);
        img[row * r + col] += rng.random_range(1..5);
    }
    for _ in 0..5 {
        img[rng.random_range(0..r * r)] += 1;
    }
    img
}

/// Write a dataset of `n` samples and `classes` classes (≤ 4 for FlowPics) to `dir`.
pub fn write_dataset(dir: &Path, kind: Kind, classes: usize, n: usize, seed: u64) -> Dataset {
    std::fs::create_dir_all(dir.join("shards")).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let names: Vec<String> = (0..classes).map(|c| format!("class{c}")).collect();
    let (repr, storage) = match kind {
        Kind::DeepPacket => {
            let mut w = NpyWriter::create(&dir.join("shards/samples-00000.npy"), Dtype::U8, &[1500]).unwrap();
            for i in 0..n {
                w.write_rows(&dp_vector(class_of(i, classes), &mut rng)).unwrap();
            }
            w.finish().unwrap();
            (
                Representation::DeepPacket(DeepPacketConfig::default()),
                Storage::Dense {
                    dtype: Dtype::U8,
                    row_shape: vec![1500],
                    shards: vec![Shard {
                        file: "shards/samples-00000.npy".into(),
                        rows: n as u64,
                    }],
                },
            )
        }
        Kind::FlowPicDense(r) | Kind::FlowPicSparse(r) => {
            let ru = r as usize;
            let images: Vec<Vec<u16>> = (0..n).map(|i| fp_image(class_of(i, classes), ru, &mut rng)).collect();
            let cfg = FlowPicConfig {
                resolution: r,
                ..FlowPicConfig::mini()
            };
            let storage = if let Kind::FlowPicDense(_) = kind {
                // Two shards, to exercise reading across shard boundaries.
                let half = n / 2;
                let mut shards = Vec::new();
                for (s, range) in [(0, 0..half), (1, half..n)] {
                    let file = format!("shards/samples-{s:05}.npy");
                    let mut w = NpyWriter::create(&dir.join(&file), Dtype::U16, &[r as u64, r as u64]).unwrap();
                    for img in &images[range.clone()] {
                        let b: Vec<u8> = img.iter().flat_map(|v| v.to_le_bytes()).collect();
                        w.write_rows(&b).unwrap();
                    }
                    w.finish().unwrap();
                    shards.push(Shard {
                        file,
                        rows: range.len() as u64,
                    });
                }
                Storage::Dense {
                    dtype: Dtype::U16,
                    row_shape: vec![r as u64, r as u64],
                    shards,
                }
            } else {
                let (mut indptr, mut bins, mut counts) = (vec![0u64], Vec::new(), Vec::new());
                for img in &images {
                    for (b, &c) in img.iter().enumerate() {
                        if c > 0 {
                            bins.push(b as u32);
                            counts.push(c);
                        }
                    }
                    indptr.push(bins.len() as u64);
                }
                npy::write_1d(&dir.join("flowpic_indptr.npy"), Dtype::U64, &indptr).unwrap();
                npy::write_1d(&dir.join("flowpic_bins.npy"), Dtype::U32, &bins).unwrap();
                npy::write_1d(&dir.join("flowpic_counts.npy"), Dtype::U16, &counts).unwrap();
                Storage::Sparse {
                    resolution: r,
                    indptr: "flowpic_indptr.npy".into(),
                    bins: "flowpic_bins.npy".into(),
                    counts: "flowpic_counts.npy".into(),
                }
            };
            (Representation::FlowPic(cfg), storage)
        }
        Kind::Behaviour => {
            let cfg = behaviour_config();
            let len = cfg.sample_len() as u64;
            let mut w = NpyWriter::create(&dir.join("shards/samples-00000.npy"), Dtype::F32, &[len]).unwrap();
            for i in 0..n {
                let b: Vec<u8> = behaviour_sample(class_of(i, classes), &mut rng)
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                w.write_rows(&b).unwrap();
            }
            w.finish().unwrap();
            (
                Representation::Behaviour(cfg),
                Storage::Dense {
                    dtype: Dtype::F32,
                    row_shape: vec![len],
                    shards: vec![Shard {
                        file: "shards/samples-00000.npy".into(),
                        rows: n as u64,
                    }],
                },
            )
        }
    };
    let mut csv = String::from("sample,capture,flow,direction,timestamp_ns,label,split,l4,src_port,dst_port\n");
    let mut class_counts = vec![0u64; classes];
    let mut split_counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for i in 0..n {
        let c = class_of(i, classes);
        class_counts[c] += 1;
        split_counts
            .entry(split_of(i).into())
            .or_insert_with(|| vec![0; classes])[c] += 1;
        csv += &format!(
            "{i},{c},{},fwd,{},{},{},tcp,443,{}\n",
            i / 5,
            i as u64 * 1000,
            names[c],
            split_of(i),
            40000 + i
        );
    }
    std::fs::write(dir.join("index.csv"), csv).unwrap();
    let manifest = Manifest {
        format: "privpkt-dataset".into(),
        format_version: 1,
        privpkt_version: "0.1.0".into(),
        extract: ExtractConfig {
            repr,
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
            fractions: [0.6, 0.2, 0.2],
            seed,
        },
        paper_comparable: false,
        split_counts,
        balance: ClassBalance {
            max_per_class: None,
            balance: false,
        },
        seed,
        storage,
        totals: Totals {
            samples: n as u64,
            ..Totals::default()
        },
        captures: vec![],
        warnings: vec![],
    };
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    Dataset::open(dir).unwrap()
}

/// Flow-level DP-SGD at `epsilon` on the mini-FlowPic CNN with seeded noise, small enough for
/// the FlowPic datasets above to train in seconds: what the DP, canary and audit tests run.
pub fn private_flowpic(epsilon: f64, epochs: usize) -> TrainConfig {
    let mut dp = DpConfig::new(epsilon);
    dp.seeded = true;
    dp.unit_cap = 4;
    TrainConfig {
        epochs,
        batch_size: 8,
        lr: 3e-3,
        patience: None,
        seed: 3,
        dp: Some(dp),
        ..TrainConfig::new(Arch::FlowPicMini)
    }
}

//! `prepare` end to end on synthetic and hand-built captures.

use std::path::{Path, PathBuf};

use privpkt_capture::{DeepPacketConfig, ExtractConfig, FlowConfig, FlowPicConfig, Representation};
use privpkt_dataset::labels::{ClassMap, FlowLabels, LabelSource, LabelSpec, PathRules};
use privpkt_dataset::prepare::{prepare, PrepareConfig, Progress};
use privpkt_dataset::store::ClassBalance;
use privpkt_dataset::{Dataset, SplitConfig, SplitUnit};
use privpkt_synth::writer::{linktype, PcapWriter, WriterOptions};
use privpkt_synth::{generate, Category, SynthConfig};

fn synth(dir: &Path) -> PathBuf {
    let caps = dir.join("caps");
    let cfg = SynthConfig {
        seed: 5,
        categories: vec![Category::Chat, Category::Voip, Category::FileTransfer],
        vpn: true,
        captures_per_class: 3,
        flows_per_capture: 4,
        max_packets_per_flow: 60,
        ..SynthConfig::default()
    };
    generate(&cfg, &caps, &|_| {}).unwrap();
    caps
}

fn csv_labels(caps: &Path) -> (LabelSource, LabelSpec) {
    let f = caps.join("flows_labels.csv");
    let l = FlowLabels::load(&f, &"category+vpn".parse().unwrap()).unwrap();
    (
        LabelSource::Flows(l),
        LabelSpec {
            kind: "flow-csv".into(),
            file: Some("flows_labels.csv".into()),
            sha256: None,
            column: Some("category+vpn".into()),
            class_map: None,
        },
    )
}

fn config(inputs: Vec<PathBuf>, out: PathBuf, labels: (LabelSource, LabelSpec), repr: Representation) -> PrepareConfig {
    let mut map = ClassMap::default();
    map.rules.insert("dns".into(), None);
    map.rules.insert("vpn_dns".into(), None);
    PrepareConfig {
        inputs,
        out,
        extract: ExtractConfig {
            repr,
            flow: FlowConfig::default(),
            max_per_flow: 32,
        },
        labels: labels.0,
        label_spec: labels.1,
        class_map: map,
        classes: None,
        split: SplitConfig {
            unit: SplitUnit::Flow,
            fractions: [0.6, 0.2, 0.2],
            seed: 3,
        },
        balance: ClassBalance {
            max_per_class: None,
            balance: false,
        },
        seed: 3,
        force: false,
        shard_rows: 500,
    }
}

fn dp() -> Representation {
    Representation::DeepPacket(DeepPacketConfig::default())
}

#[test]
fn deep_packet_dataset_is_deterministic_and_split_by_flow() {
    let d = tempfile::tempdir().unwrap();
    let caps = synth(d.path());
    let a = d.path().join("a");
    let b = d.path().join("b");
    prepare(&config(vec![caps.clone()], a.clone(), csv_labels(&caps), dp()), &|_| {}).unwrap();
    prepare(&config(vec![caps.clone()], b.clone(), csv_labels(&caps), dp()), &|_| {}).unwrap();
    let da = Dataset::open(&a).unwrap();
    let m = &da.manifest;
    assert_eq!(
        m.classes,
        [
            "chat",
            "file_transfer",
            "voip",
            "vpn_chat",
            "vpn_file_transfer",
            "vpn_voip"
        ]
    );
    assert!(m.totals.samples > 1000);
    assert!(m.totals.capped_per_flow > 0, "per-flow cap applied");
    assert!(m.totals.dropped_by_rule > 0, "handshakes, ACKs and DNS dropped");
    let Storage::Dense { shards, .. } = &m.storage else {
        panic!("dense")
    };
    // parts of ≥ 250 rows are renamed into shards, smaller ones merged up to 500 rows
    assert!(shards.len() > 1, "{shards:?}");
    assert!(shards.iter().any(|s| s.rows >= 250), "{shards:?}");
    for f in ["manifest.json", "index.csv", "report.json"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f} differs"
        );
    }
    for s in shards {
        assert_eq!(
            std::fs::read(a.join(&s.file)).unwrap(),
            std::fs::read(b.join(&s.file)).unwrap()
        );
    }
    let index = da.read_index().unwrap();
    let mut split_of = std::collections::HashMap::new();
    for r in &index {
        let prev = split_of.entry((r.capture, r.flow)).or_insert(r.split.clone());
        assert_eq!(*prev, r.split, "flow {}/{} straddles splits", r.capture, r.flow);
    }
    for s in ["train", "val", "test"] {
        assert!(
            m.split_counts[s].iter().all(|&n| n > 0),
            "every class in {s}: {:?}",
            m.split_counts
        );
    }
    let (_, data) = da.read_dense().unwrap();
    assert_eq!(data.len(), index.len() * 1500);
    // honest masking: IPv4 addresses and ports are zero in every vector
    for v in data.chunks_exact(1500) {
        if v[0] >> 4 == 4 {
            let ihl = (v[0] & 15) as usize * 4;
            assert!(v[12..20].iter().all(|&b| b == 0));
            assert!(v[ihl..ihl + 4].iter().all(|&b| b == 0));
        }
    }
    // sha256 of the captures is recorded
    assert!(m.captures.iter().all(|c| c.sha256.len() == 64));
    // an existing output is refused without force
    let e = prepare(&config(vec![caps.clone()], a.clone(), csv_labels(&caps), dp()), &|_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn interrupted_prepare_leaves_no_complete_dataset() {
    let d = tempfile::tempdir().unwrap();
    let caps = synth(d.path());
    let out = d.path().join("ds");
    let cfg = config(vec![caps.clone()], out.clone(), csv_labels(&caps), dp());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prepare(&cfg, &|p| {
            if let Progress::Phase("writing") = p {
                panic!("simulated interruption");
            }
        })
    }));
    assert!(r.is_err());
    assert!(!out.exists(), "no directory at the output path");
    assert!(Dataset::open(&out).is_err());
}

#[test]
fn undersampling_and_packet_split_are_recorded() {
    let d = tempfile::tempdir().unwrap();
    let caps = synth(d.path());
    let out = d.path().join("bal");
    let mut cfg = config(vec![caps.clone()], out.clone(), csv_labels(&caps), dp());
    cfg.balance.balance = true;
    cfg.split.unit = SplitUnit::Packet;
    prepare(&cfg, &|_| {}).unwrap();
    let m = Dataset::open(&out).unwrap().manifest;
    let n = m.class_counts[0];
    assert!(m.class_counts.iter().all(|&c| c == n), "{:?}", m.class_counts);
    assert!(m.totals.undersampled > 0);
    assert!(m.paper_comparable);
    assert!(m.warnings[0].contains("not an honest estimate"));
}

#[test]
fn a_fixed_class_list_keeps_absent_classes_and_its_order() {
    let d = tempfile::tempdir().unwrap();
    let caps = synth(d.path());
    let out = d.path().join("fixed");
    let mut cfg = config(vec![caps.clone()], out.clone(), csv_labels(&caps), dp());
    // A site with no streaming traffic, whose federation agreed on these classes; vpn_* are
    // not among them, and balancing must not be emptied by the absent class.
    let fixed = ["voip", "streaming", "chat", "file_transfer"];
    cfg.classes = Some(fixed.iter().map(|s| s.to_string()).collect());
    cfg.balance.balance = true;
    prepare(&cfg, &|_| {}).unwrap();
    let m = Dataset::open(&out).unwrap().manifest;
    assert_eq!(m.classes, fixed);
    assert_eq!(m.class_counts[1], 0, "streaming is kept, empty");
    assert!(
        m.class_counts[0] > 0 && m.class_counts[0] == m.class_counts[2],
        "{:?}",
        m.class_counts
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("no sample") && w.contains("streaming")),
        "{:?}",
        m.warnings
    );
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("outside the fixed class list") && w.contains("vpn_chat")),
        "{:?}",
        m.warnings
    );
    let rows = Dataset::open(&out).unwrap().read_index().unwrap();
    assert!(rows
        .iter()
        .all(|r| fixed[..].contains(&r.label.as_str()) && r.label != "streaming"));

    cfg.classes = Some(vec!["chat".into(), "chat".into()]);
    cfg.out = d.path().join("dup");
    let e = prepare(&cfg, &|_| {}).err().expect("refused").to_string();
    assert!(e.contains("`chat` twice"), "{e}");
    cfg.classes = Some(vec!["streaming".into()]);
    cfg.out = d.path().join("none");
    let e = prepare(&cfg, &|_| {}).err().expect("refused").to_string();
    assert!(e.contains("no labelled samples"), "{e}");
}

/// One UDP flow with known times and sizes, written as raw IP.
fn hand_flow(path: &Path) -> Vec<(f64, usize, bool)> {
    let mut pkts = Vec::new();
    for i in 0..12 {
        pkts.push((0.5 * i as f64, 100 + 37 * i, true));
    }
    for i in 0..3 {
        pkts.push((1.0 + i as f64, 60, false));
    }
    // a second block for the forward direction: 10 packets at 20..24.5 s
    for i in 0..10 {
        pkts.push((20.0 + 0.5 * i as f64, 1400, true));
    }
    pkts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(f, linktype::RAW, WriterOptions::default()).unwrap();
    for &(t, ip_len, fwd) in &pkts {
        let payload = vec![0u8; ip_len - 28];
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let b = if fwd {
            b.udp(4000, 5000)
        } else {
            etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64).udp(5000, 4000)
        };
        let mut buf = Vec::new();
        b.write(&mut buf, &payload).unwrap();
        assert_eq!(buf.len(), ip_len);
        w.write_packet(1_700_000_000_000_000_000 + (t * 1e9) as u64, &buf)
            .unwrap();
    }
    w.finish().unwrap();
    pkts
}

#[test]
fn flowpic_histograms_match_a_hand_computation() {
    let d = tempfile::tempdir().unwrap();
    let cap = d.path().join("one.pcap");
    let pkts = hand_flow(&cap);
    let rules = d.path().join("rules.csv");
    std::fs::write(&rules, "pattern,label\n*.pcap,x\n").unwrap();
    for (res, block) in [(32u32, 15.0f64), (100, 15.0)] {
        let out = d.path().join(format!("fp{res}"));
        let labels = (
            LabelSource::Rules(PathRules::load(&rules).unwrap()),
            LabelSpec {
                kind: "path-rules".into(),
                file: None,
                sha256: None,
                column: None,
                class_map: None,
            },
        );
        let repr = Representation::FlowPic(FlowPicConfig {
            block_s: block,
            resolution: res,
            min_packets: 10,
            bidirectional: false,
        });
        let mut cfg = config(vec![cap.clone()], out.clone(), labels, repr);
        cfg.extract.max_per_flow = 0;
        // One labelled class in this capture: a fixed list makes it a (two-class) dataset.
        cfg.classes = Some(vec!["x".into(), "y".into()]);
        prepare(&cfg, &|_| {}).unwrap();
        let ds = Dataset::open(&out).unwrap();
        let index = ds.read_index().unwrap();
        // forward block 0 (12 packets), forward block 1 (10); backward has 3 < 10: dropped
        assert_eq!(index.len(), 2, "{index:?}");
        assert!(index.iter().all(|r| r.direction == "fwd"));
        let r = res as usize;
        let images: Vec<Vec<u16>> = if res <= 64 {
            let (_, data) = ds.read_dense().unwrap();
            data.chunks_exact(r * r * 2)
                .map(|c| c.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect())
                .collect()
        } else {
            let sp = ds.read_sparse().unwrap();
            (0..2)
                .map(|i| privpkt_capture::flowpic::densify(&sp.image(i), res))
                .collect()
        };
        for (bi, img) in images.iter().enumerate() {
            let mut want = vec![0u16; r * r];
            for &(t, size, fwd) in &pkts {
                let k = (t / block).floor() as usize;
                if !fwd || k != bi {
                    continue;
                }
                let row = size * r / 1501;
                let col = (((t - k as f64 * block) / block) * r as f64).floor() as usize;
                want[row * r + col.min(r - 1)] += 1;
            }
            assert_eq!(img, &want, "R={res} block {bi}");
        }
    }
}

#[test]
fn bad_inputs_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let caps = synth(d.path());
    let junk = caps.join("zz_junk.pcap");
    std::fs::write(&junk, b"definitely not a capture").unwrap();
    let out = d.path().join("ds");
    // explicitly named junk file: reported, the rest still prepared
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&caps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    inputs.sort();
    prepare(&config(inputs, out.clone(), csv_labels(&caps), dp()), &|_| {}).unwrap();
    let m = Dataset::open(&out).unwrap().manifest;
    let junk_entry = m.captures.iter().find(|c| c.path.ends_with("zz_junk.pcap")).unwrap();
    assert!(junk_entry.error.as_ref().unwrap().contains("not a pcap or pcapng file"));
    assert!(m.warnings.iter().any(|w| w.contains("zz_junk.pcap")));
    assert!(m.totals.samples > 0);
    let e = prepare(
        &config(vec![d.path().join("nope")], d.path().join("x"), csv_labels(&caps), dp()),
        &|_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("nope") && e.contains("no such file"), "{e}");
}

use privpkt_dataset::store::Storage;

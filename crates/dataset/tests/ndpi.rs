//! The real nDPI corpus through `prepare` when `../shared/data/ndpi` is present: every file
//! reported, and the labels CSV reaching ≥ 99 % of the TCP/UDP packets of the captures it
//! covers (its README: fewer than 1 % stay unlabelled).

use std::collections::HashSet;
use std::path::PathBuf;

use privpkt_capture::{DeepPacketConfig, ExtractConfig, FlowConfig, Representation};
use privpkt_dataset::labels::{ClassMap, FlowLabels, LabelSource, LabelSpec};
use privpkt_dataset::prepare::prepare;
use privpkt_dataset::store::ClassBalance;
use privpkt_dataset::{Dataset, SplitConfig, SplitUnit};

fn corpus() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ndpi");
    d.join("pcap").is_dir().then_some(d)
}

#[test]
fn ndpi_corpus_labels_and_reports() {
    let Some(root) = corpus() else {
        eprintln!("SKIPPED: ../shared/data/ndpi not found (it ships beside the repository in CI only)");
        return;
    };
    let csv = root.join("flows_labels.csv");
    let labels = FlowLabels::load(&csv, &"category".parse().unwrap()).unwrap();
    let listed: HashSet<String> = csv::Reader::from_path(&csv)
        .unwrap()
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ndpi");
    let cfg = privpkt_dataset::PrepareConfig {
        inputs: vec![root.join("pcap")],
        out: out.clone(),
        extract: ExtractConfig {
            repr: Representation::DeepPacket(DeepPacketConfig::default()),
            flow: FlowConfig::default(),
            max_per_flow: 64,
        },
        labels: LabelSource::Flows(labels),
        label_spec: LabelSpec {
            kind: "flow-csv".into(),
            file: Some(csv.display().to_string()),
            sha256: None,
            column: Some("category".into()),
            class_map: None::<ClassMap>,
        },
        class_map: ClassMap::default(),
        classes: None,
        split: SplitConfig {
            unit: SplitUnit::Capture,
            fractions: [0.7, 0.1, 0.2],
            seed: 1,
        },
        balance: ClassBalance {
            max_per_class: None,
            balance: false,
        },
        seed: 1,
        force: false,
        shard_rows: 1 << 20,
    };
    let outcome = prepare(&cfg, &|_| {}).unwrap();
    assert_eq!(outcome.reports.len(), 543);
    let (mut packets, mut unlabelled) = (0u64, 0u64);
    for r in &outcome.reports {
        let name = r.path.rsplit('/').next().unwrap();
        if let (Some(x), true) = (&r.extract, listed.contains(name)) {
            packets += x.tcp_udp_packets;
            unlabelled += x.unlabelled_packets;
        }
    }
    let frac = 1.0 - unlabelled as f64 / packets as f64;
    eprintln!("labelled fraction of TCP/UDP packets in labelled captures: {frac:.4}");
    assert!(frac >= 0.99, "{frac}");
    let ds = Dataset::open(&out).unwrap();
    assert!(ds.manifest.classes.len() >= 15);
    assert_eq!(ds.read_index().unwrap().len() as u64, ds.manifest.totals.samples);
    // the corpus's odd link-type field (0x40000000) and its corrupt record are reported, not fatal
    let fuzz = outcome
        .reports
        .iter()
        .find(|r| r.path.ends_with("fuzz-2021-10-13.pcap"))
        .unwrap();
    let x = fuzz.extract.as_ref().unwrap();
    assert!(
        x.read.skipped.keys().any(|k| k.contains("0x40000000")),
        "{:?}",
        x.read.skipped
    );
    assert!(x.read.stopped_early.is_some());
    // frames that are not TCP/UDP are counted by reason
    let not_ip: u64 = outcome
        .reports
        .iter()
        .filter_map(|r| {
            r.extract
                .as_ref()?
                .not_decoded
                .get("not TCP/UDP (ICMP, tunnels, ...)")
                .map(|s| s.count)
        })
        .sum();
    assert!(not_ip > 0);
}

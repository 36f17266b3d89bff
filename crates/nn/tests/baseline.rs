//! Header-only baseline on hand-made index rows and on a small synthetic dataset.

use std::collections::HashSet;
use std::path::Path;

use privpkt_capture::{DeepPacketConfig, ExtractConfig, FlowConfig, Representation};
use privpkt_dataset::labels::{ClassMap, FlowLabels, LabelSource, LabelSpec};
use privpkt_dataset::prepare::{prepare, PrepareConfig};
use privpkt_dataset::store::ClassBalance;
use privpkt_dataset::{Dataset, IndexRow, Split, SplitConfig, SplitUnit};
use privpkt_nn::baseline::{evaluate_baseline, evaluate_rows, Backoff, BaselineError, HeaderBaseline};
use privpkt_synth::{generate, Category, SynthConfig};

fn classes(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// One index row; each row is its own flow unless `flow` repeats.
fn row(sample: u64, flow: u64, label: &str, split: &str, l4: &str, src_port: u16, dst_port: u16) -> IndexRow {
    IndexRow {
        sample,
        capture: 0,
        flow,
        direction: "fwd".into(),
        timestamp_ns: sample as i64,
        label: label.into(),
        split: split.into(),
        l4: l4.into(),
        src_port,
        dst_port,
    }
}

#[test]
fn ports_that_determine_the_class_give_accuracy_one() {
    let names = classes(&["dns", "ssh", "web"]);
    let rows = vec![
        row(0, 0, "web", "train", "tcp", 50000, 443),
        row(1, 0, "web", "train", "tcp", 443, 50000), // reverse direction, same flow
        row(2, 1, "ssh", "train", "tcp", 41000, 22),
        row(3, 2, "dns", "train", "udp", 53, 33333),
        // test: known pairs, and new client ports of known services (lower-port back-off)
        row(4, 3, "web", "test", "tcp", 443, 50000),
        row(5, 4, "web", "test", "tcp", 61000, 443),
        row(6, 4, "web", "test", "tcp", 443, 61000),
        row(7, 5, "ssh", "test", "tcp", 22, 41001),
        row(8, 6, "dns", "test", "udp", 40000, 53),
    ];
    let r = evaluate_rows(&rows, &names, Split::Test).unwrap();
    assert_eq!(r.n, 5);
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.macro_f1, 1.0);
    assert_eq!(r.balanced_accuracy, 1.0);
    let fl = r.flow_level.unwrap();
    assert_eq!(fl.flows, 4);
    assert_eq!(fl.accuracy, 1.0);
}

#[test]
fn backoff_chain() {
    let names = classes(&["a", "b", "c"]);
    let train = vec![
        // pair (443, 50000) → a, but port 443 overall → b (2 vs 1)
        row(0, 0, "a", "train", "tcp", 50000, 443),
        row(1, 1, "b", "train", "tcp", 50001, 443),
        row(2, 2, "b", "train", "tcp", 443, 50002),
        // tcp overall: b (2 + 1) beats a (1 + 1 from port 80) and c
        row(3, 3, "a", "train", "tcp", 80, 40000),
        row(4, 4, "b", "train", "tcp", 80, 40001),
        row(5, 5, "c", "train", "udp", 53, 40000),
    ];
    let m = HeaderBaseline::fit(&train, &names).unwrap();
    let p = |l4: &str, s: u16, d: u16| m.predict_with_backoff(&row(9, 9, "a", "test", l4, s, d));
    assert_eq!(p("tcp", 443, 50000), (0, Backoff::PortPair));
    assert_eq!(p("tcp", 50000, 443), (0, Backoff::PortPair), "unordered pair");
    assert_eq!(p("tcp", 52000, 443), (1, Backoff::LowerPort));
    // port 80: a and b tie at 1 each → lowest class id
    assert_eq!(p("tcp", 80, 45000), (0, Backoff::LowerPort));
    assert_eq!(p("tcp", 8443, 60000), (1, Backoff::L4));
    assert_eq!(p("udp", 5353, 5353), (2, Backoff::L4));
    // an unseen transport protocol: global majority (b: 3 of 6)
    assert_eq!(p("sctp", 53, 40000), (1, Backoff::Global));
    assert_eq!(m.predict(&row(9, 9, "a", "test", "udp", 53, 40000)), 2);
    assert_eq!(m.classes(), names.as_slice());

    // Only TCP in training: UDP falls through to the global majority.
    let tcp_only = HeaderBaseline::fit(&train[..3], &names).unwrap();
    assert_eq!(
        tcp_only.predict_with_backoff(&row(9, 9, "c", "test", "udp", 53, 40000)),
        (1, Backoff::Global)
    );
}

#[test]
fn fitted_on_train_only() {
    let names = classes(&["web", "game"]);
    let rows = vec![
        row(0, 0, "web", "train", "tcp", 50000, 443),
        row(1, 1, "web", "train", "tcp", 50001, 443),
        // the only "game" samples are in val and test, on a port training never saw
        row(2, 2, "game", "val", "tcp", 27015, 50000),
        row(3, 3, "game", "test", "tcp", 27015, 50000),
        row(4, 4, "game", "test", "tcp", 50000, 27015),
        row(5, 5, "web", "test", "tcp", 50002, 443),
    ];
    let r = evaluate_rows(&rows, &names, Split::Test).unwrap();
    // A memorising baseline would get every test sample right; this one predicts tcp's
    // training majority (web) for the unseen port.
    assert_eq!(r.confusion, vec![vec![1, 0], vec![2, 0]]);
    assert_eq!(r.per_class[1].recall, 0.0);
    assert_eq!(r.per_class[1].predicted, 0);
    let val = evaluate_rows(&rows, &names, Split::Val).unwrap();
    assert_eq!(val.confusion, vec![vec![0, 0], vec![1, 0]]);

    // Fitting on test rows directly is refused.
    let e = HeaderBaseline::fit(&rows, &names).unwrap_err();
    assert!(e.to_string().contains("test split"), "{e}");
}

#[test]
fn bad_input_is_an_error() {
    let names = classes(&["a", "b"]);
    let ok = row(0, 0, "a", "train", "tcp", 1, 2);
    assert!(HeaderBaseline::fit(&[], &names).is_err());
    assert!(HeaderBaseline::fit(std::slice::from_ref(&ok), &[]).is_err());
    let e = HeaderBaseline::fit(&[row(0, 0, "zzz", "train", "tcp", 1, 2)], &names).unwrap_err();
    assert!(e.to_string().contains("zzz"), "{e}");
    assert!(HeaderBaseline::fit(std::slice::from_ref(&ok), &classes(&["a", "a"])).is_err());
    // no rows in the evaluated split
    let e = evaluate_rows(std::slice::from_ref(&ok), &names, Split::Test).unwrap_err();
    assert!(matches!(e, BaselineError::Invalid(_)), "{e}");
    // no training rows
    assert!(evaluate_rows(&[row(0, 0, "a", "test", "tcp", 1, 2)], &names, Split::Test).is_err());
    // an unknown label among the evaluated rows
    let rows = [ok.clone(), row(1, 1, "zzz", "test", "tcp", 1, 2)];
    assert!(evaluate_rows(&rows, &names, Split::Test).is_err());
}

fn synth_dataset(dir: &Path) -> Dataset {
    let caps = dir.join("caps");
    let cfg = SynthConfig {
        seed: 5,
        categories: vec![Category::Chat, Category::Voip, Category::FileTransfer],
        vpn: false,
        captures_per_class: 2,
        flows_per_capture: 4,
        max_packets_per_flow: 30,
        ..SynthConfig::default()
    };
    generate(&cfg, &caps, &|_| {}).unwrap();
    let labels = FlowLabels::load(&caps.join("flows_labels.csv"), &"category+vpn".parse().unwrap()).unwrap();
    let mut map = ClassMap::default();
    map.rules.insert("dns".into(), None);
    let out = dir.join("ds");
    let pc = PrepareConfig {
        inputs: vec![caps],
        out: out.clone(),
        extract: ExtractConfig {
            repr: Representation::DeepPacket(DeepPacketConfig::default()),
            flow: FlowConfig::default(),
            max_per_flow: 16,
        },
        labels: LabelSource::Flows(labels),
        label_spec: LabelSpec {
            kind: "flow-csv".into(),
            file: Some("flows_labels.csv".into()),
            sha256: None,
            column: Some("category+vpn".into()),
            class_map: None,
        },
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
    };
    prepare(&pc, &|_| {}).unwrap();
    Dataset::open(&out).unwrap()
}

#[test]
fn evaluate_baseline_on_a_synthetic_dataset() {
    let d = tempfile::tempdir().unwrap();
    let ds = synth_dataset(d.path());
    let index = ds.read_index().unwrap();
    let test: Vec<&IndexRow> = index.iter().filter(|r| r.split == "test").collect();
    assert!(!test.is_empty());
    let r = evaluate_baseline(&ds, Split::Test).unwrap();
    assert_eq!(r.classes, ds.manifest.classes);
    assert_eq!(r.n, test.len() as u64);
    let flows: HashSet<(u32, u64)> = test.iter().map(|r| (r.capture, r.flow)).collect();
    assert_eq!(r.flow_level.as_ref().unwrap().flows, flows.len() as u64);
    assert!((0.0..=1.0).contains(&r.macro_f1));
    assert_eq!(r, evaluate_rows(&index, &ds.manifest.classes, Split::Test).unwrap());
}

//! privpkt's models behind the FlClient trait: exported initial arrays, training and evaluation
//! replies, DP-SGD accounting across rounds, and arrays that do not fit refused by name.

// The synthetic dataset writer of the model tests (written straight in privpkt's format).
#[path = "../../nn/tests/common/mod.rs"]
mod common;

use common::{write_dataset, Kind};
use privpkt_dataset::npy::{self, Dtype};
use privpkt_dataset::{Dataset, Split};
use privpkt_flower::proto::config_record_value::Value as C;
use privpkt_flower::records::{config_record, Array, ArrayRecord, Metric};
use privpkt_flower::trainer::{ModelDescription, PrivpktTrainer, TrainerConfig, MODEL_JSON};
use privpkt_flower::FlClient;
use privpkt_nn::{load_model, Arch, DpConfig, TrainConfig};

fn config(dp: Option<DpConfig>) -> TrainerConfig {
    TrainerConfig {
        train: TrainConfig {
            batch_size: 16,
            lr: 3e-3,
            seed: 5,
            dp,
            ..TrainConfig::new(Arch::FlowPicMini)
        },
        local_epochs: 1,
        planned_rounds: None,
        eval_split: Split::Test,
        save_global: None,
    }
}

fn dataset(dir: &std::path::Path, classes: usize) -> Dataset {
    write_dataset(dir, Kind::FlowPicDense(16), classes, 120, 3)
}

/// The arrays `--export-initial` wrote, in model.json's order.
fn exported(dir: &std::path::Path) -> (ModelDescription, ArrayRecord) {
    let desc: ModelDescription = serde_json::from_str(&std::fs::read_to_string(dir.join(MODEL_JSON)).unwrap()).unwrap();
    let items = desc
        .params
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bytes = std::fs::read(dir.join(&t.file)).unwrap();
            let (info, _) = npy::parse_bytes(&bytes).unwrap();
            assert_eq!(info.dtype, Dtype::F32);
            let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
            assert_eq!(shape, t.shape);
            (
                i.to_string(),
                Array {
                    dtype: "float32".into(),
                    shape,
                    stype: "numpy.ndarray".into(),
                    data: bytes,
                },
            )
        })
        .collect();
    (desc, ArrayRecord { items })
}

fn get(metrics: &[(String, Metric)], key: &str) -> f64 {
    match metrics
        .iter()
        .find(|m| m.0 == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
    {
        Metric::Int(i) => i as f64,
        Metric::Float(f) => f,
    }
}

#[test]
fn exported_model_trains_evaluates_and_is_saved() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(&d.path().join("ds"), 4);
    let mut cfg = config(None);
    cfg.save_global = Some(d.path().join("global.safetensors"));
    let mut t = PrivpktTrainer::new(&ds, cfg).unwrap();
    t.export_initial(&d.path().join("init")).unwrap();
    let (desc, arrays) = exported(&d.path().join("init"));
    assert_eq!(desc.classes, ["class0", "class1", "class2", "class3"]);
    assert_eq!(desc.params.len(), 8);
    assert_eq!(desc.params[0].name, "conv1.weight");
    let fp = config_record(vec![
        ("server-round", C::Sint64(1)),
        ("privpkt-model", C::String(desc.fingerprint.clone())),
        ("local-epochs", C::Sint64(2)),
    ]);
    let r = t.train(&arrays, &fp).unwrap();
    assert_eq!(r.num_examples, 72);
    // The server's local-epochs (2) overrides the node's 1.
    assert_eq!(get(&r.metrics, "train_samples_seen"), 144.0);
    assert!(get(&r.metrics, "train_loss").is_finite());
    assert_eq!(r.arrays.items.len(), 8);
    let keys: Vec<&str> = r.arrays.items.iter().map(|i| i.0.as_str()).collect();
    assert_eq!(keys, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    assert_ne!(r.arrays, arrays, "training changed the weights");
    // Evaluating the trained weights: metrics in range, the global model saved as received.
    let e = t.evaluate(&r.arrays, &fp).unwrap();
    assert_eq!(e.num_examples, 24);
    for k in ["eval_acc", "eval_macro_f1"] {
        assert!((0.0..=1.0).contains(&get(&e.metrics, k)), "{k}");
    }
    assert!(get(&e.metrics, "eval_loss") > 0.0);
    let saved = load_model(&d.path().join("global.safetensors")).unwrap();
    assert_eq!(saved.meta().classes, desc.classes);
    let back = t.params_from_arrays(&r.arrays).unwrap();
    assert_eq!(saved.params().values, back.values);
    assert!(saved.meta().federated.as_ref().unwrap()["note"]
        .as_str()
        .unwrap()
        .contains("global model"));
}

#[test]
fn arrays_that_do_not_fit_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(&d.path().join("ds"), 4);
    let mut t = PrivpktTrainer::new(&ds, config(None)).unwrap();
    t.export_initial(&d.path().join("init")).unwrap();
    let (desc, good) = exported(&d.path().join("init"));
    let none = config_record(vec![]);
    let mut err = |a: &ArrayRecord| format!("{:#}", PrivpktTrainer::train(&mut t, a, &none).unwrap_err());

    let mut fewer = good.clone();
    fewer.items.pop();
    let e = err(&fewer);
    assert!(e.contains("does not fit this node: the server sent 7 arrays, the local flowpic-mini model has 8 tensors (conv1.weight"), "{e}");

    // Another node's model: 3 classes instead of 4.
    let other = dataset(&d.path().join("ds3"), 3);
    PrivpktTrainer::new(&other, config(None))
        .unwrap()
        .export_initial(&d.path().join("init3"))
        .unwrap();
    let (other_desc, three) = exported(&d.path().join("init3"));
    let e = err(&three);
    assert!(
        e.contains("array 6 (`6`, the local model's `out.weight`) has shape [64, 3], the local model needs [64, 4]"),
        "{e}"
    );

    let mut f64s = good.clone();
    f64s.items[1].1.dtype = "float64".into();
    let e = err(&f64s);
    assert!(
        e.contains("array 1 (`1`, the local model's `conv1.bias`): dtype float64"),
        "{e}"
    );

    let mut nan = good.clone();
    let n = nan.items[1].1.data.len();
    nan.items[1].1.data[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(err(&nan).contains("`conv1.bias`) holds a non-finite value (NaN)"));

    let mut lying = good.clone();
    lying.items[0].1.data.truncate(100);
    assert!(err(&lying).contains("bad .npy data"));

    // Same shapes, other federation: the fingerprint tells them apart.
    let foreign = config_record(vec![("privpkt-model", C::String(other_desc.fingerprint.clone()))]);
    let e = format!("{:#}", t.evaluate(&good, &foreign).unwrap_err());
    assert!(
        e.contains(&format!("the federation's model is {}", other_desc.fingerprint)),
        "{e}"
    );
    assert!(e.contains(&desc.fingerprint));
    let bad_lr = config_record(vec![("lr", C::Double(-1.0))]);
    assert!(format!("{:#}", t.train(&good, &bad_lr).unwrap_err()).contains("config `lr` must be a finite number > 0"));
    let bad_epochs = config_record(vec![("local-epochs", C::String("two".into()))]);
    assert!(format!("{:#}", t.train(&good, &bad_epochs).unwrap_err()).contains("`local-epochs` must be a whole number"));
}

#[test]
fn dp_sgd_keeps_one_accountant_across_rounds() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(&d.path().join("ds"), 4);
    let mut dp = DpConfig::new(4.0);
    dp.seeded = true;
    let e = PrivpktTrainer::new(&ds, config(Some(dp.clone())))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--rounds"), "{e}");
    let mut cfg = config(Some(dp));
    cfg.planned_rounds = Some(2);
    let mut t = PrivpktTrainer::new(&ds, cfg).unwrap();
    assert!(t.dp_sigma().unwrap() > 0.0);
    t.export_initial(&d.path().join("init")).unwrap();
    let (_, arrays) = exported(&d.path().join("init"));
    let none = config_record(vec![]);
    let r1 = t.train(&arrays, &none).unwrap();
    let r2 = t.train(&r1.arrays, &none).unwrap();
    let (e1, e2) = (get(&r1.metrics, "epsilon"), get(&r2.metrics, "epsilon"));
    assert!(0.0 < e1 && e1 < e2, "ε {e1} then {e2}");
    // Calibrated for two rounds: the budget is spent exactly, and a third round is refused.
    assert!((e2 - 4.0).abs() < 0.05, "ε after the planned rounds: {e2}");
    let e = format!("{:#}", t.train(&r2.arrays, &none).unwrap_err());
    assert!(e.contains("privacy budget is spent"), "{e}");
}

/// The arrays as f32 values, in order.
fn values(a: &ArrayRecord) -> Vec<Vec<f32>> {
    a.items
        .iter()
        .map(|(_, arr)| {
            let (_, data) = npy::parse_bytes(&arr.data).unwrap();
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        })
        .collect()
}

/// ‖new − old‖₂ over all arrays flattened, as Flower's `get_norm` computes it.
fn update_norm(new: &ArrayRecord, old: &ArrayRecord) -> f64 {
    let (a, b) = (values(new), values(old));
    a.iter()
        .zip(&b)
        .flat_map(|(x, y)| x.iter().zip(y))
        .map(|(&x, &y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn clipping_norm_bounds_every_update_as_flowers_mods_do() {
    let d = tempfile::tempdir().unwrap();
    let ds = dataset(&d.path().join("ds"), 4);
    let mut t = PrivpktTrainer::new(&ds, config(None)).unwrap();
    t.export_initial(&d.path().join("init")).unwrap();
    let (_, init) = exported(&d.path().join("init"));
    // Without the key: the update is whatever training made it, and no norm_bit is sent.
    let free = t.train(&init, &config_record(vec![])).unwrap();
    let raw = update_norm(&free.arrays, &init);
    assert!(raw > 0.05, "training moved the weights by {raw}");
    assert!(free.clip.is_none() && !free.metrics.iter().any(|m| m.0 == "norm_bit"));

    // A clipping norm well below the update: the reply's update is exactly at the norm, the
    // direction kept, and norm_bit says it was clipped.
    let c = raw / 10.0;
    let mut t = PrivpktTrainer::new(&ds, config(None)).unwrap();
    let r = t
        .train(&init, &config_record(vec![("clipping_norm", C::Double(c))]))
        .unwrap();
    let sent = update_norm(&r.arrays, &init);
    assert!(
        (sent - c).abs() <= 1e-4 * c,
        "sent update norm {sent}, clipping_norm {c}"
    );
    assert_eq!(get(&r.metrics, "norm_bit"), 1.0);
    let clip = r.clip.unwrap();
    assert!((clip.norm_before - raw).abs() < 1e-3 * raw, "{clip:?} against {raw}");
    assert!((clip.norm_after - c).abs() < 1e-9 * c.max(1.0) + 1e-4 * c);
    // Same direction: the clipped update is the free one scaled by c / raw.
    let (f, s, i) = (values(&free.arrays), values(&r.arrays), values(&init));
    let k = (c / raw) as f32;
    for ((fa, sa), ia) in f.iter().zip(&s).zip(&i) {
        for ((&fx, &sx), &ix) in fa.iter().zip(sa).zip(ia) {
            assert!(
                ((sx - ix) - k * (fx - ix)).abs() < 1e-5,
                "{sx} vs {ix} + {k}·({fx} − {ix})"
            );
        }
    }

    // A norm above the update: untouched, norm_bit 0 (adaptive clipping's signal).
    let mut t = PrivpktTrainer::new(&ds, config(None)).unwrap();
    let r = t
        .train(&init, &config_record(vec![("clipping_norm", C::Double(raw * 10.0))]))
        .unwrap();
    assert_eq!(values(&r.arrays), values(&free.arrays));
    assert_eq!(get(&r.metrics, "norm_bit"), 0.0);

    // Bad or unknown privacy settings are refused, never ignored.
    for (cfg, want) in [
        (
            vec![("clipping_norm", C::Double(0.0))],
            "`clipping_norm` must be a finite number > 0",
        ),
        (
            vec![("clipping_norm", C::String("small".into()))],
            "`clipping_norm` must be a number",
        ),
        (
            vec![("noise_multiplier", C::Double(1.0))],
            "config `noise_multiplier` looks like a privacy setting",
        ),
        (
            vec![("dp-epsilon", C::Double(1.0))],
            "config `dp-epsilon` looks like a privacy setting",
        ),
        (
            vec![("secaggplus-stage", C::String("setup".into()))],
            "looks like a privacy setting",
        ),
    ] {
        let e = format!("{:#}", t.train(&init, &config_record(cfg)).unwrap_err());
        assert!(e.contains(want), "{e}");
    }
    // Ordinary keys that merely resemble words (dropout, epochs) pass.
    t.train(&init, &config_record(vec![("dropout-seed", C::Sint64(3))]))
        .unwrap();
}

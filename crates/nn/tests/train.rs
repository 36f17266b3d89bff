//! Training end to end on small synthetic datasets: learning, model files, resumption, errors.

mod common;

use std::cell::RefCell;
use std::path::Path;

use common::{write_dataset, Kind};
use privpkt_dataset::{Dataset, Split};
use privpkt_nn::metrics::ConfusionMatrix;
use privpkt_nn::{
    check_compatible, load_model, load_split, save_model, train, Arch, Model, NnError, RawBatch, Schedule, TrainConfig,
    TrainEvent,
};

fn quiet(_: TrainEvent) {}

fn test_accuracy(model: &Model, ds: &Dataset) -> f64 {
    let test = load_split(ds, Split::Test).unwrap();
    let probs = model.predict_samples(&test).unwrap();
    let pred: Vec<usize> = probs
        .iter()
        .map(|r| r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0)
        .collect();
    let truth: Vec<usize> = test.labels.iter().map(|&y| y as usize).collect();
    ConfusionMatrix::from_labels(model.meta().classes.len(), &truth, &pred)
        .unwrap()
        .accuracy()
}

fn mini_cfg() -> TrainConfig {
    TrainConfig {
        epochs: 6,
        batch_size: 16,
        lr: 3e-3,
        patience: None,
        seed: 11,
        ..TrainConfig::new(Arch::FlowPicMini)
    }
}

#[test]
fn flowpic_mini_learns_and_round_trips_through_a_model_file() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(32), 4, 200, 1);
    let events = RefCell::new(Vec::new());
    let out = train(&ds, &mini_cfg(), &d.path().join("work"), false, &|e| {
        events.borrow_mut().push(e)
    })
    .unwrap();
    let acc = test_accuracy(&out.model, &ds);
    assert!(acc >= 0.9, "test accuracy {acc}, history {:?}", out.history);
    assert_eq!(out.history.len(), 6);
    assert!(out.best_val_macro_f1.unwrap() >= 0.9);
    let ev = events.borrow();
    assert_eq!(
        ev.iter().filter(|e| matches!(e, TrainEvent::EpochEnd { .. })).count(),
        6
    );
    assert_eq!(
        ev.iter().filter(|e| matches!(e, TrainEvent::Batch { .. })).count(),
        6 * 8
    ); // 120 train / 16

    // The model holds the best epoch's weights.
    let best = out
        .history
        .iter()
        .map(|r| r.val_macro_f1.unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(out.best_val_macro_f1, Some(best));

    let path = d.path().join("model.safetensors");
    save_model(&path, &out.model).unwrap();
    let loaded = load_model(&path).unwrap();
    assert_eq!(loaded.meta(), out.model.meta());
    assert_eq!(loaded.params(), out.model.params());
    let test = load_split(&ds, Split::Test).unwrap();
    assert_eq!(
        loaded.predict_samples(&test).unwrap(),
        out.model.predict_samples(&test).unwrap()
    );
    check_compatible(loaded.meta(), &ds.manifest).unwrap();
    let m = loaded.meta();
    assert_eq!(m.classes, ds.manifest.classes);
    assert_eq!(m.train, mini_cfg());
    assert_eq!(m.extract, ds.manifest.extract);
    assert_eq!(m.dataset_manifest_sha256, privpkt_nn::manifest_sha256(&ds).unwrap());
    assert_eq!(m.privacy, None);
    // The metadata sits in the safetensors header under "privpkt", readable by any tool.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let json = &header.metadata().as_ref().unwrap()["privpkt"];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["arch"], "flowpic-mini");
    assert_eq!(v["scaling"], "log1p-over-image-max");
}

#[test]
fn sae_pretrains_then_learns() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::DeepPacket, 4, 160, 2);
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: 16,
        lr: 3e-3,
        sae_pretrain_epochs: 1,
        patience: None,
        seed: 3,
        ..TrainConfig::new(Arch::Sae)
    };
    let events = RefCell::new(Vec::new());
    let out = train(&ds, &cfg, &d.path().join("work"), false, &|e| {
        events.borrow_mut().push(e)
    })
    .unwrap();
    let pre: Vec<(usize, f64)> = events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            TrainEvent::Pretrain { layer, loss, .. } => Some((*layer, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(pre.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(pre.iter().all(|p| p.1.is_finite()));
    let acc = test_accuracy(&out.model, &ds);
    assert!(acc >= 0.9, "test accuracy {acc}, history {:?}", out.history);
}

#[test]
fn deeppacket_cnn_learns() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::DeepPacket, 3, 90, 4);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 18,
        patience: None,
        class_weights: true,
        ..TrainConfig::new(Arch::DeepPacketApp)
    };
    let out = train(&ds, &cfg, &d.path().join("work"), false, &quiet).unwrap();
    let acc = test_accuracy(&out.model, &ds);
    assert!(acc >= 0.9, "test accuracy {acc}, history {:?}", out.history);
}

fn interrupted(ds: &Dataset, cfg: &TrainConfig, work: &Path, stop_before: usize) {
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(ds, cfg, work, false, &|e| {
            if let TrainEvent::EpochStart { epoch, .. } = e {
                if epoch == stop_before {
                    panic!("interrupted");
                }
            }
        })
    }));
    assert!(r.is_err(), "training should have been interrupted");
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::DeepPacket, 3, 100, 5);
    let cfg = TrainConfig {
        epochs: 4,
        batch_size: 16,
        sae_pretrain_epochs: 1,
        patience: None,
        schedule: Schedule::Cosine,
        seed: 21,
        ..TrainConfig::new(Arch::Sae)
    };
    let full = train(&ds, &cfg, &d.path().join("a"), false, &quiet).unwrap();

    let work = d.path().join("b");
    interrupted(&ds, &cfg, &work, 3);
    assert!(work.join("checkpoint.safetensors").exists());
    // Other settings: refused, naming the checkpoint.
    let other = TrainConfig {
        lr: 0.01,
        ..cfg.clone()
    };
    match train(&ds, &other, &work, true, &quiet) {
        Err(NnError::Checkpoint { msg, .. }) => assert!(msg.contains("settings"), "{msg}"),
        r => panic!("expected a checkpoint error, got {:?}", r.map(|o| o.history)),
    }
    let resumed_at = RefCell::new(None);
    let resumed = train(&ds, &cfg, &work, true, &|e| {
        if let TrainEvent::Resumed { epochs_done } = e {
            *resumed_at.borrow_mut() = Some(epochs_done);
        }
    })
    .unwrap();
    assert_eq!(*resumed_at.borrow(), Some(2));
    assert_eq!(resumed.resumed_from, Some(2));
    assert_eq!(
        resumed.model.params(),
        full.model.params(),
        "weights differ after resuming"
    );
    let strip = |h: &[privpkt_nn::EpochRecord]| {
        h.iter()
            .map(|r| (r.epoch, r.lr, r.train_loss, r.train_accuracy, r.val_macro_f1))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&resumed.history), strip(&full.history));
    assert_eq!(resumed.best_epoch, full.best_epoch);

    // Resuming a finished run changes nothing.
    let again = train(&ds, &cfg, &work, true, &quiet).unwrap();
    assert_eq!(again.model.params(), full.model.params());
}

#[test]
fn wrong_models_and_files_give_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let ds = write_dataset(&d.path().join("ds"), Kind::FlowPicDense(32), 4, 60, 6);
    let cfg = TrainConfig {
        epochs: 1,
        ..mini_cfg()
    };
    let out = train(&ds, &cfg, &d.path().join("work"), false, &quiet).unwrap();
    let path = d.path().join("model.safetensors");
    save_model(&path, &out.model).unwrap();

    // Classes, representation, resolution.
    let three = write_dataset(&d.path().join("three"), Kind::FlowPicDense(32), 3, 30, 6);
    let e = check_compatible(out.model.meta(), &three.manifest).unwrap_err();
    assert!(
        matches!(e, NnError::Incompatible(_)) && e.to_string().contains("class3"),
        "{e}"
    );
    let dp = write_dataset(&d.path().join("dp"), Kind::DeepPacket, 4, 30, 6);
    let e = check_compatible(out.model.meta(), &dp.manifest).unwrap_err();
    assert!(e.to_string().contains("Deep Packet"), "{e}");
    let r16 = write_dataset(&d.path().join("r16"), Kind::FlowPicDense(16), 4, 30, 6);
    let e = check_compatible(out.model.meta(), &r16.manifest).unwrap_err();
    assert!(e.to_string().contains("16×16"), "{e}");
    // A batch of the wrong kind or size.
    assert!(out.model.predict_proba(RawBatch::DeepPacket(&[0u8; 1500])).is_err());
    assert!(out
        .model
        .predict_proba(RawBatch::FlowPicDense {
            resolution: 32,
            counts: &[0u16; 1000]
        })
        .is_err());
    // An architecture that cannot take the data.
    let e = train(&ds, &TrainConfig::new(Arch::Sae), &d.path().join("w2"), false, &quiet).unwrap_err();
    assert!(matches!(e, NnError::Incompatible(_)), "{e}");

    // A flipped byte in the weights, a truncated file, not a safetensors file at all.
    let bytes = std::fs::read(&path).unwrap();
    let mut flipped = bytes.clone();
    let last = flipped.len() - 10;
    flipped[last] ^= 0x40;
    let bad = d.path().join("bad.safetensors");
    for (what, content) in [
        ("damaged", flipped),
        ("safetensors", bytes[..bytes.len() / 2].to_vec()),
        ("safetensors", b"hello world, not a model".to_vec()),
    ] {
        std::fs::write(&bad, content).unwrap();
        match load_model(&bad) {
            Err(e @ NnError::CorruptModel { .. }) => {
                assert!(
                    e.to_string().contains("bad.safetensors") && e.to_string().contains(what),
                    "{e}"
                )
            }
            r => panic!("expected a corrupt-model error, got {:?}", r.map(|m| m.meta().clone())),
        }
    }
    // Metadata that no longer fits the tensors (resolution edited).
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    let edited = meta["privpkt"].replace("\"resolution\":32", "\"resolution\":24");
    assert_ne!(edited, meta["privpkt"]);
    meta.insert("privpkt".into(), edited);
    let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.iter().map(|(n, v)| (n.to_string(), v)).collect();
    std::fs::write(&bad, safetensors::serialize(tensors, Some(meta)).unwrap()).unwrap();
    let e = load_model(&bad).unwrap_err();
    assert!(
        e.to_string().contains("fc1.weight") && e.to_string().contains("shape"),
        "{e}"
    );
    // No such file.
    assert!(matches!(load_model(&d.path().join("none")), Err(NnError::Io { .. })));
}

#[test]
fn sparse_and_dense_flowpics_load_and_scale_alike() {
    let d = tempfile::tempdir().unwrap();
    let dense = write_dataset(&d.path().join("dense"), Kind::FlowPicDense(16), 3, 40, 8);
    let sparse = write_dataset(&d.path().join("sparse"), Kind::FlowPicSparse(16), 3, 40, 8);
    for split in Split::ALL {
        let a = load_split(&dense, split).unwrap();
        let b = load_split(&sparse, split).unwrap();
        assert_eq!(a.len(), 40 / 5 * if split == Split::Train { 3 } else { 1 });
        assert_eq!((&a.labels, &a.flow, &a.sample), (&b.labels, &b.flow, &b.sample));
        let idx: Vec<usize> = (0..a.len()).collect();
        assert_eq!(a.raw().batch(&idx, 256), b.raw().batch(&idx, 256));
        assert!(a.sample.iter().all(|&s| common::split_of(s as usize) == split.name()));
    }
    // log1p(count) / log1p(max count of the image).
    let counts = [0u16, 1, 3, 7];
    let x = RawBatch::FlowPicDense {
        resolution: 2,
        counts: &counts,
    }
    .batch(&[0], 4);
    let want: Vec<f32> = counts.iter().map(|&c| (c as f32).ln_1p() / 8f32.ln()).collect();
    for (a, b) in x.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{x:?} vs {want:?}");
    }
    let x = RawBatch::DeepPacket(&[255u8; 1500]).batch(&[0], 1500);
    assert!(x.iter().all(|&v| v == 1.0));
}
